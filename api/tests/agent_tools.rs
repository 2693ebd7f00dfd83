//! The LLM agent with tools over a Twilio-style call, through the real
//! webhook, media socket, call actor and tool host: the caller asks for an
//! appointment, the (fake) model calls `book_appointment`, the row appears,
//! and the confirmation is spoken.

mod twilio_support;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use futures::future::BoxFuture;
use switchboard_domain::{AgentUpdate, CallId, Endpointing, PageRequest, Speaker};
use switchboard_fakes::openai_chat::{ChatScript, FakeChat};
use switchboard_media::ulaw;
use switchboard_media::vad::synth::{silence, to_i16, voiced};
use switchboard_providers::{
    CallProviders, LlmAgent, LlmConfig, ProviderError, SpeechToText, StreamConfig, SttEvent, SttStream,
};
use switchboard_store::AppointmentFilter;
use switchboard_store::Scope;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use twilio_support::*;

const ASKED: &str = "I'd like to book an appointment on May 7th 2030 at 3 PM.";

/// STT that hears [`ASKED`] in every utterance.
struct AskingStt;

struct AskingStream {
    finished: bool,
    done: bool,
}

impl SpeechToText for AskingStt {
    fn start(&self, _config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        Box::pin(async {
            Ok(Box::new(AskingStream {
                finished: false,
                done: false,
            }) as Box<dyn SttStream>)
        })
    }
}

impl SttStream for AskingStream {
    fn push_audio<'a>(&'a mut self, _samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.finished = true;
        Box::pin(async { Ok(()) })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>> {
        let event = (self.finished && !self.done).then(|| {
            self.done = true;
            SttEvent::Final {
                text: ASKED.to_owned(),
                start_ms: 0,
                end_ms: 1000,
            }
        });
        Box::pin(async move { Ok(event) })
    }
}

/// Bound on the caller's silence while the reply is prepared, played and settled.
const SETTLE: Duration = Duration::from_secs(30);

/// Drains what the engine sent so far: echoes each mark the way Twilio does
/// once its audio has played, and counts the media frames.
async fn echo_marks(ws: &mut Ws) -> usize {
    let mut media = 0;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(1), ws.next()).await {
        let WsMessage::Text(text) = msg else { continue };
        let value: serde_json::Value = serde_json::from_str(&text).expect("json from the engine");
        match value["event"].as_str() {
            Some("media") => media += 1,
            Some("mark") => {
                let name = value["mark"]["name"].as_str().expect("mark name").to_owned();
                let echo = serde_json::json!({
                    "event": "mark",
                    "sequenceNumber": "0",
                    "streamSid": "MZ0123456789abcdef0123456789abcdef",
                    "mark": {"name": name}
                });
                send(ws, echo.to_string()).await;
            }
            _ => {}
        }
    }
    media
}

async fn transcript(fx: &Fx, call_id: CallId) -> Vec<(Speaker, String)> {
    fx.store
        .transcripts()
        .list(call_id)
        .await
        .expect("transcript")
        .into_iter()
        .map(|l| (l.speaker, l.text))
        .collect()
}

/// Whether an agent line is in the transcript: a reply is stored once it has
/// been played and every mark of it came back.
async fn agent_line_stored(fx: &Fx, call_id: CallId) -> bool {
    transcript(fx, call_id)
        .await
        .iter()
        .any(|(speaker, _)| *speaker == Speaker::Agent)
}

fn ulaw_frames(pcm: &[i16]) -> Vec<String> {
    pcm.chunks(160)
        .map(|chunk| {
            let mut bytes = [ulaw::SILENCE; 160];
            ulaw::encode_into(chunk, &mut bytes[..chunk.len()]);
            base64::engine::general_purpose::STANDARD.encode(bytes)
        })
        .collect()
}

