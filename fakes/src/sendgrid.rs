//! A fake SendGrid v3 Mail Send server: `POST /v3/mail/send`.
//!
//! Every request is recorded (authorization header, content type, raw body
//! and parsed JSON) before it is answered. Answers come from a script queue,
//! one per request in order; when the queue is empty the fake behaves like
//! SendGrid: a missing or non-Bearer `Authorization` gets `401`, a body that
//! is not a valid Mail Send request (no `personalizations[].to[].email`,
//! `from.email`, `subject` or `content[]`) gets `400`, and a valid one gets
//! `202 Accepted` with an empty body and an `X-Message-Id` header. Error
//! bodies have SendGrid's shape `{"errors":[{"message","field","help"}]}`.
//! The server stops when the [`FakeSendGrid`] is dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendGridReply {
    /// `202 Accepted`, empty body (also what an empty script gives a valid request).
    Accepted,
    /// This status with a SendGrid-shaped error body (`message` = "scripted error").
    Status(u16),
    /// This status with a SendGrid error whose `field` and `message` are given.
    Error {
        status: u16,
        field: Option<String>,
        message: String,
    },
    /// This status and exactly this body (e.g. malformed JSON).
    Raw { status: u16, body: String },
    /// Never answer (until the client gives up or the fake is dropped).
    Stall,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct SendGridRequest {
    /// The `Authorization` header as sent (`Bearer <key>`).
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub raw_body: String,
    /// The body parsed as JSON (`Value::Null` when it was not JSON).
    pub body: Value,
}

impl SendGridRequest {
    /// Every `personalizations[].to[].email`.
    pub fn to(&self) -> Vec<String> {
        self.body["personalizations"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|p| p["to"].as_array().into_iter().flatten())
            .filter_map(|to| to["email"].as_str().map(str::to_owned))
            .collect()
    }

    pub fn from(&self) -> Option<&str> {
        self.body["from"]["email"].as_str()
    }

    pub fn subject(&self) -> Option<&str> {
        self.body["subject"].as_str()
    }

    /// The `value` of the `content[]` entry of this MIME type.
    pub fn content(&self, mime: &str) -> Option<&str> {
        self.body["content"].as_array()?.iter().find(|c| c["type"] == mime)?["value"].as_str()
    }

    /// The `text/plain` content.
    pub fn text(&self) -> Option<&str> {
        self.content("text/plain")
    }

    /// The `text/html` content.
    pub fn html(&self) -> Option<&str> {
        self.content("text/html")
    }
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<SendGridReply>>,
    requests: Mutex<Vec<SendGridRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the recorded requests from the others.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The running fake; see the module docs.
pub struct FakeSendGrid {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeSendGrid {
    /// Binds `127.0.0.1:0` and starts serving.
    pub async fn start() -> FakeSendGrid {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v3/mail/send", post(mail_send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake SendGrid server");
        let addr = listener.local_addr().expect("local address");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSendGrid { addr, shared, server }
    }

    /// The API root to configure the adapter with (`http://127.0.0.1:PORT`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the answer to a future request.
    pub fn push(&self, reply: SendGridReply) {
        lock(&self.shared.script).push_back(reply);
    }

    /// Queues a status answer (`202` is [`SendGridReply::Accepted`]).
    pub fn push_status(&self, status: u16) {
        self.push(if status == 202 {
            SendGridReply::Accepted
        } else {
            SendGridReply::Status(status)
        });
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<SendGridRequest> {
        lock(&self.shared.requests).clone()
    }
}

impl Drop for FakeSendGrid {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn mail_send(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let request = SendGridRequest {
        authorization: header_text(header::AUTHORIZATION),
        content_type: header_text(header::CONTENT_TYPE),
        body: serde_json::from_str(&raw_body).unwrap_or(Value::Null),
        raw_body,
    };
    let scripted = lock(&shared.script).pop_front();
    let reply = scripted.unwrap_or_else(|| validate(&request));
    lock(&shared.requests).push(request);
    let request_number = lock(&shared.requests).len();
    match reply {
        SendGridReply::Accepted => {
            let id = format!("fake-message-{request_number}");
            (StatusCode::ACCEPTED, [("x-message-id", id)]).into_response()
        }
        SendGridReply::Status(status) => error_response(status, None, "scripted error"),
        SendGridReply::Error { status, field, message } => error_response(status, field.as_deref(), &message),
        SendGridReply::Raw { status, body } => (status_code(status), body).into_response(),
        SendGridReply::Stall => std::future::pending().await,
    }
}

/// What SendGrid itself would answer to this request.
fn validate(request: &SendGridRequest) -> SendGridReply {
    let error = |status: u16, field: Option<&str>, message: &str| SendGridReply::Error {
        status,
        field: field.map(str::to_owned),
        message: message.to_owned(),
    };
    let bearer = request
        .authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .is_some_and(|key| !key.trim().is_empty());
    if !bearer {
        return error(
            401,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let body = &request.body;
    if !body.is_object() {
        return error(400, None, "Bad Request");
    }
    if request.to().is_empty() {
        return error(
            400,
            Some("personalizations.0.to"),
            "The to array is required for all personalization objects, and must have at least one email object with a valid email address.",
        );
    }
    if body["from"]["email"].as_str().is_none_or(|e| !e.contains('@')) {
        return error(
            400,
            Some("from.email"),
            "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.",
        );
    }
    if body["subject"].as_str().is_none_or(str::is_empty) {
        return error(
            400,
            Some("subject"),
            "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.",
        );
    }
    let content_ok = body["content"].as_array().is_some_and(|c| {
        !c.is_empty()
            && c.iter()
                .all(|part| part["type"].as_str().is_some() && part["value"].as_str().is_some_and(|v| !v.is_empty()))
    });
    if !content_ok {
        return error(
            400,
            Some("content"),
            "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.",
        );
    }
    SendGridReply::Accepted
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn error_response(status: u16, field: Option<&str>, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "field": field, "help": null}]});
    (status_code(status), axum::Json(body)).into_response()
}
