//! A seeded, deterministic, multi-node simulation of the presence service,
//! with the faults of real deployments, checked against an independent
//! model after every step.
//!
//! **The world.** Several [`presence_core::Presence`] processes (nodes
//! `node-a`, `node-b`, `node-c`; two processes of one node overlap during a
//! rolling deploy) share one store. True time is a manual clock; each
//! process reads its own clock, which a step may set apart from true time
//! (skew) or step forward a minute. Clients are browser tabs: each holds a
//! socket on one process (a session, and a subscription to the scopes it
//! is seen in), heartbeats on time, reports activity, picks statuses, and
//! applies what it receives with the rules of the shipped client
//! (`presence.js`: versions, epochs, snapshots in parts, batches), ported
//! in `client.rs`. When its socket ends it reconnects after a jittered
//! delay, to any running process.
//!
//! **The steps** ([`Step`]) are drawn from the run's seed: opens, closes,
//! reloads, activity, manual status, logout, clients whose network dies
//! (half-open sockets), time passing, and faults ([`Faults`]): a process
//! killed and started again (same node, new incarnation), a rolling deploy
//! (a new process of a node beside the old, which then shuts down), a
//! graceful shutdown, the store losing its data, a process's feed dropping
//! and coming back, clock skew and wall-clock steps.
//!
//! **The checks**, after every step and every tick of time:
//! - *view*: every client connected to a process that hears its feed
//!   shows, for every user, what the independent model ([`model`]) says
//!   observers of its scopes see, at some instant of the last tick. This
//!   is what "no ghost" (nobody ONLINE without a live session beyond
//!   `session_ttl + linger + one sweep`), "no flicker" and "every change
//!   reaches every watcher" come to for a user looking at the page;
//! - *order*: the events one socket receives come once each, each user's
//!   in increasing version;
//! - *end*: the server never ends a session whose heartbeats are on time
//!   (no early lapse), and ends sessions only for a reason the run gave;
//! - *api*: the service's answers agree with the model (a login refused
//!   as logged out is logged out, …);
//! - *quiet*: at the end, after time passes with nothing happening, every
//!   client's view equals a fresh snapshot of its scopes.
//!
//! A failing seed is shrunk to the shortest step list that still fails the
//! same check, and printed with the command that replays it
//! (`SIM_SEED=…`).

mod backend;
mod client;
mod memory;
pub mod model;
mod steps;
mod stores;
mod world;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use backend::{Backend, Deployment};
pub use client::ClientView;
pub use memory::FaultyMemory;
use presence_core::ManualClock;
pub use steps::{Draw, Faults, ScopePick, Step, Wish, plan};
pub use stores::ProcessStores;
pub use world::{RunStats, Violation};

use world::World;

/// The memory store, with every fault.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryBackend;

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn faults(&self) -> Faults {
        Faults::ALL
    }

    async fn deploy(&self, truth: Arc<ManualClock>) -> Box<dyn Deployment> {
        Box::new(FaultyMemory::with_clock(truth))
    }
}

/// Runs `steps` on a fresh deployment of `backend`; the violation that
/// stopped the run, if any.
pub async fn run(backend: &dyn Backend, seed: u64, steps: &[Step]) -> Result<RunStats, Failure> {
    let truth = Arc::new(ManualClock::default());
    let deployment = backend.deploy(truth.clone()).await;
    let mut world = match World::start(seed, truth, deployment).await {
        Ok(world) => world,
        Err(violation) => {
            return Err(Failure {
                seed,
                violation,
                trace: Vec::new(),
            });
        }
    };
    let mut outcome = Ok(());
    for (index, step) in steps.iter().enumerate() {
        outcome = world.run(index, *step).await;
        if outcome.is_err() {
            break;
        }
    }
    if outcome.is_ok() {
        outcome = world.finish(steps.len()).await;
    }
    let stats = world.stats();
    let trace = std::mem::take(&mut world.trace);
    world.tear_down().await;
    outcome.map(|()| stats).map_err(|violation| Failure {
        seed,
        violation,
        trace,
    })
}

/// A run that broke a check.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Its seed.
    pub seed: u64,
    /// What broke.
    pub violation: Violation,
    /// What happened up to it.
    pub trace: Vec<String>,
}

/// A failure shrunk to the shortest step list that still fails the same
/// check.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The seed.
    pub seed: u64,
    /// How many steps the seed drew.
    pub drawn: usize,
    /// The shortest list found.
    pub steps: Vec<Step>,
    /// Its failure.
    pub failure: Failure,
}

impl fmt::Display for Shrunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.failure.violation;
        writeln!(
            f,
            "seed {} fails the {} check: {}",
            self.seed, v.kind, v.message
        )?;
        writeln!(
            f,
            "shortest failing list ({} of {} steps; replay with SIM_SEED={}):",
            self.steps.len(),
            self.drawn,
            self.seed
        )?;
        for (index, step) in self.steps.iter().enumerate() {
            writeln!(f, "  {index:>3}. {step}")?;
        }
        writeln!(f, "what happened:")?;
        for line in &self.failure.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs one future on a fresh single-threaded runtime: the same steps
