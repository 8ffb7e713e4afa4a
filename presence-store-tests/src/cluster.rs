//! The cluster scenarios: two [`Presence`] services ("nodes" `node-a` and
//! `node-b`) sharing one store and one [`ManualClock`], checked at the
//! service level for what a user would notice. Each scenario takes a fresh,
//! empty store that has a cluster feed
//! ([`PresenceStore::cluster_feed`]).
//!
//! Thresholds (see [`test_config`]): heartbeat 10 s, ttl 30 s, away
//! 60 s, offline 600 s, linger 5 s. Time is the manual clock: a scenario
//! moves it, then calls [`Presence::run_due`] on the node(s) that should
//! act (the nodes' own sweepers run too; the store decides each change
//! once). Nothing ever sleeps through a presence threshold.
//!
//! Deliveries that cross nodes may travel through a real network (Redis
//! pub/sub), so a [`Watcher`] waits for each expected event with a deadline
//! ([`WAIT`]) instead of asserting at once, and checks that nothing more
//! arrives by listening for a short real-time window ([`QUIET`]), together
//! with the store's own answer ([`Presence::status`]). Every watcher is
//! synchronised with the feed before a scenario acts: a probe user in the
//! scope changes on the other node until the watching node hears of it (a
//! network feed only listens to a scope once its subscription takes
//! effect). Probe users are named with [`PROBE_PREFIX`] and are never
//! reported by a watcher.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::store::PresenceStore;
use presence_core::{
    AppState, Clock, CustomStatus, Delivery, Devices, ManualClock, NodeId, Presence,
    RequestedStatus, ScopeId, SessionEnd, SessionHandle, SessionKind, SessionSpec, SharedEvent,
    Status, Subscription, UserId,
};
use tokio::time::{Instant, timeout, timeout_at};

use crate::counting::CountingReads;
use crate::helpers::{Seen, WAIT, seen, test_config};

/// How long (real time) a watcher listens to conclude that nothing more
/// arrives.
pub const QUIET: Duration = Duration::from_millis(200);

/// Users whose name starts with this are the probes that synchronise a
/// watcher with the feed; watchers never report them.
pub const PROBE_PREFIX: &str = "cluster-probe-";

/// What a test expects of an event: user, status, version.
pub type Expected<'a> = (&'a str, Status, u64);

/// Each node's lease: shorter than `session_ttl`, so a dead node's
/// sessions end sooner than they would lapse.
pub const NODE_LEASE: Duration = Duration::from_secs(15);

/// Two nodes sharing one store and one manual clock.
pub struct Cluster {
    /// The shared store.
    pub store: Arc<dyn PresenceStore>,
    /// The shared clock.
    pub clock: Arc<ManualClock>,
    a: Option<Presence>,
    b: Presence,
    /// When the cluster started (the clock's time then).
    pub t0: DateTime<Utc>,
    probes: AtomicU64,
}

impl Cluster {
    /// Starts `node-a` and `node-b` on `store`, with [`test_config`] and
    /// one [`ManualClock`].
    pub async fn start(store: Arc<dyn PresenceStore>) -> Self {
        assert!(
            store.cluster_feed().is_some(),
            "the cluster scenarios need a store with a cluster feed"
        );
        let clock = Arc::new(ManualClock::default());
        let t0 = clock.now();
        let a = node(&store, &clock, "node-a").await;
        let b = node(&store, &clock, "node-b").await;
        Self {
            store,
            clock,
            a: Some(a),
            b,
            t0,
            probes: AtomicU64::new(0),
        }
    }

    /// The node named `node-a`. Panics once it has crashed.
    pub fn a(&self) -> &Presence {
        self.a.as_ref().expect("node-a has crashed")
    }

    /// The node named `node-b`.
    pub fn b(&self) -> &Presence {
        &self.b
    }

    /// Kills node A as a crash would, with the handles of the sessions
    /// opened through it: see [`crash`].
    pub fn crash_a(&mut self, sessions: Vec<SessionHandle>) {
        let node = self.a.take().expect("node-a has crashed already");
        crash(node, sessions);
    }

    /// The time `seconds` after the start.
    pub fn at(&self, seconds: u64) -> DateTime<Utc> {
        self.t0 + chrono::TimeDelta::seconds(seconds as i64)
    }

    /// Moves the shared clock to `seconds` after the start.
    pub fn advance_to(&self, seconds: u64) {
        let target = self.at(seconds);
        assert!(
            target >= self.clock.now(),
            "scenarios only move time forward"
        );
        self.clock.set(target);
    }

    /// Runs every due time-driven change on both nodes at once.
    pub async fn run_due_on_both(&self) {
        let (a, b) = tokio::join!(self.a().run_due(), self.b.run_due());
        a.expect("run_due on node-a");
        b.expect("run_due on node-b");
    }

    /// A watcher of all of `scope` on `node` (one of [`Cluster::a`] and
    /// [`Cluster::b`]), synchronised with the feed (node A must be up).
    pub async fn watch(&self, node: &Presence, scope: &str) -> Watcher {
        let mut events = node.subscribe();
        events.watch_scope(ScopeId::from(scope));
        self.ready(node, scope, events).await
    }

