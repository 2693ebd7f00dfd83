//! [`StandardProviders`]: the default [`ProviderFactory`], mapping an agent's
//! provider choices to the adapters in this crate.
//!
//! | choice | adapter |
//! |---|---|
//! | `stt`/`tts` = `local` | [`OpenAiStt`]/[`OpenAiTts`] at the bundled speech server (`speech.base_url` + `/v1`), models `tiny.en` / `espeak-ng` |
//! | `stt`/`tts` = `openai` | the same adapters at `base_url` or `https://api.openai.com/v1`, the tenant's OpenAI key (required), models `whisper-1` / `tts-1` unless set, 24 kHz |
//! | `stt`/`tts` = `openai_compatible` | the same adapters at the required `base_url`, key from [`KeySource::compatible_key`] (optional) |
//! | `llm` = `rules` or `local` | [`RuleAgent::from_settings`] over the agent's `settings` |
//! | `llm` = `openai` / `google` / `openai_compatible` | [`LlmAgent`] (streaming chat completions with tools) with the tenant's OpenAI / Google key, or the compatible server's key |
//! | `stt`/`tts` = `google` | [`GoogleStt`] (Speech-to-Text v1 `recognize`, μ-law 8 kHz sent as is) / [`GoogleTts`] (Text-to-Speech v1, MULAW 8 kHz) with the tenant's Google key; `base_url` and `model` override |
//! | `llm` = `openai_realtime` | OpenAI Realtime speech-to-speech ([`RealtimeConfig`]): the call streams μ-law both ways and `stt`/`tts` are not used; `model` (default `gpt-realtime`), `base_url` (a `wss://…/v1/realtime` URL), `settings.realtime.interface` = `beta` or `ga` (default) |
//! | `bench` (any capability) | the load-test profile of [`crate::bench`]: not a real provider |
//!
//! `settings.fallback_providers` may name a secondary `stt`, `tts` and `llm`
//! (each a provider choice like the primary's); the call switches to one when
//! its primary fails. A secondary that cannot be built is logged and left out:
//! it never stops the call from starting.
//!
//! Per-agent provider timeouts (integers in milliseconds, 1 to 600000; absent
//! keeps the adapter's default) come from the agent's `settings`:
//!
//! | key | sets | default |
//! |---|---|---|
//! | `stt.timeout_ms` | STT: one whole transcription exchange, retries included ([`OpenAiSpeechConfig::timeout`], [`GoogleSpeechConfig::timeout`]) | 30 s OpenAI-compatible, 15 s Google |
//! | `tts.timeout_ms` | TTS: OpenAI-compatible until the first audio and every later gap; Google the whole exchange | 30 s / 15 s |
//! | `llm.timeout_ms` | LLM: from a request to the model's first output ([`LlmConfig::first_token_timeout`]) | 10 s |
//! | `llm.stall_timeout_ms` | LLM: between two chunks once the model has started ([`LlmConfig::stall_timeout`]) | 10 s |
//! | `llm.request_timeout_ms` | LLM: one whole request ([`LlmConfig::request_timeout`]) | 60 s |
//!
//! They apply to the primary and the secondary of their capability alike
//! (also to `local`, which then gets its own adapter instead of the shared
//! one). A value of the wrong type or out of range is a `Config` error naming
//! the key.
//!
//! Guarantees: any other provider name is a `Config` error naming the
//! capability (`stt`, `tts`, `llm`) and the provider, before anything is
//! started; building providers for a call never blocks on the network (keys
//! come from the [`KeySource`], adapters are built lazily per request); one
//! HTTP client (one connection pool) is shared by every adapter, and the
//! local adapters are built once. The tenant's OpenAI key is sent only to
//! `openai` providers, never to an `openai_compatible` server. `telephony` is
//! Twilio's REST API when the tenant has Twilio credentials ([`KeySource::twilio`]).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::SecretString;
use switchboard_domain::{Agent, ProviderChoice, TenantId};
use tracing::{debug, warn};

