//! The caller's one error type.
//!
//! Every variant carries enough context to print a useful message on its own
//! (the CLI shows them verbatim); bodies and texts from the network are
//! truncated so a hostile or broken server cannot flood a log line.

use std::path::PathBuf;

/// Longest piece of a response body or frame kept in an error.
pub(crate) const MAX_ECHO: usize = 512;

/// Why a synthetic call, a login or a live watch failed.
#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    /// The TCP connection (or TLS handshake) to the engine failed.
    #[error("engine not reachable at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The engine answered with a non-2xx status (webhook, login, or a refused WebSocket upgrade).
    #[error("HTTP {status}: {body}")]
    Http { status: u16, body: String },
    /// The voice webhook answered with `<Say>..</Say><Hangup/>` (or `<Reject/>`): the call was refused.
    #[error("the engine refused the call{}", if said.is_empty() { String::new() } else { format!(", saying {said:?}") })]
    Rejected { said: String },
    /// The webhook answer is not TwiML we can act on.
    #[error("unexpected TwiML: {0}")]
    Twiml(String),
    /// A URL could not be built or is not usable for this purpose.
    #[error("bad URL `{url}`: {reason}")]
    Url { url: String, reason: String },
    /// The WebSocket failed after it was established.
    #[error("websocket: {0}")]
    WebSocket(String),
    /// A response or message did not have the documented shape.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The options cannot describe a call (empty account SID, bad DTMF digit, ...).
    #[error("invalid call options: {0}")]
    Options(String),
    /// An audio file could not be read or converted.
    #[error("audio file {}: {reason}", path.display())]
    Audio { path: PathBuf, reason: String },
}

/// At most [`MAX_ECHO`] characters of `text`, marked when cut.
pub(crate) fn truncate(text: &str) -> String {
    let mut out: String = text.chars().take(MAX_ECHO).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// Maps a WebSocket handshake/connection error to the variant the user can act on.
pub(crate) fn ws_connect_error(url: &str, err: tokio_tungstenite::tungstenite::Error) -> CallerError {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match err {
        WsError::Http(response) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_ref()
                .map(|b| truncate(&String::from_utf8_lossy(b)))
                .unwrap_or_default();
            CallerError::Http { status, body }
        }
        WsError::Io(e) => CallerError::Unreachable {
            url: url.to_owned(),
            reason: e.to_string(),
        },
        WsError::Tls(e) => CallerError::Unreachable {
            url: url.to_owned(),
            reason: format!("TLS: {e}"),
        },
        WsError::Url(e) => CallerError::Url {
            url: url.to_owned(),
            reason: e.to_string(),
        },
        other => CallerError::WebSocket(other.to_string()),
    }
}

/// Maps a reqwest error to `Unreachable` when no response came back at all.
pub(crate) fn http_error(url: &str, err: reqwest::Error) -> CallerError {
    if err.is_connect() || err.is_timeout() || err.is_request() {
        CallerError::Unreachable {
            url: url.to_owned(),
            reason: chain(&err),
        }
    } else {
        CallerError::Decode(format!("{url}: {}", chain(&err)))
    }
}

/// The error and its sources on one line (reqwest hides the useful part, such
/// as "connection refused", in a source).
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
