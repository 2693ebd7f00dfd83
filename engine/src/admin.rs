//! Operator commands that work directly on the store, without HTTP:
//! bootstrapping the first system admin and tenant owners, seeding the
//! demo tenant ([`seed_demo`]) that `switchboard call` dials, and seeding the
//! load-test bench profile ([`seed_load_profile`]) that `switchboard load` dials.
//!
//! Guarantees: a system admin never gets a tenant and every other role always
//! has one; the tenant is found by exact name or created once (a concurrent
//! creator is tolerated); passwords and tokens are passed through as
//! [`Secret`]s and never logged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::EngineError;
use switchboard_domain::{
    AgentId, AgentUpdate, CredentialKind, CredentialUpdate, E164, Endpointing, NewAgent, NewCredential, NewPhoneNumber,
    NewTenant, NewUser, PageRequest, PhoneNumberUpdate, ProviderChoice, Role, Secret, Tenant, TenantId, TenantUpdate,
    User, UserUpdate,
};
use switchboard_store::{AgentFilter, Scope, Store, StoreError, UserFilter};

/// Tenant limit given to tenants created from the command line; change it over the API.
const DEFAULT_MAX_CONCURRENT_CALLS: u32 = 10;

/// Create a user. `tenant` names the tenant (created when missing) and is
/// required for every role except `system_admin`, which must have none.
pub async fn create_user(
    store: &Store,
    email: &str,
    password: Secret,
    role: Role,
    tenant: Option<&str>,
) -> Result<User, EngineError> {
    let tenant_name = tenant.map(str::trim).filter(|t| !t.is_empty());
    let tenant_id = match (role, tenant_name) {
        (Role::SystemAdmin, None) => None,
        (Role::SystemAdmin, Some(_)) => {
            return Err(EngineError::Usage(
                "a system_admin belongs to no tenant: drop --tenant".to_owned(),
            ));
        }
        (_, None) => return Err(EngineError::Usage(format!("role {role} needs --tenant NAME"))),
        (_, Some(name)) => Some(find_or_create_tenant(store, name).await?.id),
    };
    let user = store
        .users()
        .create(NewUser {
            tenant_id,
            email: email.to_owned(),
            password,
            role,
        })
        .await?;
    tracing::info!(user_id = %user.id, role = %user.role, "user created");
    Ok(user)
}