    /// A watcher of the named `users` of `scope` on `node`, synchronised
    /// with the feed.
    pub async fn watch_users(&self, node: &Presence, scope: &str, users: &[&str]) -> Watcher {
        let mut events = node.subscribe();
        events.watch_users(ScopeId::from(scope), users.iter().map(|u| UserId::from(*u)));
        self.ready(node, scope, events).await
    }

    /// How `node` reads `user` now: status and version.
    pub async fn status_on(&self, node: &Presence, user: &str) -> (Status, u64) {
        let presence = node
            .status(&UserId::from(user))
            .await
            .unwrap_or_else(|e| panic!("status of {user} on {}: {e}", node.node()));
        (presence.status, presence.v)
    }

    /// The users `node` lists in its snapshot of `scope` (probes left out),
    /// sorted.
    pub async fn members_on(&self, node: &Presence, scope: &str) -> Vec<Seen> {
        let snapshot = node
            .snapshot(&ScopeId::from(scope))
            .await
            .unwrap_or_else(|e| panic!("snapshot of {scope} on {}: {e}", node.node()));
        let mut members: Vec<Seen> = snapshot
            .users
            .iter()
            .filter(|user| !is_probe(&user.user_id))
            .map(|user| (user.user_id.to_string(), user.status, user.v))
            .collect();
        members.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        members
    }

    fn other(&self, node: &Presence) -> &Presence {
        if node.node() == self.a().node() {
            &self.b
        } else {
            assert_eq!(node.node(), self.b.node(), "a node of this cluster");
            self.a()
        }
    }

    /// Waits until `node` hears of changes made on the other node in
    /// `scope`, then wraps `events`.
    async fn ready(&self, node: &Presence, scope: &str, mut events: Subscription) -> Watcher {
        let scope_id = ScopeId::from(scope);
        // A whole-scope subscription that sees the probe; `events` may
        // watch only some users.
        let mut anchor = node.subscribe();
        anchor.watch_scope(scope_id.clone());
        let from = self.other(node);
        let probe = UserId::from(format!(
            "{PROBE_PREFIX}{}",
            self.probes.fetch_add(1, Ordering::Relaxed)
        ));
        let handle = from
            .open_session(SessionSpec::new(probe.clone(), "probe").scope(scope_id.clone()))
            .await
            .expect("open a probe session");
        let deadline = Instant::now() + WAIT;
        let mut busy = false;
        loop {
            let attempt = (Instant::now() + Duration::from_millis(250)).min(deadline);
            match timeout_at(attempt, anchor.recv()).await {
                Ok(Some(Delivery::Event(event))) if event.user_id == probe => break,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{} shut down", node.node()),
                Err(_) if Instant::now() >= deadline => panic!(
                    "{} never heard of a change made on {} in {scope} within {WAIT:?}",
                    node.node(),
                    from.node()
                ),
                Err(_) => {
                    // Its first change went by before the feed listened:
                    // make another.
                    busy = !busy;
                    let wish = if busy {
                        RequestedStatus::Busy
                    } else {
                        RequestedStatus::Online
                    };
                    from.set_status(&probe, wish, None)
                        .await
                        .expect("change the probe");
                }
            }
        }
        from.logout_everywhere(&probe)
            .await
            .expect("log the probe out");
        drop(handle);
        drop(anchor);
        // What the feed told before it listened (a resnapshot notice) is
        // over; nothing the scenario does has happened yet.
        let mut pending = VecDeque::new();
        while let Some(delivery) = events.try_recv() {
            for event in delivery.events() {
                if !is_probe(&event.user_id) {
                    pending.push_back(event.clone());
                }
            }
        }
        Watcher {
            label: format!("watcher on {} of {scope}", node.node().name),
            scope: scope_id,
            events,
            pending,
        }
    }
}

async fn node(store: &Arc<dyn PresenceStore>, clock: &Arc<ManualClock>, name: &str) -> Presence {
    Presence::builder()
        .shared_store(store.clone())
        .clock(clock.clone())
        .config(test_config())
        .node_lease(NODE_LEASE)
        .node(NodeId::new(name))
        .build()
        .await
        .unwrap_or_else(|e| panic!("start {name}: {e}"))
}

fn is_probe(user: &UserId) -> bool {
    user.as_str().starts_with(PROBE_PREFIX)
}

