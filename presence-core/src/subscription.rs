//! [`Subscription`]: one watcher's bounded queue and what it watches.
//!
//! The queue is a plain deque behind a mutex, allocated only once something
//! is queued: an idle subscription (a browser tab's socket) costs a few
//! hundred bytes, not a channel's preallocated block.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::delivery::{Delivery, EventBatch, SharedEvent};
use crate::fanout::Hub;
use crate::ids::{ScopeId, UserId};
use crate::occupancy::Occupancy;

pub(crate) type SubscriberId = u64;

/// What fan-out puts in a subscriber's queue.
#[derive(Clone)]
pub(crate) enum Queued {
    Event(Arc<SharedEvent>),
    Batch(Arc<EventBatch>),
    Occupancy(Arc<Occupancy>),
}

impl Queued {
    pub(crate) fn len(&self) -> usize {
        match self {
            Queued::Event(_) | Queued::Occupancy(_) => 1,
            Queued::Batch(batch) => batch.len(),
        }
    }
}

struct Queue {
    items: Mutex<VecDeque<Queued>>,
    capacity: usize,
    ready: Notify,
    lagged: AtomicBool,
}

/// The sending side of one subscription, shared by every scope it watches.
#[derive(Clone)]
pub(crate) struct Mailbox(Arc<Queue>);

/// A drained queue keeps at most this many slots, so a burst's memory is
/// given back once the subscriber has caught up.
const IDLE_SLOTS: usize = 8;

impl Mailbox {
    fn new(capacity: usize) -> Self {
        Self(Arc::new(Queue {
            items: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            ready: Notify::new(),
            lagged: AtomicBool::new(false),
        }))
    }

    /// Queues `item`; false (and the subscriber marked lagged) when its
    /// queue is full. Never waits on the subscriber.
    pub(crate) fn push(&self, item: Queued) -> bool {
        {
            let mut items = self.0.items.lock().unwrap_or_else(|e| e.into_inner());
            if items.len() >= self.0.capacity {
                drop(items);
                if !self.0.lagged.swap(true, Ordering::AcqRel) {
                    tracing::debug!("subscriber lagged; it will resnapshot");
                    crate::metrics::subscriber_lagged();
                }
                self.0.ready.notify_one();
                return false;
            }
            items.push_back(item);
        }
        self.0.ready.notify_one();
        true
    }

    /// Tells the subscriber it may have missed events, waking it if it
    /// waits.
    pub(crate) fn mark_lagged(&self) {
        self.0.lagged.store(true, Ordering::Release);
        self.0.ready.notify_one();
    }

    fn pop(&self) -> Option<Queued> {
        let mut items = self.0.items.lock().unwrap_or_else(|e| e.into_inner());
        let item = items.pop_front();
        if items.is_empty() && items.capacity() > IDLE_SLOTS {
            items.shrink_to(IDLE_SLOTS);
        }
        item
    }

    fn take_lagged(&self) -> bool {
        if !self.0.lagged.swap(false, Ordering::AcqRel) {
            return false;
        }
        // What is queued is superseded by the snapshot the subscriber takes.
        let mut items = self.0.items.lock().unwrap_or_else(|e| e.into_inner());
        *items = VecDeque::new();
        true
    }
}

/// What a subscription watches in one scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Watch {
    Scope,
    Users(Box<[UserId]>),
    /// The whole scope while it is small; its counts (and these users'
    /// events) while it is large.
    Counts(Box<[UserId]>),
}

impl Watch {
    /// The users watched by name.
    pub(crate) fn named(&self) -> &[UserId] {
        match self {
            Watch::Scope => &[],
            Watch::Users(users) | Watch::Counts(users) => users,
        }
    }
}

/// A stream of presence events for the scopes (or users) it watches. Create
/// one with [`crate::Presence::subscribe`]; dropping it stops delivery.
///
/// Events of a busy scope travel in batches (see below); unless the
/// subscription [accepts batches](Subscription::accept_batches),
/// [`Subscription::recv`] hands each batch out event by event.
///
/// # Batches
///
/// A scope's event goes out at once unless the scope is busy: changing
/// faster than [`Batching::above_rate`] (50 changes a second by default),
/// beyond a burst of a fifth of that (10 changes) — a leaky bucket per
/// scope. A busy scope's further events are gathered and handed to the
/// watchers of the whole scope once per [`Batching::interval`] (20 ms by
/// default), as one shared [`EventBatch`] in the order they happened: one
/// queue push per watcher per interval, however many events. Paced changes
/// never wait. Each batch holds at most [`MAX_BATCH_EVENTS`]; a fuller
/// scope sends a batch at once. Watchers of a few users get their (few)
/// events one by one, at once. A scope that goes quiet costs no timer: the
/// task that sends a busy scope's batches ends one interval after its last
/// one.
///
/// # Lag policy
///
/// Each subscription has a bounded queue (`subscriber_capacity`, 256
/// deliveries by default, an event or a batch each). Publishing never
/// waits: when a subscriber's queue is full, the delivery is dropped for
/// that subscriber alone and it is marked lagged. Its next
/// [`Subscription::recv`] returns [`Delivery::Lagged`] (the queued
/// deliveries are discarded, being superseded); the subscriber should then
/// take a fresh snapshot of what it watches and carry on (events gathered
/// before that snapshot may still arrive after it: their `v` is not newer
/// than the snapshot's, so they are dropped as stale). Other subscribers
/// are never slowed by a slow one.
///
/// [`Batching::above_rate`]: crate::Batching::above_rate
/// [`Batching::interval`]: crate::Batching::interval
/// [`MAX_BATCH_EVENTS`]: crate::MAX_BATCH_EVENTS
pub struct Subscription {
    id: SubscriberId,
    hub: Arc<Hub>,
    mailbox: Mailbox,
    /// Few per subscriber (a tab watches one or two scopes): a list costs
    /// less than a map.
    watches: Vec<(ScopeId, Watch)>,
    /// A batch being handed out event by event, and the next one's index.
    unrolling: Option<(Arc<EventBatch>, usize)>,
    accepts_batches: bool,
}

