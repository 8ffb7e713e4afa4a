//! Fan-out: who watches which scope (or which users of it), and delivery of
//! events to them.
//!
//! The cost of one change grows with the watchers interested in it, not with
//! the size of the scope: a watcher of a whole scope is found in the scope's
//! list, a watcher of a few users in the scope's per-user lists.
//!
//! The batches of busy scopes and the lag policy are told on
//! [`Subscription`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::delivery::{Delivery, EncodingCache, EventBatch, SharedEvent};
use crate::event::PresenceEvent;
use crate::ids::{NodeId, ScopeId, UserId};
use crate::occupancy::{LargeScopes, Occupancy};
use crate::scope_views::ScopeViews;
use crate::store::{ClusterFeed, Transition};
pub use crate::subscription::Subscription;
use crate::subscription::{Mailbox, Queued, SubscriberId, Watch};

/// Most events one batch holds; a scope that gathers this many sends them
/// at once rather than at the end of the interval.
pub const MAX_BATCH_EVENTS: usize = 256;

/// The watchers of some users of a scope, by user.
type ByUser = HashMap<UserId, HashMap<SubscriberId, Mailbox>>;

/// One scope's watchers. There is one per watched scope, often with a
/// single watcher (a user's own scope): what is rarely used is allocated
/// only when used.
#[derive(Default)]
struct ScopeWatchers {
    whole: HashMap<SubscriberId, Mailbox>,
    by_user: Option<Box<ByUser>>,
    /// Watchers of the scope as counts while it is large
    /// ([`Watch::Counts`]); their named users are in `by_user` too.
    counting: HashMap<SubscriberId, Mailbox>,
    /// Whether the scope is large (its counting watchers get counts).
    large: AtomicBool,
    /// Whether an event reached the scope since it was last counted.
    dirty: AtomicBool,
    /// The counts last sent to the counting watchers.
    counts: Mutex<Option<Occupancy>>,
    /// Deliveries to this scope's watchers happen under this lock, so
    /// events leave in the order they arrived. Allocated with the scope's
    /// first event.
    flow: Mutex<Option<Box<Flow>>>,
}

/// When a scope's events are gathered into batches (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batching {
    /// How long a busy scope gathers events into one batch; zero sends
    /// every event on its own.
    pub interval: Duration,
    /// The rate, in changes a second, above which a scope is busy; a burst
    /// of a fifth of it (at least one change) still goes out at once.
    pub above_rate: u32,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            interval: Duration::from_millis(20),
            above_rate: 50,
        }
    }
}

impl Batching {
    /// Every event on its own, at once.
    pub const OFF: Batching = Batching {
        interval: Duration::ZERO,
        above_rate: u32::MAX,
    };

    fn burst(&self) -> f64 {
        (f64::from(self.above_rate) / 5.0).max(1.0)
    }
}

/// A leaky bucket: how far a scope's recent changes run above the rate.
#[derive(Default)]
struct RateMeter {
    level: f64,
    at: Option<Instant>,
}

impl RateMeter {
    /// Counts a change at `now`; whether the scope is busy.
    fn busy_after(&mut self, now: Instant, batching: &Batching) -> bool {
        let leaked = self.at.map_or(f64::INFINITY, |at| {
            now.saturating_duration_since(at).as_secs_f64() * f64::from(batching.above_rate)
        });
        self.level = (self.level - leaked).max(0.0) + 1.0;
        self.at = Some(now);
        self.level > batching.burst()
    }
}

/// The delivery state of one scope.
#[derive(Default)]
struct Flow {
    /// How busy the scope is.
    rate: RateMeter,
    /// With a cluster feed, events of one user may arrive twice or out of
    /// order (from this node and from others): the last `v` delivered per
    /// user lets the stale ones drop.
    delivered_v: HashMap<UserId, u64>,
    /// When the watchers of the whole scope last got something.
    last_sent: Option<Instant>,
    /// Events gathered for the next batch, oldest first.
    pending: Vec<Arc<SharedEvent>>,
    /// Whether a task is sending this scope's batches.
    flusher: bool,
}

impl ScopeWatchers {
    fn is_empty(&self) -> bool {
        self.whole.is_empty() && self.by_user.is_none() && self.counting.is_empty()
    }

