//! [`Engine`]: one running Switchboard node.
//!
//! [`Engine::build`] does every fallible start-up step (data directory,
//! secrets, database and migrations, bus, supervision tree, HTTP listener) and
//! undoes the earlier ones when a later one fails. [`Engine::run_until`]
//! serves HTTP until the shutdown future resolves, then stops in one order:
//! stop accepting connections, drain live calls for
//! `shutdown.grace_period` (their WebSockets stay open meanwhile), end the
//! rest, wait a bounded time for open HTTP connections, close the bus, close
//! the database.

use crate::calls::StoreKeys;
use crate::redact::redact_url;
use crate::secrets::{ResolvedSecrets, resolve_secrets};
use crate::speech::{SpeechServer, SpeechServerHandle};
use crate::summary::{StandardSummaryLlms, SummaryConfig, SummaryWorker, SummaryWorkerHandle};
use crate::{EngineError, with_prepared_data_dir};
use axum::Router;
use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchboard_actors::{Registry, Tree, TreeConfig};
use switchboard_api::AppState;
use switchboard_bus::Bus;
use switchboard_config::Settings;
use switchboard_providers::email::{EmailSender, SendGrid, SendGridConfig};
use switchboard_store::{Backend, Store};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// How long open HTTP connections may linger after the actors have stopped.
/// By then every call has ended, so what remains are idle keep-alives or
/// clients that ignore the close; they must not hold the process up.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Connect to the database in `settings` (SQLite in the data directory when
/// unset) and apply the migrations. `settings.storage.data_dir` should already
/// be absolute (see [`with_prepared_data_dir`]).
pub async fn connect_store(settings: &Settings, encryption_key: [u8; 32]) -> Result<Store, EngineError> {
    let store = Store::connect(
        &settings.database_url(),
        settings.database.max_connections,
        encryption_key,
    )
    .await?;
    if let Err(e) = store.migrate().await {
        store.close().await;
        return Err(e.into());
    }
    Ok(store)
}

