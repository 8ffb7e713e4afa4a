//! The soak's recorder: one subscription watching every scope, checking
//! each event as it arrives and keeping the last one per user and scope.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use presence_core::{Delivery, Presence, PresenceEvent, ScopeId, Status, Subscription, UserId};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The last event seen for one user in one scope.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LastEvent {
    pub(crate) status: Status,
    pub(crate) v: u64,
    /// The lag epoch it arrived in: a gap in `v` across a lag is excused.
    epoch: u64,
    /// Read after a lag rather than received: events up to `v` may still
    /// arrive, stale.
    reread: bool,
}

/// What the recorder counted.
#[derive(Debug, Default)]
pub(crate) struct Recording {
    pub(crate) events: u64,
    /// Events whose `v` equals the previous one of the user in the scope.
    pub(crate) duplicates: u64,
    /// Events whose `v` is below the previous one.
    pub(crate) out_of_order: u64,
    /// Events whose `v` skips versions (outside a lag): lost events.
    pub(crate) gaps: u64,
    /// Events about a user in a scope the user is not in.
    pub(crate) foreign_scope: u64,
    /// [`Delivery::Lagged`] received (each followed by a re-read).
    pub(crate) lags: u64,
    /// Of those, the ones before the first event (a feed subscribing
    /// lazily tells its new watchers to re-read).
    pub(crate) lags_before_events: u64,
    /// Events not newer than what a re-read after a lag showed: stale, as
    /// the lag policy says, and dropped.
    pub(crate) stale_after_lag: u64,
    /// Examples of the violations above, for the report.
    pub(crate) examples: Vec<String>,
    pub(crate) last: HashMap<(UserId, ScopeId), LastEvent>,
    epoch: u64,
}

const MAX_EXAMPLES: usize = 10;

impl Recording {
    fn note(&mut self, example: String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(example);
        }
    }

    fn record(&mut self, event: &PresenceEvent, scopes_of: &HashMap<UserId, Vec<ScopeId>>) {
        self.events += 1;
        if !scopes_of
            .get(&event.user_id)
            .is_some_and(|scopes| scopes.contains(&event.scope))
        {
            self.foreign_scope += 1;
            self.note(format!(
                "{} seen in foreign scope {}",
                event.user_id, event.scope
            ));
        }
        let key = (event.user_id.clone(), event.scope.clone());
        let epoch = self.epoch;
        let previous = self.last.get(&key).copied();
        let (last_v, last_epoch) = previous.map_or((0, epoch), |last| (last.v, last.epoch));
        if previous.is_some_and(|last| last.reread && event.v <= last.v) {
            self.stale_after_lag += 1;
            return;
        }
        if event.v == last_v {
            self.duplicates += 1;
            self.note(format!("{} in {}: v {} twice", key.0, key.1, event.v));
            return;
        }
        if event.v < last_v {
            self.out_of_order += 1;
            self.note(format!(
                "{} in {}: v {} after {}",
                key.0, key.1, event.v, last_v
            ));
            return;
        }
        if event.v > last_v + 1 && last_epoch == epoch {
            self.gaps += 1;
            self.note(format!(
                "{} in {}: v {} after {}",
                key.0, key.1, event.v, last_v
            ));
        }
        let status = event.status;
        let last = LastEvent {
            status,
            v: event.v,
            epoch,
            reread: false,
        };
        self.last.insert(key, last);
    }

    /// After a lag: re-read every user, as a client re-reads its snapshot.
    async fn resync(&mut self, presence: &Presence, scopes_of: &HashMap<UserId, Vec<ScopeId>>) {
        self.lags += 1;
        if self.events == 0 {
            self.lags_before_events += 1;
        }
        self.epoch += 1;
        let users: Vec<UserId> = scopes_of.keys().cloned().collect();
        let Ok(now) = presence.statuses(&users).await else {
            return;
        };
        for (user, presence) in users.iter().zip(now) {
            let Some(scopes) = scopes_of.get(user) else {
                continue;
            };
            for scope in scopes {
                let key = (user.clone(), scope.clone());
                if self.last.get(&key).is_none_or(|last| last.v < presence.v) {
                    let epoch = self.epoch;
                    let (status, v) = (presence.status, presence.v);
                    let last = LastEvent {
                        status,
                        v,
                        epoch,
                        reread: true,
                    };
                    self.last.insert(key, last);
                }
            }
        }
    }
}

/// A running recorder.
pub(crate) struct Recorder {
    task: JoinHandle<Recording>,
    stop: watch::Sender<bool>,
    received: Arc<AtomicU64>,
}

impl Recorder {
    /// Watches every scope of `scopes_of` on `presence`.
    pub(crate) fn start(
        presence: &Presence,
        scopes_of: Arc<HashMap<UserId, Vec<ScopeId>>>,
    ) -> Self {
        let mut subscription = presence.subscribe();
        subscription.accept_batches();
        let mut scopes: Vec<&ScopeId> = scopes_of.values().flatten().collect();
        scopes.sort_unstable();
        scopes.dedup();
        for scope in scopes {
            subscription.watch_scope(scope.clone());
        }
        let (stop, stopped) = watch::channel(false);
        let received = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(record(
            presence.clone(),
            subscription,
            scopes_of,
            stopped,
            received.clone(),
        ));
        Self {
            task,
            stop,
            received,
        }
    }

    /// Events received so far.
    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Acquire)
    }

    /// Stops after taking what is already queued.
    pub(crate) async fn finish(self) -> Recording {
        self.stop.send_replace(true);
        self.task.await.unwrap_or_default()
    }
}

async fn record(
    presence: Presence,
    mut subscription: Subscription,
    scopes_of: Arc<HashMap<UserId, Vec<ScopeId>>>,
    mut stopped: watch::Receiver<bool>,
    received: Arc<AtomicU64>,
) -> Recording {
    let mut recording = Recording::default();
    loop {
        let delivery = tokio::select! {
            delivery = subscription.recv() => delivery,
            _ = stopped.changed() => break,
        };
        let Some(delivery) = delivery else { break };
        take(&mut recording, &delivery, &presence, &scopes_of, &received).await;
    }
    while let Some(delivery) = subscription.try_recv() {
        take(&mut recording, &delivery, &presence, &scopes_of, &received).await;
    }
    recording
}

async fn take(
    recording: &mut Recording,
    delivery: &Delivery,
    presence: &Presence,
    scopes_of: &HashMap<UserId, Vec<ScopeId>>,
    received: &AtomicU64,
) {
    if matches!(delivery, Delivery::Lagged) {
        recording.resync(presence, scopes_of).await;
        return;
    }
    for event in delivery.events() {
        recording.record(event.event(), scopes_of);
    }
    received.fetch_add(delivery.events().len() as u64, Ordering::Release);
}
