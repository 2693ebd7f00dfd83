//! The agent's tools over the store, the bus and the carrier.
//!
//! [`CallTools`] is the [`ToolHost`] of one call (or conversation): it is
//! built per call from a [`ToolContext`] that names the tenant, the call, the
//! caller's number and the agent's enable list, and offers exactly the enabled
//! tools of [`Tool::ALL`], in that order.
//!
//! Guarantees:
//! - A tool call never panics and never fails the turn: every failure is a
//!   [`ToolResult::error`] with a stable `code` (`unknown_tool`,
//!   `invalid_arguments`, `slot_taken`, `no_transfer_number`,
//!   `transfer_not_allowed`, `host_not_allowed`, `response_too_large`,
//!   `timeout`, `http_failed`, `too_many_redirects`, `not_configured`,
//!   `store_failed`, `queue_failed`) and a message for the model. Internal
//!   errors are logged, not shown to the model.
//! - Arguments are checked against the tool's own JSON schema first (unknown
//!   fields, missing fields and wrong types are `invalid_arguments` naming the
//!   field), then decoded into `deny_unknown_fields` structs and value-checked.
//! - Every store read and write is scoped to the context's tenant.
//! - `book_appointment` never double-books: it looks for an overlapping
//!   scheduled appointment first (to name it in `slot_taken`), and the store's
//!   transactional overlap check refuses a booking that races it.
//! - `http_request` only reaches `allowed_hosts`, never follows a redirect to
//!   another host (redirects are followed by hand, at most
//!   [`MAX_REDIRECTS`], each re-checked), is bounded by the configured timeout
//!   as a whole and reads at most `max_response_bytes` of body. It is never
//!   retried: the request may not be idempotent.
//! - `transfer_call` and `end_call` change nothing themselves: they return an
//!   [`AgentAction`] that the call actor performs once the reply was heard.
//! - Every call is logged in a `tool_call` span carrying the tenant, call and
//!   conversation IDs; argument values are not logged.
//!
//! # Settings (`agent.settings.tools`)
//! ```json
//! {
//!   "transfer_number": "+15551230000",
//!   "transfer_numbers": ["+15551230001"],
//!   "appointment_minutes": 30,
//!   "timezone": "-05:00",
//!   "http_request": {
//!     "allowed_hosts": ["api.example.com", "127.0.0.1:8080"],
//!     "timeout_ms": 3000,
//!     "max_response_bytes": 65536,
//!     "method": "GET",
//!     "base_url": "https://api.example.com/v1"
//!   }
//! }
//! ```
//! - `transfer_number`: where `transfer_call` goes when the model names no
//!   number. A number the model names must be `transfer_number` or one of
//!   `transfer_numbers` (a caller must not be able to talk the agent into
//!   dialling an arbitrary, possibly premium-rate, number).
//! - `timezone`: `UTC` (default) or a fixed offset (`+02:00`, `UTC-05:00`).
//!   IANA zone names are not supported: that needs a time-zone database.
//! - `http_request.allowed_hosts`: `host` (any port) or `host:port`; empty
//!   (the default) refuses every request.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, NaiveDateTime, Offset, SecondsFormat, TimeZone, Utc};
use futures::FutureExt;
use futures::future::BoxFuture;
use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use switchboard_bus::Bus;
use switchboard_domain::{
    AppointmentStatus, CallId, Contact, ContactStatus, ContactUpdate, ConversationId, E164, NewAppointment, NewContact,
    PageRequest, TenantId, Timestamp,
};
use switchboard_providers::{AgentAction, ToolHost, ToolResult, ToolSpec};
use switchboard_store::{AppointmentFilter, ContactFilter, Scope, Store, StoreError};
use tracing::Instrument;

/// The bus queue `send_whatsapp` enqueues on.
pub const WHATSAPP_OUTBOUND_QUEUE: &str = "whatsapp_outbound";
/// Redirects `http_request` follows (within the allowed hosts) before giving up.
pub const MAX_REDIRECTS: usize = 3;

/// Raw argument text accepted from the model.
const MAX_ARGUMENT_BYTES: usize = 32 * 1024;
/// Serialized `http_request` body sent to the tenant's backend.
const MAX_REQUEST_BODY_BYTES: usize = 64 * 1024;
const MAX_APPOINTMENT_MINUTES: i64 = 12 * 60;
const MAX_TITLE_CHARS: usize = 200;
const MAX_NOTES_CHARS: usize = 2_000;
const MAX_NAME_CHARS: usize = 200;
const MAX_EMAIL_CHARS: usize = 254;
const MAX_REASON_CHARS: usize = 500;
/// WhatsApp's own limit for a text message body.
const MAX_WHATSAPP_CHARS: usize = 4_096;
const MAX_PATH_CHARS: usize = 2_048;
/// Candidates read when looking a contact up by email or name.
const CONTACT_SEARCH_LIMIT: u32 = 50;
const DEFAULT_TITLE: &str = "Appointment";

type Outcome = Result<ToolResult, ToolResult>;

// ---------------------------------------------------------------- settings

/// Why `settings.tools` could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool settings: {0}")]
pub struct ToolSettingsError(String);

/// Settings of the tools, from the agent's `settings.tools` object (see the
/// module docs for the keys).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSettings {
    /// Default target of `transfer_call`.
    pub transfer_number: Option<E164>,
    /// Further numbers the model may name in `transfer_call`.
    pub transfer_numbers: Vec<E164>,
    pub http_request: HttpToolSettings,
    /// Default appointment length (1..=720).
    pub appointment_minutes: u32,
    /// How times without an offset are read, and how times are spoken.
    pub timezone: FixedOffset,
}

