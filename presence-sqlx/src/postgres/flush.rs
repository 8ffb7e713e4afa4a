//! Buffered heartbeats to PostgreSQL: one `UPDATE … FROM unnest(…)` per
//! flush, whatever the number of sessions (in batches of
//! [`FLUSH_BATCH`]); the rest of the flush is the core's
//! [`kit::flush`](presence_core::store::kit::flush).

use presence_core::SessionId;
use presence_core::store::StoreError;
use presence_core::store::kit::{self, Flushes, HeartbeatWriter, PendingBeat};

use super::{Shared, sql};
use crate::error::store_error;
use crate::rows;

/// Sessions per statement: one statement for any realistic node, and a
/// bound on the statement's size beyond that.
const FLUSH_BATCH: usize = 10_000;

impl Flushes for Shared {
    async fn flush(&self) -> Result<usize, StoreError> {
        kit::flush(&self.local, self, FLUSH_BATCH).await
    }
}

impl HeartbeatWriter for Shared {
    async fn write(&self, batch: &[PendingBeat]) -> Result<Vec<SessionId>, StoreError> {
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
            return Ok(Vec::new());
        }
        let unwritten = rows::unwritten(batch, &written);
        let existing: Vec<String> = sqlx::query_scalar(sql::EXISTING_SESSIONS)
            .bind(&unwritten)
            .fetch_all(&self.pool)
            .await
            .map_err(fail)?;
        Ok(rows::gone(&unwritten, &existing))
    }

    /// Its tables emptied though no connection dropped: a new epoch.
    async fn lost_its_data(&self) -> Result<bool, StoreError> {
        Ok(self.read_epoch().await?.1)
    }

    fn resync(&self) {
        self.feed.resync();
    }
}
