//! Fan-out: who watches which scope (or which users of it), and delivery of
//! events to them.
//!
//! The cost of one change grows with the watchers interested in it, not with
//! the size of the scope: a watcher of a whole scope is found in the scope's
//! list, a watcher of a few users in the scope's per-user lists.
//!
//! **Lag policy.** Each [`Subscription`] has a bounded queue
//! (`subscriber_capacity`, 256 events by default). Publishing never waits:
//! when a subscriber's queue is full, the event is dropped for that
//! subscriber alone and it is marked lagged. Its next [`Subscription::recv`]
//! returns [`Delivery::Lagged`] (the queued events are discarded, being
//! superseded); the subscriber should then take a fresh snapshot of what it
//! watches and carry on. Other subscribers are never slowed by a slow one.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use dashmap::DashMap;
use tokio::sync::{mpsc, watch};

use crate::event::PresenceEvent;
use crate::feed::ClusterFeed;
use crate::ids::{NodeId, ScopeId, UserId};
use crate::store::Transition;

/// What a [`Subscription`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A change in a watched scope.
    Event(Arc<PresenceEvent>),
    /// This subscriber fell behind and missed events: re-read a snapshot of
    /// what it watches (events with a `v` at or below the snapshot's are
    /// stale).
    Lagged,
}

type SubscriberId = u64;

/// The sending side of one subscription, shared by every scope it watches.
#[derive(Clone)]
struct Mailbox {
    queue: mpsc::Sender<Arc<PresenceEvent>>,
    lagged: Arc<AtomicBool>,
}

impl Mailbox {
    fn deliver(&self, event: &Arc<PresenceEvent>) -> bool {
        match self.queue.try_send(event.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if !self.lagged.swap(true, Ordering::AcqRel) {
                    tracing::debug!(scope = %event.scope, "subscriber lagged; it will resnapshot");
                }
                false
            }
            // The subscription is being dropped; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

#[derive(Default)]
struct ScopeWatchers {
    whole: HashMap<SubscriberId, Mailbox>,
    by_user: HashMap<UserId, HashMap<SubscriberId, Mailbox>>,
    /// With a cluster feed, events of one user may arrive twice or out of
    /// order (from this node and from others): the last `v` delivered per
    /// user lets the stale ones drop.
    delivered_v: Mutex<HashMap<UserId, u64>>,
}

impl ScopeWatchers {
    fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.by_user.is_empty()
    }

    fn remove(&mut self, id: SubscriberId, users: &[UserId]) {
        self.whole.remove(&id);
        for user in users {
            if let Some(watchers) = self.by_user.get_mut(user) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    self.by_user.remove(user);
                }
            }
        }
    }
}

/// Counters of what fan-out did, for operators and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Events put in a subscriber's queue.
    pub delivered: u64,
    /// Events dropped because a subscriber's queue was full.
    pub dropped: u64,
}

/// The registry of watchers of one service.
pub(crate) struct Hub {
    scopes: DashMap<ScopeId, RwLock<ScopeWatchers>>,
    next_id: AtomicU64,
    capacity: usize,
    closed: watch::Sender<bool>,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// The store's cluster feed, told which scopes this node watches.
    feed: OnceLock<(Arc<dyn ClusterFeed>, NodeId)>,
}

