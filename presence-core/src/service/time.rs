//! Presence time for one service: the host's clock as given, or the
//! store's clock carried by this machine's monotonic clock and read again
//! every so often (see [presence time](crate::Clock#presence-time)).

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::clock::{Clock, SyncedClock};
use crate::error::Error;
use crate::service::Inner;
use crate::store::{PresenceStore, StoreError};

/// Where a service's time comes from.
pub(crate) enum Time {
    /// The host's clock, used as given.
    Given(Arc<dyn Clock>),
    /// The store's clock, read every `every`, carried by `local`.
    Synced {
        local: Arc<dyn Clock>,
        every: Duration,
    },
}

/// A service's clock, and what keeps it in step with the store, if
/// anything does.
pub(crate) struct Started {
    pub(crate) clock: Arc<dyn Clock>,
    sync: Option<(Arc<SyncedClock>, Duration)>,
}

impl Time {
    /// The clock to start with: for [`Time::Synced`], set to the store's
    /// time once (a store without a clock leaves it at the local wall
    /// time).
    pub(crate) async fn start(
        self,
        store: &Arc<dyn PresenceStore>,
        timeout: Duration,
    ) -> Result<Started, Error> {
        match self {
            Time::Given(clock) => Ok(Started { clock, sync: None }),
            Time::Synced { local, every } => {
                let synced = Arc::new(SyncedClock::new(local));
                let has_clock = read_store_time(&synced, store.as_ref(), timeout).await?;
                Ok(Started {
                    clock: synced.clone(),
                    sync: has_clock.then_some((synced, every)),
                })
            }
        }
    }
}

impl Started {
    /// Reads the store's clock again every interval, for as long as the
    /// service lives.
    pub(crate) fn keep_in_step(self, inner: Weak<Inner>) {
        let Some((clock, every)) = self.sync else {
            return;
        };
        tokio::spawn(async move {
            loop {
                clock.sleep(every).await;
                let Some(inner) = inner.upgrade() else { return };
                if inner.is_shut_down() {
                    return;
                }
                let store = inner.store().clone();
                let timeout = inner.store_timeout();
                drop(inner);
                if let Err(error) = read_store_time(&clock, store.as_ref(), timeout).await {
                    tracing::warn!(%error, "reading the store's clock failed; keeping time by this machine's");
                }
            }
        });
    }
}

/// Reads the store's clock into `clock`; whether the store has one.
async fn read_store_time(
    clock: &SyncedClock,
    store: &dyn PresenceStore,
    timeout: Duration,
) -> Result<bool, StoreError> {
    let sent = clock.local_monotonic();
    let read = match tokio::time::timeout(timeout, store.time()).await {
        Ok(read) => read?,
        Err(_) => return Err(StoreError::Timeout(timeout)),
    };
    match read {
        Some(reference) => {
            clock.sync(reference, sent);
            Ok(true)
        }
        None => Ok(false),
    }
}
