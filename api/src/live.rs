//! `/api/v1/live`: the supervisor WebSocket. Supervisors watch live calls
//! (events, transcripts, latency) as the call actors publish them on the bus.
//!
//! Protocol: `GET /api/v1/live[?tenant_id=&call_id=&access_token=]` upgrades
//! to a WebSocket. The server first sends
//! `{"type":"hello","live_calls":[{"call_id":..,"tenant_id":..}]}`, then every
//! matching [`CallEvent`] as one JSON text frame (the event's own JSON), and
//! `{"type":"lagged","dropped":N}` before the next event whenever `N` events
//! were dropped for this supervisor. It pings every 30 s; client text frames
//! are read and ignored (at most [`MAX_CLIENT_MESSAGE_BYTES`] each).
//!
//! Guarantees:
//! - Everything is checked before the upgrade, as JSON errors: `503` when this
//!   node runs no calls, `401` without valid credentials (bearer header,
//!   session cookie, or `?access_token=` since browsers cannot set headers on
//!   a WebSocket), `403` for a cookie-authenticated request whose `Origin`
//!   is neither the public base URL nor the `Host` (cross-site WebSocket
//!   hijacking), `404` for another tenant or a call outside the caller's scope.
//! - Tenant isolation: a tenant user only ever receives events published on
//!   its own tenant's topics whose payload names that tenant; a system admin
//!   sees every tenant, or one with `?tenant_id=`.
//! - A slow supervisor never slows a call or the bus: the task reading the
//!   bus only pushes into a bounded [`LiveQueue`] (never awaits the socket),
//!   and the queue coalesces and drops by priority when full. Every event
//!   lost, in the queue or on the bus ([`Subscription::lagged`]), is counted
//!   and reported.
//! - Events of one subscription are forwarded in publish order.
//! - The socket, its two tasks and the bus subscription end together: on a
//!   client close or error, a send failure, or bus shutdown.

use crate::AppState;
use crate::auth::{AuthMethod, Caller};
use crate::error::ApiError;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{FromRequestParts, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use switchboard_bus::{Bus, BusError, Subscription, Topic, TopicPattern};
use switchboard_domain::{CallEvent, CallEventKind, CallId, Role, Speaker, TenantId};
use switchboard_store::{Scope, StoreError};
use tokio::sync::Notify;
use tracing::Instrument;

/// Largest message (and frame) a supervisor may send us; we ignore them anyway.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4 * 1024;

/// How often the server pings an idle or busy supervisor.
pub const PING_INTERVAL: Duration = Duration::from_secs(30);

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/live", get(live))
}

// ---------------------------------------------------------------------------
// The queue: plain, synchronous, unit-tested on its own.
// ---------------------------------------------------------------------------

/// Why a bus payload could not become a [`LiveEvent`].
#[derive(Debug, thiserror::Error)]
pub enum LiveEventError {
    /// The payload is not the JSON of a [`CallEvent`].
    #[error("not a call event: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The payload is not UTF-8 (cannot happen for valid JSON; checked anyway).
    #[error("call event is not UTF-8")]
    NotUtf8,
}

/// How the queue treats an event once it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// A `transcript_partial`: superseded by a newer one for the same call and speaker.
    Partial { call: CallId, speaker: Speaker },
    /// A `turn_latency`: superseded by a newer one for the same call and turn.
    Latency { call: CallId, turn: u32 },
    /// Everything else (finals, status, barge-in, DTMF, start, end): dropped last.
    Kept,
}

impl Class {
    fn of(kind: &CallEventKind, call: CallId) -> Self {
        match kind {
            CallEventKind::TranscriptPartial { speaker, .. } => Class::Partial {
                call,
                speaker: *speaker,
            },
            CallEventKind::TurnLatency(latency) => Class::Latency {
                call,
                turn: latency.turn_id,
            },
            _ => Class::Kept,
        }
    }

    fn droppable(self) -> bool {
        !matches!(self, Class::Kept)
    }
}

/// One call event ready for supervisors: its JSON text (sent as is) and what
/// the queue needs to coalesce it. Cheap to clone (the text is shared).
#[derive(Debug, Clone)]
pub struct LiveEvent {
    call_id: CallId,
    tenant_id: TenantId,
    class: Class,
    json: Utf8Bytes,
}

