//! Buffered heartbeats to SQLite: one `UPDATE … FROM json_each(…)` per
//! batch, on the writer connection; the rest of the flush is the core's
//! [`kit::flush`](presence_core::store::kit::flush).

use presence_core::SessionId;
use presence_core::store::StoreError;
use presence_core::store::kit::{self, Flushes, HeartbeatWriter, PendingBeat};

use super::{Shared, sql};
use crate::error::store_error;
use crate::rows;

/// Sessions per statement.
const FLUSH_BATCH: usize = 10_000;

impl Flushes for Shared {
    async fn flush(&self) -> Result<usize, StoreError> {
        kit::flush(&self.local, self, FLUSH_BATCH).await
    }
}

impl HeartbeatWriter for Shared {
    async fn write(&self, batch: &[PendingBeat]) -> Result<Vec<SessionId>, StoreError> {
        let fail = |e| store_error(e, self.config.acquire_timeout);
        let rows: Vec<serde_json::Value> = batch
            .iter()
            .map(|beat| serde_json::json!([beat.session, beat.at_ms, beat.expires_ms]))
            .collect();
        let written: Vec<String> = sqlx::query_scalar(sql::FLUSH_HEARTBEATS)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&self.writer)
            .await
            .map_err(fail)?;
        if written.len() == batch.len() {
            return Ok(Vec::new());
        }
        let unwritten = rows::unwritten(batch, &written);
        let existing: Vec<String> = sqlx::query_scalar(sql::EXISTING_SESSIONS)
            .bind(serde_json::Value::from(unwritten.clone()).to_string())
            .fetch_all(&self.readers)
            .await
            .map_err(fail)?;
        Ok(rows::gone(&unwritten, &existing))
    }

    /// One process owns the file: nothing else can empty it under this
    /// store, so a session it no longer holds has ended.
    async fn lost_its_data(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// No cluster feed: nothing to resync.
    fn resync(&self) {}
}
