//! The simulation's independent model of what every user should show,
//! written from the rules (docs/rules.md and the crate docs), not from
//! `presence_core::store::machine`, so the two can disagree.
//!
//! Time is the simulation's true time, in ms. Where the rules leave a
//! choice to the implementation, the model keeps both answers and the
//! checks accept either: a session whose process died may be ended by a
//! node that notices the death at any time between the death and its
//! lapse (see [`Model::doom`]), and so may linger from any instant in
//! between.

use std::collections::{BTreeMap, BTreeSet};

use presence_core::Status;

use super::steps::Wish;

/// Milliseconds of true time.
pub type Ms = i64;

/// The thresholds, in ms.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// How often clients heartbeat.
    pub heartbeat: Ms,
    /// `session_ttl`.
    pub ttl: Ms,
    /// `away_after`.
    pub away: Ms,
    /// `offline_after`.
    pub offline: Ms,
    /// `linger`.
    pub linger: Ms,
    /// How long after its process died a session has ended at the latest,
    /// if it has not lapsed by then: the process's lease, and the time the
    /// other processes take to find it ran out.
    pub detection: Ms,
}

/// A session as the model sees it.
#[derive(Clone, Debug)]
struct Session {
    login: String,
    scopes: Vec<&'static str>,
    last_heartbeat: Ms,
    /// Its process died at this instant: any node may end it from then on
    /// (it must by its lapse, or by the death and [`Timing::detection`]
    /// if that is later).
    doomed_since: Option<Ms>,
}

/// A scope the user's sessions left, seen in for the linger.
#[derive(Clone, Debug)]
struct Lingering {
    until: Ms,
    /// The earliest instant it may have ended: `until`, unless it is the
    /// linger of a dead process's session, which another node may have
    /// ended as early as the death.
    ends_from: Ms,
    /// The login whose session ended there last: its logout ends the
    /// linger.
    login: String,
}

/// One user.
#[derive(Clone, Debug, Default)]
struct User {
    sessions: BTreeMap<u64, Session>,
    manual: Option<(Wish, Option<Ms>)>,
    last_activity: Option<Ms>,
    lingering: BTreeMap<&'static str, Lingering>,
    retired: BTreeMap<String, Ms>,
    /// Sessions a logout ended: a node that never heard of the logout still
    /// holds them, and registers them again if the store loses its data
    /// (and with it, the logout).
    logged_out: BTreeMap<u64, Session>,
    /// The other worlds this user may be in: those where a dead process's
    /// sessions were ended at its death, each living on through every
    /// later step (a later close or logout then leaves no linger for them).
    early_ends: Vec<User>,
}

/// How many other worlds a user keeps at most (each death forks them).
const MAX_WORLDS: usize = 32;

/// Applies `change` to the user and to each of its other worlds.
fn each_world(user: &mut User, mut change: impl FnMut(&mut User)) {
    change(user);
    for world in &mut user.early_ends {
        change(world);
    }
}

/// What a user shows, and the scopes they are seen in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    /// The status observers see.
    pub status: Status,
    /// The scopes the user is a member of.
    pub scopes: BTreeSet<&'static str>,
}

impl Shown {
    /// What a watcher of `watched` sees of the user.
    pub fn to(&self, watched: &[&'static str]) -> Status {
        if watched.iter().any(|scope| self.scopes.contains(scope)) {
            self.status
        } else {
            Status::Offline
        }
    }
}

/// Why the model refuses an operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The login logged out within `session_ttl`.
    LoggedOut,
    /// The session is not live.
    Gone,
}

/// Every user of a run.
#[derive(Clone, Debug)]
pub struct Model {
    timing: Timing,
    users: Vec<User>,
}

impl Model {
    /// A model of `users` users, all unseen.
    pub fn new(timing: Timing, users: usize) -> Self {
        Self {
            timing,
            users: vec![User::default(); users],
        }
    }

