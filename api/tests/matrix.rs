//! The permission matrix: every route × {system_admin, owner A, admin A,
//! agent A, owner B}, asserting the exact status. Targets are rows of tenant
//! A, so owner B must always see 404 (never 403) for them.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use switchboard_domain::{
    CallDirection, CallStatus, Channel, MessageDirection, MessageStatus, NewAgent, NewAppointment, NewCall, NewContact,
    NewConversation, NewCredential, NewMessage, NewPhoneNumber, NewTenant, Role, Speaker, TenantId,
};

/// Expected statuses in the order: system_admin, owner A, admin A, agent A, owner B.
type Expect = [u16; 5];

#[derive(Clone, Copy, Debug)]
enum Target {
    None,
    TenantA,
    FreshTenant,
    AgentUser,
    OwnerUser,
    FreshAgentUser,
    PhoneNumber,
    Agent,
    Credential,
    Contact,
    Appointment,
    Call,
    Conversation,
    Message,
}

struct Case {
    method: Method,
    /// `{id}` is replaced by the target's ID, `{a}` (also in bodies) by tenant A's ID.
    path: String,
    target: Target,
    body: fn() -> Option<Value>,
    expect: Expect,
}

fn none() -> Option<Value> {
    None
}

fn case(method: Method, path: impl Into<String>, target: Target, body: fn() -> Option<Value>, expect: Expect) -> Case {
    Case {
        method,
        path: path.into(),
        target,
        body,
        expect,
    }
}

struct Fixture {
    t: TestApp,
    a: TenantId,
    agent_user: String,
    owner_user: String,
    call: String,
    conversation: String,
    message: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let t = TestApp::new().await;
        let a = t.tenant_a.id;
        let agent_user = t
            .user(Some(a), Role::Agent, "target-agent@example.com")
            .await
            .id
            .to_string();
        let owner_user = t
            .user(Some(a), Role::Owner, "target-owner@example.com")
            .await
            .id
            .to_string();
        let store = &t.store;
        let call = store
            .calls()
            .create(NewCall {
                tenant_id: a,
                agent_id: None,
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: "+15550001111".into(),
                to: "+15550002222".into(),
                status: CallStatus::InProgress,
            })
            .await
            .expect("call");
        store
            .transcripts()
            .append(call.id, Speaker::Caller, "hello", 0, 900)
            .await
            .expect("segment");
        let conversation = store
            .conversations()
            .create(NewConversation {
                tenant_id: a,
                channel: Channel::WhatsAppMeta,
                contact_id: None,
                agent_id: None,
                external_id: "+15550003333".into(),
            })
            .await
            .expect("conversation");
        let message = store
            .messages()
            .create(NewMessage {
                tenant_id: a,
                conversation_id: conversation.id,
                direction: MessageDirection::Inbound,
                provider_message_id: None,
                status: MessageStatus::Received,
                body: "hi".into(),
            })
            .await
            .expect("message");
        Fixture {
            t,
            a,
            agent_user,
            owner_user,
            call: call.id.to_string(),
            conversation: conversation.id.to_string(),
            message: message.id.to_string(),
        }
    }

    /// The ID for a case; "fresh" targets are created anew for each request
    /// because the request may delete or change them.
    async fn target(&self, target: Target) -> String {
        let store = &self.t.store;
        let a = self.a;
        match target {
            Target::None => String::new(),
            Target::TenantA => a.to_string(),
            Target::FreshTenant => store
                .tenants()
                .create(NewTenant {
                    name: format!("Fresh {}", unique()),
                    notification_email: None,
                    max_concurrent_calls: 1,
                })
                .await
                .expect("tenant")
                .id
                .to_string(),
            Target::AgentUser => self.agent_user.clone(),
            Target::OwnerUser => self.owner_user.clone(),
            Target::FreshAgentUser => self
                .t
                .user(Some(a), Role::Agent, &format!("fresh-{}@example.com", unique()))
                .await
                .id
                .to_string(),
            Target::PhoneNumber => {
                let new: NewPhoneNumber = serde_json::from_value(json!({"number": phone()})).expect("json");
                store
                    .phone_numbers()
                    .create(a, new)
                    .await
                    .expect("number")
                    .id
                    .to_string()
            }
            Target::Agent => {
                let new: NewAgent = serde_json::from_value(json!({"name": "Receptionist"})).expect("json");
                store.agents().create(a, new).await.expect("agent").id.to_string()
            }
            Target::Credential => {
                let new: NewCredential =
                    serde_json::from_value(json!({"kind": "openai", "secrets": {"api_key": "sk-test"}})).expect("json");
                store
                    .credentials()
                    .create(a, new)
                    .await
                    .expect("credential")
                    .id
                    .to_string()
            }
            Target::Contact => {
                let new: NewContact = serde_json::from_value(json!({"name": "Ada"})).expect("json");
                store.contacts().create(a, new).await.expect("contact").id.to_string()
            }
            Target::Appointment => {
                let new: NewAppointment = serde_json::from_value(slot()).expect("json");
                store
                    .appointments()
                    .create(a, new)
                    .await
                    .expect("appointment")
                    .id
                    .to_string()
            }
            Target::Call => self.call.clone(),
            Target::Conversation => self.conversation.clone(),
            Target::Message => self.message.clone(),
        }
    }
}