/// Settings of `http_request`.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpToolSettings {
    /// Hosts requests may go to; empty refuses every request.
    pub allowed_hosts: Vec<AllowedHost>,
    /// Bound on the whole request, redirects and body included (default 3 s).
    pub timeout: Duration,
    /// Largest response body read (default 64 KiB).
    pub max_response_bytes: usize,
    /// Method when the model names none (default GET).
    pub method: Method,
    /// Prefix of relative `path`s.
    pub base_url: Option<Url>,
}

/// One entry of `allowed_hosts`: a host name or IP, optionally with a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// Lower-case host as `Url::host_str` spells it (IPv6 in brackets).
    pub host: String,
    /// `None` allows every port.
    pub port: Option<u16>,
}

impl AllowedHost {
    /// Parses `host` or `host:port`.
    pub fn parse(entry: &str) -> Result<Self, ToolSettingsError> {
        let bad = || {
            ToolSettingsError(format!(
                "http_request.allowed_hosts: `{entry}` is not a host or host:port"
            ))
        };
        let entry_trimmed = entry.trim();
        if entry_trimmed.is_empty() || entry_trimmed.contains(['/', '@', '?', '#']) {
            return Err(bad());
        }
        let url = Url::parse(&format!("http://{entry_trimmed}/")).map_err(|_| bad())?;
        let host = url.host_str().ok_or_else(bad)?.to_ascii_lowercase();
        Ok(Self { host, port: url.port() })
    }

    fn allows(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        host.eq_ignore_ascii_case(&self.host) && self.port.is_none_or(|p| url.port_or_known_default() == Some(p))
    }
}

impl Default for HttpToolSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            timeout: Duration::from_millis(3_000),
            max_response_bytes: 64 * 1024,
            method: Method::GET,
            base_url: None,
        }
    }
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            transfer_number: None,
            transfer_numbers: Vec::new(),
            http_request: HttpToolSettings::default(),
            appointment_minutes: 30,
            timezone: utc_offset(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    transfer_number: Option<String>,
    #[serde(default)]
    transfer_numbers: Vec<String>,
    #[serde(default)]
    http_request: Option<RawHttpSettings>,
    #[serde(default)]
    appointment_minutes: Option<i64>,
    #[serde(default)]
    timezone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpSettings {
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    timeout_ms: Option<i64>,
    #[serde(default)]
    max_response_bytes: Option<i64>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    base_url: Option<String>,
}

impl ToolSettings {
    /// Reads `settings.tools` of an agent's settings object; absent means defaults.
    pub fn from_agent_settings(settings: &Value) -> Result<Self, ToolSettingsError> {
        match settings.get("tools") {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(tools) => Self::from_json(tools),
        }
    }

    /// Parses the `settings.tools` object itself.
    pub fn from_json(value: &Value) -> Result<Self, ToolSettingsError> {
        let raw: RawSettings = serde_json::from_value(value.clone()).map_err(|e| ToolSettingsError(e.to_string()))?;
        let number = |field: &str, s: &str| {
            E164::parse(s).map_err(|e| ToolSettingsError(format!("{field}: `{s}` is not an E.164 number: {e}")))
        };
        let mut out = Self::default();
        if let Some(n) = raw.transfer_number.as_deref() {
            out.transfer_number = Some(number("transfer_number", n)?);
        }
        out.transfer_numbers = raw
            .transfer_numbers
            .iter()
            .map(|n| number("transfer_numbers", n))
            .collect::<Result<_, _>>()?;
        if let Some(m) = raw.appointment_minutes {
            if !(1..=MAX_APPOINTMENT_MINUTES).contains(&m) {
                return Err(ToolSettingsError(format!(
                    "appointment_minutes must be between 1 and {MAX_APPOINTMENT_MINUTES}"
                )));
            }
            out.appointment_minutes = m as u32;
        }
        if let Some(tz) = raw.timezone.as_deref() {
            out.timezone = parse_timezone(tz).ok_or_else(|| {
                ToolSettingsError(format!(
                    "timezone: `{tz}` is not UTC or a fixed offset like +02:00 (IANA names are not supported)"
                ))
            })?;
        }
        if let Some(http) = raw.http_request {
            let h = &mut out.http_request;
            h.allowed_hosts = http
                .allowed_hosts
                .iter()
                .map(|e| AllowedHost::parse(e))
                .collect::<Result<_, _>>()?;
            if let Some(ms) = http.timeout_ms {
                if !(1..=60_000).contains(&ms) {
                    return Err(ToolSettingsError(
                        "http_request.timeout_ms must be between 1 and 60000".into(),
                    ));
                }
                h.timeout = Duration::from_millis(ms as u64);
            }
            if let Some(max) = http.max_response_bytes {
                if !(1..=10 * 1024 * 1024).contains(&max) {
                    return Err(ToolSettingsError(
                        "http_request.max_response_bytes must be between 1 and 10485760".into(),
                    ));
                }
                h.max_response_bytes = max as usize;
            }
            if let Some(m) = http.method.as_deref() {
                h.method = parse_method(m).ok_or_else(|| {
                    ToolSettingsError("http_request.method must be GET, POST, PUT, PATCH or DELETE".into())
                })?;
            }
            if let Some(base) = http.base_url.as_deref() {
                let url = Url::parse(base)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
                    .ok_or_else(|| {
                        ToolSettingsError(format!("http_request.base_url: `{base}` is not an http(s) URL"))
                    })?;
                h.base_url = Some(url);
            }
        }
        Ok(out)
    }
}

fn utc_offset() -> FixedOffset {
    Utc.fix()
}

/// `UTC`, `Z`, `GMT`, or `[UTC|GMT]±HH[:MM]`.
fn parse_timezone(s: &str) -> Option<FixedOffset> {
    let upper = s.trim().to_ascii_uppercase();
    if matches!(upper.as_str(), "UTC" | "Z" | "GMT" | "ETC/UTC") {
        return Some(utc_offset());
    }
    let rest = upper
        .strip_prefix("UTC")
        .or_else(|| upper.strip_prefix("GMT"))
        .unwrap_or(&upper);
    let (sign, digits) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h, m),
        None if digits.len() == 4 => digits.split_at(2),
        None => (digits, "0"),
    };
    let all_digits = |t: &str| !t.is_empty() && t.len() <= 2 && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(h) || !all_digits(m) {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 14 || m > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

fn parse_method(s: &str) -> Option<Method> {
    match s.trim().to_ascii_uppercase().as_str() {
        "GET" => Some(Method::GET),
        "POST" => Some(Method::POST),
        "PUT" => Some(Method::PUT),
        "PATCH" => Some(Method::PATCH),
        "DELETE" => Some(Method::DELETE),
        _ => None,
    }
}

// ---------------------------------------------------------------- context

/// An HTTP client for `http_request`, built so that it never follows
/// redirects by itself (the tool re-checks every hop against the allow list).
/// Cheap to clone; build one per process and share it.
#[derive(Clone, Debug)]
pub struct ToolHttpClient(reqwest::Client);

impl ToolHttpClient {
    pub fn new() -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("switchboard-tools/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self(client))
    }
}

/// Everything the tools of one call need.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub store: Store,
    pub bus: Bus,
    pub tenant_id: TenantId,
    /// The call the tools serve (stored on booked appointments).
    pub call_id: Option<CallId>,
    /// The WhatsApp conversation the tools serve, when not a call.
    pub conversation_id: Option<ConversationId>,
    /// The caller's number: the default contact of every tool.
    pub contact_phone: Option<E164>,
    /// Tool names the agent enables (`Agent::tools`); only those are offered.
    pub agent_tools: Vec<String>,
    pub settings: ToolSettings,
    pub http: ToolHttpClient,
}

