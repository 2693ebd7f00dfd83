//! Switchboard's event bus and durable job queue.
//!
//! One [`Bus`] handle, two backends chosen at construction:
//! - [`Bus::in_process`]: tokio channels and memory queues, for a single node.
//! - [`Bus::redis`]: Redis pub/sub for events and Streams with consumer groups
//!   for jobs, shared by every node that uses the same key prefix.
//!
//! Both give the same guarantees, checked by one shared test suite:
//! - Events are fire-and-forget. Publishing never waits for subscribers; a
//!   subscriber that falls behind loses its oldest unread events and is told
//!   how many through [`Subscription::lagged`].
//! - Jobs are delivered at least once, to one consumer at a time. A nack retries
//!   with exponential backoff ([`RetryPolicy`]); after the last attempt the job
//!   is dead-lettered with its reason ([`Bus::failed_jobs`]). A job neither
//!   acked nor nacked within the visibility timeout is delivered again.
//!
//! # Layout
//! - [`topic`]: [`Topic`] and [`TopicPattern`], the `tenant.{id}.call.{id}` scheme.
//! - `event`: [`BusEvent`], [`Subscription`] and the local fan-out hub both backends share.
//! - `job`: [`Job`], [`FailedJob`], [`RetryPolicy`], [`BusOptions`].
//! - `memory`: the in-process backend.
//! - `redis`: the Redis backend and its Lua scripts.
//! - `error`: [`BusError`].

mod error;
mod event;
mod job;
mod memory;
mod redis;
pub mod topic;

use std::sync::Arc;
use std::time::Duration;

pub use error::BusError;
pub use event::{BusEvent, Subscription};
pub use fred::bytes::Bytes;
pub use job::{BusOptions, FailedJob, Job, NackOutcome, RetryPolicy};
use serde::Serialize;
use switchboard_domain::JobId;
pub use topic::{Topic, TopicError, TopicPattern};

use crate::error::validate_name;
use crate::memory::MemoryBus;
use crate::redis::RedisBus;

// One instance per bus, behind an `Arc`: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Memory(MemoryBus),
    Redis(RedisBus),
}

/// A cheap, cloneable handle to the bus. All clones share one backend.
#[derive(Clone)]
pub struct Bus {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl Bus {
    /// An in-process bus with default options.
    pub fn in_process() -> Self {
        Self::in_process_with(BusOptions::default())
    }

    /// An in-process bus.
    pub fn in_process_with(options: BusOptions) -> Self {
        Self {
            backend: Arc::new(Backend::Memory(MemoryBus::new(options))),
        }
    }

    /// Connects to Redis with default options. Every key and channel starts with `key_prefix:`.
    pub async fn redis(url: &str, key_prefix: &str) -> Result<Self, BusError> {
        Self::redis_with(url, key_prefix, BusOptions::default()).await
    }

    /// Connects to Redis; fails at once if the server cannot be reached.
    pub async fn redis_with(url: &str, key_prefix: &str, options: BusOptions) -> Result<Self, BusError> {
        let bus = RedisBus::connect(url, key_prefix, options).await?;
        Ok(Self {
            backend: Arc::new(Backend::Redis(bus)),
        })
    }

    /// `"in-process"` or `"redis"`.
    pub fn kind(&self) -> &'static str {
        match *self.backend {
            Backend::Memory(_) => "in-process",
            Backend::Redis(_) => "redis",
        }
    }

    /// Checks that the backend answers (a Redis `PING`).
    pub async fn ping(&self) -> Result<(), BusError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.ping(),
            Backend::Redis(bus) => bus.ping().await,
        }
    }

    /// Ends every subscription (their `recv` returns `None`), closes the
    /// connections, and makes every later call fail with [`BusError::Closed`].
    /// Jobs reserved and not acked are redelivered after their visibility timeout
    /// (Redis) or lost with the process (in-process).
    pub async fn shutdown(&self) {
        match &*self.backend {
            Backend::Memory(bus) => bus.shutdown(),
            Backend::Redis(bus) => bus.shutdown().await,
        }
    }

    /// Publishes raw bytes to a topic.
    pub async fn publish(&self, topic: &Topic, payload: impl Into<Bytes>) -> Result<(), BusError> {
        let payload = payload.into();
        match &*self.backend {
            Backend::Memory(bus) => bus.publish(topic, payload),
            Backend::Redis(bus) => bus.publish(topic, payload).await,
        }
    }

    /// Publishes a value encoded as JSON; read it back with [`BusEvent::json`].
    pub async fn publish_json<T: Serialize + ?Sized>(&self, topic: &Topic, value: &T) -> Result<(), BusError> {
        self.publish(topic, serde_json::to_vec(value)?).await
    }

    /// Subscribes to one topic. Events published after this returns are delivered.
    pub async fn subscribe(&self, topic: &Topic) -> Result<Subscription, BusError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.subscribe_topic(topic).await,
            Backend::Redis(bus) => bus.subscribe_topic(topic).await,
        }
    }

    /// Subscribes to every topic matching a pattern.
    pub async fn psubscribe(&self, pattern: &TopicPattern) -> Result<Subscription, BusError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.subscribe_pattern(pattern).await,
            Backend::Redis(bus) => bus.subscribe_pattern(pattern).await,
        }
    }

    /// Adds a job to a queue.
    pub async fn enqueue(&self, queue: &str, payload: serde_json::Value) -> Result<JobId, BusError> {
        validate_name("queue", queue)?;
        match &*self.backend {
            Backend::Memory(bus) => bus.enqueue(queue, payload),
            Backend::Redis(bus) => bus.enqueue(queue, payload).await,
        }
    }

    /// Takes the next job of a queue for `consumer`, waiting up to `max_wait`
    /// for one. The job is leased until acked, nacked, or the visibility timeout.
    /// `consumer` names a worker and should be stable across its calls.
    pub async fn reserve(&self, queue: &str, consumer: &str, max_wait: Duration) -> Result<Option<Job>, BusError> {
        validate_name("queue", queue)?;
        validate_name("consumer", consumer)?;
        match &*self.backend {
            Backend::Memory(bus) => bus.reserve(queue, max_wait).await,
            Backend::Redis(bus) => bus.reserve(queue, consumer, max_wait).await,
        }
    }

    /// Marks a job done. Fails with [`BusError::LeaseLost`] if its lease expired
    /// and it was handed to another consumer, or it was already settled.
    pub async fn ack(&self, job: &Job) -> Result<(), BusError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.ack(job),
            Backend::Redis(bus) => bus.ack(job).await,
        }
    }

    /// Marks an attempt failed: the job is retried after a backoff, or
    /// dead-lettered with `reason` once it is out of attempts.
    pub async fn nack(&self, job: &Job, reason: &str) -> Result<NackOutcome, BusError> {
        match &*self.backend {
            Backend::Memory(bus) => bus.nack(job, reason),
            Backend::Redis(bus) => bus.nack(job, reason).await,
        }
    }

    /// The dead-lettered jobs of a queue, oldest first.
    pub async fn failed_jobs(&self, queue: &str) -> Result<Vec<FailedJob>, BusError> {
        validate_name("queue", queue)?;
        match &*self.backend {
            Backend::Memory(bus) => bus.failed_jobs(queue),
            Backend::Redis(bus) => bus.failed_jobs(queue).await,
        }
    }
}
