//! The load report: per-run figures as p50/p90/p99/p99.9/max, rendered as a
//! human table or as one JSON document.
//!
//! Guarantees: the JSON document ([`Document`]) carries every figure the
//! table shows, under stable snake_case names, with `null` for a figure that
//! was not measured (never a misleading zero); the text rendering is
//! deterministic for a given report (no clock, no colours).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::load::analyze::ms;
use crate::load::capacity::CapacityReport;
use crate::load::engine_stats::EngineFigures;
use crate::load::runner::{RunResult, Stage};
use crate::load::stats::{Samples, Summary};

/// How many calls reached each stage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallCounts {
    pub placed: u64,
    /// Webhook answered with a stream.
    pub connected: u64,
    pub connect_failed: u64,
    /// Stream opened and `start` sent.
    pub started: u64,
    pub start_failed: u64,
    pub completed: u64,
    pub dropped: u64,
    /// Failure reasons with their counts.
    pub failures: BTreeMap<String, u64>,
}

/// Totals over all calls.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub frames_sent: u64,
    pub frames_received: u64,
    pub marks_received: u64,
    pub marks_echoed: u64,
    pub unechoed_marks: u64,
    pub invalid_messages: u64,
    pub gaps: u64,
    /// Bot frames that arrived after their playout time (audible silence).
    pub underruns: u64,
    pub bot_utterances: u64,
    pub turns_answered: u64,
    pub unanswered_turns: u64,
    pub barge_ins: u64,
    pub barge_ins_cleared: u64,
    pub missed_barge_ins: u64,
}

/// Distributions; `None` when nothing was measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distributions {
    /// Call start → webhook answered (ms).
    pub connect_ms: Option<Summary>,
    /// Call start → stream open and `start` sent (ms).
    pub start_ms: Option<Summary>,
    /// Caller `media` frames sent per started call.
    pub frames_sent_per_call: Option<Summary>,
    /// Bot `media` frames received per started call.
    pub frames_received_per_call: Option<Summary>,
    /// Bot frame pacing jitter (ms, RFC 3550 interarrival jitter), see `analyze`.
    pub jitter_ms: Option<Summary>,
    /// Inter-arrival of bot frames above the gap threshold (ms).
    pub gap_ms: Option<Summary>,
    /// Silence left in the playout by each late bot frame (ms).
    pub underrun_ms: Option<Summary>,
    /// End of caller speech → first bot audio (ms).
    pub turn_ms: Option<Summary>,
    /// Caller speech onset over the bot → `clear` (ms).
    pub barge_in_ms: Option<Summary>,
    /// Mark received → echoed, i.e. the playout wait (ms).
    pub mark_rtt_ms: Option<Summary>,
}

/// One run against one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub target: String,
    pub url: String,
    pub calls_requested: u64,
    pub concurrency: u64,
    pub ramp_per_sec: f64,
    pub hold_seconds: Option<f64>,
    pub call_length_seconds: [f64; 2],
    pub wall_seconds: f64,
    /// Summed stream length of all calls, in minutes.
    pub call_minutes: f64,
    pub calls: CallCounts,
    pub totals: Totals,
    pub distributions: Distributions,
    pub engine: Option<EngineFigures>,
    pub engine_error: Option<String>,
}

