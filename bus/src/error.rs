//! The one error type of the bus. Redis errors are wrapped without the
//! connection URL, so a password in `redis://:secret@host` never reaches a log.

use switchboard_domain::JobId;

use crate::topic::TopicError;

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The Redis URL could not be parsed. The URL itself is left out on purpose.
    #[error("the Redis URL is not valid")]
    InvalidUrl,
    /// A command to Redis failed (connection, protocol or script error).
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    /// Redis answered in a shape this crate does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The bus was shut down.
    #[error("the bus is shut down")]
    Closed,
    /// A payload could not be encoded or decoded as JSON.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// A topic or pattern is malformed.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// A queue, consumer or key-prefix name is malformed.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidName {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },
    /// The job is no longer reserved by the caller: its visibility timeout
    /// expired and it was (or will be) handed to another consumer, or it was
    /// already acked or nacked.
    #[error("job {job} is no longer reserved by this consumer")]
    LeaseLost { job: JobId },
}

const MAX_NAME_LEN: usize = 128;

/// Checks a queue, consumer or key-prefix name. They become parts of Redis key
/// names, so glob characters, braces (hash tags), separators and whitespace are refused.
pub(crate) fn validate_name(kind: &'static str, value: &str) -> Result<(), BusError> {
    let invalid = |reason| BusError::InvalidName {
        kind,
        value: value.chars().take(64).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(invalid("is longer than 128 bytes"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
    {
        return Err(invalid("may contain only ASCII letters, digits, `_`, `-` and `.`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("queue", "webhooks.deliver-v2_x").is_ok());
        for bad in ["", "a b", "a:b", "a*", "{a}", "ä", &"x".repeat(129)] {
            assert!(
                matches!(
                    validate_name("queue", bad),
                    Err(BusError::InvalidName { kind: "queue", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn invalid_url_message_has_no_url() {
        assert_eq!(BusError::InvalidUrl.to_string(), "the Redis URL is not valid");
    }
}
