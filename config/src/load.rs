//! Loading [`Settings`] from layered sources.
//!
//! Every layer (defaults, `switchboard.toml`, `SWITCHBOARD__SECTION__KEY`
//! environment variables, CLI overrides) is flattened into dotted keys such as
//! `http.bind`; each key is parsed by its own typed parser and later layers
//! win. Guarantees:
//! - every bad or unknown key of every layer is reported, not just the first;
//! - an error names the key and the layer it came from, and never echoes the
//!   value of a sensitive key (secrets and URLs that may carry passwords);
//! - the environment is injected through [`ConfigSource`], so tests never
//!   touch the process environment.

use crate::secret::{SecretKey, SecretString};
use crate::settings::{LogFormat, Settings};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Prefix of environment variables that set keys: `SWITCHBOARD__HTTP__BIND` is `http.bind`.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";
/// Environment variable naming the config file (not itself a key).
pub const CONFIG_FILE_ENV: &str = "SWITCHBOARD_CONFIG";
/// File read from the working directory when no other file is named.
pub const DEFAULT_CONFIG_FILE: &str = "switchboard.toml";

/// Where settings come from. Production passes `std::env::vars()`; tests pass
/// exactly the variables they mean.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// The `--config` path. When `None`, `SWITCHBOARD_CONFIG` from `env` is
    /// used, else `./switchboard.toml` if it exists.
    pub file: Option<PathBuf>,
    /// Environment variables; only `SWITCHBOARD__*` and `SWITCHBOARD_CONFIG` are read.
    pub env: Vec<(String, String)>,
    /// CLI overrides as dotted keys, e.g. `("http.bind", "0.0.0.0:8080")`; applied last.
    pub overrides: Vec<(String, String)>,
}

impl ConfigSource {
    /// The process environment plus the given `--config` path and CLI overrides.
    pub fn from_process(file: Option<PathBuf>, overrides: Vec<(String, String)>) -> Self {
        Self {
            file,
            env: std::env::vars().collect(),
            overrides,
        }
    }
}

/// The layer a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// The config file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
    /// A command-line flag.
    CommandLine,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layer::File(path) => write!(f, "file {}", path.display()),
            Layer::Env(var) => write!(f, "env {var}"),
            Layer::CommandLine => f.write_str("command line"),
        }
    }
}

/// One bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The dotted key (`http.bind`), or empty when a whole file is unreadable.
    pub key: String,
    /// Where the bad value came from.
    pub source_layer: Layer,
    /// What is wrong, without the value when the key is sensitive.
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "({}): {}", self.source_layer, self.reason)
        } else {
            write!(f, "{} ({}): {}", self.key, self.source_layer, self.reason)
        }
    }
}

/// Every problem found while loading; never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// True when `key` is among the reported keys.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|e| e.key == key)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "invalid configuration ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The effective settings could not be rendered (`switchboard config`).
#[derive(Debug, thiserror::Error)]
#[error("cannot render settings as TOML: {0}")]
pub struct RenderError(String);

