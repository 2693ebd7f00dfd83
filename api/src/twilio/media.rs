//! `GET /twilio/media`: the Twilio Media Streams socket.
//!
//! The socket task only shuttles. Before `start` it accepts `connected` and
//! waits at most [`START_TIMEOUT`] for `start`; `start` must carry the
//! `call_id` and `token` parameters our TwiML put in `<Stream>`. Only then is
//! the call actor spawned ([`Tree::spawn_live_call`]), exactly once. After
//! that, caller audio goes to the actor in ≤160-byte [`AudioIn`] chunks
//! (decoded into a buffer owned by the session: nothing is allocated per
//! frame on this side), marks and DTMF are forwarded, and the actor's
//! [`MediaOut`] values are written back as Twilio JSON through one reused
//! [`OutboundWriter`] buffer.
//!
//! Guarantees (each logged with the call and tenant IDs, none panics):
//! - bad, expired or mismatched token, unknown/ended/already-live call,
//!   `media` before `start` → close `1008` with a reason, no actor;
//! - no `start` within [`START_TIMEOUT`] → close `1008`;
//! - agent missing or disabled → close `1008`, call finished `rejected`;
//!   providers cannot be built → close `1011`, call finished `provider_error`;
//! - malformed JSON, unknown events, a second `start` → warning, ignored;
//!   undecodable base64 → warning, that frame dropped;
//! - a message over `limits.max_ws_frame_bytes` → close `1009`; a binary
//!   message → close `1003`;
//! - `stop` → the actor is told ([`CallHandle::stream_stopped`]) and the
//!   socket closes normally; the socket closing or failing →
//!   [`CallHandle::stream_closed`];
//! - the actor's [`MediaOut::Close`] → close `1000` (`1011` for a failure
//!   reason); the actor stopping without one → close `1000`, or `1011` if it
//!   crashed. An actor that merely drops its sender stops being polled and
//!   the socket keeps carrying caller audio.
//!
//! [`Tree::spawn_live_call`]: switchboard_actors::Tree::spawn_live_call

use super::Telephony;
use crate::error::ApiError;
use crate::state::{AppState, CallServices};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::{IntoResponse, Response};
use futures::SinkExt as _;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchboard_actors::call::final_status;
use switchboard_actors::{ActorsError, AudioIn, CallHandle, CallSpec, FRAME_BYTES, LiveCall, MediaOut};
use switchboard_domain::{Call, CallId, CallStatus, EndReason, ProviderCallId, StreamSid, TenantId};
use switchboard_media::twilio::{InboundEvent, Media, OutboundWriter, Start, WireError, parse_inbound};
use switchboard_store::{Scope, StoreError};
use tokio::sync::mpsc;
use tracing::Instrument;

/// Read buffer of a media socket.
const WS_READ_BUFFER: usize = 8 * 1024;
/// Bytes a stalled socket may queue before writes fail (about 10 s of audio).
const WS_MAX_WRITE_BUFFER: usize = 1024 * 1024;
/// Messages fed before an explicit flush are held up to this many bytes, so
/// what the actor queued together (a frame and its mark) leaves in one write.
const WS_WRITE_BATCH_BYTES: usize = 2 * 1024;
/// Most messages taken from the actor's queue for one write.
const WRITE_BATCH: usize = 8;

/// How long Twilio has to send `start` after the socket opens.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Capacity of the actor → socket channel.
pub const OUTBOUND_CAPACITY: usize = 128;
/// Largest `media` payload decoded, in μ-law bytes (one second of audio;
/// Twilio sends 20 ms). Larger payloads are dropped with a warning.
pub const MAX_MEDIA_BYTES: usize = 8_000;
/// How long a close we send waits for the peer's Close in reply.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(1);
/// How long the socket is kept after a close when its read side is gone.
const CLOSE_LINGER: Duration = Duration::from_millis(200);
/// At most one "frames dropped" debug line per this interval.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// `GET /twilio/media`: upgrade to the Media Streams socket.
pub(crate) async fn media(t: Telephony, ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            tracing::warn!(error = %rejection, "twilio media request without a WebSocket upgrade");
            return ApiError::BadRequest("expected a WebSocket upgrade".into()).into_response();
        }
    };
    let max = t.state.inner.max_ws_frame_bytes;
    let span = tracing::info_span!(
        "twilio_media",
        call_id = tracing::field::Empty,
        tenant_id = tracing::field::Empty,
        stream_sid = tracing::field::Empty,
    );
    // Twilio's messages are well under 1 KiB: tungstenite's 128 KiB default
    // read buffer would dominate a call's memory. Writes go out per message.
    ws.max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BATCH_BYTES)
        .max_write_buffer_size(WS_MAX_WRITE_BUFFER)
        .on_failed_upgrade(|err| tracing::warn!(error = %err, "twilio media upgrade failed"))
        .on_upgrade(move |socket| {
            let session = Session {
                socket,
                state: t.state,
                calls: t.calls,
                max_frame: max,
            };
            session.run().instrument(span)
        })
}

