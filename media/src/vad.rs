//! Voice activity detection on telephone audio, and the turn/barge-in state machine.
//!
//! [`Vad`] scores 16 kHz audio with earshot (a small pure-Rust neural VAD that works
//! on 16 ms blocks of 256 samples); it buffers across calls, so any frame size is
//! accepted. Telephone audio is upsampled from 8 kHz first (see [`crate::inbound`]).
//!
//! earshot alone scores steady band-limited noise (fans, line hiss at -30 dBFS) at
//! 0.6-0.7, close to speech, so a frame only counts as voiced when its score reaches
//! the threshold *and* its energy stands `min_snr_db` above a tracked noise floor
//! (minimum statistics: the floor drops at once to a quieter frame and creeps up
//! slowly), *and* it is louder than an absolute floor. Steady noise then never makes
//! a turn, while speech at 10 dB SNR still does.
//!
//! [`TurnDetector`] turns per-frame decisions into events, one 20 ms frame at a time,
//! with the frame's stream timestamp passed in (no clock here):
//! - [`VadEvent::SpeechStarted`] on the first voiced frame;
//! - [`VadEvent::SpeechConfirmed`] once `min_speech_ms` of voiced audio has
//!   accumulated; only this counts as a turn or a barge-in, so a short
//!   backchannel ("uh-huh") never confirms;
//! - [`VadEvent::SpeechEnded`] after the speech is followed by `silence_ms` of
//!   silence (or `max_gap_ms` for an unconfirmed start). Every `SpeechStarted` is
//!   closed by exactly one `SpeechEnded`.
//!
//! Cost: earshot is ~10-14 µs per 16 ms block, several times everything else on
//! the inbound path, and most of a call is the caller listening. [`TurnDetector`]
//! therefore measures the cheap energy gates first and runs earshot only when a
//! frame could be voiced at all (or while speech or the short hangover after a gate
//! opening is in progress). earshot is streaming (a 48 ms sample ring, 3 frames of
//! feature context and a recurrent state), so skipped blocks would leave it looking
//! at stale audio: while asleep the detector keeps the last [`PREROLL_BLOCKS`]
//! blocks in a fixed ring and replays them on wake-up. A gap no longer than the ring
//! is replayed whole, so the model sees exactly the audio it would have seen
//! running continuously; after a longer gap the sample ring and feature context are
//! exact again and only the slow recurrent state carries the older history.
//! Decisions cannot change on skipped frames: they fail the energy gates, and a
//! frame is voiced only if it passes them.
//!
//! Nothing here allocates after construction; the detector state (about 8 KiB)
//! lives on the heap so the struct is cheap to move.

use std::fmt;

/// earshot works on 16 ms at 16 kHz.
const BLOCK: usize = 256;
/// Samples per millisecond at the VAD's rate.
const SAMPLES_PER_MS: usize = 16;
/// Frames quieter than this (dBFS RMS) are never speech: line hiss, comfort noise.
const ABSOLUTE_FLOOR_DB: f32 = -55.0;
/// How fast the noise floor may rise, in dB per second; slow enough that a long
/// sentence (whose syllable gaps pull the floor back down) is not absorbed.
const FLOOR_RISE_DB_PER_S: f32 = 5.0;
/// Energy of digital silence, instead of minus infinity.
const SILENCE_DB: f32 = -100.0;
/// Blocks of audio kept while earshot sleeps and replayed when it wakes (64 ms).
/// Four is the least that makes its sample ring (3 blocks) and the windows behind
/// its 3 frames of feature context exact again.
pub const PREROLL_BLOCKS: usize = 4;
/// How long earshot stays awake after the energy gate last passed. Its recurrent
/// state needs about 5 blocks to settle after a wake-up (scores climb from ~0.4),
/// so a run of near-threshold frames, or a word resuming after a quiet consonant,
/// is scored by a settled, continuous model rather than by one re-entry after another.
pub const HANGOVER_MS: u64 = 200;

