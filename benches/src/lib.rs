//! Benchmarks and the load tool.
//!
//! Criterion benches for the per-frame media path and the actor hops, and the
//! `switchboard-load` tool, arrive with the benches issue (issue 5) once there
//! is a media path to measure.
