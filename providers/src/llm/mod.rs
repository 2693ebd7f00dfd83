//! [`LlmAgent`]: the conversation agent backed by a chat-completions model
//! (OpenAI, Google Gemini's OpenAI-compatible endpoint, or any
//! OpenAI-compatible server), streaming over `async-openai`.
//!
//! One turn: the system prompt (plus the caller facts), the recent history
//! that fits the token budget (see [`context`]) and the caller's input go to
//! the model with `stream: true`; text deltas are yielded as
//! [`AgentOutput::Text`] the moment they arrive, so the caller can speak the
//! first sentence before the reply is done. When the model asks for tools,
//! each call runs through the turn's [`ToolHost`], is reported as
//! [`AgentOutput::ToolCall`], and its result goes back to the model in a new
//! request, for at most `max_tool_rounds` rounds.
//!
//! Guarantees:
//! - **Output order.** Text in arrival order; a filler line (`tool_filler`,
//!   at most once per turn) when a tool is still running after
//!   `tool_filler_after`, so the caller never hears dead air; each
//!   `ToolCall` once that tool finished; a tool's [`AgentAction`] only at the
//!   very end, after all text (the last one wins). Text of successive rounds
//!   and the filler are separated by a space.
//! - **Tools never fail the turn.** A tool the host does not offer gets an
//!   `unknown_tool` error result, a tool that runs past `tool_timeout` a
//!   `tool_timeout` one; errors go back to the model as the tool's result.
//!   On the last allowed round tools are offered with `tool_choice: none`, so
//!   the model must answer in words; tool calls it still makes are ignored.
//! - **Time is bounded.** Each request: `first_token_timeout` until the first
//!   model output, `stall_timeout` between chunks after that, and
//!   `request_timeout` for the whole request; tools: `tool_timeout` each.
//!   Any of them is a [`ProviderErrorKind::Timeout`].
//! - **Errors are typed.** HTTP status → `Status(code)` (429 →
//!   `RateLimited`, `insufficient_quota` included), unreadable chunks or
//!   over-long replies → `Malformed`, a stream that ends without a
//!   `finish_reason` → `Closed`, a connection cut mid-body → `Transport`.
//!   The error is the stream's last item and names the configured provider
//!   (`openai`, `google`, `openai_compatible`).
//! - **Retries are bounded, ours alone, and never repeat speech.**
//!   `async-openai`'s own retry layer is not installed ([`http_service`]): each
//!   request is sent once by the HTTP layer. A request that failed with 429
//!   (not `insufficient_quota`), 5xx, 408, a timeout or a transport failure
//!   is sent again, at most twice more ([`RETRY_POLICY`]), and only while
//!   the turn has yielded nothing (no text, filler or tool call). The wait
//!   before retry `n` (from 0) is a random point in `[½, 1] × 200 ms × 2^n`,
//!   or the server's `Retry-After` (429 and 503) when that is at most 2 s; a
//!   longer `Retry-After` ends the turn at once with that error
//!   (`RateLimited` for a 429), never waited out. All attempts and waits of
//!   one request fit in its `first_token_timeout`, counted from the first
//!   attempt: a retry's first output is due by the same deadline, a wait
//!   that would reach it is not begun, so a request that timed out waiting
//!   for its first output is not retried. A request that fails before the
//!   model's first output so fails the turn within `first_token_timeout`,
//!   however often and however long the server asks us to come back.
//! - **The key never leaks.** It is a [`SecretString`], sent only as
//!   `Authorization: Bearer` (no header at all without a key, and never the
//!   `OPENAI_API_KEY` environment variable), and `Debug` redacts it.
//! - Dropping the reply stream (barge-in) cancels the request and any running
//!   tool future at once: nothing runs on a task of its own.
//!
//! Per-agent tuning comes from the agent's `settings.llm` object; see
//! [`LlmConfig::with_settings`].

pub mod context;
pub mod http_service;
pub mod reply;

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use async_openai::Client;
use async_openai::error::{OpenAIError, StreamError};
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls, ChatCompletionRequestAssistantMessage,
    ChatCompletionRequestAssistantMessageContent, ChatCompletionRequestMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionTool, ChatCompletionToolChoiceOption, ChatCompletionTools,
    CreateChatCompletionRequest, FunctionCall, FunctionObject, ToolChoiceOptions,
};
use futures::SinkExt;
use futures::channel::mpsc;
use futures::future::{self, FutureExt};
use futures::stream::{self, BoxStream, StreamExt};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use switchboard_domain::Agent;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::capability::{AgentAction, AgentOutput, AgentTurn, ConversationAgent};
use crate::error::{ProviderError, ProviderErrorKind};
use crate::retry::RetryPolicy;
use crate::tools::{ToolHost, ToolResult, ToolSpec};

