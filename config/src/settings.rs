//! The effective settings of one engine process.
//!
//! Every field has a built-in default, so `Settings::default()` is a working
//! embedded configuration (SQLite under `./data`, in-process bus). Tests build
//! a `Settings` value directly and change only what they need.

use crate::secret::{SecretKey, SecretString};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// All settings, grouped by section. Section and field names are the keys used
/// in `switchboard.toml` and in `SWITCHBOARD__SECTION__KEY` variables.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub storage: StorageSettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub shutdown: ShutdownSettings,
    pub log: LogSettings,
    pub speech: SpeechSettings,
    pub calls: CallSettings,
    pub notifications: NotificationSettings,
}

/// Post-call summary emails, sent through SendGrid to each tenant's
/// `notification_email`.
#[derive(Debug, Clone, Serialize)]
pub struct NotificationSettings {
    /// Verified sender address (`notifications.from_email`); unset sends no email.
    pub from_email: Option<String>,
    /// SendGrid API key (`notifications.sendgrid_api_key`); unset sends no email.
    pub sendgrid_api_key: Option<SecretString>,
    /// SendGrid API root (`notifications.sendgrid_base_url`, default `https://api.sendgrid.com`).
    pub sendgrid_base_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpSettings {
    /// Address the HTTP server listens on (`http.bind`). Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Public base URL, without trailing slash (`http.public_base_url`), used
    /// to build TwiML stream URLs and to verify webhook signatures.
    pub public_base_url: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSettings {
    /// `sqlite://path` or `postgres://...`. Empty means SQLite at
    /// `<storage.data_dir>/switchboard.db` (`database.url`).
    pub url: String,
    /// Pool size (`database.max_connections`).
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RedisSettings {
    /// `redis://...`; empty means the in-process bus (`redis.url`).
    pub url: String,
    /// Prefix for every Redis key and channel (`redis.key_prefix`).
    pub key_prefix: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StorageSettings {
    /// Directory for the SQLite file, generated keys and recordings (`storage.data_dir`).
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecuritySettings {
    /// 32-byte key (base64) that encrypts provider secrets at rest
    /// (`security.encryption_key`). When unset, the engine creates one in the
    /// data directory on first start and reuses it.
    pub encryption_key: Option<SecretKey>,
    /// HMAC key for JWTs and stream tokens (`security.jwt_secret`). When unset,
    /// generated and kept in the data directory like the encryption key.
    pub jwt_secret: Option<SecretString>,
    /// Lifetime of an access token (`security.access_token_ttl_secs`).
    #[serde(with = "crate::secs")]
    pub access_token_ttl: Duration,
    /// Lifetime of a login session and its cookie (`security.session_ttl_secs`).
    #[serde(with = "crate::secs")]
    pub session_ttl: Duration,
    /// Mark cookies `Secure` (`security.cookie_secure`); on by default, turn
    /// off only for plain-HTTP development.
    pub cookie_secure: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LimitSettings {
    /// Largest accepted HTTP request body in bytes (`limits.max_body_bytes`).
    pub max_body_bytes: usize,
    /// Largest accepted WebSocket frame/message in bytes (`limits.max_ws_frame_bytes`).
    pub max_ws_frame_bytes: usize,
    /// Mailbox bound of each call actor (`limits.call_mailbox`).
    pub call_mailbox: usize,
    /// Mailbox bound of each conversation actor (`limits.conversation_mailbox`).
    pub conversation_mailbox: usize,
    /// Mailbox bound of each agent session actor (`limits.agent_session_mailbox`).
    pub agent_session_mailbox: usize,
    /// Outbound queue of each live supervisor WebSocket (`limits.supervisor_queue`).
    pub supervisor_queue: usize,
    /// Login attempts per minute per client IP (`limits.login_per_minute`).
    pub login_per_minute: u32,
    /// Webhook requests per second per client IP (`limits.webhook_per_second`).
    pub webhook_per_second: u32,
    /// Whole-request timeout for REST calls (`limits.request_timeout_secs`).
    #[serde(with = "crate::secs")]
    pub request_timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShutdownSettings {
    /// How long live calls may drain after SIGTERM before they are ended
    /// (`shutdown.grace_period_secs`).
    #[serde(with = "crate::secs")]
    pub grace_period: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeechSettings {
    /// Base URL of the OpenAI-compatible local speech server used by agents
    /// whose STT/TTS provider is `local` (`speech.base_url`).
    pub base_url: String,
    /// Start the bundled local speech server as a supervised child process
    /// (`speech.autostart`).
    pub autostart: bool,
    /// Command line that starts the local speech server (`speech.command`).
    /// Empty means the bundled one: `speech/.venv/bin/python speech/server.py`
    /// under the working directory.
    pub command: String,
    /// Sample rate of the `pcm` the local server's `/v1/audio/speech` returns
    /// (`speech.tts_sample_rate`).
    pub tts_sample_rate: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallSettings {
    /// Lifetime of the signed token that lets a media stream attach to its
    /// call (`calls.stream_token_ttl_secs`).
    #[serde(with = "crate::secs")]
    pub stream_token_ttl: Duration,
    /// Write a stereo WAV of every call under `<storage.data_dir>/recordings`
    /// (`calls.record`).
    pub record: bool,
    /// Twilio's REST API root, for transfers and hang-ups
    /// (`calls.twilio_api_base_url`, default `https://api.twilio.com`).
    pub twilio_api_base_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Serialize)]
pub struct LogSettings {
    /// `pretty` or `json` (`log.format`).
    pub format: LogFormat,
    /// `tracing` filter directive, e.g. `info,switchboard=debug` (`log.filter`).
    pub filter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http: HttpSettings {
                bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
                public_base_url: "http://127.0.0.1:8080".to_owned(),
            },
            database: DatabaseSettings {
                url: String::new(),
                max_connections: 10,
            },
            redis: RedisSettings {
                url: String::new(),
                key_prefix: "switchboard".to_owned(),
            },
            storage: StorageSettings {
                data_dir: PathBuf::from("data"),
            },
            security: SecuritySettings {
                encryption_key: None,
                jwt_secret: None,
                access_token_ttl: Duration::from_secs(15 * 60),
                session_ttl: Duration::from_secs(12 * 60 * 60),
                cookie_secure: true,
            },
            limits: LimitSettings {
                max_body_bytes: 256 * 1024,
                max_ws_frame_bytes: 64 * 1024,
                call_mailbox: 256,
                conversation_mailbox: 64,
                agent_session_mailbox: 64,
                supervisor_queue: 256,
                login_per_minute: 10,
                webhook_per_second: 50,
                request_timeout: Duration::from_secs(30),
            },
            shutdown: ShutdownSettings {
                grace_period: Duration::from_secs(30),
            },
            log: LogSettings {
                format: LogFormat::Pretty,
                filter: "info".to_owned(),
            },
            speech: SpeechSettings {
                base_url: "http://127.0.0.1:8790".to_owned(),
                autostart: true,
                command: String::new(),
                tts_sample_rate: 22_050,
            },
            calls: CallSettings {
                stream_token_ttl: Duration::from_secs(60),
                record: true,
                twilio_api_base_url: "https://api.twilio.com".to_owned(),
            },
            notifications: NotificationSettings {
                from_email: None,
                sendgrid_api_key: None,
                sendgrid_base_url: "https://api.sendgrid.com".to_owned(),
            },
        }
    }
}

impl Settings {
    /// The database URL in effect: the configured one, or the embedded SQLite file.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            let path = self.storage.data_dir.join("switchboard.db");
            format!("sqlite://{}?mode=rwc", path.display())
        } else {
            self.database.url.clone()
        }
    }

    /// The Redis URL, or `None` for the in-process bus.
    pub fn redis_url(&self) -> Option<&str> {
        (!self.redis.url.is_empty()).then_some(self.redis.url.as_str())
    }
}
