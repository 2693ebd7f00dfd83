//! `switchboard-load`: run N synthetic Twilio callers against a running
//! Switchboard engine (and optionally the bare-socket baseline) and report
//! latency percentiles and engine cost. See `switchboard_benches::load`.
//!
//! Exit codes: 0 when the runs completed (failed calls are reported, not
//! fatal), 2 for bad options, 1 for any other failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use switchboard_benches::load::capacity::{self, CapacityReport, Criteria};
use switchboard_benches::load::options::{CallLength, CallerAudio, Pattern, ProfileFile, parse_duration};
use switchboard_benches::load::report::{Document, RunReport};
use switchboard_benches::load::{LoadError, LoadOptions, Target, baseline, runner};
use tokio::io::AsyncBufReadExt as _;
use url::Url;

const AFTER_HELP: &str = "\
Each caller does what Twilio does: the signed voice webhook, the Media Streams socket,
real-time 20 ms μ-law frames, marks echoed once their audio has played, `clear` honoured.
The caller audio is a speech/silence pattern; every --barge-in-every-th pause is short
(--barge-in-after), so the next burst talks over the bot's answer.

Examples:
  switchboard admin load-profile && switchboard serve &       # seeds data/load.json
  switchboard-load --calls 200 --concurrency 200 --ramp 20 --call-length 60s
  switchboard-load --calls 50 --call-length 20s..40s --baseline --json > run.json
  switchboard-load --find-capacity --levels 25,50,100,200,400 --call-length 20s
  switchboard-load --engine http://10.0.0.5:8080 --account-sid AC... --auth-token ... --number +15005550100";

