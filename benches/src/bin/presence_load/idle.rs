//! P5, idle sockets: the server's memory per held socket, each user in an
//! org of its own (no fan-out), beside a bare axum server holding as many.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::client::Role;
use crate::fleet::{Plan, connect_many};
use crate::machine::{fd_count, fd_warning};
use crate::opts::Opts;
use crate::report::{counters_json, emit, mib, ratio};
use crate::server::DemoSpec;
use crate::setup::{client_config, demo_spec, scenario_server};
use crate::shared::Shared;
use crate::{Error, http};

/// Runs the scenario and prints its table; whether every socket was held.
pub(crate) async fn run(opts: &Opts) -> Result<bool, Error> {
    let sockets = opts.usize("sockets", 5_000)?;
    fd_warning(
        "one process holding every client socket (and the server the other end)",
        sockets,
    );
    let spec = demo_spec(opts, "memory://")?;
    let mut rows = vec![measure(opts, "presence", sockets, &spec).await?];
    if opts.wants_baseline() {
        rows.push(measure(opts, "bare", sockets, &spec).await?);
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
    if let Some(ratio) = ratio(&rows, "kib_per_socket") {
        println!("presence/bare per socket: {ratio:.2}x");
        result["ratio_presence_over_bare"] = json!(ratio);
    }
    emit(&result);
    Ok(rows
        .iter()
        .all(|r| r["held"].as_u64() == Some(sockets as u64)))
}

/// One server (`kind` "presence" or "bare"): its RSS idle, after the
/// logins, and with every socket held.
async fn measure(
    opts: &Opts,
    kind: &'static str,
    sockets: usize,
    spec: &DemoSpec,
) -> Result<Value, Error> {
    let mut server = scenario_server(opts, spec, kind, "idle").await?;
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
    let fleet = connect_many(&config, &shared, Plan::each(tokens, Role::Quiet), 128).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_sockets = server.rss().unwrap_or(0);
    let held = fleet.held(&shared);
    let per = |from: u64| rss_sockets.saturating_sub(from) as f64 / held.max(1) as f64 / 1024.0;
    let row = json!({
        "server": kind,
        "presence_server": opts.server_kind(),
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
