//! Heartbeats without a database round trip each: the store remembers the
//! sessions this process opened, answers `heartbeat` from memory, and the
//! flusher writes the newest heartbeat of each in one statement per flush
//! interval. The database thus sees at most one write per session per
//! interval, however often clients beat.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use presence_core::{
    NodeName, PresenceConfig, SessionId, StoreError, Transition, Update, UserId, UserOp, UserRecord,
};

/// A session opened through this store, as far as this process knows.
#[derive(Debug)]
pub(crate) struct LocalSession {
    user: UserId,
    /// The node that holds it (the last to open it, in this process).
    holder: Mutex<NodeName>,
    /// Newest heartbeat, ms since the epoch.
    heartbeat_ms: AtomicI64,
    /// `session_ttl` in ms, as of the newest heartbeat.
    ttl_ms: AtomicI64,
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
#[derive(Debug)]
pub(crate) struct PendingBeat {
    pub(crate) session: SessionId,
    /// The heartbeat, ms since the epoch.
    pub(crate) at_ms: i64,
    /// When the session lapses without another one, ms since the epoch.
    pub(crate) expires_ms: i64,
}

fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl LocalSessions {
    /// A session node `holder` of this process opened (or refreshed) at
    /// `at`.
    pub(crate) fn opened(
        &self,
        user: &UserId,
        session: &SessionId,
        holder: &NodeName,
        at: DateTime<Utc>,
        config: &PresenceConfig,
    ) {
        let entry = self
            .sessions
            .entry(session.clone())
            .or_insert_with(|| {
                Arc::new(LocalSession {
                    user: user.clone(),
                    holder: Mutex::new(holder.clone()),
                    heartbeat_ms: AtomicI64::new(i64::MIN),
                    ttl_ms: AtomicI64::new(millis(config.session_ttl)),
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

    /// Keeps this process's view in line with a change it stored: ended
    /// sessions are forgotten, an opened one is remembered, and the local
    /// sessions in `record` were heard from at least as recently as it says
    /// (activity proves liveness too).
    pub(crate) fn after_change(
        &self,
        update: &Update<'_>,
        transition: &Transition,
        record: &UserRecord,
    ) {
        // Ended first: a lapsed session reopened under its id stays known.
        for session in &transition.ended_sessions {
            self.ended(session);
        }
        match update.op {
            UserOp::Open(new) => self.opened(
                update.user,
                &new.id,
                &update.node.name,
                update.now,
                update.config,
            ),
            // Never fresher than the holder heard it.
            UserOp::Restore {
                session,
                last_heartbeat,
            } => self.opened(
                update.user,
                &session.id,
                &update.node.name,
                *last_heartbeat,
                update.config,
            ),
            _ => {}
        }
        self.saw(record);
    }

    fn saw(&self, record: &UserRecord) {
        for session in &record.sessions {
            if let Some(local) = self.sessions.get(&session.id) {
                local
                    .heartbeat_ms
                    .fetch_max(session.last_heartbeat.timestamp_millis(), Ordering::AcqRel);
            }
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
        let ttl_ms = millis(config.session_ttl);
        let now_ms = now.timestamp_millis();
        let last = local.heartbeat_ms.load(Ordering::Acquire);
        if local.user != *user
            || local.gone.load(Ordering::Acquire)
            || last.saturating_add(ttl_ms) <= now_ms
        {
            return Err(StoreError::SessionNotFound);
        }
        local.ttl_ms.store(ttl_ms, Ordering::Release);
        local.heartbeat_ms.fetch_max(now_ms, Ordering::AcqRel);
        self.queue(session, local);
        Ok(())
    }

    fn queue(&self, session: &SessionId, local: Arc<LocalSession>) {
        if !local.queued.swap(true, Ordering::AcqRel) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((session.clone(), local));
        }
    }

    /// Everything waiting to be written.
    pub(crate) fn take_pending(&self) -> Vec<PendingBeat> {
        let queued = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        queued
            .into_iter()
            .map(|(session, local)| {
                local.queued.store(false, Ordering::Release);
                let at_ms = local.heartbeat_ms.load(Ordering::Acquire);
                PendingBeat {
                    session,
                    at_ms,
                    expires_ms: at_ms.saturating_add(local.ttl_ms.load(Ordering::Acquire)),
                }
            })
            .collect()
    }

    /// Puts back heartbeats whose write failed, for the next flush (those
    /// of sessions that ended meanwhile are dropped).
    pub(crate) fn requeue(&self, beats: &[PendingBeat]) {
        for beat in beats {
            let local = self.sessions.get(&beat.session).map(|entry| entry.clone());
            if let Some(local) = local {
                self.queue(&beat.session, local);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> PresenceConfig {
        PresenceConfig {
            session_ttl: std::time::Duration::from_secs(30),
            ..PresenceConfig::default()
        }
    }

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_millis(ms).expect("valid")
    }

    #[test]
    fn many_beats_of_one_session_make_one_pending_write_of_the_newest() {
        let local = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"n".into(), at(0), &config());
        for ms in [1_000, 2_000, 3_000] {
            local
                .beat(&user, &session, at(ms), &config())
                .expect("live");
        }
        let pending = local.take_pending();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].at_ms, pending[0].expires_ms), (3_000, 33_000));
        assert!(local.take_pending().is_empty());
        local.requeue(&pending);
        assert_eq!(local.take_pending().len(), 1);
    }

    #[test]
    fn a_lapsed_ended_or_foreign_session_refuses_heartbeats() {
        let local = LocalSessions::default();
        let (user, session) = (UserId::from("u"), SessionId::from("s"));
        local.opened(&user, &session, &"n".into(), at(0), &config());
        assert!(local.beat(&"v".into(), &session, at(1), &config()).is_err());
        assert!(local.beat(&user, &session, at(30_000), &config()).is_err());
        local.ended(&session);
        assert!(local.beat(&user, &session, at(1), &config()).is_err());
    }
}
