//! Post-call summary storage on calls, run against SQLite and PostgreSQL
//! (each test gets its own database).

// Shared with the main suite; this file uses only part of it.
#[allow(dead_code)]
mod common;

use common::TestDb;
use serde_json::json;
use switchboard_domain::*;
use switchboard_store::*;

async fn tenant(store: &Store, name: &str) -> Tenant {
    store
        .tenants()
        .create(NewTenant {
            name: name.into(),
            notification_email: None,
            max_concurrent_calls: 10,
        })
        .await
        .expect("tenant")
}

async fn call(store: &Store, tenant: TenantId) -> Call {
    store
        .calls()
        .create(NewCall {
            tenant_id: tenant,
            agent_id: None,
            provider_call_id: None,
            direction: CallDirection::Inbound,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            status: CallStatus::Queued,
        })
        .await
        .expect("call")
}

async fn summary_lifecycle(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let c = call(s, t.id).await;
    let scope = Scope::Tenant(t.id);

    assert_eq!(s.calls().summary(scope, c.id).await.expect("read"), None);

    let marked = s.calls().set_summary_pending(t.id, c.id).await.expect("pending");
    let row = s.calls().summary(scope, c.id).await.expect("read").expect("row");
    assert_eq!(marked, row);
    assert_eq!(row.status.map(|s| s.as_str()), Some("pending"));
    assert!(!row.is_done());
    assert_eq!(row.summary, None);

    // A failed attempt before the summary exists marks the call failed.
    s.calls()
        .set_summary_failed(t.id, c.id, "openai: HTTP status 500")
        .await
        .expect("failed");
    let row = s.calls().summary(scope, c.id).await.expect("read").expect("row");
    assert_eq!(row.status.map(|s| s.as_str()), Some("failed"));
    assert_eq!(row.error.as_deref(), Some("openai: HTTP status 500"));

    // A new job may start again after a failure.
    let row = s.calls().set_summary_pending(t.id, c.id).await.expect("pending");
    assert_eq!(row.status.map(|s| s.as_str()), Some("pending"));
    assert_eq!(
        row.error.as_deref(),
        Some("openai: HTTP status 500"),
        "kept until a result"
    );

    let extraction = json!({
        "summary": "Booked a table for two at 7pm.",
        "outcome": "appointment_booked",
        "appointment_booked": true,
        "follow_up_needed": false,
        "party_size": 2
    });
    s.calls()
        .set_summary_result(
            t.id,
            c.id,
            "Booked a table for two at 7pm.",
            "appointment_booked",
            &extraction,
        )
        .await
        .expect("result");
    let row = s.calls().summary(scope, c.id).await.expect("read").expect("row");
    assert_eq!(row.status.map(|s| s.as_str()), Some("done"));
    assert!(row.is_done());
    assert_eq!(row.summary.as_deref(), Some("Booked a table for two at 7pm."));
    assert_eq!(row.outcome.as_deref(), Some("appointment_booked"));
    assert_eq!(row.extraction.as_ref(), Some(&extraction));
    assert_eq!(row.appointment_booked(), Some(true));
    assert_eq!(row.follow_up_needed(), Some(false));
    assert_eq!(row.error, None, "a stored result clears the earlier error");
    assert_eq!(row.emailed_at, None);
    // The call read model shows the same summary text.
    let read = s.calls().get(scope, c.id).await.expect("get");
    assert_eq!(read.summary.as_deref(), Some("Booked a table for two at 7pm."));

    // Pending never downgrades a stored summary.
    let row = s.calls().set_summary_pending(t.id, c.id).await.expect("pending");
    assert!(row.is_done());
    assert_eq!(row.summary.as_deref(), Some("Booked a table for two at 7pm."));

    // A later failure (its email) is recorded but keeps the summary done.
    s.calls()
        .set_summary_failed(t.id, c.id, "sendgrid: HTTP status 503")
        .await
        .expect("failed after done");
    let row = s.calls().summary(scope, c.id).await.expect("read").expect("row");
    assert_eq!(row.status.map(|s| s.as_str()), Some("done"));
    assert_eq!(row.error.as_deref(), Some("sendgrid: HTTP status 503"));
    assert_eq!(row.summary.as_deref(), Some("Booked a table for two at 7pm."));

    // The first email time is kept.
    let first = timestamp_from_millis(1_900_000_000_000);
    let second = timestamp_from_millis(1_900_000_100_000);
    s.calls().set_summary_emailed(t.id, c.id, first).await.expect("emailed");
    s.calls()
        .set_summary_emailed(t.id, c.id, second)
        .await
        .expect("emailed again");
    let row = s.calls().summary(scope, c.id).await.expect("read").expect("row");
    assert_eq!(row.emailed_at, Some(first));
}

