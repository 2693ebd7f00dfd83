//! The outbound player: TTS audio in, paced 20 ms μ-law frames and marks out.
//!
//! An utterance (one bot response) arrives as PCM chunks at its TTS rate (8, 16,
//! 22.05, 24 or 48 kHz). The player resamples them to 8 kHz (anti-aliased, with the
//! filter delay trimmed so positions line up), encodes μ-law and cuts fixed
//! 160-byte frames. The caller owns the clock: [`Player::poll_frame`] hands out a
//! frame only when it is due, keeping at most `lead_ms` of audio queued at Twilio
//! so a barge-in `clear` is cheap; [`Player::next_due_ms`] says when to poll again.
//!
//! Marks follow the ledger algorithm of Twilio's Media Streams (marks are echoed
//! once the audio before them has played): after each chunk the player emits a mark
//! named `"{utterance}:{seq}"` right after the frame holding the chunk's last
//! sample, and remembers the chunk's end position (ms into the utterance, and the
//! end of the chunk's text span if given). [`Player::on_mark`] turns an echo into
//! "this much was heard". [`Player::clear`] drops queued audio and reports what was
//! heard of the interrupted utterance (the last mark confirmed before the clear);
//! marks echoed after a clear are reported as cleared, never as played.
//!
//! Guarantees: `seq` is unique for the player's lifetime, so a name never matches
//! a mark of another utterance; a frame never mixes two utterances (the tail of an
//! utterance is padded with μ-law silence); `poll_frame`, `poll_mark` and `on_mark`
//! do not allocate once the mark-name buffer has grown to the longest name.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use crate::resample::{Alignment, ResampleError, Resampler};
use crate::ulaw;

/// μ-law bytes per 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;
/// Duration of one frame.
pub const FRAME_MS: u64 = 20;
/// μ-law bytes per millisecond.
const BYTES_PER_MS: u64 = 8;
/// TTS rates the player accepts, each with its own resampler built up front.
pub const INPUT_RATES: [u32; 5] = [8000, 16000, 22050, 24000, 48000];

/// Why the player refused an operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlayerError {
    #[error("TTS sample rate {0} Hz is not supported")]
    UnsupportedRate(u32),
    #[error("no utterance is open: call start_utterance first")]
    NoOpenUtterance,
    #[error("{queued_ms} ms already queued, over the {max_ms} ms limit")]
    QueueFull { queued_ms: u64, max_ms: u64 },
    #[error(transparent)]
    Resample(#[from] ResampleError),
}

/// Pacing and buffering limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerConfig {
    /// How far ahead of real time frames are handed out (audio buffered at Twilio).
    pub lead_ms: u64,
    /// Queue capacity reserved up front, so typical responses never reallocate.
    pub reserve_ms: u64,
    /// Most audio that may wait in the queue; pushes beyond it fail.
    pub max_queue_ms: u64,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        Self {
            lead_ms: 60,
            reserve_ms: 3_000,
            max_queue_ms: 120_000,
        }
    }
}

/// One 20 ms μ-law frame, ready for [`crate::twilio::OutboundWriter::media`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub ulaw: [u8; FRAME_BYTES],
    /// When Twilio is expected to start playing it (caller's clock).
    pub play_at_ms: u64,
}

/// How much of an utterance the caller has heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heard {
    pub utterance: Arc<str>,
    /// Milliseconds of the utterance played.
    pub ms: u64,
    /// End (exclusive byte offset) of the text heard, when chunks carried text spans.
    pub text_end: Option<usize>,
    /// The utterance's last mark: the bot finished speaking it.
    pub complete: bool,
}

/// What an echoed mark means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarkOutcome {
    /// The audio up to this mark was played.
    Played(Heard),
    /// Echoed because of a `clear`: the audio was dropped, not played.
    Cleared { utterance: Arc<str> },
    /// Not a mark this player has outstanding (a duplicate, or from another stream).
    Unknown,
}

/// What [`Player::clear`] found: the utterance cut off and how much of it was heard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub utterance: Arc<str>,
    /// Confirmed by marks: the end of the last chunk whose mark came back before the clear.
    pub heard_ms: u64,
    pub heard_text_end: Option<usize>,
    /// Estimate from the pacing clock (audio sent minus audio still buffered at Twilio);
    /// never below `heard_ms`. Useful when chunks are long.
    pub estimated_heard_ms: u64,
}

