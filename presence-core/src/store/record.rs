//! What a store keeps per user, and the operations that change it.
//!
//! Stores persist [`UserRecord`]s and apply [`UserOp`]s to them through
//! [`machine::apply`](super::machine::apply); they never decide a status themselves.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::details::{AppState, CustomStatus, Details, SessionKind};
use crate::event::UserPresence;
use crate::ids::{LoginId, NodeId, NodeName, ScopeId, SessionId, UserId};
use crate::status::{ManualChoice, Status};

/// Everything presence knows about one user.
///
/// Invariants kept by [`machine::apply`](super::machine::apply): `linger` is only set while
/// `sessions` is empty; a user with no session and no linger is shown
/// `OFFLINE`; `shown.version` grows by one with each change of
/// `shown.status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Open sessions (some may have lapsed since the last operation).
    pub sessions: Vec<SessionRecord>,
    /// The manual status, if one is set (it may have expired since).
    pub manual: Option<ManualChoice>,
    /// The custom status, if one is set (it may have expired since).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<CustomStatus>,
    /// The user hides when they were last seen: observers get none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hide_last_seen: bool,
    /// A pending grace period after the last session ended.
    pub linger: Option<Linger>,
    /// The user's newest activity, from any session.
    pub last_activity: Option<DateTime<Utc>>,
    /// The user's newest activity or session end (docs/rules.md#last-seen).
    pub last_seen: Option<DateTime<Utc>>,
    /// The scopes the user is seen in: those of the live sessions and of
    /// the lingers ([`UserRecord::linger`], [`UserRecord::scope_lingers`]).
    /// A scope no session is in any more is left once its linger has run
    /// out. Kept after the user's last session and linger end, so the
    /// `OFFLINE` reaches every watcher that saw the user, and queries can
    /// still show when the user was last seen there.
    pub scopes: Vec<ScopeId>,
    /// Scopes whose last session ended while the user stays present in
    /// others: still seen in until their linger ends (a reload there must
    /// not flicker), then left.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scope_lingers: Vec<ScopeLinger>,
    /// What observers were last told.
    pub shown: Shown,
    /// Logins logged out within `session_ttl`: none of them may open a
    /// session again (a request or socket that raced the logout, on any
    /// node, cannot bring the user back).
    #[serde(default)]
    pub retired_logins: Vec<RetiredLogin>,
}

impl UserRecord {
    /// `last_seen` as observers may know it: frozen while the user shows
    /// `OFFLINE`, so an invisible user's activity never leaks, and none
    /// for a user who hides it.
    pub(crate) fn observed_last_seen(&self) -> Option<DateTime<Utc>> {
        if self.shown.last_seen_hidden {
            None
        } else if self.shown.status == Status::Offline {
            self.shown.last_seen
        } else {
            self.last_seen
        }
    }

    /// Whether the user is present: a session, or a linger pending (the
    /// user's, or one of a scope's). A present user is a member of every
    /// scope in [`UserRecord::scopes`]; an absent one of none.
    pub fn is_present(&self) -> bool {
        !self.sessions.is_empty() || self.linger.is_some() || !self.scope_lingers.is_empty()
    }
}

/// A scope the user's sessions left while the user stays present
/// elsewhere, seen in for the linger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeLinger {
    /// The scope.
    pub scope: ScopeId,
    /// When the user leaves it.
    pub until: DateTime<Utc>,
    /// The login whose session ended there last: its logout ends the
    /// linger at once.
    pub login: LoginId,
}

/// A login that logged out, refused until `until`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredLogin {
    /// The login.
    pub login: LoginId,
    /// When it may be forgotten.
    pub until: DateTime<Utc>,
}

/// The status observers were last told, with its version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// The effective status as observers see it (INVISIBLE shows OFFLINE).
    pub status: Status,
    /// `last_seen` at the moment of that change.
    pub last_seen: Option<DateTime<Utc>>,
    /// Grows by one with every change observers are told of (status,
    /// details, scopes joined or left); 0 before the first.
    pub version: u64,
    /// The details shown with `status` (none while `OFFLINE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Arc<Details>>,
    /// Whether `last_seen` was hidden from observers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub last_seen_hidden: bool,
}