impl LiveEvent {
    /// From an event value (serialized once, here).
    pub fn from_event(event: &CallEvent) -> Result<Self, LiveEventError> {
        let json = serde_json::to_string(event)?;
        Ok(Self {
            call_id: event.call_id,
            tenant_id: event.tenant_id,
            class: Class::of(&event.kind, event.call_id),
            json: Utf8Bytes::from(json),
        })
    }

    /// From a bus payload: it must parse as a [`CallEvent`]; the original
    /// text is what supervisors receive (no re-encoding).
    pub fn from_json(payload: switchboard_bus::Bytes) -> Result<Self, LiveEventError> {
        let event: CallEvent = serde_json::from_slice(&payload)?;
        let json = Utf8Bytes::try_from(payload).map_err(|_| LiveEventError::NotUtf8)?;
        Ok(Self {
            call_id: event.call_id,
            tenant_id: event.tenant_id,
            class: Class::of(&event.kind, event.call_id),
            json,
        })
    }

    pub fn call_id(&self) -> CallId {
        self.call_id
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The event's JSON, exactly as sent to supervisors.
    pub fn json(&self) -> &str {
        self.json.as_str()
    }

    /// Whether the queue may drop it before other events (`transcript_partial`, `turn_latency`).
    pub fn is_droppable(&self) -> bool {
        self.class.droppable()
    }
}

/// What the socket writer sends next.
#[derive(Debug, Clone)]
pub enum LiveOut {
    /// `dropped` events were lost since the last event sent; send
    /// `{"type":"lagged","dropped":N}`.
    Lagged { dropped: u64 },
    /// The next event.
    Event(LiveEvent),
}

impl LiveOut {
    /// The JSON text of the frame.
    pub fn to_json(&self) -> Utf8Bytes {
        match self {
            LiveOut::Lagged { dropped } => Utf8Bytes::from(format!(r#"{{"type":"lagged","dropped":{dropped}}}"#)),
            LiveOut::Event(event) => event.json.clone(),
        }
    }
}

/// A supervisor's bounded, coalescing event queue.
///
/// Below capacity it is a FIFO. When a push finds it full:
/// 1. a `transcript_partial` removes the queued partials of the same call and
///    speaker, and a `turn_latency` those of the same call and turn (the new
///    one supersedes them);
/// 2. otherwise the oldest queued droppable event (partial or latency) is
///    dropped; an incoming droppable event finding none is itself dropped
///    (it is then the oldest droppable event in play);
/// 3. otherwise the oldest event is dropped.
///
/// The new event always goes to the back, so the relative order of what is
/// delivered is the push order. Every event that will never be popped is
/// counted, and [`LiveQueue::pop`] reports the count as
/// [`LiveOut::Lagged`] before the next event. The queue never holds more
/// than its capacity.
#[derive(Debug)]
pub struct LiveQueue {
    capacity: usize,
    items: VecDeque<LiveEvent>,
    unreported: u64,
    dropped_total: u64,
}

impl LiveQueue {
    /// A queue holding at most `capacity` events (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            items: VecDeque::with_capacity(capacity),
            unreported: 0,
            dropped_total: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Events waiting (lagged notices not included).
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Every event dropped so far, reported or not.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Queues an event, making room as described on [`LiveQueue`]. Returns
    /// how many events this push dropped.
    pub fn push(&mut self, event: LiveEvent) -> u64 {
        if self.items.len() < self.capacity {
            self.items.push_back(event);
            return 0;
        }
        let dropped = if event.class.droppable() {
            let before = self.items.len();
            self.items.retain(|queued| queued.class != event.class);
            before - self.items.len()
        } else {
            0
        };
        let dropped = if dropped > 0 {
            self.items.push_back(event);
            dropped as u64
        } else if let Some(oldest) = self.items.iter().position(|queued| queued.class.droppable()) {
            self.items.remove(oldest);
            self.items.push_back(event);
            1
        } else if event.class.droppable() {
            // The queue is all higher-priority events: the newcomer is the one to lose.
            1
        } else {
            self.items.pop_front();
            self.items.push_back(event);
            1
        };
        self.note_dropped(dropped);
        dropped
    }

    /// Counts events lost before they reached the queue (bus lag), to be
    /// reported with the queue's own drops.
    pub fn note_dropped(&mut self, n: u64) {
        self.unreported = self.unreported.saturating_add(n);
        self.dropped_total = self.dropped_total.saturating_add(n);
    }

    /// The next thing to send: a lagged notice if events were dropped since
    /// the last pop, else the oldest event. `None` when there is nothing.
    pub fn pop(&mut self) -> Option<LiveOut> {
        if self.unreported > 0 {
            let dropped = std::mem::take(&mut self.unreported);
            return Some(LiveOut::Lagged { dropped });
        }
        self.items.pop_front().map(LiveOut::Event)
    }
}

// ---------------------------------------------------------------------------
// The route.
// ---------------------------------------------------------------------------

/// The query string. IDs stay text until the caller is authenticated, so an
/// anonymous request with a bad ID is still a 401.
#[derive(Debug, Default, Deserialize)]
struct LiveQuery {
    tenant_id: Option<String>,
    call_id: Option<String>,
    access_token: Option<String>,
}

/// What one supervisor watches, after scoping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    AllTenants,
    Tenant(TenantId),
    Call(TenantId, CallId),
}

impl Watch {
    fn admits(self, tenant: TenantId, call: CallId) -> bool {
        match self {
            Watch::AllTenants => true,
            Watch::Tenant(t) => t == tenant,
            Watch::Call(t, c) => t == tenant && c == call,
        }
    }

