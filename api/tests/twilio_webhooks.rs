//! `/twilio/voice`, `/twilio/status`, `/twilio/recording` and the call REST
//! additions (`/turns`, `/recording`), over real HTTP against the production
//! router with a real actor tree.

mod twilio_support;

use std::time::Duration;
use switchboard_actors::CallSpec;
use switchboard_domain::{
    CallDirection, CallStatus, E164, EndReason, NewCall, NewPhoneNumber, NewUser, ProviderCallId, Role, Secret,
    TurnLatency,
};
use switchboard_providers::twilio::signature;
use twilio_support::*;

async fn error_code(res: reqwest::Response) -> String {
    let body: serde_json::Value = res.json().await.expect("json error body");
    assert!(body["message"].is_string(), "{body}");
    body["code"].as_str().expect("code").to_owned()
}

fn assert_say_hangup(twiml: &str) {
    assert!(twiml.contains("<Say>"), "{twiml}");
    assert!(twiml.contains("<Hangup/>"), "{twiml}");
    assert!(!twiml.contains("<Connect>"), "{twiml}");
}

// ------------------------------------------------------------ signatures

#[tokio::test]
async fn reference_vector_signature_is_accepted_end_to_end() {
    // protocols.md §2.5, derived vector: token `test_auth_token`, URL
    // https://example.com/twilio/voice, these exact params.
    let fx = Fx::with(Opts {
        public_base_url: Some("https://example.com".into()),
        ..Opts::default()
    })
    .await;
    let params = pairs(&[
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", "CA11111111111111111111111111111111"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", "+15551230000"),
        ("To", "+15559870000"),
    ]);
    let res = fx
        .post_form("/twilio/voice", &params, Some("q5+XLrAUCCUnucHEnR3OmOUl5y8="))
        .await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/xml"),
        "TwiML content type"
    );
    let twiml = res.text().await.expect("body");
    assert!(
        twiml.contains(r#"<Stream url="wss://example.com/twilio/media">"#),
        "{twiml}"
    );
    let calls = fx.calls().await;
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0].provider_call_id,
        Some(ProviderCallId::new("CA11111111111111111111111111111111"))
    );
}

#[tokio::test]
async fn json_body_signed_with_body_sha256_is_accepted_and_tampering_is_not() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let body = serde_json::json!({
        "AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "CallSid": sid,
        "CallStatus": "ringing", "Direction": "inbound", "From": CALLER, "To": NUMBER,
    })
    .to_string();
    let (signed_url, sig) = signature::sign_json(
        AUTH_TOKEN,
        &format!("{}/twilio/voice", fx.public_base_url),
        body.as_bytes(),
    );
    let path = signed_url.strip_prefix(&fx.public_base_url).expect("path");

    let post = |body: String| {
        fx.client
            .post(fx.http(path))
            .header("content-type", "application/json")
            .header("x-twilio-signature", sig.clone())
            .body(body)
    };
    // The same URL and signature with a body that no longer matches bodySHA256.
    let tampered = body.replace(CALLER, "+15550000000");
    let res = post(tampered).send().await.expect("send");
    assert_eq!(res.status(), 403);
    assert_eq!(error_code(res).await, "forbidden");
    assert!(fx.calls().await.is_empty(), "a refused webhook stores nothing");

    let res = post(body).send().await.expect("send");
    assert_eq!(res.status(), 200);
    assert!(res.text().await.expect("body").contains("<Connect><Stream"));
    assert_eq!(fx.calls().await.len(), 1);
}

