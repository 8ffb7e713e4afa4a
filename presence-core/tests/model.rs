//! Model-based property test of the presence service.
//!
//! Random sequences of operations (open, close, heartbeat, activity, manual
//! status, custom status, logout, logout everywhere, time passing) are run against a real
//! [`Presence`] on a [`ManualClock`] and against a small reference model
//! written from docs/rules.md (not from `store::machine`). After every step the
//! events a watcher received, every user's status and version, and the
//! result of the operation must be what the model predicts. What observers
//! see includes the custom status's text and the status of each kind of
//! device (slot 0 is a web session, slot 1 a mobile one, slot 2 has no
//! kind): a change of those alone is one event with the next version.
//!
//! The model settles eagerly (every step, every user) where the library
//! settles lazily; both must agree on everything observers can see.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::{
    CustomStatus, Delivery, Details, LoginId, ManualClock, Presence, PresenceConfig,
    RequestedStatus, ScopeId, SessionHandle, SessionId, SessionKind, SessionSpec, Status,
    Subscription, UserId,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

// Thresholds, in milliseconds.
const HEARTBEAT: i64 = 10_000;
const TTL: i64 = 25_000;
const AWAY: i64 = 60_000;
const OFFLINE: i64 = 300_000;
const LINGER: i64 = 8_000;

const USERS: usize = 3;
const SLOTS: usize = 3;
const LOGINS: usize = 2;

/// Time steps, chosen to land on and around the thresholds.
const ADVANCES_MS: &[i64] = &[
    1, 1_000, 7_000, 8_000, 10_000, 15_000, 17_000, 24_000, 24_999, 25_000, 25_001, 26_000, 33_000,
    35_000, 59_000, 60_000, 61_000, 240_000, 299_000, 300_000, 301_000,
];

/// The custom status texts users pick from.
const TEXTS: &[&str] = &["lunch", "in a meeting"];

/// The kind of each session slot.
fn kind_of(slot: usize) -> Option<&'static str> {
    match slot {
        0 => Some("web"),
        1 => Some("mobile"),
        _ => None,
    }
}

/// What observers see besides the status: the custom text with its expiry
/// (ms since the start), and each kind of device with its status.
type Extra = (Option<(String, Option<i64>)>, Vec<(String, Status)>);

fn extra_of(details: Option<&Details>, start: DateTime<Utc>) -> Extra {
    let Some(details) = details else {
        return (None, Vec::new());
    };
    (
        details.custom.as_ref().map(|c| {
            (
                c.text.clone().unwrap_or_default(),
                c.until.map(|until| (until - start).num_milliseconds()),
            )
        }),
        details
            .devices
            .iter()
            .map(|(kind, status)| (kind.to_string(), *status))
            .collect(),
    )
}

/// Seconds from now at which a manual status may expire.
const EXPIRIES_S: &[i64] = &[1, 7, 8, 25, 59, 60, 61, 300];

fn ms(value: i64) -> Duration {
    Duration::from_millis(u64::try_from(value).expect("positive"))
}

fn config() -> PresenceConfig {
    PresenceConfig {
        heartbeat_interval: ms(HEARTBEAT),
        session_ttl: ms(TTL),
        away_after: ms(AWAY),
        offline_after: ms(OFFLINE),
        linger: ms(LINGER),
        ..PresenceConfig::default()
    }
}

fn user_id(user: usize) -> UserId {
    UserId::from(format!("u{user}"))
}

/// Users 0 and 1 share scope `s0`; user 2 is alone in `s1`.
fn scope_of(user: usize) -> ScopeId {
    ScopeId::from(if user < 2 { "s0" } else { "s1" })
}

fn session_id(user: usize, slot: usize) -> SessionId {
    SessionId::from(format!("u{user}-slot{slot}"))
}

fn login_id(user: usize, login: usize) -> LoginId {
    LoginId::from(format!("u{user}-login{login}"))
}

