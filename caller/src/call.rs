//! One synthetic phone call, end to end: the voice webhook, the Media Streams
//! socket, real-time pacing, playback emulation and the report.
//!
//! Guarantees:
//! - The webhook is a form POST with Twilio's fields, signed exactly like
//!   Twilio (`X-Twilio-Signature` over `signing_base + "/twilio/voice"`).
//! - The stream speaks Twilio's protocol: `connected`, `start` (with the TwiML
//!   `<Parameter>`s), one 160-byte `media` frame per 20 ms tick with exact
//!   `chunk`/`timestamp` values (frame `k` has timestamp `20k`), `dtmf` at its
//!   time, mark echoes, and finally `stop` and a normal close.
//! - Pacing uses one `tokio::time::interval` with `MissedTickBehavior::Burst`:
//!   after a stall the missed frames are sent back to back, so the stream clock
//!   never drifts from the frame count.
//! - All event times (`at`) are stream time: tick-driven events are exactly
//!   `20k` ms; message-driven ones (a mark or clear arriving) are the elapsed
//!   time since `start` was sent.
//! - Per frame, the only allocation is the message the WebSocket takes ownership of.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument as _;
use url::Url;

use switchboard_providers::twilio::signature;

use crate::error::{CallerError, http_error, truncate, ws_connect_error};
use crate::playout::{FRAME, Playout};
use crate::schedule::{FRAME_TIME, Schedule, frame_time, frames_in};
use crate::twiml::{StreamAnswer, parse_answer};
use crate::wire::{EngineMsg, TwilioWriter, decode_payload, parse_engine_msg};

/// Path of the voice webhook on the engine.
pub const VOICE_PATH: &str = "/twilio/voice";

/// How long to wait for the engine's close reply after we hang up.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Everything that describes one call.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Where the engine listens (`http(s)://host:port`); the webhook is POSTed to `{engine}/twilio/voice`.
    pub engine: Url,
    /// Public base URL the engine validates signatures against; `None` means `engine`.
    pub signing_base: Option<Url>,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    pub to: String,
    /// What the caller says, 8 kHz mono. Shared, so many callers can speak one file.
    pub caller_audio: Arc<[i16]>,
    /// Silence before the caller audio starts (the greeting plays meanwhile).
    pub lead_silence: Duration,
    /// How long to stay on the line after the caller audio ends, at most.
    pub tail: Duration,
    /// Hang up earlier: once the bot has spoken after the caller audio ended and
    /// then been silent (nothing queued or playing) this long.
    pub idle_end: Option<Duration>,
    /// Keypresses at stream times.
    pub dtmf: Vec<(Duration, char)>,
    /// Echo marks like Twilio does; `false` never echoes (to test engines without confirmations).
    pub answer_marks: bool,
    /// Keep the bot's audio in [`CallReport::bot_audio`].
    pub record_bot: bool,
    /// Use this `CallSid` instead of a random one.
    pub call_sid: Option<String>,
    /// HTTP client for the voice webhook; `None` builds one per call. A load
    /// generator shares one so thousands of calls reuse one connection pool.
    pub http: Option<reqwest::Client>,
    /// Keep the arrival time of every engine `media` message in
    /// [`CallReport::bot_frame_arrivals`] (pacing jitter for the load tool).
    pub record_arrivals: bool,
}

impl CallOptions {
    /// A call with no caller audio yet, 1 s of lead silence, a 10 s tail,
    /// marks answered and the bot recorded.
    pub fn new(engine: Url, account_sid: &str, auth_token: &str, from: &str, to: &str) -> Self {
        Self {
            engine,
            signing_base: None,
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            caller_audio: Arc::from(Vec::new()),
            lead_silence: Duration::from_secs(1),
            tail: Duration::from_secs(10),
            idle_end: None,
            dtmf: Vec::new(),
            answer_marks: true,
            record_bot: true,
            call_sid: None,
            http: None,
            record_arrivals: false,
        }
    }
}

/// Who ended the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hangup {
    /// We hung up: the tail elapsed or the bot went idle.
    Caller,
    /// The engine closed the socket.
    Engine,
    /// The connection broke without a close handshake.
    ConnectionLost(String),
}

