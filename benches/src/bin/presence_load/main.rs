//! `presence-load`: real WebSocket clients against a running presence
//! server (P5–P7 of issue 7), each scenario beside a bare baseline measured
//! in the same run where one makes sense.
//!
//! ```text
//! cargo build --release -p presence-demo -p presence-benches --bin presence-load
//! target/release/presence-load idle   --sockets 5000
//! target/release/presence-load fanout --watchers 1000 --changes 20 --interval-ms 100
//! target/release/presence-load storm  --watchers 10000 --rate 5000 --duration-ms 1500 [--nodes 2]
//! target/release/presence-load smoke
//! ```
//!
//! The server is `presence-demo` (beside this binary, or `--demo PATH`)
//! started as a child process per run with the environment of SPEC §7
//! (`LISTEN_ADDR=127.0.0.1:0`, `PRESENCE_STORE_URL` from `--store`, a random
//! `PRESENCE_REDIS_PREFIX`, `PRESENCE_METRICS=1`), or one already running
//! (`--url http://127.0.0.1:3000`, `--pid PID` for its memory). Clients log
//! in with `POST /api/login` and connect with `Authorization: Bearer`.
//! Everything is on loopback and bounded in time and count.
//!
//! Latency is measured by this tool on its own clock: from the instant a
//! trigger is sent (a `status_change` frame written, a joiner's login
//! request written) to the instant each watcher reads the matching event
//! (`presence` frames, or the events of `presence_batch` frames with
//! `--batch`). The clients and the server share the machine's cores: the
//! output gives the CPU seconds each used.
//!
//! Every scenario prints a table and one line `RESULT {json}` per run.

mod bare;
mod client;
mod http;
mod libserver;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::client::{ClientConfig, Command, Role, Shared, TriggerSlots};
use crate::server::{DemoSpec, Server};

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("presence-load: the run did not meet its checks (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("presence-load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

const USAGE: &str = "usage: presence-load idle|fanout|storm|smoke [--option value]…
common:  --server demo|lib  --demo PATH  --url http://HOST:PORT [--pid PID] [--url-b …]  --store URL  --batch
         --heartbeat-ms 25000  --activity-ms 0  --no-baseline
idle:    --sockets 5000
fanout:  --watchers 1000 --triggers 1 --changes 20 --interval-ms 100 --timeout-s 60
storm:   --watchers 10000 --rate 5000 --duration-ms 1500 --nodes 1|2 --interest 0|50
         --joiner-sockets true|false --timeout-s 90";

async fn run() -> Result<bool, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let kind = args.get(1).ok_or("--serve bare|broadcast|lib")?;
        if kind == "lib" {
            libserver::serve().await?;
        } else {
            bare::serve(kind).await?;
        }
        return Ok(true);
    }
    let Some(scenario) = args.first().cloned() else {
        println!("{USAGE}");
        return Ok(false);
    };
    let opts = Opts::parse(&args[1..])?;
    let limit = raise_fd_limit();
    let header = machine_header(limit);
    println!("{header}");
    let ok = match scenario.as_str() {
        "idle" => idle(&opts).await?,
        "fanout" => fanout(&opts).await?,
        "storm" => storm(&opts).await?,
        "smoke" => smoke(&opts).await?,
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            true
        }
        other => return Err(format!("unknown scenario {other:?}\n{USAGE}").into()),
    };
    Ok(ok)
}

/// `--name value` pairs; a `--name` followed by another option or nothing
/// is `true`.
struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let name = args[i]
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {:?}\n{USAGE}", args[i]))?;
            match args.get(i + 1) {
                Some(value) if !value.starts_with("--") => {
                    map.insert(name.to_owned(), value.clone());
                    i += 2;
                }
                _ => {
                    map.insert(name.to_owned(), "true".to_owned());
                    i += 1;
                }
            }
        }
        Ok(Self(map))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn num(&self, name: &str, default: u64) -> Result<u64, Error> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name} {v}: not a number").into())
        })
    }

    fn usize(&self, name: &str, default: usize) -> Result<usize, Error> {
        Ok(usize::try_from(self.num(name, default as u64)?)?)
    }

    fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| v != "false" && v != "0")
    }

    fn millis(&self, name: &str, default: u64) -> Result<Option<Duration>, Error> {
        let ms = self.num(name, default)?;
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }

    fn external(&self, name: &str) -> Result<Option<SocketAddr>, Error> {
        self.get(name)
            .map(|url| {
                let hostport = url
                    .trim_start_matches("http://")
                    .trim_start_matches("ws://")
                    .trim_end_matches('/');
                hostport
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--{name} {url}: want http://IP:PORT ({e})").into())
            })
            .transpose()
    }
}

