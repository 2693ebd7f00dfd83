//! Benchmarks for Switchboard.
//!
//! # Layout
//! - `benches/media.rs`: Criterion benches of the per-frame media paths
//!   (`inbound_frame`, `outbound_frame`, `resample_8k_16k`, `resample_24k_8k`,
//!   `vad_frame`, `twilio_parse`). Run with `cargo bench -p switchboard-benches`.
//!
//! This library itself is empty; the load tool arrives with its own issue.
