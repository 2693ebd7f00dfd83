//! What one synthetic call measured, derived from the caller's events and
//! report. Sans-IO: events go in, numbers come out, so every rule is unit-tested.
//!
//! Definitions (all on the caller's stream clock, as Twilio would see them):
//! - **turn latency**: end of caller speech → the first bot audio that starts
//!   playing after it (includes the engine's end-of-turn silence, e.g. 500 ms).
//!   A turn followed by more caller speech before any bot audio is unanswered.
//! - **barge-in reaction**: caller speech onset while bot audio is playing →
//!   the next `clear`. An onset that gets no `clear` before the next onset or
//!   the end of the call is a missed barge-in.
//! - **mark round trip**: a `mark` received → its echo. Only the caller side
//!   is visible, so this is the playout wait (the audio queued before the
//!   mark, played at real time), not network time.
//! - **pacing jitter**: RTP's interarrival jitter (RFC 3550 §6.4.1) over the
//!   bot's 20 ms frames: for each frame after the first of its utterance,
//!   `D = inter-arrival - 20 ms` and `J += (|D| - J) / 16`; one sample of `J`
//!   per frame, `J` carried across the call's utterances. A lone late or
//!   merged tick moves `J` by about 1 ms; sustained irregular pacing drives it
//!   towards the typical deviation. (Raw deviations show up as gaps.)
//! - **gaps**: inter-arrival times above `gap` within an utterance.
//! - **playout underruns**: what the caller hears. Twilio starts playing an
//!   utterance when its first frame arrives and plays 20 ms per frame; a frame
//!   that arrives after its playout time leaves silence for the difference
//!   (the underrun), and playout resumes from its arrival. With the engine's
//!   60 ms lead, gaps up to 60 ms cause none.
//!
//! Utterances are split at a `clear` and at silences longer than `split`.

use std::collections::HashMap;
use std::time::Duration;

use switchboard_caller::CallerEvent;

/// Nominal spacing of 20 ms frames.
const FRAME: Duration = Duration::from_millis(20);

/// Milliseconds as `f64`.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Pacing figures of one call's bot audio.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pacing {
    /// One RFC 3550 jitter sample (ms) per bot frame except each utterance's first.
    pub jitter_ms: Vec<f64>,
    /// Silence (ms) each late frame left in the playout.
    pub underruns_ms: Vec<f64>,
    /// Inter-arrival times (ms) above the gap threshold, within utterances.
    pub gaps_ms: Vec<f64>,
    pub utterances: u64,
}

/// Computes [`Pacing`] from frame arrival times (ascending) and clear times.
pub fn pacing(arrivals: &[Duration], clears: &[Duration], gap: Duration, split: Duration) -> Pacing {
    let mut out = Pacing {
        jitter_ms: Vec::with_capacity(arrivals.len()),
        ..Pacing::default()
    };
    let mut clears = clears.iter().copied().peekable();
    let mut prev: Option<Duration> = None;
    // When the next frame is due to start playing at Twilio.
    let mut due = Duration::ZERO;
    let mut jitter = 0.0f64;
    for &a in arrivals {
        let mut new_utterance = prev.is_none_or(|p| a.saturating_sub(p) > split);
        while let Some(&c) = clears.peek() {
            if c > a {
                break;
            }
            clears.next();
            if prev.is_some_and(|p| c >= p) {
                new_utterance = true;
            }
        }
        if new_utterance {
            out.utterances += 1;
            due = a;
        } else if let Some(p) = prev {
            let inter = a.saturating_sub(p);
            let deviation = (ms(inter) - ms(FRAME)).abs();
            jitter += (deviation - jitter) / 16.0;
            out.jitter_ms.push(jitter);
            if inter > gap {
                out.gaps_ms.push(ms(inter));
            }
        }
        if a > due {
            out.underruns_ms.push(ms(a - due));
            due = a;
        }
        due += FRAME;
        prev = Some(a);
    }
    out
}

/// The event-derived figures of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventFigures {
    pub turn_ms: Vec<f64>,
    pub unanswered_turns: u64,
    pub barge_in_ms: Vec<f64>,
    pub barge_ins: u64,
    pub missed_barge_ins: u64,
    pub mark_rtt_ms: Vec<f64>,
    /// Marks received and never echoed by the end of the call.
    pub unechoed_marks: u64,
}

