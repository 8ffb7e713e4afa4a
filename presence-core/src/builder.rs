//! [`PresenceBuilder`]: how a host app configures and starts a
//! [`Presence`] service.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::PresenceConfig;
use crate::error::Error;
use crate::fanout::Batching;
use crate::ids::NodeId;
use crate::memory::MemoryStore;
use crate::occupancy::LargeScopes;
use crate::service::{Presence, Settings, Time};
use crate::store::PresenceStore;

impl Presence {
    /// A builder with the defaults: memory store, system clock, docs/rules.md#defaults
    /// thresholds.
    pub fn builder() -> PresenceBuilder {
        PresenceBuilder {
            store: None,
            clock: None,
            local_clock: Arc::new(SystemClock),
            clock_sync_interval: Duration::from_secs(10),
            config: PresenceConfig::default(),
            node: None,
            subscriber_capacity: 256,
            batching: Batching::default(),
            large_scopes: LargeScopes::default(),
            sweep_interval: Duration::from_secs(1),
            http_coalesce: None,
            store_timeout: Duration::from_secs(5),
            lease: Duration::from_secs(15),
            durable_changes: false,
        }
    }
}

/// Builds a [`Presence`] service.
pub struct PresenceBuilder {
    store: Option<Arc<dyn PresenceStore>>,
    clock: Option<Arc<dyn Clock>>,
    local_clock: Arc<dyn Clock>,
    clock_sync_interval: Duration,
    config: PresenceConfig,
    node: Option<NodeId>,
    subscriber_capacity: usize,
    batching: Batching,
    large_scopes: LargeScopes,
    sweep_interval: Duration,
    http_coalesce: Option<Duration>,
    store_timeout: Duration,
    lease: Duration,
    durable_changes: bool,
}

/// The longest default HTTP coalescing window.
const DEFAULT_HTTP_COALESCE: Duration = Duration::from_secs(5);

impl PresenceBuilder {
    /// The store (default: a new [`MemoryStore`]).
    pub fn store(mut self, store: impl PresenceStore) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// A store shared with other services (or kept by the caller).
    pub fn shared_store(mut self, store: Arc<dyn PresenceStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// A scope with more members than this (not `OFFLINE`) is large: its
    /// watchers who asked for counts get counts instead of each member's
    /// events (docs/rules.md#large-scopes). Default 200.
    pub fn large_scope_threshold(mut self, members: usize) -> Self {
        self.large_scopes.threshold = members;
        self
    }

    /// How often, at most, a large scope's counts go out (only when they
    /// changed). Default one second.
    pub fn occupancy_interval(mut self, interval: Duration) -> Self {
        self.large_scopes.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Presence time itself, used as given: no synchronisation with the
    /// store's clock (tests drive a [`crate::ManualClock`] this way; a host
    /// with a cluster-wide clock of its own may pass it). By default,
    /// presence time is the store's clock, carried by this machine's
    /// monotonic clock: see [presence time](crate::Clock#presence-time).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// This machine's clock under the synchronisation with the store
    /// (default: [`SystemClock`]): its monotonic time carries the store's
    /// time between readings, and its wall time is used only with a store
    /// that has no clock. For simulations of machines whose clocks differ.
    pub fn local_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.local_clock = clock;
        self
    }

    /// How often the store's clock is read again (default 10 s).
    pub fn clock_sync_interval(mut self, interval: Duration) -> Self {
        self.clock_sync_interval = interval;
        self
    }

    /// The thresholds (default: [`PresenceConfig::default`]).
    pub fn config(mut self, config: PresenceConfig) -> Self {
        self.config = config;
        self
    }

    /// This node's identity (default: the name `local` with a fresh
    /// incarnation). Give each server of a cluster its own stable name, so a
    /// restarted server clears what its previous run left.
    pub fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// Events a subscriber may have queued before it counts as lagging
    /// (default 256).
    pub fn subscriber_capacity(mut self, capacity: usize) -> Self {
        self.subscriber_capacity = capacity;
        self
    }

    /// How long a busy scope's events are gathered into one batch (default
    /// 20 ms). A scope's event goes out at once unless the scope changes
    /// faster than [`PresenceBuilder::batch_above_rate`]; then it waits,
    /// with the other events of the interval, for the scope's next batch.
    /// Zero sends every event on its own. See [batches](crate::Subscription#batches).
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batching.interval = interval;
        self
    }

