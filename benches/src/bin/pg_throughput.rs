//! P4 of issue 7 and the Postgres store's bench: logical heartbeats absorbed
//! by `PgStore` (answered in memory, coalesced into one statement per flush)
//! and the rows that reach the table, beside `pgbench` running a single-row
//! `UPDATE` script against the same server with the same client count, in
//! the same run.
//!
//! `cargo run --release -p presence-benches --bin pg-throughput [-- URL]`
//! (default postgres://postgres@127.0.0.1:5432/test; needs `pgbench` and
//! `psql` on the PATH; works in a schema of its own and drops it).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use chrono::{DateTime, TimeDelta, Utc};
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{NodeId, PresenceConfig, SessionId, UserId};
use presence_sqlx::{PgConfig, PgStore};

const SESSIONS: usize = 10_000;
const ROUNDS: usize = 10;
/// Heartbeats of each session between two flushes (a 1 s flush and a
/// client beating every 200 ms, or five tabs).
const BEATS_PER_FLUSH: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("presence_bench_{}", std::process::id());
    let store = PgStore::connect(PgConfig::new(url.as_str()).schema(schema.as_str())).await?;
    let config = PresenceConfig::default();
    let node = NodeId::new("bench");
    let t0: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).ok_or("time")?;
    let keys: Vec<(UserId, SessionId)> = (0..SESSIONS)
        .map(|i| {
            (
                UserId::from(format!("u{i}")),
                SessionId::from(format!("s{i}")),
            )
        })
        .collect();
    let mut opening = Vec::new();
    for chunk in keys.chunks(SESSIONS / 16) {
        let (store, node, chunk) = (store.clone(), node.clone(), chunk.to_vec());
        opening.push(tokio::spawn(async move {
            for (user, session) in &chunk {
                let op = open(session);
                let update = Update {
                    user,
                    op: &op,
                    now: t0,
                    node: &node,
                    config: &config,
                    keep_change: false,
                };
                store.apply(update).await.expect("open");
            }
        }));
    }
    for task in opening {
        task.await?;
    }

    let started = Instant::now();
    let mut rows = 0;
    for round in 1..=ROUNDS {
        for beat in 0..BEATS_PER_FLUSH {
            let now = t0 + TimeDelta::milliseconds((round * 1000 + beat * 200) as i64);
            for (user, session) in &keys {
                store.heartbeat(user, session, now, &config)?;
            }
        }
        rows += store.flush_heartbeats().await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let logical = (SESSIONS * ROUNDS * BEATS_PER_FLUSH) as f64 / elapsed;
    let written = rows as f64 / elapsed;

    let updates = pgbench(&url, &schema)?;
    let _ = Command::new("psql")
        .args([
            url.as_str(),
            "-qc",
            &format!("drop schema if exists {schema} cascade"),
        ])
        .output();
    println!(
        "logical heartbeats absorbed by PgStore: {logical:>10.0}/s  ({SESSIONS} sessions, {BEATS_PER_FLUSH} beats each per flush, 1 writer)"
    );
    println!("rows written by its flushes:           {written:>10.0}/s");
    println!("pgbench single-row UPDATE, 1 client:   {updates:>10.0}/s");
    println!(
        "ratio heartbeats / pgbench updates: {:.1}x",
        logical / updates
    );
    println!(
        "ratio rows written / pgbench updates: {:.1}x",
        written / updates
    );
    Ok(())
}

fn open(session: &SessionId) -> UserOp {
    UserOp::Open(NewSession {
        id: session.clone(),
        login: "login".into(),
        node: NodeId::new("bench"),
        scopes: vec!["org".into()],
        metadata: BTreeMap::new(),
        liveness: Default::default(),
        kind: None,
    })
}

/// Single-row UPDATEs per second through `pgbench`, one client, on a table
/// of `SESSIONS` rows in the bench's schema.
fn pgbench(url: &str, schema: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let setup = format!(
        "create table {schema}.pgbench_hb (id int primary key, hb bigint not null); \
         insert into {schema}.pgbench_hb select i, 0 from generate_series(1, {SESSIONS}) i;"
    );
    let status = Command::new("psql").args([url, "-qc", &setup]).status()?;
    if !status.success() {
        return Err("creating the pgbench table failed".into());
    }
    let script = std::env::temp_dir().join(format!("{schema}.sql"));
    std::fs::write(
        &script,
        format!(
            "\\set id random(1, {SESSIONS})\nUPDATE {schema}.pgbench_hb SET hb = hb + 1 WHERE id = :id;\n"
        ),
    )?;
    let output = Command::new("pgbench")
        .args(["-n", "-c", "1", "-j", "1", "-T", "5", "-f"])
        .arg(&script)
        .arg(url)
        .output()
        .map_err(|e| format!("pgbench is needed on the PATH: {e}"))?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    let tps = text
        .lines()
        .find_map(|line| line.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("unexpected pgbench output: {text}"))?
        .parse::<f64>()?;
    Ok(tps)
}
