//! Switchboard's domain vocabulary: typed IDs, E.164 numbers, roles, call
//! states and the entities every layer shares.
//!
//! Guarantees: values of these types are valid once constructed. Input is
//! parsed at the edge (`E164::parse`, `Role::from_str`, ...) and nothing
//! inside the engine re-validates. The crate has no async runtime and no I/O.
//!
//! # Layout
//! - [`ids`]: UUID newtypes (`TenantId`, `CallId`, ...) and provider string IDs.
//! - [`phone`]: the [`E164`] phone number.
//! - [`role`]: the [`Role`] ladder `system_admin > owner > admin > agent`.
//! - [`call`]: call direction, status and end reasons.
//! - [`entities`]: the stored records and their create/update inputs.
//! - [`page`]: pagination requests and pages.

pub mod call;
pub mod entities;
pub mod events;
pub mod ids;
pub mod page;
pub mod phone;
pub mod role;

pub use call::{CallDirection, CallStatus, EndReason};
pub use entities::*;
pub use events::{CallEvent, CallEventKind, TurnLatency};
pub use ids::*;
pub use page::{Page, PageRequest};
pub use phone::{E164, E164Error};
pub use role::{Role, RoleParseError};

/// A point in time, UTC. Stored as epoch milliseconds.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Current time truncated to milliseconds, the precision the store keeps.
pub fn now() -> Timestamp {
    let now = chrono::Utc::now();
    timestamp_from_millis(now.timestamp_millis())
}

/// Epoch milliseconds to a [`Timestamp`]; out-of-range values clamp to the epoch.
pub fn timestamp_from_millis(ms: i64) -> Timestamp {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
