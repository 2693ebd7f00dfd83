//! Events, subscriptions and the local fan-out hub shared by both backends.
//!
//! Every subscription reads from a bounded `tokio::sync::broadcast` channel
//! (one per exact topic or pattern on this node). Publishing never waits for a
//! subscriber: when a subscriber falls behind, the oldest events it has not
//! read are overwritten and [`Subscription::lagged`] counts how many it lost.
//! Dropping the last subscription of a topic removes the channel, and on Redis
//! unsubscribes the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use fred::bytes::Bytes;
use serde::de::DeserializeOwned;
use tokio::sync::{broadcast, mpsc, watch};

use crate::error::BusError;
use crate::topic::{Topic, TopicPattern};

/// One published event as a subscriber sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusEvent {
    pub topic: Topic,
    pub payload: Bytes,
}

impl BusEvent {
    /// Decodes the payload as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, BusError> {
        Ok(serde_json::from_slice(&self.payload)?)
    }
}

/// What a subscription listens to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SubKey {
    Exact(Topic),
    Pattern(TopicPattern),
}

/// The state of the backend subscription behind a hub entry (always `Ready` in-process).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SubState {
    Pending,
    Ready,
    Failed(String),
}

/// A request to the Redis subscription task, sent while the hub lock is held so
/// that subscribe and unsubscribe reach Redis in the order the hub saw them.
pub(crate) enum Control {
    Subscribe(SubKey, watch::Sender<SubState>),
    Unsubscribe(SubKey),
}

struct Entry {
    tx: broadcast::Sender<BusEvent>,
    state: watch::Receiver<SubState>,
}

#[derive(Default)]
struct HubState {
    closed: bool,
    exact: HashMap<Topic, Entry>,
    patterns: HashMap<TopicPattern, Entry>,
}

/// Local fan-out from topics and patterns to subscriptions.
pub(crate) struct Hub {
    state: Mutex<HubState>,
    capacity: usize,
    control: Option<mpsc::UnboundedSender<Control>>,
}

impl Hub {
    pub(crate) fn new(capacity: usize, control: Option<mpsc::UnboundedSender<Control>>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(HubState::default()),
            capacity: capacity.max(1),
            control,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent even if a holder panicked: every update is a single map operation.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a subscription and waits until the backend delivers its events.
    pub(crate) async fn subscribe(self: &Arc<Self>, key: SubKey) -> Result<Subscription, BusError> {
        let (rx, mut state) = {
            let mut guard = self.lock();
            if guard.closed {
                return Err(BusError::Closed);
            }
            let capacity = self.capacity;
            let control = &self.control;
            let make = || {
                let (tx, _) = broadcast::channel(capacity);
                let (state_tx, state_rx) = watch::channel(SubState::Ready);
                if let Some(control) = control {
                    state_tx.send_replace(SubState::Pending);
                    // A send error means the Redis task is gone; the state then stays
                    // Pending and the wait below reports the bus as closed.
                    let _ = control.send(Control::Subscribe(key.clone(), state_tx));
                }
                Entry { tx, state: state_rx }
            };
            let entry = match &key {
                SubKey::Exact(topic) => guard.exact.entry(topic.clone()).or_insert_with(make),
                SubKey::Pattern(pattern) => guard.patterns.entry(pattern.clone()).or_insert_with(make),
            };
            (entry.tx.subscribe(), entry.state.clone())
        };
        let subscription = Subscription {
            rx: Some(rx),
            lagged: 0,
            key,
            hub: Arc::clone(self),
        };
        let ready = state
            .wait_for(|s| *s != SubState::Pending)
            .await
            .map_err(|_| BusError::Closed)?
            .clone();
        match ready {
            SubState::Failed(reason) => Err(BusError::Protocol(format!("subscribe failed: {reason}"))),
            _ => Ok(subscription),
        }
    }

    /// Delivers to exact-topic subscribers. Returns how many subscriptions got it.
    pub(crate) fn dispatch_exact(&self, event: &BusEvent) -> usize {
        let guard = self.lock();
        guard
            .exact
            .get(&event.topic)
            .and_then(|e| e.tx.send(event.clone()).ok())
            .unwrap_or(0)
    }

    /// Delivers to every matching pattern subscriber.
    pub(crate) fn dispatch_patterns(&self, event: &BusEvent) -> usize {
        let guard = self.lock();
        guard
            .patterns
            .iter()
            .filter(|(pattern, _)| pattern.matches(&event.topic))
            .filter_map(|(_, e)| e.tx.send(event.clone()).ok())
            .sum()
    }

    /// Ends every subscription: their `recv` returns `None` once drained.
    pub(crate) fn close(&self) {
        let mut guard = self.lock();
        guard.closed = true;
        guard.exact.clear();
        guard.patterns.clear();
    }

    fn release(&self, key: &SubKey) {
        let mut guard = self.lock();
        let removed = match key {
            SubKey::Exact(topic) => remove_if_unused(&mut guard.exact, topic),
            SubKey::Pattern(pattern) => remove_if_unused(&mut guard.patterns, pattern),
        };
        if removed && let Some(control) = &self.control {
            // Ignored when the Redis task has stopped: its connection is gone too.
            let _ = control.send(Control::Unsubscribe(key.clone()));
        }
    }
}

fn remove_if_unused<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Entry>, key: &K) -> bool {
    if map.get(key).is_some_and(|e| e.tx.receiver_count() == 0) {
        map.remove(key);
        true
    } else {
        false
    }
}

