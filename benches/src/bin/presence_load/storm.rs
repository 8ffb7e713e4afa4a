//! P7, join storm: users log in at a fixed rate (on node A, or on node B of
//! two sharing Redis) while watchers of their scope on node A receive each
//! one's ONLINE event; delivery rate and latency, and lag growth over the
//! storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::client::{self, ClientConfig, Role};
use crate::fleet::{Plan, connect_many, settle, wait_for};
use crate::machine::{CpuMeter, fd_count, fd_warning};
use crate::opts::Opts;
use crate::report::{counters_json, deliveries, emit, metrics, mib, with_fields};
use crate::server::Server;
use crate::setup::{client_config, demo_spec, presence_server};
use crate::shared::{PHASES, Shared, TriggerSlots};
use crate::{Error, http};

/// The organisation (and scope) of every user of a storm.
const ORG: &str = "storm";

/// Runs the scenario and prints its summary; whether every expected event
/// was delivered.
pub(crate) async fn run(opts: &Opts) -> Result<bool, Error> {
    let row = measure(opts).await?;
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

/// Which joiners (by index) watcher `w` subscribes to, with `interest`
/// per watcher out of `joins`.
fn interest_of(w: usize, interest: usize, joins: usize) -> Vec<usize> {
    let mut list: Vec<usize> = (0..interest.min(joins))
        .map(|m| (w * interest + m) % joins)
        .collect();
    list.sort_unstable();
    list.dedup();
    list
}

/// What the joiner tasks of a storm share: how to join, and their tally.
struct Joiners {
    shared: Arc<Shared>,
    /// Against the node the joiners log in to.
    config: ClientConfig,
    /// Whether a joiner opens a socket after its login.
    sockets: bool,
    /// Whether joiner j's login succeeded.
    login_ok: Vec<AtomicBool>,
    login_errors: AtomicU64,
    socket_errors: AtomicU64,
    logins_done: AtomicU64,
    last_login_ns: AtomicU64,
}

impl Joiners {
    /// Joiner `j` logs in (its ONLINE event is published by the login,
    /// README.md#two-commands), then opens its socket when joiners have one.
    async fn join(self: Arc<Self>, j: usize, name: String) {
        let token = async {
            let mut http = http::Http::connect(self.config.server).await?;
            self.shared.mark_sent(&name, 0);
            http.login(&name, ORG).await
        }
        .await;
        self.logins_done.fetch_add(1, Relaxed);
        self.last_login_ns.fetch_max(self.shared.now_ns(), Relaxed);
        let Ok(token) = token else {
            self.login_errors.fetch_add(1, Relaxed);
            return;
        };
        self.login_ok[j].store(true, Relaxed);
        if !self.sockets {
            return;
        }
        let config = self.config.clone();
        match client::connect(&config, &token, Role::Quiet, None, &self.shared).await {
            Ok(connected) => {
                client::run(connected, Role::Quiet, config, self.shared.clone(), None).await;
            }
            Err(_) => {
                self.socket_errors.fetch_add(1, Relaxed);
            }
        }
    }
}

/// Node A and, when there is one, node B.
fn nodes<'a>(node_a: &'a Server, node_b: Option<&'a Server>) -> Vec<&'a Server> {
    std::iter::once(node_a).chain(node_b).collect()
}

async fn measure(opts: &Opts) -> Result<Value, Error> {
    let watchers = opts.usize("watchers", 10_000)?;
    let rate = opts.num("rate", 5_000)?.max(1);
    let duration_ms = opts.num("duration-ms", 1_500)?;
    let node_count = opts.usize("nodes", 1)?.clamp(1, 2);
    let interest = opts.usize("interest", 0)?;
    let joiner_sockets = opts.flag("joiner-sockets", true);
    let timeout = Duration::from_secs(opts.num("timeout-s", 90)?);
    let joins = usize::try_from(rate * duration_ms / 1000)?.max(1);
    let default_store = if node_count == 2 {
        "redis://127.0.0.1:6379/"
    } else {
        "memory://"
    };
    let spec = demo_spec(opts, default_store)?;
    let store = opts.get("store").unwrap_or(default_store).to_owned();
    let joiner_socket_count = if joiner_sockets { joins } else { 0 };
    let sockets_a = watchers
        + if node_count == 1 {
            joiner_socket_count
        } else {
            0
        };
    fd_warning("node A", sockets_a);
    fd_warning("the clients", watchers + joiner_socket_count);
    let mut node_a = presence_server(opts, &spec, "storm-a", "url").await?;
    let mut node_b = if node_count == 2 {
        Some(presence_server(opts, &spec, "storm-b", "url-b").await?)
    } else {
        None
    };
    let join_addr = node_b.as_ref().map_or(node_a.addr, |b| b.addr);
    let joiner_names: Vec<String> = (0..joins).map(|j| format!("j{j}")).collect();
    let slots = joiner_names
        .iter()
        .enumerate()
        .map(|(j, name)| (name.clone(), TriggerSlots::joiner(j * PHASES / joins)))
        .collect();
    let shared = Arc::new(Shared::new(slots));
    let config_a = client_config(opts, &node_a, true)?;
    let watcher_users: Vec<(String, String)> = (0..watchers)
        .map(|i| (format!("w{i}"), ORG.to_owned()))
        .collect();
    let tokens = http::login_many(node_a.addr, &watcher_users, 16).await?;
    let plans = tokens
        .into_iter()
        .enumerate()
        .map(|(index, token)| Plan {
            token,
            role: Role::Watcher,
            interest: (interest > 0).then(|| {
                (
                    ORG.to_owned(),
                    interest_of(index, interest, joins)
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
        fleet.errors_note()
    );
    settle(&shared, Duration::from_secs(1)).await;
    let cpu = CpuMeter::start(&nodes(&node_a, node_b.as_ref()));
    let rss_before = node_a.rss();
    // The storm: joiner j logs in at start + j/rate.
    let joiners = Arc::new(Joiners {
        shared: shared.clone(),
        config: ClientConfig {
            server: join_addr,
            ..config_a.clone()
        },
        sockets: joiner_sockets,
        login_ok: (0..joins).map(|_| AtomicBool::new(false)).collect(),
        login_errors: AtomicU64::new(0),
        socket_errors: AtomicU64::new(0),
        logins_done: AtomicU64::new(0),
        last_login_ns: AtomicU64::new(0),
    });
    let start = tokio::time::Instant::now();
    let start_ns = shared.now_ns();
    let mut joiner_tasks = Vec::with_capacity(joins);
    for (j, name) in joiner_names.iter().enumerate() {
        tokio::time::sleep_until(start + Duration::from_nanos(j as u64 * 1_000_000_000 / rate))
            .await;
        joiner_tasks.push(tokio::spawn(joiners.clone().join(j, name.clone())));
    }
    let scheduled_s = start.elapsed().as_secs_f64();
    // Every login answered (or failed), then the deliveries.
    let login_deadline = Instant::now() + timeout;
    while joiners.logins_done.load(Relaxed) < joins as u64 && Instant::now() < login_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ok: Vec<bool> = joiners.login_ok.iter().map(|b| b.load(Relaxed)).collect();
    let held = fleet.connected;
    let expected: u64 = if interest > 0 {
        (0..held)
            .map(|w| {
                interest_of(w, interest, joins)
                    .into_iter()
                    .filter(|&j| ok[j])
                    .count() as u64
            })
            .sum()
    } else {
        held as u64 * ok.iter().filter(|&&b| b).count() as u64
    };
    wait_for(&shared, expected, timeout, Duration::from_secs(10)).await;
    let (server_cpu, tool_cpu) = cpu.stop(&nodes(&node_a, node_b.as_ref()));
    let deliveries = deliveries(&shared, start_ns, expected);
    let joins_span_s = joiners.last_login_ns.load(Relaxed).saturating_sub(start_ns) as f64 / 1e9;
    let row = json!({
        "presence_server": opts.server_kind(),
        "nodes": node_count,
        "store": store,
        "watchers": watchers,
        "watchers_held": fleet.held(&shared),
        "connect_errors": fleet.errors,
        "interest": interest,
        "joiner_sockets": joiner_sockets,
        "rate": rate,
        "duration_ms": duration_ms,
        "joins": joins,
        "joins_scheduled_s": scheduled_s,
        "joins_span_s": joins_span_s,
        "joins_per_s": if joins_span_s > 0.0 { joins as f64 / joins_span_s } else { 0.0 },
        "login_errors": joiners.login_errors.load(Relaxed),
        "joiner_socket_errors": joiners.socket_errors.load(Relaxed),
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
    Ok(with_fields(row, deliveries))
}