use self::http_service::{HttpService, Refusal};
use self::reply::{Reply, ToolCall};

/// How a request that failed before the turn yielded anything is retried:
/// three attempts in all, the waits jittered from 200 ms doubling, and a
/// server's `Retry-After` honoured up to `max_delay` (longer: no retry).
/// All of it within the request's `first_token_timeout`.
pub const RETRY_POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base_delay: Duration::from_millis(200),
    max_delay: Duration::from_secs(2),
};
/// Google's OpenAI-compatible Gemini endpoint.
pub const GEMINI_BASE_URL: &str = "https://generativelanguage.googleapis.com/v1beta/openai";
/// OpenAI's API root.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// Model used for `openai` when the agent names none.
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
/// Model used for `google` when the agent names none.
pub const DEFAULT_GEMINI_MODEL: &str = "gemini-2.5-flash";
/// Outputs buffered between the model and a slow reader of the reply.
const OUTPUT_BUFFER: usize = 16;
/// Longest server error message kept in a log line.
const MAX_LOGGED_ERROR: usize = 300;

/// How to reach the model and how to behave in a conversation.
#[derive(Clone)]
pub struct LlmConfig {
    /// Names the provider in errors and logs: `openai`, `google`, `openai_compatible`.
    pub provider: &'static str,
    /// API root including the version; `/chat/completions` is appended.
    pub base_url: String,
    /// Bearer token; `None` sends no `Authorization` header.
    pub api_key: Option<SecretString>,
    pub model: String,
    pub system_prompt: String,
    /// Token budget of each request's messages and tools (see [`context`]).
    pub max_context_tokens: usize,
    /// Cap on the reply's tokens (`max_completion_tokens` for OpenAI,
    /// `max_tokens` for other servers); `None` leaves it to the model.
    pub max_reply_tokens: Option<u32>,
    pub temperature: Option<f32>,
    /// Bound of one whole request, first byte to last chunk.
    pub request_timeout: Duration,
    /// Bound from sending a request to the model's first output.
    pub first_token_timeout: Duration,
    /// Bound between two chunks once the model has started.
    pub stall_timeout: Duration,
    /// Said once per turn when a tool is slow; empty disables it.
    pub tool_filler: String,
    /// How long a tool may run before the filler is said.
    pub tool_filler_after: Duration,
    /// Bound of one tool call; past it the model gets a `tool_timeout` error.
    pub tool_timeout: Duration,
    /// Requests that may carry tool results, after the first one.
    pub max_tool_rounds: u32,
}

