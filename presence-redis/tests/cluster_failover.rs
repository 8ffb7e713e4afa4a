//! Redis Clusters that lose a master, started by each test (feature
//! `cluster`): the feed follows the topology when its node dies (issue
//! 15's defect 7); a sharded store stays consistent through a master's
//! failover to its replica, then passes the cluster suite; and a master
//! restarted without its data is a new epoch, after which the nodes
//! register their sessions again.

#![cfg(feature = "cluster")]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Server;
use presence_core::store::PresenceStore;
use presence_core::{Delivery, ManualClock, NodeId, Presence, SessionSpec, Status, Subscription};
use presence_redis::{RedisConfig, RedisStore};
use presence_store_tests::cluster::Cluster;
use presence_store_tests::helpers::{Seen, eventually};

/// Longest a test waits for the cluster to settle after a fault.
const SETTLE: Duration = Duration::from_secs(15);

fn prefix() -> String {
    format!("presence-test-{}", uuid::Uuid::new_v4().simple())
}

fn urls(servers: &[Server]) -> Vec<String> {
    servers.iter().map(Server::url).collect()
}

async fn connect(seeds: &[String], prefix: &str) -> RedisStore {
    RedisStore::connect(
        RedisConfig::cluster(seeds.iter().cloned())
            .prefix(prefix)
            .flush_interval(Duration::from_millis(50)),
    )
    .await
    .expect("the cluster accepts connections")
}

async fn node(seeds: &[String], prefix: &str, name: &str, clock: &Arc<ManualClock>) -> Presence {
    Presence::builder()
        .store(connect(seeds, prefix).await)
        .clock(clock.clone())
        .node(NodeId::new(name))
        .store_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("presence")
}

/// Waits until `watcher` (on `node`) knows `user` is ONLINE: from an event,
/// or from the snapshot it takes when told to resnapshot.
async fn learns_online(node: &Presence, watcher: &mut Subscription, user: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, watcher.recv()).await {
            Ok(Some(Delivery::Event(e))) if e.user_id.as_str() == user => {
                assert_eq!(e.status, Status::Online);
                return;
            }
            Ok(Some(Delivery::Lagged)) => {
                if let Ok(snapshot) = node.snapshot(&"acme".into()).await
                    && snapshot.user(&user.into()).is_some()
                {
                    return;
                }
            }
            Ok(Some(_)) => {}
            other => panic!(
                "{} never learned that {user} is ONLINE: {other:?}",
                node.node()
            ),
        }
    }
}