    fn is_large(&self) -> bool {
        self.large.load(Ordering::Acquire)
    }

    fn watchers_of(&self, user: &UserId) -> Option<&HashMap<SubscriberId, Mailbox>> {
        self.by_user.as_ref()?.get(user)
    }

    fn every_mailbox(&self) -> impl Iterator<Item = &Mailbox> {
        let by_user = self.by_user.iter().flat_map(|by_user| by_user.values());
        self.whole
            .values()
            .chain(self.counting.values())
            .chain(by_user.flat_map(|m| m.values()))
    }

    fn flow(&self) -> MutexGuard<'_, Option<Box<Flow>>> {
        self.flow.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&mut self, id: SubscriberId, users: &[UserId]) {
        self.whole.remove(&id);
        self.counting.remove(&id);
        let Some(by_user) = &mut self.by_user else {
            return;
        };
        for user in users {
            if let Some(watchers) = by_user.get_mut(user) {
                watchers.remove(&id);
                if watchers.is_empty() {
                    by_user.remove(user);
                }
            }
        }
        if by_user.is_empty() {
            self.by_user = None;
        }
    }
}

/// A scope as a counting watcher sees it now.
pub(crate) enum Counted {
    /// Small: every member, every event.
    Small,
    /// Large: these counts, and the named users' events.
    Large(Occupancy),
}

/// Counters of what fan-out did, for operators and benches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FanoutStats {
    /// Events put in a subscriber's queue (each event of a batch counts).
    pub delivered: u64,
    /// Events dropped because a subscriber's queue was full.
    pub dropped: u64,
}

/// What one delivery did, added to the hub's counters once.
#[derive(Default)]
struct Tally {
    delivered: u64,
    dropped: u64,
}

impl Tally {
    fn push(&mut self, mailbox: &Mailbox, item: &Queued) {
        let events = item.len() as u64;
        if mailbox.push(item.clone()) {
            self.delivered += events;
        } else {
            self.dropped += events;
        }
    }
}

/// The registry of watchers of one service.
pub(crate) struct Hub {
    /// Handed to the tasks that send busy scopes' batches, so they end with
    /// the hub.
    this: Weak<Hub>,
    scopes: DashMap<ScopeId, RwLock<ScopeWatchers>>,
    next_id: AtomicU64,
    capacity: usize,
    batching: Batching,
    large_scopes: LargeScopes,
    /// Where batch tasks run; without a runtime every event goes at once.
    runtime: Option<tokio::runtime::Handle>,
    /// Set once at shutdown; `closing` wakes the subscriptions waiting.
    closed: AtomicBool,
    closing: Notify,
    delivered: AtomicU64,
    dropped: AtomicU64,
    /// The store's cluster feed, told which scopes this node watches.
    feed: OnceLock<(Arc<dyn ClusterFeed>, NodeId)>,
    /// The watched scopes' members as this node last heard, for a store
    /// whose reads cost I/O (see [`crate::scope_views`]).
    views: Option<ScopeViews>,
}

