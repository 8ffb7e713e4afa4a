//! Demo processes for the scenarios: short thresholds, a log file per
//! process (to prove no panic), and the scope's presence read over HTTP.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{Demo, demo_command};

/// The organisation every scenario's users belong to.
pub(crate) const ORG: &str = "acme";
/// How often clients heartbeat.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(500);
/// Grace period after a user's last session ends.
pub(crate) const LINGER: Duration = Duration::from_millis(300);
/// The core's default sweep interval: how often a node looks for deadlines
/// other nodes set.
pub(crate) const SWEEP: Duration = Duration::from_secs(1);

/// Each process's lease: renewed about every second (at the sweep after
/// a third of it has passed), so two seconds of scheduling delay on a busy
/// machine never take a live process for dead.
pub(crate) const NODE_LEASE: Duration = Duration::from_secs(3);

/// The thresholds every scenario runs with, for a `session_ttl`.
pub(crate) fn thresholds(session_ttl: Duration) -> Vec<(&'static str, String)> {
    let millis = |d: Duration| format!("{}ms", d.as_millis());
    vec![
        ("PRESENCE_HEARTBEAT_INTERVAL", millis(HEARTBEAT)),
        ("PRESENCE_SESSION_TTL", millis(session_ttl)),
        ("PRESENCE_LINGER", millis(LINGER)),
        ("PRESENCE_NODE_LEASE", millis(NODE_LEASE)),
    ]
}

/// A demo whose stderr goes to a file, killed on drop.
pub(crate) struct Node {
    pub(crate) demo: Demo,
    log: PathBuf,
}

impl Node {
    /// Starts a demo with `env` (and the test's secret, like every demo of
    /// the test), its stderr in a temporary file.
    pub(crate) fn start(env: &[(&str, String)]) -> Self {
        let log = std::env::temp_dir().join(format!(
            "presence-chaos-{}.log",
            crate::servers::unique("demo")
        ));
        let stderr = std::fs::File::create(&log).expect("a log file");
        let mut child = demo_command(&[])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stderr(stderr)
            .spawn()
            .expect("the demo starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the listening line");
        let Some(base) = line.trim().strip_prefix("presence-demo listening on ") else {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("the demo did not start: {line:?}\n{said}");
        };
        let base = base.to_owned();
        Self {
            demo: Demo { child, base },
            log,
        }
    }

    /// Kills the process without a word (SIGKILL).
    pub(crate) fn kill(&mut self) {
        self.demo.child.kill().expect("kill -9");
        self.demo.child.wait().expect("wait");
    }

    /// Panics if the process ended, or logged a panic.
    pub(crate) fn assert_alive_and_sane(&mut self) {
        let exited = self.demo.child.try_wait().expect("try_wait");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(exited.is_none(), "the demo died ({exited:?}):\n{log}");
        assert!(!log.contains("panicked"), "the demo panicked:\n{log}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.demo.child.kill();
        let _ = self.demo.child.wait();
        if std::thread::panicking() {
            // What the demo said is the first clue to a failure.
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!(
                "--- the demo's last log lines ({}, all in {}):\n{tail}",
                self.demo.base,
                self.log.display()
            );
            return;
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// `GET /api/presence?scope=acme` as `token`: each listed user's status,
/// or the HTTP status and the body of a refusal.
pub(crate) async fn scope_statuses(
    demo: &Demo,
    token: &str,
) -> Result<HashMap<String, String>, (u16, Value)> {
    let response = reqwest::Client::new()
        .get(format!("{}/api/presence?scope={ORG}", demo.base))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("the demo answers");
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err((status, body));
    }
    Ok(body["users"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|user| {
            let id = user["user_id"].as_str().unwrap_or_default().to_owned();
            let status = user["status"].as_str().unwrap_or_default().to_owned();
            (id, status)
        })
        .collect())
}

/// A user's status in a snapshot; a user it does not list is OFFLINE.
pub(crate) fn status_in<'a>(statuses: &'a HashMap<String, String>, user: &str) -> &'a str {
    statuses.get(user).map_or("OFFLINE", String::as_str)
}

/// Polls the scope over HTTP until every user of `want` shows its status;
/// how long that took. Refusals (503 while a store is away) are retried.
pub(crate) async fn until_shown(
    demo: &Demo,
    token: &str,
    within: Duration,
    want: &[(&str, &str)],
) -> Duration {
    let started = Instant::now();
    loop {
        let seen = scope_statuses(demo, token).await;
        let done = seen.as_ref().is_ok_and(|statuses| {
            want.iter()
                .all(|(user, status)| status_in(statuses, user) == *status)
        });
        if done {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not {want:?} within {within:?}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
