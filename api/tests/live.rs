//! `/api/v1/live` end to end: the production router and state with real call
//! services (`Tree::start`, an in-process bus), served on a real port, users
//! logged in through `/api/v1/auth/login`, supervisors connected with
//! tokio-tungstenite, and `CallEvent`s published on the bus as the call
//! actors do.
//!
//! The tests run on tokio's current-thread runtime: a burst of publishes
//! without an `.await` in between reaches the server's tasks only once the
//! test awaits, which makes bus lag exact and lets the slow-supervisor test
//! fill a queue while its client is not reading.

use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use switchboard_actors::{CallSpec, Tree, TreeConfig};
use switchboard_api::{AppState, CallServices, router};
use switchboard_bus::{Bus, BusOptions, Topic};
use switchboard_config::{SecretString, Settings};
use switchboard_domain::{
    Agent, CallDirection, CallEvent, CallEventKind, CallId, CallStatus, EndReason, NewCall, NewTenant, NewUser, Role,
    Secret, Speaker, TenantId, TurnLatency,
};
use switchboard_providers::{CallProviders, ProviderError, ProviderErrorKind, ProviderFactory};
use switchboard_store::Store;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery staple";
const JWT_SECRET: &str = "test-jwt-secret-that-is-at-least-32-bytes-long";
const PUBLIC_BASE_URL: &str = "https://console.example.test";
/// Only guards against a hung test; no assertion depends on it.
const HANG_GUARD: Duration = Duration::from_secs(120);

type Ws = WebSocketStream<TcpStream>;

/// Live tests run no media, so no call ever asks for providers.
struct NoProviders;

impl ProviderFactory for NoProviders {
    fn for_call<'a>(
        &'a self,
        _tenant: TenantId,
        _agent: &'a Agent,
    ) -> BoxFuture<'a, Result<CallProviders, ProviderError>> {
        Box::pin(async {
            Err(ProviderError::new(
                "test",
                ProviderErrorKind::Config("live tests run no media".into()),
            ))
        })
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(1);

struct Session {
    token: String,
    /// `sb_session=...; sb_csrf=...` as a browser would send it.
    cookies: String,
}

enum Auth<'a> {
    None,
    Bearer(&'a Session),
    Cookie(&'a Session, Option<&'a str>),
}

struct Live {
    addr: SocketAddr,
    http: reqwest::Client,
    store: Store,
    bus: Bus,
    tree: Tree,
    tenant_a: TenantId,
    tenant_b: TenantId,
    _dir: tempfile::TempDir,
}

fn settings() -> Settings {
    let mut settings = Settings::default();
    settings.limits.login_per_minute = 1_000;
    settings.http.public_base_url = PUBLIC_BASE_URL.into();
    settings
}

async fn store_in(dir: &tempfile::TempDir) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("live.db").display());
    let store = Store::connect(&url, 4, [7; 32]).await.expect("connect store");
    store.migrate().await.expect("migrate");
    store
}

impl Live {
    async fn start() -> Live {
        Self::with_bus(BusOptions::default()).await
    }

    async fn with_bus(options: BusOptions) -> Live {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(&dir).await;
        let tenant = |name: &str| NewTenant {
            name: name.to_owned(),
            notification_email: None,
            max_concurrent_calls: 5,
        };
        let tenant_a = store.tenants().create(tenant("Tenant A")).await.expect("tenant a").id;
        let tenant_b = store.tenants().create(tenant("Tenant B")).await.expect("tenant b").id;
        let bus = Bus::in_process_with(options);
        let tree = Tree::start(TreeConfig::default(), Arc::new(store.clone()))
            .await
            .expect("tree");
        let state = AppState::new(
            store.clone(),
            bus.clone(),
            tree.registry().clone(),
            &settings(),
            &SecretString::new(JWT_SECRET),
        )
        .expect("state")
        .with_calls(CallServices {
            tree: tree.clone(),
            bus: bus.clone(),
            providers: Arc::new(NoProviders),
            recordings_dir: None,
        });
        // A small send buffer (inherited by accepted sockets) bounds what a
        // supervisor that does not read can absorb in the kernel.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
        socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        let listener = socket.listen(64).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Live {
            addr,
            http: reqwest::Client::new(),
            store,
            bus,
            tree,
            tenant_a,
            tenant_b,
            _dir: dir,
        }
    }

