//! Nodes whose clocks differ, and a wall clock stepped under a running
//! node: the regression tests of issue 15's defect 5. Each node keeps to
//! the store's clock (see presence time on `presence_core::Clock`), so ±5 s of skew causes
//! no flicker, no early lapse and no ghost, and a step of the wall clock
//! closes nothing.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use presence_core::store::PresenceStore;
use presence_core::{
    Clock, ManualClock, MemoryStore, NodeId, Presence, PresenceConfig, SessionEnd, SessionSpec,
    Status, Subscription,
};
use presence_store_tests::helpers::{drain, test_config};

/// True time (the store's clock) and two machines 5 s ahead and 5 s
/// behind it.
struct Cluster {
    truth: Arc<ManualClock>,
    machines: Vec<Arc<ManualClock>>,
    nodes: Vec<Presence>,
}

impl Cluster {
    async fn start() -> Self {
        let truth = Arc::new(ManualClock::default());
        let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::with_clock(truth.clone()));
        let mut machines = Vec::new();
        let mut nodes = Vec::new();
        for (name, skew) in [("node-a", 5), ("node-b", -5)] {
            let machine = Arc::new(ManualClock::new(truth.now() + TimeDelta::seconds(skew)));
            let node = Presence::builder()
                .shared_store(store.clone())
                .local_clock(machine.clone())
                .config(PresenceConfig {
                    // Bob's silent session lapses at 15 s, while the skew shows.
                    session_ttl: Duration::from_secs(15),
                    ..test_config()
                })
                .node(NodeId::new(name))
                .batch_interval(Duration::ZERO)
                .build()
                .await
                .expect("a node");
            machines.push(machine);
            nodes.push(node);
        }
        Self {
            truth,
            machines,
            nodes,
        }
    }

    /// One second passes everywhere; both nodes sweep.
    async fn tick(&self) {
        self.truth.advance(Duration::from_secs(1));
        for machine in &self.machines {
            machine.advance(Duration::from_secs(1));
        }
        for node in &self.nodes {
            node.run_due().await.expect("sweep");
        }
    }
}

/// Every change queued now, as (user, status).
fn statuses(events: &mut Subscription) -> Vec<(String, Status)> {
    drain(events)
        .into_iter()
        .map(|(user, status, _)| (user, status))
        .collect()
}

#[tokio::test]
async fn nodes_five_seconds_apart_agree_on_every_threshold() {
    let c = Cluster::start().await;
    let (a, b) = (&c.nodes[0], &c.nodes[1]);
    assert_eq!(
        a.clock().now(),
        b.clock().now(),
        "both keep to the store's clock"
    );
    let (mut events, _) = b.watch(&"acme".into()).await.expect("watch");
    // Alice's socket is held by the fast node, heartbeats every 10 s.
    let alice = a
        .open_session(SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    // Bob's by the slow node; his client dies silently at 0 s.
    let bob = b
        .open_session(SessionSpec::new("bob", "l").scope("acme"))
        .await
        .expect("open");
    assert_eq!(statuses(&mut events).len(), 2, "both ONLINE");
    for second in 1..=70 {
        c.tick().await;
        if second % 10 == 0 {
            alice
                .heartbeat()
                .expect("alice's session never lapses early");
        }
        let seen = statuses(&mut events);
        let expected: Vec<(String, Status)> = match second {
            // Bob's session lapses at 15 s, he lingers 5 s.
            20 => vec![("bob".into(), Status::Offline)],
            // Alice turns AWAY after exactly 60 s, not 55 s.
            60 => vec![("alice".into(), Status::Away)],
            _ => vec![],
        };
        assert_eq!(seen, expected, "at {second} s");
    }
    assert_eq!(alice.has_ended(), None);
    drop(bob);
}

#[tokio::test]
async fn a_wall_clock_stepped_a_minute_ahead_closes_no_socket() {
    let c = Cluster::start().await;
    let a = &c.nodes[0];
    let (mut events, _) = c.nodes[1].watch(&"acme".into()).await.expect("watch");
    let alice = a
        .open_session(SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    statuses(&mut events);
    c.tick().await;
    c.machines[0].step(TimeDelta::seconds(60));
    for second in 2..=40 {
        c.tick().await;
        if second % 10 == 0 {
            alice.heartbeat().expect("the step closed nothing");
        }
    }
    assert_eq!(alice.has_ended(), None::<SessionEnd>);
    assert_eq!(statuses(&mut events), vec![], "no flicker");
    assert_eq!(
        (a.clock().now() - c.truth.now()).num_seconds(),
        0,
        "presence time did not step"
    );
}