/// Raises the soft open-files limit to the hard one; returns (soft, hard).
fn raise_fd_limit() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::Resource::NOFILE.get().unwrap_or((0, 0))
}

fn machine_header((soft, hard): (u64, u64)) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    format!(
        "presence-load {}: {cores} cores, {mem} RAM, open files {soft} (hard {hard}); \
         the clients and the server share these cores",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    )
}

fn client_config(opts: &Opts, server: &Server, snapshots: bool) -> Result<ClientConfig, Error> {
    Ok(ClientConfig {
        server: server.addr,
        batch: opts.flag("batch", false),
        heartbeat: opts.millis("heartbeat-ms", 25_000)?,
        activity: opts.millis("activity-ms", 0)?,
        snapshots,
    })
}

/// How to start presence servers for this run.
fn demo_spec(opts: &Opts, default_store: &str) -> Result<DemoSpec, Error> {
    let store = opts.get("store").unwrap_or(default_store).to_owned();
    let mut env = vec![("PRESENCE_STORE_URL".to_owned(), store)];
    // A fresh key prefix / schema per run, so runs never share state.
    let tag = format!(
        "presence-load-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    );
    env.push(("PRESENCE_REDIS_PREFIX".to_owned(), tag.clone()));
    env.push(("PRESENCE_PG_SCHEMA".to_owned(), tag.replace('-', "_")));
    let binary = if opts.get("server") == Some("lib") {
        std::env::current_exe()?
    } else {
        DemoSpec::locate(opts.get("demo"))?
    };
    Ok(DemoSpec { binary, env })
}

async fn presence_server(
    opts: &Opts,
    spec: &DemoSpec,
    label: &str,
    url_opt: &str,
) -> Result<Server, Error> {
    match opts.external(url_opt)? {
        Some(addr) => {
            let pid = opts.get("pid").map(str::parse).transpose()?;
            Ok(Server::external(addr, pid))
        }
        None if opts.get("server") == Some("lib") => Server::lib(spec, label).await,
        None => Server::demo(spec, label).await,
    }
}

/// One client to connect.
struct Plan {
    index: usize,
    token: String,
    role: Role,
    interest: Option<(String, Vec<String>)>,
}

/// Connected clients and what went wrong connecting the others.
struct Fleet {
    tasks: Vec<JoinHandle<()>>,
    triggers: Vec<mpsc::Sender<Command>>,
    connected: usize,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
}

impl Fleet {
    fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Connects every plan, `concurrency` handshakes at a time; each client
/// runs on its own task once connected.
async fn connect_many(
    config: &ClientConfig,
    shared: &Arc<Shared>,
    plans: Vec<Plan>,
    concurrency: usize,
) -> Fleet {
    let start = Instant::now();
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let (done, mut results) = mpsc::unbounded_channel();
    let total = plans.len();
    let mut tasks = Vec::with_capacity(total);
    let mut triggers = Vec::new();
    let fd_limit_hit = Arc::new(AtomicBool::new(false));
    for plan in plans {
        let commands = (plan.role == Role::Trigger).then(|| {
            let (tx, rx) = mpsc::channel(256);
            triggers.push(tx);
            rx
        });
        let (config, shared, permits, done, fd_limit_hit) = (
            config.clone(),
            shared.clone(),
            permits.clone(),
            done.clone(),
            fd_limit_hit.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = permits.acquire_owned().await;
            if fd_limit_hit.load(Relaxed) {
                let _ = done.send(Err("skipped: open-files limit reached".to_owned()));
                return;
            }
            let interest = plan
                .interest
                .as_ref()
                .map(|(scope, users)| (scope.as_str(), users.as_slice()));
            let connected = client::connect(
                &config,
                plan.index,
                &plan.token,
                plan.role,
                interest,
                &shared,
            )
            .await;
            drop(permit);
            match connected {
                Ok(connected) => {
                    let _ = done.send(Ok(()));
                    client::run(connected, plan.role, config, shared, commands).await;
                }
                Err(error) => {
                    if matches!(error, client::ConnectError::FdLimit) {
                        fd_limit_hit.store(true, Relaxed);
                    }
                    let _ = done.send(Err(error.to_string()));
                }
            }
        }));
    }
    drop(done);
    let mut connected = 0;
    let mut errors = BTreeMap::new();
    for _ in 0..total {
        match results.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(why)) => *errors.entry(why).or_insert(0) += 1,
            None => break,
        }
    }
    Fleet {
        tasks,
        triggers,
        connected,
        errors,
        elapsed: start.elapsed(),
    }
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn latency_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!(null);
    }
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p95_ms": ms(h.value_at_quantile(0.95)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "max_ms": ms(h.max()),
        "mean_ms": h.mean() / 1000.0,
    })
}