impl LlmConfig {
    /// OpenAI itself at [`OPENAI_BASE_URL`].
    pub fn openai(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            provider: "openai",
            ..Self::openai_compatible(OPENAI_BASE_URL, Some(api_key), model)
        }
    }

    /// Google Gemini through its OpenAI-compatible endpoint [`GEMINI_BASE_URL`].
    pub fn gemini(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            provider: "google",
            ..Self::openai_compatible(GEMINI_BASE_URL, Some(api_key), model)
        }
    }

    /// Any server speaking OpenAI's chat API at `base_url` (with the version,
    /// e.g. `http://host:8000/v1`), with the default tuning.
    pub fn openai_compatible(base_url: &str, api_key: Option<SecretString>, model: impl Into<String>) -> Self {
        Self {
            provider: "openai_compatible",
            base_url: base_url.to_owned(),
            api_key,
            model: model.into(),
            system_prompt: String::new(),
            max_context_tokens: 8_000,
            max_reply_tokens: None,
            temperature: None,
            request_timeout: Duration::from_secs(60),
            first_token_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(10),
            tool_filler: "One moment please.".to_owned(),
            tool_filler_after: Duration::from_millis(800),
            tool_timeout: Duration::from_secs(20),
            max_tool_rounds: 3,
        }
    }

    /// The config for `agent`, whose `llm.provider` is `openai`, `google` or
    /// `openai_compatible`: its `llm.base_url` (required for
    /// `openai_compatible`, an override otherwise), `llm.model` (default
    /// [`DEFAULT_OPENAI_MODEL`] / [`DEFAULT_GEMINI_MODEL`], required for
    /// `openai_compatible`), its system prompt, and the tuning in
    /// `settings.llm` ([`Self::with_settings`]). `api_key` is required for
    /// `openai` and `google`.
    pub fn from_agent_settings(agent: &Agent, api_key: Option<SecretString>) -> Result<Self, ProviderError> {
        let choice = &agent.llm;
        let base_url = choice.base_url.as_deref().map(str::trim).filter(|b| !b.is_empty());
        let model = choice.model.as_deref().map(str::trim).filter(|m| !m.is_empty());
        let config_error =
            |provider: &'static str, why: String| ProviderError::new(provider, ProviderErrorKind::Config(why));
        let mut config = match choice.provider.as_str() {
            "openai" | "google" => {
                let (provider, default_model) = match choice.provider.as_str() {
                    "openai" => ("openai", DEFAULT_OPENAI_MODEL),
                    _ => ("google", DEFAULT_GEMINI_MODEL),
                };
                let key = api_key
                    .ok_or_else(|| config_error(provider, format!("llm provider {provider} needs an API key")))?;
                let model = model.unwrap_or(default_model);
                let mut config = if provider == "openai" {
                    Self::openai(key, model)
                } else {
                    Self::gemini(key, model)
                };
                if let Some(base) = base_url {
                    config.base_url = base.to_owned();
                }
                config
            }
            "openai_compatible" => {
                let provider = "openai_compatible";
                let base = base_url
                    .ok_or_else(|| config_error(provider, "llm provider openai_compatible needs a base_url".into()))?;
                let model = model
                    .ok_or_else(|| config_error(provider, "llm provider openai_compatible needs a model".into()))?;
                Self::openai_compatible(base, api_key, model)
            }
            other => {
                return Err(config_error(
                    "llm",
                    format!("llm provider {other:?} is not a chat-completions provider"),
                ));
            }
        };
        config.system_prompt = agent.system_prompt.clone();
        config.with_settings(&agent.settings)
    }

    /// Applies the optional tuning in `settings.llm` (an object; absent or
    /// `null` keys keep the current value):
    ///
    /// | key | type | sets |
    /// |---|---|---|
    /// | `max_context_tokens` | integer ≥ 1 | [`Self::max_context_tokens`] |
    /// | `max_reply_tokens` | integer ≥ 1 | [`Self::max_reply_tokens`] |
    /// | `temperature` | number in 0..=2 | [`Self::temperature`] |
    /// | `filler` | string (`""` = never) | [`Self::tool_filler`] |
    /// | `filler_after_ms` | integer | [`Self::tool_filler_after`] |
    /// | `max_tool_rounds` | integer ≤ 10 | [`Self::max_tool_rounds`] |
    ///
    /// A value of the wrong type or out of range is a `Config` error naming the key.
    pub fn with_settings(mut self, settings: &Value) -> Result<Self, ProviderError> {
        let Some(llm) = settings.get("llm").filter(|v| !v.is_null()) else {
            return Ok(self);
        };
        let provider = self.provider;
        let bad = |key: &str, want: &str| {
            ProviderError::new(
                provider,
                ProviderErrorKind::Config(format!("settings.llm.{key} must be {want}")),
            )
        };
        let llm = llm.as_object().ok_or_else(|| {
            ProviderError::new(
                provider,
                ProviderErrorKind::Config("settings.llm must be an object".into()),
            )
        })?;
        let field = |key: &str| llm.get(key).filter(|v| !v.is_null());
        let positive = |key: &str| -> Result<Option<u64>, ProviderError> {
            field(key)
                .map(|v| {
                    v.as_u64()
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| bad(key, "a positive integer"))
                })
                .transpose()
        };
        if let Some(n) = positive("max_context_tokens")? {
            self.max_context_tokens = usize::try_from(n).map_err(|_| bad("max_context_tokens", "smaller"))?;
        }
        if let Some(n) = positive("max_reply_tokens")? {
            self.max_reply_tokens = Some(u32::try_from(n).map_err(|_| bad("max_reply_tokens", "smaller"))?);
        }
        if let Some(v) = field("temperature") {
            let t = v
                .as_f64()
                .filter(|t| (0.0..=2.0).contains(t))
                .ok_or_else(|| bad("temperature", "a number from 0 to 2"))?;
            self.temperature = Some(t as f32);
        }
        if let Some(v) = field("filler") {
            self.tool_filler = v.as_str().ok_or_else(|| bad("filler", "a string"))?.trim().to_owned();
        }
        if let Some(v) = field("filler_after_ms") {
            let ms = v
                .as_u64()
                .ok_or_else(|| bad("filler_after_ms", "a non-negative integer"))?;
            self.tool_filler_after = Duration::from_millis(ms);
        }
        if let Some(v) = field("max_tool_rounds") {
            let n = v
                .as_u64()
                .filter(|n| *n <= 10)
                .ok_or_else(|| bad("max_tool_rounds", "an integer from 0 to 10"))?;
            self.max_tool_rounds = n as u32;
        }
        Ok(self)
    }
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("model", &self.model)
            .field("system_prompt_chars", &self.system_prompt.chars().count())
            .field("max_context_tokens", &self.max_context_tokens)
            .field("max_reply_tokens", &self.max_reply_tokens)
            .field("temperature", &self.temperature)
            .field("request_timeout", &self.request_timeout)
            .field("first_token_timeout", &self.first_token_timeout)
            .field("stall_timeout", &self.stall_timeout)
            .field("tool_filler", &self.tool_filler)
            .field("tool_filler_after", &self.tool_filler_after)
            .field("tool_timeout", &self.tool_timeout)
            .field("max_tool_rounds", &self.max_tool_rounds)
            .finish()
    }
}

