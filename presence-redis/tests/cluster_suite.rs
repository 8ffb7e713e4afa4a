//! The shared two-node suite on a real Redis, each test under its own
//! random key prefix (one `RedisStore` shared by both nodes of a test).

use std::sync::Arc;

use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let url = std::env::var("PRESENCE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let config = RedisConfig::new(url.clone())
        .prefix(prefix)
        .flush_interval(std::time::Duration::from_millis(50));
    Arc::new(
        RedisStore::connect(config)
            .await
            .unwrap_or_else(|e| panic!("Redis must be running at {url} for these tests: {e}")),
    )
}

presence_store_tests::cluster_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_tells_the_changes_its_killed_run_left_unread() {
    presence_store_tests::durable::a_restarted_node_tells_the_changes_its_killed_run_left_unread(
        fresh_store().await,
    )
    .await;
}
