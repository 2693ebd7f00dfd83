//! The typed registry of live actors: the single place the API looks them up.
//!
//! Guarantees:
//! - one entry per ID; an entry exists from the moment its spawn returns until
//!   its actor stops for any reason (clean stop, failure or teardown);
//! - removal is keyed by the actor's ractor ID as well, so a late cleanup can
//!   never remove a newer actor that reused the same domain ID;
//! - locks are held only for a map operation, never across an `.await`.

use crate::{AgentSessionHandle, CallHandle, ConversationHandle};
use ractor::ActorId;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use switchboard_domain::{AgentSessionId, CallId, ConversationId, TenantId};
use tokio::sync::watch;

/// What the registry needs to know about a handle.
pub trait LiveHandle: Clone + Send + Sync + 'static {
    fn tenant_id(&self) -> TenantId;
    fn actor_id(&self) -> ActorId;
}

/// A concurrent map of live actors of one kind.
#[derive(Debug)]
pub struct LiveMap<K, H> {
    entries: RwLock<HashMap<K, H>>,
    // Lets shutdown wait for the map to drain without polling.
    count: watch::Sender<usize>,
}

impl<K: Copy + Eq + Hash, H: LiveHandle> LiveMap<K, H> {
    fn new() -> Self {
        Self {
            entries: RwLock::new(HashMap::new()),
            count: watch::Sender::new(0),
        }
    }

    // A panic while holding the lock cannot leave the map half-updated (every
    // write is a single HashMap call), so a poisoned lock is safe to reuse.
    fn read(&self) -> RwLockReadGuard<'_, HashMap<K, H>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<K, H>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The live actor with this ID.
    pub fn get(&self, id: &K) -> Option<H> {
        self.read().get(id).cloned()
    }

    pub fn contains(&self, id: &K) -> bool {
        self.read().contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// IDs of all live actors, in no particular order.
    pub fn ids(&self) -> Vec<K> {
        self.read().keys().copied().collect()
    }

    /// Handles of the tenant's live actors.
    pub fn by_tenant(&self, tenant_id: TenantId) -> Vec<H> {
        self.read()
            .values()
            .filter(|h| h.tenant_id() == tenant_id)
            .cloned()
            .collect()
    }

    /// How many actors the tenant has live (for per-tenant concurrency limits).
    pub fn count_by_tenant(&self, tenant_id: TenantId) -> usize {
        self.read().values().filter(|h| h.tenant_id() == tenant_id).count()
    }

    /// Handles matching `pred`.
    pub fn filter(&self, pred: impl Fn(&H) -> bool) -> Vec<H> {
        self.read().values().filter(|h| pred(h)).cloned().collect()
    }

    /// Waits until no actor of this kind is live.
    pub async fn wait_empty(&self) {
        let mut rx = self.count.subscribe();
        // The sender lives as long as `self`, so the wait cannot fail while we borrow it.
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Inserts unless the ID is live; returns whether it inserted.
    pub(crate) fn insert_new(&self, id: K, handle: H) -> bool {
        let mut map = self.write();
        if map.contains_key(&id) {
            return false;
        }
        map.insert(id, handle);
        self.count.send_replace(map.len());
        true
    }

    /// Removes the entry if it still belongs to `actor`; returns the removed handle.
    pub(crate) fn remove_if_actor(&self, id: &K, actor: ActorId) -> Option<H> {
        let mut map = self.write();
        if map.get(id).is_some_and(|h| h.actor_id() == actor) {
            let removed = map.remove(id);
            self.count.send_replace(map.len());
            removed
        } else {
            None
        }
    }
}

/// Live calls, conversations and agent sessions. Cheap to clone; all clones
/// share the same maps.
#[derive(Debug, Clone)]
pub struct Registry {
    calls: Arc<LiveMap<CallId, CallHandle>>,
    conversations: Arc<LiveMap<ConversationId, ConversationHandle>>,
    agent_sessions: Arc<LiveMap<AgentSessionId, AgentSessionHandle>>,
}

impl Registry {
    pub(crate) fn new() -> Self {
        Self {
            calls: Arc::new(LiveMap::new()),
            conversations: Arc::new(LiveMap::new()),
            agent_sessions: Arc::new(LiveMap::new()),
        }
    }

    pub fn calls(&self) -> &LiveMap<CallId, CallHandle> {
        &self.calls
    }

    pub fn conversations(&self) -> &LiveMap<ConversationId, ConversationHandle> {
        &self.conversations
    }

    pub fn agent_sessions(&self) -> &LiveMap<AgentSessionId, AgentSessionHandle> {
        &self.agent_sessions
    }
}