/// The tools this module provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    BookAppointment,
    FindContact,
    CreateOrUpdateContact,
    TransferCall,
    EndCall,
    SendWhatsapp,
    HttpRequest,
}

impl Tool {
    /// Every tool, in the order they are offered.
    pub const ALL: [Tool; 7] = [
        Tool::BookAppointment,
        Tool::FindContact,
        Tool::CreateOrUpdateContact,
        Tool::TransferCall,
        Tool::EndCall,
        Tool::SendWhatsapp,
        Tool::HttpRequest,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::BookAppointment => "book_appointment",
            Tool::FindContact => "find_contact",
            Tool::CreateOrUpdateContact => "create_or_update_contact",
            Tool::TransferCall => "transfer_call",
            Tool::EndCall => "end_call",
            Tool::SendWhatsapp => "send_whatsapp",
            Tool::HttpRequest => "http_request",
        }
    }

    pub fn from_name(name: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == name)
    }

    fn description(self, settings: &ToolSettings) -> String {
        match self {
            Tool::BookAppointment => format!(
                "Book an appointment for the caller. Refuses a time that overlaps another appointment \
                 (error slot_taken). Times without an offset are in the business's time zone ({}). \
                 The result's `spoken` field is the confirmed time in words.",
                tz_label(settings.timezone)
            ),
            Tool::FindContact => "Look up a contact by phone, email or name; defaults to the caller's phone.".into(),
            Tool::CreateOrUpdateContact => "Create or update the contact with this phone number (default: the \
                 caller's). Notes are appended to the existing notes."
                .into(),
            Tool::TransferCall => "Transfer the caller to a person after your reply has been spoken. Without \
                 `number`, transfers to the business's default number."
                .into(),
            Tool::EndCall => "Hang up after your reply (say goodbye in it) has been spoken.".into(),
            Tool::SendWhatsapp => "Send a WhatsApp text message, by default to the caller.".into(),
            Tool::HttpRequest => "Call the business's own backend API. Returns the HTTP status and the body \
                 (JSON when it parses, otherwise text)."
                .into(),
        }
    }

    fn parameters(self) -> Value {
        let string = |description: &str| json!({ "type": "string", "description": description });
        let schema = |properties: Value, required: &[&str]| {
            json!({
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": false,
            })
        };
        match self {
            Tool::BookAppointment => schema(
                json!({
                    "start": string("Start: RFC 3339 (2030-03-05T15:00:00-05:00) or \"YYYY-MM-DD HH:MM\" in local time."),
                    "duration_minutes": {
                        "type": "integer", "minimum": 1, "maximum": MAX_APPOINTMENT_MINUTES,
                        "description": "Length in minutes; defaults to the usual appointment length.",
                    },
                    "title": { "type": "string", "maxLength": MAX_TITLE_CHARS },
                    "notes": { "type": "string", "maxLength": MAX_NOTES_CHARS },
                }),
                &["start"],
            ),
            Tool::FindContact => schema(
                json!({
                    "phone": string("E.164 number, e.g. +15551230000."),
                    "email": string("Exact email address."),
                    "name": string("Name or part of it."),
                }),
                &[],
            ),
            Tool::CreateOrUpdateContact => schema(
                json!({
                    "name": { "type": "string", "maxLength": MAX_NAME_CHARS },
                    "email": { "type": "string", "maxLength": MAX_EMAIL_CHARS },
                    "phone": string("E.164 number; defaults to the caller's."),
                    "notes": { "type": "string", "maxLength": MAX_NOTES_CHARS },
                }),
                &[],
            ),
            Tool::TransferCall => schema(
                json!({
                    "number": string("E.164 number to transfer to; defaults to the business's number."),
                    "reason": { "type": "string", "maxLength": MAX_REASON_CHARS },
                }),
                &[],
            ),
            Tool::EndCall => schema(
                json!({ "reason": { "type": "string", "maxLength": MAX_REASON_CHARS } }),
                &[],
            ),
            Tool::SendWhatsapp => schema(
                json!({
                    "text": { "type": "string", "maxLength": MAX_WHATSAPP_CHARS },
                    "to": string("E.164 number; defaults to the caller's."),
                }),
                &["text"],
            ),
            Tool::HttpRequest => schema(
                json!({
                    "path": string("Path below the backend's base URL (e.g. /orders/42), or a full URL."),
                    "method": { "type": "string", "enum": ["GET", "POST", "PUT", "PATCH", "DELETE"] },
                    "query": {
                        "type": "object",
                        "additionalProperties": { "type": ["string", "number", "boolean"] },
                        "description": "Query parameters.",
                    },
                    "body": { "description": "JSON body (not with GET)." },
                }),
                &["path"],
            ),
        }
    }
}