/// A close we send: code and a short reason (≤ 123 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Close {
    code: u16,
    reason: &'static str,
}

const fn close(code: u16, reason: &'static str) -> Close {
    Close { code, reason }
}

/// The live part of a session, once the actor runs.
struct Attached {
    handle: CallHandle,
    outbound: mpsc::Receiver<MediaOut>,
    stream_sid: String,
    call_id: CallId,
    tenant_id: TenantId,
}

struct Session {
    socket: WebSocket,
    state: AppState,
    calls: Arc<CallServices>,
    max_frame: usize,
}

impl Session {
    async fn run(mut self) {
        let attached = match self.await_start().await {
            Ok(Some(attached)) => attached,
            Ok(None) => return,
            Err(c) => {
                self.close(c).await;
                return;
            }
        };
        self.shuttle(attached).await;
    }

    async fn close(&mut self, c: Close) {
        let frame = CloseFrame {
            code: c.code,
            reason: c.reason.into(),
        };
        if let Err(err) = self.socket.send(Message::Close(Some(frame))).await {
            tracing::debug!(error = %err, code = c.code, "could not send the close frame");
            return;
        }
        // RFC 6455 §7.1.1: wait for the peer's Close, reading (and dropping)
        // what it still had in flight. Closing a TCP socket with unread bytes
        // makes the kernel send RST and discard whatever it has not sent yet:
        // our close frame could then never reach the peer.
        let peer_closed = tokio::time::timeout(CLOSE_HANDSHAKE, async {
            loop {
                match self.socket.recv().await {
                    Some(Ok(Message::Close(_))) => return true,
                    Some(Ok(_)) => {}
                    None | Some(Err(_)) => return false,
                }
            }
        })
        .await;
        if let Ok(false) = peer_closed {
            // The read side already failed (a frame over the limit ends
            // tungstenite's stream), so the rest cannot be drained: give the
            // close frame a moment on the wire before the socket goes.
            tokio::time::sleep(CLOSE_LINGER).await;
        }
    }