use crate::bench;
use crate::capability::Telephony;
use crate::capability::{ConversationAgent, SpeechToText, TextToSpeech};
use crate::error::{ProviderError, ProviderErrorKind};
use crate::factory::{BackupProviders, CallProviders, ProviderFactory};
use crate::google_speech::{GoogleSpeechConfig, GoogleStt, GoogleTts};
use crate::llm::{LlmAgent, LlmConfig};
use crate::openai_speech::{OpenAiSpeechConfig, OpenAiStt, OpenAiTts, speech_http_client};
use crate::realtime::{RealtimeConfig, RealtimeInterface};
use crate::rules::RuleAgent;
use crate::twilio::rest::{TwilioRest, TwilioRestConfig};
use crate::twilio::webhook::AccountSid;

/// Connect timeout of the shared speech HTTP client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest per-agent provider timeout accepted, in milliseconds (10 minutes).
const MAX_TIMEOUT_MS: u64 = 600_000;

/// Where provider API keys come from (the engine reads the store's sealed
/// credentials). Keys are returned as [`SecretString`] so they never print.
pub trait KeySource: Send + Sync + 'static {
    /// The tenant's OpenAI API key, if it has one.
    fn openai_key(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>>;

    /// The tenant's Google API key (Gemini, Cloud Speech), if it has one.
    fn google_key(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
        let _ = tenant;
        Box::pin(async { Ok(None) })
    }

    /// The tenant's Twilio account SID and auth token, for carrier control
    /// (transfer, hang-up) over Twilio's REST API.
    fn twilio(&self, tenant: TenantId) -> BoxFuture<'_, Result<Option<(String, SecretString)>, ProviderError>> {
        let _ = tenant;
        Box::pin(async { Ok(None) })
    }

    /// The key for an OpenAI-compatible server at `base_url`, if the tenant
    /// has one. Defaults to none: the tenant's OpenAI key is deliberately not
    /// offered to third-party servers.
    fn compatible_key<'a>(
        &'a self,
        tenant: TenantId,
        base_url: &'a str,
    ) -> BoxFuture<'a, Result<Option<SecretString>, ProviderError>> {
        let _ = (tenant, base_url);
        Box::pin(async { Ok(None) })
    }
}

/// A [`KeySource`] with no keys: only keyless providers (`local`, keyless
/// `openai_compatible`, `rules`) can be built.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoKeys;

impl KeySource for NoKeys {
    fn openai_key(&self, _tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
        Box::pin(async { Ok(None) })
    }
}

/// What [`StandardProviders`] is built from.
#[derive(Clone)]
pub struct StandardConfig {
    /// The bundled speech server, usually
    /// `OpenAiSpeechConfig::local(&settings.speech.base_url, settings.speech.tts_sample_rate)`.
    pub local: OpenAiSpeechConfig,
    pub keys: Arc<dyn KeySource>,
    /// Twilio's REST API root; `None` is `https://api.twilio.com` (tests
    /// point it at a fake).
    pub twilio_api_base: Option<String>,
}

/// The default [`ProviderFactory`]; see the module docs for the mapping.
pub struct StandardProviders {
    client: reqwest::Client,
    keys: Arc<dyn KeySource>,
    /// The bundled speech server's config, for agents that override its timeouts.
    local: OpenAiSpeechConfig,
    local_stt: Arc<OpenAiStt>,
    local_tts: Arc<OpenAiTts>,
    /// The bench profile's TTS cache, shared by all its calls.
    bench_tts: Arc<bench::BenchTts>,
    twilio_api_base: Option<String>,
}

impl std::fmt::Debug for StandardProviders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandardProviders")
            .field("local_stt", &self.local_stt)
            .finish_non_exhaustive()
    }
}

/// Which capability a choice is for, with its OpenAI default model.
#[derive(Clone, Copy)]
enum Capability {
    Stt,
    Tts,
}

impl Capability {
    fn name(self) -> &'static str {
        match self {
            Self::Stt => "stt",
            Self::Tts => "tts",
        }
    }
}

