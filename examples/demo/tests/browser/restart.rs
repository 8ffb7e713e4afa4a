//! The demo restarted under open tabs: bob sits on `/members` and alice on
//! hers, neither reloads, and the demo process is stopped (SIGTERM) and
//! started again on the same address, on a new memory store.
//!
//! - check 9, the same `PRESENCE_DEMO_SECRET`: both tabs reconnect by
//!   themselves (closed with 1001, then the client's jittered backoff) and
//!   get a hello of the new store's epoch; bob shows alice ONLINE, then
//!   follows her to BUSY (the picker) and OFFLINE (logout). Before the
//!   restart alice went BUSY and back, so bob's tab held versions above
//!   the ones the new store starts again from: a client that kept them
//!   dropped her changes as stale and froze.
//! - check 10, another secret: bob's login is unknown to the restarted
//!   demo, so its socket is refused (401); the client stops, its state is
//!   `unauthorized`, and every dot on the page shows UNKNOWN, titled with
//!   the lost connection.
//!
//! Failed checks save screenshots as `target/e2e-artifacts/checkN-*.png`
//! beside `restart-demo-N-stderr.log` (one per run of the demo) and
//! `restart-chromedriver.log`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::page::{Browser, Connection, Dot};
use crate::processes::{ChromeDriver, Demo};
use crate::{Failure, Outcome, SLACK, check, ms, now_ms, secs, secs_d};

// Thresholds as short as the other test's where the checks wait on them
// (a logout's OFFLINE, a session lapsing); idleness far beyond this test's
// length, so every status bob sees comes from what alice does, or from the
// restart.
const HEARTBEAT: Duration = Duration::from_secs(1);
const SESSION_TTL: Duration = Duration::from_secs(4);
const AWAY_AFTER: Duration = Duration::from_secs(120);
const OFFLINE_AFTER: Duration = Duration::from_secs(240);
const LINGER: Duration = Duration::from_secs(2);
const ACTIVITY_THROTTLE: Duration = Duration::from_millis(300);

/// Signs the logins of the first two runs of the demo (at least 16 bytes).
const SECRET: &str = "the restart test's login secret";
/// Signs the logins of the third run: the tabs' cookies are unknown to it.
const OTHER_SECRET: &str = "another secret, the tabs never saw it";

/// The ceiling of presence.js's first retry after a 1001 (server going
/// away): base 500 ms · 2^4, the delay uniform below it.
const FIRST_RETRY: Duration = Duration::from_secs(8);
/// The ceiling of the retry after one that found nothing listening (the
/// demo between its two runs): 500 ms · 2^5.
const NEXT_RETRY: Duration = Duration::from_secs(16);

/// Runs the restart checks; panics naming every failed one.
pub(crate) async fn run(artifacts: &Path) {
    let launched = Instant::now();
    let mut stage = Stage::start(artifacts)
        .await
        .unwrap_or_else(|e| panic!("setup: {e}"));
    println!(
        "restart setup: the demo, chromedriver and 2 browsers up in {}",
        secs_d(launched.elapsed())
    );
    if let Err(why) = stage.setup().await {
        stage.screenshots("restart-setup").await;
        panic!(
            "restart setup failed: {why}\n(screenshots and logs are in {})",
            artifacts.display()
        );
    }

    let started = Instant::now();
    let mut failures: Vec<Failure> = Vec::new();
    let outcome = check(
        9,
        "restart, same secret: the tabs reconnect and follow alice (new epoch, low versions)",
        stage.same_secret(),
    )
    .await;
    stage.note(outcome, &mut failures).await;
    let outcome = check(
        10,
        "restart, another secret: the tab stops and every dot shows UNKNOWN",
        stage.other_secret(),
    )
    .await;
    stage.note(outcome, &mut failures).await;
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
        panic!(
            "the restart test failed:\n{}\n(screenshots, the demo's stderr and chromedriver's log are in {})",
            list.join("\n"),
            artifacts.display()
        );
    }
    println!(
        "both restart checks passed in {}",
        secs_d(started.elapsed())
    );

    match stage.demo.terminate(Duration::from_secs(10)).await {
        Ok((status, took)) if status.success() => {
            println!("teardown: SIGTERM → exit 0 in {}", secs_d(took));
        }
        Ok((status, _)) => panic!("teardown: the demo exited with {status} after SIGTERM"),
        Err(why) => panic!("teardown: {why}"),
    }
}