    /// Creates a user and logs them in through the real login route.
    async fn login_as(&self, tenant: Option<TenantId>, role: Role) -> Session {
        let email = format!(
            "{}-{}@example.com",
            role.as_str(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.store
            .users()
            .create(NewUser {
                tenant_id: tenant,
                email: email.clone(),
                password: Secret::new(PASSWORD),
                role,
            })
            .await
            .expect("create user");
        let res = self
            .http
            .post(format!("http://{}/api/v1/auth/login", self.addr))
            .json(&serde_json::json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(res.status(), StatusCode::OK);
        let cookies: Vec<String> = res
            .headers()
            .get_all(http::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_owned())
            .collect();
        let body: Value = res.json().await.expect("login json");
        Session {
            token: body["access_token"].as_str().expect("token").to_owned(),
            cookies: cookies.join("; "),
        }
    }

    /// A call row in the store (what `?call_id=` is checked against).
    async fn call_row(&self, tenant: TenantId) -> CallId {
        self.store
            .calls()
            .create(NewCall {
                tenant_id: tenant,
                agent_id: None,
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: "+15550001111".into(),
                to: "+15550002222".into(),
                status: CallStatus::InProgress,
            })
            .await
            .expect("call row")
            .id
    }

    async fn publish(&self, event: &CallEvent) {
        self.bus
            .publish_json(&Topic::call(event.tenant_id, event.call_id), event)
            .await
            .expect("publish");
    }

    /// Opens `/api/v1/live{query}`; an HTTP refusal comes back as status and JSON body.
    async fn connect(&self, query: &str, auth: Auth<'_>) -> Result<Ws, (StatusCode, Value)> {
        self.connect_with(query, auth, None).await
    }

    async fn connect_with(
        &self,
        query: &str,
        auth: Auth<'_>,
        recv_buffer: Option<u32>,
    ) -> Result<Ws, (StatusCode, Value)> {
        let socket = TcpSocket::new_v4().expect("socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = socket.connect(self.addr).await.expect("connect");
        let mut request = format!("ws://{}/api/v1/live{query}", self.addr)
            .into_client_request()
            .expect("request");
        let headers = request.headers_mut();
        match auth {
            Auth::None => {}
            Auth::Bearer(who) => {
                headers.insert(
                    http::header::AUTHORIZATION,
                    format!("Bearer {}", who.token).parse().expect("header"),
                );
            }
            Auth::Cookie(who, origin) => {
                headers.insert(http::header::COOKIE, who.cookies.parse().expect("cookie"));
                if let Some(origin) = origin {
                    headers.insert(http::header::ORIGIN, origin.parse().expect("origin"));
                }
            }
        }
        match tokio_tungstenite::client_async(request, stream).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(res)) => {
                let body = res.body().as_deref().unwrap_or_default();
                Err((res.status(), serde_json::from_slice(body).unwrap_or(Value::Null)))
            }
            Err(err) => panic!("handshake failed: {err}"),
        }
    }

    /// Connects, expecting success, and returns the socket and its hello.
    async fn watch(&self, query: &str, auth: Auth<'_>) -> (Ws, Value) {
        let mut ws = match self.connect(query, auth).await {
            Ok(ws) => ws,
            Err((status, body)) => panic!("refused with {status}: {body}"),
        };
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["type"], "hello", "first message is the hello: {hello}");
        (ws, hello)
    }

    async fn refused(&self, query: &str, auth: Auth<'_>) -> (StatusCode, String) {
        match self.connect(query, auth).await {
            Ok(_) => panic!("`{query}` was accepted"),
            Err((status, body)) => (status, body["code"].as_str().unwrap_or_default().to_owned()),
        }
    }
}

/// The next text frame as JSON (pings and pongs skipped).
async fn next_json(ws: &mut Ws) -> Value {
    let frame = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(text))) => return serde_json::from_str::<Value>(&text).expect("json frame"),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("socket ended or sent a non-text frame: {other:?}"),
            }
        }
    })
    .await;
    frame.expect("hang guard: no frame")
}

/// Reads `n` frames and returns their DTMF digits.
async fn digits(ws: &mut Ws, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = next_json(ws).await;
        assert_eq!(frame["type"], "dtmf", "unexpected frame {frame}");
        out.push(frame["digits"].as_str().expect("digits").to_owned());
    }
    out
}