fn owned(expected: &[Expected<'_>]) -> Vec<Seen> {
    expected
        .iter()
        .map(|(user, status, v)| ((*user).to_owned(), *status, *v))
        .collect()
}

/// A subscription on one node, with deadlines on what it expects.
pub struct Watcher {
    label: String,
    scope: ScopeId,
    events: Subscription,
    pending: VecDeque<Arc<SharedEvent>>,
}

impl Watcher {
    /// The next event (probes skipped) before `deadline`, if any. A watcher
    /// told to resnapshot ([`Delivery::Lagged`]) may have missed events, so
    /// the scenario cannot go on: it panics.
    async fn recv_until(&mut self, deadline: Instant) -> Option<Arc<SharedEvent>> {
        if let Some(event) = self.pending.pop_front() {
            return Some(event);
        }
        loop {
            match timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Delivery::Event(event))) if is_probe(&event.user_id) => continue,
                Ok(Some(Delivery::Event(event))) => {
                    assert_eq!(
                        event.scope, self.scope,
                        "{}: an event of a scope it does not watch",
                        self.label
                    );
                    return Some(event);
                }
                Ok(Some(Delivery::Batch(batch))) => {
                    // Only a subscription that accepts batches gets one.
                    let news = batch.events().iter().filter(|e| !is_probe(&e.user_id));
                    self.pending.extend(news.cloned());
                    if let Some(event) = self.pending.pop_front() {
                        return Some(event);
                    }
                }
                Ok(Some(Delivery::Occupancy(counts))) => panic!(
                    "{}: counts {counts:?} for a watch that did not ask for them",
                    self.label
                ),
                Ok(Some(Delivery::Lagged)) => panic!(
                    "{}: told to resnapshot (events were lost) in the middle of a scenario",
                    self.label
                ),
                Ok(None) => panic!("{}: the subscription ended", self.label),
                Err(_) => return None,
            }
        }
    }

    /// The next event, waiting up to [`WAIT`].
    pub async fn next(&mut self) -> Arc<SharedEvent> {
        match self.recv_until(Instant::now() + WAIT).await {
            Some(event) => event,
            None => panic!("{}: no event within {WAIT:?}", self.label),
        }
    }

    /// The next `count` events, waiting up to [`WAIT`] for all.
    pub async fn take(&mut self, count: usize) -> Vec<Arc<SharedEvent>> {
        let deadline = Instant::now() + WAIT;
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            match self.recv_until(deadline).await {
                Some(event) => events.push(event),
                None => panic!(
                    "{}: expected {count} events within {WAIT:?}, got {:?}",
                    self.label,
                    events.iter().map(|e| seen(e)).collect::<Vec<_>>()
                ),
            }
        }
        events
    }

    /// Exactly these events next, in this order.
    pub async fn expect(&mut self, expected: &[Expected<'_>]) -> Vec<Arc<SharedEvent>> {
        let events = self.take(expected.len()).await;
        let got: Vec<Seen> = events.iter().map(|e| seen(e)).collect();
        assert_eq!(got, owned(expected), "{}: events in order", self.label);
        events
    }

    /// Exactly these events next, each user's in order, users interleaved
    /// in any way.
    pub async fn expect_unordered(&mut self, expected: &[Expected<'_>]) -> Vec<Arc<SharedEvent>> {
        let events = self.take(expected.len()).await;
        let got: Vec<Seen> = events.iter().map(|e| seen(e)).collect();
        let mut last_v: BTreeMap<&str, u64> = BTreeMap::new();
        for event in &events {
            let last = last_v.entry(event.user_id.as_str()).or_insert(0);
            assert!(
                event.v > *last,
                "{}: {}'s events out of order: {got:?}",
                self.label,
                event.user_id
            );
            *last = event.v;
        }
        let (mut sorted_got, mut sorted_expected) = (got.clone(), owned(expected));
        sorted_got.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        sorted_expected.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        assert_eq!(
            sorted_got, sorted_expected,
            "{}: events (received as {got:?})",
            self.label
        );
        events
    }

    /// Nothing more arrives within [`QUIET`].
    pub async fn quiet(&mut self) {
        let Some(first) = self.recv_until(Instant::now() + QUIET).await else {
            return;
        };
        let mut extra = vec![seen(&first)];
        while let Some(event) = self.recv_until(Instant::now() + QUIET).await {
            extra.push(seen(&event));
        }
        panic!("{}: expected nothing more, got {extra:?}", self.label);
    }
}

/// Kills `node` as a crash would: nothing closes its sessions, nothing is
/// told to anyone, its sweeper stops and it leaves the feed (provided
/// nothing else holds a clone of it). The handles are dropped on a thread
/// where no tokio runtime runs, so they cannot close their sessions (as
/// with `std::mem::forget`), yet they release the node, which
/// `std::mem::forget` would keep alive as a zombie still sweeping and still
/// listening to the feed.
pub fn crash(node: Presence, sessions: Vec<SessionHandle>) {
    std::thread::spawn(move || drop(sessions))
        .join()
        .expect("drop the sessions of the crashed node");
    drop(node);
}

fn ev(user: &str, status: Status, v: u64) -> Expected<'_> {
    (user, status, v)
}

async fn open(node: &Presence, user: &str, login: &str, scope: &str) -> SessionHandle {
    node.open_session(SessionSpec::new(user, login).scope(scope))
        .await
        .unwrap_or_else(|e| panic!("open a session of {user} on {}: {e}", node.node()))
}

async fn ended_in_time(handle: &mut SessionHandle) -> SessionEnd {
    match timeout(WAIT, handle.ended()).await {
        Ok(end) => end,
        Err(_) => panic!(
            "the holder of {}'s session {} was not told it ended within {WAIT:?}",
            handle.user(),
            handle.id()
        ),
    }
}

/// A session opened on node A makes its user ONLINE (version 1) to a
/// watcher on node B, and node B's queries agree.
pub async fn a_session_on_one_node_is_online_on_the_other(store: Arc<dyn PresenceStore>) {
    let c = Cluster::start(store).await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let _tab = open(c.a(), "alice", "laptop", "acme").await;
    let event = on_b.expect(&[ev("alice", Status::Online, 1)]).await;
    assert_eq!(event[0].last_seen, Some(c.t0), "last seen: the open");
    assert_eq!(c.status_on(c.b(), "alice").await, (Status::Online, 1));
    assert_eq!(
        c.members_on(c.b(), "acme").await,
        vec![("alice".to_owned(), Status::Online, 1)]
    );
    on_b.quiet().await;
}