// ---------------------------------------------------------------- host

/// The [`ToolHost`] of one call.
#[derive(Clone)]
pub struct CallTools {
    inner: Arc<Inner>,
}

struct Inner {
    ctx: ToolContext,
    enabled: Vec<Tool>,
}

impl fmt::Debug for CallTools {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallTools")
            .field("tenant_id", &self.inner.ctx.tenant_id)
            .field("call_id", &self.inner.ctx.call_id)
            .field("enabled", &self.inner.enabled)
            .finish_non_exhaustive()
    }
}

impl CallTools {
    /// The tools of one call; names in `agent_tools` that are not tools are
    /// logged and ignored.
    pub fn new(ctx: ToolContext) -> Self {
        for name in &ctx.agent_tools {
            if Tool::from_name(name.trim()).is_none() {
                tracing::warn!(tenant_id = %ctx.tenant_id, tool = %name, "agent enables an unknown tool; ignored");
            }
        }
        let enabled = Tool::ALL
            .into_iter()
            .filter(|t| ctx.agent_tools.iter().any(|n| n.trim() == t.name()))
            .collect();
        Self {
            inner: Arc::new(Inner { ctx, enabled }),
        }
    }

    /// The enabled tools, in offering order.
    pub fn enabled(&self) -> &[Tool] {
        &self.inner.enabled
    }
}

impl ToolHost for CallTools {
    fn specs(&self) -> Vec<ToolSpec> {
        let settings = &self.inner.ctx.settings;
        self.inner
            .enabled
            .iter()
            .map(|t| ToolSpec {
                name: t.name().to_owned(),
                description: t.description(settings),
                parameters: t.parameters(),
            })
            .collect()
    }

    fn call(&self, name: String, arguments: String) -> BoxFuture<'static, ToolResult> {
        let inner = Arc::clone(&self.inner);
        let ctx = &inner.ctx;
        // The name comes from the model: bound what reaches the logs.
        let logged_name: String = name.chars().take(64).collect();
        let span = tracing::info_span!(
            "tool_call",
            tool = %logged_name,
            tenant_id = %ctx.tenant_id,
            call_id = %display_opt(ctx.call_id),
            conversation_id = %display_opt(ctx.conversation_id),
        );
        async move {
            let result = match Tool::from_name(&name).filter(|t| inner.enabled.contains(t)) {
                None => ToolResult::error(
                    "unknown_tool",
                    format!("no tool named `{logged_name}` is available to this agent"),
                ),
                Some(tool) => inner.run(tool, &arguments).await.unwrap_or_else(|e| e),
            };
            match result.content.pointer("/error/code").and_then(Value::as_str) {
                Some(code) => tracing::warn!(code, "tool call refused or failed"),
                None => tracing::info!(action = ?result.action, "tool call done"),
            }
            result
        }
        .instrument(span)
        .boxed()
    }
}

fn display_opt<T: fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

