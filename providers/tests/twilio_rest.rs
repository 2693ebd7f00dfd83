//! `TwilioRest` against the fake Twilio REST API: the forms it posts, its
//! Basic auth, a gone call on hangup, and its fault matrix (timeout, 5xx
//! retried, retries exhausted, 429, malformed JSON, a stalled body).

use std::time::Duration;

use switchboard_domain::ProviderCallId;
use switchboard_fakes::twilio_rest::{FakeTwilioRest, TwilioReply};
use switchboard_providers::retry::RetryPolicy;
use switchboard_providers::twilio::rest::{TwilioRest, TwilioRestConfig};
use switchboard_providers::twilio::twiml::{SayOptions, VoiceResponse};
use switchboard_providers::twilio::webhook::AccountSid;
use switchboard_providers::{ProviderError, ProviderErrorKind, SecretString, Telephony};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const CALL: &str = "CAfedcba9876543210fedcba9876543210";

/// The exchange budget (all attempts included) where the outcome is not a
/// timeout: generous, so a stalled test machine cannot turn a retried
/// success or a typed error into a `Timeout`, nor cut off an attempt.
const BUDGET: Duration = Duration::from_secs(10);
/// The budget where the test's point is a timeout: the fake then stays
/// silent forever, so the margin on its side is unbounded.
const TIMEOUT_BUDGET: Duration = Duration::from_secs(1);

fn rest(fake: &FakeTwilioRest) -> TwilioRest {
    rest_within(fake, BUDGET)
}

fn rest_within(fake: &FakeTwilioRest, budget: Duration) -> TwilioRest {
    let sid = AccountSid::parse(ACCOUNT).expect("account sid");
    let mut config = TwilioRestConfig::new(sid, SecretString::from("auth-token-secret"));
    config.base_url = fake.base_url();
    config.timeout = budget;
    config.retry = RetryPolicy {
        max_attempts: 3,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(50),
    };
    TwilioRest::new(config, reqwest::Client::new()).expect("rest")
}

fn call() -> ProviderCallId {
    ProviderCallId::new(CALL)
}

fn twilio(kind: ProviderErrorKind) -> ProviderError {
    ProviderError::new("twilio", kind)
}

#[tokio::test]
async fn update_twiml_posts_the_document_with_basic_auth() {
    let fake = FakeTwilioRest::start().await;
    let twiml = VoiceResponse::new()
        .say("Transferring you & goodbye <now>", &SayOptions::default())
        .build();

    rest(&fake).update_twiml(&call(), &twiml).await.expect("updated");

    let updates = fake.updates();
    assert_eq!(updates.len(), 1);
    let update = &updates[0];
    assert_eq!(update.account_sid, ACCOUNT);
    assert_eq!(update.call_sid, CALL);
    assert_eq!(update.auth_user.as_deref(), Some(ACCOUNT));
    assert_eq!(update.auth_password.as_deref(), Some("auth-token-secret"));
    assert_eq!(
        update.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(update.form, [("Twiml".to_owned(), twiml.as_str().to_owned())]);
}

#[tokio::test]
async fn hangup_posts_status_completed() {
    let fake = FakeTwilioRest::start().await;

    rest(&fake).hangup(&call()).await.expect("hung up");

    let updates = fake.updates();
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].form, [("Status".to_owned(), "completed".to_owned())]);
    assert_eq!(updates[0].auth_user.as_deref(), Some(ACCOUNT));
}

#[tokio::test]
async fn hangup_of_a_gone_call_is_ok_but_redirecting_it_is_not() {
    let fake = FakeTwilioRest::start().await;
    fake.push_reply(TwilioReply::status(404));
    fake.push_reply(TwilioReply::status(404));
    let rest = rest(&fake);

    assert_eq!(rest.hangup(&call()).await, Ok(()));
    let twiml = VoiceResponse::new().hangup().build();
    assert_eq!(
        rest.update_twiml(&call(), &twiml).await,
        Err(twilio(ProviderErrorKind::Status(404)))
    );
    assert_eq!(fake.updates().len(), 2, "a 404 is not retried");
}

#[tokio::test]
async fn oversized_twiml_and_bad_call_sids_are_refused_locally() {
    let fake = FakeTwilioRest::start().await;
    let rest = rest(&fake);
    let long = VoiceResponse::new()
        .say(&"x".repeat(4_000), &SayOptions::default())
        .build();

    let err = rest.update_twiml(&call(), &long).await.expect_err("too long");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    let err = rest.hangup(&ProviderCallId::new("CA/../x")).await.expect_err("bad sid");
    assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
    assert!(fake.updates().is_empty());
}

