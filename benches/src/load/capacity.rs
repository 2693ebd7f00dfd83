//! Capacity search: step concurrency up until the target stops keeping up.
//!
//! A level fails when any of these holds over its run:
//! - the in-target p99 inbound frame processing time (from `/stats`) exceeds
//!   `max_frame_p99_us` (default 5 ms);
//! - a frame was dropped: the target's dropped-frame counters grew, or a call
//!   failed to connect, start, or complete (a lost call drops all its frames);
//! - the caller-measured outbound pacing jitter p99 exceeds `max_jitter_p99_ms` (20 ms).
//!
//! Guarantees: levels run in ascending order and the search stops at the
//! first failing level; the reported capacity is the last level that
//! passed (`None` when the first one failed); every step lists the reasons
//! it failed, so a result can be checked by hand.

use std::fmt::Write as _;

use indicatif::ProgressBar;
use serde::Serialize;

use crate::load::error::LoadError;
use crate::load::options::{LoadOptions, Target};
use crate::load::report::{RunReport, fmt_num};
use crate::load::runner;

/// The pass/fail thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Criteria {
    pub max_frame_p99_us: u64,
    pub max_jitter_p99_ms: f64,
}

impl Default for Criteria {
    fn default() -> Self {
        Self {
            max_frame_p99_us: 5_000,
            max_jitter_p99_ms: 20.0,
        }
    }
}

/// One level of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub concurrency: u64,
    pub passed: bool,
    pub reasons: Vec<String>,
    pub frame_p99_us: Option<u64>,
    pub jitter_p99_ms: Option<f64>,
    pub dropped_frames: Option<u64>,
    pub failed_calls: u64,
    pub run: RunReport,
}

/// The search over one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetCapacity {
    pub target: String,
    pub steps: Vec<Step>,
    /// The last level that passed.
    pub capacity: Option<u64>,
}

/// The search over every target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityReport {
    pub criteria: Criteria,
    pub targets: Vec<TargetCapacity>,
}

/// Judges one level's run against the criteria.
pub fn judge(run: RunReport, criteria: &Criteria) -> Step {
    let mut reasons = Vec::new();
    let frame_p99_us = run.engine.as_ref().and_then(|e| e.inbound_frame_p99_us);
    match frame_p99_us {
        Some(p99) if p99 > criteria.max_frame_p99_us => reasons.push(format!(
            "in-target frame p99 {} exceeds {} µs",
            if p99 == u64::MAX {
                ">100000".to_owned()
            } else {
                p99.to_string()
            },
            criteria.max_frame_p99_us
        )),
        Some(_) => {}
        None => reasons.push("no in-target frame timings (/stats unavailable or no frames)".to_owned()),
    }
    let dropped_frames = run.engine.as_ref().map(|e| e.frames_dropped_in + e.frames_dropped_out);
    if let Some(d) = dropped_frames.filter(|&d| d > 0) {
        reasons.push(format!("{d} frames dropped by the target"));
    }
    let failed_calls = run.calls.placed - run.calls.completed;
    if failed_calls > 0 {
        reasons.push(format!("{failed_calls} calls failed or dropped"));
    }
    let jitter_p99_ms = run.distributions.jitter_ms.map(|s| s.p99);
    match jitter_p99_ms {
        Some(j) if j > criteria.max_jitter_p99_ms => reasons.push(format!(
            "outbound jitter p99 {} ms exceeds {} ms",
            fmt_num(j),
            fmt_num(criteria.max_jitter_p99_ms)
        )),
        Some(_) => {}
        None => reasons.push("no outbound frames received".to_owned()),
    }
    Step {
        concurrency: run.concurrency,
        passed: reasons.is_empty(),
        reasons,
        frame_p99_us,
        jitter_p99_ms,
        dropped_frames,
        failed_calls,
        run,
    }
}

/// The last passing level of steps run in ascending order up to the first failure.
pub fn capacity(steps: &[Step]) -> Option<u64> {
    steps.iter().take_while(|s| s.passed).last().map(|s| s.concurrency)
}

/// Levels `start, 2·start, 4·start, ...` up to `max` inclusive.
pub fn doubling_levels(start: u64, max: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut level = start.max(1);
    while level <= max {
        out.push(level);
        level = level.saturating_mul(2);
    }
    out
}