/// A value before typing: TOML gives typed scalars, env and flags give strings.
#[derive(Debug, Clone)]
enum Raw {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A TOML value of a kind no key accepts (float, array, date...); holds its type name.
    Other(&'static str),
}

impl Raw {
    fn from_toml(value: &toml::Value) -> Raw {
        match value {
            toml::Value::String(s) => Raw::Str(s.clone()),
            toml::Value::Integer(i) => Raw::Int(*i),
            toml::Value::Boolean(b) => Raw::Bool(*b),
            toml::Value::Float(_) => Raw::Other("a float"),
            toml::Value::Datetime(_) => Raw::Other("a datetime"),
            toml::Value::Array(_) => Raw::Other("an array"),
            toml::Value::Table(_) => Raw::Other("a table"),
        }
    }
}

type Setter = fn(&mut Settings, &Raw) -> Result<(), String>;

/// One known key: its name, whether its value may be a secret, and its parser.
struct KeySpec {
    key: &'static str,
    sensitive: bool,
    set: Setter,
}

const fn spec(key: &'static str, set: Setter) -> KeySpec {
    KeySpec {
        key,
        sensitive: false,
        set,
    }
}

const fn secret(key: &'static str, set: Setter) -> KeySpec {
    KeySpec {
        key,
        sensitive: true,
        set,
    }
}

/// Every key the loader accepts. Adding a field to [`Settings`] means adding it here.
const KEYS: &[KeySpec] = &[
    spec("http.bind", |s, v| {
        s.http.bind = socket_addr(v)?;
        Ok(())
    }),
    spec("http.public_base_url", |s, v| {
        s.http.public_base_url = public_base_url(v)?;
        Ok(())
    }),
    secret("database.url", |s, v| {
        s.database.url = database_url(v)?;
        Ok(())
    }),
    spec("database.max_connections", |s, v| {
        s.database.max_connections = positive_u32(v)?;
        Ok(())
    }),
    secret("redis.url", |s, v| {
        s.redis.url = redis_url(v)?;
        Ok(())
    }),
    spec("redis.key_prefix", |s, v| {
        s.redis.key_prefix = key_prefix(v)?;
        Ok(())
    }),
    spec("storage.data_dir", |s, v| {
        s.storage.data_dir = non_empty_path(v)?;
        Ok(())
    }),
    secret("security.encryption_key", |s, v| {
        let text = string(v)?;
        s.security.encryption_key = if text.trim().is_empty() {
            None
        } else {
            Some(SecretKey::parse_base64(&text).map_err(|e| e.to_string())?)
        };
        Ok(())
    }),
    secret("security.jwt_secret", |s, v| {
        s.security.jwt_secret = jwt_secret(v)?;
        Ok(())
    }),
    spec("security.access_token_ttl_secs", |s, v| {
        s.security.access_token_ttl = positive_secs(v)?;
        Ok(())
    }),
    spec("security.session_ttl_secs", |s, v| {
        s.security.session_ttl = positive_secs(v)?;
        Ok(())
    }),
    spec("security.cookie_secure", |s, v| {
        s.security.cookie_secure = boolean(v)?;
        Ok(())
    }),
    spec("limits.max_body_bytes", |s, v| {
        s.limits.max_body_bytes = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.max_ws_frame_bytes", |s, v| {
        s.limits.max_ws_frame_bytes = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.call_mailbox", |s, v| {
        s.limits.call_mailbox = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.conversation_mailbox", |s, v| {
        s.limits.conversation_mailbox = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.agent_session_mailbox", |s, v| {
        s.limits.agent_session_mailbox = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.supervisor_queue", |s, v| {
        s.limits.supervisor_queue = positive_usize(v)?;
        Ok(())
    }),
    spec("limits.login_per_minute", |s, v| {
        s.limits.login_per_minute = positive_u32(v)?;
        Ok(())
    }),
    spec("limits.webhook_per_second", |s, v| {
        s.limits.webhook_per_second = positive_u32(v)?;
        Ok(())
    }),
    spec("limits.request_timeout_secs", |s, v| {
        s.limits.request_timeout = positive_secs(v)?;
        Ok(())
    }),
    spec("shutdown.grace_period_secs", |s, v| {
        // Zero is allowed: end live calls at once.
        s.shutdown.grace_period = Duration::from_secs(unsigned(v)?);
        Ok(())
    }),
    spec("log.format", |s, v| {
        s.log.format = match string(v)?.trim().to_ascii_lowercase().as_str() {
            "pretty" => LogFormat::Pretty,
            "json" => LogFormat::Json,
            _ => return Err("must be `pretty` or `json`".to_owned()),
        };
        Ok(())
    }),
    spec("log.filter", |s, v| {
        let text = string(v)?;
        if text.trim().is_empty() {
            return Err("must not be empty (e.g. `info` or `info,switchboard=debug`)".to_owned());
        }
        s.log.filter = text.trim().to_owned();
        Ok(())
    }),
    spec("speech.base_url", |s, v| {
        s.speech.base_url = public_base_url(v)?;
        Ok(())
    }),
    spec("speech.autostart", |s, v| {
        s.speech.autostart = boolean(v)?;
        Ok(())
    }),
    spec("speech.command", |s, v| {
        s.speech.command = string(v)?.trim().to_owned();
        Ok(())
    }),
    spec("speech.tts_sample_rate", |s, v| {
        s.speech.tts_sample_rate = match positive_u32(v)? {
            rate @ (8_000 | 16_000 | 22_050 | 24_000 | 48_000) => rate,
            _ => return Err("must be one of 8000, 16000, 22050, 24000, 48000".to_owned()),
        };
        Ok(())
    }),
    spec("calls.stream_token_ttl_secs", |s, v| {
        s.calls.stream_token_ttl = positive_secs(v)?;
        Ok(())
    }),
    spec("calls.record", |s, v| {
        s.calls.record = boolean(v)?;
        Ok(())
    }),
    spec("notifications.from_email", |s, v| {
        let email = string(v)?;
        if !email.is_empty() && !email.contains('@') {
            return Err("must be an email address".to_owned());
        }
        s.notifications.from_email = Some(email).filter(|e| !e.is_empty());
        Ok(())
    }),
    secret("notifications.sendgrid_api_key", |s, v| {
        let key = string(v)?;
        s.notifications.sendgrid_api_key = (!key.is_empty()).then(|| SecretString::new(key));
        Ok(())
    }),
    spec("notifications.sendgrid_base_url", |s, v| {
        let url = string(v)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("must be an http(s) URL".to_owned());
        }
        s.notifications.sendgrid_base_url = url.trim_end_matches('/').to_owned();
        Ok(())
    }),
    spec("calls.twilio_api_base_url", |s, v| {
        let url = string(v)?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err("must be an http(s) URL".to_owned());
        }
        s.calls.twilio_api_base_url = url.trim_end_matches('/').to_owned();
        Ok(())
    }),
];