/// Why a VAD configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum VadError {
    #[error("threshold must be within 0..=1, got {0}")]
    Threshold(f32),
    #[error("silence_ms must be at least one frame (20 ms), got {0}")]
    SilenceTooShort(u32),
    #[error("min_snr_db must be within 0..=40, got {0}")]
    Snr(f32),
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
    /// How far (dB) a frame must stand above the tracked noise floor to be voiced.
    pub min_snr_db: f32,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            min_speech_ms: 250,
            silence_ms: 700,
            max_gap_ms: 200,
            min_snr_db: 5.0,
        }
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
        if !(0.0..=40.0).contains(&self.min_snr_db) {
            return Err(VadError::Snr(self.min_snr_db));
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
///
/// [`Vad::score`] and [`Vad::analyze`] always run the model. The turn detector
/// instead feeds frames through `feed`, which lets the model sleep through frames
/// the energy gates rule out and replays the [`PREROLL_BLOCKS`] most recent blocks
/// when it wakes.
pub struct Vad {
    detector: Box<earshot::Detector>,
    block: [i16; BLOCK],
    filled: usize,
    last_score: f32,
    band: BandEnergy,
    /// Whether the model saw every block up to the current one.
    awake: bool,
    /// Blocks completed while asleep, oldest at `preroll_next` once the ring is full.
    preroll: [[i16; BLOCK]; PREROLL_BLOCKS],
    preroll_len: usize,
    preroll_next: usize,
    /// Blocks scored so far (replayed ones included), for tests and metrics.
    evaluations: u64,
}

impl fmt::Debug for Vad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vad")
            .field("filled", &self.filled)
            .field("last_score", &self.last_score)
            .field("awake", &self.awake)
            .field("evaluations", &self.evaluations)
            .finish()
    }
}

impl Default for Vad {
    fn default() -> Self {
        Self::new()
    }
}

impl Vad {
    pub fn new() -> Self {
        Self {
            detector: earshot::Detector::default_boxed(),
            block: [0; BLOCK],
            filled: 0,
            last_score: 0.0,
            band: BandEnergy::default(),
            // A fresh detector has seen nothing, which is what it would have seen.
            awake: true,
            preroll: [[0; BLOCK]; PREROLL_BLOCKS],
            preroll_len: 0,
            preroll_next: 0,
            evaluations: 0,
        }
    }

    /// Score and speech-band energy of one frame of 16 kHz audio.
    pub fn analyze(&mut self, pcm_16k: &[i16]) -> FrameAnalysis {
        FrameAnalysis {
            score: self.score(pcm_16k),
            energy_db: self.band.energy_db(pcm_16k),
            scored: true,
        }
    }

    /// Score `pcm_16k`: the highest score of the 16 ms blocks completed by this call,
    /// or the previous score when no block completed (frames shorter than 16 ms).
    pub fn score(&mut self, pcm_16k: &[i16]) -> f32 {
        self.feed(pcm_16k, true).unwrap_or(self.last_score)
    }

    /// How many 16 ms blocks earshot has scored since construction or [`Vad::reset`].
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    /// Gather `pcm_16k` into 16 ms blocks. With `run_model`, score each completed
    /// block (replaying the pre-roll first if the model was asleep) and return the
    /// frame's score as [`Vad::score`] does; without it, put the model to sleep,
    /// keep the blocks in the pre-roll ring and return `None`.
    fn feed(&mut self, mut pcm_16k: &[i16], run_model: bool) -> Option<f32> {
        if !run_model {
            self.awake = false;
        }
        let mut best: Option<f32> = None;
        while !pcm_16k.is_empty() {
            let take = (BLOCK - self.filled).min(pcm_16k.len());
            self.block[self.filled..self.filled + take].copy_from_slice(&pcm_16k[..take]);
            self.filled += take;
            pcm_16k = &pcm_16k[take..];
            if self.filled < BLOCK {
                break;
            }
            self.filled = 0;
            if run_model {
                if !self.awake {
                    self.wake();
                }
                let s = self.detector.predict_i16(&self.block);
                self.evaluations += 1;
                best = Some(best.map_or(s, |b: f32| b.max(s)));
            } else {
                self.preroll[self.preroll_next] = self.block;
                self.preroll_next = (self.preroll_next + 1) % PREROLL_BLOCKS;
                self.preroll_len = (self.preroll_len + 1).min(PREROLL_BLOCKS);
            }
        }
        if !run_model {
            return None;
        }
        if let Some(s) = best {
            self.last_score = s;
        }
        Some(self.last_score)
    }

