//! The Redis backend: pub/sub for events, Streams with one consumer group per
//! queue for jobs.
//!
//! Key scheme, under the configured prefix `P`:
//! - events: channel `P:ev:{topic}`; patterns are `PSUBSCRIBE P:ev:{pattern}`.
//! - queue `Q`: stream `P:q:{Q}:stream` (group `workers`), retries waiting for
//!   their backoff in the sorted set `P:q:{Q}:delayed` (score = due time in ms
//!   by the Redis clock), dead letters in the list `P:q:{Q}:dead`.
//!
//! Every queue transition (promote due retries, reclaim expired leases,
//! ack/retry/bury) is one Lua script, so it is atomic even with many nodes, and
//! due times use the server clock, so node clocks may disagree. A lease is
//! checked on settle by consumer and delivery count, so a consumer whose lease
//! expired cannot ack a job that another consumer now holds.
//!
//! Published events carry a 16-byte random envelope id: Redis sends one
//! `pmessage` per matching pattern without saying which pattern matched, so
//! the dispatcher fans the first copy out to all local patterns and skips the rest.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fred::bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use fred::types::{Message, MessageKind};
use serde::{Deserialize, Serialize};
use switchboard_domain::JobId;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{BusError, validate_name};
use crate::event::{BusEvent, Control, Hub, SubKey, SubState, Subscription};
use crate::job::{BusOptions, FailedJob, Job, LEASE_EXPIRED_REASON, NackOutcome, Receipt};
use crate::topic::{Topic, TopicPattern};

const GROUP: &str = "workers";
const ENVELOPE_ID_LEN: usize = 16;
/// Copies of one publish arrive back to back, so a short memory is enough to drop duplicates.
const RECENT_PATTERN_IDS: usize = 64;
/// Due retries moved back to the stream per script call; the rest follow on the next call.
const PROMOTE_BATCH: u32 = 100;

/// Promotes due retries, reclaims one expired lease (burying jobs out of
/// attempts), else reads one new entry. Returns `{}` or
/// `{entry, job_id, payload, attempt, deliveries}`.
const TRY_RESERVE: &str = r#"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local min_idle, max_attempts = tonumber(ARGV[3]), tonumber(ARGV[4])
local dead_limit, reason = tonumber(ARGV[6]), ARGV[7]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, tonumber(ARGV[5]))
for _, member in ipairs(due) do
  redis.call('ZREM', delayed, member)
  local j = cjson.decode(member)
  redis.call('XADD', stream, '*', 'id', j.id, 'payload', j.payload, 'attempt', tostring(j.attempt))
end
local function fields(kv)
  local f = {}
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  return f
end
local cursor = '0-0'
repeat
  local claimed = redis.call('XAUTOCLAIM', stream, group, consumer, min_idle, cursor, 'COUNT', 1)
  cursor = claimed[1]
  for _, e in ipairs(claimed[2]) do
    local id, f = e[1], fields(e[2])
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    local deliveries = tonumber(p[1][4])
    local attempt = tonumber(f.attempt) + deliveries - 1
    if attempt <= max_attempts then
      return {id, f.id, f.payload, tostring(attempt), tostring(deliveries)}
    end
    redis.call('XACK', stream, group, id)
    redis.call('XDEL', stream, id)
    redis.call('RPUSH', dead, cjson.encode({id = f.id, payload = f.payload, attempts = attempt - 1, reason = reason}))
    redis.call('LTRIM', dead, -dead_limit, -1)
  end
until cursor == '0-0'
local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', stream, '>')
if r and r[1] and r[1][2][1] then
  local e = r[1][2][1]
  local f = fields(e[2])
  return {e[1], f.id, f.payload, f.attempt, '1'}
end
return {}
"#;

