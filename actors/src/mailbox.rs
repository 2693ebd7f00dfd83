//! Bounded-mailbox emulation.
//!
//! ractor mailboxes are unbounded. Each actor instead shares a [`Mailbox`]
//! counter with its handles: a handle reserves a slot before it sends, the actor
//! releases the slot as it starts handling the message. A send that would take
//! the count past the configured bound fails with [`ActorsError::Full`] instead
//! of queueing, so a flooded actor pushes back on its producers.
//!
//! Control messages (hang-up, close, end) use [`Mailbox::reserve_control`],
//! which counts but never refuses: a flooded call must still be endable.
//! Internal timer messages never touch the counter.

use crate::ActorsError;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Shared in-flight counter of one actor's mailbox.
#[derive(Debug, Clone)]
pub(crate) struct Mailbox {
    in_flight: Arc<AtomicUsize>,
    bound: usize,
}

impl Mailbox {
    /// A bound of 0 would refuse everything; treat it as 1 so a misconfiguration
    /// degrades to "one message at a time" instead of a dead actor.
    pub(crate) fn new(bound: usize) -> Self {
        Self {
            in_flight: Arc::new(AtomicUsize::new(0)),
            bound: bound.max(1),
        }
    }

    /// Takes a slot, or fails with `Full` when all `bound` slots are taken.
    pub(crate) fn try_reserve(&self) -> Result<(), ActorsError> {
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.bound).then_some(n + 1)
            })
            .map(|_| ())
            .map_err(|_| ActorsError::Full { bound: self.bound })
    }

    /// Takes a slot even past the bound (control messages).
    pub(crate) fn reserve_control(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// Gives a slot back: the actor dequeued the message, or the send failed.
    pub(crate) fn release(&self) {
        // Saturating: a release can never underflow into a huge count.
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn bound(&self) -> usize {
        self.bound
    }
}

/// Reserves a slot (bounded or control) and sends `msg`; gives the slot back if
/// the actor is gone.
pub(crate) fn send<M: ractor::Message>(
    actor: &ractor::ActorRef<M>,
    mailbox: &Mailbox,
    msg: M,
    control: bool,
) -> Result<(), ActorsError> {
    if control {
        mailbox.reserve_control();
    } else {
        mailbox.try_reserve()?;
    }
    actor.send_message(msg).map_err(|_| {
        mailbox.release();
        ActorsError::Gone
    })
}

/// Sends a bounded request built around a reply port and awaits the answer.
pub(crate) async fn ask<M: ractor::Message, R: Send + 'static>(
    actor: &ractor::ActorRef<M>,
    mailbox: &Mailbox,
    build: impl FnOnce(ractor::RpcReplyPort<R>) -> M,
    control: bool,
) -> Result<R, ActorsError> {
    let (tx, rx) = ractor::concurrency::oneshot();
    send(actor, mailbox, build(tx.into()), control)?;
    // A dropped reply port means the actor stopped (or failed) before answering.
    rx.await.map_err(|_| ActorsError::Gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_bound_and_frees_on_release() {
        let mb = Mailbox::new(2);
        mb.try_reserve().expect("first");
        mb.try_reserve().expect("second");
        assert!(matches!(mb.try_reserve(), Err(ActorsError::Full { bound: 2 })));
        mb.release();
        mb.try_reserve().expect("slot freed");
        assert_eq!(mb.in_flight(), 2);
    }

    #[test]
    fn control_messages_pass_a_full_mailbox() {
        let mb = Mailbox::new(1);
        mb.try_reserve().expect("first");
        mb.reserve_control();
        assert_eq!(mb.in_flight(), 2);
    }

    #[test]
    fn release_saturates_and_zero_bound_means_one() {
        let mb = Mailbox::new(0);
        mb.release();
        assert_eq!(mb.in_flight(), 0);
        assert_eq!(mb.bound(), 1);
        mb.try_reserve().expect("one slot");
        assert!(mb.try_reserve().is_err());
    }
}
