//! The shared conformance suite on a real PostgreSQL
//! (`postgres://postgres@127.0.0.1:5432/test`, or
//! `PRESENCE_TEST_POSTGRES_URL`), each test in a fresh schema of its own,
//! dropped when the test's store is. Fails, rather than skips, when
//! PostgreSQL is unreachable.

#![cfg(feature = "postgres")]

mod common;

use std::sync::Arc;

use presence_core::store::PresenceStore;
use presence_sqlx::{PgConfig, PgStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let (url, schema) = (common::postgres_url(), common::fresh_schema());
    let store = PgStore::connect(PgConfig::new(url.clone()).schema(schema.clone()))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL must be running at {url} for these tests: {e}"));
    Arc::new(common::CleanedUp::new(Arc::new(store), move || {
        common::drop_schema(url, schema)
    }))
}

presence_store_tests::conformance_tests!(fresh_store);