impl StandardProviders {
    /// Builds the shared HTTP client and the local adapters; fails only on an
    /// unusable `local` config (bad base URL) or HTTP client set-up.
    pub fn new(config: StandardConfig) -> Result<Self, ProviderError> {
        let client = speech_http_client(CONNECT_TIMEOUT)?;
        Ok(Self {
            local_stt: Arc::new(OpenAiStt::new(config.local.clone(), client.clone())?),
            local_tts: Arc::new(OpenAiTts::new(config.local.clone(), client.clone())?),
            local: config.local,
            bench_tts: Arc::new(bench::BenchTts::new()),
            client,
            keys: config.keys,
            twilio_api_base: config.twilio_api_base,
        })
    }

    /// The remote config for an `openai` / `openai_compatible` choice, with
    /// the agent's timeout for `cap` if it sets one.
    async fn remote_config(
        &self,
        tenant: TenantId,
        cap: Capability,
        choice: &ProviderChoice,
        timeouts: &AgentTimeouts,
    ) -> Result<OpenAiSpeechConfig, ProviderError> {
        let base_url = choice.base_url.as_deref().map(str::trim).filter(|b| !b.is_empty());
        let mut config = match choice.provider.as_str() {
            "openai" => {
                let key = self.keys.openai_key(tenant).await?.ok_or_else(|| {
                    ProviderError::new(
                        "openai",
                        ProviderErrorKind::Config("the tenant has no OpenAI API key".into()),
                    )
                })?;
                let mut config = OpenAiSpeechConfig::openai(key);
                if let Some(base) = base_url {
                    config.base_url = base.to_owned();
                }
                config
            }
            "openai_compatible" => {
                let base = base_url.ok_or_else(|| {
                    ProviderError::new(
                        "openai_compatible",
                        ProviderErrorKind::Config(format!(
                            "{} provider openai_compatible needs a base_url",
                            cap.name()
                        )),
                    )
                })?;
                OpenAiSpeechConfig::openai_compatible(base, self.keys.compatible_key(tenant, base).await?)
            }
            other => return Err(unsupported(cap.name(), other)),
        };
        if let Some(model) = choice.model.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
            match cap {
                Capability::Stt => config.stt_model = model.to_owned(),
                Capability::Tts => config.tts_model = model.to_owned(),
            }
        }
        if let Some(timeout) = timeouts.speech(cap) {
            config.timeout = timeout;
        }
        Ok(config)
    }

    /// The Google config of a `google` STT or TTS choice: the tenant's key,
    /// `base_url` and the agent's timeout for `cap`.
    async fn google_config(
        &self,
        tenant: TenantId,
        cap: Capability,
        choice: &ProviderChoice,
        timeouts: &AgentTimeouts,
    ) -> Result<GoogleSpeechConfig, ProviderError> {
        let mut config = match cap {
            Capability::Stt => GoogleSpeechConfig::speech_to_text(self.google_key(tenant, "google_stt").await?),
            Capability::Tts => GoogleSpeechConfig::text_to_speech(self.google_key(tenant, "google_tts").await?),
        };
        if let Some(base) = non_empty(&choice.base_url) {
            config.base_url = base.to_owned();
        }
        if let Some(timeout) = timeouts.speech(cap) {
            config.timeout = timeout;
        }
        Ok(config)
    }

    /// The bundled speech server's config with the agent's timeout for `cap`,
    /// or `None` when the agent keeps the default (the shared adapter serves).
    fn local_override(&self, cap: Capability, timeouts: &AgentTimeouts) -> Option<OpenAiSpeechConfig> {
        let timeout = timeouts.speech(cap)?;
        let mut config = self.local.clone();
        config.timeout = timeout;
        Some(config)
    }

    async fn stt(
        &self,
        tenant: TenantId,
        agent: &Agent,
        choice: &ProviderChoice,
    ) -> Result<Arc<dyn SpeechToText>, ProviderError> {
        let timeouts = AgentTimeouts::from_settings(&agent.settings)?;
        match choice.provider.as_str() {
            "local" => {
                return match self.local_override(Capability::Stt, &timeouts) {
                    Some(config) => Ok(Arc::new(OpenAiStt::new(config, self.client.clone())?)),
                    None => Ok(self.local_stt.clone()),
                };
            }
            "bench" => {
                let phrase = bench::bench_setting(&agent.settings, "phrase", bench::DEFAULT_PHRASE);
                return Ok(Arc::new(bench::BenchStt::new(&phrase)));
            }
            "google" => {
                let mut config = self.google_config(tenant, Capability::Stt, choice, &timeouts).await?;
                config.stt_model = non_empty(&choice.model).map(str::to_owned);
                config.language = agent.language.clone();
                return Ok(Arc::new(GoogleStt::new(config, self.client.clone())?));
            }
            _ => {}
        }
        let config = self.remote_config(tenant, Capability::Stt, choice, &timeouts).await?;
        Ok(Arc::new(OpenAiStt::new(config, self.client.clone())?))
    }

    async fn tts(
        &self,
        tenant: TenantId,
        agent: &Agent,
        choice: &ProviderChoice,
    ) -> Result<Arc<dyn TextToSpeech>, ProviderError> {
        let timeouts = AgentTimeouts::from_settings(&agent.settings)?;
        match choice.provider.as_str() {
            "local" => {
                return match self.local_override(Capability::Tts, &timeouts) {
                    Some(config) => Ok(Arc::new(OpenAiTts::new(config, self.client.clone())?)),
                    None => Ok(self.local_tts.clone()),
                };
            }
            "bench" => return Ok(self.bench_tts.clone()),
            "google" => {
                let config = self.google_config(tenant, Capability::Tts, choice, &timeouts).await?;
                return Ok(Arc::new(GoogleTts::new(config, self.client.clone())?));
            }
            _ => {}
        }
        let config = self.remote_config(tenant, Capability::Tts, choice, &timeouts).await?;
        Ok(Arc::new(OpenAiTts::new(config, self.client.clone())?))
    }

    async fn llm(
        &self,
        tenant: TenantId,
        agent: &Agent,
        choice: &ProviderChoice,
    ) -> Result<Arc<dyn ConversationAgent>, ProviderError> {
        match choice.provider.as_str() {
            "bench" => Ok(Arc::new(bench::BenchAgent::new(&bench::bench_setting(
                &agent.settings,
                "reply",
                bench::DEFAULT_REPLY,
            )))),
            "rules" | "local" => RuleAgent::from_settings(&agent.settings)
                .map(|a| Arc::new(a) as Arc<dyn ConversationAgent>)
                .map_err(|e| ProviderError::new("rules", ProviderErrorKind::Config(e.to_string()))),
            "openai" | "google" | "openai_compatible" => {
                let key = match choice.provider.as_str() {
                    "openai" => self.keys.openai_key(tenant).await?,
                    "google" => self.keys.google_key(tenant).await?,
                    _ => match choice.base_url.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
                        Some(base) => self.keys.compatible_key(tenant, base).await?,
                        None => None,
                    },
                };
                let llm = LlmAgent::new(llm_config(agent, choice, key)?)?;
                Ok(Arc::new(llm))
            }
            other => Err(unsupported("llm", other)),
        }
    }

    async fn google_key(&self, tenant: TenantId, provider: &'static str) -> Result<SecretString, ProviderError> {
        self.keys.google_key(tenant).await?.ok_or_else(|| {
            ProviderError::new(
                provider,
                ProviderErrorKind::Config("the tenant has no Google API key".into()),
            )
        })
    }

    /// The Realtime session of an `openai_realtime` agent.
    async fn realtime(&self, tenant: TenantId, agent: &Agent) -> Result<RealtimeConfig, ProviderError> {
        let key = self.keys.openai_key(tenant).await?.ok_or_else(|| {
            ProviderError::new(
                "openai_realtime",
                ProviderErrorKind::Config("the tenant has no OpenAI API key".into()),
            )
        })?;
        let mut config = RealtimeConfig::openai(non_empty(&agent.llm.model).unwrap_or("gpt-realtime"), key);
        if let Some(url) = non_empty(&agent.llm.base_url) {
            config.url = url.to_owned();
        }
        let interface = agent
            .settings
            .get("realtime")
            .and_then(|r| r.get("interface"))
            .and_then(|v| v.as_str());
        config.interface = match interface {
            None | Some("ga") => RealtimeInterface::Ga,
            Some("beta") => RealtimeInterface::Beta,
            Some(other) => {
                return Err(ProviderError::new(
                    "openai_realtime",
                    ProviderErrorKind::Config(format!("settings.realtime.interface {other:?} is not beta or ga")),
                ));
            }
        };
        if !agent.voice.trim().is_empty() && agent.voice != "default" {
            config.voice = agent.voice.clone();
        }
        config.instructions = agent.system_prompt.clone();
        Ok(config)
    }

    /// Carrier control over Twilio's REST API, when the tenant has Twilio credentials.
    async fn telephony(&self, tenant: TenantId) -> Option<Arc<dyn Telephony>> {
        let (sid, token) = match self.keys.twilio(tenant).await {
            Ok(Some(found)) => found,
            Ok(None) => return None,
            Err(err) => {
                warn!(%tenant, error = %err, "Twilio credentials unreadable; transfers will hang up instead");
                return None;
            }
        };
        let sid = match AccountSid::parse(&sid) {
            Ok(sid) => sid,
            Err(err) => {
                warn!(%tenant, error = %err, "stored Twilio account SID is invalid; no carrier control");
                return None;
            }
        };
        let mut config = TwilioRestConfig::new(sid, token);
        if let Some(base) = &self.twilio_api_base {
            config.base_url = base.clone();
        }
        match TwilioRest::new(config, self.client.clone()) {
            Ok(rest) => Some(Arc::new(rest)),
            Err(err) => {
                warn!(%tenant, error = %err, "Twilio REST client not built; no carrier control");
                None
            }
        }
    }

    /// The secondaries of `settings.fallback_providers`; see the module docs.
    async fn backups(&self, tenant: TenantId, agent: &Agent) -> BackupProviders {
        let mut backup = BackupProviders::default();
        let Some(choices) = agent.settings.get("fallback_providers").filter(|v| v.is_object()) else {
            return backup;
        };
        let choice = |key: &str| -> Option<ProviderChoice> {
            let value = choices.get(key)?;
            match serde_json::from_value::<ProviderChoice>(value.clone()) {
                Ok(choice) => Some(choice),
                Err(err) => {
                    warn!(%tenant, agent_id = %agent.id, capability = key, error = %err, "fallback provider ignored: not a provider choice");
                    None
                }
            }
        };
        let report = |key: &str, err: &ProviderError| {
            warn!(%tenant, agent_id = %agent.id, capability = key, error = %err, "fallback provider cannot be built; left out");
        };
        if let Some(c) = choice("stt") {
            match self.stt(tenant, agent, &c).await {
                Ok(stt) => backup.stt = Some(stt),
                Err(err) => report("stt", &err),
            }
        }
        if let Some(c) = choice("tts") {
            match self.tts(tenant, agent, &c).await {
                Ok(tts) => backup.tts = Some(tts),
                Err(err) => report("tts", &err),
            }
        }
        if let Some(c) = choice("llm") {
            match self.llm(tenant, agent, &c).await {
                Ok(llm) => backup.agent = Some(llm),
                Err(err) => report("llm", &err),
            }
        }
        backup
    }
}

