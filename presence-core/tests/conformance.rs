//! The memory store runs the shared conformance suite.

use std::sync::Arc;

use presence_core::MemoryStore;
use presence_core::store::PresenceStore;

presence_store_tests::conformance_tests!(|| async {
    Arc::new(MemoryStore::new()) as Arc<dyn PresenceStore>
});
