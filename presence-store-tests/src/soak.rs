//! The churn soak (issue 8): many sessions over many users opening and
//! closing at a steady rate, with random activity, heartbeats, manual
//! statuses, logouts and crashed clients, while a recorder watches every
//! scope; at the end the service is compared with an independent model fed
//! the same operations.
//!
//! **Time.** The service runs on a [`ManualClock`] that the driver moves
//! one tick (100 ms by default) at a time, in step with real time: each
//! tick's operations all happen at one known instant, then the clock
//! advances and every due change is applied ([`Presence::run_due`]). So
//! the model knows the exact time of every operation, and the thresholds,
//! which are short (seconds) so that lapses, AWAY and OFFLINE by idleness,
//! manual expiries and lingers all happen during a run, are placed half a
//! tick off the tick grid: no comparison ever lands on a boundary. With the
//! real clock the model could only guess which side of a threshold a
//! change fell on.
//!
//! **Checks.** Each tick, a sample of users whose status the model can
//! tell (a live session, or every session end older than the linger) is
//! compared with the service. After the churn, sessions stop opening and
//! ending (activity, heartbeats and manual changes go on) for
//! `session_ttl + linger` more ticks, so every crashed session has lapsed
//! and every linger has run out; once the recorder has everything fan-out
//! delivered, every user's status, every scope's snapshot and every
//! recorded event are checked (see [`SoakReport`]).
//!
//! ```no_run
//! # async fn soak() -> Result<(), presence_core::Error> {
//! use std::{sync::Arc, time::Duration};
//! let config = presence_store_tests::soak::SoakConfig::new(1_000, 200, Duration::from_secs(3));
//! let report = presence_store_tests::soak::run(Arc::new(presence_core::MemoryStore::new()), &config).await?;
//! assert_eq!(report.violations(), 0, "{report}");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use presence_core::store::PresenceStore;
use presence_core::{Error, ManualClock, Presence, PresenceConfig, ScopeId, UserId};
use tokio::task::JoinSet;
use tokio::time::Instant;

mod check;
mod model;
mod recorder;
mod report;
mod shard;

pub use report::{OpCounts, Rss, SoakReport, rss_kib};

use check::{check_recording, compare, wait_for_recorder};
use recorder::Recorder;
use shard::{Population, Quota, Shard, TickPlan};

/// How long a new watcher gives the store's feed to subscribe.
const FEED_SETTLE: Duration = Duration::from_millis(500);

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Sessions kept open (about).
    pub sessions: usize,
    /// Users they belong to.
    pub users: usize,
    /// Scopes the users are spread over (each user is in one or two).
    pub scopes: usize,
    /// Session opens plus closes per second.
    pub rate: u32,
    /// How long the churn lasts: `duration / tick` ticks, paced to real
    /// time (longer if the machine cannot keep up).
    pub duration: Duration,
    /// The step of the manual clock, and of the driver.
    pub tick: Duration,
    /// Concurrent workers, each owning a share of the users.
    pub workers: usize,
    /// Activity calls per second.
    pub activity_rate: u32,
    /// Manual status changes per second.
    pub manual_rate: u32,
    /// Logouts per second.
    pub logout_rate: u32,
    /// Sessions abandoned (left to lapse) per second.
    pub crash_rate: u32,
    /// Users compared with the model each tick, during the run.
    pub spot_checks_per_tick: usize,
    /// The service's thresholds; keep them off multiples of `tick`.
    pub presence: PresenceConfig,
    /// The recorder's queue, in deliveries.
    pub recorder_capacity: usize,
    /// Seeds the random choices.
    pub seed: u64,
}

impl SoakConfig {
    /// `sessions` over `sessions / 2` users, `rate` opens+closes per
    /// second for `duration`, with short thresholds: heartbeat 1 s,
    /// `session_ttl` 2.55 s, `linger` 1.05 s, `away_after` 3.05 s,
    /// `offline_after` 6.05 s.
    pub fn new(sessions: usize, rate: u32, duration: Duration) -> Self {
        let users = (sessions / 2).max(1);
        Self {
            sessions,
            users,
            scopes: (users / 50).max(1),
            rate,
            duration,
            tick: Duration::from_millis(100),
            workers: 8,
            activity_rate: rate,
            manual_rate: rate / 10 + 1,
            logout_rate: rate / 50 + 1,
            crash_rate: rate / 50 + 1,
            spot_checks_per_tick: 32,
            presence: PresenceConfig {
                heartbeat_interval: Duration::from_millis(1000),
                session_ttl: Duration::from_millis(2550),
                linger: Duration::from_millis(1050),
                away_after: Duration::from_millis(3050),
                offline_after: Duration::from_millis(6050),
                ..PresenceConfig::default()
            },
            recorder_capacity: 1 << 16,
            seed: 0x50a4,
        }
    }
}

