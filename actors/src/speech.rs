//! The speech loop of a call with a live media stream, owned by its
//! [`CallActor`](crate::CallActor).
//!
//! ```text
//! AudioIn ─► InboundAudio (μ-law → 8/16 kHz → VAD) ─► STT worker task ─► final text
//!                                                                          │
//!  MediaOut ◄─ Player (paced 20 ms frames + marks) ◄─ reply task (agent → sentences → TTS)
//! ```
//!
//! All state lives here and is touched only by the actor, except the
//! conversation context, which the call's agent session owns. Provider I/O
//! runs in the session's provider clients (supervised actors that a crash
//! restarts); small tasks the loop spawns (one per caller utterance, one per
//! agent turn) relay their results back as [`Event`]s in the actor's
//! mailbox; a turn ID on every result makes stale ones harmless after a
//! barge-in. Nothing here awaits a provider, the socket or the database:
//! outbound frames go through `try_send`, persistence and live events through
//! the per-call writer task, recording frames through the recording writer.
//! The per-frame path (`on_audio`, `on_tick`) allocates nothing of its own.

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use ractor::ActorRef;
use switchboard_domain::{Agent, CallEventKind, CallId, EndReason, Speaker, TenantId, TurnLatency};
use switchboard_media::inbound::InboundAudio;
use switchboard_media::player::{MarkOutcome, Player, PlayerConfig};
use switchboard_media::vad::{VadConfig, VadEvent};
use switchboard_providers::capability::Speaker as HistorySpeaker;
use switchboard_providers::{AgentAction, AgentOutput, PcmChunk, StreamConfig, SttEvent, Telephony, TurnInput};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::agent_session::AgentSessionHandle;
use crate::call::{CallMsg, Internal};
use crate::clients::{Capability, ClientOut, STT_CHUNK, SttAudio};
use crate::media::{EventSink, LiveCall, MediaOut};
use crate::metrics;
use crate::recorder::CallRecorder;
use crate::recording::Recording;
use crate::writer::{SinkItem, spawn_writer};

/// Playback clock period.
const TICK: Duration = Duration::from_millis(20);
/// 16 kHz audio kept before a VAD start and handed to STT with the segment.
const PREROLL_SAMPLES: usize = 16 * 240;
/// STT audio messages queued before frames are dropped (5 s).
const STT_QUEUE: usize = 250;
/// Said after `idle_timeout_ms` of caller silence, and after a second one before hanging up.
const DEFAULT_REPROMPT: &str = "Are you still there?";
const DEFAULT_GOODBYE: &str = "I haven't heard anything, so I'll hang up now. Goodbye!";
const DEFAULT_FAULT_LINE: &str = "Sorry, one moment.";
const DEFAULT_REPEAT_LINE: &str = "Sorry, I didn't catch that. Could you say it again?";
const DEFAULT_GIVE_UP_LINE: &str =
    "I'm sorry, I'm having technical trouble right now. Please call back later. Goodbye.";
const DEFAULT_MAX_FAILURES: u32 = 3;

/// A message the call actor sends itself.
#[derive(Debug)]
pub(crate) enum Event {
    /// The playback clock: time to send due frames and check timers.
    Tick,
    /// A result of the STT worker of caller turn `turn`.
    Stt { turn: u32, item: SttItem },
    /// A piece of agent turn `turn`'s reply.
    Reply { turn: u32, item: ReplyItem },
    /// A result of the call's OpenAI Realtime session (realtime mode only).
    Realtime(crate::realtime_loop::RtItem),
}

#[derive(Debug)]
pub(crate) enum SttItem {
    Event(SttEvent),
    Done,
    Failed(String),
}

#[derive(Debug)]
pub(crate) enum ReplyItem {
    /// The agent produced its first text.
    FirstToken,
    /// The next piece of text, synthesized by the `Audio` items that follow.
    Sentence(String),
    Audio(PcmChunk),
    /// The audio of the last `Sentence` is complete.
    SentenceDone,
    Action(AgentAction),
    /// A tool call the agent made, as `name(arguments) -> result`.
    Tool(String),
    /// The reply is complete.
    Done,
    Failed(ReplyFailure),
}

/// Which provider of a reply failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Agent,
    Tts,
    /// A panic: the provider is not known, so none is switched.
    Unknown,
}

#[derive(Debug)]
pub(crate) struct ReplyFailure {
    stage: Stage,
    message: String,
}

/// How a call goes on after a provider failure.
enum AfterFault {
    /// Ask the caller to say it again (their words were lost).
    Repeat,
    /// Say the fault line, then answer this input (of this caller turn) again.
    Retry(TurnInput, u32),
    /// Say the greeting again.
    Greet,
    Nothing,
}

/// What the call does when its providers fail (`settings.faults` of the
/// agent). See the README's "Provider faults" section.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FaultPolicy {
    /// Spoken before a failed answer is retried.
    line: String,
    /// Spoken when the caller's words could not be transcribed.
    repeat_line: String,
    /// Provider failures in a row tolerated; one more and the call gives up.
    max_failures: u32,
    /// Spoken when giving up.
    give_up_line: String,
    /// Transfer here when giving up (needs carrier credentials); else hang up.
    transfer_to: Option<switchboard_domain::E164>,
}

