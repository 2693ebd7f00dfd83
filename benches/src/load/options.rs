//! What a load run is: the target engine, the call mix and the caller audio.
//!
//! Guarantees: [`LoadOptions::validate`] refuses options that cannot describe
//! a run before any call is placed; caller audio is generated once per
//! distinct call length (whole seconds) and shared by every call of that
//! length, so memory does not grow with the number of calls; call lengths
//! are drawn from a seeded generator, so a run is reproducible.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use switchboard_media::vad::synth;
use url::Url;

use crate::load::error::LoadError;

/// Caller audio sample rate.
const RATE: u32 = 8000;
/// Peak amplitude of the generated speech.
const SPEECH_AMPLITUDE: f64 = 12_000.0;

/// The engine (or baseline) under load and how to dial it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `engine` or `baseline`, used in reports.
    pub label: String,
    /// Where the webhook is POSTed and the stream socket opened.
    pub engine: Url,
    /// The public base URL signatures are computed over; `None` means `engine`.
    pub signing_base: Option<Url>,
    pub account_sid: String,
    pub auth_token: String,
    /// The number dialled (`To`).
    pub number: String,
    /// Read `{engine}/stats` before, during and after the run.
    pub read_stats: bool,
}

/// The defaults `switchboard admin load-profile` writes to `<data_dir>/load.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProfileFile {
    pub engine_url: String,
    pub number: String,
    pub account_sid: String,
    pub auth_token: String,
}

impl ProfileFile {
    /// Reads a profile; `Ok(None)` when the file does not exist.
    pub fn load(path: &Path) -> Result<Option<ProfileFile>, LoadError> {
        let err = |reason: String| LoadError::Profile {
            path: path.display().to_string(),
            reason,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(e.to_string())),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| err(format!("not a load profile: {e}")))
    }
}

/// How long calls last: uniform in `[min, max]` (equal bounds: fixed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLength {
    pub min: Duration,
    pub max: Duration,
}

impl CallLength {
    pub fn fixed(d: Duration) -> Self {
        Self { min: d, max: d }
    }

    /// Parses `30s`, `1m`, `1500ms`, `45` (seconds) or a range `20s..40s`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (min, max) = match text.split_once("..") {
            Some((a, b)) => (parse_duration(a)?, parse_duration(b)?),
            None => {
                let d = parse_duration(text)?;
                (d, d)
            }
        };
        if min > max {
            return Err(format!("call length range {text}: the minimum is above the maximum"));
        }
        if min < Duration::from_secs(1) {
            return Err(format!("call length {text}: at least 1s"));
        }
        Ok(Self { min, max })
    }

    /// A length drawn with `u` uniform in `[0, 1)`, rounded to whole seconds.
    pub fn pick(&self, u: f64) -> Duration {
        let span = self.max.saturating_sub(self.min).as_secs_f64();
        let secs = (self.min.as_secs_f64() + span * u.clamp(0.0, 1.0)).round();
        Duration::from_secs(secs.max(1.0) as u64)
    }
}

