//! A fake Twilio REST API for call updates:
//! `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json` with a
//! form body (`Twiml=...`, `Status=completed`, ...), answered with a Call
//! resource or Twilio's error JSON (`code`, `message`, `more_info`, `status`).
//!
//! Every update is recorded ([`CallUpdate`]: account, call SID, form fields
//! in order, Basic-auth user and password). Answers come from a queue of
//! [`TwilioReply`]s; with the queue empty an update succeeds (200).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt as _;
use serde_json::json;

/// What the next call update gets.
#[derive(Debug, Clone)]
pub enum TwilioReply {
    /// 200 with the Call resource (status `completed` after `Status=completed`).
    Ok,
    /// Twilio's error JSON with this HTTP status (`code` 20404 for 404);
    /// `Retry-After` if given.
    Status { code: u16, retry_after: Option<u64> },
    /// 200 `application/json` with exactly this body.
    Malformed(String),
    /// Wait, then answer with the inner reply.
    Delay(Duration, Box<TwilioReply>),
    /// Accept the request and never answer.
    Hang,
    /// 200 head and half a Call resource, then nothing, ever.
    StallMidBody,
}

impl TwilioReply {
    /// An error status without `Retry-After`.
    pub fn status(code: u16) -> Self {
        Self::Status {
            code,
            retry_after: None,
        }
    }
}

/// One call update as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallUpdate {
    pub account_sid: String,
    pub call_sid: String,
    /// Form fields in order, decoded.
    pub form: Vec<(String, String)>,
    /// Basic-auth user and password, if the request had Basic auth.
    pub auth_user: Option<String>,
    pub auth_password: Option<String>,
    pub content_type: Option<String>,
}

impl CallUpdate {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<TwilioReply>>,
    updates: Mutex<Vec<CallUpdate>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running fake; the server stops when this is dropped.
pub struct FakeTwilioRest {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeTwilioRest {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeTwilioRest {
    /// Binds `127.0.0.1:0` and serves call updates.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/2010-04-01/Accounts/{account}/Calls/{call}", post(update_call))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake twilio: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake twilio: local addr");
        let task = tokio::spawn(async move {
            // The server only ends when the fake is dropped and this task aborted.
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    /// `http://127.0.0.1:{port}`, in place of `https://api.twilio.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues the answer for the next unanswered update.
    pub fn push_reply(&self, reply: TwilioReply) {
        lock(&self.shared.replies).push_back(reply);
    }

    /// Every update so far, in arrival order.
    pub fn updates(&self) -> Vec<CallUpdate> {
        lock(&self.shared.updates).clone()
    }
}

fn basic_auth(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let decoded = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
        None => (None, None),
    }
}

fn twilio_error(code: u16, retry_after: Option<u64>) -> Response {
    let (twilio_code, message) = match code {
        404 => (20404, "The requested resource was not found".to_owned()),
        429 => (20429, "Too Many Requests".to_owned()),
        _ => (20000 + u32::from(code % 1000), format!("fake: scripted status {code}")),
    };
    let body = json!({
        "code": twilio_code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{twilio_code}"),
        "status": code,
    });
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(seconds) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    resp
}

async fn update_call(
    State(shared): State<Arc<Shared>>,
    Path((account, call_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(call_sid) = call_file.strip_suffix(".json") else {
        return twilio_error(404, None);
    };
    let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) else {
        return twilio_error(400, None);
    };
    let (auth_user, auth_password) = basic_auth(&headers);
    let update = CallUpdate {
        account_sid: account.clone(),
        call_sid: call_sid.to_owned(),
        form,
        auth_user,
        auth_password,
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    let status = if update.field("Status").is_some_and(|s| s == "completed") {
        "completed"
    } else {
        "in-progress"
    };
    lock(&shared.updates).push(update);
    let resource = json!({
        "sid": call_sid,
        "account_sid": account,
        "status": status,
        "direction": "inbound",
        "api_version": "2010-04-01",
        "uri": format!("/2010-04-01/Accounts/{account}/Calls/{call_sid}.json"),
    });
    let mut reply = lock(&shared.replies).pop_front().unwrap_or(TwilioReply::Ok);
    loop {
        match reply {
            TwilioReply::Ok => return axum::Json(resource).into_response(),
            TwilioReply::Status { code, retry_after } => return twilio_error(code, retry_after),
            TwilioReply::Malformed(body) => {
                return ([(header::CONTENT_TYPE, "application/json")], body).into_response();
            }
            TwilioReply::Delay(wait, inner) => {
                tokio::time::sleep(wait).await;
                reply = *inner;
            }
            TwilioReply::Hang => return std::future::pending().await,
            TwilioReply::StallMidBody => {
                let full = Bytes::from(resource.to_string().into_bytes());
                let first = full.slice(..full.len() / 2);
                let body = futures::stream::iter([Ok::<_, std::io::Error>(first)]).chain(futures::stream::pending());
                return Response::builder()
                    .status(200)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from_stream(body))
                    .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
            }
        }
    }
}