fn user_index(user: &UserId) -> Option<usize> {
    (0..USERS).find(|&index| user_id(index) == *user)
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Manual {
    Away,
    Busy,
    Invisible,
}

#[derive(Clone, Debug)]
enum Op {
    Open {
        user: usize,
        slot: usize,
        login: usize,
    },
    Close {
        user: usize,
        slot: usize,
    },
    Heartbeat {
        user: usize,
        slot: usize,
    },
    Activity {
        user: usize,
        slot: usize,
    },
    /// `manual: None` asks for `ONLINE` (clears the manual status).
    SetStatus {
        user: usize,
        manual: Option<Manual>,
        until_s: Option<i64>,
    },
    /// `text: None` clears the custom status.
    SetCustom {
        user: usize,
        text: Option<usize>,
        until_s: Option<i64>,
    },
    Logout {
        user: usize,
        login: usize,
    },
    LogoutEverywhere {
        user: usize,
    },
    Advance {
        ms: i64,
    },
    /// `user` names a session or login of `owner`, another user: it must
    /// neither succeed nor touch `owner`.
    Foreign {
        user: usize,
        owner: usize,
        slot: usize,
        kind: ForeignKind,
    },
    /// Time passes by `ms` with no activity while the clients of the users
    /// in the `users` bit mask heartbeat every slot each heartbeat interval,
    /// so long idleness is reachable (run as primitive steps, see
    /// [`expand`]).
    Idle {
        ms: i64,
        users: u8,
    },
}

#[derive(Clone, Copy, Debug)]
enum ForeignKind {
    Heartbeat,
    Activity,
    Close,
    /// Logout of the owner's login number `slot % LOGINS`.
    Logout,
}

/// Idle periods, chosen to reach `away_after` and `offline_after`.
const IDLES_MS: &[i64] = &[
    30_000, 50_000, 59_000, 60_000, 61_000, 120_000, 240_000, 299_000, 300_000, 301_000,
];

/// The primitive steps of one generated operation.
fn expand(op: &Op) -> Vec<Op> {
    let Op::Idle { ms, users } = *op else {
        return vec![op.clone()];
    };
    let mut steps = Vec::new();
    let mut left = ms;
    while left > 0 {
        let chunk = left.min(HEARTBEAT);
        left -= chunk;
        steps.push(Op::Advance { ms: chunk });
        for user in (0..USERS).filter(|user| users & (1 << user) != 0) {
            steps.extend((0..SLOTS).map(|slot| Op::Heartbeat { user, slot }));
        }
    }
    steps
}

/// A user, most often user 0, so one user's story gets long enough to meet
/// the interesting interleavings (close, re-open, logout within a linger).
fn user() -> impl Strategy<Value = usize> + Clone {
    prop_oneof![3 => Just(0_usize), 1 => Just(1_usize), 1 => Just(2_usize)]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let manual = prop_oneof![
        Just(None),
        Just(Some(Manual::Away)),
        Just(Some(Manual::Busy)),
        Just(Some(Manual::Invisible)),
    ];
    prop_oneof![
        6 => (user(), 0..SLOTS, 0..LOGINS)
            .prop_map(|(user, slot, login)| Op::Open { user, slot, login }),
        4 => (user(), 0..SLOTS).prop_map(|(user, slot)| Op::Close { user, slot }),
        3 => (user(), 0..SLOTS).prop_map(|(user, slot)| Op::Heartbeat { user, slot }),
        3 => (user(), 0..SLOTS).prop_map(|(user, slot)| Op::Activity { user, slot }),
        3 => (user(), manual, proptest::option::of(proptest::sample::select(EXPIRIES_S)))
            .prop_map(|(user, manual, until_s)| Op::SetStatus { user, manual, until_s }),
        2 => (
            user(),
            proptest::option::of(0..TEXTS.len()),
            proptest::option::of(proptest::sample::select(EXPIRIES_S)),
        )
            .prop_map(|(user, text, until_s)| Op::SetCustom { user, text, until_s }),
        3 => (user(), 0..LOGINS).prop_map(|(user, login)| Op::Logout { user, login }),
        1 => user().prop_map(|user| Op::LogoutEverywhere { user }),
        1 => (user(), 1..USERS, 0..SLOTS, prop_oneof![
            Just(ForeignKind::Heartbeat),
            Just(ForeignKind::Activity),
            Just(ForeignKind::Close),
            Just(ForeignKind::Logout),
        ])
            .prop_map(|(user, shift, slot, kind)| Op::Foreign {
                user,
                owner: (user + shift) % USERS,
                slot,
                kind,
            }),
        7 => proptest::sample::select(ADVANCES_MS).prop_map(|ms| Op::Advance { ms }),
        2 => (proptest::sample::select(IDLES_MS), 1..8_u8)
            .prop_map(|(ms, users)| Op::Idle { ms, users }),
    ]
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelSession {
    login: usize,
    heartbeat: i64,
    /// Newest activity in this session (its kind's status).
    activity: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelLinger {
    until: i64,
    /// The login whose session ended last (of sessions lapsing at one
    /// instant, the greatest); a logout of it ends the linger.
    logins: BTreeSet<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct ModelUser {
    /// Sessions by slot; only live ones after `settle`.
    sessions: BTreeMap<usize, ModelSession>,
    linger: Option<ModelLinger>,
    /// Newest activity of the user, from any session.
    last_activity: Option<i64>,
    manual: Option<(Manual, Option<i64>)>,
    /// The custom status: a text of [`TEXTS`] and its expiry.
    custom: Option<(usize, Option<i64>)>,
    /// What observers were told, and its version.
    shown: Status,
    shown_extra: Extra,
    v: u64,
    /// Logins logged out, refused until the given time (logout + TTL).
    retired: BTreeMap<usize, i64>,
}

impl Default for ModelUser {
    fn default() -> Self {
        Self {
            sessions: BTreeMap::new(),
            linger: None,
            last_activity: None,
            manual: None,
            custom: None,
            shown: Status::Offline,
            shown_extra: (None, Vec::new()),
            v: 0,
            retired: BTreeMap::new(),
        }
    }
}

impl ModelUser {
    fn present(&self) -> bool {
        !self.sessions.is_empty() || self.linger.is_some()
    }

    /// Applies what time alone did up to `now`.
    fn settle(&mut self, now: i64) {
        let lapsed: Vec<ModelSession> = self
            .sessions
            .values()
            .filter(|session| session.heartbeat + TTL <= now)
            .cloned()
            .collect();
        self.sessions
            .retain(|_, session| session.heartbeat + TTL > now);
        if self.sessions.is_empty()
            && let Some(newest) = lapsed.iter().map(|session| session.heartbeat).max()
        {
            // The last session lapsed at `newest + TTL`: the linger runs
            // from then.
            self.linger = Some(ModelLinger {
                until: newest + TTL + LINGER,
                // Of sessions lapsing together, the greatest login holds it.
                logins: lapsed
                    .iter()
                    .filter(|session| session.heartbeat == newest)
                    .map(|session| session.login)
                    .max()
                    .into_iter()
                    .collect(),
            });
        }
        if self
            .linger
            .as_ref()
            .is_some_and(|linger| linger.until <= now)
        {
            self.linger = None;
        }
        if matches!(self.manual, Some((_, Some(until))) if until <= now) {
            self.manual = None;
        }
        if matches!(self.custom, Some((_, Some(until))) if until <= now) {
            self.custom = None;
        }
    }

    /// What observers see besides `status` (docs/rules.md#details):
    /// nothing while `OFFLINE`; else the custom text, and per kind the
    /// manual BUSY/AWAY or, without one, ONLINE unless that kind's sessions
    /// were all idle for `away_after`.
    fn extra(&self, status: Status, now: i64) -> Extra {
        if status == Status::Offline {
            return (None, Vec::new());
        }
        let mut devices: BTreeMap<String, Status> = BTreeMap::new();
        for (slot, session) in &self.sessions {
            let Some(kind) = kind_of(*slot) else { continue };
            let status = match self.manual.map(|(manual, _)| manual) {
                Some(Manual::Busy) => Status::Busy,
                Some(Manual::Away) => Status::Away,
                _ if now >= session.activity + AWAY => Status::Away,
                _ => Status::Online,
            };
            let known = devices.entry(kind.to_owned()).or_insert(status);
            if status == Status::Online {
                *known = Status::Online;
            }
        }
        (
            self.custom
                .map(|(text, until)| (TEXTS[text].to_owned(), until)),
            devices.into_iter().collect(),
        )
    }

    /// docs/rules.md#precedence for a settled user.
    fn effective(&self, now: i64) -> Status {
        if !self.present() {
            return Status::Offline;
        }
        let active = self
            .last_activity
            .expect("a present user has opened a session");
        if now >= active + OFFLINE {
            return Status::Offline;
        }
        match self.manual.map(|(manual, _)| manual) {
            Some(Manual::Invisible) => Status::Offline,
            Some(Manual::Busy) => Status::Busy,
            Some(Manual::Away) => Status::Away,
            None if now >= active + AWAY => Status::Away,
            None => Status::Online,
        }
    }

    fn invisible(&self) -> bool {
        matches!(self.manual, Some((Manual::Invisible, _)))
    }
}

/// What an operation returns, as the model predicts it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    Ok,
    SessionGone,
    /// Opening a session of a login that logged out is refused.
    Refused,
    /// Logout: every `must` session is reported ended; others may be
    /// reported only if they are in `may` (sessions the model already
    /// considers lapsed, which the library removes lazily).
    Ended {
        must: BTreeSet<SessionId>,
        may: BTreeSet<SessionId>,
    },
}

/// What an operation returned.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Actual {
    Ok,
    SessionGone,
    Refused,
    Ended(BTreeSet<SessionId>),
}

impl Expected {
    fn matches(&self, actual: &Actual) -> bool {
        match (self, actual) {
            (Expected::Ok, Actual::Ok) => true,
            (Expected::SessionGone, Actual::SessionGone) => true,
            (Expected::Refused, Actual::Refused) => true,
            (Expected::Ended { must, may }, Actual::Ended(ended)) => {
                must.is_subset(ended)
                    && ended.iter().all(|id| must.contains(id) || may.contains(id))
            }
            _ => false,
        }
    }
}

type Events = BTreeMap<usize, Vec<(Status, Extra, u64)>>;

#[derive(Clone, Debug, PartialEq, Eq)]
struct World {
    now: i64,
    users: Vec<ModelUser>,
}

#[derive(Debug)]
struct Prediction {
    world: World,
    result: Expected,
    events: Events,
}

impl World {
    fn new() -> Self {
        Self {
            now: 0,
            users: vec![ModelUser::default(); USERS],
        }
    }

    /// The possible outcomes of `op` (more than one only where the rules
    /// leave a choice open).
    fn predict(&self, op: &Op) -> Vec<Prediction> {
        let mut world = self.clone();
        if let Op::Advance { ms } = *op {
            world.now += ms;
        }
        let now = world.now;
        for user in &mut world.users {
            user.settle(now);
        }
        let mut branches: Vec<(World, Expected)> = Vec::new();
        match *op {
            Op::Open { user, slot, login } => {
                let model = &mut world.users[user];
                if model.retired.get(&login).is_some_and(|until| *until > now) {
                    // A login that logged out opens nothing for a TTL.
                    branches.push((world, Expected::Refused));
                } else {
                    match model.sessions.get_mut(&slot) {
                        // Re-opening an open session refreshes it (its login
                        // stays); opening is activity.
                        Some(session) => {
                            session.heartbeat = now;
                            session.activity = now;
                        }
                        None => {
                            model.sessions.insert(
                                slot,
                                ModelSession {
                                    login,
                                    heartbeat: now,
                                    activity: now,
                                },
                            );
                        }
                    }
                    model.linger = None;
                    model.last_activity = Some(now);
                    branches.push((world, Expected::Ok));
                }
            }
            Op::Close { user, slot } => {
                let model = &mut world.users[user];
                if let Some(closed) = model.sessions.remove(&slot)
                    && model.sessions.is_empty()
                {
                    model.linger = Some(ModelLinger {
                        until: now + LINGER,
                        logins: BTreeSet::from([closed.login]),
                    });
                }
                branches.push((world, Expected::Ok));
            }
            Op::Heartbeat { user, slot } => {
                let model = &mut world.users[user];
                let result = match model.sessions.get_mut(&slot) {
                    Some(session) => {
                        session.heartbeat = now;
                        Expected::Ok
                    }
                    None => Expected::SessionGone,
                };
                branches.push((world, result));
            }
            Op::Activity { user, slot } => {
                let model = &mut world.users[user];
                let result = match model.sessions.get_mut(&slot) {
                    Some(session) => {
                        session.heartbeat = now;
                        session.activity = now;
                        model.last_activity = Some(now);
                        Expected::Ok
                    }
                    None => Expected::SessionGone,
                };
                branches.push((world, result));
            }
            Op::SetStatus {
                user,
                manual,
                until_s,
            } => {
                world.users[user].manual =
                    manual.map(|manual| (manual, until_s.map(|s| now + s * 1000)));
                branches.push((world, Expected::Ok));
            }
            Op::SetCustom {
                user,
                text,
                until_s,
            } => {
                world.users[user].custom = text.map(|text| (text, until_s.map(|s| now + s * 1000)));
                branches.push((world, Expected::Ok));
            }
            Op::Logout { user, login } => {
                let model = &mut world.users[user];
                model.retired.insert(login, now + TTL);
                let must: BTreeSet<SessionId> = model
                    .sessions
                    .iter()
                    .filter(|(_, session)| session.login == login)
                    .map(|(&slot, _)| session_id(user, slot))
                    .collect();
                let may: BTreeSet<SessionId> = (0..SLOTS)
                    .filter(|slot| !model.sessions.contains_key(slot))
                    .map(|slot| session_id(user, slot))
                    .collect();
                model.sessions.retain(|_, session| session.login != login);
                let result = Expected::Ended { must, may };
                match model.linger.clone() {
                    Some(linger) if linger.logins.contains(&login) => {
                        world.users[user].linger = None;
                        branches.push((world, result));
                    }
                    _ => branches.push((world, result)),
                }
            }
            Op::LogoutEverywhere { user } => {
                let model = &mut world.users[user];
                let logins: Vec<usize> = model.sessions.values().map(|s| s.login).collect();
                for login in logins {
                    model.retired.insert(login, now + TTL);
                }
                let must: BTreeSet<SessionId> = model
                    .sessions
                    .keys()
                    .map(|&slot| session_id(user, slot))
                    .collect();
                let may: BTreeSet<SessionId> = (0..SLOTS)
                    .filter(|slot| !model.sessions.contains_key(slot))
                    .map(|slot| session_id(user, slot))
                    .collect();
                model.sessions.clear();
                model.linger = None;
                branches.push((world, Expected::Ended { must, may }));
            }
            Op::Advance { .. } => branches.push((world, Expected::Ok)),
            Op::Foreign { user, kind, .. } => {
                let result = match kind {
                    ForeignKind::Heartbeat | ForeignKind::Activity => Expected::SessionGone,
                    ForeignKind::Close => Expected::Ok,
                    // Only the caller's own lapsed sessions may be reported.
                    ForeignKind::Logout => Expected::Ended {
                        must: BTreeSet::new(),
                        may: (0..SLOTS)
                            .filter(|slot| !world.users[user].sessions.contains_key(slot))
                            .map(|slot| session_id(user, slot))
                            .collect(),
                    },
                };
                branches.push((world, result));
            }
            Op::Idle { .. } => unreachable!("idle periods are expanded"),
        }
        branches
            .into_iter()
            .map(|(mut world, result)| {
                let events = world.publish();
                Prediction {
                    world,
                    result,
                    events,
                }
            })
            .collect()
    }

    /// Tells observers of every change of effective status.
    fn publish(&mut self) -> Events {
        let now = self.now;
        let mut events = Events::new();
        for (index, user) in self.users.iter_mut().enumerate() {
            let status = user.effective(now);
            let extra = user.extra(status, now);
            if status != user.shown || extra != user.shown_extra {
                user.shown = status;
                user.shown_extra = extra.clone();
                user.v += 1;
                events
                    .entry(index)
                    .or_default()
                    .push((status, extra, user.v));
            }
        }
        events
    }
}

// ---------------------------------------------------------------------------
// The system under test
// ---------------------------------------------------------------------------

struct Sut {
    clock: Arc<ManualClock>,
    presence: Presence,
    events: Subscription,
    start: DateTime<Utc>,
    /// Every handle ever returned. None is dropped during a case: dropping
    /// one whose session was re-opened under the same id would close it.
    handles: Vec<SessionHandle>,
    /// The version of each user as last read.
    versions: Vec<u64>,
}

impl Sut {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::default());
        let presence = Presence::builder()
            .clock(clock.clone())
            .config(config())
            // Each step drains what is queued at once: no batch may be
            // held for a tick of real time.
            .batch_interval(Duration::ZERO)
            .build()
            .await
            .expect("the service builds");
        let mut events = presence.subscribe();
        events.watch_scope(ScopeId::from("s0"));
        events.watch_scope(ScopeId::from("s1"));
        let start = presence.clock().now();
        Self {
            clock,
            presence,
            events,
            start,
            handles: Vec::new(),
            versions: vec![0; USERS],
        }
    }

    fn at(&self, offset_ms: i64) -> DateTime<Utc> {
        self.start + TimeDelta::milliseconds(offset_ms)
    }

    fn session_result(result: Result<(), presence_core::Error>) -> Result<Actual, String> {
        match result {
            Ok(()) => Ok(Actual::Ok),
            Err(error) if error.is_session_gone() => Ok(Actual::SessionGone),
            Err(error) => Err(format!("unexpected error: {error}")),
        }
    }

    /// Runs `op` at model time `now` (the time after the op for advances).
    async fn run(&mut self, op: &Op, now: i64) -> Result<Actual, String> {
        let presence = self.presence.clone();
        match *op {
            Op::Open { user, slot, login } => {
                let mut spec = SessionSpec::new(user_id(user), login_id(user, login))
                    .scope(scope_of(user))
                    .id(session_id(user, slot));
                if let Some(kind) = kind_of(slot) {
                    spec = spec.kind(SessionKind::new(kind).expect("a valid kind"));
                }
                match presence.open_session(spec).await {
                    Ok(handle) => {
                        self.handles.push(handle);
                        Ok(Actual::Ok)
                    }
                    Err(error) if error.is_logged_out() => Ok(Actual::Refused),
                    Err(error) => Err(format!("open failed: {error}")),
                }
            }
            Op::Close { user, slot } => {
                presence
                    .close_session(&user_id(user), &session_id(user, slot))
                    .await
                    .map_err(|error| format!("close failed: {error}"))?;
                Ok(Actual::Ok)
            }
            Op::Heartbeat { user, slot } => {
                Self::session_result(presence.heartbeat(&user_id(user), &session_id(user, slot)))
            }
            Op::Activity { user, slot } => Self::session_result(
                presence
                    .activity(&user_id(user), &session_id(user, slot))
                    .await,
            ),
            Op::SetStatus {
                user,
                manual,
                until_s,
            } => {
                let requested = match manual {
                    None => RequestedStatus::Online,
                    Some(Manual::Away) => RequestedStatus::Away,
                    Some(Manual::Busy) => RequestedStatus::Busy,
                    Some(Manual::Invisible) => RequestedStatus::Invisible,
                };
                let until = until_s.map(|s| self.at(now + s * 1000));
                presence
                    .set_status(&user_id(user), requested, until)
                    .await
                    .map_err(|error| format!("set_status failed: {error}"))?;
                Ok(Actual::Ok)
            }
            Op::SetCustom {
                user,
                text,
                until_s,
            } => {
                let custom = text.map(|text| {
                    let until = until_s.map(|s| self.at(now + s * 1000));
                    CustomStatus::new(Some(TEXTS[text].into()), None, until).expect("valid")
                });
                presence
                    .set_custom_status(&user_id(user), custom)
                    .await
                    .map_err(|error| format!("set_custom_status failed: {error}"))?;
                Ok(Actual::Ok)
            }
            Op::Logout { user, login } => {
                let ended = presence
                    .logout(&user_id(user), &login_id(user, login))
                    .await
                    .map_err(|error| format!("logout failed: {error}"))?;
                Ok(Actual::Ended(ended.into_iter().collect()))
            }
            Op::LogoutEverywhere { user } => {
                let ended = presence
                    .logout_everywhere(&user_id(user))
                    .await
                    .map_err(|error| format!("logout_everywhere failed: {error}"))?;
                Ok(Actual::Ended(ended.into_iter().collect()))
            }
            Op::Advance { ms: by } => {
                self.clock.advance(ms(by));
                if presence.clock().now() != self.at(now) {
                    return Err("the manual clock did not move as asked".into());
                }
                presence
                    .run_due()
                    .await
                    .map_err(|error| format!("run_due failed: {error}"))?;
                Ok(Actual::Ok)
            }
            Op::Foreign {
                user,
                owner,
                slot,
                kind,
            } => {
                let (user, session) = (user_id(user), session_id(owner, slot));
                match kind {
                    ForeignKind::Heartbeat => {
                        Self::session_result(presence.heartbeat(&user, &session))
                    }
                    ForeignKind::Activity => {
                        Self::session_result(presence.activity(&user, &session).await)
                    }
                    ForeignKind::Close => {
                        presence
                            .close_session(&user, &session)
                            .await
                            .map_err(|error| format!("close failed: {error}"))?;
                        Ok(Actual::Ok)
                    }
                    ForeignKind::Logout => {
                        let ended = presence
                            .logout(&user, &login_id(owner, slot % LOGINS))
                            .await
                            .map_err(|error| format!("logout failed: {error}"))?;
                        Ok(Actual::Ended(ended.into_iter().collect()))
                    }
                }
            }
            Op::Idle { .. } => Err("idle periods are expanded".into()),
        }
    }

    /// Everything delivered since the last call, by user, after letting the
    /// sweeper task run.
    async fn drain(&mut self) -> Result<Events, String> {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        let mut events = Events::new();
        while let Some(delivery) = self.events.try_recv() {
            if delivery == Delivery::Lagged {
                return Err("the subscription lagged".into());
            }
            for event in delivery.events() {
                let user = user_index(&event.user_id)
                    .ok_or_else(|| format!("event about an unknown user: {event:?}"))?;
                if event.scope != scope_of(user) {
                    return Err(format!("event in a scope the user is not in: {event:?}"));
                }
                events.entry(user).or_default().push((
                    event.status,
                    extra_of(event.details.as_deref(), self.start),
                    event.v,
                ));
            }
        }
        Ok(events)
    }

    /// Every user's (status, v) as the service reports it, checking that
    /// versions moved by exactly one per event.
    async fn statuses(&mut self, events: &Events) -> Result<Vec<(Status, Extra, u64)>, String> {
        let mut statuses = Vec::with_capacity(USERS);
        for user in 0..USERS {
            let presence = self
                .presence
                .status(&user_id(user))
                .await
                .map_err(|error| format!("status failed: {error}"))?;
            let mut v = self.versions[user];
            let mut last = None;
            for (status, extra, event_v) in events.get(&user).into_iter().flatten() {
                if *event_v != v + 1 {
                    return Err(format!(
                        "user {user}: event v={event_v} after v={v} (events {events:?})"
                    ));
                }
                if last == Some((*status, extra)) {
                    return Err(format!("user {user}: two events with the same presence"));
                }
                v = *event_v;
                last = Some((*status, extra));
            }
            if presence.v != v {
                return Err(format!(
                    "user {user}: status v={} but events reached v={v}",
                    presence.v
                ));
            }
            let read_extra = extra_of(presence.details.as_deref(), self.start);
            if let Some((status, extra)) = last
                && (status != presence.status || *extra != read_extra)
            {
                return Err(format!(
                    "user {user}: last event {status} {extra:?} but status {} {read_extra:?}",
                    presence.status
                ));
            }
            self.versions[user] = presence.v;
            statuses.push((presence.status, read_extra, presence.v));
        }
        Ok(statuses)
    }
}