    /// Phase one: until a valid `start`. `Ok(None)`: the peer went away (or
    /// sent `stop`) first; `Err`: close with that code.
    async fn await_start(&mut self) -> Result<Option<Attached>, Close> {
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.socket.recv()).await {
                Err(_) => {
                    tracing::warn!("twilio media: no start within {} s", START_TIMEOUT.as_secs());
                    return Err(close(close_code::POLICY, "no start message in time"));
                }
                Ok(None) | Ok(Some(Ok(Message::Close(_)))) => {
                    tracing::debug!("twilio media socket closed before start");
                    return Ok(None);
                }
                Ok(Some(Err(err))) => return Err(receive_error(&err)),
                Ok(Some(Ok(msg))) => msg,
            };
            let text = match msg {
                Message::Text(text) => text,
                Message::Binary(_) => {
                    tracing::warn!("twilio media: binary frame before start");
                    return Err(close(close_code::UNSUPPORTED, "binary frames are not supported"));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
            };
            match parse_inbound(text.as_str(), self.max_frame) {
                Ok(InboundEvent::Connected { protocol, version }) => {
                    tracing::debug!(protocol, version, "twilio media connected");
                }
                Ok(InboundEvent::Start(start)) => return self.attach(&start).await.map(Some),
                Ok(InboundEvent::Media(_)) => {
                    tracing::warn!("twilio media: media before start");
                    return Err(close(close_code::POLICY, "media before start"));
                }
                Ok(InboundEvent::Dtmf { .. } | InboundEvent::Mark { .. }) => {
                    tracing::warn!("twilio media: dtmf or mark before start, ignored");
                }
                Ok(InboundEvent::Stop { .. }) => {
                    tracing::info!("twilio media: stop before start");
                    return Err(close(close_code::NORMAL, "stream stopped"));
                }
                Err(err) => bad_frame(&err, None)?,
            }
        }
    }

    /// Validates `start` and spawns the call actor.
    async fn attach(&mut self, start: &Start<'_>) -> Result<Attached, Close> {
        let span = tracing::Span::current();
        span.record("stream_sid", start.stream_sid);
        let call_id = start
            .custom_parameters
            .get("call_id")
            .and_then(|v| v.parse::<CallId>().ok());
        let Some(call_id) = call_id else {
            tracing::warn!("twilio media start without a valid call_id parameter");
            return Err(close(close_code::POLICY, "missing or invalid call_id"));
        };
        span.record("call_id", tracing::field::display(call_id));
        let token = start.custom_parameters.get("token").copied().unwrap_or_default();
        if let Err(err) = self
            .state
            .inner
            .stream_tokens
            .verify(call_id, token, chrono::Utc::now().timestamp())
        {
            tracing::warn!(%call_id, error = %err, "twilio media start refused: bad stream token");
            return Err(close(close_code::POLICY, "invalid or expired stream token"));
        }
        let store = self.state.store();
        let call = match store.calls().get(Scope::All, call_id).await {
            Ok(call) => call,
            Err(StoreError::NotFound { .. }) => {
                tracing::warn!(%call_id, "twilio media start for an unknown call");
                return Err(close(close_code::POLICY, "unknown call"));
            }
            Err(err) => {
                tracing::error!(%call_id, error = %err, "loading the call for its media stream failed");
                return Err(close(close_code::ERROR, "internal error"));
            }
        };
        let tenant_id = call.tenant_id;
        span.record("tenant_id", tracing::field::display(tenant_id));
        if call.status.is_terminal() || call.ended_at.is_some() {
            tracing::warn!(%call_id, %tenant_id, status = %call.status, "twilio media start for a call that ended");
            return Err(close(close_code::POLICY, "call already ended"));
        }
        if self.calls.tree.registry().calls().contains(&call_id) {
            tracing::warn!(%call_id, %tenant_id, "twilio media start for a call that is already live");
            return Err(close(close_code::POLICY, "call already live"));
        }
        if let Some(expected) = &call.provider_call_id
            && !start.call_sid.is_empty()
            && expected.as_str() != start.call_sid
        {
            tracing::warn!(%call_id, %tenant_id, call_sid = start.call_sid, "twilio media start from another CallSid");
            return Err(close(close_code::POLICY, "stream does not belong to this call"));
        }

        let agent = match call.agent_id {
            Some(id) => match store.agents().get(Scope::Tenant(tenant_id), id).await {
                Ok(agent) if agent.enabled => Some(agent),
                Ok(_) | Err(StoreError::NotFound { .. }) => None,
                Err(err) => {
                    tracing::error!(%call_id, %tenant_id, error = %err, "loading the call's agent failed");
                    return Err(close(close_code::ERROR, "internal error"));
                }
            },
            None => None,
        };
        let Some(agent) = agent else {
            tracing::warn!(%call_id, %tenant_id, "twilio media start refused: no enabled agent for the call");
            self.finish(&call, EndReason::Rejected).await;
            return Err(close(close_code::POLICY, "no enabled agent for this call"));
        };
        let mut providers = match self.calls.providers.for_call(tenant_id, &agent).await {
            Ok(p) => p,
            Err(err) => {
                tracing::error!(%call_id, %tenant_id, agent_id = %agent.id, error = %err, "building the call's providers failed");
                self.finish(&call, EndReason::ProviderError).await;
                return Err(close(close_code::ERROR, "provider setup failed"));
            }
        };
        providers.context = Self::turn_context(
            self.state.store().clone(),
            self.calls.bus.clone(),
            tenant_id,
            call_id,
            &call.from,
            &agent,
        )
        .await;

        let recording = match &self.calls.recordings_dir {
            Some(dir) => {
                let tenant_dir = dir.join(tenant_id.to_string());
                match tokio::fs::create_dir_all(&tenant_dir).await {
                    Ok(()) => Some(tenant_dir.join(format!("{call_id}.wav"))),
                    Err(err) => {
                        tracing::error!(%call_id, %tenant_id, error = %err, "cannot create the recordings directory; not recording");
                        None
                    }
                }
            }
            None => None,
        };
        let provider_call_id = call
            .provider_call_id
            .clone()
            .or_else(|| (!start.call_sid.is_empty()).then(|| ProviderCallId::new(start.call_sid)));
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let live = LiveCall {
            stream_sid: StreamSid::new(start.stream_sid),
            provider_call_id,
            from: Some(call.from.clone()),
            to: Some(call.to.clone()),
            agent,
            providers,
            outbound: tx,
            events: Arc::new(self.calls.bus.clone()),
            recording,
        };
        let spec = CallSpec {
            call_id,
            tenant_id,
            agent_id: Some(live.agent.id),
            direction: call.direction,
            status: CallStatus::Streaming,
        };
        let handle = match self.calls.tree.spawn_live_call(spec, live).await {
            Ok(handle) => handle,
            Err(ActorsError::Duplicate { .. }) => {
                tracing::warn!(%call_id, %tenant_id, "twilio media start for a call that is already live");
                return Err(close(close_code::POLICY, "call already live"));
            }
            Err(ActorsError::ShuttingDown) => {
                tracing::warn!(%call_id, %tenant_id, "twilio media start refused: shutting down");
                return Err(close(close_code::AWAY, "server shutting down"));
            }
            Err(err) => {
                tracing::error!(%call_id, %tenant_id, error = %err, "spawning the call actor failed");
                return Err(close(close_code::ERROR, "could not start the call"));
            }
        };
        // The actor is live: from here on the row follows it.
        let now = switchboard_domain::now();
        if let Err(err) = store.calls().set_status(call_id, CallStatus::Streaming).await {
            tracing::error!(%call_id, %tenant_id, error = %err, "recording the streaming status failed");
        }
        if let Err(err) = store.calls().set_answered(call_id, now).await {
            tracing::error!(%call_id, %tenant_id, error = %err, "recording the answer time failed");
        }
        tracing::info!(%call_id, %tenant_id, stream_sid = start.stream_sid, "twilio media stream started");
        Ok(Attached {
            handle,
            outbound: rx,
            stream_sid: start.stream_sid.to_owned(),
            call_id,
            tenant_id,
        })
    }

    /// Ends a call that never got an actor.
    /// The agent's tools for this call and what is known about the caller.
    /// A bad tool configuration or an unreadable contact costs the call its
    /// tools or facts, never the call itself.
    async fn turn_context(
        store: switchboard_store::Store,
        bus: switchboard_bus::Bus,
        tenant_id: TenantId,
        call_id: CallId,
        from: &str,
        agent: &switchboard_domain::Agent,
    ) -> switchboard_providers::TurnContext {
        use switchboard_actors::tools::{CallTools, ToolContext, ToolHttpClient, ToolSettings};
        static TOOL_HTTP: std::sync::OnceLock<Option<ToolHttpClient>> = std::sync::OnceLock::new();
        let caller = switchboard_domain::E164::parse(from).ok();
        let mut context = switchboard_providers::TurnContext::default();
        if let Some(phone) = &caller {
            match store.contacts().find_by_phone(tenant_id, phone).await {
                Ok(Some(contact)) => {
                    context.facts.push(format!("Name: {}", contact.name));
                    if let Some(email) = &contact.email {
                        context.facts.push(format!("Email: {email}"));
                    }
                    if !contact.notes.trim().is_empty() {
                        context.facts.push(format!("Notes: {}", contact.notes.trim()));
                    }
                }
                Ok(None) => context.facts.push(format!("Phone: {phone} (not a known contact yet)")),
                Err(err) => tracing::warn!(%call_id, %tenant_id, error = %err, "caller's contact not read"),
            }
        }
        if agent.tools.is_empty() {
            return context;
        }
        let settings = match ToolSettings::from_agent_settings(&agent.settings) {
            Ok(settings) => settings,
            Err(err) => {
                tracing::error!(%call_id, %tenant_id, agent_id = %agent.id, error = %err, "agent tool settings invalid; the call has no tools");
                return context;
            }
        };
        let http = TOOL_HTTP.get_or_init(|| {
            ToolHttpClient::new()
                .map_err(|err| tracing::error!(error = %err, "tool HTTP client could not be built"))
                .ok()
        });
        let Some(http) = http.clone() else { return context };
        context.tools = Some(Arc::new(CallTools::new(ToolContext {
            store,
            bus,
            tenant_id,
            call_id: Some(call_id),
            conversation_id: None,
            contact_phone: caller,
            agent_tools: agent.tools.clone(),
            settings,
            http,
        })));
        context
    }

    async fn finish(&mut self, call: &Call, reason: EndReason) {
        let status = final_status(call.status, reason);
        if let Err(err) = self.state.store().calls().finish(call.id, status, reason).await {
            tracing::error!(call_id = %call.id, tenant_id = %call.tenant_id, error = %err, "finishing the call failed");
        }
    }

    /// Phase two: shuttle between the socket and the actor until either ends.
    async fn shuttle(&mut self, mut a: Attached) {
        let stopped_handle = a.handle.clone();
        let mut stopped = pin!(async move { stopped_handle.stopped().await });
        let mut outbound_open = true;
        let mut writer = OutboundWriter::with_capacity(512);
        let mut ulaw = [0u8; MAX_MEDIA_BYTES];
        let mut drops = DropCounter::default();
        let (call_id, tenant_id) = (a.call_id, a.tenant_id);

        let outcome: Close = loop {
            tokio::select! {
                msg = self.socket.recv() => {
                    let msg = match msg {
                        None | Some(Ok(Message::Close(_))) => {
                            tracing::info!(%call_id, %tenant_id, "twilio media socket closed");
                            tell(&a.handle, a.handle.stream_closed(), "stream_closed");
                            return;
                        }
                        Some(Err(err)) => {
                            let c = receive_error(&err);
                            tell(&a.handle, a.handle.stream_closed(), "stream_closed");
                            break c;
                        }
                        Some(Ok(msg)) => msg,
                    };
                    let text = match msg {
                        Message::Text(text) => text,
                        Message::Binary(_) => {
                            tracing::warn!(%call_id, %tenant_id, "twilio media: binary frame");
                            tell(&a.handle, a.handle.stream_closed(), "stream_closed");
                            break close(close_code::UNSUPPORTED, "binary frames are not supported");
                        }
                        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
                    };
                    match parse_inbound(text.as_str(), self.max_frame) {
                        Ok(InboundEvent::Media(m)) => forward_media(&a, &m, &mut ulaw, &mut drops),
                        Ok(InboundEvent::Mark { name, .. }) => tell(&a.handle, a.handle.mark(name.to_owned()), "mark"),
                        Ok(InboundEvent::Dtmf { digit, .. }) => tell(&a.handle, a.handle.dtmf(digit.to_owned()), "dtmf"),
                        Ok(InboundEvent::Stop { .. }) => {
                            tracing::info!(%call_id, %tenant_id, "twilio media stream stopped");
                            tell(&a.handle, a.handle.stream_stopped(), "stream_stopped");
                            break close(close_code::NORMAL, "stream stopped");
                        }
                        Ok(InboundEvent::Start(_)) => {
                            tracing::warn!(%call_id, %tenant_id, "twilio media: second start ignored");
                        }
                        Ok(InboundEvent::Connected { .. }) => {
                            tracing::debug!(%call_id, %tenant_id, "twilio media: connected after start, ignored");
                        }
                        Err(err) => {
                            if let Err(c) = bad_frame(&err, Some((call_id, tenant_id))) {
                                tell(&a.handle, a.handle.stream_closed(), "stream_closed");
                                break c;
                            }
                        }
                    }
                }
                out = a.outbound.recv(), if outbound_open => {
                    let Some(out) = out else {
                        // The actor let go of playback; its end (if that
                        // is what this is) arrives through `stopped`.
                        tracing::debug!(%call_id, %tenant_id, "call actor dropped its outbound sender");
                        outbound_open = false;
                        continue;
                    };
                    // What the actor queued by now goes out in one write (a
                    // frame and its mark share a TCP segment), then a flush.
                    let mut next = Some(out);
                    let mut closed_by_actor = None;
                    let mut fed = 0;
                    let mut written = Ok(());
                    while let Some(out) = next.take() {
                        let json = match out {
                            MediaOut::Media(frame) => writer.media(&a.stream_sid, &frame),
                            MediaOut::Mark(name) => writer.mark(&a.stream_sid, &name),
                            MediaOut::Clear => writer.clear(&a.stream_sid),
                            MediaOut::Close(reason) => {
                                closed_by_actor = Some(reason);
                                break;
                            }
                        };
                        written = self.socket.feed(Message::Text(json.into())).await;
                        if written.is_err() {
                            break;
                        }
                        fed += 1;
                        if fed < WRITE_BATCH {
                            next = a.outbound.try_recv().ok();
                        }
                    }
                    if written.is_ok() {
                        written = self.socket.flush().await;
                    }
                    if let Err(err) = written {
                        tracing::info!(%call_id, %tenant_id, error = %err, "twilio media socket write failed");
                        tell(&a.handle, a.handle.stream_closed(), "stream_closed");
                        return;
                    }
                    if let Some(reason) = closed_by_actor {
                        tracing::info!(%call_id, %tenant_id, %reason, "call actor closed the media stream");
                        break close_for(reason);
                    }
                }
                () = &mut stopped => {
                    // Playback queued before the end still goes out first.
                    while let Ok(out) = a.outbound.try_recv() {
                        let json = match out {
                            MediaOut::Media(frame) => writer.media(&a.stream_sid, &frame),
                            MediaOut::Mark(name) => writer.mark(&a.stream_sid, &name),
                            MediaOut::Clear => writer.clear(&a.stream_sid),
                            MediaOut::Close(_) => break,
                        };
                        if self.socket.send(Message::Text(json.into())).await.is_err() {
                            return;
                        }
                    }
                    break self.close_after_actor_stopped(call_id, tenant_id).await;
                }
            }
        };
        if drops.total > 0 {
            tracing::info!(%call_id, %tenant_id, dropped = drops.total, "caller audio frames dropped (call actor behind)");
        }
        self.close(outcome).await;
    }

    /// The actor stopped without `MediaOut::Close`: a normal end has been
    /// persisted by then (its `post_stop` runs first); a crash has not, or
    /// was recorded as `actor_failed`.
    async fn close_after_actor_stopped(&mut self, call_id: CallId, tenant_id: TenantId) -> Close {
        let reason = match self.state.store().calls().get(Scope::All, call_id).await {
            Ok(call) => call.end_reason,
            Err(err) => {
                tracing::error!(%call_id, %tenant_id, error = %err, "reading the ended call failed");
                None
            }
        };
        match reason {
            None | Some(EndReason::ActorFailed) => {
                tracing::error!(%call_id, %tenant_id, "call actor stopped unexpectedly; closing the media stream");
                close(close_code::ERROR, "call actor failed")
            }
            Some(reason) => {
                tracing::info!(%call_id, %tenant_id, %reason, "call ended; closing the media stream");
                close_for(reason)
            }
        }
    }
}

