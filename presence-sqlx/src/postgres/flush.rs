//! Buffered heartbeats to PostgreSQL: one `UPDATE … FROM unnest(…)` per
//! flush, whatever the number of sessions (in batches of
//! [`FLUSH_BATCH`]).

use std::collections::HashSet;

use presence_core::{SessionId, StoreError};

use super::{Shared, sql};
use crate::error::store_error;
use crate::flusher::Flush;
use crate::heartbeats::PendingBeat;

/// Sessions per statement: one statement for any realistic node, and a
/// bound on the statement's size beyond that.
const FLUSH_BATCH: usize = 10_000;

impl Flush for Shared {
    async fn flush(&self) -> Result<usize, StoreError> {
        let beats = self.local.take_pending();
        for (index, batch) in beats.chunks(FLUSH_BATCH).enumerate() {
            if let Err(error) = self.flush_batch(batch).await {
                self.local.requeue(&beats[index * FLUSH_BATCH..]);
                return Err(error);
            }
        }
        Ok(beats.len())
    }
}

impl Shared {
    /// Writes one batch; sessions the database no longer holds (another
    /// node ended them) are marked gone, so their next heartbeat fails.
    async fn flush_batch(&self, batch: &[PendingBeat]) -> Result<(), StoreError> {
        let fail = |e| store_error(e, self.config.acquire_timeout);
        let ids: Vec<&str> = batch.iter().map(|beat| beat.session.as_str()).collect();
        let heartbeats: Vec<i64> = batch.iter().map(|beat| beat.at_ms).collect();
        let expiries: Vec<i64> = batch.iter().map(|beat| beat.expires_ms).collect();
        // Rows locked in session id order first, as a change locks its
        // user's: two transactions that take rows in one order never
        // deadlock.
        let mut tx = self.pool.begin().await.map_err(fail)?;
        sqlx::query(sql::LOCK_FLUSHED)
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(fail)?;
        let written: Vec<String> = sqlx::query_scalar(sql::FLUSH_HEARTBEATS)
            .bind(&ids)
            .bind(heartbeats)
            .bind(expiries)
            .fetch_all(&mut *tx)
            .await
            .map_err(fail)?;
        tx.commit().await.map_err(fail)?;
        if written.len() == ids.len() {
            return Ok(());
        }
        // Not written: gone, or already holding a newer heartbeat (an
        // activity wrote one). Only the gone ones matter.
        let written: HashSet<&str> = written.iter().map(String::as_str).collect();
        let unwritten: Vec<&str> = ids.into_iter().filter(|id| !written.contains(id)).collect();
        let existing: Vec<String> = sqlx::query_scalar(sql::EXISTING_SESSIONS)
            .bind(&unwritten)
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
        let existing: HashSet<&str> = existing.iter().map(String::as_str).collect();
        let gone: Vec<&str> = unwritten
            .into_iter()
            .filter(|id| !existing.contains(id))
            .collect();
        if gone.is_empty() {
            return Ok(());
        }
        // Not ended, if the database lost its data (its tables emptied,
        // though no connection dropped): the nodes register their live
        // sessions again (and their watchers resnapshot).
        let (_, lost) = self.read_epoch().await?;
        if lost {
            tracing::warn!(
                sessions = gone.len(),
                "the presence database lost its data (a new epoch); registering live sessions again"
            );
            self.feed.resync();
            return Ok(());
        }
        for gone in gone {
            self.local.ended(&SessionId::from(gone));
        }
        Ok(())
    }
}