/// What a user shows beyond the status crosses the feed whole: a session's
/// kind, a custom status, a session's app state and hiding last seen, each
/// set on node A, reach a watcher on node B as one event each (the status
/// unchanged, versions one apart), with the details and `last_seen` of node
/// A's answer; node B's reads agree.
pub async fn details_set_on_one_node_reach_the_other_as_one_event_each(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let alice = UserId::from("alice");
    let spec = SessionSpec::new("alice", "laptop")
        .scope("acme")
        .kind(SessionKind::web());
    let tab = c.a().open_session(spec).await.expect("open");
    let opened = on_b.expect(&[ev("alice", Status::Online, 1)]).await;
    let devices = opened[0].details.as_ref().map(|d| d.devices.clone());
    let web: Devices = [(SessionKind::web(), Status::Online)].into_iter().collect();
    assert_eq!(devices, Some(web), "the kind crossed");

    let meeting = CustomStatus::new(
        Some("In a meeting".into()),
        Some("📅".into()),
        Some(c.at(3_600)),
    )
    .expect("a valid custom status");
    let custom = c.a().set_custom_status(&alice, Some(meeting)).await;
    let state = AppState::new(serde_json::json!({"in_call": true})).expect("a valid state");
    let stated = c.a().set_session_state(&alice, tab.id(), Some(state)).await;
    let hidden = c.a().set_last_seen_hidden(&alice, true).await;
    let answers = [custom, stated, hidden].map(|answer| answer.expect("applied on node A"));
    let events = on_b
        .expect(&[
            ev("alice", Status::Online, 2),
            ev("alice", Status::Online, 3),
            ev("alice", Status::Online, 4),
        ])
        .await;
    for (event, answer) in events.iter().zip(&answers) {
        assert_eq!(
            (&event.details, event.last_seen),
            (&answer.details, answer.last_seen),
            "v{}",
            event.v
        );
    }
    on_b.quiet().await;
    let [.., hidden] = answers;
    assert_eq!(hidden.last_seen, None);
    assert_eq!(c.b().status(&alice).await.expect("status"), hidden);
    let snapshot = c.b().snapshot(&"acme".into()).await.expect("snapshot");
    assert_eq!(snapshot.user(&alice), Some(&hidden));
}

/// Closing the last session on node A keeps the user ONLINE on node B for
/// the linger, not a second less; then node B sees OFFLINE, version 2, last
/// seen at the close.
pub async fn a_close_on_one_node_is_offline_on_the_other_after_the_linger(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let mut on_b = c.watch(c.b(), "acme").await;
    let tab = open(c.a(), "alice", "laptop", "acme").await;
    on_b.expect(&[ev("alice", Status::Online, 1)]).await;

    c.advance_to(3);
    tab.close().await.expect("close on node A");
    c.advance_to(3 + linger - 1);
    c.run_due_on_both().await;
    on_b.quiet().await;
    assert_eq!(
        c.status_on(c.b(), "alice").await,
        (Status::Online, 1),
        "still lingering one second before the linger ends"
    );

    c.advance_to(3 + linger);
    c.run_due_on_both().await;
    let event = on_b.expect(&[ev("alice", Status::Offline, 2)]).await;
    assert_eq!(event[0].last_seen, Some(c.at(3)), "last seen: the close");
    assert_eq!(c.status_on(c.b(), "alice").await, (Status::Offline, 2));
    assert!(c.members_on(c.b(), "acme").await.is_empty());
    on_b.quiet().await;
}

/// A node that dies without a word leaves no ghost: once its lease has run
/// out, node B ends its sessions, and after the linger publishes exactly
/// one OFFLINE per user. A user who also holds a live session on node B
/// stays ONLINE, without any event.
pub async fn a_dead_nodes_users_go_offline_once_after_its_lease_and_linger(
    store: Arc<dyn PresenceStore>,
) {
    let mut c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let lease = NODE_LEASE.as_secs();
    let mut on_b = c.watch(c.b(), "acme").await;
    let mut on_dying_node = Vec::new();
    for user in ["alice", "bob", "carol"] {
        on_dying_node.push(open(c.a(), user, &format!("{user}-laptop"), "acme").await);
    }
    let carol_phone = open(c.b(), "carol", "carol-phone", "acme").await;
    on_b.expect_unordered(&[
        ev("alice", Status::Online, 1),
        ev("bob", Status::Online, 1),
        ev("carol", Status::Online, 1),
    ])
    .await;

    // Node A renewed its lease at 0 and dies: its sockets' heartbeats
    // never reached the store, so only the lease speaks for them.
    c.crash_a(on_dying_node);
    for second in [lease / 3, 2 * lease / 3, lease - 1] {
        c.advance_to(second);
        carol_phone.heartbeat().expect("carol's phone is live");
        c.b().run_due().await.expect("sweep on node B");
    }
    on_b.quiet().await;
    for user in ["alice", "bob"] {
        assert_eq!(
            c.status_on(c.b(), user).await,
            (Status::Online, 1),
            "{user}'s session is live while node A's lease lives"
        );
    }

    // Node A's lease runs out at `lease`. Node B renews its own a third
    // of a lease after the last time and then finds A's run out: A's
    // sessions end as of the instant it ran out, and linger from then.
    c.advance_to(lease + 1);
    carol_phone.heartbeat().expect("carol's phone is live");
    c.b().run_due().await.expect("sweep on node B");
    c.advance_to(lease + linger - 1);
    c.b().run_due().await.expect("sweep on node B");
    on_b.quiet().await;
    assert_eq!(
        c.status_on(c.b(), "alice").await,
        (Status::Online, 1),
        "the end lingers like a close"
    );

    c.advance_to(lease + linger);
    c.b().run_due().await.expect("sweep on node B");
    let events = on_b
        .expect_unordered(&[
            ev("alice", Status::Offline, 2),
            ev("bob", Status::Offline, 2),
        ])
        .await;
    for event in &events {
        assert_eq!(
            event.last_seen,
            Some(c.at(lease)),
            "last seen: when node A's lease ran out, the last instant anyone vouched for them"
        );
    }
    on_b.quiet().await;
    assert_eq!(c.status_on(c.b(), "carol").await, (Status::Online, 1));
    assert_eq!(
        c.members_on(c.b(), "acme").await,
        vec![("carol".to_owned(), Status::Online, 1)],
        "no ghost in the snapshot"
    );
    assert!(
        c.store
            .expired_leases(c.clock.now())
            .await
            .expect("leases")
            .is_empty(),
        "the dead process's lease is forgotten"
    );
}