/// Close code for an end reason: failures are `1011`, the rest `1000`.
fn close_for(reason: EndReason) -> Close {
    match reason {
        EndReason::ActorFailed | EndReason::ProviderError => close(close_code::ERROR, "call failed"),
        _ => close(close_code::NORMAL, "call ended"),
    }
}

/// A socket read error: too large is `1009`, anything else ends the session.
fn receive_error(err: &axum::Error) -> Close {
    let too_large = std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<tokio_tungstenite::tungstenite::Error>())
        .is_some_and(|e| matches!(e, tokio_tungstenite::tungstenite::Error::Capacity(_)));
    if too_large {
        tracing::warn!(error = %err, "twilio media: message over the size limit");
        close(close_code::SIZE, "message too large")
    } else {
        tracing::info!(error = %err, "twilio media socket failed");
        close(close_code::PROTOCOL, "protocol error")
    }
}

/// Unusable text frame: too large closes (`Err`), the rest is logged and skipped.
fn bad_frame(err: &WireError, ids: Option<(CallId, TenantId)>) -> Result<(), Close> {
    let (call_id, tenant_id) = match ids {
        Some((c, t)) => (Some(c), Some(t)),
        None => (None, None),
    };
    match err {
        WireError::TooLarge { .. } => {
            tracing::warn!(?call_id, ?tenant_id, error = %err, "twilio media: message over the size limit");
            Err(close(close_code::SIZE, "message too large"))
        }
        WireError::UnknownEvent(event) => {
            tracing::warn!(?call_id, ?tenant_id, %event, "twilio media: unknown event ignored");
            Ok(())
        }
        _ => {
            tracing::warn!(?call_id, ?tenant_id, error = %err, "twilio media: malformed message ignored");
            Ok(())
        }
    }
}

