//! The shared cluster suite (two nodes on one store) on a real PostgreSQL,
//! each scenario in a fresh schema of its own, dropped when the scenario's
//! store is.

#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use presence_core::store::PresenceStore;
use presence_sqlx::{PgConfig, PgStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let (url, schema) = (common::postgres_url(), common::fresh_schema());
    let store = PgStore::connect(
        PgConfig::new(url.clone())
            .schema(schema.clone())
            .flush_interval(Duration::from_millis(50)),
    )
    .await
    .unwrap_or_else(|e| panic!("PostgreSQL must be running at {url} for these tests: {e}"));
    Arc::new(common::CleanedUp::new(Arc::new(store), move || {
        common::drop_schema(url, schema)
    }))
}

presence_store_tests::cluster_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_tells_the_changes_its_killed_run_left_unread() {
    presence_store_tests::durable::a_restarted_node_tells_the_changes_its_killed_run_left_unread(
        fresh_store().await,
    )
    .await;
}
