//! Real Redis Clusters for the cluster tests: `redis-server --cluster-enabled
//! yes` processes on free local ports, joined by `redis-cli --cluster
//! create`, and what the tests ask of them. Each test binary uses part of
//! it.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `redis-server` of a cluster; killed (`kill -9`) when dropped, and
/// when the test process ends, by the shell that runs it.
pub(crate) struct Server {
    pub(crate) port: u16,
    dir: PathBuf,
    child: Child,
}

impl Server {
    /// A server on a free port, its files under `dir`.
    pub(crate) fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("addr")
            .port();
        Self::start_at(&dir.join(port.to_string()), port)
    }

    /// A server on `port` with its files (`nodes.conf`) in `dir`: the same
    /// cluster node again if it ran there before, with no data (nothing is
    /// saved).
    pub(crate) fn start_at(dir: &Path, port: u16) -> Self {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status();
        assert!(
            installed.is_ok_and(|status| status.success()),
            "redis-server must be installed for the Redis Cluster tests"
        );
        std::fs::create_dir_all(dir).expect("dir");
        let script = format!(
            "redis-server --port {port} --bind 127.0.0.1 --cluster-enabled yes \
             --cluster-node-timeout 1000 --cluster-replica-validity-factor 0 \
             --cluster-config-file {dir}/nodes.conf --dir {dir} \
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
            .expect("sh runs");
        let server = Self {
            port,
            dir: dir.to_owned(),
            child,
        };
        let started = Instant::now();
        while !server.cli(&["ping"]).contains("PONG") {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Kills this server as a crash would and starts it again on its port
    /// with its cluster configuration but none of its data.
    pub(crate) fn restart_empty(self) -> Self {
        let (dir, port) = (self.dir.clone(), self.port);
        drop(self);
        assert!(!cli(port, &["ping"]).contains("PONG"), "the server is dead");
        Self::start_at(&dir, port)
    }

    pub(crate) fn cli(&self, args: &[&str]) -> String {
        cli(self.port, args)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The keys of this server whose names contain `text`.
    pub(crate) fn keys_containing(&self, text: &str) -> Vec<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "--scan"])
            .args(["--pattern", &format!("*{text}*")])
            .output()
            .expect("redis-cli is installed");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Whether this server is a master holding `key`'s slot.
    pub(crate) fn serves(&self, key: &str) -> bool {
        // A server answers MOVED for a key of a slot it does not serve.
        self.cli(&["exists", key]).trim() == "1"
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

pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// `masters` servers made one cluster, each master with `replicas_each`
/// replicas: the first `masters` servers are the masters.
pub(crate) fn cluster(masters: usize, replicas_each: usize) -> Vec<Server> {
    let dir = std::env::temp_dir().join(format!(
        "presence-cluster-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let servers: Vec<Server> = (0..masters * (1 + replicas_each))
        .map(|_| Server::start(&dir))
        .collect();
    let addresses: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", &replicas_each.to_string()])
        .arg("--cluster-yes")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("redis-cli is installed");
    assert!(created.success(), "redis-cli --cluster create failed");
    wait_until_ok(&servers, Duration::from_secs(30));
    servers
}

pub(crate) fn wait_until_ok(servers: &[Server], within: Duration) {
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
pub(crate) fn wait_until_failed_over(servers: &[Server], port: u16) {
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

/// Waits until every master's replicas have every write it took (so a
/// failover then loses nothing, and what a test checks after it is the
/// store's doing, not replication lag).
pub(crate) fn wait_until_replicated(servers: &[Server]) {
    let started = Instant::now();
    loop {
        let lagging = servers.iter().find_map(|server| {
            let info = server.cli(&["info", "replication"]);
            if !info.contains("role:master") {
                return None;
            }
            let offset = info
                .lines()
                .find_map(|line| line.trim().strip_prefix("master_repl_offset:"))?
                .to_owned();
            // slave0:ip=…,port=…,state=online,offset=N,lag=0
            info.lines()
                .filter(|line| line.starts_with("slave"))
                .any(|line| !line.contains(&format!("offset={offset},")))
                .then_some(server.port)
        });
        match lagging {
            None => return,
            Some(port) => assert!(
                started.elapsed() < Duration::from_secs(10),
                "the replicas of the master on {port} never caught up"
            ),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
