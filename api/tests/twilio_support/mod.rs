//! Fixture for the Twilio tests: the production router with real call
//! services (a real actor tree, the in-process bus, trivial providers), served
//! over TCP on 127.0.0.1:0, plus a tenant with an agent, a number and a Twilio
//! credential, and helpers that act as Twilio (signed webhooks, media socket).

#![allow(dead_code)]

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{SinkExt as _, StreamExt as _};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use switchboard_actors::{Tree, TreeConfig};
use switchboard_api::{AppState, CallServices, router};
use switchboard_bus::Bus;
use switchboard_config::{SecretString, Settings};
use switchboard_domain::{
    Agent, Call, CallId, CredentialKind, E164, NewAgent, NewCredential, NewPhoneNumber, NewTenant, PageRequest, Secret,
    Tenant, TenantId,
};
use switchboard_providers::twilio::signature;
use switchboard_providers::{
    CallProviders, ConversationAgent, PcmChunk, ProviderError, ProviderErrorKind, ProviderFactory, RuleAgent,
    SpeechToText, StreamConfig, SttEvent, SttStream, TextToSpeech,
};
use switchboard_store::{CallFilter, Scope, Store};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub const JWT_SECRET: &str = "twilio-test-jwt-secret-at-least-32-bytes-long";
pub const AUTH_TOKEN: &str = "test_auth_token";
pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";
pub const NUMBER: &str = "+15559870000";
pub const CALLER: &str = "+15551230000";
/// Label the API derives the stream-token key under (see `api/src/state.rs`).
pub const STREAM_TOKEN_LABEL: &[u8] = b"switchboard twilio stream token v1";

// ------------------------------------------------------------ providers

/// An STT stream that never hears anything.
struct SilentStream {
    finished: bool,
}

impl SttStream for SilentStream {
    fn push_audio<'a>(&'a mut self, _samples: &'a [i16]) -> BoxFuture<'a, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }
    fn finish(&mut self) -> BoxFuture<'_, Result<(), ProviderError>> {
        self.finished = true;
        Box::pin(async { Ok(()) })
    }
    fn next_event(&mut self) -> BoxFuture<'_, Result<Option<SttEvent>, ProviderError>> {
        if self.finished {
            Box::pin(async { Ok(None) })
        } else {
            Box::pin(futures::future::pending())
        }
    }
}

struct SilentStt;

impl SpeechToText for SilentStt {
    fn start(&self, _config: StreamConfig) -> BoxFuture<'_, Result<Box<dyn SttStream>, ProviderError>> {
        Box::pin(async { Ok(Box::new(SilentStream { finished: false }) as Box<dyn SttStream>) })
    }
}

/// 100 ms of a 440 Hz tone at 8 kHz for any text.
pub struct ToneTts;

impl TextToSpeech for ToneTts {
    fn synthesize(&self, _text: String, _voice: String) -> BoxStream<'static, Result<PcmChunk, ProviderError>> {
        let samples = (0..800)
            .map(|i| {
                let t = f64::from(i) / 8000.0;
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect();
        futures::stream::once(async move {
            Ok(PcmChunk {
                sample_rate: 8000,
                samples,
            })
        })
        .boxed()
    }
}

/// Hands out the trivial providers, or fails when told to.
#[derive(Default)]
pub struct TestFactory {
    pub fail: AtomicBool,
    /// When set, every call gets (a clone of) these providers.
    pub providers: std::sync::Mutex<Option<CallProviders>>,
}

impl ProviderFactory for TestFactory {
    fn for_call<'a>(
        &'a self,
        _tenant: TenantId,
        agent: &'a Agent,
    ) -> BoxFuture<'a, Result<CallProviders, ProviderError>> {
        Box::pin(async move {
            if self.fail.load(Ordering::SeqCst) {
                return Err(ProviderError::new(
                    "test",
                    ProviderErrorKind::Config("told to fail".into()),
                ));
            }
            if let Some(providers) = self.providers.lock().expect("lock").clone() {
                return Ok(providers);
            }
            let rules = RuleAgent::from_settings(&agent.settings)
                .map_err(|e| ProviderError::new("rules", ProviderErrorKind::Config(e.to_string())))?;
            Ok(CallProviders {
                stt: Arc::new(SilentStt),
                tts: Arc::new(ToneTts),
                agent: Arc::new(rules) as Arc<dyn ConversationAgent>,
                telephony: None,
                context: Default::default(),
                backup: Default::default(),
                realtime: None,
            })
        })
    }
}

