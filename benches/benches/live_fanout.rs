//! Criterion bench of the supervisor live fan-out: one call event delivered
//! to 100 supervisor queues (`switchboard_api::live::LiveQueue`), as the
//! `/api/v1/live` route does for every watcher of a call.
//!
//! - `live_fanout_100`: the event is serialised once (`LiveEvent::from_event`),
//!   then each of 100 queues gets a clone pushed and popped, and the popped
//!   item is rendered to the text frame a socket would send.

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard_api::live::{LiveEvent, LiveQueue};
use switchboard_domain::{CallEvent, CallEventKind, CallId, Speaker, TenantId};

const SUPERVISORS: usize = 100;

fn live_fanout(c: &mut Criterion) {
    let event = CallEvent::new(
        CallId::new(),
        TenantId::new(),
        CallEventKind::TranscriptFinal {
            speaker: Speaker::Caller,
            text: "I would like to book an appointment for tomorrow at three".into(),
            turn_id: 3,
            start_ms: 12_000,
            end_ms: 14_500,
            interrupted: false,
        },
    );
    let mut queues: Vec<LiveQueue> = (0..SUPERVISORS).map(|_| LiveQueue::new(256)).collect();
    c.bench_function("live_fanout_100", |b| {
        b.iter(|| {
            let live = match LiveEvent::from_event(std::hint::black_box(&event)) {
                Ok(live) => live,
                Err(e) => panic!("the bench event must serialise: {e}"),
            };
            let mut bytes = 0;
            for q in &mut queues {
                q.push(live.clone());
                if let Some(out) = q.pop() {
                    bytes += out.to_json().len();
                }
            }
            std::hint::black_box(bytes)
        });
    });
}

criterion_group!(benches, live_fanout);
criterion_main!(benches);