/// Fifty tasks per node each open and close a session of the same user,
/// all racing, three times over: every watcher, on either node, sees
/// exactly one ONLINE when the first session opens and one OFFLINE when the
/// linger after the last close ends, with versions growing by one; the
/// user ends OFFLINE with no ghost in any snapshot.
pub async fn racing_opens_and_closes_on_both_nodes_show_one_online_and_one_offline(
    store: Arc<dyn PresenceStore>,
) {
    const PER_NODE: usize = 50;
    const ROUNDS: u64 = 3;
    let c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let mut on_a = c.watch(c.a(), "acme").await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let mut now = 0;
    for round in 0..ROUNDS {
        let start = Arc::new(tokio::sync::Barrier::new(2 * PER_NODE));
        let mut tasks = Vec::with_capacity(2 * PER_NODE);
        for i in 0..PER_NODE {
            for node in [c.a(), c.b()] {
                let (node, start) = (node.clone(), start.clone());
                tasks.push(tokio::spawn(async move {
                    start.wait().await;
                    let login = format!("{}-{i}", node.node().name);
                    let tab = open(&node, "alice", &login, "acme").await;
                    tokio::task::yield_now().await;
                    tab.close().await.expect("close");
                }));
            }
        }
        for task in tasks {
            task.await.expect("an open/close task panicked");
        }
        let online = 2 * round + 1;
        for watcher in [&mut on_a, &mut on_b] {
            watcher.expect(&[ev("alice", Status::Online, online)]).await;
            watcher.quiet().await;
        }
        assert_eq!(
            c.status_on(c.b(), "alice").await,
            (Status::Online, online),
            "round {round}: every session closed, the user lingers"
        );

        now += linger;
        c.advance_to(now);
        c.run_due_on_both().await;
        for watcher in [&mut on_a, &mut on_b] {
            watcher
                .expect(&[ev("alice", Status::Offline, online + 1)])
                .await;
        }
        for node in [c.a(), c.b()] {
            assert_eq!(
                c.status_on(node, "alice").await,
                (Status::Offline, online + 1)
            );
            assert!(
                c.members_on(node, "acme").await.is_empty(),
                "round {round}: a ghost in {}'s snapshot",
                node.node()
            );
        }
        now += 1;
        c.advance_to(now);
    }
    on_a.quiet().await;
    on_b.quiet().await;
}

/// A logout on node B ends the login's session held on node A at once:
/// its holder is told `LoggedOut`, every watcher sees OFFLINE with no
/// linger, and the session is dead (its heartbeats fail). Another user's
/// session on node A is left alone.
pub async fn a_logout_on_one_node_ends_the_session_held_on_the_other(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let mut on_a = c.watch(c.a(), "acme").await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let mut laptop = open(c.a(), "alice", "alice-laptop", "acme").await;
    let bob = open(c.a(), "bob", "bob-laptop", "acme").await;
    for watcher in [&mut on_a, &mut on_b] {
        watcher
            .expect_unordered(&[ev("alice", Status::Online, 1), ev("bob", Status::Online, 1)])
            .await;
    }

    c.advance_to(2);
    let ended = c
        .b()
        .logout(&UserId::from("alice"), &"alice-laptop".into())
        .await
        .expect("logout on node B");
    assert_eq!(
        ended,
        vec![laptop.id().clone()],
        "the laptop's session ended"
    );
    assert_eq!(ended_in_time(&mut laptop).await, SessionEnd::LoggedOut);
    for watcher in [&mut on_a, &mut on_b] {
        let event = watcher.expect(&[ev("alice", Status::Offline, 2)]).await;
        assert_eq!(event[0].at, c.at(2), "at once, no linger");
    }
    for node in [c.a(), c.b()] {
        assert_eq!(c.status_on(node, "alice").await, (Status::Offline, 2));
    }
    assert!(
        laptop.heartbeat().is_err(),
        "a logged-out session is dead: its socket must close"
    );
    assert_eq!(bob.has_ended(), None, "bob's session is not touched");
    drop(laptop); // ended already: closes nothing

    c.advance_to(2 + linger + 1);
    c.run_due_on_both().await;
    for watcher in [&mut on_a, &mut on_b] {
        watcher.quiet().await;
    }
    assert_eq!(c.status_on(c.b(), "alice").await, (Status::Offline, 2));
    assert_eq!(c.status_on(c.b(), "bob").await, (Status::Online, 1));
    bob.heartbeat().expect("bob's session is live");
}

