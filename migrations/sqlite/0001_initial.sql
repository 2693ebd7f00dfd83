-- Switchboard schema (SQLite). Kept column-for-column identical to
-- ../postgres/0001_initial.sql so one SQL text runs on both backends:
-- IDs are UUID strings in TEXT, JSON is TEXT, times are BIGINT epoch
-- milliseconds and booleans are BIGINT 0/1.

CREATE TABLE tenants (
    id                   TEXT PRIMARY KEY NOT NULL,
    name                 TEXT NOT NULL,
    notification_email   TEXT,
    max_concurrent_calls BIGINT NOT NULL,
    created_at           BIGINT NOT NULL,
    updated_at           BIGINT NOT NULL
);
CREATE UNIQUE INDEX tenants_name_key ON tenants (name);
CREATE INDEX tenants_created_idx ON tenants (created_at, id);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE INDEX users_tenant_idx ON users (tenant_id, created_at);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY NOT NULL,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    system_prompt TEXT NOT NULL,
    greeting      TEXT NOT NULL,
    language      TEXT NOT NULL,
    voice         TEXT NOT NULL,
    stt           TEXT NOT NULL,
    tts           TEXT NOT NULL,
    llm           TEXT NOT NULL,
    tools         TEXT NOT NULL,
    endpointing   TEXT NOT NULL,
    settings      TEXT NOT NULL,
    enabled       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX agents_tenant_idx ON agents (tenant_id, created_at);

CREATE TABLE phone_numbers (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    number     TEXT NOT NULL,
    agent_id   TEXT REFERENCES agents (id) ON DELETE SET NULL,
    label      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX phone_numbers_number_key ON phone_numbers (number);
CREATE INDEX phone_numbers_tenant_idx ON phone_numbers (tenant_id, created_at);
CREATE INDEX phone_numbers_agent_idx ON phone_numbers (agent_id);

CREATE TABLE credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    tenant_id      TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind           TEXT NOT NULL,
    label          TEXT NOT NULL,
    public_config  TEXT NOT NULL,
    secret_keys    TEXT NOT NULL,
    secrets_sealed TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);
CREATE INDEX credentials_tenant_idx ON credentials (tenant_id, created_at);
CREATE INDEX credentials_kind_idx ON credentials (tenant_id, kind, created_at);

CREATE TABLE contacts (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    phone      TEXT,
    email      TEXT,
    status     TEXT NOT NULL,
    tags       TEXT NOT NULL,
    notes      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX contacts_tenant_idx ON contacts (tenant_id, created_at);
CREATE INDEX contacts_phone_idx ON contacts (tenant_id, phone);

CREATE TABLE calls (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    agent_id            TEXT REFERENCES agents (id) ON DELETE SET NULL,
    provider_call_id    TEXT,
    direction           TEXT NOT NULL,
    from_addr           TEXT NOT NULL,
    to_addr             TEXT NOT NULL,
    status              TEXT NOT NULL,
    started_at          BIGINT NOT NULL,
    answered_at         BIGINT,
    ended_at            BIGINT,
    end_reason          TEXT,
    recording_url       TEXT,
    summary             TEXT,
    -- Next transcript sequence number; bumped atomically by each append.
    transcript_next_seq BIGINT NOT NULL DEFAULT 0,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX calls_provider_call_id_key ON calls (provider_call_id);
CREATE INDEX calls_tenant_idx ON calls (tenant_id, created_at);
CREATE INDEX calls_live_idx ON calls (tenant_id, ended_at);
CREATE INDEX calls_agent_idx ON calls (agent_id);

CREATE TABLE appointments (
    id         TEXT PRIMARY KEY NOT NULL,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    contact_id TEXT REFERENCES contacts (id) ON DELETE SET NULL,
    call_id    TEXT REFERENCES calls (id) ON DELETE SET NULL,
    title      TEXT NOT NULL,
    starts_at  BIGINT NOT NULL,
    ends_at    BIGINT NOT NULL,
    status     TEXT NOT NULL,
    notes      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK (ends_at > starts_at)
);
CREATE INDEX appointments_tenant_starts_idx ON appointments (tenant_id, starts_at);
CREATE INDEX appointments_tenant_idx ON appointments (tenant_id, created_at);
CREATE INDEX appointments_contact_idx ON appointments (contact_id);
CREATE INDEX appointments_call_idx ON appointments (call_id);

CREATE TABLE transcript_segments (
    call_id    TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL,
    speaker    TEXT NOT NULL,
    text       TEXT NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (call_id, seq)
);

CREATE TABLE conversations (
    id              TEXT PRIMARY KEY NOT NULL,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    contact_id      TEXT REFERENCES contacts (id) ON DELETE SET NULL,
    agent_id        TEXT REFERENCES agents (id) ON DELETE SET NULL,
    external_id     TEXT NOT NULL,
    last_message_at BIGINT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX conversations_external_key ON conversations (tenant_id, channel, external_id);
CREATE INDEX conversations_tenant_idx ON conversations (tenant_id, created_at);
CREATE INDEX conversations_contact_idx ON conversations (contact_id);
CREATE INDEX conversations_agent_idx ON conversations (agent_id);

CREATE TABLE messages (
    id                  TEXT PRIMARY KEY NOT NULL,
    tenant_id           TEXT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id     TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    direction           TEXT NOT NULL,
    provider_message_id TEXT,
    status              TEXT NOT NULL,
    body                TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE UNIQUE INDEX messages_provider_message_id_key ON messages (provider_message_id);
CREATE INDEX messages_tenant_idx ON messages (tenant_id, created_at);
CREATE INDEX messages_conversation_idx ON messages (conversation_id, created_at);

CREATE TABLE audit_log (
    id        TEXT PRIMARY KEY NOT NULL,
    tenant_id TEXT REFERENCES tenants (id) ON DELETE CASCADE,
    user_id   TEXT REFERENCES users (id) ON DELETE SET NULL,
    action    TEXT NOT NULL,
    entity    TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    detail    TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX audit_log_tenant_idx ON audit_log (tenant_id, at);
CREATE INDEX audit_log_at_idx ON audit_log (at, id);
CREATE INDEX audit_log_user_idx ON audit_log (user_id);

CREATE TABLE sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX sessions_user_idx ON sessions (user_id);
CREATE INDEX sessions_expires_idx ON sessions (expires_at);
