//! A fake OpenAI Chat Completions server: `POST /v1/chat/completions`.
//!
//! Speaks the real wire format: a request with `"stream": true` gets
//! `text/event-stream` with one `data: {chat.completion.chunk}` event per
//! delta (the first carries `role`, tool calls come as an opening chunk with
//! `id`/`type`/`name` and then several `arguments` fragments, the last chunk
//! has an empty `delta` and a `finish_reason`) and a final `data: [DONE]`.
//! Any other request gets one `chat.completion` JSON with `usage`.
//!
//! Guarantees: each request consumes exactly one queued [`ChatScript`], in
//! FIFO order, and is recorded (body and `Authorization` header) before it is
//! answered; an empty queue answers 500 with an OpenAI-style error body saying
//! the script ran out, so a test that under-scripts fails loudly. The server
//! stops when the [`FakeChat`] is dropped.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::stream::{self, BoxStream, StreamExt};
use serde_json::{Value, json};

/// What the fake answers to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatScript {
    /// Stream (or, for non-streaming requests, return) this text, split into these deltas.
    Text(Vec<String>),
    /// Ask for these tool calls (text before them optional): (id, name, arguments JSON text). Arguments are streamed in several fragments.
    ToolCalls {
        text: Vec<String>,
        calls: Vec<(String, String, String)>,
    },
    /// Answer with this HTTP status and an OpenAI-style error JSON body.
    Status(u16),
    /// [`ChatScript::Status`] with a `Retry-After` header of these seconds.
    StatusRetryAfter(u16, u64),
    /// 429 with OpenAI's `insufficient_quota` error: the account is out of
    /// credit, which no wait heals.
    InsufficientQuota,
    /// 200 with a body that is not valid JSON (or an SSE `data:` line that is not JSON).
    Malformed,
    /// Send these deltas, then stall forever without closing.
    StallAfter(Vec<String>),
    /// Send these deltas, then cut the connection without finish_reason / [DONE].
    CutAfter(Vec<String>),
    /// Wait this long, then behave as the boxed script.
    Delay(Duration, Box<ChatScript>),
}

impl ChatScript {
    /// Convenience: a text reply split into `deltas`.
    pub fn text<S: Into<String>>(deltas: impl IntoIterator<Item = S>) -> Self {
        Self::Text(deltas.into_iter().map(Into::into).collect())
    }
}

#[derive(Default)]
struct Inner {
    queue: VecDeque<ChatScript>,
    requests: Vec<Value>,
    authorization: Vec<Option<String>>,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the recorded requests from the next assertion.
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running fake chat server; see the module docs.
pub struct FakeChat {
    base_url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl FakeChat {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start() -> FakeChat {
        let shared = Shared::default();
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeChat {
            base_url: format!("http://{addr}/v1"),
            shared,
            server,
        }
    }

    /// The API root to hand to a client, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Queues the answer for a later request (one per request, FIFO).
    pub fn push(&self, script: ChatScript) {
        self.shared.lock().queue.push_back(script);
    }

    /// The JSON bodies received so far, in order.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.lock().requests.clone()
    }

    /// The `Authorization` header of each request so far, in order.
    pub fn authorization(&self) -> Vec<Option<String>> {
        self.shared.lock().authorization.clone()
    }
}

impl Drop for FakeChat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn completions(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return error_response(400, "invalid_request_error", "request body is not JSON");
    };
    let streaming = request.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = request
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned();
    let script = {
        let mut inner = shared.lock();
        inner.requests.push(request);
        inner.authorization.push(
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        inner.queue.pop_front()
    };
    let Some(mut script) = script else {
        return error_response(500, "server_error", "the fake chat server's script ran out");
    };
    while let ChatScript::Delay(wait, next) = script {
        tokio::time::sleep(wait).await;
        script = *next;
    }
    let chunks = Chunks::new(model);
    if streaming {
        stream_response(script, chunks)
    } else {
        json_response(script, chunks)
    }
}

fn error_response(status: u16, kind: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let code = match status.as_u16() {
        429 => Value::from("rate_limit_exceeded"),
        _ => Value::Null,
    };
    let kind = match status.as_u16() {
        429 => "requests",
        400..=499 if kind == "server_error" => "invalid_request_error",
        _ => kind,
    };
    let body = json!({ "error": { "message": message, "type": kind, "param": null, "code": code } });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// [`error_response`] for `code` with `Retry-After: seconds`.
fn retry_after_response(code: u16, seconds: u64) -> Response {
    let mut response = error_response(code, "server_error", &format!("scripted status {code}"));
    response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    response
}

/// OpenAI's answer for an account without credit (its `type` and `code` both
/// say so).
fn quota_response() -> Response {
    let body = json!({ "error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": null, "code": "insufficient_quota",
    } });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// Builds `chat.completion(.chunk)` objects sharing one id, time and model.
struct Chunks {
    id: String,
    created: u64,
    model: String,
}

impl Chunks {
    fn new(model: String) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            id: format!("chatcmpl-fake{created}"),
            created,
            model,
        }
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        })
    }

    /// The role chunk, then one chunk per text delta.
    fn text_chunks(&self, deltas: &[String]) -> Vec<Value> {
        let mut out = vec![self.chunk(json!({ "role": "assistant", "content": "" }), None)];
        out.extend(deltas.iter().map(|d| self.chunk(json!({ "content": d }), None)));
        out
    }

    fn tool_call_chunks(&self, calls: &[(String, String, String)]) -> Vec<Value> {
        let mut out = Vec::new();
        for (index, (id, name, arguments)) in calls.iter().enumerate() {
            out.push(self.chunk(
                json!({ "tool_calls": [{
                    "index": index, "id": id, "type": "function",
                    "function": { "name": name, "arguments": "" },
                }] }),
                None,
            ));
            for fragment in fragments(arguments, 3) {
                out.push(self.chunk(
                    json!({ "tool_calls": [{ "index": index, "function": { "arguments": fragment } }] }),
                    None,
                ));
            }
        }
        out
    }

    fn completion(&self, content: Option<String>, tool_calls: Option<Value>, finish_reason: &str) -> Value {
        let mut message = json!({ "role": "assistant", "content": content, "refusal": null });
        if let Some(calls) = tool_calls {
            message["tool_calls"] = calls;
        }
        let completion_tokens = content_tokens(&message);
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason }],
            "usage": { "prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens },
        })
    }
}

