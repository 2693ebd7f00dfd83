//! Fixed-ratio, anti-aliased resampling of mono i16 PCM between the rates a call uses.
//!
//! A [`Resampler`] converts one direction (for example 8 kHz caller audio up to
//! 16 kHz for STT, or 24 kHz TTS down to 8 kHz for the phone). It wraps rubato's
//! FFT resampler (`rubato::Fft`), which low-pass filters before decimating, so
//! downsampling does not alias. Work is done in blocks of 20 ms of input.
//!
//! Guarantees:
//! - All buffers are allocated in [`Resampler::new`]; [`Resampler::push`],
//!   [`Resampler::process_frame`] and [`Resampler::flush`] never allocate.
//! - Input of any length is accepted by [`Resampler::push`]: samples are buffered
//!   internally until a full 20 ms block is available (for 22.05 kHz that is 441
//!   samples). Buffering adds up to one block (20 ms) of latency on top of the
//!   filter delay.
//! - The filter delays the signal by [`Resampler::delay_samples`] output samples
//!   (10 ms for every supported pair). In [`Alignment::Stream`] that delay stays
//!   in the output (constant block sizes, which the inbound path wants); in
//!   [`Alignment::Trimmed`] the leading delay is dropped, so output sample `n`
//!   lines up with input time `n / rate_out` (the player wants this to place marks).
//! - [`Resampler::flush`] pads the last partial block with silence and drains the
//!   filter, so after a flush exactly `round(total_in * rate_out / rate_in)`
//!   samples (plus the delay in `Stream` alignment) have been emitted.
//! - Equal rates pass samples through unchanged, with no delay.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler as _, WindowFunction};

/// Samples of i16 full scale, used to move between i16 and rubato's f32.
const I16_SCALE: f32 = 32768.0;

/// Why a resampler could not be built or used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResampleError {
    #[error("sample rate {0} Hz is not supported (supported: 8000, 16000, 22050, 24000, 48000)")]
    UnsupportedRate(u32),
    #[error("rubato rejected {rate_in} -> {rate_out} Hz: {reason}")]
    Construction {
        rate_in: u32,
        rate_out: u32,
        reason: String,
    },
    #[error("frame of {got} samples, expected exactly {expected}")]
    FrameSize { got: usize, expected: usize },
    #[error("output buffer of {got} samples, need {needed}")]
    OutputTooSmall { got: usize, needed: usize },
}

/// Whether the filter delay stays at the start of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Keep the delay: every full input block yields a full output block.
    Stream,
    /// Drop the first [`Resampler::delay_samples`] output samples after each reset.
    Trimmed,
}

/// Rates a call can meet: telephone, STT/wideband, and common TTS outputs.
const SUPPORTED: [u32; 5] = [8000, 16000, 22050, 24000, 48000];

enum Engine {
    Passthrough,
    Fft {
        fft: Box<Fft<f32>>,
        /// Input block gathered here until full (f32, already scaled).
        block_in: Vec<f32>,
        block_out: Vec<f32>,
    },
}

/// One direction of sample-rate conversion with preallocated buffers.
pub struct Resampler {
    engine: Engine,
    rate_in: u32,
    rate_out: u32,
    chunk_in: usize,
    chunk_out: usize,
    delay: usize,
    alignment: Alignment,
    /// Samples currently gathered in `block_in`.
    filled: usize,
    /// Output samples still to drop (trimmed alignment).
    skip: usize,
    /// Converted output staged as i16 for the sink.
    staged: Vec<i16>,
    total_in: u64,
    total_out: u64,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("rate_in", &self.rate_in)
            .field("rate_out", &self.rate_out)
            .field("chunk_in", &self.chunk_in)
            .field("chunk_out", &self.chunk_out)
            .field("alignment", &self.alignment)
            .finish_non_exhaustive()
    }
}

