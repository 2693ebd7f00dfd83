//! `switchboard`: the command-line entry point. It parses flags, loads the
//! layered settings and hands over to the library (`Engine::build` +
//! `run_until`, `connect_store`, `admin::create_user`, `admin::seed_demo`) or,
//! for `switchboard call`, to the synthetic caller ([`call_cli`]).
//!
//! Exit codes: 0 on success (including a graceful shutdown), 2 for invalid
//! configuration or usage, 1 for any other failure.

mod call_cli;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;
use switchboard_config::{ConfigSource, Settings};
use switchboard_domain::{Role, Secret};
use switchboard_engine::{Engine, EngineError, admin, connect_store, telemetry, with_prepared_data_dir};
use switchboard_store::Backend;

const AFTER_HELP: &str = "\
Configuration layers, later wins:
  built-in defaults < switchboard.toml (--config, $SWITCHBOARD_CONFIG, or ./switchboard.toml)
  < environment SWITCHBOARD__SECTION__KEY (e.g. SWITCHBOARD__HTTP__BIND) < command-line flags.
With no configuration at all the engine runs embedded: SQLite in ./data and an in-process bus.
Run `switchboard config` to see the effective settings (secrets are redacted).

Examples:
  switchboard serve                                   # http://127.0.0.1:8080, SQLite in ./data
  switchboard serve --bind 0.0.0.0:8080 --public-base-url https://voice.example.com
  switchboard --database-url postgres://sb:pw@db/sb --redis-url redis://cache:6379 serve
  switchboard migrate                                 # apply database migrations and exit
  switchboard admin create-user --email root@example.com --role system_admin   # password from $SWITCHBOARD_ADMIN_PASSWORD
  switchboard admin create-user --email owner@acme.test --password 'long-pass' --role owner --tenant 'Acme Dental'
  switchboard admin demo                              # seed a demo tenant, agent and number; secrets in ./data/demo.json
  switchboard call --wav hello.wav                    # phone the demo number like Twilio; bot's answer in bot-reply.wav
  switchboard admin load-profile                      # seed the bench load-test profile; data/load.json
  switchboard load --calls 200 --concurrency 200      # run switchboard-load against it (see `switchboard load --help`)
  SWITCHBOARD__LOG__FORMAT=json switchboard serve     # one JSON object per log line

Exit codes: 0 ok, 1 runtime failure, 2 invalid configuration or usage.";

/// Switchboard: a live AI voice and WhatsApp agent engine.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, after_help = AFTER_HELP, arg_required_else_help = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// Config file (TOML). Default: $SWITCHBOARD_CONFIG, else ./switchboard.toml if present.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log line format (log.format).
    #[arg(long, global = true, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
    /// Log filter such as `info,switchboard_api=debug` (log.filter). RUST_LOG, when set, wins.
    #[arg(long, global = true, value_name = "FILTER")]
    log_filter: Option<String>,
    /// Listen address, e.g. 0.0.0.0:8080; port 0 picks a free port (http.bind).
    #[arg(long, global = true, value_name = "ADDR")]
    bind: Option<String>,
    /// sqlite://PATH or postgres://USER:PASS@HOST/DB (database.url). Default: SQLite in the data dir.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    /// redis://HOST:PORT for a shared bus and durable jobs (redis.url). Default: in-process bus.
    #[arg(long, global = true, value_name = "URL")]
    redis_url: Option<String>,
    /// Directory for the SQLite file, generated secrets and recordings (storage.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Public URL of this server, used in TwiML and webhook signatures (http.public_base_url).
    #[arg(long, global = true, value_name = "URL")]
    public_base_url: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine: HTTP API, webhooks and live agents. Stops gracefully on SIGTERM or Ctrl-C.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Operator tasks that work directly on the database.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Print the effective configuration as TOML, secrets redacted.
    Config,
    /// Place a synthetic Twilio call on a running engine: speak a WAV, print the live
    /// transcript, save the bot's answer. Defaults come from <data_dir>/demo.json.
    Call(Box<call_cli::CallArgs>),
    /// Run the load tool (`switchboard-load`, built next to this binary) with the given
    /// arguments; defaults come from <data_dir>/load.json. `switchboard load --help` for its options.
    Load(LoadArgs),
}

