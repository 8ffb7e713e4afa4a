//! The churn soak (issue 8) on a real Redis (127.0.0.1:6379, or
//! `PRESENCE_TEST_REDIS_URL`), short enough for CI: a thousand sessions,
//! 300 opens+closes per second, for four seconds, under a random key
//! prefix that is deleted afterwards.

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};
use presence_store_tests::redis_keys::delete_keys;
use presence_store_tests::soak::{self, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_redis_leaves_no_ghost_and_loses_no_event() {
    let url = std::env::var("PRESENCE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("presence-soak-{}", uuid::Uuid::new_v4().simple());
    let store = RedisStore::connect(RedisConfig::new(url.clone()).prefix(prefix.clone()))
        .await
        .unwrap_or_else(|e| panic!("Redis must be running at {url} for these tests: {e}"));
    let store: Arc<dyn PresenceStore> = Arc::new(store);
    let config = SoakConfig::new(1_000, 300, Duration::from_secs(4));
    let result = soak::run(store, &config).await;
    // The store's background flusher may be finishing a last round (it
    // re-claims the epoch key): let it end before deleting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    delete_keys(&url, &prefix)
        .await
        .expect("the soak's keys are deleted");
    let report = result.expect("the soak runs");
    println!("{report}");
    report.assert_ci_run();
}
