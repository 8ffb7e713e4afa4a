//! The sharded store on a real Redis Cluster of three masters that this
//! test binary starts (feature `cluster`): the conformance and cluster
//! suites, where a user's keys land, and an epoch that covers every shard.
//! Every test writes under a random prefix; the servers die with the test
//! process.

#![cfg(feature = "cluster")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::Server;
use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};

/// The three masters, started once for every test of this binary.
fn masters() -> &'static [Server] {
    static CLUSTER: OnceLock<Vec<Server>> = OnceLock::new();
    CLUSTER.get_or_init(|| common::cluster(3, 0))
}

fn seeds() -> Vec<String> {
    masters().iter().map(Server::url).collect()
}

fn prefix() -> String {
    format!("presence-test-{}", uuid::Uuid::new_v4().simple())
}

async fn connect(prefix: &str) -> RedisStore {
    let config = RedisConfig::cluster(seeds())
        .prefix(prefix)
        .flush_interval(Duration::from_millis(50));
    RedisStore::connect(config)
        .await
        .expect("the cluster accepts connections")
}

async fn fresh_store() -> Arc<dyn PresenceStore> {
    Arc::new(connect(&prefix()).await)
}

presence_store_tests::conformance_tests!(fresh_store);
presence_store_tests::cluster_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_cluster_see_each_other() {
    use presence_core::{ManualClock, NodeId, Presence, SessionSpec, Status};
    use presence_store_tests::helpers::{ev, expect_lagged, next_seen};
    let prefix = prefix();
    let clock = Arc::new(ManualClock::default());
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        nodes.push(
            Presence::builder()
                .store(connect(&prefix).await)
                .clock(clock.clone())
                .node(NodeId::new(name))
                .build()
                .await
                .expect("presence"),
        );
    }
    let (mut events, _) = nodes[1].watch(&"acme".into()).await.expect("watch");
    // The feed listens once its subscription takes effect.
    expect_lagged(&mut events).await;
    let _tab = nodes[0]
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    assert_eq!(
        next_seen(&mut events).await,
        ev("alice", Status::Online, 1),
        "alice ONLINE from node A"
    );
}

/// The user a record or heartbeat key belongs to: `{tag}:{USER}:rec`.
fn user_of(key: &str) -> Option<&str> {
    let rest = key.split_once("}:{")?.1;
    rest.strip_suffix("}:rec")
        .or_else(|| rest.strip_suffix("}:hb"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_keys_share_one_slot_and_users_spread_over_every_master() {
    use presence_core::{NodeId, Presence, SessionSpec};
    let prefix = prefix();
    let presence = Presence::builder()
        .store(connect(&prefix).await)
        .node(NodeId::new("node-a"))
        .build()
        .await
        .expect("presence");
    let users: Vec<String> = (0..48).map(|n| format!("user-{n}")).collect();
    let mut sessions = Vec::new();
    for user in &users {
        sessions.push(
            presence
                .open_session(SessionSpec::new(user.as_str(), "l").scope("acme"))
                .await
                .expect("open"),
        );
    }

    let masters = masters();
    // user → the masters and slots of its keys
    let mut homes: BTreeMap<String, BTreeSet<(u16, String)>> = BTreeMap::new();
    let mut users_per_master = Vec::new();
    let mut scope_members = 0;
    let mut shard_slots = BTreeSet::new();
    for master in masters.iter() {
        let keys = master.keys_containing(&prefix);
        let mut here = BTreeSet::new();
        for key in &keys {
            let slot = master.cli(&["cluster", "keyslot", key]).trim().to_owned();
            if let Some(user) = user_of(key) {
                homes
                    .entry(user.to_owned())
                    .or_default()
                    .insert((master.port, slot));
                here.insert(user.to_owned());
            } else if key.ends_with(":scope:acme") {
                scope_members += master
                    .cli(&["scard", key])
                    .trim()
                    .parse::<usize>()
                    .expect("SCARD");
                shard_slots.insert(slot);
            }
        }
        users_per_master.push(here.len());
    }
    assert_eq!(
        homes.keys().cloned().collect::<Vec<_>>(),
        users
            .iter()
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>(),
        "every user has keys"
    );
    for (user, home) in &homes {
        assert_eq!(
            home.len(),
            1,
            "{user}'s record and heartbeats in one slot: {home:?}"
        );
    }
    assert!(
        users_per_master.iter().all(|&n| n > 0),
        "users spread over all three masters: {users_per_master:?}"
    );
    // Each shard holds its share of the scope's members, each in a slot of
    // its own, and together they are the whole scope.
    assert_eq!(scope_members, users.len());
    assert!(
        shard_slots.len() > 3,
        "the scope spans shards: {shard_slots:?}"
    );
    let snapshot = presence.snapshot(&"acme".into()).await.expect("snapshot");
    assert_eq!(snapshot.users.len(), users.len());
    presence.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_shards_data_is_a_new_epoch() {
    let prefix = prefix();
    let store = connect(&prefix).await;
    let before = store.reload_epoch().await.expect("epoch");
    assert_eq!(store.reload_epoch().await.expect("epoch"), before, "stable");
    // One shard's token gone, as when its master restarts without its
    // data; the global token (another slot, perhaps another master) stays.
    let masters = masters();
    let global = format!("{{{prefix}}}:epoch");
    let (master, token) = masters
        .iter()
        .find_map(|master| {
            master
                .keys_containing(&prefix)
                .into_iter()
                .find(|key| key.ends_with(":epoch") && *key != global)
                .map(|key| (master, key))
        })
        .expect("a shard's epoch token");
    assert_eq!(master.cli(&["del", &token]).trim(), "1");
    let after = store.reload_epoch().await.expect("epoch");
    assert_ne!(
        after, before,
        "a shard that lost its data changes the epoch"
    );
    assert_eq!(store.reload_epoch().await.expect("epoch"), after);
}
