//! Benchmarks and the load tool for Switchboard.
//!
//! # Layout
//! - `benches/media.rs`: Criterion benches of the per-frame media paths
//!   (`inbound_frame`, `outbound_frame`, `resample_8k_16k`, `resample_24k_8k`,
//!   `vad_frame`, `twilio_parse`). Run with `cargo bench -p switchboard-benches`.
//! - `benches/actors.rs`: the actor layer (`actor_hop`, `call_spawn`).
//! - `benches/live_fanout.rs`: one call event fanned out to 100 supervisor
//!   live queues (`live_fanout_100`).
//! - [`load`]: the load tool's library (`switchboard-load`, `src/bin/switchboard-load.rs`):
//!   synthetic Twilio callers against an engine, the bare-socket baseline and
//!   the capacity search.

pub mod load;