/// Folds one call's [`CallerEvent`]s, in order, into [`EventFigures`].
#[derive(Debug, Default)]
pub struct Analyzer {
    bot_playing: bool,
    turn_end: Option<Duration>,
    barge_onset: Option<Duration>,
    marks: HashMap<String, Duration>,
    figures: EventFigures,
}

impl Analyzer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn on_event(&mut self, event: &CallerEvent) {
        let f = &mut self.figures;
        match event {
            CallerEvent::CallerSpeechStarted { at } => {
                if self.turn_end.take().is_some() {
                    f.unanswered_turns += 1;
                }
                if self.barge_onset.take().is_some() {
                    f.missed_barge_ins += 1;
                }
                if self.bot_playing {
                    f.barge_ins += 1;
                    self.barge_onset = Some(*at);
                }
            }
            CallerEvent::CallerSpeechEnded { at } => self.turn_end = Some(*at),
            CallerEvent::BotAudioStarted { at } => {
                self.bot_playing = true;
                if let Some(end) = self.turn_end.take() {
                    f.turn_ms.push(ms(at.saturating_sub(end)));
                }
            }
            CallerEvent::BotAudioStopped { .. } => self.bot_playing = false,
            CallerEvent::Clear { at } => {
                if let Some(onset) = self.barge_onset.take() {
                    f.barge_in_ms.push(ms(at.saturating_sub(onset)));
                }
            }
            CallerEvent::MarkReceived { name, at } => {
                self.marks.insert(name.clone(), *at);
            }
            CallerEvent::MarkEchoed { name, at } => {
                if let Some(received) = self.marks.remove(name) {
                    f.mark_rtt_ms.push(ms(at.saturating_sub(received)));
                }
            }
            CallerEvent::Answered { .. }
            | CallerEvent::Started { .. }
            | CallerEvent::DtmfSent { .. }
            | CallerEvent::Closed { .. } => {}
        }
    }

    /// The figures once the call is over. A turn still waiting for a reply at
    /// hang-up is not counted as unanswered (the call simply ended).
    pub fn finish(mut self) -> EventFigures {
        if self.barge_onset.take().is_some() {
            self.figures.missed_barge_ins += 1;
        }
        self.figures.unechoed_marks = self.marks.len() as u64;
        self.figures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn steady_pacing_after_a_lead_burst_has_no_jitter() {
        // Three frames at once (60 ms lead), then one every 20 ms.
        let mut arrivals = vec![d(1000), d(1000), d(1000)];
        arrivals.extend((1..=10).map(|i| d(1000 + 20 * i)));
        let p = pacing(&arrivals, &[], d(40), d(1000));
        assert_eq!(p.utterances, 1);
        // RFC 3550: the two back-to-back lead frames deviate by 20 ms each, then J decays by 15/16 per frame.
        let mut expected = vec![20.0 / 16.0];
        expected.push(expected[0] + (20.0 - expected[0]) / 16.0);
        for _ in 0..10 {
            let last = expected[expected.len() - 1];
            expected.push(last * 15.0 / 16.0);
        }
        assert_eq!(p.jitter_ms, expected);
        assert!(p.gaps_ms.is_empty());
        assert!(p.underruns_ms.is_empty());
    }

    #[test]
    fn gaps_within_the_lead_are_not_underruns() {
        // 60 ms lead, then one 60 ms gap: Twilio still had audio queued.
        let arrivals = [d(0), d(0), d(0), d(20), d(80), d(100)];
        let p = pacing(&arrivals, &[], d(40), d(1000));
        assert_eq!(p.gaps_ms, vec![60.0]);
        assert_eq!(p.jitter_ms.len(), 5);
        assert!(
            p.jitter_ms[3] > p.jitter_ms[2],
            "the 60 ms gap raises J: {:?}",
            p.jitter_ms
        );
        assert!(p.underruns_ms.is_empty(), "{:?}", p.underruns_ms);
    }

    #[test]
    fn a_stall_without_lead_shows_as_jitter_a_gap_and_an_underrun() {
        // Frames at 0, 20, 40 (no lead), then a 70 ms stall, then a burst.
        let arrivals = [d(0), d(20), d(40), d(110), d(110), d(120), d(140)];
        let p = pacing(&arrivals, &[], d(40), d(1000));
        // |D| = 0, 0, 50, 20, 10, 0 through J += (|D| - J) / 16.
        let mut j = 0.0;
        let expected: Vec<f64> = [0.0, 0.0, 50.0, 20.0, 10.0, 0.0]
            .iter()
            .map(|d| {
                j += (d - j) / 16.0;
                j
            })
            .collect();
        assert_eq!(p.jitter_ms, expected);
        assert_eq!(p.gaps_ms, vec![70.0]);
        // Frame 3 was due at 60 ms and came at 110: 50 ms of silence; playout then resumes from 110.
        assert_eq!(p.underruns_ms, vec![50.0]);
    }

    #[test]
    fn utterances_split_at_long_silences_and_clears() {
        let arrivals = [d(0), d(20), d(3000), d(3020), d(3300), d(3320)];
        // A clear at 3100 ms: the frame at 3300 starts a new utterance, not a 280 ms gap.
        let p = pacing(&arrivals, &[d(3100)], d(40), d(1000));
        assert_eq!(p.utterances, 3);
        assert!(p.gaps_ms.is_empty());
        assert_eq!(p.jitter_ms, vec![0.0, 0.0, 0.0]);
        // Without the clear the 280 ms pause is a gap inside one utterance.
        let p = pacing(&arrivals, &[], d(40), d(1000));
        assert_eq!(p.utterances, 2);
        assert_eq!(p.gaps_ms, vec![280.0]);
    }

    fn run(events: &[CallerEvent]) -> EventFigures {
        let mut a = Analyzer::new();
        for e in events {
            a.on_event(e);
        }
        a.finish()
    }

    #[test]
    fn turns_barge_ins_and_marks() {
        use CallerEvent::*;
        let mark = |n: &str| n.to_owned();
        let f = run(&[
            CallerSpeechStarted { at: d(1000) },
            CallerSpeechEnded { at: d(2500) },
            BotAudioStarted { at: d(3060) },
            MarkReceived {
                name: mark("u1:0"),
                at: d(3070),
            },
            // Caller talks over the bot; the engine clears 240 ms later.
            CallerSpeechStarted { at: d(4000) },
            Clear { at: d(4240) },
            MarkEchoed {
                name: mark("u1:0"),
                at: d(4240),
            },
            BotAudioStopped { at: d(4260) },
            CallerSpeechEnded { at: d(5500) },
            BotAudioStarted { at: d(6100) },
            MarkReceived {
                name: mark("u2:0"),
                at: d(6100),
            },
            MarkEchoed {
                name: mark("u2:0"),
                at: d(7100),
            },
            BotAudioStopped { at: d(7100) },
        ]);
        assert_eq!(f.turn_ms, vec![560.0, 600.0]);
        assert_eq!(f.barge_ins, 1);
        assert_eq!(f.barge_in_ms, vec![240.0]);
        assert_eq!(f.missed_barge_ins, 0);
        assert_eq!(f.mark_rtt_ms, vec![1170.0, 1000.0]);
        assert_eq!((f.unanswered_turns, f.unechoed_marks), (0, 0));
    }

    #[test]
    fn unanswered_turns_missed_barge_ins_and_unechoed_marks_are_counted() {
        use CallerEvent::*;
        let f = run(&[
            BotAudioStarted { at: d(0) },
            MarkReceived {
                name: "g:0".into(),
                at: d(10),
            },
            CallerSpeechStarted { at: d(500) },
            CallerSpeechEnded { at: d(1000) },
            // No clear: the barge-in was missed; no bot audio: the turn unanswered.
            BotAudioStopped { at: d(1500) },
            CallerSpeechStarted { at: d(3000) },
            CallerSpeechEnded { at: d(3500) },
        ]);
        assert_eq!((f.barge_ins, f.missed_barge_ins), (1, 1));
        assert!(f.barge_in_ms.is_empty());
        assert_eq!(f.unanswered_turns, 1);
        assert!(f.turn_ms.is_empty());
        assert_eq!(f.unechoed_marks, 1);
    }
}
