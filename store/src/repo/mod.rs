//! One repository per table. Each is a small borrowing view of the
//! [`Store`](crate::Store), reached as `store.tenants()`, `store.calls()`, ...
//!
//! Guarantees shared by all of them: tenant-owned rows are only reachable
//! within a matching [`Scope`](crate::Scope); references to rows of another
//! tenant are refused with `Invalid`; lists are ordered newest first with
//! `id` as the tie-breaker.

mod agents;
mod appointments;
mod audit;
mod calls;
mod contacts;
mod conversations;
mod credentials;
mod messages;
mod phone_numbers;
mod sessions;
mod tenants;
mod transcripts;
mod turns;
mod users;

pub use agents::{AgentFilter, AgentRepo};
pub use appointments::{AppointmentFilter, AppointmentRepo};
pub use audit::AuditRepo;
pub use calls::{CallFilter, CallRepo, CallSummaryRow, SummaryStatus};
pub use contacts::{ContactFilter, ContactRepo};
pub use conversations::{ConversationFilter, ConversationRepo};
pub use credentials::{CredentialFilter, CredentialRepo};
pub use messages::{MessageFilter, MessageRepo};
pub use phone_numbers::{PhoneNumberFilter, PhoneNumberRepo};
pub use sessions::{SessionRecord, SessionRepo};
pub use tenants::{TenantFilter, TenantRepo};
pub use transcripts::TranscriptRepo;
pub use users::{UserFilter, UserRepo};

use crate::error::StoreError;

/// Reject names that are empty after trimming.
pub(crate) fn require_name(what: &str, name: &str) -> Result<String, StoreError> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(StoreError::invalid(format!("{what} must not be empty")));
    }
    Ok(trimmed.to_owned())
}
pub use turns::TurnRepo;
