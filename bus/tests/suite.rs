//! The shared behaviour suite: every case runs against the in-process bus and
//! against Redis (which must be reachable: these tests fail, not skip, without it).
//! Each Redis test uses its own random key prefix and deletes its keys at the end.

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use fred::prelude::*;
use serde_json::json;
use switchboard_bus::{Bus, BusError, BusOptions, NackOutcome, RetryPolicy, Topic, TopicPattern};
use switchboard_domain::{CallId, ConversationId, TenantId};

/// Generous bound so a broken bus fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(30);
const LONG_WAIT: Duration = Duration::from_secs(10);
const SHORT_WAIT: Duration = Duration::from_millis(100);

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn fast_options() -> BusOptions {
    BusOptions {
        retry: RetryPolicy {
            max_attempts: 3,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
        visibility_timeout: Duration::from_secs(60),
        poll_interval: Duration::from_millis(20),
        ..BusOptions::default()
    }
}

struct Harness {
    bus: Bus,
    prefix: Option<String>,
}

impl Harness {
    fn in_process(options: BusOptions) -> Self {
        Self {
            bus: Bus::in_process_with(options),
            prefix: None,
        }
    }

    async fn redis(options: BusOptions) -> Self {
        let prefix = format!("sbtest-{}", uuid::Uuid::new_v4().simple());
        let bus = Bus::redis_with(&redis_url(), &prefix, options)
            .await
            .unwrap_or_else(|err| panic!("Redis must be reachable (SWITCHBOARD_TEST_REDIS_URL): {err}"));
        Self {
            bus,
            prefix: Some(prefix),
        }
    }

    /// Another node on the same backend (Redis: same prefix; in-process: same bus).
    async fn peer(&self, options: BusOptions) -> Bus {
        match &self.prefix {
            Some(prefix) => Bus::redis_with(&redis_url(), prefix, options)
                .await
                .expect("peer connects"),
            None => self.bus.clone(),
        }
    }

    async fn finish(self) {
        self.bus.shutdown().await;
        if let Some(prefix) = self.prefix {
            // Best effort: a leftover random prefix harms nobody.
            let client = Client::new(Config::from_url(&redis_url()).expect("url"), None, None, None);
            if client.init().await.is_ok() {
                let keys: Vec<String> = client
                    .custom(fred::cmd!("KEYS"), vec![format!("{prefix}:*")])
                    .await
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<i64, _> = client.del(keys).await;
                }
                let _ = client.quit().await;
            }
        }
    }
}

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

async fn recv_json(sub: &mut switchboard_bus::Subscription) -> (Topic, serde_json::Value) {
    let event = bounded("recv", sub.recv()).await.expect("subscription open");
    let value = event.json().expect("json payload");
    (event.topic, value)
}

fn topic(s: &str) -> Topic {
    Topic::parse(s).expect("valid topic")
}

async fn publish_subscribe_isolates_topics(h: &Harness) {
    let (a, b) = (topic("t.a"), topic("t.b"));
    let mut sub_a = h.bus.subscribe(&a).await.expect("subscribe a");
    let mut sub_b = h.bus.subscribe(&b).await.expect("subscribe b");
    h.bus.publish_json(&b, &json!("b1")).await.expect("publish");
    h.bus.publish_json(&a, &json!("a1")).await.expect("publish");
    h.bus.publish(&a, &b"\"a2\""[..]).await.expect("publish bytes");
    // b1 was published first, so had it leaked to `a` it would be read first.
    assert_eq!(recv_json(&mut sub_a).await, (a.clone(), json!("a1")));
    assert_eq!(recv_json(&mut sub_a).await, (a, json!("a2")));
    assert_eq!(recv_json(&mut sub_b).await, (b, json!("b1")));
    assert_eq!(sub_a.lagged(), 0);
}