fn dtmf(tenant: TenantId, call: CallId, digits: &str) -> CallEvent {
    CallEvent::new(call, tenant, CallEventKind::Dtmf { digits: digits.into() })
}

fn ids(hello: &Value) -> Vec<(String, String)> {
    hello["live_calls"]
        .as_array()
        .expect("live_calls")
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().expect("call_id").to_owned(),
                c["tenant_id"].as_str().expect("tenant_id").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn each_supervisor_sees_exactly_its_scope() {
    let live = Live::start().await;
    let (a, b) = (live.tenant_a, live.tenant_b);
    let owner_a = live.login_as(Some(a), Role::Owner).await;
    let agent_a = live.login_as(Some(a), Role::Agent).await;
    let admin = live.login_as(None, Role::SystemAdmin).await;

    let (mut owner_ws, _) = live.watch("", Auth::Bearer(&owner_a)).await;
    let (mut agent_ws, _) = live.watch("", Auth::Bearer(&agent_a)).await;
    let (mut admin_ws, _) = live.watch("", Auth::Bearer(&admin)).await;
    let (mut admin_b_ws, _) = live.watch(&format!("?tenant_id={b}"), Auth::Bearer(&admin)).await;

    let (call_a, call_b) = (CallId::new(), CallId::new());
    live.publish(&dtmf(a, call_a, "a1")).await;
    live.publish(&dtmf(b, call_b, "b1")).await;
    live.publish(&dtmf(a, call_a, "a2")).await;
    live.publish(&dtmf(b, call_b, "b2")).await;

    // Each subscription forwards in publish order, so a leaked event would
    // show up before the last expected one.
    assert_eq!(digits(&mut owner_ws, 2).await, ["a1", "a2"]);
    assert_eq!(digits(&mut agent_ws, 2).await, ["a1", "a2"]);
    assert_eq!(digits(&mut admin_ws, 4).await, ["a1", "b1", "a2", "b2"]);
    assert_eq!(digits(&mut admin_b_ws, 2).await, ["b1", "b2"]);
}

#[tokio::test]
async fn forwarded_frames_are_the_events_own_json() {
    let live = Live::start().await;
    let owner = live.login_as(Some(live.tenant_a), Role::Owner).await;
    let (mut ws, _) = live.watch("", Auth::Bearer(&owner)).await;
    let event = CallEvent::new(
        CallId::new(),
        live.tenant_a,
        CallEventKind::TranscriptFinal {
            speaker: Speaker::Agent,
            text: "How can I help?".into(),
            turn_id: 2,
            start_ms: 1_000,
            end_ms: 2_400,
            interrupted: true,
        },
    );
    live.publish(&event).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(serde_json::from_value::<CallEvent>(frame).expect("a CallEvent"), event);
}

#[tokio::test]
async fn a_payload_that_disagrees_with_its_topic_is_not_forwarded() {
    let live = Live::start().await;
    let owner_b = live.login_as(Some(live.tenant_b), Role::Owner).await;
    let admin = live.login_as(None, Role::SystemAdmin).await;
    let (mut owner_ws, _) = live.watch("", Auth::Bearer(&owner_b)).await;
    let (mut admin_ws, _) = live.watch("", Auth::Bearer(&admin)).await;
    let call = CallId::new();
    // Published on B's topic but claiming tenant A: malformed, forwarded to no one.
    let forged = dtmf(live.tenant_a, call, "forged");
    let topic = Topic::call(live.tenant_b, call);
    live.bus.publish_json(&topic, &forged).await.expect("publish");
    live.bus.publish(&topic, &b"not json"[..]).await.expect("publish");
    live.publish(&dtmf(live.tenant_b, call, "real")).await;
    assert_eq!(digits(&mut owner_ws, 1).await, ["real"]);
    assert_eq!(digits(&mut admin_ws, 1).await, ["real"]);
}

#[tokio::test]
async fn the_call_filter_and_tenant_scope_are_checked_before_the_upgrade() {
    let live = Live::start().await;
    let (a, b) = (live.tenant_a, live.tenant_b);
    let owner_a = live.login_as(Some(a), Role::Owner).await;
    let admin = live.login_as(None, Role::SystemAdmin).await;
    let (a1, a2, b1) = (live.call_row(a).await, live.call_row(a).await, live.call_row(b).await);

    let (mut one_call, _) = live.watch(&format!("?call_id={a1}"), Auth::Bearer(&owner_a)).await;
    let (mut admin_b_call, _) = live.watch(&format!("?call_id={b1}"), Auth::Bearer(&admin)).await;
    live.publish(&dtmf(a, a2, "x")).await;
    live.publish(&dtmf(a, a1, "y")).await;
    live.publish(&dtmf(b, b1, "b")).await;
    live.publish(&dtmf(a, a2, "z")).await;
    live.publish(&dtmf(a, a1, "w")).await;
    assert_eq!(digits(&mut one_call, 2).await, ["y", "w"]);
    assert_eq!(digits(&mut admin_b_call, 1).await, ["b"]);

    let not_found = (StatusCode::NOT_FOUND, "not_found".to_owned());
    let owner = || Auth::Bearer(&owner_a);
    let sysadmin = || Auth::Bearer(&admin);
    assert_eq!(live.refused(&format!("?call_id={b1}"), owner()).await, not_found);
    assert_eq!(
        live.refused(&format!("?call_id={}", CallId::new()), owner()).await,
        not_found
    );
    assert_eq!(live.refused(&format!("?tenant_id={b}"), owner()).await, not_found);
    assert_eq!(
        live.refused(&format!("?tenant_id={a}&call_id={b1}"), sysadmin()).await,
        not_found
    );
    assert_eq!(
        live.refused(&format!("?tenant_id={}", TenantId::new()), sysadmin())
            .await,
        not_found
    );
    assert_eq!(
        live.refused("?call_id=not-an-id", owner()).await,
        (StatusCode::BAD_REQUEST, "bad_request".to_owned())
    );
    // Naming one's own tenant is fine.
    live.watch(&format!("?tenant_id={a}"), owner()).await;
}

#[tokio::test]
async fn authentication_by_header_query_token_or_same_origin_cookie() {
    let live = Live::start().await;
    let a = live.tenant_a;
    let owner = live.login_as(Some(a), Role::Owner).await;
    let unauthorized = (StatusCode::UNAUTHORIZED, "unauthorized".to_owned());

    assert_eq!(live.refused("", Auth::None).await, unauthorized);
    // Anonymous requests learn nothing about their parameters.
    assert_eq!(live.refused("?call_id=not-an-id", Auth::None).await, unauthorized);
    assert_eq!(live.refused("?access_token=forged", Auth::None).await, unauthorized);
    let forged = Session {
        token: "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl".into(),
        cookies: "sb_session=forged.c2ln".into(),
    };
    assert_eq!(live.refused("", Auth::Bearer(&forged)).await, unauthorized);
    assert_eq!(live.refused("", Auth::Cookie(&forged, None)).await, unauthorized);

    // Browsers put the token in the query.
    let (mut by_query, _) = live.watch(&format!("?access_token={}", owner.token), Auth::None).await;

    // Cookies: the origin must be this engine (its Host or its public URL).
    let forbidden = (StatusCode::FORBIDDEN, "forbidden".to_owned());
    assert_eq!(
        live.refused("", Auth::Cookie(&owner, Some("https://evil.example")))
            .await,
        forbidden
    );
    assert_eq!(
        live.refused(
            "",
            Auth::Cookie(&owner, Some(&format!("http://127.0.0.1:{}", live.addr.port() + 1)))
        )
        .await,
        forbidden
    );
    let own_origin = format!("http://{}", live.addr);
    let (mut by_cookie, _) = live.watch("", Auth::Cookie(&owner, Some(&own_origin))).await;
    let (mut by_public_url, _) = live.watch("", Auth::Cookie(&owner, Some(PUBLIC_BASE_URL))).await;

    live.publish(&dtmf(a, CallId::new(), "1")).await;
    for ws in [&mut by_query, &mut by_cookie, &mut by_public_url] {
        assert_eq!(digits(ws, 1).await, ["1"]);
    }

    // Logging out ends the right to connect with that session's token.
    let res = live
        .http
        .post(format!("http://{}/api/v1/auth/logout", live.addr))
        .bearer_auth(&owner.token)
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    assert_eq!(live.refused("", Auth::Bearer(&owner)).await, unauthorized);
}

#[tokio::test]
async fn without_call_services_the_socket_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store_in(&dir).await;
    let state = AppState::new(
        store,
        Bus::in_process(),
        NoRegistry,
        &settings(),
        &SecretString::new(JWT_SECRET),
    )
    .expect("state");
    let res = router(state)
        .oneshot(
            http::Request::builder()
                .uri("/api/v1/live")
                .body(axum::body::Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .await
        .expect("body")
        .to_bytes();
    let body: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(body["code"], "not_ready");
}

struct NoRegistry;

impl switchboard_api::LiveCounts for NoRegistry {
    fn live_calls(&self) -> usize {
        0
    }
    fn live_conversations(&self) -> usize {
        0
    }
    fn is_call_live(&self, _id: CallId) -> bool {
        false
    }
}

#[tokio::test]
async fn hello_lists_the_live_calls_in_scope() {
    let live = Live::start().await;
    let (a, b) = (live.tenant_a, live.tenant_b);
    let owner_a = live.login_as(Some(a), Role::Agent).await;
    let admin = live.login_as(None, Role::SystemAdmin).await;
    let (call_a, call_b, idle_a) = (live.call_row(a).await, live.call_row(b).await, live.call_row(a).await);
    for (call_id, tenant_id) in [(call_a, a), (call_b, b)] {
        live.tree
            .spawn_call(CallSpec {
                call_id,
                tenant_id,
                agent_id: None,
                direction: CallDirection::Inbound,
                status: CallStatus::InProgress,
            })
            .await
            .expect("spawn call");
    }
    let entry = |c: CallId, t: TenantId| (c.to_string(), t.to_string());

    let (_, hello) = live.watch("", Auth::Bearer(&owner_a)).await;
    assert_eq!(ids(&hello), [entry(call_a, a)]);
    let (_, hello) = live.watch("", Auth::Bearer(&admin)).await;
    // Sorted by call ID (UUID order is the order of their hex text).
    let mut both = vec![entry(call_a, a), entry(call_b, b)];
    both.sort();
    assert_eq!(ids(&hello), both);
    let (_, hello) = live.watch(&format!("?tenant_id={b}"), Auth::Bearer(&admin)).await;
    assert_eq!(ids(&hello), [entry(call_b, b)]);
    let (_, hello) = live.watch(&format!("?call_id={call_a}"), Auth::Bearer(&owner_a)).await;
    assert_eq!(ids(&hello), [entry(call_a, a)]);
    let (_, hello) = live.watch(&format!("?call_id={idle_a}"), Auth::Bearer(&owner_a)).await;
    assert_eq!(ids(&hello), Vec::<(String, String)>::new());

    // A call that ends leaves the next hello.
    let handle = live.tree.registry().calls().get(&call_a).expect("live");
    handle.hangup(EndReason::CallerHangup).expect("hangup");
    handle.stopped().await;
    let (_, hello) = live.watch("", Auth::Bearer(&owner_a)).await;
    assert_eq!(ids(&hello), Vec::<(String, String)>::new());
}

#[tokio::test]
async fn client_text_is_ignored_and_oversized_messages_end_the_session() {
    let live = Live::start().await;
    let owner = live.login_as(Some(live.tenant_a), Role::Owner).await;
    let (mut ws, _) = live.watch("", Auth::Bearer(&owner)).await;
    ws.send(Message::text("hi server")).await.expect("send");
    live.publish(&dtmf(live.tenant_a, CallId::new(), "7")).await;
    assert_eq!(digits(&mut ws, 1).await, ["7"]);

    ws.send(Message::text("x".repeat(8 * 1024))).await.expect("send");
    let ended = tokio::time::timeout(HANG_GUARD, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("session still forwarding after an oversized message: {other:?}"),
            }
        }
    })
    .await;
    ended.expect("hang guard: the server kept the session open");
}

