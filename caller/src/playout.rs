//! Twilio's playback of the engine's audio, emulated (protocols.md §1.5–1.6).
//!
//! Sans-IO: the call loop feeds it what the engine sent (`media`, `mark`,
//! `clear`) and calls [`Playout::tick`] once per 20 ms of stream time. Each
//! tick first finishes the frame that was playing, echoes every mark whose
//! audio is now fully played, then starts the next 160 bytes.
//!
//! Guarantees:
//! - A mark is echoed only once every byte queued before it has finished
//!   playing, counted in ticks (never in wall-clock time); a mark that arrives
//!   when nothing is queued or playing is echoed at once.
//! - `clear` drops everything queued and not yet started, and releases every
//!   pending mark at once, in the order they were sent.
//! - With `answer_marks = false` no mark is ever echoed.
//! - The recording, when enabled, holds exactly 160 samples per tick: the
//!   decoded bot audio played in that tick, silence (0) where nothing played,
//!   so sample `n` is stream time `n / 8000` s.
//! - Apart from the recording (amortised growth) and mark names (owned
//!   strings), nothing allocates once the queue has grown to the bot's lead.

use std::collections::VecDeque;

use switchboard_media::ulaw;

/// Bytes of μ-law (and samples) played per 20 ms tick.
pub const FRAME: usize = 160;

/// What one tick did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tick {
    /// Bot bytes that started playing in this tick (0..=160).
    pub played: usize,
    /// Bot audio started in this tick after silence.
    pub speech_started: bool,
    /// Bot audio had played in the previous tick and nothing plays in this one.
    pub speech_stopped: bool,
}

/// The playout queue, mark ledger and recorder of one call.
#[derive(Debug)]
pub struct Playout {
    queue: VecDeque<u8>,
    /// Bytes ever queued (a clear drops the rest of the queue from this count's future).
    queued_total: u64,
    /// Bytes taken from the queue to play.
    started_total: u64,
    /// Pending marks with the `queued_total` they wait for.
    marks: VecDeque<(String, u64)>,
    answer_marks: bool,
    recording: Option<Vec<i16>>,
    was_playing: bool,
}

impl Playout {
    pub fn new(answer_marks: bool, record: bool) -> Self {
        Self {
            // Two seconds of lead before the queue has to grow.
            queue: VecDeque::with_capacity(16_000),
            queued_total: 0,
            started_total: 0,
            marks: VecDeque::new(),
            answer_marks,
            recording: record.then(|| Vec::with_capacity(8000 * 30)),
            was_playing: false,
        }
    }

    /// Queues engine audio (μ-law bytes, any length).
    pub fn push_media(&mut self, ulaw_bytes: &[u8]) {
        self.queue.extend(ulaw_bytes);
        self.queued_total += ulaw_bytes.len() as u64;
    }

    /// Registers a mark. Returns `true` when it is already due (nothing before
    /// it is still queued or playing): the caller echoes it now. A mark that is
    /// not due is kept and released by [`Playout::tick`] or [`Playout::clear`].
    pub fn push_mark(&mut self, name: &str) -> bool {
        if !self.answer_marks {
            return false;
        }
        let due = self.marks.is_empty() && self.queue.is_empty() && !self.was_playing;
        if !due {
            self.marks.push_back((name.to_owned(), self.queued_total));
        }
        due
    }

    /// Drops the queue; every pending mark goes to `echo`, oldest first.
    /// Returns the number of bytes dropped.
    pub fn clear(&mut self, echo: &mut Vec<String>) -> usize {
        let dropped = self.queue.len();
        self.queue.clear();
        self.queued_total = self.started_total;
        echo.extend(self.marks.drain(..).map(|(name, _)| name));
        dropped
    }

    /// Advances one 20 ms tick: marks whose audio finished go to `echo`, then
    /// up to 160 bytes start playing (and are recorded).
    pub fn tick(&mut self, echo: &mut Vec<String>) -> Tick {
        // Everything started before this tick has now finished playing.
        let played_total = self.started_total;
        while let Some((_, at)) = self.marks.front() {
            if *at > played_total {
                break;
            }
            if let Some((name, _)) = self.marks.pop_front() {
                echo.push(name);
            }
        }
        let n = self.queue.len().min(FRAME);
        if let Some(rec) = self.recording.as_mut() {
            let start = rec.len();
            rec.resize(start + FRAME, 0);
            let (a, b) = self.queue.as_slices();
            let from_a = a.len().min(n);
            ulaw::decode_into(&a[..from_a], &mut rec[start..start + from_a]);
            ulaw::decode_into(&b[..n - from_a], &mut rec[start + from_a..start + n]);
        }
        self.queue.drain(..n);
        self.started_total += n as u64;
        let playing = n > 0;
        let tick = Tick {
            played: n,
            speech_started: playing && !self.was_playing,
            speech_stopped: !playing && self.was_playing,
        };
        self.was_playing = playing;
        tick
    }

