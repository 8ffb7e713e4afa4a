//! What one change writes, computed in Rust from what the database holds:
//! the same for PostgreSQL and SQLite, so the two backends differ only in
//! their SQL.
//!
//! The user's stored record gets the freshest heartbeat of each session
//! (the sessions table's, and this process's unflushed ones), then
//! [`machine::apply`] decides everything; this module only turns the new
//! record into rows: the user's columns, the sessions to write and delete,
//! the scope memberships to add and remove, and the change to keep for the
//! node's durable readers.

use presence_core::store::{KeptChange, StoreError, Transition, Update, UserRecord, machine};
use presence_core::{ManualStatus, SessionId, UserPresence};

use presence_core::store::kit::{LocalSessions, merge_heartbeats};

/// A user as the database holds them.
pub(crate) struct Stored {
    /// The record (the default one for a user never seen).
    pub(crate) record: UserRecord,
    /// The sessions table's heartbeat (ms) of each of the user's sessions.
    pub(crate) heartbeats: Vec<(String, i64)>,
}

impl Stored {
    /// Decodes a stored record (`None`: a user never seen).
    pub(crate) fn decode(
        record: Option<&str>,
        heartbeats: Vec<(String, i64)>,
    ) -> Result<Self, StoreError> {
        let record = match record {
            Some(json) => serde_json::from_str(json).map_err(StoreError::corrupt)?,
            None => UserRecord::default(),
        };
        Ok(Self { record, heartbeats })
    }

    fn heartbeat_of(&self, session: &SessionId) -> Option<i64> {
        self.heartbeats
            .iter()
            .find(|(id, _)| id.as_str() == session.as_str())
            .map(|(_, ms)| *ms)
    }
}

/// The `users` columns kept in step with the record.
pub(crate) struct UserRow {
    pub(crate) status: &'static str,
    pub(crate) version: i64,
    pub(crate) manual_status: Option<&'static str>,
    pub(crate) manual_until: Option<i64>,
    pub(crate) last_seen: Option<i64>,
    pub(crate) next_deadline: Option<i64>,
    /// What observers see beyond the status, as JSON (`None`: nothing).
    pub(crate) details: Option<String>,
}

/// Sessions to insert or refresh, column by column (as PostgreSQL's
/// `unnest` takes them).
#[derive(Default)]
pub(crate) struct SessionRows {
    pub(crate) ids: Vec<String>,
    pub(crate) nodes: Vec<String>,
    pub(crate) logins: Vec<String>,
    pub(crate) opened_ms: Vec<i64>,
    pub(crate) heartbeat_ms: Vec<i64>,
    pub(crate) expires_ms: Vec<i64>,
}

