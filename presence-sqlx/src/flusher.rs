//! The background task that writes buffered heartbeats once per interval.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use presence_core::StoreError;

/// A store whose buffered heartbeats can be written.
pub(crate) trait Flush: Send + Sync + 'static {
    /// Writes every buffered heartbeat; returns how many.
    fn flush(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Flushes `store` every `interval` until the store is dropped.
pub(crate) fn spawn<S: Flush>(store: &Arc<S>, interval: Duration) {
    tokio::spawn(run(Arc::downgrade(store), interval));
}

async fn run<S: Flush>(store: Weak<S>, interval: Duration) {
    let interval = interval.max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let started = std::time::Instant::now();
        match store.flush().await {
            Ok(0) => {}
            Ok(_) => presence_core::metrics::heartbeat_flush(started.elapsed(), false),
            Err(error) => {
                presence_core::metrics::heartbeat_flush(started.elapsed(), true);
                // The sessions stay live locally and the heartbeats are kept
                // for the next try; stored sessions lapse only if the
                // database stays away past the TTL.
                tracing::warn!(%error, "writing presence heartbeats failed");
            }
        }
    }
}