/// Result of pushing a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// The utterance was interrupted by [`Player::clear`]; its later chunks are dropped.
    Discarded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkState {
    /// Waiting for the frame holding the chunk's end to go out.
    Pending,
    /// Sent to Twilio, echo outstanding.
    Sent,
    /// Sent, then a clear dropped its audio.
    Cleared,
}

#[derive(Debug, Clone)]
struct Entry {
    utterance: Arc<str>,
    seq: u64,
    /// Absolute byte position (in everything ever queued) of the chunk's end.
    abs_end: u64,
    /// Absolute byte position where the utterance starts.
    utt_start: u64,
    text_end: Option<usize>,
    last: bool,
    state: MarkState,
}

impl Entry {
    fn ms(&self) -> u64 {
        (self.abs_end - self.utt_start) / BYTES_PER_MS
    }
}

#[derive(Debug)]
struct Open {
    utterance: Arc<str>,
    resampler: usize,
    rate: u32,
    start_abs: u64,
    samples_in: u64,
    discard: bool,
}

/// The outbound audio state of one call. See the module docs.
#[derive(Debug)]
pub struct Player {
    config: PlayerConfig,
    /// One per TTS rate, built when an utterance first uses the rate (most
    /// calls only ever use one), so a call's set-up stays cheap.
    resamplers: [Option<Resampler>; INPUT_RATES.len()],
    open: Option<Open>,
    queue: VecDeque<u8>,
    /// Bytes ever queued (absolute end of `queue`).
    queued_abs: u64,
    /// Bytes ever handed out as frames (absolute start of `queue`).
    sent_abs: u64,
    ledger: VecDeque<Entry>,
    next_seq: u64,
    mark_name: String,
    /// When the audio already sent will have finished playing.
    play_head_ms: Option<u64>,
    last_played: Option<Heard>,
}

impl Player {
    pub fn new(config: PlayerConfig) -> Result<Self, PlayerError> {
        let reserve = usize::try_from(config.reserve_ms * BYTES_PER_MS).unwrap_or(0);
        Ok(Self {
            config,
            resamplers: Default::default(),
            open: None,
            queue: VecDeque::with_capacity(reserve),
            queued_abs: 0,
            sent_abs: 0,
            ledger: VecDeque::with_capacity(64),
            next_seq: 0,
            mark_name: String::with_capacity(64),
            play_head_ms: None,
            last_played: None,
        })
    }

    /// Open a new utterance whose chunks arrive at `sample_rate`. An utterance still
    /// open is finished first.
    pub fn start_utterance(&mut self, id: &str, sample_rate: u32) -> Result<(), PlayerError> {
        let idx = INPUT_RATES
            .iter()
            .position(|&r| r == sample_rate)
            .ok_or(PlayerError::UnsupportedRate(sample_rate))?;
        self.finish_utterance();
        match &mut self.resamplers[idx] {
            Some(resampler) => resampler.reset(),
            slot @ None => *slot = Some(Resampler::new(sample_rate, 8000, Alignment::Trimmed)?),
        }
        self.open = Some(Open {
            utterance: Arc::from(id),
            resampler: idx,
            rate: sample_rate,
            start_abs: self.queued_abs,
            samples_in: 0,
            discard: false,
        });
        Ok(())
    }

    /// Queue one TTS chunk of the open utterance; `text` is the span of the
    /// utterance's text this chunk speaks, if known. A mark follows the chunk.
    pub fn push_chunk(&mut self, pcm: &[i16], text: Option<Range<usize>>) -> Result<Push, PlayerError> {
        let open = self.open.as_mut().ok_or(PlayerError::NoOpenUtterance)?;
        if open.discard {
            return Ok(Push::Discarded);
        }
        let queued_ms = self.queue.len() as u64 / BYTES_PER_MS;
        let incoming_ms = pcm.len() as u64 * 1000 / u64::from(open.rate);
        if queued_ms + incoming_ms > self.config.max_queue_ms {
            return Err(PlayerError::QueueFull {
                queued_ms,
                max_ms: self.config.max_queue_ms,
            });
        }
        let queue = &mut self.queue;
        let mut queued = 0u64;
        let Some(resampler) = self.resamplers[open.resampler].as_mut() else {
            return Err(PlayerError::NoOpenUtterance);
        };
        resampler.push(pcm, |out| {
            queue.extend(out.iter().map(|&s| ulaw::encode(s)));
            queued += out.len() as u64;
        });
        self.queued_abs += queued;
        open.samples_in += pcm.len() as u64;
        let rate = u64::from(open.rate);
        // Same rounding as the resampler's flush, so the last mark sits at the very end.
        let end_in_utt = (open.samples_in * 8000 + rate / 2) / rate;
        self.ledger.push_back(Entry {
            utterance: open.utterance.clone(),
            seq: self.next_seq,
            abs_end: open.start_abs + end_in_utt,
            utt_start: open.start_abs,
            text_end: text.map(|t| t.end),
            last: false,
            state: MarkState::Pending,
        });
        self.next_seq += 1;
        Ok(Push::Queued)
    }

