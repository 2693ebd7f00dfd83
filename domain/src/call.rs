//! Call direction, status and end reasons.
//!
//! `CallStatus` follows Twilio's call status vocabulary so that status
//! callbacks map one to one, plus the engine's own `streaming` state while a
//! Media Stream is connected.

/// Declares a string-valued enum with `as_str`, `FromStr` and `Display`, so the
/// same spelling is used in JSON, in the database and in logs.
#[macro_export]
macro_rules! str_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $s)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::call::UnknownVariant;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($s => Ok($name::$variant),)+
                    other => Err($crate::call::UnknownVariant {
                        kind: stringify!($name),
                        value: other.chars().take(64).collect(),
                    }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A string that names no variant of a `str_enum!` type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`")]
pub struct UnknownVariant {
    pub kind: &'static str,
    pub value: String,
}

str_enum!(
    /// Who placed the call.
    CallDirection {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

str_enum!(
    /// The call's lifecycle state.
    CallStatus {
        Queued => "queued",
        Ringing => "ringing",
        InProgress => "in-progress",
        /// The Media Stream is connected and the agent is live.
        Streaming => "streaming",
        Completed => "completed",
        Busy => "busy",
        Failed => "failed",
        NoAnswer => "no-answer",
        Canceled => "canceled",
    }
);

impl CallStatus {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            CallStatus::Completed | CallStatus::Busy | CallStatus::Failed | CallStatus::NoAnswer | CallStatus::Canceled
        )
    }

    /// Lifecycle rank, used to make out-of-order status callbacks harmless:
    /// a callback may only move a call forward.
    pub fn rank(self) -> u8 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Ringing => 1,
            CallStatus::InProgress => 2,
            CallStatus::Streaming => 3,
            _ => 4,
        }
    }
}

str_enum!(
    /// Why a call ended.
    EndReason {
        CallerHangup => "caller_hangup",
        AgentHangup => "agent_hangup",
        Transferred => "transferred",
        SilenceTimeout => "silence_timeout",
        UnknownNumber => "unknown_number",
        ConcurrencyLimit => "concurrency_limit",
        ProviderError => "provider_error",
        ActorFailed => "actor_failed",
        Shutdown => "shutdown",
        Rejected => "rejected",
        Completed => "completed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_strings_match_twilio() {
        assert_eq!("in-progress".parse::<CallStatus>().unwrap(), CallStatus::InProgress);
        assert_eq!("no-answer".parse::<CallStatus>().unwrap(), CallStatus::NoAnswer);
        assert_eq!(serde_json::to_string(&CallStatus::NoAnswer).unwrap(), "\"no-answer\"");
        assert!("bogus".parse::<CallStatus>().is_err());
        for s in CallStatus::ALL {
            assert_eq!(s.as_str().parse::<CallStatus>().unwrap(), *s);
        }
    }

    #[test]
    fn terminal_states_rank_highest() {
        for s in CallStatus::ALL {
            assert_eq!(s.is_terminal(), s.rank() == 4, "{s}");
        }
    }
}