#[tokio::test]
async fn bus_lag_is_reported_before_the_next_event() {
    let live = Live::with_bus(BusOptions {
        event_capacity: 16,
        ..BusOptions::default()
    })
    .await;
    let owner = live.login_as(Some(live.tenant_a), Role::Owner).await;
    let (mut ws, _) = live.watch("", Auth::Bearer(&owner)).await;
    let call = CallId::new();
    // No await yields in between: the bus keeps only the newest 16.
    for i in 0..100 {
        live.publish(&dtmf(live.tenant_a, call, &i.to_string())).await;
    }
    let lagged = next_json(&mut ws).await;
    assert_eq!(lagged, serde_json::json!({"type": "lagged", "dropped": 84}));
    let expected: Vec<String> = (84..100).map(|i: i32| i.to_string()).collect();
    assert_eq!(digits(&mut ws, 16).await, expected);
}

/// Sequence number carried by each event of the flood below.
fn seq_of(frame: &Value) -> u64 {
    match frame["type"].as_str() {
        Some("transcript_partial" | "transcript_final") => frame["text"]
            .as_str()
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .expect("seq in text"),
        Some("turn_latency") => frame["stt_final_ms"].as_u64().expect("seq in latency"),
        Some("call_ended") => u64::MAX,
        other => panic!("unexpected frame type {other:?}"),
    }
}

