//! What a [`crate::Subscription`] hands out: one event, a batch of events of
//! one busy scope, or word that the subscriber lagged. Events and batches
//! are shared (one allocation for every watcher) and carry an
//! [`EncodingCache`], so an adapter encodes each of them once, whatever the
//! number of sockets that send it.

use std::any::Any;
use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use crate::event::PresenceEvent;
use crate::ids::ScopeId;
use crate::occupancy::Occupancy;

/// What a [`crate::Subscription`] yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// A change in a watched scope.
    Event(Arc<SharedEvent>),
    /// Several changes in one busy scope, in the order they happened; only
    /// handed out by a subscription that
    /// [accepts batches](crate::Subscription::accept_batches).
    Batch(Arc<EventBatch>),
    /// The counts of a large scope watched with
    /// [`watch_counts`](crate::Subscription::watch_counts), instead of its
    /// members' events.
    Occupancy(Arc<Occupancy>),
    /// This subscriber fell behind and missed events: re-read a snapshot of
    /// what it watches (events with a `v` at or below the snapshot's are
    /// stale).
    Lagged,
}

impl Delivery {
    /// The events delivered, in order: one for [`Delivery::Event`], all of a
    /// batch, none for [`Delivery::Occupancy`] and [`Delivery::Lagged`].
    pub fn events(&self) -> &[Arc<SharedEvent>] {
        match self {
            Delivery::Event(event) => std::slice::from_ref(event),
            Delivery::Batch(batch) => batch.events(),
            Delivery::Occupancy(_) | Delivery::Lagged => &[],
        }
    }
}

/// One event as fan-out shares it among its watchers: the event, and a slot
/// for its wire encoding. Dereferences to the [`PresenceEvent`].
pub struct SharedEvent {
    event: PresenceEvent,
    encoding: EncodingCache,
}

impl SharedEvent {
    /// Wraps an event, its encoding not computed yet.
    pub fn new(event: PresenceEvent) -> Self {
        Self {
            event,
            encoding: EncodingCache::default(),
        }
    }

    /// The event.
    pub fn event(&self) -> &PresenceEvent {
        &self.event
    }

    /// Where an adapter keeps this event's encoding, shared by every
    /// watcher it is delivered to.
    pub fn encoding(&self) -> &EncodingCache {
        &self.encoding
    }
}

impl Deref for SharedEvent {
    type Target = PresenceEvent;

    fn deref(&self) -> &PresenceEvent {
        &self.event
    }
}

impl From<PresenceEvent> for SharedEvent {
    fn from(event: PresenceEvent) -> Self {
        Self::new(event)
    }
}

impl PartialEq for SharedEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

impl Eq for SharedEvent {}

impl fmt::Debug for SharedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.event.fmt(f)
    }
}

/// The events of one busy scope gathered during one fan-out tick, in the
/// order they happened (so each user's events are in order), delivered to
/// each watcher of the whole scope at once.
pub struct EventBatch {
    scope: ScopeId,
    events: Vec<Arc<SharedEvent>>,
    encoding: EncodingCache,
}

impl EventBatch {
    /// A batch of `events`, all of `scope`.
    pub fn new(scope: ScopeId, events: Vec<Arc<SharedEvent>>) -> Self {
        Self {
            scope,
            events,
            encoding: EncodingCache::default(),
        }
    }

    /// The scope every event of the batch is told in.
    pub fn scope(&self) -> &ScopeId {
        &self.scope
    }

    /// The events, oldest first.
    pub fn events(&self) -> &[Arc<SharedEvent>] {
        &self.events
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Where an adapter keeps the batch's encoding, shared by every watcher
    /// it is delivered to.
    pub fn encoding(&self) -> &EncodingCache {
        &self.encoding
    }
}

impl PartialEq for EventBatch {
    fn eq(&self, other: &Self) -> bool {
        self.scope == other.scope && self.events == other.events
    }
}

impl Eq for EventBatch {}

impl fmt::Debug for EventBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventBatch")
            .field("scope", &self.scope)
            .field("events", &self.events)
            .finish()
    }
}

/// A slot that holds one encoding of a shared value, computed by the first
/// sender that needs it and cloned by the others. The type of the encoding
/// is the adapter's choice (cheap to clone: reference-counted bytes, say);
/// the core knows nothing of wire formats.
#[derive(Default)]
pub struct EncodingCache {
    slot: OnceLock<Box<dyn Any + Send + Sync>>,
}

impl EncodingCache {
    /// The encoding of type `T`: computed by `encode` the first time, a
    /// clone of that one afterwards. Should an encoding of another type be
    /// stored already (two adapters sharing one service), `encode` runs
    /// each time instead.
    pub fn get_or_encode<T, F>(&self, encode: F) -> T
    where
        T: Any + Clone + Send + Sync,
        F: FnOnce() -> T,
    {
        if let Some(stored) = self.slot.get() {
            return match stored.downcast_ref::<T>() {
                Some(encoded) => encoded.clone(),
                None => encode(),
            };
        }
        let encoded = encode();
        // Two senders may race to fill the slot; both encodings are equal.
        let _ = self.slot.set(Box::new(encoded.clone()));
        encoded
    }
}

impl fmt::Debug for EncodingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncodingCache")
            .field("filled", &self.slot.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn an_encoding_is_computed_once_and_shared() {
        let cache = EncodingCache::default();
        let runs = AtomicUsize::new(0);
        let encode = || {
            runs.fetch_add(1, Ordering::Relaxed);
            Arc::<str>::from("{\"type\":\"presence\"}")
        };
        let first = cache.get_or_encode(encode);
        let second = cache.get_or_encode(encode);
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert!(Arc::ptr_eq(&first, &second), "the same bytes, not a copy");
        // Another adapter's type is encoded each time, never mistaken.
        assert_eq!(cache.get_or_encode(|| 7_u32), 7);
    }
}