#[tokio::test]
async fn bad_missing_and_altered_signatures_are_403_and_store_nothing() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let form = voice_form(&sid, NUMBER);
    let url = format!("{}/twilio/voice", fx.public_base_url);

    type Case = (&'static str, Vec<(String, String)>, Option<String>);
    let cases: Vec<Case> = vec![
        ("missing header", form.clone(), None),
        ("garbage header", form.clone(), Some("not base64 at all!".into())),
        (
            "wrong token",
            form.clone(),
            Some(signature::sign("another_token", &url, &form)),
        ),
        (
            "signed for another URL",
            form.clone(),
            Some(signature::sign(AUTH_TOKEN, &format!("{url}?x=1"), &form)),
        ),
        (
            // A captured request replayed with one parameter changed.
            "replayed with an altered parameter",
            voice_form(&sid, NUMBER)
                .into_iter()
                .map(|(k, v)| {
                    if k == "From" {
                        (k, "+15550001111".to_owned())
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            Some(signature::sign(AUTH_TOKEN, &url, &form)),
        ),
    ];
    for (name, body, sig) in cases {
        let res = fx.post_form("/twilio/voice", &body, sig.as_deref()).await;
        assert_eq!(res.status(), 403, "{name}");
        assert_eq!(error_code(res).await, "forbidden", "{name}");
    }
    assert!(fx.calls().await.is_empty(), "403s stored nothing");

    // The untouched request still works, so the 403s were about the signature.
    assert_eq!(fx.ring(&sid).await.status(), 200);
    assert_eq!(fx.calls().await.len(), 1);
}

// ------------------------------------------------------------ voice

#[tokio::test]
async fn voice_answers_connect_stream_with_call_id_and_token() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let res = fx.ring(&sid).await;
    assert_eq!(res.status(), 200);
    let twiml = res.text().await.expect("twiml");
    let expected_url = format!(r#"<Stream url="ws://{}/twilio/media">"#, fx.addr);
    assert!(twiml.contains(&expected_url), "{twiml}");
    assert!(twiml.contains("<Response><Connect><Stream"), "{twiml}");
    let call_id: switchboard_domain::CallId = parameter(&twiml, "call_id").expect("call_id").parse().expect("uuid");
    let token = parameter(&twiml, "token").expect("token");

    let call = fx.call(call_id).await;
    assert_eq!(call.tenant_id, fx.tenant.id);
    assert_eq!(call.agent_id, Some(fx.agent.id));
    assert_eq!(call.provider_call_id, Some(ProviderCallId::new(&sid)));
    assert_eq!(call.direction, CallDirection::Inbound);
    assert_eq!(call.from, CALLER);
    assert_eq!(call.to, NUMBER);
    assert_eq!(call.status, CallStatus::Ringing);
    assert!(call.ended_at.is_none());

    // The token is the one the server would issue for this call.
    let now = chrono::Utc::now().timestamp();
    let (expiry, _) = token.split_once('.').expect("token shape");
    let expiry: i64 = expiry.parse().expect("expiry");
    assert_eq!(
        token,
        fx.token_at(call_id, expiry - fx.settings.calls.stream_token_ttl.as_secs() as i64)
    );
    assert!(expiry >= now, "unexpired");
}

#[tokio::test]
async fn stream_url_is_wss_for_https_and_xml_escaped() {
    let fx = Fx::with(Opts {
        public_base_url: Some("https://voice.example.com/a&b".into()),
        ..Opts::default()
    })
    .await;
    let res = fx.ring(&call_sid()).await;
    assert_eq!(res.status(), 200);
    let twiml = res.text().await.expect("twiml");
    assert!(
        twiml.contains(r#"<Stream url="wss://voice.example.com/a&amp;b/twilio/media">"#),
        "{twiml}"
    );
    assert!(!twiml.contains("a&b"), "raw ampersand must be escaped: {twiml}");
    assert!(parameter(&twiml, "call_id").is_some() && parameter(&twiml, "token").is_some());
}

#[tokio::test]
async fn unknown_number_gets_a_polite_hangup_and_no_row() {
    let fx = Fx::start().await;
    // No tenant owns the number, so no token can be checked: the answer is
    // the same whatever the signature.
    let res = fx
        .post_form("/twilio/voice", &voice_form(&call_sid(), "+15550009999"), None)
        .await;
    assert_eq!(res.status(), 200);
    assert_say_hangup(&res.text().await.expect("twiml"));
    let res = fx
        .post_form("/twilio/voice", &voice_form(&call_sid(), "client:alice"), None)
        .await;
    assert_eq!(res.status(), 200);
    assert_say_hangup(&res.text().await.expect("twiml"));
    assert!(fx.calls().await.is_empty());
}

#[tokio::test]
async fn number_without_an_enabled_agent_is_rejected_with_a_finished_row() {
    let fx = Fx::start().await;
    // A second number with no agent at all.
    fx.store
        .phone_numbers()
        .create(
            fx.tenant.id,
            NewPhoneNumber {
                number: E164::parse("+15559870001").expect("e164"),
                agent_id: None,
                label: "Spare".into(),
            },
        )
        .await
        .expect("number");
    let res = fx
        .post_signed("/twilio/voice", &voice_form(&call_sid(), "+15559870001"), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 200);
    assert_say_hangup(&res.text().await.expect("twiml"));

    // The main number with its agent disabled.
    fx.store
        .agents()
        .update(
            switchboard_store::Scope::All,
            fx.agent.id,
            serde_json::from_value(serde_json::json!({"enabled": false})).expect("update"),
        )
        .await
        .expect("disable");
    let res = fx.ring(&call_sid()).await;
    assert_eq!(res.status(), 200);
    assert_say_hangup(&res.text().await.expect("twiml"));

    let calls = fx.calls().await;
    assert_eq!(calls.len(), 2);
    for call in calls {
        assert_eq!(call.end_reason, Some(EndReason::Rejected));
        assert!(call.ended_at.is_some());
        assert!(call.status.is_terminal());
    }
    assert!(fx.tree.registry().calls().is_empty());
}

#[tokio::test]
async fn tenant_at_its_concurrency_limit_is_refused() {
    let fx = Fx::with(Opts {
        max_concurrent_calls: 2,
        ..Opts::default()
    })
    .await;
    // Fill the limit with two live call actors of this tenant.
    let mut live = Vec::new();
    for _ in 0..2 {
        let row = fx
            .store
            .calls()
            .create(NewCall {
                tenant_id: fx.tenant.id,
                agent_id: Some(fx.agent.id),
                provider_call_id: Some(ProviderCallId::new(call_sid())),
                direction: CallDirection::Inbound,
                from: CALLER.into(),
                to: NUMBER.into(),
                status: CallStatus::Streaming,
            })
            .await
            .expect("row");
        let handle = fx
            .tree
            .spawn_call(CallSpec {
                call_id: row.id,
                tenant_id: fx.tenant.id,
                agent_id: Some(fx.agent.id),
                direction: CallDirection::Inbound,
                status: CallStatus::Streaming,
            })
            .await
            .expect("spawn");
        live.push(handle);
    }
    let sid = call_sid();
    let res = fx.ring(&sid).await;
    assert_eq!(res.status(), 200);
    assert_say_hangup(&res.text().await.expect("twiml"));
    let refused = fx
        .store
        .calls()
        .get_by_provider_call_id(&ProviderCallId::new(&sid))
        .await
        .expect("lookup")
        .expect("row created");
    assert_eq!(refused.end_reason, Some(EndReason::ConcurrencyLimit));
    assert!(refused.ended_at.is_some());

    // One call ends: the next one gets through.
    live[0].hangup(EndReason::CallerHangup).expect("hangup");
    live[0].stopped().await;
    let res = fx.ring(&call_sid()).await;
    assert!(res.text().await.expect("twiml").contains("<Connect><Stream"));
}

#[tokio::test]
async fn replays_get_the_same_call_while_ringing_and_409_afterwards() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (first_id, _) = fx.ring_and_connect(&sid).await;
    // Twilio retries: same CallSid, same call, a token that verifies.
    let (again_id, token) = fx.ring_and_connect(&sid).await;
    assert_eq!(again_id, first_id);
    let expiry: i64 = token.split_once('.').expect("shape").0.parse().expect("expiry");
    assert_eq!(
        token,
        fx.token_at(first_id, expiry - fx.settings.calls.stream_token_ttl.as_secs() as i64)
    );
    assert_eq!(fx.calls().await.len(), 1);

    // Once the stream started, a replay is a conflict.
    fx.store
        .calls()
        .set_status(first_id, CallStatus::Streaming)
        .await
        .expect("status");
    let res = fx.ring(&sid).await;
    assert_eq!(res.status(), 409);
    assert_eq!(error_code(res).await, "conflict");

    // Ended calls too.
    let sid2 = call_sid();
    let (second_id, _) = fx.ring_and_connect(&sid2).await;
    fx.store
        .calls()
        .finish(second_id, CallStatus::Canceled, EndReason::CallerHangup)
        .await
        .expect("finish");
    let res = fx.ring(&sid2).await;
    assert_eq!(res.status(), 409);
    assert_eq!(fx.calls().await.len(), 2, "replays stored nothing new");

    // Ringing but with a live actor: also a conflict.
    let sid3 = call_sid();
    let (third_id, _) = fx.ring_and_connect(&sid3).await;
    let handle = fx
        .tree
        .spawn_call(CallSpec {
            call_id: third_id,
            tenant_id: fx.tenant.id,
            agent_id: Some(fx.agent.id),
            direction: CallDirection::Inbound,
            status: CallStatus::Ringing,
        })
        .await
        .expect("spawn");
    assert_eq!(fx.ring(&sid3).await.status(), 409);
    handle.hangup(EndReason::CallerHangup).expect("hangup");
    handle.stopped().await;
}

// ------------------------------------------------------------ status and recording

#[tokio::test]
async fn status_callbacks_in_order_duplicated_and_out_of_order() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (id, _) = fx.ring_and_connect(&sid).await;

    let post = |status: &'static str, seq: u32| {
        let sid = sid.clone();
        let fx = &fx;
        async move {
            fx.post_signed("/twilio/status", &status_form(&sid, status, seq), AUTH_TOKEN)
                .await
        }
    };
    assert_eq!(post("in-progress", 1).await.status(), 204);
    assert_eq!(fx.call(id).await.status, CallStatus::InProgress);
    // Out of order: an older `ringing` arrives late and changes nothing.
    assert_eq!(post("ringing", 0).await.status(), 204);
    assert_eq!(fx.call(id).await.status, CallStatus::InProgress);

    assert_eq!(post("completed", 2).await.status(), 204);
    let ended = fx.call(id).await;
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
    let ended_at = ended.ended_at.expect("ended");

    // Duplicates and late non-terminal events are harmless.
    assert_eq!(post("completed", 2).await.status(), 204);
    assert_eq!(post("in-progress", 1).await.status(), 204);
    assert_eq!(post("busy", 3).await.status(), 204);
    let after = fx.call(id).await;
    assert_eq!(after.status, CallStatus::Completed);
    assert_eq!(after.end_reason, Some(EndReason::CallerHangup));
    assert_eq!(after.ended_at, Some(ended_at));
}

#[tokio::test]
async fn terminal_status_before_any_progress_ends_the_row() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (id, _) = fx.ring_and_connect(&sid).await;
    let res = fx
        .post_signed("/twilio/status", &status_form(&sid, "no-answer", 1), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 204);
    let call = fx.call(id).await;
    assert_eq!(call.status, CallStatus::NoAnswer);
    assert_eq!(call.end_reason, Some(EndReason::Completed));
}