/// What happened on the call, for assertions, the CLI and the load tool.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The engine's call ID (`customParameters.call_id`), when it sent one.
    pub call_id: Option<String>,
    pub call_sid: String,
    pub stream_sid: String,
    /// The `<Stream url>` from the TwiML, as written.
    pub stream_url: String,
    /// Caller `media` frames sent.
    pub frames_sent: u64,
    /// Engine `media` messages received.
    pub frames_received: u64,
    pub marks_received: u64,
    pub marks_echoed: u64,
    /// Stream times at which a `clear` arrived.
    pub clears: Vec<Duration>,
    /// Stream time at which bot audio first started playing.
    pub first_bot_audio: Option<Duration>,
    /// The bot as the caller heard it: 8 kHz, sample `n` at stream time `n / 8000` s,
    /// silence where nothing played. Empty unless `record_bot`.
    pub bot_audio: Vec<i16>,
    /// The close frame received from the engine (code, reason), if any.
    pub close: Option<(u16, String)>,
    /// `[start, end)` stream times during which bot audio played.
    pub bot_speech_segments: Vec<(Duration, Duration)>,
    /// `[start, end)` stream times during which the caller audio is speech.
    pub caller_speech_segments: Vec<(Duration, Duration)>,
    /// Messages from the engine that Twilio would reject (error 31951).
    pub invalid_messages: u64,
    /// When each engine `media` message was read off the socket, as time since
    /// `start` was sent on a monotonic clock (not frame-quantised, unlike the
    /// event times). Empty unless [`CallOptions::record_arrivals`].
    pub bot_frame_arrivals: Vec<Duration>,
    /// Length of the stream.
    pub duration: Duration,
    pub hangup: Hangup,
}

/// Live progress of a call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerEvent {
    /// The webhook answered with a stream.
    Answered {
        call_sid: String,
        call_id: Option<String>,
    },
    /// `start` was sent: stream time 0.
    Started {
        stream_sid: String,
    },
    CallerSpeechStarted {
        at: Duration,
    },
    CallerSpeechEnded {
        at: Duration,
    },
    BotAudioStarted {
        at: Duration,
    },
    BotAudioStopped {
        at: Duration,
    },
    MarkReceived {
        name: String,
        at: Duration,
    },
    MarkEchoed {
        name: String,
        at: Duration,
    },
    Clear {
        at: Duration,
    },
    DtmfSent {
        digit: char,
        at: Duration,
    },
    /// The stream is over; `code` is the engine's close code, if it sent one.
    Closed {
        code: Option<u16>,
        reason: String,
    },
}

/// Places one call and holds it until it ends; see the module docs.
pub async fn place_call(
    opts: CallOptions,
    events: Option<UnboundedSender<CallerEvent>>,
) -> Result<CallReport, CallerError> {
    validate(&opts)?;
    let call_sid = opts
        .call_sid
        .clone()
        .unwrap_or_else(|| format!("CA{}", uuid::Uuid::new_v4().simple()));
    let span = tracing::info_span!("synthetic_call", call_sid = %call_sid, to = %opts.to);
    let call = async {
        let answer = post_webhook(&opts, &call_sid).await?;
        let call_id = answer.parameter("call_id").map(str::to_owned);
        tracing::info!(call_id = ?call_id, stream = %answer.url, "call answered");
        emit(
            &events,
            CallerEvent::Answered {
                call_sid: call_sid.clone(),
                call_id: call_id.clone(),
            },
        );
        stream_call(&opts, &call_sid, call_id, answer, &events).await
    };
    let report = call.instrument(span.clone()).await;
    match &report {
        Ok(r) => tracing::info!(
            parent: &span,
            call_id = ?r.call_id,
            frames_sent = r.frames_sent,
            frames_received = r.frames_received,
            marks_echoed = r.marks_echoed,
            hangup = ?r.hangup,
            "call ended"
        ),
        Err(e) => tracing::warn!(parent: &span, error = %e, "call failed"),
    }
    report
}

fn validate(opts: &CallOptions) -> Result<(), CallerError> {
    if opts.account_sid.trim().is_empty() {
        return Err(CallerError::Options("account_sid is empty".to_owned()));
    }
    if opts.auth_token.is_empty() {
        return Err(CallerError::Options("auth_token is empty".to_owned()));
    }
    if let Some((_, d)) = opts
        .dtmf
        .iter()
        .find(|(_, d)| !(d.is_ascii_digit() || matches!(d, '*' | '#' | 'A'..='D' | 'w')))
    {
        return Err(CallerError::Options(format!("{d:?} is not a DTMF key")));
    }
    match opts.engine.scheme() {
        "http" | "https" => Ok(()),
        other => Err(CallerError::Url {
            url: opts.engine.to_string(),
            reason: format!("scheme `{other}`: need http or https"),
        }),
    }
}

