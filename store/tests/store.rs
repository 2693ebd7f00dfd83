//! The store's behaviour, one suite run against SQLite and PostgreSQL.

mod common;

use chrono::Duration as ChronoDuration;
use common::TestDb;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use switchboard_domain::*;
use switchboard_store::*;

fn new_tenant(name: &str) -> NewTenant {
    NewTenant {
        name: name.into(),
        notification_email: None,
        max_concurrent_calls: 10,
    }
}

async fn tenant(store: &Store, name: &str) -> Tenant {
    store.tenants().create(new_tenant(name)).await.expect("tenant")
}

fn new_agent(name: &str) -> NewAgent {
    serde_json::from_value(json!({ "name": name })).expect("agent json")
}

fn new_contact(name: &str) -> NewContact {
    serde_json::from_value(json!({ "name": name })).expect("contact json")
}

fn num(s: &str) -> E164 {
    E164::parse(s).expect("e164")
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, Secret> {
    pairs.iter().map(|(k, v)| (k.to_string(), Secret::new(*v))).collect()
}

fn new_call(tenant: TenantId, provider: Option<&str>) -> NewCall {
    NewCall {
        tenant_id: tenant,
        agent_id: None,
        provider_call_id: provider.map(ProviderCallId::new),
        direction: CallDirection::Inbound,
        from: "+15550001111".into(),
        to: "+15550002222".into(),
        status: CallStatus::Queued,
    }
}

fn page(limit: u32, offset: u32) -> PageRequest {
    PageRequest::new(limit, offset)
}

fn all() -> PageRequest {
    PageRequest::new(200, 0)
}

async fn count(store: &Store, sql: &'static str) -> i64 {
    use sqlx::Row;
    sqlx::query(sql)
        .fetch_one(store.pool())
        .await
        .expect("count")
        .try_get::<i64, _>(0)
        .expect("n")
}

// ---------------------------------------------------------------- tenants

async fn tenants_crud(db: &TestDb) {
    let s = &db.store;
    let a = tenant(s, "Acme").await;
    assert_eq!(s.tenants().get(Scope::All, a.id).await.expect("get"), a);
    assert_eq!(s.tenants().find_by_name("Acme").await.expect("find"), Some(a.clone()));
    assert_eq!(s.tenants().find_by_name("Nope").await.expect("find"), None);
    assert!(matches!(
        s.tenants().create(new_tenant("Acme")).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.tenants().create(new_tenant("  ")).await,
        Err(StoreError::Invalid { .. })
    ));

    let upd = s
        .tenants()
        .update(
            Scope::Tenant(a.id),
            a.id,
            TenantUpdate {
                name: Some("Acme Ltd".into()),
                notification_email: Some(Some("ops@acme.test".into())),
                max_concurrent_calls: Some(3),
            },
        )
        .await
        .expect("update");
    assert_eq!(upd.name, "Acme Ltd");
    assert_eq!(upd.max_concurrent_calls, 3);
    assert_eq!(s.tenants().get(Scope::All, a.id).await.expect("get"), upd);
    let cleared = s
        .tenants()
        .update(
            Scope::All,
            a.id,
            TenantUpdate {
                notification_email: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("clear");
    assert_eq!(cleared.notification_email, None);

    let b = tenant(s, "Bravo").await;
    let found = s
        .tenants()
        .list(Scope::All, &TenantFilter { q: Some("ACME".into()) }, all())
        .await
        .expect("list");
    assert_eq!(found.total, 1);
    assert_eq!(found.items[0].id, a.id);
    let scoped = s
        .tenants()
        .list(Scope::Tenant(b.id), &TenantFilter::default(), all())
        .await
        .expect("list");
    assert_eq!(scoped.total, 1);
    assert_eq!(scoped.items[0].id, b.id);

    assert!(matches!(
        s.tenants().get(Scope::Tenant(b.id), a.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.tenants().delete(Scope::Tenant(b.id), a.id).await,
        Err(StoreError::NotFound { .. })
    ));
    s.tenants().delete(Scope::All, a.id).await.expect("delete");
    assert!(matches!(
        s.tenants().get(Scope::All, a.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.tenants().delete(Scope::All, a.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn pagination_is_ordered_and_counts_the_filter(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut c = new_contact(&format!("c{i}"));
        if i % 2 == 0 {
            c.status = ContactStatus::Qualified;
        }
        ids.push(s.contacts().create(t.id, c).await.expect("contact").id);
    }
    s.contacts().create(other.id, new_contact("x")).await.expect("other");
    ids.reverse(); // newest first

    let scope = Scope::Tenant(t.id);
    let p1 = s
        .contacts()
        .list(scope, &ContactFilter::default(), page(2, 0))
        .await
        .expect("p1");
    let p2 = s
        .contacts()
        .list(scope, &ContactFilter::default(), page(2, 2))
        .await
        .expect("p2");
    let p3 = s
        .contacts()
        .list(scope, &ContactFilter::default(), page(2, 4))
        .await
        .expect("p3");
    assert_eq!((p1.total, p2.total, p3.total), (5, 5, 5));
    let got: Vec<_> = p1
        .items
        .iter()
        .chain(&p2.items)
        .chain(&p3.items)
        .map(|c| c.id)
        .collect();
    assert_eq!(got, ids);
    assert_eq!((p2.limit, p2.offset), (2, 2));

    let q = ContactFilter {
        status: Some(ContactStatus::Qualified),
        ..Default::default()
    };
    let filtered = s.contacts().list(scope, &q, page(1, 0)).await.expect("filtered");
    assert_eq!(filtered.total, 3);
    assert_eq!(filtered.items.len(), 1);
    let everyone = s
        .contacts()
        .list(Scope::All, &ContactFilter::default(), all())
        .await
        .expect("all");
    assert_eq!(everyone.total, 6);
}

// ---------------------------------------------------------------- users

async fn users_and_passwords(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let owner = s
        .users()
        .create(NewUser {
            tenant_id: Some(t.id),
            email: "  Owner@Example.COM ".into(),
            password: Secret::new("correct horse"),
            role: Role::Owner,
        })
        .await
        .expect("owner");
    assert_eq!(owner.email, "owner@example.com");
    assert_eq!(s.users().get(Scope::Tenant(t.id), owner.id).await.expect("get"), owner);
    assert!(matches!(
        s.users().get(Scope::Tenant(other.id), owner.id).await,
        Err(StoreError::NotFound { .. })
    ));

    let dup = s
        .users()
        .create(NewUser {
            tenant_id: Some(other.id),
            email: "OWNER@example.com".into(),
            password: Secret::new("x"),
            role: Role::Agent,
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");

    let admin_with_tenant = s
        .users()
        .create(NewUser {
            tenant_id: Some(t.id),
            email: "root@example.com".into(),
            password: Secret::new("x"),
            role: Role::SystemAdmin,
        })
        .await;
    assert!(matches!(admin_with_tenant, Err(StoreError::Invalid { .. })));
    let agent_without_tenant = s
        .users()
        .create(NewUser {
            tenant_id: None,
            email: "a@example.com".into(),
            password: Secret::new("x"),
            role: Role::Agent,
        })
        .await;
    assert!(matches!(agent_without_tenant, Err(StoreError::Invalid { .. })));
    let root = s
        .users()
        .create(NewUser {
            tenant_id: None,
            email: "root@example.com".into(),
            password: Secret::new("root pw"),
            role: Role::SystemAdmin,
        })
        .await
        .expect("root");

    let ok = s
        .users()
        .verify_login("OWNER@example.com ", "correct horse")
        .await
        .expect("verify");
    assert_eq!(ok.map(|u| u.id), Some(owner.id));
    assert_eq!(
        s.users()
            .verify_login("owner@example.com", "wrong")
            .await
            .expect("verify"),
        None
    );
    assert_eq!(
        s.users()
            .verify_login("nobody@example.com", "correct horse")
            .await
            .expect("verify"),
        None
    );

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE email = 'owner@example.com'")
        .fetch_one(s.pool())
        .await
        .expect("hash");
    assert!(stored.starts_with("$argon2id$") && !stored.contains("correct horse"));

    let updated = s
        .users()
        .update(
            Scope::Tenant(t.id),
            owner.id,
            UserUpdate {
                password: Some(Secret::new("new pw")),
                role: Some(Role::Admin),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.role, Role::Admin);
    assert_eq!(
        s.users()
            .verify_login("owner@example.com", "correct horse")
            .await
            .expect("v"),
        None
    );
    assert!(
        s.users()
            .verify_login("owner@example.com", "new pw")
            .await
            .expect("v")
            .is_some()
    );
    let promote = s
        .users()
        .update(
            Scope::All,
            owner.id,
            UserUpdate {
                role: Some(Role::SystemAdmin),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(promote, Err(StoreError::Invalid { .. })));
    let steal = s
        .users()
        .update(
            Scope::All,
            owner.id,
            UserUpdate {
                email: Some("ROOT@example.com".into()),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(steal, Err(StoreError::Conflict { .. })));

    let admins = s
        .users()
        .list(
            Scope::All,
            &UserFilter {
                role: Some(Role::Admin),
                q: None,
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(admins.total, 1);
    let in_tenant = s
        .users()
        .list(Scope::Tenant(t.id), &UserFilter::default(), all())
        .await
        .expect("list");
    assert_eq!(in_tenant.total, 1, "system admins belong to no tenant");
    let by_q = s
        .users()
        .list(
            Scope::All,
            &UserFilter {
                role: None,
                q: Some("ROOT".into()),
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(by_q.items.iter().map(|u| u.id).collect::<Vec<_>>(), vec![root.id]);

    assert!(matches!(
        s.users().delete(Scope::Tenant(other.id), owner.id).await,
        Err(StoreError::NotFound { .. })
    ));
    s.users().delete(Scope::Tenant(t.id), owner.id).await.expect("delete");
    assert_eq!(
        s.users().verify_login("owner@example.com", "new pw").await.expect("v"),
        None
    );
}

// ---------------------------------------------------------------- numbers and agents

async fn phone_numbers_and_agents(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let mut na = new_agent("Receptionist");
    na.tools = vec!["book_appointment".into()];
    na.settings = json!({"rules": [{"match": "hours", "say": "9 to 5"}]});
    na.llm = ProviderChoice {
        provider: "openai".into(),
        model: Some("gpt-4o-mini".into()),
        base_url: Some("http://127.0.0.1:9/v1".into()),
    };
    na.endpointing.silence_ms = 450;
    let agent = s.agents().create(t.id, na).await.expect("agent");
    assert_eq!(s.agents().get(Scope::Tenant(t.id), agent.id).await.expect("get"), agent);
    let foreign_agent = s.agents().create(other.id, new_agent("Theirs")).await.expect("agent");
    let mut disabled = new_agent("Night shift");
    disabled.enabled = false;
    s.agents().create(t.id, disabled).await.expect("agent");
    assert!(matches!(
        s.agents().create(t.id, new_agent("")).await,
        Err(StoreError::Invalid { .. })
    ));

    let enabled = s
        .agents()
        .list(
            Scope::Tenant(t.id),
            &AgentFilter {
                enabled: Some(true),
                q: None,
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(enabled.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![agent.id]);
    let by_q = s
        .agents()
        .list(
            Scope::All,
            &AgentFilter {
                enabled: None,
                q: Some("night".into()),
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(by_q.total, 1);

    let upd = s
        .agents()
        .update(
            Scope::Tenant(t.id),
            agent.id,
            AgentUpdate {
                greeting: Some("Hello!".into()),
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(upd.greeting, "Hello!");
    assert!(!upd.enabled);
    assert_eq!(upd.tools, vec!["book_appointment".to_string()]);
    assert!(matches!(
        s.agents()
            .update(Scope::Tenant(other.id), agent.id, AgentUpdate::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let pn = s
        .phone_numbers()
        .create(
            t.id,
            NewPhoneNumber {
                number: num("+15551230000"),
                agent_id: Some(agent.id),
                label: "Main".into(),
            },
        )
        .await
        .expect("number");
    assert_eq!(
        s.phone_numbers()
            .find_by_number(&num("+15551230000"))
            .await
            .expect("find"),
        Some(pn.clone())
    );
    assert_eq!(
        s.phone_numbers()
            .find_by_number(&num("+15559999999"))
            .await
            .expect("find"),
        None
    );

    let taken = s
        .phone_numbers()
        .create(
            other.id,
            NewPhoneNumber {
                number: num("+15551230000"),
                agent_id: None,
                label: String::new(),
            },
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict { .. })), "{taken:?}");
    let cross = s
        .phone_numbers()
        .create(
            t.id,
            NewPhoneNumber {
                number: num("+15551230001"),
                agent_id: Some(foreign_agent.id),
                label: String::new(),
            },
        )
        .await;
    assert!(matches!(cross, Err(StoreError::Invalid { .. })), "{cross:?}");
    let cross_update = s
        .phone_numbers()
        .update(
            Scope::All,
            pn.id,
            PhoneNumberUpdate {
                agent_id: Some(Some(foreign_agent.id)),
                label: None,
            },
        )
        .await;
    assert!(matches!(cross_update, Err(StoreError::Invalid { .. })));

    let second = s
        .phone_numbers()
        .create(
            t.id,
            NewPhoneNumber {
                number: num("+15551230002"),
                agent_id: None,
                label: "Spare".into(),
            },
        )
        .await
        .expect("second");
    let of_agent = s
        .phone_numbers()
        .list(
            Scope::Tenant(t.id),
            &PhoneNumberFilter {
                agent_id: Some(agent.id),
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(of_agent.items.iter().map(|p| p.id).collect::<Vec<_>>(), vec![pn.id]);
    assert!(matches!(
        s.phone_numbers().get(Scope::Tenant(other.id), second.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Deleting the agent unroutes its numbers instead of deleting them.
    s.agents()
        .delete(Scope::Tenant(t.id), agent.id)
        .await
        .expect("delete agent");
    assert_eq!(
        s.phone_numbers().get(Scope::All, pn.id).await.expect("get").agent_id,
        None
    );

    let cleared = s
        .phone_numbers()
        .update(
            Scope::Tenant(t.id),
            second.id,
            PhoneNumberUpdate {
                agent_id: Some(None),
                label: Some("Backup".into()),
            },
        )
        .await
        .expect("update");
    assert_eq!(cleared.label, "Backup");
    s.phone_numbers()
        .delete(Scope::Tenant(t.id), second.id)
        .await
        .expect("delete");
    assert!(matches!(
        s.phone_numbers().get(Scope::All, second.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- credentials

async fn credentials_are_encrypted_at_rest(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let cred = s
        .credentials()
        .create(
            t.id,
            NewCredential {
                kind: CredentialKind::Twilio,
                label: "prod".into(),
                public: json!({"account_sid": "AC123"}),
                secrets: secrets(&[("auth_token", "tok-PLAINTEXT-1234")]),
            },
        )
        .await
        .expect("create");
    assert_eq!(cred.secret_keys, vec!["auth_token".to_string()]);
    assert_eq!(
        s.credentials().get(Scope::Tenant(t.id), cred.id).await.expect("get"),
        cred
    );
    assert!(matches!(
        s.credentials().get(Scope::Tenant(other.id), cred.id).await,
        Err(StoreError::NotFound { .. })
    ));

    let raw: String = sqlx::query_scalar("SELECT secrets_sealed FROM credentials")
        .fetch_one(s.pool())
        .await
        .expect("raw");
    assert!(!raw.contains("tok-PLAINTEXT-1234") && !raw.contains("auth_token"));
    let dump: Vec<String> =
        sqlx::query_scalar("SELECT public_config || secret_keys || secrets_sealed FROM credentials")
            .fetch_all(s.pool())
            .await
            .expect("dump");
    assert!(dump.iter().all(|row| !row.contains("tok-PLAINTEXT-1234")));

    let got = s.credentials().secrets(t.id, cred.id).await.expect("secrets");
    assert_eq!(got.get("auth_token").map(Secret::expose), Some("tok-PLAINTEXT-1234"));
    assert!(matches!(
        s.credentials().secrets(other.id, cred.id).await,
        Err(StoreError::NotFound { .. })
    ));

    // Another key cannot open it.
    let wrong = db.reopen([7; 32]).await;
    assert!(matches!(
        wrong.credentials().secrets(t.id, cred.id).await,
        Err(StoreError::Crypto)
    ));
    wrong.close().await;

    // Ciphertext copied onto another row does not open there.
    let second = s
        .credentials()
        .create(
            t.id,
            NewCredential {
                kind: CredentialKind::OpenAi,
                label: String::new(),
                public: json!({}),
                secrets: secrets(&[("api_key", "sk-other")]),
            },
        )
        .await
        .expect("second");
    sqlx::query("UPDATE credentials SET secrets_sealed = $1 WHERE id = $2")
        .bind(raw.clone())
        .bind(second.id.to_string())
        .execute(s.pool())
        .await
        .expect("move");
    let moved = s.credentials().secrets(t.id, second.id).await;
    assert!(matches!(moved, Err(StoreError::Crypto)));
    let msg = format!(
        "{:?} {}",
        moved.as_ref().err(),
        moved.as_ref().err().map(|e| e.to_string()).unwrap_or_default()
    );
    assert!(!msg.contains("tok-PLAINTEXT"), "{msg}");

    // Update replaces secrets and re-seals; find_by_kind returns the newest.
    let upd = s
        .credentials()
        .update(
            Scope::Tenant(t.id),
            second.id,
            CredentialUpdate {
                label: Some("fixed".into()),
                public: None,
                secrets: Some(secrets(&[("api_key", "sk-new"), ("org", "org-1")])),
            },
        )
        .await
        .expect("update");
    assert_eq!(upd.secret_keys, vec!["api_key".to_string(), "org".to_string()]);
    let got = s.credentials().secrets(t.id, second.id).await.expect("secrets");
    assert_eq!(got.get("api_key").map(Secret::expose), Some("sk-new"));

    let newer = s
        .credentials()
        .create(
            t.id,
            NewCredential {
                kind: CredentialKind::Twilio,
                label: "newer".into(),
                public: json!({}),
                secrets: secrets(&[("auth_token", "tok-2")]),
            },
        )
        .await
        .expect("newer");
    let (found, found_secrets) = s
        .credentials()
        .find_by_kind(t.id, CredentialKind::Twilio)
        .await
        .expect("find")
        .expect("some");
    assert_eq!(found.id, newer.id);
    assert_eq!(found_secrets.get("auth_token").map(Secret::expose), Some("tok-2"));
    assert!(
        s.credentials()
            .find_by_kind(other.id, CredentialKind::Twilio)
            .await
            .expect("find")
            .is_none()
    );

    let twilio = s
        .credentials()
        .list(
            Scope::Tenant(t.id),
            &CredentialFilter {
                kind: Some(CredentialKind::Twilio),
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(twilio.total, 2);
    assert_eq!(twilio.items[0].id, newer.id);
    s.credentials()
        .delete(Scope::Tenant(t.id), newer.id)
        .await
        .expect("delete");
    assert!(matches!(
        s.credentials().secrets(t.id, newer.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- contacts

async fn contacts_filters_and_lookup(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let mut ann = new_contact("Ann Smith");
    ann.phone = Some(num("+15550001111"));
    ann.tags = vec!["vip".into(), " vip ".into(), "2024".into()];
    ann.email = Some("ann@example.com".into());
    let ann = s.contacts().create(t.id, ann).await.expect("ann");
    assert_eq!(ann.tags, vec!["vip".to_string(), "2024".to_string()]);
    let mut bob = new_contact("Bob 100%");
    bob.tags = vec!["vip2".into()];
    let bob = s.contacts().create(t.id, bob).await.expect("bob");
    let mut theirs = new_contact("Ann Other");
    theirs.phone = Some(num("+15550001111"));
    s.contacts().create(other.id, theirs).await.expect("theirs");

    let scope = Scope::Tenant(t.id);
    let vip = s
        .contacts()
        .list(
            scope,
            &ContactFilter {
                tag: Some("vip".into()),
                ..Default::default()
            },
            all(),
        )
        .await
        .expect("vip");
    assert_eq!(vip.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![ann.id]);
    let pct = s
        .contacts()
        .list(
            scope,
            &ContactFilter {
                q: Some("100%".into()),
                ..Default::default()
            },
            all(),
        )
        .await
        .expect("pct");
    assert_eq!(pct.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![bob.id]);
    let by_email = s
        .contacts()
        .list(
            scope,
            &ContactFilter {
                q: Some("ANN@EXAMPLE".into()),
                ..Default::default()
            },
            all(),
        )
        .await
        .expect("email");
    assert_eq!(by_email.total, 1);

    assert_eq!(
        s.contacts()
            .find_by_phone(t.id, &num("+15550001111"))
            .await
            .expect("find")
            .map(|c| c.id),
        Some(ann.id)
    );
    assert_eq!(
        s.contacts()
            .find_by_phone(t.id, &num("+15550009999"))
            .await
            .expect("find"),
        None
    );

    let upd = s
        .contacts()
        .update(
            scope,
            ann.id,
            ContactUpdate {
                phone: Some(None),
                status: Some(ContactStatus::Converted),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(upd.phone, None);
    assert_eq!(s.contacts().get(scope, ann.id).await.expect("get"), upd);
    assert!(matches!(
        s.contacts()
            .update(Scope::Tenant(other.id), ann.id, ContactUpdate::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));
    s.contacts().delete(scope, bob.id).await.expect("delete");
    assert!(matches!(
        s.contacts().get(scope, bob.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn corrupt_rows_are_reported_not_panicked(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let c = s.contacts().create(t.id, new_contact("x")).await.expect("contact");
    sqlx::query("UPDATE contacts SET status = 'bogus'")
        .execute(s.pool())
        .await
        .expect("damage");
    assert!(matches!(
        s.contacts().get(Scope::All, c.id).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        s.contacts().list(Scope::All, &ContactFilter::default(), all()).await,
        Err(StoreError::Corrupt { .. })
    ));
}

// ---------------------------------------------------------------- appointments

async fn appointments_refuse_double_booking(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let contact = s.contacts().create(t.id, new_contact("c")).await.expect("contact");
    let foreign = s.contacts().create(other.id, new_contact("f")).await.expect("foreign");
    let base = timestamp_from_millis(1_900_000_000_000);
    let at = |mins: i64| base + ChronoDuration::minutes(mins);
    let appt = |start: i64, end: i64| NewAppointment {
        contact_id: Some(contact.id),
        call_id: None,
        title: "Visit".into(),
        starts_at: at(start),
        ends_at: at(end),
        notes: String::new(),
    };

    let first = s.appointments().create(t.id, appt(0, 30)).await.expect("first");
    assert_eq!(first.status, AppointmentStatus::Scheduled);
    assert_eq!(
        s.appointments().get(Scope::Tenant(t.id), first.id).await.expect("get"),
        first
    );
    let clash = s.appointments().create(t.id, appt(15, 45)).await;
    assert!(matches!(clash, Err(StoreError::Conflict { .. })), "{clash:?}");
    let inside = s.appointments().create(t.id, appt(5, 10)).await;
    assert!(matches!(inside, Err(StoreError::Conflict { .. })));
    let adjacent = s.appointments().create(t.id, appt(30, 60)).await.expect("adjacent");
    let mut theirs = appt(0, 30);
    theirs.contact_id = None;
    s.appointments()
        .create(other.id, theirs)
        .await
        .expect("other tenant, same slot");

    assert!(matches!(
        s.appointments().create(t.id, appt(90, 90)).await,
        Err(StoreError::Invalid { .. })
    ));
    assert!(matches!(
        s.appointments().create(t.id, appt(90, 80)).await,
        Err(StoreError::Invalid { .. })
    ));
    let mut cross = appt(120, 150);
    cross.contact_id = Some(foreign.id);
    assert!(matches!(
        s.appointments().create(t.id, cross).await,
        Err(StoreError::Invalid { .. })
    ));

    // Moving into an occupied slot is refused; cancelling frees the slot.
    let moved = s
        .appointments()
        .update(
            Scope::Tenant(t.id),
            adjacent.id,
            AppointmentUpdate {
                starts_at: Some(at(20)),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(moved, Err(StoreError::Conflict { .. })), "{moved:?}");
    let bad_range = s
        .appointments()
        .update(
            Scope::Tenant(t.id),
            adjacent.id,
            AppointmentUpdate {
                ends_at: Some(at(0)),
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(bad_range, Err(StoreError::Invalid { .. })));
    s.appointments()
        .update(
            Scope::Tenant(t.id),
            first.id,
            AppointmentUpdate {
                status: Some(AppointmentStatus::Cancelled),
                ..Default::default()
            },
        )
        .await
        .expect("cancel");
    let moved = s
        .appointments()
        .update(
            Scope::Tenant(t.id),
            adjacent.id,
            AppointmentUpdate {
                starts_at: Some(at(20)),
                title: Some("Moved".into()),
                ..Default::default()
            },
        )
        .await
        .expect("move");
    assert_eq!(moved.starts_at, at(20));
    assert!(matches!(
        s.appointments()
            .update(Scope::Tenant(other.id), moved.id, AppointmentUpdate::default())
            .await,
        Err(StoreError::NotFound { .. })
    ));

    let window = AppointmentFilter {
        from: Some(at(50)),
        to: Some(at(55)),
        ..Default::default()
    };
    let hits = s
        .appointments()
        .list(Scope::Tenant(t.id), &window, all())
        .await
        .expect("window");
    assert_eq!(hits.items.iter().map(|a| a.id).collect::<Vec<_>>(), vec![moved.id]);
    let scheduled = AppointmentFilter {
        status: Some(AppointmentStatus::Scheduled),
        contact_id: Some(contact.id),
        ..Default::default()
    };
    assert_eq!(
        s.appointments()
            .list(Scope::Tenant(t.id), &scheduled, all())
            .await
            .expect("list")
            .total,
        1
    );

    // Deleting the contact keeps the appointment, unlinked.
    s.contacts()
        .delete(Scope::Tenant(t.id), contact.id)
        .await
        .expect("delete contact");
    assert_eq!(
        s.appointments()
            .get(Scope::All, moved.id)
            .await
            .expect("get")
            .contact_id,
        None
    );
    s.appointments()
        .delete(Scope::Tenant(t.id), moved.id)
        .await
        .expect("delete");
    assert!(matches!(
        s.appointments().get(Scope::All, moved.id).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn concurrent_bookings_of_one_slot_admit_one(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let start = timestamp_from_millis(1_900_000_000_000);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = s.clone();
        tasks.push(tokio::spawn(async move {
            let offset = ChronoDuration::minutes(i);
            store
                .appointments()
                .create(
                    t.id,
                    NewAppointment {
                        contact_id: None,
                        call_id: None,
                        title: format!("try {i}"),
                        starts_at: start + offset,
                        ends_at: start + offset + ChronoDuration::minutes(30),
                        notes: String::new(),
                    },
                )
                .await
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!(ok, 1);
}

// ---------------------------------------------------------------- calls and transcripts

async fn call_status_is_monotonic_and_finish_idempotent(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let agent = s.agents().create(t.id, new_agent("a")).await.expect("agent");
    let foreign_agent = s.agents().create(other.id, new_agent("f")).await.expect("agent");
    let mut nc = new_call(t.id, Some("CA0001"));
    nc.agent_id = Some(agent.id);
    let call = s.calls().create(nc).await.expect("call");
    assert_eq!(s.calls().get(Scope::Tenant(t.id), call.id).await.expect("get"), call);
    assert!(matches!(
        s.calls().get(Scope::Tenant(other.id), call.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        s.calls()
            .get_by_provider_call_id(&ProviderCallId::new("CA0001"))
            .await
            .expect("by sid")
            .map(|c| c.id),
        Some(call.id)
    );
    assert!(matches!(
        s.calls().create(new_call(t.id, Some("CA0001"))).await,
        Err(StoreError::Conflict { .. })
    ));
    let mut cross = new_call(t.id, None);
    cross.agent_id = Some(foreign_agent.id);
    assert!(matches!(s.calls().create(cross).await, Err(StoreError::Invalid { .. })));

    assert_eq!(s.calls().count_live(t.id).await.expect("live"), 1);
    let c = s
        .calls()
        .set_status(call.id, CallStatus::InProgress)
        .await
        .expect("status");
    assert_eq!(c.status, CallStatus::InProgress);
    let c = s
        .calls()
        .set_status(call.id, CallStatus::Ringing)
        .await
        .expect("late ringing");
    assert_eq!(
        c.status,
        CallStatus::InProgress,
        "a late callback must not move the call back"
    );
    let c = s
        .calls()
        .set_status(call.id, CallStatus::Streaming)
        .await
        .expect("streaming");
    assert_eq!(c.status, CallStatus::Streaming);
    let answered = timestamp_from_millis(1_800_000_000_000);
    let c = s.calls().set_answered(call.id, answered).await.expect("answered");
    assert_eq!(c.answered_at, Some(answered));

    let done = s
        .calls()
        .finish(call.id, CallStatus::Completed, EndReason::CallerHangup)
        .await
        .expect("finish");
    assert_eq!(done.status, CallStatus::Completed);
    assert_eq!(done.end_reason, Some(EndReason::CallerHangup));
    let ended_at = done.ended_at.expect("ended_at");
    let again = s
        .calls()
        .finish(call.id, CallStatus::Failed, EndReason::Shutdown)
        .await
        .expect("finish again");
    assert_eq!(again.status, CallStatus::Completed);
    assert_eq!(again.end_reason, Some(EndReason::CallerHangup));
    assert_eq!(again.ended_at, Some(ended_at));
    let c = s
        .calls()
        .set_status(call.id, CallStatus::Busy)
        .await
        .expect("terminal sticks");
    assert_eq!(c.status, CallStatus::Completed);
    assert!(matches!(
        s.calls()
            .finish(call.id, CallStatus::Ringing, EndReason::Completed)
            .await,
        Err(StoreError::Invalid { .. })
    ));
    assert_eq!(s.calls().count_live(t.id).await.expect("live"), 0);

    // A terminal status from a callback before `finish` is kept by finish.
    let second = s.calls().create(new_call(t.id, Some("CA0002"))).await.expect("second");
    s.calls()
        .set_status(second.id, CallStatus::NoAnswer)
        .await
        .expect("no answer");
    let f = s
        .calls()
        .finish(second.id, CallStatus::Completed, EndReason::Rejected)
        .await
        .expect("finish");
    assert_eq!(f.status, CallStatus::NoAnswer);
    assert!(f.ended_at.is_some());

    let c = s
        .calls()
        .set_recording(call.id, "https://rec.example/1.wav".into())
        .await
        .expect("rec");
    assert_eq!(c.recording_url.as_deref(), Some("https://rec.example/1.wav"));
    let c = s
        .calls()
        .set_summary(call.id, "Booked a visit".into())
        .await
        .expect("summary");
    assert_eq!(c.summary.as_deref(), Some("Booked a visit"));
    assert!(matches!(
        s.calls().set_summary(CallId::new(), "x".into()).await,
        Err(StoreError::NotFound { .. })
    ));

    let mut outbound = new_call(t.id, None);
    outbound.direction = CallDirection::Outbound;
    let outbound = s.calls().create(outbound).await.expect("outbound");
    let filter = CallFilter {
        direction: Some(CallDirection::Outbound),
        ..Default::default()
    };
    let list = s.calls().list(Scope::Tenant(t.id), &filter, all()).await.expect("list");
    assert_eq!(list.items.iter().map(|c| c.id).collect::<Vec<_>>(), vec![outbound.id]);
    let filter = CallFilter {
        agent_id: Some(agent.id),
        status: Some(CallStatus::Completed),
        ..Default::default()
    };
    assert_eq!(s.calls().list(Scope::All, &filter, all()).await.expect("list").total, 1);
    let future = CallFilter {
        from: Some(domain_now_plus_hours(1)),
        ..Default::default()
    };
    assert_eq!(s.calls().list(Scope::All, &future, all()).await.expect("list").total, 0);
    assert_eq!(
        s.calls()
            .list(Scope::Tenant(other.id), &CallFilter::default(), all())
            .await
            .expect("l")
            .total,
        0
    );
}

fn domain_now_plus_hours(h: i64) -> Timestamp {
    now() + ChronoDuration::hours(h)
}

async fn transcript_seq_is_atomic_under_concurrency(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let call = s.calls().create(new_call(t.id, None)).await.expect("call");
    let mut tasks = Vec::new();
    for i in 0..24_i64 {
        let store = s.clone();
        tasks.push(tokio::spawn(async move {
            store
                .transcripts()
                .append(call.id, Speaker::Caller, &format!("line {i}"), i * 100, i * 100 + 90)
                .await
        }));
    }
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.expect("join").expect("append").seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (0..24).collect::<Vec<_>>());

    let listed = s.transcripts().list(call.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|seg| seg.seq).collect::<Vec<_>>(),
        (0..24).collect::<Vec<_>>()
    );
    let last = s
        .transcripts()
        .append(call.id, Speaker::Agent, "bye", 5000, 5600)
        .await
        .expect("append");
    assert_eq!(last.seq, 24);
    assert_eq!(s.transcripts().list(call.id).await.expect("list").last(), Some(&last));
    assert!(matches!(
        s.transcripts().append(CallId::new(), Speaker::Agent, "x", 0, 1).await,
        Err(StoreError::NotFound { .. })
    ));
}

// ---------------------------------------------------------------- conversations and messages

async fn conversations_and_messages(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let contact = s.contacts().create(t.id, new_contact("c")).await.expect("contact");
    let foreign_contact = s.contacts().create(other.id, new_contact("f")).await.expect("contact");
    let conv = s
        .conversations()
        .create(NewConversation {
            tenant_id: t.id,
            channel: Channel::WhatsAppMeta,
            contact_id: Some(contact.id),
            agent_id: None,
            external_id: "+15550001111".into(),
        })
        .await
        .expect("conversation");
    assert_eq!(
        s.conversations().get(Scope::Tenant(t.id), conv.id).await.expect("get"),
        conv
    );
    assert!(matches!(
        s.conversations().get(Scope::Tenant(other.id), conv.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let dup = s
        .conversations()
        .create(NewConversation {
            tenant_id: t.id,
            channel: Channel::WhatsAppMeta,
            contact_id: None,
            agent_id: None,
            external_id: "+15550001111".into(),
        })
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })));
    let cross = s
        .conversations()
        .create(NewConversation {
            tenant_id: t.id,
            channel: Channel::WhatsAppGreen,
            contact_id: Some(foreign_contact.id),
            agent_id: None,
            external_id: "x".into(),
        })
        .await;
    assert!(matches!(cross, Err(StoreError::Invalid { .. })));
    assert_eq!(
        s.conversations()
            .find_by_external(t.id, Channel::WhatsAppMeta, "+15550001111")
            .await
            .expect("find")
            .map(|c| c.id),
        Some(conv.id)
    );
    assert_eq!(
        s.conversations()
            .find_by_external(other.id, Channel::WhatsAppMeta, "+15550001111")
            .await
            .expect("find"),
        None
    );

    let inbound = NewMessage {
        tenant_id: t.id,
        conversation_id: conv.id,
        direction: MessageDirection::Inbound,
        provider_message_id: Some(ProviderMessageId::new("wamid.1")),
        status: MessageStatus::Received,
        body: "hi".into(),
    };
    let m = s.messages().create(inbound.clone()).await.expect("message");
    let bumped = s.conversations().get(Scope::All, conv.id).await.expect("get");
    assert_eq!(bumped.last_message_at, Some(m.created_at));
    assert!(matches!(
        s.messages().create(inbound).await,
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(count(s, "SELECT COUNT(*) FROM messages").await, 1);

    let wrong_tenant = s
        .messages()
        .create(NewMessage {
            tenant_id: other.id,
            conversation_id: conv.id,
            direction: MessageDirection::Outbound,
            provider_message_id: None,
            status: MessageStatus::Queued,
            body: "x".into(),
        })
        .await;
    assert!(matches!(wrong_tenant, Err(StoreError::Invalid { .. })));

    let out = s
        .messages()
        .create(NewMessage {
            tenant_id: t.id,
            conversation_id: conv.id,
            direction: MessageDirection::Outbound,
            provider_message_id: Some(ProviderMessageId::new("wamid.2")),
            status: MessageStatus::Sent,
            body: "hello".into(),
        })
        .await
        .expect("out");
    let delivered = s
        .messages()
        .set_status_by_provider_id(&ProviderMessageId::new("wamid.2"), MessageStatus::Delivered)
        .await
        .expect("status")
        .expect("found");
    assert_eq!((delivered.id, delivered.status), (out.id, MessageStatus::Delivered));
    assert_eq!(
        s.messages()
            .set_status_by_provider_id(&ProviderMessageId::new("nope"), MessageStatus::Read)
            .await
            .expect("status"),
        None
    );
    assert_eq!(s.messages().get(Scope::Tenant(t.id), m.id).await.expect("get"), m);
    assert!(matches!(
        s.messages().get(Scope::Tenant(other.id), m.id).await,
        Err(StoreError::NotFound { .. })
    ));

    let filter = MessageFilter {
        conversation_id: Some(conv.id),
        direction: Some(MessageDirection::Outbound),
    };
    let list = s
        .messages()
        .list(Scope::Tenant(t.id), &filter, all())
        .await
        .expect("list");
    assert_eq!(list.items.iter().map(|m| m.id).collect::<Vec<_>>(), vec![out.id]);
    let convs = s
        .conversations()
        .list(
            Scope::Tenant(t.id),
            &ConversationFilter {
                channel: Some(Channel::WhatsAppMeta),
                contact_id: Some(contact.id),
            },
            all(),
        )
        .await
        .expect("list");
    assert_eq!(convs.total, 1);
}

// ---------------------------------------------------------------- audit and sessions

async fn audit_log_is_scoped(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let entry = |tenant: Option<TenantId>, action: &str| NewAuditEntry {
        tenant_id: tenant,
        user_id: None,
        action: action.into(),
        entity: "agent".into(),
        entity_id: "x".into(),
        detail: json!({"changed": ["name"]}),
    };
    let first = s.audit().record(entry(Some(t.id), "create")).await.expect("record");
    let second = s.audit().record(entry(Some(t.id), "update")).await.expect("record");
    s.audit().record(entry(Some(other.id), "create")).await.expect("record");
    s.audit().record(entry(None, "login")).await.expect("record");

    let mine = s.audit().list(Scope::Tenant(t.id), all()).await.expect("list");
    assert_eq!(mine.items, vec![second, first]);
    assert_eq!(s.audit().list(Scope::All, all()).await.expect("list").total, 4);
}

async fn sessions_expire_and_revoke(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let user = s
        .users()
        .create(NewUser {
            tenant_id: Some(t.id),
            email: "u@example.com".into(),
            password: Secret::new("pw"),
            role: Role::Agent,
        })
        .await
        .expect("user");
    let a = s
        .sessions()
        .create(user.id, Duration::from_secs(3600))
        .await
        .expect("a");
    let b = s
        .sessions()
        .create(user.id, Duration::from_secs(3600))
        .await
        .expect("b");
    assert_ne!(a.id, b.id);
    assert_ne!(a.csrf_token, b.csrf_token);
    assert_eq!(a.csrf_token.len(), 43, "32 bytes in unpadded base64url");
    assert_eq!(s.sessions().get(a.id).await.expect("get"), Some(a.clone()));

    let expired = s.sessions().create(user.id, Duration::ZERO).await.expect("expired");
    assert_eq!(s.sessions().get(expired.id).await.expect("get"), None);

    s.sessions().revoke(a.id).await.expect("revoke");
    assert_eq!(s.sessions().get(a.id).await.expect("get"), None);
    assert_eq!(s.sessions().get(b.id).await.expect("get"), Some(b.clone()));
    let c = s
        .sessions()
        .create(user.id, Duration::from_secs(3600))
        .await
        .expect("c");
    s.sessions().revoke_all_for_user(user.id).await.expect("revoke all");
    assert_eq!(s.sessions().get(b.id).await.expect("get"), None);
    assert_eq!(s.sessions().get(c.id).await.expect("get"), None);
    assert_eq!(s.sessions().get(SessionId::new()).await.expect("get"), None);
}

// ---------------------------------------------------------------- cascade

async fn deleting_a_tenant_cascades(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "Doomed").await;
    let keep = tenant(s, "Keep").await;
    for tenant in [t.id, keep.id] {
        let agent = s.agents().create(tenant, new_agent("a")).await.expect("agent");
        let number = if tenant == t.id { "+15551110000" } else { "+15552220000" };
        s.phone_numbers()
            .create(
                tenant,
                NewPhoneNumber {
                    number: num(number),
                    agent_id: Some(agent.id),
                    label: String::new(),
                },
            )
            .await
            .expect("number");
        s.users()
            .create(NewUser {
                tenant_id: Some(tenant),
                email: format!("{tenant}@example.com"),
                password: Secret::new("pw"),
                role: Role::Owner,
            })
            .await
            .expect("user");
        s.credentials()
            .create(
                tenant,
                NewCredential {
                    kind: CredentialKind::Twilio,
                    label: String::new(),
                    public: json!({}),
                    secrets: secrets(&[("k", "v")]),
                },
            )
            .await
            .expect("credential");
        let contact = s.contacts().create(tenant, new_contact("c")).await.expect("contact");
        let call = s.calls().create(new_call(tenant, None)).await.expect("call");
        s.transcripts()
            .append(call.id, Speaker::Caller, "hi", 0, 10)
            .await
            .expect("segment");
        s.appointments()
            .create(
                tenant,
                NewAppointment {
                    contact_id: Some(contact.id),
                    call_id: Some(call.id),
                    title: String::new(),
                    starts_at: timestamp_from_millis(1_000),
                    ends_at: timestamp_from_millis(2_000),
                    notes: String::new(),
                },
            )
            .await
            .expect("appointment");
        let conv = s
            .conversations()
            .create(NewConversation {
                tenant_id: tenant,
                channel: Channel::WhatsAppGreen,
                contact_id: Some(contact.id),
                agent_id: Some(agent.id),
                external_id: "x".into(),
            })
            .await
            .expect("conversation");
        s.messages()
            .create(NewMessage {
                tenant_id: tenant,
                conversation_id: conv.id,
                direction: MessageDirection::Inbound,
                provider_message_id: None,
                status: MessageStatus::Received,
                body: "b".into(),
            })
            .await
            .expect("message");
        s.audit()
            .record(NewAuditEntry {
                tenant_id: Some(tenant),
                user_id: None,
                action: "create".into(),
                entity: "agent".into(),
                entity_id: agent.id.to_string(),
                detail: json!({}),
            })
            .await
            .expect("audit");
    }
    let user = s
        .users()
        .list(Scope::Tenant(t.id), &UserFilter::default(), all())
        .await
        .expect("users")
        .items[0]
        .id;
    s.sessions()
        .create(user, Duration::from_secs(60))
        .await
        .expect("session");

    s.tenants().delete(Scope::All, t.id).await.expect("delete");
    for (table, expected) in [
        ("SELECT COUNT(*) FROM tenants", 1),
        ("SELECT COUNT(*) FROM users", 1),
        ("SELECT COUNT(*) FROM agents", 1),
        ("SELECT COUNT(*) FROM phone_numbers", 1),
        ("SELECT COUNT(*) FROM credentials", 1),
        ("SELECT COUNT(*) FROM contacts", 1),
        ("SELECT COUNT(*) FROM calls", 1),
        ("SELECT COUNT(*) FROM transcript_segments", 1),
        ("SELECT COUNT(*) FROM appointments", 1),
        ("SELECT COUNT(*) FROM conversations", 1),
        ("SELECT COUNT(*) FROM messages", 1),
        ("SELECT COUNT(*) FROM audit_log", 1),
        ("SELECT COUNT(*) FROM sessions", 0),
    ] {
        assert_eq!(count(s, table).await, expected, "{table}");
    }
    assert!(
        s.phone_numbers()
            .find_by_number(&num("+15552220000"))
            .await
            .expect("find")
            .is_some()
    );
}

async fn ping_migrate_again_and_backend(db: &TestDb) {
    let s = &db.store;
    s.ping().await.expect("ping");
    s.migrate().await.expect("migrations are idempotent");
    let expected = if db.url.starts_with("sqlite") {
        Backend::Sqlite
    } else {
        Backend::Postgres
    };
    assert_eq!(s.backend(), expected);
    if expected == Backend::Sqlite {
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(s.pool())
            .await
            .expect("pragma");
        assert_eq!(mode.to_lowercase(), "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(s.pool())
            .await
            .expect("pragma");
        assert_eq!(fk, 1);
    }
}

async fn turn_latencies_upsert_per_turn(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let call = s.calls().create(new_call(t.id, None)).await.expect("call");
    let first = TurnLatency {
        turn_id: 1,
        stt_final_ms: Some(180),
        agent_first_token_ms: Some(190),
        tts_first_audio_ms: Some(400),
        first_frame_ms: Some(405),
        mark_confirmed_ms: None,
    };
    s.turns().record(call.id, &first).await.expect("record");
    let greeting = TurnLatency {
        turn_id: 0,
        tts_first_audio_ms: Some(300),
        ..TurnLatency::default()
    };
    s.turns().record(call.id, &greeting).await.expect("record greeting");
    // The mark arrives later: the same turn is written again, not duplicated.
    let confirmed = TurnLatency {
        mark_confirmed_ms: Some(900),
        ..first
    };
    s.turns().record(call.id, &confirmed).await.expect("re-record");
    assert_eq!(s.turns().list(call.id).await.expect("list"), vec![greeting, confirmed]);
    let other = s.calls().create(new_call(t.id, None)).await.expect("call");
    assert!(s.turns().list(other.id).await.expect("list").is_empty());
}

#[tokio::test]
async fn in_memory_sqlite_keeps_one_database() {
    let store = Store::connect("sqlite::memory:", 8, common::KEY)
        .await
        .expect("connect");
    store.migrate().await.expect("migrate");
    let t = tenant(&store, "Mem").await;
    for _ in 0..3 {
        assert_eq!(store.tenants().get(Scope::All, t.id).await.expect("get").id, t.id);
    }
    store.close().await;
}

#[tokio::test]
async fn unknown_url_schemes_are_invalid() {
    let err = Store::connect("mysql://localhost/db", 1, common::KEY).await.err();
    assert!(matches!(err, Some(StoreError::Invalid { .. })), "{err:?}");
}

both!(
    tenants_crud,
    pagination_is_ordered_and_counts_the_filter,
    users_and_passwords,
    phone_numbers_and_agents,
    credentials_are_encrypted_at_rest,
    contacts_filters_and_lookup,
    corrupt_rows_are_reported_not_panicked,
    appointments_refuse_double_booking,
    concurrent_bookings_of_one_slot_admit_one,
    call_status_is_monotonic_and_finish_idempotent,
    transcript_seq_is_atomic_under_concurrency,
    turn_latencies_upsert_per_turn,
    conversations_and_messages,
    audit_log_is_scoped,
    sessions_expire_and_revoke,
    deleting_a_tenant_cascades,
    ping_migrate_again_and_backend,
);