/// Parses `250ms`, `30s`, `2m`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 30s, 1500ms, 2m)"))?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" | "" => value,
        "m" | "min" => value * 60.0,
        other => return Err(format!("`{text}`: unknown unit `{other}` (ms, s, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{text}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A generated caller: silence, then speech bursts separated by silences,
/// with every `barge_in_every`-th burst followed by a short silence so the
/// next burst starts while the bot is answering (a scheduled barge-in).
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// Silence before the first burst (the greeting plays meanwhile).
    pub lead: Duration,
    /// Length of one speech burst.
    pub speech: Duration,
    /// Silence after a burst: long enough for the bot's whole answer.
    pub silence: Duration,
    /// Every N-th burst is followed by `barge_in_after` instead of `silence`.
    pub barge_in_every: Option<u32>,
    /// Silence between a burst and the barge-in burst after it: the engine's
    /// end-of-turn silence plus part of the answer.
    pub barge_in_after: Duration,
}

impl Default for Pattern {
    fn default() -> Self {
        Self {
            lead: Duration::from_millis(3000),
            speech: Duration::from_millis(1500),
            silence: Duration::from_millis(5500),
            barge_in_every: Some(3),
            barge_in_after: Duration::from_millis(1500),
        }
    }
}

impl Pattern {
    /// `length` of 8 kHz caller audio following the pattern.
    pub fn render(&self, length: Duration) -> Vec<i16> {
        let total = samples(length);
        let mut out = vec![0i16; total];
        let mut pos = samples(self.lead);
        let mut turn: u32 = 0;
        while pos < total {
            turn += 1;
            let burst = synth::voiced(RATE, millis(self.speech), SPEECH_AMPLITUDE, u64::from(turn));
            for (dst, src) in out.iter_mut().skip(pos).zip(&burst) {
                *dst = src.round().clamp(-32768.0, 32767.0) as i16;
            }
            pos += burst.len();
            let barge_next = self.barge_in_every.is_some_and(|n| n > 0 && turn.is_multiple_of(n));
            pos += samples(if barge_next { self.barge_in_after } else { self.silence });
        }
        out
    }
}

/// What the callers say.
#[derive(Debug, Clone)]
pub enum CallerAudio {
    Pattern(Pattern),
    /// A recording (8 kHz mono), said after `lead` and repeated with `silence` between.
    Wav {
        samples: Arc<[i16]>,
        lead: Duration,
        silence: Duration,
    },
}

impl CallerAudio {
    /// `length` of caller audio.
    pub fn render(&self, length: Duration) -> Vec<i16> {
        match self {
            CallerAudio::Pattern(p) => p.render(length),
            CallerAudio::Wav {
                samples: wav,
                lead,
                silence,
            } => {
                let total = samples(length);
                let mut out = vec![0i16; total];
                let mut pos = samples(*lead);
                while pos < total && !wav.is_empty() {
                    for (dst, src) in out.iter_mut().skip(pos).zip(wav.iter()) {
                        *dst = *src;
                    }
                    pos += wav.len() + samples(*silence);
                }
                out
            }
        }
    }
}

/// Renders caller audio once per distinct length.
#[derive(Debug)]
pub struct AudioCache {
    audio: CallerAudio,
    rendered: HashMap<u64, Arc<[i16]>>,
}

impl AudioCache {
    pub fn new(audio: CallerAudio) -> Self {
        Self {
            audio,
            rendered: HashMap::new(),
        }
    }

    pub fn get(&mut self, length: Duration) -> Arc<[i16]> {
        let key = length.as_millis() as u64;
        self.rendered
            .entry(key)
            .or_insert_with(|| Arc::from(self.audio.render(length)))
            .clone()
    }
}

fn samples(d: Duration) -> usize {
    (d.as_secs_f64() * f64::from(RATE)).round() as usize
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// The call mix of one run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Calls to place in total.
    pub calls: u64,
    /// Most calls up at once.
    pub concurrency: u64,
    /// New calls started per second while ramping up (and when replacing ended calls).
    pub ramp_per_sec: f64,
    /// After the ramp-up, keep starting calls for this long at most; `None`: until `calls` are placed.
    pub hold: Option<Duration>,
    pub call_length: CallLength,
    pub audio: CallerAudio,
    /// Caller IDs are `from_prefix` + a 7-digit call index.
    pub from_prefix: String,
    /// Seed of the call-length draw.
    pub seed: u64,
    /// Inter-arrival above this is a gap.
    pub gap: Duration,
    /// Silence above this (or a clear) starts a new bot utterance.
    pub utterance_split: Duration,
    /// How often `/stats` is sampled during the run.
    pub stats_interval: Duration,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            calls: 50,
            concurrency: 50,
            ramp_per_sec: 10.0,
            hold: None,
            call_length: CallLength::fixed(Duration::from_secs(30)),
            audio: CallerAudio::Pattern(Pattern::default()),
            from_prefix: "+1555".to_owned(),
            seed: 1,
            gap: Duration::from_millis(40),
            utterance_split: Duration::from_millis(1000),
            stats_interval: Duration::from_secs(1),
        }
    }
}