/// The scopes of user `index`: one, and a second for every third user.
fn scopes_of(index: usize, scopes: usize) -> Vec<ScopeId> {
    let first = index % scopes;
    let second = (index / 3 * 7 + 1) % scopes;
    let mut list = vec![ScopeId::new(format!("scope-{first}"))];
    if index.is_multiple_of(3) && second != first {
        list.push(ScopeId::new(format!("scope-{second}")));
    }
    list
}

/// The manual clock, the service on `store`, and a way to move time.
struct Stage {
    clock: Arc<ManualClock>,
    presence: Presence,
    tick: Duration,
    ticks: u32,
    heartbeat_period: u32,
    peak_rss: Option<u64>,
}

impl Stage {
    fn now(&self) -> DateTime<Utc> {
        presence_core::Clock::now(&*self.clock)
    }

    /// Every shard does its plan at the current instant; then time moves on
    /// one tick and what fell due is applied.
    async fn tick(&mut self, shards: Vec<Shard>, plans: &[TickPlan]) -> Result<Vec<Shard>, Error> {
        let now = self.now();
        let turn = (self.ticks, self.heartbeat_period);
        let mut running = JoinSet::new();
        for (index, (mut shard, plan)) in shards.into_iter().zip(plans.iter().copied()).enumerate()
        {
            let presence = self.presence.clone();
            running.spawn(async move {
                shard.tick(&presence, now, plan, turn).await;
                (index, shard)
            });
        }
        let mut done: Vec<(usize, Shard)> = running.join_all().await;
        done.sort_by_key(|(index, _)| *index);
        self.clock.advance(self.tick);
        self.ticks = self.ticks.wrapping_add(1);
        self.presence.run_due().await?;
        self.peak_rss = self.peak_rss.max(rss_kib());
        Ok(done.into_iter().map(|(_, shard)| shard).collect())
    }
}

