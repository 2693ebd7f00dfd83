//! The bare-socket baseline: the least work any Twilio voice bot must do,
//! served like an engine so the same load can run against it.
//!
//! Per inbound frame it parses the Twilio JSON, decodes base64 and μ-law and
//! runs an energy gate (no resampling, no VAD model, no actors, no database).
//! The "bot" echoes what the caller said: after 500 ms of quiet following
//! speech it plays the caller's utterance back as paced 20 ms μ-law frames
//! (60 ms lead, like the engine's player), sends a mark every 200 ms of reply
//! and after its last frame,
//! and sends `clear` when the caller talks over it. `/twilio/voice` answers
//! with `<Connect><Stream>` TwiML (a signature is accepted, not checked), and
//! `/stats` serves the same JSON shape as the engine: per-frame processing
//! time, frame counters, live calls, and this process's RSS and CPU.
//!
//! Guarantees: nothing on the frame path allocates after a call's buffers
//! have grown (except the outgoing message the socket takes ownership of);
//! malformed frames are counted and skipped, never fatal; a connection's
//! tasks end when its socket closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use switchboard_media::twilio::{InboundEvent, OutboundWriter, parse_inbound};
use switchboard_media::ulaw;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::load::engine_stats::StatsSnapshot;
use crate::load::error::LoadError;
use crate::load::stats::BucketHistogram;

/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;
/// Frames handed out ahead of real time (60 ms, as the engine's player).
const LEAD_FRAMES: u64 = 3;
/// RMS above which a frame is speech.
const SPEECH_RMS: f64 = 500.0;
/// Loud frames in a row that start a caller turn (60 ms).
const ONSET_FRAMES: u32 = 3;
/// Quiet frames in a row that end a caller turn (500 ms).
const END_FRAMES: u32 = 25;
/// A mark goes out after every this many reply frames (200 ms, like the
/// engine's per-chunk marks) and after the reply's last frame.
const MARK_EVERY: u64 = 10;
/// Longest utterance kept for the echo (10 s).
const MAX_UTTERANCE: usize = 80_000;
/// Largest WebSocket message parsed.
const MAX_FRAME_BYTES: usize = 65_536;
/// Histogram bounds, as the engine's (µs).
const BOUNDS_US: [u64; 16] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000,
];

/// The baseline's counters and frame-time histogram.
#[derive(Debug)]
struct Metrics {
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_ns: AtomicU64,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    live: AtomicU64,
    started: AtomicU64,
    ended: AtomicU64,
    barge_ins: AtomicU64,
    calls: AtomicU64,
}

impl Metrics {
    fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BOUNDS_US.len() + 1],
            sum_ns: AtomicU64::new(0),
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            live: AtomicU64::new(0),
            started: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            barge_ins: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        }
    }

    fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let idx = BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(BOUNDS_US.len());
        self.buckets[idx].fetch_add(1, Ordering::Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> StatsSnapshot {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        let (rss_bytes, cpu_seconds) = process_figures();
        StatsSnapshot {
            live_calls: self.live.load(Ordering::Relaxed),
            calls_started: self.started.load(Ordering::Relaxed),
            calls_ended: self.ended.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            barge_ins: self.barge_ins.load(Ordering::Relaxed),
            inbound_frame: BucketHistogram {
                bounds_us: BOUNDS_US.to_vec(),
                count: counts.iter().sum(),
                counts,
                sum_seconds: self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9,
            },
            rss_bytes,
            cpu_seconds,
            ..StatsSnapshot::default()
        }
    }
}

pub use switchboard_actors::metrics::process_figures;

/// The echo bot of one call, sans-IO: caller frames in, reply frames and marks out.
#[derive(Debug)]
pub struct EchoBot {
    loud_run: u32,
    quiet_run: u32,
    in_speech: bool,
    utterance: Vec<i16>,
    reply: Vec<i16>,
    /// Next reply sample to send; `None` when not replying.
    reply_pos: Option<usize>,
    reply_started_tick: u64,
    reply_frames_sent: u64,
    marks: u64,
    mark_due: Option<u64>,
}

/// What a caller frame asks of the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameAction {
    None,
    /// The caller spoke over the reply: send `clear`.
    Clear,
}

impl Default for EchoBot {
    fn default() -> Self {
        Self::new()
    }
}

impl EchoBot {
    pub fn new() -> Self {
        Self {
            loud_run: 0,
            quiet_run: 0,
            in_speech: false,
            utterance: Vec::with_capacity(MAX_UTTERANCE),
            reply: Vec::with_capacity(MAX_UTTERANCE),
            reply_pos: None,
            reply_started_tick: 0,
            reply_frames_sent: 0,
            marks: 0,
            mark_due: None,
        }
    }