async fn check(ops: &[Op], sut: &mut Sut) -> Result<(), String> {
    // The worlds consistent with everything observed so far (one, except
    // where the rules leave a choice open).
    let mut worlds = vec![World::new()];
    let steps: Vec<(usize, Op)> = ops
        .iter()
        .enumerate()
        .flat_map(|(index, op)| expand(op).into_iter().map(move |step| (index, step)))
        .collect();
    for (step, op) in &steps {
        let predictions: Vec<(World, Prediction)> = worlds
            .iter()
            .flat_map(|world| {
                world
                    .predict(op)
                    .into_iter()
                    .map(move |prediction| (world.clone(), prediction))
            })
            .collect();
        let now = predictions[0].1.world.now;
        let result = sut.run(op, now).await?;
        let events = sut.drain().await?;
        let statuses = sut.statuses(&events).await?;

        let mut next: Vec<World> = Vec::new();
        for (before, prediction) in &predictions {
            let shown: Vec<(Status, Extra, u64)> = prediction
                .world
                .users
                .iter()
                .map(|user| (user.shown, user.shown_extra.clone(), user.v))
                .collect();
            if !prediction.result.matches(&result)
                || prediction.events != events
                || shown != statuses
            {
                continue;
            }
            // Invariants, on a world that explains what was observed.
            for (index, user) in prediction.world.users.iter().enumerate() {
                if statuses[index].0 != Status::Offline && !user.present() {
                    return Err(format!(
                        "op #{step} ({op:?}): user {index} shown {} with no live session nor linger",
                        statuses[index].0
                    ));
                }
                if before.users[index].invisible()
                    && user.invisible()
                    && events.contains_key(&index)
                {
                    return Err(format!(
                        "op #{step} ({op:?}): invisible user {index} was betrayed by an event"
                    ));
                }
            }
            if !next.contains(&prediction.world) {
                next.push(prediction.world.clone());
            }
        }
        if next.is_empty() {
            let expected: Vec<String> = predictions
                .iter()
                .map(|(_, prediction)| {
                    let shown: Vec<(Status, Extra, u64)> = prediction
                        .world
                        .users
                        .iter()
                        .map(|user| (user.shown, user.shown_extra.clone(), user.v))
                        .collect();
                    format!(
                        "  result {:?}\n  events {:?}\n  statuses {shown:?}\n  model {:#?}",
                        prediction.result, prediction.events, prediction.world
                    )
                })
                .collect();
            return Err(format!(
                "op #{step}, step {op:?}, at t={now}ms disagrees with the model.\n\
                 actual:\n  result {result:?}\n  events {events:?}\n  statuses {statuses:?}\n\
                 expected (any of):\n{}",
                expected.join("\n  --- or ---\n")
            ));
        }
        worlds = next;
    }
    Ok(())
}

