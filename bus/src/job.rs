//! Durable jobs: the job and dead-letter types, retry policy and options.
//!
//! Delivery is at-least-once. A reserved job belongs to one consumer until it
//! is acked, nacked, or its visibility timeout expires; then it is delivered
//! again with `attempt` one higher. A nack schedules a retry after an
//! exponential backoff; after `max_attempts` attempts the job moves to the
//! queue's dead-letter list with the last reason.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchboard_domain::JobId;

/// A job handed to one consumer by `Bus::reserve`.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub queue: String,
    pub payload: serde_json::Value,
    /// 1 on the first delivery, one higher on every retry or redelivery.
    pub attempt: u32,
    pub(crate) receipt: Receipt,
}

/// Proof of the reservation, checked when the job is acked or nacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Receipt {
    Memory {
        lease: u64,
    },
    Redis {
        entry: String,
        consumer: String,
        deliveries: u64,
    },
}

/// A job that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedJob {
    pub id: JobId,
    pub payload: serde_json::Value,
    /// How many attempts were made.
    pub attempts: u32,
    /// The reason given by the last nack, or why the last lease expired.
    pub reason: String,
}

/// What a nack did with the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackOutcome {
    /// Scheduled again as `attempt` after `delay`.
    Retry { attempt: u32, delay: Duration },
    /// Out of attempts: moved to the dead-letter list.
    DeadLettered,
}

/// How often and how late a failed job is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts including the first; at least 1.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles on each further attempt.
    pub base_backoff: Duration,
    /// Upper bound for the delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
        self.base_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}

/// Tuning shared by both backends. `Default` suits production.
#[derive(Debug, Clone)]
pub struct BusOptions {
    /// Buffered events per subscribed topic or pattern before a slow subscriber lags.
    pub event_capacity: usize,
    /// Retry policy for queues without an override.
    pub retry: RetryPolicy,
    /// Per-queue retry policies.
    pub queue_retry: HashMap<String, RetryPolicy>,
    /// How long a reserved job may stay unacknowledged before it is redelivered.
    pub visibility_timeout: Duration,
    /// Redis: how often a waiting `reserve` looks for due retries and expired
    /// leases (new jobs wake it at once).
    pub poll_interval: Duration,
    /// Dead-letter entries kept per queue; the oldest are dropped first.
    pub dead_letter_limit: usize,
}

impl Default for BusOptions {
    fn default() -> Self {
        Self {
            event_capacity: 1024,
            retry: RetryPolicy::default(),
            queue_retry: HashMap::new(),
            visibility_timeout: Duration::from_secs(60),
            poll_interval: Duration::from_millis(500),
            dead_letter_limit: 10_000,
        }
    }
}

impl BusOptions {
    /// Sets the retry policy of one queue.
    pub fn with_queue_retry(mut self, queue: impl Into<String>, policy: RetryPolicy) -> Self {
        self.queue_retry.insert(queue.into(), policy);
        self
    }

    pub(crate) fn retry_for(&self, queue: &str) -> RetryPolicy {
        self.queue_retry.get(queue).copied().unwrap_or(self.retry)
    }
}

/// The reason recorded when a job dies because its last lease expired.
pub(crate) const LEASE_EXPIRED_REASON: &str = "visibility timeout expired without ack";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(4), Duration::from_millis(800));
        assert_eq!(p.backoff(5), Duration::from_millis(1000));
        assert_eq!(
            p.backoff(200),
            Duration::from_millis(1000),
            "no overflow on huge attempts"
        );
        assert_eq!(p.backoff(0), Duration::from_millis(100));
    }

    #[test]
    fn queue_overrides_win() {
        let special = RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        };
        let options = BusOptions::default().with_queue_retry("special", special);
        assert_eq!(options.retry_for("special"), special);
        assert_eq!(options.retry_for("other"), RetryPolicy::default());
        assert_eq!(
            RetryPolicy {
                max_attempts: 0,
                ..special
            }
            .max_attempts(),
            1
        );
    }
}