impl FaultPolicy {
    fn from_settings(settings: &serde_json::Value) -> Self {
        let faults = settings.get("faults");
        let text = |key: &str, default: &str| {
            faults
                .and_then(|f| f.get(key))
                .and_then(|v| v.as_str())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        let give_up = faults.and_then(|f| f.get("give_up")).and_then(|v| v.as_str());
        let transfer_to = match give_up {
            Some("transfer") => faults
                .and_then(|f| f.get("transfer_number"))
                .and_then(|v| v.as_str())
                .and_then(|n| switchboard_domain::E164::parse(n).ok()),
            _ => None,
        };
        Self {
            line: text("line", DEFAULT_FAULT_LINE),
            repeat_line: text("repeat_line", DEFAULT_REPEAT_LINE),
            max_failures: faults
                .and_then(|f| f.get("max_failures"))
                .and_then(serde_json::Value::as_u64)
                .map_or(DEFAULT_MAX_FAILURES, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            give_up_line: text("give_up_line", DEFAULT_GIVE_UP_LINE),
            transfer_to,
        }
    }
}

/// The caller utterance being heard.
struct Segment {
    turn: u32,
    feed: Option<mpsc::Sender<SttAudio>>,
    worker: JoinHandle<()>,
    confirmed: bool,
    /// The STT session of this utterance failed; its words are lost.
    failed: bool,
    start_stream_ms: u64,
}

/// A caller utterance whose speech ended and whose transcript is awaited.
struct AwaitingStt {
    turn: u32,
    /// Local time the caller's voice ended.
    voice_end_ms: u64,
    start_stream_ms: u64,
    end_stream_ms: u64,
    worker: JoinHandle<()>,
}

/// An agent turn, from its start until its audio has played or been cut.
struct Reply {
    turn: u32,
    utterance: Arc<str>,
    task: Option<JoinHandle<()>>,
    /// Everything the reply task has announced so far.
    text: String,
    /// The sentence whose audio is arriving and how much of its audio came in.
    sentence: Range<usize>,
    sentence_samples: u64,
    utterance_open: bool,
    audio_pushed: bool,
    generation_done: bool,
    action: Option<AgentAction>,
    /// Local time latency is measured from.
    t0_ms: u64,
    latency: TurnLatency,
    /// Playback started at (stream time of the first frame).
    first_frame_at: Option<u64>,
    /// Reprompts and goodbyes are not answers to the caller.
    kind: ReplyKind,
    /// The caller input answered (or, for a fallback line, to answer again
    /// once the line is heard) and the caller turn it came with.
    input: Option<(TurnInput, u32)>,
    /// Set when a provider failed during the reply: what was generated up to
    /// the failure still plays, then the fault policy takes over.
    failed: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReplyKind {
    Greeting,
    Answer,
    Reprompt,
    Goodbye,
    /// The fault line, said before an answer is retried.
    Fallback,
    /// The last words after repeated provider failures.
    GiveUp,
}

/// What the loop asks the actor to do after handling a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Continue,
    End(EndReason),
}

/// The loop's media state, built before the loop starts (the call builds it
/// while its agent session spawns).
pub(crate) struct Prepared {
    inbound: InboundAudio,
    player: Player,
}

impl Prepared {
    /// The VAD, resamplers and player for a call of `agent`.
    pub(crate) fn new(agent: &Agent) -> Result<Self, String> {
        let e = &agent.endpointing;
        let vad = VadConfig {
            threshold: e.vad_threshold,
            min_speech_ms: e.min_speech_ms,
            silence_ms: e.silence_ms,
            ..VadConfig::default()
        }
        .validate()
        .map_err(|err| format!("agent endpointing: {err}"))?;
        let inbound = InboundAudio::new(vad).map_err(|err| format!("VAD: {err}"))?;
        let player = Player::new(PlayerConfig::default()).map_err(|err| format!("player: {err}"))?;
        Ok(Self { inbound, player })
    }
}

pub(crate) struct SpeechLoop {
    call_id: CallId,
    provider_call_id: Option<switchboard_domain::ProviderCallId>,
    clock: Instant,
    agent: Agent,
    /// The agent session: conversation context and provider clients.
    session: AgentSessionHandle,
    telephony: Option<Arc<dyn Telephony>>,
    outbound: mpsc::Sender<MediaOut>,
    inbound: InboundAudio,
    player: Player,
    myself: ActorRef<CallMsg>,
    sink: Option<mpsc::UnboundedSender<SinkItem>>,
    writer: Option<JoinHandle<()>>,
    events: Arc<dyn EventSink>,
    recording: Option<Recording>,
    ticker: JoinHandle<()>,
    preroll: Box<[i16; PREROLL_SAMPLES]>,
    preroll_pos: usize,
    preroll_filled: bool,
    stt_chunk: SttAudio,
    next_turn: u32,
    segment: Option<Segment>,
    awaiting: VecDeque<AwaitingStt>,
    reply: Option<Reply>,
    idle_since_ms: u64,
    reprompts: u32,
    dropped_out: u64,
    dropped_stt: u64,
    faults: FaultPolicy,
    /// Provider failures since the last answer that went through.
    failures: u32,
}

impl SpeechLoop {
    /// Starts the loop's tasks and the greeting.
    pub(crate) fn start(
        call_id: CallId,
        tenant_id: TenantId,
        live: LiveCall,
        recorder: Arc<dyn CallRecorder>,
        myself: ActorRef<CallMsg>,
        session: AgentSessionHandle,
        media: Prepared,
    ) -> Result<Self, String> {
        let Prepared { inbound, player } = media;
        let events = live.events;
        let agent_settings = live.agent.settings.clone();
        let (sink, writer) = spawn_writer(call_id, tenant_id, recorder, Arc::clone(&events));
        let recording = live.recording.map(Recording::start);
        let ticker = spawn_ticker(myself.clone());
        let mut this = Self {
            call_id,
            provider_call_id: live.provider_call_id,
            clock: Instant::now(),
            agent: live.agent,
            session,
            telephony: live.providers.telephony,
            outbound: live.outbound,
            inbound,
            player,
            myself,
            sink: Some(sink),
            writer: Some(writer),
            events,
            recording,
            ticker,
            preroll: Box::new([0; PREROLL_SAMPLES]),
            preroll_pos: 0,
            preroll_filled: false,
            stt_chunk: SttAudio {
                samples: [0; STT_CHUNK],
                len: 0,
            },
            next_turn: 1,
            segment: None,
            awaiting: VecDeque::new(),
            reply: None,
            idle_since_ms: 0,
            reprompts: 0,
            dropped_out: 0,
            dropped_stt: 0,
            faults: FaultPolicy::from_settings(&agent_settings),
            failures: 0,
        };
        metrics::media().calls_started.fetch_add(1, Ordering::Relaxed);
        this.emit(CallEventKind::CallStarted {
            agent_id: Some(this.agent.id),
            from: live.from,
            to: live.to,
        });
        let greeting = this.agent.greeting.trim().to_owned();
        if !greeting.is_empty() {
            this.say(0, greeting, ReplyKind::Greeting, 0);
        }
        Ok(this)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn emit(&self, kind: CallEventKind) {
        if let Some(sink) = &self.sink {
            let _ = sink.send(SinkItem::Event(kind));
        }
    }

    fn persist(&self, item: SinkItem) {
        if let Some(sink) = &self.sink {
            let _ = sink.send(item);
        }
    }

    // ------------------------------------------------------------------ caller audio

    /// One frame of caller audio: decode, VAD, feed STT, react to turn events.
    pub(crate) fn on_audio(&mut self, ulaw: &[u8], timestamp_ms: u64) -> Step {
        let started = std::time::Instant::now();
        let step = self.process_audio(ulaw, timestamp_ms, started);
        let m = metrics::media();
        m.inbound_frame.observe(started.elapsed());
        m.frames_in.fetch_add(1, Ordering::Relaxed);
        step
    }

    fn process_audio(&mut self, ulaw: &[u8], timestamp_ms: u64, arrived: std::time::Instant) -> Step {
        if let Some(rec) = &mut self.recording {
            rec.caller(timestamp_ms, ulaw);
        }
        let frame = match self.inbound.on_ulaw(ulaw, timestamp_ms) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::warn!(error = %err, "caller audio refused");
                return Step::Continue;
            }
        };
        let events = frame.events.clone();
        let frame_end_ms = timestamp_ms + (frame.pcm_8k.len() as u64) / 8;
        // Keep the preroll ring and the open segment's STT feed up to date.
        let pcm = frame.pcm_16k;
        for &s in pcm {
            self.preroll[self.preroll_pos] = s;
            self.preroll_pos = (self.preroll_pos + 1) % PREROLL_SAMPLES;
            if self.preroll_pos == 0 {
                self.preroll_filled = true;
            }
        }
        if let Some(feed) = self.segment.as_ref().and_then(|s| s.feed.clone()) {
            // `pcm` borrows `inbound`; copy it through the fixed chunk buffer.
            let n = pcm.len();
            let mut start = self.preroll_pos + PREROLL_SAMPLES - n;
            let mut left = n;
            while left > 0 {
                let take = left.min(STT_CHUNK);
                for i in 0..take {
                    self.stt_chunk.samples[i] = self.preroll[(start + i) % PREROLL_SAMPLES];
                }
                self.stt_chunk.len = take as u16;
                if feed.try_send(self.stt_chunk).is_err() {
                    self.dropped_stt += 1;
                }
                start += take;
                left -= take;
            }
        }
        let mut step = Step::Continue;
        for event in events {
            step = self.on_vad(event, frame_end_ms, arrived);
            if step != Step::Continue {
                break;
            }
        }
        step
    }

    fn on_vad(&mut self, event: VadEvent, frame_end_ms: u64, arrived: std::time::Instant) -> Step {
        match event {
            VadEvent::SpeechStarted { at_ms } => {
                if let Some(old) = self.segment.take() {
                    old.worker.abort();
                }
                let turn = self.next_turn;
                self.next_turn += 1;
                let (feed, worker) = self.spawn_stt(turn);
                self.send_preroll(&feed);
                self.segment = Some(Segment {
                    turn,
                    feed: Some(feed),
                    worker,
                    confirmed: false,
                    failed: false,
                    start_stream_ms: at_ms,
                });
            }
            VadEvent::SpeechConfirmed { .. } => {
                if let Some(segment) = &mut self.segment {
                    segment.confirmed = true;
                }
                self.reprompts = 0;
                if self.on_caller_speech() {
                    metrics::media().barge_in.observe(arrived.elapsed());
                }
            }
            VadEvent::SpeechEnded { at_ms, .. } => {
                let Some(mut segment) = self.segment.take() else {
                    return Step::Continue;
                };
                if !segment.confirmed {
                    // A backchannel or a noise: not a turn.
                    segment.worker.abort();
                    return Step::Continue;
                }
                if segment.failed {
                    self.idle_since_ms = self.now_ms();
                    return self.provider_failed(AfterFault::Repeat);
                }
                // Closing the feed lets the worker finish the utterance.
                segment.feed = None;
                let now = self.now_ms();
                let voice_end_ms = now.saturating_sub(frame_end_ms.saturating_sub(at_ms));
                self.awaiting.push_back(AwaitingStt {
                    turn: segment.turn,
                    voice_end_ms,
                    start_stream_ms: segment.start_stream_ms,
                    end_stream_ms: at_ms,
                    worker: segment.worker,
                });
                self.idle_since_ms = now;
            }
        }
        Step::Continue
    }

    /// Confirmed caller speech: a barge-in if the agent is speaking, and the
    /// end of any reply still being prepared (the caller is not done).
    /// Returns whether playback was cleared.
    fn on_caller_speech(&mut self) -> bool {
        let Some(reply) = self.reply.take() else { return false };
        if let Some(task) = &reply.task {
            task.abort();
        }
        if !reply.audio_pushed {
            tracing::debug!(turn = reply.turn, "caller kept talking; reply dropped before playback");
            self.finish_reply(reply, None, true);
            return false;
        }
        let now = self.now_ms();
        let interruption = self.player.clear(now);
        if self.outbound.try_send(MediaOut::Clear).is_err() {
            self.dropped_out += 1;
        }
        metrics::media().barge_ins.fetch_add(1, Ordering::Relaxed);
        let (heard_ms, heard_end) = match &interruption {
            Some(i) if *i.utterance == *reply.utterance => (i.heard_ms, i.heard_text_end.unwrap_or(0)),
            _ => (0, 0),
        };
        let heard = heard_prefix(&reply.text, heard_end).to_owned();
        tracing::info!(turn = reply.turn, heard_ms, heard = %heard, "barge-in: playback cleared");
        self.emit(CallEventKind::BargeIn {
            turn_id: reply.turn,
            heard_ms,
            heard_text: heard.clone(),
        });
        self.finish_reply(reply, Some(heard), true);
        true
    }

    fn send_preroll(&mut self, feed: &mpsc::Sender<SttAudio>) {
        // The ring ends with the current frame: the segment's first voiced audio.
        let total = if self.preroll_filled {
            PREROLL_SAMPLES
        } else {
            self.preroll_pos
        };
        let mut start = self.preroll_pos + PREROLL_SAMPLES - total;
        let mut left = total;
        while left > 0 {
            let take = left.min(STT_CHUNK);
            for i in 0..take {
                self.stt_chunk.samples[i] = self.preroll[(start + i) % PREROLL_SAMPLES];
            }
            self.stt_chunk.len = take as u16;
            if feed.try_send(self.stt_chunk).is_err() {
                self.dropped_stt += 1;
            }
            start += take;
            left -= take;
        }
    }

    fn spawn_stt(&self, turn: u32) -> (mpsc::Sender<SttAudio>, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(STT_QUEUE);
        let (out_tx, mut out_rx) = mpsc::channel(32);
        let config = StreamConfig {
            sample_rate: 16_000,
            language: self.agent.language.clone(),
            interim_results: true,
        };
        let sent = self.session.transcribe(config, rx, out_tx);
        let myself = self.myself.clone();
        // Relays the STT client's results; dropping it (an abandoned
        // utterance) makes the client drop the request.
        let task = tokio::spawn(async move {
            let report = |item| {
                let _ = myself.send_message(CallMsg::Internal(Internal(Event::Stt { turn, item })));
            };
            if let Err(err) = sent {
                report(SttItem::Failed(format!("agent session unavailable: {err}")));
                return;
            }
            while let Some(out) = out_rx.recv().await {
                match out {
                    ClientOut::Item(event) => report(SttItem::Event(event)),
                    ClientOut::Done => return report(SttItem::Done),
                    ClientOut::Failed(err) => return report(SttItem::Failed(err)),
                }
            }
            report(SttItem::Failed("the STT client stopped mid-request".to_owned()));
        });
        (tx, task)
    }

    pub(crate) fn on_stt(&mut self, turn: u32, item: SttItem) -> Step {
        match item {
            SttItem::Event(SttEvent::Partial(text)) => {
                self.emit(CallEventKind::TranscriptPartial {
                    speaker: Speaker::Caller,
                    text,
                    turn_id: turn,
                });
            }
            SttItem::Event(SttEvent::Final { text, .. }) => {
                let text = text.trim().to_owned();
                let Some(pos) = self.awaiting.iter().position(|a| a.turn == turn) else {
                    // A segment that was abandoned; its words were not a turn.
                    return Step::Continue;
                };
                if text.is_empty() {
                    return Step::Continue;
                }
                let awaiting = &self.awaiting[pos];
                let (t0, start, end) = (awaiting.voice_end_ms, awaiting.start_stream_ms, awaiting.end_stream_ms);
                let now = self.now_ms();
                tracing::info!(turn, text = %text, "caller said");
                self.persist(SinkItem::Transcript {
                    speaker: Speaker::Caller,
                    text: text.clone(),
                    start_ms: start,
                    end_ms: end,
                });
                self.emit(CallEventKind::TranscriptFinal {
                    speaker: Speaker::Caller,
                    text: text.clone(),
                    turn_id: turn,
                    start_ms: start,
                    end_ms: end,
                    interrupted: false,
                });
                self.answer(
                    turn,
                    TurnInput::UserText(text.clone()),
                    text,
                    t0,
                    ms_u32(now.saturating_sub(t0)),
                );
            }
            SttItem::Done => {
                if let Some(pos) = self.awaiting.iter().position(|a| a.turn == turn) {
                    self.awaiting.remove(pos);
                }
            }
            SttItem::Failed(err) => {
                tracing::warn!(turn, error = %err, "speech recognition failed");
                self.session.use_backup(Capability::Stt);
                if let Some(segment) = self.segment.as_mut().filter(|s| s.turn == turn) {
                    // The caller is still talking: ask again once they stop.
                    segment.failed = true;
                    segment.feed = None;
                    return Step::Continue;
                }
                if let Some(pos) = self.awaiting.iter().position(|a| a.turn == turn) {
                    self.awaiting.remove(pos);
                    return self.provider_failed(AfterFault::Repeat);
                }
            }
        }
        Step::Continue
    }

    pub(crate) fn on_dtmf(&mut self, digits: String) -> Step {
        let digits: String = digits
            .chars()
            .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
            .collect();
        if digits.is_empty() {
            return Step::Continue;
        }
        tracing::info!(digits = %digits, "caller pressed keys");
        self.emit(CallEventKind::Dtmf { digits: digits.clone() });
        self.reprompts = 0;
        let _ = self.on_caller_speech();
        let turn = self.next_turn;
        self.next_turn += 1;
        let now = self.now_ms();
        let line = format!("[pressed {digits}]");
        self.answer(turn, TurnInput::Dtmf(digits), line, now, 0);
        Step::Continue
    }

    // ------------------------------------------------------------------ agent turns

    /// Starts the agent's answer to `input`; `caller_line` joins the
    /// context after the snapshot the answer is built from.
    fn answer(&mut self, turn: u32, input: TurnInput, caller_line: String, t0_ms: u64, stt_final_ms: u32) {
        if let Some(previous) = self.reply.take() {
            if let Some(task) = &previous.task {
                task.abort();
            }
            if previous.audio_pushed {
                // Answering over our own playback: cut it as a barge-in would.
                self.player.clear(self.now_ms());
                let _ = self.outbound.try_send(MediaOut::Clear);
            }
            self.finish_reply(previous, None, true);
        }
        self.start_answer(turn, input, Some(caller_line), None, t0_ms, Some(stt_final_ms));
    }

    /// Answers `input` of caller turn `of_turn` again after a provider
    /// failure: the session builds the context as it is now minus the input's
    /// own line.
    fn retry_answer(&mut self, input: TurnInput, of_turn: u32) {
        let turn = self.next_turn;
        self.next_turn += 1;
        tracing::info!(turn, "retrying the answer");
        let now = self.now_ms();
        self.start_answer(turn, input, None, Some(of_turn), now, None);
    }

    fn start_answer(
        &mut self,
        turn: u32,
        input: TurnInput,
        caller_line: Option<String>,
        retry_of: Option<u32>,
        t0_ms: u64,
        stt_final_ms: Option<u32>,
    ) {
        let (out_tx, out_rx) = mpsc::channel(64);
        let sent = self
            .session
            .respond(turn, input.clone(), caller_line, retry_of, out_tx)
            .map_err(|err| format!("agent session unavailable: {err}"));
        let mut reply = self.new_reply(turn, ReplyKind::Answer, t0_ms);
        reply.input = Some((input, retry_of.unwrap_or(turn)));
        reply.latency.stt_final_ms = stt_final_ms;
        let outputs = match sent {
            Ok(()) => client_stream(out_rx, "agent"),
            Err(err) => futures::stream::iter([Err(err)]).boxed(),
        };
        reply.task = Some(self.spawn_reply(turn, outputs));
        self.reply = Some(reply);
    }

    /// A provider failed (STT, or a reply that has now played what it
    /// had): recover as `next` says, or give up after too many failures in
    /// a row.
    fn provider_failed(&mut self, next: AfterFault) -> Step {
        self.failures += 1;
        if self.failures > self.faults.max_failures {
            return self.give_up();
        }
        if self.reply.is_some() {
            // The agent is speaking already; the caller will go on.
            return Step::Continue;
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        let now = self.now_ms();
        match next {
            AfterFault::Repeat => {
                let line = self.faults.repeat_line.clone();
                self.say(turn, line, ReplyKind::Fallback, now);
            }
            AfterFault::Retry(input, at) => {
                let line = self.faults.line.clone();
                self.say(turn, line, ReplyKind::Fallback, now);
                if let Some(reply) = &mut self.reply {
                    reply.input = Some((input, at));
                }
            }
            AfterFault::Greet => {
                let greeting = self.agent.greeting.trim().to_owned();
                self.say(turn, greeting, ReplyKind::Greeting, now);
            }
            AfterFault::Nothing => {}
        }
        Step::Continue
    }

    /// Too many provider failures: say so and hang up (or transfer).
    fn give_up(&mut self) -> Step {
        if let Some(reply) = self.reply.take() {
            if let Some(task) = &reply.task {
                task.abort();
            }
            if reply.kind == ReplyKind::GiveUp {
                return Step::End(EndReason::ProviderError);
            }
            if reply.audio_pushed {
                self.player.clear(self.now_ms());
                let _ = self.outbound.try_send(MediaOut::Clear);
            }
        }
        tracing::error!(
            failures = self.failures,
            "providers keep failing; giving up on the call"
        );
        let turn = self.next_turn;
        self.next_turn += 1;
        let now = self.now_ms();
        let line = self.faults.give_up_line.clone();
        self.say(turn, line, ReplyKind::GiveUp, now);
        Step::Continue
    }

    /// Speaks fixed text (greeting, reprompt, goodbye).
    fn say(&mut self, turn: u32, text: String, kind: ReplyKind, t0_ms: u64) {
        let mut reply = self.new_reply(turn, kind, t0_ms);
        let outputs = futures::stream::iter([Ok(AgentOutput::Text(text))]);
        reply.task = Some(self.spawn_reply(turn, outputs.boxed()));
        self.reply = Some(reply);
    }

    fn new_reply(&self, turn: u32, kind: ReplyKind, t0_ms: u64) -> Reply {
        Reply {
            turn,
            utterance: Arc::from(format!("t{turn}")),
            task: None,
            text: String::new(),
            sentence: 0..0,
            sentence_samples: 0,
            utterance_open: false,
            audio_pushed: false,
            generation_done: false,
            action: None,
            t0_ms,
            latency: TurnLatency {
                turn_id: turn,
                ..TurnLatency::default()
            },
            first_frame_at: None,
            kind,
            input: None,
            failed: None,
        }
    }

    fn spawn_reply(
        &self,
        turn: u32,
        outputs: futures::stream::BoxStream<'static, Result<AgentOutput, String>>,
    ) -> JoinHandle<()> {
        let session = self.session.clone();
        let voice = self.agent.voice.clone();
        let myself = self.myself.clone();
        tokio::spawn(async move {
            let report = |item| {
                let _ = myself.send_message(CallMsg::Internal(Internal(Event::Reply { turn, item })));
            };
            let work = std::panic::AssertUnwindSafe(reply_worker(outputs, session, voice, &report)).catch_unwind();
            match work.await {
                Ok(Ok(())) => report(ReplyItem::Done),
                Ok(Err(failure)) => report(ReplyItem::Failed(failure)),
                Err(panic) => report(ReplyItem::Failed(ReplyFailure {
                    stage: Stage::Unknown,
                    message: format!("provider panicked: {}", panic_message(&panic)),
                })),
            }
        })
    }

    pub(crate) fn on_reply(&mut self, turn: u32, item: ReplyItem) -> Step {
        let now = self.now_ms();
        let Some(reply) = self.reply.as_mut().filter(|r| r.turn == turn) else {
            // A result of a reply already cut off.
            return Step::Continue;
        };
        let since = |t0: u64| Some(ms_u32(now.saturating_sub(t0)));
        match item {
            ReplyItem::FirstToken => {
                reply
                    .latency
                    .agent_first_token_ms
                    .get_or_insert(since(reply.t0_ms).unwrap_or(0));
            }
            ReplyItem::Sentence(text) => {
                if !reply.text.is_empty() && !reply.text.ends_with(char::is_whitespace) {
                    reply.text.push(' ');
                }
                let start = reply.text.len();
                reply.text.push_str(&text);
                reply.sentence = start..reply.text.len();
                reply.sentence_samples = 0;
            }
            ReplyItem::Audio(chunk) => {
                if chunk.samples.is_empty() {
                    return Step::Continue;
                }
                if reply.latency.tts_first_audio_ms.is_none() {
                    reply.latency.tts_first_audio_ms = since(reply.t0_ms);
                }
                if !reply.utterance_open {
                    if let Err(err) = self.player.start_utterance(&reply.utterance, chunk.sample_rate) {
                        tracing::error!(error = %err, "TTS audio cannot be played; ending the call");
                        return Step::End(EndReason::ProviderError);
                    }
                    reply.utterance_open = true;
                }
                // Credit the sentence's text in proportion to its audio, at word
                // boundaries, assuming ~14 characters per second of speech.
                reply.sentence_samples += chunk.samples.len() as u64;
                let secs = reply.sentence_samples as f64 / f64::from(chunk.sample_rate.max(1));
                let credited = ((secs * 14.0) as usize).min(reply.sentence.len().saturating_sub(1));
                let end = word_floor(&reply.text, reply.sentence.start + credited).max(reply.sentence.start);
                match self.player.push_chunk(&chunk.samples, Some(reply.sentence.start..end)) {
                    Ok(_) => {
                        reply.audio_pushed = true;
                        // The first audio of a reply goes out now, not at the next tick.
                        if reply.first_frame_at.is_none() {
                            self.send_due_frames(now);
                            return Step::Continue;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "reply audio dropped");
                    }
                }
            }
            ReplyItem::SentenceDone => {
                if reply.utterance_open {
                    // An empty chunk places a mark at the sentence's end.
                    let _ = self.player.push_chunk(&[], Some(reply.sentence.clone()));
                }
            }
            ReplyItem::Action(action) => reply.action = Some(action),
            ReplyItem::Tool(record) => {
                tracing::info!(turn, tool = %record, "agent called a tool");
                self.session.record(HistorySpeaker::Tool, record);
            }
            ReplyItem::Done => {
                reply.generation_done = true;
                reply.task = None;
                if reply.utterance_open {
                    self.player.finish_utterance();
                }
                // Nothing left to play or confirm (nothing was said, or every
                // mark already came back): the turn is over at once.
                if (!reply.utterance_open || self.player.is_idle())
                    && let Some(reply) = self.reply.take()
                {
                    return self.finish_reply(reply, None, false);
                }
            }
            ReplyItem::Failed(failure) => {
                tracing::warn!(turn, stage = ?failure.stage, error = %failure.message, "agent reply failed");
                if reply.kind == ReplyKind::GiveUp {
                    return Step::End(EndReason::ProviderError);
                }
                // What was fully synthesized still plays: the text before the
                // sentence whose audio failed, or all of it when the agent failed.
                let heard_end = match failure.stage {
                    Stage::Tts | Stage::Unknown => reply.sentence.start,
                    Stage::Agent => reply.text.len(),
                };
                reply.failed = Some(heard_end);
                reply.generation_done = true;
                reply.task = None;
                reply.action = None;
                let stage = failure.stage;
                if reply.utterance_open {
                    self.player.finish_utterance();
                }
                let idle = !reply.utterance_open || self.player.is_idle();
                self.switch_to_backup(stage);
                if idle && let Some(reply) = self.reply.take() {
                    return self.finish_reply(reply, None, false);
                }
            }
        }
        Step::Continue
    }

    /// From now on, use the secondary provider of the failed stage, if any.
    fn switch_to_backup(&self, stage: Stage) {
        match stage {
            Stage::Agent => self.session.use_backup(Capability::Agent),
            Stage::Tts => self.session.use_backup(Capability::Tts),
            Stage::Unknown => {}
        }
    }

    /// Settles a reply: transcript, history, latency, and its action.
    /// `heard` is the text the caller heard when it was cut short.
    fn finish_reply(&mut self, reply: Reply, heard: Option<String>, interrupted: bool) -> Step {
        let now = self.now_ms();
        self.idle_since_ms = now;
        let heard = heard.or_else(|| reply.failed.map(|end| heard_prefix(&reply.text, end).to_owned()));
        let text = heard.unwrap_or_else(|| if interrupted { String::new() } else { reply.text.clone() });
        let start = reply.first_frame_at.unwrap_or(now);
        if !text.is_empty() {
            self.persist(SinkItem::Transcript {
                speaker: Speaker::Agent,
                text: text.clone(),
                start_ms: start,
                end_ms: now.max(start),
            });
            self.emit(CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                text: text.clone(),
                turn_id: reply.turn,
                start_ms: start,
                end_ms: now.max(start),
                interrupted,
            });
        }
        if reply.kind == ReplyKind::Answer || reply.kind == ReplyKind::Greeting || !text.is_empty() {
            // Fault lines are not the agent's words: they stay out of its context.
            let agent_words = !matches!(reply.kind, ReplyKind::Fallback | ReplyKind::GiveUp);
            if agent_words && !text.is_empty() {
                self.session.record(HistorySpeaker::Agent, text);
            }
            self.persist(SinkItem::Turn(reply.latency));
            self.emit(CallEventKind::TurnLatency(reply.latency));
        }
        if interrupted {
            return Step::Continue;
        }
        if reply.failed.is_some() {
            let next = match (reply.kind, reply.input) {
                (ReplyKind::Goodbye, _) => return Step::End(EndReason::SilenceTimeout),
                (ReplyKind::Answer | ReplyKind::Fallback, Some((input, at))) => AfterFault::Retry(input, at),
                (ReplyKind::Fallback, None) => AfterFault::Repeat,
                (ReplyKind::Greeting, _) => AfterFault::Greet,
                _ => AfterFault::Nothing,
            };
            return self.provider_failed(next);
        }
        match reply.kind {
            ReplyKind::Goodbye => return Step::End(EndReason::SilenceTimeout),
            ReplyKind::Fallback => {
                if let Some((input, at)) = reply.input {
                    self.retry_answer(input, at);
                }
                return Step::Continue;
            }
            ReplyKind::GiveUp => {
                return match (&self.faults.transfer_to, &self.telephony, &self.provider_call_id) {
                    (Some(number), Some(_), Some(_)) => {
                        let number = number.clone();
                        self.transfer(number)
                    }
                    _ => Step::End(EndReason::ProviderError),
                };
            }
            ReplyKind::Answer => self.failures = 0,
            ReplyKind::Greeting | ReplyKind::Reprompt => {}
        }
        match reply.action {
            Some(AgentAction::Hangup) => Step::End(EndReason::AgentHangup),
            Some(AgentAction::Transfer(number)) => self.transfer(number),
            Some(AgentAction::End) | None => Step::Continue,
        }
    }

    /// Hands the caller to `number` at the carrier (see [`transfer_call`]).
    fn transfer(&mut self, number: switchboard_domain::E164) -> Step {
        transfer_call(
            self.call_id,
            self.telephony.clone(),
            self.provider_call_id.clone(),
            number,
        )
    }

    // ------------------------------------------------------------------ playback and timers

    /// The playback clock: send due frames and marks, check the silence timer.
    pub(crate) fn on_tick(&mut self) -> Step {
        let now = self.now_ms();
        self.send_due_frames(now);
        self.check_idle(now)
    }

    /// Hands the socket every frame (and mark) that is due by `now`.
    fn send_due_frames(&mut self, now: u64) {
        let first = pump_frames(
            &mut self.player,
            &self.outbound,
            &mut self.recording,
            &mut self.dropped_out,
            now,
        );
        if let (Some(play_at), Some(reply)) = (first, &mut self.reply)
            && reply.first_frame_at.is_none()
        {
            reply.first_frame_at = Some(play_at);
            reply.latency.first_frame_ms = Some(ms_u32(now.saturating_sub(reply.t0_ms)));
        }
    }

    fn check_idle(&mut self, now: u64) -> Step {
        let timeout = u64::from(self.agent.endpointing.idle_timeout_ms);
        let busy = self.reply.is_some() || self.segment.is_some() || !self.awaiting.is_empty();
        if timeout == 0 || busy || now.saturating_sub(self.idle_since_ms) < timeout {
            return Step::Continue;
        }
        let turn = self.next_turn;
        self.next_turn += 1;
        let setting = |key: &str, default: &str| {
            self.agent
                .settings
                .get(key)
                .and_then(|v| v.as_str())
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(default)
                .to_owned()
        };
        if self.reprompts == 0 {
            self.reprompts = 1;
            tracing::info!("caller silent; reprompting");
            let text = setting("reprompt", DEFAULT_REPROMPT);
            self.say(turn, text, ReplyKind::Reprompt, now);
        } else {
            tracing::info!("caller still silent; saying goodbye");
            let text = setting("goodbye", DEFAULT_GOODBYE);
            self.say(turn, text, ReplyKind::Goodbye, now);
        }
        Step::Continue
    }

    pub(crate) fn on_mark(&mut self, name: &str) -> Step {
        let now = self.now_ms();
        match self.player.on_mark(name) {
            MarkOutcome::Played(heard) => {
                let Some(reply) = self.reply.as_mut().filter(|r| *r.utterance == *heard.utterance) else {
                    return Step::Continue;
                };
                if reply.latency.mark_confirmed_ms.is_none() {
                    reply.latency.mark_confirmed_ms = Some(ms_u32(now.saturating_sub(reply.t0_ms)));
                }
                if heard.complete
                    && reply.generation_done
                    && let Some(reply) = self.reply.take()
                {
                    return self.finish_reply(reply, None, false);
                }
            }
            MarkOutcome::Cleared { .. } => {}
            MarkOutcome::Unknown => tracing::debug!(mark = name, "unknown mark echoed"),
        }
        Step::Continue
    }

    // ------------------------------------------------------------------ the end

    /// Publishes a status change.
    pub(crate) fn status_changed(&self, status: switchboard_domain::CallStatus) {
        self.emit(CallEventKind::StatusChanged { status });
    }

    /// Stops every task, settles what was said, closes the socket and waits
    /// (bounded) until the transcript, latencies and recording are stored.
    /// Returns the event sink for the final `call_ended`, which the actor
    /// publishes once the call row is finalized.
    pub(crate) async fn finish(mut self, reason: EndReason, recorder: &dyn CallRecorder) -> Arc<dyn EventSink> {
        metrics::media().calls_ended.fetch_add(1, Ordering::Relaxed);
        self.ticker.abort();
        if let Some(segment) = self.segment.take() {
            segment.worker.abort();
        }
        for awaiting in self.awaiting.drain(..) {
            awaiting.worker.abort();
        }
        if let Some(reply) = self.reply.take() {
            if let Some(task) = &reply.task {
                task.abort();
            }
            // What had played by now is what the caller heard.
            let heard = self
                .player
                .clear(self.now_ms())
                .filter(|i| *i.utterance == *reply.utterance)
                .map(|i| heard_prefix(&reply.text, i.heard_text_end.unwrap_or(0)).to_owned());
            let _ = self.finish_reply(reply, Some(heard.unwrap_or_default()), true);
        }
        if self.outbound.try_send(MediaOut::Close(reason)).is_err() {
            tracing::debug!("socket gone before the close");
        }
        if self.dropped_out > 0 || self.dropped_stt > 0 {
            tracing::warn!(
                dropped_out = self.dropped_out,
                dropped_stt = self.dropped_stt,
                "frames were dropped during the call"
            );
        }
        self.sink = None;
        crate::writer::settle(self.writer.take(), self.recording.take(), recorder, self.call_id).await;
        self.events
    }
}

/// Hands the caller to `number` at the carrier with a `<Dial>` (in a task:
/// the actor never awaits the carrier); the stream ends when Twilio leaves
/// `<Connect>`. Without carrier credentials the call is hung up instead.
/// Shared by both media loops.
pub(crate) fn transfer_call(
    call_id: CallId,
    telephony: Option<Arc<dyn Telephony>>,
    sid: Option<switchboard_domain::ProviderCallId>,
    number: switchboard_domain::E164,
) -> Step {
    match (telephony, sid) {
        (Some(telephony), Some(sid)) => {
            tracing::info!(to = %number, "transferring the call");
            tokio::spawn(async move {
                let twiml = switchboard_providers::twilio::twiml::dial(&number);
                if let Err(err) = telephony.update_twiml(&sid, &twiml).await {
                    tracing::error!(%call_id, error = %err, "transfer failed");
                }
            });
            Step::End(EndReason::Transferred)
        }
        _ => {
            tracing::warn!(to = %number, "transfer asked for, but the tenant has no carrier credentials; hanging up");
            Step::End(EndReason::AgentHangup)
        }
    }
}

/// Hands the socket every frame (and its marks) the player has due by `now`,
/// records each frame, and counts real drops (a full socket queue; a closed
/// one means the call is ending). Returns when the first of them plays, if
/// any was sent. Shared by both media loops; allocates only the mark names.
pub(crate) fn pump_frames(
    player: &mut Player,
    outbound: &mpsc::Sender<MediaOut>,
    recording: &mut Option<Recording>,
    dropped_out: &mut u64,
    now: u64,
) -> Option<u64> {
    let started = std::time::Instant::now();
    let m = metrics::media();
    let mut first = None;
    while let Some(frame) = player.poll_frame(now) {
        first.get_or_insert(frame.play_at_ms);
        match outbound.try_send(MediaOut::Media(frame.ulaw)) {
            Ok(()) => {
                m.frames_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                *dropped_out += 1;
                m.frames_dropped_out.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
        if let Some(rec) = recording {
            rec.bot(frame.play_at_ms, &frame.ulaw);
        }
        while let Some(mark) = player.poll_mark() {
            let mark: Arc<str> = Arc::from(mark);
            if outbound.try_send(MediaOut::Mark(mark)).is_err() {
                *dropped_out += 1;
            }
        }
    }
    if first.is_some() {
        m.outbound_tick.observe(started.elapsed());
    }
    first
}

/// The results of one provider-client request as a stream: items, ended by
/// `Done`, or by one error for `Failed` or for a client that stopped before
/// finishing (a crash, which its session restarts).
fn client_stream<T: Send + 'static>(
    rx: mpsc::Receiver<ClientOut<T>>,
    client: &'static str,
) -> futures::stream::BoxStream<'static, Result<T, String>> {
    futures::stream::unfold(Some(rx), move |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(ClientOut::Item(item)) => Some((Ok(item), Some(rx))),
            Some(ClientOut::Done) => None,
            Some(ClientOut::Failed(err)) => Some((Err(err), None)),
            None => Some((Err(format!("the {client} client stopped mid-request")), None)),
        }
    })
    .boxed()
}