#[tokio::test]
async fn status_for_unknown_call_is_404_and_bad_signature_403() {
    let fx = Fx::start().await;
    let res = fx
        .post_signed("/twilio/status", &status_form(&call_sid(), "completed", 1), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 404);
    assert_eq!(error_code(res).await, "not_found");

    let sid = call_sid();
    let (id, _) = fx.ring_and_connect(&sid).await;
    let res = fx
        .post_signed("/twilio/status", &status_form(&sid, "completed", 1), "wrong_token")
        .await;
    assert_eq!(res.status(), 403);
    let call = fx.call(id).await;
    assert_eq!(call.status, CallStatus::Ringing, "a refused callback changed nothing");
    assert!(call.ended_at.is_none());
}

#[tokio::test]
async fn status_callbacks_reach_a_live_call_through_its_actor() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (id, _) = fx.ring_and_connect(&sid).await;
    let handle = fx
        .tree
        .spawn_call(CallSpec {
            call_id: id,
            tenant_id: fx.tenant.id,
            agent_id: Some(fx.agent.id),
            direction: CallDirection::Inbound,
            status: CallStatus::Ringing,
        })
        .await
        .expect("spawn");

    let res = fx
        .post_signed("/twilio/status", &status_form(&sid, "in-progress", 1), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(handle.info().await.expect("info").status, CallStatus::InProgress);
    assert_eq!(fx.call(id).await.status, CallStatus::InProgress);

    let res = fx
        .post_signed("/twilio/status", &status_form(&sid, "completed", 2), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 204);
    // The actor itself ended (the store alone could not stop it).
    tokio::time::timeout(Duration::from_secs(30), handle.stopped())
        .await
        .expect("the actor stopped");
    assert!(!fx.tree.registry().calls().contains(&id));
    let call = fx.call(id).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.end_reason, Some(EndReason::CallerHangup));
}