#[tokio::test]
async fn the_model_books_through_the_tool_and_the_confirmation_is_spoken() {
    let fx = Fx::start().await;
    let tenant = tenant_of(&fx);
    fx.store
        .agents()
        .update(
            Scope::Tenant(tenant),
            fx.agent.id,
            AgentUpdate {
                greeting: Some(String::new()),
                tools: Some(vec!["book_appointment".into(), "end_call".into()]),
                settings: Some(serde_json::json!({ "tools": { "timezone": "+00:00" } })),
                // No "Are you still there?" however long a loaded machine takes.
                endpointing: Some(Endpointing {
                    idle_timeout_ms: 0,
                    ..Endpointing::default()
                }),
                ..AgentUpdate::default()
            },
        )
        .await
        .expect("agent update");

    let chat = FakeChat::start().await;
    chat.push(ChatScript::ToolCalls {
        text: vec![],
        calls: vec![(
            "call_1".into(),
            "book_appointment".into(),
            r#"{"start": "2030-05-07T15:00:00Z", "title": "Consultation"}"#.into(),
        )],
    });
    chat.push(ChatScript::text([
        "You're booked ",
        "for Tuesday, May 7 at 3:00 PM. ",
        "See you then!",
    ]));
    let llm = LlmAgent::new(LlmConfig::openai_compatible(&chat.base_url(), None, "fake-model")).expect("llm");
    *fx.factory.providers.lock().expect("lock") = Some(CallProviders {
        stt: Arc::new(AskingStt),
        tts: Arc::new(ToneTts),
        agent: Arc::new(llm),
        telephony: None,
        context: Default::default(),
        backup: Default::default(),
        realtime: None,
    });

    let sid = call_sid();
    let (call_id, token) = fx.ring_and_connect(&sid).await;
    let mut ws = connect(&fx).await;
    send(&mut ws, connected_frame()).await;
    send(&mut ws, start_frame(&sid, &call_id.to_string(), &token)).await;
    fx.wait_live(1).await;

    // The caller speaks for a second, then stays silent; marks are echoed
    // the way Twilio does once their audio has played.
    let mut pcm = to_i16(&silence(8000, 300));
    pcm.extend(to_i16(&voiced(8000, 1000, 12000.0, 3)));
    pcm.extend(to_i16(&silence(8000, 1000)));
    let mut media_back = 0usize;
    let mut seq = 0u32;
    for payload in &ulaw_frames(&pcm) {
        send(&mut ws, media_frame_raw(seq, payload)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        media_back += echo_marks(&mut ws).await;
    }
    // The caller stays silent (real-time paced frames, marks echoed) until the
    // reply has been played in full and settled in the transcript: end of
    // speech, two model round trips, the tool's writes and the playback all
    // take however long a loaded machine needs, within a generous bound.
    let quiet = ulaw_frames(&to_i16(&silence(8000, 20))).remove(0);
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if seq.is_multiple_of(5) && agent_line_stored(&fx, call_id).await {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "the agent's reply was not settled in the transcript within {SETTLE:?}: \
                 {} model request(s), {media_back} media frame(s) back, transcript {:?}",
                chat.requests().len(),
                transcript(&fx, call_id).await
            );
        }
        send(&mut ws, media_frame_raw(seq, &quiet)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
        media_back += echo_marks(&mut ws).await;
    }
    send(&mut ws, stop_frame(&sid)).await;
    let call = fx.wait_ended(call_id).await;
    assert_eq!(call.end_reason, Some(switchboard_domain::EndReason::CallerHangup));

    // The appointment row is there, for the caller's contact and this call.
    let appointments = fx
        .store
        .appointments()
        .list(
            Scope::Tenant(tenant),
            &AppointmentFilter::default(),
            PageRequest { limit: 10, offset: 0 },
        )
        .await
        .expect("appointments")
        .items;
    assert_eq!(appointments.len(), 1, "{appointments:?}");
    assert_eq!(appointments[0].starts_at.to_rfc3339(), "2030-05-07T15:00:00+00:00");
    let contact = fx
        .store
        .contacts()
        .find_by_phone(tenant, &switchboard_domain::E164::parse(CALLER).expect("caller"))
        .await
        .expect("contact read")
        .expect("the caller became a contact");
    assert_eq!(appointments[0].contact_id, Some(contact.id));

    // The model saw the caller's words, then the tool's result with the time in words.
    let requests = chat.requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0]["messages"].to_string();
    assert!(first.contains("May 7th 2030 at 3 PM"), "{first}");
    assert!(
        requests[0]["tools"].to_string().contains("book_appointment"),
        "tools offered: {}",
        requests[0]["tools"]
    );
    let tool_message = requests[1]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("a tool message")
        .clone();
    assert_eq!(tool_message["tool_call_id"], "call_1");
    let result: serde_json::Value =
        serde_json::from_str(tool_message["content"].as_str().expect("content")).expect("tool result JSON");
    assert_eq!(result["appointment_id"], appointments[0].id.to_string());
    assert!(result["spoken"].as_str().expect("spoken").contains("May 7"), "{result}");

    // The confirmation was played and is in the transcript.
    assert!(media_back > 0, "no reply audio came back");
    let lines = transcript(&fx, call_id).await;
    assert_eq!(
        lines,
        vec![
            (Speaker::Caller, ASKED.to_owned()),
            (
                Speaker::Agent,
                "You're booked for Tuesday, May 7 at 3:00 PM. See you then!".to_owned()
            ),
        ]
    );
}
