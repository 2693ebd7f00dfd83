//! One caller turn's PCM, buffered for a batch speech-to-text request.
//!
//! The Google and OpenAI-compatible recognizers are request/response: the
//! [`SttStream`](crate::capability::SttStream) buffers what is pushed, sends
//! it all on `finish`, and reports one final. This type is that shared part;
//! each adapter only makes its request.

use std::collections::VecDeque;

use crate::capability::SttEvent;
use crate::error::ProviderErrorKind;

/// The buffered audio of one segment and the events it produced.
pub(crate) struct Segment {
    sample_rate: u32,
    max_seconds: u32,
    max_samples: usize,
    samples: Vec<i16>,
    finished: bool,
    events: VecDeque<SttEvent>,
}

impl Segment {
    /// An empty segment holding at most `max_seconds` at `sample_rate`.
    pub(crate) fn new(sample_rate: u32, max_seconds: u32) -> Self {
        Self {
            sample_rate,
            max_seconds,
            max_samples: sample_rate as usize * max_seconds as usize,
            samples: Vec::new(),
            finished: false,
            events: VecDeque::new(),
        }
    }

    pub(crate) fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The audio pushed so far.
    pub(crate) fn samples(&self) -> &[i16] {
        &self.samples
    }

    /// Appends `samples`; refuses them once the segment is finished
    /// (`Closed`) or when they would pass `max_seconds` (`Config`).
    pub(crate) fn push(&mut self, samples: &[i16]) -> Result<(), ProviderErrorKind> {
        if self.finished {
            return Err(ProviderErrorKind::Closed);
        }
        if self.samples.len() + samples.len() > self.max_samples {
            return Err(ProviderErrorKind::Config(format!(
                "speech segment longer than {} s; finish() each caller turn",
                self.max_seconds
            )));
        }
        self.samples.extend_from_slice(samples);
        Ok(())
    }

    /// Ends the segment. `Some(audio_ms)` when there is audio to send, the
    /// first time only; `None` when it was already finished or is empty.
    pub(crate) fn finish(&mut self) -> Option<u64> {
        if std::mem::replace(&mut self.finished, true) || self.samples.is_empty() {
            return None;
        }
        Some(self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1)))
    }

    /// Records the recognizer's text for the audio (no event for empty text)
    /// and frees the audio.
    pub(crate) fn recognized(&mut self, text: &str, end_ms: u64) {
        if !text.is_empty() {
            self.events.push_back(SttEvent::Final {
                text: text.to_owned(),
                start_ms: 0,
                end_ms,
            });
        }
        self.samples = Vec::new();
    }

    /// `None` until the segment is finished (a streaming recognizer would
    /// still be listening); then its final, if any, and `Some(None)` after.
    pub(crate) fn next_event(&mut self) -> Option<Option<SttEvent>> {
        self.finished.then(|| self.events.pop_front())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_buffers_until_finished_then_reports_one_final() {
        let mut s = Segment::new(8_000, 1);
        assert!(s.next_event().is_none(), "nothing to report while listening");
        s.push(&[1; 4_000]).expect("half a second");
        s.push(&[2; 4_000]).expect("one second in all");
        assert!(
            matches!(s.push(&[3; 1]), Err(ProviderErrorKind::Config(m)) if m.contains("longer than 1 s")),
            "past the cap"
        );
        assert_eq!(s.samples().len(), 8_000);
        assert_eq!(s.finish(), Some(1_000));
        assert_eq!(s.finish(), None, "finishing twice sends nothing more");
        assert!(matches!(s.push(&[1]), Err(ProviderErrorKind::Closed)));
        s.recognized("hello", 1_000);
        assert!(s.samples().is_empty(), "the audio is freed");
        assert!(matches!(
            s.next_event(),
            Some(Some(SttEvent::Final { ref text, start_ms: 0, end_ms: 1_000 })) if text == "hello"
        ));
        assert!(matches!(s.next_event(), Some(None)));
    }

    #[test]
    fn an_empty_segment_or_empty_text_reports_nothing() {
        let mut s = Segment::new(16_000, 60);
        assert_eq!(s.finish(), None);
        assert!(matches!(s.next_event(), Some(None)));
        let mut s = Segment::new(16_000, 60);
        s.push(&[0; 1_600]).expect("push");
        assert_eq!(s.finish(), Some(100));
        s.recognized("", 100);
        assert!(matches!(s.next_event(), Some(None)));
    }
}