fn emit(events: &Option<UnboundedSender<CallerEvent>>, event: CallerEvent) {
    if let Some(tx) = events {
        // A receiver that went away only means nobody is watching any more.
        let _ = tx.send(event);
    }
}

/// `base` + `path`, keeping any path prefix the base has.
pub fn join(base: &Url, path: &str) -> String {
    format!("{}{path}", base.as_str().trim_end_matches('/'))
}

/// The form Twilio posts for an incoming call.
fn webhook_params(opts: &CallOptions, call_sid: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", opts.account_sid.as_str()),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Called", opts.to.as_str()),
        ("Caller", opts.from.as_str()),
        ("Direction", "inbound"),
        ("From", opts.from.as_str()),
        ("To", opts.to.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

async fn post_webhook(opts: &CallOptions, call_sid: &str) -> Result<StreamAnswer, CallerError> {
    let url = join(&opts.engine, VOICE_PATH);
    let signing_url = join(opts.signing_base.as_ref().unwrap_or(&opts.engine), VOICE_PATH);
    let params = webhook_params(opts, call_sid);
    let sig = signature::sign(&opts.auth_token, &signing_url, &params);
    let client = opts.http.clone().unwrap_or_default();
    let response = client
        .post(&url)
        .header("X-Twilio-Signature", sig)
        .header("User-Agent", "TwilioProxy/1.1")
        .header("Accept", "*/*")
        .form(&params)
        .timeout(Duration::from_secs(15))
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
    parse_answer(&body)
}

/// Where to open the stream socket: the TwiML URL, except that a URL naming
/// the public base (or the engine itself) is sent to `engine`, keeping path
/// and query, with `ws`/`wss` following the engine's scheme.
pub fn socket_url(stream_url: &str, engine: &Url, signing_base: Option<&Url>) -> Result<Url, CallerError> {
    let bad = |reason: String| CallerError::Url {
        url: stream_url.to_owned(),
        reason,
    };
    let parsed = Url::parse(stream_url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "ws" | "wss") {
        return Err(bad("a Media Stream URL must be ws:// or wss://".to_owned()));
    }
    let same_host = |u: &Url| u.host_str() == parsed.host_str() && public_port(u) == public_port(&parsed);
    let ours = same_host(engine) || signing_base.is_some_and(same_host);
    if !ours {
        return Ok(parsed);
    }
    let scheme = if engine.scheme() == "https" { "wss" } else { "ws" };
    let mut target = Url::parse(&format!(
        "{scheme}://{}",
        engine[url::Position::BeforeHost..url::Position::AfterPort].trim_end_matches('/')
    ))
    .map_err(|e| bad(e.to_string()))?;
    // Keep a path prefix the engine URL may have (an engine mounted under /voice).
    let prefix = engine.path().trim_end_matches('/');
    target.set_path(&format!("{prefix}{}", parsed.path()));
    target.set_query(parsed.query());
    Ok(target)
}

/// The port a ws/wss URL reaches, mapping ws→80 and wss→443 like http/https,
/// so `wss://host/...` matches `https://host`.
fn public_port(u: &Url) -> Option<u16> {
    u.port().or(match u.scheme() {
        "ws" | "http" => Some(80),
        "wss" | "https" => Some(443),
        _ => None,
    })
}

struct Counters {
    frames_sent: u64,
    frames_received: u64,
    marks_received: u64,
    marks_echoed: u64,
    invalid: u64,
    clears: Vec<Duration>,
    first_bot_audio: Option<Duration>,
    bot_segments: Vec<(Duration, Duration)>,
    bot_started_at: Option<Duration>,
    arrivals: Vec<Duration>,
}

async fn stream_call(
    opts: &CallOptions,
    call_sid: &str,
    call_id: Option<String>,
    answer: StreamAnswer,
    events: &Option<UnboundedSender<CallerEvent>>,
) -> Result<CallReport, CallerError> {
    let target = socket_url(&answer.url, &opts.engine, opts.signing_base.as_ref())?;
    let mut request = target
        .as_str()
        .into_client_request()
        .map_err(|e| ws_connect_error(target.as_str(), e))?;
    // Twilio signs the upgrade too, over the URL as written in the TwiML.
    let upgrade_sig = signature::sign(&opts.auth_token, &answer.url, &[]);
    let sig_header = HeaderValue::from_str(&upgrade_sig).map_err(|e| CallerError::Decode(e.to_string()))?;
    request.headers_mut().insert("X-Twilio-Signature", sig_header);
    // A media peer: no Nagle delay on 20 ms frames.
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| ws_connect_error(target.as_str(), e))?;
    let (mut sink, mut stream) = ws.split();

    let stream_sid = format!("MZ{}", uuid::Uuid::new_v4().simple());
    let writer = TwilioWriter::new(&stream_sid, &opts.account_sid, call_sid);
    let ws_err = |e: tokio_tungstenite::tungstenite::Error| CallerError::WebSocket(e.to_string());
    let mut seq: u64 = 1;
    sink.feed(Message::text(writer.connected())).await.map_err(ws_err)?;
    sink.send(Message::text(writer.start(seq, &answer.parameters)))
        .await
        .map_err(ws_err)?;
    let start = Instant::now();
    emit(
        events,
        CallerEvent::Started {
            stream_sid: stream_sid.clone(),
        },
    );

    let schedule = Schedule::new(opts.caller_audio.clone(), opts.lead_silence);
    let mut dtmf: Vec<(u64, char)> = opts.dtmf.iter().map(|&(at, d)| (frames_in(at), d)).collect();
    dtmf.sort_by_key(|&(k, _)| k);
    let caller_end = dtmf.last().map_or(0, |&(k, _)| k + 1).max(schedule.end_frame());
    let tail_frames = frames_in(opts.tail);
    let idle_frames = opts.idle_end.map(frames_in);
    let speech = schedule.speech_frames().to_vec();

    let mut playout = Playout::new(opts.answer_marks, opts.record_bot);
    let mut echo: Vec<String> = Vec::with_capacity(8);
    let mut payload: Vec<u8> = Vec::with_capacity(4 * FRAME);
    let mut frame = [0u8; FRAME];
    let mut c = Counters {
        frames_sent: 0,
        frames_received: 0,
        marks_received: 0,
        marks_echoed: 0,
        invalid: 0,
        clears: Vec::new(),
        first_bot_audio: None,
        bot_segments: Vec::new(),
        bot_started_at: None,
        arrivals: Vec::new(),
    };
    if opts.record_arrivals {
        // A minute of bot audio before the first regrowth.
        c.arrivals.reserve(3000);
    }
    let mut next_dtmf = 0;
    let mut next_speech = 0;
    let mut in_speech = false;
    let mut bot_after_caller = false;
    let mut idle_since: Option<u64> = None;
    let mut close: Option<(u16, String)> = None;
    let mut k: u64 = 0;

    let mut interval = tokio::time::interval(FRAME_TIME);
    interval.set_missed_tick_behavior(MissedTickBehavior::Burst);

    let hangup = loop {
        tokio::select! {
            // Engine messages first: a clear must not wait behind a burst of ticks.
            biased;
            msg = stream.next() => {
                let msg = match msg {
                    None => break Hangup::ConnectionLost("socket ended without a close frame".to_owned()),
                    Some(Err(e)) => break Hangup::ConnectionLost(e.to_string()),
                    Some(Ok(m)) => m,
                };
                let text = match msg {
                    Message::Text(text) => text,
                    Message::Close(frame) => {
                        close = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        break Hangup::Engine;
                    }
                    Message::Binary(_) => {
                        c.invalid += 1;
                        tracing::warn!(call_sid, "binary frame from the engine (Twilio expects JSON text)");
                        continue;
                    }
                    _ => continue,
                };
                let parsed = match parse_engine_msg(text.as_str()) {
                    Ok(m) if m.stream_sid() == stream_sid => m,
                    Ok(m) => {
                        c.invalid += 1;
                        tracing::warn!(call_sid, got = %truncate(m.stream_sid()), "message for another streamSid");
                        continue;
                    }
                    Err(reason) => {
                        c.invalid += 1;
                        tracing::warn!(call_sid, %reason, "invalid message from the engine (Twilio error 31951)");
                        continue;
                    }
                };
                match parsed {
                    EngineMsg::Media { payload: b64, .. } => {
                        if let Err(reason) = decode_payload(&b64, &mut payload) {
                            c.invalid += 1;
                            tracing::warn!(call_sid, %reason, "bad media payload");
                            continue;
                        }
                        c.frames_received += 1;
                        if opts.record_arrivals {
                            c.arrivals.push(start.elapsed());
                        }
                        playout.push_media(&payload);
                    }
                    EngineMsg::Mark { name, .. } => {
                        c.marks_received += 1;
                        let at = start.elapsed();
                        emit(events, CallerEvent::MarkReceived { name: name.to_string(), at });
                        if playout.push_mark(&name) {
                            seq += 1;
                            sink.send(Message::text(writer.mark(seq, &name))).await.map_err(ws_err)?;
                            c.marks_echoed += 1;
                            emit(events, CallerEvent::MarkEchoed { name: name.into_owned(), at });
                        }
                    }
                    EngineMsg::Clear { .. } => {
                        let at = start.elapsed();
                        c.clears.push(at);
                        emit(events, CallerEvent::Clear { at });
                        let dropped = playout.clear(&mut echo);
                        tracing::debug!(call_sid, dropped_bytes = dropped, released_marks = echo.len(), "clear");
                        for name in echo.drain(..) {
                            seq += 1;
                            sink.feed(Message::text(writer.mark(seq, &name))).await.map_err(ws_err)?;
                            c.marks_echoed += 1;
                            emit(events, CallerEvent::MarkEchoed { name, at });
                        }
                        sink.flush().await.map_err(ws_err)?;
                    }
                }
            }
            _ = interval.tick() => {
                let i = k;
                let at = frame_time(i);
                // 1. The caller's frame for this tick.
                schedule.encode_frame(i, &mut frame);
                seq += 1;
                sink.feed(Message::text(writer.media(seq, i + 1, i * 20, &frame)))
                    .await
                    .map_err(ws_err)?;
                c.frames_sent += 1;
                if let Some(&(s, e)) = speech.get(next_speech) {
                    if !in_speech && i == s {
                        in_speech = true;
                        emit(events, CallerEvent::CallerSpeechStarted { at });
                    }
                    if in_speech && i + 1 == e {
                        in_speech = false;
                        next_speech += 1;
                        emit(events, CallerEvent::CallerSpeechEnded { at: frame_time(e) });
                    }
                }
                // 2. Keypresses due by now.
                while let Some(&(due, digit)) = dtmf.get(next_dtmf) {
                    if due > i {
                        break;
                    }
                    seq += 1;
                    sink.feed(Message::text(writer.dtmf(seq, digit))).await.map_err(ws_err)?;
                    emit(events, CallerEvent::DtmfSent { digit, at });
                    next_dtmf += 1;
                }
                // 3. Playback: finish the last frame, echo what it completed, start the next.
                let tick = playout.tick(&mut echo);
                for name in echo.drain(..) {
                    seq += 1;
                    sink.feed(Message::text(writer.mark(seq, &name))).await.map_err(ws_err)?;
                    c.marks_echoed += 1;
                    emit(events, CallerEvent::MarkEchoed { name, at });
                }
                if tick.speech_started {
                    c.first_bot_audio.get_or_insert(at);
                    c.bot_started_at = Some(at);
                    emit(events, CallerEvent::BotAudioStarted { at });
                }
                if tick.speech_stopped {
                    if let Some(s) = c.bot_started_at.take() {
                        c.bot_segments.push((s, at));
                    }
                    emit(events, CallerEvent::BotAudioStopped { at });
                }
                sink.flush().await.map_err(ws_err)?;
                k = i + 1;
                // 4. Is the caller done? (`k` frames have now been sent.)
                if k >= caller_end {
                    if tick.played > 0 {
                        bot_after_caller = true;
                        idle_since = None;
                    } else if !playout.is_busy() {
                        // Silent since the start of this tick.
                        idle_since.get_or_insert(i);
                    }
                    let idle_done = match (idle_frames, idle_since) {
                        (Some(limit), Some(since)) => bot_after_caller && k - since >= limit,
                        _ => false,
                    };
                    if k >= caller_end + tail_frames || idle_done {
                        break Hangup::Caller;
                    }
                }
            }
        }
    };

    let duration = frame_time(k);
    if let Some(s) = c.bot_started_at.take() {
        c.bot_segments.push((s, duration));
    }
    if hangup == Hangup::Caller {
        seq += 1;
        sink.send(Message::text(writer.stop(seq))).await.map_err(ws_err)?;
        let bye = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        // The engine may already be gone; a failed close is not a failed call.
        if let Err(e) = sink.send(Message::Close(Some(bye))).await {
            tracing::debug!(call_sid, error = %e, "close not sent");
        }
        close = wait_for_close(&mut stream).await;
    }
    emit(
        events,
        CallerEvent::Closed {
            code: close.as_ref().map(|(code, _)| *code),
            reason: close.as_ref().map(|(_, r)| r.clone()).unwrap_or_default(),
        },
    );
    let caller_speech_segments = schedule.speech_spans();
    Ok(CallReport {
        call_id,
        call_sid: call_sid.to_owned(),
        stream_sid,
        stream_url: answer.url,
        frames_sent: c.frames_sent,
        frames_received: c.frames_received,
        marks_received: c.marks_received,
        marks_echoed: c.marks_echoed,
        clears: c.clears,
        first_bot_audio: c.first_bot_audio,
        bot_audio: playout.take_recording(),
        close,
        bot_speech_segments: c.bot_segments,
        caller_speech_segments,
        invalid_messages: c.invalid,
        bot_frame_arrivals: c.arrivals,
        duration,
        hangup,
    })
}