    /// The thresholds.
    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Opens session `key` of `user` at `now`: activity, and it cancels
    /// the linger of the scopes it is in.
    pub fn open(
        &mut self,
        user: usize,
        key: u64,
        login: &str,
        scopes: &[&'static str],
        now: Ms,
    ) -> Result<(), Refused> {
        self.settle(now);
        let u = &mut self.users[user];
        if u.retired.get(login).is_some_and(|until| *until > now) {
            return Err(Refused::LoggedOut);
        }
        each_world(u, |u| {
            for scope in scopes {
                u.lingering.remove(scope);
            }
            u.sessions.insert(
                key,
                Session {
                    login: login.to_owned(),
                    scopes: scopes.to_vec(),
                    last_heartbeat: now,
                    doomed_since: None,
                },
            );
            u.last_activity = u.last_activity.max(Some(now));
        });
        Ok(())
    }

    /// A heartbeat of a live session.
    pub fn heartbeat(&mut self, user: usize, key: u64, now: Ms) -> Result<(), Refused> {
        self.settle(now);
        let u = &mut self.users[user];
        if !u.sessions.contains_key(&key) {
            return Err(Refused::Gone);
        }
        each_world(u, |u| {
            if let Some(session) = u.sessions.get_mut(&key) {
                session.last_heartbeat = session.last_heartbeat.max(now);
            }
        });
        Ok(())
    }

    /// Activity in a live session: also a heartbeat.
    pub fn activity(&mut self, user: usize, key: u64, now: Ms) -> Result<(), Refused> {
        self.heartbeat(user, key, now)?;
        each_world(&mut self.users[user], |u| {
            u.last_activity = u.last_activity.max(Some(now));
        });
        Ok(())
    }

    /// A session closes (cleanly, or its process shut down): the scopes no
    /// other session of the user is in linger.
    pub fn close(&mut self, user: usize, key: u64, now: Ms) {
        self.settle(now);
        let linger = self.timing.linger;
        each_world(&mut self.users[user], |u| end(u, key, now, linger));
    }

    /// Sessions that end at one instant (their process shut down): in
    /// order of login, so the linger goes to the greatest.
    pub fn close_together(&mut self, keys: &[(usize, u64)], now: Ms) {
        self.settle(now);
        let mut ending: Vec<(usize, String, u64)> = keys
            .iter()
            .filter_map(|(user, key)| {
                let session = self.users[*user].sessions.get(key)?;
                Some((*user, session.login.clone(), *key))
            })
            .collect();
        ending.sort();
        let linger = self.timing.linger;
        for (user, _, key) in ending {
            each_world(&mut self.users[user], |u| end(u, key, now, linger));
        }
    }

    /// A manual status (or none, for [`Wish::Online`]).
    pub fn set_manual(&mut self, user: usize, wish: Wish, until: Option<Ms>, now: Ms) {
        self.settle(now);
        let manual = match wish {
            Wish::Online => None,
            wish => Some((wish, until)),
        };
        each_world(&mut self.users[user], |u| u.manual = manual);
    }

    /// One login logs out: its sessions end at once, with no linger, and it
    /// opens nothing for `session_ttl`.
    pub fn logout(&mut self, user: usize, login: &str, now: Ms) {
        self.settle(now);
        let until = now + self.timing.ttl;
        each_world(&mut self.users[user], |u| {
            u.retired.insert(login.to_owned(), until);
            let (ended, kept): (BTreeMap<u64, Session>, BTreeMap<u64, Session>) =
                std::mem::take(&mut u.sessions)
                    .into_iter()
                    .partition(|(_, session)| session.login == login);
            u.sessions = kept;
            u.logged_out.extend(ended);
            u.lingering.retain(|_, lingering| lingering.login != login);
        });
    }

    /// The process holding `keys` died at `now`: they stop hearing from
    /// their clients, and any node may end them from now on.
    pub fn doom(&mut self, keys: &[(usize, u64)], now: Ms) {
        self.settle(now);
        let linger = self.timing.linger;
        for (index, u) in self.users.iter_mut().enumerate() {
            let dying: Vec<u64> = keys
                .iter()
                .filter(|(user, key)| *user == index && u.sessions.contains_key(key))
                .map(|(_, key)| *key)
                .collect();
            if dying.is_empty() {
                continue;
            }
            // The worlds where they ended at once, in order of login.
            let mut forks = Vec::new();
            for world in std::iter::once(&*u).chain(u.early_ends.iter()) {
                let mut fork = world.clone();
                fork.early_ends.clear();
                let mut ending: Vec<(String, u64)> = dying
                    .iter()
                    .filter_map(|key| Some((fork.sessions.get(key)?.login.clone(), *key)))
                    .collect();
                ending.sort();
                for (_, key) in ending {
                    end(&mut fork, key, now, linger);
                }
                forks.push(fork);
            }
            each_world(u, |u| {
                for key in &dying {
                    if let Some(session) = u.sessions.get_mut(key) {
                        session.doomed_since.get_or_insert(now);
                    }
                }
            });
            u.early_ends.extend(forks);
            let excess = u.early_ends.len().saturating_sub(MAX_WORLDS);
            u.early_ends.drain(..excess);
        }
    }

    /// The store lost everything at `now`; the running processes register
    /// the sessions they hold (`kept`) again, with their real last
    /// heartbeat (those silent for a TTL stay dead), which counts as
    /// activity for a user the store no longer knows. Everything else is
    /// forgotten: manual statuses, lingers, logouts (a session a logout
    /// ended that its holder never heard of comes back).
    pub fn lose_data(&mut self, kept: &[(usize, u64)], now: Ms) {
        self.settle(now);
        let ttl = self.timing.ttl;
        for (index, user) in self.users.iter_mut().enumerate() {
            let mut sessions = std::mem::take(&mut user.sessions);
            sessions.extend(std::mem::take(&mut user.logged_out));
            *user = User::default();
            for (key, session) in sessions {
                let live = session.last_heartbeat + ttl > now;
                if kept.contains(&(index, key)) && session.doomed_since.is_none() && live {
                    user.sessions.insert(key, session);
                }
            }
            if !user.sessions.is_empty() {
                user.last_activity = Some(now);
            }
        }
    }

    /// Whether session `key` is live at `now`.
    pub fn is_live(&self, user: usize, key: u64, now: Ms) -> bool {
        self.users[user]
            .sessions
            .get(&key)
            .is_some_and(|session| session.last_heartbeat + self.timing.ttl > now)
    }

    /// Whether the session may already have been ended by a node that
    /// noticed its process died.
    pub fn is_doomed(&self, user: usize, key: u64) -> bool {
        self.users[user]
            .sessions
            .get(&key)
            .is_some_and(|session| session.doomed_since.is_some())
    }

    /// Whether a login logged out within `session_ttl` before `now`.
    pub fn is_retired(&self, user: usize, login: &str, now: Ms) -> bool {
        self.users[user]
            .retired
            .get(login)
            .is_some_and(|until| *until > now)
    }

    /// What every user may show at `now`: one answer each, or two while a
    /// dead process's sessions may or may not have been ended yet.
    pub fn shown(&mut self, now: Ms) -> Vec<Vec<Shown>> {
        self.settle(now);
        let timing = self.timing;
        self.users
            .iter()
            .map(|user| {
                let mut answers = answers_of(user, now, &timing);
                for world in user.early_ends.iter() {
                    answers.extend(answers_of(world, now, &timing));
                }
                let mut unique = Vec::new();
                for answer in answers {
                    if !unique.contains(&answer) {
                        unique.push(answer);
                    }
                }
                unique
            })
            .collect()
    }

    /// Brings every user up to date with `now`: lapses (each ending at the
    /// instant it lapsed, oldest first), lingers and manual statuses that
    /// ran out, logouts forgotten.
    fn settle(&mut self, now: Ms) {
        let timing = self.timing;
        for user in &mut self.users {
            each_world(user, |u| settle(u, now, &timing));
        }
    }
}

/// What one world of a user may show at `now`: as it is, with the lingers
/// of a dead process's sessions already over where they may be, and with
/// its dead process's sessions ended at the death.
fn answers_of(user: &User, now: Ms, timing: &Timing) -> Vec<Shown> {
    let mut answers = vec![shown(user, now, timing)];
    if user.lingering.values().any(|l| l.ends_from <= now) {
        let mut ended = user.clone();
        ended.lingering.retain(|_, l| l.ends_from > now);
        answers.push(shown(&ended, now, timing));
    }
    if user.sessions.values().any(|s| s.doomed_since.is_some()) {
        let mut ended = user.clone();
        end_doomed(&mut ended, now, timing);
        answers.push(shown(&ended, now, timing));
    }
    answers
}

/// When a session ends without a word: a TTL after its newest heartbeat,
/// or, if its process died, when the others find that out, if that is
/// later.
fn lapse_at(session: &Session, timing: &Timing) -> Ms {
    let lapse = session.last_heartbeat + timing.ttl;
    match session.doomed_since {
        Some(death) => lapse.max(death + timing.detection),
        None => lapse,
    }
}

fn settle(user: &mut User, now: Ms, timing: &Timing) {
    loop {
        // Lapses at one instant end in order of login, as sessions ending
        // together do.
        let lapse = user
            .sessions
            .iter()
            .map(|(key, s)| (lapse_at(s, timing), s.login.clone(), *key))
            .filter(|(at, _, _)| *at <= now)
            .min();
        let Some((at, _, key)) = lapse else { break };
        // Lingers that ran out before this lapse are over by then.
        user.lingering.retain(|_, l| l.until > at);
        // A dead process's session may have ended as early as the death.
        let ended_from = user.sessions[&key].doomed_since.unwrap_or(at);
        end_from(user, key, at, ended_from, timing.linger);
    }
    user.lingering.retain(|_, l| l.until > now);
    if user
        .manual
        .is_some_and(|(_, until)| until.is_some_and(|until| until <= now))
    {
        user.manual = None;
    }
    user.retired.retain(|_, until| *until > now);
    user.logged_out
        .retain(|_, session| session.last_heartbeat + timing.ttl > now);
}

/// Ends session `key` at `at`: each of its scopes that no other session
/// covers lingers from then.
fn end(user: &mut User, key: u64, at: Ms, linger: Ms) {
    end_from(user, key, at, at, linger);
}

/// Ends session `key` at `at`, or, as far as anyone can tell, at any
/// instant from `ended_from` on.
fn end_from(user: &mut User, key: u64, at: Ms, ended_from: Ms, linger: Ms) {
    let Some(session) = user.sessions.remove(&key) else {
        return;
    };
    for scope in session.scopes {
        let covered = user.sessions.values().any(|s| s.scopes.contains(&scope));
        if !covered && linger > 0 {
            user.lingering.insert(
                scope,
                Lingering {
                    until: at + linger,
                    ends_from: ended_from + linger,
                    login: session.login.clone(),
                },
            );
        }
    }
}

/// The other answer for a user with sessions of dead processes: they were
/// ended as soon as their process died.
fn end_doomed(user: &mut User, now: Ms, timing: &Timing) {
    let mut doomed: Vec<(Ms, u64)> = user
        .sessions
        .iter()
        .filter_map(|(key, s)| s.doomed_since.map(|since| (since, *key)))
        .collect();
    doomed.sort();
    for (since, key) in doomed {
        end(user, key, since, timing.linger);
    }
    user.lingering.retain(|_, l| l.until > now);
}

/// docs/rules.md#precedence for a settled user.
fn shown(user: &User, now: Ms, timing: &Timing) -> Shown {
    let present = !user.sessions.is_empty() || !user.lingering.is_empty();
    if !present {
        return Shown {
            status: Status::Offline,
            scopes: BTreeSet::new(),
        };
    }
    let scopes: BTreeSet<&'static str> = user
        .sessions
        .values()
        .flat_map(|s| s.scopes.iter().copied())
        .chain(user.lingering.keys().copied())
        .collect();
    let idle_since = user.last_activity.unwrap_or(now);
    let status = if idle_since + timing.offline <= now {
        Status::Offline
    } else {
        match user.manual.map(|(wish, _)| wish) {
            Some(Wish::Invisible) => Status::Offline,
            Some(Wish::Busy) => Status::Busy,
            Some(Wish::Away) => Status::Away,
            _ if idle_since + timing.away <= now => Status::Away,
            _ => Status::Online,
        }
    };
    Shown { status, scopes }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        heartbeat: 2_000,
        ttl: 6_250,
        away: 20_250,
        offline: 60_250,
        linger: 3_250,
        detection: 4_000,
    };

