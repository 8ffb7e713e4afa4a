//! The store calls one socket's frames ask for, run one at a time beside
//! the socket's loop rather than inside it: while a call waits on a slow or
//! absent store (up to its timeout), the socket still reads frames and
//! answers heartbeats, so the session does not lapse behind its own
//! activity.
//!
//! Calls keep their order, and each status change is applied (watchers see
//! every one). A few wait behind the running one: repeated activity folds
//! into the one waiting, a snapshot replaces one of the same scope still
//! waiting; past [`MAX_WAITING`] the client hears `rate_limited`.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use presence_core::{
    AppState, CustomStatus, Presence, RequestedStatus, ScopeId, SessionId, UserId,
};

use super::answer::Answer;
use crate::protocol::ProtocolError;

/// Calls that may wait behind the running one.
pub(crate) const MAX_WAITING: usize = 8;

/// A change or a read one frame asks of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreCall {
    /// The user did something.
    Activity,
    /// A manual status and a custom status (with their expiry), as
    /// `status_change` gives them: `status` `None` keeps the manual one,
    /// `custom` `None` keeps the custom one.
    Status {
        status: Option<RequestedStatus>,
        until: Option<DateTime<Utc>>,
        custom: Option<Option<CustomStatus>>,
    },
    /// This socket's session's app state.
    State(Option<AppState>),
    /// Hide (or show) when the user was last seen.
    Privacy { hide_last_seen: bool },
    /// The snapshot a `subscribe` is answered with (the subscription
    /// itself is already in place).
    Snapshot { scope: ScopeId, watch: Watched },
}

/// What a socket watches in one scope, and so what its snapshot lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Watched {
    /// Every member.
    Scope,
    /// These users only.
    Users(Vec<UserId>),
    /// Every member while the scope is small; its counts and these users
    /// while it is large.
    Counts(Vec<UserId>),
}

/// The call under way.
struct RunningCall {
    /// The call, ending in its answer.
    answer: Pin<Box<dyn Future<Output = Answer> + Send>>,
    /// It reads a snapshot (events wait for it).
    is_snapshot: bool,
}

/// One socket's store calls: the running one and those waiting behind it.
pub(crate) struct StoreCalls {
    presence: Presence,
    user: UserId,
    session: SessionId,
    running: Option<RunningCall>,
    waiting: VecDeque<StoreCall>,
}

impl StoreCalls {
    /// The calls of `user`'s `session`.
    pub(crate) fn new(presence: Presence, user: UserId, session: SessionId) -> Self {
        Self {
            presence,
            user,
            session,
            running: None,
            waiting: VecDeque::new(),
        }
    }

    /// Queues `call` behind the others; refused when too many wait.
    pub(crate) fn push(&mut self, call: StoreCall) -> Result<(), TooManyCalls> {
        // A snapshot of a scope supersedes one still waiting for it: a
        // client repeating `subscribe` costs one read, not one each.
        if let StoreCall::Snapshot { scope, .. } = &call {
            self.forget_snapshots_of(scope);
        }
        // The activity waiting will report activity as late as this one.
        if call == StoreCall::Activity && self.waiting.back() == Some(&StoreCall::Activity) {
            return Ok(());
        }
        if self.waiting.len() >= MAX_WAITING {
            return Err(TooManyCalls);
        }
        self.waiting.push_back(call);
        Ok(())
    }

    /// Queues a snapshot of each of `scopes` that the server sends unasked
    /// (the scopes watched on connect, or every watched scope again after
    /// a lag). Never refused: they are as many as the scopes watched. A
    /// snapshot of the same scope already waiting is replaced.
    pub(crate) fn push_snapshots(&mut self, scopes: impl IntoIterator<Item = (ScopeId, Watched)>) {
        for (scope, watch) in scopes {
            self.forget_snapshots_of(&scope);
            self.waiting.push_back(StoreCall::Snapshot { scope, watch });
        }
    }

    /// Drops the waiting snapshots of `scope`: the client no longer
    /// watches it.
    pub(crate) fn forget_snapshots_of(&mut self, scope: &ScopeId) {
        self.waiting
            .retain(|call| !matches!(call, StoreCall::Snapshot { scope: of, .. } if of == scope));
    }

    /// Whether a call is running or waiting.
    pub(crate) fn is_busy(&self) -> bool {
        self.running.is_some() || !self.waiting.is_empty()
    }

    /// Whether a snapshot is running or waiting. Events wait for it, so
    /// that a scope's snapshot reaches the client before the scope's
    /// changes.
    pub(crate) fn holds_snapshot(&self) -> bool {
        self.running.as_ref().is_some_and(|call| call.is_snapshot)
            || self
                .waiting
                .iter()
                .any(|call| matches!(call, StoreCall::Snapshot { .. }))
    }

    /// Runs the calls until one ends, and gives its answer; waits forever
    /// when none is queued. Cancel-safe: a running call keeps its progress
    /// when this future is dropped.
    pub(crate) async fn next_answer(&mut self) -> Answer {
        if self.running.is_none()
            && let Some(call) = self.waiting.pop_front()
        {
            let is_snapshot = matches!(call, StoreCall::Snapshot { .. });
            let answer = run(
                self.presence.clone(),
                self.user.clone(),
                self.session.clone(),
                call,
            );
            self.running = Some(RunningCall {
                answer: Box::pin(answer),
                is_snapshot,
            });
        }
        let Some(running) = self.running.as_mut() else {
            return std::future::pending().await;
        };
        let answer = running.answer.as_mut().await;
        self.running = None;
        answer
    }

