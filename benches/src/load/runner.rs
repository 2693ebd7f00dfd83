//! Runs N synthetic Twilio callers against one target and collects what each measured.
//!
//! Guarantees:
//! - At most `concurrency` calls are up at once; new calls start at most
//!   `ramp_per_sec` per second, so the ramp-up takes `concurrency / ramp` s.
//! - No new call starts after `calls` were placed or, with `hold`, after the
//!   ramp-up plus `hold`; calls already up always run to their end.
//! - Every placed call yields exactly one [`CallOutcome`], failed or not.
//! - `/stats` is read before the first call, every `stats_interval` while
//!   calls run, and after the last call ended; a failed reading is logged and
//!   reported, never fatal to the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::ProgressBar;
use switchboard_caller::{CallOptions, CallerError, CallerEvent, Hangup, place_call};
use switchboard_media::vad::synth::Noise;
use tokio::sync::{Semaphore, oneshot};
use tokio::time::Instant;

use crate::load::analyze::{Analyzer, EventFigures, Pacing, ms, pacing};
use crate::load::engine_stats::{self, EngineFigures, PeakTracker, StatsClient};
use crate::load::error::LoadError;
use crate::load::options::{AudioCache, LoadOptions, Target};

/// How far a call got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The webhook failed or refused the call.
    ConnectFailed,
    /// The webhook answered but the stream socket did not open.
    StartFailed,
    /// The stream ran but broke off (socket error, or closed without a close frame).
    Dropped,
    /// The call ran to its end (the caller hung up, or the engine closed it normally).
    Completed,
}

/// What one call measured.
#[derive(Debug, Clone)]
pub struct CallOutcome {
    pub index: u64,
    pub stage: Stage,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// Call start → webhook answered.
    pub connect_ms: Option<f64>,
    /// Call start → `start` sent on the open stream.
    pub start_ms: Option<f64>,
    pub frames_sent: u64,
    pub frames_received: u64,
    pub marks_received: u64,
    pub marks_echoed: u64,
    pub invalid_messages: u64,
    /// Stream length.
    pub duration: Duration,
    pub pacing: Pacing,
    pub events: EventFigures,
}

/// A finished run: every call's outcome and the engine's figures.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub target: Target,
    pub options: LoadOptions,
    pub calls: Vec<CallOutcome>,
    pub wall: Duration,
    pub engine: Option<EngineFigures>,
    /// Why the engine figures are missing or partial.
    pub engine_error: Option<String>,
}

/// Live counters for the progress display.
#[derive(Debug, Default)]
pub struct Live {
    pub placed: AtomicU64,
    pub up: AtomicU64,
    pub done: AtomicU64,
    pub failed: AtomicU64,
}

/// Places the calls of `opts` on `target` and waits for all of them.
/// `progress`, when given, is advanced per finished call and shows live counts.
pub async fn run(target: &Target, opts: &LoadOptions, progress: Option<&ProgressBar>) -> Result<RunResult, LoadError> {
    opts.validate()?;
    target.validate()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .map_err(|e| LoadError::Options(format!("HTTP client: {e}")))?;
    let stats = if target.read_stats {
        Some(StatsClient::new(&target.engine, http.clone())?)
    } else {
        None
    };
    let mut engine_error: Option<String> = None;
    let before = match &stats {
        Some(s) => match s.read().await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::warn!(target = %target.label, error = %e, "engine stats unavailable; engine figures skipped");
                engine_error = Some(e.to_string());
                None
            }
        },
        None => None,
    };
    let (stop_sampler, sampler) = match (&stats, &before) {
        (Some(client), Some(_)) => {
            let (tx, rx) = oneshot::channel();
            (
                Some(tx),
                Some(tokio::spawn(sample(client.clone(), opts.stats_interval, rx))),
            )
        }
        _ => (None, None),
    };

    let live = Arc::new(Live::default());
    if let Some(pb) = progress {
        pb.set_length(opts.calls);
        pb.set_position(0);
    }
    let ticker = progress.map(|pb| {
        let pb = pb.clone();
        let live = live.clone();
        let label = target.label.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(250));
            loop {
                every.tick().await;
                pb.set_message(format!(
                    "{label}: {} up, {} placed, {} failed",
                    live.up.load(Ordering::Relaxed),
                    live.placed.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed)
                ));
            }
        })
    });

    let started = Instant::now();
    let slots = Arc::new(Semaphore::new(usize::try_from(opts.concurrency).unwrap_or(usize::MAX)));
    let spacing = Duration::from_secs_f64(1.0 / opts.ramp_per_sec);
    let deadline = opts
        .hold
        .map(|hold| started + Duration::from_secs_f64(opts.concurrency as f64 / opts.ramp_per_sec) + hold);
    let mut audio = AudioCache::new(opts.audio.clone());
    let mut rng = Noise::new(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut tasks = Vec::with_capacity(usize::try_from(opts.calls).unwrap_or(0));
    let mut next_start = started;
    for index in 0..opts.calls {
        tokio::time::sleep_until(next_start).await;
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        if deadline.is_some_and(|d| Instant::now() >= d) {
            tracing::info!(target = %target.label, placed = index, "hold elapsed: no more new calls");
            break;
        }
        next_start = Instant::now() + spacing;
        let length = opts.call_length.pick((rng.next_f64() + 1.0) / 2.0);
        let mut call = CallOptions::new(
            target.engine.clone(),
            &target.account_sid,
            &target.auth_token,
            &format!("{}{:07}", opts.from_prefix, index % 10_000_000),
            &target.number,
        );
        call.signing_base = target.signing_base.clone();
        call.caller_audio = audio.get(length);
        call.lead_silence = Duration::ZERO;
        call.tail = Duration::ZERO;
        call.record_bot = false;
        call.record_arrivals = true;
        call.http = Some(http.clone());
        let live = live.clone();
        let progress = progress.cloned();
        let (gap, split) = (opts.gap, opts.utterance_split);
        live.placed.fetch_add(1, Ordering::Relaxed);
        live.up.fetch_add(1, Ordering::Relaxed);
        tasks.push(tokio::spawn(async move {
            let outcome = one_call(index, call, gap, split).await;
            live.up.fetch_sub(1, Ordering::Relaxed);
            live.done.fetch_add(1, Ordering::Relaxed);
            if outcome.stage != Stage::Completed {
                live.failed.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(pb) = progress {
                pb.inc(1);
            }
            drop(permit);
            outcome
        }));
    }
    let mut calls = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(outcome) => calls.push(outcome),
            Err(e) => tracing::error!(target = %target.label, error = %e, "call task failed"),
        }
    }
    let wall = started.elapsed();
    if let Some(t) = ticker {
        t.abort();
    }

    let mut engine = None;
    if let (Some(client), Some(before), Some(stop), Some(sampler)) = (&stats, before, stop_sampler, sampler) {
        let _ = stop.send(());
        let peak = sampler.await.unwrap_or_default();
        match client.read().await {
            Ok(after) => {
                let minutes: f64 = calls.iter().map(|c| c.duration.as_secs_f64() / 60.0).sum();
                engine = Some(engine_stats::figures(&before, &after, &peak, minutes));
            }
            Err(e) => {
                tracing::warn!(target = %target.label, error = %e, "final engine stats unavailable");
                engine_error = Some(e.to_string());
            }
        }
    }
    Ok(RunResult {
        target: target.clone(),
        options: opts.clone(),
        calls,
        wall,
        engine,
        engine_error,
    })
}

