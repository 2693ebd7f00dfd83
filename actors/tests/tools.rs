//! The agent's tools (`CallTools`) through their `ToolHost` entry point,
//! against a real store (SQLite in a temp dir), an in-process bus and a local
//! axum server standing in for a tenant's backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};
use switchboard_actors::tools::{CallTools, Tool, ToolContext, ToolHttpClient, ToolSettings, WHATSAPP_OUTBOUND_QUEUE};
use switchboard_bus::Bus;
use switchboard_domain::{
    Appointment, CallDirection, CallId, CallStatus, Contact, E164, NewCall, NewTenant, PageRequest, TenantId,
};
use switchboard_providers::{AgentAction, ToolHost, ToolResult};
use switchboard_store::{AppointmentFilter, ContactFilter, Scope, Store};

const CALLER: &str = "+15551230000";

struct Fixture {
    store: Store,
    bus: Bus,
    tenant: TenantId,
    call: CallId,
    caller: E164,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("tools.db").display());
        let store = Store::connect(&url, 4, [9; 32]).await.expect("connect");
        store.migrate().await.expect("migrate");
        let tenant = new_tenant(&store, "Acme").await;
        let call = store
            .calls()
            .create(NewCall {
                tenant_id: tenant,
                agent_id: None,
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: CALLER.into(),
                to: "+15559990000".into(),
                status: CallStatus::InProgress,
            })
            .await
            .expect("call")
            .id;
        Self {
            store,
            bus: Bus::in_process(),
            tenant,
            call,
            caller: E164::parse(CALLER).expect("e164"),
            _dir: dir,
        }
    }

    fn tools(&self, enabled: &[&str], settings: Value) -> CallTools {
        self.tools_for(self.tenant, enabled, settings)
    }

    fn tools_for(&self, tenant: TenantId, enabled: &[&str], settings: Value) -> CallTools {
        CallTools::new(ToolContext {
            store: self.store.clone(),
            bus: self.bus.clone(),
            tenant_id: tenant,
            call_id: (tenant == self.tenant).then_some(self.call),
            conversation_id: None,
            contact_phone: Some(self.caller.clone()),
            agent_tools: enabled.iter().map(|s| s.to_string()).collect(),
            settings: ToolSettings::from_json(&settings).expect("settings"),
            http: ToolHttpClient::new().expect("http client"),
        })
    }

    async fn appointments(&self, tenant: TenantId) -> Vec<Appointment> {
        self.store
            .appointments()
            .list(
                Scope::Tenant(tenant),
                &AppointmentFilter::default(),
                PageRequest::default(),
            )
            .await
            .expect("list appointments")
            .items
    }

    async fn contacts(&self, tenant: TenantId) -> Vec<Contact> {
        self.store
            .contacts()
            .list(Scope::Tenant(tenant), &ContactFilter::default(), PageRequest::default())
            .await
            .expect("list contacts")
            .items
    }
}

async fn new_tenant(store: &Store, name: &str) -> TenantId {
    let new = NewTenant {
        name: name.into(),
        notification_email: None,
        max_concurrent_calls: 10,
    };
    store.tenants().create(new).await.expect("tenant").id
}

async fn call(tools: &CallTools, name: &str, args: Value) -> ToolResult {
    tools.call(name.into(), args.to_string()).await
}

fn code(result: &ToolResult) -> Option<&str> {
    result.content.pointer("/error/code").and_then(Value::as_str)
}