/// The `async-openai` client configuration: our base URL and key, nothing
/// from the environment, and no `Authorization` header without a key.
#[derive(Clone)]
struct ApiConfig {
    api_base: String,
    api_key: Option<SecretString>,
    /// Returned by `api_key()` when there is none; never sent.
    no_key: SecretString,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl async_openai::config::Config for ApiConfig {
    fn headers(&self) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(key) = &self.api_key {
            // A key with bytes that cannot be in a header is sent as no key:
            // the server's 401 then says what is wrong, without echoing it.
            if let Ok(mut value) = http::HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())) {
                value.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, value);
            }
        }
        headers
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api_base)
    }

    fn query(&self) -> Vec<(&str, &str)> {
        Vec::new()
    }

    fn api_base(&self) -> &str {
        &self.api_base
    }

    fn api_key(&self) -> &SecretString {
        self.api_key.as_ref().unwrap_or(&self.no_key)
    }
}

/// The chat-completions conversation agent; see the module docs.
#[derive(Clone)]
pub struct LlmAgent {
    inner: Arc<Inner>,
}

struct Inner {
    config: LlmConfig,
    client: Client<ApiConfig>,
}

impl std::fmt::Debug for LlmAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmAgent").field("config", &self.inner.config).finish()
    }
}

impl LlmAgent {
    /// Checks the config (http(s) base URL, a model, a positive budget) and
    /// builds the client. No network I/O.
    pub fn new(config: LlmConfig) -> Result<Self, ProviderError> {
        let bad = |why: String| ProviderError::new(config.provider, ProviderErrorKind::Config(why));
        let base = config.base_url.trim().trim_end_matches('/').to_owned();
        let url = url::Url::parse(&base).map_err(|e| bad(format!("base_url {base:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad(format!(
                "base_url scheme must be http or https, not {}",
                url.scheme()
            )));
        }
        if config.model.trim().is_empty() {
            return Err(bad("model must not be empty".into()));
        }
        if config.max_context_tokens == 0 {
            return Err(bad("max_context_tokens must be positive".into()));
        }
        let http = reqwest013::Client::builder()
            .build()
            .map_err(|e| bad(format!("HTTP client: {e}")))?;
        let api = ApiConfig {
            api_base: base,
            api_key: config.api_key.clone(),
            no_key: SecretString::from(String::new()),
        };
        // Our service instead of the library's default one, which retries
        // inside with uncapped `Retry-After` waits (see [`http_service`]).
        let client = Client::build(http.clone(), api).with_http_service(HttpService::new(http));
        Ok(Self {
            inner: Arc::new(Inner { config, client }),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.inner.config
    }
}

impl ConversationAgent for LlmAgent {
    fn respond(&self, turn: AgentTurn) -> BoxStream<'static, Result<AgentOutput, ProviderError>> {
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = mpsc::channel(OUTPUT_BUFFER);
        // The producer runs inside the returned stream (polled together with
        // the receiver), so dropping the stream cancels the request and tools.
        let producer = async move {
            let mut out = Emitter::new(tx);
            if let Err(error) = inner.turn(turn, &mut out).await {
                warn!(provider = error.provider, %error, "llm turn failed");
                out.send(Err(error)).await;
            }
        };
        let driver = producer.into_stream().filter_map(|()| future::ready(None));
        stream::select(rx, driver).boxed()
    }
}

