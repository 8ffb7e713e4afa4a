//! The churn soak (issue 8) on the memory store, short enough for CI: a
//! thousand sessions, 300 opens+closes per second, for four seconds, then
//! every user's final status, every recorded event and the scope snapshots
//! are checked against an independent model.

use std::sync::Arc;
use std::time::Duration;

use presence_core::MemoryStore;
use presence_core::store::PresenceStore;
use presence_store_tests::soak::{self, SoakConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_on_the_memory_store_leaves_no_ghost_and_loses_no_event() {
    let store: Arc<dyn PresenceStore> = Arc::new(MemoryStore::new());
    let config = SoakConfig::new(1_000, 300, Duration::from_secs(4));
    let report = soak::run(store, &config).await.expect("the soak runs");
    println!("{report}");
    report.assert_ci_run();
}
