//! What the synthetic caller says, frame by frame.
//!
//! The caller's leg is `lead` silent frames, then the caller audio cut into
//! 20 ms frames (the last one padded with silence), then silence until the
//! call ends. The schedule also knows where the caller is speaking (non-silent
//! spans), so events and latency math need no VAD at run time.
//!
//! Guarantees: frame `k` covers stream time `[20k, 20k + 20)` ms; encoding a
//! frame writes exactly 160 μ-law bytes into a caller buffer (no allocation);
//! speech spans are computed once, up front.

use std::sync::Arc;
use std::time::Duration;

use switchboard_media::ulaw;

use crate::playout::FRAME;

/// Stream time per frame.
pub const FRAME_TIME: Duration = Duration::from_millis(20);

/// A frame is "speech" when its RMS is above this (about −47 dBFS).
const SPEECH_RMS: f64 = 150.0;
/// Quieter gaps shorter than this do not split a span (pauses between words).
const GAP_FRAMES: u64 = 15;

/// The caller's audio laid out on the stream clock.
#[derive(Debug, Clone)]
pub struct Schedule {
    audio: Arc<[i16]>,
    lead_frames: u64,
    audio_frames: u64,
    /// `[start, end)` frame ranges where the caller speaks.
    speech: Vec<(u64, u64)>,
}

/// Whole frames covering `d` (rounded up).
pub fn frames_in(d: Duration) -> u64 {
    let ms = d.as_millis();
    u64::try_from(ms.div_ceil(20)).unwrap_or(u64::MAX)
}

/// Stream time at the start of frame `k`.
pub fn frame_time(k: u64) -> Duration {
    Duration::from_millis(k.saturating_mul(20))
}

impl Schedule {
    pub fn new(audio: Arc<[i16]>, lead: Duration) -> Self {
        let lead_frames = frames_in(lead);
        let audio_frames = audio.len().div_ceil(FRAME) as u64;
        let mut speech: Vec<(u64, u64)> = Vec::new();
        for (i, chunk) in audio.chunks(FRAME).enumerate() {
            let energy: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            let rms = (energy / FRAME as f64).sqrt();
            if rms < SPEECH_RMS {
                continue;
            }
            let k = lead_frames + i as u64;
            match speech.last_mut() {
                Some((_, end)) if k - *end < GAP_FRAMES => *end = k + 1,
                _ => speech.push((k, k + 1)),
            }
        }
        Self {
            audio,
            lead_frames,
            audio_frames,
            speech,
        }
    }

    /// First frame after the caller audio.
    pub fn end_frame(&self) -> u64 {
        self.lead_frames + self.audio_frames
    }

    /// The caller's speech spans as `[start, end)` frame indexes.
    pub fn speech_frames(&self) -> &[(u64, u64)] {
        &self.speech
    }

    /// The caller's speech spans on the stream clock.
    pub fn speech_spans(&self) -> Vec<(Duration, Duration)> {
        self.speech
            .iter()
            .map(|&(a, b)| (frame_time(a), frame_time(b)))
            .collect()
    }

    /// Writes frame `k` as μ-law into `out` (silence outside the audio).
    pub fn encode_frame(&self, k: u64, out: &mut [u8; FRAME]) {
        out.fill(ulaw::SILENCE);
        let Some(i) = k.checked_sub(self.lead_frames).filter(|i| *i < self.audio_frames) else {
            return;
        };
        let start = usize::try_from(i).unwrap_or(usize::MAX).saturating_mul(FRAME);
        let end = start.saturating_add(FRAME).min(self.audio.len());
        if let Some(samples) = self.audio.get(start..end) {
            ulaw::encode_into(samples, &mut out[..samples.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(samples: usize, amplitude: f64) -> Vec<i16> {
        (0..samples)
            .map(|i| (amplitude * (i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn frames_are_laid_out_after_the_lead_and_padded() {
        let audio = tone(400, 8000.0);
        let s = Schedule::new(audio.clone().into(), Duration::from_millis(100));
        assert_eq!(s.end_frame(), 5 + 3);
        let mut out = [0u8; FRAME];
        s.encode_frame(4, &mut out);
        assert!(out.iter().all(|&b| b == ulaw::SILENCE));
        s.encode_frame(5, &mut out);
        let expected: Vec<u8> = audio[..160].iter().map(|&x| ulaw::encode(x)).collect();
        assert_eq!(&out[..], &expected[..]);
        s.encode_frame(7, &mut out);
        let tail: Vec<u8> = audio[320..].iter().map(|&x| ulaw::encode(x)).collect();
        assert_eq!(&out[..80], &tail[..]);
        assert!(out[80..].iter().all(|&b| b == ulaw::SILENCE));
        s.encode_frame(8, &mut out);
        assert!(out.iter().all(|&b| b == ulaw::SILENCE));
    }

    #[test]
    fn speech_spans_merge_short_gaps_and_split_long_ones() {
        // 0.2 s speech, 0.1 s pause, 0.2 s speech, 1 s silence, 0.2 s speech.
        let mut audio = tone(1600, 8000.0);
        audio.extend(std::iter::repeat_n(0, 800));
        audio.extend(tone(1600, 8000.0));
        audio.extend(std::iter::repeat_n(0, 8000));
        audio.extend(tone(1600, 8000.0));
        let s = Schedule::new(audio.into(), Duration::from_millis(40));
        assert_eq!(s.speech_frames(), &[(2, 27), (77, 87)]);
        assert_eq!(
            s.speech_spans()[0],
            (Duration::from_millis(40), Duration::from_millis(540))
        );
    }
}