/// The dotted names of every accepted key, in documentation order.
pub fn known_keys() -> impl Iterator<Item = &'static str> {
    KEYS.iter().map(|k| k.key)
}

fn is_known(key: &str) -> bool {
    KEYS.iter().any(|k| k.key == key)
}

/// True when the key's value must never be echoed (secrets, URLs with passwords).
pub fn is_sensitive(key: &str) -> bool {
    KEYS.iter().any(|k| k.key == key && k.sensitive)
}

impl Settings {
    /// Build the effective settings from defaults and the layers of `source`.
    ///
    /// All bad keys of all layers are collected; the result is an error when
    /// any layer has one, even if a later layer sets the same key correctly,
    /// so a broken file never goes unnoticed.
    pub fn load(source: &ConfigSource) -> Result<Settings, ConfigErrors> {
        let mut settings = Settings::default();
        let mut errors = Vec::new();
        let mut entries: Vec<(String, Raw, Layer)> = Vec::new();

        if let Some(path) = config_file(source, &mut errors) {
            entries.extend(file_entries(&path, &mut errors));
        }
        entries.extend(env_entries(&source.env));
        entries.extend(
            source
                .overrides
                .iter()
                .map(|(k, v)| (k.trim().to_owned(), Raw::Str(v.clone()), Layer::CommandLine)),
        );

        for (key, raw, layer) in entries {
            apply(&mut settings, &key, &raw, layer, &mut errors);
        }
        if errors.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The settings as TOML with every secret shown as `[REDACTED]`, for
    /// `switchboard config`. Unset secrets are listed as comments.
    pub fn redacted_toml(&self) -> Result<String, RenderError> {
        let mut table = toml::Table::try_from(self).map_err(|e| RenderError(e.to_string()))?;
        // Durations serialize under their field name (`grace_period`); print the
        // key the loader reads (`grace_period_secs`) so the output is a valid config file.
        for (section, value) in table.iter_mut() {
            if let toml::Value::Table(keys) = value {
                let renames: Vec<String> = keys
                    .keys()
                    .filter(|k| !is_known(&format!("{section}.{k}")) && is_known(&format!("{section}.{k}_secs")))
                    .cloned()
                    .collect();
                for key in renames {
                    if let Some(v) = keys.remove(&key) {
                        keys.insert(format!("{key}_secs"), v);
                    }
                }
            }
        }
        let mut out = toml::to_string_pretty(&table).map_err(|e| RenderError(e.to_string()))?;
        let secrets_dir = self.storage.data_dir.join("secrets");
        if self.security.encryption_key.is_none() {
            out.push_str(&format!(
                "# security.encryption_key is unset: generated in {}\n",
                secrets_dir.join("encryption.key").display()
            ));
        }
        if self.security.jwt_secret.is_none() {
            out.push_str(&format!(
                "# security.jwt_secret is unset: generated in {}\n",
                secrets_dir.join("jwt.secret").display()
            ));
        }
        Ok(out)
    }
}

fn apply(settings: &mut Settings, key: &str, raw: &Raw, layer: Layer, errors: &mut Vec<ConfigError>) {
    let Some(spec) = KEYS.iter().find(|k| k.key == key) else {
        errors.push(ConfigError {
            key: key.to_owned(),
            source_layer: layer,
            reason: unknown_key_reason(key),
        });
        return;
    };
    if let Err(reason) = (spec.set)(settings, raw) {
        let reason = if spec.sensitive {
            reason
        } else {
            match raw {
                Raw::Str(s) => format!("{reason} (got `{}`)", shorten(s)),
                Raw::Int(i) => format!("{reason} (got {i})"),
                Raw::Bool(b) => format!("{reason} (got {b})"),
                Raw::Other(_) => reason,
            }
        };
        errors.push(ConfigError {
            key: key.to_owned(),
            source_layer: layer,
            reason,
        });
    }
}

fn unknown_key_reason(key: &str) -> String {
    let section = key.split('.').next().unwrap_or_default();
    let in_section: Vec<&str> = KEYS
        .iter()
        .filter(|k| k.key.split('.').next() == Some(section))
        .map(|k| k.key)
        .collect();
    if in_section.is_empty() {
        "unknown key (sections are http, database, redis, storage, security, limits, shutdown, log, speech, calls)"
            .to_owned()
    } else {
        format!("unknown key (known in [{section}]: {})", in_section.join(", "))
    }
}

fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// The file to read: `--config`, else `SWITCHBOARD_CONFIG`, else `./switchboard.toml` if present.
fn config_file(source: &ConfigSource, errors: &mut Vec<ConfigError>) -> Option<PathBuf> {
    let named = source.file.clone().map(|p| (p, Layer::CommandLine)).or_else(|| {
        source
            .env
            .iter()
            .find(|(k, v)| k == CONFIG_FILE_ENV && !v.trim().is_empty())
            .map(|(_, v)| (PathBuf::from(v.trim()), Layer::Env(CONFIG_FILE_ENV.to_owned())))
    });
    match named {
        Some((path, layer)) => {
            if path.is_file() {
                Some(path)
            } else {
                errors.push(ConfigError {
                    key: String::new(),
                    source_layer: layer,
                    reason: format!("config file {} does not exist", path.display()),
                });
                None
            }
        }
        None => {
            let default = PathBuf::from(DEFAULT_CONFIG_FILE);
            default.is_file().then_some(default)
        }
    }
}

fn file_entries(path: &Path, errors: &mut Vec<ConfigError>) -> Vec<(String, Raw, Layer)> {
    let layer = Layer::File(path.to_path_buf());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) => {
            errors.push(ConfigError {
                key: String::new(),
                source_layer: layer,
                reason: format!("cannot read: {e}"),
            });
            return Vec::new();
        }
    };
    let table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        Err(e) => {
            // Only the message and position: the snippet toml would print may hold a secret.
            let at = e
                .span()
                .map(|span| line_col(&text, span.start))
                .map(|(l, c)| format!(" at line {l}, column {c}"));
            errors.push(ConfigError {
                key: String::new(),
                source_layer: layer,
                reason: format!("invalid TOML{}: {}", at.unwrap_or_default(), e.message().trim()),
            });
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for (section, value) in table {
        match value {
            toml::Value::Table(keys) => {
                for (key, value) in keys {
                    entries.push((format!("{section}.{key}"), Raw::from_toml(&value), layer.clone()));
                }
            }
            // A top-level scalar is not a key we know; report it by name.
            other => entries.push((section, Raw::from_toml(&other), layer.clone())),
        }
    }
    entries
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `SWITCHBOARD__SECTION__KEY=value` → `("section.key", value)`, case-insensitively.
fn env_entries(env: &[(String, String)]) -> Vec<(String, Raw, Layer)> {
    let mut entries: Vec<(String, Raw, Layer)> = env
        .iter()
        .filter_map(|(name, value)| {
            let rest = name
                .get(..ENV_PREFIX.len())
                .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))?;
            let key = name[rest.len()..]
                .split("__")
                .collect::<Vec<_>>()
                .join(".")
                .to_ascii_lowercase();
            Some((key, Raw::Str(value.clone()), Layer::Env(name.clone())))
        })
        .collect();
    // The process environment has no order; sort so errors and precedence are deterministic.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries
}

