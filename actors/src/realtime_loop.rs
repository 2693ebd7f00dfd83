//! The OpenAI Realtime (speech-to-speech) media loop of a call, owned by its
//! [`CallActor`](crate::CallActor) when the agent is in realtime mode
//! (`CallProviders.realtime` is set).
//!
//! ```text
//! AudioIn ──► audio queue (bounded, try_send) ──► session task ──► Realtime WebSocket
//!                                                   │    ▲
//!  MediaOut ◄─ Player (paced 20 ms frames + marks) ◄─┘    └── commands (truncate, cancel,
//!              ▲  RtItem events into the actor mailbox          function output, response)
//! ```
//!
//! All call state lives here and is touched only by the actor; nothing here
//! awaits the network. One session task owns the WebSocket: it connects,
//! forwards every server event into the actor's mailbox as
//! [`RtItem::Event`], and sends what the actor asks through two channels: a
//! bounded one for caller frames (`try_send`, drops counted) and an unbounded
//! one for the rare commands, which must not be lost. Tools run in their own
//! tasks and report back as [`RtItem::ToolDone`].
//!
//! Guarantees:
//! - **The agent speaks first.** After the first `session.updated` the loop
//!   asks for a response; a non-empty greeting is added to the session's
//!   instructions to be said verbatim (the client's `response.create` takes
//!   no per-response instructions).
//! - **Paced playback with marks.** Agent audio (μ-law) is decoded to 8 kHz
//!   PCM and queued in the shared [`Player`], one utterance per assistant
//!   item and one mark per delta (deltas over 200 ms are split), so frames go
//!   out at real time on the 20 ms ticker and are recorded on the right
//!   channel, exactly as in the chained loop.
//! - **Barge-in.** On `speech_started` while the agent is speaking: the
//!   player is cleared, Twilio gets `clear`, the item is truncated at the
//!   audio confirmed played by echoed marks (`ulaw_ms` of the bytes before
//!   the last echoed mark, never more than the server produced), and the
//!   stored agent line is the transcript cut proportionally to the audio
//!   heard, at a word boundary. `response.cancel` is sent only when the
//!   response is still generating and the server does not cancel it itself
//!   (server VAD with `interrupt_response`, protocols.md §6.5).
//! - **Tools never block the actor.** Each function call runs in a task
//!   (bounded by [`TOOL_TIMEOUT`], panics caught); unknown tools, a missing
//!   tool host, a timeout or a panic come back to the model as an error
//!   output. A tool's hang-up or transfer takes effect once the next
//!   response's audio has played.
//! - **Faults.** A lost session (provider error, close, stall) is logged
//!   with the call ID and reconnected up to [`MAX_RECONNECTS`] times per
//!   call; the new session is asked to apologise and continue. When
//!   reconnecting fails the call ends with `EndReason::ProviderError`. A
//!   panic in the session task is caught and treated the same way.
//! - **DTMF** is logged and published as a `dtmf` event only: the Realtime
//!   client has no `conversation.item.create` for user text.
//! - **Silence timers** (`idle_timeout_ms`) are not applied: server VAD owns
//!   turn-taking in this mode.
//! - **No caller audio is lost at the end.** When the call closes the
//!   session, the caller frames still queued for it are sent first.
//! - **Per-frame path.** `on_audio` and `on_tick` allocate nothing of their
//!   own; the client builds one JSON string per appended frame (base64),
//!   which is the one allocation per caller frame.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchboard_providers::capability::Speaker as HistorySpeaker;

