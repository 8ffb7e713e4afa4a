//! P6, fan-out: watchers of one scope receive every status change of a
//! few trigger users; delivery rate and latency, beside a bare server that
//! broadcasts each change to every socket.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::{Command, Role};
use crate::fleet::{Plan, connect_many, settle, wait_for};
use crate::machine::{CpuMeter, fd_warning};
use crate::opts::Opts;
use crate::report::{counters_json, deliveries, emit, metrics, mib, ratio, with_fields};
use crate::server::DemoSpec;
use crate::setup::{client_config, demo_spec, scenario_server};
use crate::shared::{Shared, TriggerSlots};
use crate::{Error, http};

/// Runs the scenario and prints its table; whether every change reached
/// every watcher, and every watcher stayed.
pub(crate) async fn run(opts: &Opts) -> Result<bool, Error> {
    let watchers = opts.usize("watchers", 1_000)?;
    fd_warning("the watchers", watchers);
    let spec = demo_spec(opts, "memory://")?;
    let mut rows = vec![measure(opts, "presence", &spec).await?];
    if opts.wants_baseline() {
        rows.push(measure(opts, "broadcast", &spec).await?);
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
    if let Some(ratio) = ratio(&rows, "deliveries_per_s") {
        println!("throughput presence/broadcast: {ratio:.2}x");
        result["throughput_ratio"] = json!(ratio);
    }
    emit(&result);
    Ok(rows
        .iter()
        .all(|r| r["delivered"] == r["expected"] && r["held"].as_u64() == Some(watchers as u64)))
}

/// One server (`kind` "presence" or "broadcast"): the triggers' changes,
/// paced by `--interval-ms`, delivered to every watcher.
async fn measure(opts: &Opts, kind: &'static str, spec: &DemoSpec) -> Result<Value, Error> {
    let watchers = opts.usize("watchers", 1_000)?;
    let trigger_count = opts.usize("triggers", 1)?;
    let changes = opts.usize("changes", 20)?;
    let interval = opts.millis("interval-ms", 100)?;
    let timeout = Duration::from_secs(opts.num("timeout-s", 60)?);
    let mut server = scenario_server(opts, spec, kind, "fanout").await?;
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
    let trigger_plans = Plan::each(trigger_tokens, Role::Trigger);
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
    let fleet = connect_many(&config, &shared, Plan::each(tokens, Role::Watcher), 64).await;
    println!(
        "{kind}: {} watchers connected in {:.1}s{}",
        fleet.connected,
        fleet.elapsed.as_secs_f64(),
        fleet.errors_note()
    );
    settle(&shared, Duration::from_secs(1)).await;
    let frames_before = shared.frames.load(Relaxed);
    let cpu = CpuMeter::start(&[&server]);
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
    let expected = (fleet.connected * trigger_count * changes) as u64;
    wait_for(&shared, expected, timeout, Duration::from_secs(5)).await;
    let (server_cpu, tool_cpu) = cpu.stop(&[&server]);
    let deliveries = deliveries(&shared, start_ns, expected);
    let row = json!({
        "server": kind,
        "presence_server": opts.server_kind(),
        "watchers": watchers,
        "held": fleet.held(&shared),
        "connect_errors": fleet.errors,
        "connect_s": fleet.elapsed.as_secs_f64(),
        "triggers": trigger_count,
        "changes": changes,
        "interval_ms": interval.map_or(0, |d| d.as_millis() as u64),
        "batch": config.batch,
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
    Ok(with_fields(row, deliveries))
}
