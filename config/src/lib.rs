//! Layered settings for the Switchboard engine.
//!
//! Layers, later wins: built-in defaults, then `switchboard.toml` (path by
//! `--config` or `SWITCHBOARD_CONFIG`), then `SWITCHBOARD__SECTION__KEY`
//! environment variables, then CLI overrides. Every key is validated and
//! *all* bad keys are reported together.
//!
//! # Layout
//! - [`settings`]: the typed [`Settings`] and its defaults.
//! - [`secret`]: [`SecretString`] and [`SecretKey`], which never print.
//! - [`load`]: [`Settings::load`] over a [`ConfigSource`], collecting every
//!   bad key into [`ConfigErrors`]; [`Settings::redacted_toml`].

pub mod load;
pub mod secret;
pub mod settings;

pub use load::{ConfigError, ConfigErrors, ConfigSource, Layer, RenderError};
pub use secret::{KeyError, SecretKey, SecretString};
pub use settings::*;

/// Serialize a `Duration` as whole seconds (used by `switchboard config`).
mod secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}