    /// The rate, in changes a second, above which a scope counts as busy
    /// and its events are batched (default 50; a burst of a fifth of it
    /// still goes out at once). A scope changing slower never waits for a
    /// batch. At least 1.
    pub fn batch_above_rate(mut self, changes_per_second: u32) -> Self {
        self.batching.above_rate = changes_per_second.max(1);
        self
    }

    /// Longest the sweeper sleeps between looks at the store's deadlines
    /// (default 1 s). In a cluster this bounds how late a node notices a
    /// deadline set by a node that died.
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// Repeated HTTP activity of one login within this window costs no
    /// store write (each request still proves the login's HTTP session
    /// live, in memory). Default: 5 s, or half of `away_after` or of
    /// `session_ttl` if shorter; a window not shorter than both is refused
    /// at [`PresenceBuilder::build`] (activity inside it is not recorded).
    pub fn http_activity_coalesce(mut self, window: Duration) -> Self {
        self.http_coalesce = Some(window);
        self
    }

    /// Longest a store call may take before it fails with
    /// [`crate::store::StoreError::Timeout`] (default 5 s).
    pub fn store_timeout(mut self, timeout: Duration) -> Self {
        self.store_timeout = timeout;
        self
    }

    /// How long this process's lease in the store lasts (default 15 s); it
    /// is renewed every third of it. The lease vouches for the sockets'
    /// sessions this process holds: once this process dies, the lease runs
    /// out and any other process ends them, as of then, within a third of
    /// a lease. A shorter lease finds a dead process sooner for one store
    /// write per process per third of it; keep it longer than a pause the
    /// process may take (a process that cannot renew for a whole lease is
    /// taken for dead and its sockets are closed). A process of the same
    /// node started beside this one (a rolling deploy) leaves this one's
    /// sessions alone while the lease lives. See the crate docs, "Sessions
    /// that end".
    pub fn node_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Tells [`Presence::changes`] at least once, across restarts (default
    /// off: at most once). The store keeps each change in the same atomic
    /// step that makes it, until a reader acknowledges it; a process of
    /// this node started after one that stopped or died tells what that one
    /// left unacknowledged, and a reader that falls behind reads what it
    /// missed from the store. It costs one more write per change inside
    /// the store's atomic step, and kept changes take room in the store
    /// until they are read: turn it on only with a reader of
    /// [`Presence::changes`]. See [`crate::Changes`].
    ///
    /// [`PresenceBuilder::build`] fails with [`Error::ChangesNotKept`] on
    /// a store that cannot keep changes.
    pub fn durable_changes(mut self, durable: bool) -> Self {
        self.durable_changes = durable;
        self
    }

    /// Validates the configuration, clears the sessions an earlier
    /// incarnation of this node left in the store, and starts the sweeper.
    /// Must run inside a tokio runtime.
    pub async fn build(self) -> Result<Presence, Error> {
        let time = match self.clock {
            Some(clock) => Time::Given(clock),
            None => Time::Synced {
                local: self.local_clock,
                every: self.clock_sync_interval.max(Duration::from_millis(1)),
            },
        };
        Presence::start(Settings {
            store: self.store.unwrap_or_else(|| Arc::new(MemoryStore::new())),
            time,
            config: self.config,
            node: self.node.unwrap_or_else(|| NodeId::new("local")),
            subscriber_capacity: self.subscriber_capacity,
            batching: self.batching,
            large_scopes: self.large_scopes,
            sweep_interval: self.sweep_interval,
            // Short enough that a user browsing pages turns neither AWAY
            // nor lapses between two counted requests.
            http_coalesce: self.http_coalesce.unwrap_or_else(|| {
                DEFAULT_HTTP_COALESCE
                    .min(self.config.away_after / 2)
                    .min(self.config.session_ttl / 2)
            }),
            store_timeout: self.store_timeout,
            lease: self.lease.max(Duration::from_millis(3)),
            durable_changes: self.durable_changes,
        })
        .await
    }
}
