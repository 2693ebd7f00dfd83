//! Typed identifiers. Every entity has its own ID type so a `CallId` can never
//! be passed where a `TenantId` is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// The error for a string that is not a valid ID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind}")]
pub struct IdParseError {
    pub kind: &'static str,
    pub value: String,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) ID.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self).map_err(|_| IdParseError {
                    kind: stringify!($name),
                    value: s.chars().take(64).collect(),
                })
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }
    };
}

uuid_id!(/// A tenant: one customer organisation.
    TenantId);
uuid_id!(/// A user who logs in to the API.
    UserId);
uuid_id!(/// A phone number owned by a tenant.
    PhoneNumberId);
uuid_id!(/// An AI agent definition.
    AgentId);
uuid_id!(/// A stored provider credential.
    CredentialId);
uuid_id!(/// A contact (lead).
    ContactId);
uuid_id!(/// An appointment.
    AppointmentId);
uuid_id!(/// A phone call.
    CallId);
uuid_id!(/// A WhatsApp (or other messaging) conversation.
    ConversationId);
uuid_id!(/// A message within a conversation.
    MessageId);
uuid_id!(/// A live AI agent session (one per call or conversation).
    AgentSessionId);
uuid_id!(/// A queued job.
    JobId);
uuid_id!(/// An API session (login).
    SessionId);
uuid_id!(/// An audit log entry.
    AuditId);

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self.0)
            }
        }
    };
}

string_id!(/// Twilio's call SID (`CA` + 32 hex), or another provider's call ID.
    ProviderCallId);
string_id!(/// Twilio's Media Streams stream SID (`MZ...`).
    StreamSid);
string_id!(/// A provider's message ID (WhatsApp `wamid...`, Green API id).
    ProviderMessageId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_json() {
        let id = CallId::new();
        let parsed: CallId = id.to_string().parse().expect("parse");
        assert_eq!(id, parsed);
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{id}\""));
        let back: CallId = serde_json::from_str(&json).expect("json back");
        assert_eq!(back, id);
    }

    #[test]
    fn bad_id_names_its_kind() {
        let err = "nope".parse::<TenantId>().unwrap_err();
        assert_eq!(err.kind, "TenantId");
        assert!(err.to_string().contains("TenantId"));
    }

    #[test]
    fn new_ids_are_time_ordered() {
        let a = CallId::new();
        let b = CallId::new();
        assert!(a < b);
    }
}