impl Resampler {
    /// Build a resampler from `rate_in` to `rate_out` working on 20 ms input blocks.
    pub fn new(rate_in: u32, rate_out: u32, alignment: Alignment) -> Result<Self, ResampleError> {
        for rate in [rate_in, rate_out] {
            if !SUPPORTED.contains(&rate) {
                return Err(ResampleError::UnsupportedRate(rate));
            }
        }
        // Every supported rate is a multiple of 50 Hz, so 20 ms is a whole number of samples.
        let chunk_in = rate_in as usize / 50;
        let chunk_out = rate_out as usize / 50;
        let engine = if rate_in == rate_out {
            Engine::Passthrough
        } else {
            // One FFT block per 20 ms chunk (sub_chunks = 1): the default splits long
            // chunks (48 kHz) into blocks that do not divide 20 ms, which makes the
            // output size vary from call to call.
            let fft = Fft::<f32>::new_custom(
                rate_in as usize,
                rate_out as usize,
                chunk_in,
                1,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| ResampleError::Construction {
                rate_in,
                rate_out,
                reason: e.to_string(),
            })?;
            // With one block per call rubato must emit exactly one 20 ms output block; the
            // per-frame code relies on that, so refuse a configuration where it would not.
            if fft.input_frames_next() != chunk_in || fft.output_frames_next() != chunk_out {
                return Err(ResampleError::Construction {
                    rate_in,
                    rate_out,
                    reason: format!(
                        "block sizes {}->{} instead of {chunk_in}->{chunk_out}",
                        fft.input_frames_next(),
                        fft.output_frames_next()
                    ),
                });
            }
            Engine::Fft {
                fft: Box::new(fft),
                block_in: vec![0.0; chunk_in],
                block_out: vec![0.0; chunk_out],
            }
        };
        let delay = match &engine {
            Engine::Passthrough => 0,
            Engine::Fft { fft, .. } => fft.output_delay(),
        };
        let mut r = Self {
            engine,
            rate_in,
            rate_out,
            chunk_in,
            chunk_out,
            delay,
            alignment,
            filled: 0,
            skip: 0,
            staged: vec![0; chunk_out],
            total_in: 0,
            total_out: 0,
        };
        r.reset();
        Ok(r)
    }

    /// 8 kHz telephone audio up to 16 kHz for STT and VAD, keeping block sizes constant.
    pub fn phone_to_wideband() -> Self {
        // Both rates are in SUPPORTED and the sizes are checked by tests, so this cannot fail.
        match Self::new(8000, 16000, Alignment::Stream) {
            Ok(r) => r,
            Err(e) => unreachable!("8k->16k is a supported pair: {e}"),
        }
    }

    pub fn rate_in(&self) -> u32 {
        self.rate_in
    }

    pub fn rate_out(&self) -> u32 {
        self.rate_out
    }

    /// Input samples per block (20 ms at `rate_in`).
    pub fn block_in(&self) -> usize {
        self.chunk_in
    }

    /// Output samples per block (20 ms at `rate_out`).
    pub fn block_out(&self) -> usize {
        self.chunk_out
    }

    /// Filter delay in output samples (dropped in [`Alignment::Trimmed`]).
    pub fn delay_samples(&self) -> usize {
        self.delay
    }

    /// Input samples buffered and not yet converted.
    pub fn buffered(&self) -> usize {
        self.filled
    }

    /// Forget all state (filter history, partial block, counters), as for a new stream.
    pub fn reset(&mut self) {
        if let Engine::Fft { fft, .. } = &mut self.engine {
            fft.reset();
        }
        self.filled = 0;
        self.total_in = 0;
        self.total_out = 0;
        self.skip = match self.alignment {
            Alignment::Stream => 0,
            Alignment::Trimmed => self.delay,
        };
    }