/// Turns the agent's output into sentences and synthesizes each as soon as
/// it is complete, so the first sentence plays while the rest is generated.
async fn reply_worker(
    mut outputs: futures::stream::BoxStream<'static, Result<AgentOutput, String>>,
    session: AgentSessionHandle,
    voice: String,
    report: &(dyn Fn(ReplyItem) + Sync),
) -> Result<(), ReplyFailure> {
    let mut pending = String::new();
    let mut first = true;
    let mut action = None;
    while let Some(output) = outputs.next().await {
        let output = output.map_err(|message| ReplyFailure {
            stage: Stage::Agent,
            message,
        })?;
        match output {
            AgentOutput::Text(delta) => {
                if first && !delta.trim().is_empty() {
                    first = false;
                    report(ReplyItem::FirstToken);
                }
                pending.push_str(&delta);
                while let Some(end) = sentence_end(&pending) {
                    let sentence: String = pending.drain(..end).collect();
                    speak(&session, &voice, sentence.trim(), report).await?;
                }
            }
            AgentOutput::Action(a) => action = Some(a),
            AgentOutput::ToolCall {
                name,
                arguments,
                result,
            } => {
                report(ReplyItem::Tool(format!("{name}({arguments}) -> {result}")));
            }
        }
    }
    let rest = pending.trim();
    if !rest.is_empty() {
        speak(&session, &voice, rest, report).await?;
    }
    if let Some(action) = action {
        report(ReplyItem::Action(action));
    }
    Ok(())
}

