//! Logouts that hold everywhere. A token stays valid until it expires, on
//! every node that shares the secret; a logout therefore records the login
//! id as revoked, in the configured store, until the token's expiry, and
//! every request's login is checked against that record.
//!
//! - memory: an in-process map. A restart of a memory deployment forgets
//!   its logouts, as it forgets everything else (with a fixed secret, the
//!   logged-out token is valid again).
//! - Redis: one key per login, `<prefix>:revoked:<login id>`, that expires
//!   with the token (`in_redis`).
//! - PostgreSQL and SQLite: a table `demo_revoked_logins` beside
//!   presence's tables; expired rows are deleted at the next logout
//!   (`in_sql`).
//!
//! Every node also remembers the logouts made through it, so a login that
//! logged out in a request is refused for the rest of that request without
//! asking the store again.

mod in_redis;
mod in_sql;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

pub(crate) use in_redis::RedisRevocations;
pub(crate) use in_sql::SqlRevocations;

/// The longest a store may take to answer: past it, the store counts as
/// down (as presence's own stores do by default).
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// The revoked logins, shared by every clone.
#[derive(Clone, Debug, Default)]
pub(crate) struct Revocations {
    /// Logins revoked through this node → until when. The whole record of
    /// a memory deployment.
    here: Arc<DashMap<String, DateTime<Utc>>>,
    /// Where the other nodes, and the next run, find them.
    store: Option<Store>,
}

#[derive(Clone, Debug)]
enum Store {
    Redis(RedisRevocations),
    Sql(SqlRevocations),
}

/// The store could not record or answer.
#[derive(Clone, Debug)]
pub(crate) struct StoreDown(String);

impl std::fmt::Display for StoreDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Revocations {
    /// Revocations in this process only, for the memory store: a restart
    /// forgets its logouts, as a memory deployment forgets everything.
    pub(crate) fn memory() -> Self {
        Self::default()
    }

    /// Revocations kept in Redis.
    pub(crate) fn redis(store: RedisRevocations) -> Self {
        Self {
            here: Arc::default(),
            store: Some(Store::Redis(store)),
        }
    }

    /// Revocations kept in PostgreSQL or SQLite.
    pub(crate) fn sql(store: SqlRevocations) -> Self {
        Self {
            here: Arc::default(),
            store: Some(Store::Sql(store)),
        }
    }

    /// Refuses `login_id` from now until `until` (its token's expiry),
    /// here at once and everywhere once the store has it.
    pub(crate) async fn revoke(
        &self,
        login_id: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreDown> {
        let now = Utc::now();
        if until <= now {
            return Ok(()); // the token is refused anyway
        }
        // Logouts are rare: forgetting the expired ones now keeps the map
        // as small as the live logouts.
        self.here.retain(|_, kept_until| *kept_until > now);
        self.here.insert(login_id.to_owned(), until);
        match &self.store {
            None => Ok(()),
            Some(Store::Redis(redis)) => timed(redis.revoke(login_id, until)).await,
            Some(Store::Sql(sql)) => timed(sql.revoke(login_id, until, now)).await,
        }
    }

    /// Whether `login_id` logged out (and its token has not expired yet);
    /// an error when the store cannot tell.
    pub(crate) async fn is_revoked(&self, login_id: &str) -> Result<bool, StoreDown> {
        if self.revoked_here(login_id) {
            return Ok(true);
        }
        match &self.store {
            None => Ok(false),
            Some(Store::Redis(redis)) => timed(redis.is_revoked(login_id)).await,
            Some(Store::Sql(sql)) => timed(sql.is_revoked(login_id, Utc::now())).await,
        }
    }

    /// Whether `login_id` logged out through this node; no store call.
    pub(crate) fn revoked_here(&self, login_id: &str) -> bool {
        self.here
            .get(login_id)
            .is_some_and(|until| *until > Utc::now())
    }
}

/// The revocation lookup of one request, shared by every check of it:
/// the handler's extractor and presence's activity layer each check the
/// request's login, and the store is asked once.
#[derive(Clone, Debug, Default)]
pub(crate) struct OneLookup(Arc<tokio::sync::OnceCell<(String, Result<bool, StoreDown>)>>);

impl OneLookup {
    /// [`Revocations::is_revoked`], asked at most once per request. A
    /// failed lookup is logged once, and counts for the whole request.
    pub(crate) async fn is_revoked(
        &self,
        revocations: &Revocations,
        login_id: &str,
    ) -> Result<bool, StoreDown> {
        let (looked_up, answer) = self
            .0
            .get_or_init(|| async {
                let answer = revocations.is_revoked(login_id).await;
                if let Err(error) = &answer {
                    tracing::warn!(%error, "cannot check the logouts: the login counts as signed out");
                }
                (login_id.to_owned(), answer)
            })
            .await;
        if looked_up != login_id {
            // Not this request's login (never so in the app): ask afresh.
            return revocations.is_revoked(login_id).await;
        }
        answer.clone()
    }
}

/// A store call, at most [`STORE_TIMEOUT`] long.
async fn timed<T>(call: impl Future<Output = Result<T, StoreDown>>) -> Result<T, StoreDown> {
    tokio::time::timeout(STORE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(StoreDown(format!("no answer within {STORE_TIMEOUT:?}"))))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[tokio::test]
    async fn a_revoked_login_is_refused_until_its_expiry() {
        let revocations = Revocations::memory();
        let until = Utc::now() + TimeDelta::hours(1);
        assert!(!revocations.is_revoked("l1").await.expect("memory answers"));
        revocations
            .revoke("l1", until)
            .await
            .expect("memory records");
        assert!(revocations.is_revoked("l1").await.expect("memory answers"));
        assert!(revocations.clone().revoked_here("l1"), "clones share it");
        assert!(!revocations.is_revoked("l2").await.expect("memory answers"));
    }

    #[tokio::test]
    async fn one_lookup_answers_a_request_once() {
        let revocations = Revocations::memory();
        let lookup = OneLookup::default();
        assert!(!lookup.is_revoked(&revocations, "l1").await.expect("memory"));
        revocations
            .revoke("l1", Utc::now() + TimeDelta::hours(1))
            .await
            .expect("memory");
        // The request's answer stands (the caller also checks
        // `revoked_here`); a new request asks again.
        assert!(!lookup.is_revoked(&revocations, "l1").await.expect("memory"));
        assert!(revocations.revoked_here("l1"));
        let next = OneLookup::default();
        assert!(next.is_revoked(&revocations, "l1").await.expect("memory"));
        // Another login id is never answered from the memo.
        assert!(!next.is_revoked(&revocations, "l2").await.expect("memory"));
    }

    #[tokio::test]
    async fn expired_revocations_are_forgotten() {
        let revocations = Revocations::memory();
        let past = Utc::now() - TimeDelta::seconds(1);
        revocations.revoke("old", past).await.expect("memory");
        assert!(!revocations.is_revoked("old").await.expect("memory"));
        revocations
            .here
            .insert("lapsed".into(), Utc::now() - TimeDelta::seconds(1));
        revocations
            .revoke("new", Utc::now() + TimeDelta::hours(1))
            .await
            .expect("memory");
        assert!(!revocations.here.contains_key("lapsed"), "pruned");
        assert!(revocations.here.contains_key("new"));
    }
}