/// The [`LlmConfig`] of `agent` talking to `choice` (its primary or its
/// secondary LLM), with the agent's LLM timeouts applied.
fn llm_config(agent: &Agent, choice: &ProviderChoice, key: Option<SecretString>) -> Result<LlmConfig, ProviderError> {
    let timeouts = AgentTimeouts::from_settings(&agent.settings)?;
    let mut with_choice = agent.clone();
    with_choice.llm = choice.clone();
    let mut config = LlmConfig::from_agent_settings(&with_choice, key)?;
    if let Some(t) = timeouts.llm_first_output {
        config.first_token_timeout = t;
    }
    if let Some(t) = timeouts.llm_stall {
        config.stall_timeout = t;
    }
    if let Some(t) = timeouts.llm_request {
        config.request_timeout = t;
    }
    Ok(config)
}

/// The provider timeouts an agent sets in its `settings` (see the module
/// docs); `None` keeps the adapter's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AgentTimeouts {
    /// `settings.stt.timeout_ms`.
    stt: Option<Duration>,
    /// `settings.tts.timeout_ms`.
    tts: Option<Duration>,
    /// `settings.llm.timeout_ms`.
    llm_first_output: Option<Duration>,
    /// `settings.llm.stall_timeout_ms`.
    llm_stall: Option<Duration>,
    /// `settings.llm.request_timeout_ms`.
    llm_request: Option<Duration>,
}

