//! The post-call summary job end to end: the production [`SummaryWorker`]
//! on the real bus (in-process and Redis), a real store (in-memory SQLite),
//! the async-openai summary client against the fake OpenAI chat server and
//! the SendGrid adapter against the fake SendGrid server.
//!
//! Every case runs on both bus backends. Redis must be reachable at
//! `SWITCHBOARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`): without it
//! these tests fail, they never skip. Each Redis case uses its own key prefix.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_bus::{Bus, BusOptions, RetryPolicy};
use switchboard_domain::{
    Agent, Call, CallDirection, CallStatus, CredentialKind, EndReason, NewAgent, NewCall, NewCredential, NewTenant,
    Secret, Speaker, Tenant,
};
use switchboard_engine::calls::StoreKeys;
use switchboard_engine::summary::{
    JobOutcome, JobReport, SUMMARY_QUEUE, StandardSummaryLlms, SummaryConfig, SummaryWorker, enqueue_summary,
};
use switchboard_fakes::openai_chat::{ChatScript, FakeChat};
use switchboard_fakes::sendgrid::FakeSendGrid;
use switchboard_providers::SecretString;
use switchboard_providers::email::{SendGrid, SendGridConfig};
use switchboard_store::{Scope, Store};

/// Generous bound so a broken worker fails the test instead of hanging it.
const HANG: Duration = Duration::from_secs(60);
const OWNER: &str = "owner@example.com";
const SENDER: &str = "calls@switchboard.test";
const OPENAI_KEY: &str = "sk-test-summary";
const ATTEMPTS: u32 = 3;

const LLM_ANSWER: &str = r#"{"summary":"Ana booked a table for two at 7pm on Friday.","outcome":"appointment_booked","appointment_booked":true,"follow_up_needed":false,"caller_name":"Ana"}"#;

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

fn bus_options() -> BusOptions {
    BusOptions {
        poll_interval: Duration::from_millis(20),
        ..BusOptions::default()
    }
    .with_queue_retry(
        SUMMARY_QUEUE,
        RetryPolicy {
            max_attempts: ATTEMPTS,
            base_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        },
    )
}

async fn in_process_bus() -> Bus {
    Bus::in_process_with(bus_options())
}

async fn redis_bus() -> Bus {
    let prefix = format!("sbtest-summary-{}", uuid_like());
    Bus::redis_with(&redis_url(), &prefix, bus_options())
        .await
        .unwrap_or_else(|e| panic!("Redis must be reachable (SWITCHBOARD_TEST_REDIS_URL): {e}"))
}

/// A unique enough suffix without another dependency: a fresh call ID.
fn uuid_like() -> String {
    switchboard_domain::CallId::new().to_string().replace('-', "")
}

/// Everything one case needs: store, bus, fakes, and a seeded call.
struct World {
    store: Store,
    bus: Bus,
    chat: FakeChat,
    sendgrid: FakeSendGrid,
    tenant: Tenant,
    call: Call,
}

impl World {
    /// A tenant with a notification address and an OpenAI key, an agent on
    /// `llm_provider` (pointed at the fake chat server), and an ended call with
    /// a short transcript.
    async fn new(bus: Bus, llm_provider: &str) -> World {
        let store = Store::connect("sqlite::memory:", 1, [7; 32]).await.expect("store");
        store.migrate().await.expect("migrate");
        let chat = FakeChat::start().await;
        let sendgrid = FakeSendGrid::start().await;
        let tenant = store
            .tenants()
            .create(NewTenant {
                name: "Luigi's".into(),
                notification_email: Some(OWNER.into()),
                max_concurrent_calls: 10,
            })
            .await
            .expect("tenant");
        store
            .credentials()
            .create(
                tenant.id,
                NewCredential {
                    kind: CredentialKind::OpenAi,
                    label: "openai".into(),
                    public: json!({}),
                    secrets: BTreeMap::from([("api_key".to_owned(), Secret::new(OPENAI_KEY))]),
                },
            )
            .await
            .expect("credential");
        let agent = seed_agent(&store, &tenant, llm_provider, &chat.base_url()).await;
        let call = store
            .calls()
            .create(NewCall {
                tenant_id: tenant.id,
                agent_id: Some(agent.id),
                provider_call_id: None,
                direction: CallDirection::Inbound,
                from: "+15550001111".into(),
                to: "+15550002222".into(),
                status: CallStatus::InProgress,
            })
            .await
            .expect("call");
        let lines = [
            (Speaker::Agent, "Luigi's, how can I help?"),
            (
                Speaker::Caller,
                "Hi, this is Ana. A table for two at 7pm on Friday, please.",
            ),
            (Speaker::Agent, "Done: your table for two at 7pm on Friday is booked."),
        ];
        for (i, (speaker, text)) in (0i64..).zip(lines) {
            store
                .transcripts()
                .append(call.id, speaker, text, i * 2000, i * 2000 + 1500)
                .await
                .expect("transcript");
        }
        let call = store
            .calls()
            .finish(call.id, CallStatus::Completed, EndReason::CallerHangup)
            .await
            .expect("finish");
        World {
            store,
            bus,
            chat,
            sendgrid,
            tenant,
            call,
        }
    }