    /// True while audio is queued or the last tick played some.
    pub fn is_busy(&self) -> bool {
        self.was_playing || !self.queue.is_empty()
    }

    /// Marks waiting for their audio.
    pub fn pending_marks(&self) -> usize {
        self.marks.len()
    }

    /// The time-aligned recording (empty when recording is off).
    pub fn take_recording(&mut self) -> Vec<i16> {
        self.recording.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(byte: u8) -> [u8; FRAME] {
        [byte; FRAME]
    }

    #[test]
    fn marks_wait_for_every_frame_queued_before_them() {
        let mut p = Playout::new(true, true);
        let mut echo = Vec::new();
        for _ in 0..3 {
            p.push_media(&frame(0x10));
        }
        assert!(!p.push_mark("m1"));
        p.push_media(&frame(0x20));
        assert!(!p.push_mark("m2"));
        // Ticks 0..=2 start the three frames; m1 is due when the third has finished (tick 3).
        for t in 0..3 {
            let tick = p.tick(&mut echo);
            assert_eq!(tick.played, FRAME);
            assert_eq!(tick.speech_started, t == 0);
            assert!(echo.is_empty(), "tick {t}: {echo:?}");
        }
        p.tick(&mut echo);
        assert_eq!(echo, vec!["m1".to_owned()]);
        echo.clear();
        let tick = p.tick(&mut echo);
        assert_eq!(echo, vec!["m2".to_owned()]);
        assert!(tick.speech_stopped && tick.played == 0);
        let rec = p.take_recording();
        assert_eq!(rec.len(), 5 * FRAME);
        let a = ulaw::decode(0x10);
        let b = ulaw::decode(0x20);
        assert!(rec[..3 * FRAME].iter().all(|&s| s == a));
        assert!(rec[3 * FRAME..4 * FRAME].iter().all(|&s| s == b));
        assert!(rec[4 * FRAME..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_mark_with_nothing_before_it_is_due_at_once() {
        let mut p = Playout::new(true, false);
        assert!(p.push_mark("now"));
        assert_eq!(p.pending_marks(), 0);
    }

    #[test]
    fn clear_drops_the_queue_and_releases_pending_marks_in_order() {
        let mut p = Playout::new(true, true);
        let mut echo = Vec::new();
        for _ in 0..10 {
            p.push_media(&frame(0x30));
        }
        p.push_mark("a");
        p.push_media(&frame(0x30));
        p.push_mark("b");
        p.tick(&mut echo);
        p.tick(&mut echo);
        assert!(echo.is_empty());
        assert_eq!(p.clear(&mut echo), 9 * FRAME);
        assert_eq!(echo, vec!["a".to_owned(), "b".to_owned()]);
        echo.clear();
        // The frame that was playing finishes; then silence.
        let t = p.tick(&mut echo);
        assert!(t.speech_stopped);
        // New audio after the clear is played and marked normally.
        p.push_media(&frame(0x40));
        assert!(!p.push_mark("c"));
        assert_eq!(p.tick(&mut echo).played, FRAME);
        assert!(echo.is_empty());
        p.tick(&mut echo);
        assert_eq!(echo, vec!["c".to_owned()]);
        let rec = p.take_recording();
        let played = rec.chunks(FRAME).filter(|c| c.iter().any(|&s| s != 0)).count();
        assert_eq!(played, 3, "two frames before the clear and one after");
    }

    #[test]
    fn partial_frames_play_in_one_tick_padded_with_silence() {
        let mut p = Playout::new(true, true);
        let mut echo = Vec::new();
        p.push_media(&[0x50; 100]);
        p.push_media(&[0x50; 100]);
        assert_eq!(p.tick(&mut echo).played, 160);
        assert_eq!(p.tick(&mut echo).played, 40);
        let rec = p.take_recording();
        let v = ulaw::decode(0x50);
        assert!(rec[..200].iter().all(|&s| s == v));
        assert!(rec[200..].iter().all(|&s| s == 0));
    }

    #[test]
    fn marks_are_never_echoed_when_disabled() {
        let mut p = Playout::new(false, false);
        let mut echo = Vec::new();
        assert!(!p.push_mark("x"));
        p.push_media(&frame(1));
        assert!(!p.push_mark("y"));
        for _ in 0..5 {
            p.tick(&mut echo);
        }
        p.clear(&mut echo);
        assert!(echo.is_empty());
        assert!(p.take_recording().is_empty());
    }
}
