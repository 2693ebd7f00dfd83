//! Switchboard's supervision tree: ractor actors for live calls, WhatsApp
//! conversations, AI agent sessions and background jobs, behind typed handles
//! and a typed registry.
//!
//! Guarantees: every live actor is reachable through the [`Registry`] until
//! it stops, and is removed from it however it stops; a failing child is
//! logged, cleaned up (a call is finished with `EndReason::ActorFailed`) and
//! never takes its siblings or supervisor down; mailboxes are bounded
//! ([`ActorsError::Full`]); shutdown drains calls, then ends the rest with
//! `EndReason::Shutdown`, persisted.
//!
//! ```text
//! RootActor
//! ├── CallsSupervisor ────────── CallActor (one per live call)
//! ├── ConversationsSupervisor ── ConversationActor (one per conversation)
//! ├── AgentSessionsSupervisor ── AgentSessionActor (one per AI agent session)
//! └── JobsSupervisor ─────────── JobActor (one per background job)
//! ```
//!
//! # Layout
//! - [`tree`] — the [`Tree`] façade: start, spawn, stats, graceful shutdown.
//! - [`root`] — [`RootActor`], which starts the four supervisors.
//! - [`supervisor`] — the generic [`Supervisor`] and its call / conversation /
//!   agent-session kinds.
//! - [`jobs`] — [`JobsSupervisor`] and [`JobActor`].
//! - [`call`], [`conversation`], [`agent_session`] — the child actors, their
//!   message protocols and typed handles.
//! - [`registry`] — the typed [`Registry`] of live actors.
//! - [`recorder`] — the [`CallRecorder`] persistence seam.
//! - `mailbox` — bounded-mailbox emulation.
//! - [`stats`] — supervisor counters and recent failures.
//! - [`error`] — [`ActorsError`].

pub mod agent_session;
pub mod call;
pub mod clients;
pub mod conversation;
pub mod error;
pub mod jobs;
mod mailbox;
pub mod media;
pub mod metrics;
mod realtime_loop;
pub mod recorder;
mod recording;
pub mod registry;
pub mod root;
mod speech;
pub mod stats;
pub mod supervisor;
pub mod tools;
pub mod tree;
mod writer;

pub use agent_session::{
    AgentSessionActor, AgentSessionHandle, AgentSessionInfo, AgentSessionMsg, AgentSessionSpec, AgentSubject,
    MAX_CLIENT_RESTARTS, SessionProviders, SessionRequest,
};
pub use call::{CallActor, CallHandle, CallInfo, CallMsg, CallSpec, CallStart};
pub use clients::Capability;
pub use conversation::{ConversationActor, ConversationHandle, ConversationInfo, ConversationMsg, ConversationSpec};
pub use error::{ActorsError, RecorderError};
pub use jobs::{JobActor, JobSpec, JobsSupervisor};
pub use media::{AudioIn, EventSink, FRAME_BYTES, LiveCall, MediaOut, NoEvents, SUMMARY_QUEUE};
pub use recorder::CallRecorder;
pub use registry::{LiveMap, Registry};
pub use root::RootActor;
pub use stats::{FailureRecord, SupervisorStats};
pub use supervisor::{AgentSessionsSupervisor, CallsSupervisor, ConversationsSupervisor, Supervisor};
pub use tree::{ShutdownReport, Tree, TreeConfig};
