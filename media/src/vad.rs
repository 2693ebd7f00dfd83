//! Voice activity detection on telephone audio, and the turn/barge-in state machine.
//!
//! [`Vad`] scores 16 kHz audio with earshot (a small pure-Rust neural VAD that works
//! on 16 ms blocks of 256 samples); it buffers across calls, so any frame size is
//! accepted. Telephone audio is upsampled from 8 kHz first (see [`crate::inbound`]).
//!
//! [`TurnDetector`] turns per-frame scores into events, one 20 ms frame at a time,
//! with the frame's stream timestamp passed in (no clock here):
//! - [`VadEvent::SpeechStarted`] on the first voiced frame;
//! - [`VadEvent::SpeechConfirmed`] once `min_speech_ms` of voiced audio has
//!   accumulated; only this counts as a turn or a barge-in, so a short
//!   backchannel ("uh-huh") never confirms;
//! - [`VadEvent::SpeechEnded`] after the speech is followed by `silence_ms` of
//!   silence (or `max_gap_ms` for an unconfirmed start). Every `SpeechStarted` is
//!   closed by exactly one `SpeechEnded`.
//!
//! Nothing here allocates after construction; the detector state (about 8 KiB)
//! lives on the heap so the struct is cheap to move.

use std::fmt;

/// earshot works on 16 ms at 16 kHz.
const BLOCK: usize = 256;
/// Samples per millisecond at the VAD's rate.
const SAMPLES_PER_MS: usize = 16;

/// Why a VAD configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VadError {
    #[error("threshold must be within 0..=1, got {0}")]
    Threshold(f32),
    #[error("silence_ms must be at least one frame (20 ms), got {0}")]
    SilenceTooShort(u32),
}

/// Per-agent turn-taking settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadConfig {
    /// Score (0..=1) at or above which a frame counts as voiced.
    pub threshold: f32,
    /// Voiced audio needed before speech counts as a turn or barge-in.
    pub min_speech_ms: u32,
    /// Silence that ends a confirmed turn.
    pub silence_ms: u32,
    /// Silence that abandons a start that never reached `min_speech_ms`; keeps two
    /// backchannels a second apart from adding up to a barge-in.
    pub max_gap_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self { threshold: 0.5, min_speech_ms: 250, silence_ms: 700, max_gap_ms: 200 }
    }
}

impl VadConfig {
    /// Check the ranges once, at the edge, so the detector can trust them.
    pub fn validate(self) -> Result<Self, VadError> {
        if !(0.0..=1.0).contains(&self.threshold) {
            return Err(VadError::Threshold(self.threshold));
        }
        if self.silence_ms < 20 {
            return Err(VadError::SilenceTooShort(self.silence_ms));
        }
        Ok(self)
    }
}

/// A turn-taking event. Times are stream milliseconds (the caller's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// First voiced frame; `at_ms` is that frame's start.
    SpeechStarted { at_ms: u64 },
    /// `min_speech_ms` of voice reached; `at_ms` is the end of the frame that reached it.
    SpeechConfirmed { at_ms: u64 },
    /// Speech over: `at_ms` is the end of the last voiced frame, `duration_ms` runs from
    /// `SpeechStarted`. Emitted `silence_ms` (or `max_gap_ms`) after `at_ms`.
    SpeechEnded { at_ms: u64, duration_ms: u64 },
}

/// Up to two events from one frame (a start and its confirmation can coincide).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Events {
    items: [Option<VadEvent>; 2],
    next: usize,
}

impl Events {
    fn push(&mut self, e: VadEvent) {
        if let Some(slot) = self.items.iter_mut().find(|s| s.is_none()) {
            *slot = Some(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.items[self.next..].iter().all(Option::is_none)
    }
}

impl Iterator for Events {
    type Item = VadEvent;
    fn next(&mut self) -> Option<VadEvent> {
        while self.next < self.items.len() {
            let e = self.items[self.next].take();
            self.next += 1;
            if e.is_some() {
                return e;
            }
        }
        None
    }
}

/// Frame-level voice scores from earshot, for 16 kHz mono i16 audio of any frame size.
pub struct Vad {
    detector: Box<earshot::Detector>,
    block: [i16; BLOCK],
    filled: usize,
    last_score: f32,
}

impl fmt::Debug for Vad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vad").field("filled", &self.filled).field("last_score", &self.last_score).finish()
    }
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    pub fn new() -> Self {
        Self { detector: earshot::Detector::default_boxed(), block: [0; BLOCK], filled: 0, last_score: 0.0 }
    }

