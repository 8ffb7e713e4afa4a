//! The presence state machine: a pure function of a user's record, one
//! operation and the time.
//!
//! No I/O and no clock reads happen here: `now` is an argument. Every store
//! runs its changes through [`apply`] inside whatever makes them atomic for
//! one user (a mutex, a row lock, a compare-and-set), so the rules of
//! docs/rules.md#sessions and docs/rules.md#effective-status live in exactly one place.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::PresenceConfig;
use crate::details::{AppState, Details, Devices, MAX_MERGED_STATE_BYTES};
use crate::ids::{LoginId, NodeName, ScopeId, SessionId, UserId};
use crate::status::{ManualStatus, Status};
use crate::store::{
    Linger, Liveness, NewSession, RetiredLogin, ScopeLinger, SessionRecord, Shown, Transition,
    UserOp, UserRecord,
};

/// Why an operation could not be applied. The record must then be left as
/// it was (stores discard the modified copy).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    /// The session is not open (it ended, lapsed, or never existed).
    #[error("session not found (ended, lapsed or never opened)")]
    SessionNotFound,
    /// Opening one more session would pass `max_sessions_per_user`.
    #[error("too many sessions for one user (the limit is {limit})")]
    TooManySessions {
        /// The configured limit.
        limit: usize,
    },
    /// The login logged out (within `session_ttl`); it opens nothing more.
    #[error("this login has logged out")]
    LoggedOut,
}