/// A stop and a start of the demo.
struct Restart {
    /// When SIGTERM was sent (wall-clock ms, as the pages' `Date.now()`).
    at: f64,
    /// From SIGTERM to the old process's exit.
    stopping: Duration,
    /// From SIGTERM until the new process listened.
    down: Duration,
}

impl Restart {
    /// How long a tab may take to come back: its first retry, or, when
    /// that one came while nothing listened, the next one.
    fn deadline(&self) -> Duration {
        FIRST_RETRY.max(self.down + NEXT_RETRY) + SLACK
    }
}

/// The demo, its address, and the two browsers.
struct Stage {
    // Dropped in this order: the browsers, then their driver.
    bob: Browser,
    alice: Browser,
    _driver: ChromeDriver,
    demo: Demo,
    /// `127.0.0.1:PORT`, the same for every run of the demo.
    listen: String,
    artifacts: PathBuf,
    /// How many times the demo was started.
    runs: u32,
}

impl Stage {
    async fn start(artifacts: &Path) -> Outcome<Self> {
        let demo = start_demo(artifacts, 1, "127.0.0.1:0", SECRET).await?;
        let listen = demo
            .base
            .strip_prefix("http://")
            .ok_or_else(|| format!("the demo's address is {}", demo.base))?
            .to_owned();
        let driver = ChromeDriver::start(&artifacts.join("restart-chromedriver.log")).await?;
        let (bob, alice) = tokio::try_join!(
            Browser::open("bob", &driver, &demo.base),
            Browser::open("alice", &driver, &demo.base),
        )
        .map_err(|e| format!("starting Chromium through chromedriver failed: {e}"))?;
        Ok(Self {
            bob,
            alice,
            _driver: driver,
            demo,
            listen,
            artifacts: artifacts.to_owned(),
            runs: 1,
        })
    }

    /// A failed check is printed and its screenshots taken at once (the
    /// next check changes the pages).
    async fn note(&self, outcome: Result<(), Failure>, failures: &mut Vec<Failure>) {
        if let Err(failure) = outcome {
            println!("{failure}");
            self.screenshots(&failure.label()).await;
            failures.push(failure);
        }
    }

    async fn screenshots(&self, label: &str) {
        for browser in [&self.bob, &self.alice] {
            browser.screenshot(&self.artifacts, label).await;
        }
    }

    /// Bob on `/members`, alice signed in on hers, both recorded; alice
    /// goes BUSY and back, so bob's tab holds her versions above 1.
    async fn setup(&self) -> Outcome<()> {
        let Self { bob, alice, .. } = self;
        bob.login("Bob", "acme").await?;
        bob.goto("/members").await?;
        bob.wait_connected().await?;
        bob.js("window.__loadedOnce = 'bob-members';", vec![])
            .await?;
        bob.record_status("alice").await?;
        bob.record_connection("acme").await?;

        alice.login("Alice", "acme").await?;
        alice.goto("/members").await?;
        alice.wait_connected().await?;
        alice
            .js("window.__loadedOnce = 'alice-members';", vec![])
            .await?;
        alice.record_connection("acme").await?;
        bob.wait_for_status("alice", "ONLINE", SLACK).await?;
        for (pick, shown) in [("BUSY", "BUSY"), ("ONLINE", "ONLINE")] {
            alice.pick_status(pick, false).await?;
            bob.wait_for_status("alice", shown, SLACK)
                .await
                .map_err(|e| format!("after alice applied {pick}: {e}"))?;
        }
        let held = version_of(bob, "alice").await?;
        println!(
            "restart setup: bob on /members sees alice ONLINE, holding her version {}",
            held.map_or("none".to_owned(), |v| v.to_string())
        );
        Ok(())
    }

    /// SIGTERM (exit 0 expected), then the demo again on the same address
    /// with `secret`.
    async fn restart(&mut self, secret: &str) -> Outcome<Restart> {
        let at = now_ms();
        let started = Instant::now();
        let (status, stopping) = self.demo.terminate(Duration::from_secs(10)).await?;
        if !status.success() {
            return Err(format!("the demo exited with {status} after SIGTERM"));
        }
        self.runs += 1;
        self.demo = start_demo(&self.artifacts, self.runs, &self.listen, secret)
            .await
            .map_err(|e| format!("starting the demo again on {}: {e}", self.listen))?;
        Ok(Restart {
            at,
            stopping,
            down: started.elapsed(),
        })
    }

