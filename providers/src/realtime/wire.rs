//! The Realtime wire format, sans-IO: client events as JSON text, and the
//! [`Decoder`] that turns server text frames into [`RealtimeEvent`]s.
//!
//! Guarantees: the decoder accepts both the beta and the GA event names
//! (protocols.md §6.4) and yields one event per function call whichever of
//! `response.function_call_arguments.done` and `response.output_item.done`
//! arrive; text that is not JSON, or a known event missing a field we need,
//! is an `Err(reason)`, never a panic; unknown events are `Ok(None)`.

use std::collections::{HashMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ItemId, RealtimeConfig, RealtimeEvent, RealtimeInterface, ResponseId, ResponseStatus, ToolCallId};

/// Function calls remembered for de-duplication; a response rarely has more
/// than a few, so this only bounds memory on a hostile stream.
const REMEMBERED_CALLS: usize = 64;

/// `input_audio_buffer.append` with `ulaw` base64-encoded, built in one
/// allocation of the exact size: this runs 50 times a second per call.
pub(crate) fn append_audio(ulaw: &[u8]) -> String {
    const HEAD: &str = r#"{"type":"input_audio_buffer.append","audio":""#;
    const TAIL: &str = r#""}"#;
    let mut text = String::with_capacity(HEAD.len() + base64::encoded_len(ulaw.len(), true).unwrap_or(0) + TAIL.len());
    text.push_str(HEAD);
    // Base64 needs no JSON escaping.
    B64.encode_string(ulaw, &mut text);
    text.push_str(TAIL);
    text
}

/// `session.update` for μ-law both ways, in the interface's shape (§6.2).
pub(crate) fn session_update(config: &RealtimeConfig) -> String {
    let tools: Vec<Value> = config
        .tools
        .iter()
        .map(|t| json!({"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}))
        .collect();
    let turn_detection = config.turn_detection.as_ref().map_or(Value::Null, |td| {
        json!({
            "type": "server_vad",
            "threshold": td.threshold,
            "prefix_padding_ms": td.prefix_padding_ms,
            "silence_duration_ms": td.silence_duration_ms,
            "create_response": td.create_response,
            "interrupt_response": td.interrupt_response,
        })
    });
    let transcription = config
        .input_transcription_model
        .as_ref()
        .map_or(Value::Null, |model| json!({"model": model}));
    let session = match config.interface {
        RealtimeInterface::Beta => json!({
            "modalities": ["text", "audio"],
            "instructions": config.instructions,
            "voice": config.voice,
            "input_audio_format": "g711_ulaw",
            "output_audio_format": "g711_ulaw",
            "input_audio_transcription": transcription,
            "turn_detection": turn_detection,
            "tools": tools,
            "tool_choice": "auto",
        }),
        RealtimeInterface::Ga => {
            let mut input = json!({"format": {"type": "audio/pcmu"}, "turn_detection": turn_detection});
            // GA rejects `transcription: null` on some versions; leave it out instead.
            if !transcription.is_null() {
                input["transcription"] = transcription;
            }
            json!({
                "type": "realtime",
                "output_modalities": ["audio"],
                "instructions": config.instructions,
                "audio": {
                    "input": input,
                    "output": {"format": {"type": "audio/pcmu"}, "voice": config.voice},
                },
                "tools": tools,
                "tool_choice": "auto",
            })
        }
    };
    json!({"type": "session.update", "session": session}).to_string()
}

pub(crate) fn truncate(item_id: &ItemId, content_index: u32, audio_end_ms: u64) -> String {
    json!({
        "type": "conversation.item.truncate",
        "item_id": item_id.as_str(),
        "content_index": content_index,
        "audio_end_ms": audio_end_ms,
    })
    .to_string()
}

pub(crate) fn function_output(call_id: &ToolCallId, output: &Value) -> String {
    json!({
        "type": "conversation.item.create",
        "item": {"type": "function_call_output", "call_id": call_id.as_str(), "output": output.to_string()},
    })
    .to_string()
}

pub(crate) const RESPONSE_CREATE: &str = r#"{"type":"response.create"}"#;
pub(crate) const RESPONSE_CANCEL: &str = r#"{"type":"response.cancel"}"#;

/// Server events we act on; both name sets map to one variant.
#[derive(Deserialize)]
#[serde(tag = "type")]
enum ServerEvent {
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "error")]
    Error { error: ErrorBody },
    #[serde(rename = "input_audio_buffer.speech_started")]
    SpeechStarted { audio_start_ms: u64, item_id: String },
    #[serde(rename = "input_audio_buffer.speech_stopped")]
    SpeechStopped { audio_end_ms: u64, item_id: String },
    #[serde(rename = "response.created")]
    ResponseCreated { response: ResponseBody },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseBody },
    #[serde(rename = "response.audio.delta", alias = "response.output_audio.delta")]
    AudioDelta {
        response_id: String,
        item_id: String,
        #[serde(default)]
        content_index: u32,
        delta: String,
    },
    #[serde(rename = "response.audio.done", alias = "response.output_audio.done")]
    AudioDone { response_id: String, item_id: String },
    #[serde(
        rename = "response.audio_transcript.delta",
        alias = "response.output_audio_transcript.delta"
    )]
    TranscriptDelta { item_id: String, delta: String },
    #[serde(
        rename = "response.audio_transcript.done",
        alias = "response.output_audio_transcript.done"
    )]
    TranscriptDone { item_id: String, transcript: String },
    #[serde(rename = "conversation.item.input_audio_transcription.completed")]
    CallerTranscript { item_id: String, transcript: String },
    #[serde(rename = "response.output_item.added")]
    OutputItemAdded { item: Item },
    #[serde(rename = "response.function_call_arguments.done")]
    ArgumentsDone {
        call_id: String,
        /// In the spec since the 2025 schemas; older beta servers leave it
        /// out, and then the name comes from the item.
        name: Option<String>,
        arguments: String,
    },
    #[serde(rename = "response.output_item.done")]
    OutputItemDone { item: Item },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct ResponseBody {
    id: String,
    status: Option<String>,
    status_details: Option<StatusDetails>,
}