fn message(result: &ToolResult) -> &str {
    result
        .content
        .pointer("/error/message")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

const ALL: [&str; 7] = [
    "book_appointment",
    "find_contact",
    "create_or_update_contact",
    "transfer_call",
    "end_call",
    "send_whatsapp",
    "http_request",
];

#[tokio::test]
async fn specs_offer_only_enabled_tools_with_valid_schemas() {
    let f = Fixture::new().await;
    let tools = f.tools(&["end_call", "book_appointment", "no_such_tool"], json!({}));
    let names: Vec<String> = tools.specs().into_iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        ["book_appointment", "end_call"],
        "enabled tools only, in stable order"
    );

    let disabled = call(&tools, "transfer_call", json!({})).await;
    assert_eq!(code(&disabled), Some("unknown_tool"));
    assert_eq!(disabled.action, None);
    assert_eq!(code(&call(&tools, "rm_rf", json!({})).await), Some("unknown_tool"));

    let every = f.tools(&ALL, json!({}));
    let specs = every.specs();
    assert_eq!(specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ALL);
    for spec in specs {
        assert!(
            spec.name.len() <= 64
                && spec
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{}: OpenAI function names are [A-Za-z0-9_-]{{1,64}}",
            spec.name
        );
        assert!(!spec.description.is_empty(), "{}", spec.name);
        assert_eq!(Tool::from_name(&spec.name).map(Tool::name), Some(spec.name.as_str()));
        let p = &spec.parameters;
        assert_eq!(p["type"], "object", "{}", spec.name);
        assert_eq!(p["additionalProperties"], false, "{}", spec.name);
        let props = p["properties"].as_object().expect("properties object");
        for required in p["required"].as_array().expect("required array") {
            let r = required.as_str().expect("required names are strings");
            assert!(props.contains_key(r), "{}: required `{r}` is a property", spec.name);
        }
        for (key, prop) in props {
            assert!(prop.is_object(), "{}.{key} is a schema object", spec.name);
        }
    }
}

#[tokio::test]
async fn booking_writes_the_row_and_confirms_in_words() {
    let f = Fixture::new().await;
    let tools = f.tools(
        &["book_appointment"],
        json!({ "timezone": "-05:00", "appointment_minutes": 45 }),
    );
    let result = call(
        &tools,
        "book_appointment",
        json!({ "start": "2030-03-05 15:00", "title": "Haircut", "notes": "short" }),
    )
    .await;
    assert_eq!(code(&result), None, "{}", result.content);
    assert_eq!(result.action, None);
    assert_eq!(result.content["spoken"], "Tuesday, March 5 at 3:00 PM");
    assert_eq!(result.content["start"], "2030-03-05T15:00:00-05:00");
    assert_eq!(result.content["end"], "2030-03-05T15:45:00-05:00");

    let rows = f.appointments(f.tenant).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(result.content["appointment_id"], row.id.to_string());
    assert_eq!(row.starts_at.to_rfc3339(), "2030-03-05T20:00:00+00:00");
    assert_eq!(row.ends_at.to_rfc3339(), "2030-03-05T20:45:00+00:00");
    assert_eq!(row.title, "Haircut");
    assert_eq!(row.notes, "short");
    assert_eq!(row.call_id, Some(f.call));

    // The caller's contact was created by phone and the booking is theirs.
    let contacts = f.contacts(f.tenant).await;
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].phone.as_ref(), Some(&f.caller));
    assert_eq!(row.contact_id, Some(contacts[0].id));

    // A second booking of the same caller reuses that contact.
    let later = call(
        &tools,
        "book_appointment",
        json!({ "start": "2030-03-06T09:30:00Z", "duration_minutes": 15 }),
    )
    .await;
    assert_eq!(code(&later), None, "{}", later.content);
    assert_eq!(later.content["spoken"], "Wednesday, March 6 at 4:30 AM");
    assert_eq!(f.contacts(f.tenant).await.len(), 1);
    assert_eq!(f.appointments(f.tenant).await.len(), 2);
}

