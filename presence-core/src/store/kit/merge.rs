//! A record read back with the heartbeats stored beside it.

use chrono::{DateTime, Utc};

use crate::store::UserRecord;

/// Gives each session of `record` its stored heartbeat (ms since the
/// epoch) where that is newer than the record's: heartbeats are written
/// apart from the record, without rewriting it.
pub fn merge_heartbeats<'a>(
    record: &mut UserRecord,
    heartbeats: impl IntoIterator<Item = (&'a str, i64)>,
) {
    for (session, ms) in heartbeats {
        let Some(at) = DateTime::<Utc>::from_timestamp_millis(ms) else {
            continue;
        };
        if let Some(stored) = record
            .sessions
            .iter_mut()
            .find(|s| s.id.as_str() == session)
            && at > stored.last_heartbeat
        {
            stored.last_heartbeat = at;
        }
    }
}