    fn worker(&self) -> SummaryWorker {
        let llms = StandardSummaryLlms::new(Arc::new(StoreKeys(self.store.clone())), Duration::from_secs(20));
        let sendgrid = SendGrid::new(SendGridConfig {
            timeout: Duration::from_secs(5),
            retry_backoff: Duration::from_millis(10),
            ..SendGridConfig::new(SecretString::from("SG.test".to_owned())).with_base_url(self.sendgrid.base_url())
        })
        .expect("sendgrid");
        let config = SummaryConfig {
            reserve_wait: Duration::from_secs(5),
            from_email: Some(SENDER.into()),
            ..SummaryConfig::new(format!("summary-test-{}", uuid_like()))
        };
        SummaryWorker::new(
            self.bus.clone(),
            self.store.clone(),
            Arc::new(llms),
            Some(Arc::new(sendgrid)),
            config,
        )
    }

    async fn enqueue(&self) {
        enqueue_summary(&self.bus, self.tenant.id, self.call.id)
            .await
            .expect("enqueue");
    }

    /// Runs one job through `worker`; a missing job is a failure.
    async fn step(&self, worker: &SummaryWorker) -> JobReport {
        bounded("run_once", worker.run_once())
            .await
            .expect("bus")
            .expect("a job was due")
    }

    async fn status(&self) -> Option<String> {
        self.store
            .calls()
            .summary(Scope::Tenant(self.tenant.id), self.call.id)
            .await
            .expect("summary read")
            .and_then(|row| row.status.map(|s| s.as_str().to_owned()))
    }

    async fn finish(self) {
        self.bus.shutdown().await;
        self.store.close().await;
    }
}

async fn seed_agent(store: &Store, tenant: &Tenant, llm_provider: &str, chat_base_url: &str) -> Agent {
    let new: NewAgent = serde_json::from_value(json!({
        "name": "Front desk",
        "llm": {"provider": llm_provider, "model": "gpt-4o-mini", "base_url": chat_base_url},
    }))
    .expect("agent json");
    store.agents().create(tenant.id, new).await.expect("agent")
}