/// Runs the soak on a fresh, empty `store` and reports what it found.
pub async fn run(store: Arc<dyn PresenceStore>, config: &SoakConfig) -> Result<SoakReport, Error> {
    let rss_start = rss_kib();
    let clock = Arc::new(ManualClock::default());
    let presence = Presence::builder()
        .shared_store(store)
        .clock(clock.clone())
        .config(config.presence)
        .subscriber_capacity(config.recorder_capacity)
        .build()
        .await?;
    let scopes = config.scopes.max(1);
    let population = Arc::new(Population {
        users: (0..config.users.max(1))
            .map(|i| UserId::new(format!("soak-u{i}")))
            .collect(),
        scopes: (0..config.users.max(1))
            .map(|i| scopes_of(i, scopes))
            .collect(),
    });
    let scope_map: HashMap<UserId, Vec<ScopeId>> = population
        .users
        .iter()
        .cloned()
        .zip(population.scopes.iter().cloned())
        .collect();
    let recorder = Recorder::start(&presence, Arc::new(scope_map));
    // A store whose feed subscribes to scopes lazily (Redis pub/sub) tells
    // watchers to re-read once it has: let that happen before any change.
    tokio::time::sleep(FEED_SETTLE).await;
    let workers = config.workers.clamp(1, population.users.len());
    let mut shards: Vec<Shard> = (0..workers)
        .map(|w| {
            let owned = (w..population.users.len()).step_by(workers).collect();
            Shard::new(
                config.seed ^ (w as u64).wrapping_mul(0x9e37_79b9),
                population.clone(),
                owned,
            )
        })
        .collect();
    let tick_ms = config.tick.as_millis().max(1);
    let mut stage = Stage {
        clock,
        presence: presence.clone(),
        tick: config.tick,
        ticks: 0,
        heartbeat_period: (config.presence.heartbeat_interval.as_millis() / tick_ms).max(1) as u32,
        peak_rss: rss_start,
    };
    let share = config.sessions / workers;
    // The initial fill, a few ticks' worth at a time.
    while shards.iter().map(Shard::open_sessions).sum::<usize>() + workers <= config.sessions {
        let plans: Vec<TickPlan> = shards
            .iter()
            .map(|s| TickPlan {
                opens: share.saturating_sub(s.open_sessions()).min(250),
                ..TickPlan::default()
            })
            .collect();
        let before: usize = shards.iter().map(Shard::open_sessions).sum();
        shards = stage.tick(shards, &plans).await?;
        if shards.iter().map(Shard::open_sessions).sum::<usize>() == before {
            // Every open failed (they are counted as errors): go on.
            break;
        }
    }
    let filled: u64 = shards.iter().map(|s| s.counts.opens).sum();
    let rss_filled = rss_kib();
    let per_worker = |rate: u32| f64::from(rate) / workers as f64;
    let mut quotas: Vec<[Quota; 5]> = (0..workers)
        .map(|_| {
            [
                config.rate / 2,
                config.activity_rate,
                config.manual_rate,
                config.logout_rate,
                config.crash_rate,
            ]
            .map(|rate| Quota::new(per_worker(rate), config.tick))
        })
        .collect();
    let spot_checks = config.spot_checks_per_tick.div_ceil(workers);
    let started = Instant::now();
    let mut peak_sessions = 0;
    // A fixed number of ticks: the same operations whatever the machine;
    // a machine that cannot keep up takes longer, and the rate says so.
    let churn_ticks = (config.duration.as_millis() / tick_ms).max(1) as u32;
    for tick_index in 1..=churn_ticks {
        let plans: Vec<TickPlan> = shards
            .iter()
            .zip(quotas.iter_mut())
            .map(|(shard, [churn, activity, manual, logout, crash])| {
                let closes = churn.take();
                let missing = share.saturating_sub(shard.open_sessions()).min(closes + 1);
                TickPlan {
                    opens: closes + missing,
                    closes,
                    activities: activity.take(),
                    manual_changes: manual.take(),
                    logouts: logout.take(),
                    abandons: crash.take(),
                    spot_checks,
                }
            })
            .collect();
        shards = stage.tick(shards, &plans).await?;
        peak_sessions = peak_sessions.max(shards.iter().map(Shard::open_sessions).sum());
        // Keep the manual clock in step with real time.
        tokio::time::sleep_until(started + config.tick * tick_index).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let churned: u64 = shards
        .iter()
        .map(|s| s.counts.opens + s.counts.closes)
        .sum::<u64>()
        - filled;
    // Settle: no session starts or ends any more (activity, heartbeats and
    // manual changes go on), until every crashed session lapsed and every
    // linger ran out.
    let settle = config.presence.session_ttl + config.presence.linger + config.tick * 2;
    for _ in 0..(settle.as_millis() / tick_ms) {
        let plans: Vec<TickPlan> = quotas
            .iter_mut()
            .map(|[_, activity, manual, _, _]| TickPlan {
                activities: activity.take(),
                manual_changes: manual.take(),
                spot_checks,
                ..TickPlan::default()
            })
            .collect();
        shards = stage.tick(shards, &plans).await?;
    }
    wait_for_recorder(&presence, &recorder).await;
    let end = stage.now();
    let mut report = compare(&presence, &population, &shards, end).await?;
    let recording = recorder.finish().await;
    check_recording(
        &mut report,
        &recording,
        &population,
        &shards,
        end,
        &presence,
    )
    .await?;
    for shard in &shards {
        report.ops.add(&shard.counts);
        report.checked_during_run += shard.spot.checked;
        report.mismatches_during_run += shard.spot.mismatches;
        report.ghosts_during_run += shard.spot.ghosts;
        report.examples.extend(shard.failures.iter().cloned());
    }
    report.scopes = scopes;
    report.peak_sessions = peak_sessions;
    report.seconds = seconds;
    report.churn_per_second = churned as f64 / seconds.max(f64::EPSILON);
    report.rss = Rss {
        start: rss_start,
        filled: rss_filled,
        peak: stage.peak_rss.max(rss_kib()),
        end: rss_kib(),
    };
    // Shut down first: it closes the sessions and tells their handles, so
    // dropping them then writes nothing more to the store.
    presence.shutdown().await;
    drop(shards);
    Ok(report)
}