    async fn subscribe(self, bus: &Bus) -> Result<Subscription, BusError> {
        match self {
            Watch::AllTenants => bus.psubscribe(&TopicPattern::all_calls()).await,
            Watch::Tenant(t) => bus.psubscribe(&TopicPattern::tenant_calls(t)).await,
            Watch::Call(t, c) => bus.subscribe(&Topic::call(t, c)).await,
        }
    }
}

/// One entry of the hello message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LiveCallRef {
    pub call_id: CallId,
    pub tenant_id: TenantId,
}

/// The first message on the socket: the calls live right now in the watched scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Always `"hello"`.
    #[serde(rename = "type")]
    pub kind: String,
    pub live_calls: Vec<LiveCallRef>,
}

/// `http.public_base_url` as the state holds it (no trailing slash).
pub(crate) fn public_base_url(state: &AppState) -> &str {
    &state.inner.public_base_url
}

async fn live(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let Some(calls) = state.calls.clone() else {
        return Err(ApiError::NotReady(
            "live call monitoring is not enabled on this node".into(),
        ));
    };
    let (mut parts, _body) = request.into_parts();
    let Query(query) = Query::<LiveQuery>::try_from_uri(&parts.uri)
        .map_err(|_| ApiError::BadRequest("malformed query string".into()))?;
    let caller = authenticate(&state, &mut parts, query.access_token.as_deref()).await?;
    caller.require(Role::Agent)?;
    if caller.method == AuthMethod::Cookie && !origin_allowed(&parts.headers, public_base_url(&state)) {
        tracing::warn!(user_id = %caller.user.id, "live: cookie-authenticated upgrade from a foreign origin refused");
        return Err(ApiError::Forbidden);
    }
    let tenant_id = parse_id::<TenantId>(query.tenant_id.as_deref(), "tenant_id")?;
    let call_id = parse_id::<CallId>(query.call_id.as_deref(), "call_id")?;
    let watch = resolve_watch(&state, &caller, tenant_id, call_id).await?;

    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|_| ApiError::BadRequest("expected a WebSocket upgrade request".into()))?;
    // Subscribe before answering: no event published after the hello's
    // snapshot can be missed, and a bus failure is still a JSON error.
    let subscription = watch.subscribe(&calls.bus).await.map_err(|err| {
        tracing::error!(error = %err, "live: bus subscription failed");
        ApiError::NotReady("live events are unavailable".into())
    })?;
    let mut live_calls: Vec<LiveCallRef> = calls
        .tree
        .registry()
        .calls()
        .filter(|h| watch.admits(h.tenant_id(), h.call_id()))
        .iter()
        .map(|h| LiveCallRef {
            call_id: h.call_id(),
            tenant_id: h.tenant_id(),
        })
        .collect();
    live_calls.sort();
    let hello = Hello {
        kind: "hello".into(),
        live_calls,
    };

    let supervisor_queue = state.inner.supervisor_queue;
    let span = tracing::info_span!(
        "live",
        user_id = %caller.user.id,
        tenant_id = tracing::field::Empty,
        call_id = tracing::field::Empty,
    );
    match watch {
        Watch::AllTenants => {}
        Watch::Tenant(t) => {
            span.record("tenant_id", tracing::field::display(t));
        }
        Watch::Call(t, c) => {
            span.record("tenant_id", tracing::field::display(t));
            span.record("call_id", tracing::field::display(c));
        }
    }
    let failed_span = span.clone();
    Ok(upgrade
        .max_message_size(MAX_CLIENT_MESSAGE_BYTES)
        .max_frame_size(MAX_CLIENT_MESSAGE_BYTES)
        .on_failed_upgrade(move |err| {
            failed_span.in_scope(|| tracing::warn!(error = %err, "live: WebSocket upgrade failed"));
        })
        .on_upgrade(move |socket| {
            Supervisor {
                watch,
                queue: supervisor_queue,
            }
            .run(socket, subscription, hello)
            .instrument(span)
        }))
}