    /// Settles the calls as the connection ends: the running one is let
    /// end (a store call is not cut off halfway), those waiting are
    /// dropped.
    pub(crate) async fn settle(&mut self) {
        self.waiting.clear();
        if let Some(running) = self.running.as_mut() {
            let _ = running.answer.as_mut().await;
            self.running = None;
        }
    }
}

/// Too many calls wait already; the frame is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooManyCalls;

async fn run(presence: Presence, user: UserId, session: SessionId, call: StoreCall) -> Answer {
    let result = match call {
        StoreCall::Activity => presence.activity(&user, &session).await,
        StoreCall::Status {
            status,
            until,
            custom,
        } => match (status, custom) {
            (Some(status), None) => presence.set_status(&user, status, until).await.map(drop),
            (Some(status), Some(custom)) => presence
                .set_status_and_custom(&user, status, until, custom)
                .await
                .map(drop),
            (None, Some(custom)) => presence.set_custom_status(&user, custom).await.map(drop),
            // The decoder gives a status or a custom status.
            (None, None) => Ok(()),
        },
        StoreCall::State(state) => presence
            .set_session_state(&user, &session, state)
            .await
            .map(drop),
        StoreCall::Privacy { hide_last_seen } => presence
            .set_last_seen_hidden(&user, hide_last_seen)
            .await
            .map(drop),
        StoreCall::Snapshot { scope, watch } => {
            return snapshot(&presence, scope, &watch).await;
        }
    };
    match result {
        Ok(()) => Answer::Nothing,
        Err(failure) => Answer::failed(&user, failure),
    }
}

/// A scope's snapshot (or that of some of its users, or its counts).
async fn snapshot(presence: &Presence, scope: ScopeId, watch: &Watched) -> Answer {
    let snapshot = match watch {
        Watched::Scope => presence.snapshot(&scope).await,
        Watched::Users(users) => presence.snapshot_of(&scope, users).await,
        Watched::Counts(named) => presence.counted_snapshot(&scope, named).await,
    };
    match snapshot {
        Ok(snapshot) => Answer::Snapshot(snapshot),
        Err(failure) => {
            tracing::warn!(%scope, error = %failure, "a snapshot failed");
            Answer::Error(ProtocolError::Unavailable)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn calls() -> StoreCalls {
        let presence = Presence::builder().build().await.expect("presence");
        StoreCalls::new(presence, UserId::from("me"), SessionId::from("s"))
    }

    fn status(status: RequestedStatus) -> StoreCall {
        StoreCall::Status {
            status: Some(status),
            until: None,
            custom: None,
        }
    }

    #[tokio::test]
    async fn repeated_activity_folds_into_the_one_waiting_and_status_changes_do_not() {
        let mut calls = calls().await;
        calls.push(StoreCall::Activity).unwrap();
        calls.push(StoreCall::Activity).unwrap();
        calls.push(status(RequestedStatus::Busy)).unwrap();
        calls.push(status(RequestedStatus::Away)).unwrap();
        calls.push(StoreCall::Activity).unwrap();
        calls.push(StoreCall::Activity).unwrap();
        assert_eq!(
            Vec::from(calls.waiting.clone()),
            vec![
                StoreCall::Activity,
                status(RequestedStatus::Busy),
                status(RequestedStatus::Away),
                StoreCall::Activity
            ],
            "folded only into the last one waiting, so the order holds"
        );
    }

    #[tokio::test]
    async fn repeated_subscribes_to_a_scope_queue_one_snapshot_the_latest() {
        let mut calls = calls().await;
        let snapshot = |scope: &str, watch: Watched| StoreCall::Snapshot {
            scope: ScopeId::from(scope),
            watch,
        };
        for _ in 0..20 {
            calls
                .push(snapshot("acme", Watched::Scope))
                .expect("never refused");
        }
        calls.push(snapshot("team", Watched::Scope)).unwrap();
        calls
            .push(snapshot("acme", Watched::Users(vec!["bob".into()])))
            .unwrap();
        assert_eq!(
            Vec::from(calls.waiting.clone()),
            vec![
                snapshot("team", Watched::Scope),
                snapshot("acme", Watched::Users(vec!["bob".into()]))
            ],
            "one snapshot per scope waits: the one the latest subscribe asked for"
        );
    }

    #[tokio::test]
    async fn past_the_limit_calls_are_refused_and_unsubscribing_drops_waiting_snapshots() {
        let mut calls = calls().await;
        for scope in 0..MAX_WAITING {
            calls
                .push(StoreCall::Snapshot {
                    scope: ScopeId::from(format!("s{scope}")),
                    watch: Watched::Scope,
                })
                .unwrap();
        }
        assert!(calls.holds_snapshot());
        assert_eq!(calls.push(StoreCall::Activity), Err(TooManyCalls));
        calls.forget_snapshots_of(&ScopeId::from("s0"));
        assert_eq!(calls.waiting.len(), MAX_WAITING - 1);
        for scope in 1..MAX_WAITING {
            calls.forget_snapshots_of(&ScopeId::from(format!("s{scope}")));
        }
        assert!(!calls.holds_snapshot() && !calls.is_busy());
        calls.push(StoreCall::Activity).unwrap();
    }
}
