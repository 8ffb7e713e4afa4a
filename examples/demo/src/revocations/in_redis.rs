//! Revocations in Redis: `SET <prefix>:revoked:<login id> 1 PXAT <expiry>`,
//! so Redis itself forgets a revocation once its token has expired. The
//! prefix is presence's own, so one deployment's keys stay together.

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::StoreDown;

/// A connection to the Redis that presence uses.
#[derive(Clone)]
pub(crate) struct RedisRevocations {
    connection: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisRevocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocations")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisRevocations {
    /// Connects to `url`; keys start with `prefix`. Reconnects on its own
    /// after an outage, as presence's store does.
    pub(crate) async fn connect(url: &str, prefix: &str) -> Result<Self, StoreDown> {
        let client = redis::Client::open(url).map_err(down)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(down)?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    pub(super) async fn revoke(
        &self,
        login_id: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreDown> {
        let until_ms = u64::try_from(until.timestamp_millis()).unwrap_or(0);
        redis::cmd("SET")
            .arg(self.key(login_id))
            .arg(1)
            .arg("PXAT")
            .arg(until_ms)
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(down)
    }

    pub(super) async fn is_revoked(&self, login_id: &str) -> Result<bool, StoreDown> {
        redis::cmd("EXISTS")
            .arg(self.key(login_id))
            .query_async::<bool>(&mut self.connection.clone())
            .await
            .map_err(down)
    }

    fn key(&self, login_id: &str) -> String {
        format!("{}:revoked:{login_id}", self.prefix)
    }
}

fn down(error: redis::RedisError) -> StoreDown {
    StoreDown(format!("Redis: {error}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;
    use crate::revocations::Revocations;

    fn redis_url() -> String {
        std::env::var("PRESENCE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
    }

    #[tokio::test]
    async fn a_revocation_is_one_key_that_expires_with_the_token() {
        let prefix = format!("presence-demo-unit-{}", uuid::Uuid::new_v4().simple());
        let store = RedisRevocations::connect(&redis_url(), &prefix)
            .await
            .expect("Redis runs on 127.0.0.1:6379");
        let login = uuid::Uuid::new_v4().simple().to_string();
        let until = Utc::now() + TimeDelta::seconds(60);
        Revocations::redis(store.clone())
            .revoke(&login, until)
            .await
            .expect("recorded");
        // Another node, or the next run: only the store knows.
        let elsewhere = Revocations::redis(store.clone());
        assert!(elsewhere.is_revoked(&login).await.expect("answers"));
        assert!(!elsewhere.is_revoked("another").await.expect("answers"));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(store.key(&login))
            .query_async(&mut store.connection.clone())
            .await
            .expect("PTTL");
        assert!(
            (50_000..=60_000).contains(&ttl),
            "expires with the token: {ttl}"
        );
        let _: () = redis::cmd("DEL")
            .arg(store.key(&login))
            .query_async(&mut store.connection.clone())
            .await
            .expect("DEL");
    }
}
