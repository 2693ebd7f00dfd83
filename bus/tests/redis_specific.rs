//! Redis-only behaviour: connection errors that keep passwords out of messages,
//! and isolation between key prefixes.

use std::time::Duration;

use serde_json::json;
use switchboard_bus::{Bus, BusError, Topic};

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn prefix() -> String {
    format!("sbtest-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn connection_errors_do_not_reveal_the_password() {
    let bad_url = Bus::redis("redis://:hunter2@127.0.0.1:notaport", "p")
        .await
        .expect_err("bad url");
    assert!(matches!(bad_url, BusError::InvalidUrl));
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let refused = Bus::redis("redis://:hunter2@127.0.0.1:1", "p")
        .await
        .expect_err("refused");
    assert!(matches!(refused, BusError::Redis(_)), "{refused:?}");
    for err in [bad_url, refused] {
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    }
}

#[tokio::test]
async fn prefixes_isolate_events_and_jobs() {
    let (pa, pb) = (prefix(), prefix());
    let a = Bus::redis(&redis_url(), &pa).await.expect("Redis must be reachable");
    let b = Bus::redis(&redis_url(), &pb).await.expect("Redis must be reachable");
    let topic = Topic::parse("same.topic").expect("topic");
    let mut on_b = b.subscribe(&topic).await.expect("subscribe");
    a.publish_json(&topic, &json!("from a")).await.expect("publish");
    b.publish_json(&topic, &json!("from b")).await.expect("publish");
    let first = tokio::time::timeout(Duration::from_secs(30), on_b.recv())
        .await
        .expect("recv")
        .expect("event");
    assert_eq!(
        first.json::<String>().expect("json"),
        "from b",
        "a's event must not cross prefixes"
    );

    a.enqueue("jobs", json!(1)).await.expect("enqueue");
    assert!(
        b.reserve("jobs", "w", Duration::from_millis(100))
            .await
            .expect("reserve")
            .is_none()
    );
    let job = a
        .reserve("jobs", "w", Duration::from_secs(10))
        .await
        .expect("reserve")
        .expect("job");
    a.ack(&job).await.expect("ack");
    a.shutdown().await;
    b.shutdown().await;
    cleanup(&[pa, pb]).await;
}

/// Best effort: leftover random prefixes harm nobody.
async fn cleanup(prefixes: &[String]) {
    use fred::prelude::*;
    let client = Client::new(Config::from_url(&redis_url()).expect("url"), None, None, None);
    if client.init().await.is_err() {
        return;
    }
    for prefix in prefixes {
        let keys: Vec<String> = client
            .custom(fred::cmd!("KEYS"), vec![format!("{prefix}:*")])
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = client.del(keys).await;
        }
    }
    let _ = client.quit().await;
}
