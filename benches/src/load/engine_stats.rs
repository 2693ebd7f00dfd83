//! Reading the engine's JSON stats endpoint (`GET /stats`) and turning two
//! readings into per-run figures.
//!
//! Guarantees: every field is optional on the wire (a missing field reads as
//! zero/empty), so an older or newer engine still parses; counters that went
//! backwards (an engine restart) are treated as starting from zero; figures
//! that cannot be computed (no calls, no live calls seen) are `None`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use crate::load::error::LoadError;
use crate::load::stats::BucketHistogram;

/// Path of the JSON stats endpoint.
pub const STATS_PATH: &str = "/stats";

/// One `/stats` reading (the engine's `metrics::Snapshot`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatsSnapshot {
    pub live_calls: u64,
    pub calls_started: u64,
    pub calls_ended: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub frames_dropped_in: u64,
    pub frames_dropped_out: u64,
    pub barge_ins: u64,
    pub call_mailbox_max: u64,
    pub call_mailbox_total: u64,
    pub inbound_frame: BucketHistogram,
    pub outbound_tick: BucketHistogram,
    pub barge_in: BucketHistogram,
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Fetches `/stats` from an engine.
#[derive(Debug, Clone)]
pub struct StatsClient {
    url: Url,
    http: reqwest::Client,
}

impl StatsClient {
    /// `base` is the engine URL; the endpoint is `{base}/stats`.
    pub fn new(base: &Url, http: reqwest::Client) -> Result<Self, LoadError> {
        let url = Url::parse(&format!("{}{STATS_PATH}", base.as_str().trim_end_matches('/')))
            .map_err(|e| LoadError::Options(format!("stats URL from {base}: {e}")))?;
        Ok(Self { url, http })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    /// One reading; fails on a network error, a non-2xx status or a body that is not the stats JSON.
    pub async fn read(&self) -> Result<StatsSnapshot, LoadError> {
        let stats_err = |reason: String| LoadError::Stats {
            url: self.url.to_string(),
            reason,
        };
        let response = self
            .http
            .get(self.url.clone())
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|e| stats_err(e.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(stats_err(format!("HTTP {status}")));
        }
        let body = response.bytes().await.map_err(|e| stats_err(e.to_string()))?;
        serde_json::from_slice(&body).map_err(|e| stats_err(format!("not the stats JSON: {e}")))
    }
}

/// The engine's figures over one run, from readings before, during and after.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngineFigures {
    /// Engine CPU seconds (user + system) per minute of call time.
    pub cpu_seconds_per_call_minute: Option<f64>,
    /// Growth of the engine's RSS at peak concurrency over the idle RSS, per live call (bytes).
    pub rss_bytes_per_live_call: Option<f64>,
    pub rss_bytes_before: u64,
    pub rss_bytes_peak: u64,
    /// Most live calls seen by the sampler.
    pub peak_live_calls: u64,
    pub cpu_seconds: f64,
    /// Per-frame processing time inside the engine (inbound), this run only.
    pub inbound_frame_p50_us: Option<u64>,
    pub inbound_frame_p99_us: Option<u64>,
    pub inbound_frame_mean_us: Option<f64>,
    pub outbound_tick_p99_us: Option<u64>,
    pub frames_in: u64,
    pub frames_out: u64,
    pub frames_dropped_in: u64,
    pub frames_dropped_out: u64,
    pub call_mailbox_max: u64,
}

/// Tracks the sampled peak during a run.
#[derive(Debug, Clone, Default)]
pub struct PeakTracker {
    pub peak_live_calls: u64,
    pub rss_at_peak: u64,
    pub max_rss: u64,
    pub max_mailbox: u64,
}

impl PeakTracker {
    pub fn observe(&mut self, s: &StatsSnapshot) {
        if s.live_calls > self.peak_live_calls
            || (s.live_calls == self.peak_live_calls && s.rss_bytes > self.rss_at_peak)
        {
            self.peak_live_calls = s.live_calls;
            self.rss_at_peak = s.rss_bytes;
        }
        self.max_rss = self.max_rss.max(s.rss_bytes);
        self.max_mailbox = self.max_mailbox.max(s.call_mailbox_max);
    }
}