fn latency_text(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        return "no deliveries".into();
    }
    format!(
        "p50 {:.2} / p95 {:.2} / p99 {:.2} / max {:.2} ms",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.95)),
        ms(h.value_at_quantile(0.99)),
        ms(h.max())
    )
}

/// p50 per tenth of the schedule: lag growth over the run.
fn phases_json(shared: &Shared) -> Value {
    Value::Array(
        shared
            .latency
            .iter()
            .map(|h| {
                let h = h.lock().unwrap_or_else(|e| e.into_inner());
                if h.is_empty() {
                    json!(null)
                } else {
                    json!([ms(h.value_at_quantile(0.5)), ms(h.value_at_quantile(0.99))])
                }
            })
            .collect(),
    )
}

fn counters_json(shared: &Shared) -> Value {
    let reasons = shared
        .close_reasons
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    json!({
        "frames": shared.frames.load(Relaxed),
        "batches": shared.batches.load(Relaxed),
        "unmatched_events": shared.unmatched.load(Relaxed),
        "other_events": shared.other_events.load(Relaxed),
        "resnapshots_after_lag": shared.resnapshots.load(Relaxed),
        "error_frames": shared.error_frames.load(Relaxed),
        "sockets_closed": shared.closed.load(Relaxed),
        "close_reasons": reasons,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

fn fd_count(pid: Option<u32>) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{}/fd", pid?))
        .ok()
        .map(Iterator::count)
}

fn own_cpu() -> f64 {
    server::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// A few figures from `GET /metrics`, when the server has it.
async fn metrics(addr: SocketAddr) -> Value {
    match http::scrape(addr).await {
        None => json!(null),
        Some(samples) => {
            let picked: BTreeMap<String, f64> = samples
                .into_iter()
                .filter(|(name, _)| !name.contains("_bucket"))
                .take(40)
                .collect();
            json!(picked)
        }
    }
}

fn emit(result: &Value) {
    println!("RESULT {result}");
}

fn fd_warning(what: &str, needed: usize) {
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((0, 0));
    if needed as u64 + 64 > soft {
        println!(
            "warning: {what} needs ~{needed} open files, the limit is {soft}: \
             the run will stop at the limit (reported as such below)"
        );
    }
}

// ---------------------------------------------------------------- P5 idle

async fn idle(opts: &Opts) -> Result<bool, Error> {
    let sockets = opts.usize("sockets", 5_000)?;
    fd_warning(
        "one process holding every client socket (and the server the other end)",
        sockets,
    );
    let spec = demo_spec(opts, "memory://")?;
    let mut rows = Vec::new();
    let presence = idle_run(opts, "presence", sockets, &spec).await?;
    rows.push(presence.clone());
    if opts.get("url").is_none() && !opts.flag("no-baseline", false) {
        rows.push(idle_run(opts, "bare", sockets, &spec).await?);
    }
    println!("\nP5 idle sockets ({sockets} asked; each user in an org of its own, no fan-out)");
    println!(
        "{:<10} {:>8} {:>10} {:>12} {:>12} {:>14} {:>12}",
        "server", "held", "RSS idle", "after login", "with socks", "KiB/socket", "incl. login"
    );
    for row in &rows {
        println!(
            "{:<10} {:>8} {:>8.1}Mi {:>10.1}Mi {:>10.1}Mi {:>14.2} {:>12.2}",
            row["server"].as_str().unwrap_or(""),
            row["held"],
            row["rss_idle_mib"].as_f64().unwrap_or(0.0),
            row["rss_after_login_mib"].as_f64().unwrap_or(0.0),
            row["rss_with_sockets_mib"].as_f64().unwrap_or(0.0),
            row["kib_per_socket"].as_f64().unwrap_or(0.0),
            row["kib_per_socket_incl_login"].as_f64().unwrap_or(0.0),
        );
    }
    let mut result = json!({"scenario": "idle", "sockets": sockets, "runs": rows});
    if rows.len() == 2
        && let (Some(p), Some(b)) = (
            rows[0]["kib_per_socket"].as_f64(),
            rows[1]["kib_per_socket"].as_f64(),
        )
    {
        println!("presence/bare per socket: {:.2}x", p / b);
        result["ratio_presence_over_bare"] = json!(p / b);
    }
    emit(&result);
    Ok(rows
        .iter()
        .all(|r| r["held"].as_u64() == Some(sockets as u64)))
}

async fn idle_run(
    opts: &Opts,
    kind: &'static str,
    sockets: usize,
    spec: &DemoSpec,
) -> Result<Value, Error> {
    let mut server = match kind {
        "presence" => presence_server(opts, spec, "idle", "url").await?,
        _ => Server::bare("bare", "idle").await?,
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = server.rss().unwrap_or(0);
    let users: Vec<(String, String)> = (0..sockets)
        .map(|i| (format!("i{i}"), format!("i{i}")))
        .collect();
    let tokens = http::login_many(server.addr, &users, 16).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_login = server.rss().unwrap_or(0);
    let shared = Arc::new(Shared::new(HashMap::new()));
    let config = client_config(opts, &server, kind == "presence")?;
    let plans = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| Plan {
            index,
            token,
            role: Role::Quiet,
            interest: None,
        })
        .collect();
    let fleet = connect_many(&config, &shared, plans, 128).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_sockets = server.rss().unwrap_or(0);
    let held = fleet
        .connected
        .saturating_sub(shared.closed.load(Relaxed) as usize);
    let per = |from: u64| rss_sockets.saturating_sub(from) as f64 / held.max(1) as f64 / 1024.0;
    let row = json!({
        "server": kind,
        "presence_server": opts.get("server").unwrap_or("demo"),
        "held": held,
        "connect_s": fleet.elapsed.as_secs_f64(),
        "connect_errors": fleet.errors,
        "server_fds": fd_count(server.pid()),
        "server_alive": server.alive(),
        "rss_idle_mib": mib(rss_idle),
        "rss_after_login_mib": mib(rss_login),
        "rss_with_sockets_mib": mib(rss_sockets),
        "kib_per_socket": per(rss_login),
        "kib_per_socket_incl_login": per(rss_idle),
        "counters": counters_json(&shared),
    });
    if !fleet.errors.is_empty() {
        println!("{kind}: connect errors {:?}", fleet.errors);
    }
    if fleet.errors.keys().any(|e| e.contains("open-files limit")) {
        println!(
            "{kind}: stopped by the open-files limit at {} sockets (one client process; \
             the server holds as many)",
            fleet.connected
        );
    }
    fleet.abort();
    server.stop().await;
    Ok(row)
}

// -------------------------------------------------------------- P6 fanout

async fn fanout(opts: &Opts) -> Result<bool, Error> {
    let watchers = opts.usize("watchers", 1_000)?;
    fd_warning("the watchers", watchers);
    let spec = demo_spec(opts, "memory://")?;
    let mut rows = vec![fanout_run(opts, "presence", &spec).await?];
    if opts.get("url").is_none() && !opts.flag("no-baseline", false) {
        rows.push(fanout_run(opts, "broadcast", &spec).await?);
    }
    println!(
        "\nP6 fan-out: {watchers} watchers of one scope, {} trigger user(s) × {} changes every {} ms{}",
        opts.num("triggers", 1)?,
        opts.num("changes", 20)?,
        opts.num("interval-ms", 100)?,
        if opts.flag("batch", false) {
            ", batch=1"
        } else {
            ""
        }
    );
    println!(
        "{:<10} {:>7} {:>9}/{:<9} {:>12} {:>9} {:>9}  latency",
        "server", "held", "delivered", "expected", "deliveries/s", "srv CPU s", "tool CPU s"
    );
    for row in &rows {
        println!(
            "{:<10} {:>7} {:>9}/{:<9} {:>12.0} {:>9.2} {:>9.2}  {}",
            row["server"].as_str().unwrap_or(""),
            row["held"],
            row["delivered"],
            row["expected"],
            row["deliveries_per_s"].as_f64().unwrap_or(0.0),
            row["server_cpu_s"].as_f64().unwrap_or(0.0),
            row["tool_cpu_s"].as_f64().unwrap_or(0.0),
            row["latency_text"].as_str().unwrap_or(""),
        );
    }
    let mut result = json!({"scenario": "fanout", "watchers": watchers, "runs": rows});
    if rows.len() == 2
        && let (Some(p), Some(b)) = (
            rows[0]["deliveries_per_s"].as_f64(),
            rows[1]["deliveries_per_s"].as_f64(),
        )
    {
        println!("throughput presence/broadcast: {:.2}x", p / b);
        result["throughput_ratio"] = json!(p / b);
    }
    emit(&result);
    Ok(rows
        .iter()
        .all(|r| r["delivered"] == r["expected"] && r["held"].as_u64() == Some(watchers as u64)))
}

async fn fanout_run(opts: &Opts, kind: &'static str, spec: &DemoSpec) -> Result<Value, Error> {
    let watchers = opts.usize("watchers", 1_000)?;
    let trigger_count = opts.usize("triggers", 1)?;
    let changes = opts.usize("changes", 20)?;
    let interval = opts.millis("interval-ms", 100)?;
    let timeout = Duration::from_secs(opts.num("timeout-s", 60)?);
    let mut server = match kind {
        "presence" => presence_server(opts, spec, "fanout", "url").await?,
        _ => Server::bare("broadcast", "fanout").await?,
    };
    let org = "fan";
    let trigger_users: Vec<(String, String)> = (0..trigger_count)
        .map(|i| (format!("t{i}"), org.to_owned()))
        .collect();
    let watcher_users: Vec<(String, String)> = (0..watchers)
        .map(|i| (format!("w{i}"), org.to_owned()))
        .collect();
    let slots = trigger_users
        .iter()
        .map(|(user, _)| (user.clone(), TriggerSlots::changes(changes)))
        .collect();
    let shared = Arc::new(Shared::new(slots));
    let config = client_config(opts, &server, kind == "presence")?;
    // The triggers first: their snapshot (which gives their v) is small.
    let trigger_tokens = http::login_many(server.addr, &trigger_users, 4).await?;
    let trigger_plans = trigger_tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| Plan {
            index: watchers + i,
            token,
            role: Role::Trigger,
            interest: None,
        })
        .collect();
    let trigger_fleet = connect_many(&config, &shared, trigger_plans, 16).await;
    if trigger_fleet.connected < trigger_count {
        return Err(format!(
            "{kind}: triggers failed to connect: {:?}",
            trigger_fleet.errors
        )
        .into());
    }
    // Every watcher logs in before any connects: no login event reaches a
    // watcher, and each snapshot is the whole scope.
    let tokens = http::login_many(server.addr, &watcher_users, 16).await?;
    let plans = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| Plan {
            index,
            token,
            role: Role::Watcher,
            interest: None,
        })
        .collect();
    let fleet = connect_many(&config, &shared, plans, 64).await;
    println!(
        "{kind}: {} watchers connected in {:.1}s{}",
        fleet.connected,
        fleet.elapsed.as_secs_f64(),
        if fleet.errors.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", fleet.errors)
        }
    );
    settle(&shared, Duration::from_secs(1)).await;
    let frames_before = shared.frames.load(Relaxed);
    let server_cpu0 = server.pid().and_then(server::cpu_seconds).unwrap_or(0.0);
    let tool_cpu0 = own_cpu();
    let start_ns = shared.now_ns();
    for k in 0..changes {
        let status = if k % 2 == 0 { "BUSY" } else { "ONLINE" };
        for trigger in &trigger_fleet.triggers {
            let _ = trigger.send(Command::Status(status, k)).await;
        }
        if let Some(interval) = interval {
            tokio::time::sleep(interval).await;
        }
    }
    let held = fleet.connected;
    let expected = (held * trigger_count * changes) as u64;
    wait_for(&shared, expected, timeout, Duration::from_secs(5)).await;
    let server_cpu = server.pid().and_then(server::cpu_seconds).unwrap_or(0.0) - server_cpu0;
    let tool_cpu = own_cpu() - tool_cpu0;
    let delivered = shared.delivered.load(Relaxed);
    let span_s = shared
        .last_delivery_ns
        .load(Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    let histogram = shared.merged();
    let row = json!({
        "server": kind,
        "presence_server": opts.get("server").unwrap_or("demo"),
        "watchers": watchers,
        "held": held.saturating_sub(shared.closed.load(Relaxed) as usize),
        "connect_errors": fleet.errors,
        "connect_s": fleet.elapsed.as_secs_f64(),
        "triggers": trigger_count,
        "changes": changes,
        "interval_ms": interval.map_or(0, |d| d.as_millis() as u64),
        "batch": config.batch,
        "expected": expected,
        "delivered": delivered,
        "span_s": span_s,
        "deliveries_per_s": if span_s > 0.0 { delivered as f64 / span_s } else { 0.0 },
        "latency": latency_json(&histogram),
        "latency_text": latency_text(&histogram),
        "phases_p50_p99_ms": phases_json(&shared),
        "frames_in_trigger_phase": shared.frames.load(Relaxed) - frames_before,
        "server_cpu_s": server_cpu,
        "tool_cpu_s": tool_cpu,
        "server_rss_mib": server.rss().map(mib),
        "server_alive": server.alive(),
        "counters": counters_json(&shared),
        "metrics": if kind == "presence" { metrics(server.addr).await } else { json!(null) },
    });
    fleet.abort();
    trigger_fleet.abort();
    server.stop().await;
    Ok(row)
}

/// Waits until no frame arrived for 300 ms (the connect snapshots are
/// through), at least `least`, at most 30 s.
async fn settle(shared: &Shared, least: Duration) {
    tokio::time::sleep(least).await;
    let start = Instant::now();
    let mut last = shared.frames.load(Relaxed);
    while start.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = shared.frames.load(Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}

/// Waits until `expected` deliveries, or `stall` without progress, or
/// `timeout`.
async fn wait_for(shared: &Shared, expected: u64, timeout: Duration, stall: Duration) {
    let start = Instant::now();
    let mut last = (shared.delivered.load(Relaxed), Instant::now());
    while start.elapsed() < timeout {
        let delivered = shared.delivered.load(Relaxed);
        if delivered >= expected {
            return;
        }
        if delivered != last.0 {
            last = (delivered, Instant::now());
        } else if last.1.elapsed() > stall {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --------------------------------------------------------------- P7 storm

async fn storm(opts: &Opts) -> Result<bool, Error> {
    let row = storm_run(opts).await?;
    println!(
        "\nP7 join storm: {} watchers on node A, {} joins at {}/s on node {} ({} node(s), store {}){}",
        row["watchers_held"],
        row["joins"],
        row["rate"],
        if row["nodes"] == 2 { "B" } else { "A" },
        row["nodes"],
        row["store"].as_str().unwrap_or(""),
        if row["interest"].as_u64().unwrap_or(0) > 0 {
            format!(", each watcher subscribed to {} joiners", row["interest"])
        } else {
            String::new()
        }
    );
    println!(
        "joins done in {:.2}s ({:.0}/s achieved), login errors {}, joiner socket errors {}",
        row["joins_span_s"].as_f64().unwrap_or(0.0),
        row["joins_per_s"].as_f64().unwrap_or(0.0),
        row["login_errors"],
        row["joiner_socket_errors"],
    );
    println!(
        "delivered {}/{} in {:.2}s: {:.0} deliveries/s; latency {}",
        row["delivered"],
        row["expected"],
        row["span_s"].as_f64().unwrap_or(0.0),
        row["deliveries_per_s"].as_f64().unwrap_or(0.0),
        row["latency_text"].as_str().unwrap_or("")
    );
    println!(
        "p50/p99 by tenth of the storm (lag growth): {}",
        row["phases_p50_p99_ms"]
    );
    println!(
        "CPU seconds: server(s) {:.2}, tool {:.2}",
        row["server_cpu_s"].as_f64().unwrap_or(0.0),
        row["tool_cpu_s"].as_f64().unwrap_or(0.0)
    );
    let ok = row["delivered"] == row["expected"];
    emit(&json!({"scenario": "storm", "run": row}));
    Ok(ok)
}

async fn storm_run(opts: &Opts) -> Result<Value, Error> {
    let watchers = opts.usize("watchers", 10_000)?;
    let rate = opts.num("rate", 5_000)?.max(1);
    let duration_ms = opts.num("duration-ms", 1_500)?;
    let nodes = opts.usize("nodes", 1)?.clamp(1, 2);
    let interest = opts.usize("interest", 0)?;
    let joiner_sockets = opts.flag("joiner-sockets", true);
    let timeout = Duration::from_secs(opts.num("timeout-s", 90)?);
    let joins = usize::try_from(rate * duration_ms / 1000)?.max(1);
    let default_store = if nodes == 2 {
        "redis://127.0.0.1:6379/"
    } else {
        "memory://"
    };
    let spec = demo_spec(opts, default_store)?;
    let store = opts.get("store").unwrap_or(default_store).to_owned();
    let sockets_a = watchers
        + if nodes == 1 && joiner_sockets {
            joins
        } else {
            0
        };
    fd_warning("node A", sockets_a);
    fd_warning(
        "the clients",
        watchers + if joiner_sockets { joins } else { 0 },
    );
    let mut node_a = presence_server(opts, &spec, "storm-a", "url").await?;
    let mut node_b = if nodes == 2 {
        Some(presence_server(opts, &spec, "storm-b", "url-b").await?)
    } else {
        None
    };
    let join_addr = node_b.as_ref().map_or(node_a.addr, |b| b.addr);
    let org = "storm";
    let joiner_names: Vec<String> = (0..joins).map(|j| format!("j{j}")).collect();
    let slots = joiner_names
        .iter()
        .enumerate()
        .map(|(j, name)| {
            (
                name.clone(),
                TriggerSlots::joiner(j * client::PHASES / joins),
            )
        })
        .collect();
    let shared = Arc::new(Shared::new(slots));
    let config_a = client_config(opts, &node_a, true)?;
    let watcher_users: Vec<(String, String)> = (0..watchers)
        .map(|i| (format!("w{i}"), org.to_owned()))
        .collect();
    let tokens = http::login_many(node_a.addr, &watcher_users, 16).await?;
    let interest_of = |w: usize| -> Vec<usize> {
        let mut list: Vec<usize> = (0..interest.min(joins))
            .map(|m| (w * interest + m) % joins)
            .collect();
        list.sort_unstable();
        list.dedup();
        list
    };
    let plans = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| Plan {
            index,
            token,
            role: Role::Watcher,
            interest: (interest > 0).then(|| {
                (
                    org.to_owned(),
                    interest_of(index)
                        .into_iter()
                        .map(|j| joiner_names[j].clone())
                        .collect(),
                )
            }),
        })
        .collect();
    let fleet = connect_many(&config_a, &shared, plans, 64).await;
    println!(
        "{} watchers connected to node A in {:.1}s{}",
        fleet.connected,
        fleet.elapsed.as_secs_f64(),
        if fleet.errors.is_empty() {
            String::new()
        } else {
            format!(", errors {:?}", fleet.errors)
        }
    );
    settle(&shared, Duration::from_secs(1)).await;
    let cpu_of = |servers: &[&Server]| -> f64 {
        servers
            .iter()
            .filter_map(|s| s.pid().and_then(server::cpu_seconds))
            .sum()
    };
    let server_cpu0 = cpu_of(&[&node_a]) + node_b.as_ref().map_or(0.0, |b| cpu_of(&[b]));
    let tool_cpu0 = own_cpu();
    let rss_before = node_a.rss();
    // The storm: joiner j logs in at start + j/rate (its ONLINE event is
    // published by the login, SPEC §7), then opens its socket.
    let login_ok: Arc<Vec<AtomicBool>> =
        Arc::new((0..joins).map(|_| AtomicBool::new(false)).collect());
    let login_errors = Arc::new(AtomicU64::new(0));
    let socket_errors = Arc::new(AtomicU64::new(0));
    let logins_done = Arc::new(AtomicU64::new(0));
    let last_login_ns = Arc::new(AtomicU64::new(0));
    let joiner_config = ClientConfig {
        server: join_addr,
        ..config_a.clone()
    };
    let start = tokio::time::Instant::now();
    let start_ns = shared.now_ns();
    let mut joiner_tasks = Vec::with_capacity(joins);
    for (j, name) in joiner_names.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_nanos(j as u64 * 1_000_000_000 / rate))
            .await;
        let (
            shared,
            name,
            login_ok,
            login_errors,
            socket_errors,
            logins_done,
            last_login_ns,
            config,
        ) = (
            shared.clone(),
            name.clone(),
            login_ok.clone(),
            login_errors.clone(),
            socket_errors.clone(),
            logins_done.clone(),
            last_login_ns.clone(),
            joiner_config.clone(),
        );
        joiner_tasks.push(tokio::spawn(async move {
            let token = async {
                let mut http = http::Http::connect(join_addr).await?;
                shared.mark_sent(&name, 0);
                http.login(&name, org).await
            }
            .await;
            logins_done.fetch_add(1, Relaxed);
            last_login_ns.fetch_max(shared.now_ns(), Relaxed);
            let Ok(token) = token else {
                login_errors.fetch_add(1, Relaxed);
                return;
            };
            login_ok[j].store(true, Relaxed);
            if !joiner_sockets {
                return;
            }
            match client::connect(&config, watchers + j, &token, Role::Quiet, None, &shared).await {
                Ok(connected) => client::run(connected, Role::Quiet, config, shared, None).await,
                Err(_) => {
                    socket_errors.fetch_add(1, Relaxed);
                }
            }
        }));
    }
    let scheduled_s = start.elapsed().as_secs_f64();
    // Every login answered (or failed), then the deliveries.
    let login_deadline = Instant::now() + timeout;
    while logins_done.load(Relaxed) < joins as u64 && Instant::now() < login_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok: Vec<bool> = login_ok.iter().map(|b| b.load(Relaxed)).collect();
    let held = fleet.connected;
    let expected: u64 = if interest > 0 {
        (0..held)
            .map(|w| interest_of(w).into_iter().filter(|&j| ok[j]).count() as u64)
            .sum()
    } else {
        held as u64 * ok.iter().filter(|&&b| b).count() as u64
    };
    wait_for(&shared, expected, timeout, Duration::from_secs(10)).await;
    let server_cpu =
        cpu_of(&[&node_a]) + node_b.as_ref().map_or(0.0, |b| cpu_of(&[b])) - server_cpu0;
    let tool_cpu = own_cpu() - tool_cpu0;
    let delivered = shared.delivered.load(Relaxed);
    let span_s = shared
        .last_delivery_ns
        .load(Relaxed)
        .saturating_sub(start_ns) as f64
        / 1e9;
    let joins_span_s = last_login_ns.load(Relaxed).saturating_sub(start_ns) as f64 / 1e9;
    let histogram = shared.merged();
    let row = json!({
        "presence_server": opts.get("server").unwrap_or("demo"),
        "nodes": nodes,
        "store": store,
        "watchers": watchers,
        "watchers_held": held.saturating_sub(shared.closed.load(Relaxed) as usize),
        "connect_errors": fleet.errors,
        "interest": interest,
        "joiner_sockets": joiner_sockets,
        "rate": rate,
        "duration_ms": duration_ms,
        "joins": joins,
        "joins_scheduled_s": scheduled_s,
        "joins_span_s": joins_span_s,
        "joins_per_s": if joins_span_s > 0.0 { joins as f64 / joins_span_s } else { 0.0 },
        "login_errors": login_errors.load(Relaxed),
        "joiner_socket_errors": socket_errors.load(Relaxed),
        "expected": expected,
        "delivered": delivered,
        "span_s": span_s,
        "deliveries_per_s": if span_s > 0.0 { delivered as f64 / span_s } else { 0.0 },
        "latency": latency_json(&histogram),
        "latency_text": latency_text(&histogram),
        "phases_p50_p99_ms": phases_json(&shared),
        "server_cpu_s": server_cpu,
        "tool_cpu_s": tool_cpu,
        "node_a_rss_mib": [rss_before.map(mib), node_a.rss().map(mib)],
        "node_b_rss_mib": node_b.as_ref().and_then(Server::rss).map(mib),
        "node_a_fds": fd_count(node_a.pid()),
        "node_b_fds": node_b.as_ref().and_then(|b| fd_count(b.pid())),
        "servers_alive": [node_a.alive(), node_b.as_mut().is_none_or(Server::alive)],
        "counters": counters_json(&shared),
        "metrics_a": metrics(node_a.addr).await,
        "metrics_b": match &node_b { Some(b) => metrics(b.addr).await, None => json!(null) },
    });
    for task in &joiner_tasks {
        task.abort();
    }
    fleet.abort();
    node_a.stop().await;
    if let Some(b) = node_b {
        b.stop().await;
    }
    Ok(row)
}

// --------------------------------------------------------------- smoke

/// A few hundred sockets for a few seconds: for CI. Fails when a delivery
/// is missing or a socket is lost.
async fn smoke(opts: &Opts) -> Result<bool, Error> {
    let mut fanout_opts = Opts(opts.0.clone());
    fanout_opts
        .0
        .entry("watchers".into())
        .or_insert_with(|| "300".into());
    fanout_opts
        .0
        .entry("changes".into())
        .or_insert_with(|| "6".into());
    fanout_opts
        .0
        .entry("interval-ms".into())
        .or_insert_with(|| "50".into());
    fanout_opts
        .0
        .entry("timeout-s".into())
        .or_insert_with(|| "20".into());
    let fanout_ok = fanout(&fanout_opts).await?;
    let mut idle_opts = Opts(opts.0.clone());
    idle_opts
        .0
        .entry("sockets".into())
        .or_insert_with(|| "300".into());
    let idle_ok = idle(&idle_opts).await?;
    println!("smoke: fanout {}, idle {}", pass(fanout_ok), pass(idle_ok));
    Ok(fanout_ok && idle_ok)
}

fn pass(ok: bool) -> &'static str {
    if ok { "ok" } else { "FAILED" }
}
