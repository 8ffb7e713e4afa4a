//! Database failures as the core's [`StoreError`].

use std::time::Duration;

use presence_core::store::StoreError;

/// Sorts a database failure: unreachable, too slow (no connection within
/// `acquire_timeout`), undecodable, or anything else.
pub(crate) fn store_error(error: sqlx::Error, acquire_timeout: Duration) -> StoreError {
    match error {
        sqlx::Error::PoolTimedOut => StoreError::Timeout(acquire_timeout),
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(Box::new(error)),
        sqlx::Error::Database(ref database) => match database.code().as_deref() {
            Some(code) if connection_lost(code) => StoreError::Unavailable(Box::new(error)),
            Some(code) if busy(code) => StoreError::Timeout(acquire_timeout),
            _ => StoreError::Backend(Box::new(error)),
        },
        sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => {
            StoreError::Corrupt(Box::new(error))
        }
        other => StoreError::Backend(Box::new(other)),
    }
}

/// PostgreSQL SQLSTATEs of a server that is gone or refusing connections
/// (class 08, shutdowns, too many connections), and SQLite's "cannot open".
fn connection_lost(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300") || code == "14"
}

/// SQLite's "busy" and "locked" (plain and extended codes): a lock was not
/// had within the busy timeout.
fn busy(code: &str) -> bool {
    matches!(code, "5" | "6" | "261" | "262" | "517" | "773")
}