/// A watcher on node B of only some users of a scope gets only their
/// events, from changes made on node A; a user in another scope is neither
/// told nor revealed.
pub async fn a_watcher_of_some_users_gets_only_their_events_from_the_other_node(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    // Dave is in another organisation; naming him does not reveal him.
    let mut few = c
        .watch_users(c.b(), "acme", &["alice", "carol", "dave"])
        .await;
    let mut everyone = c.watch(c.b(), "acme").await;
    let _alice = open(c.a(), "alice", "alice-l", "acme").await;
    let _bob = open(c.a(), "bob", "bob-l", "acme").await;
    let _carol = open(c.a(), "carol", "carol-l", "acme").await;
    let _dave = open(c.a(), "dave", "dave-l", "globex").await;
    few.expect_unordered(&[
        ev("alice", Status::Online, 1),
        ev("carol", Status::Online, 1),
    ])
    .await;
    everyone
        .expect_unordered(&[
            ev("alice", Status::Online, 1),
            ev("bob", Status::Online, 1),
            ev("carol", Status::Online, 1),
        ])
        .await;

    c.advance_to(1);
    let a = c.a();
    for (user, wish) in [
        ("bob", RequestedStatus::Busy),
        ("dave", RequestedStatus::Busy),
        ("alice", RequestedStatus::Busy),
    ] {
        a.set_status(&UserId::from(user), wish, None)
            .await
            .expect("set a status on node A");
    }
    a.logout(&UserId::from("carol"), &"carol-l".into())
        .await
        .expect("logout on node A");
    few.expect_unordered(&[
        ev("alice", Status::Busy, 2),
        ev("carol", Status::Offline, 2),
    ])
    .await;
    everyone
        .expect_unordered(&[
            ev("bob", Status::Busy, 2),
            ev("alice", Status::Busy, 2),
            ev("carol", Status::Offline, 2),
        ])
        .await;
    few.quiet().await;
    everyone.quiet().await;

    let named = c
        .b()
        .snapshot_of(
            &ScopeId::from("acme"),
            &["alice".into(), "bob".into(), "dave".into()],
        )
        .await
        .expect("snapshot_of on node B");
    let listed: Vec<Seen> = named
        .users
        .iter()
        .map(|user| (user.user_id.to_string(), user.status, user.v))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("alice".to_owned(), Status::Busy, 2),
            ("bob".to_owned(), Status::Busy, 2),
            ("dave".to_owned(), Status::Offline, 0),
        ],
        "dave is not in acme: nothing about him is revealed there"
    );
}