fn string(v: &Raw) -> Result<String, String> {
    match v {
        Raw::Str(s) => Ok(s.clone()),
        Raw::Int(_) => Err("expected a string, got an integer".to_owned()),
        Raw::Bool(_) => Err("expected a string, got a boolean".to_owned()),
        Raw::Other(kind) => Err(format!("expected a string, got {kind}")),
    }
}

fn unsigned(v: &Raw) -> Result<u64, String> {
    const EXPECTED: &str = "expected a whole non-negative number";
    match v {
        Raw::Int(i) => u64::try_from(*i).map_err(|_| EXPECTED.to_owned()),
        Raw::Str(s) => s.trim().parse::<u64>().map_err(|_| EXPECTED.to_owned()),
        Raw::Bool(_) => Err(format!("{EXPECTED}, got a boolean")),
        Raw::Other(kind) => Err(format!("{EXPECTED}, got {kind}")),
    }
}

fn positive_u64(v: &Raw) -> Result<u64, String> {
    match unsigned(v)? {
        0 => Err("must be greater than 0".to_owned()),
        n => Ok(n),
    }
}

fn positive_u32(v: &Raw) -> Result<u32, String> {
    u32::try_from(positive_u64(v)?).map_err(|_| format!("must be at most {}", u32::MAX))
}