impl RunReport {
    pub fn from_run(run: &RunResult) -> RunReport {
        let mut counts = CallCounts::default();
        let mut totals = Totals::default();
        let (mut connect, mut start, mut sent, mut received) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        let mut underruns = Samples::default();
        let (mut jitter, mut gaps, mut turn, mut barge, mut marks) = (
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
            Samples::default(),
        );
        let mut minutes = 0.0;
        for c in &run.calls {
            counts.placed += 1;
            match c.stage {
                Stage::ConnectFailed => counts.connect_failed += 1,
                Stage::StartFailed => counts.start_failed += 1,
                Stage::Dropped => counts.dropped += 1,
                Stage::Completed => counts.completed += 1,
            }
            if let Some(e) = &c.error {
                *counts.failures.entry(e.clone()).or_default() += 1;
            }
            if let Some(v) = c.connect_ms {
                counts.connected += 1;
                connect.push(v);
            }
            if let Some(v) = c.start_ms {
                counts.started += 1;
                start.push(v);
                sent.push(c.frames_sent as f64);
                received.push(c.frames_received as f64);
            }
            minutes += c.duration.as_secs_f64() / 60.0;
            totals.frames_sent += c.frames_sent;
            totals.frames_received += c.frames_received;
            totals.marks_received += c.marks_received;
            totals.marks_echoed += c.marks_echoed;
            totals.unechoed_marks += c.events.unechoed_marks;
            totals.invalid_messages += c.invalid_messages;
            totals.gaps += c.pacing.gaps_ms.len() as u64;
            totals.underruns += c.pacing.underruns_ms.len() as u64;
            underruns.extend(&c.pacing.underruns_ms);
            totals.bot_utterances += c.pacing.utterances;
            totals.turns_answered += c.events.turn_ms.len() as u64;
            totals.unanswered_turns += c.events.unanswered_turns;
            totals.barge_ins += c.events.barge_ins;
            totals.barge_ins_cleared += c.events.barge_in_ms.len() as u64;
            totals.missed_barge_ins += c.events.missed_barge_ins;
            jitter.extend(&c.pacing.jitter_ms);
            gaps.extend(&c.pacing.gaps_ms);
            turn.extend(&c.events.turn_ms);
            barge.extend(&c.events.barge_in_ms);
            marks.extend(&c.events.mark_rtt_ms);
        }
        let o = &run.options;
        RunReport {
            target: run.target.label.clone(),
            url: run.target.engine.to_string(),
            calls_requested: o.calls,
            concurrency: o.concurrency,
            ramp_per_sec: o.ramp_per_sec,
            hold_seconds: o.hold.map(|h| h.as_secs_f64()),
            call_length_seconds: [o.call_length.min.as_secs_f64(), o.call_length.max.as_secs_f64()],
            wall_seconds: run.wall.as_secs_f64(),
            call_minutes: minutes,
            calls: counts,
            totals,
            distributions: Distributions {
                connect_ms: connect.summary(),
                start_ms: start.summary(),
                frames_sent_per_call: sent.summary(),
                frames_received_per_call: received.summary(),
                jitter_ms: jitter.summary(),
                gap_ms: gaps.summary(),
                underrun_ms: underruns.summary(),
                turn_ms: turn.summary(),
                barge_in_ms: barge.summary(),
                mark_rtt_ms: marks.summary(),
            },
            engine: run.engine.clone(),
            engine_error: run.engine_error.clone(),
        }
    }

    /// The distribution rows in display order: (label, unit, summary).
    fn rows(&self) -> [(&'static str, &'static str, Option<Summary>); 10] {
        let d = &self.distributions;
        [
            ("connect (webhook)", "ms", d.connect_ms),
            ("start (stream open)", "ms", d.start_ms),
            ("inbound frames/call", "", d.frames_sent_per_call),
            ("outbound frames/call", "", d.frames_received_per_call),
            ("outbound jitter", "ms", d.jitter_ms),
            ("outbound gaps", "ms", d.gap_ms),
            ("playout underruns", "ms", d.underrun_ms),
            ("turn latency", "ms", d.turn_ms),
            ("barge-in → clear", "ms", d.barge_in_ms),
            ("mark round trip", "ms", d.mark_rtt_ms),
        ]
    }

    /// The human table.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let c = &self.calls;
        let t = &self.totals;
        let _ = writeln!(
            out,
            "== {} ({}) — {} calls, concurrency {}, ramp {}/s, call length {}..{} s, {:.1} s wall, {:.1} call-minutes",
            self.target,
            self.url,
            self.calls_requested,
            self.concurrency,
            fmt_num(self.ramp_per_sec),
            fmt_num(self.call_length_seconds[0]),
            fmt_num(self.call_length_seconds[1]),
            self.wall_seconds,
            self.call_minutes
        );
        let _ = writeln!(
            out,
            "calls: {} placed, {} connected ({} failed), {} started ({} failed), {} completed, {} dropped",
            c.placed, c.connected, c.connect_failed, c.started, c.start_failed, c.completed, c.dropped
        );
        for (reason, n) in &c.failures {
            let _ = writeln!(out, "  {n} × {reason}");
        }
        let _ = writeln!(
            out,
            "frames: {} sent, {} received; marks: {} received, {} echoed, {} unechoed; {} gaps and {} underruns in {} bot \
             utterances; {} invalid messages",
            t.frames_sent,
            t.frames_received,
            t.marks_received,
            t.marks_echoed,
            t.unechoed_marks,
            t.gaps,
            t.underruns,
            t.bot_utterances,
            t.invalid_messages
        );
        let _ = writeln!(
            out,
            "turns: {} answered, {} unanswered; barge-ins: {} attempted, {} cleared, {} missed",
            t.turns_answered, t.unanswered_turns, t.barge_ins, t.barge_ins_cleared, t.missed_barge_ins
        );
        let _ = writeln!(
            out,
            "{:<24} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "metric", "count", "p50", "p90", "p99", "p99.9", "max"
        );
        for (label, unit, summary) in self.rows() {
            let name = if unit.is_empty() {
                label.to_owned()
            } else {
                format!("{label} ({unit})")
            };
            match summary {
                Some(s) => {
                    let _ = writeln!(
                        out,
                        "{name:<24} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
                        s.count,
                        fmt_num(s.p50),
                        fmt_num(s.p90),
                        fmt_num(s.p99),
                        fmt_num(s.p999),
                        fmt_num(s.max)
                    );
                }
                None => {
                    let _ = writeln!(out, "{name:<24} {:>8} {:>9}", 0, "-");
                }
            }
        }
        match &self.engine {
            Some(e) => {
                let _ = writeln!(
                    out,
                    "engine: {} CPU s/call-minute, {} per live call (peak {} live, RSS {} → {}), \
                     in-engine frame p50 {} / p99 {}, dropped frames {} in / {} out, deepest mailbox {}",
                    e.cpu_seconds_per_call_minute
                        .map_or_else(|| "-".to_owned(), |v| format!("{v:.4}")),
                    e.rss_bytes_per_live_call.map_or_else(|| "-".to_owned(), fmt_bytes),
                    e.peak_live_calls,
                    fmt_bytes(e.rss_bytes_before as f64),
                    fmt_bytes(e.rss_bytes_peak as f64),
                    fmt_us(e.inbound_frame_p50_us),
                    fmt_us(e.inbound_frame_p99_us),
                    e.frames_dropped_in,
                    e.frames_dropped_out,
                    e.call_mailbox_max
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "engine: no figures ({})",
                    self.engine_error.as_deref().unwrap_or("stats not read")
                );
            }
        }
        out
    }
}