fn phone() -> String {
    format!("+1555{:07}", unique())
}

/// A one-hour appointment slot that overlaps no other (each call moves a day on).
fn slot() -> Value {
    let day = i64::from(unique());
    let start = chrono::DateTime::from_timestamp(1_900_000_000 + day * 86_400, 0).expect("time");
    json!({"title": "Visit", "starts_at": start, "ends_at": start + chrono::Duration::hours(1)})
}

fn cases() -> Vec<Case> {
    use Method as M;
    use Target as T;
    const OK: u16 = 200;
    const CREATED: u16 = 201;
    const GONE: u16 = 204;
    const FORBIDDEN: u16 = 403;
    const MISSING: u16 = 404;
    const NO_METHOD: u16 = 405;
    const INVALID: u16 = 422;
    let mut cases = vec![
        case(M::GET, "/api/v1/auth/me", T::None, none, [OK; 5]),
        // tenants
        case(M::GET, "/api/v1/tenants", T::None, none, [OK; 5]),
        case(
            M::POST,
            "/api/v1/tenants",
            T::None,
            || Some(json!({"name": format!("New {}", unique())})),
            [CREATED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
        ),
        case(
            M::GET,
            "/api/v1/tenants/{id}",
            T::TenantA,
            none,
            [OK, OK, OK, OK, MISSING],
        ),
        case(
            M::PATCH,
            "/api/v1/tenants/{id}",
            T::TenantA,
            || Some(json!({"max_concurrent_calls": 7})),
            [OK, OK, FORBIDDEN, FORBIDDEN, MISSING],
        ),
        case(
            M::DELETE,
            "/api/v1/tenants/{id}",
            T::FreshTenant,
            none,
            [GONE, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
        ),
        // users
        case(M::GET, "/api/v1/users", T::None, none, [OK, OK, OK, FORBIDDEN, OK]),
        // No tenant named: system admins must name one; everyone else gets their own (B's owner into B).
        case(
            M::POST,
            "/api/v1/users",
            T::None,
            || Some(json!({"email": format!("n{}@example.com", unique()), "password": "pw-123456", "role": "agent"})),
            [INVALID, CREATED, CREATED, FORBIDDEN, CREATED],
        ),
        case(
            M::POST,
            "/api/v1/users",
            T::None,
            || {
                Some(
                    json!({"tenant_id": "{a}", "email": format!("a{}@example.com", unique()), "password": "pw-123456", "role": "agent"}),
                )
            },
            [CREATED, CREATED, CREATED, FORBIDDEN, MISSING],
        ),
        case(
            M::POST,
            "/api/v1/users",
            T::None,
            || {
                Some(
                    json!({"tenant_id": "{a}", "email": format!("o{}@example.com", unique()), "password": "pw-123456", "role": "owner"}),
                )
            },
            [CREATED, CREATED, FORBIDDEN, FORBIDDEN, MISSING],
        ),
        case(
            M::POST,
            "/api/v1/users",
            T::None,
            || {
                Some(
                    json!({"email": format!("s{}@example.com", unique()), "password": "pw-123456", "role": "system_admin"}),
                )
            },
            [CREATED, FORBIDDEN, FORBIDDEN, FORBIDDEN, FORBIDDEN],
        ),
        case(
            M::GET,
            "/api/v1/users/{id}",
            T::AgentUser,
            none,
            [OK, OK, OK, FORBIDDEN, MISSING],
        ),
        case(
            M::PATCH,
            "/api/v1/users/{id}",
            T::AgentUser,
            || Some(json!({"email": format!("renamed{}@example.com", unique())})),
            [OK, OK, OK, FORBIDDEN, MISSING],
        ),
        case(
            M::PATCH,
            "/api/v1/users/{id}",
            T::OwnerUser,
            || Some(json!({"email": format!("owner{}@example.com", unique())})),
            [OK, OK, FORBIDDEN, FORBIDDEN, MISSING],
        ),
        case(
            M::PATCH,
            "/api/v1/users/{id}",
            T::FreshAgentUser,
            || Some(json!({"role": "admin"})),
            [OK, OK, FORBIDDEN, FORBIDDEN, MISSING],
        ),
        case(
            M::DELETE,
            "/api/v1/users/{id}",
            T::FreshAgentUser,
            none,
            [GONE, GONE, GONE, FORBIDDEN, MISSING],
        ),
    ];
    type Body = fn() -> Option<Value>;
    /// (path segment, target, create body, patch body, may read, may write) per caller.
    type Resource = (&'static str, Target, Body, Body, [bool; 5], [bool; 5]);
    let resources: [Resource; 5] = [
        (
            "phone-numbers",
            T::PhoneNumber,
            || Some(json!({"number": phone()})),
            || Some(json!({"label": "main"})),
            [true; 5],
            [true, true, true, false, true],
        ),
        (
            "agents",
            T::Agent,
            || Some(json!({"name": "Sales"})),
            || Some(json!({"enabled": false})),
            [true; 5],
            [true, true, true, false, true],
        ),
        (
            "credentials",
            T::Credential,
            || Some(json!({"kind": "twilio", "secrets": {"auth_token": "tok"}})),
            || Some(json!({"label": "prod"})),
            [true, true, false, false, true],
            [true, true, false, false, true],
        ),
        (
            "contacts",
            T::Contact,
            || Some(json!({"name": "Grace"})),
            || Some(json!({"notes": "vip"})),
            [true; 5],
            [true; 5],
        ),
        (
            "appointments",
            T::Appointment,
            || Some(slot()),
            || Some(json!({"notes": "bring id"})),
            [true; 5],
            [true; 5],
        ),
    ];
    for (base, target, new, patch, read, write) in resources {
        // Owner B passes the role check, but tenant A's rows (and tenant A
        // itself as a create target) are invisible to it: 404.
        let expect = |allowed: [bool; 5], yes: u16, own_list: bool| -> Expect {
            std::array::from_fn(|i| match (allowed[i], i) {
                (false, _) => FORBIDDEN,
                (true, 4) if !own_list => MISSING,
                (true, _) => yes,
            })
        };
        cases.push(case(
            M::GET,
            format!("/api/v1/{base}"),
            T::None,
            none,
            expect(read, OK, true),
        ));
        cases.push(case(
            M::POST,
            format!("/api/v1/{base}?tenant_id={{a}}"),
            T::None,
            new,
            expect(write, CREATED, false),
        ));
        cases.push(case(
            M::GET,
            format!("/api/v1/{base}/{{id}}"),
            target,
            none,
            expect(read, OK, false),
        ));
        cases.push(case(
            M::PATCH,
            format!("/api/v1/{base}/{{id}}"),
            target,
            patch,
            expect(write, OK, false),
        ));
        cases.push(case(
            M::DELETE,
            format!("/api/v1/{base}/{{id}}"),
            target,
            none,
            expect(write, GONE, false),
        ));
    }
    let read_all = [OK; 5];
    let read_a = [OK, OK, OK, OK, MISSING];
    cases.extend([
        case(M::GET, "/api/v1/calls", T::None, none, read_all),
        case(M::GET, "/api/v1/calls/{id}", T::Call, none, read_a),
        case(M::GET, "/api/v1/calls/{id}/transcript", T::Call, none, read_a),
        case(M::GET, "/api/v1/conversations", T::None, none, read_all),
        case(M::GET, "/api/v1/conversations/{id}", T::Conversation, none, read_a),
        case(M::GET, "/api/v1/messages", T::None, none, read_all),
        case(M::GET, "/api/v1/messages/{id}", T::Message, none, read_a),
        case(
            M::GET,
            "/api/v1/audit",
            T::None,
            none,
            [OK, OK, FORBIDDEN, FORBIDDEN, OK],
        ),
        // Read-only resources have no write routes.
        case(M::DELETE, "/api/v1/calls/{id}", T::Call, none, [NO_METHOD; 5]),
        case(M::POST, "/api/v1/messages", T::None, || Some(json!({})), [NO_METHOD; 5]),
    ]);
    cases
}

#[tokio::test]
async fn every_route_by_every_role_and_tenant() {
    let f = Fixture::new().await;
    let t = &f.t;
    let callers = [
        t.login_as(None, Role::SystemAdmin).await,
        t.login_as(Some(t.tenant_a.id), Role::Owner).await,
        t.login_as(Some(t.tenant_a.id), Role::Admin).await,
        t.login_as(Some(t.tenant_a.id), Role::Agent).await,
        t.login_as(Some(t.tenant_b.id), Role::Owner).await,
    ];
    let names = ["system_admin", "owner A", "admin A", "agent A", "owner B"];
    let mut failures = Vec::new();
    for case in cases() {
        for (i, caller) in callers.iter().enumerate() {
            let id = f.target(case.target).await;
            let path = case.path.replace("{id}", &id).replace("{a}", &f.a.to_string());
            let a = f.a.to_string();
            let body = (case.body)()
                .map(|b| serde_json::from_str(&b.to_string().replace("{a}", &a)).expect("body with tenant"));
            let res = t.call(case.method.clone(), &path, caller, body).await;
            if res.status.as_u16() != case.expect[i] {
                failures.push(format!(
                    "{} {} as {}: expected {}, got {} {}",
                    case.method, case.path, names[i], case.expect[i], res.status, res.text
                ));
            }
            if !res.status.is_success() && res.status != StatusCode::NO_CONTENT {
                assert!(
                    res.body["code"].is_string(),
                    "error without JSON code: {path} {}",
                    res.text
                );
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test]
async fn tenant_b_lists_never_contain_tenant_a_rows() {
    let f = Fixture::new().await;
    let t = &f.t;
    for target in [
        Target::PhoneNumber,
        Target::Agent,
        Target::Credential,
        Target::Contact,
        Target::Appointment,
    ] {
        f.target(target).await;
    }
    let owner_b = t.login_as(Some(t.tenant_b.id), Role::Owner).await;
    let owner_a = t.login_as(Some(t.tenant_a.id), Role::Owner).await;
    for base in [
        "phone-numbers",
        "agents",
        "credentials",
        "contacts",
        "appointments",
        "calls",
        "conversations",
        "messages",
    ] {
        let b = t.call(Method::GET, &format!("/api/v1/{base}"), &owner_b, None).await;
        assert_eq!(b.body["total"], json!(0), "{base} leaked to tenant B: {}", b.text);
        let a = t.call(Method::GET, &format!("/api/v1/{base}"), &owner_a, None).await;
        assert_eq!(a.body["total"], json!(1), "{base} for tenant A: {}", a.text);
        // Naming tenant A explicitly does not help tenant B either.
        let named = t
            .call(
                Method::GET,
                &format!("/api/v1/{base}?tenant_id={}", f.a),
                &owner_b,
                None,
            )
            .await;
        assert_eq!(named.status, StatusCode::NOT_FOUND, "{base}");
    }
    let tenants = t.call(Method::GET, "/api/v1/tenants", &owner_b, None).await;
    assert_eq!(tenants.body["total"], json!(1));
    assert_eq!(tenants.body["items"][0]["id"], json!(t.tenant_b.id));
}
