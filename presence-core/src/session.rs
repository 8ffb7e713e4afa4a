//! Sessions as a host app holds them: what to open, and a handle that ends
//! the session when dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::details::SessionKind;
use crate::error::Error;
use crate::ids::{LoginId, ScopeId, SessionId, UserId};
use crate::service::Presence;
use crate::store::UserOp;

/// A session to open: whose it is, under which login, in which scopes.
///
/// ```
/// use presence_core::SessionSpec;
///
/// let spec = SessionSpec::new("alice", "login-1")
///     .scope("acme")
///     .metadata("device", "laptop");
/// assert_eq!(spec.scopes.len(), 1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    /// The user.
    pub user: UserId,
    /// The login (cookie session, token) it belongs to.
    pub login: LoginId,
    /// The scopes the user is seen in.
    pub scopes: Vec<ScopeId>,
    /// Free-form facts to keep with the session.
    pub metadata: BTreeMap<String, String>,
    /// The session id; a random one if `None`.
    pub id: Option<SessionId>,
    /// What kind of client it is (watchers see a status per kind).
    pub kind: Option<SessionKind>,
}

impl SessionSpec {
    /// A session of `user` under `login`, in no scope yet.
    pub fn new(user: impl Into<UserId>, login: impl Into<LoginId>) -> Self {
        Self {
            user: user.into(),
            login: login.into(),
            scopes: Vec::new(),
            metadata: BTreeMap::new(),
            id: None,
            kind: None,
        }
    }

    /// Adds a scope the user is seen in.
    pub fn scope(mut self, scope: impl Into<ScopeId>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// Adds several scopes.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<ScopeId>,
    {
        self.scopes.extend(scopes.into_iter().map(Into::into));
        self
    }

    /// Keeps a fact with the session.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Says what kind of client the session is: watchers see a status per
    /// kind (`"devices": {"web": "ONLINE", "mobile": "AWAY"}`).
    pub fn kind(mut self, kind: SessionKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Uses a given session id instead of a random one.
    pub fn id(mut self, id: impl Into<SessionId>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// Why a session ended without its holder closing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionEnd {
    /// Its login logged out (or the user logged out everywhere).
    LoggedOut,
    /// Its heartbeats lapsed, or a restarted node cleared it.
    #[default]
    Lapsed,
    /// It was closed through the service rather than through this handle.
    Closed,
    /// The service is shutting down.
    ShutDown,
    /// A newer [`Presence::open_session`] with the same session id (a
    /// client resuming its session) took the session over; this handle no
    /// longer controls it, and dropping it closes nothing.
    Replaced,
}

impl SessionEnd {
    /// Why the sessions a change ended have ended.
    pub fn for_op(op: &UserOp) -> Self {
        match op {
            UserOp::Logout { .. } | UserOp::LogoutEverywhere => SessionEnd::LoggedOut,
            UserOp::Close { .. } => SessionEnd::Closed,
            _ => SessionEnd::Lapsed,
        }
    }
}

/// A live session. Heartbeat and report activity through it; dropping it
/// closes the session (with the linger of docs/rules.md#linger), so a socket task that
/// ends for any reason leaves no ghost.
pub struct SessionHandle {
    pub(crate) presence: Presence,
    pub(crate) user: UserId,
    pub(crate) id: SessionId,
    pub(crate) login: LoginId,
    pub(crate) generation: u64,
    pub(crate) ended: Arc<EndSignal>,
    pub(crate) open: bool,
}

impl SessionHandle {
    /// The session's id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The user it belongs to.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The login it belongs to.
    pub fn login(&self) -> &LoginId {
        &self.login
    }

    /// Proves the session live. Never changes a status; cheap.
    pub fn heartbeat(&self) -> Result<(), Error> {
        self.presence.heartbeat(&self.user, &self.id)
    }

    /// The user did something in this session.
    pub async fn activity(&self) -> Result<(), Error> {
        self.presence.activity(&self.user, &self.id).await
    }

    /// Why the session ended, once the server ended it (logout, lapse,
    /// shutdown). Waits until then. A socket task selects on this to close
    /// its connection.
    pub async fn ended(&mut self) -> SessionEnd {
        self.ended.wait().await
    }

    /// Whether the server has ended the session.
    pub fn has_ended(&self) -> Option<SessionEnd> {
        self.ended.get()
    }

    /// Closes the session now (the last one starts the linger). A session
    /// the server has already ended, or a newer handle has taken over,
    /// is left alone.
    pub async fn close(mut self) -> Result<(), Error> {
        self.open = false;
        if self.has_ended().is_some() {
            return Ok(());
        }
        let result = self.presence.close_own_session(&self.user, &self.id).await;
        match &result {
            Ok(()) => self.presence.forget_local(&self.id, self.generation),
            // The store did not hear the close: the session lapses by its
            // last heartbeat instead.
            Err(_) => self.presence.abandon_local(&self.id, self.generation),
        }
        result
    }
}

impl Drop for SessionHandle {
    fn drop(&mut self) {
        if !self.open || self.ended.get().is_some() {
            self.presence.forget_local(&self.id, self.generation);
            return;
        }
        let (presence, user, id) = (self.presence.clone(), self.user.clone(), self.id.clone());
        let generation = self.generation;
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    match presence.close_own_session(&user, &id).await {
                        Ok(()) => presence.forget_local(&id, generation),
                        Err(error) => {
                            tracing::warn!(%user, session = %id, %error, "closing a dropped session failed; it will lapse");
                            presence.abandon_local(&id, generation);
                        }
                    }
                });
            }
            Err(_) => {
                // No runtime to close it on: the session lapses after
                // session_ttl like that of a crashed client.
                presence.abandon_local(&id, generation);
            }
        }
    }
}

/// How the service tells a session's holder why it ended: set (and
/// replaced) by the service, awaited by the handle. Every idle socket holds
/// one, so it is a few words rather than a watch channel.
#[derive(Default)]
pub(crate) struct EndSignal {
    end: Mutex<Option<SessionEnd>>,
    /// The service let go of the session without a reason (it was dropped):
    /// the holder hears [`SessionEnd::ShutDown`].
    abandoned: AtomicBool,
    changed: Notify,
}

impl EndSignal {
    /// Tells the holder why the session ended (replacing an earlier word).
    pub(crate) fn send(&self, end: SessionEnd) {
        *self.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
        self.changed.notify_waiters();
    }

    /// The service will never say more.
    pub(crate) fn abandon(&self) {
        self.abandoned.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    pub(crate) fn get(&self) -> Option<SessionEnd> {
        *self.end.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn wait(&self) -> SessionEnd {
        loop {
            // Registered before looking, so a word sent in between wakes it.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if let Some(end) = self.get() {
                return end;
            }
            if self.abandoned.load(Ordering::Acquire) {
                return SessionEnd::ShutDown;
            }
            changed.await;
        }
    }
}

impl fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionHandle")
            .field("user", &self.user)
            .field("id", &self.id)
            .field("login", &self.login)
            .finish()
    }
}