    /// Close the open utterance: drain the resampler and pad the last frame with
    /// silence. Its last mark then reports `complete`.
    pub fn finish_utterance(&mut self) {
        let Some(open) = self.open.take() else { return };
        if open.discard {
            if let Some(resampler) = self.resamplers[open.resampler].as_mut() {
                resampler.reset();
            }
            return;
        }
        let queue = &mut self.queue;
        let flushed = match self.resamplers[open.resampler].as_mut() {
            Some(resampler) => resampler.flush(|out| queue.extend(out.iter().map(|&s| ulaw::encode(s)))),
            None => 0,
        };
        self.queued_abs += flushed as u64;
        let pad = (FRAME_BYTES as u64 - self.queued_abs % FRAME_BYTES as u64) % FRAME_BYTES as u64;
        self.queue.extend(std::iter::repeat_n(ulaw::SILENCE, pad as usize));
        self.queued_abs += pad;
        if let Some(last) = self
            .ledger
            .back_mut()
            .filter(|e| Arc::ptr_eq(&e.utterance, &open.utterance))
        {
            last.last = true;
        }
    }

    /// When the next frame is due (`<= now` means now), or `None` while no full frame
    /// is queued.
    pub fn next_due_ms(&self) -> Option<u64> {
        if self.queue.len() < FRAME_BYTES {
            return None;
        }
        Some(self.play_head_ms.map_or(0, |h| h.saturating_sub(self.config.lead_ms)))
    }

    /// The next frame if one is queued and due at `now_ms`. After each frame, drain
    /// [`Player::poll_mark`] and send the marks after the frame.
    pub fn poll_frame(&mut self, now_ms: u64) -> Option<Frame> {
        if self.next_due_ms()? > now_ms {
            return None;
        }
        let mut ulaw = [0u8; FRAME_BYTES];
        for (dst, src) in ulaw.iter_mut().zip(self.queue.drain(..FRAME_BYTES)) {
            *dst = src;
        }
        self.sent_abs += FRAME_BYTES as u64;
        // After an underrun Twilio starts playing as soon as the frame arrives.
        let play_at_ms = self.play_head_ms.map_or(now_ms, |h| h.max(now_ms));
        self.play_head_ms = Some(play_at_ms + FRAME_MS);
        Some(Frame { ulaw, play_at_ms })
    }

