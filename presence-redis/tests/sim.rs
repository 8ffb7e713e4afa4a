//! The fault-injecting simulation (`presence_store_tests::sim`) on Redis:
//! each run has a `redis-server` of its own, which a data-loss step
//! restarts empty (its processes' feeds drop and come back, their stores
//! find a new epoch), and whose pub/sub connections a feed step kills.
//! Fewer steps than on the memory store: every tick waits on real I/O.
//! `SIM_SEED`, `SIM_SEEDS`, `SIM_STEPS` work as for the memory store.

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use presence_core::store::PresenceStore;
use presence_core::{ManualClock, NodeId};
use presence_redis::{RedisConfig, RedisStore};
use presence_store_tests::sim::{Backend, Campaign, Deployment, Faults, ProcessStores, campaign};

/// A `redis-server` of the run's own, on a fixed port across restarts.
struct Server {
    port: u16,
    child: Mutex<Option<Child>>,
}

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let server = Self {
            port,
            child: Mutex::new(None),
        };
        server.run();
        server
    }

    fn run(&self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        *self.child.lock().expect("lock") = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&self) {
        if let Some(mut child) = self.child.lock().expect("lock").take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn cli(&self, args: &[&str]) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdout(Stdio::null())
            .status();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

struct RedisRun {
    server: Server,
    stores: ProcessStores,
}

#[async_trait]
impl Deployment for RedisRun {
    async fn store_for_process(&self) -> Arc<dyn PresenceStore> {
        self.stores.register(Arc::new(
            RedisStore::connect(
                RedisConfig::new(self.server.url()).flush_interval(Duration::from_millis(50)),
            )
            .await
            .expect("the run's Redis accepts connections"),
        ))
    }

    async fn lose_data(&self) {
        let epoch = self.stores.epoch();
        self.server.kill();
        self.server.run();
        self.stores.recovered(epoch).await;
    }

    async fn drop_feed(&self, _: &NodeId) {
        // Every process's pub/sub connection: they come back by themselves.
        self.server.cli(&["client", "kill", "type", "pubsub"]);
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
        self.server.kill();
    }
}

struct OnRedis;

#[async_trait]
impl Backend for OnRedis {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn faults(&self) -> Faults {
        Faults {
            clocks: false,
            ..Faults::ALL
        }
    }

    async fn deploy(&self, _: Arc<ManualClock>) -> Box<dyn Deployment> {
        Box::new(RedisRun {
            server: Server::start(),
            stores: ProcessStores::default(),
        })
    }
}

#[test]
fn the_simulation_finds_nothing_wrong_on_redis() {
    let report = campaign(&OnRedis, &Campaign::from_env(1, 6, 60));
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
}