#[tokio::test]
async fn overlapping_booking_is_refused_and_the_store_is_unchanged() {
    let f = Fixture::new().await;
    let tools = f.tools(&["book_appointment"], json!({ "timezone": "-05:00" }));
    let first = call(&tools, "book_appointment", json!({ "start": "2030-03-05 15:00" })).await;
    assert_eq!(code(&first), None, "{}", first.content);
    let before_appointments = f.appointments(f.tenant).await;
    let before_contacts = f.contacts(f.tenant).await;

    // 15:15 local, given in UTC: overlaps 15:00-15:30.
    let clash = call(
        &tools,
        "book_appointment",
        json!({ "start": "2030-03-05T20:15:00Z", "duration_minutes": 60 }),
    )
    .await;
    assert_eq!(code(&clash), Some("slot_taken"), "{}", clash.content);
    assert!(
        message(&clash).contains("Tuesday, March 5 at 3:00 PM") && message(&clash).contains("3:30 PM"),
        "names the conflicting time: {}",
        message(&clash)
    );
    assert_eq!(clash.content["error"]["conflict_start"], "2030-03-05T15:00:00-05:00");
    assert_eq!(f.appointments(f.tenant).await, before_appointments);
    assert_eq!(f.contacts(f.tenant).await, before_contacts);

    // Touching is not overlapping: 15:30 is free.
    let adjacent = call(&tools, "book_appointment", json!({ "start": "2030-03-05 15:30" })).await;
    assert_eq!(code(&adjacent), None, "{}", adjacent.content);

    // Another tenant's calendar is its own.
    let other = new_tenant(&f.store, "Globex").await;
    let theirs = f.tools_for(other, &["book_appointment"], json!({ "timezone": "-05:00" }));
    let same_slot = call(&theirs, "book_appointment", json!({ "start": "2030-03-05 15:00" })).await;
    assert_eq!(code(&same_slot), None, "{}", same_slot.content);
    assert_eq!(f.appointments(f.tenant).await.len(), 2);
    assert_eq!(f.appointments(other).await.len(), 1);
}