    /// Score `pcm_16k`: the highest score of the 16 ms blocks completed by this call,
    /// or the previous score when no block completed (frames shorter than 16 ms).
    pub fn score(&mut self, mut pcm_16k: &[i16]) -> f32 {
        let mut best: Option<f32> = None;
        while !pcm_16k.is_empty() {
            let take = (BLOCK - self.filled).min(pcm_16k.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&pcm_16k[..take]);
            self.filled += take;
            pcm_16k = &pcm_16k[take..];
            if self.filled == BLOCK {
                self.filled = 0;
                let s = self.detector.predict_i16(&self.block);
                best = Some(best.map_or(s, |b: f32| b.max(s)));
            }
        }
        if let Some(s) = best {
            self.last_score = s;
        }
        self.last_score
    }

    pub fn reset(&mut self) {
        self.detector.reset();
        self.filled = 0;
        self.last_score = 0.0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// Voice seen but not yet `min_speech_ms` of it.
    Pending { start_ms: u64, voiced_ms: u64, gap_ms: u64, voice_end_ms: u64 },
    Speaking { start_ms: u64, gap_ms: u64, voice_end_ms: u64 },
}

/// Turn and barge-in detection over a stream of 16 kHz frames.
#[derive(Debug)]
pub struct TurnDetector {
    vad: Vad,
    config: VadConfig,
    state: State,
}

impl TurnDetector {
    pub fn new(config: VadConfig) -> Result<Self, VadError> {
        Ok(Self { vad: Vad::new(), config: config.validate()?, state: State::Silence })
    }

    pub fn config(&self) -> VadConfig {
        self.config
    }

    /// True between `SpeechStarted` and `SpeechEnded`.
    pub fn in_speech(&self) -> bool {
        !matches!(self.state, State::Silence)
    }

    /// True between `SpeechConfirmed` and `SpeechEnded`: the caller holds the floor.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// Feed one frame of 16 kHz audio that starts at stream time `at_ms`.
    pub fn push_frame(&mut self, pcm_16k: &[i16], at_ms: u64) -> Events {
        let score = self.vad.score(pcm_16k);
        let frame_ms = (pcm_16k.len() / SAMPLES_PER_MS) as u64;
        self.step(score >= self.config.threshold, at_ms, frame_ms)
    }

    /// Advance the state machine with an already-made voiced/unvoiced decision.
    pub fn step(&mut self, voiced: bool, at_ms: u64, frame_ms: u64) -> Events {
        let mut out = Events::default();
        let end_ms = at_ms + frame_ms;
        let min_speech = u64::from(self.config.min_speech_ms);
        self.state = match (self.state, voiced) {
            (State::Silence, false) => State::Silence,
            (State::Silence, true) => {
                out.push(VadEvent::SpeechStarted { at_ms });
                if frame_ms >= min_speech {
                    out.push(VadEvent::SpeechConfirmed { at_ms: end_ms });
                    State::Speaking { start_ms: at_ms, gap_ms: 0, voice_end_ms: end_ms }
                } else {
                    State::Pending { start_ms: at_ms, voiced_ms: frame_ms, gap_ms: 0, voice_end_ms: end_ms }
                }
            }
            (State::Pending { start_ms, voiced_ms, .. }, true) => {
                let voiced_ms = voiced_ms + frame_ms;
                if voiced_ms >= min_speech {
                    out.push(VadEvent::SpeechConfirmed { at_ms: end_ms });
                    State::Speaking { start_ms, gap_ms: 0, voice_end_ms: end_ms }
                } else {
                    State::Pending { start_ms, voiced_ms, gap_ms: 0, voice_end_ms: end_ms }
                }
            }
            (State::Pending { start_ms, voiced_ms, gap_ms, voice_end_ms }, false) => {
                let gap_ms = gap_ms + frame_ms;
                let limit = u64::from(self.config.max_gap_ms.min(self.config.silence_ms));
                if gap_ms >= limit {
                    out.push(VadEvent::SpeechEnded { at_ms: voice_end_ms, duration_ms: voice_end_ms - start_ms });
                    State::Silence
                } else {
                    State::Pending { start_ms, voiced_ms, gap_ms, voice_end_ms }
                }
            }
            (State::Speaking { start_ms, .. }, true) => State::Speaking { start_ms, gap_ms: 0, voice_end_ms: end_ms },
            (State::Speaking { start_ms, gap_ms, voice_end_ms }, false) => {
                let gap_ms = gap_ms + frame_ms;
                if gap_ms >= u64::from(self.config.silence_ms) {
                    out.push(VadEvent::SpeechEnded { at_ms: voice_end_ms, duration_ms: voice_end_ms - start_ms });
                    State::Silence
                } else {
                    State::Speaking { start_ms, gap_ms, voice_end_ms }
                }
            }
        };
        out
    }