/// One user's changes made alternately on node A and node B reach a
/// watcher on each node in order: step by step (each change after the last
/// one was seen) with versions growing by exactly one and no duplicates;
/// then in a burst (each change as soon as the last call returned) in
/// order, without duplicates, each version with the status it was made
/// with, ending at the final one. In a burst a node's own event may
/// overtake one still in flight from the other node, and fan-out drops the
/// straggler rather than deliver it out of order (see
/// the cluster feed in `presence_core::store`), so a burst may skip versions.
pub async fn alternating_changes_from_both_nodes_reach_every_watcher_in_order(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let alice = UserId::from("alice");
    let mut on_a = c.watch(c.a(), "acme").await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let (a, b) = (c.a(), c.b());

    let mut laptop = open(a, "alice", "laptop", "acme").await;
    let steps: [(&Presence, RequestedStatus, Status); 6] = [
        (b, RequestedStatus::Busy, Status::Busy),
        (a, RequestedStatus::Online, Status::Online),
        (b, RequestedStatus::Away, Status::Away),
        (a, RequestedStatus::Invisible, Status::Offline),
        (b, RequestedStatus::Online, Status::Online),
        (a, RequestedStatus::Busy, Status::Busy),
    ];
    for watcher in [&mut on_a, &mut on_b] {
        watcher.expect(&[ev("alice", Status::Online, 1)]).await;
    }
    // A second device changes nothing anyone sees.
    let mut phone = open(b, "alice", "phone", "acme").await;
    for (v, (node, wish, shown)) in (2..).zip(steps) {
        let now = node
            .set_status(&alice, wish, None)
            .await
            .unwrap_or_else(|e| panic!("{wish:?} on {}: {e}", node.node()));
        assert_eq!(
            (now.status, now.v),
            (shown, v),
            "{wish:?} on {}",
            node.node()
        );
        for watcher in [&mut on_a, &mut on_b] {
            watcher.expect(&[ev("alice", shown, v)]).await;
        }
    }
    let ended = b
        .logout_everywhere(&alice)
        .await
        .expect("logout everywhere on node B");
    assert_eq!(ended.len(), 2, "the laptop and the phone");
    assert_eq!(ended_in_time(&mut laptop).await, SessionEnd::LoggedOut);
    assert_eq!(ended_in_time(&mut phone).await, SessionEnd::LoggedOut);
    for watcher in [&mut on_a, &mut on_b] {
        watcher.expect(&[ev("alice", Status::Offline, 8)]).await;
        watcher.quiet().await;
    }

    // The burst. (A manual status outlives a logout: alice comes back
    // BUSY, as she left.)
    let _tab = open(a, "alice", "laptop-2", "acme").await;
    let back = c.status_on(a, "alice").await;
    assert_eq!(back.1, 9, "coming back is one change");
    let mut made: BTreeMap<u64, Status> = BTreeMap::from([(back.1, back.0)]);
    let wishes = [
        RequestedStatus::Online,
        RequestedStatus::Busy,
        RequestedStatus::Away,
        RequestedStatus::Online,
        RequestedStatus::Invisible,
        RequestedStatus::Online,
        RequestedStatus::Busy,
        RequestedStatus::Online,
    ];
    for (i, wish) in wishes.into_iter().enumerate() {
        let node = if i % 2 == 0 { b } else { a };
        let now = node
            .set_status(&alice, wish, None)
            .await
            .unwrap_or_else(|e| panic!("{wish:?} on {}: {e}", node.node()));
        assert_eq!(
            now.v,
            10 + i as u64,
            "{wish:?} on {} is a change",
            node.node()
        );
        made.insert(now.v, now.status);
    }
    b.logout_everywhere(&alice)
        .await
        .expect("logout everywhere on node B");
    let last = c.status_on(a, "alice").await;
    assert_eq!(last, (Status::Offline, 18), "the logout is one change");
    made.insert(last.1, last.0);
    for watcher in [&mut on_a, &mut on_b] {
        let mut got: Vec<Seen> = Vec::new();
        while got.last().map(|e| e.2) != Some(last.1) {
            let event = watcher.next().await;
            let e = seen(&event);
            assert!(
                got.last().is_none_or(|before| e.2 > before.2),
                "{}: out of order or repeated: {got:?} then {e:?}",
                watcher.label
            );
            assert_eq!(
                made.get(&e.2),
                Some(&e.1),
                "{}: version {} was made with another status ({got:?})",
                watcher.label,
                e.2
            );
            got.push(e);
        }
        watcher.quiet().await;
    }
}

/// A node shut down gracefully (SIGTERM) hands its users over without a
/// flicker: its sockets are told `ShutDown` (and close with 1001); a user
/// who reconnects to node B inside the linger shows no change at all; a
/// user who does not goes OFFLINE after the linger, published by node B
/// since node A's sweeper has stopped.
pub async fn a_node_shut_down_gracefully_hands_its_users_over_without_a_flicker(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let mut on_b = c.watch(c.b(), "acme").await;
    let mut alice_on_a = open(c.a(), "alice", "alice-laptop", "acme").await;
    let mut bob_on_a = open(c.a(), "bob", "bob-laptop", "acme").await;
    on_b.expect_unordered(&[ev("alice", Status::Online, 1), ev("bob", Status::Online, 1)])
        .await;

    c.advance_to(1);
    c.a().shutdown().await;
    assert_eq!(ended_in_time(&mut alice_on_a).await, SessionEnd::ShutDown);
    assert_eq!(ended_in_time(&mut bob_on_a).await, SessionEnd::ShutDown);
    c.advance_to(3);
    let alice_on_b = open(c.b(), "alice", "alice-laptop", "acme").await;
    c.advance_to(1 + linger - 1);
    c.b().run_due().await.expect("sweep on node B");
    on_b.quiet().await;
    assert_eq!(c.status_on(c.b(), "bob").await, (Status::Online, 1));

    c.advance_to(1 + linger);
    c.b().run_due().await.expect("sweep on node B");
    on_b.expect(&[ev("bob", Status::Offline, 2)]).await;
    c.advance_to(10);
    alice_on_b.heartbeat().expect("alice's new socket is live");
    c.b().run_due().await.expect("sweep on node B");
    on_b.quiet().await;
    assert_eq!(
        c.status_on(c.b(), "alice").await,
        (Status::Online, 1),
        "no flicker for a user who reconnected inside the linger"
    );
}

/// An HTTP request of a login that raced its logout on node B, and reached
/// node A just after, does not bring the login back: the user stays
/// OFFLINE, as when both happen on one node.
pub async fn an_http_request_that_raced_a_logout_on_the_other_node_does_not_bring_the_login_back(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let mut on_a = c.watch(c.a(), "acme").await;
    let mut on_b = c.watch(c.b(), "acme").await;
    let (alice, cookie) = (UserId::from("alice"), "cookie-1".into());
    let scopes = [ScopeId::from("acme")];
    let marked = c
        .a()
        .mark_http_activity(&alice, &cookie, &scopes)
        .await
        .expect("mark HTTP activity on node A");
    assert!(marked, "the first request of a login reaches the store");
    for watcher in [&mut on_a, &mut on_b] {
        watcher.expect(&[ev("alice", Status::Online, 1)]).await;
    }

    // Ten seconds later she logs out through node B, while a request of
    // hers, authenticated just before, is still on its way through node A.
    c.advance_to(10);
    c.b()
        .logout(&alice, &cookie)
        .await
        .expect("logout on node B");
    for watcher in [&mut on_a, &mut on_b] {
        watcher.expect(&[ev("alice", Status::Offline, 2)]).await;
    }
    let marked = c
        .a()
        .mark_http_activity(&alice, &cookie, &scopes)
        .await
        .expect("the late request's mark on node A");
    for node in [c.a(), c.b()] {
        assert_eq!(
            c.status_on(node, "alice").await,
            (Status::Offline, 2),
            "a request that raced the logout on node B brought the login back on node A"
        );
    }
    assert!(!marked, "a logged-out login is not marked");
    for watcher in [&mut on_a, &mut on_b] {
        watcher.quiet().await;
    }
}

