//! The in-process backend: events fan out through the local hub, jobs live in
//! per-queue memory queues. Nothing survives the process; this backend is for
//! a single node (embedded mode) and for tests.
//!
//! Each queue holds ready jobs, delayed retries and leased (in-flight) jobs
//! under one mutex, so two consumers can never lease the same job. Expired
//! leases and due retries are moved back to ready inside `reserve`, and a
//! waiting `reserve` sleeps until the next such deadline or a new job arrives.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fred::bytes::Bytes;
use switchboard_domain::JobId;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::BusError;
use crate::event::{BusEvent, Hub, SubKey, Subscription};
use crate::job::{BusOptions, FailedJob, Job, LEASE_EXPIRED_REASON, NackOutcome, Receipt};
use crate::topic::{Topic, TopicPattern};

struct Stored {
    id: JobId,
    payload: serde_json::Value,
    attempt: u32,
}

struct Lease {
    job: Stored,
    lease: u64,
    deadline: Instant,
}

#[derive(Default)]
struct MemQueue {
    ready: VecDeque<Stored>,
    delayed: Vec<(Instant, Stored)>,
    leased: HashMap<JobId, Lease>,
    dead: VecDeque<FailedJob>,
    notify: Arc<Notify>,
}

pub(crate) struct MemoryBus {
    hub: Arc<Hub>,
    queues: Mutex<HashMap<String, MemQueue>>,
    options: BusOptions,
    next_lease: AtomicU64,
    closed: AtomicBool,
}

impl MemoryBus {
    pub(crate) fn new(options: BusOptions) -> Self {
        Self {
            hub: Hub::new(options.event_capacity, None),
            queues: Mutex::new(HashMap::new()),
            options,
            next_lease: AtomicU64::new(1),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, MemQueue>> {
        // Every mutation below leaves the queue consistent between statements that can panic.
        self.queues.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn ping(&self) -> Result<(), BusError> {
        self.ensure_open()
    }

    pub(crate) fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.hub.close();
        for queue in self.lock().values() {
            queue.notify.notify_waiters();
        }
    }

    pub(crate) fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        self.ensure_open()?;
        let event = BusEvent {
            topic: topic.clone(),
            payload,
        };
        self.hub.dispatch_exact(&event);
        self.hub.dispatch_patterns(&event);
        Ok(())
    }

    pub(crate) async fn subscribe(&self, key: SubKey) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        self.hub.subscribe(key).await
    }

    pub(crate) async fn subscribe_topic(&self, topic: &Topic) -> Result<Subscription, BusError> {
        self.subscribe(SubKey::Exact(topic.clone())).await
    }

    pub(crate) async fn subscribe_pattern(&self, pattern: &TopicPattern) -> Result<Subscription, BusError> {
        self.subscribe(SubKey::Pattern(pattern.clone())).await
    }

    pub(crate) fn enqueue(&self, queue: &str, payload: serde_json::Value) -> Result<JobId, BusError> {
        self.ensure_open()?;
        let id = JobId::new();
        let mut queues = self.lock();
        let q = queues.entry(queue.to_owned()).or_default();
        q.ready.push_back(Stored {
            id,
            payload,
            attempt: 1,
        });
        q.notify.notify_one();
        Ok(id)
    }