    /// Forget the current segment and the detector's history (new stream).
    pub fn reset(&mut self) {
        self.vad.reset();
        self.state = State::Silence;
    }
}

/// Synthetic telephone-band audio for tests and benches: no fixtures on disk needed.
pub mod synth {
    use std::f64::consts::PI;

    /// Deterministic xorshift noise source (no `rand` dependency, reproducible fixtures).
    #[derive(Debug, Clone)]
    pub struct Noise(u64);

    impl Noise {
        pub fn new(seed: u64) -> Self {
            Self(seed.max(1))
        }

        /// Uniform in -1..1.
        pub fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    /// Speech-like voiced sound: a glottal pulse train (f0 gliding between 120 and
    /// 200 Hz) through three formant resonators whose centre frequencies move per
    /// syllable, with a ~4 Hz syllabic envelope. Peak amplitude is about `amp`.
    pub fn voiced(rate: u32, ms: u32, amp: f64, seed: u64) -> Vec<f64> {
        let n = (rate as usize) * ms as usize / 1000;
        let fs = f64::from(rate);
        let vowels: [[f64; 3]; 5] =
            [[730.0, 1090.0, 2440.0], [270.0, 2290.0, 3010.0], [530.0, 1840.0, 2480.0], [570.0, 840.0, 2410.0], [
                300.0, 870.0, 2240.0,
            ]];
        let mut noise = Noise::new(seed);
        let mut phase = 0.0f64;
        let mut filters = [[0.0f64; 2]; 3];
        let mut out = Vec::with_capacity(n);
        let syllable = (fs * 0.22) as usize;
        for i in 0..n {
            let t = i as f64 / fs;
            let f0 = 160.0 + 40.0 * (2.0 * PI * 1.3 * t).sin() + 5.0 * noise.next_f64();
            phase += f0 / fs;
            // Glottal source: a band-limited-ish pulse, one per period.
            let src = if phase >= 1.0 {
                phase -= 1.0;
                1.0
            } else {
                0.0
            } + 0.02 * noise.next_f64();
            let v = vowels[(i / syllable + seed as usize) % vowels.len()];
            let mut y = 0.0;
            for (k, f) in v.iter().enumerate() {
                let bw = 80.0 + 40.0 * k as f64;
                let r = (-PI * bw / fs).exp();
                let a1 = 2.0 * r * (2.0 * PI * f / fs).cos();
                let a2 = -r * r;
                let s = &mut filters[k];
                let yk = src * (1.0 - r) * 20.0 / (k as f64 + 1.0) + a1 * s[0] + a2 * s[1];
                s[1] = s[0];
                s[0] = yk;
                y += yk;
            }
            let pos = (i % syllable) as f64 / syllable as f64;
            let env = (PI * pos).sin().powf(0.6);
            out.push(y * env);
        }
        let peak = out.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-9);
        out.iter_mut().for_each(|v| *v *= amp / peak);
        out
    }

    /// White noise with the given RMS.
    pub fn white(rate: u32, ms: u32, rms: f64, seed: u64) -> Vec<f64> {
        let n = (rate as usize) * ms as usize / 1000;
        let mut noise = Noise::new(seed);
        // Uniform in -1..1 has RMS 1/sqrt(3).
        (0..n).map(|_| noise.next_f64() * rms * 3f64.sqrt()).collect()
    }

    /// Pink (1/f) noise with the given RMS (Paul Kellet's filter).
    pub fn pink(rate: u32, ms: u32, rms: f64, seed: u64) -> Vec<f64> {
        let white = white(rate, ms, 1.0, seed);
        let mut b = [0.0f64; 7];
        let mut out: Vec<f64> = white
            .iter()
            .map(|&w| {
                b[0] = 0.99886 * b[0] + w * 0.0555179;
                b[1] = 0.99332 * b[1] + w * 0.0750759;
                b[2] = 0.96900 * b[2] + w * 0.1538520;
                b[3] = 0.86650 * b[3] + w * 0.3104856;
                b[4] = 0.55000 * b[4] + w * 0.5329522;
                b[5] = -0.7616 * b[5] - w * 0.0168980;
                let p = b.iter().sum::<f64>() + w * 0.5362;
                b[6] = w * 0.115926;
                p
            })
            .collect();
        let cur = rms_of(&out).max(1e-9);
        out.iter_mut().for_each(|v| *v *= rms / cur);
        out
    }