    /// Replay the blocks skipped while asleep (at most the last [`PREROLL_BLOCKS`]),
    /// oldest first; their scores belong to frames already decided and are dropped.
    fn wake(&mut self) {
        let oldest = (self.preroll_next + PREROLL_BLOCKS - self.preroll_len) % PREROLL_BLOCKS;
        for i in 0..self.preroll_len {
            self.detector.predict_i16(&self.preroll[(oldest + i) % PREROLL_BLOCKS]);
        }
        self.evaluations += self.preroll_len as u64;
        self.preroll_len = 0;
        self.preroll_next = 0;
        self.awake = true;
    }

    pub fn reset(&mut self) {
        self.detector.reset();
        self.filled = 0;
        self.last_score = 0.0;
        self.band = BandEnergy::default();
        self.awake = true;
        self.preroll_len = 0;
        self.preroll_next = 0;
        self.evaluations = 0;
    }
}

/// What [`Vad::analyze`] measured for one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameAnalysis {
    /// earshot's voice score, 0..=1; 0 when the model was skipped (see `scored`).
    pub score: f32,
    /// RMS level in dB relative to i16 full scale.
    pub energy_db: f32,
    /// False when the energy gates ruled the frame out and earshot did not run.
    pub scored: bool,
}

/// RMS level in dBFS above ~300 Hz. Low rumble (and the bulk of pink noise) swings
/// by many dB between 20 ms frames, which would defeat the noise floor; speech
/// energy on a phone line lives above 300 Hz anyway.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct BandEnergy {
    x1: f32,
    y1: f32,
}

impl BandEnergy {
    /// exp(-2*pi*300/16000): one-pole high-pass at 300 Hz for 16 kHz input.
    const POLE: f32 = 0.8889;

    fn energy_db(&mut self, pcm: &[i16]) -> f32 {
        if pcm.is_empty() {
            return SILENCE_DB;
        }
        let mut sum = 0.0f32;
        for &s in pcm {
            let x = f32::from(s) / 32768.0;
            let y = Self::POLE * (self.y1 + x - self.x1);
            self.x1 = x;
            self.y1 = y;
            sum += y * y;
        }
        let mean = sum / pcm.len() as f32;
        if mean <= 1e-10 {
            SILENCE_DB
        } else {
            (10.0 * mean.log10()).max(SILENCE_DB)
        }
    }
}

/// Minimum-statistics noise floor: falls at once, rises slowly.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NoiseFloor {
    db: Option<f32>,
}

