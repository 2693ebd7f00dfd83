//! `switchboard-load`: N synthetic Twilio callers against a running engine,
//! with latency percentiles, engine cost figures, a bare-socket baseline and
//! a capacity search.
//!
//! Each caller is `switchboard_caller::place_call`: the signed voice webhook,
//! the Media Streams socket, real-time 20 ms μ-law frames, marks echoed after
//! playout, `clear` honoured. The caller audio is a generated speech/silence
//! pattern (or a WAV) in which every N-th pause is short, so the next burst
//! lands on the bot's answer: a scheduled barge-in.
//!
//! # Layout
//! - [`options`]: [`LoadOptions`], [`Target`], the caller audio pattern, the profile file.
//! - [`runner`]: [`runner::run`] places the calls (ramp, concurrency, hold) and samples `/stats`.
//! - [`analyze`]: per-call figures from caller events (turn latency, barge-in, marks, jitter).
//! - [`stats`]: nearest-rank percentiles and the engine's bucket histograms.
//! - [`engine_stats`]: the `/stats` client and the per-run engine figures.
//! - [`report`]: the text table and the `--json` document.
//! - [`baseline`]: the bare-socket baseline server.
//! - [`capacity`]: the capacity search.
//! - [`error`]: the [`LoadError`] type.

pub mod analyze;
pub mod baseline;
pub mod capacity;
pub mod engine_stats;
pub mod error;
pub mod options;
pub mod report;
pub mod runner;
pub mod stats;

pub use error::LoadError;
pub use options::{LoadOptions, Target};