/// Sends outputs in order and remembers what went out.
struct Emitter {
    tx: mpsc::Sender<Result<AgentOutput, ProviderError>>,
    /// Anything at all was yielded this turn (no retry after that).
    emitted: bool,
    /// The last text sent did not end in whitespace.
    open_word: bool,
    /// Text from a new round or after the filler needs a separating space.
    gap: bool,
}

impl Emitter {
    fn new(tx: mpsc::Sender<Result<AgentOutput, ProviderError>>) -> Self {
        Self {
            tx,
            emitted: false,
            open_word: false,
            gap: false,
        }
    }

    async fn send(&mut self, item: Result<AgentOutput, ProviderError>) {
        self.emitted = true;
        // The receiver lives in the same stream as this producer; a failed
        // send means both are being dropped.
        let _ = self.tx.send(item).await;
    }

    async fn text(&mut self, mut text: String) {
        if text.is_empty() {
            return;
        }
        if self.gap && self.open_word && !text.starts_with(char::is_whitespace) {
            text.insert(0, ' ');
        }
        self.gap = false;
        self.open_word = !text.ends_with(char::is_whitespace);
        self.send(Ok(AgentOutput::Text(text))).await;
    }

    /// The next text belongs to a new sentence group (new round, filler).
    fn break_text(&mut self) {
        self.gap = true;
    }
}

impl Inner {
    fn err(&self, kind: ProviderErrorKind) -> ProviderError {
        ProviderError::new(self.config.provider, kind)
    }

    async fn turn(&self, turn: AgentTurn, out: &mut Emitter) -> Result<(), ProviderError> {
        let cfg = &self.config;
        let (host, specs) = match turn.context.tools.clone() {
            Some(host) => {
                let specs = host.specs();
                if specs.is_empty() {
                    (None, specs)
                } else {
                    (Some(host), specs)
                }
            }
            None => (None, Vec::new()),
        };
        let prompt = context::build_prompt(
            &cfg.system_prompt,
            &turn.context.facts,
            &turn.history,
            &turn.input,
            context::estimate_tool_tokens(&specs),
            cfg.max_context_tokens,
        );
        debug!(
            provider = cfg.provider,
            model = %cfg.model,
            dropped_history = prompt.dropped,
            estimated_tokens = prompt.estimated_tokens,
            tools = specs.len(),
            "llm turn"
        );
        let mut messages = prompt.messages;
        let mut filler_said = false;
        let mut action: Option<AgentAction> = None;

        for round in 0..=cfg.max_tool_rounds {
            let last_round = round == cfg.max_tool_rounds;
            let request = self.request(messages.clone(), &specs, last_round);
            out.break_text();
            let reply = self.round_with_retry(request, out).await?;
            let calls = reply
                .tool_calls()
                .map_err(|why| self.err(ProviderErrorKind::Malformed(why)))?;
            let Some(host) = host.as_ref().filter(|_| !calls.is_empty()) else {
                break;
            };
            if last_round {
                warn!(
                    provider = cfg.provider,
                    calls = calls.len(),
                    "model asked for tools after the last round; ignored"
                );
                break;
            }
            messages.push(assistant_tool_calls(reply.text(), &calls));
            for call in calls {
                let result = self.run_tool(host, &specs, &call, &mut filler_said, out).await;
                let content = result.content.to_string();
                out.send(Ok(AgentOutput::ToolCall {
                    name: call.name.clone(),
                    arguments: call.arguments.clone(),
                    result: content.clone(),
                }))
                .await;
                if let Some(a) = result.action {
                    action = Some(a);
                }
                messages.push(
                    ChatCompletionRequestToolMessage {
                        content: ChatCompletionRequestToolMessageContent::Text(content),
                        tool_call_id: call.id,
                    }
                    .into(),
                );
            }
        }
        if let Some(action) = action {
            out.send(Ok(AgentOutput::Action(action))).await;
        }
        Ok(())
    }