/// The [`Caller`] extractor, plus `?access_token=` for browsers: the query
/// token is used only when no `Authorization` header was sent.
async fn authenticate(state: &AppState, parts: &mut Parts, query_token: Option<&str>) -> Result<Caller, ApiError> {
    if let Some(token) = query_token
        && !parts.headers.contains_key(header::AUTHORIZATION)
    {
        let value = HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| ApiError::Unauthorized)?;
        parts.headers.insert(header::AUTHORIZATION, value);
    }
    Caller::from_request_parts(parts, state).await
}

fn parse_id<T: std::str::FromStr>(raw: Option<&str>, name: &str) -> Result<Option<T>, ApiError> {
    raw.map(|s| {
        s.parse()
            .map_err(|_| ApiError::BadRequest(format!("`{name}` is not a valid ID")))
    })
    .transpose()
}

/// Scopes the request: tenant users watch their own tenant (naming another is
/// a 404), system admins every tenant or the one they name (which must
/// exist); a call filter must name a call in that scope.
async fn resolve_watch(
    state: &AppState,
    caller: &Caller,
    tenant: Option<TenantId>,
    call: Option<CallId>,
) -> Result<Watch, ApiError> {
    let scope = match (caller.scope, tenant) {
        (Scope::All, None) => Scope::All,
        (Scope::All, Some(t)) => {
            state
                .store()
                .tenants()
                .get(Scope::All, t)
                .await
                .map_err(not_found("tenant"))?;
            Scope::Tenant(t)
        }
        (Scope::Tenant(own), None) => Scope::Tenant(own),
        (Scope::Tenant(own), Some(t)) if t == own => Scope::Tenant(own),
        (Scope::Tenant(_), Some(_)) => return Err(ApiError::NotFound("tenant")),
    };
    Ok(match (call, scope) {
        (Some(id), scope) => {
            let call = state.store().calls().get(scope, id).await.map_err(not_found("call"))?;
            Watch::Call(call.tenant_id, call.id)
        }
        (None, Scope::All) => Watch::AllTenants,
        (None, Scope::Tenant(t)) => Watch::Tenant(t),
    })
}

fn not_found(what: &'static str) -> impl Fn(StoreError) -> ApiError {
    move |err| match err {
        StoreError::NotFound { .. } => ApiError::NotFound(what),
        other => other.into(),
    }
}

/// Whether a cookie-authenticated upgrade may proceed: an `Origin`, when
/// present, must be the public base URL's origin or the `Host` the request
/// was sent to. Browsers always send `Origin` on WebSocket handshakes.
fn origin_allowed(headers: &HeaderMap, public_base_url: &str) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(Site::parse) else {
        return false;
    };
    if Site::parse(public_base_url).is_some_and(|base| base == origin) {
        return true;
    }
    headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|host| Site::with_host(&origin.scheme, host))
        .is_some_and(|host| host == origin)
}

/// Scheme, lower-cased host and port of a URL (default port filled in).
#[derive(Debug, PartialEq, Eq)]
struct Site {
    scheme: String,
    host: String,
    port: u16,
}

