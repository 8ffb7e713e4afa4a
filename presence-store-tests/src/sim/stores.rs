//! The stores of a run's processes, for a deployment on a real server:
//! each process has its own, which must go when its process dies (a dead
//! process's store would keep flushing its heartbeats).

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use presence_core::Epoch;
use presence_core::store::PresenceStore;

/// Weak handles to every process's store.
#[derive(Default)]
pub struct ProcessStores {
    stores: Mutex<Vec<Weak<dyn PresenceStore>>>,
}

impl ProcessStores {
    /// Keeps (weakly) a new process's store, and hands it back.
    pub fn register(&self, store: Arc<dyn PresenceStore>) -> Arc<dyn PresenceStore> {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&store));
        store
    }

    /// The stores whose process lives.
    pub fn live(&self) -> Vec<Arc<dyn PresenceStore>> {
        let mut stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        stores.retain(|store| store.strong_count() > 0);
        stores.iter().filter_map(Weak::upgrade).collect()
    }

    /// The epoch the stores know now.
    pub fn epoch(&self) -> Option<Epoch> {
        self.live().first().map(|store| store.epoch())
    }

    /// Writes every live store's buffered heartbeats.
    pub async fn flush(&self) {
        for store in self.live() {
            let _ = store.flush_heartbeats().await;
        }
    }

    /// After the server lost its data: waits until every live store answers
    /// again, then gives the processes' feeds up to 3 s to come back and
    /// find `lost` gone (a store whose process is gone has no feed
    /// listening: it is not waited for), then lets the resyncs land.
    pub async fn recovered(&self, lost: Option<Epoch>) {
        let started = Instant::now();
        let stores = self.live();
        for store in &stores {
            while store.time().await.is_err() {
                assert!(
                    started.elapsed() < Duration::from_secs(10),
                    "the server never answered again"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if let Some(lost) = lost {
            let waited = Instant::now();
            while stores.iter().any(|store| store.epoch() == lost)
                && waited.elapsed() < Duration::from_secs(3)
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