#[derive(Debug, Args)]
// `--help` belongs to switchboard-load: `switchboard load --help` shows its options.
#[command(disable_help_flag = true)]
struct LoadArgs {
    /// Arguments passed to switchboard-load unchanged.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoadProvidersArg {
    /// The bench STT, agent and TTS inside the engine.
    Bench,
    /// openai_compatible STT/TTS at a fake OpenAI speech server (--fake-url), rules agent.
    FakeServers,
}

#[derive(Debug, Args)]
struct LoadProfileArgs {
    /// Which stand-in providers the load agent uses.
    #[arg(long, value_enum, default_value = "bench")]
    providers: LoadProvidersArg,
    /// The fake OpenAI speech server, with /v1 (e.g. http://127.0.0.1:8791/v1); needed with fake-servers.
    #[arg(long, value_name = "URL")]
    fake_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create a user and print its id. Use it to bootstrap the first system_admin.
    CreateUser(CreateUserArgs),
    /// Seed (idempotently) a demo tenant, owner, Twilio credential, rule-based agent and
    /// number, and write their URLs and secrets to <data_dir>/demo.json (mode 0600).
    Demo(DemoArgs),
    /// Seed (idempotently) the load-test bench profile: tenant "Load test", a Twilio credential,
    /// the agent "Load profile (bench)" and the number +15005550100; writes <data_dir>/load.json.
    LoadProfile(LoadProfileArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Also print the generated password and Twilio auth token (they are always in demo.json).
    #[arg(long)]
    show_secrets: bool,
}

#[derive(Debug, Args)]
struct CreateUserArgs {
    /// Login email.
    #[arg(long)]
    email: String,
    /// Password; prefer the environment variable so it stays out of shell history.
    #[arg(long, env = "SWITCHBOARD_ADMIN_PASSWORD", hide_env_values = true)]
    password: String,
    /// system_admin, owner, admin or agent.
    #[arg(long)]
    role: Role,
    /// Tenant name, created if missing. Required for every role but system_admin.
    #[arg(long, value_name = "NAME")]
    tenant: Option<String>,
}

impl GlobalArgs {
    /// The flags as dotted config keys, the last configuration layer.
    fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push((key.to_owned(), value));
            }
        };
        push(
            "log.format",
            self.log_format.map(|f| match f {
                LogFormatArg::Pretty => "pretty".to_owned(),
                LogFormatArg::Json => "json".to_owned(),
            }),
        );
        push("log.filter", self.log_filter.clone());
        push("http.bind", self.bind.clone());
        push("database.url", self.database_url.clone());
        push("redis.url", self.redis_url.clone());
        push(
            "storage.data_dir",
            self.data_dir.as_ref().map(|p| p.display().to_string()),
        );
        push("http.public_base_url", self.public_base_url.clone());
        out
    }
}

fn main() -> ExitCode {
    switchboard_engine::install_tls_provider();
    let cli = Cli::parse();
    let source = ConfigSource::from_process(cli.global.config.clone(), cli.global.overrides());
    let settings = match Settings::load(&source) {
        Ok(settings) => settings,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };

    if let Command::Load(args) = &cli.command {
        return exec_load(&args.args, &settings.storage.data_dir);
    }

    if let Command::Config = cli.command {
        return match settings.redacted_toml() {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }

    // RUST_LOG is the conventional quick override while debugging. `call` prints its
    // own progress on stdout, so its logs stay at warnings unless asked for.
    let default_filter = match (&cli.command, &cli.global.log_filter) {
        (Command::Call(_), None) => "warn".to_owned(),
        _ => settings.log.filter.clone(),
    };
    let filter = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| !f.trim().is_empty())
        .unwrap_or(default_filter);
    if let Err(e) = telemetry::init(settings.log.format, &filter) {
        eprintln!("invalid configuration (1 problem):\n  log.filter: {e}");
        return ExitCode::from(2);
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command, settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let usage = matches!(e.downcast_ref::<EngineError>(), Some(EngineError::Usage(_)));
            tracing::error!(error = %format!("{e:#}"), "switchboard failed");
            eprintln!("error: {e:#}");
            if usage { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate => migrate(settings).await,
        Command::Admin(AdminCommand::CreateUser(args)) => create_user(settings, args).await,
        Command::Admin(AdminCommand::Demo(args)) => demo(settings, args).await,
        Command::Admin(AdminCommand::LoadProfile(args)) => load_profile(settings, args).await,
        Command::Call(args) => call_cli::run(&settings.storage.data_dir, *args).await,
        // Handled before the runtime starts.
        Command::Config | Command::Load(_) => Ok(()),
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    // Install the handlers before start-up so an early SIGTERM is not the default (abrupt) exit.
    let signal = shutdown_signal().context("cannot install signal handlers")?;
    let engine = Engine::build(settings).await.context("start-up failed")?;
    engine.run_until(signal).await.context("serving failed")?;
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C).
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
        }
    })
}

