//! The `Store` as the tree's recorder: a call's lifecycle reaches the database.

use std::sync::Arc;
use switchboard_actors::{CallSpec, Tree, TreeConfig};
use switchboard_domain::{CallDirection, CallStatus, EndReason, NewCall, NewTenant};
use switchboard_store::{Scope, Store};

#[tokio::test]
async fn a_hung_up_call_is_finished_in_the_store() {
    let store = Store::connect("sqlite::memory:", 1, [7; 32]).await.expect("connect");
    store.migrate().await.expect("migrate");
    let tenant = store
        .tenants()
        .create(NewTenant {
            name: "Acme".into(),
            notification_email: None,
            max_concurrent_calls: 5,
        })
        .await
        .expect("tenant");
    let call = store
        .calls()
        .create(NewCall {
            tenant_id: tenant.id,
            agent_id: None,
            provider_call_id: None,
            direction: CallDirection::Inbound,
            from: "+15550001111".into(),
            to: "+15550002222".into(),
            status: CallStatus::Ringing,
        })
        .await
        .expect("call row");

    let tree = Tree::start(TreeConfig::default(), Arc::new(store.clone()))
        .await
        .expect("tree");
    let handle = tree
        .spawn_call(CallSpec {
            call_id: call.id,
            tenant_id: tenant.id,
            agent_id: None,
            direction: CallDirection::Inbound,
            status: CallStatus::Ringing,
        })
        .await
        .expect("spawn");
    handle
        .set_status(CallStatus::InProgress)
        .await
        .expect("status persisted");
    assert_eq!(
        store.calls().get(Scope::All, call.id).await.expect("row").status,
        CallStatus::InProgress
    );

    handle.hangup(EndReason::CallerHangup).expect("hangup");
    handle.stopped().await;

    let row = store.calls().get(Scope::All, call.id).await.expect("row");
    assert_eq!(row.status, CallStatus::Completed);
    assert_eq!(row.end_reason, Some(EndReason::CallerHangup));
    assert!(row.ended_at.is_some());
    tree.shutdown(std::time::Duration::ZERO).await.expect("shutdown");
}
