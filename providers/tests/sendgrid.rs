//! The SendGrid adapter against the local fake SendGrid server: wire format,
//! success, typed errors, the retries that are safe and the ones that are not.

use std::time::Duration;

use switchboard_fakes::sendgrid::{FakeSendGrid, SendGridReply};
use switchboard_providers::email::{Email, EmailSender, SendGrid, SendGridConfig};
use switchboard_providers::{ProviderErrorKind, SecretString};

const KEY: &str = "SG.test-key";

/// The per-attempt budget where the outcome is not a timeout: generous, so
/// a stalled test machine cannot turn an answer into a `Timeout` or cut off
/// the reading of an error body.
const BUDGET: Duration = Duration::from_secs(10);

fn adapter(fake: &FakeSendGrid) -> SendGrid {
    let config = SendGridConfig {
        timeout: BUDGET,
        retry_backoff: Duration::from_millis(10),
        ..SendGridConfig::new(SecretString::from(KEY.to_owned())).with_base_url(fake.base_url())
    };
    SendGrid::new(config).expect("adapter")
}

fn email() -> Email {
    Email {
        to: "owner@example.com".into(),
        from: "calls@switchboard.example".into(),
        subject: "Call summary: booked".into(),
        text: "The caller booked a table for two.".into(),
        html: Some("<p>The caller booked a table for two.</p>".into()),
    }
}

#[tokio::test]
async fn accepted_mail_has_the_v3_shape_and_bearer_key() {
    let fake = FakeSendGrid::start().await;
    adapter(&fake).send(email()).await.expect("sent");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.authorization.as_deref(), Some("Bearer SG.test-key"));
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    assert_eq!(r.to(), vec!["owner@example.com".to_owned()]);
    assert_eq!(r.from(), Some("calls@switchboard.example"));
    assert_eq!(r.subject(), Some("Call summary: booked"));
    assert_eq!(r.text(), Some("The caller booked a table for two."));
    assert_eq!(r.html(), Some("<p>The caller booked a table for two.</p>"));
    let types: Vec<_> = r.body["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|c| c["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(types, ["text/plain", "text/html"]);
}