/// Load test a Switchboard engine with synthetic Twilio callers.
#[derive(Debug, Parser)]
#[command(name = "switchboard-load", version, after_help = AFTER_HELP)]
struct Cli {
    /// Defaults for the engine URL, number and Twilio credentials (written by `switchboard admin load-profile`).
    #[arg(long, env = "SWITCHBOARD_LOAD_PROFILE", default_value = "data/load.json")]
    profile: PathBuf,
    /// Engine base URL (webhook at /twilio/voice, stats at /stats).
    #[arg(long)]
    engine: Option<Url>,
    /// Public base URL the engine checks webhook signatures against (default: --engine).
    #[arg(long)]
    signing_base: Option<Url>,
    #[arg(long)]
    account_sid: Option<String>,
    #[arg(long, env = "SWITCHBOARD_LOAD_AUTH_TOKEN", hide_env_values = true)]
    auth_token: Option<String>,
    /// Number dialled (`To`).
    #[arg(long)]
    number: Option<String>,
    /// Calls to place in total.
    #[arg(long, default_value_t = 50)]
    calls: u64,
    /// Most calls up at once (default: --calls).
    #[arg(long)]
    concurrency: Option<u64>,
    /// New calls per second during ramp-up.
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// After the ramp-up, keep replacing ended calls for this long (e.g. 5m); default: until --calls are placed.
    #[arg(long, value_parser = parse_duration)]
    hold: Option<Duration>,
    /// Call length: fixed (30s) or uniform in a range (20s..40s).
    #[arg(long, default_value = "30s", value_parser = CallLength::parse)]
    call_length: CallLength,
    /// Speak this WAV (any 16-bit PCM) instead of the generated pattern, repeated with --silence between.
    #[arg(long)]
    wav: Option<PathBuf>,
    /// Silence before the first burst (the greeting plays meanwhile).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    lead: Duration,
    /// Length of one generated speech burst.
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    speech: Duration,
    /// Pause after a burst, long enough for the bot's answer.
    #[arg(long, default_value = "5500ms", value_parser = parse_duration)]
    silence: Duration,
    /// Every N-th pause is short so the caller talks over the answer; 0 never.
    #[arg(long, default_value_t = 3)]
    barge_in_every: u32,
    /// The short pause before a barge-in burst (end-of-turn silence plus part of the answer).
    #[arg(long, default_value = "1500ms", value_parser = parse_duration)]
    barge_in_after: Duration,
    /// Seed of the call-length draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bot frame inter-arrival above this counts as a gap.
    #[arg(long, default_value = "40ms", value_parser = parse_duration)]
    gap: Duration,
    /// Do not read the engine's /stats.
    #[arg(long)]
    no_stats: bool,
    /// Also run the same load against the bare-socket baseline and compare.
    #[arg(long)]
    baseline: bool,
    /// Run against the baseline only (no engine needed).
    #[arg(long, conflicts_with = "baseline")]
    baseline_only: bool,
    /// Step concurrency up until a criterion fails, for the engine and the baseline.
    #[arg(long)]
    find_capacity: bool,
    /// Capacity levels (comma-separated); default 25, 50, 100, ... up to 3200.
    #[arg(long, value_delimiter = ',')]
    levels: Vec<u64>,
    /// Capacity criterion: in-target p99 frame time (µs).
    #[arg(long, default_value_t = 5_000)]
    max_frame_p99_us: u64,
    /// Capacity criterion: outbound jitter p99 (ms).
    #[arg(long, default_value_t = 20.0)]
    max_jitter_p99_ms: f64,
    /// Print one JSON document on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Log filter (stderr), e.g. `info` or `switchboard_caller=debug`.
    #[arg(long, default_value = "warn")]
    log_filter: String,
    /// Serve the baseline on ADDR and do nothing else (used by --baseline, which starts it as a child process).
    #[arg(long, hide = true, value_name = "ADDR")]
    serve_baseline: Option<std::net::SocketAddr>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            match e.downcast_ref::<LoadError>() {
                Some(LoadError::Options(_) | LoadError::Profile { .. }) => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(addr) = cli.serve_baseline {
        let server = baseline::spawn(addr).await?;
        println!("listening on {}", server.url());
        tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
        return Ok(());
    }
    let opts = load_options(&cli)?;
    let criteria = Criteria {
        max_frame_p99_us: cli.max_frame_p99_us,
        max_jitter_p99_ms: cli.max_jitter_p99_ms,
    };
    let mut targets = Vec::new();
    if !cli.baseline_only {
        targets.push(engine_target(&cli)?);
    }
    // The baseline runs in its own process so its CPU and RSS figures are its own.
    let baseline_child = if cli.baseline || cli.baseline_only || cli.find_capacity {
        let (child, url) = start_baseline().await?;
        targets.push(Target {
            label: "baseline".to_owned(),
            engine: url,
            signing_base: None,
            account_sid: "AC00000000000000000000000000000000".to_owned(),
            auth_token: "baseline".to_owned(),
            number: "+15005550100".to_owned(),
            read_stats: true,
        });
        Some(child)
    } else {
        None
    };

    let progress = progress_bar();
    let mut runs = Vec::new();
    let mut capacity_report = None;
    if cli.find_capacity {
        let levels = if cli.levels.is_empty() {
            capacity::doubling_levels(25, 3200)
        } else {
            let mut l = cli.levels.clone();
            l.sort_unstable();
            l.dedup();
            l
        };
        let mut found = Vec::new();
        for target in &targets {
            found.push(capacity::search(target, &opts, &levels, &criteria, Some(&progress)).await?);
        }
        capacity_report = Some(CapacityReport {
            criteria,
            targets: found,
        });
    } else {
        for target in &targets {
            let result = runner::run(target, &opts, Some(&progress)).await?;
            runs.push(RunReport::from_run(&result));
        }
    }
    progress.finish_and_clear();
    drop(baseline_child);

    let doc = Document::new(runs, capacity_report);
    if cli.json {
        println!("{}", doc.to_json().context("serialising the report")?);
    } else {
        print!("{}", doc.render_text());
    }
    Ok(())
}

fn load_options(cli: &Cli) -> anyhow::Result<LoadOptions> {
    let audio = match &cli.wav {
        Some(path) => CallerAudio::Wav {
            samples: Arc::from(switchboard_caller::audio::load_wav_8k(path).map_err(LoadError::from)?),
            lead: cli.lead,
            silence: cli.silence,
        },
        None => CallerAudio::Pattern(Pattern {
            lead: cli.lead,
            speech: cli.speech,
            silence: cli.silence,
            barge_in_every: (cli.barge_in_every > 0).then_some(cli.barge_in_every),
            barge_in_after: cli.barge_in_after,
        }),
    };
    let opts = LoadOptions {
        calls: cli.calls,
        concurrency: cli.concurrency.unwrap_or(cli.calls),
        ramp_per_sec: cli.ramp,
        hold: cli.hold,
        call_length: cli.call_length,
        audio,
        seed: cli.seed,
        gap: cli.gap,
        ..LoadOptions::default()
    };
    opts.validate()?;
    Ok(opts)
}

fn engine_target(cli: &Cli) -> anyhow::Result<Target> {
    let profile = ProfileFile::load(&cli.profile)?;
    let from_profile = |f: fn(&ProfileFile) -> &str| profile.as_ref().map(|p| f(p).to_owned());
    let engine = match (&cli.engine, from_profile(|p| &p.engine_url)) {
        (Some(u), _) => u.clone(),
        (None, Some(u)) => Url::parse(&u).map_err(|e| LoadError::Options(format!("engine URL {u}: {e}")))?,
        (None, None) => {
            return Err(LoadError::Options(format!(
                "no engine: pass --engine (and credentials) or create {} with `switchboard admin load-profile`",
                cli.profile.display()
            ))
            .into());
        }
    };
    let target = Target {
        label: "engine".to_owned(),
        engine,
        signing_base: cli.signing_base.clone(),
        account_sid: cli
            .account_sid
            .clone()
            .or_else(|| from_profile(|p| &p.account_sid))
            .unwrap_or_default(),
        auth_token: cli
            .auth_token
            .clone()
            .or_else(|| from_profile(|p| &p.auth_token))
            .unwrap_or_default(),
        number: cli
            .number
            .clone()
            .or_else(|| from_profile(|p| &p.number))
            .unwrap_or_default(),
        read_stats: !cli.no_stats,
    };
    target.validate()?;
    Ok(target)
}

/// Starts `switchboard-load --serve-baseline 127.0.0.1:0` and reads its URL.
async fn start_baseline() -> anyhow::Result<(tokio::process::Child, Url)> {
    let exe = std::env::current_exe().context("locating switchboard-load")?;
    let mut child = tokio::process::Command::new(exe)
        .args(["--serve-baseline", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| LoadError::Baseline(format!("cannot start the baseline process: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| LoadError::Baseline("no stdout from the baseline process".to_owned()))?;
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| LoadError::Baseline("the baseline did not start within 10 s".to_owned()))?
        .map_err(|e| LoadError::Baseline(e.to_string()))?
        .ok_or_else(|| LoadError::Baseline("the baseline exited before listening".to_owned()))?;
    let url = first
        .strip_prefix("listening on ")
        .and_then(|u| Url::parse(u.trim()).ok())
        .ok_or_else(|| LoadError::Baseline(format!("unexpected baseline output: {first}")))?;
    Ok((child, url))
}

fn progress_bar() -> ProgressBar {
    let pb = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} calls  {msg}") {
        pb.set_style(style);
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}