    /// Convert exactly one 20 ms block (`block_in()` samples) into `out`, returning
    /// the number of samples written. Fails if samples are already buffered by
    /// [`Resampler::push`] or the sizes are wrong.
    pub fn process_frame(&mut self, input: &[i16], out: &mut [i16]) -> Result<usize, ResampleError> {
        if input.len() != self.chunk_in || self.filled != 0 {
            return Err(ResampleError::FrameSize {
                got: input.len() + self.filled,
                expected: self.chunk_in,
            });
        }
        if out.len() < self.chunk_out {
            return Err(ResampleError::OutputTooSmall {
                got: out.len(),
                needed: self.chunk_out,
            });
        }
        let mut written = 0;
        self.push(input, |s| {
            out[written..written + s.len()].copy_from_slice(s);
            written += s.len();
        });
        Ok(written)
    }

    /// Feed any number of input samples; every completed block's output is handed to
    /// `sink` (at most `block_out()` samples per call, possibly fewer while trimming).
    pub fn push(&mut self, mut input: &[i16], mut sink: impl FnMut(&[i16])) {
        self.total_in += input.len() as u64;
        while !input.is_empty() {
            match &mut self.engine {
                Engine::Passthrough => {
                    let n = input.len().min(self.chunk_out);
                    self.total_out += n as u64;
                    sink(&input[..n]);
                    input = &input[n..];
                }
                Engine::Fft { block_in, .. } => {
                    let take = (self.chunk_in - self.filled).min(input.len());
                    for (dst, &s) in block_in[self.filled..self.filled + take].iter_mut().zip(&input[..take]) {
                        *dst = f32::from(s) / I16_SCALE;
                    }
                    self.filled += take;
                    input = &input[take..];
                    if self.filled == self.chunk_in {
                        self.run_block(self.chunk_out, &mut sink);
                    }
                }
            }
        }
    }

    /// Pad the partial block with silence and drain the filter so every input sample
    /// has come out; then reset for the next stream. Returns the samples emitted here.
    pub fn flush(&mut self, mut sink: impl FnMut(&[i16])) -> usize {
        let before = self.total_out;
        if let Engine::Fft { .. } = self.engine {
            let lag = match self.alignment {
                Alignment::Stream => self.delay as u64,
                Alignment::Trimmed => 0,
            };
            let rate_in = u64::from(self.rate_in);
            let target = (self.total_in * u64::from(self.rate_out) + rate_in / 2) / rate_in + lag;
            while self.total_out < target {
                if let Engine::Fft { block_in, .. } = &mut self.engine {
                    block_in[self.filled..].fill(0.0);
                }
                self.filled = self.chunk_in;
                // Cap what this block may emit so the stream ends exactly at `target`.
                let room = usize::try_from(target - self.total_out).unwrap_or(usize::MAX);
                self.run_block(room, &mut sink);
            }
        }
        let emitted = (self.total_out - before) as usize;
        self.reset();
        emitted
    }

    /// Convert the full `block_in`, emitting at most `limit` samples after trimming.
    fn run_block(&mut self, limit: usize, sink: &mut impl FnMut(&[i16])) {
        let Engine::Fft {
            fft,
            block_in,
            block_out,
        } = &mut self.engine
        else {
            return;
        };
        self.filled = 0;
        let produced = match (
            InterleavedSlice::new(&block_in[..], 1, self.chunk_in),
            InterleavedSlice::new_mut(&mut block_out[..], 1, self.chunk_out),
        ) {
            (Ok(inp), Ok(mut outp)) => match fft.process_into_buffer(&inp, &mut outp, None) {
                Ok((_, n)) => n,
                // Sizes were validated at construction; a failure here would be a rubato
                // bug, and dropping one block of audio is the least harmful outcome.
                Err(_) => 0,
            },
            _ => 0,
        };
        let skip = self.skip.min(produced);
        self.skip -= skip;
        let n = (produced - skip).min(limit);
        for (dst, &s) in self.staged[..n].iter_mut().zip(&block_out[skip..skip + n]) {
            // `as` saturates for f32 -> i16, which is the clipping we want.
            *dst = (s * I16_SCALE).round() as i16;
        }
        self.total_out += n as u64;
        if n > 0 {
            sink(&self.staged[..n]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::f64::consts::PI;

    /// Goertzel power of `freq` in `x`, normalised so a full-length sine of amplitude A gives ~A.
    pub(crate) fn tone_amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let w = 2.0 * PI * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
        2.0 * power.max(0.0).sqrt() / x.len() as f64
    }

    pub(crate) fn sine(rate: u32, freq: f64, amp: f64, n: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()).round() as i16)
            .collect()
    }

