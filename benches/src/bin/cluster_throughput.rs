//! Issue 17, Redis Cluster shards: transitions per second through
//! `RedisStore` on a Redis Cluster of three masters (16 virtual shards,
//! the default) against one plain Redis, in the same run, with the same
//! workload, and the CPU each process used meanwhile.
//!
//! ```text
//! cargo run --release -p presence-benches --bin cluster-throughput [-- ROUNDS]
//! ```
//!
//! Starts its own servers and kills them at the end: a plain `redis-server`
//! on port 6392 and three `redis-server --cluster-enabled yes` on 6393–6395
//! (cluster bus on 16393–16395) joined by `redis-cli --cluster create`.
//! The workload: [`TASKS`] tasks in flight, each opening and closing
//! sessions of users of its own ([`PAIRS`] pairs, every change a read and a
//! compare-and-set script), through the `PresenceStore` trait. The two
//! deployments take turns for `ROUNDS` rounds (default 3). CPU: user +
//! system time of each `redis-server` and of this process from `/proc`,
//! over each run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{NodeId, PresenceConfig, SessionId, UserId};
use presence_redis::{RedisConfig, RedisStore};
use tokio::process::{Child, Command};

/// Changes in flight at once.
const TASKS: usize = 64;
/// Open + close pairs per task and run.
const PAIRS: usize = 1000;
/// Users per task (its pairs cycle through them).
const USERS_PER_TASK: usize = 50;
const SINGLE_PORT: u16 = 6392;
const CLUSTER_PORTS: [u16; 3] = [6393, 6394, 6395];

type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let rounds: usize = std::env::args().nth(1).map_or(Ok(3), |n| n.parse())?;
    let dir = std::env::temp_dir().join(format!("cluster-throughput-{}", std::process::id()));
    println!(
        "cluster-throughput: {TASKS} tasks in flight, {PAIRS} open+close pairs each ({} transitions a run), {rounds} rounds",
        TASKS * PAIRS * 2
    );
    println!("cores: {}", std::thread::available_parallelism()?.get());
    let single = Server::start(&dir, SINGLE_PORT, false).await?;
    let mut masters = Vec::new();
    for port in CLUSTER_PORTS {
        masters.push(Server::start(&dir, port, true).await?);
    }
    create_cluster(&CLUSTER_PORTS).await?;

    let prefix = format!("bench-{}", std::process::id());
    let single_store: Arc<dyn PresenceStore> = Arc::new(
        RedisStore::connect(
            RedisConfig::new(format!("redis://127.0.0.1:{SINGLE_PORT}")).prefix(&prefix),
        )
        .await?,
    );
    let cluster_config = RedisConfig::cluster(
        CLUSTER_PORTS
            .iter()
            .map(|port| format!("redis://127.0.0.1:{port}")),
    )
    .prefix(&prefix);
    let shards = cluster_config.shards;
    let cluster_store: Arc<dyn PresenceStore> =
        Arc::new(RedisStore::connect(cluster_config).await?);

    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let one = run(&single_store, round, std::slice::from_ref(&single)).await?;
        println!(
            "round {round}  one Redis:                     {:>8.0} transitions/s  CPU {}",
            one.rate, one.cpu
        );
        let three = run(&cluster_store, round, &masters).await?;
        println!(
            "round {round}  Redis Cluster, 3 masters, {shards} shards: {:>8.0} transitions/s  CPU {}",
            three.rate, three.cpu
        );
        let ratio = three.rate / one.rate;
        println!("round {round}  ratio cluster / one Redis: {ratio:.2}x");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "ratio cluster / one Redis: median {:.2}x, range {:.2}x–{:.2}x (goal ≥ 2x)",
        ratios[ratios.len() / 2],
        ratios[0],
        ratios[ratios.len() - 1]
    );
    drop((single, masters));
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

struct Measured {
    rate: f64,
    cpu: String,
}

