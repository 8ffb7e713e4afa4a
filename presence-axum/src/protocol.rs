//! The WebSocket protocol of docs/protocol.md: what a client may send, what the
//! server answers, and the stable error codes of bad messages.
//!
//! One extension, for clients that ask for it: a socket opened with
//! `?batch=1` on its URL receives the events of a busy scope as
//! `presence_batch` frames, several events in one frame:
//!
//! ```json
//! {"type":"presence_batch","scope":"S","events":[
//!   {"user_id":"u1","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":8},
//!   {"user_id":"u2","status":"ONLINE","last_seen":"2026-01-01T00:00:01Z","v":3}]}
//! ```
//!
//! Each entry means what a `presence` frame of the same scope would; entries
//! are in the order the changes happened. Other sockets get the same events
//! as `presence` frames, back to back. Every frame of an event or a batch is
//! encoded once and shared by all the sockets that send it.

use std::sync::Arc;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use presence_core::{
    AppState, CustomStatus, Details, DetailsError, Epoch, EventBatch, Occupancy, PresenceEvent,
    RequestedStatus, ScopeId, SharedEvent, Snapshot, UserId, UserPresence,
};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

/// A message from the client, decoded and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientMessage {
    /// Proves the socket live; answered with `pong`.
    Heartbeat,
    /// The user did something.
    Activity,
    /// The user's manual status and custom status, with an optional
    /// expiry: one change, one event.
    StatusChange {
        /// The manual status; `ONLINE` clears it. `None` keeps it (only
        /// when `custom` is given).
        status: Option<RequestedStatus>,
        /// When the manual status and the custom status clear by
        /// themselves.
        until: Option<DateTime<Utc>>,
        /// `None`: the custom status is kept. `Some(None)`: it is cleared.
        /// `Some(Some(_))`: it is set (its `until` is the message's).
        custom: Option<Option<CustomStatus>>,
    },
    /// This socket's session's app state (`None` clears it).
    SetState {
        /// The state, checked.
        state: Option<AppState>,
    },
    /// Whether the user hides when they were last seen.
    Privacy {
        /// `true` hides it: watchers get `last_seen: null`.
        hide_last_seen: bool,
    },
    /// Watch a scope, whole or only some of its users, or as counts while
    /// it is large.
    Subscribe {
        /// The scope.
        scope: ScopeId,
        /// Only these users, when given (with `counts`: the users whose
        /// events still come while the scope is large).
        user_ids: Option<Vec<UserId>>,
        /// Counts instead of each member's events while the scope is
        /// large (`occupancy` frames).
        counts: bool,
    },
    /// Stop watching a scope.
    Unsubscribe {
        /// The scope.
        scope: ScopeId,
    },
}

/// Why a client's message was refused. The `code` strings are stable: a
/// client may match on them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A binary frame; the protocol is JSON text.
    BinaryFrame,
    /// Not a JSON object with a string `type`.
    MalformedJson(String),
    /// A `type` this server does not know.
    UnknownType(String),
    /// A known `type` with missing or ill-typed fields.
    InvalidMessage(String),
    /// A status that is not `ONLINE`, `AWAY`, `BUSY` or `INVISIBLE`.
    UnknownStatus(String),
    /// An `until` that is not an RFC 3339 time in the future.
    BadUntil(String),
    /// A custom status or app state that breaks its bounds; the code is
    /// [`DetailsError::code`] (`text_too_long`, `bad_text`, `bad_emoji`,
    /// `empty_custom_status`, `bad_until`, `state_not_object`,
    /// `state_too_large`).
    Details(DetailsError),
    /// A scope this user may not watch.
    ForbiddenScope(ScopeId),
    /// Too many messages: this one was dropped.
    RateLimited,
    /// The presence store could not apply the change; try again.
    Unavailable,
}