impl LoadOptions {
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: &str| Err(LoadError::Options(m.to_owned()));
        if self.calls == 0 {
            return bad("--calls must be at least 1");
        }
        if self.concurrency == 0 {
            return bad("--concurrency must be at least 1");
        }
        if !(self.ramp_per_sec.is_finite() && self.ramp_per_sec > 0.0) {
            return bad("--ramp must be a positive number of calls per second");
        }
        if self.stats_interval.is_zero() {
            return bad("the stats interval must be positive");
        }
        if !self.from_prefix.starts_with('+') {
            return bad("--from-prefix must start with +");
        }
        Ok(())
    }
}

impl Target {
    pub fn validate(&self) -> Result<(), LoadError> {
        if !matches!(self.engine.scheme(), "http" | "https") {
            return Err(LoadError::Options(format!(
                "engine URL {} must be http(s)",
                self.engine
            )));
        }
        if self.account_sid.trim().is_empty() || self.auth_token.is_empty() {
            return Err(LoadError::Options(
                "an account SID and auth token are needed (--account-sid/--auth-token or --profile)".to_owned(),
            ));
        }
        if self.number.trim().is_empty() {
            return Err(LoadError::Options(
                "the number to dial is missing (--number or --profile)".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_call_lengths_parse() {
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3h").is_err());
        let range = CallLength::parse("20s..40s").expect("range");
        assert_eq!(range.pick(0.0), Duration::from_secs(20));
        assert_eq!(range.pick(0.5), Duration::from_secs(30));
        assert_eq!(range.pick(1.0), Duration::from_secs(40));
        assert!(CallLength::parse("40s..20s").is_err());
        assert!(CallLength::parse("500ms").is_err());
    }

    /// Speech spans of rendered audio, in ms, by 20 ms frame energy.
    fn spans(audio: &[i16]) -> Vec<(usize, usize)> {
        let mut out: Vec<(usize, usize)> = Vec::new();
        for (i, f) in audio.chunks(160).enumerate() {
            let loud = f.iter().any(|&s| s != 0);
            match out.last_mut() {
                Some((_, end)) if loud && *end == i * 20 => *end = (i + 1) * 20,
                _ if loud => out.push((i * 20, (i + 1) * 20)),
                _ => {}
            }
        }
        out
    }

    #[test]
    fn the_pattern_schedules_bursts_and_barge_ins() {
        let p = Pattern {
            lead: Duration::from_secs(1),
            speech: Duration::from_millis(500),
            silence: Duration::from_secs(2),
            barge_in_every: Some(2),
            barge_in_after: Duration::from_millis(700),
        };
        let audio = p.render(Duration::from_secs(8));
        assert_eq!(audio.len(), 64_000);
        let s = spans(&audio);
        // Bursts at 1.0 s, 3.5 s (after 2 s), 4.7 s (0.7 s after the 2nd: a barge-in), 7.2 s (cut at 8 s).
        let starts: Vec<usize> = s.iter().map(|&(a, _)| a).collect();
        assert_eq!(starts, vec![1000, 3500, 4700, 7200]);
        assert!(s.iter().all(|&(a, b)| b - a <= 500), "{s:?}");
    }

    #[test]
    fn wav_audio_repeats_with_silence_and_cache_shares_renders() {
        let wav: Arc<[i16]> = Arc::from(vec![1000i16; 800]);
        let audio = CallerAudio::Wav {
            samples: wav,
            lead: Duration::from_millis(200),
            silence: Duration::from_millis(300),
        };
        let s = spans(&audio.render(Duration::from_secs(1)));
        assert_eq!(s, vec![(200, 300), (600, 700)]);
        let mut cache = AudioCache::new(audio);
        let a = cache.get(Duration::from_secs(2));
        let b = cache.get(Duration::from_secs(2));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(cache.get(Duration::from_secs(3)).len(), 24_000);
    }
}
