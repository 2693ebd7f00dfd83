//! The composition root of Switchboard: turns [`Settings`] into a running
//! engine (store, bus, supervision tree, HTTP API) and shuts it down in order.
//!
//! Production (`switchboard serve`) and the tests use the same entry point,
//! [`Engine::build`] followed by [`Engine::run_until`], so what the tests start
//! is what ships.
//!
//! # Layout
//! - [`Engine`] (module `engine`): build, run, graceful shutdown.
//! - [`secrets`]: the data directory and generated root secrets.
//! - [`admin`]: `switchboard admin` operations (bootstrap users, the demo tenant).
//! - [`calls`]: the call path's wiring (provider factory over stored credentials).
//! - [`speech`]: the supervised local speech server child process.
//! - [`telemetry`]: tracing subscriber set-up (pretty or JSON).
//! - [`redact`]: connection URLs with their passwords removed, for logs.
//! - `main.rs`: the thin `switchboard` CLI over all of the above.

pub mod admin;
pub mod calls;
mod engine;
pub mod redact;
pub mod secrets;
pub mod speech;
pub mod summary;
pub mod telemetry;

pub use engine::{Engine, connect_store};
pub use secrets::{ResolvedSecrets, prepare_data_dir, resolve_secrets};

use std::net::SocketAddr;
use std::path::PathBuf;
use switchboard_config::Settings;

/// Why the engine could not start, run or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    /// A generated secret file is unreadable or malformed; never carries its contents.
    #[error("secret file {path}: {reason}")]
    SecretFile { path: PathBuf, reason: String },
    #[error("database: {0}")]
    Store(#[from] switchboard_store::StoreError),
    #[error("event bus: {0}")]
    Bus(#[from] switchboard_bus::BusError),
    #[error("actors: {0}")]
    Actors(#[from] switchboard_actors::ActorsError),
    #[error("api: {0}")]
    Api(#[from] switchboard_api::StateError),
    #[error("providers: {0}")]
    Providers(switchboard_providers::ProviderError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("http server failed: {0}")]
    Serve(std::io::Error),
    /// `log.filter` (or `RUST_LOG`) is not a valid tracing filter.
    #[error("invalid log filter: {0}")]
    LogFilter(String),
    /// A command was given inconsistent arguments (e.g. `--tenant` for a system admin).
    #[error("{0}")]
    Usage(String),
}

/// The settings with the data directory made absolute and created.
pub fn with_prepared_data_dir(mut settings: Settings) -> Result<Settings, EngineError> {
    settings.storage.data_dir = prepare_data_dir(&settings.storage.data_dir)?;
    Ok(settings)
}

/// Installs the process-wide TLS crypto provider (aws-lc-rs). Both rustls
/// providers are compiled in through our dependencies, so rustls cannot pick
/// one itself and `wss://` connections (OpenAI Realtime) would fail without
/// this. Idempotent; call it first thing in `main`.
pub fn install_tls_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}