/// Everything one invocation produced: the `--json` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Document {
    pub tool: &'static str,
    pub version: &'static str,
    pub runs: Vec<RunReport>,
    pub capacity: Option<CapacityReport>,
}

impl Document {
    pub fn new(runs: Vec<RunReport>, capacity: Option<CapacityReport>) -> Self {
        Self {
            tool: "switchboard-load",
            version: env!("CARGO_PKG_VERSION"),
            runs,
            capacity,
        }
    }

    /// One JSON document.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    /// The human report: each run, a side-by-side comparison when there are
    /// several, and the capacity search.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for run in &self.runs {
            out.push_str(&run.render_text());
            out.push('\n');
        }
        if self.runs.len() > 1 {
            out.push_str(&compare(&self.runs));
            out.push('\n');
        }
        if let Some(c) = &self.capacity {
            out.push_str(&c.render_text());
        }
        out
    }
}

/// Key p50/p99 figures of several runs side by side.
pub fn compare(runs: &[RunReport]) -> String {
    let mut out = String::from("== side by side (p50 / p99)\n");
    let _ = write!(out, "{:<22}", "metric");
    for r in runs {
        let _ = write!(out, " {:>21}", r.target);
    }
    out.push('\n');
    let labels: Vec<(&str, &str)> = runs
        .first()
        .map(|r| r.rows().iter().map(|(l, u, _)| (*l, *u)).collect())
        .unwrap_or_default();
    for (i, (label, _)) in labels.iter().enumerate() {
        let _ = write!(out, "{label:<22}");
        for r in runs {
            let cell = r.rows()[i].2.map_or_else(
                || "-".to_owned(),
                |s| format!("{} / {}", fmt_num(s.p50), fmt_num(s.p99)),
            );
            let _ = write!(out, " {cell:>21}");
        }
        out.push('\n');
    }
    let _ = write!(out, "{:<22}", "completed calls");
    for r in runs {
        let _ = write!(out, " {:>21}", format!("{}/{}", r.calls.completed, r.calls.placed));
    }
    out.push('\n');
    out
}

/// A number with at most one decimal, none when whole.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if (v - v.round()).abs() < 0.05 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

fn fmt_bytes(v: f64) -> String {
    if v >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", v / 1024.0)
    }
}

fn fmt_us(v: Option<u64>) -> String {
    match v {
        None => "-".to_owned(),
        Some(u64::MAX) => ">100 ms".to_owned(),
        Some(us) => format!("≤{us} µs"),
    }
}

