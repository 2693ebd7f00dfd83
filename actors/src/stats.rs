//! Per-supervisor counters and a short log of recent child failures, owned by
//! the supervisor's state and read through its `Stats` request.

use std::collections::VecDeque;
use switchboard_domain::TenantId;

/// How many failures a supervisor remembers; older ones are dropped.
pub const FAILURE_LOG_LEN: usize = 32;

/// One child failure: which actor, whose, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureRecord {
    /// The child's domain ID (call, conversation or agent session ID).
    pub id: String,
    pub tenant_id: TenantId,
    /// The panic message or handler error.
    pub reason: String,
}

/// A snapshot of a supervisor's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupervisorStats {
    /// Children started since the tree started.
    pub spawned: u64,
    /// Children that stopped cleanly.
    pub stopped: u64,
    /// Children that panicked or returned an error from a handler.
    pub failed: u64,
    /// Children live right now.
    pub live: usize,
    /// The most recent failures, oldest first (at most [`FAILURE_LOG_LEN`]).
    pub last_failures: VecDeque<FailureRecord>,
}

impl SupervisorStats {
    pub(crate) fn record_failure(&mut self, record: FailureRecord) {
        self.failed += 1;
        if self.last_failures.len() == FAILURE_LOG_LEN {
            self.last_failures.pop_front();
        }
        self.last_failures.push_back(record);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_log_keeps_the_most_recent() {
        let mut stats = SupervisorStats::default();
        let tenant = TenantId::new();
        for i in 0..FAILURE_LOG_LEN + 3 {
            stats.record_failure(FailureRecord {
                id: i.to_string(),
                tenant_id: tenant,
                reason: "boom".into(),
            });
        }
        assert_eq!(stats.failed, (FAILURE_LOG_LEN + 3) as u64);
        assert_eq!(stats.last_failures.len(), FAILURE_LOG_LEN);
        assert_eq!(stats.last_failures.front().map(|r| r.id.as_str()), Some("3"));
    }
}