/// Settles a lease if the caller still holds it: ack, retry (ZADD with
/// backoff) or bury (RPUSH to dead letters). Returns 1, or 0 if the lease is lost.
const SETTLE: &str = r#"
local stream, delayed, dead = KEYS[1], KEYS[2], KEYS[3]
local group, consumer, entry = ARGV[1], ARGV[2], ARGV[3]
local p = redis.call('XPENDING', stream, group, entry, entry, 1, consumer)
if #p == 0 or tonumber(p[1][4]) ~= tonumber(ARGV[4]) then return 0 end
redis.call('XACK', stream, group, entry)
redis.call('XDEL', stream, entry)
if ARGV[5] == 'retry' then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('ZADD', delayed, now + tonumber(ARGV[7]), ARGV[6])
elseif ARGV[5] == 'bury' then
  redis.call('RPUSH', dead, ARGV[6])
  redis.call('LTRIM', dead, -tonumber(ARGV[8]), -1)
end
return 1
"#;

/// A retry waiting in the delayed set; `payload` is JSON text so Lua never re-encodes it.
#[derive(Serialize)]
struct DelayedMember<'a> {
    id: JobId,
    payload: &'a str,
    attempt: u32,
}

/// A dead-letter record as stored in the list (written by Rust and by Lua).
#[derive(Serialize, Deserialize)]
struct DeadRecord {
    id: JobId,
    payload: String,
    attempts: u32,
    reason: String,
}

struct QueueKeys {
    stream: String,
    delayed: String,
    dead: String,
}

pub(crate) struct RedisBus {
    prefix: String,
    options: BusOptions,
    builder: Builder,
    client: Client,
    subscriber: SubscriberClient,
    hub: Arc<Hub>,
    /// Blocking reads stall their connection, so each consumer name gets its own.
    readers: tokio::sync::Mutex<HashMap<String, Client>>,
    groups: Mutex<HashSet<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    closed: AtomicBool,
    try_reserve: Script,
    settle: Script,
}