    pub(crate) async fn reserve(&self, queue: &str, max_wait: Duration) -> Result<Option<Job>, BusError> {
        let give_up = Instant::now() + max_wait;
        let max_attempts = self.options.retry_for(queue).max_attempts();
        let notify = Arc::clone(&self.lock().entry(queue.to_owned()).or_default().notify);
        loop {
            // Registered before looking at the queue, so a job enqueued after the
            // look but before the wait still wakes this consumer.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            self.ensure_open()?;
            let wake_at = {
                let mut queues = self.lock();
                let q = queues.entry(queue.to_owned()).or_default();
                let now = Instant::now();
                self.recover(q, now, max_attempts);
                if let Some(job) = q.ready.pop_front() {
                    let lease = self.next_lease.fetch_add(1, Ordering::Relaxed);
                    let reserved = Job {
                        id: job.id,
                        queue: queue.to_owned(),
                        payload: job.payload.clone(),
                        attempt: job.attempt,
                        receipt: Receipt::Memory { lease },
                    };
                    q.leased.insert(
                        job.id,
                        Lease {
                            job,
                            lease,
                            deadline: now + self.options.visibility_timeout,
                        },
                    );
                    return Ok(Some(reserved));
                }
                if now >= give_up {
                    return Ok(None);
                }
                q.delayed
                    .iter()
                    .map(|(due, _)| *due)
                    .chain(q.leased.values().map(|l| l.deadline))
                    .fold(give_up, Instant::min)
            };
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    /// Moves due retries and expired leases back to ready (or to dead letters).
    fn recover(&self, q: &mut MemQueue, now: Instant, max_attempts: u32) {
        let expired: Vec<JobId> = q
            .leased
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(lease) = q.leased.remove(&id) else { continue };
            let mut job = lease.job;
            if job.attempt >= max_attempts {
                self.bury(q, job.id, job.payload, job.attempt, LEASE_EXPIRED_REASON.to_owned());
            } else {
                job.attempt += 1;
                // Redeliver ahead of newer work: it has already waited a full timeout.
                q.ready.push_front(job);
            }
        }
        if q.delayed.iter().any(|(due, _)| *due <= now) {
            let (due, later): (Vec<_>, Vec<_>) = q.delayed.drain(..).partition(|(due, _)| *due <= now);
            q.delayed = later;
            let mut due = due;
            due.sort_by_key(|(at, _)| *at);
            q.ready.extend(due.into_iter().map(|(_, job)| job));
        }
    }

    fn bury(&self, q: &mut MemQueue, id: JobId, payload: serde_json::Value, attempts: u32, reason: String) {
        q.dead.push_back(FailedJob {
            id,
            payload,
            attempts,
            reason,
        });
        while q.dead.len() > self.options.dead_letter_limit.max(1) {
            q.dead.pop_front();
        }
    }

    fn take_lease(&self, queues: &mut HashMap<String, MemQueue>, job: &Job) -> Result<Lease, BusError> {
        let Receipt::Memory { lease } = job.receipt else {
            return Err(BusError::LeaseLost { job: job.id });
        };
        let q = queues.get_mut(&job.queue).ok_or(BusError::LeaseLost { job: job.id })?;
        match q.leased.get(&job.id) {
            Some(held) if held.lease == lease => q.leased.remove(&job.id).ok_or(BusError::LeaseLost { job: job.id }),
            _ => Err(BusError::LeaseLost { job: job.id }),
        }
    }

    pub(crate) fn ack(&self, job: &Job) -> Result<(), BusError> {
        self.ensure_open()?;
        let mut queues = self.lock();
        self.take_lease(&mut queues, job).map(drop)
    }

    pub(crate) fn nack(&self, job: &Job, reason: &str) -> Result<NackOutcome, BusError> {
        self.ensure_open()?;
        let policy = self.options.retry_for(&job.queue);
        let mut queues = self.lock();
        let lease = self.take_lease(&mut queues, job)?;
        let q = queues.get_mut(&job.queue).ok_or(BusError::LeaseLost { job: job.id })?;
        let mut stored = lease.job;
        if stored.attempt >= policy.max_attempts() {
            self.bury(q, stored.id, stored.payload, stored.attempt, reason.to_owned());
            return Ok(NackOutcome::DeadLettered);
        }
        let delay = policy.backoff(stored.attempt);
        stored.attempt += 1;
        let attempt = stored.attempt;
        q.delayed.push((Instant::now() + delay, stored));
        // A consumer already waiting must recompute its wake-up time for this retry.
        q.notify.notify_waiters();
        Ok(NackOutcome::Retry { attempt, delay })
    }

    pub(crate) fn failed_jobs(&self, queue: &str) -> Result<Vec<FailedJob>, BusError> {
        self.ensure_open()?;
        Ok(self
            .lock()
            .get(queue)
            .map(|q| q.dead.iter().cloned().collect())
            .unwrap_or_default())
    }
}
