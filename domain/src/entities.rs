//! The stored records and the inputs that create or change them.
//!
//! Update inputs use `Option<T>` for "leave unchanged" and, for nullable
//! fields, `Option<Option<T>>` where `Some(None)` (JSON `null`) clears the value.

use crate::Timestamp;
use crate::call::{CallDirection, CallStatus, EndReason};
use crate::ids::*;
use crate::phone::E164;
use crate::role::Role;
use crate::str_enum;
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Deserialize a present field (even `null`) as `Some(..)`, so that with
/// `#[serde(default)]` an absent field is `None` and `null` is `Some(None)`.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A secret value from a request. It never prints and is never serialized.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The plaintext. Call only where the value is used (encryption, a provider request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

// ---------------------------------------------------------------- tenants

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    /// Where post-call summaries are emailed, if set.
    pub notification_email: Option<String>,
    /// Live calls allowed at once; further calls are politely refused.
    pub max_concurrent_calls: u32,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    #[serde(default)]
    pub notification_email: Option<String>,
    #[serde(default = "default_max_calls")]
    pub max_concurrent_calls: u32,
}

fn default_max_calls() -> u32 {
    10
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub notification_email: Option<Option<String>>,
    #[serde(default)]
    pub max_concurrent_calls: Option<u32>,
}

// ---------------------------------------------------------------- users

/// A user as the API shows it. The password hash never leaves the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct User {
    pub id: UserId,
    /// `None` only for system admins, who belong to no tenant.
    pub tenant_id: Option<TenantId>,
    pub email: String,
    pub role: Role,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    pub email: String,
    #[schema(value_type = String, format = Password)]
    pub password: Secret,
    pub role: Role,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("tenant_id", &self.tenant_id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = Password)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub role: Option<Role>,
}

// ---------------------------------------------------------------- phone numbers

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PhoneNumber {
    pub id: PhoneNumberId,
    pub tenant_id: TenantId,
    pub number: E164,
    /// The agent that answers calls to this number.
    pub agent_id: Option<AgentId>,
    pub label: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPhoneNumber {
    pub number: E164,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
    #[serde(default)]
    pub label: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberUpdate {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub agent_id: Option<Option<AgentId>>,
    #[serde(default)]
    pub label: Option<String>,
}

// ---------------------------------------------------------------- agents

/// A provider choice for one capability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderChoice {
    /// Provider name: `local`, `openai`, `google`, `openai_compatible`, `rules`, `fake`.
    pub provider: String,
    /// Model name, when the provider has models.
    #[serde(default)]
    pub model: Option<String>,
    /// Base URL override (OpenAI-compatible servers, test fakes).
    #[serde(default)]
    pub base_url: Option<String>,
}

impl ProviderChoice {
    pub fn new(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            model: None,
            base_url: None,
        }
    }
}

/// Turn-taking settings for the voice activity detector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Endpointing {
    /// VAD aggressiveness/threshold in 0.0..=1.0.
    #[serde(default = "Endpointing::default_threshold")]
    pub vad_threshold: f32,
    /// Speech shorter than this is not a turn nor a barge-in (backchannels).
    #[serde(default = "Endpointing::default_min_speech_ms")]
    pub min_speech_ms: u32,
    /// Silence that ends the caller's turn.
    #[serde(default = "Endpointing::default_silence_ms")]
    pub silence_ms: u32,
    /// Silence before the agent reprompts; a second timeout hangs up.
    #[serde(default = "Endpointing::default_idle_timeout_ms")]
    pub idle_timeout_ms: u32,
}

impl Endpointing {
    fn default_threshold() -> f32 {
        0.5
    }
    fn default_min_speech_ms() -> u32 {
        300
    }
    fn default_silence_ms() -> u32 {
        600
    }
    fn default_idle_timeout_ms() -> u32 {
        10_000
    }
}

