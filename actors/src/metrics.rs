//! Process-wide media figures: lock-free counters and fixed-bucket
//! histograms the audio path updates with single atomic adds (no allocation,
//! no lock), rendered on demand as Prometheus text or a JSON snapshot.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Registry;

/// Upper bounds of the histogram buckets, in microseconds.
const BOUNDS_US: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// A latency histogram with fixed buckets (Prometheus `le` semantics).
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_ns: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        HistogramSnapshot {
            bounds_us: BOUNDS_US.to_vec(),
            counts,
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Ordering::Relaxed);
            match BOUNDS_US.get(i) {
                Some(&b) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", b as f64 / 1e6);
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let _ = writeln!(
            out,
            "{name}_sum {}\n{name}_count {}",
            self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            self.count.load(Ordering::Relaxed)
        );
    }
}

/// A histogram as read at one moment; `counts[i]` is the bucket `<= bounds_us[i]`
/// (not cumulative), the last one is everything above.
/// It is also the wire form of `/stats`, which the load tool reads back:
/// every field defaults when missing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistogramSnapshot {
    pub bounds_us: Vec<u64>,
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl HistogramSnapshot {
    /// What was observed between `before` and `self` (bucket-wise difference).
    /// Counters never go backwards in one process; if they do (the engine
    /// restarted), `self` alone is returned.
    pub fn since(&self, before: &HistogramSnapshot) -> HistogramSnapshot {
        let restarted = self.count < before.count
            || self.bounds_us != before.bounds_us
            || self.counts.iter().zip(&before.counts).any(|(a, b)| a < b);
        if restarted || before.counts.is_empty() {
            return self.clone();
        }
        HistogramSnapshot {
            bounds_us: self.bounds_us.clone(),
            counts: self
                .counts
                .iter()
                .zip(before.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a - b)
                .collect(),
            count: self.count - before.count,
            sum_seconds: (self.sum_seconds - before.sum_seconds).max(0.0),
        }
    }

    /// Mean in µs; `None` when empty.
    pub fn mean_us(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum_seconds * 1e6 / self.count as f64)
    }

    /// The bucket bound at or above quantile `q` (0..=1), in µs; `None` when empty.
    /// Observations above the last bound report `u64::MAX`; bucketed, so it
    /// over-reports by at most one bucket width.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(self.bounds_us.get(i).copied().unwrap_or(u64::MAX));
            }
        }
        Some(u64::MAX)
    }
}

/// Counters and histograms of the media path.
#[derive(Debug)]
pub struct MediaMetrics {
    /// Actor time per inbound frame: decode, resample, VAD, STT feed.
    pub inbound_frame: Histogram,
    /// Actor time per playback tick: frames and marks out.
    pub outbound_tick: Histogram,
    /// Barge-in, engine share: the confirming frame's arrival at the actor → `clear` queued.
    pub barge_in: Histogram,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Caller frames the socket task could not hand to a full call mailbox.
    pub frames_dropped_in: AtomicU64,
    /// Outbound frames that found the socket's queue full.
    pub frames_dropped_out: AtomicU64,
    pub calls_started: AtomicU64,
    pub calls_ended: AtomicU64,
    pub barge_ins: AtomicU64,
    /// Provider-client actors restarted by their agent session after a crash.
    pub client_restarts: AtomicU64,
}

static METRICS: MediaMetrics = MediaMetrics {
    inbound_frame: Histogram::new(),
    outbound_tick: Histogram::new(),
    barge_in: Histogram::new(),
    frames_in: AtomicU64::new(0),
    frames_out: AtomicU64::new(0),
    frames_dropped_in: AtomicU64::new(0),
    frames_dropped_out: AtomicU64::new(0),
    calls_started: AtomicU64::new(0),
    calls_ended: AtomicU64::new(0),
    barge_ins: AtomicU64::new(0),
    client_restarts: AtomicU64::new(0),
};

/// The process's media figures.
pub fn media() -> &'static MediaMetrics {
    &METRICS
}

/// Everything `/metrics` and the JSON stats report.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub live_calls: usize,
    pub live_conversations: usize,
    pub live_agent_sessions: usize,
    pub calls_started: u64,
    pub calls_ended: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub frames_dropped_in: u64,
    pub frames_dropped_out: u64,
    pub barge_ins: u64,
    pub provider_client_restarts: u64,
    /// Messages waiting in call mailboxes: the deepest one and the total.
    pub call_mailbox_max: usize,
    pub call_mailbox_total: usize,
    pub inbound_frame: HistogramSnapshot,
    pub outbound_tick: HistogramSnapshot,
    pub barge_in: HistogramSnapshot,
    /// Resident set size of the process, from /proc (0 where unavailable).
    pub rss_bytes: u64,
    /// User + system CPU time of the process so far.
    pub cpu_seconds: f64,
}