async fn find_or_create_tenant(store: &Store, name: &str) -> Result<Tenant, EngineError> {
    if let Some(tenant) = store.tenants().find_by_name(name).await? {
        return Ok(tenant);
    }
    let new = NewTenant {
        name: name.to_owned(),
        notification_email: None,
        max_concurrent_calls: DEFAULT_MAX_CONCURRENT_CALLS,
    };
    match store.tenants().create(new).await {
        Ok(tenant) => {
            tracing::info!(tenant_id = %tenant.id, name, "tenant created");
            Ok(tenant)
        }
        // Someone created it between our lookup and insert.
        Err(StoreError::Conflict { .. }) => store
            .tenants()
            .find_by_name(name)
            .await?
            .ok_or(EngineError::Store(StoreError::NotFound { entity: "tenant" })),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------- demo tenant

/// Name of the tenant `switchboard admin demo` seeds.
pub const DEMO_TENANT: &str = "Demo";
/// Login of the demo tenant's owner.
pub const DEMO_EMAIL: &str = "demo@switchboard.local";
/// Name of the demo agent.
pub const DEMO_AGENT: &str = "Receptionist";
/// The demo phone number (Twilio's magic "valid" test number).
pub const DEMO_NUMBER: &str = "+15005550006";
/// File in the data directory that holds the demo's URLs and secrets.
pub const DEMO_FILE: &str = "demo.json";

const DEMO_GREETING: &str = "Hello! Thanks for calling Switchboard. How can I help you today?";

/// The rule-based agent's settings (format: `providers/src/rules.rs`).
pub fn demo_agent_settings() -> serde_json::Value {
    serde_json::json!({
        "rules": [
            {"pattern": r"\bbye\b|goodbye|no thanks|that's all|that is all",
             "reply": "Thanks for calling, goodbye!", "action": "hangup"},
            {"pattern": "appointment|book|table|reserv",
             "reply": "Sure, I can book that for you. What day works for you?"},
            {"pattern": r"tomorrow|monday|tuesday|wednesday|thursday|friday|saturday|sunday|\bthree\b|o'clock",
             "reply": "Great, you are booked for tomorrow at three. Anything else?"}
        ],
        "fallback": "Sorry, could you say that again?"
    })
}

/// What `switchboard admin demo` writes to `<data_dir>/demo.json` (mode 0600)
/// and `switchboard call` reads back. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DemoFile {
    /// The engine's public base URL when the demo was seeded.
    pub engine_url: String,
    pub number: String,
    pub account_sid: String,
    pub auth_token: String,
    pub email: String,
    pub password: String,
    #[serde(default)]
    pub tenant_id: Option<TenantId>,
    #[serde(default)]
    pub agent_id: Option<AgentId>,
}

impl std::fmt::Debug for DemoFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoFile")
            .field("engine_url", &self.engine_url)
            .field("number", &self.number)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[REDACTED]")
            .field("email", &self.email)
            .field("password", &"[REDACTED]")
            .field("tenant_id", &self.tenant_id)
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

impl DemoFile {
    /// `<data_dir>/demo.json`.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(DEMO_FILE)
    }

    /// Reads the file; `Ok(None)` when it does not exist.
    pub fn load(path: &Path) -> Result<Option<DemoFile>, EngineError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(EngineError::SecretFile {
                    path: path.to_owned(),
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EngineError::SecretFile {
                path: path.to_owned(),
                // serde_json's message names the line and column, never the values.
                reason: format!("not a demo file: {e}"),
            })
    }

    /// Writes the file atomically, readable by its owner only.
    pub fn write(&self, path: &Path) -> Result<(), EngineError> {
        write_private_json(path, self)
    }
}

/// What [`seed_demo`] did.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub file: DemoFile,
    pub path: PathBuf,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    /// What was created in this run (`tenant`, `owner`, `credential`, `agent`, `number`).
    pub created: Vec<&'static str>,
    /// The password and auth token were newly generated (first run, or `demo.json` was gone).
    pub rotated: bool,
}

impl DemoOutcome {
    /// A short human summary. Secrets appear only with `show_secrets`.
    pub fn summary(&self, show_secrets: bool) -> String {
        let f = &self.file;
        let state = if self.created.is_empty() {
            "already set up, reused".to_owned()
        } else {
            format!("created {}", self.created.join(", "))
        };
        let mut out = format!(
            "Demo tenant ready ({state}{}).\n  tenant:  {DEMO_TENANT} ({})\n  agent:   {DEMO_AGENT} ({})\n  \
             number:  {}\n  engine:  {}\n  login:   {}\n  twilio:  account {}\n",
            if self.rotated {
                "; new password and auth token"
            } else {
                ""
            },
            self.tenant_id,
            self.agent_id,
            f.number,
            f.engine_url,
            f.email,
            f.account_sid,
        );
        if show_secrets {
            out.push_str(&format!(
                "  password:   {}\n  auth token: {}\n",
                f.password, f.auth_token
            ));
        } else {
            out.push_str(&format!(
                "  password and auth token: in {} (or rerun with --show-secrets)\n",
                self.path.display()
            ));
        }
        out.push_str("Next: switchboard serve, then: switchboard call --wav hello.wav");
        out
    }
}

fn random_hex(bytes: usize) -> Result<String, EngineError> {
    use rand::TryRngCore as _;
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| EngineError::SecretFile {
            path: PathBuf::from("(os randomness)"),
            reason: e.to_string(),
        })?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Idempotently seeds the demo tenant: tenant "Demo", its owner