fn positive_usize(v: &Raw) -> Result<usize, String> {
    usize::try_from(positive_u64(v)?).map_err(|_| "too large".to_owned())
}

fn positive_secs(v: &Raw) -> Result<Duration, String> {
    positive_u64(v)
        .map(Duration::from_secs)
        .map_err(|e| format!("{e} (whole seconds)"))
}

fn boolean(v: &Raw) -> Result<bool, String> {
    const EXPECTED: &str = "expected true or false";
    match v {
        Raw::Bool(b) => Ok(*b),
        Raw::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(EXPECTED.to_owned()),
        },
        _ => Err(EXPECTED.to_owned()),
    }
}

fn socket_addr(v: &Raw) -> Result<SocketAddr, String> {
    string(v)?
        .trim()
        .parse()
        .map_err(|_| "expected a socket address like 0.0.0.0:8080".to_owned())
}

fn public_base_url(v: &Raw) -> Result<String, String> {
    const EXPECTED: &str = "expected an http:// or https:// URL such as https://voice.example.com";
    let text = string(v)?;
    let url = text.trim();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or(EXPECTED)?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || rest.contains(['?', '#']) || rest.chars().any(char::is_whitespace) {
        return Err(EXPECTED.to_owned());
    }
    // Callers append paths (`/twilio/stream`); one trailing slash would double up.
    Ok(url.strip_suffix('/').unwrap_or(url).to_owned())
}

fn database_url(v: &Raw) -> Result<String, String> {
    let text = string(v)?;
    let url = text.trim();
    let ok = url.is_empty()
        || url.starts_with("sqlite:")
        || (url.len() > "postgres://".len() && url.starts_with("postgres://"))
        || (url.len() > "postgresql://".len() && url.starts_with("postgresql://"));
    if ok {
        Ok(url.to_owned())
    } else {
        Err(
            "expected sqlite://PATH, postgres://... or postgresql://... (or empty for SQLite in the data dir)"
                .to_owned(),
        )
    }
}

fn redis_url(v: &Raw) -> Result<String, String> {
    let text = string(v)?;
    let url = text.trim();
    let ok = url.is_empty()
        || (url.len() > "redis://".len() && url.starts_with("redis://"))
        || (url.len() > "rediss://".len() && url.starts_with("rediss://"));
    if ok {
        Ok(url.to_owned())
    } else {
        Err("expected redis://... or rediss://... (or empty for the in-process bus)".to_owned())
    }
}

fn key_prefix(v: &Raw) -> Result<String, String> {
    let text = string(v)?;
    let prefix = text.trim();
    // The bus accepts exactly these names for keys and channels.
    let valid = prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if prefix.is_empty() || prefix.len() > 128 || !valid {
        return Err("must be 1 to 128 ASCII letters, digits, `_`, `-` or `.`".to_owned());
    }
    Ok(prefix.to_owned())
}

fn non_empty_path(v: &Raw) -> Result<PathBuf, String> {
    let text = string(v)?;
    if text.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    Ok(PathBuf::from(text.trim()))
}

/// Shortest accepted JWT secret: HS256 keys shorter than the hash add no strength.
const MIN_JWT_SECRET_LEN: usize = 32;