    fn status(model: &mut Model, now: Ms) -> Status {
        model.shown(now)[0][0].status
    }

    #[test]
    fn a_user_lingers_after_the_last_session_and_a_new_one_cancels_it() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        assert_eq!(status(&mut model, 0), Status::Online);
        model.close(0, 1, 1_000);
        assert_eq!(status(&mut model, 4_000), Status::Online);
        assert_eq!(status(&mut model, 4_250), Status::Offline);
        model.open(0, 2, "l", &["acme"], 5_000).unwrap();
        model.close(0, 2, 6_000);
        model.open(0, 3, "l", &["acme"], 7_000).unwrap();
        assert_eq!(status(&mut model, 12_000), Status::Online);
    }

    #[test]
    fn a_scope_left_while_present_elsewhere_lingers_then_drops() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        model.open(0, 2, "l", &["team-x"], 0).unwrap();
        model.close(0, 2, 1_000);
        let shown = &model.shown(2_000)[0][0];
        assert!(shown.scopes.contains("team-x"));
        let shown = &model.shown(4_250)[0][0];
        assert_eq!(shown.to(&["team-x"]), Status::Offline);
        assert_eq!(shown.to(&["acme"]), Status::Online);
    }

    #[test]
    fn a_silent_session_lapses_then_lingers_from_the_lapse() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        model.heartbeat(0, 1, 2_000).unwrap();
        assert!(model.is_live(0, 1, 8_000));
        assert_eq!(status(&mut model, 8_250), Status::Online, "lingers");
        assert!(model.heartbeat(0, 1, 8_250).is_err());
        assert_eq!(status(&mut model, 11_500), Status::Offline);
    }

    #[test]
    fn logout_ends_at_once_and_refuses_the_login_for_a_ttl() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        model.logout(0, "l", 1_000);
        assert_eq!(status(&mut model, 1_000), Status::Offline);
        assert_eq!(
            model.open(0, 2, "l", &["acme"], 2_000),
            Err(Refused::LoggedOut)
        );
        assert!(model.open(0, 2, "l", &["acme"], 7_250).is_ok());
    }

    #[test]
    fn a_dead_process_session_may_end_at_once_or_at_its_lapse() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        model.doom(&[(0, 1)], 1_000);
        let answers = model.shown(5_000);
        let statuses: Vec<Status> = answers[0].iter().map(|s| s.status).collect();
        assert_eq!(statuses, vec![Status::Online, Status::Offline]);
    }

    /// A dead process's session ended at the death, while another login
    /// still held the scope, left no linger: that login's logout later
    /// leaves the user OFFLINE in that world.
    #[test]
    fn a_world_where_a_dead_session_ended_at_the_death_lives_on() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "a", &["acme"], 0).unwrap();
        model.open(0, 2, "b", &["acme"], 0).unwrap();
        model.doom(&[(0, 1)], 1_000);
        model.logout(0, "b", 3_000);
        let answers = model.shown(3_500);
        let statuses: Vec<Status> = answers[0].iter().map(|s| s.status).collect();
        assert!(statuses.contains(&Status::Online), "{statuses:?}");
        assert!(statuses.contains(&Status::Offline), "{statuses:?}");
    }

    #[test]
    fn idleness_then_manual_status_then_expiry() {
        let mut model = Model::new(TIMING, 1);
        model.open(0, 1, "l", &["acme"], 0).unwrap();
        for t in (2_000..=22_000).step_by(2_000) {
            model.heartbeat(0, 1, t).unwrap();
        }
        assert_eq!(status(&mut model, 20_500), Status::Away);
        model.set_manual(0, Wish::Busy, Some(25_000), 21_000);
        assert_eq!(status(&mut model, 22_000), Status::Busy);
        assert_eq!(status(&mut model, 25_000), Status::Away);
    }
}