fn run_case(ops: &[Op]) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (result, sut) = runtime.block_on(async {
        let mut sut = Sut::new().await;
        let result = check(ops, &mut sut).await;
        (result, sut)
    });
    // The runtime goes first, so dropping the handles closes nothing.
    drop(runtime);
    drop(sut);
    result.map_err(TestCaseError::fail)
}

/// Cases of the property test: `MODEL_CASES` in the environment, else 6000
/// (about 25 s in a debug build).
fn cases() -> u32 {
    std::env::var("MODEL_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(6000)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_service_behaves_like_the_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        run_case(&ops)?;
    }
}

// Directed sequences, checked against the model like the random ones: they
// pin interleavings that random generation reaches only rarely.

fn open(user: usize, slot: usize, login: usize) -> Op {
    Op::Open { user, slot, login }
}

fn advance(ms: i64) -> Op {
    Op::Advance { ms }
}

fn scenario(ops: &[Op]) {
    if let Err(error) = run_case(ops) {
        panic!("{error}");
    }
}

#[test]
fn a_lapse_linger_runs_from_the_lapse_and_is_cancelled_by_a_new_session() {
    scenario(&[
        open(0, 0, 0),
        advance(25_000), // lapses exactly now: linger until 33 s
        advance(7_000),
        advance(1_000), // 33 s: the linger is over
        open(0, 1, 1),
        advance(40_000), // lapsed at 58 s, linger over at 66 s: one OFFLINE
        open(0, 1, 1),
        advance(25_000),
        open(0, 2, 0), // inside the linger: no flicker
        Op::Close { user: 0, slot: 2 },
        Op::Logout { user: 0, login: 1 }, // not the linger's login
        Op::Logout { user: 0, login: 0 },
    ]);
}