/// Reads until the engine's close frame (or the end of the socket), for at most [`CLOSE_WAIT`].
async fn wait_for_close<S>(stream: &mut S) -> Option<(u16, String)>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let read = async {
        while let Some(Ok(msg)) = stream.next().await {
            if let Message::Close(frame) = msg {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
        }
        None
    };
    tokio::time::timeout(CLOSE_WAIT, read).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn stream_urls_on_the_public_base_go_to_the_engine() {
        let engine = url("http://127.0.0.1:8080");
        let public = url("https://voice.example.com");
        assert_eq!(
            socket_url("wss://voice.example.com/twilio/media?t=1", &engine, Some(&public))
                .unwrap()
                .as_str(),
            "ws://127.0.0.1:8080/twilio/media?t=1"
        );
        // The engine's own host with the wrong scheme (wss in TwiML, plain http engine).
        assert_eq!(
            socket_url("wss://127.0.0.1:8080/twilio/media", &engine, None)
                .unwrap()
                .as_str(),
            "ws://127.0.0.1:8080/twilio/media"
        );
        // Somebody else's stream server is used as written.
        assert_eq!(
            socket_url("wss://media.other.net:9443/s", &engine, Some(&public))
                .unwrap()
                .as_str(),
            "wss://media.other.net:9443/s"
        );
        let tls_engine = url("https://voice.example.com/");
        assert_eq!(
            socket_url("wss://voice.example.com/twilio/media", &tls_engine, None)
                .unwrap()
                .as_str(),
            "wss://voice.example.com/twilio/media"
        );
        assert!(socket_url("http://voice.example.com/x", &engine, None).is_err());
        assert!(socket_url("not a url", &engine, None).is_err());
    }

    #[test]
    fn webhook_form_is_twilios_and_signs_like_the_reference_vector() {
        // protocols.md §2.5, last vector: the same fields and token give the same signature.
        let mut opts = CallOptions::new(
            url("https://example.com"),
            "AC00000000000000000000000000000000",
            "test_auth_token",
            "+15551230000",
            "+15559870000",
        );
        opts.call_sid = Some("CA11111111111111111111111111111111".into());
        let params: Vec<(String, String)> = webhook_params(&opts, "CA11111111111111111111111111111111")
            .into_iter()
            .filter(|(k, _)| k != "Called" && k != "Caller")
            .collect();
        assert_eq!(
            signature::sign("test_auth_token", &join(&opts.engine, VOICE_PATH), &params),
            "q5+XLrAUCCUnucHEnR3OmOUl5y8="
        );
    }

    #[test]
    fn bad_options_are_refused_before_dialing() {
        let mut opts = CallOptions::new(url("http://127.0.0.1:1"), "", "t", "+1", "+2");
        assert!(matches!(validate(&opts), Err(CallerError::Options(_))));
        opts.account_sid = "AC1".into();
        opts.dtmf = vec![(Duration::ZERO, 'x')];
        assert!(matches!(validate(&opts), Err(CallerError::Options(_))));
        opts.dtmf.clear();
        opts.engine = url("ftp://h");
        assert!(matches!(validate(&opts), Err(CallerError::Url { .. })));
    }
}