/// A live subscription to a topic or pattern. Dropping it unsubscribes.
pub struct Subscription {
    rx: Option<broadcast::Receiver<BusEvent>>,
    lagged: u64,
    key: SubKey,
    hub: Arc<Hub>,
}

impl Subscription {
    /// The next event, or `None` once the bus is shut down and the backlog is drained.
    /// Events lost to lag are skipped and counted in [`Subscription::lagged`].
    pub async fn recv(&mut self) -> Option<BusEvent> {
        let rx = self.rx.as_mut()?;
        loop {
            match rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.lagged += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many events this subscription lost because it read too slowly.
    pub fn lagged(&self) -> u64 {
        self.lagged
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("key", &self.key)
            .field("lagged", &self.lagged)
            .finish()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver must be gone before the hub counts receivers.
        drop(self.rx.take());
        self.hub.release(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(topic: &str) -> BusEvent {
        BusEvent {
            topic: Topic::parse(topic).expect("topic"),
            payload: Bytes::from_static(b"{}"),
        }
    }

    #[tokio::test]
    async fn last_drop_removes_the_channel_and_unsubscribes() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hub = Hub::new(4, Some(tx));
        let topic = Topic::parse("a.b").expect("topic");
        let key = SubKey::Exact(topic.clone());
        let subscribing = tokio::spawn({
            let hub = Arc::clone(&hub);
            let key = key.clone();
            async move { hub.subscribe(key).await }
        });
        match rx.recv().await {
            Some(Control::Subscribe(k, state)) => {
                assert_eq!(k, key);
                state.send_replace(SubState::Ready);
            }
            _ => panic!("expected a subscribe request"),
        }
        let first = subscribing.await.expect("join").expect("subscribed");
        let second = hub.subscribe(key.clone()).await.expect("second subscribe");
        assert!(
            rx.try_recv().is_err(),
            "the second subscriber shares the backend subscription"
        );
        drop(first);
        assert!(rx.try_recv().is_err(), "still one subscriber left");
        assert_eq!(hub.dispatch_exact(&event("a.b")), 1);
        drop(second);
        assert!(matches!(rx.try_recv(), Ok(Control::Unsubscribe(k)) if k == key));
        assert_eq!(hub.dispatch_exact(&event("a.b")), 0);
    }

    #[tokio::test]
    async fn failed_backend_subscribe_is_an_error() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let hub = Hub::new(4, Some(tx));
        let key = SubKey::Pattern(TopicPattern::parse("a.*").expect("pattern"));
        let subscribing = tokio::spawn({
            let hub = Arc::clone(&hub);
            async move { hub.subscribe(key).await }
        });
        if let Some(Control::Subscribe(_, state)) = rx.recv().await {
            state.send_replace(SubState::Failed("boom".into()));
        }
        assert!(matches!(subscribing.await.expect("join"), Err(BusError::Protocol(_))));
    }

    #[tokio::test]
    async fn close_ends_subscriptions() {
        let hub = Hub::new(4, None);
        let mut sub = hub
            .subscribe(SubKey::Exact(Topic::parse("a").expect("topic")))
            .await
            .expect("subscribe");
        hub.dispatch_exact(&event("a"));
        hub.close();
        assert!(sub.recv().await.is_some(), "backlog is still delivered");
        assert!(sub.recv().await.is_none());
        assert!(matches!(
            hub.subscribe(SubKey::Exact(Topic::parse("a").expect("t"))).await,
            Err(BusError::Closed)
        ));
    }
}
