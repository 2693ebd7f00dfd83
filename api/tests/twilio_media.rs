//! `GET /twilio/media`: the Media Streams socket over a real WebSocket,
//! against the production router and a real actor tree.
//!
//! Outbound playback (`MediaOut` → Twilio JSON) is not driven here: only the
//! call actor produces `MediaOut`, and its speech loop is being written in
//! parallel; the socket side of it is covered by the unit tests in
//! `api/src/twilio/media.rs`.

mod twilio_support;

use switchboard_domain::{CallId, CallStatus, EndReason};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use twilio_support::*;

/// Rings, connects the socket and sends `connected` + a valid `start`.
async fn started(fx: &Fx) -> (Ws, CallId, String) {
    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    let mut ws = connect(fx).await;
    send(&mut ws, connected_frame()).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    fx.wait_live(1).await;
    fx.wait_answered(call_id).await;
    (ws, call_id, sid)
}

#[tokio::test]
async fn good_start_spawns_one_actor_and_stop_finalizes_the_call() {
    let fx = Fx::start().await;
    let (mut ws, call_id, sid) = started(&fx).await;
    assert_eq!(fx.tree.registry().calls().len(), 1);
    assert!(fx.tree.registry().calls().contains(&call_id));
    let call = fx.call(call_id).await;
    assert_eq!(call.status, CallStatus::Streaming);
    assert!(call.answered_at.is_some());

    // Audio (one 20 ms frame and one 50 ms frame that gets split), a mark, DTMF.
    send(&mut ws, media_frame(1, 160)).await;
    send(&mut ws, media_frame(2, 400)).await;
    send(&mut ws, r#"{"event":"mark","sequenceNumber":"5","streamSid":"MZ0123456789abcdef0123456789abcdef","mark":{"name":"r1:1"}}"#).await;
    send(&mut ws, r#"{"event":"dtmf","sequenceNumber":"6","streamSid":"MZ0123456789abcdef0123456789abcdef","dtmf":{"track":"inbound_track","digit":"5"}}"#).await;
    // Until `stop`, the same single actor serves the call.
    assert_eq!(
        fx.tree.registry().calls().ids(),
        vec![call_id],
        "still exactly this call's actor until the stream stops"
    );
    send(&mut ws, stop_frame(&sid)).await;
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!(code, 1000, "{reason}");

    let ended = fx.wait_ended(call_id).await;
    fx.wait_live(0).await;
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
}

#[tokio::test]
async fn bad_tokens_close_1008_without_an_actor_and_leave_the_row() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    let (other_id, other_token) = fx.ring_and_connect(&call_sid()).await;
    let now = chrono::Utc::now().timestamp();
    let expired = fx.token_at(call_id, now - 3_600);
    let (_, sig) = token.split_once('.').expect("shape");
    let cases = [
        ("token of another call", other_token.clone()),
        ("expired", expired),
        ("tampered expiry", format!("{}.{sig}", now + 86_400)),
        ("garbage", "nonsense".to_owned()),
        ("empty", String::new()),
    ];
    for (name, bad) in cases {
        let mut ws = connect(&fx).await;
        send(&mut ws, connected_frame()).await;
        send(&mut ws, start_frame(&sid, &call_id.to_string(), &bad)).await;
        let (code, reason) = close_code(&mut ws).await;
        assert_eq!(code, 1008, "{name}");
        assert!(reason.contains("token"), "{name}: {reason}");
    }
    // A start with no call_id at all.
    let mut ws = connect(&fx).await;
    send(&mut ws, start_frame(&sid, "not-a-uuid", &token)).await;
    assert_eq!(close_code(&mut ws).await.0, 1008);

    assert!(fx.tree.registry().calls().is_empty(), "no actor was started");
    for id in [call_id, other_id] {
        let call = fx.call(id).await;
        assert_eq!(call.status, CallStatus::Ringing);
        assert!(call.ended_at.is_none() && call.answered_at.is_none());
    }
    // The right token still works afterwards.
    let mut ws = connect(&fx).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    fx.wait_live(1).await;
    send(&mut ws, stop_frame(&sid)).await;
    assert_eq!(close_code(&mut ws).await.0, 1000);
}

#[tokio::test]
async fn media_before_start_closes_1008_without_an_actor() {
    let fx = Fx::start().await;
    let (call_id, _) = fx.ring_and_connect(&call_sid()).await;
    let mut ws = connect(&fx).await;
    send(&mut ws, connected_frame()).await;
    send(&mut ws, media_frame(1, 160)).await;
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!(code, 1008);
    assert_eq!(reason, "media before start");
    assert!(fx.tree.registry().calls().is_empty());
    assert_eq!(fx.call(call_id).await.status, CallStatus::Ringing);
}

#[tokio::test]
async fn garbage_before_start_is_ignored_and_start_still_works() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    let mut ws = connect(&fx).await;
    send(&mut ws, connected_frame()).await;
    send(&mut ws, "{not json").await;
    send(&mut ws, r#"{"event":"surprise","streamSid":"MZ1"}"#).await;
    send(&mut ws, r#"{"no_event":true}"#).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    fx.wait_live(1).await;
    send(&mut ws, stop_frame(&sid)).await;
    assert_eq!(close_code(&mut ws).await.0, 1000);
    assert_eq!(fx.wait_ended(call_id).await.end_reason, Some(EndReason::CallerHangup));
}

#[tokio::test]
async fn bad_frames_after_start_are_skipped_and_the_socket_stays_usable() {
    let fx = Fx::start().await;
    let (mut ws, call_id, sid) = started(&fx).await;
    send(&mut ws, "{not json").await;
    send(&mut ws, r#"{"event":"surprise","streamSid":"MZ1"}"#).await;
    send(&mut ws, media_frame_raw(1, "!!!! not base64 ~~~~")).await;
    send(
        &mut ws,
        r#"{"event":"media","media":{"payload":"////","timestamp":"abc"}}"#,
    )
    .await;
    // A second start, even with a valid token, changes nothing.
    let token = fx.token_at(call_id, chrono::Utc::now().timestamp());
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    send(&mut ws, media_frame(2, 160)).await;
    assert_eq!(fx.tree.registry().calls().len(), 1);
    // The socket still processes frames: `stop` ends the call normally.
    send(&mut ws, stop_frame(&sid)).await;
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1000, "stream stopped"));
    let ended = fx.wait_ended(call_id).await;
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
    fx.wait_live(0).await;
}

#[tokio::test]
async fn binary_frames_close_1003_and_end_the_call() {
    let fx = Fx::start().await;
    let (mut ws, call_id, _) = started(&fx).await;
    ws_send_binary(&mut ws).await;
    assert_eq!(close_code(&mut ws).await.0, 1003);
    let ended = fx.wait_ended(call_id).await;
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
    fx.wait_live(0).await;

    // Before start: same code, and no actor.
    let (_, _) = fx.ring_and_connect(&call_sid()).await;
    let mut ws = connect(&fx).await;
    ws_send_binary(&mut ws).await;
    assert_eq!(close_code(&mut ws).await.0, 1003);
    assert!(fx.tree.registry().calls().is_empty());
}

async fn ws_send_binary(ws: &mut Ws) {
    use futures::SinkExt as _;
    ws.send(WsMessage::Binary(vec![0xFF; 160].into()))
        .await
        .expect("send binary");
}

#[tokio::test]
async fn oversized_messages_close_1009() {
    let fx = Fx::with(Opts {
        configure: |s| s.limits.max_ws_frame_bytes = 4_096,
        ..Opts::default()
    })
    .await;
    let (mut ws, call_id, _) = started(&fx).await;
    // Small frames are fine.
    send(&mut ws, media_frame(1, 160)).await;
    // ~8 KiB of JSON: over the 4 KiB limit.
    send(&mut ws, media_frame(2, 6_000)).await;
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!(code, 1009, "{reason}");
    let ended = fx.wait_ended(call_id).await;
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
    fx.wait_live(0).await;
}

#[tokio::test]
async fn socket_dropped_without_stop_ends_the_call() {
    let fx = Fx::start().await;
    let (ws, call_id, _) = started(&fx).await;
    drop(ws);
    let ended = fx.wait_ended(call_id).await;
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.end_reason, Some(EndReason::CallerHangup));
    fx.wait_live(0).await;
}