impl AgentTimeouts {
    fn from_settings(settings: &serde_json::Value) -> Result<Self, ProviderError> {
        Ok(Self {
            stt: timeout_ms(settings, "stt", "timeout_ms")?,
            tts: timeout_ms(settings, "tts", "timeout_ms")?,
            llm_first_output: timeout_ms(settings, "llm", "timeout_ms")?,
            llm_stall: timeout_ms(settings, "llm", "stall_timeout_ms")?,
            llm_request: timeout_ms(settings, "llm", "request_timeout_ms")?,
        })
    }

    fn speech(&self, cap: Capability) -> Option<Duration> {
        match cap {
            Capability::Stt => self.stt,
            Capability::Tts => self.tts,
        }
    }
}

/// `settings.{section}.{key}` as a duration in milliseconds: absent or `null`
/// is `None`; anything but an integer from 1 to [`MAX_TIMEOUT_MS`] is a
/// `Config` error naming the key.
fn timeout_ms(
    settings: &serde_json::Value,
    section: &'static str,
    key: &str,
) -> Result<Option<Duration>, ProviderError> {
    let Some(value) = settings.get(section).and_then(|s| s.get(key)).filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    value
        .as_u64()
        .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
        .map(|ms| Some(Duration::from_millis(ms)))
        .ok_or_else(|| {
            ProviderError::new(
                section,
                ProviderErrorKind::Config(format!(
                    "settings.{section}.{key} must be an integer from 1 to {MAX_TIMEOUT_MS} (milliseconds)"
                )),
            )
        })
}

