//! The per-call writer task shared by the call's media loops: transcript
//! lines, turn latencies and live events are persisted and published off the
//! actor, one at a time and in order.

use std::sync::Arc;
use std::time::Duration;

use switchboard_domain::{CallEvent, CallEventKind, CallId, Speaker, TenantId, TurnLatency};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::media::EventSink;
use crate::recorder::CallRecorder;

/// How long the writer may take to persist what is queued when the call ends.
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the writer task persists and publishes, in order.
pub(crate) enum SinkItem {
    Event(CallEventKind),
    Transcript {
        speaker: Speaker,
        text: String,
        start_ms: u64,
        end_ms: u64,
    },
    Turn(TurnLatency),
}

/// The per-call writer: persists transcript lines and turn figures and
/// publishes live events, one at a time and in order, off the actor.
pub(crate) fn spawn_writer(
    call_id: CallId,
    tenant_id: TenantId,
    recorder: Arc<dyn CallRecorder>,
    events: Arc<dyn EventSink>,
) -> (mpsc::UnboundedSender<SinkItem>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<SinkItem>();
    let task = tokio::spawn(async move {
        while let Some(item) = rx.recv().await {
            match item {
                SinkItem::Event(kind) => {
                    let event = CallEvent::new(call_id, tenant_id, kind);
                    if let Err(err) = events.publish(&event).await {
                        tracing::warn!(%call_id, %tenant_id, error = %err, event = event.type_name(), "live event not published");
                    }
                }
                SinkItem::Transcript {
                    speaker,
                    text,
                    start_ms,
                    end_ms,
                } => {
                    if let Err(err) = recorder
                        .append_transcript(call_id, speaker, &text, start_ms, end_ms)
                        .await
                    {
                        tracing::error!(%call_id, %tenant_id, error = %err, "transcript line not stored");
                    }
                }
                SinkItem::Turn(turn) => {
                    if let Err(err) = recorder.record_turn(call_id, &turn).await {
                        tracing::error!(%call_id, %tenant_id, error = %err, "turn latency not stored");
                    }
                }
            }
        }
    });
    (tx, task)
}

/// The end of a call's media loop: waits (bounded) for the writer to store
/// what is queued, then closes the recording and stores its location.
pub(crate) async fn settle(
    writer: Option<JoinHandle<()>>,
    recording: Option<crate::recording::Recording>,
    recorder: &dyn CallRecorder,
    call_id: CallId,
) {
    if let Some(writer) = writer
        && tokio::time::timeout(DRAIN_TIMEOUT, writer).await.is_err()
    {
        tracing::error!("the call's transcript writer did not finish in time");
    }
    if let Some(recording) = recording {
        let dropped = recording.dropped();
        match recording.finish().await {
            Ok(path) => {
                if dropped > 0 {
                    tracing::warn!(dropped, "recording dropped frames");
                }
                if let Err(err) = recorder.set_recording(call_id, path.display().to_string()).await {
                    tracing::error!(error = %err, "could not store the recording's location");
                }
            }
            Err(err) => tracing::error!(error = %err, "recording failed"),
        }
    }
}
