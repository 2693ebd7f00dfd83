//! Watching a call from the supervisor's side: log in, then follow
//! `GET /api/v1/live?call_id=..` (a WebSocket of `CallEvent`s).
//!
//! Guarantees: only the JWT from the login's JSON body is used (the cookies
//! it also sets are ignored); the live socket is opened with
//! `Authorization: Bearer`; messages that are not call events (`hello`,
//! `lagged`, keep-alives) are skipped, while a message that looks like a call
//! event (it has `call_id`, `tenant_id` and `at`) but does not parse is an
//! error, so a contract drift is loud. The stream ends when the socket closes.

use futures::stream::BoxStream;
use futures::{StreamExt as _, stream};
use serde::Deserialize;
use switchboard_domain::CallEvent;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use url::Url;

use crate::error::{CallerError, http_error, truncate, ws_connect_error};

/// Path of the login route.
pub const LOGIN_PATH: &str = "/api/v1/auth/login";
/// Path of the live events socket.
pub const LIVE_PATH: &str = "/api/v1/live";

/// A call's live events, in the order the engine sent them.
pub type LiveEvents = BoxStream<'static, Result<CallEvent, CallerError>>;

#[derive(Deserialize)]
struct LoginBody {
    access_token: String,
}

/// Logs in with email and password and returns the access token (a JWT for `Authorization: Bearer`).
pub async fn login(engine: &Url, email: &str, password: &str) -> Result<String, CallerError> {
    let url = crate::call::join(engine, LOGIN_PATH);
    let response = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .map_err(|e| http_error(&url, e))?;
    let status = response.status();
    let body = response.text().await.map_err(|e| http_error(&url, e))?;
    if !status.is_success() {
        return Err(CallerError::Http {
            status: status.as_u16(),
            body: truncate(&body),
        });
    }
    let parsed: LoginBody = serde_json::from_str(&body)
        .map_err(|e| CallerError::Decode(format!("login response without access_token: {e}")))?;
    Ok(parsed.access_token)
}

/// The live socket URL for `call_id` on `engine` (`http` → `ws`, `https` → `wss`).
pub fn live_url(engine: &Url, call_id: &str) -> Result<Url, CallerError> {
    let mut url = engine.clone();
    let scheme = match engine.scheme() {
        "http" => "ws",
        "https" => "wss",
        other => {
            return Err(CallerError::Url {
                url: engine.to_string(),
                reason: format!("scheme `{other}`: need http or https"),
            });
        }
    };
    url.set_scheme(scheme).map_err(|()| CallerError::Url {
        url: engine.to_string(),
        reason: "cannot switch to a WebSocket scheme".to_owned(),
    })?;
    let prefix = engine.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}{LIVE_PATH}"));
    url.query_pairs_mut().clear().append_pair("call_id", call_id);
    Ok(url)
}

/// Opens the live socket for one call and returns its events.
pub async fn watch(engine: &Url, bearer_token: &str, call_id: &str) -> Result<LiveEvents, CallerError> {
    let url = live_url(engine, call_id)?;
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ws_connect_error(url.as_str(), e))?;
    let auth = HeaderValue::from_str(&format!("Bearer {bearer_token}"))
        .map_err(|_| CallerError::Options("the bearer token is not a valid header value".to_owned()))?;
    request.headers_mut().insert("Authorization", auth);
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .map_err(|e| ws_connect_error(url.as_str(), e))?;
    tracing::debug!(call_id, "watching live events");
    let events = stream::unfold(Some(ws), |ws| async move {
        let mut ws = ws?;
        loop {
            match ws.next().await {
                None | Some(Ok(Message::Close(_))) => return None,
                Some(Err(e)) => return Some((Err(CallerError::WebSocket(e.to_string())), None)),
                Some(Ok(Message::Text(text))) => match decode(text.as_str()) {
                    Ok(Some(event)) => return Some((Ok(event), Some(ws))),
                    Ok(None) => continue,
                    Err(e) => return Some((Err(e), Some(ws))),
                },
                Some(Ok(_)) => continue,
            }
        }
    });
    Ok(events.boxed())
}

/// One live message: `Some` for a call event, `None` for anything else.
pub fn decode(text: &str) -> Result<Option<CallEvent>, CallerError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CallerError::Decode(format!("live message is not JSON: {e}: {}", truncate(text))))?;
    let looks_like_event = ["call_id", "tenant_id", "at", "type"]
        .iter()
        .all(|k| value.get(k).is_some());
    if !looks_like_event {
        tracing::trace!(kind = ?value.get("type"), "skipping live message");
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| CallerError::Decode(format!("bad call event: {e}: {}", truncate(text))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::{CallEventKind, CallId, Speaker, TenantId};

    #[test]
    fn live_url_switches_scheme_and_sets_the_call() {
        let u = live_url(&Url::parse("https://voice.example.com/").unwrap(), "abc").unwrap();
        assert_eq!(u.as_str(), "wss://voice.example.com/api/v1/live?call_id=abc");
        let u = live_url(&Url::parse("http://127.0.0.1:8080").unwrap(), "a b").unwrap();
        assert_eq!(u.as_str(), "ws://127.0.0.1:8080/api/v1/live?call_id=a+b");
    }

    #[test]
    fn decode_keeps_call_events_and_skips_the_rest() {
        let event = CallEvent::new(
            CallId::new(),
            TenantId::new(),
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Agent,
                text: "hello".into(),
                turn_id: 0,
                start_ms: 0,
                end_ms: 900,
                interrupted: false,
            },
        );
        let text = serde_json::to_string(&event).unwrap();
        assert_eq!(decode(&text).unwrap(), Some(event));
        assert_eq!(decode(r#"{"type":"hello","call_id":"x"}"#).unwrap(), None);
        assert_eq!(decode(r#"{"type":"lagged","skipped":3}"#).unwrap(), None);
        let broken = r#"{"type":"transcript_final","call_id":"nope","tenant_id":"x","at":"y"}"#;
        assert!(matches!(decode(broken), Err(CallerError::Decode(_))));
        assert!(decode("not json").is_err());
    }
}
