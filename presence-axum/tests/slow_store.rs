//! A socket in front of a store that is slow to answer (an outage waiting
//! out its timeout): the socket keeps reading, heartbeats are answered at
//! once, and what waits on the store is neither lost nor reordered.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use common::{Server, busy_alice, change, ev};
use presence_axum::SocketSettings;
use presence_core::store::{PresenceStore, StoreError, Transition, Update, UserOp, UserView};
use presence_core::{
    Epoch, MemoryStore, NodeId, NodeName, PresenceConfig, ScopeId, SessionId, UserId, UserPresence,
};
use serde_json::json;
use tokio::sync::Notify;

/// Holds activity and scope snapshots at the store while it is shut, and
/// counts the calls that reached it.
#[derive(Debug, Default)]
struct Gate {
    shut: AtomicBool,
    opened: Notify,
    activity_calls: AtomicUsize,
    snapshot_calls: AtomicUsize,
}

impl Gate {
    fn shut(&self) {
        self.shut.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.shut.store(false, Ordering::SeqCst);
        self.opened.notify_waiters();
    }

    async fn pass(&self) {
        loop {
            let opened = self.opened.notified();
            if !self.shut.load(Ordering::SeqCst) {
                return;
            }
            opened.await;
        }
    }

    /// Waits until `calls` has reached `count`.
    async fn reached(calls: &AtomicUsize, count: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while calls.load(Ordering::SeqCst) < count {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the store call in time");
    }
}

#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    gate: Arc<Gate>,
}

#[async_trait]
impl PresenceStore for GatedStore {
    async fn apply(&self, update: Update<'_>) -> Result<Transition, StoreError> {
        if matches!(update.op, UserOp::Activity { .. }) {
            self.gate.activity_calls.fetch_add(1, Ordering::SeqCst);
            self.gate.pass().await;
        }
        self.inner.apply(update).await
    }

    fn heartbeat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        self.inner.heartbeat(user, session, now, config)
    }

    async fn load_many(&self, users: &[UserId]) -> Result<Vec<UserView>, StoreError> {
        self.inner.load_many(users).await
    }

    async fn scope_members(&self, scope: &ScopeId) -> Result<Vec<UserPresence>, StoreError> {
        self.gate.snapshot_calls.fetch_add(1, Ordering::SeqCst);
        self.gate.pass().await;
        self.inner.scope_members(scope).await
    }

    async fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<UserId>, StoreError> {
        self.inner.due(now, limit).await
    }

    async fn next_deadline(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        self.inner.next_deadline().await
    }

    async fn users_on_node(&self, node: &NodeName) -> Result<Vec<UserId>, StoreError> {
        self.inner.users_on_node(node).await
    }

    async fn renew_lease(&self, node: &NodeId, until: DateTime<Utc>) -> Result<(), StoreError> {
        self.inner.renew_lease(node, until).await
    }

    async fn end_lease(&self, node: &NodeId) -> Result<(), StoreError> {
        self.inner.end_lease(node).await
    }

    async fn expired_leases(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
        self.inner.expired_leases(now).await
    }

    async fn leases(&self, name: &NodeName) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
        self.inner.leases(name).await
    }

    fn epoch(&self) -> Epoch {
        self.inner.epoch()
    }
}

async fn server_with(gate: &Arc<Gate>) -> Server {
    let store = GatedStore {
        inner: MemoryStore::new(),
        gate: gate.clone(),
    };
    Server::start_tuned(SocketSettings::default(), |builder| {
        // Longer than any wait here: the store is slow, not failing.
        builder.store(store).store_timeout(Duration::from_secs(60))
    })
    .await
}

#[tokio::test]
async fn heartbeats_are_answered_while_activity_waits_on_the_store() {
    let gate = Arc::new(Gate::default());
    let server = server_with(&gate).await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    gate.shut();
    alice.send(json!({"type": "activity"})).await;
    Gate::reached(&gate.activity_calls, 1).await;
    for _ in 0..3 {
        alice.ping().await;
    }
    // More activity, then two statuses, while the first activity waits.
    for _ in 0..5 {
        alice.send(json!({"type": "activity"})).await;
    }
    for status in ["AWAY", "BUSY"] {
        alice
            .send(json!({"type": "status_change", "status": status}))
            .await;
    }
    alice.ping().await;
    assert_eq!(gate.activity_calls.load(Ordering::SeqCst), 1);
    bob.quiet(200).await;

    gate.open();
    for watcher in [&mut bob, &mut alice] {
        assert_eq!(
            change(&watcher.next().await),
            ev("alice", "AWAY", 2),
            "each status waiting behind the activity is applied, in order"
        );
        assert_eq!(change(&watcher.next().await), ev("alice", "BUSY", 3));
    }
    alice.quiet(200).await;
    assert_eq!(
        gate.activity_calls.load(Ordering::SeqCst),
        2,
        "the five activity frames that waited reached the store as one call"
    );
    alice.ping().await;
}