#[tokio::test]
async fn recording_url_is_stored_once_completed() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (id, _) = fx.ring_and_connect(&sid).await;
    let form = |status: &str| {
        pairs(&[
            ("AccountSid", ACCOUNT_SID),
            ("CallSid", &sid),
            ("RecordingSid", "RE0123"),
            (
                "RecordingUrl",
                "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE0123",
            ),
            ("RecordingStatus", status),
            ("RecordingDuration", "12"),
        ])
    };
    let res = fx
        .post_signed("/twilio/recording", &form("in-progress"), AUTH_TOKEN)
        .await;
    assert_eq!(res.status(), 204);
    assert_eq!(fx.call(id).await.recording_url, None);
    for _ in 0..2 {
        let res = fx
            .post_signed("/twilio/recording", &form("completed"), AUTH_TOKEN)
            .await;
        assert_eq!(res.status(), 204);
        assert_eq!(
            fx.call(id).await.recording_url.as_deref(),
            Some("https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE0123")
        );
    }
    let res = fx.post_signed("/twilio/recording", &form("completed"), "wrong").await;
    assert_eq!(res.status(), 403);
    let bad = fx
        .post_signed("/twilio/recording", &pairs(&[("CallSid", &sid)]), AUTH_TOKEN)
        .await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn twilio_routes_answer_503_without_call_services() {
    use switchboard_config::SecretString;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let store = switchboard_store::Store::connect(&url, 2, [7; 32])
        .await
        .expect("store");
    store.migrate().await.expect("migrate");
    let tree = switchboard_actors::Tree::start(
        switchboard_actors::TreeConfig::default(),
        std::sync::Arc::new(store.clone()),
    )
    .await
    .expect("tree");
    let state = switchboard_api::AppState::new(
        store,
        switchboard_bus::Bus::in_process(),
        tree.registry().clone(),
        &switchboard_config::Settings::default(),
        &SecretString::new(JWT_SECRET),
    )
    .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            switchboard_api::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("serve");
    });
    let client = reqwest::Client::new();
    for path in ["/twilio/voice", "/twilio/status", "/twilio/recording"] {
        let res = client
            .post(format!("http://{addr}{path}"))
            .form(&voice_form(&call_sid(), NUMBER))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 503, "{path}");
        assert_eq!(error_code(res).await, "not_ready");
    }
    let res = client
        .get(format!("http://{addr}/twilio/media"))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 503);
}