impl Site {
    fn parse(url: &str) -> Option<Site> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        if authority.contains('@') {
            return None;
        }
        Site::with_host(&scheme.to_ascii_lowercase(), authority)
    }

    fn with_host(scheme: &str, authority: &str) -> Option<Site> {
        let default_port = match scheme {
            "http" | "ws" => 80,
            "https" | "wss" => 443,
            _ => return None,
        };
        // `[v6]:port`, `host:port`, or a bare host.
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return None;
        }
        Some(Site {
            scheme: scheme.to_owned(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

// ---------------------------------------------------------------------------
// The socket: a bus reader task that pushes, a writer loop that pops.
// ---------------------------------------------------------------------------

/// State shared by one supervisor's bus reader and socket writer.
struct Shared {
    queue: Mutex<LiveQueue>,
    ready: Notify,
    bus_closed: AtomicBool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, LiveQueue> {
        // Every queue operation leaves it consistent, so a poisoned lock is usable.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Why a supervisor's session ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ClientClosed,
    ClientError,
    SendFailed,
    BusClosed,
}

struct Supervisor {
    watch: Watch,
    queue: usize,
}

impl Supervisor {
    async fn run(self, socket: WebSocket, subscription: Subscription, hello: Hello) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(LiveQueue::new(self.queue)),
            ready: Notify::new(),
            bus_closed: AtomicBool::new(false),
        });
        tracing::info!(live_calls = hello.live_calls.len(), "live: supervisor connected");
        let reader =
            tokio::spawn(read_bus(subscription, Arc::clone(&shared), self.watch).instrument(tracing::Span::current()));
        let end = write_socket(socket, &shared, &hello).await;
        // Ends the reader and drops the subscription with it.
        reader.abort();
        let dropped = shared.queue().dropped_total();
        tracing::info!(?end, dropped, "live: supervisor disconnected");
    }
}

/// Reads the bus into the queue. Never waits on the socket.
async fn read_bus(mut subscription: Subscription, shared: Arc<Shared>, watch: Watch) {
    let mut lag_seen = 0;
    while let Some(event) = subscription.recv().await {
        let lag = subscription.lagged().saturating_sub(lag_seen);
        lag_seen = subscription.lagged();
        let admitted = match LiveEvent::from_json(event.payload) {
            // The payload must agree with the topic it came on, so a
            // mislabelled event can never cross tenants.
            Ok(live)
                if event.topic.call_parts() == Some((live.tenant_id, live.call_id))
                    && watch.admits(live.tenant_id, live.call_id) =>
            {
                Some(live)
            }
            Ok(live) => {
                tracing::warn!(topic = %event.topic, event_tenant_id = %live.tenant_id, event_call_id = %live.call_id,
                    "live: event does not match its topic or scope, skipped");
                None
            }
            Err(err) => {
                tracing::warn!(topic = %event.topic, error = %err, "live: undecodable call event skipped");
                None
            }
        };
        if lag == 0 && admitted.is_none() {
            continue;
        }
        {
            let mut queue = shared.queue();
            if lag > 0 {
                tracing::debug!(lag, "live: supervisor lagged on the bus");
                queue.note_dropped(lag);
            }
            if let Some(live) = admitted {
                queue.push(live);
            }
        }
        shared.ready.notify_one();
    }
    shared.bus_closed.store(true, Ordering::Release);
    shared.ready.notify_one();
}

/// Sends the hello, then drains the queue whenever it is signalled, pings
/// every [`PING_INTERVAL`], and reads (and ignores) client frames until the
/// client goes away or the bus closes.
async fn write_socket(socket: WebSocket, shared: &Shared, hello: &Hello) -> End {
    let (mut sink, mut stream) = socket.split();
    let hello = match serde_json::to_string(hello) {
        Ok(json) => json,
        Err(err) => {
            tracing::error!(error = %err, "live: hello could not be encoded");
            return End::SendFailed;
        }
    };
    if sink.send(Message::Text(hello.into())).await.is_err() {
        return End::SendFailed;
    }
    let start = tokio::time::Instant::now() + PING_INTERVAL;
    let mut ping = tokio::time::interval_at(start, PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.ready.notified() => {
                // Pop one at a time so the lock is never held across a send.
                loop {
                    let next = shared.queue().pop();
                    let Some(out) = next else { break };
                    if sink.send(Message::Text(out.to_json())).await.is_err() {
                        return End::SendFailed;
                    }
                }
                if shared.bus_closed.load(Ordering::Acquire) {
                    let frame = CloseFrame { code: close_code::AWAY, reason: "shutting down".into() };
                    // The peer may already be gone; the session ends either way.
                    let _ = sink.send(Message::Close(Some(frame))).await;
                    return End::BusClosed;
                }
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Default::default())).await.is_err() {
                    return End::SendFailed;
                }
            }
            message = stream.next() => match message {
                None | Some(Ok(Message::Close(_))) => return End::ClientClosed,
                Some(Err(err)) => {
                    tracing::debug!(error = %err, "live: client socket error");
                    return End::ClientError;
                }
                // Supervisors have nothing to say yet; pongs and text are ignored.
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_domain::TurnLatency;

    fn event(call: CallId, kind: CallEventKind) -> LiveEvent {
        LiveEvent::from_event(&CallEvent::new(call, TenantId::new(), kind)).expect("encodes")
    }

    fn partial(call: CallId, speaker: Speaker, text: &str) -> LiveEvent {
        event(
            call,
            CallEventKind::TranscriptPartial {
                speaker,
                text: text.into(),
                turn_id: 1,
            },
        )
    }

    fn final_(call: CallId, text: &str) -> LiveEvent {
        event(
            call,
            CallEventKind::TranscriptFinal {
                speaker: Speaker::Caller,
                text: text.into(),
                turn_id: 1,
                start_ms: 0,
                end_ms: 1,
                interrupted: false,
            },
        )
    }

    fn latency(call: CallId, turn_id: u32, stt: u32) -> LiveEvent {
        event(
            call,
            CallEventKind::TurnLatency(TurnLatency {
                turn_id,
                stt_final_ms: Some(stt),
                ..TurnLatency::default()
            }),
        )
    }

    /// Pops everything: lagged notices as `lagged:N`, events by a field of their JSON.
    fn drain(queue: &mut LiveQueue, field: &str) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(next) = queue.pop() {
            out.push(match next {
                LiveOut::Lagged { dropped } => format!("lagged:{dropped}"),
                LiveOut::Event(e) => {
                    let json: serde_json::Value = serde_json::from_str(e.json()).expect("json");
                    json[field]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| json[field].to_string())
                }
            });
        }
        out
    }

    #[test]
    fn below_capacity_it_is_a_fifo() {
        let call = CallId::new();
        let mut queue = LiveQueue::new(8);
        for text in ["a", "b", "c"] {
            assert_eq!(queue.push(partial(call, Speaker::Caller, text)), 0);
        }
        assert_eq!(queue.len(), 3);
        assert_eq!(drain(&mut queue, "text"), ["a", "b", "c"]);
        assert_eq!(queue.dropped_total(), 0);
        assert!(queue.pop().is_none());
    }

    #[test]
    fn a_newer_partial_replaces_the_queued_one_of_the_same_call_and_speaker() {
        let (call, other) = (CallId::new(), CallId::new());
        let mut queue = LiveQueue::new(4);
        queue.push(partial(call, Speaker::Caller, "hel"));
        queue.push(partial(call, Speaker::Agent, "agent"));
        queue.push(partial(other, Speaker::Caller, "other"));
        queue.push(final_(call, "final"));
        assert_eq!(queue.push(partial(call, Speaker::Caller, "hello")), 1);
        assert_eq!(queue.len(), 4);
        // The replacement goes to the back: it is newer than the final.
        assert_eq!(
            drain(&mut queue, "text"),
            ["lagged:1", "agent", "other", "final", "hello"]
        );
    }

    #[test]
    fn a_newer_latency_replaces_the_same_turn_only() {
        let call = CallId::new();
        let mut queue = LiveQueue::new(3);
        queue.push(latency(call, 1, 100));
        queue.push(latency(call, 2, 200));
        queue.push(final_(call, "f"));
        assert_eq!(queue.push(latency(call, 2, 250)), 1);
        assert_eq!(
            drain(&mut queue, "stt_final_ms"),
            // The final in the middle has no `stt_final_ms`.
            ["lagged:1", "100", "null", "250"]
        );
    }

    #[test]
    fn finals_are_kept_in_order_and_droppable_events_go_first() {
        let call = CallId::new();
        let mut queue = LiveQueue::new(4);
        queue.push(final_(call, "f1"));
        queue.push(latency(call, 1, 10));
        queue.push(final_(call, "f2"));
        queue.push(partial(call, Speaker::Agent, "p"));
        // Full: the oldest droppable (the latency) makes room, then the partial.
        assert_eq!(queue.push(final_(call, "f3")), 1);
        assert_eq!(queue.push(final_(call, "f4")), 1);
        // All finals now: a partial is the one to lose.
        assert_eq!(queue.push(partial(call, Speaker::Caller, "late")), 1);
        assert_eq!(queue.len(), 4);
        assert_eq!(drain(&mut queue, "text"), ["lagged:3", "f1", "f2", "f3", "f4"]);
        assert_eq!(queue.dropped_total(), 3);
    }

    #[test]
    fn only_then_the_oldest_final_is_dropped() {
        let call = CallId::new();
        let mut queue = LiveQueue::new(2);
        queue.push(final_(call, "f1"));
        queue.push(final_(call, "f2"));
        assert_eq!(queue.push(final_(call, "f3")), 1);
        assert_eq!(drain(&mut queue, "text"), ["lagged:1", "f2", "f3"]);
    }

    #[test]
    fn lagged_is_reported_once_before_the_next_event_and_counts_bus_lag() {
        let call = CallId::new();
        let mut queue = LiveQueue::new(1);
        queue.push(final_(call, "f1"));
        queue.push(final_(call, "f2"));
        queue.note_dropped(5);
        assert!(matches!(queue.pop(), Some(LiveOut::Lagged { dropped: 6 })));
        assert!(matches!(queue.pop(), Some(LiveOut::Event(e)) if e.json().contains("\"f2\"")));
        assert!(queue.pop().is_none());
        queue.note_dropped(2);
        assert!(matches!(queue.pop(), Some(LiveOut::Lagged { dropped: 2 })));
        assert!(queue.pop().is_none());
        assert_eq!(queue.dropped_total(), 8);
        assert_eq!(
            LiveOut::Lagged { dropped: 7 }.to_json().as_str(),
            r#"{"type":"lagged","dropped":7}"#
        );
    }

    #[test]
    fn bus_payloads_are_parsed_at_the_edge_and_forwarded_verbatim() {
        let call = CallId::new();
        let original = CallEvent::new(call, TenantId::new(), CallEventKind::Dtmf { digits: "42".into() });
        let bytes = serde_json::to_vec(&original).expect("json");
        let live = LiveEvent::from_json(bytes.clone().into()).expect("parses");
        assert_eq!(live.json().as_bytes(), bytes.as_slice());
        assert_eq!(live.call_id(), call);
        assert!(!live.is_droppable());
        assert!(LiveEvent::from_json(switchboard_bus::Bytes::from_static(b"{\"type\":\"nope\"}")).is_err());
    }

    #[test]
    fn origins_must_match_the_public_url_or_the_host() {
        let headers = |origin: Option<&str>, host: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_str(host).expect("host"));
            if let Some(o) = origin {
                h.insert(header::ORIGIN, HeaderValue::from_str(o).expect("origin"));
            }
            h
        };
        let base = "https://voice.example.com/base";
        assert!(origin_allowed(&headers(None, "127.0.0.1:8080"), base));
        assert!(origin_allowed(
            &headers(Some("https://voice.example.com"), "10.0.0.1"),
            base
        ));
        assert!(origin_allowed(
            &headers(Some("https://VOICE.example.com:443"), "10.0.0.1"),
            base
        ));
        assert!(origin_allowed(
            &headers(Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            base
        ));
        assert!(origin_allowed(&headers(Some("http://localhost"), "localhost:80"), base));
        assert!(!origin_allowed(
            &headers(Some("https://evil.example"), "127.0.0.1:8080"),
            base
        ));
        assert!(!origin_allowed(
            &headers(Some("http://voice.example.com"), "10.0.0.1"),
            base
        ));
        assert!(!origin_allowed(&headers(Some("null"), "127.0.0.1:8080"), base));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8080"),
            base
        ));
    }
}