    /// Check 9.
    async fn same_secret(&mut self) -> Outcome<String> {
        let held = version_of(&self.bob, "alice")
            .await?
            .ok_or("bob's client knows nothing of alice before the restart")?;
        let epoch = self.bob.epoch_at_install().await?;
        let bob_mark = self.bob.connection_log(0).await?.len();
        let alice_mark = self.alice.connection_log(0).await?.len();
        let status_mark = self.bob.log_len("alice").await?;

        let restart = self.restart(SECRET).await?;
        let within = restart.deadline();
        let Self { bob, alice, .. } = &*self;
        let (bob_log, alice_log) = tokio::try_join!(
            bob.wait_for_connection("connected", bob_mark, within, restart.at),
            alice.wait_for_connection("connected", alice_mark, within, restart.at),
        )?;
        let mut back = Vec::new();
        for (who, log) in [("bob", &bob_log), ("alice", &alice_log)] {
            back.push(came_back(who, log, &epoch, restart.at)?);
        }
        for who in [bob, alice] {
            who.wait_connected().await?;
            who.assert_not_reloaded().await?;
        }
        // Alice's new session, whichever tab came back first.
        if let Err(e) = bob.wait_for_status("alice", "ONLINE", SLACK).await {
            return Err(e + &bob.log_context("alice", status_mark, restart.at).await);
        }
        let across: Vec<String> = bob
            .status_log("alice", status_mark)
            .await?
            .iter()
            .filter_map(|e| e.dom_status().map(str::to_owned))
            .collect();

        let mut changes = Vec::new();
        let mark = bob.log_len("alice").await?;
        let applied = now_ms();
        alice.pick_status("BUSY", false).await?;
        let busy = bob
            .await_status("alice", "BUSY", SLACK, mark, applied)
            .await
            .map_err(|e| format!("after alice applied BUSY: {e}"))?;
        let v = event_version(bob, mark, "BUSY").await?;
        if v > held {
            return Err(format!(
                "alice's BUSY came with v{v}, above the v{held} bob's tab held before the \
                 restart: the check no longer proves that a new epoch's low versions are taken"
            ));
        }
        changes.push(format!("BUSY v{v} in {}", secs(busy)));

        let mark = bob.log_len("alice").await?;
        let clicked = now_ms();
        alice.click("button#logout").await?;
        let offline = bob
            .await_status(
                "alice",
                "OFFLINE",
                LINGER + SESSION_TTL + SLACK,
                mark,
                clicked,
            )
            .await
            .map_err(|e| format!("after alice logged out: {e}"))?;
        if offline >= ms(LINGER) {
            return Err(format!(
                "a logout should be OFFLINE at once; bob saw it after {} (linger {})",
                secs(offline),
                secs_d(LINGER)
            ));
        }
        let v = event_version(bob, mark, "OFFLINE").await?;
        changes.push(format!("logout → OFFLINE v{v} in {}", secs(offline)));
        alice.wait_for_path("/login").await?;
        bob.assert_not_reloaded().await?;
        Ok(format!(
            "demo stopped in {}, down {}; {} (deadline {}); bob showed alice {} across it; \
             then (bob held v{held}) {}",
            secs_d(restart.stopping),
            secs_d(restart.down),
            back.join(", "),
            secs_d(within),
            if across.is_empty() {
                "no change".to_owned()
            } else {
                across.join(" → ")
            },
            changes.join(", ")
        ))
    }