#[tokio::test]
async fn rate_limits_are_retried_until_accepted() {
    let fake = FakeSendGrid::start().await;
    fake.push_status(429);
    fake.push_status(429);
    adapter(&fake).send(email()).await.expect("sent after two 429s");
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn rate_limits_give_up_after_max_retries() {
    let fake = FakeSendGrid::start().await;
    for _ in 0..5 {
        fake.push_status(429);
    }
    let err = adapter(&fake).send(email()).await.expect_err("rate limited");
    assert_eq!(err.kind, ProviderErrorKind::RateLimited);
    assert!(err.is_retryable());
    // One attempt plus the default two retries.
    assert_eq!(fake.requests().len(), 3);
}

#[tokio::test]
async fn server_errors_are_retryable_but_not_resent_here() {
    let fake = FakeSendGrid::start().await;
    fake.push_status(503);
    let err = adapter(&fake).send(email()).await.expect_err("503");
    assert_eq!(err.kind, ProviderErrorKind::Status(503));
    assert!(err.is_retryable());
    // The message may have been accepted before the 5xx: no second request.
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn client_errors_carry_sendgrid_messages_and_are_final() {
    let fake = FakeSendGrid::start().await;
    fake.push(SendGridReply::Error {
        status: 403,
        field: Some("from".into()),
        message: "The from address does not match a verified Sender Identity.".into(),
    });
    let err = adapter(&fake).send(email()).await.expect_err("403");
    assert!(!err.is_retryable());
    match &err.kind {
        ProviderErrorKind::Config(text) => {
            assert!(text.contains("403"), "{text}");
            assert!(
                text.contains("from: The from address does not match a verified Sender Identity."),
                "{text}"
            );
        }
        other => panic!("expected Config, got {other:?}"),
    }
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn unparseable_error_bodies_still_give_typed_errors() {
    let fake = FakeSendGrid::start().await;
    fake.push(SendGridReply::Raw {
        status: 400,
        body: "{not json".into(),
    });
    let err = adapter(&fake).send(email()).await.expect_err("400");
    assert!(matches!(&err.kind, ProviderErrorKind::Config(t) if t.contains("400") && t.contains("{not json")));
}

#[tokio::test]
async fn keys_that_cannot_be_sent_are_refused_up_front() {
    let fake = FakeSendGrid::start().await;
    for key in ["", " ", "SG.bad\nkey"] {
        let config = SendGridConfig::new(SecretString::from(key.to_owned())).with_base_url(fake.base_url());
        let err = SendGrid::new(config).expect_err("refused");
        assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    }
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn every_refusal_status_is_typed() {
    let fake = FakeSendGrid::start().await;
    let sendgrid = adapter(&fake);
    for status in [400, 401, 403, 404, 413] {
        fake.push_status(status);
        let err = sendgrid.send(email()).await.expect_err("refused");
        assert!(!err.is_retryable(), "{status}");
        assert!(
            matches!(&err.kind, ProviderErrorKind::Config(t) if t.contains(&status.to_string()) && t.contains("scripted error")),
            "{status}: {err}"
        );
    }
    for status in [500, 502, 408] {
        fake.push_status(status);
        let err = sendgrid.send(email()).await.expect_err("failed");
        assert_eq!(err.kind, ProviderErrorKind::Status(status));
        assert!(err.is_retryable());
    }
}

#[tokio::test]
async fn the_fake_refuses_what_sendgrid_refuses() {
    // Keeps the fake honest: without a script it validates like the real API.
    let fake = FakeSendGrid::start().await;
    let client = reqwest::Client::new();
    let url = format!("{}/v3/mail/send", fake.base_url());
    let no_auth = client
        .post(&url)
        .json(&serde_json::json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(no_auth.status().as_u16(), 401);
    let no_to = client
        .post(&url)
        .bearer_auth(KEY)
        .json(
            &serde_json::json!({"personalizations": [{}], "from": {"email": "a@b.c"}, "subject": "s",
                                  "content": [{"type": "text/plain", "value": "v"}]}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(no_to.status().as_u16(), 400);
    let body: serde_json::Value = no_to.json().await.expect("json");
    assert_eq!(body["errors"][0]["field"], "personalizations.0.to");
}

#[tokio::test]
async fn a_stalled_server_times_out() {
    let fake = FakeSendGrid::start().await;
    fake.push(SendGridReply::Stall);
    // The fake never answers, so the margin on its side is unbounded.
    let config = SendGridConfig {
        timeout: Duration::from_secs(1),
        ..SendGridConfig::new(SecretString::from(KEY.to_owned())).with_base_url(fake.base_url())
    };
    let err = SendGrid::new(config)
        .expect("adapter")
        .send(email())
        .await
        .expect_err("timeout");
    assert_eq!(err.kind, ProviderErrorKind::Timeout);
    assert!(err.is_retryable());
    // On a stalled machine the client may time out before the fake's handler
    // ran; a resend, if any, would have been sent before `send` returned.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.requests().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        fake.requests().len(),
        1,
        "a timeout may hide an accepted mail: not resent"
    );
}

#[tokio::test]
async fn invalid_emails_are_refused_before_sending() {
    let fake = FakeSendGrid::start().await;
    let mut bad = email();
    bad.to = "not-an-address".into();
    let err = adapter(&fake).send(bad).await.expect_err("invalid");
    assert!(matches!(&err.kind, ProviderErrorKind::Config(t) if t.contains("to address")));
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    // Bound but never listening: refused, and no other test can take the port.
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    let config = SendGridConfig {
        max_retries: 1,
        retry_backoff: Duration::from_millis(1),
        ..SendGridConfig::new(SecretString::from(KEY.to_owned())).with_base_url(format!("http://127.0.0.1:{port}"))
    };
    let err = SendGrid::new(config)
        .expect("adapter")
        .send(email())
        .await
        .expect_err("refused");
    assert!(matches!(err.kind, ProviderErrorKind::Transport(_)), "{err}");
    assert!(err.is_retryable());
}