impl Hub {
    /// A hub; with `keep_views`, it keeps the view of each watched scope.
    pub(crate) fn new(
        capacity: usize,
        batching: Batching,
        large_scopes: LargeScopes,
        keep_views: bool,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            this: this.clone(),
            scopes: DashMap::new(),
            next_id: AtomicU64::new(1),
            capacity: capacity.max(1),
            batching,
            large_scopes,
            runtime: tokio::runtime::Handle::try_current().ok(),
            closed: AtomicBool::new(false),
            closing: Notify::new(),
            delivered: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            feed: OnceLock::new(),
            views: keep_views.then(ScopeViews::default),
        })
    }

    /// The scope views, if this hub keeps them and `scope` is watched here
    /// (only then does every event of the scope reach this node).
    pub(crate) fn views_for(&self, scope: &ScopeId) -> Option<&ScopeViews> {
        let views = self.views.as_ref()?;
        self.scopes.contains_key(scope).then_some(views)
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
        Subscription::new(
            self.next_id.fetch_add(1, Ordering::Relaxed),
            self.clone(),
            self.capacity,
        )
    }

    /// Whether the service has shut down.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Completes at shutdown, once enabled or polled (check
    /// [`Hub::is_closed`] after enabling it).
    pub(crate) fn closing(&self) -> tokio::sync::futures::Notified<'_> {
        self.closing.notified()
    }

    /// Tells every interested watcher about a change. Call with the user's
    /// lock held, so one user's events are published in order.
    pub(crate) fn publish(&self, transition: &Transition) {
        if !transition.changed() {
            return;
        }
        for event in PresenceEvent::for_transition(transition) {
            if self.scopes.contains_key(&event.scope) {
                self.deliver(event);
            }
        }
    }

    /// Tells the watchers of `event.scope` (or of its user) about it,
    /// unless a cluster feed already brought a version as new: at once, or
    /// in the scope's next batch when the scope is busy.
    pub(crate) fn deliver(&self, event: PresenceEvent) {
        let Some(entry) = self.scopes.get(&event.scope) else {
            return;
        };
        if let Some(views) = &self.views {
            views.note(&event);
        }
        let watchers = entry.read().unwrap_or_else(|e| e.into_inner());
        let counting = !watchers.counting.is_empty();
        if counting {
            watchers.dirty.store(true, Ordering::Release);
        }
        // While the scope is small, its counting watchers watch it whole.
        let large = watchers.is_large();
        let whole = !watchers.whole.is_empty() || (counting && !large);
        let by_user = watchers.watchers_of(&event.user_id);
        if !whole && by_user.is_none() {
            return;
        }
        let mut guard = watchers.flow();
        let flow = guard.get_or_insert_default();
        if self.feed.get().is_some() {
            let last = flow.delivered_v.entry(event.user_id.clone()).or_insert(0);
            if event.v <= *last {
                return;
            }
            *last = event.v;
        }
        let event = Arc::new(SharedEvent::new(event));
        let mut tally = Tally::default();
        if let Some(by_user) = by_user {
            let item = Queued::Event(event.clone());
            crate::metrics::queued(std::slice::from_ref(&event));
            for (id, mailbox) in by_user {
                // A counting watcher gets this event with the whole scope's.
                if !large && watchers.counting.contains_key(id) {
                    continue;
                }
                tally.push(mailbox, &item);
            }
        }
        if whole {
            let busy = flow.rate.busy_after(Instant::now(), &self.batching);
            if (!busy && flow.pending.is_empty()) || self.batching.interval.is_zero() {
                flow.pending.push(event);
                self.send_pending(entry.key(), &watchers, flow, &mut tally);
            } else {
                flow.pending.push(event);
                if flow.pending.len() >= MAX_BATCH_EVENTS {
                    self.send_pending(entry.key(), &watchers, flow, &mut tally);
                } else if !flow.flusher {
                    flow.flusher = self.spawn_flusher(entry.key().clone(), flow.last_sent);
                    if !flow.flusher {
                        self.send_pending(entry.key(), &watchers, flow, &mut tally);
                    }
                }
            }
        }
        drop(guard);
        self.count(tally);
    }

    /// Hands what `flow` gathered to the watchers of the whole scope: one
    /// event alone, several as one batch.
    fn send_pending(
        &self,
        scope: &ScopeId,
        watchers: &ScopeWatchers,
        flow: &mut Flow,
        tally: &mut Tally,
    ) {
        let mut events = std::mem::take(&mut flow.pending);
        crate::metrics::queued(&events);
        let item = match events.len() {
            0 => return,
            1 => Queued::Event(events.remove(0)),
            _ => Queued::Batch(Arc::new(EventBatch::new(scope.clone(), events))),
        };
        for mailbox in watchers.whole.values() {
            tally.push(mailbox, &item);
        }
        if !watchers.is_large() {
            for mailbox in watchers.counting.values() {
                tally.push(mailbox, &item);
            }
        }
        flow.last_sent = Some(Instant::now());
    }

    /// Starts the task that sends `scope`'s batches once per interval
    /// until the scope goes quiet; false without a runtime to run it.
    fn spawn_flusher(&self, scope: ScopeId, last_sent: Option<Instant>) -> bool {
        let Some(runtime) = &self.runtime else {
            return false;
        };
        let hub = self.this.clone();
        let first = last_sent.unwrap_or_else(Instant::now) + self.batching.interval;
        runtime.spawn(async move {
            let mut due = first;
            loop {
                tokio::time::sleep_until(due).await;
                // Holds no strong reference while asleep: the task ends
                // with the hub.
                let Some(hub) = hub.upgrade() else { return };
                match hub.flush(&scope) {
                    Some(next) => due = next,
                    None => return,
                }
            }
        });
        true
    }

    /// Sends `scope`'s gathered events; the next time to look, or `None`
    /// (the task ends) when nothing was gathered or the hub closed.
    fn flush(&self, scope: &ScopeId) -> Option<Instant> {
        let entry = self.scopes.get(scope)?;
        let watchers = entry.read().unwrap_or_else(|e| e.into_inner());
        let mut guard = watchers.flow();
        let flow = guard.as_mut()?;
        if flow.pending.is_empty() || self.is_closed() {
            flow.flusher = false;
            return None;
        }
        let mut tally = Tally::default();
        self.send_pending(scope, &watchers, flow, &mut tally);
        drop(guard);
        self.count(tally);
        Some(Instant::now() + self.batching.interval)
    }

    fn count(&self, tally: Tally) {
        crate::metrics::fanout(tally.delivered, tally.dropped);
        self.delivered.fetch_add(tally.delivered, Ordering::Relaxed);
        self.dropped.fetch_add(tally.dropped, Ordering::Relaxed);
    }

    /// Every subscriber may have missed events: each is told it lagged
    /// (and re-reads its snapshots). With `new_epoch`, versions started
    /// again: the versions delivered so far are forgotten.
    pub(crate) fn resync(&self, new_epoch: bool) {
        if let Some(views) = &self.views {
            views.all_stale();
        }
        for entry in self.scopes.iter() {
            Self::lag_all(&entry, new_epoch);
        }
    }

    /// The watchers of `scope` may have missed events.
    pub(crate) fn resync_scope(&self, scope: &ScopeId) {
        if let Some(views) = &self.views {
            views.stale(scope);
        }
        if let Some(entry) = self.scopes.get(scope) {
            Self::lag_all(&entry, false);
        }
    }

    fn lag_all(watchers: &RwLock<ScopeWatchers>, forget_versions: bool) {
        let watchers = watchers.read().unwrap_or_else(|e| e.into_inner());
        if let Some(flow) = watchers.flow().as_mut() {
            // Superseded by the snapshots the watchers take.
            flow.pending.clear();
            if forget_versions {
                flow.delivered_v = HashMap::new();
            }
        }
        for mailbox in watchers.every_mailbox() {
            mailbox.mark_lagged();
        }
    }

    /// The scopes watched as counts that changed since they were last
    /// counted (each is then counted with [`Hub::note_counts`]).
    pub(crate) fn scopes_to_count(&self) -> Vec<ScopeId> {
        self.scopes
            .iter()
            .filter(|entry| {
                let watchers = entry.read().unwrap_or_else(|e| e.into_inner());
                !watchers.counting.is_empty() && watchers.dirty.swap(false, Ordering::AcqRel)
            })
            .map(|entry| entry.key().clone())
            .collect()
    }

    /// Counts `scope` again at the next tick (this count failed).
    pub(crate) fn count_again(&self, scope: &ScopeId) {
        if let Some(entry) = self.scopes.get(scope) {
            let watchers = entry.read().unwrap_or_else(|e| e.into_inner());
            watchers.dirty.store(true, Ordering::Release);
        }
    }

    /// Takes `counts` as the scope's members now: decides whether the
    /// scope is large, sends its counting watchers the counts when they
    /// changed, and says what a counting watcher's snapshot shows.
    pub(crate) fn note_counts(&self, scope: &ScopeId, mut counts: Occupancy) -> Counted {
        let Some(entry) = self.scopes.get(scope) else {
            return if self.large_scopes.is_large(counts.total(), false) {
                Counted::Large(counts)
            } else {
                Counted::Small
            };
        };
        let watchers = entry.read().unwrap_or_else(|e| e.into_inner());
        let mut last = watchers.counts.lock().unwrap_or_else(|e| e.into_inner());
        let was_large = watchers.is_large();
        let large = self.large_scopes.is_large(counts.total(), was_large);
        watchers.large.store(large, Ordering::Release);
        if !large {
            if was_large {
                // They see counts, not members: a snapshot brings the members.
                for mailbox in watchers.counting.values() {
                    mailbox.mark_lagged();
                }
            }
            return Counted::Small;
        }
        // Unchanged counts go out again when the scope just turned large:
        // its counting watchers show members since it was small.
        if let Some(sent) = last
            .as_ref()
            .filter(|sent| was_large && sent.same_counts(&counts))
        {
            return Counted::Large(sent.clone());
        }
        counts.v = last.as_ref().map_or(1, |sent| sent.v + 1);
        *last = Some(counts.clone());
        let item = Queued::Occupancy(Arc::new(counts.clone()));
        let mut tally = Tally::default();
        for mailbox in watchers.counting.values() {
            tally.push(mailbox, &item);
        }
        drop(last);
        drop(watchers);
        self.count(tally);
        Counted::Large(counts)
    }

    pub(crate) fn stats(&self) -> FanoutStats {
        FanoutStats {
            delivered: self.delivered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Ends every subscription: their `recv` returns `None`.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.closing.notify_waiters();
    }

    pub(crate) fn add(&self, scope: &ScopeId, id: SubscriberId, mailbox: &Mailbox, watch: &Watch) {
        let entry = match self.scopes.entry(scope.clone()) {
            dashmap::Entry::Occupied(entry) => entry.into_ref(),
            dashmap::Entry::Vacant(entry) => {
                if let Some((feed, node)) = self.feed.get() {
                    feed.watch(node, scope);
                }
                // A view a snapshot left after the scope's last watcher went
                // missed the events since.
                if let Some(views) = &self.views {
                    views.forget(scope);
                }
                entry.insert(RwLock::default())
            }
        };
        let mut watchers = entry.write().unwrap_or_else(|e| e.into_inner());
        match watch {
            Watch::Scope => {
                watchers.whole.insert(id, mailbox.clone());
            }
            Watch::Users(users) | Watch::Counts(users) => {
                if matches!(watch, Watch::Counts(_)) {
                    watchers.counting.insert(id, mailbox.clone());
                    // Counted at the next tick, even with no event.
                    watchers.dirty.store(true, Ordering::Release);
                }
                let by_user = watchers.by_user.get_or_insert_default();
                for user in users {
                    by_user
                        .entry(user.clone())
                        .or_default()
                        .insert(id, mailbox.clone());
                }
            }
        }
    }

    pub(crate) fn remove(&self, scope: &ScopeId, id: SubscriberId, watch: &Watch) {
        let users = watch.named();
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
            if empty && let Some(views) = &self.views {
                views.forget(scope);
            }
            empty
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    const TICK: Duration = Duration::from_millis(20);

    /// Batches from the second change of a burst on: the rules of batching
    /// apart from its rate.
    const EAGER: Batching = Batching {
        interval: TICK,
        above_rate: 5,
    };

    fn event(user: &str, v: u64) -> PresenceEvent {
        PresenceEvent {
            scope: "acme".into(),
            user_id: user.into(),
            status: Status::Online,
            last_seen: None,
            v,
            at: chrono::DateTime::<chrono::Utc>::MIN_UTC,
            details: None,
        }
    }

    fn seen(events: &[Arc<SharedEvent>]) -> Vec<(String, u64)> {
        events
            .iter()
            .map(|e| (e.user_id.to_string(), e.v))
            .collect()
    }

    #[derive(Debug)]
    struct SilentFeed;

    #[async_trait::async_trait]
    impl ClusterFeed for SilentFeed {
        async fn join(
            &self,
            _: &NodeId,
            _: Arc<dyn crate::store::FeedSink>,
        ) -> Result<(), crate::store::StoreError> {
            Ok(())
        }
        fn leave(&self, _: &NodeId) {}
        fn watch(&self, _: &NodeId, _: &ScopeId) {}
        fn unwatch(&self, _: &NodeId, _: &ScopeId) {}
    }

    #[tokio::test]
    async fn with_a_feed_duplicates_and_stragglers_are_dropped() {
        let hub = Hub::new(16, Batching::OFF, LargeScopes::default(), false);
        hub.attach_feed(Arc::new(SilentFeed), NodeId::new("a"));
        let mut subscription = hub.subscribe();
        subscription.watch_scope("acme".into());
        for v in [1, 1, 3, 2, 4] {
            hub.deliver(event("alice", v));
        }
        hub.deliver(event("bob", 1));
        let mut got = Vec::new();
        while let Some(Delivery::Event(e)) = subscription.try_recv() {
            got.push(e);
        }
        let expected: Vec<(String, u64)> = vec![
            ("alice".into(), 1),
            ("alice".into(), 3),
            ("alice".into(), 4),
            ("bob".into(), 1),
        ];
        assert_eq!(seen(&got), expected);
    }

    #[tokio::test]
    async fn a_resync_wakes_a_waiting_subscriber_with_lagged() {
        let hub = Hub::new(16, EAGER, LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.watch_scope("acme".into());
        let waiting = tokio::spawn(async move { subscription.recv().await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        hub.resync(true);
        let delivery = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(delivery, Some(Delivery::Lagged));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_scopes_event_goes_out_at_once() {
        let hub = Hub::new(16, EAGER, LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.watch_scope("acme".into());
        hub.deliver(event("alice", 1));
        let delivery = subscription.try_recv().expect("delivered without waiting");
        assert_eq!(seen(delivery.events()), vec![("alice".into(), 1)]);
        // A moment later the scope is quiet again: no waiting either.
        tokio::time::advance(Duration::from_secs(1)).await;
        hub.deliver(event("bob", 1));
        let delivery = subscription.try_recv().expect("delivered without waiting");
        assert_eq!(seen(delivery.events()), vec![("bob".into(), 1)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_reaches_scope_watchers_in_one_batch_per_tick_in_order() {
        let hub = Hub::new(16, EAGER, LargeScopes::default(), false);
        let mut batched = hub.subscribe();
        batched.accept_batches();
        batched.watch_scope("acme".into());
        let mut one_by_one = hub.subscribe();
        one_by_one.watch_scope("acme".into());
        let mut bob_only = hub.subscribe();
        bob_only.watch_users("acme".into(), ["bob".into()]);

        let burst: Vec<(&str, u64)> = (1..=10).flat_map(|v| [("alice", v), ("bob", v)]).collect();
        for (user, v) in &burst {
            hub.deliver(event(user, *v));
        }
        let expected: Vec<(String, u64)> = burst.iter().map(|(u, v)| (u.to_string(), *v)).collect();

        let started = Instant::now();
        let first = batched.recv().await.expect("the first event");
        assert_eq!(first.events().len(), 1, "the first event went out alone");
        assert_eq!(started.elapsed(), Duration::ZERO, "and at once");
        let rest = batched.recv().await.expect("the batch");
        assert_eq!(started.elapsed(), TICK, "the rest one tick later");
        let Delivery::Batch(batch) = &rest else {
            panic!("expected a batch, got {rest:?}");
        };
        assert_eq!(batch.scope(), &ScopeId::from("acme"));
        let mut got = seen(first.events());
        got.extend(seen(batch.events()));
        assert_eq!(got, expected, "every event, in order");
        assert!(batched.try_recv().is_none());

        // A subscription that does not accept batches sees the same events
        // one by one, from the same shared allocations.
        let mut unrolled = Vec::new();
        while let Some(Delivery::Event(e)) = one_by_one.try_recv() {
            unrolled.push(e);
        }
        assert_eq!(seen(&unrolled), expected);
        assert!(Arc::ptr_eq(&unrolled[5], &batch.events()[4]));

        // A watcher of some users got theirs individually, without waiting.
        let mut bobs = Vec::new();
        while let Some(Delivery::Event(e)) = bob_only.try_recv() {
            bobs.push(e);
        }
        let expected_bob: Vec<(String, u64)> = (1..=10).map(|v| ("bob".to_string(), v)).collect();
        assert_eq!(seen(&bobs), expected_bob);
        assert_eq!(hub.stats().delivered, 20 + 20 + 10);
    }

    #[tokio::test(start_paused = true)]
    async fn the_batch_task_ends_once_the_scope_is_quiet() {
        let hub = Hub::new(16, EAGER, LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.accept_batches();
        subscription.watch_scope("acme".into());
        let metrics = tokio::runtime::Handle::current().metrics();
        let idle_tasks = metrics.num_alive_tasks();
        for v in 1..=3 {
            hub.deliver(event("alice", v));
        }
        assert_eq!(
            metrics.num_alive_tasks(),
            idle_tasks + 1,
            "one task for the busy scope"
        );
        assert_eq!(subscription.recv().await.expect("first").events().len(), 1);
        assert_eq!(subscription.recv().await.expect("batch").events().len(), 2);
        tokio::time::sleep(TICK * 3).await;
        assert_eq!(
            metrics.num_alive_tasks(),
            idle_tasks,
            "none once it is quiet"
        );
        // Quiet again: the next event is not held back.
        tokio::time::advance(Duration::from_secs(1)).await;
        hub.deliver(event("alice", 4));
        assert!(subscription.try_recv().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_batch_goes_out_without_waiting_for_the_tick() {
        let hub = Hub::new(16, EAGER, LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.accept_batches();
        subscription.watch_scope("acme".into());
        let total = 1 + MAX_BATCH_EVENTS as u64;
        for v in 1..=total {
            hub.deliver(event("alice", v));
        }
        assert_eq!(subscription.try_recv().expect("first").events().len(), 1);
        let batch = subscription.try_recv().expect("a full batch at once");
        assert_eq!(batch.events().len(), MAX_BATCH_EVENTS);
        assert_eq!(batch.events().last().map(|e| e.v), Some(total));
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_whose_queue_fills_with_batches_lags_and_others_do_not() {
        let hub = Hub::new(2, EAGER, LargeScopes::default(), false);
        let mut slow = hub.subscribe();
        slow.accept_batches();
        slow.watch_scope("acme".into());
        let mut fast = hub.subscribe();
        fast.accept_batches();
        fast.watch_scope("acme".into());
        let mut v = 0;
        let mut fast_seen = Vec::new();
        for _ in 0..5 {
            for _ in 0..3 {
                v += 1;
                hub.deliver(event("alice", v));
            }
            let delivery = fast.recv().await.expect("fast keeps up");
            fast_seen.extend(seen(delivery.events()));
        }
        while let Some(delivery) = fast.try_recv() {
            fast_seen.extend(seen(delivery.events()));
        }
        tokio::time::sleep(TICK).await;
        while let Some(delivery) = fast.try_recv() {
            fast_seen.extend(seen(delivery.events()));
        }
        let all: Vec<(String, u64)> = (1..=v).map(|v| ("alice".to_string(), v)).collect();
        assert_eq!(fast_seen, all);
        assert_eq!(slow.recv().await, Some(Delivery::Lagged));
        assert!(hub.stats().dropped > 0);
        assert!(slow.try_recv().is_none(), "what was queued is superseded");
    }

    #[tokio::test(start_paused = true)]
    async fn paced_changes_at_the_rate_never_wait_for_a_batch() {
        let hub = Hub::new(16, Batching::default(), LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.accept_batches();
        subscription.watch_scope("acme".into());
        // 50 changes a second on average, unevenly spaced.
        for v in 1..=200 {
            hub.deliver(event("alice", v));
            let delivery = subscription.try_recv().expect("delivered without waiting");
            assert_eq!(seen(delivery.events()), vec![("alice".into(), v)]);
            let gap = if v % 2 == 0 { 5 } else { 35 };
            tokio::time::advance(Duration::from_millis(gap)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_scope_above_the_rate_is_batched_after_its_burst() {
        let hub = Hub::new(16, Batching::default(), LargeScopes::default(), false);
        let mut subscription = hub.subscribe();
        subscription.accept_batches();
        subscription.watch_scope("acme".into());
        for v in 1..=25 {
            hub.deliver(event("alice", v));
        }
        // A burst of 10 (a fifth of 50 a second) goes out at once.
        for v in 1..=10 {
            let delivery = subscription.try_recv().expect("at once");
            assert_eq!(seen(delivery.events()), vec![("alice".into(), v)]);
        }
        assert!(subscription.try_recv().is_none(), "the rest waits");
        let started = Instant::now();
        let batch = subscription.recv().await.expect("the batch");
        assert_eq!(started.elapsed(), TICK);
        let expected: Vec<(String, u64)> = (11..=25).map(|v| ("alice".into(), v)).collect();
        assert_eq!(seen(batch.events()), expected);
        // Quiet for a second: the next change goes out at once again.
        tokio::time::advance(Duration::from_secs(1)).await;
        hub.deliver(event("alice", 26));
        assert!(subscription.try_recv().is_some());
    }
}
