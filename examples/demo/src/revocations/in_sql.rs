//! Revocations in PostgreSQL or SQLite: a table `demo_revoked_logins`
//! (`until` in milliseconds since the Unix epoch), created at start beside
//! presence's tables (in presence's schema on PostgreSQL: the pool's
//! `search_path`). Expired rows are deleted at the next logout, so a
//! lookup is one indexed read.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::StoreDown;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS demo_revoked_logins \
     (login_id TEXT PRIMARY KEY, until BIGINT NOT NULL)";

/// A pool on the database that presence uses.
#[derive(Clone, Debug)]
pub(crate) enum SqlRevocations {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

impl SqlRevocations {
    /// On PostgreSQL, through presence's own pool (so in its schema).
    pub(crate) async fn postgres(pool: PgPool) -> Result<Self, StoreDown> {
        if let Err(error) = sqlx::query(CREATE).execute(&pool).await {
            // Another node created it at the same instant.
            let raced = error
                .as_database_error()
                .and_then(|e| e.code())
                .is_some_and(|code| code == "23505" || code == "42P07");
            if !raced {
                return Err(down(error));
            }
        }
        Ok(Self::Postgres(pool))
    }

    /// On the SQLite file at `url` (`sqlite://PATH`), with a pool of its
    /// own beside presence's.
    pub(crate) async fn sqlite(url: &str) -> Result<Self, StoreDown> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(down)?
            .create_if_missing(true)
            // Waits its turn behind presence's writer.
            .busy_timeout(Duration::from_secs(2));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(2))
            .connect_with(options)
            .await
            .map_err(down)?;
        sqlx::query(CREATE).execute(&pool).await.map_err(down)?;
        Ok(Self::Sqlite(pool))
    }

    pub(super) async fn revoke(
        &self,
        login_id: &str,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreDown> {
        let (until, now) = (until.timestamp_millis(), now.timestamp_millis());
        match self {
            Self::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO demo_revoked_logins (login_id, until) VALUES ($1, $2) \
                     ON CONFLICT (login_id) DO UPDATE SET until = EXCLUDED.until",
                )
                .bind(login_id)
                .bind(until)
                .execute(pool)
                .await
                .map_err(down)?;
                sqlx::query("DELETE FROM demo_revoked_logins WHERE until <= $1")
                    .bind(now)
                    .execute(pool)
                    .await
                    .map_err(down)?;
            }
            Self::Sqlite(pool) => {
                sqlx::query(
                    "INSERT INTO demo_revoked_logins (login_id, until) VALUES (?, ?) \
                     ON CONFLICT (login_id) DO UPDATE SET until = excluded.until",
                )
                .bind(login_id)
                .bind(until)
                .execute(pool)
                .await
                .map_err(down)?;
                sqlx::query("DELETE FROM demo_revoked_logins WHERE until <= ?")
                    .bind(now)
                    .execute(pool)
                    .await
                    .map_err(down)?;
            }
        }
        Ok(())
    }

    pub(super) async fn is_revoked(
        &self,
        login_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreDown> {
        let now = now.timestamp_millis();
        let count: i64 =
            match self {
                Self::Postgres(pool) => sqlx::query_scalar(
                    "SELECT COUNT(*) FROM demo_revoked_logins WHERE login_id = $1 AND until > $2",
                )
                .bind(login_id)
                .bind(now)
                .fetch_one(pool)
                .await,
                Self::Sqlite(pool) => {
                    sqlx::query_scalar(
                        "SELECT COUNT(*) FROM demo_revoked_logins WHERE login_id = ? AND until > ?",
                    )
                    .bind(login_id)
                    .bind(now)
                    .fetch_one(pool)
                    .await
                }
            }
            .map_err(down)?;
        Ok(count > 0)
    }
}

fn down(error: sqlx::Error) -> StoreDown {
    StoreDown(format!("the database: {error}"))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    use super::*;
    use crate::revocations::Revocations;

    /// Revokes one login through one node; a second node on the same
    /// database refuses it, and an expired revocation is deleted.
    async fn revocations_are_shared_and_pruned(one: SqlRevocations, two: SqlRevocations) {
        let now = Utc::now();
        let live = Revocations::sql(one.clone());
        let expired = "expired-login";
        one.revoke(
            expired,
            now - TimeDelta::seconds(1),
            now - TimeDelta::hours(1),
        )
        .await
        .expect("recorded");
        assert!(!two.is_revoked(expired, now).await.expect("answers"));
        live.revoke("gone", now + TimeDelta::hours(1))
            .await
            .expect("recorded");
        let elsewhere = Revocations::sql(two.clone());
        assert!(elsewhere.is_revoked("gone").await.expect("answers"));
        assert!(!elsewhere.is_revoked("still-here").await.expect("answers"));
        let rows: i64 = match &two {
            SqlRevocations::Postgres(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM demo_revoked_logins")
                    .fetch_one(pool)
                    .await
            }
            SqlRevocations::Sqlite(pool) => {
                sqlx::query_scalar("SELECT COUNT(*) FROM demo_revoked_logins")
                    .fetch_one(pool)
                    .await
            }
        }
        .expect("count");
        assert_eq!(rows, 1, "the expired row was deleted by the logout");
    }

    #[tokio::test]
    async fn in_sqlite() {
        let file = std::env::temp_dir().join(format!(
            "presence-demo-revocations-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let url = format!("sqlite://{}", file.display());
        let one = SqlRevocations::sqlite(&url).await.expect("opens");
        let two = SqlRevocations::sqlite(&url).await.expect("opens again");
        revocations_are_shared_and_pruned(one, two).await;
        let _ = std::fs::remove_file(&file);
    }

    #[tokio::test]
    async fn in_postgres_in_presences_schema() {
        let url = std::env::var("PRESENCE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("presence_demo_unit_{}", uuid::Uuid::new_v4().simple());
        let options = PgConnectOptions::from_str(&url).expect("a URL");
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .expect("PostgreSQL runs on 127.0.0.1:5432");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .expect("a schema");
        // As presence's pool is: its schema first on the search path.
        let pool = || {
            PgPoolOptions::new()
                .max_connections(2)
                .connect_with(options.clone().options([("search_path", schema.as_str())]))
        };
        let one = SqlRevocations::postgres(pool().await.expect("pool"))
            .await
            .expect("created");
        let two = SqlRevocations::postgres(pool().await.expect("pool"))
            .await
            .expect("exists");
        revocations_are_shared_and_pruned(one, two).await;
        let table: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.tables \
             WHERE table_schema = $1 AND table_name = 'demo_revoked_logins'",
        )
        .bind(&schema)
        .fetch_one(&admin)
        .await
        .expect("catalog");
        assert_eq!(table, 1, "the table is in presence's schema");
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .expect("dropped");
    }
}