impl ProtocolError {
    /// The stable code sent in the `error` frame.
    pub fn code(&self) -> &'static str {
        match self {
            ProtocolError::BinaryFrame => "binary_frame",
            ProtocolError::MalformedJson(_) => "malformed_json",
            ProtocolError::UnknownType(_) => "unknown_type",
            ProtocolError::InvalidMessage(_) => "invalid_message",
            ProtocolError::UnknownStatus(_) => "unknown_status",
            ProtocolError::BadUntil(_) => "bad_until",
            ProtocolError::Details(refused) => refused.code(),
            ProtocolError::ForbiddenScope(_) => "forbidden_scope",
            ProtocolError::RateLimited => "rate_limited",
            ProtocolError::Unavailable => "unavailable",
        }
    }

    /// A sentence for humans.
    pub fn message(&self) -> String {
        match self {
            ProtocolError::BinaryFrame => "binary frames are not accepted; send JSON text".into(),
            ProtocolError::MalformedJson(why) => format!("not a JSON object with a type: {why}"),
            ProtocolError::UnknownType(kind) => format!("unknown message type {kind:?}"),
            ProtocolError::InvalidMessage(why) => format!("invalid message: {why}"),
            ProtocolError::UnknownStatus(status) => {
                format!("unknown status {status:?}; expected ONLINE, AWAY, BUSY or INVISIBLE")
            }
            ProtocolError::BadUntil(why) => format!("bad until: {why}"),
            ProtocolError::Details(refused) => refused.to_string(),
            ProtocolError::ForbiddenScope(scope) => format!("you may not watch scope {scope}"),
            ProtocolError::RateLimited => "too many messages; this one was dropped".into(),
            ProtocolError::Unavailable => "presence is unavailable right now; try again".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusChangeFields {
    #[serde(rename = "type")]
    _type: String,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    until: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    emoji: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetStateFields {
    #[serde(rename = "type")]
    _type: String,
    state: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrivacyFields {
    #[serde(rename = "type")]
    _type: String,
    hide_last_seen: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeFields {
    #[serde(rename = "type")]
    _type: String,
    scope: String,
    #[serde(default)]
    user_ids: Option<Vec<String>>,
    #[serde(default)]
    counts: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnsubscribeFields {
    #[serde(rename = "type")]
    _type: String,
    scope: String,
}

/// Longest id or scope name a client may send.
const MAX_NAME_LEN: usize = 256;
/// Most users one `subscribe` may name.
const MAX_SUBSCRIBE_USERS: usize = 256;

/// Decodes one text frame. `now` judges whether `until` is in the future.
pub fn decode(text: &str, now: DateTime<Utc>) -> Result<ClientMessage, ProtocolError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::MalformedJson(e.to_string()))?;
    let Some(kind) = value.get("type").and_then(Value::as_str) else {
        return Err(ProtocolError::MalformedJson(
            "expected an object with a string \"type\"".into(),
        ));
    };
    let invalid = |e: serde_json::Error| ProtocolError::InvalidMessage(e.to_string());
    match kind {
        "heartbeat" => Ok(ClientMessage::Heartbeat),
        "activity" => Ok(ClientMessage::Activity),
        "status_change" => {
            // A `text` or `emoji` key, even `null`, sets the custom status.
            let sets_custom = ["text", "emoji"].iter().any(|key| value.get(key).is_some());
            let fields: StatusChangeFields =
                serde_json::from_value(value.clone()).map_err(invalid)?;
            let status = match &fields.status {
                Some(status) => Some(
                    status
                        .parse::<RequestedStatus>()
                        .map_err(|_| ProtocolError::UnknownStatus(clip(status)))?,
                ),
                None if sets_custom => None,
                None => {
                    return Err(ProtocolError::InvalidMessage(
                        "missing field `status` (needed unless `text` or `emoji` is given)".into(),
                    ));
                }
            };
            let until = fields
                .until
                .as_deref()
                .map(|u| parse_until(u, now))
                .transpose()?;
            let custom = if !sets_custom {
                None
            } else if fields.text.is_none() && fields.emoji.is_none() {
                Some(None)
            } else {
                let custom = CustomStatus::new(fields.text, fields.emoji, until)
                    .map_err(ProtocolError::Details)?;
                Some(Some(custom))
            };
            Ok(ClientMessage::StatusChange {
                status,
                until,
                custom,
            })
        }
        "set_state" => {
            let fields: SetStateFields = serde_json::from_value(value.clone()).map_err(invalid)?;
            let state = match fields.state {
                Value::Null => None,
                state => Some(AppState::new(state).map_err(ProtocolError::Details)?),
            };
            Ok(ClientMessage::SetState { state })
        }
        "privacy" => {
            let fields: PrivacyFields = serde_json::from_value(value.clone()).map_err(invalid)?;
            Ok(ClientMessage::Privacy {
                hide_last_seen: fields.hide_last_seen,
            })
        }
        "subscribe" => {
            let fields: SubscribeFields = serde_json::from_value(value.clone()).map_err(invalid)?;
            Ok(ClientMessage::Subscribe {
                scope: scope_name(fields.scope)?,
                user_ids: fields.user_ids.map(watched_users).transpose()?,
                counts: fields.counts,
            })
        }
        "unsubscribe" => {
            let fields: UnsubscribeFields =
                serde_json::from_value(value.clone()).map_err(invalid)?;
            Ok(ClientMessage::Unsubscribe {
                scope: scope_name(fields.scope)?,
            })
        }
        other => Err(ProtocolError::UnknownType(clip(other))),
    }
}

fn parse_until(until: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, ProtocolError> {
    let at = DateTime::parse_from_rfc3339(until)
        .map_err(|e| ProtocolError::BadUntil(format!("{:?} is not RFC 3339: {e}", clip(until))))?
        .with_timezone(&Utc);
    if at <= now {
        return Err(ProtocolError::BadUntil(format!(
            "{until} is not in the future"
        )));
    }
    Ok(at)
}

/// A scope a client names (to watch it, or to stop).
pub(crate) fn scope_name(scope: String) -> Result<ScopeId, ProtocolError> {
    name(scope, "scope").map(ScopeId::from)
}

/// The users of a scope a client asks about: at most
/// [`MAX_SUBSCRIBE_USERS`], each a valid name.
pub(crate) fn watched_users(ids: Vec<String>) -> Result<Vec<UserId>, ProtocolError> {
    if ids.len() > MAX_SUBSCRIBE_USERS {
        return Err(ProtocolError::InvalidMessage(format!(
            "user_ids names more than {MAX_SUBSCRIBE_USERS} users"
        )));
    }
    ids.into_iter()
        .map(|id| name(id, "user id").map(UserId::from))
        .collect()
}

fn name(value: String, what: &str) -> Result<String, ProtocolError> {
    if value.is_empty() || value.len() > MAX_NAME_LEN {
        return Err(ProtocolError::InvalidMessage(format!(
            "{what} must be 1 to {MAX_NAME_LEN} bytes"
        )));
    }
    Ok(value)
}

/// Keeps echoed client text short.
fn clip(text: &str) -> String {
    text.chars().take(64).collect()
}

/// A message from the server.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// The first frame after the upgrade.
    Hello {
        /// This socket's session.
        session_id: &'a str,
        /// Who the server says you are.
        user_id: &'a UserId,
        /// How often to send `heartbeat`.
        heartbeat_interval_ms: u64,
        /// The store's epoch: versions of another epoch are not comparable
        /// with this one's (a client drops those it holds).
        epoch: &'a Epoch,
    },
    /// The users of a scope as they are now.
    Snapshot {
        /// The scope.
        scope: &'a ScopeId,
        /// The store's epoch when the snapshot was read.
        epoch: &'a Epoch,
        /// The scope's counts, when it is large and watched as counts
        /// (then `users` holds only the named users).
        #[serde(
            skip_serializing_if = "Option::is_none",
            serialize_with = "snapshot_counts"
        )]
        occupancy: Option<&'a Occupancy>,
        /// Every user not `OFFLINE`, and every user asked for; each with
        /// `custom`, `devices` and `state` when shown.
        #[serde(serialize_with = "user_entries")]
        users: &'a [UserPresence],
    },
    /// One change of one user's presence in a watched scope: the whole of
    /// it (a field absent is cleared), not a diff.
    Presence {
        /// The scope.
        scope: &'a ScopeId,
        /// The user.
        user_id: &'a UserId,
        /// The new status.
        status: presence_core::Status,
        /// The user's newest activity or session end (`None` if hidden).
        last_seen: Option<DateTime<Utc>>,
        /// The new version.
        v: u64,
        /// `custom`, `devices` and `state`, each only when shown.
        #[serde(flatten)]
        details: Option<&'a Details>,
    },
    /// The counts of a large scope watched as counts, at most once per
    /// interval, instead of its members' events.
    Occupancy {
        /// The scope.
        scope: &'a ScopeId,
        /// Members `ONLINE`.
        online: u64,
        /// Members `AWAY`.
        away: u64,
        /// Members `BUSY`.
        busy: u64,
        /// Grows with each count of the scope this connection gets.
        v: u64,
    },
    /// Several changes in one busy scope, oldest first; only to a socket
    /// that asked for batches (`?batch=1` on the socket's URL).
    PresenceBatch {
        /// The scope of every event.
        scope: &'a ScopeId,
        /// Each: `user_id`, `status`, `last_seen`, `v` and the details, as
        /// in `presence`.
        #[serde(serialize_with = "batch_entries")]
        events: &'a [Arc<SharedEvent>],
    },
    /// The answer to `heartbeat`.
    Pong,
    /// A refused message; the connection stays usable.
    Error {
        /// A stable code, see [`ProtocolError::code`].
        code: &'a str,
        /// A sentence for humans.
        message: &'a str,
    },
}

impl<'a> ServerMessage<'a> {
    /// The frame for a snapshot, whole (the socket splits a large snapshot
    /// into several frames of this shape, all but the last marked
    /// `"more":true`).
    pub fn snapshot(snapshot: &'a Snapshot) -> Self {
        ServerMessage::Snapshot {
            scope: &snapshot.scope,
            epoch: &snapshot.epoch,
            occupancy: snapshot.occupancy.as_ref(),
            users: &snapshot.users,
        }
    }

    /// The frame for a large scope's counts.
    pub fn occupancy(counts: &'a Occupancy) -> Self {
        ServerMessage::Occupancy {
            scope: &counts.scope,
            online: counts.online,
            away: counts.away,
            busy: counts.busy,
            v: counts.v,
        }
    }

    /// The frame for an event.
    pub fn presence(event: &'a PresenceEvent) -> Self {
        ServerMessage::Presence {
            scope: &event.scope,
            user_id: &event.user_id,
            status: event.status,
            last_seen: event.last_seen,
            v: event.v,
            details: event.details.as_deref(),
        }
    }

    /// The frame for a batch, whole (the socket splits a large batch into
    /// several frames of this shape).
    pub fn presence_batch(batch: &'a EventBatch) -> Self {
        ServerMessage::PresenceBatch {
            scope: batch.scope(),
            events: batch.events(),
        }
    }

    /// The JSON text of the frame.
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"type\":\"error\"}"))
    }
}