    /// One decoded caller frame at stream tick `tick`.
    pub fn on_caller_frame(&mut self, pcm: &[i16], tick: u64) -> FrameAction {
        let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let loud = !pcm.is_empty() && (energy / pcm.len() as f64).sqrt() > SPEECH_RMS;
        if loud {
            self.loud_run += 1;
            self.quiet_run = 0;
        } else {
            self.quiet_run += 1;
            self.loud_run = 0;
        }
        let mut action = FrameAction::None;
        if !self.in_speech && self.loud_run >= ONSET_FRAMES {
            self.in_speech = true;
            self.utterance.clear();
            if self.reply_pos.take().is_some() {
                action = FrameAction::Clear;
            }
        }
        if self.in_speech {
            let room = MAX_UTTERANCE - self.utterance.len();
            self.utterance.extend_from_slice(&pcm[..pcm.len().min(room)]);
            if self.quiet_run >= END_FRAMES {
                self.in_speech = false;
                let keep = self.utterance.len().saturating_sub(END_FRAMES as usize * FRAME);
                self.reply.clear();
                self.reply.extend_from_slice(&self.utterance[..keep]);
                if !self.reply.is_empty() {
                    self.reply_pos = Some(0);
                    self.reply_started_tick = tick;
                    self.reply_frames_sent = 0;
                }
            }
        }
        action
    }

    /// The next reply frame due at stream tick `tick` (at most `LEAD_FRAMES` ahead), if any.
    pub fn poll_frame(&mut self, tick: u64) -> Option<&[i16]> {
        let pos = self.reply_pos?;
        let due = tick.saturating_sub(self.reply_started_tick) + LEAD_FRAMES;
        if self.reply_frames_sent >= due {
            return None;
        }
        let end = (pos + FRAME).min(self.reply.len());
        self.reply_frames_sent += 1;
        let last = end >= self.reply.len();
        self.reply_pos = (!last).then_some(end);
        if last || self.reply_frames_sent.is_multiple_of(MARK_EVERY) {
            self.marks += 1;
            self.mark_due = Some(self.marks);
        }
        self.reply.get(pos..end)
    }

    /// The sequence number of a mark due after the frame just handed out (send it now).
    pub fn take_mark(&mut self) -> Option<u64> {
        self.mark_due.take()
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    media_url: Arc<str>,
}

/// A running baseline server.
#[derive(Debug)]
pub struct Baseline {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Baseline {
    /// `http://addr`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr` (port 0 picks one) and serves the baseline until dropped.
pub async fn spawn(addr: SocketAddr) -> Result<Baseline, LoadError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| LoadError::Baseline(format!("bind {addr}: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| LoadError::Baseline(format!("local address: {e}")))?;
    let state = AppState {
        metrics: Arc::new(Metrics::new()),
        media_url: Arc::from(format!("ws://{addr}/twilio/media")),
    };
    let app = Router::new()
        .route("/twilio/voice", post(voice))
        .route("/twilio/media", get(media))
        .route("/stats", get(stats))
        .with_state(state);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(
            listener.tap_io(|tcp: &mut tokio::net::TcpStream| {
                // Same as the engine: no Nagle delay on 20 ms frames.
                let _ = tcp.set_nodelay(true);
            }),
            app,
        )
        .await
        {
            tracing::error!(error = %e, "baseline server stopped");
        }
    });
    tracing::info!(%addr, "baseline listening");
    Ok(Baseline { addr, task })
}

async fn voice(State(state): State<AppState>) -> Response {
    let n = state.metrics.calls.fetch_add(1, Ordering::Relaxed);
    let twiml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Connect><Stream url=\"{}\">\
         <Parameter name=\"call_id\" value=\"baseline-{n}\"/></Stream></Connect></Response>",
        state.media_url
    );
    ([(axum::http::header::CONTENT_TYPE, "text/xml")], twiml).into_response()
}

async fn stats(State(state): State<AppState>) -> Response {
    axum::Json(state.metrics.snapshot()).into_response()
}

async fn media(ws: WebSocketUpgrade, State(state): State<AppState>) -> Response {
    // The same socket buffers as the engine's media socket.
    ws.max_message_size(MAX_FRAME_BYTES)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| session(socket, state.metrics))
}

/// Decrements the live-call gauge however the session ends.
struct LiveGuard(Arc<Metrics>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
        self.0.ended.fetch_add(1, Ordering::Relaxed);
    }
}