#[tokio::test]
async fn a_slow_supervisor_gets_every_final_in_order_and_a_lagged_count() {
    const ROUNDS: u32 = 100;
    const PARTIALS_PER_ROUND: u32 = 10;
    // Large enough that the bus itself never lags: every loss is the queue's.
    let live = Live::with_bus(BusOptions {
        event_capacity: 8192,
        ..BusOptions::default()
    })
    .await;
    let a = live.tenant_a;
    let owner = live.login_as(Some(a), Role::Owner).await;
    // The slow supervisor's kernel buffers are small, so its socket fills fast.
    let mut slow = live
        .connect_with("", Auth::Bearer(&owner), Some(4096))
        .await
        .expect("slow supervisor connects");
    assert_eq!(next_json(&mut slow).await["type"], "hello");
    let (mut fast, _) = live.watch("", Auth::Bearer(&owner)).await;

    let call = CallId::new();
    let padding = "-".repeat(1024);
    let mut seq: u64 = 0;
    let mut published = 0u64;
    for round in 0..ROUNDS {
        for _ in 0..PARTIALS_PER_ROUND {
            seq += 1;
            let kind = CallEventKind::TranscriptPartial {
                speaker: Speaker::Caller,
                text: format!("{seq}:{padding}"),
                turn_id: round,
            };
            live.publish(&CallEvent::new(call, a, kind)).await;
            published += 1;
        }
        seq += 1;
        let latency = TurnLatency {
            turn_id: round,
            stt_final_ms: Some(u32::try_from(seq).expect("small")),
            ..TurnLatency::default()
        };
        live.publish(&CallEvent::new(call, a, CallEventKind::TurnLatency(latency)))
            .await;
        seq += 1;
        let kind = CallEventKind::TranscriptFinal {
            speaker: Speaker::Caller,
            text: format!("{seq}:final {round}"),
            turn_id: round,
            start_ms: 0,
            end_ms: 1,
            interrupted: false,
        };
        live.publish(&CallEvent::new(call, a, kind)).await;
        published += 2;
    }
    let end = CallEventKind::CallEnded {
        status: CallStatus::Completed,
        reason: EndReason::CallerHangup,
    };
    live.publish(&CallEvent::new(call, a, end)).await;
    published += 1;

    // The fast supervisor reading everything lets the server's tasks run
    // while the slow one's client still reads nothing.
    loop {
        if next_json(&mut fast).await["type"] == "call_ended" {
            break;
        }
    }

    let (mut delivered, mut dropped, mut notices) = (0u64, 0u64, 0u32);
    let mut last_seq = 0u64;
    let mut finals = Vec::new();
    loop {
        let frame = next_json(&mut slow).await;
        if frame["type"] == "lagged" {
            let n = frame["dropped"].as_u64().expect("dropped");
            assert!(n > 0, "a lagged notice counts at least one event");
            dropped += n;
            notices += 1;
            continue;
        }
        delivered += 1;
        let seq = seq_of(&frame);
        assert!(
            seq > last_seq,
            "events arrive in publish order ({seq} after {last_seq})"
        );
        last_seq = seq;
        if frame["type"] == "transcript_final" {
            finals.push(frame["turn_id"].as_u64().expect("turn"));
        }
        if frame["type"] == "call_ended" {
            break;
        }
    }
    assert!(notices > 0, "the slow supervisor was told it lagged");
    assert_eq!(delivered + dropped, published, "every event is delivered or counted");
    let expected: Vec<u64> = (0..u64::from(ROUNDS)).collect();
    assert_eq!(
        finals, expected,
        "finals are never dropped while partials and latency can be"
    );
}