    /// Check 10.
    async fn other_secret(&mut self) -> Outcome<String> {
        // From check 9 (or its last restart) bob's tab is connected.
        self.bob
            .wait_for_state("open", FIRST_RETRY + NEXT_RETRY + SLACK)
            .await?;
        let mark = self.bob.connection_log(0).await?.len();

        let restart = self.restart(OTHER_SECRET).await?;
        let within = restart.deadline();
        let bob = &self.bob;
        let log = bob
            .wait_for_connection("unauthorized", mark, within, restart.at)
            .await?;
        let refused = log
            .iter()
            .find(|e| e.kind == "unauthorized")
            .ok_or("no unauthorized entry")?;
        let timeline: Vec<String> = log
            .iter()
            .map(|e| format!("+{} {e}", secs(e.t - restart.at)))
            .collect();
        let mut problems = Vec::new();
        if refused.status != Some(401) {
            problems.push(format!(
                "the refusal's status is {:?}, not 401",
                refused.status
            ));
        }
        if log.iter().any(|e| e.kind == "connected") {
            problems.push("the client got a hello from a demo that does not know its login".into());
        }
        let state = bob.connection_state().await?;
        if state != "unauthorized" {
            problems.push(format!("window.presence.state is {state:?}"));
        }
        let dots = bob.dots().await?;
        let users: Vec<&str> = dots.iter().filter_map(|d| d.user.as_deref()).collect();
        for user in ["bob", "alice"] {
            if !users.contains(&user) {
                problems.push(format!("bob's page has no dot for {user}: {dots:?}"));
            }
        }
        for dot in &dots {
            if !unknown(dot) {
                problems.push(format!("a dot not shown as a lost connection: {dot:?}"));
            }
        }
        bob.assert_not_reloaded().await?;
        // Stopped for good: nothing after the refusal.
        let after = bob.connection_log(mark + log.len()).await?;
        if !after.is_empty() {
            problems.push(format!(
                "the client went on after the refusal: {}",
                after
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if !problems.is_empty() {
            return Err(format!(
                "{} (connection log since SIGTERM: [{}])",
                problems.join("; "),
                timeline.join(", ")
            ));
        }
        Ok(format!(
            "demo down {}; bob's connection log since SIGTERM: [{}] (deadline {}); \
             all {} dots UNKNOWN",
            secs_d(restart.down),
            timeline.join(", "),
            secs_d(within),
            dots.len()
        ))
    }
}

/// Starts run `run` of the demo on `listen` with `secret`.
async fn start_demo(artifacts: &Path, run: u32, listen: &str, secret: &str) -> Outcome<Demo> {
    let settings = [
        ("PRESENCE_HEARTBEAT_INTERVAL", HEARTBEAT),
        ("PRESENCE_SESSION_TTL", SESSION_TTL),
        ("PRESENCE_AWAY_AFTER", AWAY_AFTER),
        ("PRESENCE_OFFLINE_AFTER", OFFLINE_AFTER),
        ("PRESENCE_LINGER", LINGER),
        ("PRESENCE_ACTIVITY_THROTTLE", ACTIVITY_THROTTLE),
    ]
    .map(|(name, value)| (name, format!("{}ms", value.as_millis())));
    let mut env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend([
        ("LISTEN_ADDR", listen),
        ("PRESENCE_STORE_URL", "memory://"),
        ("PRESENCE_DEMO_SECRET", secret),
    ]);
    let log = artifacts.join(format!("restart-demo-{run}-stderr.log"));
    Demo::start(&env, &log).await
}

/// What a tab's connection log since SIGTERM must say: closed with 1001,
/// then a hello of another epoch. Returns how long it took.
fn came_back(who: &str, log: &[Connection], epoch: &str, origin: f64) -> Outcome<String> {
    let timeline = || {
        log.iter()
            .map(|e| format!("+{} {e}", secs(e.t - origin)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let closed = log.first().filter(|e| e.kind == "disconnected");
    if closed.and_then(|e| e.code) != Some(1001) {
        return Err(format!(
            "{who}'s socket should first be closed with 1001 (going away): [{}]",
            timeline()
        ));
    }
    let Some(hello) = log.iter().find(|e| e.kind == "connected") else {
        return Err(format!("{who} never reconnected: [{}]", timeline()));
    };
    if hello.epoch.as_deref() == Some(epoch) || hello.epoch.is_none() {
        return Err(format!(
            "{who}'s hello after the restart carries epoch {:?}, the old store's was {epoch:?}",
            hello.epoch
        ));
    }
    let attempts = log.iter().filter(|e| e.kind == "disconnected").count();
    Ok(format!(
        "{who} back {} after SIGTERM ({} close{})",
        secs(hello.t - origin),
        attempts,
        if attempts == 1 { "" } else { "s" }
    ))
}

/// The version `observer`'s client holds for `user`.
async fn version_of(observer: &Browser, user: &str) -> Outcome<Option<i64>> {
    let v = observer
        .js(
            "const entry = window.presence.get(arguments[0]); return entry ? entry.v : null;",
            vec![json!(user)],
        )
        .await?;
    Ok(v.as_i64())
}

/// The version of the first `presence` event bob's recorder logged for
/// alice with `status` since `mark`.
async fn event_version(bob: &Browser, mark: usize, status: &str) -> Outcome<i64> {
    bob.status_log("alice", mark)
        .await?
        .iter()
        .find(|e| e.src == "event" && e.status.as_deref() == Some(status))
        .and_then(|e| e.v)
        .ok_or_else(|| format!("bob's client emitted no {status} event with a version for alice"))
}

/// A dot as the client paints it once the login is refused.
fn unknown(dot: &Dot) -> bool {
    dot.status.as_deref() == Some("UNKNOWN")
        && dot
            .classes
            .split_whitespace()
            .any(|c| c == "status-unknown")
        && dot
            .title
            .as_deref()
            .is_some_and(|t| t.to_lowercase().contains("connection"))
}