fn jwt_secret(v: &Raw) -> Result<Option<SecretString>, String> {
    let text = string(v)?;
    if text.is_empty() {
        return Ok(None);
    }
    if text.len() < MIN_JWT_SECRET_LEN {
        return Err(format!(
            "must be at least {MIN_JWT_SECRET_LEN} bytes (e.g. `openssl rand -base64 32`)"
        ));
    }
    Ok(Some(SecretString::new(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    const KEY_B64: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn file(contents: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().expect("temp file");
        f.write_all(contents.as_bytes()).expect("write");
        f
    }

    fn load(source: ConfigSource) -> Result<Settings, ConfigErrors> {
        Settings::load(&source)
    }

    #[test]
    fn no_layers_gives_defaults() {
        let s = load(ConfigSource::default()).expect("defaults load");
        let d = Settings::default();
        assert_eq!(s.http.bind, d.http.bind);
        assert_eq!(s.database.url, "");
        assert!(s.security.encryption_key.is_none());
    }

    #[test]
    fn each_layer_overrides_the_previous() {
        let f = file(
            "[http]\nbind = \"127.0.0.1:1111\"\npublic_base_url = \"https://file.example\"\n\
             [limits]\ncall_mailbox = 7\nlogin_per_minute = 3\n",
        );
        let source = ConfigSource {
            file: Some(f.path().to_path_buf()),
            env: env(&[
                ("SWITCHBOARD__HTTP__BIND", "127.0.0.1:2222"),
                ("SWITCHBOARD__LIMITS__CALL_MAILBOX", "8"),
            ]),
            overrides: vec![("http.bind".into(), "127.0.0.1:3333".into())],
        };
        let s = load(source).expect("loads");
        assert_eq!(s.http.bind.port(), 3333, "flag beats env and file");
        assert_eq!(s.limits.call_mailbox, 8, "env beats file");
        assert_eq!(s.http.public_base_url, "https://file.example", "file beats default");
        assert_eq!(s.limits.login_per_minute, 3);
        assert_eq!(
            s.limits.conversation_mailbox,
            Settings::default().limits.conversation_mailbox
        );
    }

    #[test]
    fn env_names_are_case_insensitive_and_typed() {
        let source = ConfigSource {
            env: env(&[
                ("switchboard__database__url", "postgres://u:p@db/x"),
                ("SWITCHBOARD__Security__Cookie_Secure", "false"),
                ("SWITCHBOARD__SHUTDOWN__GRACE_PERIOD_SECS", "0"),
                ("SWITCHBOARD__SECURITY__SESSION_TTL_SECS", "60"),
                ("SWITCHBOARD__SECURITY__ENCRYPTION_KEY", KEY_B64),
                ("SWITCHBOARD__LOG__FORMAT", "JSON"),
                ("SWITCHBOARD_TEST_POSTGRES_URL", "ignored: not a key"),
                ("PATH", "/usr/bin"),
            ]),
            ..Default::default()
        };
        let s = load(source).expect("loads");
        assert_eq!(s.database.url, "postgres://u:p@db/x");
        assert!(!s.security.cookie_secure);
        assert_eq!(s.shutdown.grace_period, Duration::ZERO);
        assert_eq!(s.security.session_ttl, Duration::from_secs(60));
        assert_eq!(s.security.encryption_key.as_ref().map(|k| k.expose()[31]), Some(31));
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn config_file_named_by_env_is_read_and_is_not_a_key() {
        let f = file("[redis]\nurl = \"redis://cache:6379\"\nkey_prefix = \"sb1\"\n");
        let source = ConfigSource {
            env: env(&[(CONFIG_FILE_ENV, &f.path().display().to_string())]),
            ..Default::default()
        };
        let s = load(source).expect("loads");
        assert_eq!(s.redis_url(), Some("redis://cache:6379"));
        assert_eq!(s.redis.key_prefix, "sb1");
    }

    #[test]
    fn explicitly_named_missing_file_is_an_error() {
        let err = load(ConfigSource {
            file: Some("/nonexistent/sb.toml".into()),
            ..Default::default()
        })
        .expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/sb.toml"), "{err}");
        let err = load(ConfigSource {
            env: env(&[(CONFIG_FILE_ENV, "/nonexistent/x.toml")]),
            ..Default::default()
        })
        .expect_err("missing file from env");
        assert_eq!(err.0[0].source_layer, Layer::Env(CONFIG_FILE_ENV.into()));
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let f = file("[http]\nbind = \"nope\"\n[limits]\nmax_body_bytes = 0\ncall_mailbox = 1.5\n");
        let source = ConfigSource {
            file: Some(f.path().to_path_buf()),
            env: env(&[
                ("SWITCHBOARD__HTTP__PUBLIC_BASE_URL", "ftp://x"),
                ("SWITCHBOARD__DATABASE__URL", "mysql://root:hunter2@db"),
                ("SWITCHBOARD__REDIS__URL", "http://cache"),
                ("SWITCHBOARD__SECURITY__SESSION_TTL_SECS", "30s"),
                ("SWITCHBOARD__LOG__FORMAT", "xml"),
            ]),
            overrides: vec![("database.max_connections".into(), "-1".into())],
        };
        let err = load(source).expect_err("bad config");
        for key in [
            "http.bind",
            "limits.max_body_bytes",
            "limits.call_mailbox",
            "http.public_base_url",
            "database.url",
            "redis.url",
            "security.session_ttl_secs",
            "log.format",
            "database.max_connections",
        ] {
            assert!(err.mentions(key), "{key} missing from:\n{err}");
        }
        assert_eq!(err.0.len(), 9, "{err}");
        let text = err.to_string();
        assert_eq!(text.lines().count(), 10, "header plus one line per problem:\n{text}");
        assert!(text.contains("env SWITCHBOARD__LOG__FORMAT"), "{text}");
        assert!(text.contains(&format!("file {}", f.path().display())), "{text}");
        assert!(!text.contains("hunter2"), "database URL password echoed:\n{text}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let f = file("[http]\nbindd = \"127.0.0.1:1\"\n[nope]\nx = 1\ntop = 3\n");
        let source = ConfigSource {
            file: Some(f.path().to_path_buf()),
            env: env(&[("SWITCHBOARD__HTTP", "x"), ("SWITCHBOARD__LOG__LEVEL", "debug")]),
            overrides: vec![("http.port".into(), "1".into())],
        };
        let err = load(source).expect_err("unknown keys");
        for key in ["http.bindd", "nope.x", "nope.top", "http", "log.level", "http.port"] {
            assert!(err.mentions(key), "{key} missing from:\n{err}");
        }
        assert!(err.to_string().contains("known in [http]: http.bind"), "{err}");
    }

    #[test]
    fn public_base_url_loses_one_trailing_slash() {
        let source = ConfigSource {
            overrides: vec![("http.public_base_url".into(), "https://voice.example.com/".into())],
            ..Default::default()
        };
        assert_eq!(
            load(source).expect("loads").http.public_base_url,
            "https://voice.example.com"
        );
        for bad in ["https://", "voice.example.com", "https://a b", "https://x/?q=1"] {
            let source = ConfigSource {
                overrides: vec![("http.public_base_url".into(), bad.into())],
                ..Default::default()
            };
            assert!(load(source).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn database_and_redis_url_forms() {
        for ok in [
            "",
            "sqlite://data/x.db?mode=rwc",
            "sqlite::memory:",
            "postgres://h/db",
            "postgresql://h/db",
        ] {
            let source = ConfigSource {
                overrides: vec![("database.url".into(), ok.into())],
                ..Default::default()
            };
            assert!(load(source).is_ok(), "{ok} rejected");
        }
        for ok in ["", "redis://127.0.0.1:6379", "rediss://cache"] {
            let source = ConfigSource {
                overrides: vec![("redis.url".into(), ok.into())],
                ..Default::default()
            };
            assert!(load(source).is_ok(), "{ok} rejected");
        }
        let source = ConfigSource {
            overrides: vec![("redis.url".into(), "redis://".into())],
            ..Default::default()
        };
        assert!(load(source).is_err());
        for bad in ["", "a b", "sb:x", "sb/x"] {
            let source = ConfigSource {
                overrides: vec![("redis.key_prefix".into(), bad.into())],
                ..Default::default()
            };
            assert!(load(source).is_err(), "{bad:?} accepted as key prefix");
        }
    }

    #[test]
    fn bad_secrets_are_reported_without_their_value() {
        let source = ConfigSource {
            env: env(&[
                ("SWITCHBOARD__SECURITY__ENCRYPTION_KEY", "c2hvcnQtc2VjcmV0LXZhbHVl"),
                ("SWITCHBOARD__SECURITY__JWT_SECRET", "tiny-jwt-secret"),
            ]),
            ..Default::default()
        };
        let err = load(source).expect_err("bad secrets");
        assert!(err.mentions("security.encryption_key") && err.mentions("security.jwt_secret"));
        let text = format!("{err}\n{err:?}");
        assert!(
            !text.contains("c2hvcnQtc2VjcmV0LXZhbHVl") && !text.contains("tiny-jwt-secret"),
            "{text}"
        );
    }

    #[test]
    fn invalid_toml_does_not_echo_the_line() {
        let f = file("[security]\njwt_secret = \"an-unterminated-super-secret-value\n");
        let err = load(ConfigSource {
            file: Some(f.path().to_path_buf()),
            ..Default::default()
        })
        .expect_err("bad toml");
        let text = err.to_string();
        assert!(text.contains("invalid TOML at line 2"), "{text}");
        assert!(!text.contains("super-secret"), "{text}");
    }

    #[test]
    fn secrets_never_print() {
        let jwt = "jwt-secret-that-is-long-enough-0123456789";
        let source = ConfigSource {
            env: env(&[
                ("SWITCHBOARD__SECURITY__ENCRYPTION_KEY", KEY_B64),
                ("SWITCHBOARD__SECURITY__JWT_SECRET", jwt),
            ]),
            ..Default::default()
        };
        let s = load(source).expect("loads");
        assert_eq!(s.security.jwt_secret.as_ref().map(SecretString::expose), Some(jwt));
        let rendered = s.redacted_toml().expect("renders");
        let debug = format!("{s:?}");
        for text in [&rendered, &debug] {
            assert!(!text.contains(jwt) && !text.contains(KEY_B64), "secret leaked:\n{text}");
            assert!(text.contains("[REDACTED]"), "{text}");
        }
        assert!(rendered.contains("encryption_key = \"[REDACTED]\""), "{rendered}");
        assert!(rendered.contains("grace_period_secs = 30"), "{rendered}");
    }

    #[test]
    fn redacted_toml_notes_unset_secrets() {
        let rendered = Settings::default().redacted_toml().expect("renders");
        assert!(rendered.contains("# security.encryption_key is unset"), "{rendered}");
        assert!(rendered.contains("# security.jwt_secret is unset"), "{rendered}");
        assert!(rendered.contains("[http]"), "{rendered}");
    }

    #[test]
    fn redacted_output_without_secrets_is_a_valid_config_file() {
        let mut original = Settings::default();
        original.http.bind = "0.0.0.0:9999".parse().expect("addr");
        original.shutdown.grace_period = Duration::from_secs(3);
        original.limits.request_timeout = Duration::from_secs(4);
        original.log.format = LogFormat::Json;
        let f = file(&original.redacted_toml().expect("renders"));
        let reloaded = load(ConfigSource {
            file: Some(f.path().to_path_buf()),
            ..Default::default()
        })
        .expect("rendered config loads back");
        assert_eq!(reloaded.http.bind, original.http.bind);
        assert_eq!(reloaded.shutdown.grace_period, Duration::from_secs(3));
        assert_eq!(reloaded.limits.request_timeout, Duration::from_secs(4));
        assert_eq!(reloaded.security.access_token_ttl, original.security.access_token_ttl);
        assert_eq!(reloaded.log.format, LogFormat::Json);
    }

    #[test]
    fn every_known_key_round_trips_from_env() {
        // Guards the key table: each documented key must be settable via env.
        let values = [
            ("http.bind", "0.0.0.0:9"),
            ("http.public_base_url", "http://h"),
            ("database.url", "sqlite://x.db"),
            ("database.max_connections", "2"),
            ("redis.url", "redis://h"),
            ("redis.key_prefix", "p"),
            ("storage.data_dir", "/tmp/d"),
            ("security.encryption_key", KEY_B64),
            ("security.jwt_secret", "0123456789abcdef0123456789abcdef"),
            ("security.access_token_ttl_secs", "1"),
            ("security.session_ttl_secs", "1"),
            ("security.cookie_secure", "no"),
            ("limits.max_body_bytes", "1"),
            ("limits.max_ws_frame_bytes", "1"),
            ("limits.call_mailbox", "1"),
            ("limits.conversation_mailbox", "1"),
            ("limits.agent_session_mailbox", "1"),
            ("limits.supervisor_queue", "1"),
            ("limits.login_per_minute", "1"),
            ("limits.webhook_per_second", "1"),
            ("limits.request_timeout_secs", "1"),
            ("shutdown.grace_period_secs", "1"),
            ("log.format", "json"),
            ("log.filter", "debug"),
            ("speech.base_url", "http://127.0.0.1:9"),
            ("speech.autostart", "false"),
            ("speech.command", "/bin/speech --flag"),
            ("speech.tts_sample_rate", "24000"),
            ("calls.stream_token_ttl_secs", "7"),
            ("calls.record", "false"),
            ("calls.twilio_api_base_url", "http://127.0.0.1:9/"),
            ("notifications.from_email", "calls@example.com"),
            ("notifications.sendgrid_api_key", "SG.test-key"),
            ("notifications.sendgrid_base_url", "http://127.0.0.1:8/"),
        ];
        assert_eq!(values.len(), known_keys().count());
        let env: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| {
                (
                    format!("{ENV_PREFIX}{}", k.replace('.', "__").to_ascii_uppercase()),
                    (*v).to_owned(),
                )
            })
            .collect();
        let s = load(ConfigSource {
            env,
            ..Default::default()
        })
        .expect("loads");
        assert_eq!(s.http.bind.port(), 9);
        assert_eq!(s.database.max_connections, 2);
        assert_eq!(s.storage.data_dir, PathBuf::from("/tmp/d"));
        assert_eq!(s.limits.request_timeout, Duration::from_secs(1));
        assert_eq!(s.log.filter, "debug");
        assert_eq!(s.speech.base_url, "http://127.0.0.1:9");
        assert!(!s.speech.autostart);
        assert_eq!(s.speech.command, "/bin/speech --flag");
        assert_eq!(s.speech.tts_sample_rate, 24_000);
        assert_eq!(s.calls.stream_token_ttl, Duration::from_secs(7));
        assert!(!s.calls.record);
        assert_eq!(s.calls.twilio_api_base_url, "http://127.0.0.1:9");
        assert_eq!(s.notifications.from_email.as_deref(), Some("calls@example.com"));
        assert_eq!(
            s.notifications.sendgrid_api_key.as_ref().map(|k| k.expose().to_owned()),
            Some("SG.test-key".to_owned())
        );
        assert_eq!(s.notifications.sendgrid_base_url, "http://127.0.0.1:8");
    }
}