async fn migrate(settings: Settings) -> anyhow::Result<()> {
    let settings = with_prepared_data_dir(settings)?;
    // Migrations never read or write sealed secrets, so no key is needed (or generated) here.
    let store = connect_store(&settings, [0; 32]).await.context("migration failed")?;
    let backend = match store.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    store.close().await;
    println!(
        "migrations applied ({backend}: {})",
        switchboard_engine::redact::redact_url(&settings.database_url())
    );
    Ok(())
}

async fn create_user(settings: Settings, args: CreateUserArgs) -> anyhow::Result<()> {
    let settings = with_prepared_data_dir(settings)?;
    let secrets = switchboard_engine::resolve_secrets(&settings)?;
    let store = connect_store(&settings, *secrets.encryption_key.expose()).await?;
    let result = admin::create_user(
        &store,
        &args.email,
        Secret::new(args.password),
        args.role,
        args.tenant.as_deref(),
    )
    .await;
    store.close().await;
    let user = result?;
    println!("{}", user.id);
    Ok(())
}

async fn demo(settings: Settings, args: DemoArgs) -> anyhow::Result<()> {
    let settings = with_prepared_data_dir(settings)?;
    let secrets = switchboard_engine::resolve_secrets(&settings)?;
    let store = connect_store(&settings, *secrets.encryption_key.expose()).await?;
    let result = admin::seed_demo(&store, &settings.storage.data_dir, &settings.http.public_base_url).await;
    store.close().await;
    println!("{}", result?.summary(args.show_secrets));
    Ok(())
}

async fn load_profile(settings: Settings, args: LoadProfileArgs) -> anyhow::Result<()> {
    let providers = match (args.providers, args.fake_url) {
        (LoadProvidersArg::Bench, None) => admin::LoadProviders::Bench,
        (LoadProvidersArg::Bench, Some(_)) => {
            return Err(EngineError::Usage("--fake-url goes with --providers fake-servers".to_owned()).into());
        }
        (LoadProvidersArg::FakeServers, Some(url)) => admin::LoadProviders::FakeServers { url },
        (LoadProvidersArg::FakeServers, None) => {
            return Err(EngineError::Usage(
                "--providers fake-servers needs --fake-url http://HOST:PORT/v1 (start testkit's fake-openai-speech)"
                    .to_owned(),
            )
            .into());
        }
    };
    let settings = with_prepared_data_dir(settings)?;
    let secrets = switchboard_engine::resolve_secrets(&settings)?;
    let store = connect_store(&settings, *secrets.encryption_key.expose()).await?;
    let result = admin::seed_load_profile(
        &store,
        &settings.storage.data_dir,
        &settings.http.public_base_url,
        &providers,
    )
    .await;
    store.close().await;
    println!("{}", result?.summary());
    Ok(())
}

/// Replaces this process with `switchboard-load` from this binary's directory.
/// `--profile` defaults to `<data_dir>/load.json` through `SWITCHBOARD_LOAD_PROFILE`.
fn exec_load(args: &[String], data_dir: &std::path::Path) -> ExitCode {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe.with_file_name("switchboard-load"),
        Err(e) => {
            eprintln!("error: cannot locate this executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !exe.is_file() {
        eprintln!(
            "error: {} is not built; build it with:\n  cargo build --release -p switchboard-benches --bin switchboard-load",
            exe.display()
        );
        return ExitCode::FAILURE;
    }
    let mut command = std::process::Command::new(&exe);
    command.args(args);
    if std::env::var_os("SWITCHBOARD_LOAD_PROFILE").is_none() {
        command.env("SWITCHBOARD_LOAD_PROFILE", data_dir.join(admin::LOAD_FILE));
    }
    // exec only returns on failure.
    let err = command.exec();
    eprintln!("error: cannot run {}: {err}", exe.display());
    ExitCode::FAILURE
}