#[test]
fn a_session_that_lapses_while_another_lives_starts_no_linger() {
    scenario(&[
        open(0, 0, 0),
        advance(10_000),
        open(0, 1, 1),
        advance(16_000), // slot 0 lapsed at 25 s, slot 1 lives until 35 s
        Op::Logout { user: 0, login: 1 },
    ]);
}

#[test]
fn opening_a_session_cancels_the_linger_of_another_login() {
    scenario(&[
        open(0, 0, 0),
        Op::Close { user: 0, slot: 0 },
        open(0, 1, 1),
        Op::Logout { user: 0, login: 1 },
        open(1, 0, 0),
        Op::Close { user: 1, slot: 0 },
        advance(1_000),
        Op::Logout { user: 1, login: 0 },
    ]);
}

#[test]
fn heartbeats_and_activity_at_the_ttl_boundary() {
    scenario(&[
        open(0, 0, 0),
        advance(24_999),
        Op::Heartbeat { user: 0, slot: 0 },
        advance(24_999),
        Op::Activity { user: 0, slot: 0 },
        advance(25_000),
        Op::Heartbeat { user: 0, slot: 0 },
        Op::Activity { user: 0, slot: 0 },
        Op::Heartbeat { user: 1, slot: 0 },
        open(0, 0, 1),
        Op::Heartbeat { user: 0, slot: 0 },
    ]);
}