/// `demo@switchboard.local`, a Twilio credential, the rule-based
/// "Receptionist" agent and the number +15005550006 answered by it; then
/// writes `<data_dir>/demo.json`.
///
/// Guarantees: running it again reuses everything that exists and the
/// secrets in `demo.json`, repairing the database to match the file (a
/// changed password or token is set back); when the file is gone (or belongs
/// to another database) a new password and auth token are generated and
/// stored. Existing agents are never modified. Secrets are never logged.
pub async fn seed_demo(store: &Store, data_dir: &Path, public_base_url: &str) -> Result<DemoOutcome, EngineError> {
    let path = DemoFile::path(data_dir);
    let existing = DemoFile::load(&path)?;
    let mut created = Vec::new();
    let tenant = match store.tenants().find_by_name(DEMO_TENANT).await? {
        Some(t) => t,
        None => {
            let t = find_or_create_tenant(store, DEMO_TENANT).await?;
            created.push("tenant");
            t
        }
    };
    let scope = Scope::Tenant(tenant.id);
    let existing_cred = store
        .credentials()
        .find_by_kind(tenant.id, CredentialKind::Twilio)
        .await?;

    // The file's secrets are reused only if it describes this database's demo tenant.
    let reusable = existing
        .filter(|f| f.tenant_id.is_none_or(|id| id == tenant.id) && f.email == DEMO_EMAIL)
        .filter(|f| !f.password.is_empty() && !f.auth_token.is_empty() && f.account_sid.starts_with("AC"));
    let rotated = reusable.is_none();
    let (account_sid, auth_token, password) = match reusable {
        Some(f) => (f.account_sid, f.auth_token, f.password),
        None => {
            let sid = existing_cred
                .as_ref()
                .and_then(|(c, _)| c.public.get("account_sid")?.as_str().map(str::to_owned))
                .filter(|s| s.starts_with("AC"));
            let sid = match sid {
                Some(s) => s,
                None => format!("AC{}", random_hex(16)?),
            };
            (sid, random_hex(16)?, random_hex(12)?)
        }
    };

    // Owner.
    let users = store
        .users()
        .list(
            Scope::All,
            &UserFilter {
                role: None,
                q: Some(DEMO_EMAIL.to_owned()),
            },
            PageRequest {
                limit: PageRequest::MAX_LIMIT,
                offset: 0,
            },
        )
        .await?;
    match users
        .items
        .into_iter()
        .find(|u| u.email.eq_ignore_ascii_case(DEMO_EMAIL))
    {
        Some(user) if user.tenant_id != Some(tenant.id) => {
            return Err(EngineError::Usage(format!(
                "{DEMO_EMAIL} exists outside the {DEMO_TENANT} tenant; remove it first"
            )));
        }
        Some(user) => {
            if store.users().verify_login(DEMO_EMAIL, &password).await?.is_none() {
                let update = UserUpdate {
                    password: Some(Secret::new(password.clone())),
                    ..UserUpdate::default()
                };
                store.users().update(scope, user.id, update).await?;
                tracing::info!(tenant_id = %tenant.id, user_id = %user.id, "demo owner password set");
            }
        }
        None => {
            let user = store
                .users()
                .create(NewUser {
                    tenant_id: Some(tenant.id),
                    email: DEMO_EMAIL.to_owned(),
                    password: Secret::new(password.clone()),
                    role: Role::Owner,
                })
                .await?;
            tracing::info!(tenant_id = %tenant.id, user_id = %user.id, "demo owner created");
            created.push("owner");
        }
    }

    // Twilio credential.
    let public = serde_json::json!({ "account_sid": account_sid });
    let secrets: BTreeMap<String, Secret> = [("auth_token".to_owned(), Secret::new(auth_token.clone()))].into();
    match existing_cred {
        Some((cred, stored)) => {
            let same_sid = cred.public.get("account_sid").and_then(|v| v.as_str()) == Some(account_sid.as_str());
            let same_token = stored.get("auth_token").map(Secret::expose) == Some(auth_token.as_str());
            if !(same_sid && same_token) {
                let update = CredentialUpdate {
                    label: None,
                    public: Some(public),
                    secrets: Some(secrets),
                };
                store.credentials().update(scope, cred.id, update).await?;
                tracing::info!(tenant_id = %tenant.id, credential_id = %cred.id, "demo Twilio credential updated");
            }
        }
        None => {
            let cred = store
                .credentials()
                .create(
                    tenant.id,
                    NewCredential {
                        kind: CredentialKind::Twilio,
                        label: "Demo Twilio account".to_owned(),
                        public,
                        secrets,
                    },
                )
                .await?;
            tracing::info!(tenant_id = %tenant.id, credential_id = %cred.id, "demo Twilio credential created");
            created.push("credential");
        }
    }

    // Agent.
    let agents = store
        .agents()
        .list(
            scope,
            &AgentFilter {
                enabled: None,
                q: Some(DEMO_AGENT.to_owned()),
            },
            PageRequest {
                limit: PageRequest::MAX_LIMIT,
                offset: 0,
            },
        )
        .await?;
    let agent = match agents.items.into_iter().find(|a| a.name == DEMO_AGENT) {
        Some(agent) => agent,
        None => {
            let agent = store
                .agents()
                .create(
                    tenant.id,
                    NewAgent {
                        name: DEMO_AGENT.to_owned(),
                        system_prompt: "You are the friendly receptionist of Switchboard. You book appointments."
                            .to_owned(),
                        greeting: DEMO_GREETING.to_owned(),
                        language: "en-US".to_owned(),
                        voice: "en-us".to_owned(),
                        stt: ProviderChoice::new("local"),
                        tts: ProviderChoice::new("local"),
                        llm: ProviderChoice::new("rules"),
                        tools: Vec::new(),
                        endpointing: Endpointing::default(),
                        settings: demo_agent_settings(),
                        enabled: true,
                    },
                )
                .await?;
            tracing::info!(tenant_id = %tenant.id, agent_id = %agent.id, "demo agent created");
            created.push("agent");
            agent
        }
    };

    // Number.
    let number = E164::parse(DEMO_NUMBER).map_err(|e| EngineError::Usage(e.to_string()))?;
    match store.phone_numbers().find_by_number(&number).await? {
        Some(n) if n.tenant_id != tenant.id => {
            return Err(EngineError::Usage(format!(
                "{DEMO_NUMBER} belongs to another tenant; remove it first"
            )));
        }
        Some(n) if n.agent_id != Some(agent.id) => {
            let update = PhoneNumberUpdate {
                agent_id: Some(Some(agent.id)),
                label: None,
            };
            store.phone_numbers().update(scope, n.id, update).await?;
            tracing::info!(tenant_id = %tenant.id, agent_id = %agent.id, "demo number pointed at the agent");
        }
        Some(_) => {}
        None => {
            store
                .phone_numbers()
                .create(
                    tenant.id,
                    NewPhoneNumber {
                        number,
                        agent_id: Some(agent.id),
                        label: "Demo line".to_owned(),
                    },
                )
                .await?;
            tracing::info!(tenant_id = %tenant.id, agent_id = %agent.id, "demo number created");
            created.push("number");
        }
    }

    let file = DemoFile {
        engine_url: public_base_url.trim_end_matches('/').to_owned(),
        number: DEMO_NUMBER.to_owned(),
        account_sid,
        auth_token,
        email: DEMO_EMAIL.to_owned(),
        password,
        tenant_id: Some(tenant.id),
        agent_id: Some(agent.id),
    };
    file.write(&path)?;
    tracing::info!(tenant_id = %tenant.id, agent_id = %agent.id, rotated, "demo seeded");
    Ok(DemoOutcome {
        file,
        path,
        tenant_id: tenant.id,
        agent_id: agent.id,
        created,
        rotated,
    })
}