impl RedisBus {
    pub(crate) async fn connect(url: &str, prefix: &str, options: BusOptions) -> Result<Self, BusError> {
        validate_name("key prefix", prefix)?;
        let config = Config::from_url(url).map_err(|_| BusError::InvalidUrl)?;
        let mut builder = Builder::from_config(config);
        builder
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 10_000, 2))
            // The dispatcher drains this channel without awaiting anything, so a
            // generous buffer only absorbs scheduling hiccups.
            .with_performance_config(|perf| perf.broadcast_channel_capacity = options.event_capacity.max(1024));
        let client = builder.build()?;
        client.init().await?;
        let subscriber = builder.build_subscriber_client()?;
        subscriber.init().await?;

        let channel_prefix = format!("{prefix}:ev:");
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let hub = Hub::new(options.event_capacity, Some(control_tx));
        let messages = subscriber.message_rx();
        let tasks = vec![
            subscriber.manage_subscriptions(),
            tokio::spawn(dispatch_loop(messages, Arc::clone(&hub), channel_prefix.clone())),
            tokio::spawn(control_loop(control_rx, subscriber.clone(), channel_prefix)),
        ];
        Ok(Self {
            prefix: prefix.to_owned(),
            options,
            builder,
            client,
            subscriber,
            hub,
            readers: tokio::sync::Mutex::new(HashMap::new()),
            groups: Mutex::new(HashSet::new()),
            tasks: Mutex::new(tasks),
            closed: AtomicBool::new(false),
            try_reserve: Script::from_lua(TRY_RESERVE),
            settle: Script::from_lua(SETTLE),
        })
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    /// Maps errors after shutdown to `Closed`, since they come from the torn-down connections.
    fn fail(&self, err: fred::error::Error) -> BusError {
        if self.closed.load(Ordering::Acquire) {
            BusError::Closed
        } else {
            BusError::Redis(err)
        }
    }

    fn keys(&self, queue: &str) -> QueueKeys {
        // The hash tag keeps a queue's keys in one cluster slot, as its scripts require.
        let base = format!("{}:q:{{{queue}}}", self.prefix);
        QueueKeys {
            stream: format!("{base}:stream"),
            delayed: format!("{base}:delayed"),
            dead: format!("{base}:dead"),
        }
    }

    fn channel(&self, name: &str) -> String {
        format!("{}:ev:{name}", self.prefix)
    }

    pub(crate) async fn ping(&self) -> Result<(), BusError> {
        self.ensure_open()?;
        let reply: String = self.client.ping(None).await.map_err(|e| self.fail(e))?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(BusError::Protocol(format!("PING answered `{reply}`")))
        }
    }

    pub(crate) async fn shutdown(&self) {
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.hub.close();
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in tasks {
            task.abort();
        }
        let readers: Vec<Client> = self.readers.lock().await.drain().map(|(_, c)| c).collect();
        for client in readers.iter().chain([&self.client]) {
            if let Err(err) = client.quit().await {
                tracing::debug!(error = %err, "redis quit failed during shutdown");
            }
        }
        if let Err(err) = self.subscriber.quit().await {
            tracing::debug!(error = %err, "redis subscriber quit failed during shutdown");
        }
    }

    pub(crate) async fn publish(&self, topic: &Topic, payload: Bytes) -> Result<(), BusError> {
        self.ensure_open()?;
        let mut envelope = Vec::with_capacity(ENVELOPE_ID_LEN + payload.len());
        envelope.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        envelope.extend_from_slice(&payload);
        let _receivers: i64 = self
            .client
            .publish(self.channel(topic.as_str()), Value::Bytes(Bytes::from(envelope)))
            .await
            .map_err(|e| self.fail(e))?;
        Ok(())
    }

    pub(crate) async fn subscribe_topic(&self, topic: &Topic) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        self.hub.subscribe(SubKey::Exact(topic.clone())).await
    }

    pub(crate) async fn subscribe_pattern(&self, pattern: &TopicPattern) -> Result<Subscription, BusError> {
        self.ensure_open()?;
        self.hub.subscribe(SubKey::Pattern(pattern.clone())).await
    }

    pub(crate) async fn enqueue(&self, queue: &str, payload: serde_json::Value) -> Result<JobId, BusError> {
        self.ensure_open()?;
        let id = JobId::new();
        let fields: Vec<(&str, String)> = vec![
            ("id", id.to_string()),
            ("payload", serde_json::to_string(&payload)?),
            ("attempt", "1".to_owned()),
        ];
        let _entry: String = self
            .client
            .xadd(self.keys(queue).stream, false, None, "*", fields)
            .await
            .map_err(|e| self.fail(e))?;
        Ok(id)
    }

    async fn ensure_group(&self, queue: &str) -> Result<(), BusError> {
        if self.groups.lock().unwrap_or_else(|p| p.into_inner()).contains(queue) {
            return Ok(());
        }
        // From id 0 so jobs enqueued before the group existed are delivered too.
        let created: Result<Value, _> = self
            .client
            .xgroup_create(self.keys(queue).stream, GROUP, "0", true)
            .await;
        match created {
            Ok(_) => {}
            Err(err) if err.details().contains("BUSYGROUP") => {}
            Err(err) => return Err(self.fail(err)),
        }
        self.groups
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(queue.to_owned());
        Ok(())
    }

    fn forget_group_on_nogroup(&self, queue: &str, err: &fred::error::Error) -> bool {
        // The stream was deleted behind our back (FLUSHDB, manual cleanup): recreate it.
        let missing = err.details().contains("NOGROUP");
        if missing {
            self.groups.lock().unwrap_or_else(|p| p.into_inner()).remove(queue);
        }
        missing
    }

    pub(crate) async fn reserve(
        &self,
        queue: &str,
        consumer: &str,
        max_wait: Duration,
    ) -> Result<Option<Job>, BusError> {
        validate_name("consumer", consumer)?;
        let give_up = Instant::now() + max_wait;
        loop {
            self.ensure_open()?;
            self.ensure_group(queue).await?;
            match self.try_reserve(queue, consumer).await {
                Ok(Some(job)) => return Ok(Some(job)),
                Ok(None) => {}
                Err(BusError::Redis(err)) if self.forget_group_on_nogroup(queue, &err) => continue,
                Err(err) => return Err(err),
            }
            let remaining = give_up.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(None);
            }
            // BLOCK 0 would wait forever, so never ask for less than 1 ms.
            let block_ms = remaining
                .min(self.options.poll_interval)
                .as_millis()
                .clamp(1, u64::MAX as u128) as u64;
            match self.blocking_read(queue, consumer, block_ms).await {
                Ok(Some(job)) => return Ok(Some(job)),
                Ok(None) => {}
                Err(BusError::Redis(err)) if self.forget_group_on_nogroup(queue, &err) => {}
                Err(err) => return Err(err),
            }
        }
    }

    async fn try_reserve(&self, queue: &str, consumer: &str) -> Result<Option<Job>, BusError> {
        let keys = self.keys(queue);
        let policy = self.options.retry_for(queue);
        let args = vec![
            GROUP.to_owned(),
            consumer.to_owned(),
            self.options.visibility_timeout.as_millis().to_string(),
            policy.max_attempts().to_string(),
            PROMOTE_BATCH.to_string(),
            self.options.dead_letter_limit.max(1).to_string(),
            LEASE_EXPIRED_REASON.to_owned(),
        ];
        let reply: Vec<String> = self
            .try_reserve
            .evalsha_with_reload(&self.client, vec![keys.stream, keys.delayed, keys.dead], args)
            .await
            .map_err(|e| self.fail(e))?;
        match reply.as_slice() {
            [] => Ok(None),
            [entry, id, payload, attempt, deliveries] => Ok(Some(
                self.job(queue, consumer, entry, id, payload, attempt, deliveries)?,
            )),
            other => Err(BusError::Protocol(format!(
                "reserve script returned {} fields",
                other.len()
            ))),
        }
    }

    async fn reader(&self, consumer: &str) -> Result<Client, BusError> {
        let mut readers = self.readers.lock().await;
        if let Some(client) = readers.get(consumer) {
            return Ok(client.clone());
        }
        let client = self.builder.build()?;
        client.init().await?;
        readers.insert(consumer.to_owned(), client.clone());
        Ok(client)
    }

    async fn blocking_read(&self, queue: &str, consumer: &str, block_ms: u64) -> Result<Option<Job>, BusError> {
        let reader = self.reader(consumer).await?;
        let reply: Value = reader
            .xreadgroup(
                GROUP,
                consumer,
                Some(1),
                Some(block_ms),
                false,
                self.keys(queue).stream,
                ">",
            )
            .await
            .map_err(|e| self.fail(e))?;
        let Some((entry, fields)) = first_entry(reply)? else {
            return Ok(None);
        };
        let field = |name: &str| {
            fields
                .chunks_exact(2)
                .find(|kv| kv[0] == name)
                .map(|kv| kv[1].as_str())
                .ok_or_else(|| BusError::Protocol(format!("stream entry {entry} has no `{name}` field")))
        };
        Ok(Some(self.job(
            queue,
            consumer,
            &entry,
            field("id")?,
            field("payload")?,
            field("attempt")?,
            "1",
        )?))
    }

    #[allow(clippy::too_many_arguments)]
    fn job(
        &self,
        queue: &str,
        consumer: &str,
        entry: &str,
        id: &str,
        payload: &str,
        attempt: &str,
        deliveries: &str,
    ) -> Result<Job, BusError> {
        let bad = |what: &str| BusError::Protocol(format!("stream entry {entry} has a malformed {what}"));
        Ok(Job {
            id: id.parse().map_err(|_| bad("job id"))?,
            queue: queue.to_owned(),
            payload: serde_json::from_str(payload)?,
            attempt: attempt.parse().map_err(|_| bad("attempt"))?,
            receipt: Receipt::Redis {
                entry: entry.to_owned(),
                consumer: consumer.to_owned(),
                deliveries: deliveries.parse().map_err(|_| bad("delivery count"))?,
            },
        })
    }

    async fn settle(&self, job: &Job, mode: &str, record: String, backoff: Duration) -> Result<(), BusError> {
        self.ensure_open()?;
        let Receipt::Redis {
            entry,
            consumer,
            deliveries,
        } = &job.receipt
        else {
            return Err(BusError::LeaseLost { job: job.id });
        };
        let keys = self.keys(&job.queue);
        let args = vec![
            GROUP.to_owned(),
            consumer.clone(),
            entry.clone(),
            deliveries.to_string(),
            mode.to_owned(),
            record,
            backoff.as_millis().to_string(),
            self.options.dead_letter_limit.max(1).to_string(),
        ];
        let settled: i64 = self
            .settle
            .evalsha_with_reload(&self.client, vec![keys.stream, keys.delayed, keys.dead], args)
            .await
            .map_err(|e| self.fail(e))?;
        if settled == 1 {
            Ok(())
        } else {
            Err(BusError::LeaseLost { job: job.id })
        }
    }

    pub(crate) async fn ack(&self, job: &Job) -> Result<(), BusError> {
        self.settle(job, "ack", String::new(), Duration::ZERO).await
    }

    pub(crate) async fn nack(&self, job: &Job, reason: &str) -> Result<NackOutcome, BusError> {
        let policy = self.options.retry_for(&job.queue);
        let payload = serde_json::to_string(&job.payload)?;
        if job.attempt >= policy.max_attempts() {
            let record = DeadRecord {
                id: job.id,
                payload,
                attempts: job.attempt,
                reason: reason.to_owned(),
            };
            self.settle(job, "bury", serde_json::to_string(&record)?, Duration::ZERO)
                .await?;
            return Ok(NackOutcome::DeadLettered);
        }
        let delay = policy.backoff(job.attempt);
        let attempt = job.attempt + 1;
        let member = serde_json::to_string(&DelayedMember {
            id: job.id,
            payload: &payload,
            attempt,
        })?;
        self.settle(job, "retry", member, delay).await?;
        Ok(NackOutcome::Retry { attempt, delay })
    }

    pub(crate) async fn failed_jobs(&self, queue: &str) -> Result<Vec<FailedJob>, BusError> {
        self.ensure_open()?;
        let records: Vec<String> = self
            .client
            .lrange(self.keys(queue).dead, 0, -1)
            .await
            .map_err(|e| self.fail(e))?;
        records
            .iter()
            .map(|raw| {
                let record: DeadRecord = serde_json::from_str(raw)?;
                Ok(FailedJob {
                    id: record.id,
                    payload: serde_json::from_str(&record.payload)?,
                    attempts: record.attempts,
                    reason: record.reason,
                })
            })
            .collect()
    }
}