#[cfg(feature = "sqlite")]
impl SessionRows {
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The rows as one JSON array of `[id, node, login, opened, heartbeat,
    /// expires]` arrays (for SQLite's `json_each`).
    pub(crate) fn to_json(&self) -> String {
        let rows: Vec<serde_json::Value> = (0..self.ids.len())
            .map(|i| {
                serde_json::json!([
                    self.ids[i],
                    self.nodes[i],
                    self.logins[i],
                    self.opened_ms[i],
                    self.heartbeat_ms[i],
                    self.expires_ms[i],
                ])
            })
            .collect();
        serde_json::Value::Array(rows).to_string()
    }
}

/// Everything one change writes.
pub(crate) struct Change {
    pub(crate) transition: Transition,
    /// The new record.
    pub(crate) record: UserRecord,
    /// The new record as stored.
    pub(crate) record_json: String,
    pub(crate) row: UserRow,
    /// Sessions that are new or were heard from since they were written.
    pub(crate) upserts: SessionRows,
    /// Sessions that ended.
    pub(crate) deletes: Vec<String>,
    /// Scopes the user is now a member of and was not.
    pub(crate) scopes_joined: Vec<String>,
    /// Scopes the user was a member of and is not any more.
    pub(crate) scopes_left: Vec<String>,
    /// The change as JSON ([`KeptChange::encode`]), to keep in
    /// `kept_changes` for the node: when [`Update::keep_change`] asked and
    /// observers see a change ([`Transition::changed`]).
    pub(crate) kept: Option<String>,
}

/// Runs `update` on the stored user and says what to write.
pub(crate) fn compute(
    mut stored: Stored,
    local: &LocalSessions,
    update: &Update<'_>,
) -> Result<Change, StoreError> {
    let mut record = std::mem::take(&mut stored.record);
    merge_heartbeats(
        &mut record,
        stored.heartbeats.iter().map(|(id, ms)| (id.as_str(), *ms)),
    );
    // Heartbeats of this process not written yet count too.
    local.freshen(&mut record);
    let scopes_before = memberships(&record, record.is_present());
    let transition = machine::apply(
        update.user,
        &mut record,
        update.op,
        update.now,
        update.config,
    )?;
    let scopes_after = memberships(&record, transition.present);

    let ttl = update.config.session_ttl;
    let mut upserts = SessionRows::default();
    for session in &record.sessions {
        let heartbeat = session.last_heartbeat.timestamp_millis();
        let reopened = transition.ended_sessions.contains(&session.id);
        let written = stored.heartbeat_of(&session.id);
        if reopened || written.is_none_or(|written| written < heartbeat) {
            upserts.ids.push(session.id.to_string());
            upserts.nodes.push(session.node.name.to_string());
            upserts.logins.push(session.login.to_string());
            upserts.opened_ms.push(session.opened_at.timestamp_millis());
            upserts.heartbeat_ms.push(heartbeat);
            upserts
                .expires_ms
                .push(machine::later(session.last_heartbeat, ttl).timestamp_millis());
        }
    }
    let deletes = transition
        .ended_sessions
        .iter()
        .filter(|ended| !record.sessions.iter().any(|s| s.id == **ended))
        .map(ToString::to_string)
        .collect();

    let row = user_row(update.user, &record, &transition)?;
    let record_json = serde_json::to_string(&record).map_err(StoreError::corrupt)?;
    let kept = (update.keep_change && transition.changed())
        .then(|| KeptChange::encode(&transition))
        .transpose()?;
    Ok(Change {
        scopes_joined: difference(&scopes_after, &scopes_before),
        scopes_left: difference(&scopes_before, &scopes_after),
        transition,
        record,
        record_json,
        row,
        upserts,
        deletes,
        kept,
    })
}

/// The scopes a record puts its user in: all of theirs while present.
fn memberships(record: &UserRecord, present: bool) -> Vec<String> {
    if present {
        record.scopes.iter().map(ToString::to_string).collect()
    } else {
        Vec::new()
    }
}

fn difference(these: &[String], but_not: &[String]) -> Vec<String> {
    these
        .iter()
        .filter(|scope| !but_not.contains(scope))
        .cloned()
        .collect()
}

fn user_row(
    user: &presence_core::UserId,
    record: &UserRecord,
    transition: &Transition,
) -> Result<UserRow, StoreError> {
    let shown = UserPresence::of(user.clone(), record);
    let details = shown
        .details
        .as_deref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(StoreError::corrupt)?;
    Ok(UserRow {
        status: shown.status.as_str(),
        version: i64::try_from(shown.v).unwrap_or(i64::MAX),
        manual_status: record.manual.map(|manual| manual_name(manual.status)),
        manual_until: record
            .manual
            .and_then(|manual| manual.until)
            .map(|until| until.timestamp_millis()),
        last_seen: shown.last_seen.map(|at| at.timestamp_millis()),
        next_deadline: transition.next_deadline.map(|at| at.timestamp_millis()),
        details,
    })
}

fn manual_name(status: ManualStatus) -> &'static str {
    match status {
        ManualStatus::Away => "AWAY",
        ManualStatus::Busy => "BUSY",
        ManualStatus::Invisible => "INVISIBLE",
    }
}
