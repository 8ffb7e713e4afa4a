//! The shared conformance suite on SQLite, each test in a database file of
//! its own in the temporary directory, removed when the test's store is
//! dropped.

#![cfg(feature = "sqlite")]

mod common;

use std::sync::Arc;

use presence_core::store::PresenceStore;
use presence_sqlx::{SqliteConfig, SqliteStore};

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let path = common::fresh_sqlite_path();
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(SqliteConfig::new(url))
        .await
        .expect("a SQLite file in the temporary directory");
    Arc::new(common::CleanedUp::new(Arc::new(store), move || {
        common::remove_sqlite_files(&path)
    }))
}

presence_store_tests::conformance_tests!(fresh_store);