// ------------------------------------------------------------ fixture

pub struct Fx {
    /// Where the server really listens: `http://127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// `http.public_base_url`: what Twilio signs.
    pub public_base_url: String,
    pub store: Store,
    pub tree: Tree,
    pub factory: Arc<TestFactory>,
    pub settings: Settings,
    pub tenant: Tenant,
    pub agent: Agent,
    pub recordings: PathBuf,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Options for [`Fx::start`].
pub struct Opts {
    /// `None`: the server's own `http://127.0.0.1:PORT`.
    pub public_base_url: Option<String>,
    pub max_concurrent_calls: u32,
    pub configure: fn(&mut Settings),
}

impl Default for Opts {
    fn default() -> Self {
        Self {
            public_base_url: None,
            max_concurrent_calls: 5,
            configure: |_| {},
        }
    }
}

impl Fx {
    pub async fn start() -> Fx {
        Self::with(Opts::default()).await
    }

    pub async fn with(opts: Opts) -> Fx {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("twilio.db").display());
        let store = Store::connect(&url, 4, [7; 32]).await.expect("connect store");
        store.migrate().await.expect("migrate");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let public_base_url = opts.public_base_url.unwrap_or_else(|| format!("http://{addr}"));

        let mut settings = Settings::default();
        settings.http.public_base_url = public_base_url.clone();
        settings.limits.webhook_per_second = 10_000;
        settings.limits.login_per_minute = 10_000;
        (opts.configure)(&mut settings);