/// The first entry of an `XREADGROUP` reply for one stream: `nil` on timeout,
/// else `[[stream, [[id, [field, value, ...]], ...]]]` (the client speaks RESP2).
fn first_entry(reply: Value) -> Result<Option<(String, Vec<String>)>, BusError> {
    let malformed = || BusError::Protocol("malformed XREADGROUP reply".to_owned());
    let streams = match reply {
        Value::Null => return Ok(None),
        Value::Array(streams) => streams,
        _ => return Err(malformed()),
    };
    // fred unwraps a one-element array, so one stream may arrive as [name, entries].
    let entries = match streams.as_slice() {
        [Value::Array(pair)] if pair.len() == 2 => pair[1].clone(),
        [Value::String(_), entries] => entries.clone(),
        [] => return Ok(None),
        _ => return Err(malformed()),
    };
    let Value::Array(entries) = entries else {
        return Err(malformed());
    };
    let Some(Value::Array(entry)) = entries.into_iter().next() else {
        return Ok(None);
    };
    let [id, fields] = <[Value; 2]>::try_from(entry).map_err(|_| malformed())?;
    let id = id.as_string().ok_or_else(malformed)?;
    let Value::Array(fields) = fields else {
        return Err(malformed());
    };
    let fields = fields
        .iter()
        .map(|f| f.as_string().ok_or_else(malformed))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some((id, fields)))
}