#[tokio::test]
async fn a_subscribe_snapshot_waiting_on_the_store_comes_before_the_scope_changes() {
    let gate = Arc::new(Gate::default());
    let server = server_with(&gate).await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;

    // Nobody on this node watches the lobby yet: its view is read.
    let handshakes = gate.snapshot_calls.load(Ordering::SeqCst);
    gate.shut();
    alice
        .send(json!({"type": "subscribe", "scope": "lobby"}))
        .await;
    Gate::reached(&gate.snapshot_calls, handshakes + 1).await;
    alice.ping().await;
    // Dave joins the lobby while alice's snapshot is on its way (his own
    // handshake snapshot waits for the same read).
    let mut dave = server.connect(&server.token("dave", "lobby")).await;
    dave.expect("hello").await;
    alice.quiet(200).await;

    gate.open();
    let snapshot = alice.expect("snapshot").await;
    assert_eq!(snapshot["scope"], "lobby");
    assert_eq!(change(&alice.next().await), ev("dave", "ONLINE", 1));
    assert_eq!(dave.expect("snapshot").await["scope"], "lobby");
    assert_eq!(
        gate.snapshot_calls.load(Ordering::SeqCst),
        handshakes + 1,
        "the node's view of the lobby was read from the store once for both sockets"
    );
}

#[tokio::test]
async fn unsubscribing_drops_a_snapshot_still_waiting_for_the_store() {
    let gate = Arc::new(Gate::default());
    let server = server_with(&gate).await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;

    let handshake = gate.snapshot_calls.load(Ordering::SeqCst);
    gate.shut();
    alice.send(json!({"type": "activity"})).await;
    Gate::reached(&gate.activity_calls, 1).await;
    alice
        .send(json!({"type": "subscribe", "scope": "lobby"}))
        .await;
    alice
        .send(json!({"type": "unsubscribe", "scope": "lobby"}))
        .await;
    alice.ping().await;
    gate.open();
    alice.quiet(300).await;
    assert_eq!(
        gate.snapshot_calls.load(Ordering::SeqCst),
        handshake,
        "the snapshot of a scope no longer watched is not read"
    );
}

#[tokio::test]
async fn a_new_socket_answers_heartbeats_while_its_first_snapshot_waits_on_the_store() {
    let gate = Arc::new(Gate::default());
    let server = server_with(&gate).await;
    gate.shut();
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.expect("hello").await;
    Gate::reached(&gate.snapshot_calls, 1).await;
    alice.ping().await;
    gate.open();
    let snapshot = alice.expect("snapshot").await;
    assert_eq!(snapshot["scope"], "acme");
    assert_eq!(snapshot["users"][0]["user_id"], "alice");
}

/// A watcher that fell behind (its queue overflowed) takes a fresh
/// snapshot from the node's view of the scope, which heard every change:
/// the shut store is not waited on.
#[tokio::test]
async fn after_a_lag_the_fresh_snapshot_comes_from_the_nodes_view_without_the_store() {
    let gate = Arc::new(Gate::default());
    let store = GatedStore {
        inner: MemoryStore::new(),
        gate: gate.clone(),
    };
    let server = Server::start_tuned(SocketSettings::default(), |builder| {
        builder
            .store(store)
            .store_timeout(Duration::from_secs(60))
            .subscriber_capacity(2)
    })
    .await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let handshake = gate.snapshot_calls.load(Ordering::SeqCst);
    gate.shut();
    // Bob's socket task gets no turn while the burst runs (one thread, no
    // cooperative yield): his queue of two deliveries overflows.
    let (_tab, last_v) = tokio::task::unconstrained(busy_alice(&server, 2_000)).await;
    assert!(server.presence.fanout_stats().dropped > 0, "bob lagged");
    // Events gathered before the lag may come first.
    let snapshot = loop {
        let frame = bob.next().await;
        if frame["type"] == "snapshot" {
            break frame;
        }
    };
    assert_eq!(
        gate.snapshot_calls.load(Ordering::SeqCst),
        handshake,
        "the store was not read"
    );
    let alice_v = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|user| user["user_id"] == "alice")
        .map(|user| user["v"].clone());
    assert_eq!(alice_v, Some(json!(last_v)), "the snapshot is fresh");
}

/// A `subscribe` refused as `rate_limited` (too many calls waiting on the
/// store) leaves the scope unwatched: the client, told it was dropped,
/// gets no changes of a scope it has no snapshot of, and may ask again.
#[tokio::test]
async fn a_subscribe_refused_as_rate_limited_watches_nothing() {
    let gate = Arc::new(Gate::default());
    let server = server_with(&gate).await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;

    gate.shut();
    alice.send(json!({"type": "activity"})).await;
    Gate::reached(&gate.activity_calls, 1).await;
    let statuses = ["AWAY", "BUSY"].iter().cycle().take(8);
    for status in statuses.clone() {
        alice
            .send(json!({"type": "status_change", "status": status}))
            .await;
    }
    alice
        .send(json!({"type": "subscribe", "scope": "lobby"}))
        .await;
    assert_eq!(alice.error_code().await, "rate_limited");

    gate.open();
    for (v, status) in (2..).zip(statuses) {
        assert_eq!(change(&alice.next().await), ev("alice", status, v));
    }
    let _dave = server.connect(&server.token("dave", "lobby")).await;
    alice.quiet(300).await;

    alice
        .send(json!({"type": "subscribe", "scope": "lobby"}))
        .await;
    let snapshot = alice.expect("snapshot").await;
    assert_eq!(snapshot["scope"], "lobby");
    assert_eq!(snapshot["users"][0]["user_id"], "dave");
}
