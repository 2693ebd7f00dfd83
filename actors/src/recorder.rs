//! Persistence seam for call lifecycles.
//!
//! The actors never talk to the database directly: a [`CallRecorder`] writes
//! status changes and the final state. Production uses the store; tests inject
//! fakes (including ones that fail or panic to exercise supervision). Both
//! operations must be idempotent and monotonic, as the store's are: an end may
//! be recorded twice (actor and supervisor) and the first end wins.
//! [`switchboard_store::Store`] implements it with `calls().set_status` and
//! `calls().finish`.

use crate::RecorderError;
use futures::future::BoxFuture;
use switchboard_domain::{CallId, CallStatus, EndReason, Speaker, TurnLatency};

/// Writes a call's lifecycle to durable storage.
pub trait CallRecorder: Send + Sync + 'static {
    /// Moves a live call forward to `status` (never backwards).
    fn set_status(&self, call_id: CallId, status: CallStatus) -> BoxFuture<'_, Result<(), RecorderError>>;

    /// Records the call's end. Idempotent: the first end wins.
    fn finish(
        &self,
        call_id: CallId,
        status: CallStatus,
        reason: EndReason,
    ) -> BoxFuture<'_, Result<(), RecorderError>>;

    /// Appends one settled line to the call's transcript (in call order).
    /// Recorders that keep no transcript accept and drop it.
    fn append_transcript<'a>(
        &'a self,
        call_id: CallId,
        speaker: Speaker,
        text: &'a str,
        start_ms: u64,
        end_ms: u64,
    ) -> BoxFuture<'a, Result<(), RecorderError>> {
        let _ = (call_id, speaker, text, start_ms, end_ms);
        Box::pin(async { Ok(()) })
    }

    /// Stores (or replaces) the latency figures of one turn.
    fn record_turn<'a>(&'a self, call_id: CallId, turn: &'a TurnLatency) -> BoxFuture<'a, Result<(), RecorderError>> {
        let _ = (call_id, turn);
        Box::pin(async { Ok(()) })
    }

    /// Notes where the call's recording was written.
    fn set_recording(&self, call_id: CallId, location: String) -> BoxFuture<'_, Result<(), RecorderError>> {
        let _ = (call_id, location);
        Box::pin(async { Ok(()) })
    }
}

impl CallRecorder for switchboard_store::Store {
    fn set_status(&self, call_id: CallId, status: CallStatus) -> BoxFuture<'_, Result<(), RecorderError>> {
        Box::pin(async move {
            self.calls()
                .set_status(call_id, status)
                .await
                .map(drop)
                .map_err(RecorderError::new)
        })
    }

    fn finish(
        &self,
        call_id: CallId,
        status: CallStatus,
        reason: EndReason,
    ) -> BoxFuture<'_, Result<(), RecorderError>> {
        Box::pin(async move {
            self.calls()
                .finish(call_id, status, reason)
                .await
                .map(drop)
                .map_err(RecorderError::new)
        })
    }

    fn append_transcript<'a>(
        &'a self,
        call_id: CallId,
        speaker: Speaker,
        text: &'a str,
        start_ms: u64,
        end_ms: u64,
    ) -> BoxFuture<'a, Result<(), RecorderError>> {
        Box::pin(async move {
            let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
            self.transcripts()
                .append(call_id, speaker, text, ms(start_ms), ms(end_ms))
                .await
                .map(drop)
                .map_err(RecorderError::new)
        })
    }

    fn record_turn<'a>(&'a self, call_id: CallId, turn: &'a TurnLatency) -> BoxFuture<'a, Result<(), RecorderError>> {
        Box::pin(async move { self.turns().record(call_id, turn).await.map_err(RecorderError::new) })
    }

    fn set_recording(&self, call_id: CallId, location: String) -> BoxFuture<'_, Result<(), RecorderError>> {
        Box::pin(async move {
            self.calls()
                .set_recording(call_id, location)
                .await
                .map(drop)
                .map_err(RecorderError::new)
        })
    }
}