/// One user as a snapshot, a members page or a `presence_batch` entry
/// shows them: `user_id`, `status`, `last_seen`, `v`, then `custom`,
/// `devices` and `state`, each only when shown.
#[derive(Serialize)]
pub(crate) struct UserEntry<'a> {
    user_id: &'a UserId,
    status: presence_core::Status,
    last_seen: Option<DateTime<Utc>>,
    v: u64,
    #[serde(flatten)]
    details: Option<&'a Details>,
}

impl<'a> From<&'a PresenceEvent> for UserEntry<'a> {
    fn from(event: &'a PresenceEvent) -> Self {
        UserEntry {
            user_id: &event.user_id,
            status: event.status,
            last_seen: event.last_seen,
            v: event.v,
            details: event.details.as_deref(),
        }
    }
}

impl<'a> From<&'a UserPresence> for UserEntry<'a> {
    fn from(user: &'a UserPresence) -> Self {
        UserEntry {
            user_id: &user.user_id,
            status: user.status,
            last_seen: user.last_seen,
            v: user.v,
            details: user.details.as_deref(),
        }
    }
}

/// A large scope's counts inside a snapshot: its scope is the snapshot's.
#[derive(Clone, Copy, Debug, Serialize)]
struct Counts {
    online: u64,
    away: u64,
    busy: u64,
    v: u64,
}