/// The chained agent of a realtime-mode call, which has none.
struct RealtimeOnly;

impl ConversationAgent for RealtimeOnly {
    fn respond(
        &self,
        _turn: crate::AgentTurn,
    ) -> futures::stream::BoxStream<'static, Result<crate::AgentOutput, ProviderError>> {
        Box::pin(futures::stream::iter([Err(ProviderError::new(
            "openai_realtime",
            ProviderErrorKind::Config("a realtime-mode call has no chained agent".into()),
        ))]))
    }
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn unsupported(capability: &'static str, provider: &str) -> ProviderError {
    ProviderError::new(
        capability,
        ProviderErrorKind::Config(format!(
            "{capability} provider {provider:?} is unknown or not supported yet"
        )),
    )
}

impl ProviderFactory for StandardProviders {
    fn for_call<'a>(
        &'a self,
        tenant: TenantId,
        agent: &'a Agent,
    ) -> BoxFuture<'a, Result<CallProviders, ProviderError>> {
        Box::pin(async move {
            let telephony = self.telephony(tenant).await;
            if agent.llm.provider == "openai_realtime" {
                // Speech-to-speech: the chained providers are not used.
                let realtime = self.realtime(tenant, agent).await?;
                debug!(%tenant, agent_id = %agent.id, model = %realtime.model, "built realtime call providers");
                return Ok(CallProviders {
                    stt: self.local_stt.clone(),
                    tts: self.local_tts.clone(),
                    agent: Arc::new(RealtimeOnly),
                    telephony,
                    context: Default::default(),
                    backup: BackupProviders::default(),
                    realtime: Some(realtime),
                });
            }
            // The agent first: it is local and the cheapest to reject.
            let agent_impl = self.llm(tenant, agent, &agent.llm).await?;
            let stt = self.stt(tenant, agent, &agent.stt).await?;
            let tts = self.tts(tenant, agent, &agent.tts).await?;
            debug!(
                %tenant,
                agent_id = %agent.id,
                stt = %agent.stt.provider,
                tts = %agent.tts.provider,
                llm = %agent.llm.provider,
                "built call providers"
            );
            Ok(CallProviders {
                stt,
                tts,
                agent: agent_impl,
                telephony,
                context: Default::default(),
                backup: self.backups(tenant, agent).await,
                realtime: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use switchboard_domain::{AgentId, Endpointing};

    use super::*;

    const SERVER: &str = "http://127.0.0.1:9/v1";

    fn agent(settings: serde_json::Value) -> Agent {
        let now = switchboard_domain::now();
        Agent {
            id: AgentId::new(),
            tenant_id: TenantId::new(),
            name: "timeouts".to_owned(),
            system_prompt: String::new(),
            greeting: String::new(),
            language: "en-US".to_owned(),
            voice: "default".to_owned(),
            stt: ProviderChoice::new("local"),
            tts: ProviderChoice::new("local"),
            llm: ProviderChoice::new("rules"),
            tools: Vec::new(),
            endpointing: Endpointing::default(),
            settings,
            enabled: true,
            created_at: now,
            updated_at: now,
        }
    }

    fn compatible() -> ProviderChoice {
        ProviderChoice {
            provider: "openai_compatible".to_owned(),
            model: Some("m".to_owned()),
            base_url: Some(SERVER.to_owned()),
        }
    }

    /// Google keys only: enough to build every adapter without the network.
    struct GoogleOnly;

    impl KeySource for GoogleOnly {
        fn openai_key(&self, _tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
            Box::pin(async { Ok(None) })
        }
        fn google_key(&self, _tenant: TenantId) -> BoxFuture<'_, Result<Option<SecretString>, ProviderError>> {
            Box::pin(async { Ok(Some(SecretString::from("AIza-test"))) })
        }
    }

    fn providers() -> StandardProviders {
        StandardProviders::new(StandardConfig {
            local: OpenAiSpeechConfig::local("http://127.0.0.1:9", 22_050),
            keys: Arc::new(GoogleOnly),
            twilio_api_base: None,
        })
        .expect("providers")
    }

    #[test]
    fn timeouts_are_read_in_milliseconds_and_absent_ones_stay_unset() {
        assert_eq!(
            AgentTimeouts::from_settings(&json!({})).expect("none"),
            AgentTimeouts::default()
        );
        let settings = json!({
            "stt": {"timeout_ms": 700},
            "tts": {"timeout_ms": 800},
            "llm": {"timeout_ms": 900, "stall_timeout_ms": 400, "request_timeout_ms": 5000, "temperature": 0.2},
        });
        assert_eq!(
            AgentTimeouts::from_settings(&settings).expect("valid"),
            AgentTimeouts {
                stt: Some(Duration::from_millis(700)),
                tts: Some(Duration::from_millis(800)),
                llm_first_output: Some(Duration::from_millis(900)),
                llm_stall: Some(Duration::from_millis(400)),
                llm_request: Some(Duration::from_millis(5000)),
            }
        );
        let nulls = json!({"stt": {"timeout_ms": null}, "tts": "not an object"});
        assert_eq!(
            AgentTimeouts::from_settings(&nulls).expect("null is absent"),
            AgentTimeouts::default()
        );
    }

    #[test]
    fn a_bad_timeout_is_a_config_error_naming_its_key() {
        for (settings, key) in [
            (json!({"stt": {"timeout_ms": 0}}), "settings.stt.timeout_ms"),
            (json!({"tts": {"timeout_ms": -5}}), "settings.tts.timeout_ms"),
            (json!({"llm": {"timeout_ms": "fast"}}), "settings.llm.timeout_ms"),
            (
                json!({"llm": {"stall_timeout_ms": 1.5}}),
                "settings.llm.stall_timeout_ms",
            ),
            (
                json!({"llm": {"request_timeout_ms": 600_001}}),
                "settings.llm.request_timeout_ms",
            ),
        ] {
            let err = AgentTimeouts::from_settings(&settings).expect_err(key);
            match &err.kind {
                ProviderErrorKind::Config(why) => assert!(why.contains(key), "{why}"),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn speech_timeouts_reach_the_adapter_configs_and_defaults_are_unchanged() {
        let p = providers();
        let tenant = TenantId::new();
        let none = AgentTimeouts::default();
        let set = AgentTimeouts::from_settings(&json!({"stt": {"timeout_ms": 700}, "tts": {"timeout_ms": 800}}))
            .expect("valid");

        let default_openai = OpenAiSpeechConfig::openai_compatible(SERVER, None).timeout;
        let stt = p
            .remote_config(tenant, Capability::Stt, &compatible(), &none)
            .await
            .expect("stt");
        assert_eq!(stt.timeout, default_openai);
        assert_eq!(stt.timeout, Duration::from_secs(30));
        let stt = p
            .remote_config(tenant, Capability::Stt, &compatible(), &set)
            .await
            .expect("stt");
        assert_eq!(stt.timeout, Duration::from_millis(700));
        let tts = p
            .remote_config(tenant, Capability::Tts, &compatible(), &set)
            .await
            .expect("tts");
        assert_eq!(tts.timeout, Duration::from_millis(800));

        let google = ProviderChoice::new("google");
        let default_google = GoogleSpeechConfig::speech_to_text(SecretString::from("k")).timeout;
        let stt = p
            .google_config(tenant, Capability::Stt, &google, &none)
            .await
            .expect("google stt");
        assert_eq!(stt.timeout, default_google);
        assert_eq!(stt.timeout, Duration::from_secs(15));
        let stt = p
            .google_config(tenant, Capability::Stt, &google, &set)
            .await
            .expect("google stt");
        assert_eq!(stt.timeout, Duration::from_millis(700));
        let tts = p
            .google_config(tenant, Capability::Tts, &google, &set)
            .await
            .expect("google tts");
        assert_eq!(tts.timeout, Duration::from_millis(800));

        assert!(
            p.local_override(Capability::Stt, &none).is_none(),
            "the shared local adapter serves"
        );
        let local = p.local_override(Capability::Tts, &set).expect("own local adapter");
        assert_eq!(local.timeout, Duration::from_millis(800));
        assert_eq!(local.base_url, "http://127.0.0.1:9/v1");
    }

    #[test]
    fn llm_timeouts_reach_the_llm_config_and_defaults_are_unchanged() {
        let default = LlmConfig::openai_compatible(SERVER, None, "m");
        let plain = llm_config(&agent(json!({})), &compatible(), None).expect("default");
        assert_eq!(
            (plain.first_token_timeout, plain.stall_timeout, plain.request_timeout),
            (
                default.first_token_timeout,
                default.stall_timeout,
                default.request_timeout
            )
        );
        assert_eq!(plain.first_token_timeout, Duration::from_secs(10));
        let tuned = agent(json!({"llm": {"timeout_ms": 900, "stall_timeout_ms": 400, "request_timeout_ms": 5000}}));
        let c = llm_config(&tuned, &compatible(), None).expect("tuned");
        assert_eq!(c.first_token_timeout, Duration::from_millis(900));
        assert_eq!(c.stall_timeout, Duration::from_millis(400));
        assert_eq!(c.request_timeout, Duration::from_millis(5000));
    }

    #[tokio::test]
    async fn a_bad_timeout_stops_the_call_from_starting() {
        let p = providers();
        let mut a = agent(json!({"tts": {"timeout_ms": "soon"}}));
        a.tts = compatible();
        let err = p.for_call(TenantId::new(), &a).await.expect_err("bad timeout");
        assert!(matches!(err.kind, ProviderErrorKind::Config(_)), "{err}");
        assert_eq!(err.provider, "tts");
    }
}