// ---------------------------------------------------------------- load profile

/// Name of the tenant `switchboard admin load-profile` seeds.
pub const LOAD_TENANT: &str = "Load test";
/// Name of the load profile's agent. A **bench profile**, not a real provider.
pub const LOAD_AGENT: &str = "Load profile (bench)";
/// The number the load tool dials.
pub const LOAD_NUMBER: &str = "+15005550100";
/// The load tenant's concurrent-call limit: high enough never to be the bottleneck.
pub const LOAD_MAX_CONCURRENT_CALLS: u32 = 100_000;
/// File the load profile is written to, in the data dir.
pub const LOAD_FILE: &str = "load.json";
/// What the bench agent greets with.
pub const LOAD_GREETING: &str = "Load test line.";
/// The fixed reply of the load profile's agent.
pub const LOAD_REPLY: &str = "Sure, I have booked you for tomorrow at three. Is there anything else?";
/// The phrase the bench STT (or the fake speech server) "recognises".
pub const LOAD_PHRASE: &str = "I would like to book an appointment for tomorrow at three";

/// Which providers the load profile's agent uses. Both are bench stand-ins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadProviders {
    /// `bench` STT, agent and TTS inside the engine (no sockets).
    Bench,
    /// `openai_compatible` STT/TTS at a fake OpenAI speech server (`fake-openai-speech`,
    /// a separate process) at `url` (with `/v1`), and the `rules` agent with a fixed reply.
    FakeServers { url: String },
}