async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn user_message(request: &Value) -> String {
    request["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .expect("user message")
        .to_owned()
}

// ---------------------------------------------------------------- cases

async fn llm_summary_is_stored_and_emailed(bus: Bus) {
    let w = World::new(bus, "openai").await;
    w.chat.push(ChatScript::text([LLM_ANSWER]));
    // The production loop, stopped through its handle.
    let handle = w.worker().spawn();
    w.enqueue().await;
    bounded("summary stored and emailed", async {
        loop {
            let row = w
                .store
                .calls()
                .summary(Scope::Tenant(w.tenant.id), w.call.id)
                .await
                .expect("read");
            if row.as_ref().is_some_and(|r| r.is_done() && r.emailed_at.is_some()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    bounded("worker shutdown", handle.shutdown()).await;

    let row = w
        .store
        .calls()
        .summary(Scope::Tenant(w.tenant.id), w.call.id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(
        row.summary.as_deref(),
        Some("Ana booked a table for two at 7pm on Friday.")
    );
    assert_eq!(row.outcome.as_deref(), Some("appointment_booked"));
    assert_eq!(row.appointment_booked(), Some(true));
    assert_eq!(row.follow_up_needed(), Some(false));
    let extraction = row.extraction.expect("extraction");
    assert_eq!(extraction["caller_name"], "Ana");
    assert_eq!(extraction["method"], "llm");
    assert_eq!(row.error, None);

    // One non-streaming JSON-mode request with the tenant's key and the transcript.
    let requests = w.chat.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request["model"], "gpt-4o-mini");
    assert_eq!(request["response_format"]["type"], "json_object");
    assert_ne!(request["stream"], json!(true));
    assert!(user_message(request).contains("Caller: Hi, this is Ana. A table for two at 7pm on Friday, please."));
    assert_eq!(w.chat.authorization(), vec![Some(format!("Bearer {OPENAI_KEY}"))]);

    let mails = w.sendgrid.requests();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.to(), vec![OWNER.to_owned()]);
    assert_eq!(mail.from(), Some(SENDER));
    assert_eq!(mail.authorization.as_deref(), Some("Bearer SG.test"));
    assert!(mail.subject().expect("subject").contains("appointment booked"));
    let text = mail.text().expect("text");
    assert!(text.contains("Ana booked a table for two at 7pm on Friday."), "{text}");
    assert!(text.contains("Appointment booked: yes"), "{text}");
    assert!(mail.html().expect("html").contains("Ana booked a table"));

    assert!(w.bus.failed_jobs(SUMMARY_QUEUE).await.expect("failed").is_empty());
    w.finish().await;
}

async fn a_failed_llm_attempt_is_retried_by_the_bus(bus: Bus) {
    let w = World::new(bus, "openai").await;
    // The first answer is a 500; async-openai's own retries then find the
    // script empty, which the fake also answers with 500: the attempt fails.
    w.chat.push(ChatScript::Status(500));
    let worker = w.worker();
    w.enqueue().await;

    let first = w.step(&worker).await;
    assert_eq!(first.attempt, 1);
    assert_eq!(first.call_id, Some(w.call.id));
    match &first.outcome {
        JobOutcome::Retrying { reason, .. } => assert!(reason.contains("500"), "{reason}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(w.status().await.as_deref(), Some("pending"));
    assert!(
        w.sendgrid.requests().is_empty(),
        "nothing is emailed before a summary exists"
    );
    let failed_requests = w.chat.requests().len();
    assert!(failed_requests >= 1);

    w.chat.push(ChatScript::text([LLM_ANSWER]));
    let second = w.step(&worker).await;
    assert_eq!(second.attempt, 2);
    assert_eq!(second.outcome, JobOutcome::Done);
    assert_eq!(w.chat.requests().len(), failed_requests + 1);

    let row = w
        .store
        .calls()
        .summary(Scope::All, w.call.id)
        .await
        .expect("read")
        .expect("row");
    assert!(row.is_done());
    assert_eq!(
        row.summary.as_deref(),
        Some("Ana booked a table for two at 7pm on Friday.")
    );
    assert_eq!(w.sendgrid.requests().len(), 1, "emailed exactly once");

    // Nothing else is queued: the job was settled, not redelivered.
    let idle = SummaryWorker::new(
        w.bus.clone(),
        w.store.clone(),
        Arc::new(StandardSummaryLlms::new(
            Arc::new(StoreKeys(w.store.clone())),
            Duration::from_secs(1),
        )),
        None,
        SummaryConfig {
            reserve_wait: Duration::from_millis(100),
            ..SummaryConfig::new("summary-test-idle")
        },
    );
    assert_eq!(idle.run_once().await.expect("bus"), None);
    assert!(w.bus.failed_jobs(SUMMARY_QUEUE).await.expect("failed").is_empty());
    w.finish().await;
}

async fn a_malformed_llm_answer_is_retried(bus: Bus) {
    let w = World::new(bus, "openai").await;
    w.chat
        .push(ChatScript::text([r#"{"summary": "missing the other fields"}"#]));
    w.chat.push(ChatScript::text([LLM_ANSWER]));
    let worker = w.worker();
    w.enqueue().await;

    match w.step(&worker).await.outcome {
        JobOutcome::Retrying { reason, .. } => assert!(reason.contains("malformed"), "{reason}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(w.step(&worker).await.outcome, JobOutcome::Done);
    assert_eq!(w.chat.requests().len(), 2);
    assert_eq!(w.status().await.as_deref(), Some("done"));
    assert_eq!(w.sendgrid.requests().len(), 1);
    w.finish().await;
}

async fn an_llm_that_keeps_failing_dead_letters_and_marks_the_call(bus: Bus) {
    let w = World::new(bus, "openai").await;
    // Nothing scripted: every chat request gets a 500.
    let worker = w.worker();
    w.enqueue().await;
    for attempt in 1..ATTEMPTS {
        let report = w.step(&worker).await;
        assert_eq!(report.attempt, attempt);
        assert!(matches!(report.outcome, JobOutcome::Retrying { .. }), "{report:?}");
    }
    let last = w.step(&worker).await;
    assert_eq!(last.attempt, ATTEMPTS);
    let JobOutcome::Failed { reason } = &last.outcome else {
        panic!("expected the job to fail, got {last:?}");
    };
    assert!(reason.contains("500"), "{reason}");

    let failed = w.bus.failed_jobs(SUMMARY_QUEUE).await.expect("failed jobs");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempts, ATTEMPTS);
    assert_eq!(&failed[0].reason, reason);
    assert_eq!(failed[0].payload["call_id"], json!(w.call.id.to_string()));

    let row = w
        .store
        .calls()
        .summary(Scope::All, w.call.id)
        .await
        .expect("read")
        .expect("row");
    assert_eq!(row.status.map(|s| s.as_str()), Some("failed"));
    assert_eq!(row.error.as_deref(), Some(reason.as_str()));
    assert_eq!(row.summary, None);
    assert!(w.sendgrid.requests().is_empty());
    w.finish().await;
}

async fn a_failed_email_is_resent_without_summarising_again(bus: Bus) {
    let w = World::new(bus, "openai").await;
    w.chat.push(ChatScript::text([LLM_ANSWER]));
    w.sendgrid.push_status(503);
    let worker = w.worker();
    w.enqueue().await;

    match w.step(&worker).await.outcome {
        JobOutcome::Retrying { reason, .. } => assert!(reason.contains("503"), "{reason}"),
        other => panic!("expected a retry, got {other:?}"),
    }
    // The summary is already stored; only its email is missing.
    assert_eq!(w.status().await.as_deref(), Some("done"));
    assert_eq!(w.step(&worker).await.outcome, JobOutcome::Done);
    assert_eq!(w.chat.requests().len(), 1, "the LLM is not asked twice");
    let mails = w.sendgrid.requests();
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[0].body, mails[1].body, "the same email is sent again");
    let row = w
        .store
        .calls()
        .summary(Scope::All, w.call.id)
        .await
        .expect("read")
        .expect("row");
    assert!(row.emailed_at.is_some());
    w.finish().await;
}

async fn rules_agents_get_an_extractive_summary_without_an_llm(bus: Bus) {
    let w = World::new(bus, "rules").await;
    let worker = w.worker();
    w.enqueue().await;
    assert_eq!(w.step(&worker).await.outcome, JobOutcome::Done);
    assert!(w.chat.requests().is_empty(), "no LLM for a rules agent");

    let row = w
        .store
        .calls()
        .summary(Scope::All, w.call.id)
        .await
        .expect("read")
        .expect("row");
    assert!(row.is_done());
    let summary = row.summary.clone().expect("summary");
    assert!(
        summary.contains("Hi, this is Ana. A table for two at 7pm on Friday, please."),
        "{summary}"
    );
    assert_eq!(row.appointment_booked(), Some(true));
    assert_eq!(row.outcome.as_deref(), Some("appointment_booked"));
    assert_eq!(
        row.extraction.as_ref().map(|e| e["method"].clone()),
        Some(json!("extractive"))
    );
    let mails = w.sendgrid.requests();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text().expect("text").contains(&summary));
    w.finish().await;
}

async fn a_missing_key_fails_at_once(bus: Bus) {
    let w = World::new(bus, "openai").await;
    let credentials = w
        .store
        .credentials()
        .list(
            Scope::Tenant(w.tenant.id),
            &switchboard_store::CredentialFilter::default(),
            switchboard_domain::PageRequest::new(10, 0),
        )
        .await
        .expect("credentials");
    for c in credentials.items {
        w.store
            .credentials()
            .delete(Scope::Tenant(w.tenant.id), c.id)
            .await
            .expect("delete");
    }
    let worker = w.worker();
    w.enqueue().await;
    let report = w.step(&worker).await;
    assert_eq!(report.attempt, 1);
    let JobOutcome::Failed { reason } = report.outcome else {
        panic!("expected an immediate failure, got {report:?}");
    };
    assert!(reason.contains("OpenAI API key"), "{reason}");
    assert_eq!(w.status().await.as_deref(), Some("failed"));
    // Acked, not retried: nothing is left to deliver or dead-letter.
    assert!(w.bus.failed_jobs(SUMMARY_QUEUE).await.expect("failed").is_empty());
    assert!(w.chat.requests().is_empty());
    w.finish().await;
}

macro_rules! on_both_buses {
    ($($case:ident),+ $(,)?) => {
        mod in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::in_process_bus().await).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::redis_bus().await).await;
                }
            )+
        }
    };
}

on_both_buses!(
    llm_summary_is_stored_and_emailed,
    a_failed_llm_attempt_is_retried_by_the_bus,
    a_malformed_llm_answer_is_retried,
    an_llm_that_keeps_failing_dead_letters_and_marks_the_call,
    a_failed_email_is_resent_without_summarising_again,
    rules_agents_get_an_extractive_summary_without_an_llm,
    a_missing_key_fails_at_once,
);