async fn summary_writes_are_tenant_scoped(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let other = tenant(s, "Other").await;
    let c = call(s, t.id).await;
    let extraction = json!({"appointment_booked": false, "follow_up_needed": true});

    let not_found = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NotFound { .. }));
    assert!(not_found(
        s.calls()
            .set_summary_result(other.id, c.id, "x", "y", &extraction)
            .await
    ));
    assert!(not_found(s.calls().set_summary_failed(other.id, c.id, "x").await));
    assert!(not_found(
        s.calls()
            .set_summary_emailed(other.id, c.id, timestamp_from_millis(1))
            .await
    ));
    assert!(matches!(
        s.calls().set_summary_pending(other.id, c.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.calls().summary(Scope::Tenant(other.id), c.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(not_found(
        s.calls()
            .set_summary_result(t.id, CallId::new(), "x", "y", &extraction)
            .await
    ));
    // Nothing of the refused writes landed.
    assert!(s.calls().summary(Scope::All, c.id).await.expect("read").is_none());

    // Non-object extractions are refused before touching the row.
    assert!(matches!(
        s.calls().set_summary_result(t.id, c.id, "x", "y", &json!([1, 2])).await,
        Err(StoreError::Invalid { .. })
    ));
    // An admin scope reads any tenant's summary.
    s.calls()
        .set_summary_result(t.id, c.id, "x", "y", &extraction)
        .await
        .expect("result");
    let row = s.calls().summary(Scope::All, c.id).await.expect("read").expect("row");
    assert_eq!(row.follow_up_needed(), Some(true));
}

async fn long_failure_reasons_are_clipped(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let c = call(s, t.id).await;
    let reason = "é".repeat(2000);
    s.calls().set_summary_failed(t.id, c.id, &reason).await.expect("failed");
    let row = s.calls().summary(Scope::All, c.id).await.expect("read").expect("row");
    let stored = row.error.expect("error");
    assert_eq!(stored.len(), 1000);
    assert!(reason.starts_with(&stored));
}

async fn corrupt_extraction_is_reported(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let c = call(s, t.id).await;
    s.calls()
        .set_summary_result(t.id, c.id, "x", "y", &json!({}))
        .await
        .expect("result");
    sqlx::query("UPDATE calls SET extraction = '{not json'")
        .execute(s.pool())
        .await
        .expect("damage");
    assert!(matches!(
        s.calls().summary(Scope::All, c.id).await,
        Err(StoreError::Corrupt { .. })
    ));
}

async fn status_values_are_constrained(db: &TestDb) {
    let s = &db.store;
    let t = tenant(s, "T").await;
    let c = call(s, t.id).await;
    let damage = sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE calls SET summary_status = 'bogus' WHERE id = '{}'",
        c.id
    )))
    .execute(s.pool())
    .await;
    assert!(damage.is_err(), "the CHECK constraint refuses unknown statuses");
}

both!(
    summary_lifecycle,
    summary_writes_are_tenant_scoped,
    long_failure_reasons_are_clipped,
    corrupt_extraction_is_reported,
    status_values_are_constrained,
);