/// Samples `/stats` until told to stop; returns the peak it saw.
async fn sample(client: StatsClient, every: Duration, mut stop: oneshot::Receiver<()>) -> PeakTracker {
    let mut peak = PeakTracker::default();
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = &mut stop => return peak,
            _ = tick.tick() => match client.read().await {
                Ok(s) => peak.observe(&s),
                Err(e) => tracing::debug!(error = %e, "stats sample failed"),
            },
        }
    }
}

/// One call with its event analysis.
async fn one_call(index: u64, call: CallOptions, gap: Duration, split: Duration) -> CallOutcome {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<CallerEvent>();
    let t0 = Instant::now();
    let consume = async move {
        let mut analyzer = Analyzer::new();
        let (mut connect, mut start) = (None, None);
        while let Some(event) = rx.recv().await {
            match &event {
                CallerEvent::Answered { .. } => connect = Some(ms(t0.elapsed())),
                CallerEvent::Started { .. } => start = Some(ms(t0.elapsed())),
                _ => {}
            }
            analyzer.on_event(&event);
        }
        (analyzer.finish(), connect, start)
    };
    let (result, (events, connect_ms, start_ms)) = tokio::join!(place_call(call, Some(tx)), consume);
    let mut outcome = CallOutcome {
        index,
        stage: Stage::Completed,
        error: None,
        connect_ms,
        start_ms,
        frames_sent: 0,
        frames_received: 0,
        marks_received: 0,
        marks_echoed: 0,
        invalid_messages: 0,
        duration: Duration::ZERO,
        pacing: Pacing::default(),
        events,
    };
    match result {
        Ok(report) => {
            if let Hangup::ConnectionLost(reason) = &report.hangup {
                outcome.stage = Stage::Dropped;
                outcome.error = Some(reason.clone());
            }
            outcome.pacing = pacing(&report.bot_frame_arrivals, &report.clears, gap, split);
            outcome.frames_sent = report.frames_sent;
            outcome.frames_received = report.frames_received;
            outcome.marks_received = report.marks_received;
            outcome.marks_echoed = report.marks_echoed;
            outcome.invalid_messages = report.invalid_messages;
            outcome.duration = report.duration;
        }
        Err(e) => {
            outcome.stage = match (connect_ms, start_ms) {
                (None, _) => Stage::ConnectFailed,
                (Some(_), None) => Stage::StartFailed,
                (Some(_), Some(_)) => Stage::Dropped,
            };
            outcome.error = Some(describe(&e));
            tracing::debug!(call = index, error = %e, stage = ?outcome.stage, "synthetic call failed");
        }
    }
    outcome
}

/// A failure reason short and stable enough to group calls by.
fn describe(e: &CallerError) -> String {
    match e {
        CallerError::Http { status, .. } => format!("HTTP {status}"),
        CallerError::Unreachable { reason, .. } => format!("unreachable: {reason}"),
        other => other.to_string(),
    }
}
