//! Heartbeats without a round trip each: the store remembers the sessions
//! this process opened, answers `heartbeat` from memory, and writes the
//! newest heartbeat of each in one batch per flush interval.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use presence_core::{NodeName, PresenceConfig, SessionId, StoreError, UserId};

/// A session opened through this store, as far as this process knows.
#[derive(Debug)]
pub(crate) struct LocalSession {
    user: UserId,
    /// The node that holds it (the last to open it, in this process).
    holder: Mutex<NodeName>,
    /// The user's heartbeat key, built once: a flush writes it for every
    /// beat, and formatting it each time cost as much as the write.
    heartbeats_key: Box<str>,
    /// Newest heartbeat, ms since the epoch.
    heartbeat_ms: AtomicI64,
    /// Waiting in the next batch.
    queued: AtomicBool,
    /// Another node (or the store) ended it.
    gone: AtomicBool,
}

/// The sessions of this process and the heartbeats not written yet.
#[derive(Debug, Default)]
pub(crate) struct LocalSessions {
    sessions: DashMap<SessionId, Arc<LocalSession>>,
    pending: Mutex<Vec<(SessionId, Arc<LocalSession>)>>,
}

/// One heartbeat to write.
pub(crate) struct PendingBeat {
    pub(crate) session: SessionId,
    local: Arc<LocalSession>,
    pub(crate) at_ms: i64,
}

impl PendingBeat {
    /// The sorted set of the session's user's heartbeats.
    pub(crate) fn heartbeats_key(&self) -> &str {
        &self.local.heartbeats_key
    }
}

impl LocalSessions {
    /// A session node `holder` of this process opened (or refreshed) at
    /// `at`; its user's heartbeat key is `heartbeats_key`.
    pub(crate) fn opened(
        &self,
        user: &UserId,
        session: &SessionId,
        holder: &NodeName,
        at: DateTime<Utc>,
        heartbeats_key: impl FnOnce() -> String,
    ) {
        let entry = self
            .sessions
            .entry(session.clone())
            .or_insert_with(|| {
                Arc::new(LocalSession {
                    user: user.clone(),
                    holder: Mutex::new(holder.clone()),
                    heartbeats_key: heartbeats_key().into_boxed_str(),
                    heartbeat_ms: AtomicI64::new(i64::MIN),
                    queued: AtomicBool::new(false),
                    gone: AtomicBool::new(false),
                })
            })
            .clone();
        entry
            .heartbeat_ms
            .fetch_max(at.timestamp_millis(), Ordering::AcqRel);
        entry.gone.store(false, Ordering::Release);
        *entry.holder.lock().unwrap_or_else(|e| e.into_inner()) = holder.clone();
    }

    /// Node `from` lost the session to a node elsewhere (a client resumed
    /// it there): forgotten, unless another node of this process holds it
    /// now.
    pub(crate) fn taken_from(&self, session: &SessionId, from: &NodeName) {
        self.sessions.remove_if(session, |_, local| {
            *local.holder.lock().unwrap_or_else(|e| e.into_inner()) == *from
        });
    }

    /// The session proved live at `at` by other means (activity).
    pub(crate) fn touched(&self, session: &SessionId, at: DateTime<Utc>) {
        if let Some(local) = self.sessions.get(session) {
            local
                .heartbeat_ms
                .fetch_max(at.timestamp_millis(), Ordering::AcqRel);
        }
    }

    /// How many sessions this process holds.
    pub(crate) fn count(&self) -> usize {
        self.sessions.len()
    }

    /// The session ended (closed here, or ended by another node).
    pub(crate) fn ended(&self, session: &SessionId) {
        if let Some((_, local)) = self.sessions.remove(session) {
            local.gone.store(true, Ordering::Release);
        }
    }

    /// Whether this process holds `session`, live as far as it knows: not
    /// ended, and a heartbeat younger than the TTL at `now`.
    pub(crate) fn holds(
        &self,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> bool {
        let ttl_ms = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        self.sessions.get(session).is_some_and(|local| {
            !local.gone.load(Ordering::Acquire)
                && local
                    .heartbeat_ms
                    .load(Ordering::Acquire)
                    .saturating_add(ttl_ms)
                    > now.timestamp_millis()
        })
    }

    /// The newest heartbeat this process has for `session`.
    pub(crate) fn newest_heartbeat(&self, session: &SessionId) -> Option<DateTime<Utc>> {
        let local = self.sessions.get(session)?;
        DateTime::<Utc>::from_timestamp_millis(local.heartbeat_ms.load(Ordering::Acquire))
    }

    /// Records a heartbeat in memory; fails when this process holds no such
    /// live session (a heartbeat never revives one).
    pub(crate) fn beat(
        &self,
        user: &UserId,
        session: &SessionId,
        now: DateTime<Utc>,
        config: &PresenceConfig,
    ) -> Result<(), StoreError> {
        let local = self
            .sessions
            .get(session)
            .map(|entry| entry.clone())
            .ok_or(StoreError::SessionNotFound)?;
        let ttl_ms = i64::try_from(config.session_ttl.as_millis()).unwrap_or(i64::MAX);
        let now_ms = now.timestamp_millis();
        let last = local.heartbeat_ms.load(Ordering::Acquire);
        if local.user != *user
            || local.gone.load(Ordering::Acquire)
            || last.saturating_add(ttl_ms) <= now_ms
        {
            return Err(StoreError::SessionNotFound);
        }
        local.heartbeat_ms.fetch_max(now_ms, Ordering::AcqRel);
        if !local.queued.swap(true, Ordering::AcqRel) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((session.clone(), local));
        }
        Ok(())
    }

    /// Puts beats whose write failed back in the queue (unless a newer
    /// heartbeat queued the session again meanwhile).
    pub(crate) fn requeue(&self, beats: &[PendingBeat]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for beat in beats {
            if let Some(local) = self.sessions.get(&beat.session)
                && !local.queued.swap(true, Ordering::AcqRel)
            {
                pending.push((beat.session.clone(), local.clone()));
            }
        }
    }

    /// Everything waiting to be written.
    pub(crate) fn take_pending(&self) -> Vec<PendingBeat> {
        let queued = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        queued
            .into_iter()
            .map(|(session, local)| {
                local.queued.store(false, Ordering::Release);
                PendingBeat {
                    session,
                    at_ms: local.heartbeat_ms.load(Ordering::Acquire),
                    local,
                }
            })
            .collect()
    }
}