/// Runs `levels` (ascending) against `target`, each as `level` calls at
/// concurrency `level` with `base`'s call length, ramp and audio, and stops
/// at the first failing level.
pub async fn search(
    target: &Target,
    base: &LoadOptions,
    levels: &[u64],
    criteria: &Criteria,
    progress: Option<&ProgressBar>,
) -> Result<TargetCapacity, LoadError> {
    let mut steps = Vec::new();
    for &level in levels {
        let opts = LoadOptions {
            calls: level,
            concurrency: level,
            hold: None,
            ..base.clone()
        };
        tracing::info!(target = %target.label, level, "capacity step");
        let run = runner::run(target, &opts, progress).await?;
        let step = judge(RunReport::from_run(&run), criteria);
        let passed = step.passed;
        if !passed {
            tracing::info!(target = %target.label, level, reasons = ?step.reasons, "capacity step failed");
        }
        steps.push(step);
        if !passed {
            break;
        }
    }
    Ok(TargetCapacity {
        target: target.label.clone(),
        capacity: capacity(&steps),
        steps,
    })
}

impl CapacityReport {
    pub fn render_text(&self) -> String {
        let mut out = format!(
            "== capacity search (fails at: in-target frame p99 > {} µs, any dropped frame or failed call, \
             jitter p99 > {} ms)\n",
            self.criteria.max_frame_p99_us,
            fmt_num(self.criteria.max_jitter_p99_ms)
        );
        for t in &self.targets {
            let _ = writeln!(
                out,
                "{}: capacity {}",
                t.target,
                t.capacity.map_or_else(
                    || "below the first level".to_owned(),
                    |c| format!("{c} concurrent calls")
                )
            );
            for s in &t.steps {
                let _ = writeln!(
                    out,
                    "  {:>6} calls: {} (frame p99 {}, jitter p99 {}){}",
                    s.concurrency,
                    if s.passed { "pass" } else { "FAIL" },
                    s.frame_p99_us.map_or_else(|| "-".to_owned(), |v| format!("≤{v} µs")),
                    s.jitter_p99_ms
                        .map_or_else(|| "-".to_owned(), |v| format!("{} ms", fmt_num(v))),
                    if s.reasons.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", s.reasons.join("; "))
                    }
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::engine_stats::EngineFigures;
    use crate::load::report::{CallCounts, Distributions, Totals};
    use crate::load::stats::Summary;

    fn run(concurrency: u64, frame_p99_us: u64, jitter_p99: f64, dropped: u64, completed: u64) -> RunReport {
        let s = Summary::of(&[jitter_p99]).expect("one");
        RunReport {
            target: "engine".into(),
            url: "http://e".into(),
            calls_requested: concurrency,
            concurrency,
            ramp_per_sec: 10.0,
            hold_seconds: None,
            call_length_seconds: [20.0, 20.0],
            wall_seconds: 21.0,
            call_minutes: 1.0,
            calls: CallCounts {
                placed: concurrency,
                completed,
                ..CallCounts::default()
            },
            totals: Totals::default(),
            distributions: Distributions {
                jitter_ms: Some(s),
                ..Distributions::default()
            },
            engine: Some(EngineFigures {
                inbound_frame_p99_us: Some(frame_p99_us),
                frames_dropped_out: dropped,
                ..EngineFigures::default()
            }),
            engine_error: None,
        }
    }

    #[test]
    fn each_criterion_fails_a_level_on_its_own() {
        let c = Criteria::default();
        assert!(judge(run(25, 5_000, 20.0, 0, 25), &c).passed);
        let slow = judge(run(50, 10_000, 1.0, 0, 50), &c);
        assert!(
            !slow.passed && slow.reasons[0].contains("frame p99 10000"),
            "{:?}",
            slow.reasons
        );
        let dropped = judge(run(50, 100, 1.0, 3, 50), &c);
        assert_eq!(dropped.reasons, vec!["3 frames dropped by the target".to_owned()]);
        let failed = judge(run(50, 100, 1.0, 0, 48), &c);
        assert_eq!(failed.reasons, vec!["2 calls failed or dropped".to_owned()]);
        let jittery = judge(run(50, 100, 20.5, 0, 50), &c);
        assert_eq!(
            jittery.reasons,
            vec!["outbound jitter p99 20.5 ms exceeds 20 ms".to_owned()]
        );
    }

    #[test]
    fn capacity_is_the_last_pass_before_the_first_failure() {
        let c = Criteria::default();
        let steps = vec![
            judge(run(25, 100, 1.0, 0, 25), &c),
            judge(run(50, 200, 2.0, 0, 50), &c),
            judge(run(100, 9_000, 2.0, 0, 100), &c),
        ];
        assert_eq!(capacity(&steps), Some(50));
        assert_eq!(capacity(&steps[2..]), None);
        let text = CapacityReport {
            criteria: c,
            targets: vec![TargetCapacity {
                target: "engine".into(),
                capacity: capacity(&steps),
                steps,
            }],
        }
        .render_text();
        assert!(text.contains("engine: capacity 50 concurrent calls"));
        assert!(text.contains("100 calls: FAIL"));
        assert_eq!(doubling_levels(25, 200), vec![25, 50, 100, 200]);
        assert_eq!(doubling_levels(25, 10), Vec::<u64>::new());
    }
}