impl Default for Shown {
    fn default() -> Self {
        Self {
            status: Status::Offline,
            last_seen: None,
            version: 0,
            details: None,
            last_seen_hidden: false,
        }
    }
}

/// One session as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The session's id.
    pub id: SessionId,
    /// The login it belongs to (logout ends the sessions of one login).
    pub login: LoginId,
    /// The node that holds it.
    pub node: NodeId,
    /// The scopes its user belongs to, as the host said when opening it.
    pub scopes: Vec<ScopeId>,
    /// Free-form facts the host attached (device, user agent, …).
    pub metadata: BTreeMap<String, String>,
    /// When it was opened.
    pub opened_at: DateTime<Utc>,
    /// Its newest heartbeat as stored; a [`Liveness::Heartbeats`] session
    /// is live while this is younger than `session_ttl`.
    pub last_heartbeat: DateTime<Utc>,
    /// What keeps it live.
    #[serde(default, skip_serializing_if = "Liveness::is_heartbeats")]
    pub liveness: Liveness,
    /// What kind of client it is, as the host said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SessionKind>,
    /// The newest activity in this session (its kind's status); `None`
    /// reads as `opened_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<DateTime<Utc>>,
    /// The app state the session set, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<(AppState, DateTime<Utc>)>,
}

/// What keeps a session live, and so who ends it when its client goes
/// silent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Liveness {
    /// Its heartbeats, written to the store: live while the newest is
    /// younger than `session_ttl`, lapsed by whichever node sweeps it
    /// then. For sessions any node may prove live (a login's HTTP
    /// session, whose requests reach any node).
    #[default]
    Heartbeats,
    /// The node holding it: its heartbeats stay in that node's memory
    /// (they cost the store nothing), and the node ends it as a lapse
    /// ([`UserOp::Lapse`]) once its client is silent for `session_ttl`.
    /// While the node's lease lives the store never lapses it by time;
    /// once the lease runs out (the node died), any node ends it. For a
    /// socket, which only its node hears.
    HeldByNode,
}

impl Liveness {
    /// Whether this is [`Liveness::Heartbeats`] (the stored default).
    pub fn is_heartbeats(&self) -> bool {
        *self == Liveness::Heartbeats
    }
}

/// The grace period after a user's last session ended (docs/rules.md#linger).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linger {
    /// When the grace period ends and the user goes `OFFLINE`.
    pub until: DateTime<Utc>,
    /// The login whose session ended last: its logout cancels the grace.
    pub login: LoginId,
}

/// A session to open, as the host describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// The new session's id (unique; see [`SessionId::random`]).
    pub id: SessionId,
    /// The login it belongs to.
    pub login: LoginId,
    /// The node that holds it.
    pub node: NodeId,
    /// The scopes its user belongs to.
    pub scopes: Vec<ScopeId>,
    /// Free-form facts to keep with it.
    pub metadata: BTreeMap<String, String>,
    /// What keeps it live.
    #[serde(default)]
    pub liveness: Liveness,
    /// What kind of client it is (watchers see a status per kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<SessionKind>,
}

