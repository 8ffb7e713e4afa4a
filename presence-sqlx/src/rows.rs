//! Rows read back as the core's types.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use presence_core::store::kit::PendingBeat;
use presence_core::store::{StoreError, UserRecord, UserView};
use presence_core::{NodeId, NodeName, SessionId, Status, UserId, UserPresence};

/// A stored `status` column back as a status (an unknown name reads as
/// `OFFLINE`).
fn status_of(name: &str) -> Status {
    match name {
        "ONLINE" => Status::Online,
        "AWAY" => Status::Away,
        "BUSY" => Status::Busy,
        _ => Status::Offline,
    }
}

/// A `users` row's columns as observers see the user.
pub(crate) fn presence_of(
    user: String,
    status: &str,
    version: i64,
    last_seen: Option<i64>,
) -> UserPresence {
    UserPresence {
        user_id: user.into(),
        status: status_of(status),
        last_seen: last_seen.and_then(DateTime::<Utc>::from_timestamp_millis),
        v: u64::try_from(version).unwrap_or(0),
        details: None,
    }
}

/// `(user_id, record)` rows as the views of `users`, in that order; a user
/// with no row is one never seen.
pub(crate) fn views_in_order(
    users: &[UserId],
    rows: Vec<(String, String)>,
) -> Result<Vec<UserView>, StoreError> {
    let mut records = std::collections::HashMap::with_capacity(rows.len());
    for (user, json) in rows {
        let record: UserRecord = serde_json::from_str(&json).map_err(StoreError::corrupt)?;
        records.insert(user, record);
    }
    Ok(users
        .iter()
        .map(|user| match records.get(user.as_str()) {
            Some(record) => UserView::of(user.clone(), record),
            None => UserView::of(user.clone(), &UserRecord::default()),
        })
        .collect())
}

/// Leases as stored (`incarnation` in decimal, expiry in ms), decoded.
pub(crate) fn leases(rows: Vec<(String, i64)>) -> Result<Vec<(u64, DateTime<Utc>)>, StoreError> {
    rows.into_iter()
        .map(|(incarnation, until)| {
            let incarnation = incarnation
                .parse::<u64>()
                .map_err(|e| StoreError::Corrupt(Box::new(e)))?;
            let until = DateTime::<Utc>::from_timestamp_millis(until)
                .ok_or_else(|| StoreError::Corrupt("a lease's expiry is out of range".into()))?;
            Ok((incarnation, until))
        })
        .collect()
}

/// Leases as stored: node name, incarnation (decimal) and expiry (ms).
pub(crate) fn node_leases(
    rows: Vec<(String, String, i64)>,
) -> Result<Vec<(NodeId, DateTime<Utc>)>, StoreError> {
    rows.into_iter()
        .map(|(name, incarnation, until)| {
            let node = NodeId {
                name: NodeName::from(name),
                incarnation: incarnation.parse().map_err(StoreError::corrupt)?,
            };
            let until = DateTime::<Utc>::from_timestamp_millis(until)
                .ok_or_else(|| StoreError::corrupt("a lease's expiry is out of range"))?;
            Ok((node, until))
        })
        .collect()
}

/// The sessions of a heartbeat batch (`batch`, in order) that a flush did
/// not write (`written`: the ids it did): gone, or already holding a newer
/// heartbeat (an activity wrote one).
pub(crate) fn unwritten<'a>(batch: &'a [PendingBeat], written: &[String]) -> Vec<&'a str> {
    let written: HashSet<&str> = written.iter().map(String::as_str).collect();
    batch
        .iter()
        .map(|beat| beat.session.as_str())
        .filter(|id| !written.contains(id))
        .collect()
}

/// Of the `unwritten` sessions, those the database holds no row for
/// (`existing`: the ids it does): the sessions that ended.
pub(crate) fn gone(unwritten: &[&str], existing: &[String]) -> Vec<SessionId> {
    let existing: HashSet<&str> = existing.iter().map(String::as_str).collect();
    unwritten
        .iter()
        .filter(|id| !existing.contains(*id))
        .map(|id| SessionId::from(*id))
        .collect()
}