    fn run_all(r: &mut Resampler, input: &[i16], piece: usize) -> Vec<i16> {
        let mut out = Vec::new();
        for part in input.chunks(piece) {
            r.push(part, |s| out.extend_from_slice(s));
        }
        r.flush(|s| out.extend_from_slice(s));
        out
    }

    #[test]
    fn block_sizes_are_20_ms_for_every_pair() {
        for (a, b) in [
            (8000, 16000),
            (16000, 8000),
            (22050, 8000),
            (24000, 8000),
            (48000, 8000),
            (8000, 24000),
        ] {
            let r = Resampler::new(a, b, Alignment::Stream).unwrap();
            assert_eq!(
                (r.block_in(), r.block_out()),
                (a as usize / 50, b as usize / 50),
                "{a}->{b}"
            );
        }
        assert_eq!(Resampler::phone_to_wideband().delay_samples(), 160, "10 ms at 16 kHz");
        assert_eq!(
            Resampler::new(44100, 8000, Alignment::Stream).unwrap_err(),
            ResampleError::UnsupportedRate(44100)
        );
    }

    #[test]
    fn frame_upsampling_gives_320_samples_per_160() {
        let mut r = Resampler::phone_to_wideband();
        let input = sine(8000, 1000.0, 8000.0, 160);
        let mut out = [0i16; 320];
        for _ in 0..5 {
            assert_eq!(r.process_frame(&input, &mut out).unwrap(), 320);
        }
        assert_eq!(
            r.process_frame(&input[..100], &mut out),
            Err(ResampleError::FrameSize {
                got: 100,
                expected: 160
            })
        );
        assert_eq!(
            r.process_frame(&input, &mut [0i16; 10]),
            Err(ResampleError::OutputTooSmall { got: 10, needed: 320 })
        );
    }

    #[test]
    fn flushed_output_length_matches_the_ratio_for_odd_chunk_sizes() {
        for (rate, n) in [(22050u32, 22050 / 3 + 17), (24000, 12345), (16000, 999), (8000, 1001)] {
            let mut r = Resampler::new(rate, 8000, Alignment::Trimmed).unwrap();
            let input = sine(rate, 500.0, 5000.0, n);
            let out = run_all(&mut r, &input, 337);
            let expected = ((n as u64 * 8000 + u64::from(rate) / 2) / u64::from(rate)) as usize;
            assert_eq!(out.len(), expected, "{rate} Hz, {n} samples");
            // Stream alignment keeps the delay in front and still drains the tail.
            let mut r = Resampler::new(rate, 8000, Alignment::Stream).unwrap();
            let out = run_all(&mut r, &input, 500);
            assert_eq!(out.len(), expected + r.delay_samples(), "stream {rate}");
        }
    }

    #[test]
    fn a_1khz_sine_survives_up_and_down_sampling() {
        let input = sine(8000, 1000.0, 10000.0, 8000);
        let mut up = Resampler::new(8000, 16000, Alignment::Trimmed).unwrap();
        let wide = run_all(&mut up, &input, 160);
        assert_eq!(wide.len(), 16000);
        // Skip edges where the filter starts and stops.
        let a = tone_amplitude(&wide[800..15200], 16000, 1000.0);
        assert!((a - 10000.0).abs() < 300.0, "1 kHz at 16k: {a}");
        let mut down = Resampler::new(16000, 8000, Alignment::Trimmed).unwrap();
        let back = run_all(&mut down, &wide, 320);
        assert_eq!(back.len(), 8000);
        let a = tone_amplitude(&back[400..7600], 8000, 1000.0);
        assert!((a - 10000.0).abs() < 300.0, "1 kHz back at 8k: {a}");
        // Trimmed alignment lines the output up with the input sample for sample.
        let err: f64 = input[400..7600]
            .iter()
            .zip(&back[400..7600])
            .map(|(&x, &y)| f64::from(x - y).abs())
            .sum();
        assert!(err / 7200.0 < 300.0, "mean abs error {}", err / 7200.0);
    }

