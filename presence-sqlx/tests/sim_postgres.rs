//! The fault-injecting simulation (`presence_store_tests::sim`) on
//! PostgreSQL: each run has a schema of its own. A data-loss step empties
//! every table of it (a new epoch) and kills its listeners' connections
//! (they reconnect and resync); a feed step kills the listeners'
//! connections. Fewer steps than on the memory store: every tick waits on
//! real I/O. `SIM_SEED`, `SIM_SEEDS`, `SIM_STEPS` work as for the memory
//! store.

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use presence_core::store::PresenceStore;
use presence_core::{ManualClock, NodeId};
use presence_sqlx::{PgConfig, PgStore};
use presence_store_tests::sim::{Backend, Campaign, Deployment, Faults, ProcessStores, campaign};

struct PgRun {
    url: String,
    /// The simulation's own connection, for its faults.
    admin: sqlx::PgPool,
    schema: String,
    stores: ProcessStores,
}

impl PgRun {
    async fn execute(&self, statement: String) {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&self.admin)
            .await
            .expect("a statement of the simulation");
    }

    /// Kills the listener connections of this run's processes.
    async fn kill_listeners(&self) {
        self.execute(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'presence-feed:{}'",
            self.schema
        ))
        .await;
    }
}

#[async_trait]
impl Deployment for PgRun {
    async fn store_for_process(&self) -> Arc<dyn PresenceStore> {
        self.stores.register(Arc::new(
            PgStore::connect(
                PgConfig::new(self.url.clone())
                    .schema(self.schema.clone())
                    .flush_interval(Duration::from_millis(50)),
            )
            .await
            .expect("PostgreSQL must be running"),
        ))
    }

    async fn lose_data(&self) {
        let epoch = self.stores.epoch();
        self.execute(format!(
            "TRUNCATE \"{0}\".users, \"{0}\".sessions, \"{0}\".scope_members, \
             \"{0}\".meta, \"{0}\".node_leases, \"{0}\".kept_changes",
            self.schema
        ))
        .await;
        self.kill_listeners().await;
        self.stores.recovered(epoch).await;
    }

    async fn drop_feed(&self, _: &NodeId) {
        self.kill_listeners().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    async fn restore_feed(&self, _: &NodeId) {}

    fn feed_reconnects_by_itself(&self) -> bool {
        true
    }

    fn keeps_true_time(&self) -> bool {
        false
    }

    async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(15)).await;
    }

    async fn flush(&self) {
        self.stores.flush().await;
    }

    async fn tear_down(&self) {
        self.execute(format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.schema))
            .await;
    }
}

struct OnPostgres;

#[async_trait]
impl Backend for OnPostgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn faults(&self) -> Faults {
        Faults {
            clocks: false,
            ..Faults::ALL
        }
    }

    async fn deploy(&self, _: Arc<ManualClock>) -> Box<dyn Deployment> {
        let url = common::postgres_url();
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("PostgreSQL must be running");
        Box::new(PgRun {
            admin,
            url,
            schema: common::fresh_schema(),
            stores: ProcessStores::default(),
        })
    }
}

#[test]
fn the_simulation_finds_nothing_wrong_on_postgres() {
    let report = campaign(&OnPostgres, &Campaign::from_env(1, 6, 60));
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
}