/// Routes Redis messages to local subscriptions.
async fn dispatch_loop(mut messages: broadcast::Receiver<Message>, hub: Arc<Hub>, channel_prefix: String) {
    let mut recent: VecDeque<[u8; ENVELOPE_ID_LEN]> = VecDeque::with_capacity(RECENT_PATTERN_IDS);
    loop {
        let message = match messages.recv().await {
            Ok(message) => message,
            Err(broadcast::error::RecvError::Lagged(lost)) => {
                tracing::warn!(lost, "bus dispatcher fell behind redis; events were dropped");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        let Some(topic) = message
            .channel
            .strip_prefix(channel_prefix.as_str())
            .and_then(|t| Topic::parse(t).ok())
        else {
            continue;
        };
        let Some(raw) = message.value.as_bytes() else { continue };
        let Some((id, payload)) = raw.split_first_chunk::<ENVELOPE_ID_LEN>() else {
            continue;
        };
        let event = BusEvent {
            topic,
            payload: Bytes::copy_from_slice(payload),
        };
        match message.kind {
            MessageKind::Message => {
                hub.dispatch_exact(&event);
            }
            MessageKind::PMessage => {
                if recent.contains(id) {
                    continue;
                }
                if recent.len() >= RECENT_PATTERN_IDS {
                    recent.pop_front();
                }
                recent.push_back(*id);
                hub.dispatch_patterns(&event);
            }
            _ => {}
        }
    }
    hub.close();
}

/// Applies subscription changes to the Redis connection in the order the hub made them.
async fn control_loop(mut control: mpsc::UnboundedReceiver<Control>, subscriber: SubscriberClient, prefix: String) {
    while let Some(command) = control.recv().await {
        match command {
            Control::Subscribe(key, state) => {
                let mut result = match &key {
                    SubKey::Exact(topic) => subscriber.subscribe(format!("{prefix}{topic}")).await,
                    SubKey::Pattern(pattern) => subscriber.psubscribe(format!("{prefix}{pattern}")).await,
                };
                // fred resolves (P)SUBSCRIBE once it is written and drops Redis's
                // confirmation, so an event published right after could still be
                // missed. A PING on the same connection is answered only after
                // Redis has processed the subscribe: wait for it.
                if result.is_ok() {
                    result = subscriber.ping::<Value>(None).await.map(drop);
                }
                state.send_replace(match result {
                    Ok(()) => SubState::Ready,
                    Err(err) => SubState::Failed(err.to_string()),
                });
            }
            Control::Unsubscribe(key) => {
                let result = match &key {
                    SubKey::Exact(topic) => subscriber.unsubscribe(format!("{prefix}{topic}")).await,
                    SubKey::Pattern(pattern) => subscriber.punsubscribe(format!("{prefix}{pattern}")).await,
                };
                if let Err(err) = result {
                    tracing::warn!(?key, error = %err, "redis unsubscribe failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Value {
        Value::String(v.into())
    }

    #[test]
    fn parses_xreadgroup_replies() {
        let entry = Value::Array(vec![
            s("1-0"),
            Value::Array(vec![s("id"), s("x"), s("attempt"), s("2")]),
        ]);
        let nested = Value::Array(vec![Value::Array(vec![s("k"), Value::Array(vec![entry.clone()])])]);
        let expected = Some((
            "1-0".to_owned(),
            vec!["id".to_owned(), "x".into(), "attempt".into(), "2".into()],
        ));
        assert_eq!(first_entry(nested).expect("nested"), expected);
        let flattened = Value::Array(vec![s("k"), Value::Array(vec![entry])]);
        assert_eq!(first_entry(flattened).expect("flattened"), expected);
        assert_eq!(first_entry(Value::Null).expect("timeout"), None);
        assert!(matches!(first_entry(Value::Integer(1)), Err(BusError::Protocol(_))));
    }
}