    /// The next mark to send, once all of its chunk's audio has been handed out.
    pub fn poll_mark(&mut self) -> Option<&str> {
        let sent_abs = self.sent_abs;
        let entry = self
            .ledger
            .iter_mut()
            .find(|e| e.state == MarkState::Pending)
            .filter(|e| e.abs_end <= sent_abs)?;
        entry.state = MarkState::Sent;
        self.mark_name.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.mark_name, "{}:{}", entry.utterance, entry.seq);
        Some(&self.mark_name)
    }

    /// Interpret a mark echoed by Twilio.
    pub fn on_mark(&mut self, name: &str) -> MarkOutcome {
        let Some((utt, seq)) = name.rsplit_once(':') else {
            return MarkOutcome::Unknown;
        };
        let Ok(seq) = seq.parse::<u64>() else {
            return MarkOutcome::Unknown;
        };
        let Some(idx) = self
            .ledger
            .iter()
            .position(|e| e.seq == seq && &*e.utterance == utt && e.state != MarkState::Pending)
        else {
            return MarkOutcome::Unknown;
        };
        // Marks come back in the order sent, so everything before this one is settled.
        let entry = self.ledger.drain(..=idx).next_back();
        match entry {
            Some(e) if e.state == MarkState::Cleared => MarkOutcome::Cleared { utterance: e.utterance },
            Some(e) => {
                let heard = Heard {
                    ms: e.ms(),
                    text_end: e.text_end,
                    complete: e.last,
                    utterance: e.utterance,
                };
                self.last_played = Some(heard.clone());
                MarkOutcome::Played(heard)
            }
            None => MarkOutcome::Unknown,
        }
    }

    /// Barge-in: drop all queued audio and the rest of the open utterance. Returns
    /// `None` when nothing was playing or queued (no `clear` needs sending).
    pub fn clear(&mut self, now_ms: u64) -> Option<Interruption> {
        let current = self
            .ledger
            .iter()
            .find(|e| e.state != MarkState::Cleared)
            .map(|e| (e.utterance.clone(), e.utt_start))
            .or_else(|| {
                self.open
                    .as_ref()
                    .filter(|o| !o.discard)
                    .map(|o| (o.utterance.clone(), o.start_abs))
            });
        let (utterance, utt_start) = current?;

        let (heard_ms, heard_text_end) = match &self.last_played {
            Some(h) if Arc::ptr_eq(&h.utterance, &utterance) => (h.ms, h.text_end),
            _ => (0, None),
        };
        let buffered_at_twilio = self.play_head_ms.map_or(0, |h| h.saturating_sub(now_ms)) * BYTES_PER_MS;
        let played_abs = self.sent_abs.saturating_sub(buffered_at_twilio);
        let estimated_heard_ms = (played_abs.saturating_sub(utt_start) / BYTES_PER_MS).max(heard_ms);

        self.queue.clear();
        self.queued_abs = self.sent_abs;
        self.ledger.retain_mut(|e| match e.state {
            MarkState::Pending => false,
            MarkState::Sent | MarkState::Cleared => {
                e.state = MarkState::Cleared;
                true
            }
        });
        if let Some(open) = self.open.as_mut() {
            open.discard = true;
            if let Some(resampler) = self.resamplers[open.resampler].as_mut() {
                resampler.reset();
            }
        }
        self.play_head_ms = None;
        Some(Interruption {
            utterance,
            heard_ms,
            heard_text_end,
            estimated_heard_ms,
        })
    }

    /// Milliseconds of audio queued and not yet handed out.
    pub fn queued_ms(&self) -> u64 {
        self.queue.len() as u64 / BYTES_PER_MS
    }

    /// Nothing queued, nothing open, and no mark echo outstanding.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.open.is_none() && self.ledger.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resample::tests::{sine, tone_amplitude};

    fn player() -> Player {
        Player::new(PlayerConfig::default()).unwrap()
    }

    /// Drive the player like the call actor: poll every `step` ms until idle or `until`.
    /// Returns (frames, marks as (frame count when sent, name)).
    fn drain(p: &mut Player, from: u64, until: u64, step: u64) -> (Vec<Frame>, Vec<(usize, String)>) {
        let mut frames = Vec::new();
        let mut marks = Vec::new();
        let mut now = from;
        while now <= until {
            while let Some(f) = p.poll_frame(now) {
                frames.push(f);
                while let Some(m) = p.poll_mark() {
                    marks.push((frames.len(), m.to_owned()));
                }
            }
            now += step;
        }
        (frames, marks)
    }

    #[test]
    fn chunks_at_24k_become_paced_160_byte_frames_with_a_mark_per_chunk() {
        let mut p = player();
        p.start_utterance("resp_1", 24000).unwrap();
        // 3 chunks of 100 ms, 250 ms and 50 ms, odd sizes on purpose.
        for ms in [100, 250, 50] {
            assert_eq!(
                p.push_chunk(&sine(24000, 440.0, 8000.0, ms * 24), None).unwrap(),
                Push::Queued
            );
        }
        p.finish_utterance();
        assert_eq!(p.queued_ms(), 400);
        let (frames, marks) = drain(&mut p, 1000, 2000, 10);
        assert_eq!(frames.len(), 20);
        let names: Vec<&str> = marks.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names, ["resp_1:0", "resp_1:1", "resp_1:2"]);
        // Each mark goes out right after the frame that holds its chunk's last sample.
        assert_eq!(marks.iter().map(|(f, _)| *f).collect::<Vec<_>>(), [5, 18, 20]);
        // Real-time pacing: frame k plays at 1000 + 20k; none is handed out more than lead early.
        for (k, f) in frames.iter().enumerate() {
            assert_eq!(f.play_at_ms, 1000 + 20 * k as u64);
        }
        let decoded: Vec<i16> = frames
            .iter()
            .flat_map(|f| f.ulaw.iter().map(|&b| ulaw::decode(b)))
            .collect();
        let a = tone_amplitude(&decoded[400..2800], 8000, 440.0);
        assert!((a - 8000.0).abs() < 400.0, "440 Hz survives resample + μ-law: {a}");
    }

    #[test]
    fn pacing_respects_the_lead() {
        let mut p = player();
        p.start_utterance("u", 8000).unwrap();
        p.push_chunk(&[1000; 8000], None).unwrap();
        assert_eq!(p.next_due_ms(), Some(0));
        // At t=500: frames for 500..560 go out (lead 60 ms), then the player waits.
        let mut n = 0;
        while p.poll_frame(500).is_some() {
            n += 1;
        }
        assert_eq!(n, 4, "first frame plus 60 ms of lead");
        assert_eq!(p.next_due_ms(), Some(520));
        assert!(p.poll_frame(519).is_none());
        assert_eq!(p.poll_frame(520).map(|f| f.play_at_ms), Some(580));
        // After an underrun (caller polls late), playback restarts from now.
        let late = p.poll_frame(10_000).unwrap();
        assert_eq!(late.play_at_ms, 10_000);
    }

    #[test]
    fn partial_frames_wait_for_more_audio_until_finished() {
        let mut p = player();
        p.start_utterance("u", 8000).unwrap();
        p.push_chunk(&[500; 100], None).unwrap();
        assert_eq!(p.next_due_ms(), None);
        assert!(p.poll_frame(0).is_none());
        p.push_chunk(&[500; 100], None).unwrap();
        let f = p.poll_frame(0).unwrap();
        assert!(f.ulaw.iter().all(|&b| b == ulaw::encode(500)));
        assert_eq!(p.poll_mark(), Some("u:0"), "chunk 0 ended inside the first frame");
        assert_eq!(p.poll_mark(), None, "chunk 1 ends in the next frame");
        p.finish_utterance();
        let f = p.poll_frame(20).unwrap();
        assert!(f.ulaw[..40].iter().all(|&b| b == ulaw::encode(500)));
        assert!(
            f.ulaw[40..].iter().all(|&b| b == ulaw::SILENCE),
            "tail padded with silence"
        );
        assert_eq!(p.poll_mark(), Some("u:1"));
    }

    #[test]
    fn echoed_marks_report_played_position_and_text() {
        let mut p = player();
        p.start_utterance("r7", 16000).unwrap();
        p.push_chunk(&[0; 3200], Some(0..6)).unwrap(); // 200 ms "Hello,"
        p.push_chunk(&[0; 4800], Some(6..18)).unwrap(); // 300 ms " how are you"
        p.finish_utterance();
        let (_, marks) = drain(&mut p, 0, 1000, 20);
        assert_eq!(marks.len(), 2);
        assert_eq!(
            p.on_mark(&marks[0].1),
            MarkOutcome::Played(Heard {
                utterance: "r7".into(),
                ms: 200,
                text_end: Some(6),
                complete: false
            })
        );
        assert_eq!(
            p.on_mark(&marks[1].1),
            MarkOutcome::Played(Heard {
                utterance: "r7".into(),
                ms: 500,
                text_end: Some(18),
                complete: true
            })
        );
        assert_eq!(p.on_mark(&marks[1].1), MarkOutcome::Unknown, "duplicate echo");
        assert_eq!(p.on_mark("r7:99"), MarkOutcome::Unknown);
        assert_eq!(p.on_mark("nonsense"), MarkOutcome::Unknown);
        assert!(p.is_idle());
    }

    #[test]
    fn barge_in_reports_the_last_confirmed_mark_and_treats_later_echoes_as_cleared() {
        let mut p = player();
        p.start_utterance("r1", 24000).unwrap();
        for i in 0..5 {
            p.push_chunk(&[0; 4800], Some(i * 10..i * 10 + 10)).unwrap(); // 5 x 200 ms
        }
        // t = 0..=300: frames up to 360 ms are out, so marks 0 (200 ms) went out.
        let (_, marks) = drain(&mut p, 0, 300, 20);
        assert_eq!(marks.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["r1:0"]);
        assert!(matches!(p.on_mark("r1:0"), MarkOutcome::Played(Heard { ms: 200, .. })));
        // Up to t = 420: mark 1 (400 ms) is sent but not yet echoed.
        let (_, marks) = drain(&mut p, 320, 420, 20);
        assert_eq!(marks.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(), ["r1:1"]);
        let cut = p.clear(430).unwrap();
        assert_eq!(cut.utterance.as_ref(), "r1");
        assert_eq!(
            (cut.heard_ms, cut.heard_text_end),
            (200, Some(10)),
            "only mark 0 was confirmed"
        );
        assert!(
            (420..=440).contains(&cut.estimated_heard_ms),
            "estimate {}",
            cut.estimated_heard_ms
        );
        assert_eq!(p.queued_ms(), 0);
        // Twilio now echoes the outstanding mark: cleared, not played.
        assert_eq!(p.on_mark("r1:1"), MarkOutcome::Cleared { utterance: "r1".into() });
        // The rest of the interrupted response is dropped.
        assert_eq!(p.push_chunk(&[0; 4800], None).unwrap(), Push::Discarded);
        assert!(p.poll_frame(1000).is_none());
        p.finish_utterance();
        assert!(p.is_idle());
        assert_eq!(p.clear(2000), None, "nothing to interrupt");
    }

    #[test]
    fn a_new_utterance_after_clear_plays_immediately_with_fresh_names() {
        let mut p = player();
        p.start_utterance("a", 8000).unwrap();
        p.push_chunk(&[0; 160], None).unwrap();
        p.push_chunk(&[0; 1440], None).unwrap();
        let (_, marks) = drain(&mut p, 0, 40, 20);
        assert_eq!(marks, vec![(1, "a:0".to_owned())]);
        p.clear(50).unwrap();
        p.start_utterance("a", 8000).unwrap(); // same id reused on purpose
        p.push_chunk(&[0; 160], None).unwrap();
        p.finish_utterance();
        let f = p.poll_frame(60).unwrap();
        assert_eq!(f.play_at_ms, 60, "Twilio's buffer was cleared");
        assert_eq!(p.poll_mark(), Some("a:2"), "seq keeps counting, so the names differ");
        assert_eq!(p.on_mark("a:0"), MarkOutcome::Cleared { utterance: "a".into() });
        assert_eq!(
            p.on_mark("a:1"),
            MarkOutcome::Unknown,
            "never sent: dropped by the clear"
        );
        assert!(matches!(
            p.on_mark("a:2"),
            MarkOutcome::Played(Heard {
                ms: 20,
                complete: true,
                ..
            })
        ));
    }

    #[test]
    fn clear_before_any_mark_heard_reports_zero() {
        let mut p = player();
        p.start_utterance("x", 22050).unwrap();
        p.push_chunk(&[0; 4410], None).unwrap();
        let _ = drain(&mut p, 0, 40, 20);
        let cut = p.clear(45).unwrap();
        assert_eq!((cut.heard_ms, cut.heard_text_end), (0, None));
        // An utterance open but without audio yet is still interruptible.
        p.start_utterance("y", 24000).unwrap();
        assert_eq!(p.clear(50).map(|c| c.utterance), Some("y".into()));
    }

    #[test]
    fn queued_utterances_play_back_to_back_without_sharing_frames() {
        let mut p = player();
        p.start_utterance("one", 8000).unwrap();
        p.push_chunk(&[1000; 100], None).unwrap();
        p.start_utterance("two", 16000).unwrap(); // finishes "one"
        p.push_chunk(&[0; 320], None).unwrap();
        p.finish_utterance();
        let (frames, marks) = drain(&mut p, 0, 200, 20);
        assert_eq!(frames.len(), 2);
        assert!(frames[0].ulaw[100..].iter().all(|&b| b == ulaw::SILENCE));
        assert_eq!(marks, vec![(1, "one:0".to_owned()), (2, "two:1".to_owned())]);
        assert!(matches!(
            p.on_mark("one:0"),
            MarkOutcome::Played(Heard {
                ms: 12,
                complete: true,
                ..
            })
        ));
        assert!(matches!(
            p.on_mark("two:1"),
            MarkOutcome::Played(Heard {
                ms: 20,
                complete: true,
                ..
            })
        ));
    }

    #[test]
    fn errors_are_typed() {
        let mut p = Player::new(PlayerConfig {
            max_queue_ms: 100,
            ..PlayerConfig::default()
        })
        .unwrap();
        assert_eq!(p.push_chunk(&[0; 10], None), Err(PlayerError::NoOpenUtterance));
        assert_eq!(p.start_utterance("u", 44100), Err(PlayerError::UnsupportedRate(44100)));
        p.start_utterance("u", 8000).unwrap();
        p.push_chunk(&[0; 640], None).unwrap();
        assert_eq!(
            p.push_chunk(&[0; 640], None),
            Err(PlayerError::QueueFull {
                queued_ms: 80,
                max_ms: 100
            })
        );
    }
}