/// take the same turns on every run.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// Shrinks a failing step list: drops chunks of steps, halving the chunk
/// size, while the same check still fails; at most `budget` runs.
pub fn shrink(backend: &dyn Backend, failure: Failure, steps: Vec<Step>, budget: usize) -> Shrunk {
    let seed = failure.seed;
    let drawn = steps.len();
    let kind = failure.violation.kind;
    // Steps after the failing one play no part.
    let mut best = steps;
    best.truncate(failure.violation.step + 1);
    let mut best_failure = failure;
    let mut runs = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    loop {
        let mut removed = false;
        let mut start = 0;
        while start < best.len() && runs < budget {
            let end = (start + chunk).min(best.len());
            let mut candidate = best.clone();
            candidate.drain(start..end);
            runs += 1;
            match block_on(run(backend, seed, &candidate)) {
                Err(failure) if failure.violation.kind == kind => {
                    candidate.truncate(failure.violation.step + 1);
                    best = candidate;
                    best_failure = failure;
                    removed = true;
                }
                _ => start = end,
            }
        }
        if runs >= budget || (chunk == 1 && !removed) {
            break;
        }
        if !removed {
            chunk = chunk.div_ceil(2);
        }
    }
    Shrunk {
        seed,
        drawn,
        steps: best,
        failure: best_failure,
    }
}

/// What a campaign is: which seeds, how many steps each.
#[derive(Clone, Debug)]
pub struct Campaign {
    /// The first seed.
    pub first_seed: u64,
    /// How many seeds, one after the other.
    pub seeds: u64,
    /// Steps drawn per seed.
    pub steps: usize,
    /// Runs the shrinking of one failure may take.
    pub shrink_budget: usize,
    /// Stop at the first failure.
    pub stop_at_first: bool,
    /// The faults to inject (`None`: every fault the backend takes).
    pub faults: Option<Faults>,
    /// Every session is seen in `acme` alone: no user ever joins or leaves
    /// a scope while present elsewhere.
    pub one_scope: bool,
}

impl Campaign {
    /// `seeds` seeds from `first_seed`, `steps` steps each; `SIM_SEED` in
    /// the environment replaces them with that one seed, and `SIM_STEPS`
    /// the number of steps, `SIM_FAULTS` the faults (a comma-separated
    /// list of `kill`, `deploy`, `data_loss`, `feed`, `clocks`, or `none`),
    /// and `SIM_ALL=1` goes on past the first failure.
    pub fn from_env(first_seed: u64, seeds: u64, steps: usize) -> Self {
        let env = |name: &str| std::env::var(name).ok().and_then(|v| v.trim().parse().ok());
        let faults = std::env::var("SIM_FAULTS").ok().map(|list| {
            let has = |name: &str| list.split(',').any(|f| f.trim() == name);
            Faults {
                kill: has("kill"),
                deploy: has("deploy"),
                data_loss: has("data_loss"),
                feed: has("feed"),
                clocks: has("clocks"),
            }
        });
        let (first_seed, seeds) = match env("SIM_SEED") {
            Some(seed) => (seed, 1),
            None => (first_seed, env("SIM_SEEDS").unwrap_or(seeds)),
        };
        Self {
            first_seed,
            seeds,
            steps: env("SIM_STEPS").map_or(steps, |s: u64| s as usize),
            shrink_budget: env("SIM_SHRINK").map_or(400, |s: u64| s as usize),
            stop_at_first: env("SIM_ALL").is_none_or(|all: u64| all == 0),
            faults,
            one_scope: env("SIM_ONE_SCOPE").is_some_and(|one: u64| one != 0),
        }
    }
}

/// What a campaign found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Which store.
    pub backend: &'static str,
    /// Seeds run.
    pub seeds: u64,
    /// Steps run, over every seed.
    pub steps: usize,
    /// Faults injected.
    pub faults: usize,
    /// Events clients received.
    pub events: usize,
    /// Client views compared with the model.
    pub checks: usize,
    /// The failures, shrunk.
    pub failures: Vec<Shrunk>,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation on {}: {} seeds, {} steps, {} faults injected, {} events, {} view checks, {} failures, in {:.1?}",
            self.backend,
            self.seeds,
            self.steps,
            self.faults,
            self.events,
            self.checks,
            self.failures.len(),
            self.elapsed
        )?;
        for failure in &self.failures {
            writeln!(f, "{failure}")?;
        }
        Ok(())
    }
}

/// Runs every seed of `campaign` on `backend`, shrinking each failure.
pub fn campaign(backend: &dyn Backend, campaign: &Campaign) -> Report {
    let started = Instant::now();
    let allowed = backend.faults();
    let faults = campaign.faults.map_or(allowed, |wanted| Faults {
        kill: wanted.kill && allowed.kill,
        deploy: wanted.deploy && allowed.deploy,
        data_loss: wanted.data_loss && allowed.data_loss,
        feed: wanted.feed && allowed.feed,
        clocks: wanted.clocks && allowed.clocks,
    });
    let mut report = Report {
        backend: backend.name(),
        ..Report::default()
    };
    for seed in campaign.first_seed..campaign.first_seed + campaign.seeds {
        let mut steps = plan(seed, campaign.steps, faults);
        if campaign.one_scope {
            for step in &mut steps {
                if let Step::Open { scopes, .. } = step {
                    *scopes = ScopePick::Acme;
                }
            }
        }
        report.seeds += 1;
        match block_on(run(backend, seed, &steps)) {
            Ok(stats) => {
                report.steps += stats.steps;
                report.faults += stats.faults;
                report.events += stats.events;
                report.checks += stats.checks;
            }
            Err(failure) => {
                report.steps += failure.violation.step + 1;
                let shrunk = shrink(backend, failure, steps, campaign.shrink_budget);
                report.failures.push(shrunk);
                if campaign.stop_at_first {
                    break;
                }
            }
        }
    }
    report.elapsed = started.elapsed();
    report
}