async fn pattern_subscriptions(h: &Harness) {
    let (t1, t2) = (TenantId::new(), TenantId::new());
    let (c1, c3, c4) = (CallId::new(), CallId::new(), CallId::new());
    let mut calls = h
        .bus
        .psubscribe(&TopicPattern::tenant_calls(t1))
        .await
        .expect("psubscribe calls");
    let mut tenant = h
        .bus
        .psubscribe(&TopicPattern::tenant(t1))
        .await
        .expect("psubscribe tenant");
    let mut exact = h.bus.subscribe(&Topic::call(t1, c1)).await.expect("subscribe exact");

    let conversation = Topic::conversation(t1, ConversationId::new());
    h.bus
        .publish_json(&Topic::call(t1, c1), &json!(1))
        .await
        .expect("publish");
    h.bus.publish_json(&conversation, &json!(2)).await.expect("publish");
    h.bus
        .publish_json(&Topic::call(t2, CallId::new()), &json!(3))
        .await
        .expect("publish");
    h.bus
        .publish_json(&Topic::call(t1, c3), &json!(4))
        .await
        .expect("publish");
    h.bus
        .publish_json(&Topic::call(t1, c4), &json!(5))
        .await
        .expect("publish");
    h.bus
        .publish_json(&Topic::call(t1, c1), &json!(6))
        .await
        .expect("publish");

    let (topic, value) = recv_json(&mut calls).await;
    assert_eq!((topic.call_parts(), value), (Some((t1, c1)), json!(1)));
    assert_eq!(
        recv_json(&mut calls).await.1,
        json!(4),
        "conversation and other tenant are filtered out"
    );
    assert_eq!(recv_json(&mut calls).await.1, json!(5));
    assert_eq!(recv_json(&mut calls).await.1, json!(6));

    // Overlapping patterns and an exact subscription each see every event exactly once.
    let seen: Vec<_> = [
        recv_json(&mut tenant).await,
        recv_json(&mut tenant).await,
        recv_json(&mut tenant).await,
    ]
    .into_iter()
    .map(|(_, v)| v)
    .collect();
    assert_eq!(seen, vec![json!(1), json!(2), json!(4)]);
    assert_eq!(recv_json(&mut tenant).await.1, json!(5));
    assert_eq!(recv_json(&mut tenant).await.1, json!(6));
    assert_eq!(recv_json(&mut exact).await.1, json!(1));
    assert_eq!(recv_json(&mut exact).await.1, json!(6));
}

async fn multiple_subscribers(h: &Harness) {
    let t = topic("shared.topic");
    let mut first = h.bus.subscribe(&t).await.expect("subscribe");
    let mut second = h.bus.subscribe(&t).await.expect("subscribe");
    let peer = h.peer(BusOptions::default()).await;
    let mut on_peer = peer.subscribe(&t).await.expect("subscribe on peer");
    h.bus.publish_json(&t, &json!("one")).await.expect("publish");
    for sub in [&mut first, &mut second, &mut on_peer] {
        assert_eq!(recv_json(sub).await.1, json!("one"));
    }
    drop(first);
    h.bus.publish_json(&t, &json!("two")).await.expect("publish");
    assert_eq!(
        recv_json(&mut second).await.1,
        json!("two"),
        "dropping one subscriber keeps the others"
    );
    assert_eq!(recv_json(&mut on_peer).await.1, json!("two"));
    drop(second);
    // The last local subscriber is gone; a new one must still work (re-subscribe path).
    let mut again = h.bus.subscribe(&t).await.expect("resubscribe");
    peer.publish_json(&t, &json!("three")).await.expect("publish from peer");
    assert_eq!(recv_json(&mut again).await.1, json!("three"));
    if h.prefix.is_some() {
        peer.shutdown().await;
    }
}

async fn slow_subscriber_does_not_block_publisher(h: &Harness) {
    let t = topic("busy.topic");
    let marker = topic("busy.done");
    let mut slow = h.bus.subscribe(&t).await.expect("subscribe");
    let mut done = h.bus.subscribe(&marker).await.expect("subscribe marker");
    const TOTAL: u64 = 40;
    bounded("publishing past a full subscriber", async {
        for i in 0..TOTAL {
            h.bus.publish_json(&t, &json!(i)).await.expect("publish");
        }
        h.bus
            .publish_json(&marker, &json!("done"))
            .await
            .expect("publish marker");
    })
    .await;
    // Events reach subscribers in publish order, so after the marker every event was dispatched.
    assert_eq!(recv_json(&mut done).await.1, json!("done"));
    let mut received = Vec::new();
    loop {
        let value = recv_json(&mut slow).await.1;
        received.push(value.as_u64().expect("number"));
        if value == json!(TOTAL - 1) {
            break;
        }
    }
    assert!(slow.lagged() > 0, "a full subscriber must lose events, not block");
    assert_eq!(
        received.len() as u64 + slow.lagged(),
        TOTAL,
        "every event is either received or counted as lost"
    );
    assert!(
        received.windows(2).all(|w| w[0] < w[1]),
        "the newest events are kept, in order: {received:?}"
    );
}

