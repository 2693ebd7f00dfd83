//! The seam between a call's media socket and its [`CallActor`](crate::CallActor).
//!
//! The socket task (in the API) parses Twilio's JSON at the edge and only
//! shuttles typed values: caller audio in as [`AudioIn`] (fixed-size, so the
//! hop carries no heap buffer of its own), and playback out as [`MediaOut`]
//! through a bounded channel the actor never waits on. All call state (VAD,
//! playback clock, marks, transcript, agent turns) lives in the actor.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use switchboard_domain::{Agent, CallEvent, EndReason, ProviderCallId, StreamSid};
use switchboard_providers::CallProviders;
use tokio::sync::mpsc;

/// Bytes of μ-law in one 20 ms frame at 8 kHz.
pub const FRAME_BYTES: usize = 160;

/// Up to 20 ms of caller audio (μ-law), as decoded from one Twilio `media`
/// message. Larger payloads are split by the socket task into several.
#[derive(Debug, Clone, Copy)]
pub struct AudioIn {
    pub ulaw: [u8; FRAME_BYTES],
    /// Valid bytes in `ulaw` (1..=160).
    pub len: u8,
    /// Twilio's `media.timestamp`: ms since the stream started.
    pub timestamp_ms: u64,
}

impl AudioIn {
    pub fn bytes(&self) -> &[u8] {
        &self.ulaw[..usize::from(self.len).min(FRAME_BYTES)]
    }
}

/// What the actor asks the socket task to write to Twilio.
#[derive(Debug, Clone)]
pub enum MediaOut {
    /// One 20 ms μ-law frame (`{"event":"media",...}`).
    Media([u8; FRAME_BYTES]),
    /// A named mark after a reply chunk; Twilio echoes it once played.
    Mark(Arc<str>),
    /// Drop all audio Twilio has buffered (barge-in).
    Clear,
    /// The call is over: close the socket with this reason.
    Close(EndReason),
}

/// Receives a call's live events in order. Implementations must not block
/// the call: the actor hands events to a per-call writer task that awaits
/// these futures one at a time.
pub trait EventSink: Send + Sync + 'static {
    fn publish<'a>(&'a self, event: &'a CallEvent) -> BoxFuture<'a, Result<(), String>>;
}

/// The durable queue of post-call work: a `{tenant_id, call_id}` job is
/// queued when a call with a live stream has ended and its row is final
/// (the engine's summary worker consumes it).
pub const SUMMARY_QUEUE: &str = "call_summary";

/// Live events go out on the call's topic. `call_ended` (published once the
/// call row is final) also queues the call's post-call job on
/// [`SUMMARY_QUEUE`], durably: a bus outage then is an error the caller logs.
impl EventSink for switchboard_bus::Bus {
    fn publish<'a>(&'a self, event: &'a CallEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if matches!(event.kind, switchboard_domain::CallEventKind::CallEnded { .. }) {
                let job = serde_json::json!({ "tenant_id": event.tenant_id, "call_id": event.call_id });
                self.enqueue(SUMMARY_QUEUE, job)
                    .await
                    .map_err(|e| format!("post-call job not queued: {e}"))?;
            }
            let topic = switchboard_bus::Topic::call(event.tenant_id, event.call_id);
            self.publish_json(&topic, event).await.map_err(|e| e.to_string())
        })
    }
}

/// Drops every event (tests and calls without a bus).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn publish<'a>(&'a self, _event: &'a CallEvent) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }
}

/// Everything a call actor with a live media stream needs beyond its
/// [`CallSpec`](crate::CallSpec).
pub struct LiveCall {
    pub stream_sid: StreamSid,
    pub provider_call_id: Option<ProviderCallId>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// The agent answering the call, as configured when the stream started.
    pub agent: Agent,
    pub providers: CallProviders,
    /// To the socket task. The actor uses `try_send` and counts what it
    /// could not queue; the socket task closes the socket when it reads
    /// [`MediaOut::Close`] or when the actor drops the sender.
    pub outbound: mpsc::Sender<MediaOut>,
    pub events: Arc<dyn EventSink>,
    /// Where to write the call's stereo WAV (caller left, agent right), if recorded.
    pub recording: Option<PathBuf>,
}

impl std::fmt::Debug for LiveCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveCall")
            .field("stream_sid", &self.stream_sid)
            .field("agent_id", &self.agent.id)
            .field("recording", &self.recording)
            .finish_non_exhaustive()
    }
}