/// One change to one user's presence. Stores apply it atomically with
/// [`machine::apply`](super::machine::apply).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserOp {
    /// Open a session (or refresh it, if one with that id is open). Counts as
    /// activity and cancels a pending linger.
    Open(NewSession),
    /// Register again a session this node still holds, after the store lost
    /// its data: like [`UserOp::Open`], but with the session's real last
    /// heartbeat (never a fresher one, so a half-open socket still lapses
    /// on time), refused when that heartbeat has already lapsed, and not
    /// activity unless the store lost everything it knew of the user.
    Restore {
        /// The session as it was opened.
        session: NewSession,
        /// Its newest heartbeat, as its holder heard it.
        last_heartbeat: DateTime<Utc>,
    },
    /// The user did something in this session; also proves it live.
    Activity {
        /// The session it came from.
        session: SessionId,
    },
    /// A session ended (closed cleanly or lost); the last one starts the
    /// linger.
    Close {
        /// The session that ended.
        session: SessionId,
        /// Close it only if this node still holds it: a handle whose
        /// session was resumed on another node must not close it there.
        /// `None` closes it wherever it is held.
        held_by: Option<NodeName>,
    },
    /// End every session of one login at once, with no linger.
    Logout {
        /// The login that logged out.
        login: LoginId,
    },
    /// End every session of the user at once, with no linger.
    LogoutEverywhere,
    /// Set (`Some`) or clear (`None`) the manual status.
    SetManual(Option<ManualChoice>),
    /// Set (`Some`) or clear (`None`) the custom status, keeping the
    /// manual status.
    SetCustom(Option<CustomStatus>),
    /// Set both the manual status and the custom status, as one change.
    SetStatus {
        /// The manual status (`None` clears it).
        manual: Option<ManualChoice>,
        /// The custom status (`None` clears it).
        custom: Option<CustomStatus>,
    },
    /// Set (`Some`) or clear (`None`) one session's app state.
    SetState {
        /// The session.
        session: SessionId,
        /// Its new state.
        state: Option<AppState>,
    },
    /// Hide (`true`) or show when the user was last seen.
    HideLastSeen(bool),
    /// End the sessions that earlier incarnations of `node` left behind:
    /// those of `node`'s name held by any incarnation other than `node`'s
    /// own and those in `alive` (processes of the same node still running,
    /// as during a rolling deploy).
    ClearNode {
        /// The node as it runs now.
        node: NodeId,
        /// Other incarnations of the node that are still alive (their
        /// lease has not run out): their sessions stay.
        alive: Vec<u64>,
    },
    /// End the sessions held by exactly this incarnation: it is shutting
    /// down (another process of the same node may run beside it), or its
    /// lease ran out (it died).
    EndIncarnation {
        /// The incarnation.
        node: NodeId,
        /// When they ended, if before now: the instant the process's
        /// lease ran out, the last its sessions were vouched for. `None`
        /// (or a time to come) is now.
        #[serde(default)]
        at: Option<DateTime<Utc>>,
    },
    /// The holder of [`Liveness::HeldByNode`] sessions of the user no
    /// longer vouches for them (their clients went silent, or their handles
    /// went away without a close reaching the store): from now on each
    /// lives by its heartbeats, the newest being the one given, and so
    /// lapses a `session_ttl` after it (at once, if that has passed; those
    /// lapsing together end in one change, as lapses do). A session
    /// `held_by` no longer holds (its client resumed it elsewhere) is left
    /// alone.
    Lapse {
        /// Each session, with its newest heartbeat as its holder heard it.
        sessions: Vec<(SessionId, DateTime<Utc>)>,
        /// The process that held them.
        held_by: NodeId,
    },
    /// Apply what time alone changed: lapsed sessions, a finished linger,
    /// an expired manual status, idleness.
    Refresh,
}

/// A user as a store reads them back: what observers may see, and the
/// scopes the user was last seen in (so a query can refuse to show a user
/// to watchers of a scope they are not in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserView {
    /// What observers may see.
    pub presence: UserPresence,
    /// The user's scopes ([`UserRecord::scopes`]).
    pub scopes: Vec<ScopeId>,
    /// The user's open sessions, each with the process that holds it: a
    /// node checks the sessions it holds against them after its feed lost
    /// messages.
    pub sessions: Vec<(SessionId, NodeId)>,
}

impl UserView {
    /// The view of `record`.
    pub fn of(user_id: UserId, record: &UserRecord) -> Self {
        Self {
            presence: UserPresence::of(user_id, record),
            scopes: record.scopes.clone(),
            sessions: record
                .sessions
                .iter()
                .map(|s| (s.id.clone(), s.node.clone()))
                .collect(),
        }
    }
}
