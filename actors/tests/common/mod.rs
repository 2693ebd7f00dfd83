//! Shared test fixtures: an in-memory [`CallRecorder`] with fault injection,
//! a log capture, and tree/spec builders.

#![allow(dead_code)]

use futures::FutureExt;
use futures::future::BoxFuture;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use switchboard_actors::{CallRecorder, CallSpec, RecorderError, Tree, TreeConfig};
use switchboard_domain::{CallDirection, CallId, CallStatus, EndReason, TenantId};
use tokio::sync::{Notify, Semaphore, watch};

/// Records what the actors persist; can panic or block on demand.
pub struct FakeRecorder {
    finished: watch::Sender<Vec<(CallId, CallStatus, EndReason)>>,
    statuses: Mutex<Vec<(CallId, CallStatus)>>,
    panic_on_status: Mutex<HashSet<CallId>>,
    panic_on_finish: Mutex<HashSet<CallId>>,
    /// When set, `set_status` waits for a permit (to hold an actor busy).
    gate: Mutex<Option<Arc<Semaphore>>>,
    pub entered_set_status: Notify,
}

impl FakeRecorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            finished: watch::Sender::new(Vec::new()),
            statuses: Mutex::new(Vec::new()),
            panic_on_status: Mutex::new(HashSet::new()),
            panic_on_finish: Mutex::new(HashSet::new()),
            gate: Mutex::new(None),
            entered_set_status: Notify::new(),
        })
    }

    pub fn panic_on_set_status(&self, call_id: CallId) {
        self.panic_on_status.lock().expect("lock").insert(call_id);
    }

    pub fn panic_on_finish(&self, call_id: CallId) {
        self.panic_on_finish.lock().expect("lock").insert(call_id);
    }

    pub fn close_gate(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.gate.lock().expect("lock") = Some(Arc::clone(&gate));
        gate
    }

    /// Every end recorded for the call, in order.
    pub fn ends_of(&self, call_id: CallId) -> Vec<(CallStatus, EndReason)> {
        self.finished
            .borrow()
            .iter()
            .filter(|(id, ..)| *id == call_id)
            .map(|(_, s, r)| (*s, *r))
            .collect()
    }

    pub fn statuses_of(&self, call_id: CallId) -> Vec<CallStatus> {
        self.statuses
            .lock()
            .expect("lock")
            .iter()
            .filter(|(id, _)| *id == call_id)
            .map(|(_, s)| *s)
            .collect()
    }

    /// Waits for the call's first recorded end.
    pub async fn wait_finished(&self, call_id: CallId) -> (CallStatus, EndReason) {
        let mut rx = self.finished.subscribe();
        let v = rx
            .wait_for(|v| v.iter().any(|(id, ..)| *id == call_id))
            .await
            .expect("recorder alive");
        v.iter()
            .find(|(id, ..)| *id == call_id)
            .map(|(_, s, r)| (*s, *r))
            .expect("found")
    }
}

impl CallRecorder for FakeRecorder {
    fn set_status(&self, call_id: CallId, status: CallStatus) -> BoxFuture<'_, Result<(), RecorderError>> {
        async move {
            self.entered_set_status.notify_one();
            if self.panic_on_status.lock().expect("lock").contains(&call_id) {
                panic!("injected recorder panic for {call_id}");
            }
            let gate = self.gate.lock().expect("lock").clone();
            if let Some(gate) = gate {
                gate.acquire().await.expect("gate open").forget();
            }
            self.statuses.lock().expect("lock").push((call_id, status));
            Ok(())
        }
        .boxed()
    }

    fn finish(
        &self,
        call_id: CallId,
        status: CallStatus,
        reason: EndReason,
    ) -> BoxFuture<'_, Result<(), RecorderError>> {
        async move {
            if self.panic_on_finish.lock().expect("lock").contains(&call_id) {
                panic!("injected finish panic for {call_id}");
            }
            self.finished.send_modify(|v| v.push((call_id, status, reason)));
            Ok(())
        }
        .boxed()
    }
}

pub fn call_spec(tenant_id: TenantId) -> CallSpec {
    CallSpec {
        call_id: CallId::new(),
        tenant_id,
        agent_id: None,
        direction: CallDirection::Inbound,
        status: CallStatus::Ringing,
    }
}

pub async fn tree_with(config: TreeConfig) -> (Tree, Arc<FakeRecorder>) {
    let recorder = FakeRecorder::new();
    let tree = Tree::start(config, recorder.clone()).await.expect("tree starts");
    (tree, recorder)
}

pub async fn tree() -> (Tree, Arc<FakeRecorder>) {
    tree_with(TreeConfig::default()).await
}

/// Captures the formatted log lines of the whole test binary.
///
/// A thread-local subscriber (`set_default`) loses events at random when
/// other tests run in parallel: tracing caches each callsite's interest
/// globally, and a callsite first hit on a thread without a subscriber is
/// cached as uninteresting. So the capture is one global subscriber,
/// installed once; tests look for lines with their own (unique) IDs.
#[derive(Clone, Default)]
pub struct LogCapture(Arc<Mutex<Vec<u8>>>);

static GLOBAL_LOGS: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();

impl LogCapture {
    /// The binary-wide capture, installed on first use.
    pub fn global() -> LogCapture {
        GLOBAL_LOGS
            .get_or_init(|| {
                let capture = LogCapture::default();
                let sub = tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(capture.clone())
                    .finish();
                tracing::subscriber::set_global_default(sub).expect("the only global subscriber");
                capture
            })
            .clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}