        let tree = Tree::start(TreeConfig::default(), Arc::new(store.clone()))
            .await
            .expect("tree");
        let bus = Bus::in_process();
        let factory = Arc::new(TestFactory::default());
        let recordings = dir.path().join("recordings");
        std::fs::create_dir_all(&recordings).expect("recordings dir");
        let state = AppState::new(
            store.clone(),
            bus.clone(),
            tree.registry().clone(),
            &settings,
            &SecretString::new(JWT_SECRET),
        )
        .expect("state")
        .with_calls(CallServices {
            tree: tree.clone(),
            bus,
            providers: factory.clone(),
            recordings_dir: Some(recordings.clone()),
        });
        let app = router(state);
        tokio::spawn(async move {
            axum::serve(
                switchboard_api::no_delay(listener),
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });

        let tenant = store
            .tenants()
            .create(NewTenant {
                name: format!("Acme {}", uuid::Uuid::new_v4().simple()),
                notification_email: None,
                max_concurrent_calls: opts.max_concurrent_calls,
            })
            .await
            .expect("tenant");
        let agent = store
            .agents()
            .create(tenant.id, new_agent("Reception"))
            .await
            .expect("agent");
        store
            .phone_numbers()
            .create(
                tenant.id,
                NewPhoneNumber {
                    number: E164::parse(NUMBER).expect("number"),
                    agent_id: Some(agent.id),
                    label: "Main line".into(),
                },
            )
            .await
            .expect("number");
        store
            .credentials()
            .create(tenant.id, twilio_credential(AUTH_TOKEN))
            .await
            .expect("credential");
        Fx {
            addr,
            public_base_url,
            store,
            tree,
            factory,
            settings,
            tenant,
            agent,
            recordings,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/twilio/media", self.addr)
    }

    /// Every call row, all tenants.
    pub async fn calls(&self) -> Vec<Call> {
        self.store
            .calls()
            .list(
                Scope::All,
                &CallFilter::default(),
                PageRequest { limit: 100, offset: 0 },
            )
            .await
            .expect("list calls")
            .items
    }

    pub async fn call(&self, id: CallId) -> Call {
        self.store.calls().get(Scope::All, id).await.expect("call")
    }

    /// POSTs `pairs` as a form to `path`, signed for the public URL with `token`.
    pub async fn post_signed(&self, path: &str, pairs: &[(String, String)], token: &str) -> reqwest::Response {
        let signed_url = format!("{}{path}", self.public_base_url);
        let sig = signature::sign(token, &signed_url, pairs);
        self.post_form(path, pairs, Some(&sig)).await
    }

    pub async fn post_form(&self, path: &str, pairs: &[(String, String)], sig: Option<&str>) -> reqwest::Response {
        let body = serde_urlencoded::to_string(pairs).expect("form");
        let mut req = self
            .client
            .post(self.http(path))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some(sig) = sig {
            req = req.header("x-twilio-signature", sig);
        }
        req.send().await.expect("send")
    }

    /// The voice webhook for `call_sid` to [`NUMBER`], signed correctly.
    pub async fn ring(&self, call_sid: &str) -> reqwest::Response {
        self.post_signed("/twilio/voice", &voice_form(call_sid, NUMBER), AUTH_TOKEN)
            .await
    }

    /// Rings and returns `(call_id, token)` from the `<Connect><Stream>` answer.
    pub async fn ring_and_connect(&self, call_sid: &str) -> (CallId, String) {
        let res = self.ring(call_sid).await;
        assert_eq!(res.status(), 200);
        let twiml = res.text().await.expect("twiml");
        let call_id = parameter(&twiml, "call_id")
            .unwrap_or_else(|| panic!("no call_id in {twiml}"))
            .parse()
            .expect("call id");
        let token = parameter(&twiml, "token").expect("token");
        (call_id, token)
    }

    /// A stream token for `call` as the server would issue it at `now_unix`.
    pub fn token_at(&self, call: CallId, now_unix: i64) -> String {
        use hmac::Mac as _;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("hmac");
        mac.update(STREAM_TOKEN_LABEL);
        let key = mac.finalize().into_bytes();
        switchboard_api::twilio::token::StreamTokens::new(&key, self.settings.calls.stream_token_ttl)
            .expect("tokens")
            .issue(call, now_unix)
    }

    /// Polls until the registry holds `n` live calls (the server works
    /// concurrently with the test; no time limit is asserted).
    pub async fn wait_live(&self, n: usize) {
        for _ in 0..2_000 {
            if self.tree.registry().calls().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!(
            "registry never reached {n} live calls (has {})",
            self.tree.registry().calls().len()
        );
    }

    /// Polls until the call row records its answer (the socket writes it
    /// right after the actor is registered).
    pub async fn wait_answered(&self, id: CallId) -> Call {
        for _ in 0..2_000 {
            let call = self.call(id).await;
            if call.answered_at.is_some() {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("call {id} never answered");
    }

    /// Polls until the call row has ended.
    pub async fn wait_ended(&self, id: CallId) -> Call {
        for _ in 0..2_000 {
            let call = self.call(id).await;
            if call.ended_at.is_some() {
                return call;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("call {id} never ended");
    }
}

pub fn new_agent(name: &str) -> NewAgent {
    serde_json::from_value(serde_json::json!({
        "name": name,
        "greeting": "Hello, Acme, how can I help?",
    }))
    .expect("agent")
}

pub fn twilio_credential(token: &str) -> NewCredential {
    let mut secrets = BTreeMap::new();
    secrets.insert("auth_token".to_owned(), Secret::new(token));
    NewCredential {
        kind: CredentialKind::Twilio,
        label: "Twilio".into(),
        public: serde_json::json!({ "account_sid": ACCOUNT_SID }),
        secrets,
    }
}

pub fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

pub fn voice_form(call_sid: &str, to: &str) -> Vec<(String, String)> {
    pairs(&[
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", call_sid),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", CALLER),
        ("To", to),
    ])
}

pub fn status_form(call_sid: &str, status: &str, seq: u32) -> Vec<(String, String)> {
    pairs(&[
        ("AccountSid", ACCOUNT_SID),
        ("CallSid", call_sid),
        ("CallStatus", status),
        ("SequenceNumber", &seq.to_string()),
        ("Direction", "inbound"),
    ])
}

/// A fresh `CA...` call SID.
pub fn call_sid() -> String {
    format!("CA{}", uuid::Uuid::new_v4().simple())
}

/// The `value` of `<Parameter name="NAME" value="..."/>` in TwiML.
pub fn parameter(twiml: &str, name: &str) -> Option<String> {
    let needle = format!(r#"<Parameter name="{name}" value=""#);
    let start = twiml.find(&needle)? + needle.len();
    let end = twiml[start..].find('"')?;
    Some(twiml[start..start + end].to_owned())
}

pub fn tenant_of(fx: &Fx) -> TenantId {
    fx.tenant.id
}

// ------------------------------------------------------------ media socket

pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(fx: &Fx) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(fx.ws_url()).await.expect("ws connect");
    ws
}

pub async fn send(ws: &mut Ws, text: impl Into<String>) {
    ws.send(WsMessage::Text(text.into().into())).await.expect("ws send");
}

pub fn connected_frame() -> String {
    r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.to_owned()
}

pub fn start_frame(call_sid: &str, call_id: &str, token: &str) -> String {
    serde_json::json!({
        "event": "start",
        "sequenceNumber": "1",
        "streamSid": "MZ0123456789abcdef0123456789abcdef",
        "start": {
            "streamSid": "MZ0123456789abcdef0123456789abcdef",
            "accountSid": ACCOUNT_SID,
            "callSid": call_sid,
            "tracks": ["inbound"],
            "customParameters": {"call_id": call_id, "token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
        }
    })
    .to_string()
}

/// A `media` frame with `bytes` of μ-law silence (0xFF).
pub fn media_frame(seq: u32, bytes: usize) -> String {
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(vec![0xFFu8; bytes]);
    media_frame_raw(seq, &payload)
}

pub fn media_frame_raw(seq: u32, payload: &str) -> String {
    serde_json::json!({
        "event": "media",
        "sequenceNumber": (seq + 1).to_string(),
        "streamSid": "MZ0123456789abcdef0123456789abcdef",
        "media": {"track": "inbound", "chunk": seq.to_string(), "timestamp": (seq * 20).to_string(), "payload": payload}
    })
    .to_string()
}

pub fn stop_frame(call_sid: &str) -> String {
    serde_json::json!({
        "event": "stop",
        "sequenceNumber": "999",
        "streamSid": "MZ0123456789abcdef0123456789abcdef",
        "stop": {"accountSid": ACCOUNT_SID, "callSid": call_sid}
    })
    .to_string()
}

/// Reads until the server's close frame; returns it (panics on a clean EOF
/// without one). Text frames the server sends on the way are collected.
pub async fn read_close(ws: &mut Ws) -> (Option<CloseFrame>, Vec<String>) {
    let mut texts = Vec::new();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(WsMessage::Close(frame)) => return (frame, texts),
            Ok(WsMessage::Text(t)) => texts.push(t.to_string()),
            Ok(_) => {}
            Err(err) => panic!("socket error before a close frame: {err}"),
        }
    }
    panic!("socket ended without a close frame");
}

/// Close code and reason of the server's close frame.
pub async fn close_code(ws: &mut Ws) -> (u16, String) {
    let (frame, _) = read_close(ws).await;
    let frame = frame.expect("close frame with a code");
    (u16::from(frame.code), frame.reason.to_string())
}
