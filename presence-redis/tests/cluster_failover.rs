//! A Redis Cluster of three masters and three replicas, started by this
//! test (feature `cluster`), whose first seed node is killed: the cluster
//! feed must follow the topology to another node and resync, or watchers go
//! silently stale (issue 15's defect 7).

#![cfg(feature = "cluster")]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_core::{Delivery, ManualClock, NodeId, Presence, SessionSpec, Status, Subscription};
use presence_redis::{RedisConfig, RedisStore};

/// One `redis-server` of the cluster; killed when dropped (and when this
/// test process ends, by the shell that runs it).
struct Server {
    port: u16,
    child: Child,
}

impl Server {
    fn start(dir: &std::path::Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        let dir = dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("dir");
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes \
             --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 --cluster-config-file {dir}/nodes.conf --dir {dir} \
             --save '' --appendonly no & server=$!; \
             trap 'kill -9 $server; exit' TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $server 2>/dev/null; do sleep 0.2; done; \
             kill -9 $server 2>/dev/null",
            dir = dir.display(),
            parent = std::process::id(),
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let server = Self { port, child };
        let started = Instant::now();
        while !server.cli(&["ping"]).contains("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Server {
    /// Kills the server as a crash would (`kill -9` of its own process,
    /// not only of the shell watching it).
    fn drop(&mut self) {
        let info = self.cli(&["info", "server"]);
        if let Some(pid) = info
            .lines()
            .find_map(|line| line.trim().strip_prefix("process_id:"))
        {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Six servers made one cluster: three masters (the first three), each
/// with a replica.
fn cluster() -> Vec<Server> {
    let dir = std::env::temp_dir().join(format!(
        "presence-failover-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let servers: Vec<Server> = (0..6).map(|_| Server::start(&dir)).collect();
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli is installed");
    assert!(created.success(), "redis-cli --cluster create failed");
    wait_until_ok(&servers, Duration::from_secs(30));
    servers
}

fn wait_until_ok(servers: &[Server], within: Duration) {
    let started = Instant::now();
    while !servers
        .iter()
        .all(|s| s.cli(&["cluster", "info"]).contains("cluster_state:ok"))
    {
        assert!(started.elapsed() < within, "the cluster never became ok");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the other nodes saw the node on `port` fail and one of its
/// replicas took over (the cluster is whole again).
fn wait_until_failed_over(servers: &[Server], port: u16) {
    let started = Instant::now();
    let dead = format!("127.0.0.1:{port}@");
    loop {
        let nodes = servers[0].cli(&["cluster", "nodes"]);
        let noticed = nodes
            .lines()
            .any(|line| line.contains(&dead) && line.contains("fail") && !line.contains("fail?"));
        let whole = servers
            .iter()
            .all(|s| s.cli(&["cluster", "info"]).contains("cluster_state:ok"));
        if noticed && whole {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no replica took over from the dead node: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn node(seeds: &[String], prefix: &str, name: &str, clock: &Arc<ManualClock>) -> Presence {
    let store = RedisStore::connect(
        RedisConfig::cluster(seeds.iter().cloned())
            .prefix(prefix)
            .flush_interval(Duration::from_millis(50)),
    )
    .await
    .expect("the cluster accepts connections");
    Presence::builder()
        .store(store)
        .clock(clock.clone())
        .node(NodeId::new(name))
        .store_timeout(Duration::from_secs(3))
        .build()
        .await
        .expect("presence")
}

/// Waits until `watcher` (on `node`) knows `user` is ONLINE: from an event,
/// or from the snapshot it takes when told to resnapshot.
async fn learns_online(node: &Presence, watcher: &mut Subscription, user: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, watcher.recv()).await {
            Ok(Some(Delivery::Event(e))) if e.user_id.as_str() == user => {
                assert_eq!(e.status, Status::Online);
                return;
            }
            Ok(Some(Delivery::Lagged)) => {
                if let Ok(snapshot) = node.snapshot(&"acme".into()).await
                    && snapshot.user(&user.into()).is_some()
                {
                    return;
                }
            }
            Ok(Some(_)) => {}
            other => panic!(
                "{} never learned that {user} is ONLINE: {other:?}",
                node.node()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_follows_the_cluster_when_its_first_seed_dies() {
    let mut servers = cluster();
    let seeds: Vec<String> = servers.iter().take(3).map(Server::url).collect();
    let prefix = format!("presence-test-{}", uuid::Uuid::new_v4().simple());
    let clock = Arc::new(ManualClock::default());
    let a = node(&seeds, &prefix, "node-a", &clock).await;
    let b = node(&seeds, &prefix, "node-b", &clock).await;
    let (mut watcher, _) = b.watch(&"acme".into()).await.expect("watch");
    let _alice = a
        .open_session(SessionSpec::new("alice", "l").scope("acme"))
        .await
        .expect("open");
    learns_online(&b, &mut watcher, "alice", Duration::from_secs(10)).await;

    // The first seed, a master, dies; its replica takes over.
    let first = servers.remove(0);
    let port = first.port;
    drop(first);
    assert!(
        !cli(port, &["ping"]).contains("PONG"),
        "the first seed is dead"
    );
    wait_until_failed_over(&servers, port);
    let started = Instant::now();
    let _bob = loop {
        match a
            .open_session(SessionSpec::new("bob", "l").scope("acme"))
            .await
        {
            Ok(handle) => break handle,
            Err(error) => {
                assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the cluster never took changes again: {error}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    learns_online(&b, &mut watcher, "bob", Duration::from_secs(20)).await;
    a.shutdown().await;
    b.shutdown().await;
}