#[derive(Deserialize)]
struct StatusDetails {
    reason: Option<String>,
}

/// An output item; only function calls matter here.
#[derive(Deserialize)]
struct Item {
    #[serde(rename = "type")]
    kind: String,
    status: Option<String>,
    call_id: Option<String>,
    name: Option<String>,
    arguments: Option<String>,
}

/// Turns server text frames into events and tracks whether a response is in
/// progress (for the receiver's stall timer).
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    active_response: Option<String>,
    /// Function names from `response.output_item.added`, by call id.
    call_names: HashMap<String, String>,
    /// Calls already yielded, oldest first.
    yielded_calls: VecDeque<String>,
}

impl Decoder {
    /// Whether the server is producing a response (between `response.created`,
    /// or its first output, and `response.done`).
    pub(crate) fn response_active(&self) -> bool {
        self.active_response.is_some()
    }

    /// The next event in `text`: `Ok(None)` for events we do not act on,
    /// `Err(reason)` for text that is not a well-formed server event.
    pub(crate) fn decode(&mut self, text: &str) -> Result<Option<RealtimeEvent>, String> {
        let event: ServerEvent = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(match event {
            ServerEvent::SessionUpdated => Some(RealtimeEvent::SessionReady),
            ServerEvent::Error { error } => Some(RealtimeEvent::Error {
                code: error.code,
                message: error.message,
            }),
            ServerEvent::SpeechStarted {
                audio_start_ms,
                item_id,
            } => Some(RealtimeEvent::SpeechStarted {
                audio_start_ms,
                item_id: ItemId::from(item_id),
            }),
            ServerEvent::SpeechStopped { audio_end_ms, item_id } => Some(RealtimeEvent::SpeechStopped {
                audio_end_ms,
                item_id: ItemId::from(item_id),
            }),
            ServerEvent::ResponseCreated { response } => {
                self.active_response = Some(response.id.clone());
                Some(RealtimeEvent::ResponseStarted {
                    response_id: ResponseId::from(response.id),
                })
            }
            ServerEvent::ResponseDone { response } => {
                self.active_response = None;
                self.call_names.clear();
                let status = ResponseStatus::parse(response.status.as_deref().unwrap_or_default());
                let reason = response.status_details.and_then(|d| d.reason);
                Some(RealtimeEvent::ResponseDone {
                    response_id: ResponseId::from(response.id),
                    status,
                    reason,
                })
            }
            ServerEvent::AudioDelta {
                response_id,
                item_id,
                content_index,
                delta,
            } => {
                let ulaw = B64
                    .decode(delta.as_bytes())
                    .map_err(|e| format!("audio delta is not base64: {e}"))?;
                self.mark_active(&response_id);
                Some(RealtimeEvent::AudioDelta {
                    response_id: ResponseId::from(response_id),
                    item_id: ItemId::from(item_id),
                    content_index,
                    ulaw,
                })
            }
            ServerEvent::AudioDone { response_id, item_id } => Some(RealtimeEvent::AudioDone {
                response_id: ResponseId::from(response_id),
                item_id: ItemId::from(item_id),
            }),
            ServerEvent::TranscriptDelta { item_id, delta } => Some(RealtimeEvent::AgentTranscriptDelta {
                item_id: ItemId::from(item_id),
                text: delta,
            }),
            ServerEvent::TranscriptDone { item_id, transcript } => Some(RealtimeEvent::AgentTranscriptDone {
                item_id: ItemId::from(item_id),
                text: transcript,
            }),
            ServerEvent::CallerTranscript { item_id, transcript } => Some(RealtimeEvent::CallerTranscript {
                item_id: ItemId::from(item_id),
                text: transcript,
            }),
            ServerEvent::OutputItemAdded { item } => {
                if let (Some(call_id), Some(name)) = (item.call_id, item.name) {
                    self.call_names.insert(call_id, name);
                }
                None
            }
            ServerEvent::ArgumentsDone {
                call_id,
                name,
                arguments,
            } => {
                let name = name.or_else(|| self.call_names.get(&call_id).cloned());
                match name {
                    Some(name) => self.function_call(call_id, name, arguments),
                    // Without a name the call is not actionable; the item's
                    // `response.output_item.done` carries it.
                    None => None,
                }
            }
            ServerEvent::OutputItemDone { item } if item.kind == "function_call" => {
                if item.status.as_deref() == Some("incomplete") {
                    tracing::debug!("realtime: skipping an incomplete function call item");
                    return Ok(None);
                }
                match (item.call_id, item.name, item.arguments) {
                    (Some(call_id), Some(name), Some(arguments)) => self.function_call(call_id, name, arguments),
                    _ => return Err("function_call item without call_id, name or arguments".to_owned()),
                }
            }
            ServerEvent::OutputItemDone { .. } => None,
            ServerEvent::Other => {
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let kind = serde_json::from_str::<Value>(text)
                        .ok()
                        .and_then(|v| v["type"].as_str().map(str::to_owned));
                    tracing::debug!(
                        event = kind.as_deref().unwrap_or("?"),
                        "realtime: skipping server event"
                    );
                }
                None
            }
        })
    }

    /// Audio before `response.created` (a server that skips it) still starts the stall timer.
    fn mark_active(&mut self, response_id: &str) {
        if self.active_response.as_deref() != Some(response_id) {
            self.active_response = Some(response_id.to_owned());
        }
    }

    /// The call once, however many `.done` events announce it.
    fn function_call(&mut self, call_id: String, name: String, arguments: String) -> Option<RealtimeEvent> {
        if self.yielded_calls.contains(&call_id) {
            return None;
        }
        if self.yielded_calls.len() == REMEMBERED_CALLS {
            self.yielded_calls.pop_front();
        }
        self.yielded_calls.push_back(call_id.clone());
        Some(RealtimeEvent::FunctionCall {
            call_id: ToolCallId::from(call_id),
            name,
            arguments,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(lines: &[Value]) -> Vec<RealtimeEvent> {
        let mut d = Decoder::default();
        lines
            .iter()
            .filter_map(|l| d.decode(&l.to_string()).expect("well-formed"))
            .collect()
    }

    #[test]
    fn append_is_valid_json_with_base64_audio() {
        let frame: Vec<u8> = (0..160u8).collect();
        let v: Value = serde_json::from_str(&append_audio(&frame)).expect("json");
        assert_eq!(v["type"], "input_audio_buffer.append");
        assert_eq!(B64.decode(v["audio"].as_str().expect("audio")).expect("b64"), frame);
    }

    #[test]
    fn beta_and_ga_audio_names_decode_alike() {
        for name in ["response.audio.delta", "response.output_audio.delta"] {
            let e = decode_all(&[
                json!({"type": name, "response_id": "r", "item_id": "i", "output_index": 0,
                                        "content_index": 1, "delta": B64.encode([1, 2, 255])}),
            ]);
            assert_eq!(
                e,
                vec![RealtimeEvent::AudioDelta {
                    response_id: ResponseId::from("r"),
                    item_id: ItemId::from("i"),
                    content_index: 1,
                    ulaw: vec![1, 2, 255],
                }]
            );
        }
    }

    #[test]
    fn function_call_yielded_once_from_either_done_event() {
        let args =
            json!({"type": "response.function_call_arguments.done", "call_id": "c1", "name": "f", "arguments": "{}"});
        let item = json!({"type": "response.output_item.done",
                          "item": {"type": "function_call", "status": "completed", "call_id": "c1", "name": "f", "arguments": "{}"}});
        let want = vec![RealtimeEvent::FunctionCall {
            call_id: ToolCallId::from("c1"),
            name: "f".into(),
            arguments: "{}".into(),
        }];
        assert_eq!(decode_all(&[args.clone(), item.clone()]), want);
        assert_eq!(decode_all(&[item.clone(), args.clone()]), want);
        assert_eq!(decode_all(std::slice::from_ref(&item)), want);
        // Without a name, arguments.done waits for the item.
        let nameless = json!({"type": "response.function_call_arguments.done", "call_id": "c1", "arguments": "{}"});
        assert_eq!(decode_all(&[nameless.clone(), item]), want);
        let added = json!({"type": "response.output_item.added",
                           "item": {"type": "function_call", "call_id": "c1", "name": "f", "arguments": ""}});
        assert_eq!(decode_all(&[added, nameless]), want);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut d = Decoder::default();
        assert!(d.decode("{not json").is_err());
        assert!(
            d.decode(r#"{"type":"response.audio.delta","response_id":"r","item_id":"i"}"#)
                .is_err()
        );
        assert!(
            d.decode(r#"{"type":"response.audio.delta","response_id":"r","item_id":"i","delta":"@@"}"#)
                .is_err()
        );
        assert!(d.decode(r#"[1,2]"#).is_err());
        assert_eq!(d.decode(r#"{"type":"rate_limits.updated","rate_limits":[]}"#), Ok(None));
    }

    #[test]
    fn response_activity_follows_created_and_done() {
        let mut d = Decoder::default();
        assert!(!d.response_active());
        d.decode(r#"{"type":"response.created","response":{"id":"r1","status":"in_progress"}}"#)
            .expect("ok");
        assert!(d.response_active());
        let done = d
            .decode(r#"{"type":"response.done","response":{"id":"r1","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"}}}"#)
            .expect("ok");
        assert_eq!(
            done,
            Some(RealtimeEvent::ResponseDone {
                response_id: ResponseId::from("r1"),
                status: ResponseStatus::Cancelled,
                reason: Some("turn_detected".into()),
            })
        );
        assert!(!d.response_active());
    }
}