use futures::FutureExt;
use ractor::ActorRef;
use serde_json::Value;
use switchboard_domain::{Agent, CallEventKind, CallId, EndReason, Speaker, TenantId, TurnLatency};
use switchboard_media::player::{MarkOutcome, Player, PlayerConfig};
use switchboard_media::ulaw;
use switchboard_providers::realtime::{ItemId, ResponseId, ToolCallId};
use switchboard_providers::{
    AgentAction, CallProviders, ProviderErrorKind, RealtimeConfig, RealtimeEvent, RealtimeSession, ToolHost, ToolResult,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::call::{CallMsg, Internal};
use crate::media::{EventSink, FRAME_BYTES, LiveCall, MediaOut};
use crate::metrics;
use crate::recorder::CallRecorder;
use crate::recording::Recording;
use crate::speech::{Event, Step, ms_u32, panic_message, pump_frames, transfer_call, word_floor};
use crate::writer::{SinkItem, spawn_writer};

/// Playback clock period.
const TICK: Duration = Duration::from_millis(20);
/// Caller frames queued for the session before frames are dropped (5 s).
const AUDIO_QUEUE: usize = 250;
/// Sessions opened after the first one was lost, per call, before giving up.
pub(crate) const MAX_RECONNECTS: u32 = 2;
/// Pause before the first reconnect; doubles after each one.
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// How long `finish` waits for the session to send the queued caller audio
/// and close cleanly (normally milliseconds; generous for a loaded host).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a tool may run before the model is told it failed.
const TOOL_TIMEOUT: Duration = Duration::from_secs(30);
/// Most agent audio between two marks: 200 ms of 8 kHz μ-law.
const MAX_CHUNK_BYTES: usize = 1600;
/// Said by the model after a reconnect, in the new session's instructions.
const RECONNECT_NOTE: &str = "The line to the caller was briefly interrupted and you lost the \
     conversation so far. Apologise in one short sentence and ask the caller to repeat what they last said.";

/// A result of the Realtime session's tasks, delivered to the call actor.
#[derive(Debug)]
pub(crate) enum RtItem {
    /// A session is open; `resumed` when an earlier one of the call was lost.
    Connected { resumed: bool },
    /// A server event of the open session.
    Event(RealtimeEvent),
    /// The session was lost; the task is reconnecting.
    Lost(String),
    /// The session is gone for good (reconnects used up, or a panic).
    Failed(String),
    /// A tool call finished.
    ToolDone {
        call_id: ToolCallId,
        name: String,
        result: ToolResult,
    },
}

/// One caller frame on its way to the session; fixed-size so queueing it
/// allocates nothing.
#[derive(Debug, Clone, Copy)]
struct Frame {
    ulaw: [u8; FRAME_BYTES],
    len: u8,
}

/// What the actor asks the session task to send.
#[derive(Debug)]
enum Cmd {
    CreateResponse,
    CancelResponse,
    Truncate { item_id: ItemId, audio_end_ms: u64 },
    FunctionOutput { call_id: ToolCallId, output: Value },
    Close,
}

/// A caller turn whose speech ended and whose answer has not started playing.
#[derive(Debug, Clone, Copy)]
struct PendingTurn {
    turn: u32,
    /// Local time latency is measured from (end of caller speech).
    t0_ms: u64,
    stt_final_ms: Option<u32>,
}

/// A caller utterance as the server's VAD saw it.
#[derive(Debug)]
struct CallerItem {
    item_id: ItemId,
    turn: Option<u32>,
    start_ms: u64,
    end_ms: u64,
}

/// Caller items remembered to match late transcripts to their turn.
const CALLER_ITEMS: usize = 8;

/// A tool's hang-up or transfer, waiting for the response that follows the
/// tool's output.
#[derive(Debug)]
struct PendingAction {
    action: AgentAction,
    /// The first response started after the output was sent.
    response: Option<ResponseId>,
}

/// One assistant item, from its first delta until its audio has played or been cut.
struct Reply {
    turn: u32,
    item_id: ItemId,
    response_id: ResponseId,
    utterance: Arc<str>,
    /// The transcript so far (deltas), or the final one.
    text: String,
    transcript_done: bool,
    /// The response ended (done, cancelled, or the session was lost).
    response_done: bool,
    /// μ-law bytes received for the item.
    audio_bytes: u64,
    utterance_open: bool,
    audio_done: bool,
    /// The item's last mark came back: all of its audio was heard.
    played_all: bool,
    t0_ms: u64,
    latency: TurnLatency,
    first_frame_at: Option<u64>,
    action: Option<AgentAction>,
}

impl Reply {
    /// Nothing more will be said or learned about this item.
    fn settled(&self) -> bool {
        if self.utterance_open {
            self.played_all && (self.transcript_done || self.response_done)
        } else {
            self.response_done
        }
    }
}

pub(crate) struct RealtimeLoop {
    call_id: CallId,
    /// The call's agent session. The model keeps its own context server-side;
    /// the session mirrors it (what the caller said, what the caller heard,
    /// tool calls) so a call's context reads the same in both modes.
    agent_session: crate::agent_session::AgentSessionHandle,
    provider_call_id: Option<switchboard_domain::ProviderCallId>,
    clock: Instant,
    agent: Agent,
    providers: CallProviders,
    outbound: mpsc::Sender<MediaOut>,
    player: Player,
    myself: ActorRef<CallMsg>,
    sink: Option<mpsc::UnboundedSender<SinkItem>>,
    writer: Option<JoinHandle<()>>,
    events: Arc<dyn EventSink>,
    recording: Option<Recording>,
    ticker: JoinHandle<()>,
    session: Option<JoinHandle<()>>,
    audio_tx: mpsc::Sender<Frame>,
    cmd_tx: mpsc::UnboundedSender<Cmd>,
    tools: Vec<JoinHandle<()>>,
    /// Reused to decode agent audio: the per-delta path allocates nothing.
    pcm: Box<[i16; MAX_CHUNK_BYTES]>,
    connected: bool,
    /// The open session replaces one that was lost.
    resumed: bool,
    /// A response was asked for after this session's `session.updated`.
    kicked_off: bool,
    /// The server cancels its own response when the caller speaks.
    server_interrupts: bool,
    /// The response being generated (`response.created` .. `response.done`).
    generating: Option<ResponseId>,
    /// The response and item cut by the last barge-in: their late deltas are dropped.
    cut_response: Option<ResponseId>,
    cut_item: Option<ItemId>,
    next_turn: u32,
    pending: Option<PendingTurn>,
    caller_items: VecDeque<CallerItem>,
    reply: Option<Reply>,
    pending_action: Option<PendingAction>,
    dropped_out: u64,
    dropped_in: u64,
}

impl RealtimeLoop {
    /// Starts the session task and the playback clock. The greeting is asked
    /// for once the session is ready.
    pub(crate) fn start(
        call_id: CallId,
        tenant_id: TenantId,
        live: LiveCall,
        recorder: Arc<dyn CallRecorder>,
        myself: ActorRef<CallMsg>,
        agent_session: crate::agent_session::AgentSessionHandle,
    ) -> Result<Self, String> {
        let Some(mut config) = live.providers.realtime.clone() else {
            return Err("the call is not in realtime mode".to_owned());
        };
        let player = Player::new(PlayerConfig::default()).map_err(|err| format!("player: {err}"))?;
        if let Some(tools) = &live.providers.context.tools {
            config.tools = tools.specs();
        }
        let server_interrupts = config.turn_detection.as_ref().is_some_and(|t| t.interrupt_response);
        let mut reconnect = config.clone();
        reconnect.instructions = with_note(&config.instructions, RECONNECT_NOTE);
        let greeting = live.agent.greeting.trim();
        if !greeting.is_empty() {
            let note = format!("Start the call by saying exactly: \"{greeting}\"");
            config.instructions = with_note(&config.instructions, &note);
        }
        let events = live.events;
        let (sink, writer) = spawn_writer(call_id, tenant_id, recorder, Arc::clone(&events));
        let recording = live.recording.map(Recording::start);
        let (audio_tx, audio_rx) = mpsc::channel(AUDIO_QUEUE);
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let session = spawn_session(call_id, config, reconnect, cmd_rx, audio_rx, myself.clone());
        let ticker = spawn_ticker(myself.clone());
        let this = Self {
            call_id,
            agent_session,
            provider_call_id: live.provider_call_id,
            clock: Instant::now(),
            agent: live.agent,
            providers: live.providers,
            outbound: live.outbound,
            player,
            myself,
            sink: Some(sink),
            writer: Some(writer),
            events,
            recording,
            ticker,
            session: Some(session),
            audio_tx,
            cmd_tx,
            tools: Vec::new(),
            pcm: Box::new([0; MAX_CHUNK_BYTES]),
            connected: false,
            resumed: false,
            kicked_off: false,
            server_interrupts,
            generating: None,
            cut_response: None,
            cut_item: None,
            next_turn: 1,
            pending: None,
            caller_items: VecDeque::with_capacity(CALLER_ITEMS),
            reply: None,
            pending_action: None,
            dropped_out: 0,
            dropped_in: 0,
        };
        metrics::media().calls_started.fetch_add(1, Ordering::Relaxed);
        this.emit(CallEventKind::CallStarted {
            agent_id: Some(this.agent.id),
            from: live.from,
            to: live.to,
        });
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

    fn command(&self, cmd: Cmd) {
        // The task only goes away with the loop (or after giving up, when the
        // call is ending anyway).
        if self.cmd_tx.send(cmd).is_err() {
            tracing::debug!(call_id = %self.call_id, "realtime session task gone; command dropped");
        }
    }

    // ------------------------------------------------------------------ caller side

    /// One frame of caller audio: record it and queue it for the session.
    pub(crate) fn on_audio(&mut self, ulaw: &[u8], timestamp_ms: u64) -> Step {
        let started = std::time::Instant::now();
        if let Some(rec) = &mut self.recording {
            rec.caller(timestamp_ms, ulaw);
        }
        let len = ulaw.len().min(FRAME_BYTES);
        if len > 0 {
            let mut frame = Frame {
                ulaw: [ulaw::SILENCE; FRAME_BYTES],
                len: len as u8,
            };
            frame.ulaw[..len].copy_from_slice(&ulaw[..len]);
            if self.audio_tx.try_send(frame).is_err() {
                self.dropped_in += 1;
            }
        }
        let m = metrics::media();
        m.inbound_frame.observe(started.elapsed());
        m.frames_in.fetch_add(1, Ordering::Relaxed);
        Step::Continue
    }

    /// Keypad digits: logged and published. The Realtime client cannot add
    /// user text to the conversation, so the model does not see them.
    pub(crate) fn on_dtmf(&mut self, digits: String) -> Step {
        let digits: String = digits
            .chars()
            .filter(|c| c.is_ascii_digit() || matches!(c, '*' | '#' | 'A'..='D'))
            .collect();
        if !digits.is_empty() {
            tracing::info!(digits = %digits, "caller pressed keys (not forwarded to the realtime model)");
            self.emit(CallEventKind::Dtmf { digits });
        }
        Step::Continue
    }

    // ------------------------------------------------------------------ the session

    /// A result of the session task or a tool task.
    pub(crate) fn on_realtime(&mut self, item: RtItem) -> Step {
        match item {
            RtItem::Connected { resumed } => {
                if resumed {
                    tracing::info!(call_id = %self.call_id, "realtime session reconnected");
                }
                self.connected = true;
                self.resumed = resumed;
                self.kicked_off = false;
                Step::Continue
            }
            RtItem::Event(event) => self.on_event(event),
            RtItem::Lost(error) => {
                tracing::warn!(call_id = %self.call_id, %error, "realtime session lost; reconnecting");
                self.connected = false;
                self.generating = None;
                // The old session's items, tool calls and actions mean nothing
                // to the next one; what is queued still plays.
                self.pending_action = None;
                if let Some(reply) = &mut self.reply {
                    reply.response_done = true;
                    reply.transcript_done = true;
                }
                self.close_utterance();
                self.settle_if_done()
            }
            RtItem::Failed(error) => {
                tracing::error!(call_id = %self.call_id, %error, "realtime session failed; ending the call");
                Step::End(EndReason::ProviderError)
            }
            RtItem::ToolDone { call_id, name, result } => {
                tracing::info!(tool = %name, error = result.is_error(), "tool call finished");
                self.agent_session
                    .record(HistorySpeaker::Tool, format!("{name} -> {}", result.content));
                if !self.connected {
                    tracing::warn!(tool = %name, "session was lost while the tool ran; its output is dropped");
                    return Step::Continue;
                }
                if let Some(action) = result.action {
                    self.pending_action = Some(PendingAction { action, response: None });
                }
                self.command(Cmd::FunctionOutput {
                    call_id,
                    output: result.content,
                });
                Step::Continue
            }
        }
    }

    fn on_event(&mut self, event: RealtimeEvent) -> Step {
        let now = self.now_ms();
        match event {
            RealtimeEvent::SessionReady => {
                if self.kicked_off {
                    return Step::Continue;
                }
                self.kicked_off = true;
                let greet = self.resumed || !self.agent.greeting.trim().is_empty();
                if greet {
                    // The greeting is turn 0; an apology after a reconnect
                    // answers the caller turn it interrupted, if any.
                    if !self.resumed {
                        self.pending = Some(PendingTurn {
                            turn: 0,
                            t0_ms: now,
                            stt_final_ms: None,
                        });
                    } else if self.pending.is_none() {
                        let turn = self.take_turn();
                        self.pending = Some(PendingTurn {
                            turn,
                            t0_ms: now,
                            stt_final_ms: None,
                        });
                    }
                    self.command(Cmd::CreateResponse);
                }
            }
            RealtimeEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => {
                if self.caller_items.len() == CALLER_ITEMS {
                    self.caller_items.pop_front();
                }
                self.caller_items.push_back(CallerItem {
                    item_id,
                    turn: None,
                    start_ms: audio_start_ms,
                    end_ms: audio_start_ms,
                });
                self.barge_in(now);
            }
            RealtimeEvent::SpeechStopped { audio_end_ms, item_id } => {
                let turn = self.take_turn();
                if let Some(item) = self.caller_items.iter_mut().rev().find(|i| i.item_id == item_id) {
                    item.end_ms = audio_end_ms;
                    item.turn = Some(turn);
                }
                self.pending = Some(PendingTurn {
                    turn,
                    t0_ms: now,
                    stt_final_ms: None,
                });
            }
            RealtimeEvent::CallerTranscript { item_id, text } => self.on_caller_transcript(item_id, text, now),
            RealtimeEvent::ResponseStarted { response_id } => {
                if let Some(pending) = &mut self.pending_action
                    && pending.response.is_none()
                {
                    pending.response = Some(response_id.clone());
                }
                self.generating = Some(response_id);
            }
            RealtimeEvent::AudioDelta {
                response_id,
                item_id,
                ulaw,
                ..
            } => return self.on_audio_delta(response_id, item_id, &ulaw, now),
            RealtimeEvent::AudioDone { response_id, item_id } => {
                if self.reply.as_ref().is_some_and(|r| r.item_id == item_id) {
                    self.close_utterance();
                } else if self.cut_response.as_ref() != Some(&response_id) {
                    tracing::debug!(item = %item_id, "audio done for an item that is not playing");
                }
                return self.settle_if_done();
            }
            RealtimeEvent::AgentTranscriptDelta { item_id, text } => {
                if self.cut_item.as_ref() == Some(&item_id) {
                    // A late delta of a cut reply.
                    return Step::Continue;
                }
                let response_id = self.generating.clone().unwrap_or_else(|| ResponseId::from(""));
                if let Some(step) = self.ensure_reply(response_id, &item_id, now) {
                    return step;
                }
                if let Some(reply) = self.reply.as_mut()
                    && !reply.transcript_done
                {
                    reply.text.push_str(&text);
                }
            }
            RealtimeEvent::AgentTranscriptDone { item_id, text } => {
                if let Some(reply) = self.reply.as_mut().filter(|r| r.item_id == item_id) {
                    reply.text = text;
                    reply.transcript_done = true;
                    return self.settle_if_done();
                }
            }
            RealtimeEvent::FunctionCall {
                call_id,
                name,
                arguments,
            } => self.run_tool(call_id, name, arguments),
            RealtimeEvent::ResponseDone {
                response_id,
                status,
                reason,
            } => {
                tracing::debug!(response = %response_id, ?status, ?reason, "response done");
                if self.generating.as_ref() == Some(&response_id) {
                    self.generating = None;
                }
                if let Some(reply) = self.reply.as_mut().filter(|r| r.response_id == response_id) {
                    reply.response_done = true;
                    self.close_utterance();
                }
                // A tool's action whose response said nothing: act now.
                if self
                    .pending_action
                    .as_ref()
                    .is_some_and(|p| p.response.as_ref() == Some(&response_id))
                    && let Some(pending) = self.pending_action.take()
                {
                    if let Some(reply) = &mut self.reply {
                        reply.action = Some(pending.action);
                    } else {
                        return self.act(pending.action);
                    }
                }
                return self.settle_if_done();
            }
            RealtimeEvent::Error { code, message } => {
                tracing::warn!(call_id = %self.call_id, code = code.as_deref().unwrap_or("-"), %message, "realtime error event");
            }
        }
        Step::Continue
    }

    fn take_turn(&mut self) -> u32 {
        let turn = self.next_turn;
        self.next_turn += 1;
        turn
    }

    fn on_caller_transcript(&mut self, item_id: ItemId, text: String, now: u64) {
        let text = text.trim().to_owned();
        if text.is_empty() {
            return;
        }
        let (turn, start_ms, end_ms) = match self.caller_items.iter().find(|i| i.item_id == item_id) {
            Some(item) => (
                item.turn.unwrap_or(self.next_turn.saturating_sub(1)),
                item.start_ms,
                item.end_ms,
            ),
            None => (self.next_turn.saturating_sub(1), 0, 0),
        };
        // Before the answer's audio, the transcript is a stage of the turn.
        if let Some(pending) = self.pending.as_mut().filter(|p| p.turn == turn) {
            pending.stt_final_ms = Some(ms_u32(now.saturating_sub(pending.t0_ms)));
        }
        tracing::info!(turn, text = %text, "caller said");
        self.agent_session.record(HistorySpeaker::Caller, text.clone());
        self.persist(SinkItem::Transcript {
            speaker: Speaker::Caller,
            text: text.clone(),
            start_ms,
            end_ms,
        });
        self.emit(CallEventKind::TranscriptFinal {
            speaker: Speaker::Caller,
            text,
            turn_id: turn,
            start_ms,
            end_ms,
            interrupted: false,
        });
    }

    /// Makes `item_id` the reply being spoken. A different item still
    /// playing is settled as said in full (its audio stays queued ahead of the
    /// new one's). Returns the step when settling it ends the call.
    fn ensure_reply(&mut self, response_id: ResponseId, item_id: &ItemId, now: u64) -> Option<Step> {
        if self.reply.as_ref().is_some_and(|r| r.item_id == *item_id) {
            return None;
        }
        if self.reply.is_some() {
            self.close_utterance();
            if let Some(previous) = self.reply.take() {
                tracing::debug!(item = %previous.item_id, "next assistant item; settling the previous one");
                if let Step::End(reason) = self.finish_reply(previous, None, false) {
                    return Some(Step::End(reason));
                }
            }
        }
        let reply = self.new_reply(response_id, item_id.clone(), now);
        self.reply = Some(reply);
        None
    }

    /// The reply's audio is complete (or will get no more): pad and close its
    /// utterance so its last mark reports it heard.
    fn close_utterance(&mut self) {
        let Some(reply) = self.reply.as_mut() else { return };
        if reply.audio_done {
            return;
        }
        reply.audio_done = true;
        if reply.utterance_open {
            self.player.finish_utterance();
            // Every mark already came back (an underrun): the item is heard.
            reply.played_all |= self.player.is_idle();
        }
    }

    fn on_audio_delta(&mut self, response_id: ResponseId, item_id: ItemId, audio: &[u8], now: u64) -> Step {
        if audio.is_empty() || self.cut_response.as_ref() == Some(&response_id) {
            return Step::Continue;
        }
        if let Some(step) = self.ensure_reply(response_id.clone(), &item_id, now) {
            return step;
        }
        let Some(reply) = self.reply.as_mut() else {
            return Step::Continue;
        };
        if reply.response_id.as_str().is_empty() {
            // Created by a transcript delta before the response was known.
            reply.response_id = response_id;
        }
        if reply.audio_done {
            tracing::debug!(item = %item_id, "audio after the item's end dropped");
            return Step::Continue;
        }
        if reply.latency.tts_first_audio_ms.is_none() {
            reply.latency.tts_first_audio_ms = Some(ms_u32(now.saturating_sub(reply.t0_ms)));
        }
        if !reply.utterance_open {
            if let Err(err) = self.player.start_utterance(&reply.utterance, 8000) {
                tracing::error!(error = %err, "realtime audio cannot be played; ending the call");
                return Step::End(EndReason::ProviderError);
            }
            reply.utterance_open = true;
        }
        for piece in audio.chunks(MAX_CHUNK_BYTES) {
            let pcm = &mut self.pcm[..piece.len()];
            ulaw::decode_into(piece, pcm);
            match self.player.push_chunk(pcm, None) {
                Ok(_) => reply.audio_bytes += piece.len() as u64,
                Err(err) => {
                    tracing::warn!(error = %err, "realtime audio dropped");
                    break;
                }
            }
        }
        Step::Continue
    }

    fn new_reply(&mut self, response_id: ResponseId, item_id: ItemId, now: u64) -> Reply {
        let pending = self.pending.take().unwrap_or_else(|| PendingTurn {
            turn: self.take_turn(),
            t0_ms: now,
            stt_final_ms: None,
        });
        let first_output = Some(ms_u32(now.saturating_sub(pending.t0_ms)));
        let action = match &self.pending_action {
            Some(p) if p.response.as_ref() == Some(&response_id) => self.pending_action.take().map(|p| p.action),
            _ => None,
        };
        Reply {
            turn: pending.turn,
            utterance: Arc::from(format!("rt{}", pending.turn)),
            item_id,
            response_id,
            text: String::new(),
            transcript_done: false,
            response_done: false,
            audio_bytes: 0,
            utterance_open: false,
            audio_done: false,
            played_all: false,
            t0_ms: pending.t0_ms,
            latency: TurnLatency {
                turn_id: pending.turn,
                stt_final_ms: pending.stt_final_ms,
                // The first of the item's audio or transcript.
                agent_first_token_ms: first_output,
                ..TurnLatency::default()
            },
            first_frame_at: None,
            action,
        }
    }

    /// The caller started speaking: cut the agent if it is speaking.
    fn barge_in(&mut self, now: u64) {
        let Some(reply) = self.reply.take() else {
            if let Some(response) = self.generating.clone()
                && !self.server_interrupts
            {
                // Answering before a word was said: the caller is not done.
                self.command(Cmd::CancelResponse);
                self.cut_response = Some(response);
            }
            return;
        };
        if reply.played_all {
            // Already heard in full; only the transcript was outstanding.
            let _ = self.finish_reply(reply, None, false);
            return;
        }
        let started = std::time::Instant::now();
        self.cut_response = Some(reply.response_id.clone());
        self.cut_item = Some(reply.item_id.clone());
        let interruption = self.player.clear(now);
        if reply.utterance_open && self.outbound.try_send(MediaOut::Clear).is_err() {
            self.dropped_out += 1;
        }
        // The last echoed mark of this item, never more than the server produced.
        let heard_ms = interruption
            .filter(|i| *i.utterance == *reply.utterance)
            .map_or(0, |i| i.heard_ms)
            .min(switchboard_providers::realtime::ulaw_ms(reply.audio_bytes));
        if reply.utterance_open {
            self.command(Cmd::Truncate {
                item_id: reply.item_id.clone(),
                audio_end_ms: heard_ms,
            });
        }
        if self.generating.as_ref() == Some(&reply.response_id) && !self.server_interrupts {
            self.command(Cmd::CancelResponse);
        }
        let total_ms = switchboard_providers::realtime::ulaw_ms(reply.audio_bytes);
        let heard = heard_text(&reply.text, heard_ms, total_ms).to_owned();
        let m = metrics::media();
        m.barge_ins.fetch_add(1, Ordering::Relaxed);
        m.barge_in.observe(started.elapsed());
        tracing::info!(turn = reply.turn, item = %reply.item_id, heard_ms, heard = %heard, "barge-in: playback cleared");
        self.emit(CallEventKind::BargeIn {
            turn_id: reply.turn,
            heard_ms,
            heard_text: heard.clone(),
        });
        if reply.action.is_some() {
            tracing::info!(turn = reply.turn, "the interrupted reply's action is dropped");
        }
        let _ = self.finish_reply(reply, Some(heard), true);
    }

    fn run_tool(&mut self, call_id: ToolCallId, name: String, arguments: String) {
        self.tools.retain(|t| !t.is_finished());
        tracing::info!(tool = %name, "model called a tool");
        let host = self.providers.context.tools.clone();
        let myself = self.myself.clone();
        self.tools.push(tokio::spawn(async move {
            let result = call_tool(host, name.clone(), arguments).await;
            let item = RtItem::ToolDone { call_id, name, result };
            let _ = myself.send_message(CallMsg::Internal(Internal(Event::Realtime(item))));
        }));
    }

    /// Settles the reply if it has played and its transcript is known.
    fn settle_if_done(&mut self) -> Step {
        if self.reply.as_ref().is_some_and(Reply::settled)
            && let Some(reply) = self.reply.take()
        {
            return self.finish_reply(reply, None, false);
        }
        Step::Continue
    }

    /// Stores the agent line and the turn's latency, then runs its action.
    /// `heard` is the text the caller heard when it was cut short.
    fn finish_reply(&mut self, reply: Reply, heard: Option<String>, interrupted: bool) -> Step {
        let now = self.now_ms();
        let text = heard.unwrap_or_else(|| reply.text.trim().to_owned());
        let start = reply.first_frame_at.unwrap_or(now);
        if !text.is_empty() {
            self.agent_session.record(HistorySpeaker::Agent, text.clone());
            self.persist(SinkItem::Transcript {
                speaker: Speaker::Agent,
                text: text.clone(),
                start_ms: start,
                end_ms: now.max(start),
            });
            self.emit(CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                text,
                turn_id: reply.turn,
                start_ms: start,
                end_ms: now.max(start),
                interrupted,
            });
        }
        self.persist(SinkItem::Turn(reply.latency));
        self.emit(CallEventKind::TurnLatency(reply.latency));
        match reply.action {
            Some(action) if !interrupted => self.act(action),
            _ => Step::Continue,
        }
    }

    fn act(&mut self, action: AgentAction) -> Step {
        match action {
            AgentAction::Hangup => Step::End(EndReason::AgentHangup),
            AgentAction::Transfer(number) => self.transfer(number),
            AgentAction::End => Step::Continue,
        }
    }

    /// Hands the caller to `number` at the carrier (see [`transfer_call`]).
    fn transfer(&mut self, number: switchboard_domain::E164) -> Step {
        transfer_call(
            self.call_id,
            self.providers.telephony.clone(),
            self.provider_call_id.clone(),
            number,
        )
    }

    // ------------------------------------------------------------------ playback

    /// The playback clock: send due frames and marks.
    pub(crate) fn on_tick(&mut self) -> Step {
        let now = self.now_ms();
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
                if heard.complete {
                    reply.played_all = true;
                    return self.settle_if_done();
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

    /// Closes the session, stops every task, settles what was said, closes
    /// the socket and waits (bounded) until the transcript, latencies and
    /// recording are stored. Returns the event sink for the final
    /// `call_ended`, which the actor publishes once the call row is final.
    pub(crate) async fn finish(mut self, reason: EndReason, recorder: &dyn CallRecorder) -> Arc<dyn EventSink> {
        metrics::media().calls_ended.fetch_add(1, Ordering::Relaxed);
        self.ticker.abort();
        for tool in self.tools.drain(..) {
            tool.abort();
        }
        if let Some(reply) = self.reply.take() {
            // What had played by now is what the caller heard.
            let heard = if reply.played_all {
                None
            } else {
                let heard_ms = self
                    .player
                    .clear(self.now_ms())
                    .filter(|i| *i.utterance == *reply.utterance)
                    .map_or(0, |i| i.heard_ms);
                let total = switchboard_providers::realtime::ulaw_ms(reply.audio_bytes);
                Some(heard_text(&reply.text, heard_ms, total).to_owned())
            };
            let interrupted = heard.is_some();
            let _ = self.finish_reply(reply, heard, interrupted);
        }
        if let Some(session) = self.session.take() {
            if self.connected {
                self.command(Cmd::Close);
                let mut session = session;
                if tokio::time::timeout(CLOSE_TIMEOUT, &mut session).await.is_err() {
                    tracing::warn!("the realtime session did not close in time");
                    session.abort();
                }
            } else {
                session.abort();
            }
        }
        if self.outbound.try_send(MediaOut::Close(reason)).is_err() {
            tracing::debug!("socket gone before the close");
        }
        if self.dropped_out > 0 || self.dropped_in > 0 {
            tracing::warn!(
                dropped_out = self.dropped_out,
                dropped_to_model = self.dropped_in,
                "frames were dropped during the call"
            );
        }
        self.sink = None;
        crate::writer::settle(self.writer.take(), self.recording.take(), recorder, self.call_id).await;
        Arc::clone(&self.events)
    }
}

impl Drop for RealtimeLoop {
    fn drop(&mut self) {
        // A failed actor skips `finish`: nothing may outlive the call.
        self.ticker.abort();
        if let Some(session) = &self.session {
            session.abort();
        }
        for tool in &self.tools {
            tool.abort();
        }
    }
}

/// Runs one tool call; every failure becomes an error output for the model.
async fn call_tool(host: Option<Arc<dyn ToolHost>>, name: String, arguments: String) -> ToolResult {
    let Some(host) = host else {
        return ToolResult::error(
            "unknown_tool",
            format!("this agent has no tools; {name} does not exist"),
        );
    };
    if !host.specs().iter().any(|s| s.name == name) {
        return ToolResult::error("unknown_tool", format!("no tool named {name}"));
    }
    let call = std::panic::AssertUnwindSafe(host.call(name.clone(), arguments)).catch_unwind();
    match tokio::time::timeout(TOOL_TIMEOUT, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            tracing::error!(tool = %name, panic = %panic_message(&panic), "tool panicked");
            ToolResult::error("tool_failed", "the tool failed")
        }
        Err(_) => ToolResult::error("tool_timeout", format!("{name} did not answer in time")),
    }
}

/// Starts the task that owns the Realtime WebSocket.
fn spawn_session(
    call_id: CallId,
    config: RealtimeConfig,
    reconnect: RealtimeConfig,
    cmds: mpsc::UnboundedReceiver<Cmd>,
    audio: mpsc::Receiver<Frame>,
    myself: ActorRef<CallMsg>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let report = |item: RtItem| {
            myself
                .send_message(CallMsg::Internal(Internal(Event::Realtime(item))))
                .is_ok()
        };
        let work = std::panic::AssertUnwindSafe(run_session(config, reconnect, cmds, audio, &report)).catch_unwind();
        match work.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = report(RtItem::Failed(error));
            }
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(%call_id, panic = %message, "realtime session task panicked");
                let _ = report(RtItem::Failed(format!("realtime session panicked: {message}")));
            }
        }
    })
}