async fn speak(
    session: &AgentSessionHandle,
    voice: &str,
    text: &str,
    report: &(dyn Fn(ReplyItem) + Sync),
) -> Result<(), ReplyFailure> {
    if text.is_empty() {
        return Ok(());
    }
    report(ReplyItem::Sentence(text.to_owned()));
    let (out_tx, out_rx) = mpsc::channel(32);
    let mut audio = match session.synthesize(text.to_owned(), voice.to_owned(), out_tx) {
        Ok(()) => client_stream(out_rx, "TTS"),
        Err(err) => futures::stream::iter([Err(format!("agent session unavailable: {err}"))]).boxed(),
    };
    while let Some(chunk) = audio.next().await {
        let chunk = chunk.map_err(|message| ReplyFailure {
            stage: Stage::Tts,
            message,
        })?;
        report(ReplyItem::Audio(chunk));
    }
    report(ReplyItem::SentenceDone);
    Ok(())
}

/// End (exclusive byte index) of the first complete sentence in `text`: a
/// `.`, `!`, `?` or `;` followed by whitespace, or a newline; long clauses are
/// cut at a comma so synthesis can start.
fn sentence_end(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let next_is_space = bytes.get(i + 1).is_some_and(u8::is_ascii_whitespace);
        if b == b'\n' || (matches!(b, b'.' | b'!' | b'?' | b';') && next_is_space) {
            return Some(i + 1);
        }
        if b == b',' && next_is_space && i >= 120 {
            return Some(i + 1);
        }
    }
    None
}