impl LoadProviders {
    fn name(&self) -> &'static str {
        match self {
            LoadProviders::Bench => "bench",
            LoadProviders::FakeServers { .. } => "fake-servers",
        }
    }

    fn choices(&self) -> (ProviderChoice, ProviderChoice, ProviderChoice) {
        match self {
            LoadProviders::Bench => (
                ProviderChoice::new("bench"),
                ProviderChoice::new("bench"),
                ProviderChoice::new("bench"),
            ),
            LoadProviders::FakeServers { url } => {
                let remote = ProviderChoice {
                    provider: "openai_compatible".to_owned(),
                    model: None,
                    base_url: Some(url.trim_end_matches('/').to_owned()),
                };
                (remote.clone(), remote, ProviderChoice::new("rules"))
            }
        }
    }
}

/// The load profile agent's settings: the bench phrase and reply, and a
/// rule set whose fallback is the same fixed reply (for the `rules` agent).
pub fn load_agent_settings() -> serde_json::Value {
    serde_json::json!({
        "bench": {"phrase": LOAD_PHRASE, "reply": LOAD_REPLY},
        "rules": [],
        "fallback": LOAD_REPLY
    })
}

/// What `switchboard admin load-profile` writes to `<data_dir>/load.json` (mode
/// 0600) and `switchboard-load --profile` reads. `Debug` redacts the token.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LoadProfileFile {
    pub engine_url: String,
    pub number: String,
    pub account_sid: String,
    pub auth_token: String,
    /// `bench` or `fake-servers`.
    pub providers: String,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
}

impl std::fmt::Debug for LoadProfileFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadProfileFile")
            .field("engine_url", &self.engine_url)
            .field("number", &self.number)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"[REDACTED]")
            .field("providers", &self.providers)
            .field("tenant_id", &self.tenant_id)
            .field("agent_id", &self.agent_id)
            .finish()
    }
}

/// What [`seed_load_profile`] did.
#[derive(Debug, Clone)]
pub struct LoadProfileOutcome {
    pub file: LoadProfileFile,
    pub path: PathBuf,
    /// What was created or changed in this run.
    pub changed: Vec<&'static str>,
}