/// Why one session ended.
enum SessionEnd {
    /// The call closed it (or went away).
    Closed,
    Lost(String),
}

/// Connects, drives the session, and reconnects up to [`MAX_RECONNECTS`]
/// times. `Ok` when the call closed it; `Err` when it could not go on.
async fn run_session(
    config: RealtimeConfig,
    reconnect: RealtimeConfig,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut audio: mpsc::Receiver<Frame>,
    report: &(dyn Fn(RtItem) -> bool + Sync),
) -> Result<(), String> {
    let mut backoff = RECONNECT_BACKOFF;
    let mut attempt = 0;
    let mut resumed = false;
    loop {
        // Until a session has been up, there is nothing to resume: greet.
        let cfg = if resumed { &reconnect } else { &config };
        let error = match RealtimeSession::connect(cfg.clone()).await {
            Ok((sender, receiver)) => {
                if !report(RtItem::Connected { resumed }) {
                    return Ok(());
                }
                resumed = true;
                match drive(sender, receiver, &mut cmds, &mut audio, report).await {
                    SessionEnd::Closed => return Ok(()),
                    SessionEnd::Lost(error) => error,
                }
            }
            Err(e) => format!("connect: {e}"),
        };
        if attempt >= MAX_RECONNECTS {
            return Err(format!("{error} (after {attempt} reconnects)"));
        }
        if !report(RtItem::Lost(error)) {
            return Ok(());
        }
        // Commands for the old session's items mean nothing to a new one.
        while let Ok(cmd) = cmds.try_recv() {
            if matches!(cmd, Cmd::Close) {
                return Ok(());
            }
        }
        attempt += 1;
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

/// Moves events in and commands and caller audio out until the session ends.
async fn drive(
    mut sender: switchboard_providers::RealtimeSender,
    mut receiver: switchboard_providers::RealtimeReceiver,
    cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    audio: &mut mpsc::Receiver<Frame>,
    report: &(dyn Fn(RtItem) -> bool + Sync),
) -> SessionEnd {
    loop {
        tokio::select! {
            biased;
            cmd = cmds.recv() => {
                let sent = match cmd {
                    None | Some(Cmd::Close) => {
                        // Commands win the biased select, so caller frames the
                        // call queued before it closed may still be waiting:
                        // the model gets them before the close.
                        flush_audio(&mut sender, audio).await;
                        if let Err(e) = sender.close().await {
                            tracing::debug!(error = %e, "realtime session did not close cleanly");
                        }
                        return SessionEnd::Closed;
                    }
                    Some(Cmd::CreateResponse) => sender.create_response().await,
                    Some(Cmd::CancelResponse) => sender.cancel_response().await,
                    Some(Cmd::Truncate { item_id, audio_end_ms }) => sender.truncate(&item_id, 0, audio_end_ms).await,
                    Some(Cmd::FunctionOutput { call_id, output }) => sender.function_output(&call_id, &output).await,
                };
                if let Err(e) = sent {
                    return SessionEnd::Lost(format!("send: {e}"));
                }
            }
            event = receiver.next() => match event {
                Ok(Some(event)) => {
                    if !report(RtItem::Event(event)) {
                        return SessionEnd::Closed;
                    }
                }
                Ok(None) => return SessionEnd::Lost("the server closed the session".to_owned()),
                // The session stays usable after a malformed event; if it
                // ended, the next call says so.
                Err(e) if matches!(e.kind, ProviderErrorKind::Malformed(_)) => {
                    tracing::warn!(error = %e, "malformed realtime event skipped");
                }
                Err(e) => return SessionEnd::Lost(e.to_string()),
            },
            frame = audio.recv() => {
                let Some(frame) = frame else { return SessionEnd::Closed };
                let n = usize::from(frame.len).min(FRAME_BYTES);
                if let Err(e) = sender.append_audio(&frame.ulaw[..n]).await {
                    return SessionEnd::Lost(format!("send: {e}"));
                }
            }
        }
    }
}

/// Sends the caller frames already queued, without waiting for more: the
/// call is closing and queues nothing after its `Close`. At most one queue's
/// worth; a failed send stops it (the session is closing anyway).
async fn flush_audio(sender: &mut switchboard_providers::RealtimeSender, audio: &mut mpsc::Receiver<Frame>) {
    for _ in 0..AUDIO_QUEUE {
        let Ok(frame) = audio.try_recv() else { return };
        let n = usize::from(frame.len).min(FRAME_BYTES);
        if let Err(e) = sender.append_audio(&frame.ulaw[..n]).await {
            tracing::debug!(error = %e, "queued caller audio not sent before the close");
            return;
        }
    }
}

fn with_note(instructions: &str, note: &str) -> String {
    if instructions.trim().is_empty() {
        note.to_owned()
    } else {
        format!("{instructions}\n\n{note}")
    }
}

/// The part of `text` heard after `heard_ms` of `total_ms` of its audio:
/// proportional to the audio, cut to whole words.
fn heard_text(text: &str, heard_ms: u64, total_ms: u64) -> &str {
    let text = text.trim();
    if total_ms == 0 || heard_ms == 0 {
        return "";
    }
    if heard_ms >= total_ms {
        return text;
    }
    let end = usize::try_from(text.len() as u128 * u128::from(heard_ms) / u128::from(total_ms)).unwrap_or(0);
    text[..word_floor(text, end)].trim_end()
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
    fn heard_text_is_proportional_and_cut_at_whole_words() {
        let text = "Sure, I can book that for tomorrow.";
        assert_eq!(heard_text(text, 0, 1000), "");
        assert_eq!(heard_text(text, 1000, 1000), text);
        // 8 of 35 bytes: "Sure, I " -> "Sure, I".
        assert_eq!(heard_text(text, 8 * 1000 / 35 + 1, 1000), "Sure, I");
        assert_eq!(heard_text(text, 500, 1000), "Sure, I can book");
        assert_eq!(heard_text("héllo wörld", 900, 1000), "héllo");
    }
}