impl NoiseFloor {
    fn update(&mut self, energy_db: f32, frame_ms: u64) {
        let rise = FLOOR_RISE_DB_PER_S * frame_ms as f32 / 1000.0;
        self.db = Some(match self.db {
            // The first frame seeds the floor: calls start with the caller listening.
            None => energy_db,
            Some(f) => energy_db.min(f + rise),
        });
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Silence,
    /// Voice seen but not yet `min_speech_ms` of it.
    Pending {
        start_ms: u64,
        voiced_ms: u64,
        gap_ms: u64,
        voice_end_ms: u64,
    },
    Speaking {
        start_ms: u64,
        gap_ms: u64,
        voice_end_ms: u64,
    },
}

/// Turn and barge-in detection over a stream of 16 kHz frames.
#[derive(Debug)]
pub struct TurnDetector {
    vad: Vad,
    config: VadConfig,
    state: State,
    floor: NoiseFloor,
    last: FrameAnalysis,
    /// Milliseconds earshot stays awake without another gate opening.
    hangover_ms: u64,
}

impl TurnDetector {
    pub fn new(config: VadConfig) -> Result<Self, VadError> {
        Ok(Self {
            vad: Vad::new(),
            config: config.validate()?,
            state: State::Silence,
            floor: NoiseFloor { db: None },
            last: FrameAnalysis {
                score: 0.0,
                energy_db: SILENCE_DB,
                scored: false,
            },
            hangover_ms: 0,
        })
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

    /// The last frame's analysis (for metrics and tuning).
    pub fn last_analysis(&self) -> FrameAnalysis {
        self.last
    }

    /// The tracked noise floor in dBFS, once a frame has been seen.
    pub fn noise_floor_db(&self) -> Option<f32> {
        self.floor.db
    }

    /// Feed one frame of 16 kHz audio that starts at stream time `at_ms`.
    ///
    /// The energy gates are checked first; earshot runs only if they pass, while a
    /// segment is open, or within [`HANGOVER_MS`] of the gate last passing.
    pub fn push_frame(&mut self, pcm_16k: &[i16], at_ms: u64) -> Events {
        let frame_ms = (pcm_16k.len() / SAMPLES_PER_MS) as u64;
        let energy_db = self.vad.band.energy_db(pcm_16k);
        let gate = self.energy_gate(energy_db);
        if gate {
            self.hangover_ms = HANGOVER_MS;
        } else {
            self.hangover_ms = self.hangover_ms.saturating_sub(frame_ms);
        }
        let run_model = gate || self.in_speech() || self.hangover_ms > 0;
        let score = self.vad.feed(pcm_16k, run_model);
        let a = FrameAnalysis {
            score: score.unwrap_or(0.0),
            energy_db,
            scored: score.is_some(),
        };
        let voiced = gate && a.score >= self.config.threshold;
        self.floor.update(energy_db, frame_ms);
        self.last = a;
        self.step(voiced, at_ms, frame_ms)
    }

    /// How many 16 ms blocks earshot has scored (pre-roll replays included): the
    /// cost the energy gates did not save.
    pub fn model_evaluations(&self) -> u64 {
        self.vad.evaluations()
    }

    /// The cheap half of the voiced test: loud enough in absolute terms and far
    /// enough above the tracked noise floor.
    fn energy_gate(&self, energy_db: f32) -> bool {
        let floor = self.floor.db.unwrap_or(SILENCE_DB);
        energy_db >= ABSOLUTE_FLOOR_DB && energy_db - floor >= self.config.min_snr_db
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
                    State::Speaking {
                        start_ms: at_ms,
                        gap_ms: 0,
                        voice_end_ms: end_ms,
                    }
                } else {
                    State::Pending {
                        start_ms: at_ms,
                        voiced_ms: frame_ms,
                        gap_ms: 0,
                        voice_end_ms: end_ms,
                    }
                }
            }
            (
                State::Pending {
                    start_ms, voiced_ms, ..
                },
                true,
            ) => {
                let voiced_ms = voiced_ms + frame_ms;
                if voiced_ms >= min_speech {
                    out.push(VadEvent::SpeechConfirmed { at_ms: end_ms });
                    State::Speaking {
                        start_ms,
                        gap_ms: 0,
                        voice_end_ms: end_ms,
                    }
                } else {
                    State::Pending {
                        start_ms,
                        voiced_ms,
                        gap_ms: 0,
                        voice_end_ms: end_ms,
                    }
                }
            }
            (
                State::Pending {
                    start_ms,
                    voiced_ms,
                    gap_ms,
                    voice_end_ms,
                },
                false,
            ) => {
                let gap_ms = gap_ms + frame_ms;
                let limit = u64::from(self.config.max_gap_ms.min(self.config.silence_ms));
                if gap_ms >= limit {
                    out.push(VadEvent::SpeechEnded {
                        at_ms: voice_end_ms,
                        duration_ms: voice_end_ms - start_ms,
                    });
                    State::Silence
                } else {
                    State::Pending {
                        start_ms,
                        voiced_ms,
                        gap_ms,
                        voice_end_ms,
                    }
                }
            }
            (State::Speaking { start_ms, .. }, true) => State::Speaking {
                start_ms,
                gap_ms: 0,
                voice_end_ms: end_ms,
            },
            (
                State::Speaking {
                    start_ms,
                    gap_ms,
                    voice_end_ms,
                },
                false,
            ) => {
                let gap_ms = gap_ms + frame_ms;
                if gap_ms >= u64::from(self.config.silence_ms) {
                    out.push(VadEvent::SpeechEnded {
                        at_ms: voice_end_ms,
                        duration_ms: voice_end_ms - start_ms,
                    });
                    State::Silence
                } else {
                    State::Speaking {
                        start_ms,
                        gap_ms,
                        voice_end_ms,
                    }
                }
            }
        };
        out
    }

    /// Forget the current segment and the detector's history (new stream).
    pub fn reset(&mut self) {
        self.vad.reset();
        self.state = State::Silence;
        self.floor = NoiseFloor { db: None };
        self.hangover_ms = 0;
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
        let vowels: [[f64; 3]; 5] = [
            [730.0, 1090.0, 2440.0],
            [270.0, 2290.0, 3010.0],
            [530.0, 1840.0, 2480.0],
            [570.0, 840.0, 2410.0],
            [300.0, 870.0, 2240.0],
        ];
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
        signal
            .iter()
            .zip(noise.iter().cycle())
            .map(|(s, n)| s + n * gain)
            .collect()
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
            scores.push(td.last_analysis().score);
        }
        (events, scores)
    }

    fn concat(parts: &[Vec<f64>]) -> Vec<f64> {
        parts.concat()
    }

    /// (start_ms, end_ms) of each SpeechStarted..SpeechEnded pair that was confirmed.
    fn turns(events: &[VadEvent]) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut start = None;
        let mut confirmed = false;
        for e in events {
            match *e {
                VadEvent::SpeechStarted { at_ms } => (start, confirmed) = (Some(at_ms), false),
                VadEvent::SpeechConfirmed { .. } => confirmed = true,
                VadEvent::SpeechEnded { at_ms, duration_ms } => {
                    let s = start.take().expect("SpeechEnded without SpeechStarted");
                    assert_eq!(at_ms - s, duration_ms);
                    if confirmed {
                        out.push((s, at_ms));
                    }
                }
            }
        }
        assert!(start.is_none(), "unterminated segment in {events:?}");
        out
    }

    fn confirmations(events: &[VadEvent]) -> usize {
        events
            .iter()
            .filter(|e| matches!(e, VadEvent::SpeechConfirmed { .. }))
            .count()
    }

    /// 0.5 s silence, 1.2 s speech, 1 s silence, 0.8 s speech, 1 s silence.
    fn two_utterances() -> Vec<f64> {
        concat(&[
            silence(8000, 500),
            voiced(8000, 1200, 12000.0, 1),
            silence(8000, 1000),
            voiced(8000, 800, 9000.0, 2),
            silence(8000, 1000),
        ])
    }

    fn assert_two_turns(events: &[VadEvent], what: &str) {
        let t = turns(events);
        assert_eq!(t.len(), 2, "{what}: {events:?}");
        let expected = [(500, 1700), (2700, 3500)];
        for ((s, e), (xs, xe)) in t.iter().zip(expected) {
            assert!((xs..xs + 100).contains(s), "{what}: start {s}, speech began at {xs}");
            assert!(
                (xe - 150..xe + 150).contains(e),
                "{what}: end {e}, speech ended at {xe}"
            );
        }
    }

    #[test]
    fn clean_speech_gives_one_turn_per_utterance() {
        let (events, _) = detect(&to_i16(&two_utterances()), VadConfig::default());
        assert_two_turns(&events, "clean");
    }

    #[test]
    fn speech_in_white_and_pink_noise_at_10db_snr_is_detected() {
        let speech = two_utterances();
        let white_mix = mix_at_snr(&speech, &white(8000, 4500, 1.0, 11), 10.0);
        let (events, _) = detect(&to_i16(&white_mix), VadConfig::default());
        assert_two_turns(&events, "white 10 dB");
        let pink_mix = mix_at_snr(&speech, &pink(8000, 4500, 1.0, 12), 10.0);
        let (events, _) = detect(&to_i16(&pink_mix), VadConfig::default());
        assert_two_turns(&events, "pink 10 dB");
    }

    #[test]
    fn noise_alone_makes_no_turn() {
        // -30 to -18 dBFS: a noisy line, loud enough that earshot alone scores it ~0.65.
        for rms in [1000.0, 4000.0] {
            for (kind, noise) in [
                ("white", white(8000, 5000, rms, 21)),
                ("pink", pink(8000, 5000, rms, 22)),
            ] {
                let (events, scores) = detect(&to_i16(&noise), VadConfig::default());
                assert_eq!(confirmations(&events), 0, "{kind} noise at rms {rms}: {events:?}");
                assert!(
                    scores.iter().any(|&s| s >= 0.5),
                    "{kind} {rms}: the energy gate, not the score, must reject it"
                );
            }
        }
    }

    #[test]
    fn a_150ms_backchannel_starts_but_never_confirms() {
        let pcm = to_i16(&concat(&[
            silence(8000, 500),
            voiced(8000, 150, 12000.0, 3),
            silence(8000, 1000),
        ]));
        let (events, _) = detect(&pcm, VadConfig::default());
        assert_eq!(confirmations(&events), 0, "{events:?}");
        assert!(
            matches!(events.first(), Some(VadEvent::SpeechStarted { .. })),
            "{events:?}"
        );
        assert!(matches!(events.last(), Some(VadEvent::SpeechEnded { duration_ms, .. }) if *duration_ms < 250));
        // The same sound held for 600 ms is a turn.
        let pcm = to_i16(&concat(&[
            silence(8000, 500),
            voiced(8000, 600, 12000.0, 3),
            silence(8000, 1000),
        ]));
        assert_eq!(confirmations(&detect(&pcm, VadConfig::default()).0), 1);
    }

    #[test]
    fn separate_backchannels_do_not_add_up_to_a_barge_in() {
        let pcm = to_i16(&concat(&[
            silence(8000, 500),
            voiced(8000, 150, 12000.0, 4),
            silence(8000, 400),
            voiced(8000, 150, 12000.0, 5),
            silence(8000, 1000),
        ]));
        let (events, _) = detect(&pcm, VadConfig::default());
        assert_eq!(confirmations(&events), 0, "{events:?}");
        let starts = events
            .iter()
            .filter(|e| matches!(e, VadEvent::SpeechStarted { .. }))
            .count();
        assert_eq!(starts, 2, "{events:?}");
    }

    fn fixture(bytes: &[u8]) -> Vec<i16> {
        let wav = crate::wav::read_mono(bytes).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        let pad = vec![0i16; 8000];
        [pad.clone(), wav.samples, pad].concat()
    }

    #[test]
    fn recorded_sentence_is_one_turn() {
        let pcm = fixture(include_bytes!("../tests/fixtures/booking_8k.wav"));
        let (events, _) = detect(&pcm, VadConfig::default());
        let t = turns(&events);
        assert_eq!(t.len(), 1, "{events:?}");
        let (s, e) = t[0];
        assert!((1000..1300).contains(&s), "{s}");
        assert!(e - s > 2500, "whole sentence held as one turn: {s}..{e}");
    }

    #[test]
    fn recorded_sentence_survives_noise() {
        let clean: Vec<f64> = fixture(include_bytes!("../tests/fixtures/booking_8k.wav"))
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        let noisy = mix_at_snr(&clean, &pink(8000, 2000, 1.0, 31), 10.0);
        let (events, _) = detect(&to_i16(&noisy), VadConfig::default());
        assert!(!turns(&events).is_empty(), "{events:?}");
    }

    #[test]
    fn min_speech_is_per_agent() {
        let pcm = fixture(include_bytes!("../tests/fixtures/uhhuh_8k.wav"));
        let lenient = VadConfig::default();
        assert_eq!(
            confirmations(&detect(&pcm, lenient).0),
            1,
            "a 0.5 s uh-huh is a turn at 250 ms"
        );
        let strict = VadConfig {
            min_speech_ms: 800,
            ..VadConfig::default()
        };
        assert_eq!(confirmations(&detect(&pcm, strict).0), 0, "not at 800 ms");
    }

    /// The pre-gating detector: earshot on every frame, then all three tests at once.
    /// The reference the gated [`TurnDetector::push_frame`] is held to.
    fn detect_always_scored(pcm_8k: &[i16], config: VadConfig) -> (Vec<VadEvent>, u64) {
        let mut up = Resampler::phone_to_wideband();
        let mut td = TurnDetector::new(config).unwrap();
        let mut wide = [0i16; 320];
        let mut events = Vec::new();
        for (i, frame) in pcm_8k.chunks_exact(160).enumerate() {
            up.process_frame(frame, &mut wide).unwrap();
            let a = td.vad.analyze(&wide);
            let voiced = a.score >= td.config.threshold && td.energy_gate(a.energy_db);
            td.floor.update(a.energy_db, 20);
            events.extend(td.step(voiced, i as u64 * 20, 20));
        }
        (events, td.model_evaluations())
    }

    /// Run through the gated detector, returning events and model evaluations.
    fn detect_gated(pcm_8k: &[i16], config: VadConfig) -> (Vec<VadEvent>, u64) {
        let mut up = Resampler::phone_to_wideband();
        let mut td = TurnDetector::new(config).unwrap();
        let mut wide = [0i16; 320];
        let mut events = Vec::new();
        for (i, frame) in pcm_8k.chunks_exact(160).enumerate() {
            up.process_frame(frame, &mut wide).unwrap();
            events.extend(td.push_frame(&wide, i as u64 * 20));
        }
        (events, td.model_evaluations())
    }

    #[test]
    fn gating_matches_the_always_scored_detector() {
        let speech = two_utterances();
        let booking: Vec<f64> = fixture(include_bytes!("../tests/fixtures/booking_8k.wav"))
            .iter()
            .map(|&s| f64::from(s))
            .collect();
        let cases: Vec<(&str, Vec<i16>)> = vec![
            ("clean", to_i16(&speech)),
            (
                "white 10 dB",
                to_i16(&mix_at_snr(&speech, &white(8000, 4500, 1.0, 11), 10.0)),
            ),
            (
                "pink 10 dB",
                to_i16(&mix_at_snr(&speech, &pink(8000, 4500, 1.0, 12), 10.0)),
            ),
            ("booking", to_i16(&booking)),
            (
                "booking pink",
                to_i16(&mix_at_snr(&booking, &pink(8000, 2000, 1.0, 31), 10.0)),
            ),
            ("uhhuh", fixture(include_bytes!("../tests/fixtures/uhhuh_8k.wav"))),
        ];
        for (what, pcm) in cases {
            let (gated, gated_evals) = detect_gated(&pcm, VadConfig::default());
            let (always, always_evals) = detect_always_scored(&pcm, VadConfig::default());
            // earshot's recurrent state remembers for longer than the pre-roll, so a
            // wake-up after a long sleep may move an edge by one frame, never more.
            assert_eq!(gated.len(), always.len(), "{what}: {gated:?} vs {always:?}");
            for (g, a) in gated.iter().zip(&always) {
                let close = match (*g, *a) {
                    (VadEvent::SpeechStarted { at_ms: x }, VadEvent::SpeechStarted { at_ms: y })
                    | (VadEvent::SpeechConfirmed { at_ms: x }, VadEvent::SpeechConfirmed { at_ms: y })
                    | (VadEvent::SpeechEnded { at_ms: x, .. }, VadEvent::SpeechEnded { at_ms: y, .. }) => {
                        x.abs_diff(y) <= 20
                    }
                    _ => false,
                };
                assert!(close, "{what}: {g:?} vs {a:?}\n{gated:?}\n{always:?}");
            }
            assert!(
                gated_evals < always_evals,
                "{what}: {gated_evals} vs {always_evals} evaluations"
            );
        }
    }

    #[test]
    fn silence_and_steady_noise_skip_the_model() {
        let mut quiet = to_i16(&concat(&[silence(8000, 1000), white(8000, 2000, 30.0, 41)]));
        // Digital silence and -60 dBFS hiss never pass the absolute floor.
        let (events, evals) = detect_gated(&quiet, VadConfig::default());
        assert_eq!((events.len(), evals), (0, 0));
        // Steady -30 dBFS noise opens the gate only on the first frame (no floor yet):
        // that frame and the hangover after it are scored, then the model sleeps.
        let noise = to_i16(&white(8000, 3000, 1000.0, 42));
        let (events, evals) = detect_gated(&noise, VadConfig::default());
        assert!(events.is_empty(), "{events:?}");
        let hangover_blocks = (HANGOVER_MS + 20) as usize * SAMPLES_PER_MS / BLOCK + 1;
        assert!(evals as usize <= hangover_blocks, "{evals} evaluations of 3 s of noise");
        // Speech after the quiet wakes it: the pre-roll is replayed and the speech scored.
        quiet.extend(to_i16(&concat(&[voiced(8000, 600, 12000.0, 3), silence(8000, 1000)])));
        let (events, evals) = detect_gated(&quiet, VadConfig::default());
        assert_eq!(confirmations(&events), 1, "{events:?}");
        assert!(evals >= PREROLL_BLOCKS as u64 + 600 * 16 / 256, "{evals}");
    }

    #[test]
    fn skipped_frames_report_no_score() {
        let mut td = TurnDetector::new(VadConfig::default()).unwrap();
        td.push_frame(&[0; 320], 0);
        assert_eq!(
            td.last_analysis(),
            FrameAnalysis {
                score: 0.0,
                energy_db: SILENCE_DB,
                scored: false
            }
        );
        let loud = to_i16(&voiced(16000, 20, 12000.0, 9));
        td.push_frame(&loud, 20);
        assert!(td.last_analysis().scored);
    }

    #[test]
    fn a_short_sleep_is_replayed_exactly() {
        let pcm = to_i16(&concat(&[voiced(16000, 300, 9000.0, 5), white(16000, 300, 500.0, 6)]));
        let mut continuous = Vad::new();
        let expected: Vec<f32> = pcm.chunks(320).map(|f| continuous.score(f)).collect();
        // Sleep through PREROLL_BLOCKS blocks' worth of frames, then wake up.
        let mut gated = Vad::new();
        let frames: Vec<&[i16]> = pcm.chunks(320).collect();
        let sleep = 3..6; // 3 frames = 960 samples: 3 or 4 blocks, within the ring
        assert!(sleep.len() * 320 <= (PREROLL_BLOCKS + 1) * BLOCK);
        for (i, f) in frames.iter().enumerate() {
            let got = gated.feed(f, !sleep.contains(&i));
            if sleep.contains(&i) {
                assert_eq!(got, None);
            } else {
                assert_eq!(
                    got,
                    Some(expected[i]),
                    "frame {i}: replay must make the model continuous"
                );
            }
        }
        assert_eq!(gated.evaluations(), continuous.evaluations());
    }

    #[test]
    fn state_machine_timing() {
        let cfg = VadConfig {
            min_speech_ms: 60,
            silence_ms: 100,
            max_gap_ms: 40,
            ..VadConfig::default()
        };
        let mut td = TurnDetector::new(cfg).unwrap();
        let mut run = |voiced: bool, at: u64| td.step(voiced, at, 20).collect::<Vec<_>>();
        assert_eq!(run(true, 1000), vec![VadEvent::SpeechStarted { at_ms: 1000 }]);
        assert_eq!(run(false, 1020), vec![], "one unvoiced frame is below max_gap");
        assert_eq!(run(true, 1040), vec![]);
        assert_eq!(
            run(true, 1060),
            vec![VadEvent::SpeechConfirmed { at_ms: 1080 }],
            "60 ms voiced, gap not counted"
        );
        for at in [1080, 1100, 1120, 1140] {
            assert_eq!(run(false, at), vec![]);
        }
        assert_eq!(
            run(false, 1160),
            vec![VadEvent::SpeechEnded {
                at_ms: 1080,
                duration_ms: 80
            }]
        );
        assert_eq!(run(false, 1180), vec![]);
    }

    #[test]
    fn start_and_confirm_can_share_a_frame() {
        let cfg = VadConfig {
            min_speech_ms: 20,
            ..VadConfig::default()
        };
        let mut td = TurnDetector::new(cfg).unwrap();
        let ev: Vec<_> = td.step(true, 40, 20).collect();
        assert_eq!(
            ev,
            vec![
                VadEvent::SpeechStarted { at_ms: 40 },
                VadEvent::SpeechConfirmed { at_ms: 60 }
            ]
        );
        assert!(td.is_speaking());
        td.reset();
        assert!(!td.in_speech());
    }

    #[test]
    fn config_is_validated() {
        let bad = |c: VadConfig| TurnDetector::new(c).unwrap_err();
        assert_eq!(
            bad(VadConfig {
                threshold: 1.5,
                ..VadConfig::default()
            }),
            VadError::Threshold(1.5)
        );
        assert_eq!(
            bad(VadConfig {
                silence_ms: 0,
                ..VadConfig::default()
            }),
            VadError::SilenceTooShort(0)
        );
        assert_eq!(
            bad(VadConfig {
                min_snr_db: -1.0,
                ..VadConfig::default()
            }),
            VadError::Snr(-1.0)
        );
    }

    #[test]
    fn noise_floor_tracks_down_fast_and_up_slowly() {
        let mut td = TurnDetector::new(VadConfig::default()).unwrap();
        // Alternating samples (8 kHz tone) pass the 300 Hz high-pass untouched; DC would not.
        let tone = |amp: i16| {
            (0..320)
                .map(|i| if i % 2 == 0 { amp } else { -amp })
                .collect::<Vec<i16>>()
        };
        let (loud, quiet) = (tone(8000), tone(300));
        td.push_frame(&loud, 0);
        let high = td.noise_floor_db().unwrap();
        td.push_frame(&quiet, 20);
        let low = td.noise_floor_db().unwrap();
        assert!(high - low > 20.0, "{high} -> {low}");
        for i in 0..50 {
            td.push_frame(&loud, 40 + i * 20);
        }
        let after_1s = td.noise_floor_db().unwrap();
        assert!(
            (after_1s - low - FLOOR_RISE_DB_PER_S).abs() < 0.5,
            "rose {} dB in 1 s",
            after_1s - low
        );
    }
}