impl Default for Endpointing {
    fn default() -> Self {
        Self {
            vad_threshold: Self::default_threshold(),
            min_speech_ms: Self::default_min_speech_ms(),
            silence_ms: Self::default_silence_ms(),
            idle_timeout_ms: Self::default_idle_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: String,
    pub system_prompt: String,
    /// Spoken first when a call connects.
    pub greeting: String,
    /// BCP-47 language tag, e.g. `en-US`.
    pub language: String,
    pub voice: String,
    pub stt: ProviderChoice,
    pub tts: ProviderChoice,
    pub llm: ProviderChoice,
    /// Names of the tools this agent may call.
    pub tools: Vec<String>,
    pub endpointing: Endpointing,
    /// Mode-specific settings (rules for the rule-based agent, fallbacks, ...).
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    pub enabled: bool,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub name: String,
    #[serde(default)]
    pub system_prompt: String,
    #[serde(default)]
    pub greeting: String,
    #[serde(default = "default_language")]
    pub language: String,
    #[serde(default = "default_voice")]
    pub voice: String,
    #[serde(default = "default_local")]
    pub stt: ProviderChoice,
    #[serde(default = "default_local")]
    pub tts: ProviderChoice,
    #[serde(default = "default_rules")]
    pub llm: ProviderChoice,
    #[serde(default)]
    pub tools: Vec<String>,
    #[serde(default)]
    pub endpointing: Endpointing,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
    #[serde(default = "default_true")]
    pub enabled: bool,
}

fn default_language() -> String {
    "en-US".into()
}
fn default_voice() -> String {
    "default".into()
}
fn default_local() -> ProviderChoice {
    ProviderChoice::new("local")
}
fn default_rules() -> ProviderChoice {
    ProviderChoice::new("rules")
}
fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub system_prompt: Option<String>,
    #[serde(default)]
    pub greeting: Option<String>,
    #[serde(default)]
    pub language: Option<String>,
    #[serde(default)]
    pub voice: Option<String>,
    #[serde(default)]
    pub stt: Option<ProviderChoice>,
    #[serde(default)]
    pub tts: Option<ProviderChoice>,
    #[serde(default)]
    pub llm: Option<ProviderChoice>,
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    #[serde(default)]
    pub endpointing: Option<Endpointing>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

// ---------------------------------------------------------------- credentials

str_enum!(
    /// Which provider a credential is for.
    CredentialKind {
        Twilio => "twilio",
        OpenAi => "openai",
        Google => "google",
        WhatsAppMeta => "whatsapp_meta",
        WhatsAppGreen => "whatsapp_green",
        SendGrid => "sendgrid",
    }
);

/// A stored credential as the API shows it: secret values are write-only,
/// only their names are listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Credential {
    pub id: CredentialId,
    pub tenant_id: TenantId,
    pub kind: CredentialKind,
    pub label: String,
    /// Non-secret settings (e.g. Twilio `account_sid`, WhatsApp `phone_number_id`).
    #[schema(value_type = Object)]
    pub public: serde_json::Value,
    /// Names of the secret fields stored (values are never returned).
    pub secret_keys: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredential {
    pub kind: CredentialKind,
    #[serde(default)]
    pub label: String,
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub public: serde_json::Value,
    /// Secret fields, e.g. `{"auth_token": "..."}`. Encrypted at rest, never returned.
    #[schema(value_type = Object)]
    pub secrets: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialUpdate {
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub public: Option<serde_json::Value>,
    /// Replaces all secret fields when present.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub secrets: Option<BTreeMap<String, Secret>>,
}

// ---------------------------------------------------------------- contacts

str_enum!(
    /// A lead's stage.
    ContactStatus {
        New => "new",
        Contacted => "contacted",
        Qualified => "qualified",
        Converted => "converted",
        Lost => "lost",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contact {
    pub id: ContactId,
    pub tenant_id: TenantId,
    pub name: String,
    pub phone: Option<E164>,
    pub email: Option<String>,
    pub status: ContactStatus,
    pub tags: Vec<String>,
    pub notes: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    pub name: String,
    #[serde(default)]
    pub phone: Option<E164>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "default_contact_status")]
    pub status: ContactStatus,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

fn default_contact_status() -> ContactStatus {
    ContactStatus::New
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<E164>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default)]
    pub status: Option<ContactStatus>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub notes: Option<String>,
}

// ---------------------------------------------------------------- appointments

str_enum!(
    AppointmentStatus {
        Scheduled => "scheduled",
        Cancelled => "cancelled",
        Completed => "completed",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Appointment {
    pub id: AppointmentId,
    pub tenant_id: TenantId,
    pub contact_id: Option<ContactId>,
    /// The call during which it was booked, if any.
    pub call_id: Option<CallId>,
    pub title: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    pub status: AppointmentStatus,
    pub notes: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppointment {
    #[serde(default)]
    pub contact_id: Option<ContactId>,
    #[serde(default)]
    pub call_id: Option<CallId>,
    #[serde(default)]
    pub title: String,
    #[schema(value_type = String, format = DateTime)]
    pub starts_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub ends_at: Timestamp,
    #[serde(default)]
    pub notes: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentUpdate {
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub contact_id: Option<Option<ContactId>>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub starts_at: Option<Timestamp>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ends_at: Option<Timestamp>,
    #[serde(default)]
    pub status: Option<AppointmentStatus>,
    #[serde(default)]
    pub notes: Option<String>,
}

// ---------------------------------------------------------------- calls

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Call {
    pub id: CallId,
    pub tenant_id: TenantId,
    pub agent_id: Option<AgentId>,
    /// Twilio's `CallSid`.
    pub provider_call_id: Option<ProviderCallId>,
    pub direction: CallDirection,
    /// Caller as the provider gave it (E.164, `client:name` or a SIP URI).
    pub from: String,
    pub to: String,
    pub status: CallStatus,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub answered_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    pub end_reason: Option<EndReason>,
    pub recording_url: Option<String>,
    pub summary: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

/// Input for a new call row (created by the voice webhook or an outbound dial).
#[derive(Debug, Clone)]
pub struct NewCall {
    pub tenant_id: TenantId,
    pub agent_id: Option<AgentId>,
    pub provider_call_id: Option<ProviderCallId>,
    pub direction: CallDirection,
    pub from: String,
    pub to: String,
    pub status: CallStatus,
}

str_enum!(
    /// Who spoke a transcript segment.
    Speaker {
        Caller => "caller",
        Agent => "agent",
        System => "system",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TranscriptSegment {
    pub call_id: CallId,
    /// Order within the call, from 0.
    pub seq: i64,
    pub speaker: Speaker,
    pub text: String,
    /// Offset from call start.
    pub start_ms: i64,
    pub end_ms: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------- conversations and messages

str_enum!(
    /// Messaging channel of a conversation.
    Channel {
        WhatsAppMeta => "whatsapp_meta",
        WhatsAppGreen => "whatsapp_green",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Conversation {
    pub id: ConversationId,
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub contact_id: Option<ContactId>,
    pub agent_id: Option<AgentId>,
    /// The other party's address on the channel (their WhatsApp number).
    pub external_id: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_message_at: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewConversation {
    pub tenant_id: TenantId,
    pub channel: Channel,
    pub contact_id: Option<ContactId>,
    pub agent_id: Option<AgentId>,
    pub external_id: String,
}

str_enum!(
    MessageDirection {
        Inbound => "inbound",
        Outbound => "outbound",
    }
);

str_enum!(
    MessageStatus {
        Received => "received",
        Queued => "queued",
        Sent => "sent",
        Delivered => "delivered",
        Read => "read",
        Failed => "failed",
    }
);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Message {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub direction: MessageDirection,
    pub provider_message_id: Option<ProviderMessageId>,
    pub status: MessageStatus,
    pub body: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewMessage {
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub direction: MessageDirection,
    pub provider_message_id: Option<ProviderMessageId>,
    pub status: MessageStatus,
    pub body: String,
}

// ---------------------------------------------------------------- audit

/// Who changed what, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: AuditId,
    pub tenant_id: Option<TenantId>,
    pub user_id: Option<UserId>,
    /// `create`, `update`, `delete`, `login`, ...
    pub action: String,
    /// Entity kind: `tenant`, `agent`, `credential`, ...
    pub entity: String,
    pub entity_id: String,
    /// What changed (never secret values).
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub tenant_id: Option<TenantId>,
    pub user_id: Option<UserId>,
    pub action: String,
    pub entity: String,
    pub entity_id: String,
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn double_option_distinguishes_absent_and_null() {
        let absent: ContactUpdate = serde_json::from_str("{}").unwrap();
        assert!(absent.email.is_none());
        let null: ContactUpdate = serde_json::from_str(r#"{"email": null}"#).unwrap();
        assert_eq!(null.email, Some(None));
        let set: ContactUpdate = serde_json::from_str(r#"{"email": "a@b.c"}"#).unwrap();
        assert_eq!(set.email, Some(Some("a@b.c".into())));
    }

    #[test]
    fn secrets_do_not_print() {
        let u: NewUser = serde_json::from_str(r#"{"email":"a@b.c","password":"hunter2","role":"admin"}"#).unwrap();
        let dbg = format!("{u:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
        let c: NewCredential = serde_json::from_str(r#"{"kind":"twilio","secrets":{"auth_token":"s3cr3t"}}"#).unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_fields_and_bad_numbers_are_rejected() {
        assert!(serde_json::from_str::<NewContact>(r#"{"name":"x","bogus":1}"#).is_err());
        assert!(serde_json::from_str::<NewContact>(r#"{"name":"x","phone":"12"}"#).is_err());
    }
}
