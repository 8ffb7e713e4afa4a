//! Redis failures as the core's [`StoreError`].

use std::time::Duration;

use presence_core::store::StoreError;

/// Sorts a Redis failure: unreachable, too slow (past `timeout`), or
/// anything else.
pub(crate) fn store_error(error: redis::RedisError, timeout: Duration) -> StoreError {
    if error.is_timeout() {
        StoreError::Timeout(timeout)
    } else if error.is_io_error() || error.is_connection_dropped() || error.is_connection_refusal()
    {
        StoreError::Unavailable(Box::new(error))
    } else {
        StoreError::Backend(Box::new(error))
    }
}