/// The largest index `<= at` that ends a whole word of `text`.
pub(crate) fn word_floor(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    if at == text.len() {
        return at;
    }
    let bytes = text.as_bytes();
    let mut i = at;
    while i > 0 && !bytes[i].is_ascii_whitespace() {
        i -= 1;
    }
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text heard up to byte `end`, trimmed to whole words.
fn heard_prefix(text: &str, end: usize) -> &str {
    text[..word_floor(text, end)].trim_end()
}

pub(crate) fn ms_u32(ms: u64) -> u32 {
    u32::try_from(ms).unwrap_or(u32::MAX)
}

pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn spawn_ticker(myself: ActorRef<CallMsg>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            interval.tick().await;
            if myself.send_message(CallMsg::Internal(Internal(Event::Tick))).is_err() {
                break;
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_at_punctuation_followed_by_space() {
        assert_eq!(sentence_end("Hello there. How"), Some(12));
        assert_eq!(sentence_end("Hello there."), None, "may still continue (e.g. a number)");
        assert_eq!(sentence_end("It costs 3.50 dollars"), None);
        assert_eq!(sentence_end("Wait!\nOk"), Some(5));
        assert_eq!(sentence_end("line\nnext"), Some(5));
    }

    #[test]
    fn heard_text_is_cut_at_whole_words() {
        let text = "Sure, I can book that for tomorrow.";
        assert_eq!(heard_prefix(text, 0), "");
        assert_eq!(heard_prefix(text, 8), "Sure, I");
        assert_eq!(heard_prefix(text, 7), "Sure, I");
        assert_eq!(heard_prefix(text, 6), "Sure,");
        assert_eq!(heard_prefix(text, text.len()), text);
        assert_eq!(heard_prefix("héllo wörld", 9), "héllo");
    }
}