async fn session(mut socket: WebSocket, metrics: Arc<Metrics>) {
    metrics.live.fetch_add(1, Ordering::Relaxed);
    metrics.started.fetch_add(1, Ordering::Relaxed);
    let _guard = LiveGuard(metrics.clone());
    let mut bot = EchoBot::new();
    let mut stream_sid = String::new();
    let mut writer = OutboundWriter::with_capacity(512);
    let mut payload = [0u8; 1024];
    let mut pcm = [0i16; 1024];
    let mut ulaw_out = [ulaw::SILENCE; FRAME];
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    // The session's own 20 ms clock: turn ends and reply pacing both use it.
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "baseline socket error");
                        break;
                    }
                };
                let t0 = Instant::now();
                let action = match parse_inbound(text.as_str(), MAX_FRAME_BYTES) {
                    Ok(InboundEvent::Start(s)) => {
                        stream_sid.clear();
                        stream_sid.push_str(s.stream_sid);
                        FrameAction::None
                    }
                    Ok(InboundEvent::Media(m)) => match m.decode_payload(&mut payload) {
                        Ok(n) => {
                            ulaw::decode_into(&payload[..n], &mut pcm[..n]);
                            let action = bot.on_caller_frame(&pcm[..n], ticks);
                            metrics.observe(t0.elapsed());
                            action
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "baseline: bad media payload");
                            FrameAction::None
                        }
                    },
                    Ok(InboundEvent::Stop { .. }) => break,
                    Ok(_) => FrameAction::None,
                    Err(e) => {
                        tracing::debug!(error = %e, "baseline: unparsable frame");
                        FrameAction::None
                    }
                };
                if action == FrameAction::Clear {
                    metrics.barge_ins.fetch_add(1, Ordering::Relaxed);
                    let msg = writer.clear(&stream_sid).to_owned();
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        break;
                    }
                }
            }
            _ = tick.tick() => {
                ticks += 1;
                let mut failed = false;
                while let Some(frame) = bot.poll_frame(ticks) {
                    ulaw_out.fill(ulaw::SILENCE);
                    ulaw::encode_into(frame, &mut ulaw_out[..frame.len()]);
                    let msg = writer.media(&stream_sid, &ulaw_out).to_owned();
                    if socket.send(Message::Text(msg.into())).await.is_err() {
                        failed = true;
                        break;
                    }
                    metrics.frames_out.fetch_add(1, Ordering::Relaxed);
                }
                // A tick hands out at most the lead burst; a mark due mid-burst is sent after it.
                if let Some(n) = bot.take_mark() {
                    let msg = writer.mark(&stream_sid, &format!("reply:{n}")).to_owned();
                    failed |= socket.send(Message::Text(msg.into())).await.is_err();
                }
                if failed {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bot: &mut EchoBot, tick: &mut u64, loud: bool, n: usize) -> Vec<FrameAction> {
        let pcm = [if loud { 4000i16 } else { 0 }; FRAME];
        (0..n)
            .map(|_| {
                *tick += 1;
                bot.on_caller_frame(&pcm, *tick)
            })
            .collect()
    }

    #[test]
    fn echoes_a_turn_paced_with_lead_then_marks_it() {
        let mut bot = EchoBot::new();
        let mut t = 0;
        frames(&mut bot, &mut t, false, 10);
        frames(&mut bot, &mut t, true, 20);
        assert!(bot.poll_frame(t).is_none(), "no reply while the caller speaks");
        frames(&mut bot, &mut t, false, 25);
        // The turn ended: 18 loud frames were kept (onset after 3) and 60 ms go out at once.
        let mut first = 0;
        while bot.poll_frame(t).is_some() {
            first += 1;
        }
        assert_eq!(first, LEAD_FRAMES);
        assert_eq!(bot.take_mark(), None);
        let mut sent = first;
        let mut marks = Vec::new();
        for _ in 0..40 {
            t += 1;
            let mut n = 0;
            while bot.poll_frame(t).is_some() {
                n += 1;
            }
            assert!(n <= 1, "one frame per tick after the lead");
            sent += n;
            if let Some(m) = bot.take_mark() {
                marks.push((sent, m));
            }
        }
        assert_eq!(sent, 18);
        // After the 10th frame and after the last one.
        assert_eq!(marks, vec![(10, 1), (18, 2)]);
    }

    #[test]
    fn talking_over_the_reply_clears_it() {
        let mut bot = EchoBot::new();
        let mut t = 0;
        frames(&mut bot, &mut t, true, 30);
        frames(&mut bot, &mut t, false, 25);
        assert!(bot.poll_frame(t).is_some());
        let actions = frames(&mut bot, &mut t, true, 3);
        assert_eq!(actions, vec![FrameAction::None, FrameAction::None, FrameAction::Clear]);
        assert!(bot.poll_frame(t + 100).is_none(), "the reply was dropped");
        assert_eq!(bot.take_mark(), None);
    }
}
