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
