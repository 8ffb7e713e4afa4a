//! Writing buffered heartbeats: in batches, once per interval, a failed
//! batch kept for the next try, and a session the store no longer holds
//! told apart from a store that lost its data.

use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use super::local_sessions::{LocalSessions, PendingBeat};
use crate::ids::SessionId;
use crate::store::StoreError;

/// A backend's side of the heartbeat flush: its I/O only.
pub trait HeartbeatWriter<K = ()>: Send + Sync {
    /// Writes the newest heartbeat of each session in `batch`, never
    /// reviving a session the store ended nor moving a heartbeat back;
    /// returns the sessions of the batch the store no longer holds.
    fn write(
        &self,
        batch: &[PendingBeat<K>],
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send;

    /// Reads the store's epoch again: whether the store lost its data since
    /// this process last looked.
    fn lost_its_data(&self) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Registers this process's live sessions again and has its watchers
    /// read snapshots again (the store lost its data), through the cluster
    /// feed's resync.
    fn resync(&self);
}

/// Writes every heartbeat `local` has buffered through `writer`, in
/// batches of `batch_size`; how many. When a batch fails, it and every
/// later one are put back for the next flush (a short outage loses
/// nothing). Sessions the store no longer holds are ended here, so their
/// next heartbeat fails and their holder learns it, unless the store lost
/// its data: then the feed resyncs and they are registered again.
pub async fn flush<K, W>(
    local: &LocalSessions<K>,
    writer: &W,
    batch_size: usize,
) -> Result<usize, StoreError>
where
    K: Send + Sync,
    W: HeartbeatWriter<K>,
{
    let beats = local.take_pending();
    let batch_size = batch_size.max(1);
    let mut gone = Vec::new();
    for (n, batch) in beats.chunks(batch_size).enumerate() {
        match writer.write(batch).await {
            Ok(missing) => gone.extend(missing),
            Err(error) => {
                local.requeue(&beats[n * batch_size..]);
                return Err(error);
            }
        }
    }
    if !gone.is_empty() {
        if writer.lost_its_data().await? {
            tracing::warn!(
                sessions = gone.len(),
                "the presence store lost its data (restarted empty?); registering live sessions again"
            );
            writer.resync();
        } else {
            for session in &gone {
                local.ended(session);
            }
        }
    }
    Ok(beats.len())
}

/// A store whose buffered heartbeats a background task writes.
pub trait Flushes: Send + Sync + 'static {
    /// Writes every buffered heartbeat (usually with [`flush`]); how many.
    fn flush(&self) -> impl Future<Output = Result<usize, StoreError>> + Send;
}

/// Flushes `store` every `interval` until the store is dropped, reporting
/// each write through [`crate::metrics::heartbeat_flush`]. A failure is
/// logged; its heartbeats wait for the next flush, and stored sessions
/// lapse only if the store stays away past the TTL.
pub fn spawn_flusher<S: Flushes>(store: &Arc<S>, interval: Duration) {
    tokio::spawn(run(Arc::downgrade(store), interval));
}

async fn run<S: Flushes>(store: Weak<S>, interval: Duration) {
    let interval = interval.max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(interval).await;
        let Some(store) = store.upgrade() else {
            return;
        };
        let started = Instant::now();
        match store.flush().await {
            Ok(0) => {}
            Ok(_) => crate::metrics::heartbeat_flush(started.elapsed(), false),
            Err(error) => {
                crate::metrics::heartbeat_flush(started.elapsed(), true);
                tracing::warn!(%error, "writing presence heartbeats failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use chrono::DateTime;

    use super::*;
    use crate::config::PresenceConfig;
    use crate::ids::UserId;

    /// Fails the batch numbered `fail_at`, reports `gone` as missing.
    #[derive(Default)]
    struct Writer {
        fail_at: Option<usize>,
        calls: AtomicUsize,
        written: Mutex<Vec<SessionId>>,
        gone: Vec<SessionId>,
        lost: bool,
        resynced: AtomicBool,
    }

    impl HeartbeatWriter for Writer {
        async fn write(&self, batch: &[PendingBeat]) -> Result<Vec<SessionId>, StoreError> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            if self.fail_at == Some(call) {
                return Err(StoreError::Unavailable("down".into()));
            }
            let mut written = self.written.lock().expect("unpoisoned");
            let mut missing = Vec::new();
            for beat in batch {
                if self.gone.contains(&beat.session) {
                    missing.push(beat.session.clone());
                } else {
                    written.push(beat.session.clone());
                }
            }
            Ok(missing)
        }

        async fn lost_its_data(&self) -> Result<bool, StoreError> {
            Ok(self.lost)
        }

        fn resync(&self) {
            self.resynced.store(true, Ordering::SeqCst);
        }
    }

    fn sessions(n: usize) -> (LocalSessions, Vec<SessionId>) {
        let local = LocalSessions::default();
        let config = PresenceConfig::default();
        let user = UserId::from("u");
        let now = DateTime::from_timestamp_millis(1_000).expect("valid");
        let ids: Vec<SessionId> = (0..n).map(|i| SessionId::from(format!("s{i}"))).collect();
        for id in &ids {
            local.opened(&user, id, &"n".into(), now, &config, || ());
            local.beat(&user, id, now, &config).expect("live");
        }
        (local, ids)
    }

    #[tokio::test]
    async fn a_failed_batch_and_the_ones_after_it_wait_for_the_next_flush() {
        let (local, _) = sessions(5);
        let writer = Writer {
            fail_at: Some(1),
            ..Writer::default()
        };
        assert!(flush(&local, &writer, 2).await.is_err());
        assert_eq!(writer.written.lock().expect("unpoisoned").len(), 2);
        // The three not written are written next time.
        assert_eq!(flush(&local, &writer, 2).await.expect("written"), 3);
        assert_eq!(writer.written.lock().expect("unpoisoned").len(), 5);
    }

    #[tokio::test]
    async fn a_session_the_store_no_longer_holds_ends_here_unless_the_store_lost_its_data() {
        let (local, ids) = sessions(3);
        let writer = Writer {
            gone: vec![ids[1].clone()],
            ..Writer::default()
        };
        flush(&local, &writer, 10).await.expect("written");
        assert_eq!(local.count(), 2);
        assert!(!writer.resynced.load(Ordering::SeqCst));

        let (local, ids) = sessions(3);
        let writer = Writer {
            gone: ids.clone(),
            lost: true,
            ..Writer::default()
        };
        flush(&local, &writer, 10).await.expect("written");
        assert_eq!(local.count(), 3, "kept, to be registered again");
        assert!(writer.resynced.load(Ordering::SeqCst));
    }
}