#[test]
fn idleness_and_manual_statuses_with_expiry() {
    scenario(&[
        Op::SetStatus {
            user: 2,
            manual: Some(Manual::Invisible),
            until_s: Some(61),
        },
        open(2, 0, 0),
        Op::Idle {
            ms: 60_000,
            users: 0b100,
        },
        Op::Idle {
            ms: 1_000,
            users: 0b100,
        }, // the expiry shows the idle AWAY
        Op::SetStatus {
            user: 2,
            manual: Some(Manual::Busy),
            until_s: None,
        },
        Op::Idle {
            ms: 240_000,
            users: 0b100,
        }, // 301 s idle: OFFLINE
        Op::Activity { user: 2, slot: 0 },
        Op::SetStatus {
            user: 2,
            manual: None,
            until_s: None,
        },
        Op::LogoutEverywhere { user: 2 },
    ]);
}

#[test]
fn a_linger_from_sessions_of_two_logins_lapsing_together_belongs_to_the_greater_login() {
    // Logging out login 0 leaves login 1's linger; logging out login 1 ends it.
    scenario(&[
        open(0, 0, 1),
        open(0, 1, 0),
        advance(25_000),
        Op::Logout { user: 0, login: 0 },
        Op::Logout { user: 0, login: 1 },
    ]);
}

#[test]
fn reopening_a_live_session_refreshes_it_and_keeps_its_login() {
    scenario(&[
        open(1, 1, 0),
        advance(20_000),
        open(1, 1, 1), // the same id, live: refreshed, still login 0
        advance(20_000),
        Op::Heartbeat { user: 1, slot: 1 },
        Op::Logout { user: 1, login: 1 },
        Op::Heartbeat { user: 1, slot: 1 },
        Op::Logout { user: 1, login: 0 },
        Op::Heartbeat { user: 1, slot: 1 },
    ]);
}
