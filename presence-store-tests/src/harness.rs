//! A small driver that speaks to a store in seconds since a fixed start.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::helpers::test_config;
use chrono::{DateTime, TimeDelta, Utc};
use presence_core::store::{
    NewSession, PresenceStore, StoreError, Transition, Update, UserOp, UserView,
};
use presence_core::{
    NodeId, PresenceConfig, ScopeId, SessionId, SessionKind, UserId, UserPresence,
};

/// A store under test, the thresholds the cases assume, and a fixed start.
#[derive(Clone)]
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn PresenceStore>,
    /// [`test_config`]: heartbeat 10 s, ttl 30 s, away 60 s, offline
    /// 600 s, linger 5 s, at most 128 sessions per user.
    pub config: PresenceConfig,
    /// Time zero of every case.
    pub t0: DateTime<Utc>,
    /// The node the sessions are opened on.
    pub node: NodeId,
}

impl Harness {
    /// A harness around a fresh store.
    pub fn new(store: Arc<dyn PresenceStore>) -> Self {
        Self {
            store,
            config: test_config(),
            t0: DateTime::from_timestamp(1_800_000_000, 0).expect("valid start"),
            node: NodeId {
                name: "node-a".into(),
                incarnation: 1,
            },
        }
    }

    /// The time `seconds` after the start (millisecond precision).
    pub fn at(&self, seconds: f64) -> DateTime<Utc> {
        self.t0 + TimeDelta::milliseconds((seconds * 1000.0).round() as i64)
    }

    /// Applies `op` to `user` at `seconds`.
    pub async fn try_apply(
        &self,
        user: &str,
        op: UserOp,
        seconds: f64,
    ) -> Result<Transition, StoreError> {
        self.try_apply_as(&self.node, false, user, op, seconds)
            .await
    }

    /// Applies `op` to `user` at `seconds` as process `node`, asking the
    /// store to keep the change ([`Update::keep_change`]) when `keep`.
    pub async fn try_apply_as(
        &self,
        node: &NodeId,
        keep: bool,
        user: &str,
        op: UserOp,
        seconds: f64,
    ) -> Result<Transition, StoreError> {
        let user = UserId::from(user);
        self.store
            .apply(Update {
                user: &user,
                op: &op,
                now: self.at(seconds),
                node,
                config: &self.config,
                keep_change: keep,
            })
            .await
    }

    /// Applies `op` as process `node`, keeping the change, which must
    /// succeed.
    pub async fn apply_kept(
        &self,
        node: &NodeId,
        user: &str,
        op: UserOp,
        seconds: f64,
    ) -> Transition {
        match self
            .try_apply_as(node, true, user, op.clone(), seconds)
            .await
        {
            Ok(transition) => transition,
            Err(error) => panic!("{op:?} on {user} at {seconds}s failed: {error}"),
        }
    }

    /// Applies `op`, which must succeed.
    pub async fn apply(&self, user: &str, op: UserOp, seconds: f64) -> Transition {
        match self.try_apply(user, op.clone(), seconds).await {
            Ok(transition) => transition,
            Err(error) => panic!("{op:?} on {user} at {seconds}s failed: {error}"),
        }
    }

    /// The operation that opens `session` of `user` under `login` in
    /// `scopes`, on this harness's node.
    pub fn open_op(&self, session: &str, login: &str, scopes: &[&str]) -> UserOp {
        self.open_op_on(&self.node, session, login, scopes)
    }

    /// Like [`Harness::open_op`] on another node.
    pub fn open_op_on(&self, node: &NodeId, session: &str, login: &str, scopes: &[&str]) -> UserOp {
        UserOp::Open(NewSession {
            id: SessionId::from(session),
            login: login.into(),
            node: node.clone(),
            scopes: scopes.iter().map(|s| ScopeId::from(*s)).collect(),
            metadata: BTreeMap::new(),
            liveness: Default::default(),
            kind: None,
        })
    }

    /// The operation that opens `session`, held by this harness's node
    /// ([`Liveness::HeldByNode`](presence_core::store::Liveness::HeldByNode),
    /// a socket's session).
    pub fn open_held_op(&self, session: &str, login: &str, scopes: &[&str]) -> UserOp {
        let mut op = self.open_op(session, login, scopes);
        if let UserOp::Open(new) = &mut op {
            new.liveness = presence_core::store::Liveness::HeldByNode;
        }
        op
    }

    /// The operation that opens `session` of kind `kind` (`web`,
    /// `mobile`, …) under `login` in `scopes`, on this harness's node.
    pub fn open_kind_op(&self, session: &str, kind: &str, login: &str, scopes: &[&str]) -> UserOp {
        let mut op = self.open_op(session, login, scopes);
        if let UserOp::Open(new) = &mut op {
            new.kind = Some(SessionKind::new(kind).expect("a valid session kind"));
        }
        op
    }

    /// Opens a session in scope `acme` under login `login-1`.
    pub async fn open(&self, user: &str, session: &str, seconds: f64) -> Transition {
        self.apply(user, self.open_op(session, "login-1", &["acme"]), seconds)
            .await
    }

    /// Closes a session.
    pub async fn close(&self, user: &str, session: &str, seconds: f64) -> Transition {
        let op = UserOp::Close {
            session: session.into(),
            held_by: None,
        };
        self.apply(user, op, seconds).await
    }

    /// Applies what time alone changed.
    pub async fn refresh(&self, user: &str, seconds: f64) -> Transition {
        self.apply(user, UserOp::Refresh, seconds).await
    }

    /// A heartbeat of `session` at `seconds`.
    pub fn heartbeat(&self, user: &str, session: &str, seconds: f64) -> Result<(), StoreError> {
        self.store.heartbeat(
            &UserId::from(user),
            &SessionId::from(session),
            self.at(seconds),
            &self.config,
        )
    }

    /// How observers see `user` now.
    pub async fn view(&self, user: &str) -> UserPresence {
        self.view_with_scopes(user).await.presence
    }

    /// How observers see `user`, with the user's scopes.
    pub async fn view_with_scopes(&self, user: &str) -> UserView {
        let mut views = self
            .store
            .load_many(&[UserId::from(user)])
            .await
            .expect("load_many");
        assert_eq!(views.len(), 1, "load_many returns one view per user asked");
        views.remove(0)
    }

    /// The ids of the present members of `scope`, sorted.
    pub async fn members(&self, scope: &str) -> Vec<String> {
        let mut members: Vec<String> = self
            .store
            .scope_members(&ScopeId::from(scope))
            .await
            .expect("scope_members")
            .into_iter()
            .map(|member| member.user_id.to_string())
            .collect();
        members.sort();
        members
    }

    /// Up to `limit` members of `scope` who are not `OFFLINE`, after
    /// `after`, as [`PresenceStore::scope_members_page`] reads them.
    pub async fn members_page(
        &self,
        scope: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<UserPresence> {
        let after = after.map(UserId::from);
        self.store
            .scope_members_page(&ScopeId::from(scope), after.as_ref(), limit)
            .await
            .expect("scope_members_page")
    }

    /// The users due at `seconds`, as strings.
    pub async fn due(&self, seconds: f64) -> Vec<String> {
        self.store
            .due(self.at(seconds), 1000)
            .await
            .expect("due")
            .into_iter()
            .map(|user| user.to_string())
            .collect()
    }
}
