//! The crate's error type. Every fallible public function returns [`ActorsError`];
//! callers can match on the variant to choose an API status code.

use switchboard_domain::CallStatus;

/// Why an operation on the supervision tree or on a live actor failed.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    /// Shutdown has begun (or finished): no new actors are accepted.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// An actor with this ID is already live.
    #[error("{kind} {id} is already live")]
    Duplicate { kind: &'static str, id: String },
    /// The actor's mailbox holds its configured bound of unprocessed messages.
    /// The message was not sent; the caller may retry later or shed the work.
    #[error("mailbox full ({bound} messages in flight)")]
    Full { bound: usize },
    /// The actor stopped before it could take or answer the message.
    #[error("the actor is no longer live")]
    Gone,
    /// A status update tried to end the call; ending goes through `hangup`/`end`.
    #[error("status {0} is terminal; end the call instead")]
    TerminalStatus(CallStatus),
    /// `end` was given a status that does not end a call.
    #[error("status {0} does not end a call")]
    NotTerminal(CallStatus),
    /// Persisting through the [`CallRecorder`](crate::CallRecorder) failed.
    #[error(transparent)]
    Recorder(#[from] RecorderError),
    /// ractor refused to start an actor.
    #[error("could not start {kind}: {reason}")]
    Spawn { kind: &'static str, reason: String },
}

/// A [`CallRecorder`](crate::CallRecorder) failure, carrying the storage layer's error.
#[derive(Debug, thiserror::Error)]
#[error("recording the call failed: {source}")]
pub struct RecorderError {
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl RecorderError {
    pub fn new(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self { source: source.into() }
    }
}
