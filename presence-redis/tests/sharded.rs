//! The conformance suite on a single Redis with the users split into four
//! shards (`RedisConfig::shards`): the reads across shards and their
//! merges, without a cluster (127.0.0.1:6379, or `PRESENCE_TEST_REDIS_URL`).

use std::sync::Arc;

use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let url = std::env::var("PRESENCE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let config = RedisConfig::new(url.clone()).prefix(prefix).shards(4);
    let store = RedisStore::connect(config)
        .await
        .unwrap_or_else(|e| panic!("Redis must be running at {url} for these tests: {e}"));
    Arc::new(store)
}

presence_store_tests::conformance_tests!(fresh_store);

#[tokio::test]
async fn a_shard_count_out_of_range_is_refused() {
    for shards in [0, 1025] {
        let config = RedisConfig::new("redis://127.0.0.1:6379").shards(shards);
        let refused = RedisStore::connect(config).await;
        assert!(refused.is_err(), "{shards} shards accepted");
    }
}

/// A node's kept changes past a page of another process's (which the
/// reader leaves out) are still found, across the shards' streams, and a
/// malformed id is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_changes_past_a_page_of_those_left_out_are_read() {
    use presence_core::store::{ChangeId, StoreError, UserOp};
    use presence_core::{ManualChoice, ManualStatus, NodeId};
    use presence_store_tests::Harness;
    let store = fresh_store().await;
    let h = Harness::new(store.clone());
    let first = h.node.clone();
    let second = NodeId {
        name: first.name.clone(),
        incarnation: 2,
    };
    let toggle = |busy: bool| {
        UserOp::SetManual(busy.then_some(ManualChoice {
            status: ManualStatus::Busy,
            until: None,
        }))
    };
    h.apply_kept(&first, "alice", h.open_op("s1", "l1", &["acme"]), 0.0)
        .await;
    h.apply_kept(&first, "bob", h.open_op("s2", "l2", &["acme"]), 0.0)
        .await;
    for n in 1..250 {
        h.apply_kept(&first, "alice", toggle(n % 2 == 1), f64::from(n) / 100.0)
            .await;
    }
    for n in 250..253 {
        h.apply_kept(&second, "alice", toggle(n % 2 == 1), f64::from(n) / 100.0)
            .await;
    }
    h.apply_kept(&second, "bob", toggle(true), 2.53).await;

    let all = store
        .kept_changes(&first.name, &[], 1000)
        .await
        .expect("read");
    assert_eq!(all.len(), 255, "alice's 253 and bob's 2");
    let alice: Vec<u64> = all
        .iter()
        .filter(|k| k.change.user.as_str() == "alice")
        .map(|k| k.change.version)
        .collect();
    assert_eq!(alice, (1..=253).collect::<Vec<_>>(), "in the order made");

    let second_only = store
        .kept_changes(&first.name, &[1], 3)
        .await
        .expect("read");
    let read: Vec<(&str, u64, u64)> = second_only
        .iter()
        .map(|k| (k.change.user.as_str(), k.change.version, k.incarnation))
        .collect();
    assert_eq!(read.len(), 3, "a full page, past the first process's");
    assert!(read.iter().all(|r| r.2 == 2), "{read:?}");
    let alice: Vec<u64> = read
        .iter()
        .filter(|r| r.0 == "alice")
        .map(|r| r.1)
        .collect();
    assert!(alice.windows(2).all(|w| w[0] < w[1]), "{read:?}");

    let ids: Vec<ChangeId> = all.iter().filter_map(|k| k.change.id.clone()).collect();
    store
        .forget_changes(&first.name, &ids)
        .await
        .expect("forget");
    assert!(
        store
            .kept_changes(&first.name, &[], 1000)
            .await
            .expect("read")
            .is_empty()
    );
    for malformed in ["", "nope", "9-1-0", "0-1", "0-x-0"] {
        let refused = store
            .forget_changes(&first.name, &[ChangeId::new(malformed)])
            .await;
        assert!(
            matches!(refused, Err(StoreError::Backend(_))),
            "{malformed:?}: {refused:?}"
        );
    }
}
