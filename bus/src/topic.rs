//! Event topics and topic patterns.
//!
//! A topic is a dot-separated path of segments made of ASCII letters, digits,
//! `_` and `-`, for example `tenant.{tenant_id}.call.{call_id}`. A pattern is
//! a topic in which whole segments may be `*`; a `*` matches any run of
//! characters, dots included (the same rule as Redis `PSUBSCRIBE`), so
//! `tenant.{id}.*` matches every topic of that tenant. Both types are parsed
//! once, so the bus never sees a malformed name.

use std::fmt;
use std::sync::Arc;

use switchboard_domain::{CallId, ConversationId, TenantId};

const MAX_TOPIC_LEN: usize = 256;

/// Why a topic or pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topic `{value}`: {reason}")]
pub struct TopicError {
    pub value: String,
    pub reason: &'static str,
}

fn check(value: &str, allow_wildcard: bool) -> Result<(), TopicError> {
    let invalid = |reason| TopicError {
        value: value.chars().take(64).collect(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("must not be empty"));
    }
    if value.len() > MAX_TOPIC_LEN {
        return Err(invalid("is longer than 256 bytes"));
    }
    for segment in value.split('.') {
        if segment.is_empty() {
            return Err(invalid("has an empty segment"));
        }
        if segment == "*" {
            if !allow_wildcard {
                return Err(invalid("`*` is allowed only in patterns"));
            }
            continue;
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid("segments may contain only ASCII letters, digits, `_` and `-`"));
        }
    }
    Ok(())
}

/// A concrete topic that events are published to.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Arc<str>);

impl Topic {
    /// Parses a topic; `*` is not allowed here.
    pub fn parse(value: &str) -> Result<Self, TopicError> {
        check(value, false)?;
        Ok(Self(Arc::from(value)))
    }

    /// Live events of one call: `tenant.{tenant}.call.{call}`.
    pub fn call(tenant: TenantId, call: CallId) -> Self {
        Self(Arc::from(format!("tenant.{tenant}.call.{call}")))
    }

    /// Live events of one conversation: `tenant.{tenant}.conversation.{conversation}`.
    pub fn conversation(tenant: TenantId, conversation: ConversationId) -> Self {
        Self(Arc::from(format!("tenant.{tenant}.conversation.{conversation}")))
    }

    /// The tenant and call of a topic made by [`Topic::call`], so a pattern
    /// subscriber can tell which call an event belongs to.
    pub fn call_parts(&self) -> Option<(TenantId, CallId)> {
        match self.0.split('.').collect::<Vec<_>>().as_slice() {
            ["tenant", tenant, "call", call] => Some((tenant.parse().ok()?, call.parse().ok()?)),
            _ => None,
        }
    }

    /// The tenant of any `tenant.{tenant}.…` topic.
    pub fn tenant(&self) -> Option<TenantId> {
        let mut parts = self.0.split('.');
        match (parts.next(), parts.next()) {
            (Some("tenant"), Some(tenant)) => tenant.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for Topic {
    type Error = TopicError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Topic({})", self.0)
    }
}

/// A subscription pattern over topics.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPattern(Arc<str>);

impl TopicPattern {
    /// Parses a pattern; whole segments may be `*`.
    pub fn parse(value: &str) -> Result<Self, TopicError> {
        check(value, true)?;
        Ok(Self(Arc::from(value)))
    }

    /// Every topic of one tenant: `tenant.{tenant}.*`.
    pub fn tenant(tenant: TenantId) -> Self {
        Self(Arc::from(format!("tenant.{tenant}.*")))
    }

    /// Every call of one tenant: `tenant.{tenant}.call.*`.
    pub fn tenant_calls(tenant: TenantId) -> Self {
        Self(Arc::from(format!("tenant.{tenant}.call.*")))
    }

    /// Every call of every tenant: `tenant.*.call.*`.
    pub fn all_calls() -> Self {
        Self(Arc::from("tenant.*.call.*"))
    }

    /// Whether `topic` matches, with Redis glob semantics for `*`.
    pub fn matches(&self, topic: &Topic) -> bool {
        glob_match(self.0.as_bytes(), topic.0.as_bytes())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for TopicPattern {
    type Error = TopicError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Topic> for TopicPattern {
    fn from(topic: Topic) -> Self {
        Self(topic.0)
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicPattern({})", self.0)
    }
}

/// `*`-only glob matching with backtracking to the last star, linear in practice.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(s: &str) -> Topic {
        Topic::parse(s).expect("valid topic")
    }

    #[test]
    fn topics_are_validated() {
        assert!(Topic::parse("tenant.abc-1.call.x_y").is_ok());
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "a.*",
            "a b",
            "a:b",
            "a?",
            "a[b]",
            &"a".repeat(257),
        ] {
            assert!(Topic::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(TopicPattern::parse("tenant.*.call.*").is_ok());
        assert!(TopicPattern::parse("tenant.a*").is_err(), "`*` must be a whole segment");
    }

    #[test]
    fn helpers_build_the_documented_scheme() {
        let (tenant, call) = (TenantId::new(), CallId::new());
        let t = Topic::call(tenant, call);
        assert_eq!(t.as_str(), format!("tenant.{tenant}.call.{call}"));
        assert_eq!(t.call_parts(), Some((tenant, call)));
        assert_eq!(t.tenant(), Some(tenant));
        assert!(Topic::parse(t.as_str()).is_ok(), "helpers produce parseable topics");

        let conv = Topic::conversation(tenant, ConversationId::new());
        assert_eq!(conv.call_parts(), None);
        assert!(TopicPattern::tenant(tenant).matches(&t));
        assert!(TopicPattern::tenant(tenant).matches(&conv));
        assert!(TopicPattern::tenant_calls(tenant).matches(&t));
        assert!(!TopicPattern::tenant_calls(tenant).matches(&conv));
        assert!(TopicPattern::all_calls().matches(&t));
        assert!(!TopicPattern::tenant_calls(TenantId::new()).matches(&t));
    }

    #[test]
    fn glob_follows_redis_rules() {
        let p = |s: &str| TopicPattern::parse(s).expect("valid pattern");
        assert!(p("a.*").matches(&topic("a.b")));
        assert!(p("a.*").matches(&topic("a.b.c")), "`*` crosses dots like Redis");
        assert!(!p("a.*").matches(&topic("a")));
        assert!(!p("a.*").matches(&topic("ab.c")));
        assert!(p("*.c").matches(&topic("a.b.c")));
        assert!(p("a.*.c.*").matches(&topic("a.x.c.y")));
        assert!(!p("a.*.c.*").matches(&topic("a.x.d.y")));
        assert!(p("a.b").matches(&topic("a.b")));
        assert!(!p("a.b").matches(&topic("a.bc")));
        assert!(p("*").matches(&topic("anything.at.all")));
    }
}