    fn request(
        &self,
        messages: Vec<ChatCompletionRequestMessage>,
        specs: &[ToolSpec],
        last_round: bool,
    ) -> CreateChatCompletionRequest {
        let cfg = &self.config;
        let mut request = CreateChatCompletionRequest {
            model: cfg.model.clone(),
            messages,
            stream: Some(true),
            temperature: cfg.temperature,
            ..Default::default()
        };
        if let Some(max) = cfg.max_reply_tokens {
            if cfg.provider == "openai" {
                request.max_completion_tokens = Some(max);
            } else {
                // Compatible servers (and Gemini) know the older name; OpenAI
                // deprecated it for its reasoning models only.
                #[allow(deprecated)]
                {
                    request.max_tokens = Some(max);
                }
            }
        }
        if !specs.is_empty() {
            request.tools = Some(specs.iter().map(tool_definition).collect());
            request.tool_choice = Some(ChatCompletionToolChoiceOption::Mode(if last_round {
                ToolChoiceOptions::None
            } else {
                ToolChoiceOptions::Auto
            }));
        }
        request
    }

    /// One request, retried per [`RETRY_POLICY`] while the turn has yielded
    /// nothing, every attempt and wait inside `first_token_timeout` from now.
    async fn round_with_retry(
        &self,
        request: CreateChatCompletionRequest,
        out: &mut Emitter,
    ) -> Result<Reply, ProviderError> {
        let policy = RETRY_POLICY;
        let first_output_by = Instant::now() + self.config.first_token_timeout;
        let mut attempt = 0;
        loop {
            let failed = match self.round(request.clone(), out, first_output_by).await {
                Ok(reply) => return Ok(reply),
                Err(failed) => failed,
            };
            let error = failed.error;
            attempt += 1;
            if out.emitted || !failed.retryable || attempt >= policy.max_attempts {
                return Err(error);
            }
            let wait = match failed.retry_after {
                Some(asked) if asked > policy.max_delay => {
                    warn!(provider = error.provider, %error, ?asked, "llm server asks for a longer pause than a live call waits; not retrying");
                    return Err(error);
                }
                Some(asked) => asked,
                None => jittered(policy.ceiling(attempt - 1)),
            };
            if Instant::now() + wait >= first_output_by {
                warn!(provider = error.provider, %error, ?wait, "no time left to retry the llm request");
                return Err(error);
            }
            warn!(provider = error.provider, %error, attempt, ?wait, "llm request failed before any output; retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// Sends one streaming request and speaks its text as it arrives. The
    /// model's first output is due by `first_output_by` at the latest.
    async fn round(
        &self,
        request: CreateChatCompletionRequest,
        out: &mut Emitter,
        first_output_by: Instant,
    ) -> Result<Reply, Failed> {
        let cfg = &self.config;
        let started = Instant::now();
        let whole = started + cfg.request_timeout;
        let first = (started + cfg.first_token_timeout).min(first_output_by).min(whole);
        let timeout = || self.err(ProviderErrorKind::Timeout);

        let mut chunks = tokio::time::timeout_at(first, self.client.chat().create_stream(request))
            .await
            .map_err(|_| timeout())?
            .map_err(|e| self.map_error(e))?;
        let mut reply = Reply::default();
        let mut started_output = false;
        loop {
            let deadline = if started_output {
                (Instant::now() + cfg.stall_timeout).min(whole)
            } else {
                first
            };
            let chunk = match tokio::time::timeout_at(deadline, chunks.next())
                .await
                .map_err(|_| timeout())?
            {
                None => return Err(self.err(ProviderErrorKind::Closed).into()),
                Some(Err(e)) => return Err(self.map_error(e)),
                Some(Ok(chunk)) => chunk,
            };
            let step = reply
                .apply(chunk)
                .map_err(|why| self.err(ProviderErrorKind::Malformed(why)))?;
            started_output |= step.progressed;
            if let Some(text) = step.text {
                out.text(text).await;
            }
            if reply.finished() {
                return Ok(reply);
            }
        }
    }

    /// Runs one tool call; never fails (errors become the tool's result).
    async fn run_tool(
        &self,
        host: &Arc<dyn ToolHost>,
        specs: &[ToolSpec],
        call: &ToolCall,
        filler_said: &mut bool,
        out: &mut Emitter,
    ) -> ToolResult {
        let cfg = &self.config;
        if !specs.iter().any(|s| s.name == call.name) {
            return ToolResult::error("unknown_tool", format!("there is no tool named {:?}", call.name));
        }
        let deadline = Instant::now() + cfg.tool_timeout;
        let mut running = host.call(call.name.clone(), call.arguments.clone());
        if !*filler_said && !cfg.tool_filler.is_empty() {
            let filler_at = (Instant::now() + cfg.tool_filler_after).min(deadline);
            match tokio::time::timeout_at(filler_at, &mut running).await {
                Ok(result) => return result,
                Err(_) => {
                    *filler_said = true;
                    out.break_text();
                    out.text(cfg.tool_filler.clone()).await;
                    out.break_text();
                }
            }
        }
        match tokio::time::timeout_at(deadline, running).await {
            Ok(result) => result,
            Err(_) => {
                warn!(provider = cfg.provider, tool = %call.name, "tool call timed out");
                ToolResult::error(
                    "tool_timeout",
                    format!("the tool did not finish within {} ms", cfg.tool_timeout.as_millis()),
                )
            }
        }
    }

    fn map_error(&self, error: OpenAIError) -> Failed {
        let kind = match error {
            OpenAIError::Boxed(boxed) => match boxed.downcast::<Refusal>() {
                Ok(refusal) => return self.refused(*refusal),
                Err(other) => ProviderErrorKind::Transport(error_chain(&*other)),
            },
            OpenAIError::ApiError(api) => {
                let status = api.status_code.as_u16();
                let message: String = api.api_error.message.chars().take(MAX_LOGGED_ERROR).collect();
                warn!(provider = self.config.provider, status, %message, "llm request refused");
                if status == 429 {
                    ProviderErrorKind::RateLimited
                } else {
                    ProviderErrorKind::Status(status)
                }
            }
            OpenAIError::Reqwest(e) if e.is_timeout() => ProviderErrorKind::Timeout,
            OpenAIError::Reqwest(e) => ProviderErrorKind::Transport(error_chain(&e)),
            OpenAIError::JSONDeserialize(e, _) => ProviderErrorKind::Malformed(e.to_string()),
            OpenAIError::StreamError(stream_error) => match *stream_error {
                StreamError::EventStream(why) => ProviderErrorKind::Transport(why),
                StreamError::UnknownEvent(_) => ProviderErrorKind::Malformed("unexpected SSE event".into()),
            },
            OpenAIError::InvalidArgument(why) => ProviderErrorKind::Config(why),
            other => ProviderErrorKind::Transport(other.to_string()),
        };
        self.err(kind).into()
    }

    /// A non-success status: typed, logged, and judged for a retry.
    fn refused(&self, refusal: Refusal) -> Failed {
        let message: String = refusal.message.chars().take(MAX_LOGGED_ERROR).collect();
        warn!(
            provider = self.config.provider,
            status = refusal.status,
            retry_after = ?refusal.retry_after,
            insufficient_quota = refusal.insufficient_quota,
            %message,
            "llm request refused"
        );
        let kind = if refusal.status == 429 {
            ProviderErrorKind::RateLimited
        } else {
            ProviderErrorKind::Status(refusal.status)
        };
        let error = self.err(kind);
        Failed {
            // Out of credit is a 429 no wait heals.
            retryable: error.is_retryable() && !refusal.insufficient_quota,
            retry_after: refusal.retry_after,
            error,
        }
    }
}

/// One failed request, and what it says about sending it again.
struct Failed {
    error: ProviderError,
    /// The server's `Retry-After` (429 and 503).
    retry_after: Option<Duration>,
    /// Sending the same request again may succeed.
    retryable: bool,
}

impl From<ProviderError> for Failed {
    fn from(error: ProviderError) -> Self {
        Self {
            retryable: error.is_retryable(),
            retry_after: None,
            error,
        }
    }
}

/// A random wait in `[ceiling / 2, ceiling]`, so calls that failed together
/// do not retry together. Std's per-instance random hasher keys are random
/// enough for that.
fn jittered(ceiling: Duration) -> Duration {
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
    let half = ceiling / 2;
    half + (ceiling - half).mul_f64(unit)
}

/// An error and its sources: reqwest's top line alone does not say whether
/// it was DNS, refusal or a reset.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        why.push_str(": ");
        why.push_str(&s.to_string());
        source = s.source();
    }
    why
}

fn tool_definition(spec: &ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: spec.name.clone(),
            description: (!spec.description.is_empty()).then(|| spec.description.clone()),
            parameters: Some(spec.parameters.clone()),
            strict: None,
        },
    })
}