/// One run of the workload on `store`; its rate, and the CPU `servers`
/// and this process used during it.
async fn run(
    store: &Arc<dyn PresenceStore>,
    round: usize,
    servers: &[Server],
) -> Result<Measured, Error> {
    let config = PresenceConfig::default();
    let node = NodeId::new("bench");
    let t0: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).ok_or("time")?;
    let cpu_before: Vec<f64> = servers.iter().map(Server::cpu_seconds).collect();
    let client_before = cpu_seconds("self");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let (store, node) = (store.clone(), node.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..PAIRS {
                let user = UserId::from(format!("r{round}-t{task}-u{}", n % USERS_PER_TASK));
                let session = SessionId::from(format!("r{round}-t{task}-s{n}"));
                let at = t0 + TimeDelta::milliseconds(n as i64);
                for op in [
                    open(&session, &node),
                    UserOp::Close {
                        session: session.clone(),
                        held_by: None,
                    },
                ] {
                    let update = Update {
                        user: &user,
                        op: &op,
                        now: at,
                        node: &node,
                        config: &config,
                        keep_change: false,
                    };
                    store.apply(update).await?;
                }
            }
            Ok::<(), presence_core::store::StoreError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let servers_cpu: Vec<String> = servers
        .iter()
        .zip(cpu_before)
        .map(|(server, before)| {
            let used = server.cpu_seconds() - before;
            format!("{:.2} s ({:.0}%)", used, used / seconds * 100.0)
        })
        .collect();
    let client = cpu_seconds("self") - client_before;
    Ok(Measured {
        rate: (TASKS * PAIRS * 2) as f64 / seconds,
        cpu: format!(
            "over {seconds:.2} s: redis-server {}; this process {client:.2} s ({:.0}%)",
            servers_cpu.join(", "),
            client / seconds * 100.0
        ),
    })
}

fn open(session: &SessionId, node: &NodeId) -> UserOp {
    UserOp::Open(NewSession {
        id: session.clone(),
        login: "login".into(),
        node: node.clone(),
        scopes: vec!["org".into()],
        metadata: BTreeMap::new(),
        liveness: Default::default(),
        kind: None,
    })
}

/// A `redis-server` of this bench, killed when dropped.
struct Server {
    child: Child,
}

impl Server {
    async fn start(dir: &Path, port: u16, cluster: bool) -> Result<Self, Error> {
        let dir: PathBuf = dir.join(port.to_string());
        std::fs::create_dir_all(&dir)?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir);
        if cluster {
            command
                .args(["--cluster-enabled", "yes", "--cluster-config-file"])
                .arg(dir.join("nodes.conf"));
        }
        let child = command
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("redis-server is needed on the PATH: {e}"))?;
        let server = Self { child };
        let started = Instant::now();
        while !cli(port, &["ping"]).await.contains("PONG") {
            if started.elapsed() > Duration::from_secs(10) {
                return Err(format!("redis-server on port {port} did not start (in use?)").into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(server)
    }

    /// CPU seconds (user + system) this server used so far.
    fn cpu_seconds(&self) -> f64 {
        self.child
            .id()
            .map_or(0.0, |pid| cpu_seconds(&pid.to_string()))
    }
}

/// User + system CPU seconds of process `pid` (or `self`), from `/proc`.
fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // After the command name in parentheses: state, ppid, …; utime and
    // stime are the 12th and 13th fields from there, in clock ticks (100/s
    // on Linux).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

async fn create_cluster(ports: &[u16]) -> Result<(), Error> {
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .map_err(|e| format!("redis-cli is needed on the PATH: {e}"))?;
    if !created.success() {
        return Err("redis-cli --cluster create failed".into());
    }
    let started = Instant::now();
    loop {
        let mut ok = true;
        for port in ports {
            ok &= cli(*port, &["cluster", "info"])
                .await
                .contains("cluster_state:ok");
        }
        if ok {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("the cluster never became ok".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