/// Waits until `node`'s snapshot of `acme` is `expected` (sorted by user).
async fn members_become(cluster: &Cluster, node: &Presence, expected: &[Seen]) {
    let started = Instant::now();
    loop {
        let members = cluster.members_on(node, "acme").await;
        if members == expected {
            return;
        }
        if started.elapsed() > SETTLE {
            let users: Vec<presence_core::UserId> = members
                .iter()
                .map(|(user, _, _)| user.as_str().into())
                .collect();
            let stored: Vec<(String, Status, u64)> = cluster
                .store
                .load_many(&users)
                .await
                .expect("load")
                .into_iter()
                .map(|view| {
                    (
                        view.presence.user_id.to_string(),
                        view.presence.status,
                        view.presence.v,
                    )
                })
                .collect();
            let due = cluster.store.due(cluster.at(1000), 100).await;
            let next = cluster.store.next_deadline().await;
            panic!(
                "{} lists {members:?}, expected {expected:?}; the store has {stored:?}, due {due:?}, next {next:?}",
                node.node()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn online(users: &[String]) -> Vec<Seen> {
    let mut seen: Vec<Seen> = users
        .iter()
        .map(|user| (user.clone(), Status::Online, 1))
        .collect();
    seen.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
    seen
}

/// Two nodes on one sharded store, with `count` users opened on node A in
/// `acme` and seen by node B.
async fn two_nodes_with_users(
    seeds: &[String],
    prefix: &str,
    count: usize,
) -> (
    Arc<dyn PresenceStore>,
    Cluster,
    Vec<String>,
    Vec<presence_core::SessionHandle>,
) {
    let store: Arc<dyn PresenceStore> = Arc::new(connect(seeds, prefix).await);
    let cluster = Cluster::start(store.clone()).await;
    let users: Vec<String> = (0..count).map(|n| format!("user-{n}")).collect();
    let mut handles = Vec::new();
    for user in &users {
        handles.push(
            cluster
                .a()
                .open_session(SessionSpec::new(user.as_str(), "l").scope("acme"))
                .await
                .expect("open"),
        );
    }
    members_become(&cluster, cluster.b(), &online(&users)).await;
    (store, cluster, users, handles)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_the_cluster_when_its_first_seed_dies() {
    let mut servers = common::cluster(3, 1);
    let seeds: Vec<String> = urls(&servers[..3]);
    let prefix = prefix();
    let clock = Arc::new(ManualClock::default());
    let a = node(&seeds, &prefix, "node-a", &clock).await;
    let b = node(&seeds, &prefix, "node-b", &clock).await;
    let (mut watcher, _) = b.watch(&"acme".into()).await.expect("watch");
    let _alice = a
        .open_session(SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    learns_online(&b, &mut watcher, "alice", Duration::from_secs(10)).await;

    // The first seed, a master, dies; its replica takes over.
    let first = servers.remove(0);
    let port = first.port;
    drop(first);
    assert!(
        !common::cli(port, &["ping"]).contains("PONG"),
        "the first seed is dead"
    );
    common::wait_until_failed_over(&servers, port);
    let started = Instant::now();
    let _bob = loop {
        match a
            .open_session(SessionSpec::new("bob", "l").scope("acme"))
            .await
        {
            Ok(handle) => break handle,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the cluster never took changes again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    learns_online(&b, &mut watcher, "bob", Duration::from_secs(20)).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_failing_over_keeps_presence_consistent_and_is_a_new_epoch() {
    let mut servers = common::cluster(3, 1);
    let seeds = urls(&servers[..3]);
    let (store, cluster, users, mut handles) = two_nodes_with_users(&seeds, &prefix(), 24).await;
    let mut told = cluster.b().subscribe();
    told.watch_scope("acme".into());
    common::wait_until_replicated(&servers);
    let before = store.epoch();

    // A master the feed does not listen on (it listens on the first seed)
    // dies; its replica takes over. Only the epoch check can tell.
    let victim = servers.remove(1);
    let port = victim.port;
    drop(victim);
    common::wait_until_failed_over(&servers, port);
    eventually("a new epoch", SETTLE, || store.epoch() != before).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        match tokio::time::timeout_at(deadline, told.recv()).await {
            Ok(Some(Delivery::Lagged)) => break,
            Ok(Some(_)) => {}
            other => panic!("watchers were never told to resnapshot: {other:?}"),
        }
    }

    // After the new epoch, node A registers its live sessions again, one
    // by one, while the closes below may already run: a session being
    // closed is not registered again.
    // Every session opened before is still there, as it was.
    members_become(&cluster, cluster.b(), &online(&users)).await;
    members_become(&cluster, cluster.a(), &online(&users)).await;

    // Changes go on: a third of the users close, new ones come.
    for handle in handles.drain(..8) {
        handle.close().await.expect("close after the failover");
    }
    let newcomers: Vec<String> = (0..8).map(|n| format!("new-{n}")).collect();
    for user in &newcomers {
        handles.push(
            cluster
                .a()
                .open_session(SessionSpec::new(user.as_str(), "l").scope("acme"))
                .await
                .expect("open after the failover"),
        );
    }
    cluster.advance_to(6);
    cluster.run_due_on_both().await;
    let staying: Vec<String> = users[8..].iter().chain(&newcomers).cloned().collect();
    members_become(&cluster, cluster.b(), &online(&staying)).await;
    for user in &users[..8] {
        assert_eq!(
            cluster.status_on(cluster.b(), user).await,
            (Status::Offline, 2)
        );
    }
    // The watcher that held on through the failover hears each of these
    // changes once (a Lagged would have been a second epoch change).
    let mut expected: Vec<Seen> = newcomers
        .iter()
        .map(|user| (user.clone(), Status::Online, 1))
        .chain(
            users[..8]
                .iter()
                .map(|user| (user.clone(), Status::Offline, 2)),
        )
        .collect();
    expected.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
    let mut heard: Vec<Seen> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while heard.len() < expected.len() {
        match tokio::time::timeout_at(deadline, told.recv()).await {
            Ok(Some(delivery)) if delivery.events().is_empty() => {
                panic!("told to resnapshot again: {delivery:?}")
            }
            Ok(Some(delivery)) => heard.extend(
                delivery
                    .events()
                    .iter()
                    .map(|e| (e.user_id.to_string(), e.status, e.v)),
            ),
            other => panic!("heard {heard:?}, then {other:?}"),
        }
    }
    heard.sort_by(|x, y| (&x.0, x.2).cmp(&(&y.0, y.2)));
    assert_eq!(heard, expected);
    // A watcher from now on hears each change once.
    let mut watcher = cluster.watch(cluster.b(), "acme").await;
    let _late = cluster
        .a()
        .open_session(SessionSpec::new("late", "l").scope("acme"))
        .await
        .expect("open");
    watcher.expect(&[("late", Status::Online, 1)]).await;
    watcher.quiet().await;
    drop(handles);

    // The cluster suite on the failed-over cluster.
    let seeds = urls(&servers);
    presence_store_tests::cluster_tests!(
        in_sequence || async { Arc::new(connect(&seeds, &prefix()).await) }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_restarted_empty_is_a_new_epoch_and_sessions_are_registered_again() {
    let mut servers = common::cluster(3, 0);
    let seeds = urls(&servers);
    let prefix = prefix();
    let (store, cluster, users, _handles) = two_nodes_with_users(&seeds, &prefix, 24).await;
    let before = store.epoch();

    // A master that holds users but neither the global epoch token nor the
    // feed's connection (the first seed) loses everything.
    let global = format!("{{{prefix}}}:epoch");
    let records = |server: &Server| {
        server
            .keys_containing(&prefix)
            .iter()
            .filter(|key| key.ends_with(":rec"))
            .count()
    };
    let index = (1..3)
        .find(|&i| !servers[i].serves(&global))
        .expect("the global token lives on one master");
    assert!(records(&servers[index]) > 0, "the victim holds users");
    let victim = servers.remove(index).restart_empty();
    assert_eq!(records(&victim), 0, "restarted without its data");
    servers.push(victim);
    common::wait_until_ok(&servers, Duration::from_secs(30));

    eventually("a new epoch", SETTLE, || store.epoch() != before).await;
    // Node A registered its live sessions again: every user is back.
    members_become(&cluster, cluster.b(), &online(&users)).await;
    let victim = servers.last().expect("the victim");
    eventually("the victim holds its users again", SETTLE, || {
        records(victim) > 0
    })
    .await;
}
