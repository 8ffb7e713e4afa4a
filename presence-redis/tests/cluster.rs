//! The conformance suite and the node tests' core case on a Redis Cluster
//! (feature `cluster`): a one-node cluster this test binary starts on a free
//! port, holding all 16384 slots.

#![cfg(feature = "cluster")]

use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use presence_core::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};

static SERVER: OnceLock<std::sync::Mutex<std::process::Child>> = OnceLock::new();

/// The cluster's port; the server exits when this test process does.
fn cluster_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = std::env::temp_dir().join(format!("presence-cluster-{port}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes \
             --cluster-config-file {dir}/nodes.conf --dir {dir} --save '' --appendonly no & \
             server=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; kill $server",
            dir = dir.display(),
            parent = std::process::id(),
        );
        let server = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        // Kept for the life of the test process; it ends with the process.
        let _ = SERVER.set(std::sync::Mutex::new(server));
        let started = Instant::now();
        let cli = |args: &[&str]| {
            Command::new("redis-cli")
                .args(["-p", &port.to_string()])
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        while !cli(&["ping"]).contains("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        cli(&["cluster", "addslotsrange", "0", "16383"]);
        while !cli(&["cluster", "info"]).contains("cluster_state:ok") {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the cluster never became ok"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        port
    })
}

async fn fresh_store() -> Arc<dyn PresenceStore> {
    let port = cluster_port();
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let config = RedisConfig::cluster([format!("redis://127.0.0.1:{port}")]).prefix(prefix);
    Arc::new(
        RedisStore::connect(config)
            .await
            .expect("the cluster accepts connections"),
    )
}

presence_store_tests::conformance_tests!(fresh_store);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_a_cluster_see_each_other() {
    use presence_core::{Delivery, ManualClock, NodeId, Presence, SessionSpec, Status};
    let port = cluster_port();
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let clock = Arc::new(ManualClock::default());
    let mut nodes = Vec::new();
    for name in ["node-a", "node-b"] {
        let config =
            RedisConfig::cluster([format!("redis://127.0.0.1:{port}")]).prefix(prefix.clone());
        let store = RedisStore::connect(config).await.expect("connect");
        nodes.push(
            Presence::builder()
                .store(store)
                .clock(clock.clone())
                .node(NodeId::new(name))
                .build()
                .await
                .expect("presence"),
        );
    }
    let (mut events, _) = nodes[1].watch(&"acme".into()).await.expect("watch");
    // The feed listens once its subscription takes effect.
    let ready = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
    assert_eq!(ready.expect("in time"), Some(Delivery::Lagged));
    let _tab = nodes[0]
        .open_session(SessionSpec::new("alice", "l1").scope("acme"))
        .await
        .expect("open");
    match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
        Ok(Some(Delivery::Event(event))) => {
            assert_eq!(
                (event.user_id.as_str(), event.status, event.v),
                ("alice", Status::Online, 1)
            );
        }
        other => panic!("expected alice ONLINE from node A, got {other:?}"),
    }
}