impl Hub {
    pub(crate) fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            scopes: DashMap::new(),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
            closed: watch::channel(false).0,
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            feed: OnceLock::new(),
        })
    }

    /// Tells `feed` which scopes this node watches, from now on (scopes
    /// watched already are told at once).
    pub(crate) fn attach_feed(&self, feed: Arc<dyn ClusterFeed>, node: NodeId) {
        for scope in self.scopes.iter() {
            feed.watch(&node, scope.key());
        }
        let _ = self.feed.set((feed, node));
    }

    pub(crate) fn subscribe(self: &Arc<Self>) -> Subscription {
        let (queue, receiver) = mpsc::channel(self.capacity);
        let mailbox = Mailbox {
            queue,
            lagged: Arc::new(AtomicBool::new(false)),
        };
        Subscription {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            hub: self.clone(),
            mailbox,
            receiver,
            closed: self.closed.subscribe(),
            watches: HashMap::new(),
        }
    }

    /// Tells every interested watcher about a change. Call with the user's
    /// lock held, so one user's events are published in order.
    pub(crate) fn publish(&self, transition: &Transition) {
        if !transition.changed() {
            return;
        }
        for scope in &transition.scopes {
            if self.scopes.contains_key(scope) {
                self.deliver(PresenceEvent {
                    scope: scope.clone(),
                    user_id: transition.user.clone(),
                    status: transition.to,
                    last_seen: transition.last_seen,
                    v: transition.version,
                    at: transition.at,
                });
            }
        }
    }

    /// Tells the watchers of `event.scope` (or of its user) about it,
    /// unless a cluster feed already brought a version as new.
    pub(crate) fn deliver(&self, event: PresenceEvent) {
        let Some(watchers) = self.scopes.get(&event.scope) else {
            return;
        };
        let watchers = watchers.read().unwrap_or_else(|e| e.into_inner());
        let by_user = watchers.by_user.get(&event.user_id);
        if watchers.whole.is_empty() && by_user.is_none() {
            return;
        }
        if self.feed.get().is_some() {
            let mut seen = watchers
                .delivered_v
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let last = seen.entry(event.user_id.clone()).or_insert(0);
            if event.v <= *last {
                return;
            }
            *last = event.v;
        }
        let event = Arc::new(event);
        let (mut delivered, mut dropped) = (0, 0);
        let mailboxes = watchers
            .whole
            .values()
            .chain(by_user.into_iter().flat_map(|m| m.values()));
        for mailbox in mailboxes {
            if mailbox.deliver(&event) {
                delivered += 1;
            } else {
                dropped += 1;
            }
        }
        self.delivered.fetch_add(delivered, Ordering::Relaxed);
        self.dropped.fetch_add(dropped, Ordering::Relaxed);
    }

    /// Every subscriber may have missed events: each is told it lagged
    /// (and re-reads its snapshots).
    pub(crate) fn resync(&self) {
        for entry in self.scopes.iter() {
            // The store may have restarted empty, its versions from zero.
            entry
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .delivered_v
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            Self::lag_all(&entry);
        }
    }

    /// The watchers of `scope` may have missed events.
    pub(crate) fn resync_scope(&self, scope: &ScopeId) {
        if let Some(entry) = self.scopes.get(scope) {
            Self::lag_all(&entry);
        }
    }

    fn lag_all(watchers: &RwLock<ScopeWatchers>) {
        let wake = Arc::new(PresenceEvent {
            scope: ScopeId::from(""),
            user_id: UserId::from(""),
            status: crate::status::Status::Offline,
            last_seen: None,
            v: 0,
            at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        });
        let watchers = watchers.read().unwrap_or_else(|e| e.into_inner());
        let mailboxes = watchers
            .whole
            .values()
            .chain(watchers.by_user.values().flat_map(|m| m.values()));
        for mailbox in mailboxes {
            mailbox.lagged.store(true, Ordering::Release);
            // Wakes a subscriber waiting on an empty queue; what it carries
            // is discarded with the rest on `Lagged`.
            let _ = mailbox.queue.try_send(wake.clone());
        }
    }

    pub(crate) fn stats(&self) -> FanoutStats {
        FanoutStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription: their `recv` returns `None`.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    fn add(&self, scope: &ScopeId, id: SubscriberId, mailbox: &Mailbox, watch: &Watch) {
        let entry = match self.scopes.entry(scope.clone()) {
            dashmap::Entry::Occupied(entry) => entry.into_ref(),
            dashmap::Entry::Vacant(entry) => {
                if let Some((feed, node)) = self.feed.get() {
                    feed.watch(node, scope);
                }
                entry.insert(RwLock::default())
            }
        };
        let mut watchers = entry.write().unwrap_or_else(|e| e.into_inner());
        match watch {
            Watch::Scope => {
                watchers.whole.insert(id, mailbox.clone());
            }
            Watch::Users(users) => {
                for user in users {
                    watchers
                        .by_user
                        .entry(user.clone())
                        .or_default()
                        .insert(id, mailbox.clone());
                }
            }
        }
    }

    fn remove(&self, scope: &ScopeId, id: SubscriberId, watch: &Watch) {
        let users: &[UserId] = match watch {
            Watch::Scope => &[],
            Watch::Users(users) => users,
        };
        if let Some(entry) = self.scopes.get(scope) {
            entry
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(id, users);
        }
        // The feed hears of it under the map's lock, as in `add`: a watcher
        // arriving meanwhile cannot be ordered before this unwatch.
        self.scopes.remove_if(scope, |_, watchers| {
            let empty = watchers
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if empty && let Some((feed, node)) = self.feed.get() {
                feed.unwatch(node, scope);
            }
            empty
        });
    }
}

/// What a subscription watches in one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Watch {
    Scope,
    Users(Vec<UserId>),
}

/// A stream of presence events for the scopes (or users) it watches. Create
/// one with [`crate::Presence::subscribe`]; dropping it stops delivery.
pub struct Subscription {
    id: SubscriberId,
    hub: Arc<Hub>,
    mailbox: Mailbox,
    receiver: mpsc::Receiver<Arc<PresenceEvent>>,
    closed: watch::Receiver<bool>,
    watches: HashMap<ScopeId, Watch>,
}