async fn enqueue_reserve_ack(h: &Harness) {
    let id = h.bus.enqueue("mail", json!({"to": "a@b.c"})).await.expect("enqueue");
    let job = h
        .bus
        .reserve("mail", "w1", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("a job");
    assert_eq!((job.id, job.queue.as_str(), job.attempt), (id, "mail", 1));
    assert_eq!(job.payload, json!({"to": "a@b.c"}));
    h.bus.ack(&job).await.expect("ack");
    assert!(
        matches!(h.bus.ack(&job).await, Err(BusError::LeaseLost { job }) if job == id),
        "double ack is refused"
    );
    assert!(
        h.bus
            .reserve("mail", "w1", SHORT_WAIT)
            .await
            .expect("reserve")
            .is_none(),
        "acked jobs are gone"
    );
    assert!(
        h.bus
            .reserve("other", "w1", SHORT_WAIT)
            .await
            .expect("reserve")
            .is_none(),
        "queues are separate"
    );
    assert!(h.bus.failed_jobs("mail").await.expect("failed").is_empty());

    // A waiting consumer wakes up for a job enqueued while it waits.
    let waiting = tokio::spawn({
        let bus = h.bus.clone();
        async move { bus.reserve("mail", "w2", LONG_WAIT).await }
    });
    tokio::task::yield_now().await;
    let late = h.bus.enqueue("mail", json!("late")).await.expect("enqueue");
    let job = bounded("waiting reserve", waiting)
        .await
        .expect("join")
        .expect("reserve")
        .expect("job");
    assert_eq!(job.id, late);
    h.bus.ack(&job).await.expect("ack");
}

async fn nack_retries_then_dead_letters(h: &Harness) {
    let id = h.bus.enqueue("hooks", json!({"n": 1})).await.expect("enqueue");
    let job = h
        .bus
        .reserve("hooks", "w", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("job");
    assert_eq!(job.attempt, 1);
    let outcome = h.bus.nack(&job, "boom 1").await.expect("nack");
    assert_eq!(
        outcome,
        NackOutcome::Retry {
            attempt: 2,
            delay: Duration::from_millis(10)
        }
    );
    assert!(
        matches!(h.bus.ack(&job).await, Err(BusError::LeaseLost { .. })),
        "a nacked lease is settled"
    );

    let job = h
        .bus
        .reserve("hooks", "w", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("retried job");
    assert_eq!((job.id, job.attempt, &job.payload), (id, 2, &json!({"n": 1})));
    let outcome = h.bus.nack(&job, "boom 2").await.expect("nack");
    assert_eq!(
        outcome,
        NackOutcome::Retry {
            attempt: 3,
            delay: Duration::from_millis(20)
        }
    );

    let job = h
        .bus
        .reserve("hooks", "w", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("retried job");
    assert_eq!((job.id, job.attempt), (id, 3));
    assert_eq!(
        h.bus.nack(&job, "final failure").await.expect("nack"),
        NackOutcome::DeadLettered
    );

    assert!(
        h.bus
            .reserve("hooks", "w", SHORT_WAIT)
            .await
            .expect("reserve")
            .is_none(),
        "dead jobs are not retried"
    );
    let failed = h.bus.failed_jobs("hooks").await.expect("failed jobs");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].id, failed[0].attempts, failed[0].reason.as_str()),
        (id, 3, "final failure")
    );
    assert_eq!(failed[0].payload, json!({"n": 1}));
}

async fn per_queue_retry_policy(h: &Harness) {
    let id = h.bus.enqueue("once", json!(null)).await.expect("enqueue");
    let job = h
        .bus
        .reserve("once", "w", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("job");
    assert_eq!(
        h.bus.nack(&job, "no retries here").await.expect("nack"),
        NackOutcome::DeadLettered
    );
    assert_eq!(h.bus.failed_jobs("once").await.expect("failed")[0].id, id);
}

async fn visibility_timeout_redelivers(h: &Harness) {
    let id = h.bus.enqueue("slow", json!("work")).await.expect("enqueue");
    let first = h
        .bus
        .reserve("slow", "c1", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("job");
    assert_eq!(first.attempt, 1);
    // c1 neither acks nor nacks: after the visibility timeout another consumer gets it.
    let second = h
        .bus
        .reserve("slow", "c2", LONG_WAIT)
        .await
        .expect("reserve")
        .expect("redelivered job");
    assert_eq!((second.id, second.attempt, &second.payload), (id, 2, &json!("work")));
    assert!(
        matches!(h.bus.ack(&first).await, Err(BusError::LeaseLost { .. })),
        "the expired lease cannot ack"
    );

    // Letting the last allowed attempt expire buries the job: it is never
    // delivered again, and shows up among the failed jobs (polled, so a
    // stalled machine cannot make the check race the burial).
    let deadline = tokio::time::Instant::now() + LONG_WAIT;
    let failed = loop {
        assert!(
            h.bus
                .reserve("slow", "c3", Duration::from_millis(200))
                .await
                .expect("reserve")
                .is_none(),
            "a job past its last attempt was delivered again"
        );
        let failed = h.bus.failed_jobs("slow").await.expect("failed");
        if !failed.is_empty() || tokio::time::Instant::now() > deadline {
            break failed;
        }
    };
    assert_eq!(failed.len(), 1);
    assert_eq!((failed[0].id, failed[0].attempts), (id, 2));
    assert!(failed[0].reason.contains("visibility timeout"), "{}", failed[0].reason);
    assert!(matches!(h.bus.ack(&second).await, Err(BusError::LeaseLost { .. })));
}

async fn consumers_never_share_a_job(h: &Harness) {
    const JOBS: usize = 30;
    let mut expected = HashSet::new();
    for n in 0..JOBS {
        expected.insert(h.bus.enqueue("fanout", json!(n)).await.expect("enqueue"));
    }
    let peer = h.peer(fast_options()).await;
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let bus = if w % 2 == 0 { h.bus.clone() } else { peer.clone() };
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(job) = bus
                    .reserve("fanout", &format!("worker-{w}"), Duration::from_millis(300))
                    .await
                    .expect("reserve")
                {
                    assert_eq!(job.attempt, 1, "no job is redelivered");
                    got.push(job.id);
                    bus.ack(&job).await.expect("each job is acked by its only holder");
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(bounded("worker", worker).await.expect("join"));
    }
    assert_eq!(all.len(), JOBS, "every job delivered exactly once");
    assert_eq!(all.into_iter().collect::<HashSet<_>>(), expected);
    if h.prefix.is_some() {
        peer.shutdown().await;
    }
}

async fn ping_kind_and_shutdown(h: &Harness, kind: &str) {
    assert_eq!(h.bus.kind(), kind);
    h.bus.ping().await.expect("ping");
    let mut sub = h.bus.subscribe(&topic("x")).await.expect("subscribe");
    h.bus.shutdown().await;
    assert!(bounded("recv after shutdown", sub.recv()).await.is_none());
    assert!(matches!(h.bus.ping().await, Err(BusError::Closed)));
    assert!(matches!(h.bus.enqueue("q", json!(1)).await, Err(BusError::Closed)));
    assert!(matches!(
        h.bus.publish(&topic("x"), &b"1"[..]).await,
        Err(BusError::Closed)
    ));
    assert!(matches!(h.bus.subscribe(&topic("x")).await, Err(BusError::Closed)));
}

async fn names_are_validated(h: &Harness) {
    assert!(matches!(
        h.bus.enqueue("bad queue", json!(1)).await,
        Err(BusError::InvalidName { kind: "queue", .. })
    ));
    assert!(matches!(
        h.bus.reserve("q", "bad:consumer", SHORT_WAIT).await,
        Err(BusError::InvalidName { kind: "consumer", .. })
    ));
}

macro_rules! suite {
    ($backend:ident, $kind:literal, |$options:ident| $make:expr) => {
        mod $backend {
            use super::*;

            async fn harness($options: BusOptions) -> Harness {
                $make
            }

            #[tokio::test]
            async fn publish_subscribe_isolates_topics() {
                let h = harness(fast_options()).await;
                super::publish_subscribe_isolates_topics(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn pattern_subscriptions() {
                let h = harness(fast_options()).await;
                super::pattern_subscriptions(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn multiple_subscribers() {
                let h = harness(fast_options()).await;
                super::multiple_subscribers(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn slow_subscriber_does_not_block_publisher() {
                let h = harness(BusOptions {
                    event_capacity: 4,
                    ..fast_options()
                })
                .await;
                super::slow_subscriber_does_not_block_publisher(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn enqueue_reserve_ack() {
                let h = harness(fast_options()).await;
                super::enqueue_reserve_ack(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn nack_retries_then_dead_letters() {
                let h = harness(fast_options()).await;
                super::nack_retries_then_dead_letters(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn per_queue_retry_policy() {
                let once = RetryPolicy {
                    max_attempts: 1,
                    ..fast_options().retry
                };
                let h = harness(fast_options().with_queue_retry("once", once)).await;
                super::per_queue_retry_policy(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn visibility_timeout_redelivers() {
                let options = BusOptions {
                    visibility_timeout: Duration::from_millis(50),
                    retry: RetryPolicy {
                        max_attempts: 2,
                        ..fast_options().retry
                    },
                    ..fast_options()
                };
                let h = harness(options).await;
                super::visibility_timeout_redelivers(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn consumers_never_share_a_job() {
                let h = harness(fast_options()).await;
                super::consumers_never_share_a_job(&h).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn ping_kind_and_shutdown() {
                let h = harness(fast_options()).await;
                super::ping_kind_and_shutdown(&h, $kind).await;
                h.finish().await;
            }

            #[tokio::test]
            async fn names_are_validated() {
                let h = harness(fast_options()).await;
                super::names_are_validated(&h).await;
                h.finish().await;
            }
        }
    };
}

suite!(in_process, "in-process", |options| Harness::in_process(options));
suite!(redis, "redis", |options| Harness::redis(options).await);