// ------------------------------------------------------- fault matrix

/// Runs one hangup against the scripted replies within [`BUDGET`]; returns
/// it and the request count.
async fn hangup_with(replies: Vec<TwilioReply>) -> (Result<(), ProviderError>, usize) {
    hangup_within(replies, BUDGET).await
}

/// [`hangup_with`] for a fault that must end in a timeout: within [`TIMEOUT_BUDGET`].
async fn hangup_to_timeout(replies: Vec<TwilioReply>) -> (Result<(), ProviderError>, usize) {
    hangup_within(replies, TIMEOUT_BUDGET).await
}

async fn hangup_within(replies: Vec<TwilioReply>, budget: Duration) -> (Result<(), ProviderError>, usize) {
    let fake = FakeTwilioRest::start().await;
    for reply in replies {
        fake.push_reply(reply);
    }
    let result = rest_within(&fake, budget).hangup(&call()).await;
    // Every hangup sends a request, but one that timed out may not have
    // reached the fake's handler yet on a stalled machine. Retries, if any,
    // were all sent before the hangup returned.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fake.updates().is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (result, fake.updates().len())
}

#[tokio::test]
async fn a_silent_twilio_is_a_timeout_and_not_retried() {
    let (result, requests) = hangup_to_timeout(vec![TwilioReply::Hang, TwilioReply::Ok]).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::Timeout)));
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn server_errors_are_retried_then_succeed() {
    let (result, requests) = hangup_with(vec![
        TwilioReply::status(500),
        TwilioReply::status(503),
        TwilioReply::Ok,
    ])
    .await;
    assert_eq!(result, Ok(()));
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn server_errors_past_the_attempt_limit_are_a_status() {
    let replies = vec![
        TwilioReply::status(503),
        TwilioReply::status(502),
        TwilioReply::status(500),
        TwilioReply::Ok,
    ];
    let (result, requests) = hangup_with(replies).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::Status(500))));
    assert_eq!(requests, 3);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (result, requests) = hangup_with(vec![TwilioReply::status(401), TwilioReply::Ok]).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::Status(401))));
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn rate_limits_are_typed_and_honour_retry_after() {
    let limited = |after| TwilioReply::Status {
        code: 429,
        retry_after: after,
    };
    let (result, requests) = hangup_with(vec![limited(None), limited(None), limited(None)]).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::RateLimited)));
    assert_eq!(requests, 3);

    let (result, requests) = hangup_with(vec![limited(Some(0)), TwilioReply::Ok]).await;
    assert_eq!(result, Ok(()));
    assert_eq!(requests, 2);

    let (result, requests) = hangup_with(vec![limited(Some(600)), TwilioReply::Ok]).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::RateLimited)));
    assert_eq!(requests, 1, "a pause past max_delay is not waited out");
}

#[tokio::test]
async fn malformed_json_is_malformed() {
    let (result, requests) = hangup_with(vec![TwilioReply::Malformed("<html>ok</html>".to_owned())]).await;
    let err = result.expect_err("malformed");
    assert!(matches!(err.kind, ProviderErrorKind::Malformed(_)), "{err}");
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn a_stalled_body_is_a_timeout() {
    let (result, requests) = hangup_to_timeout(vec![TwilioReply::StallMidBody, TwilioReply::Ok]).await;
    assert_eq!(result, Err(twilio(ProviderErrorKind::Timeout)));
    assert_eq!(requests, 1);
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_after_bounded_retries() {
    // Bound but never listening: refused, and no other test can take the port.
    let closed = tokio::net::TcpSocket::new_v4().expect("socket");
    closed.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    let sid = AccountSid::parse(ACCOUNT).expect("account sid");
    let mut config = TwilioRestConfig::new(sid, SecretString::from("auth-token-secret"));
    config.base_url = format!("http://127.0.0.1:{port}");
    config.retry.base_delay = Duration::from_millis(1);
    let err = TwilioRest::new(config, reqwest::Client::new())
        .expect("rest")
        .hangup(&call())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err.kind, ProviderErrorKind::Transport(why) if !why.contains("auth-token-secret")),
        "{err}"
    );
}