/// `time + by`, saturating instead of overflowing.
pub fn later(time: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(by)
        .ok()
        .and_then(|by| time.checked_add_signed(by))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Whether a session is live at `now`: its node holds it
/// ([`Liveness::HeldByNode`]), or its newest heartbeat is younger than
/// `session_ttl`.
pub fn is_live(session: &SessionRecord, now: DateTime<Utc>, config: &PresenceConfig) -> bool {
    lapses_at(session, config).is_none_or(|at| at > now)
}

/// When a session lapses if no heartbeat comes: never by time while its
/// node holds it.
fn lapses_at(session: &SessionRecord, config: &PresenceConfig) -> Option<DateTime<Utc>> {
    match session.liveness {
        Liveness::Heartbeats => Some(later(session.last_heartbeat, config.session_ttl)),
        Liveness::HeldByNode => None,
    }
}

/// The effective status observers see at `now` (docs/rules.md#effective-status), for a record
/// that may not be up to date with time.
pub fn shown_status(record: &UserRecord, now: DateTime<Utc>, config: &PresenceConfig) -> Status {
    let mut current = record.clone();
    settle(&mut current, now, config);
    evaluate(&current, now, config)
}

/// Applies `op` to `record` at `now` and says what changed.
///
/// On `Err` the record is left untouched. On `Ok` the record is the user's new state, to be stored as it is, and
/// the transition tells whether observers must hear of it
/// ([`Transition::changed`]) and when time alone will change the user next
/// ([`Transition::next_deadline`]).
pub fn apply(
    user: &UserId,
    record: &mut UserRecord,
    op: &UserOp,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) -> Result<Transition, OpError> {
    check(record, op, now, config)?;
    let holders: Vec<(SessionId, NodeName)> = record
        .sessions
        .iter()
        .map(|s| (s.id.clone(), s.node.name.clone()))
        .collect();
    let from = record.shown.status;
    let seen_in: Vec<ScopeId> = if record.is_present() {
        record.scopes.clone()
    } else {
        Vec::new()
    };
    let sessions_before = record.sessions.len();
    if let UserOp::Lapse { sessions, held_by } = op {
        // Released before settling, so that they lapse in order with the
        // others (the linger goes to the session that ended last).
        for (session, heard_at) in sessions {
            release(record, session, *heard_at, held_by);
        }
    }
    let mut ended_sessions = settle(record, now, config);
    let mut moved_sessions = Vec::new();
    let open_before_op = record.sessions.len();

    match op {
        UserOp::Open(new) => {
            open(record, new, now, now, &mut moved_sessions);
            // Opening is activity, in this session too.
            if let Some(session) = record.sessions.iter_mut().find(|s| s.id == new.id) {
                session.last_activity = Some(now);
            }
            touch(record, now);
        }
        UserOp::Restore {
            session,
            last_heartbeat,
        } => {
            let lost = record.last_activity.is_none();
            open(record, session, *last_heartbeat, now, &mut moved_sessions);
            // Activity only for a record the store lost entirely (nothing
            // else is known of the user): proving a session live is not.
            if lost {
                touch(record, now);
            }
        }
        UserOp::Activity { session } => {
            if let Some(session) = record.sessions.iter_mut().find(|s| s.id == *session) {
                session.last_heartbeat = now;
                session.last_activity = Some(now);
            }
            touch(record, now);
        }
        UserOp::Close { session, held_by } => {
            let held_here = |s: &SessionRecord| held_by.as_ref().is_none_or(|n| s.node.name == *n);
            if let Some(index) = record
                .sessions
                .iter()
                .position(|s| s.id == *session && held_here(s))
            {
                let closed = record.sessions.swap_remove(index);
                ended_sessions.push(closed.id.clone());
                record.last_seen = record.last_seen.max(Some(now));
                end_session(record, &closed, now, config);
            }
        }
        UserOp::Logout { login } => {
            retire(record, login.clone(), now, config);
            let removed = remove_sessions(record, &mut ended_sessions, |s| s.login == *login);
            if record.linger.as_ref().is_some_and(|l| l.login == *login) {
                record.linger = None;
            }
            // A logout ends its login's lingers too: what it alone kept the
            // user in is left at once (a scope another login's session or
            // scope linger keeps the user in stays). The user's linger does
            // not keep a scope that lingered on its own: that scope was
            // left before the user's last session ended.
            let mut dropped = Vec::new();
            record.scope_lingers.retain(|l| {
                let ends = l.login == *login;
                if ends {
                    dropped.push(l.scope.clone());
                }
                !ends
            });
            let UserRecord {
                scopes,
                sessions,
                scope_lingers,
                ..
            } = record;
            scopes
                .retain(|scope| !dropped.contains(scope) || keeps(sessions, scope_lingers, scope));
            // While the user stays present, what no session nor linger keeps
            // the user in is left at once; once absent, the scopes are kept
            // (the OFFLINE reaches them, and queries can still answer).
            if record.linger.is_none()
                && (!record.sessions.is_empty() || !record.scope_lingers.is_empty())
            {
                keep_covered_scopes(record);
            }
            if removed {
                record.last_seen = Some(now);
            }
        }
        UserOp::LogoutEverywhere => {
            let logins: Vec<LoginId> = record.sessions.iter().map(|s| s.login.clone()).collect();
            for login in logins {
                retire(record, login, now, config);
            }
            if remove_sessions(record, &mut ended_sessions, |_| true) {
                record.last_seen = Some(now);
            }
            record.linger = None;
            record.scope_lingers.clear();
        }
        UserOp::SetManual(choice) => {
            record.manual = choice.filter(|c| c.holds_at(now));
        }
        UserOp::SetCustom(custom) => {
            record.custom = custom.clone().filter(|c| c.holds_at(now));
        }
        UserOp::SetStatus { manual, custom } => {
            record.manual = manual.filter(|c| c.holds_at(now));
            record.custom = custom.clone().filter(|c| c.holds_at(now));
        }
        UserOp::SetState { session, state } => {
            // Stamped after every other session's state, so the state set
            // last wins its keys even at one instant (a manual or coarse
            // clock) or after the clock stepped back; a microsecond, as
            // stores keep times at least that fine.
            let newest = record
                .sessions
                .iter()
                .filter_map(|s| s.state.as_ref().map(|(_, at)| *at))
                .max();
            let at = newest.map_or(now, |newest| now.max(newest + TimeDelta::microseconds(1)));
            if let Some(session) = record.sessions.iter_mut().find(|s| s.id == *session) {
                session.state = state.clone().map(|state| (state, at));
            }
        }
        UserOp::HideLastSeen(hide) => {
            record.hide_last_seen = *hide;
        }
        UserOp::ClearNode { node, alive } => {
            let stale = |s: &SessionRecord| {
                s.node.name == node.name
                    && s.node.incarnation != node.incarnation
                    && !alive.contains(&s.node.incarnation)
            };
            end_where(record, &mut ended_sessions, stale, now, config);
        }
        UserOp::EndIncarnation { node, at } => {
            let at = at.map_or(now, |at| at.min(now));
            end_where(record, &mut ended_sessions, |s| s.node == *node, at, config);
            // Ended in the past: a linger from then may be over.
            end_lingers(record, now);
        }
        UserOp::Refresh | UserOp::Lapse { .. } => {}
    }

    let to = evaluate(record, now, config);
    let now_in: &[ScopeId] = if record.is_present() {
        &record.scopes
    } else {
        &[]
    };
    // Watchers who see the user OFFLINE (invisible, idle, gone) are told
    // nothing of joins, and nothing more of leaves.
    let joined_scopes: Vec<ScopeId> = if to == Status::Offline {
        Vec::new()
    } else {
        difference(now_in, &seen_in)
    };
    let left_scopes: Vec<ScopeId> = if from == Status::Offline {
        Vec::new()
    } else {
        difference(&seen_in, &record.scopes)
    };
    let details = details(record, to, now, config);
    let same_details = details.as_ref() == record.shown.details.as_deref();
    let updated = !same_details || record.hide_last_seen != record.shown.last_seen_hidden;
    if to != from || updated || !joined_scopes.is_empty() || !left_scopes.is_empty() {
        record.shown = Shown {
            status: to,
            last_seen: record.last_seen,
            version: record.shown.version + 1,
            // Unchanged details keep their allocation, shared by the
            // events and views that hold them already.
            details: if same_details {
                record.shown.details.take()
            } else {
                details.map(Arc::new)
            },
            last_seen_hidden: record.hide_last_seen,
        };
    }
    Ok(Transition {
        user: user.clone(),
        from,
        to,
        version: record.shown.version,
        last_seen: (!record.shown.last_seen_hidden)
            .then_some(record.shown.last_seen)
            .flatten(),
        details: record.shown.details.clone(),
        updated,
        at: now,
        scopes: record.scopes.clone(),
        joined_scopes,
        left_scopes,
        present: record.is_present(),
        first_session: open_before_op == 0 && !record.sessions.is_empty(),
        last_session: sessions_before > 0 && record.sessions.is_empty(),
        ended_nodes: ended_sessions
            .iter()
            .map(|id| {
                holders
                    .iter()
                    .find(|(held, _)| held == id)
                    .map(|(_, node)| node.clone())
                    .unwrap_or_else(|| NodeName::from(""))
            })
            .collect(),
        ended_sessions,
        moved_sessions,
        next_deadline: next_deadline(record, now, config),
        kept: None,
    })
}

/// Opens `new` (or refreshes it, if a session with its id is open), heard
/// from at `heard_at`: it cancels the user's linger and its scopes'
/// lingers, and the scopes the user's linger kept that it is not in linger
/// on by themselves until that linger would have ended.
fn open(
    record: &mut UserRecord,
    new: &NewSession,
    heard_at: DateTime<Utc>,
    now: DateTime<Utc>,
    moved_sessions: &mut Vec<(SessionId, NodeName)>,
) {
    if let Some(session) = record.sessions.iter_mut().find(|s| s.id == new.id) {
        session.last_heartbeat = session.last_heartbeat.max(heard_at);
        union_into(&mut session.scopes, &new.scopes);
        // A client resuming its session on another node: that node
        // holds it now, and the old holder must let go of it.
        if session.node.name != new.node.name {
            moved_sessions.push((session.id.clone(), session.node.name.clone()));
        }
        session.node = new.node.clone();
        session.liveness = new.liveness;
    } else {
        // Settled already: a user whose linger ran out just now (before any
        // sweep saw it) is absent too, and starts with this session's
        // scopes; those they were in are told they left.
        if !record.is_present() {
            record.scopes.clear();
            record.scope_lingers.clear();
        }
        // Exact growth: most users hold one or two sessions, and a
        // record lives as long as its user is present.
        record.sessions.reserve_exact(1);
        record.sessions.push(SessionRecord {
            id: new.id.clone(),
            login: new.login.clone(),
            node: new.node.clone(),
            scopes: new.scopes.clone(),
            metadata: new.metadata.clone(),
            opened_at: now,
            last_heartbeat: heard_at,
            liveness: new.liveness,
            kind: new.kind.clone(),
            last_activity: (heard_at == now).then_some(now).or(record.last_activity),
            state: None,
        });
    }
    if let Some(linger) = record.linger.take() {
        // The user's linger covers the scopes its last session was in; a
        // scope lingering on its own keeps its own end and login.
        for scope in &record.scopes {
            if !new.scopes.contains(scope)
                && !record.scope_lingers.iter().any(|l| l.scope == *scope)
            {
                record.scope_lingers.push(ScopeLinger {
                    scope: scope.clone(),
                    until: linger.until,
                    login: linger.login.clone(),
                });
            }
        }
    }
    record
        .scope_lingers
        .retain(|linger| !new.scopes.contains(&linger.scope));
    union_into(&mut record.scopes, &new.scopes);
}

/// The holder of a [`Liveness::HeldByNode`] session lets go of it: it
/// lives by its heartbeats from now on, the newest being `heard_at` (or the
/// stored one, if newer).
fn release(
    record: &mut UserRecord,
    session: &SessionId,
    heard_at: DateTime<Utc>,
    held_by: &crate::ids::NodeId,
) {
    if let Some(session) = record
        .sessions
        .iter_mut()
        .find(|s| s.id == *session && s.node == *held_by)
    {
        session.liveness = Liveness::Heartbeats;
        session.last_heartbeat = session.last_heartbeat.max(heard_at);
    }
}

/// Records a heartbeat of a live session: it proves liveness, never
/// activity, and never changes what observers see. A session whose last
/// heartbeat is already `session_ttl` old is dead and stays dead.
pub fn heartbeat(
    record: &mut UserRecord,
    session: &SessionId,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) -> Result<(), OpError> {
    let session = record
        .sessions
        .iter_mut()
        .find(|s| s.id == *session && is_live(s, now, config))
        .ok_or(OpError::SessionNotFound)?;
    session.last_heartbeat = session.last_heartbeat.max(now);
    Ok(())
}

/// Refuses the login's sessions for `session_ttl` from `now`.
fn retire(record: &mut UserRecord, login: LoginId, now: DateTime<Utc>, config: &PresenceConfig) {
    let until = later(now, config.session_ttl);
    record.retired_logins.retain(|r| r.login != login);
    record.retired_logins.push(RetiredLogin { login, until });
}

/// Refuses an operation that cannot apply, before anything is changed.
fn check(
    record: &UserRecord,
    op: &UserOp,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) -> Result<(), OpError> {
    let mut live = record.sessions.iter().filter(|s| is_live(s, now, config));
    match op {
        UserOp::Restore {
            session,
            last_heartbeat,
        } if later(*last_heartbeat, config.session_ttl) <= now
            && !record.sessions.iter().any(|s| s.id == session.id) =>
        {
            // Its last heartbeat is a session_ttl old: it lapsed while the
            // store was away, and stays dead.
            return Err(OpError::SessionNotFound);
        }
        UserOp::Open(new)
        | UserOp::Restore {
            session: new,
            last_heartbeat: _,
        } => {
            if record
                .retired_logins
                .iter()
                .any(|r| r.login == new.login && r.until > now)
            {
                return Err(OpError::LoggedOut);
            }
            let (reopen, count) = live.fold((false, 0), |(reopen, count), s| {
                (reopen || s.id == new.id, count + 1)
            });
            if !reopen && count >= config.max_sessions_per_user {
                return Err(OpError::TooManySessions {
                    limit: config.max_sessions_per_user,
                });
            }
        }
        UserOp::Activity { session } | UserOp::SetState { session, .. }
            if !live.any(|s| s.id == *session) =>
        {
            return Err(OpError::SessionNotFound);
        }
        _ => {}
    }
    Ok(())
}

/// Brings a record up to date with `now`: removes lapsed sessions, each
/// ending at the instant it lapsed, oldest first (the last one starts the
/// linger from then), and drops lingers and a manual status that ran out.
/// Returns the lapsed sessions.
fn settle(record: &mut UserRecord, now: DateTime<Utc>, config: &PresenceConfig) -> Vec<SessionId> {
    let mut lapsed = Vec::new();
    loop {
        // Sessions that lapse at one instant end in order of login, so
        // the linger goes to the greatest and the answer does not depend
        // on storage order.
        let next = record
            .sessions
            .iter()
            .enumerate()
            .filter_map(|(index, s)| {
                let at = lapses_at(s, config).filter(|at| *at <= now)?;
                Some((at, &s.login, &s.id, index))
            })
            .min()
            .map(|(at, _, _, index)| (index, at));
        let Some((index, lapsed_at)) = next else {
            break;
        };
        end_lingers(record, lapsed_at);
        let session = record.sessions.swap_remove(index);
        // A lapsed session was last seen at its newest heartbeat.
        record.last_seen = record.last_seen.max(Some(session.last_heartbeat));
        lapsed.push(session.id.clone());
        end_session(record, &session, lapsed_at, config);
    }
    end_lingers(record, now);
    if record.manual.is_some_and(|m| !m.holds_at(now)) {
        record.manual = None;
    }
    if record.custom.as_ref().is_some_and(|c| !c.holds_at(now)) {
        record.custom = None;
    }
    record.retired_logins.retain(|r| r.until > now);
    lapsed
}

/// Ends the lingers that ran out by `at`: a scope's linger leaves the scope,
/// the user's linger leaves the user absent.
fn end_lingers(record: &mut UserRecord, at: DateTime<Utc>) {
    if record.scope_lingers.iter().any(|l| l.until <= at) {
        let mut left = Vec::new();
        record.scope_lingers.retain(|l| {
            let over = l.until <= at;
            if over {
                left.push(l.scope.clone());
            }
            !over
        });
        record.scopes.retain(|scope| !left.contains(scope));
    }
    if record.linger.as_ref().is_some_and(|l| l.until <= at) {
        record.linger = None;
        record.scope_lingers.clear();
    }
}

/// After `session` ended at `at` (closed, lapsed, cleared; not a logout):
/// the last session starts the user's linger; otherwise each of its scopes
/// no other session is in lingers by itself.
fn end_session(
    record: &mut UserRecord,
    session: &SessionRecord,
    at: DateTime<Utc>,
    config: &PresenceConfig,
) {
    if record.sessions.is_empty() {
        start_linger(record, at, session.login.clone(), config);
        return;
    }
    for scope in &session.scopes {
        let covered = keeps(&record.sessions, &record.scope_lingers, scope);
        if covered {
            continue;
        }
        if config.linger.is_zero() {
            record.scopes.retain(|s| s != scope);
        } else {
            record.scope_lingers.push(ScopeLinger {
                scope: scope.clone(),
                until: later(at, config.linger),
                login: session.login.clone(),
            });
        }
    }
}

/// Ends, at `now`, every session matching `ended` (one at a time, as if
/// each had closed: the user lingers). Sessions ending together end in
/// order of login, so the linger goes to the greatest, as for lapses.
fn end_where(
    record: &mut UserRecord,
    ended_sessions: &mut Vec<SessionId>,
    ended: impl Fn(&SessionRecord) -> bool,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) {
    while let Some((index, _)) = record
        .sessions
        .iter()
        .enumerate()
        .filter(|(_, s)| ended(s))
        .min_by(|(_, a), (_, b)| (&a.login, &a.id).cmp(&(&b.login, &b.id)))
    {
        let session = record.sessions.swap_remove(index);
        ended_sessions.push(session.id.clone());
        record.last_seen = record.last_seen.max(Some(now));
        end_session(record, &session, now, config);
    }
}

/// Leaves, at once, every scope no live session is in and no linger keeps.
fn keep_covered_scopes(record: &mut UserRecord) {
    let UserRecord {
        scopes,
        sessions,
        scope_lingers,
        ..
    } = record;
    scopes.retain(|scope| keeps(sessions, scope_lingers, scope));
}

/// Whether a session or a scope's linger keeps the user in `scope`.
fn keeps(sessions: &[SessionRecord], scope_lingers: &[ScopeLinger], scope: &ScopeId) -> bool {
    sessions.iter().any(|s| s.scopes.contains(scope))
        || scope_lingers.iter().any(|l| l.scope == *scope)
}

/// docs/rules.md#precedence, in order, for a settled record.
fn evaluate(record: &UserRecord, now: DateTime<Utc>, config: &PresenceConfig) -> Status {
    if !record.is_present() {
        return Status::Offline;
    }
    let idle_since = record.last_activity.unwrap_or(now);
    if later(idle_since, config.offline_after) <= now {
        return Status::Offline;
    }
    match record.manual.map(|m| m.status) {
        Some(ManualStatus::Invisible) => Status::Offline,
        Some(ManualStatus::Busy) => Status::Busy,
        Some(ManualStatus::Away) => Status::Away,
        None if later(idle_since, config.away_after) <= now => Status::Away,
        None => Status::Online,
    }
}

/// The earliest instant after `now` at which time alone changes a settled
/// record: a session lapses, the linger ends, a manual status expires, or
/// the user turns away or offline from idleness. `None` when nothing will.
fn next_deadline(
    record: &UserRecord,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) -> Option<DateTime<Utc>> {
    if !record.is_present() {
        return None;
    }
    let lapses = record.sessions.iter().filter_map(|s| lapses_at(s, config));
    let linger_end = record.linger.as_ref().map(|l| l.until);
    let scope_linger_ends = record.scope_lingers.iter().map(|l| l.until);
    let manual_end = record.manual.and_then(|m| m.until);
    let custom_end = record.custom.as_ref().and_then(|c| c.until);
    // A kind's status turns AWAY on its own sessions' idleness.
    let kinds_away = record
        .sessions
        .iter()
        .filter(|s| s.kind.is_some() && record.manual.is_none())
        .map(|s| later(session_activity(s), config.away_after));
    let idle = record.last_activity.into_iter().flat_map(|active| {
        let away = record
            .manual
            .is_none()
            .then(|| later(active, config.away_after));
        [away, Some(later(active, config.offline_after))]
            .into_iter()
            .flatten()
    });
    lapses
        .chain(linger_end)
        .chain(scope_linger_ends)
        .chain(manual_end)
        .chain(custom_end)
        .chain(kinds_away)
        .chain(idle)
        .filter(|deadline| *deadline > now)
        .min()
}

fn touch(record: &mut UserRecord, now: DateTime<Utc>) {
    record.last_activity = record.last_activity.max(Some(now));
    record.last_seen = record.last_seen.max(Some(now));
}

fn start_linger(
    record: &mut UserRecord,
    ended_at: DateTime<Utc>,
    login: LoginId,
    config: &PresenceConfig,
) {
    record.linger = (!config.linger.is_zero()).then(|| Linger {
        until: later(ended_at, config.linger),
        login,
    });
}

fn remove_sessions(
    record: &mut UserRecord,
    ended: &mut Vec<SessionId>,
    mut matches: impl FnMut(&SessionRecord) -> bool,
) -> bool {
    let before = ended.len();
    record.sessions.retain(|s| {
        let remove = matches(s);
        if remove {
            ended.push(s.id.clone());
        }
        !remove
    });
    ended.len() > before
}

/// The scopes of `these` not in `but_not`.
fn difference(these: &[ScopeId], but_not: &[ScopeId]) -> Vec<ScopeId> {
    these
        .iter()
        .filter(|scope| !but_not.contains(scope))
        .cloned()
        .collect()
}

fn union_into(into: &mut Vec<ScopeId>, more: &[ScopeId]) {
    for scope in more {
        if !into.contains(scope) {
            into.reserve_exact(1);
            into.push(scope.clone());
        }
    }
}

/// When a session was last active: its own newest activity, or its opening.
fn session_activity(session: &SessionRecord) -> DateTime<Utc> {
    session.last_activity.unwrap_or(session.opened_at)
}

/// What observers see of a settled record beyond its status `shown`
/// (docs/rules.md#details): nothing while it shows `OFFLINE` (gone, idle
/// or invisible), so none of it leaks.
fn details(
    record: &UserRecord,
    shown: Status,
    now: DateTime<Utc>,
    config: &PresenceConfig,
) -> Option<Details> {
    if shown == Status::Offline {
        return None;
    }
    let mut devices = Devices::default();
    for session in &record.sessions {
        let Some(kind) = &session.kind else { continue };
        let status = match record.manual.map(|m| m.status) {
            Some(ManualStatus::Busy) => Status::Busy,
            Some(ManualStatus::Away) => Status::Away,
            _ if later(session_activity(session), config.away_after) <= now => Status::Away,
            _ => Status::Online,
        };
        devices.note(kind, status);
    }
    let mut states: Vec<_> = record
        .sessions
        .iter()
        .filter_map(|s| s.state.as_ref().map(|(state, at)| (*at, &s.id, state)))
        .collect();
    // Newest first: a key keeps the value set last, and the merge stops
    // before a state that would take it past its bound.
    states.sort_by(|a, b| (b.0, b.1).cmp(&(a.0, a.1)));
    let state = if states.is_empty() {
        None
    } else {
        let mut merged = serde_json::Map::new();
        let mut size = 2;
        for (_, _, state) in states {
            let Some(grown) = state.merge_under(&mut merged, MAX_MERGED_STATE_BYTES - size) else {
                break;
            };
            size += grown;
        }
        AppState::of_map(&merged, MAX_MERGED_STATE_BYTES).ok()
    };
    let details = Details {
        custom: record.custom.clone(),
        devices,
        state,
    };
    (!details.is_empty()).then_some(details)
}
