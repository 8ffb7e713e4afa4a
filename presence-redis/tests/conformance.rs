//! The shared conformance suite on a real Redis (127.0.0.1:6379, or
//! `PRESENCE_TEST_REDIS_URL`), each test under its own random key prefix.

use std::sync::Arc;

use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let url = std::env::var("PRESENCE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(RedisConfig::new(url.clone()).prefix(prefix))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running at {url} for these tests: {e}"));
    Arc::new(store)
}

presence_store_tests::conformance_tests!(fresh_store);