#[tokio::test]
async fn ended_or_live_calls_cannot_be_attached_again() {
    let fx = Fx::start().await;
    let (mut ws, call_id, sid) = started(&fx).await;
    let token = fx.token_at(call_id, chrono::Utc::now().timestamp());

    // While live: a second socket is refused and the first is untouched.
    let mut second = connect(&fx).await;
    send(&mut second, start_frame(&sid, &call_id.to_string(), &token)).await;
    let (code, reason) = close_code(&mut second).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("live"), "{reason}");
    assert_eq!(fx.tree.registry().calls().len(), 1);

    send(&mut ws, stop_frame(&sid)).await;
    assert_eq!(close_code(&mut ws).await.0, 1000);
    fx.wait_ended(call_id).await;
    fx.wait_live(0).await;

    // After the end: refused, no new actor.
    let mut third = connect(&fx).await;
    send(&mut third, start_frame(&sid, &call_id.to_string(), &token)).await;
    let (code, reason) = close_code(&mut third).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("ended"), "{reason}");
    assert!(fx.tree.registry().calls().is_empty());
}

#[tokio::test]
async fn start_with_a_disabled_agent_closes_1008_and_rejects_the_call() {
    let fx = Fx::start().await;
    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    fx.store
        .agents()
        .update(
            switchboard_store::Scope::All,
            fx.agent.id,
            serde_json::from_value(serde_json::json!({"enabled": false})).expect("update"),
        )
        .await
        .expect("disable");
    let mut ws = connect(&fx).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    assert_eq!(close_code(&mut ws).await.0, 1008);
    assert!(fx.tree.registry().calls().is_empty());
    let call = fx.call(call_id).await;
    assert_eq!(call.end_reason, Some(EndReason::Rejected));
}

#[tokio::test]
async fn provider_failure_closes_1011_and_finishes_the_call() {
    let fx = Fx::start().await;
    fx.factory.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    let mut ws = connect(&fx).await;
    send(&mut ws, connected_frame()).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    let (code, reason) = close_code(&mut ws).await;
    assert_eq!(code, 1011);
    assert!(reason.contains("provider"), "{reason}");
    assert!(fx.tree.registry().calls().is_empty());
    let call = fx.call(call_id).await;
    assert_eq!(call.end_reason, Some(EndReason::ProviderError));
    assert_eq!(call.status, CallStatus::Failed);
}

#[tokio::test]
async fn stream_from_another_call_sid_is_refused() {
    let fx = Fx::start().await;
    let (call_id, token) = fx.ring_and_connect(&call_sid()).await;
    let mut ws = connect(&fx).await;
    send(&mut ws, start_frame(&call_sid(), &call_id.to_string(), &token)).await;
    assert_eq!(close_code(&mut ws).await.0, 1008);
    assert!(fx.tree.registry().calls().is_empty());
}