/// Decodes a `media` payload into `ulaw` and hands it to the actor in
/// 160-byte chunks, each stamped 20 ms after the previous.
fn forward_media(a: &Attached, m: &Media<'_>, ulaw: &mut [u8; MAX_MEDIA_BYTES], drops: &mut DropCounter) {
    if m.track != "inbound" && m.track != "inbound_track" {
        return;
    }
    let len = match m.decode_payload(ulaw) {
        Ok(len) => len,
        Err(err) => {
            tracing::warn!(call_id = %a.call_id, tenant_id = %a.tenant_id, chunk = m.chunk, error = %err, "twilio media: frame dropped");
            return;
        }
    };
    for (i, chunk) in ulaw[..len].chunks(FRAME_BYTES).enumerate() {
        let mut frame = AudioIn {
            ulaw: [0; FRAME_BYTES],
            // `chunks(FRAME_BYTES)` yields at most 160 bytes, which fits a u8.
            len: u8::try_from(chunk.len()).unwrap_or(u8::MAX),
            timestamp_ms: m.timestamp_ms.saturating_add((i as u64).saturating_mul(20)),
        };
        frame.ulaw[..chunk.len()].copy_from_slice(chunk);
        match a.handle.audio(frame) {
            Ok(()) => {}
            Err(ActorsError::Full { bound }) => drops.dropped(a.call_id, a.tenant_id, bound),
            Err(err) => {
                tracing::debug!(call_id = %a.call_id, error = %err, "caller audio not delivered");
                return;
            }
        }
    }
}