impl Subscription {
    /// Watches every user of `scope` (replacing any earlier watch of it).
    pub fn watch_scope(&mut self, scope: ScopeId) {
        self.set_watch(scope, Watch::Scope);
    }

    /// Watches only the named users of `scope` (replacing any earlier watch
    /// of it): a client that shows fifty people pays for fifty.
    pub fn watch_users(&mut self, scope: ScopeId, users: impl IntoIterator<Item = UserId>) {
        let mut list: Vec<UserId> = users.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        self.set_watch(scope, Watch::Users(list));
    }

    /// Stops watching `scope`. Events of it already queued may still arrive.
    pub fn unwatch(&mut self, scope: &ScopeId) {
        if let Some(old) = self.watches.remove(scope) {
            self.hub.remove(scope, self.id, &old);
        }
    }

    /// The scopes watched now.
    pub fn scopes(&self) -> impl Iterator<Item = &ScopeId> {
        self.watches.keys()
    }

    /// The users watched in `scope`: `None` if the whole scope (or nothing)
    /// is watched.
    pub fn watched_users(&self, scope: &ScopeId) -> Option<&[UserId]> {
        match self.watches.get(scope) {
            Some(Watch::Users(users)) => Some(users),
            _ => None,
        }
    }

    /// The next delivery, or `None` once the service has shut down.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(lagged) = self.take_lagged() {
                return Some(lagged);
            }
            if *self.closed.borrow() {
                return None;
            }
            let event = tokio::select! {
                event = self.receiver.recv() => event?,
                _ = self.closed.wait_for(|closed| *closed) => return None,
            };
            // A resync wakes the subscriber through its queue with an
            // event of version 0, which is no news.
            if let Some(lagged) = self.take_lagged() {
                return Some(lagged);
            }
            if event.v > 0 {
                return Some(Delivery::Event(event));
            }
        }
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(lagged) = self.take_lagged() {
                return Some(lagged);
            }
            let event = self.receiver.try_recv().ok()?;
            if let Some(lagged) = self.take_lagged() {
                return Some(lagged);
            }
            if event.v > 0 {
                return Some(Delivery::Event(event));
            }
        }
    }

    fn take_lagged(&mut self) -> Option<Delivery> {
        if !self.mailbox.lagged.swap(false, Ordering::AcqRel) {
            return None;
        }
        // What is queued is superseded by the snapshot the subscriber takes.
        while self.receiver.try_recv().is_ok() {}
        Some(Delivery::Lagged)
    }

    fn set_watch(&mut self, scope: ScopeId, watch: Watch) {
        self.unwatch(&scope);
        self.hub.add(&scope, self.id, &self.mailbox, &watch);
        self.watches.insert(scope, watch);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for (scope, watch) in self.watches.drain() {
            self.hub.remove(&scope, self.id, &watch);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("watches", &self.watches)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::status::Status;

    fn event(user: &str, v: u64) -> PresenceEvent {
        PresenceEvent {
            scope: "acme".into(),
            user_id: user.into(),
            status: Status::Online,
            last_seen: None,
            v,
            at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
        }
    }

    #[derive(Debug)]
    struct SilentFeed;

    #[async_trait::async_trait]
    impl ClusterFeed for SilentFeed {
        async fn join(
            &self,
            _: &NodeId,
            _: Arc<dyn crate::feed::FeedSink>,
        ) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        fn leave(&self, _: &NodeId) {}
        fn watch(&self, _: &NodeId, _: &ScopeId) {}
        fn unwatch(&self, _: &NodeId, _: &ScopeId) {}
    }

    #[tokio::test]
    async fn with_a_feed_duplicates_and_stragglers_are_dropped() {
        let hub = Hub::new(16);
        hub.attach_feed(Arc::new(SilentFeed), NodeId::new("a"));
        let mut subscription = hub.subscribe();
        subscription.watch_scope("acme".into());
        for v in [1, 1, 3, 2, 4] {
            hub.deliver(event("alice", v));
        }
        hub.deliver(event("bob", 1));
        let mut seen = Vec::new();
        while let Some(Delivery::Event(e)) = subscription.try_recv() {
            seen.push((e.user_id.to_string(), e.v));
        }
        let expected: Vec<(String, u64)> = vec![
            ("alice".into(), 1),
            ("alice".into(), 3),
            ("alice".into(), 4),
            ("bob".into(), 1),
        ];
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn a_resync_wakes_a_waiting_subscriber_with_lagged() {
        let hub = Hub::new(16);
        let mut subscription = hub.subscribe();
        subscription.watch_scope("acme".into());
        let waiting = tokio::spawn(async move { subscription.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.resync();
        let delivery = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(delivery, Some(Delivery::Lagged));
    }
}