impl From<&Occupancy> for Counts {
    fn from(counts: &Occupancy) -> Self {
        Counts {
            online: counts.online,
            away: counts.away,
            busy: counts.busy,
            v: counts.v,
        }
    }
}

fn snapshot_counts<S: Serializer>(counts: &Option<&Occupancy>, out: S) -> Result<S::Ok, S::Error> {
    counts.map(Counts::from).serialize(out)
}

fn batch_entries<S: Serializer>(events: &[Arc<SharedEvent>], out: S) -> Result<S::Ok, S::Error> {
    out.collect_seq(events.iter().map(|event| UserEntry::from(event.event())))
}

pub(crate) fn user_entries<S: Serializer>(
    users: &[UserPresence],
    out: S,
) -> Result<S::Ok, S::Error> {
    out.collect_seq(users.iter().map(UserEntry::from))
}

/// Most bytes of one `presence_batch` frame: a larger batch is sent as
/// several frames, so no frame outgrows a socket's write buffer.
pub(crate) const BATCH_FRAME_BYTES: usize = 16 * 1024;

/// The `presence` frame of an event, encoded by the first socket that sends
/// it and shared by the others.
pub(crate) fn presence_frame(event: &SharedEvent) -> Utf8Bytes {
    event
        .encoding()
        .get_or_encode(|| Utf8Bytes::from(ServerMessage::presence(event).to_json()))
}

/// The `presence_batch` frames of a batch, encoded once and shared.
pub(crate) fn batch_frames(batch: &EventBatch) -> Arc<[Utf8Bytes]> {
    batch.encoding().get_or_encode(|| {
        encode_batch(batch.scope(), batch.events(), BATCH_FRAME_BYTES)
            .into_iter()
            .map(Utf8Bytes::from)
            .collect()
    })
}

/// `presence_batch` frames holding `events` in order, each at most `budget`
/// bytes unless one entry alone is larger.
fn encode_batch(scope: &ScopeId, events: &[Arc<SharedEvent>], budget: usize) -> Vec<String> {
    let head = format!(
        "{{\"type\":\"presence_batch\",\"scope\":{},\"events\":[",
        scope_json(scope)
    );
    let entries = events.iter().map(|event| UserEntry::from(event.event()));
    pack_frames(&head, entries, budget, "]}", "]}")
}

/// The `snapshot` frames of a snapshot, each at most [`BATCH_FRAME_BYTES`]
/// bytes unless one user alone is larger: a scope with many users online
/// would otherwise need a frame larger than any socket's write buffer.
/// Every frame but the last carries `"more":true`; a client applies the
/// users of all the parts together, when the last one arrives.
pub(crate) fn snapshot_frames(snapshot: &Snapshot) -> Vec<String> {
    encode_snapshot(snapshot, BATCH_FRAME_BYTES)
}