/// A built, not yet serving, engine. The listener is bound, so
/// [`Engine::local_addr`] is final (port 0 resolved).
pub struct Engine {
    settings: Settings,
    store: Store,
    bus: Bus,
    tree: Tree,
    listener: TcpListener,
    router: Router,
    local_addr: SocketAddr,
    speech: Option<SpeechServerHandle>,
    summary: SummaryWorkerHandle,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("local_addr", &self.local_addr)
            .field("backend", &self.store.backend())
            .field("bus", &self.bus.kind())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Start every component from `settings`. Nothing serves HTTP until [`Engine::run_until`].
    pub async fn build(settings: Settings) -> Result<Engine, EngineError> {
        let settings = with_prepared_data_dir(settings)?;
        let secrets = resolve_secrets(&settings)?;
        // Bind first: a busy port is the most common start-up failure and needs nothing torn down.
        let listener = TcpListener::bind(settings.http.bind)
            .await
            .map_err(|source| EngineError::Bind {
                addr: settings.http.bind,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| EngineError::Bind {
            addr: settings.http.bind,
            source,
        })?;

        let store = connect_store(&settings, *secrets.encryption_key.expose()).await?;
        let bus = match connect_bus(&settings).await {
            Ok(bus) => bus,
            Err(e) => {
                store.close().await;
                return Err(e);
            }
        };
        let (tree, router) = match start_tree_and_router(&settings, &store, &bus, &secrets).await {
            Ok(parts) => parts,
            Err(e) => {
                bus.shutdown().await;
                store.close().await;
                return Err(e);
            }
        };

        // The local speech server warms up (model load) while we serve; agents
        // on the `local` provider fail their calls until it answers.
        let speech = SpeechServer::start(&settings.speech);
        if let Some(handle) = &speech {
            let base = handle.base_url().to_owned();
            let probe = handle.ready_probe();
            tokio::spawn(async move {
                match probe.wait(Duration::from_secs(120)).await {
                    Ok(()) => info!(url = %base, "local speech server ready"),
                    Err(e) => warn!(url = %base, error = %e, "local speech server not ready"),
                }
            });
        }
        let summary = match start_summary_worker(&settings, &store, &bus) {
            Ok(worker) => worker,
            Err(e) => {
                tree.shutdown(settings.shutdown.grace_period).await.ok();
                bus.shutdown().await;
                store.close().await;
                return Err(e);
            }
        };
        let database = match store.backend() {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        info!(
            addr = %local_addr,
            database,
            database_url = %redact_url(&settings.database_url()),
            bus = bus.kind(),
            data_dir = %settings.storage.data_dir.display(),
            "listening on http://{local_addr}"
        );
        Ok(Engine {
            settings,
            store,
            bus,
            tree,
            listener,
            router,
            local_addr,
            speech,
            summary,
        })
    }

    /// The bound address (with the real port when `http.bind` used port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The effective settings (data directory made absolute).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The engine's store, for tools and tests that seed data.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The live-actor registry.
    pub fn registry(&self) -> &Registry {
        self.tree.registry()
    }

    /// The supervision tree (spawning calls, stats).
    pub fn tree(&self) -> &Tree {
        &self.tree
    }

    /// Serve HTTP until `shutdown` resolves (or the server fails), then stop
    /// everything in order. Returns the server's error, if it failed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), EngineError> {
        let Engine {
            settings,
            store,
            bus,
            tree,
            listener,
            router,
            local_addr,
            speech,
            summary,
        } = self;
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let server = axum::serve(switchboard_api::no_delay(listener), app)
            .with_graceful_shutdown(async move {
                // Either a send or the sender being dropped means stop.
                let _ = stop_rx.wait_for(|stop| *stop).await;
            })
            .into_future();
        let mut server = tokio::spawn(server);

        let mut outcome = tokio::select! {
            () = shutdown => {
                info!("shutdown requested: no longer accepting connections");
                None
            }
            result = &mut server => Some(server_result(result)),
        };
        let _ = stop_tx.send(true);

        match tree.shutdown(settings.shutdown.grace_period).await {
            Ok(report) => info!(drained = report.drained, ended = report.ended, "actors stopped"),
            Err(e) => warn!(error = %e, "actor tree did not stop cleanly"),
        }

        if outcome.is_none() {
            outcome = match tokio::time::timeout(HTTP_DRAIN, &mut server).await {
                Ok(result) => Some(server_result(result)),
                Err(_) => {
                    warn!(
                        after_secs = HTTP_DRAIN.as_secs(),
                        "closing HTTP connections that stayed open"
                    );
                    server.abort();
                    Some(Ok(()))
                }
            };
        }

        if let Some(speech) = speech {
            speech.shutdown().await;
        }
        summary.shutdown().await;
        bus.shutdown().await;
        store.close().await;
        info!(addr = %local_addr, "shutdown complete");
        outcome.unwrap_or(Ok(()))
    }
}

fn server_result(joined: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), EngineError> {
    match joined {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(EngineError::Serve(e)),
        Err(e) => Err(EngineError::Serve(std::io::Error::other(e.to_string()))),
    }
}

async fn connect_bus(settings: &Settings) -> Result<Bus, EngineError> {
    match settings.redis_url() {
        Some(url) => Ok(Bus::redis(url, &settings.redis.key_prefix).await?),
        None => Ok(Bus::in_process()),
    }
}

/// The post-call summary worker: summaries through each agent's LLM (or an
/// extractive one offline), emailed through SendGrid when configured.
fn start_summary_worker(settings: &Settings, store: &Store, bus: &Bus) -> Result<SummaryWorkerHandle, EngineError> {
    let n = &settings.notifications;
    let email: Option<Arc<dyn EmailSender>> = match (&n.sendgrid_api_key, &n.from_email) {
        (Some(key), Some(_)) => {
            let mut config = SendGridConfig::new(switchboard_providers::SecretString::from(key.expose().to_owned()));
            config.base_url = n.sendgrid_base_url.clone();
            let sendgrid = SendGrid::new(config).map_err(EngineError::Providers)?;
            Some(Arc::new(sendgrid))
        }
        (Some(_), None) | (None, Some(_)) => {
            warn!("summary emails need both notifications.sendgrid_api_key and notifications.from_email; not emailing");
            None
        }
        (None, None) => None,
    };
    let llms = StandardSummaryLlms::new(Arc::new(StoreKeys(store.clone())), Duration::from_secs(30));
    let mut config = SummaryConfig::new(format!("summary-{}", std::process::id()));
    config.from_email = n.from_email.clone();
    Ok(SummaryWorker::new(bus.clone(), store.clone(), Arc::new(llms), email, config).spawn())
}

async fn start_tree_and_router(
    settings: &Settings,
    store: &Store,
    bus: &Bus,
    secrets: &ResolvedSecrets,
) -> Result<(Tree, Router), EngineError> {
    let config = TreeConfig {
        call_mailbox: settings.limits.call_mailbox,
        conversation_mailbox: settings.limits.conversation_mailbox,
        agent_session_mailbox: settings.limits.agent_session_mailbox,
        ..TreeConfig::default()
    };
    let tree = Tree::start(config, Arc::new(store.clone())).await?;
    let state = AppState::new(
        store.clone(),
        bus.clone(),
        tree.registry().clone(),
        settings,
        &secrets.jwt_secret,
    );
    let calls = match crate::calls::call_services(settings, store, bus, &tree) {
        Ok(calls) => calls,
        Err(e) => {
            let _ = tree.shutdown(Duration::ZERO).await;
            return Err(EngineError::Providers(e));
        }
    };
    match state {
        Ok(state) => Ok((tree, switchboard_api::router(state.with_calls(calls)))),
        Err(e) => {
            let _ = tree.shutdown(Duration::ZERO).await;
            Err(e.into())
        }
    }
}