#[tokio::test]
async fn webhooks_are_rate_limited_per_ip() {
    let fx = Fx::with(Opts {
        configure: |s| s.limits.webhook_per_second = 1,
        ..Opts::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            fx.post_form("/twilio/voice", &voice_form(&call_sid(), "+15550009999"), None)
                .await,
        );
    }
    let limited: Vec<_> = statuses.into_iter().filter(|r| r.status() == 429).collect();
    assert!(!limited.is_empty(), "some of 5 quick requests over 1/s were limited");
    assert!(limited[0].headers().contains_key("retry-after"));
}

// ------------------------------------------------------------ REST: turns and recording

async fn login(fx: &Fx, tenant: Option<switchboard_domain::TenantId>, role: Role) -> String {
    let email = format!("u-{}@example.com", uuid::Uuid::new_v4().simple());
    fx.store
        .users()
        .create(NewUser {
            tenant_id: tenant,
            email: email.clone(),
            password: Secret::new("correct horse battery staple"),
            role,
        })
        .await
        .expect("user");
    let res: serde_json::Value = fx
        .client
        .post(fx.http("/api/v1/auth/login"))
        .json(&serde_json::json!({"email": email, "password": "correct horse battery staple"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    res["access_token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn turns_and_recording_are_served_within_the_tenant_only() {
    let fx = Fx::start().await;
    let (id, _) = fx.ring_and_connect(&call_sid()).await;
    let turns = [
        TurnLatency {
            turn_id: 0,
            tts_first_audio_ms: Some(120),
            first_frame_ms: Some(130),
            ..TurnLatency::default()
        },
        TurnLatency {
            turn_id: 1,
            stt_final_ms: Some(300),
            agent_first_token_ms: Some(450),
            ..TurnLatency::default()
        },
    ];
    for t in &turns {
        fx.store.turns().record(id, t).await.expect("turn");
    }
    let wav = b"RIFF\x24\x00\x00\x00WAVEfmt test bytes".to_vec();
    let tenant_dir = fx.recordings.join(fx.tenant.id.to_string());
    std::fs::create_dir_all(&tenant_dir).expect("dir");
    let file = tenant_dir.join(format!("{id}.wav"));
    std::fs::write(&file, &wav).expect("write wav");
    fx.store
        .calls()
        .set_recording(id, file.display().to_string())
        .await
        .expect("recording");

    let agent = login(&fx, Some(fx.tenant.id), Role::Agent).await;
    let get = |path: String, token: String| {
        let req = fx.client.get(fx.http(&path)).bearer_auth(token);
        async move { req.send().await.expect("get") }
    };
    let res = get(format!("/api/v1/calls/{id}/turns"), agent.clone()).await;
    assert_eq!(res.status(), 200);
    let got: Vec<TurnLatency> = res.json().await.expect("turns");
    assert_eq!(got, turns);

    let res = get(format!("/api/v1/calls/{id}/recording"), agent.clone()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "audio/wav");
    assert_eq!(res.bytes().await.expect("bytes").to_vec(), wav);

    // Another tenant sees neither.
    let other = fx
        .store
        .tenants()
        .create(switchboard_domain::NewTenant {
            name: "Other".into(),
            notification_email: None,
            max_concurrent_calls: 5,
        })
        .await
        .expect("tenant");
    let stranger = login(&fx, Some(other.id), Role::Owner).await;
    for path in [
        format!("/api/v1/calls/{id}/turns"),
        format!("/api/v1/calls/{id}/recording"),
    ] {
        let res = get(path.clone(), stranger.clone()).await;
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(error_code(res).await, "not_found");
    }

    // Recordings outside the recordings directory are never served.
    let outside = fx.recordings.parent().expect("parent").join("secret.wav");
    std::fs::write(&outside, b"secret").expect("write");
    for url in [
        outside.display().to_string(),
        format!("{}/../secret.wav", fx.recordings.display()),
        "../secret.wav".to_owned(),
        format!("file://{}", outside.display()),
        "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE1".to_owned(),
        format!("{}/nope.wav", tenant_dir.display()),
    ] {
        fx.store
            .calls()
            .set_recording(id, url.clone())
            .await
            .expect("recording");
        let res = get(format!("/api/v1/calls/{id}/recording"), agent.clone()).await;
        assert_eq!(res.status(), 404, "{url}");
    }
    // A relative path under the directory is fine.
    fx.store
        .calls()
        .set_recording(id, format!("{}/{id}.wav", fx.tenant.id))
        .await
        .expect("recording");
    let res = get(format!("/api/v1/calls/{id}/recording"), agent).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn openapi_lists_the_new_call_routes() {
    let fx = Fx::start().await;
    let spec: serde_json::Value = fx
        .client
        .get(fx.http("/api/v1/openapi.json"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(spec["paths"]["/api/v1/calls/{id}/turns"]["get"].is_object());
    assert!(spec["paths"]["/api/v1/calls/{id}/recording"]["get"].is_object());
}
