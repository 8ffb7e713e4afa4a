//! One worker of the soak: it owns a share of the users, drives their
//! sessions and feeds its own models the same operations, in the same
//! order. A user belongs to one shard only, so one user's operations never
//! race each other and the model sees them in the order the service did.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::{
    LoginId, Presence, PresenceConfig, RequestedStatus, ScopeId, SessionHandle, SessionSpec, UserId,
};

use super::OpCounts;
use super::model::UserModel;

/// How many of each operation one shard does in one tick.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TickPlan {
    pub(crate) opens: usize,
    pub(crate) closes: usize,
    pub(crate) activities: usize,
    pub(crate) manual_changes: usize,
    pub(crate) logouts: usize,
    pub(crate) abandons: usize,
    /// Users whose status is compared with the model before the ops.
    pub(crate) spot_checks: usize,
}

/// What the checks during the run found.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpotChecks {
    /// Users compared (those the model could tell).
    pub(crate) checked: u64,
    /// Users whose status differed from the model's.
    pub(crate) mismatches: u64,
    /// Of those, users shown present with no live session.
    pub(crate) ghosts: u64,
}

/// Users and scopes of the run, shared by every shard.
pub(crate) struct Population {
    pub(crate) users: Vec<UserId>,
    pub(crate) scopes: Vec<Vec<ScopeId>>,
}

/// A session the shard drives.
struct Driven {
    handle: SessionHandle,
    user: usize,
    login: LoginId,
    /// Which tick of the heartbeat period it heartbeats on.
    slot: u32,
}

/// A worker's users, their sessions and their models.
pub(crate) struct Shard {
    rng: fastrand::Rng,
    population: Arc<Population>,
    /// Indices into the population.
    owned: Vec<usize>,
    models: HashMap<usize, UserModel>,
    open: Vec<Driven>,
    /// Handles of "crashed" sessions: never heartbeated again, kept so that
    /// dropping them does not close the session cleanly.
    abandoned: Vec<SessionHandle>,
    next_login: u64,
    next_slot: u32,
    pub(crate) counts: OpCounts,
    pub(crate) spot: SpotChecks,
    /// What failed, a few examples.
    pub(crate) failures: Vec<String>,
}

/// Most failure examples one shard keeps.
const MAX_FAILURES: usize = 5;

impl Shard {
    pub(crate) fn new(seed: u64, population: Arc<Population>, owned: Vec<usize>) -> Self {
        let models = owned.iter().map(|&u| (u, UserModel::default())).collect();
        Self {
            rng: fastrand::Rng::with_seed(seed),
            population,
            owned,
            models,
            open: Vec::new(),
            abandoned: Vec::new(),
            next_login: 0,
            next_slot: 0,
            counts: OpCounts::default(),
            spot: SpotChecks::default(),
            failures: Vec::new(),
        }
    }

    /// Sessions driven now (not counting abandoned ones).
    pub(crate) fn open_sessions(&self) -> usize {
        self.open.len()
    }

    /// The model of each owned user.
    pub(crate) fn models(&self) -> impl Iterator<Item = (usize, &UserModel)> {
        self.models.iter().map(|(&u, m)| (u, m))
    }

    fn fail(&mut self, what: &str, error: impl std::fmt::Display) {
        self.counts.errors += 1;
        if self.failures.len() < MAX_FAILURES {
            self.failures.push(format!("{what}: {error}"));
        }
    }

    /// Does `plan` at `now`, then heartbeats the sessions whose turn it is.
    pub(crate) async fn tick(
        &mut self,
        presence: &Presence,
        now: DateTime<Utc>,
        plan: TickPlan,
        heartbeat_turn: (u32, u32),
    ) {
        let config = *presence.config();
        self.spot_check(presence, now, plan.spot_checks).await;
        for _ in 0..plan.opens {
            self.open_one(presence, now, &config).await;
        }
        for _ in 0..plan.closes.min(self.open.len()) {
            let driven = self.open.swap_remove(self.rng.usize(..self.open.len()));
            let id = driven.handle.id().clone();
            match driven.handle.close().await {
                Ok(()) => {
                    self.counts.closes += 1;
                    self.model(driven.user).close(&id, now);
                }
                Err(error) => self.fail("close", error),
            }
        }
        for _ in 0..plan.activities {
            self.activity(now, &config).await;
        }
        for _ in 0..plan.manual_changes {
            self.manual_change(presence, now).await;
        }
        for _ in 0..plan.logouts {
            self.logout(presence, now).await;
        }
        for _ in 0..plan.abandons.min(self.open.len()) {
            let driven = self.open.swap_remove(self.rng.usize(..self.open.len()));
            self.abandoned.push(driven.handle);
            self.counts.abandons += 1;
        }
        // Crashed sessions the service has ended can go, from the model too.
        self.abandoned.retain(|handle| handle.has_ended().is_none());
        if heartbeat_turn.0.is_multiple_of(heartbeat_turn.1) {
            for model in self.models.values_mut() {
                model.forget_lapsed(now);
            }
        }
        self.heartbeat(now, &config, heartbeat_turn);
    }

    fn model(&mut self, user: usize) -> &mut UserModel {
        self.models.entry(user).or_default()
    }