#[tokio::test]
async fn invalid_arguments_name_the_field_and_write_nothing() {
    let f = Fixture::new().await;
    let tools = f.tools(&["book_appointment"], json!({}));
    let cases = [
        ("{}", "start"),
        (r#"{"start": "tomorrow at 3"}"#, "start"),
        (r#"{"start": "2030-02-30 10:00"}"#, "start"),
        (r#"{"start": "2001-01-01 10:00"}"#, "start"),
        (r#"{"start": 1893456000}"#, "start"),
        (r#"{"start": "2030-03-05 15:00", "colour": "red"}"#, "colour"),
        (
            r#"{"start": "2030-03-05 15:00", "duration_minutes": 0}"#,
            "duration_minutes",
        ),
        (
            r#"{"start": "2030-03-05 15:00", "duration_minutes": "30"}"#,
            "duration_minutes",
        ),
        (r#"{"start": "2030-03-05 15:00", "title": 7}"#, "title"),
        ("not json", "JSON"),
        ("[1, 2]", "object"),
    ];
    for (args, field) in cases {
        let result = tools.call("book_appointment".into(), args.into()).await;
        assert_eq!(code(&result), Some("invalid_arguments"), "{args}: {}", result.content);
        assert!(
            message(&result).contains(field),
            "{args}: `{}` names {field}",
            message(&result)
        );
    }
    assert!(f.appointments(f.tenant).await.is_empty());
    assert!(f.contacts(f.tenant).await.is_empty());
}

#[tokio::test]
async fn contacts_round_trip_within_the_tenant() {
    let f = Fixture::new().await;
    let tools = f.tools(&["find_contact", "create_or_update_contact"], json!({}));

    let missing = call(&tools, "find_contact", json!({})).await;
    assert_eq!(missing.content, json!({ "found": false }));

    let created = call(
        &tools,
        "create_or_update_contact",
        json!({ "name": "Ada Lovelace", "email": "ada@example.com", "notes": "prefers mornings" }),
    )
    .await;
    assert_eq!(code(&created), None, "{}", created.content);
    assert_eq!(created.content["created"], true);
    assert_eq!(created.content["contact"]["phone"], CALLER);
    let id = created.content["contact"]["id"].clone();

    for query in [
        json!({}),
        json!({ "phone": "+1 (555) 123-0000" }),
        json!({ "email": "ADA@example.com" }),
        json!({ "name": "lovelace" }),
    ] {
        let found = call(&tools, "find_contact", query.clone()).await;
        assert_eq!(found.content["found"], true, "{query}: {}", found.content);
        assert_eq!(found.content["contact"]["id"], id, "{query}");
        assert_eq!(found.content["contact"]["name"], "Ada Lovelace", "{query}");
    }
    let wrong_pair = call(&tools, "find_contact", json!({ "phone": CALLER, "name": "Grace" })).await;
    assert_eq!(wrong_pair.content["found"], false, "every given field must match");

    let updated = call(
        &tools,
        "create_or_update_contact",
        json!({ "name": "Ada King", "notes": "VIP" }),
    )
    .await;
    assert_eq!(code(&updated), None, "{}", updated.content);
    assert_eq!(updated.content["created"], false);
    assert_eq!(updated.content["contact"]["id"], id);
    let stored = f.contacts(f.tenant).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].name, "Ada King");
    assert_eq!(stored[0].email.as_deref(), Some("ada@example.com"));
    assert_eq!(stored[0].notes, "prefers mornings\nVIP");

    // Another tenant with the same caller sees none of it.
    let other = new_tenant(&f.store, "Globex").await;
    let theirs = f.tools_for(other, &["find_contact"], json!({}));
    for query in [
        json!({}),
        json!({ "name": "Ada" }),
        json!({ "email": "ada@example.com" }),
    ] {
        let found = call(&theirs, "find_contact", query.clone()).await;
        assert_eq!(found.content, json!({ "found": false }), "{query}");
    }

    let bad_email = call(&tools, "create_or_update_contact", json!({ "email": "not-an-email" })).await;
    assert_eq!(code(&bad_email), Some("invalid_arguments"));
    assert!(message(&bad_email).contains("email"));
    let bad_phone = call(&tools, "find_contact", json!({ "phone": "5551230000" })).await;
    assert_eq!(code(&bad_phone), Some("invalid_arguments"));
    assert!(message(&bad_phone).contains("phone"));
    assert_eq!(f.contacts(f.tenant).await, stored);
}

#[tokio::test]
async fn transfer_and_end_call_return_their_actions() {
    let f = Fixture::new().await;
    let desk = E164::parse("+15550001111").expect("e164");
    let sales = E164::parse("+15550002222").expect("e164");
    let tools = f.tools(
        &["transfer_call", "end_call"],
        json!({ "transfer_number": desk.as_str(), "transfer_numbers": [sales.as_str()] }),
    );

    let default = call(&tools, "transfer_call", json!({ "reason": "wants a human" })).await;
    assert_eq!(code(&default), None, "{}", default.content);
    assert_eq!(default.content["transferring_to"], desk.as_str());
    assert_eq!(default.action, Some(AgentAction::Transfer(desk.clone())));

    let named = call(&tools, "transfer_call", json!({ "number": "+1 555 000 2222" })).await;
    assert_eq!(named.action, Some(AgentAction::Transfer(sales)));

    let premium = call(&tools, "transfer_call", json!({ "number": "+19005550000" })).await;
    assert_eq!(code(&premium), Some("transfer_not_allowed"));
    assert_eq!(premium.action, None);

    let unconfigured = f.tools(&["transfer_call"], json!({}));
    let nowhere = call(&unconfigured, "transfer_call", json!({})).await;
    assert_eq!(code(&nowhere), Some("no_transfer_number"));
    assert_eq!(nowhere.action, None);

    let end = call(&tools, "end_call", json!({ "reason": "caller said goodbye" })).await;
    assert_eq!(code(&end), None, "{}", end.content);
    assert_eq!(end.action, Some(AgentAction::Hangup));
    let bad = call(&tools, "end_call", json!({ "why": "x" })).await;
    assert_eq!(code(&bad), Some("invalid_arguments"));
    assert_eq!(bad.action, None);
}

#[tokio::test]
async fn send_whatsapp_enqueues_a_job() {
    let f = Fixture::new().await;
    let tools = f.tools(&["send_whatsapp"], json!({}));

    let empty = call(&tools, "send_whatsapp", json!({ "text": "   " })).await;
    assert_eq!(code(&empty), Some("invalid_arguments"));
    assert!(message(&empty).contains("text"));
    let nothing = f
        .bus
        .reserve(WHATSAPP_OUTBOUND_QUEUE, "test", Duration::ZERO)
        .await
        .expect("reserve");
    assert!(nothing.is_none(), "a refused message is not queued");

    let result = call(&tools, "send_whatsapp", json!({ "text": "See you Tuesday at 3 PM." })).await;
    assert_eq!(code(&result), None, "{}", result.content);
    assert_eq!(result.content["queued"], true);
    assert_eq!(result.content["note"], "sent once WhatsApp is configured");

    let job = f
        .bus
        .reserve(WHATSAPP_OUTBOUND_QUEUE, "test", Duration::from_secs(30))
        .await
        .expect("reserve")
        .expect("a job was queued");
    assert_eq!(result.content["job_id"], job.id.to_string());
    assert_eq!(
        job.payload,
        json!({
            "tenant_id": f.tenant.to_string(),
            "to": CALLER,
            "text": "See you Tuesday at 3 PM.",
            "call_id": f.call.to_string(),
        })
    );
    f.bus.ack(&job).await.expect("ack");

    let elsewhere = call(&tools, "send_whatsapp", json!({ "text": "hi", "to": "+447700900123" })).await;
    assert_eq!(code(&elsewhere), None, "{}", elsewhere.content);
    let job = f
        .bus
        .reserve(WHATSAPP_OUTBOUND_QUEUE, "test", Duration::from_secs(30))
        .await
        .expect("reserve")
        .expect("second job");
    assert_eq!(job.payload["to"], "+447700900123");
}

/// A tenant backend on 127.0.0.1:0; counts hits on `/orders/{id}`.
async fn backend() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let away = format!("http://localhost:{port}/orders/1");
    let app = Router::new()
        .route(
            "/orders/{id}",
            get(
                |State(hits): State<Arc<AtomicUsize>>,
                 Path(id): Path<String>,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({ "id": id, "expand": q.get("expand") }))
                },
            ),
        )
        .route(
            "/echo",
            post(|axum::Json(body): axum::Json<Value>| async move { axum::Json(json!({ "got": body })) }),
        )
        .route("/text", get(|| async { "plain ok" }))
        .route("/big", get(|| async { "x".repeat(100 * 1024) }))
        .route(
            "/big-stream",
            get(|| async {
                let chunks = (0..100).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 1024])));
                Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route("/slow", get(std::future::pending::<&'static str>))
        .route(
            "/redirect-home",
            get(|| async { (StatusCode::FOUND, [(header::LOCATION, "/orders/7")]) }),
        )
        .route(
            "/redirect-away",
            get(move || {
                let away = away.clone();
                async move { (StatusCode::FOUND, [(header::LOCATION, away)]) }
            }),
        )
        .with_state(Arc::clone(&hits));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

#[tokio::test]
async fn http_request_reaches_only_allowed_hosts_within_limits() {
    let f = Fixture::new().await;
    let (port, hits) = backend().await;
    let settings = json!({ "http_request": {
        "allowed_hosts": ["127.0.0.1"],
        "base_url": format!("http://127.0.0.1:{port}"),
        "max_response_bytes": 4096,
        // Generous: only the `impatient` tools below are about timing out.
        "timeout_ms": 30_000,
    }});
    let tools = f.tools(&["http_request"], settings);

    let order = call(
        &tools,
        "http_request",
        json!({ "path": "/orders/42", "query": { "expand": "items" } }),
    )
    .await;
    assert_eq!(code(&order), None, "{}", order.content);
    assert_eq!(
        order.content,
        json!({ "status": 200, "body": { "id": "42", "expand": "items" } })
    );

    let echo = call(
        &tools,
        "http_request",
        json!({ "path": "/echo", "method": "POST", "body": { "a": [1, 2] } }),
    )
    .await;
    assert_eq!(
        echo.content,
        json!({ "status": 200, "body": { "got": { "a": [1, 2] } } })
    );

    let text = call(&tools, "http_request", json!({ "path": "/text" })).await;
    assert_eq!(text.content, json!({ "status": 200, "body": "plain ok" }));

    let missing = call(&tools, "http_request", json!({ "path": "/nope" })).await;
    assert_eq!(missing.content["status"], 404);

    let home = call(&tools, "http_request", json!({ "path": "/redirect-home" })).await;
    assert_eq!(home.content["body"]["id"], "7", "{}", home.content);

    let hits_before = hits.load(Ordering::SeqCst);
    // `localhost` is this very server, but not an allowed host.
    let other = call(
        &tools,
        "http_request",
        json!({ "path": format!("http://localhost:{port}/orders/1") }),
    )
    .await;
    assert_eq!(code(&other), Some("host_not_allowed"), "{}", other.content);
    let away = call(&tools, "http_request", json!({ "path": "/redirect-away" })).await;
    assert_eq!(code(&away), Some("host_not_allowed"), "{}", away.content);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        hits_before,
        "refused hosts are never contacted"
    );

    for path in ["/big", "/big-stream"] {
        let big = call(&tools, "http_request", json!({ "path": path })).await;
        assert_eq!(code(&big), Some("response_too_large"), "{path}: {}", big.content);
    }

    let get_with_body = call(
        &tools,
        "http_request",
        json!({ "path": "/orders/1", "body": { "x": 1 } }),
    )
    .await;
    assert_eq!(code(&get_with_body), Some("invalid_arguments"));
    let trace = call(
        &tools,
        "http_request",
        json!({ "path": "/orders/1", "method": "TRACE" }),
    )
    .await;
    assert_eq!(code(&trace), Some("invalid_arguments"));
    assert!(message(&trace).contains("method"));

    let impatient = f.tools(
        &["http_request"],
        json!({ "http_request": {
            "allowed_hosts": [format!("127.0.0.1:{port}")],
            "base_url": format!("http://127.0.0.1:{port}"),
            "timeout_ms": 200,
        }}),
    );
    let slow = call(&impatient, "http_request", json!({ "path": "/slow" })).await;
    assert_eq!(code(&slow), Some("timeout"), "{}", slow.content);

    let locked = f.tools(&["http_request"], json!({}));
    let refused = call(
        &locked,
        "http_request",
        json!({ "path": format!("http://127.0.0.1:{port}/orders/1") }),
    )
    .await;
    assert_eq!(code(&refused), Some("host_not_allowed"));
}

#[test]
fn settings_are_read_from_the_agent_and_checked() {
    let defaults = ToolSettings::from_agent_settings(&json!({ "rules": [] })).expect("defaults");
    assert_eq!(defaults, ToolSettings::default());
    assert_eq!(defaults.appointment_minutes, 30);
    assert_eq!(defaults.http_request.timeout, Duration::from_millis(3_000));
    assert_eq!(defaults.http_request.max_response_bytes, 64 * 1024);

    let s = ToolSettings::from_agent_settings(&json!({ "tools": {
        "transfer_number": "+15550001111",
        "appointment_minutes": 20,
        "timezone": "+01:00",
        "http_request": { "allowed_hosts": ["api.example.com"], "method": "post", "timeout_ms": 500 },
    }}))
    .expect("settings");
    assert_eq!(s.appointment_minutes, 20);
    assert_eq!(s.timezone.local_minus_utc(), 3_600);
    assert_eq!(s.http_request.method, reqwest::Method::POST);
    assert_eq!(s.http_request.timeout, Duration::from_millis(500));

    for bad in [
        json!({ "transfer_number": "5550001111" }),
        json!({ "timezone": "Europe/Paris" }),
        json!({ "appointment_minutes": 0 }),
        json!({ "http_request": { "allowed_hosts": ["https://x.test/"] } }),
        json!({ "http_request": { "base_url": "ftp://x.test" } }),
        json!({ "surprise": true }),
    ] {
        assert!(ToolSettings::from_json(&bad).is_err(), "{bad}");
    }
}