impl LoadProfileOutcome {
    /// A short human summary (no secrets).
    pub fn summary(&self) -> String {
        let f = &self.file;
        format!(
            "Load profile ready ({}).\n  tenant:    {LOAD_TENANT} ({})\n  agent:     {LOAD_AGENT} ({}), providers: {}\n  \
             number:    {}\n  engine:    {}\n  profile:   {} (auth token inside)\n\
             Next: switchboard serve, then: switchboard load --calls 50",
            if self.changed.is_empty() {
                "already set up, reused".to_owned()
            } else {
                format!("changed: {}", self.changed.join(", "))
            },
            f.tenant_id,
            f.agent_id,
            f.providers,
            f.number,
            f.engine_url,
            self.path.display()
        )
    }
}

/// Idempotently seeds the load-test profile: tenant "Load test" (limit
/// [`LOAD_MAX_CONCURRENT_CALLS`]), a Twilio credential, the agent
/// "Load profile (bench)" with the chosen [`LoadProviders`] (endpointing
/// silence 500 ms, min speech 200 ms, a short greeting) and the number
/// [`LOAD_NUMBER`]; then writes `<data_dir>/load.json`.
///
/// Guarantees: a second run reuses the tenant, the credential's account SID
/// and token (from `load.json` when it matches the database), the agent and
/// the number, and brings them back to the profile (limit, providers,
/// endpointing, number → agent), so switching `--providers` only updates the
/// agent. Fails with `Usage` when the number belongs to another tenant. The
/// token is never logged.
pub async fn seed_load_profile(
    store: &Store,
    data_dir: &Path,
    public_base_url: &str,
    providers: &LoadProviders,
) -> Result<LoadProfileOutcome, EngineError> {
    let path = data_dir.join(LOAD_FILE);
    let mut changed = Vec::new();
    let tenant = match store.tenants().find_by_name(LOAD_TENANT).await? {
        Some(t) => t,
        None => {
            changed.push("tenant");
            find_or_create_tenant(store, LOAD_TENANT).await?
        }
    };
    let scope = Scope::Tenant(tenant.id);
    if tenant.max_concurrent_calls != LOAD_MAX_CONCURRENT_CALLS {
        let update = TenantUpdate {
            max_concurrent_calls: Some(LOAD_MAX_CONCURRENT_CALLS),
            ..TenantUpdate::default()
        };
        store.tenants().update(Scope::All, tenant.id, update).await?;
        changed.push("tenant limit");
    }

    // Twilio credential: keep what exists when load.json agrees with it.
    let existing_file: Option<LoadProfileFile> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).ok(),
        Err(_) => None,
    };
    let existing_cred = store
        .credentials()
        .find_by_kind(tenant.id, CredentialKind::Twilio)
        .await?;
    let stored_sid = existing_cred
        .as_ref()
        .and_then(|(c, _)| c.public.get("account_sid")?.as_str().map(str::to_owned));
    let stored_token = existing_cred
        .as_ref()
        .and_then(|(_, s)| s.get("auth_token").map(|t| t.expose().to_owned()));
    let (account_sid, auth_token) = match (stored_sid, stored_token) {
        (Some(sid), Some(token))
            if existing_file
                .as_ref()
                .is_some_and(|f| f.account_sid == sid && f.auth_token == token) =>
        {
            (sid, token)
        }
        (sid, _) => (
            sid.filter(|s| s.starts_with("AC"))
                .map_or_else(|| random_hex(16).map(|h| format!("AC{h}")), Ok)?,
            random_hex(16)?,
        ),
    };
    let public = serde_json::json!({ "account_sid": account_sid });
    let secrets: BTreeMap<String, Secret> = [("auth_token".to_owned(), Secret::new(auth_token.clone()))].into();
    match existing_cred {
        Some((cred, stored)) => {
            let same_sid = cred.public.get("account_sid").and_then(|v| v.as_str()) == Some(account_sid.as_str());
            let same_token = stored.get("auth_token").map(Secret::expose) == Some(auth_token.as_str());
            if !(same_sid && same_token) {
                let update = CredentialUpdate {
                    label: None,
                    public: Some(public),
                    secrets: Some(secrets),
                };
                store.credentials().update(scope, cred.id, update).await?;
                changed.push("credential");
            }
        }
        None => {
            store
                .credentials()
                .create(
                    tenant.id,
                    NewCredential {
                        kind: CredentialKind::Twilio,
                        label: "Load test Twilio account".to_owned(),
                        public,
                        secrets,
                    },
                )
                .await?;
            changed.push("credential");
        }
    }

    // Agent: created once, then kept in line with the requested providers.
    let (stt, tts, llm) = providers.choices();
    let endpointing = Endpointing {
        silence_ms: 500,
        min_speech_ms: 200,
        ..Endpointing::default()
    };
    let agents = store
        .agents()
        .list(
            scope,
            &AgentFilter {
                enabled: None,
                q: Some(LOAD_AGENT.to_owned()),
            },
            PageRequest {
                limit: PageRequest::MAX_LIMIT,
                offset: 0,
            },
        )
        .await?;
    let agent = match agents.items.into_iter().find(|a| a.name == LOAD_AGENT) {
        Some(agent)
            if agent.stt == stt
                && agent.tts == tts
                && agent.llm == llm
                && agent.endpointing == endpointing
                && agent.settings == load_agent_settings()
                && agent.enabled =>
        {
            agent
        }
        Some(agent) => {
            let update = AgentUpdate {
                stt: Some(stt),
                tts: Some(tts),
                llm: Some(llm),
                endpointing: Some(endpointing),
                settings: Some(load_agent_settings()),
                enabled: Some(true),
                ..AgentUpdate::default()
            };
            changed.push("agent providers");
            store.agents().update(scope, agent.id, update).await?
        }
        None => {
            changed.push("agent");
            store
                .agents()
                .create(
                    tenant.id,
                    NewAgent {
                        name: LOAD_AGENT.to_owned(),
                        system_prompt: "Bench profile for load tests: fixed phrase, fixed reply. Not a real provider."
                            .to_owned(),
                        greeting: LOAD_GREETING.to_owned(),
                        language: "en-US".to_owned(),
                        voice: "default".to_owned(),
                        stt,
                        tts,
                        llm,
                        tools: Vec::new(),
                        endpointing,
                        settings: load_agent_settings(),
                        enabled: true,
                    },
                )
                .await?
        }
    };

    let number = E164::parse(LOAD_NUMBER).map_err(|e| EngineError::Usage(e.to_string()))?;
    match store.phone_numbers().find_by_number(&number).await? {
        Some(n) if n.tenant_id != tenant.id => {
            return Err(EngineError::Usage(format!(
                "{LOAD_NUMBER} belongs to another tenant; remove it first"
            )));
        }
        Some(n) if n.agent_id != Some(agent.id) => {
            let update = PhoneNumberUpdate {
                agent_id: Some(Some(agent.id)),
                label: None,
            };
            store.phone_numbers().update(scope, n.id, update).await?;
            changed.push("number");
        }
        Some(_) => {}
        None => {
            store
                .phone_numbers()
                .create(
                    tenant.id,
                    NewPhoneNumber {
                        number,
                        agent_id: Some(agent.id),
                        label: "Load test line".to_owned(),
                    },
                )
                .await?;
            changed.push("number");
        }
    }

    let file = LoadProfileFile {
        engine_url: public_base_url.trim_end_matches('/').to_owned(),
        number: LOAD_NUMBER.to_owned(),
        account_sid,
        auth_token,
        providers: providers.name().to_owned(),
        tenant_id: tenant.id,
        agent_id: agent.id,
    };
    write_private_json(&path, &file)?;
    tracing::info!(tenant_id = %tenant.id, agent_id = %agent.id, providers = providers.name(), ?changed, "load profile seeded");
    Ok(LoadProfileOutcome { file, path, changed })
}

/// Writes `value` as pretty JSON atomically, readable by its owner only.
fn write_private_json<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), EngineError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let err = |e: std::io::Error| EngineError::SecretFile {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let text = serde_json::to_string_pretty(value).map_err(|e| EngineError::SecretFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.write_all(b"\n").map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}