    #[test]
    fn tts_rates_down_to_8k_keep_a_1khz_sine() {
        for rate in [16000u32, 22050, 24000] {
            let input = sine(rate, 1000.0, 10000.0, rate as usize);
            let mut r = Resampler::new(rate, 8000, Alignment::Trimmed).unwrap();
            let out = run_all(&mut r, &input, 777);
            let a = tone_amplitude(&out[400..7600], 8000, 1000.0);
            assert!((a - 10000.0).abs() < 300.0, "{rate}: {a}");
        }
    }

    #[test]
    fn a_6khz_tone_at_24k_is_filtered_out_not_aliased_to_2khz() {
        let input = sine(24000, 6000.0, 10000.0, 24000);
        let mut r = Resampler::new(24000, 8000, Alignment::Trimmed).unwrap();
        let out = run_all(&mut r, &input, 480);
        // Naive decimation by 3 would fold 6 kHz onto 2 kHz at full amplitude.
        let alias = tone_amplitude(&out[400..7600], 8000, 2000.0);
        let rms = (out[400..7600].iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 7200.0).sqrt();
        assert!(
            alias < 100.0,
            "2 kHz alias amplitude {alias} (input 10000): less than -40 dB"
        );
        assert!(rms < 100.0, "output rms {rms}");
    }

    #[test]
    fn stream_alignment_keeps_the_delay_and_trimmed_removes_it() {
        // An impulse: find where it lands in each alignment.
        let mut input = vec![0i16; 1600];
        input[800] = 20000;
        let peak = |v: &[i16]| {
            v.iter()
                .enumerate()
                .max_by_key(|(_, s)| s.unsigned_abs())
                .map(|(i, _)| i)
                .unwrap()
        };
        let mut r = Resampler::new(8000, 16000, Alignment::Stream).unwrap();
        let streamed = run_all(&mut r, &input, 160);
        let mut r = Resampler::new(8000, 16000, Alignment::Trimmed).unwrap();
        let trimmed = run_all(&mut r, &input, 160);
        assert!(peak(&trimmed).abs_diff(1600) <= 1, "trimmed peak at {}", peak(&trimmed));
        assert!(
            peak(&streamed).abs_diff(1600 + 160) <= 1,
            "streamed peak at {}",
            peak(&streamed)
        );
    }

    #[test]
    fn passthrough_is_identity() {
        let mut r = Resampler::new(8000, 8000, Alignment::Trimmed).unwrap();
        let input = sine(8000, 440.0, 3000.0, 1234);
        assert_eq!(run_all(&mut r, &input, 100), input);
        assert_eq!(r.delay_samples(), 0);
    }

    #[test]
    fn loud_input_clips_instead_of_wrapping() {
        let input = vec![i16::MAX; 4000];
        let mut r = Resampler::new(24000, 8000, Alignment::Trimmed).unwrap();
        let out = run_all(&mut r, &input, 480);
        assert!(
            out[200..1000].iter().all(|&s| s > 30000),
            "DC at full scale stays positive"
        );
    }

    #[test]
    fn reset_forgets_buffered_input() {
        let mut r = Resampler::new(22050, 8000, Alignment::Stream).unwrap();
        r.push(&[1000; 100], |_| panic!("no full block yet"));
        assert_eq!(r.buffered(), 100);
        r.reset();
        assert_eq!(r.buffered(), 0);
        let mut n = 0;
        r.push(&[0; 441], |s| n += s.len());
        assert_eq!(n, 160);
    }
}
