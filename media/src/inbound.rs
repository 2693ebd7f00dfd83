//! The caller-audio path for one call: a Twilio `media` message in, linear PCM at
//! 8 and 16 kHz plus turn-taking events out.
//!
//! Per frame: base64 payload -> μ-law bytes -> 8 kHz i16 -> 16 kHz i16 (for STT and
//! the VAD) -> [`TurnDetector`]. All buffers are fixed-size and owned by
//! [`InboundAudio`], so a frame costs no allocation. Payloads up to
//! [`MAX_PAYLOAD`] bytes (200 ms) are accepted; Twilio sends 160 (20 ms).
//!
//! Timing: VAD event times are the frames' `media.timestamp` values; the 8 -> 16 kHz
//! filter delays the audio by 10 ms, which the events inherit.

use crate::resample::Resampler;
use crate::twilio::{Media, WireError};
use crate::ulaw;
use crate::vad::{Events, TurnDetector, VadConfig, VadError};

/// Largest μ-law payload handled per message (200 ms at 8 kHz).
pub const MAX_PAYLOAD: usize = 1600;

/// One decoded inbound frame; the slices borrow the pipeline's buffers until the next call.
#[derive(Debug)]
pub struct InboundFrame<'a> {
    pub timestamp_ms: u64,
    /// The payload decoded to 8 kHz linear PCM (what the recorder stores).
    pub pcm_8k: &'a [i16],
    /// The same audio at 16 kHz (what STT consumes); 10 ms behind `pcm_8k`.
    pub pcm_16k: &'a [i16],
    pub events: Events,
}

/// Decode, upsample and run the VAD on caller audio, without allocating per frame.
pub struct InboundAudio {
    ulaw: Box<[u8; MAX_PAYLOAD]>,
    pcm_8k: Box<[i16; MAX_PAYLOAD]>,
    /// Room for the payload's worth of 16 kHz audio plus one buffered block.
    pcm_16k: Box<[i16; 2 * MAX_PAYLOAD + 320]>,
    upsampler: Resampler,
    turn: TurnDetector,
}

impl std::fmt::Debug for InboundAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAudio")
            .field("turn", &self.turn)
            .finish_non_exhaustive()
    }
}

impl InboundAudio {
    pub fn new(vad: VadConfig) -> Result<Self, VadError> {
        Ok(Self {
            ulaw: Box::new([0; MAX_PAYLOAD]),
            pcm_8k: Box::new([0; MAX_PAYLOAD]),
            pcm_16k: Box::new([0; 2 * MAX_PAYLOAD + 320]),
            upsampler: Resampler::phone_to_wideband(),
            turn: TurnDetector::new(vad)?,
        })
    }

    /// The turn detector (for `is_speaking()` and the last frame's analysis).
    pub fn turn(&self) -> &TurnDetector {
        &self.turn
    }

    /// Process one `media` message.
    pub fn on_media(&mut self, media: &Media<'_>) -> Result<InboundFrame<'_>, WireError> {
        let n = media.decode_payload(&mut self.ulaw[..])?;
        Ok(self.on_ulaw_at(n, media.timestamp_ms))
    }

    /// Process raw μ-law bytes that start at stream time `timestamp_ms` (for media
    /// legs that are not Twilio JSON). Bytes beyond [`MAX_PAYLOAD`] are refused.
    pub fn on_ulaw(&mut self, ulaw_bytes: &[u8], timestamp_ms: u64) -> Result<InboundFrame<'_>, WireError> {
        if ulaw_bytes.len() > MAX_PAYLOAD {
            return Err(WireError::PayloadTooLarge {
                len: ulaw_bytes.len(),
                cap: MAX_PAYLOAD,
            });
        }
        self.ulaw[..ulaw_bytes.len()].copy_from_slice(ulaw_bytes);
        Ok(self.on_ulaw_at(ulaw_bytes.len(), timestamp_ms))
    }

    fn on_ulaw_at(&mut self, n: usize, timestamp_ms: u64) -> InboundFrame<'_> {
        ulaw::decode_into(&self.ulaw[..n], &mut self.pcm_8k[..n]);
        let out = &mut self.pcm_16k[..];
        let mut wide = 0;
        self.upsampler.push(&self.pcm_8k[..n], |s| {
            out[wide..wide + s.len()].copy_from_slice(s);
            wide += s.len();
        });
        let events = if wide > 0 {
            self.turn.push_frame(&self.pcm_16k[..wide], timestamp_ms)
        } else {
            Events::default()
        };
        InboundFrame {
            timestamp_ms,
            pcm_8k: &self.pcm_8k[..n],
            pcm_16k: &self.pcm_16k[..wide],
            events,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::twilio::{InboundEvent, OutboundWriter, parse_inbound};
    use crate::vad::VadEvent;
    use crate::vad::synth::{silence, to_i16, voiced};

    /// Twilio-shaped inbound media JSON for μ-law bytes.
    fn media_json(ulaw_bytes: &[u8], ts: u64) -> String {
        let mut w = OutboundWriter::default();
        w.media("MZ1", ulaw_bytes).replace(
            r#""media":{"#,
            &format!(r#""media":{{"track":"inbound","chunk":"1","timestamp":"{ts}","#),
        )
    }

    #[test]
    fn twilio_frames_flow_through_to_turn_events() {
        let pcm = to_i16(&[silence(8000, 400), voiced(8000, 1000, 12000.0, 7), silence(8000, 1000)].concat());
        let mut inbound = InboundAudio::new(VadConfig::default()).unwrap();
        let mut events = Vec::new();
        let mut ulaw_frame = [0u8; 160];
        for (i, frame) in pcm.chunks_exact(160).enumerate() {
            ulaw::encode_into(frame, &mut ulaw_frame);
            let json = media_json(&ulaw_frame, i as u64 * 20);
            let InboundEvent::Media(m) = parse_inbound(&json, 4096).unwrap() else {
                panic!("not media")
            };
            let out = inbound.on_media(&m).unwrap();
            assert_eq!((out.pcm_8k.len(), out.pcm_16k.len()), (160, 320));
            assert_eq!(out.timestamp_ms, i as u64 * 20);
            assert_eq!(out.pcm_8k[0], ulaw::decode(ulaw_frame[0]));
            events.extend(out.events);
        }
        assert!(
            matches!(
                events[..],
                [
                    VadEvent::SpeechStarted { .. },
                    VadEvent::SpeechConfirmed { .. },
                    VadEvent::SpeechEnded { .. }
                ]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn odd_payload_sizes_are_buffered_and_oversize_refused() {
        let mut inbound = InboundAudio::new(VadConfig::default()).unwrap();
        let out = inbound.on_ulaw(&[ulaw::SILENCE; 100], 0).unwrap();
        assert_eq!(
            (out.pcm_8k.len(), out.pcm_16k.len()),
            (100, 0),
            "less than one 20 ms block"
        );
        let out = inbound.on_ulaw(&[ulaw::SILENCE; 100], 12).unwrap();
        assert_eq!(out.pcm_16k.len(), 320);
        let out = inbound.on_ulaw(&[ulaw::SILENCE; MAX_PAYLOAD], 24).unwrap();
        assert_eq!(
            out.pcm_16k.len(),
            3200,
            "40 buffered + 1600 new = 10 blocks, 40 left over"
        );
        assert!(matches!(
            inbound.on_ulaw(&[0; MAX_PAYLOAD + 1], 0),
            Err(WireError::PayloadTooLarge {
                len: 1601,
                cap: MAX_PAYLOAD
            })
        ));
    }
}
