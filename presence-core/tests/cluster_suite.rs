//! Two services sharing one memory store run the shared cluster suite.

use std::sync::Arc;

use presence_core::MemoryStore;
use presence_core::store::PresenceStore;

presence_store_tests::cluster_tests!(|| async {
    Arc::new(MemoryStore::new()) as Arc<dyn PresenceStore>
});