    pub fn silence(rate: u32, ms: u32) -> Vec<f64> {
        vec![0.0; (rate as usize) * ms as usize / 1000]
    }

    pub fn rms_of(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    /// Add `noise` to `signal` scaled so the signal-to-noise ratio over the voiced
    /// parts of `signal` is `snr_db`.
    pub fn mix_at_snr(signal: &[f64], noise: &[f64], snr_db: f64) -> Vec<f64> {
        let voiced: Vec<f64> = signal.iter().copied().filter(|v| v.abs() > 1e-6).collect();
        let gain = rms_of(&voiced) / rms_of(noise).max(1e-9) / 10f64.powf(snr_db / 20.0);
        signal.iter().zip(noise.iter().cycle()).map(|(s, n)| s + n * gain).collect()
    }

    pub fn to_i16(x: &[f64]) -> Vec<i16> {
        x.iter().map(|v| v.round().clamp(-32768.0, 32767.0) as i16).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::synth::*;
    use super::*;
    use crate::resample::Resampler;

    /// Run 8 kHz audio through the production inbound steps (8k -> 16k -> VAD), 20 ms at a time.
    fn detect(pcm_8k: &[i16], config: VadConfig) -> (Vec<VadEvent>, Vec<f32>) {
        let mut up = Resampler::phone_to_wideband();
        let mut td = TurnDetector::new(config).unwrap();
        let mut wide = [0i16; 320];
        let mut events = Vec::new();
        let mut scores = Vec::new();
        for (i, frame) in pcm_8k.chunks_exact(160).enumerate() {
            up.process_frame(frame, &mut wide).unwrap();
            events.extend(td.push_frame(&wide, i as u64 * 20));
            scores.push(td.vad.last_score);
        }
        (events, scores)
    }

    fn concat(parts: &[Vec<f64>]) -> Vec<f64> {
        parts.concat()
    }

    #[test]
    fn scores_probe() {
        let show = |name: &str, pcm: &[i16]| {
            let (ev, sc) = detect(pcm, VadConfig::default());
            let mean = sc.iter().sum::<f32>() / sc.len() as f32;
            let max = sc.iter().cloned().fold(0.0, f32::max);
            eprintln!("{name}: mean {mean:.2} max {max:.2} {ev:?}");
        };
        for rms in [300.0, 1000.0, 2000.0, 4000.0] {
            show(&format!("white {rms}"), &to_i16(&white(8000, 3000, rms, 3)));
            show(&format!("pink {rms}"), &to_i16(&pink(8000, 3000, rms, 3)));
        }
        let sp = concat(&[silence(8000, 500), voiced(8000, 1500, 12000.0, 1), silence(8000, 1000)]);
        for snr in [20.0, 10.0, 5.0] {
            show(&format!("voiced+white snr {snr}"), &to_i16(&mix_at_snr(&sp, &white(8000, 3000, 1.0, 5), snr)));
            show(&format!("voiced+pink snr {snr}"), &to_i16(&mix_at_snr(&sp, &pink(8000, 3000, 1.0, 5), snr)));
        }
        let b = crate::wav::read_mono(include_bytes!("../tests/fixtures/booking_8k.wav")).unwrap();
        show("booking", &b.samples);
        let (_, sc) = detect(&b.samples, VadConfig::default());
        eprintln!("{:?}", sc.iter().map(|s| (s * 100.0) as i32).collect::<Vec<_>>());
        let u = crate::wav::read_mono(include_bytes!("../tests/fixtures/uhhuh_8k.wav")).unwrap();
        let (_, sc) = detect(&u.samples, VadConfig::default());
        eprintln!("{:?}", sc.iter().map(|s| (s * 100.0) as i32).collect::<Vec<_>>());
        let short = concat(&[silence(8000, 500), voiced(8000, 150, 12000.0, 1), silence(8000, 1000)]);
        let (ev, sc) = detect(&to_i16(&short), VadConfig::default());
        eprintln!("150ms {ev:?} {:?}", sc.iter().map(|s| (s * 100.0) as i32).collect::<Vec<_>>());
    }
}