fn encode_snapshot(snapshot: &Snapshot, budget: usize) -> Vec<String> {
    // Every part says the epoch, and the counts of a counted scope.
    let occupancy = snapshot
        .occupancy
        .as_ref()
        .map_or_else(String::new, |counts| {
            let counts = serde_json::to_string(&Counts::from(counts)).unwrap_or_default();
            format!(",\"occupancy\":{counts}")
        });
    let head = format!(
        "{{\"type\":\"snapshot\",\"scope\":{},\"epoch\":{}{occupancy},\"users\":[",
        scope_json(&snapshot.scope),
        serde_json::to_string(&snapshot.epoch).unwrap_or_else(|_| "\"\"".into())
    );
    let mut frames = pack_frames(
        &head,
        snapshot.users.iter().map(UserEntry::from),
        budget,
        "],\"more\":true}",
        "]}",
    );
    if frames.is_empty() {
        // An empty scope is still answered: its snapshot lists no one.
        frames.push(format!("{head}]}}"));
    }
    frames
}

fn scope_json(scope: &ScopeId) -> String {
    serde_json::to_string(scope).unwrap_or_else(|_| "\"\"".into())
}

/// Frames of `head`, a comma-separated run of `items` and a tail: `more`
/// closes every frame but the last, `last` the last one. A frame stays
/// within `budget` bytes unless one item alone is larger; no items, no
/// frames.
fn pack_frames<T: Serialize>(
    head: &str,
    items: impl Iterator<Item = T>,
    budget: usize,
    more: &str,
    last: &str,
) -> Vec<String> {
    let tail = more.len().max(last.len());
    let mut frames = Vec::new();
    let mut frame = head.to_owned();
    let mut entries = 0;
    for item in items {
        let Ok(entry) = serde_json::to_string(&item) else {
            continue;
        };
        if entries > 0 && frame.len() + 1 + entry.len() + tail > budget {
            frame.push_str(more);
            frames.push(std::mem::replace(&mut frame, head.to_owned()));
            entries = 0;
        }
        if entries > 0 {
            frame.push(',');
        }
        frame.push_str(&entry);
        entries += 1;
    }
    if entries > 0 {
        frame.push_str(last);
        frames.push(frame);
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("valid")
            .with_timezone(&Utc)
    }

    fn code(text: &str) -> &'static str {
        decode(text, now()).expect_err("refused").code()
    }

    #[test]
    fn every_message_of_the_protocol_decodes() {
        assert_eq!(
            decode(r#"{"type":"heartbeat"}"#, now()),
            Ok(ClientMessage::Heartbeat)
        );
        assert_eq!(
            decode(r#"{"type":"activity"}"#, now()),
            Ok(ClientMessage::Activity)
        );
        assert_eq!(
            decode(
                r#"{"type":"status_change","status":"BUSY","until":"2026-01-01T01:00:00+01:00"}"#,
                now()
            ),
            Err(ProtocolError::BadUntil(
                "2026-01-01T01:00:00+01:00 is not in the future".into()
            )),
            "an until given in another offset is compared as an instant"
        );
        assert_eq!(
            decode(
                r#"{"type":"status_change","status":"INVISIBLE","until":"2026-01-01T01:00:00Z"}"#,
                now()
            ),
            Ok(ClientMessage::StatusChange {
                status: Some(RequestedStatus::Invisible),
                until: Some(now() + chrono::TimeDelta::hours(1)),
                custom: None,
            })
        );
        assert_eq!(
            decode(
                r#"{"type":"subscribe","scope":"acme","user_ids":["a","b"]}"#,
                now()
            ),
            Ok(ClientMessage::Subscribe {
                scope: "acme".into(),
                user_ids: Some(vec!["a".into(), "b".into()]),
                counts: false,
            })
        );
        assert_eq!(
            decode(
                r#"{"type":"subscribe","scope":"hall","counts":true}"#,
                now()
            ),
            Ok(ClientMessage::Subscribe {
                scope: "hall".into(),
                user_ids: None,
                counts: true,
            })
        );
        assert_eq!(
            decode(r#"{"type":"set_state","state":{"in_call":true}}"#, now()),
            Ok(ClientMessage::SetState {
                state: Some(AppState::new(serde_json::json!({"in_call": true})).unwrap()),
            })
        );
        assert_eq!(
            decode(r#"{"type":"set_state","state":null}"#, now()),
            Ok(ClientMessage::SetState { state: None })
        );
        assert_eq!(
            decode(r#"{"type":"privacy","hide_last_seen":true}"#, now()),
            Ok(ClientMessage::Privacy {
                hide_last_seen: true
            })
        );
        assert_eq!(
            decode(r#"{"type":"unsubscribe","scope":"acme"}"#, now()),
            Ok(ClientMessage::Unsubscribe {
                scope: "acme".into()
            })
        );
    }

    #[test]
    fn a_status_change_may_carry_a_custom_status_with_the_same_until() {
        let in_an_hour = now() + chrono::TimeDelta::hours(1);
        let meeting = CustomStatus::new(
            Some("In a meeting".into()),
            Some("📅".into()),
            Some(in_an_hour),
        )
        .unwrap();
        assert_eq!(
            decode(
                r#"{"type":"status_change","status":"BUSY","until":"2026-01-01T01:00:00Z","text":" In a meeting ","emoji":"📅"}"#,
                now()
            ),
            Ok(ClientMessage::StatusChange {
                status: Some(RequestedStatus::Busy),
                until: Some(in_an_hour),
                custom: Some(Some(meeting)),
            }),
            "the text is trimmed; until is the custom status's too"
        );
        assert_eq!(
            decode(r#"{"type":"status_change","emoji":":palm_tree:"}"#, now()),
            Ok(ClientMessage::StatusChange {
                status: None,
                until: None,
                custom: Some(Some(
                    CustomStatus::new(None, Some(":palm_tree:".into()), None).unwrap()
                )),
            }),
            "no status: the manual status is kept"
        );
        for clears in [
            r#"{"type":"status_change","text":null}"#,
            r#"{"type":"status_change","text":null,"emoji":null}"#,
            r#"{"type":"status_change","emoji":null}"#,
        ] {
            assert_eq!(
                decode(clears, now()),
                Ok(ClientMessage::StatusChange {
                    status: None,
                    until: None,
                    custom: Some(None),
                }),
                "{clears}"
            );
        }
        assert_eq!(
            decode(
                r#"{"type":"status_change","status":"ONLINE","text":null}"#,
                now()
            ),
            Ok(ClientMessage::StatusChange {
                status: Some(RequestedStatus::Online),
                until: None,
                custom: Some(None),
            })
        );
    }

    #[test]
    fn bad_details_get_the_codes_of_the_core() {
        let long = format!(r#"{{"type":"status_change","text":"{}"}}"#, "é".repeat(101));
        assert_eq!(code(&long), "text_too_long");
        let two_lines = serde_json::json!({"type": "status_change", "text": "two\nlines"});
        assert_eq!(code(&two_lines.to_string()), "bad_text");
        for emoji in ["a", "📅📅", ":Cal:", " 📅"] {
            let frame = serde_json::json!({"type": "status_change", "emoji": emoji}).to_string();
            assert_eq!(code(&frame), "bad_emoji", "{emoji}");
        }
        assert_eq!(
            code(r#"{"type":"status_change","text":"   "}"#),
            "empty_custom_status"
        );
        assert_eq!(
            code(r#"{"type":"status_change","text":"","emoji":""}"#),
            "empty_custom_status",
            "clear with null, not with empty strings"
        );
        assert_eq!(
            code(r#"{"type":"status_change","text":"x","until":"2025-01-01T00:00:00Z"}"#),
            "bad_until"
        );
        assert_eq!(
            code(r#"{"type":"status_change","text":7}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"status_change","until":"2026-01-01T01:00:00Z"}"#),
            "invalid_message",
            "neither a status nor a custom status"
        );
        assert_eq!(
            code(r#"{"type":"status_change","status":"SLEEPY","text":"x"}"#),
            "unknown_status"
        );
        for state in [r#""in_call""#, "[1]", "true", "3"] {
            let frame = format!(r#"{{"type":"set_state","state":{state}}}"#);
            assert_eq!(code(&frame), "state_not_object", "{state}");
        }
        let big = serde_json::json!({"type": "set_state", "state": {"k": "v".repeat(1100)}});
        assert_eq!(code(&big.to_string()), "state_too_large");
        assert_eq!(code(r#"{"type":"set_state"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"set_state","state":{},"session_id":"s"}"#),
            "invalid_message"
        );
        assert_eq!(code(r#"{"type":"privacy"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"privacy","hide_last_seen":"yes"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","scope":"a","counts":1}"#),
            "invalid_message"
        );
    }

    #[test]
    fn bad_messages_get_stable_codes() {
        assert_eq!(code("not json"), "malformed_json");
        assert_eq!(code("[1,2]"), "malformed_json");
        assert_eq!(code(r#"{"type":7}"#), "malformed_json");
        assert_eq!(code(r#"{"type":"dance"}"#), "unknown_type");
        assert_eq!(
            code(r#"{"type":"status_change","status":"SLEEPY"}"#),
            "unknown_status"
        );
        assert_eq!(code(r#"{"type":"status_change"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"status_change","status":"BUSY","until":"soon"}"#),
            "bad_until"
        );
        assert_eq!(
            code(r#"{"type":"status_change","status":"BUSY","until":"2025-01-01T00:00:00Z"}"#),
            "bad_until"
        );
        assert_eq!(code(r#"{"type":"subscribe"}"#), "invalid_message");
        assert_eq!(
            code(r#"{"type":"subscribe","scope":""}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"subscribe","scope":"a","user_ids":"b"}"#),
            "invalid_message"
        );
        assert_eq!(
            code(r#"{"type":"status_change","status":"BUSY","user_id":"bob"}"#),
            "invalid_message"
        );
    }

    #[test]
    fn server_frames_match_the_spec() {
        let user = UserId::from("alice");
        let epoch = Epoch::from("e1");
        let hello = ServerMessage::Hello {
            session_id: "s1",
            user_id: &user,
            heartbeat_interval_ms: 30_000,
            epoch: &epoch,
        };
        assert_eq!(
            hello.to_json(),
            r#"{"type":"hello","session_id":"s1","user_id":"alice","heartbeat_interval_ms":30000,"epoch":"e1"}"#
        );
        assert_eq!(ServerMessage::Pong.to_json(), r#"{"type":"pong"}"#);
        let snapshot = Snapshot {
            scope: "acme".into(),
            users: vec![UserPresence {
                user_id: user.clone(),
                status: presence_core::Status::Online,
                last_seen: None,
                v: 3,
                details: None,
            }],
            epoch: epoch.clone(),
            occupancy: None,
        };
        assert_eq!(
            ServerMessage::snapshot(&snapshot).to_json(),
            r#"{"type":"snapshot","scope":"acme","epoch":"e1","users":[{"user_id":"alice","status":"ONLINE","last_seen":null,"v":3}]}"#
        );
    }

    fn shared(user: &str, v: u64) -> Arc<SharedEvent> {
        Arc::new(SharedEvent::new(PresenceEvent {
            scope: "acme".into(),
            user_id: user.into(),
            status: presence_core::Status::Away,
            last_seen: Some(now()),
            v,
            at: now(),
            details: None,
        }))
    }

    #[test]
    fn a_batch_frame_lists_its_events_in_order_as_presence_frames_would() {
        let batch = EventBatch::new("acme".into(), vec![shared("alice", 2), shared("bob", 5)]);
        let expected = r#"{"type":"presence_batch","scope":"acme","events":[{"user_id":"alice","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":2},{"user_id":"bob","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":5}]}"#;
        assert_eq!(ServerMessage::presence_batch(&batch).to_json(), expected);
        let frames = batch_frames(&batch);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].as_str(), expected);
        assert_eq!(
            presence_frame(&batch.events()[0]).as_str(),
            r#"{"type":"presence","scope":"acme","user_id":"alice","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":2}"#
        );
    }

    /// alice in a meeting on two devices, in a call.
    fn meeting_details() -> Arc<Details> {
        let until = now() + chrono::TimeDelta::hours(1);
        Arc::new(Details {
            custom: Some(
                CustomStatus::new(Some("In a meeting".into()), Some("📅".into()), Some(until))
                    .unwrap(),
            ),
            devices: [
                (
                    presence_core::SessionKind::web(),
                    presence_core::Status::Busy,
                ),
                (
                    presence_core::SessionKind::mobile(),
                    presence_core::Status::Busy,
                ),
            ]
            .into_iter()
            .collect(),
            state: Some(AppState::new(serde_json::json!({"in_call": true})).unwrap()),
        })
    }

    const MEETING: &str = r#""custom":{"text":"In a meeting","emoji":"📅","until":"2026-01-01T01:00:00Z"},"devices":{"mobile":"BUSY","web":"BUSY"},"state":{"in_call":true}"#;

    #[test]
    fn details_are_flat_fields_of_presence_frames_batch_entries_and_snapshot_users() {
        let mut event = (*shared("alice", 7)).event().clone();
        event.details = Some(meeting_details());
        let event = Arc::new(SharedEvent::new(event));
        assert_eq!(
            presence_frame(&event).as_str(),
            format!(
                r#"{{"type":"presence","scope":"acme","user_id":"alice","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":7,{MEETING}}}"#
            )
        );
        let batch = EventBatch::new("acme".into(), vec![event]);
        assert_eq!(
            batch_frames(&batch)[0].as_str(),
            format!(
                r#"{{"type":"presence_batch","scope":"acme","events":[{{"user_id":"alice","status":"AWAY","last_seen":"2026-01-01T00:00:00Z","v":7,{MEETING}}}]}}"#
            )
        );
        let mut alice = online("alice", 7);
        alice.details = Some(meeting_details());
        let snapshot = Snapshot {
            scope: "acme".into(),
            users: vec![alice, online("bob", 2)],
            epoch: "e1".into(),
            occupancy: None,
        };
        let expected = format!(
            r#"{{"type":"snapshot","scope":"acme","epoch":"e1","users":[{{"user_id":"alice","status":"ONLINE","last_seen":null,"v":7,{MEETING}}},{{"user_id":"bob","status":"ONLINE","last_seen":null,"v":2}}]}}"#
        );
        assert_eq!(ServerMessage::snapshot(&snapshot).to_json(), expected);
        assert_eq!(snapshot_frames(&snapshot), vec![expected]);
    }

    #[test]
    fn counts_go_out_as_occupancy_frames_and_in_every_part_of_a_counted_snapshot() {
        let counts = Occupancy {
            scope: "hall".into(),
            online: 290,
            away: 7,
            busy: 3,
            v: 4,
        };
        assert_eq!(
            ServerMessage::occupancy(&counts).to_json(),
            r#"{"type":"occupancy","scope":"hall","online":290,"away":7,"busy":3,"v":4}"#
        );
        let snapshot = Snapshot {
            scope: "hall".into(),
            users: vec![online("bob", 2)],
            epoch: "e1".into(),
            occupancy: Some(counts.clone()),
        };
        let whole = r#"{"type":"snapshot","scope":"hall","epoch":"e1","occupancy":{"online":290,"away":7,"busy":3,"v":4},"users":[{"user_id":"bob","status":"ONLINE","last_seen":null,"v":2}]}"#;
        assert_eq!(ServerMessage::snapshot(&snapshot).to_json(), whole);
        assert_eq!(snapshot_frames(&snapshot), vec![whole.to_owned()]);
        let named = Snapshot {
            users: (1..=40)
                .map(|v| {
                    let mut user = online(&format!("user-{v}"), v);
                    user.details = Some(meeting_details());
                    user
                })
                .collect(),
            ..snapshot
        };
        let frames = encode_snapshot(&named, 2048);
        assert!(frames.len() > 1, "split into {} frames", frames.len());
        let mut listed = 0;
        for frame in &frames {
            assert!(frame.len() <= 2048, "a frame of {} bytes", frame.len());
            let value: Value = serde_json::from_str(frame).expect("JSON");
            assert_eq!(value["occupancy"]["online"], 290, "every part: {frame}");
            for user in value["users"].as_array().expect("users") {
                assert_eq!(user["custom"]["emoji"], "📅");
                assert_eq!(user["devices"]["mobile"], "BUSY");
                listed += 1;
            }
        }
        assert_eq!(listed, 40);
    }

    #[test]
    fn a_large_batch_is_split_into_frames_within_the_budget_keeping_the_order() {
        let events: Vec<_> = (1..=40).map(|v| shared(&format!("user-{v}"), v)).collect();
        let frames = encode_batch(&"acme".into(), &events, 1024);
        assert!(frames.len() > 1, "split into {} frames", frames.len());
        let mut versions = Vec::new();
        for frame in &frames {
            assert!(frame.len() <= 1024, "a frame of {} bytes", frame.len());
            let value: Value = serde_json::from_str(frame).expect("JSON");
            assert_eq!(value["type"], "presence_batch");
            assert_eq!(value["scope"], "acme");
            for entry in value["events"].as_array().expect("events") {
                versions.push(entry["v"].as_u64().expect("v"));
            }
        }
        assert_eq!(versions, (1..=40).collect::<Vec<u64>>());
    }

    fn online(user: &str, v: u64) -> UserPresence {
        UserPresence {
            user_id: user.into(),
            status: presence_core::Status::Online,
            last_seen: None,
            v,
            details: None,
        }
    }

    #[test]
    fn a_small_snapshot_is_one_frame_as_the_spec_shows_it() {
        let snapshot = Snapshot {
            scope: "acme".into(),
            users: vec![online("alice", 3)],
            epoch: "e1".into(),
            occupancy: None,
        };
        assert_eq!(
            snapshot_frames(&snapshot),
            vec![ServerMessage::snapshot(&snapshot).to_json()]
        );
        let empty = Snapshot {
            scope: "acme".into(),
            users: Vec::new(),
            epoch: "e1".into(),
            occupancy: None,
        };
        assert_eq!(
            snapshot_frames(&empty),
            vec![r#"{"type":"snapshot","scope":"acme","epoch":"e1","users":[]}"#.to_owned()]
        );
    }

    #[test]
    fn a_large_snapshot_is_split_into_parts_marked_more_until_the_last() {
        let snapshot = Snapshot {
            scope: "acme".into(),
            users: (1..=40).map(|v| online(&format!("user-{v}"), v)).collect(),
            epoch: "e1".into(),
            occupancy: None,
        };
        let frames = encode_snapshot(&snapshot, 1024);
        assert!(frames.len() > 1, "split into {} frames", frames.len());
        let mut versions = Vec::new();
        for (index, frame) in frames.iter().enumerate() {
            assert!(frame.len() <= 1024, "a frame of {} bytes", frame.len());
            let value: Value = serde_json::from_str(frame).expect("JSON");
            assert_eq!(value["type"], "snapshot");
            assert_eq!(value["scope"], "acme");
            assert_eq!(value["epoch"], "e1", "every part says its epoch");
            let last = index + 1 == frames.len();
            assert_eq!(value.get("more").is_some(), !last, "frame {index}");
            if !last {
                assert_eq!(value["more"], true);
            }
            for user in value["users"].as_array().expect("users") {
                versions.push(user["v"].as_u64().expect("v"));
            }
        }
        assert_eq!(versions, (1..=40).collect::<Vec<u64>>());
    }
}
