//! Rows read back as the core's types.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use presence_core::store::kit::PendingBeat;
use presence_core::store::{StoreError, UserRecord, UserView};
use presence_core::{Details, NodeId, NodeName, SessionId, Status, UserId, UserPresence};

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

/// A `users` row's columns as observers see the user: `(user_id, status,
/// version, last_seen, details)`.
pub(crate) type MemberRow = (String, String, i64, Option<i64>, Option<String>);

/// A `users` row's columns as observers see the user. A `details` value
/// that does not decode is [`StoreError::Corrupt`].
pub(crate) fn presence_of(
    (user, status, version, last_seen, details): MemberRow,
) -> Result<UserPresence, StoreError> {
    let details = details
        .map(|json| serde_json::from_str::<Details>(&json).map(Arc::new))
        .transpose()
        .map_err(StoreError::corrupt)?;
    Ok(UserPresence {
        user_id: user.into(),
        status: status_of(&status),
        last_seen: last_seen.and_then(DateTime::<Utc>::from_timestamp_millis),
        v: u64::try_from(version).unwrap_or(0),
        details,
    })
}

/// Rows of [`MemberRow`] as observers see their users.
pub(crate) fn members(rows: Vec<MemberRow>) -> Result<Vec<UserPresence>, StoreError> {
    rows.into_iter().map(presence_of).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_row_reads_back_with_its_details_and_corrupt_details_fail() {
        let row = |details: Option<&str>| -> MemberRow {
            (
                "alice".into(),
                "BUSY".into(),
                7,
                Some(1_000),
                details.map(str::to_owned),
            )
        };
        let plain = presence_of(row(None)).expect("no details");
        assert_eq!(
            (plain.status, plain.v, plain.details),
            (Status::Busy, 7, None)
        );
        let shown = presence_of(row(Some(
            r#"{"custom":{"text":"Lunch","emoji":"🥪"},"devices":{"web":"BUSY"},"state":{"in_call":true}}"#,
        )))
        .expect("details");
        let details = shown.details.expect("some details");
        let custom = details.custom.as_ref().expect("a custom status");
        assert_eq!(custom.text.as_deref(), Some("Lunch"));
        assert_eq!(details.devices.len(), 1);
        for corrupt in [
            "{",
            "[1]",
            r#"{"devices":{"Not A Kind":"ONLINE"}}"#,
            "\"null\"",
        ] {
            assert!(
                matches!(presence_of(row(Some(corrupt))), Err(StoreError::Corrupt(_))),
                "{corrupt}"
            );
        }
    }
}