// ---------------------------------------------------------------- arguments

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BookArgs {
    start: String,
    #[serde(default)]
    duration_minutes: Option<i64>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindContactArgs {
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpsertContactArgs {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    phone: Option<String>,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferArgs {
    #[serde(default)]
    number: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndCallArgs {
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WhatsappArgs {
    text: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpArgs {
    path: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    query: Option<Map<String, Value>>,
    #[serde(default)]
    body: Option<Value>,
}

fn invalid(message: impl Into<String>) -> ToolResult {
    ToolResult::error("invalid_arguments", message)
}

/// Parses the model's argument text and checks it against `schema`: the
/// object shape, unknown and missing fields and each field's JSON type, so
/// that every complaint names its field. `null` stands for an absent field.
fn parse_args<T: DeserializeOwned>(raw: &str, schema: &Value) -> Result<T, ToolResult> {
    if raw.len() > MAX_ARGUMENT_BYTES {
        return Err(invalid(format!("arguments are longer than {MAX_ARGUMENT_BYTES} bytes")));
    }
    let text = raw.trim();
    // Models send "" for tools called without arguments.
    let value: Value = if text.is_empty() {
        Value::Object(Map::new())
    } else {
        serde_json::from_str(text).map_err(|e| invalid(format!("arguments are not valid JSON: {e}")))?
    };
    let Value::Object(args) = value else {
        return Err(invalid("arguments must be a JSON object"));
    };
    let empty = Map::new();
    let properties = schema.get("properties").and_then(Value::as_object).unwrap_or(&empty);
    for (key, value) in &args {
        let Some(property) = properties.get(key) else {
            let known: Vec<&str> = properties.keys().map(String::as_str).collect();
            return Err(invalid(format!(
                "unknown field `{key}`, expected one of: {}",
                known.join(", ")
            )));
        };
        if value.is_null() {
            continue;
        }
        if let Some(ty) = property.get("type").and_then(Value::as_str)
            && !json_type_matches(ty, value)
        {
            return Err(invalid(format!("field `{key}` must be of type {ty}")));
        }
    }
    for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = required.as_str()
            && args.get(name).is_none_or(Value::is_null)
        {
            return Err(invalid(format!("missing field `{name}`")));
        }
    }
    serde_json::from_value(Value::Object(args)).map_err(|e| invalid(e.to_string()))
}

fn json_type_matches(ty: &str, value: &Value) -> bool {
    match ty {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        _ => true,
    }
}

/// Trims an optional text field: empty means absent; too long is refused.
fn clean_text(field: &str, value: Option<String>, max_chars: usize) -> Result<Option<String>, ToolResult> {
    let Some(value) = value else {
        return Ok(None);
    };
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    if trimmed.chars().count() > max_chars {
        return Err(invalid(format!(
            "field `{field}` is longer than {max_chars} characters"
        )));
    }
    Ok(Some(trimmed.to_owned()))
}

fn parse_phone(field: &str, value: Option<String>) -> Result<Option<E164>, ToolResult> {
    match clean_text(field, value, 32)? {
        None => Ok(None),
        Some(s) => E164::parse(&s)
            .map(Some)
            .map_err(|e| invalid(format!("field `{field}` is not an E.164 number (+15551230000): {e}"))),
    }
}

fn parse_email(value: Option<String>) -> Result<Option<String>, ToolResult> {
    let Some(email) = clean_text("email", value, MAX_EMAIL_CHARS)? else {
        return Ok(None);
    };
    let valid = !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if valid {
        Ok(Some(email))
    } else {
        Err(invalid("field `email` is not an email address"))
    }
}

/// Reads `start`: RFC 3339, or a local time in the agent's zone.
fn parse_start(s: &str, tz: FixedOffset) -> Option<Timestamp> {
    let s = s.trim();
    let utc = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t.with_timezone(&Utc)
    } else {
        [
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .and_then(|naive| tz.from_local_datetime(&naive).single())?
        .with_timezone(&Utc)
    };
    // The store keeps milliseconds.
    Some(switchboard_domain::timestamp_from_millis(utc.timestamp_millis()))
}

fn tz_label(tz: FixedOffset) -> String {
    if tz.local_minus_utc() == 0 {
        "UTC".to_owned()
    } else {
        format!("UTC{tz}")
    }
}

/// "Tuesday, March 3 at 3:00 PM", in the agent's zone.
fn spoken(t: Timestamp, tz: FixedOffset) -> String {
    t.with_timezone(&tz).format("%A, %B %-d at %-I:%M %p").to_string()
}

fn local_rfc3339(t: Timestamp, tz: FixedOffset) -> String {
    t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn contact_json(c: &Contact) -> Value {
    json!({
        "id": c.id.to_string(),
        "name": c.name,
        "phone": c.phone.as_ref().map(E164::as_str),
        "email": c.email,
        "status": c.status.as_str(),
        "tags": c.tags,
        "notes": c.notes,
    })
}

fn store_failed(err: StoreError) -> ToolResult {
    match err {
        // The store words these for people; they reveal nothing internal.
        StoreError::Invalid { message } => invalid(message),
        StoreError::Conflict { message } => ToolResult::error("conflict", message),
        other => {
            tracing::error!(error = %other, "tool store operation failed");
            ToolResult::error("store_failed", "the records system is unavailable; try again later")
        }
    }
}

// ---------------------------------------------------------------- tools

impl Inner {
    fn scope(&self) -> Scope {
        Scope::Tenant(self.ctx.tenant_id)
    }

    async fn run(&self, tool: Tool, raw: &str) -> Outcome {
        let schema = tool.parameters();
        match tool {
            Tool::BookAppointment => self.book_appointment(parse_args(raw, &schema)?).await,
            Tool::FindContact => self.find_contact(parse_args(raw, &schema)?).await,
            Tool::CreateOrUpdateContact => self.upsert_contact(parse_args(raw, &schema)?).await,
            Tool::TransferCall => self.transfer_call(parse_args(raw, &schema)?),
            Tool::EndCall => self.end_call(parse_args(raw, &schema)?),
            Tool::SendWhatsapp => self.send_whatsapp(parse_args(raw, &schema)?).await,
            Tool::HttpRequest => self.http_request(parse_args(raw, &schema)?).await,
        }
    }

    async fn book_appointment(&self, args: BookArgs) -> Outcome {
        let tz = self.ctx.settings.timezone;
        let start = parse_start(&args.start, tz).ok_or_else(|| {
            invalid(format!(
                "field `start` must be an RFC 3339 date-time or \"YYYY-MM-DD HH:MM\" ({}), got `{}`",
                tz_label(tz),
                args.start.chars().take(64).collect::<String>()
            ))
        })?;
        if start <= switchboard_domain::now() {
            return Err(invalid("field `start` is in the past"));
        }
        let minutes = match args.duration_minutes {
            None => i64::from(self.ctx.settings.appointment_minutes),
            Some(m) if (1..=MAX_APPOINTMENT_MINUTES).contains(&m) => m,
            Some(_) => {
                return Err(invalid(format!(
                    "field `duration_minutes` must be between 1 and {MAX_APPOINTMENT_MINUTES}"
                )));
            }
        };
        let title = clean_text("title", args.title, MAX_TITLE_CHARS)?.unwrap_or_else(|| DEFAULT_TITLE.to_owned());
        let notes = clean_text("notes", args.notes, MAX_NOTES_CHARS)?.unwrap_or_default();
        let end = start + chrono::Duration::minutes(minutes);

        // Checked before the contact is created, so a refused booking writes nothing.
        self.refuse_if_taken(start, end).await?;
        let contact_id = match &self.ctx.contact_phone {
            Some(phone) => Some(self.find_or_create_contact(phone).await?.id),
            None => None,
        };
        let new = NewAppointment {
            contact_id,
            call_id: self.ctx.call_id,
            title,
            starts_at: start,
            ends_at: end,
            notes,
        };
        let booked = match self.ctx.store.appointments().create(self.ctx.tenant_id, new).await {
            Ok(a) => a,
            Err(StoreError::Conflict { .. }) => {
                // Another booking won the slot between our check and the write.
                self.refuse_if_taken(start, end).await?;
                return Err(ToolResult::error(
                    "slot_taken",
                    "that time was just booked by someone else",
                ));
            }
            Err(e) => return Err(store_failed(e)),
        };
        tracing::info!(appointment_id = %booked.id, "appointment booked");
        Ok(ToolResult::ok(json!({
            "appointment_id": booked.id.to_string(),
            "start": local_rfc3339(booked.starts_at, tz),
            "end": local_rfc3339(booked.ends_at, tz),
            "spoken": spoken(booked.starts_at, tz),
        })))
    }

    /// `Err(slot_taken)` naming the first scheduled appointment overlapping `[start, end)`.
    async fn refuse_if_taken(&self, start: Timestamp, end: Timestamp) -> Result<(), ToolResult> {
        let filter = AppointmentFilter {
            status: Some(AppointmentStatus::Scheduled),
            from: Some(start),
            to: Some(end),
            ..AppointmentFilter::default()
        };
        let clash = self
            .ctx
            .store
            .appointments()
            .list(self.scope(), &filter, PageRequest::new(1, 0))
            .await
            .map_err(store_failed)?
            .items
            .into_iter()
            .next();
        let Some(clash) = clash else {
            return Ok(());
        };
        let tz = self.ctx.settings.timezone;
        let until = clash.ends_at.with_timezone(&tz).format("%-I:%M %p");
        Err(ToolResult {
            content: json!({ "error": {
                "code": "slot_taken",
                "message": format!(
                    "that time overlaps an appointment from {} to {until}; offer another time",
                    spoken(clash.starts_at, tz)
                ),
                "conflict_start": local_rfc3339(clash.starts_at, tz),
                "conflict_end": local_rfc3339(clash.ends_at, tz),
            }}),
            action: None,
        })
    }

    /// The tenant's contact with this number, created (named by the number) if missing.
    async fn find_or_create_contact(&self, phone: &E164) -> Result<Contact, ToolResult> {
        let contacts = self.ctx.store.contacts();
        if let Some(c) = contacts
            .find_by_phone(self.ctx.tenant_id, phone)
            .await
            .map_err(store_failed)?
        {
            return Ok(c);
        }
        let new = NewContact {
            name: phone.as_str().to_owned(),
            phone: Some(phone.clone()),
            email: None,
            status: ContactStatus::New,
            tags: Vec::new(),
            notes: String::new(),
        };
        let created = contacts.create(self.ctx.tenant_id, new).await.map_err(store_failed)?;
        tracing::info!(contact_id = %created.id, "contact created for the caller");
        Ok(created)
    }

    async fn find_contact(&self, args: FindContactArgs) -> Outcome {
        let mut phone = parse_phone("phone", args.phone)?;
        let email = parse_email(args.email)?;
        let name = clean_text("name", args.name, MAX_NAME_CHARS)?;
        if phone.is_none() && email.is_none() && name.is_none() {
            phone = Some(
                self.ctx
                    .contact_phone
                    .clone()
                    .ok_or_else(|| invalid("give `phone`, `email` or `name`: the caller's number is unknown"))?,
            );
        }
        let candidates: Vec<Contact> = if let Some(p) = &phone {
            let found = self.ctx.store.contacts().find_by_phone(self.ctx.tenant_id, p).await;
            found.map_err(store_failed)?.into_iter().collect()
        } else {
            let filter = ContactFilter {
                q: email.clone().or_else(|| name.clone()),
                ..ContactFilter::default()
            };
            let page = PageRequest::new(CONTACT_SEARCH_LIMIT, 0);
            let found = self.ctx.store.contacts().list(self.scope(), &filter, page).await;
            found.map_err(store_failed)?.items
        };
        let name_lower = name.as_deref().map(str::to_lowercase);
        let matches = |c: &&Contact| {
            phone.as_ref().is_none_or(|p| c.phone.as_ref() == Some(p))
                && email
                    .as_deref()
                    .is_none_or(|e| c.email.as_deref().is_some_and(|ce| ce.eq_ignore_ascii_case(e)))
                && name_lower.as_deref().is_none_or(|n| c.name.to_lowercase().contains(n))
        };
        // An exact name beats a partial one.
        let exact = |c: &&Contact| name_lower.as_deref().is_none_or(|n| c.name.to_lowercase() == n);
        let best = candidates
            .iter()
            .filter(matches)
            .find(exact)
            .or_else(|| candidates.iter().find(matches));
        Ok(ToolResult::ok(match best {
            Some(c) => json!({ "found": true, "contact": contact_json(c) }),
            None => json!({ "found": false }),
        }))
    }

    async fn upsert_contact(&self, args: UpsertContactArgs) -> Outcome {
        let name = clean_text("name", args.name, MAX_NAME_CHARS)?;
        let email = parse_email(args.email)?;
        let notes = clean_text("notes", args.notes, MAX_NOTES_CHARS)?;
        let phone = match parse_phone("phone", args.phone)? {
            Some(p) => p,
            None => self
                .ctx
                .contact_phone
                .clone()
                .ok_or_else(|| invalid("missing field `phone`: the caller's number is unknown"))?,
        };
        let contacts = self.ctx.store.contacts();
        let existing = contacts
            .find_by_phone(self.ctx.tenant_id, &phone)
            .await
            .map_err(store_failed)?;
        let (created, contact) = match existing {
            Some(current) => {
                let notes = notes.map(|n| {
                    if current.notes.trim().is_empty() {
                        n
                    } else {
                        format!("{}\n{n}", current.notes)
                    }
                });
                let update = ContactUpdate {
                    name,
                    email: email.map(Some),
                    notes,
                    ..ContactUpdate::default()
                };
                let updated = contacts.update(self.scope(), current.id, update).await;
                (false, updated.map_err(store_failed)?)
            }
            None => {
                let new = NewContact {
                    name: name.unwrap_or_else(|| phone.as_str().to_owned()),
                    phone: Some(phone),
                    email,
                    status: ContactStatus::New,
                    tags: Vec::new(),
                    notes: notes.unwrap_or_default(),
                };
                (
                    true,
                    contacts.create(self.ctx.tenant_id, new).await.map_err(store_failed)?,
                )
            }
        };
        tracing::info!(contact_id = %contact.id, created, "contact saved");
        Ok(ToolResult::ok(
            json!({ "created": created, "contact": contact_json(&contact) }),
        ))
    }

    fn transfer_call(&self, args: TransferArgs) -> Outcome {
        clean_text("reason", args.reason, MAX_REASON_CHARS)?;
        let settings = &self.ctx.settings;
        let number = match parse_phone("number", args.number)? {
            Some(n) => {
                let allowed = settings.transfer_number.as_ref() == Some(&n) || settings.transfer_numbers.contains(&n);
                if !allowed {
                    return Err(ToolResult::error(
                        "transfer_not_allowed",
                        format!("calls may not be transferred to {n}; omit `number` for the default"),
                    ));
                }
                n
            }
            None => settings
                .transfer_number
                .clone()
                .or_else(|| settings.transfer_numbers.first().cloned())
                .ok_or_else(|| {
                    ToolResult::error(
                        "no_transfer_number",
                        "no number to transfer to is configured for this agent",
                    )
                })?,
        };
        tracing::info!(to = %number, "transfer requested");
        Ok(ToolResult {
            content: json!({ "transferring_to": number.as_str() }),
            action: Some(AgentAction::Transfer(number)),
        })
    }

    fn end_call(&self, args: EndCallArgs) -> Outcome {
        clean_text("reason", args.reason, MAX_REASON_CHARS)?;
        Ok(ToolResult {
            content: json!({ "ending": true }),
            action: Some(AgentAction::Hangup),
        })
    }

    async fn send_whatsapp(&self, args: WhatsappArgs) -> Outcome {
        let text = clean_text("text", Some(args.text), MAX_WHATSAPP_CHARS)?
            .ok_or_else(|| invalid("field `text` must not be empty"))?;
        let to = match parse_phone("to", args.to)? {
            Some(to) => to,
            None => self
                .ctx
                .contact_phone
                .clone()
                .ok_or_else(|| invalid("missing field `to`: the caller's number is unknown"))?,
        };
        let payload = json!({
            "tenant_id": self.ctx.tenant_id.to_string(),
            "to": to.as_str(),
            "text": text,
            "call_id": self.ctx.call_id.map(|c| c.to_string()),
        });
        let job_id = self
            .ctx
            .bus
            .enqueue(WHATSAPP_OUTBOUND_QUEUE, payload)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "enqueueing a WhatsApp message failed");
                ToolResult::error("queue_failed", "the message could not be queued; try again later")
            })?;
        tracing::info!(%job_id, "WhatsApp message queued");
        Ok(ToolResult::ok(json!({
            "queued": true,
            "job_id": job_id.to_string(),
            "note": "sent once WhatsApp is configured",
        })))
    }

    async fn http_request(&self, args: HttpArgs) -> Outcome {
        let cfg = &self.ctx.settings.http_request;
        let method = match args.method.as_deref() {
            Some(m) => {
                parse_method(m).ok_or_else(|| invalid("field `method` must be GET, POST, PUT, PATCH or DELETE"))?
            }
            None => cfg.method.clone(),
        };
        let mut url = resolve_url(&args.path, cfg.base_url.as_ref())?;
        if let Some(query) = args.query {
            let mut pairs = url.query_pairs_mut();
            for (key, value) in query {
                let value = match value {
                    Value::String(s) => s,
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(invalid(format!(
                            "field `query.{key}` must be a string, number or boolean"
                        )));
                    }
                };
                pairs.append_pair(&key, &value);
            }
        }
        check_host(&url, &cfg.allowed_hosts)?;
        let body = match args.body {
            None | Some(Value::Null) => None,
            Some(_) if method == Method::GET => return Err(invalid("field `body` cannot be sent with GET")),
            Some(body) => {
                let bytes = serde_json::to_vec(&body).map_err(|e| invalid(format!("field `body`: {e}")))?;
                if bytes.len() > MAX_REQUEST_BODY_BYTES {
                    return Err(invalid(format!(
                        "field `body` is larger than {MAX_REQUEST_BODY_BYTES} bytes"
                    )));
                }
                Some(bytes)
            }
        };
        let request = fetch(&self.ctx.http.0, method, url, body, cfg);
        match tokio::time::timeout(cfg.timeout, request).await {
            Ok(outcome) => outcome,
            Err(_) => Err(ToolResult::error(
                "timeout",
                format!("the backend did not answer within {} ms", cfg.timeout.as_millis()),
            )),
        }
    }
}

/// A relative `path` goes below `base_url`; an absolute http(s) URL stands alone.
fn resolve_url(path: &str, base: Option<&Url>) -> Result<Url, ToolResult> {
    let path = path.trim();
    if path.is_empty() || path.chars().count() > MAX_PATH_CHARS {
        return Err(invalid(format!(
            "field `path` must be 1 to {MAX_PATH_CHARS} characters"
        )));
    }
    let url = if path.starts_with("http://") || path.starts_with("https://") {
        Url::parse(path).map_err(|e| invalid(format!("field `path` is not a valid URL: {e}")))?
    } else {
        let base = base.ok_or_else(|| {
            ToolResult::error(
                "not_configured",
                "relative paths need settings.tools.http_request.base_url; give a full URL instead",
            )
        })?;
        let joined = format!(
            "{}/{}",
            base.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        Url::parse(&joined).map_err(|e| invalid(format!("field `path` does not make a valid URL: {e}")))?
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("field `path` must not carry credentials"));
    }
    Ok(url)
}

fn check_host(url: &Url, allowed: &[AllowedHost]) -> Result<(), ToolResult> {
    let scheme_ok = matches!(url.scheme(), "http" | "https");
    if scheme_ok && allowed.iter().any(|a| a.allows(url)) {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("");
    Err(ToolResult::error(
        "host_not_allowed",
        if allowed.is_empty() {
            "this agent may not make HTTP requests (no allowed hosts are configured)".to_owned()
        } else {
            format!("requests to `{host}` are not allowed")
        },
    ))
}

/// Sends the request, following redirects by hand within the allowed hosts,
/// and reads at most `max_response_bytes` of the final body.
async fn fetch(
    client: &reqwest::Client,
    mut method: Method,
    mut url: Url,
    mut body: Option<Vec<u8>>,
    cfg: &HttpToolSettings,
) -> Outcome {
    let failed = |e: reqwest::Error| {
        tracing::warn!(error = %e, "http_request failed");
        if e.is_timeout() {
            ToolResult::error("timeout", "the backend did not answer in time")
        } else {
            ToolResult::error("http_failed", "the backend could not be reached")
        }
    };
    let mut redirects = 0;
    let mut response = loop {
        let mut request = client
            .request(method.clone(), url.clone())
            .timeout(cfg.timeout)
            .header(ACCEPT, "application/json, text/plain;q=0.9, */*;q=0.1");
        if let Some(bytes) = &body {
            request = request.header(CONTENT_TYPE, "application/json").body(bytes.clone());
        }
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let Some(location) = response.headers().get(LOCATION).filter(|_| status.is_redirection()) else {
            break response;
        };
        redirects += 1;
        if redirects > MAX_REDIRECTS {
            return Err(ToolResult::error(
                "too_many_redirects",
                format!("the backend redirected more than {MAX_REDIRECTS} times"),
            ));
        }
        let next = location
            .to_str()
            .ok()
            .and_then(|l| url.join(l).ok())
            .ok_or_else(|| ToolResult::error("http_failed", "the backend sent an unreadable redirect"))?;
        check_host(&next, &cfg.allowed_hosts)?;
        // As browsers do: 303, and 301/302 after a POST, continue as a GET.
        if status == StatusCode::SEE_OTHER
            || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND) && method == Method::POST)
        {
            method = Method::GET;
            body = None;
        }
        url = next;
    };
    let too_large = || {
        ToolResult::error(
            "response_too_large",
            format!("the backend's answer is larger than {} bytes", cfg.max_response_bytes),
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > cfg.max_response_bytes as u64)
    {
        return Err(too_large());
    }
    let status = response.status().as_u16();
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        if bytes.len() + chunk.len() > cfg.max_response_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    let body = serde_json::from_slice::<Value>(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    Ok(ToolResult::ok(json!({ "status": status, "body": body })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timezones_parse_as_fixed_offsets() {
        let east = |s: &str| parse_timezone(s).map(|o| o.local_minus_utc());
        assert_eq!(east("UTC"), Some(0));
        assert_eq!(east("+02:00"), Some(7_200));
        assert_eq!(east("UTC-05:00"), Some(-18_000));
        assert_eq!(east("-0530"), Some(-19_800));
        assert_eq!(east("GMT+1"), Some(3_600));
        assert_eq!(east("Europe/Paris"), None);
        assert_eq!(east("+25:00"), None);
    }

    #[test]
    fn allowed_hosts_match_host_and_optional_port() {
        let any_port = AllowedHost::parse("API.example.com").expect("host");
        let one_port = AllowedHost::parse("127.0.0.1:8080").expect("host:port");
        let url = |s: &str| Url::parse(s).expect("url");
        assert!(any_port.allows(&url("https://api.example.com/x")));
        assert!(any_port.allows(&url("http://api.example.com:9000/x")));
        assert!(!any_port.allows(&url("https://api.example.com.evil.test/x")));
        assert!(one_port.allows(&url("http://127.0.0.1:8080/")));
        assert!(!one_port.allows(&url("http://127.0.0.1:8081/")));
        assert!(AllowedHost::parse("https://x.test/").is_err());
        assert!(AllowedHost::parse("user@x.test").is_err());
    }

    #[test]
    fn local_times_are_read_in_the_agent_zone_and_spoken() {
        let tz = parse_timezone("-05:00").expect("tz");
        let t = parse_start("2030-03-05 15:00", tz).expect("start");
        assert_eq!(t.to_rfc3339(), "2030-03-05T20:00:00+00:00");
        assert_eq!(spoken(t, tz), "Tuesday, March 5 at 3:00 PM");
        assert_eq!(parse_start("2030-03-05T20:00:00Z", tz), Some(t));
        assert_eq!(parse_start("next tuesday", tz), None);
        assert_eq!(parse_start("2030-02-30 10:00", tz), None);
    }
}