/// A rough completion token count for `usage` (a quarter of the characters).
fn content_tokens(message: &Value) -> u64 {
    (message.to_string().chars().count() as u64).div_ceil(4)
}

/// Splits `text` into at most `parts` non-empty pieces on char boundaries.
fn fragments(text: &str, parts: usize) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    if chars.is_empty() {
        return Vec::new();
    }
    let size = chars.len().div_ceil(parts.max(1));
    chars.chunks(size).map(|c| c.iter().collect()).collect()
}

fn sse_event(data: &str) -> Bytes {
    Bytes::from(format!("data: {data}\n\n"))
}

type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

fn sse_response(body: BodyStream) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

/// Events sent one by one, each in its own body frame, so the client sees
/// them arrive separately the way a real model streams.
fn events(values: Vec<Value>) -> BodyStream {
    stream::iter(values)
        .then(|v| async move {
            tokio::task::yield_now().await;
            Ok::<_, std::io::Error>(sse_event(&v.to_string()))
        })
        .boxed()
}

fn done() -> BodyStream {
    stream::iter([Ok(sse_event("[DONE]"))]).boxed()
}

fn stream_response(script: ChatScript, chunks: Chunks) -> Response {
    match script {
        ChatScript::Text(deltas) => {
            let mut values = chunks.text_chunks(&deltas);
            values.push(chunks.chunk(json!({}), Some("stop")));
            sse_response(events(values).chain(done()).boxed())
        }
        ChatScript::ToolCalls { text, calls } => {
            let mut values = chunks.text_chunks(&text);
            values.extend(chunks.tool_call_chunks(&calls));
            values.push(chunks.chunk(json!({}), Some("tool_calls")));
            sse_response(events(values).chain(done()).boxed())
        }
        ChatScript::Status(code) => error_response(code, "server_error", &format!("scripted status {code}")),
        ChatScript::StatusRetryAfter(code, seconds) => retry_after_response(code, seconds),
        ChatScript::InsufficientQuota => quota_response(),
        ChatScript::Malformed => sse_response(
            stream::iter([Ok(sse_event("{\"id\": \"chatcmpl-x\", \"choices\": [oops"))])
                .chain(done())
                .boxed(),
        ),
        ChatScript::StallAfter(deltas) => {
            sse_response(events(chunks.text_chunks(&deltas)).chain(stream::pending()).boxed())
        }
        ChatScript::CutAfter(deltas) => sse_response(events(chunks.text_chunks(&deltas)).chain(cut()).boxed()),
        ChatScript::Delay(_, next) => stream_response(*next, chunks),
    }
}

/// A body error: hyper drops the connection without the terminating chunk.
/// The pause first lets hyper flush what was sent: it polls the body again
/// before flushing, and an immediate error would discard the buffered deltas.
fn cut() -> BodyStream {
    stream::once(async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted cut"))
    })
    .boxed()
}

fn json_response(script: ChatScript, chunks: Chunks) -> Response {
    let json_ok = |value: Value| {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            value.to_string(),
        )
            .into_response()
    };
    match script {
        ChatScript::Text(deltas) => json_ok(chunks.completion(Some(deltas.concat()), None, "stop")),
        ChatScript::ToolCalls { text, calls } => {
            let content = (!text.is_empty()).then(|| text.concat());
            let calls = calls
                .iter()
                .map(|(id, name, arguments)| {
                    json!({ "id": id, "type": "function", "function": { "name": name, "arguments": arguments } })
                })
                .collect::<Vec<_>>();
            json_ok(chunks.completion(content, Some(Value::Array(calls)), "tool_calls"))
        }
        ChatScript::Status(code) => error_response(code, "server_error", &format!("scripted status {code}")),
        ChatScript::StatusRetryAfter(code, seconds) => retry_after_response(code, seconds),
        ChatScript::InsufficientQuota => quota_response(),
        ChatScript::Malformed => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{\"id\": \"chatcmpl-x\", \"choices\": [oops",
        )
            .into_response(),
        ChatScript::StallAfter(_) => {
            let body: BoxStream<'static, Result<Bytes, Infallible>> = stream::pending().boxed();
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(body),
            )
                .into_response()
        }
        ChatScript::CutAfter(deltas) => {
            let partial = chunks.completion(Some(deltas.concat()), None, "stop").to_string();
            let half = partial.len() / 2;
            let head = Bytes::from(partial.into_bytes()).slice(..half);
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(stream::iter([Ok(head)]).chain(cut())),
            )
                .into_response()
        }
        ChatScript::Delay(_, next) => json_response(*next, chunks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_split_on_char_boundaries() {
        assert_eq!(fragments("", 3), Vec::<String>::new());
        assert_eq!(fragments("abcdefg", 3), vec!["abc", "def", "g"]);
        assert_eq!(fragments("héé", 3).concat(), "héé");
        assert_eq!(fragments("ab", 3), vec!["a", "b"]);
    }
}