    async fn open_one(&mut self, presence: &Presence, now: DateTime<Utc>, config: &PresenceConfig) {
        let user = self.owned[self.rng.usize(..self.owned.len())];
        // A second tab of an existing login, or a new device.
        let mut existing = self
            .open
            .iter()
            .filter(|d| d.user == user)
            .map(|d| &d.login);
        let login = match existing.next_back() {
            Some(login) if self.rng.u8(..10) < 7 => login.clone(),
            _ => {
                self.next_login += 1;
                LoginId::new(format!(
                    "{}-l{}",
                    self.population.users[user], self.next_login
                ))
            }
        };
        let spec = SessionSpec::new(self.population.users[user].clone(), login.clone())
            .scopes(self.population.scopes[user].iter().cloned());
        match presence.open_session(spec).await {
            Ok(handle) => {
                self.counts.opens += 1;
                let id = handle.id().clone();
                self.model(user)
                    .open(id, login.clone(), now, config.session_ttl);
                self.next_slot = self.next_slot.wrapping_add(1);
                let slot = self.next_slot;
                self.open.push(Driven {
                    handle,
                    user,
                    login,
                    slot,
                });
            }
            Err(error) => self.fail("open", error),
        }
    }

    /// Compares `sample` random users with the model, as the service shows
    /// them now (every change due by `now` has been applied).
    async fn spot_check(&mut self, presence: &Presence, now: DateTime<Utc>, sample: usize) {
        if sample == 0 {
            return;
        }
        let config = *presence.config();
        // A tick of margin past the linger: a lapse is noticed at the tick.
        let margin = Duration::from_millis(200);
        let mut picked = Vec::with_capacity(sample);
        for _ in 0..sample {
            let user = self.owned[self.rng.usize(..self.owned.len())];
            if let Some(status) = self.model(user).settled_status(now, &config, margin) {
                picked.push((user, status));
            }
        }
        let ids: Vec<UserId> = picked
            .iter()
            .map(|(u, _)| self.population.users[*u].clone())
            .collect();
        let shown = match presence.statuses(&ids).await {
            Ok(shown) => shown,
            Err(error) => return self.fail("statuses", error),
        };
        for ((user, expected), actual) in picked.into_iter().zip(shown) {
            self.spot.checked += 1;
            if actual.status == expected {
                continue;
            }
            self.spot.mismatches += 1;
            let live = self.model(user).has_live_session(now);
            if !live && actual.status != presence_core::Status::Offline {
                self.spot.ghosts += 1;
            }
            if self.failures.len() < MAX_FAILURES {
                self.failures.push(format!(
                    "during the run: {} shown {} (v {}), model says {expected}",
                    actual.user_id, actual.status, actual.v
                ));
            }
        }
    }

    async fn activity(&mut self, now: DateTime<Utc>, config: &PresenceConfig) {
        if self.open.is_empty() {
            return;
        }
        let index = self.rng.usize(..self.open.len());
        let result = self.open[index].handle.activity().await;
        match result {
            Ok(()) => {
                self.counts.activities += 1;
                let (user, id) = (self.open[index].user, self.open[index].handle.id().clone());
                self.model(user).activity(&id, now, config.session_ttl);
            }
            Err(error) => self.fail("activity", error),
        }
    }

    async fn manual_change(&mut self, presence: &Presence, now: DateTime<Utc>) {
        let user = self.owned[self.rng.usize(..self.owned.len())];
        let requested = match self.rng.u8(..4) {
            0 => RequestedStatus::Busy,
            1 => RequestedStatus::Away,
            2 => RequestedStatus::Invisible,
            _ => RequestedStatus::Online,
        };
        // Expiries fall between ticks, so no check ever lands on one.
        let until = self
            .rng
            .bool()
            .then(|| now + TimeDelta::milliseconds(i64::from(self.rng.u32(1..=40)) * 100 + 50));
        let id = &self.population.users[user];
        match presence.set_status(id, requested, until).await {
            Ok(_) => {
                self.counts.manual_changes += 1;
                self.model(user).set_manual(requested, until);
            }
            Err(error) => self.fail("set_status", error),
        }
    }

    async fn logout(&mut self, presence: &Presence, now: DateTime<Utc>) {
        if self.open.is_empty() {
            return;
        }
        let index = self.rng.usize(..self.open.len());
        let (user, login) = (self.open[index].user, self.open[index].login.clone());
        match presence.logout(&self.population.users[user], &login).await {
            Ok(_) => {
                self.counts.logouts += 1;
                self.model(user).logout(&login, now);
                // Their handles have been told; dropping them closes nothing.
                self.open.retain(|d| !(d.user == user && d.login == login));
            }
            Err(error) => self.fail("logout", error),
        }
    }

    fn heartbeat(
        &mut self,
        now: DateTime<Utc>,
        config: &PresenceConfig,
        (tick, period): (u32, u32),
    ) {
        let mut failed = Vec::new();
        for driven in &self.open {
            if driven.slot % period != tick % period {
                continue;
            }
            match driven.handle.heartbeat() {
                Ok(()) => {
                    self.counts.heartbeats += 1;
                    let model = self.models.entry(driven.user).or_default();
                    model.heartbeat(driven.handle.id(), now, config.session_ttl);
                }
                Err(error) => failed.push(error),
            }
        }
        for error in failed {
            self.fail("heartbeat", error);
        }
    }
}

/// A rate spread over ticks, carrying the fractions over.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quota {
    per_tick: f64,
    carry: f64,
}

impl Quota {
    pub(crate) fn new(per_second: f64, tick: Duration) -> Self {
        Self {
            per_tick: per_second * tick.as_secs_f64(),
            carry: 0.0,
        }
    }

    /// This tick's whole share.
    pub(crate) fn take(&mut self) -> usize {
        self.carry += self.per_tick;
        let whole = self.carry.floor();
        self.carry -= whole;
        whole as usize
    }
}
