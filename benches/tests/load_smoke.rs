//! The load tool end to end, on this machine: 20 synthetic Twilio callers
//! against a real engine (started here, bench profile seeded through the
//! admin function), and a few callers against the bare-socket baseline.
//!
//! Asserts what must hold whatever the machine's speed: every call
//! connected, started and completed; frames flowed both ways on every call;
//! marks were echoed on every call; the engine's `/stats` was read. No
//! timing thresholds.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard_benches::load::options::{CallLength, CallerAudio, Pattern};
use switchboard_benches::load::report::{Document, RunReport};
use switchboard_benches::load::runner::{self, Stage};
use switchboard_benches::load::{LoadOptions, Target, baseline};
use switchboard_engine::admin::{LoadProviders, seed_load_profile};
use switchboard_testkit::TestApp;
use url::Url;

fn short_calls(calls: u64, length: Duration, pattern: Pattern) -> LoadOptions {
    LoadOptions {
        calls,
        concurrency: calls,
        // All calls up at once: the ramp is not what this test is about.
        ramp_per_sec: 1000.0,
        call_length: CallLength::fixed(length),
        audio: CallerAudio::Pattern(pattern),
        ..LoadOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_calls_against_the_engine_connect_stream_both_ways_and_echo_marks() {
    let app = TestApp::spawn_with(|s| s.speech.autostart = false)
        .await
        .expect("engine");
    let profile = seed_load_profile(
        &app.store,
        &app.settings.storage.data_dir,
        &app.base_url,
        &LoadProviders::Bench,
    )
    .await
    .expect("seed the load profile");
    // Seeding again reuses everything.
    let again = seed_load_profile(
        &app.store,
        &app.settings.storage.data_dir,
        &app.base_url,
        &LoadProviders::Bench,
    )
    .await
    .expect("reseed");
    assert!(again.changed.is_empty(), "{:?}", again.changed);
    assert_eq!(again.file, profile.file);

    let target = Target {
        label: "engine".into(),
        engine: Url::parse(&app.base_url).expect("url"),
        signing_base: None,
        account_sid: profile.file.account_sid.clone(),
        auth_token: profile.file.auth_token.clone(),
        number: profile.file.number.clone(),
        read_stats: true,
    };
    let pattern = Pattern {
        lead: Duration::from_millis(1200),
        speech: Duration::from_millis(1000),
        silence: Duration::from_secs(3),
        barge_in_every: None,
        barge_in_after: Duration::from_millis(1500),
    };
    // Long enough that a loaded debug build still answers and has its marks
    // echoed within the call (the reply comes ~0.5 s after the speech ends).
    let opts = short_calls(20, Duration::from_secs(8), pattern);
    let result = runner::run(&target, &opts, None).await.expect("run");

    assert_eq!(result.calls.len(), 20);
    for call in &result.calls {
        assert_eq!(call.stage, Stage::Completed, "call {}: {:?}", call.index, call.error);
        assert!(
            call.connect_ms.is_some() && call.start_ms.is_some(),
            "call {}",
            call.index
        );
        assert!(call.frames_sent > 0, "call {} sent nothing", call.index);
        assert!(call.frames_received > 0, "call {} heard nothing", call.index);
        assert!(call.marks_echoed > 0, "call {}: no mark round-tripped", call.index);
        assert_eq!(call.invalid_messages, 0, "call {}", call.index);
        // One jitter sample per bot frame but the first of each utterance: every frame was timed.
        assert_eq!(
            call.pacing.jitter_ms.len() as u64 + call.pacing.utterances,
            call.frames_received
        );
    }
    let report = RunReport::from_run(&result);
    assert_eq!(
        (report.calls.connected, report.calls.started, report.calls.completed),
        (20, 20, 20)
    );
    let engine = report.engine.as_ref().expect("engine figures from /stats");
    assert!(engine.frames_in > 0, "the engine counted no inbound frames");
    assert!(engine.peak_live_calls > 0);
    let doc = Document::new(vec![report], None);
    let json: serde_json::Value = serde_json::from_str(&doc.to_json().expect("json")).expect("parse");
    assert_eq!(json["runs"][0]["calls"]["completed"], 20);
    assert!(doc.render_text().contains("20 completed"));
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_baseline_answers_turns_honours_barge_ins_and_marks() {
    let server = baseline::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("baseline");
    let target = Target {
        label: "baseline".into(),
        engine: Url::parse(&server.url()).expect("url"),
        signing_base: None,
        account_sid: "AC00000000000000000000000000000000".into(),
        auth_token: "baseline".into(),
        number: "+15005550100".into(),
        read_stats: true,
    };
    // Every pause is short: each burst after the first lands on the echo of the one before.
    let pattern = Pattern {
        lead: Duration::from_millis(500),
        speech: Duration::from_millis(1000),
        silence: Duration::from_secs(3),
        barge_in_every: Some(1),
        barge_in_after: Duration::from_millis(900),
    };
    let result = runner::run(&target, &short_calls(3, Duration::from_secs(6), pattern), None)
        .await
        .expect("run");
    assert_eq!(result.calls.len(), 3);
    for call in &result.calls {
        assert_eq!(call.stage, Stage::Completed, "{:?}", call.error);
        assert!(call.frames_received > 0);
        assert!(!call.events.turn_ms.is_empty(), "no turn answered");
        assert!(
            !call.events.barge_in_ms.is_empty(),
            "no barge-in cleared: {:?}",
            call.events
        );
        assert!(call.marks_echoed > 0);
    }
    let report = RunReport::from_run(&result);
    let figures = report.engine.expect("baseline /stats");
    assert!(figures.frames_in > 0 && figures.frames_out > 0);
}