fn delta(after: u64, before: u64) -> u64 {
    if after >= before { after - before } else { after }
}

/// Figures from the readings around a run; `call_minutes` is the summed
/// length of every call that streamed.
pub fn figures(before: &StatsSnapshot, after: &StatsSnapshot, peak: &PeakTracker, call_minutes: f64) -> EngineFigures {
    let cpu = if after.cpu_seconds >= before.cpu_seconds {
        after.cpu_seconds - before.cpu_seconds
    } else {
        after.cpu_seconds
    };
    let inbound = after.inbound_frame.since(&before.inbound_frame);
    let outbound = after.outbound_tick.since(&before.outbound_tick);
    let rss_growth = peak.rss_at_peak.saturating_sub(before.rss_bytes);
    EngineFigures {
        cpu_seconds_per_call_minute: (call_minutes > 0.0).then(|| cpu / call_minutes),
        rss_bytes_per_live_call: (peak.peak_live_calls > 0 && peak.rss_at_peak > 0)
            .then(|| rss_growth as f64 / peak.peak_live_calls as f64),
        rss_bytes_before: before.rss_bytes,
        rss_bytes_peak: peak.max_rss.max(after.rss_bytes),
        peak_live_calls: peak.peak_live_calls,
        cpu_seconds: cpu,
        inbound_frame_p50_us: inbound.quantile_us(0.5),
        inbound_frame_p99_us: inbound.quantile_us(0.99),
        inbound_frame_mean_us: inbound.mean_us(),
        outbound_tick_p99_us: outbound.quantile_us(0.99),
        frames_in: delta(after.frames_in, before.frames_in),
        frames_out: delta(after.frames_out, before.frames_out),
        frames_dropped_in: delta(after.frames_dropped_in, before.frames_dropped_in),
        frames_dropped_out: delta(after.frames_dropped_out, before.frames_dropped_out),
        call_mailbox_max: peak.max_mailbox.max(after.call_mailbox_max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_engine_snapshot_and_tolerates_missing_fields() {
        let json = r#"{"live_calls":3,"live_conversations":0,"frames_in":100,"rss_bytes":1000,
            "cpu_seconds":1.5,"inbound_frame":{"bounds_us":[1,2],"counts":[1,2,0],"count":3,"sum_seconds":0.000004},
            "something_new":true}"#;
        let s: StatsSnapshot = serde_json::from_str(json).expect("parse");
        assert_eq!(s.live_calls, 3);
        assert_eq!(s.inbound_frame.quantile_us(1.0), Some(2));
        assert_eq!(s.frames_dropped_out, 0);
    }

    #[test]
    fn figures_per_call_minute_and_per_live_call() {
        let before = StatsSnapshot {
            rss_bytes: 100_000_000,
            cpu_seconds: 10.0,
            frames_dropped_in: 2,
            ..StatsSnapshot::default()
        };
        let mut peak = PeakTracker::default();
        for (live, rss) in [(10, 110_000_000), (50, 150_000_000), (20, 160_000_000)] {
            peak.observe(&StatsSnapshot {
                live_calls: live,
                rss_bytes: rss,
                ..StatsSnapshot::default()
            });
        }
        let after = StatsSnapshot {
            rss_bytes: 120_000_000,
            cpu_seconds: 16.0,
            frames_dropped_in: 5,
            ..StatsSnapshot::default()
        };
        let f = figures(&before, &after, &peak, 120.0);
        assert_eq!(f.cpu_seconds_per_call_minute, Some(0.05));
        // RSS at the sample with the most live calls: (150 - 100) MB / 50 calls.
        assert_eq!(f.rss_bytes_per_live_call, Some(1_000_000.0));
        assert_eq!(f.rss_bytes_peak, 160_000_000);
        assert_eq!(f.peak_live_calls, 50);
        assert_eq!(f.frames_dropped_in, 3);
        let none = figures(&before, &after, &PeakTracker::default(), 0.0);
        assert_eq!(
            (none.cpu_seconds_per_call_minute, none.rss_bytes_per_live_call),
            (None, None)
        );
    }
}