impl Subscription {
    pub(crate) fn new(id: SubscriberId, hub: Arc<Hub>, capacity: usize) -> Self {
        Self {
            id,
            hub,
            mailbox: Mailbox::new(capacity),
            watches: Vec::new(),
            unrolling: None,
            accepts_batches: false,
        }
    }

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
        self.set_watch(scope, Watch::Users(list.into_boxed_slice()));
    }

    /// Watches `scope` as counts while it is large (see
    /// [`crate::Presence::watch_counts`]): while it has more members than
    /// the large-scope threshold, [`Delivery::Occupancy`] at most once per
    /// interval, and the events of the `named` users only; while it is
    /// small, every event, as [`Subscription::watch_scope`]. When it turns
    /// small again the subscription is told [`Delivery::Lagged`], to read
    /// the members anew.
    pub fn watch_counts(&mut self, scope: ScopeId, named: impl IntoIterator<Item = UserId>) {
        let mut list: Vec<UserId> = named.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        self.set_watch(scope, Watch::Counts(list.into_boxed_slice()));
    }

    /// The users named in a counts watch of `scope`
    /// ([`Subscription::watch_counts`]), or `None` if `scope` is not
    /// watched as counts.
    pub fn counted_named(&self, scope: &ScopeId) -> Option<&[UserId]> {
        self.watches.iter().find_map(|(s, watch)| match watch {
            Watch::Counts(users) if s == scope => Some(&users[..]),
            _ => None,
        })
    }

    /// Stops watching `scope`. Events of it already queued may still arrive.
    pub fn unwatch(&mut self, scope: &ScopeId) {
        if let Some(at) = self.watches.iter().position(|(s, _)| s == scope) {
            let (scope, old) = self.watches.swap_remove(at);
            self.hub.remove(&scope, self.id, &old);
        }
    }

    /// The scopes watched now.
    pub fn scopes(&self) -> impl Iterator<Item = &ScopeId> {
        self.watches.iter().map(|(scope, _)| scope)
    }

    /// The users watched in `scope`: `None` if the whole scope (or nothing)
    /// is watched.
    pub fn watched_users(&self, scope: &ScopeId) -> Option<&[UserId]> {
        self.watches.iter().find_map(|(s, watch)| match watch {
            Watch::Users(users) if s == scope => Some(&users[..]),
            _ => None,
        })
    }

    /// From now on, [`Subscription::recv`] may return
    /// [`Delivery::Batch`]: the events a busy scope gathered in one tick,
    /// shared by every watcher (an adapter encodes such a batch once for
    /// all its sockets). Without it, a batch is handed out event by event.
    pub fn accept_batches(&mut self) {
        self.accepts_batches = true;
    }

    /// The next delivery, or `None` once the service has shut down.
    pub async fn recv(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.try_recv() {
                return Some(delivery);
            }
            // Enabled before looking, so a shutdown in between wakes it.
            let closing = self.hub.closing();
            tokio::pin!(closing);
            closing.as_mut().enable();
            if self.hub.is_closed() {
                return None;
            }
            // A push after `try_recv` looked leaves a permit: no lost wake-up.
            tokio::select! {
                _ = self.mailbox.0.ready.notified() => {}
                _ = closing => return None,
            }
        }
    }

    /// The next delivery if one is waiting.
    pub fn try_recv(&mut self) -> Option<Delivery> {
        if self.mailbox.take_lagged() {
            self.unrolling = None;
            return Some(Delivery::Lagged);
        }
        if let Some(event) = self.next_unrolled() {
            return Some(Delivery::Event(event));
        }
        match self.mailbox.pop()? {
            Queued::Event(event) => Some(Delivery::Event(event)),
            Queued::Occupancy(counts) => Some(Delivery::Occupancy(counts)),
            Queued::Batch(batch) if self.accepts_batches => Some(Delivery::Batch(batch)),
            Queued::Batch(batch) => {
                self.unrolling = Some((batch, 0));
                self.next_unrolled().map(Delivery::Event)
            }
        }
    }

    fn next_unrolled(&mut self) -> Option<Arc<SharedEvent>> {
        let (batch, next) = self.unrolling.as_mut()?;
        let event = batch.events().get(*next).cloned();
        *next += 1;
        if *next >= batch.len() {
            self.unrolling = None;
        }
        event
    }

    fn set_watch(&mut self, scope: ScopeId, watch: Watch) {
        self.unwatch(&scope);
        self.hub.add(&scope, self.id, &self.mailbox, &watch);
        // Exact growth: a subscription lives as long as its socket.
        self.watches.reserve_exact(1);
        self.watches.push((scope, watch));
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        for (scope, watch) in self.watches.drain(..) {
            self.hub.remove(&scope, self.id, &watch);
        }
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("watches", &self.watches)
            .field("accepts_batches", &self.accepts_batches)
            .finish()
    }
}
