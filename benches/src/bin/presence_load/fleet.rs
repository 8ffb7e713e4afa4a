//! The clients of a run: connecting many at once, and waiting on what they
//! receive.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::client::{self, ClientConfig, Command, Role};
use crate::shared::Shared;

/// One client to connect.
pub(crate) struct Plan {
    pub(crate) token: String,
    pub(crate) role: Role,
    /// A `subscribe` to send once connected: scope and user ids.
    pub(crate) interest: Option<(String, Vec<String>)>,
}

impl Plan {
    /// A client in `role` for each token, with no interest subscription.
    pub(crate) fn each(tokens: Vec<String>, role: Role) -> Vec<Plan> {
        tokens
            .into_iter()
            .map(|token| Plan {
                token,
                role,
                interest: None,
            })
            .collect()
    }
}

/// Connected clients and what went wrong connecting the others.
pub(crate) struct Fleet {
    tasks: Vec<JoinHandle<()>>,
    /// The command channels of the triggers, in plan order.
    pub(crate) triggers: Vec<mpsc::Sender<Command>>,
    pub(crate) connected: usize,
    pub(crate) errors: BTreeMap<String, u64>,
    pub(crate) elapsed: Duration,
}

impl Fleet {
    pub(crate) fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// The clients connected less every socket of the run that closed.
    pub(crate) fn held(&self, shared: &Shared) -> usize {
        self.connected
            .saturating_sub(shared.closed.load(Relaxed) as usize)
    }

    /// `, errors {…}` when a connect failed, else nothing.
    pub(crate) fn errors_note(&self) -> String {
        if self.errors.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", self.errors)
        }
    }
}

/// Connects every plan, `concurrency` handshakes at a time; each client
/// runs on its own task once connected.
pub(crate) async fn connect_many(
    config: &ClientConfig,
    shared: &Arc<Shared>,
    plans: Vec<Plan>,
    concurrency: usize,
) -> Fleet {
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (done, mut results) = mpsc::unbounded_channel();
    let total = plans.len();
    let mut tasks = Vec::with_capacity(total);
    let mut triggers = Vec::new();
    let fd_limit_hit = Arc::new(AtomicBool::new(false));
    for plan in plans {
        let commands = (plan.role == Role::Trigger).then(|| {
            let (tx, rx) = mpsc::channel(256);
            triggers.push(tx);
            rx
        });
        let (config, shared, permits, done, fd_limit_hit) = (
            config.clone(),
            shared.clone(),
            permits.clone(),
            done.clone(),
            fd_limit_hit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            if fd_limit_hit.load(Relaxed) {
                let _ = done.send(Err("skipped: open-files limit reached".to_owned()));
                return;
            }
            let interest = plan
                .interest
                .as_ref()
                .map(|(scope, users)| (scope.as_str(), users.as_slice()));
            let connected =
                client::connect(&config, &plan.token, plan.role, interest, &shared).await;
            drop(permit);
            match connected {
                Ok(connected) => {
                    let _ = done.send(Ok(()));
                    client::run(connected, plan.role, config, shared, commands).await;
                }
                Err(error) => {
                    if matches!(error, client::ConnectError::FdLimit) {
                        fd_limit_hit.store(true, Relaxed);
                    }
                    let _ = done.send(Err(error.to_string()));
                }
            }
        }));
    }
    drop(done);
    let mut connected = 0;
    let mut errors = BTreeMap::new();
    for _ in 0..total {
        match results.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(why)) => *errors.entry(why).or_insert(0) += 1,
            None => break,
        }
    }
    Fleet {
        tasks,
        triggers,
        connected,
        errors,
        elapsed: start.elapsed(),
    }
}

/// Waits until no frame arrived for 300 ms (the connect snapshots are
/// through), at least `least`, at most 30 s.
pub(crate) async fn settle(shared: &Shared, least: Duration) {
    tokio::time::sleep(least).await;
    let start = Instant::now();
    let mut last = shared.frames.load(Relaxed);
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.frames.load(Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Waits until `expected` deliveries, or `stall` without progress, or
/// `timeout`.
pub(crate) async fn wait_for(shared: &Shared, expected: u64, timeout: Duration, stall: Duration) {
    let start = Instant::now();
    let mut last = (shared.delivered.load(Relaxed), Instant::now());
    while start.elapsed() < timeout {
        let delivered = shared.delivered.load(Relaxed);
        if delivered >= expected {
            return;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > stall {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
