//! Buffered heartbeats to SQLite: one `UPDATE … FROM json_each(…)` per
//! flush, on the writer connection.

use std::collections::HashSet;

use presence_core::{SessionId, StoreError};

use super::{Shared, sql};
use crate::error::store_error;
use crate::flusher::Flush;

impl Flush for Shared {
    async fn flush(&self) -> Result<usize, StoreError> {
        let beats = self.local.take_pending();
        if beats.is_empty() {
            return Ok(0);
        }
        let fail = |e| store_error(e, self.config.acquire_timeout);
        let batch: Vec<serde_json::Value> = beats
            .iter()
            .map(|beat| serde_json::json!([beat.session, beat.at_ms, beat.expires_ms]))
            .collect();
        let written: Result<Vec<String>, _> = sqlx::query_scalar(sql::FLUSH_HEARTBEATS)
            .bind(serde_json::Value::Array(batch).to_string())
            .fetch_all(&self.writer)
            .await;
        let written = match written {
            Ok(written) => written,
            Err(error) => {
                self.local.requeue(&beats);
                return Err(fail(error));
            }
        };
        if written.len() < beats.len() {
            // Not written: gone, or already holding a newer heartbeat.
            let written: HashSet<&str> = written.iter().map(String::as_str).collect();
            let unwritten: Vec<&str> = beats
                .iter()
                .map(|beat| beat.session.as_str())
                .filter(|id| !written.contains(id))
                .collect();
            let existing: Vec<String> = sqlx::query_scalar(sql::EXISTING_SESSIONS)
                .bind(serde_json::Value::from(unwritten.clone()).to_string())
                .fetch_all(&self.readers)
                .await
                .map_err(fail)?;
            let existing: HashSet<&str> = existing.iter().map(String::as_str).collect();
            for gone in unwritten.into_iter().filter(|id| !existing.contains(id)) {
                self.local.ended(&SessionId::from(gone));
            }
        }
        Ok(beats.len())
    }
}