/// Reads the figures now.
pub fn snapshot(registry: &Registry) -> Snapshot {
    let m = media();
    let (mut max, mut total) = (0, 0);
    for handle in registry.calls().filter(|_| true) {
        let depth = handle.mailbox_len();
        max = max.max(depth);
        total += depth;
    }
    let (rss_bytes, cpu_seconds) = process_figures();
    Snapshot {
        live_calls: registry.calls().len(),
        live_conversations: registry.conversations().len(),
        live_agent_sessions: registry.agent_sessions().len(),
        calls_started: m.calls_started.load(Ordering::Relaxed),
        calls_ended: m.calls_ended.load(Ordering::Relaxed),
        frames_in: m.frames_in.load(Ordering::Relaxed),
        frames_out: m.frames_out.load(Ordering::Relaxed),
        frames_dropped_in: m.frames_dropped_in.load(Ordering::Relaxed),
        frames_dropped_out: m.frames_dropped_out.load(Ordering::Relaxed),
        barge_ins: m.barge_ins.load(Ordering::Relaxed),
        provider_client_restarts: m.client_restarts.load(Ordering::Relaxed),
        call_mailbox_max: max,
        call_mailbox_total: total,
        inbound_frame: m.inbound_frame.snapshot(),
        outbound_tick: m.outbound_tick.snapshot(),
        barge_in: m.barge_in.snapshot(),
        rss_bytes,
        cpu_seconds,
    }
}

/// The figures in the Prometheus text exposition format.
pub fn render_prometheus(registry: &Registry) -> String {
    let s = snapshot(registry);
    let m = media();
    let mut out = String::with_capacity(4096);
    let mut gauge = |name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        "switchboard_live_calls",
        "Calls with a live actor.",
        "gauge",
        s.live_calls.to_string(),
    );
    gauge(
        "switchboard_live_conversations",
        "Conversations with a live actor.",
        "gauge",
        s.live_conversations.to_string(),
    );
    gauge(
        "switchboard_live_agent_sessions",
        "Agent sessions with a live actor.",
        "gauge",
        s.live_agent_sessions.to_string(),
    );
    gauge(
        "switchboard_calls_started_total",
        "Media streams started.",
        "counter",
        s.calls_started.to_string(),
    );
    gauge(
        "switchboard_calls_ended_total",
        "Media streams ended.",
        "counter",
        s.calls_ended.to_string(),
    );
    gauge(
        "switchboard_frames_in_total",
        "Caller frames processed.",
        "counter",
        s.frames_in.to_string(),
    );
    gauge(
        "switchboard_frames_out_total",
        "Agent frames sent.",
        "counter",
        s.frames_out.to_string(),
    );
    gauge(
        "switchboard_frames_dropped_in_total",
        "Caller frames dropped at a full call mailbox.",
        "counter",
        s.frames_dropped_in.to_string(),
    );
    gauge(
        "switchboard_frames_dropped_out_total",
        "Agent frames dropped at a full socket queue.",
        "counter",
        s.frames_dropped_out.to_string(),
    );
    gauge(
        "switchboard_barge_ins_total",
        "Barge-ins (playback cleared).",
        "counter",
        s.barge_ins.to_string(),
    );
    gauge(
        "switchboard_provider_client_restarts_total",
        "Provider-client actors restarted after a crash.",
        "counter",
        s.provider_client_restarts.to_string(),
    );
    gauge(
        "switchboard_call_mailbox_max",
        "Deepest call mailbox right now.",
        "gauge",
        s.call_mailbox_max.to_string(),
    );
    gauge(
        "switchboard_call_mailbox_total",
        "Messages waiting in all call mailboxes.",
        "gauge",
        s.call_mailbox_total.to_string(),
    );
    gauge(
        "process_resident_memory_bytes",
        "Resident set size.",
        "gauge",
        s.rss_bytes.to_string(),
    );
    gauge(
        "process_cpu_seconds_total",
        "User and system CPU time.",
        "counter",
        s.cpu_seconds.to_string(),
    );
    m.inbound_frame.render(
        &mut out,
        "switchboard_inbound_frame_seconds",
        "Call actor time per caller frame (decode, resample, VAD, STT feed).",
    );
    m.outbound_tick.render(
        &mut out,
        "switchboard_outbound_tick_seconds",
        "Call actor time per playback tick (frames and marks out).",
    );
    m.barge_in.render(
        &mut out,
        "switchboard_barge_in_seconds",
        "Confirming caller frame at the actor to clear queued.",
    );
    out
}

/// (RSS bytes, user+system CPU seconds) of this process, from /proc (zeros
/// where /proc is missing).
pub fn process_figures() -> (u64, f64) {
    let rss = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024);
    // Fields 14 and 15 of /proc/self/stat (after the command in parentheses) are utime and stime in ticks.
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0);
    (rss, cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_and_quantiles() {
        let h = Histogram::new();
        for us in [1, 3, 3, 40, 900, 200_000] {
            h.observe(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(s.counts[0], 1); // <= 1 µs
        assert_eq!(s.counts[2], 2); // <= 5 µs
        assert_eq!(s.counts[5], 1); // <= 50 µs
        assert_eq!(s.counts[9], 1); // <= 1 ms
        assert_eq!(s.counts[16], 1); // above 100 ms
        assert_eq!(s.quantile_us(0.5), Some(5));
        assert_eq!(s.quantile_us(0.8), Some(1_000));
        assert_eq!(s.quantile_us(1.0), Some(u64::MAX));
        assert_eq!(Histogram::new().snapshot().quantile_us(0.5), None);
        let mut text = String::new();
        h.render(&mut text, "x", "help");
        assert!(text.contains("x_bucket{le=\"0.000005\"} 3"), "{text}");
        assert!(text.contains("x_bucket{le=\"+Inf\"} 6"), "{text}");
        assert!(text.contains("x_count 6"), "{text}");
    }

    #[test]
    fn process_figures_are_read() {
        let (rss, cpu) = process_figures();
        assert!(rss > 0);
        assert!(cpu >= 0.0);
    }
}
