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
use switchboard_domain::{CallId, CallStatus, EndReason};

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
}