/// The assistant message that asked for `calls`, as the model sent it.
fn assistant_tool_calls(text: &str, calls: &[ToolCall]) -> ChatCompletionRequestMessage {
    let tool_calls = calls
        .iter()
        .map(|call| {
            ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
                id: call.id.clone(),
                function: FunctionCall {
                    name: call.name.clone(),
                    // Servers reject an empty string where they expect JSON;
                    // a call without arguments is an empty object.
                    arguments: if call.arguments.trim().is_empty() {
                        "{}".to_owned()
                    } else {
                        call.arguments.clone()
                    },
                },
            })
        })
        .collect();
    ChatCompletionRequestAssistantMessage {
        content: (!text.is_empty()).then(|| ChatCompletionRequestAssistantMessageContent::Text(text.to_owned())),
        tool_calls: Some(tool_calls),
        ..Default::default()
    }
    .into()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn base() -> LlmConfig {
        LlmConfig::openai_compatible("http://127.0.0.1:1/v1", None, "m")
    }

    #[test]
    fn settings_tune_the_config() {
        let c = base()
            .with_settings(&json!({"llm": {
                "max_context_tokens": 500, "max_reply_tokens": 80, "temperature": 0.5,
                "filler": "Hold on.", "filler_after_ms": 300, "max_tool_rounds": 1,
            }}))
            .unwrap();
        assert_eq!(c.max_context_tokens, 500);
        assert_eq!(c.max_reply_tokens, Some(80));
        assert_eq!(c.temperature, Some(0.5));
        assert_eq!(c.tool_filler, "Hold on.");
        assert_eq!(c.tool_filler_after, Duration::from_millis(300));
        assert_eq!(c.max_tool_rounds, 1);
        // Absent settings keep the defaults.
        let d = base().with_settings(&json!({"rules": []})).unwrap();
        assert_eq!(d.max_context_tokens, base().max_context_tokens);
    }

    #[test]
    fn bad_settings_are_config_errors_naming_the_key() {
        for bad in [
            json!({"llm": {"max_context_tokens": 0}}),
            json!({"llm": {"temperature": 3}}),
            json!({"llm": {"filler": 1}}),
            json!({"llm": {"max_tool_rounds": 99}}),
            json!({"llm": "fast"}),
        ] {
            let e = base().with_settings(&bad).unwrap_err();
            assert!(matches!(e.kind, ProviderErrorKind::Config(_)), "{bad}: {e:?}");
        }
        let e = base()
            .with_settings(&json!({"llm": {"temperature": "hot"}}))
            .unwrap_err();
        assert_eq!(
            e.kind,
            ProviderErrorKind::Config("settings.llm.temperature must be a number from 0 to 2".into())
        );
    }

    #[test]
    fn debug_redacts_the_key() {
        let c = LlmConfig::openai(SecretString::from("sk-secret-123".to_owned()), "gpt");
        let printed = format!("{c:?} {:?}", LlmAgent::new(c.clone()).unwrap());
        assert!(!printed.contains("sk-secret-123"));
        assert!(printed.contains("[redacted]"));
    }

    #[test]
    fn constructors_point_at_the_right_servers() {
        let key = || SecretString::from("k".to_owned());
        assert_eq!(LlmConfig::openai(key(), "m").base_url, OPENAI_BASE_URL);
        let g = LlmConfig::gemini(key(), "gemini-2.5-flash");
        assert_eq!((g.provider, g.base_url.as_str()), ("google", GEMINI_BASE_URL));
        assert!(LlmAgent::new(LlmConfig::openai_compatible("ftp://x", None, "m")).is_err());
        assert!(LlmAgent::new(LlmConfig::openai_compatible("http://x/v1", None, " ")).is_err());
    }
}