/// Counts caller frames dropped on a full mailbox, logging at most once per
/// [`DROP_LOG_INTERVAL`].
#[derive(Default)]
struct DropCounter {
    total: u64,
    since_log: u64,
    last_log: Option<Instant>,
}

impl DropCounter {
    fn dropped(&mut self, call_id: CallId, tenant_id: TenantId, bound: usize) {
        self.total += 1;
        self.since_log += 1;
        let due = self.last_log.is_none_or(|t| t.elapsed() >= DROP_LOG_INTERVAL);
        if due {
            tracing::debug!(%call_id, %tenant_id, dropped = self.since_log, total = self.total, bound, "call mailbox full: caller audio dropped");
            self.since_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Hands a control message to the actor; a gone actor is only logged (its
/// end reaches the socket through `stopped`).
fn tell(handle: &CallHandle, result: Result<(), ActorsError>, what: &'static str) {
    if let Err(err) = result {
        tracing::debug!(call_id = %handle.call_id(), tenant_id = %handle.tenant_id(), error = %err, what, "call actor did not take the message");
    }
}

#[cfg(test)]
mod tests {
    //! The outbound half, driven without the call actor's speech loop: the
    //! test owns the `MediaOut` sender of a session attached to a plain call
    //! actor, and reads what Twilio would receive.

    use super::*;
    use crate::state::CallServices;
    use axum::Router;
    use axum::routing::get;
    use base64::Engine as _;
    use futures::StreamExt as _;
    use futures::future::BoxFuture;
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use switchboard_actors::{Tree, TreeConfig};
    use switchboard_config::{SecretString, Settings};
    use switchboard_domain::{Agent, CallDirection, NewCall, NewTenant};
    use switchboard_providers::{CallProviders, ProviderError, ProviderErrorKind, ProviderFactory};
    use switchboard_store::Store;
    use tokio_tungstenite::tungstenite::Message as WsMessage;

    struct NoProviders;

    impl ProviderFactory for NoProviders {
        fn for_call<'a>(&'a self, _: TenantId, _: &'a Agent) -> BoxFuture<'a, Result<CallProviders, ProviderError>> {
            Box::pin(async { Err(ProviderError::new("none", ProviderErrorKind::Config("unused".into()))) })
        }
    }

    struct Harness {
        tx: mpsc::Sender<MediaOut>,
        handle: CallHandle,
        store: Store,
        call_id: CallId,
        ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
        _dir: tempfile::TempDir,
    }

    /// A session attached to a live (plain) call actor, its socket open.
    async fn harness() -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
        let store = Store::connect(&url, 2, [7; 32]).await.expect("store");
        store.migrate().await.expect("migrate");
        let tenant = store
            .tenants()
            .create(NewTenant {
                name: "T".into(),
                notification_email: None,
                max_concurrent_calls: 5,
            })
            .await
            .expect("tenant");
        let call = store
            .calls()
            .create(NewCall {
                tenant_id: tenant.id,
                agent_id: None,
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: "+15551230000".into(),
                to: "+15559870000".into(),
                status: CallStatus::Streaming,
            })
            .await
            .expect("call");
        let tree = Tree::start(TreeConfig::default(), Arc::new(store.clone()))
            .await
            .expect("tree");
        let handle = tree
            .spawn_call(CallSpec {
                call_id: call.id,
                tenant_id: tenant.id,
                agent_id: None,
                direction: CallDirection::Inbound,
                status: CallStatus::Streaming,
            })
            .await
            .expect("spawn");
        let bus = switchboard_bus::Bus::in_process();
        let state = AppState::new(
            store.clone(),
            bus.clone(),
            tree.registry().clone(),
            &Settings::default(),
            &SecretString::new("unit-test-jwt-secret-at-least-32-bytes!!"),
        )
        .expect("state")
        .with_calls(CallServices {
            tree,
            bus,
            providers: Arc::new(NoProviders),
            recordings_dir: None,
        });
        let calls = state.calls.clone().expect("calls");
        let (tx, rx) = mpsc::channel(OUTBOUND_CAPACITY);
        let attached = Arc::new(Mutex::new(Some(Attached {
            handle: handle.clone(),
            outbound: rx,
            stream_sid: "MZ1".into(),
            call_id: call.id,
            tenant_id: tenant.id,
        })));
        let app = Router::new().route(
            "/ws",
            get(move |ws: WebSocketUpgrade| {
                let attached = attached.lock().expect("lock").take().expect("one socket");
                let (state, calls) = (state.clone(), calls.clone());
                async move {
                    ws.on_upgrade(move |socket| async move {
                        let mut session = Session {
                            socket,
                            state,
                            calls,
                            max_frame: 65_536,
                        };
                        session.shuttle(attached).await;
                    })
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
            .await
            .expect("connect");
        Harness {
            tx,
            handle,
            store,
            call_id: call.id,
            ws,
            _dir: dir,
        }
    }

    /// Reads text frames until the close frame.
    async fn until_close(h: &mut Harness) -> (Vec<serde_json::Value>, u16) {
        let mut texts = Vec::new();
        while let Some(msg) = h.ws.next().await {
            match msg.expect("socket") {
                WsMessage::Text(t) => texts.push(serde_json::from_str(t.as_str()).expect("json")),
                WsMessage::Close(frame) => return (texts, frame.map(|f| u16::from(f.code)).unwrap_or(0)),
                _ => {}
            }
        }
        panic!("no close frame");
    }

    #[tokio::test]
    async fn media_mark_and_clear_become_twilio_json_and_close_ends_the_socket() {
        let mut h = harness().await;
        let mut frame = [0xFFu8; FRAME_BYTES];
        frame[0] = 0x00;
        h.tx.send(MediaOut::Media(frame)).await.expect("send");
        h.tx.send(MediaOut::Mark("resp_1:1".into())).await.expect("send");
        h.tx.send(MediaOut::Clear).await.expect("send");
        h.tx.send(MediaOut::Close(EndReason::AgentHangup)).await.expect("send");
        let (texts, code) = until_close(&mut h).await;
        assert_eq!(code, 1000);
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert_eq!(texts[0]["event"], "media");
        assert_eq!(texts[0]["streamSid"], "MZ1");
        let payload = base64::engine::general_purpose::STANDARD
            .decode(texts[0]["media"]["payload"].as_str().expect("payload"))
            .expect("base64");
        assert_eq!(payload, frame.to_vec());
        assert_eq!(
            texts[1],
            serde_json::json!({"event":"mark","streamSid":"MZ1","mark":{"name":"resp_1:1"}})
        );
        assert_eq!(texts[2], serde_json::json!({"event":"clear","streamSid":"MZ1"}));
        h.handle.hangup(EndReason::AgentHangup).expect("hangup");
        h.handle.stopped().await;
    }

    #[tokio::test]
    async fn failure_close_reason_is_1011() {
        let mut h = harness().await;
        h.tx.send(MediaOut::Close(EndReason::ProviderError))
            .await
            .expect("send");
        assert_eq!(until_close(&mut h).await.1, 1011);
        h.handle.hangup(EndReason::ProviderError).expect("hangup");
        h.handle.stopped().await;
    }

    #[tokio::test]
    async fn actor_end_flushes_queued_playback_then_closes_1000() {
        let mut h = harness().await;
        h.tx.send(MediaOut::Media([0xFF; FRAME_BYTES])).await.expect("send");
        h.tx.send(MediaOut::Mark("last".into())).await.expect("send");
        h.handle.hangup(EndReason::AgentHangup).expect("hangup");
        let (texts, code) = until_close(&mut h).await;
        assert_eq!(code, 1000);
        let events: Vec<_> = texts
            .iter()
            .map(|t| t["event"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(events, ["media", "mark"]);
        let call = h.store.calls().get(Scope::All, h.call_id).await.expect("call");
        assert_eq!(call.end_reason, Some(EndReason::AgentHangup));
    }

    #[tokio::test]
    async fn dropped_sender_keeps_the_socket_serving_caller_input() {
        let mut h = harness().await;
        // Nobody can send playback any more; the actor itself is still live.
        let (dead, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut h.tx, dead));
        assert!(h.handle.info().await.is_ok(), "actor still live");
        // The socket still reads Twilio's frames: `stop` gets the normal answer.
        let stop = r#"{"event":"stop","streamSid":"MZ1","stop":{"callSid":"CA1"}}"#;
        futures::SinkExt::send(&mut h.ws, WsMessage::Text(stop.into()))
            .await
            .expect("send");
        let frame = loop {
            match h.ws.next().await.expect("frame").expect("socket") {
                WsMessage::Close(frame) => break frame.expect("close frame"),
                _ => continue,
            }
        };
        assert_eq!((u16::from(frame.code), frame.reason.as_str()), (1000, "stream stopped"));
        h.handle.stopped().await;
        let call = h.store.calls().get(Scope::All, h.call_id).await.expect("call");
        assert_eq!(call.end_reason, Some(EndReason::CallerHangup));
    }
}