/// `d` in ms with one decimal, for logs.
pub fn fmt_ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", ms(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::analyze::{EventFigures, Pacing};
    use crate::load::options::{LoadOptions, Target};
    use crate::load::runner::{CallOutcome, RunResult};
    use std::time::Duration;

    fn outcome(index: u64, stage: Stage, frames: u64) -> CallOutcome {
        let ok = stage != Stage::ConnectFailed;
        CallOutcome {
            index,
            stage,
            error: (stage != Stage::Completed).then(|| "HTTP 503".to_owned()),
            connect_ms: ok.then_some(10.0 + index as f64),
            start_ms: ok.then_some(20.0 + index as f64),
            frames_sent: frames,
            frames_received: frames / 2,
            marks_received: 3,
            marks_echoed: 3,
            invalid_messages: 0,
            duration: Duration::from_secs(30),
            pacing: Pacing {
                jitter_ms: vec![0.0, 1.0, 2.0],
                gaps_ms: vec![],
                underruns_ms: vec![],
                utterances: 1,
            },
            events: EventFigures {
                turn_ms: vec![600.0],
                barge_ins: 1,
                barge_in_ms: vec![240.0],
                mark_rtt_ms: vec![1000.0, 1100.0, 1200.0],
                ..EventFigures::default()
            },
        }
    }

    fn report() -> RunReport {
        let target = Target {
            label: "engine".into(),
            engine: url::Url::parse("http://127.0.0.1:8080").expect("url"),
            signing_base: None,
            account_sid: "AC1".into(),
            auth_token: "t".into(),
            number: "+15005550100".into(),
            read_stats: true,
        };
        let options = LoadOptions {
            calls: 3,
            concurrency: 3,
            ..LoadOptions::default()
        };
        let run = RunResult {
            target,
            options,
            calls: vec![
                outcome(0, Stage::Completed, 1500),
                outcome(1, Stage::Completed, 1500),
                outcome(2, Stage::ConnectFailed, 0),
            ],
            wall: Duration::from_secs(31),
            engine: None,
            engine_error: Some("stats at http://x/stats: HTTP 404".into()),
        };
        RunReport::from_run(&run)
    }

    #[test]
    fn counts_totals_and_distributions_come_from_the_calls() {
        let r = report();
        assert_eq!(r.calls.placed, 3);
        assert_eq!((r.calls.connected, r.calls.started, r.calls.completed), (2, 2, 2));
        assert_eq!(r.calls.connect_failed, 1);
        assert_eq!(r.calls.failures.get("HTTP 503"), Some(&1));
        assert_eq!(r.totals.frames_sent, 3000);
        assert_eq!(r.totals.marks_echoed, 9);
        let d = &r.distributions;
        assert_eq!(d.connect_ms.map(|s| (s.count, s.p50, s.max)), Some((2, 10.0, 11.0)));
        assert_eq!(d.frames_received_per_call.map(|s| s.p50), Some(750.0));
        // Jitter samples of all three calls are pooled (the failed one reported some too).
        assert_eq!(d.jitter_ms.map(|s| s.count), Some(9));
        assert_eq!(d.mark_rtt_ms.map(|s| (s.p50, s.max)), Some((1100.0, 1200.0)));
        assert_eq!(d.gap_ms, None);
        assert!((r.call_minutes - 1.5).abs() < 1e-9);
    }

    #[test]
    fn text_report_has_the_table_and_counts() {
        let text = report().render_text();
        assert!(text.contains("calls: 3 placed, 2 connected (1 failed), 2 started (0 failed), 2 completed"));
        assert!(text.contains("  1 × HTTP 503"));
        let header = text.lines().find(|l| l.starts_with("metric")).expect("header");
        for col in ["count", "p50", "p90", "p99", "p99.9", "max"] {
            assert!(header.contains(col), "{header}");
        }
        let marks = text
            .lines()
            .find(|l| l.starts_with("mark round trip"))
            .expect("marks row");
        let cells: Vec<&str> = marks.split_whitespace().rev().take(6).collect();
        // max, p99.9, p99, p90, p50, count (reversed).
        assert_eq!(cells, vec!["1200", "1200", "1200", "1200", "1100", "9"]);
        let gaps = text.lines().find(|l| l.starts_with("outbound gaps")).expect("gaps row");
        assert!(gaps.trim_end().ends_with('-'));
        assert!(text.contains("engine: no figures (stats at http://x/stats: HTTP 404)"));
    }

    #[test]
    fn json_document_names_every_figure_and_uses_null_for_unmeasured() {
        let doc = Document::new(vec![report(), report()], None);
        let v: serde_json::Value = serde_json::from_str(&doc.to_json().expect("json")).expect("parse");
        assert_eq!(v["tool"], "switchboard-load");
        let run = &v["runs"][0];
        assert_eq!(run["calls"]["connect_failed"], 1);
        assert_eq!(run["distributions"]["turn_ms"]["p99"], 600.0);
        assert_eq!(run["distributions"]["mark_rtt_ms"]["p999"], 1200.0);
        assert!(run["distributions"]["gap_ms"].is_null());
        assert!(run["engine"].is_null());
        assert!(v["capacity"].is_null());
        let text = doc.render_text();
        assert!(text.contains("== side by side (p50 / p99)"));
        assert!(text.contains("completed calls"));
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(2.26), "2.3");
        assert_eq!(fmt_num(f64::NAN), "-");
        assert_eq!(fmt_us(Some(5000)), "≤5000 µs");
        assert_eq!(fmt_us(Some(u64::MAX)), ">100 ms");
    }
}
