//! [`Identity`]: who a request belongs to, as the host's own auth says.

use presence_core::{LoginId, ScopeId, SessionKind, UserId};

/// Who a request or socket belongs to. The host's auth decides it; nothing a
/// client sends can change it.
///
/// The host provides an axum extractor (any type implementing
/// `FromRequestParts<S>`) that turns its cookie session, bearer token or
/// anything else into a value convertible `Into<Identity>`. See the crate
/// docs for both kinds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user.
    pub user: UserId,
    /// The login (one browser's sign-in, one device's token): logout ends
    /// the sessions of one login.
    pub login: LoginId,
    /// The scopes the user is seen in.
    pub member_of: Vec<ScopeId>,
    /// The scopes the user may watch.
    pub may_watch: Vec<ScopeId>,
    /// The scopes a new socket watches from the start (each gets a
    /// snapshot after `hello`).
    pub watch_on_connect: Vec<ScopeId>,
    /// What kind of client the socket's session is (`web`, `mobile`,
    /// `desktop` or the host's own): watchers see a status per kind
    /// (`devices`). `None`: a session of no kind, shown in no `devices`.
    /// The host decides it (from the User-Agent, a token's claims…); a
    /// client never picks it.
    pub kind: Option<SessionKind>,
}

impl Identity {
    /// A user with a login, in no scope yet.
    pub fn new(user: impl Into<UserId>, login: impl Into<LoginId>) -> Self {
        Self {
            user: user.into(),
            login: login.into(),
            member_of: Vec::new(),
            may_watch: Vec::new(),
            watch_on_connect: Vec::new(),
            kind: None,
        }
    }

    /// The socket's session is of `kind`: watchers see it in the user's
    /// `devices`.
    ///
    /// ```
    /// use presence_axum::Identity;
    /// use presence_core::SessionKind;
    ///
    /// let phone = Identity::new("alice", "login-1").in_scope("acme").kind(SessionKind::mobile());
    /// assert_eq!(phone.kind, Some(SessionKind::mobile()));
    /// ```
    pub fn kind(mut self, kind: SessionKind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The user is in `scope`, may watch it, and watches it from the start
    /// (the organisation of a typical app).
    pub fn in_scope(mut self, scope: impl Into<ScopeId>) -> Self {
        let scope = scope.into();
        // Exact growth: an identity lives as long as its socket, and most
        // name one or two scopes.
        self.member_of.reserve_exact(1);
        self.member_of.push(scope.clone());
        self.may_watch.reserve_exact(1);
        self.may_watch.push(scope.clone());
        self.watch_on_connect.reserve_exact(1);
        self.watch_on_connect.push(scope);
        self
    }

    /// The user may watch `scope` on request (`subscribe`), without being
    /// seen in it.
    pub fn may_watch(mut self, scope: impl Into<ScopeId>) -> Self {
        self.may_watch.reserve_exact(1);
        self.may_watch.push(scope.into());
        self
    }

    /// Whether the user may watch `scope`.
    pub fn can_watch(&self, scope: &ScopeId) -> bool {
        self.may_watch.contains(scope)
    }
}