/// A client that reconnects to node B and resumes its session (the same
/// session id) keeps it when node A at last drops its old, dead socket:
/// the user stays ONLINE and the session on node B stays live, as when
/// both happen on one node (the old handle is `Replaced`).
pub async fn a_session_resumed_on_the_other_node_is_not_closed_by_its_old_handle(
    store: Arc<dyn PresenceStore>,
) {
    let c = Cluster::start(store).await;
    let linger = test_config().linger.as_secs();
    let mut on_b = c.watch(c.b(), "acme").await;
    let spec = SessionSpec::new("alice", "laptop")
        .scope("acme")
        .id("alice-tab-1");
    let old_socket = c.a().open_session(spec.clone()).await.expect("open on A");
    on_b.expect(&[ev("alice", Status::Online, 1)]).await;

    c.advance_to(2);
    let resumed = c.b().open_session(spec).await.expect("resume on B");
    // Node A notices its half-open socket is gone only now, and its
    // socket task ends (closing the handle; dropping it does the same, in
    // a task of its own).
    old_socket.close().await.expect("close the old handle on A");
    c.advance_to(2 + linger + 1);
    c.run_due_on_both().await;
    assert_eq!(
        c.status_on(c.b(), "alice").await,
        (Status::Online, 1),
        "node A's old handle closed the session the client resumed on node B"
    );
    on_b.quiet().await;
    resumed
        .heartbeat()
        .expect("the resumed session on node B is live");
    assert_eq!(resumed.has_ended(), None);
}

/// Fifty snapshots of one scope on node A, taken at once, read the scope
/// from the store once between them (node A keeps its view of the scope it
/// watches); changes made on node B then keep that view current, so a later
/// snapshot on node A reads nothing and agrees with node B's read of the
/// store.
pub async fn the_watchers_of_a_scope_on_one_node_read_it_from_the_store_once(
    store: Arc<dyn PresenceStore>,
) {
    let counted = CountingReads::new(store);
    let c = Cluster::start(counted.clone()).await;
    let linger = test_config().linger.as_secs();
    let mut on_a = c.watch(c.a(), "hall").await;
    let mut sessions = Vec::new();
    for user in ["alice", "bob", "carol"] {
        sessions.push(open(c.b(), user, &format!("{user}-laptop"), "hall").await);
    }
    on_a.expect_unordered(&[
        ev("alice", Status::Online, 1),
        ev("bob", Status::Online, 1),
        ev("carol", Status::Online, 1),
    ])
    .await;
    let before = counted.scope_reads();
    let snapshots: Vec<_> = (0..50)
        .map(|_| {
            let a = c.a().clone();
            tokio::spawn(async move { a.snapshot(&ScopeId::from("hall")).await })
        })
        .collect();
    let everyone = vec![
        ("alice".to_owned(), Status::Online, 1),
        ("bob".to_owned(), Status::Online, 1),
        ("carol".to_owned(), Status::Online, 1),
    ];
    for snapshot in snapshots {
        let snapshot = snapshot.await.expect("ran").expect("snapshot");
        let mut seen: Vec<Seen> = snapshot
            .users
            .iter()
            .filter(|user| !is_probe(&user.user_id))
            .map(|user| (user.user_id.to_string(), user.status, user.v))
            .collect();
        seen.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
        assert_eq!(seen, everyone);
    }
    assert_eq!(
        counted.scope_reads(),
        before + 1,
        "fifty snapshots of one watched scope read the store once"
    );

    c.b()
        .set_status(&UserId::from("bob"), RequestedStatus::Busy, None)
        .await
        .expect("bob is busy");
    on_a.expect(&[ev("bob", Status::Busy, 2)]).await;
    let _dave = open(c.b(), "dave", "dave-laptop", "hall").await;
    on_a.expect(&[ev("dave", Status::Online, 1)]).await;
    let carol = sessions.pop().expect("carol's session");
    carol.close().await.expect("carol closes");
    c.advance_to(linger + 1);
    c.run_due_on_both().await;
    on_a.expect(&[ev("carol", Status::Offline, 2)]).await;

    let reads = counted.scope_reads();
    let now = vec![
        ("alice".to_owned(), Status::Online, 1),
        ("bob".to_owned(), Status::Busy, 2),
        ("dave".to_owned(), Status::Online, 1),
    ];
    assert_eq!(c.members_on(c.a(), "hall").await, now);
    assert_eq!(
        counted.scope_reads(),
        reads,
        "node A answered from its view"
    );
    // Node B watches nothing there: it reads the store, and agrees.
    assert_eq!(c.members_on(c.b(), "hall").await, now);
}
