//! Assembling one streamed model reply from `chat.completion.chunk`s.
//!
//! Pure and synchronous. Text deltas are handed back as they arrive so they
//! can be spoken at once; tool-call pieces are accumulated per `index` (the
//! `id` and `name` when present, the `arguments` fragments concatenated).
//!
//! Guarantees: a reply is bounded ([`MAX_REPLY_BYTES`] of text,
//! [`MAX_TOOL_CALLS`] calls of at most [`MAX_ARGUMENT_BYTES`] arguments);
//! going past a bound, or a tool call without a name, is a malformed reply,
//! reported as an error string, never a panic.

use std::collections::BTreeMap;

use async_openai::types::chat::CreateChatCompletionStreamResponse;

/// Largest text of one model reply (one request) accepted.
pub const MAX_REPLY_BYTES: usize = 32 * 1024;
/// Most tool calls one model reply may ask for.
pub const MAX_TOOL_CALLS: usize = 16;
/// Largest `arguments` text of one tool call accepted.
pub const MAX_ARGUMENT_BYTES: usize = 64 * 1024;

/// One complete tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// The model's raw JSON text, unchanged.
    pub arguments: String,
}

#[derive(Debug, Default)]
struct PartialCall {
    id: Option<String>,
    name: Option<String>,
    arguments: String,
}

/// What one chunk contributed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Text to speak now.
    pub text: Option<String>,
    /// Whether the chunk carried model output (text, a tool call or the
    /// finish reason), as opposed to only a role or usage.
    pub progressed: bool,
}

/// The reply to one request, as far as it has arrived.
#[derive(Debug, Default)]
pub struct Reply {
    text: String,
    calls: BTreeMap<u32, PartialCall>,
    finished: bool,
}

impl Reply {
    /// Applies one chunk. Only choice 0 is read (we never ask for more).
    pub fn apply(&mut self, chunk: CreateChatCompletionStreamResponse) -> Result<Step, String> {
        let mut step = Step::default();
        for choice in chunk.choices.into_iter().filter(|c| c.index == 0) {
            let delta = choice.delta;
            let spoken: String = delta.content.into_iter().chain(delta.refusal).collect();
            if !spoken.is_empty() {
                if self.text.len() + spoken.len() > MAX_REPLY_BYTES {
                    return Err(format!("reply text longer than {MAX_REPLY_BYTES} bytes"));
                }
                self.text.push_str(&spoken);
                step.text = Some(spoken);
                step.progressed = true;
            }
            for piece in delta.tool_calls.unwrap_or_default() {
                step.progressed = true;
                if !self.calls.contains_key(&piece.index) && self.calls.len() >= MAX_TOOL_CALLS {
                    return Err(format!("more than {MAX_TOOL_CALLS} tool calls in one reply"));
                }
                let call = self.calls.entry(piece.index).or_default();
                if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
                    call.id = Some(id);
                }
                if let Some(function) = piece.function {
                    if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                        call.name = Some(name);
                    }
                    if let Some(fragment) = function.arguments {
                        if call.arguments.len() + fragment.len() > MAX_ARGUMENT_BYTES {
                            return Err(format!("tool call arguments longer than {MAX_ARGUMENT_BYTES} bytes"));
                        }
                        call.arguments.push_str(&fragment);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                self.finished = true;
                step.progressed = true;
            }
        }
        Ok(step)
    }

    /// Whether the model said it is done (any `finish_reason`).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// All text of the reply so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The complete tool calls, in `index` order. Decided by what arrived,
    /// not by `finish_reason`: some compatible servers report `stop` with
    /// tool calls. A missing id gets a stable local one (`call_{index}`).
    pub fn tool_calls(&self) -> Result<Vec<ToolCall>, String> {
        self.calls
            .iter()
            .map(|(index, call)| {
                let name = call
                    .name
                    .clone()
                    .ok_or_else(|| format!("tool call {index} has no function name"))?;
                Ok(ToolCall {
                    id: call.id.clone().unwrap_or_else(|| format!("call_{index}")),
                    name,
                    arguments: call.arguments.clone(),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn chunk(delta: serde_json::Value, finish: Option<&str>) -> CreateChatCompletionStreamResponse {
        serde_json::from_value(json!({
            "id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }))
        .expect("valid chunk")
    }

    #[test]
    fn text_deltas_come_back_one_by_one() {
        let mut r = Reply::default();
        let role = r
            .apply(chunk(json!({"role": "assistant", "content": ""}), None))
            .unwrap();
        assert_eq!(role, Step::default());
        let s = r.apply(chunk(json!({"content": "Hel"}), None)).unwrap();
        assert_eq!(s.text.as_deref(), Some("Hel"));
        r.apply(chunk(json!({"content": "lo"}), None)).unwrap();
        assert!(!r.finished());
        let end = r.apply(chunk(json!({}), Some("stop"))).unwrap();
        assert!(end.progressed && end.text.is_none());
        assert!(r.finished());
        assert_eq!(r.text(), "Hello");
        assert_eq!(r.tool_calls().unwrap(), vec![]);
    }

    #[test]
    fn tool_call_pieces_accumulate_per_index() {
        let mut r = Reply::default();
        for (delta, finish) in [
            (
                json!({"tool_calls": [{"index": 1, "id": "b", "type": "function", "function": {"name": "two", "arguments": ""}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 0, "id": "a", "type": "function", "function": {"name": "one", "arguments": "{\"x\""}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                None,
            ),
            (
                json!({"tool_calls": [{"index": 0, "function": {"arguments": ":1}"}}]}),
                None,
            ),
            (json!({}), Some("tool_calls")),
        ] {
            r.apply(chunk(delta, finish)).unwrap();
        }
        assert_eq!(
            r.tool_calls().unwrap(),
            vec![
                ToolCall {
                    id: "a".into(),
                    name: "one".into(),
                    arguments: "{\"x\":1}".into()
                },
                ToolCall {
                    id: "b".into(),
                    name: "two".into(),
                    arguments: "{}".into()
                },
            ]
        );
    }

    #[test]
    fn nameless_calls_and_oversized_replies_are_malformed() {
        let mut r = Reply::default();
        r.apply(chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
            None,
        ))
        .unwrap();
        assert!(r.tool_calls().is_err());

        let mut r = Reply::default();
        let big = "x".repeat(MAX_REPLY_BYTES / 2 + 1);
        r.apply(chunk(json!({"content": big}), None)).unwrap();
        assert!(r.apply(chunk(json!({"content": big}), None)).is_err());

        let mut r = Reply::default();
        for i in 0..MAX_TOOL_CALLS as u32 {
            r.apply(chunk(
                json!({"tool_calls": [{"index": i, "function": {"name": "t"}}]}),
                None,
            ))
            .unwrap();
        }
        let extra = json!({"tool_calls": [{"index": MAX_TOOL_CALLS, "function": {"name": "t"}}]});
        assert!(r.apply(chunk(extra, None)).is_err());
    }
}
