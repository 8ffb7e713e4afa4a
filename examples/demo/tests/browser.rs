//! The demo in real browsers: headless Chromium driven through chromedriver
//! (WebDriver), three browsers with their own profiles and cookies, against
//! a `presence-demo` started with second-scale thresholds.
//!
//! - bob (org `acme`) is the observer: he sits on `/members` and never
//!   reloads; a recorder in his page logs every status his DOM shows for
//!   alice, with the time (`window.__aliceLog`);
//! - alice (org `acme`) logs in, navigates, idles, opens and closes tabs,
//!   picks statuses and logs out;
//! - carol (org `globex`) is logged in from the start with a recorder of
//!   every `presence` event, `snapshot` and `presence:change`, and must
//!   never learn about acme.
//!
//! Each of the eight checks prints `check N …: ok (timings)` when it
//! passes. A failed check saves every browser's screenshot to
//! `target/e2e-artifacts/checkN-<browser>.png` (the demo's stderr and
//! chromedriver's log are there too); the later checks still run, each
//! from a state it sets up itself, and the test then panics naming every
//! failed check and why.
//! A missing `/usr/bin/chromium` or `/usr/bin/chromedriver` is a failure,
//! not a skip.
//!
//! A second test (checks 9 and 10, `browser/restart.rs`) restarts the demo
//! under open tabs: with the same `PRESENCE_DEMO_SECRET` the tabs reconnect
//! by themselves and follow what happens next; with another secret the tab
//! stops and shows every dot as UNKNOWN. The two tests take turns, never
//! sharing the machine.
//!
//! A third test (checks 11 to 13, `browser/details.rs`): alice's custom
//! status "In a meeting 📅" for one hour reaches bob's row; alice on a
//! phone-sized second browser shows a mobile device; a 300-member
//! organisation shows counts on its town hall.
//!
//! Run: `cargo test -p presence-demo --test browser -- --nocapture`.

#[path = "browser/details.rs"]
mod details;
#[path = "browser/page.rs"]
mod page;
#[path = "browser/processes.rs"]
mod processes;
#[path = "browser/restart.rs"]
mod restart;
#[path = "browser/webdriver.rs"]
mod webdriver;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::page::{Browser, Logged};
use crate::processes::{ChromeDriver, Demo};

// The demo's thresholds: short enough for a quick test, far enough apart
// that every transition is told from its neighbours. Alice's idleness turns
// AWAY at 3 s and OFFLINE at 7 s; a closed tab lingers 2 s; a session whose
// socket vanished without a close lapses after 4 s (4 heartbeats of 1 s).
const HEARTBEAT: Duration = Duration::from_secs(1);
const SESSION_TTL: Duration = Duration::from_secs(4);
const AWAY_AFTER: Duration = Duration::from_secs(3);
const OFFLINE_AFTER: Duration = Duration::from_secs(7);
const LINGER: Duration = Duration::from_secs(2);
const ACTIVITY_THROTTLE: Duration = Duration::from_millis(300);

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(100);
/// What a page may take beyond a threshold before the check fails.
const SLACK: Duration = Duration::from_secs(3);
/// How long after a page is left its socket's close may take to reach the
/// server and the observer; far below `SESSION_TTL`.
const CLOSE_SLACK: Duration = Duration::from_millis(1500);
/// How much earlier than its threshold a transition may be seen: the last
/// input is timed on this side of WebDriver, a little after the browser
/// saw it.
const EARLY: Duration = Duration::from_millis(300);

type Outcome<T> = Result<T, String>;
/// A check's body: its timings on success.
type CheckBody<'a> = Pin<Box<dyn Future<Output = Outcome<String>> + 'a>>;

/// Held by each browser test for its whole run: the tests of this file run
/// one at a time, since their timings do not hold with two sets of
/// browsers sharing the machine's cores.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn presence_follows_users_across_real_browsers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let launched = Instant::now();
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("creating {}: {e}", artifacts.display()));
    let settings = [
        ("PRESENCE_HEARTBEAT_INTERVAL", HEARTBEAT),
        ("PRESENCE_SESSION_TTL", SESSION_TTL),
        ("PRESENCE_AWAY_AFTER", AWAY_AFTER),
        ("PRESENCE_OFFLINE_AFTER", OFFLINE_AFTER),
        ("PRESENCE_LINGER", LINGER),
        ("PRESENCE_ACTIVITY_THROTTLE", ACTIVITY_THROTTLE),
    ]
    .map(|(name, value)| (name, format!("{}ms", value.as_millis())));
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut demo = Demo::start(&env, &artifacts.join("demo-stderr.log"))
        .await
        .unwrap_or_else(|e| panic!("setup: starting the demo failed: {e}"));
    // Declared before the browsers, so it is dropped after them.
    let driver = ChromeDriver::start(&artifacts.join("chromedriver.log"))
        .await
        .unwrap_or_else(|e| panic!("setup: {e}"));
    let (carol, bob, alice) = tokio::try_join!(
        Browser::open("carol", &driver, &demo.base),
        Browser::open("bob", &driver, &demo.base),
        Browser::open("alice", &driver, &demo.base),
    )
    .unwrap_or_else(|e| panic!("setup: starting Chromium through chromedriver failed: {e}"));
    let world = World { bob, alice, carol };
    println!(
        "setup: the demo, chromedriver and 3 browsers up in {}",
        secs_d(launched.elapsed())
    );

    let started = Instant::now();
    let failures = world.run(&artifacts).await;
    if !failures.is_empty() {
        let list: Vec<String> = failures.iter().map(ToString::to_string).collect();
        panic!(
            "the browser test failed:\n{}\n(screenshots, the demo's stderr and chromedriver's log are in {})",
            list.join("\n"),
            artifacts.display()
        );
    }
    println!("all 8 checks passed in {}", secs_d(started.elapsed()));

    // The contract: SIGTERM closes the sockets and exits 0, browsers still
    // connected.
    match demo.terminate(Duration::from_secs(10)).await {
        Ok((status, took)) if status.success() => {
            println!("teardown: SIGTERM → exit 0 in {:.2} s", took.as_secs_f64());
        }
        Ok((status, _)) => panic!("teardown: the demo exited with {status} after SIGTERM"),
        Err(why) => panic!("teardown: {why}"),
    }
    let closing = Instant::now();
    drop(world);
    println!("teardown: browsers closed in {}", secs_d(closing.elapsed()));
}

/// Checks 9 and 10: a demo restarted under open tabs, with the same
/// `PRESENCE_DEMO_SECRET` (the tabs come back and follow later changes) and
/// with another one (the tab says it lost the connection); see
/// `browser/restart.rs`.
#[tokio::test(flavor = "multi_thread")]
async fn open_tabs_live_through_a_restart_of_the_demo() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("creating {}: {e}", artifacts.display()));
    restart::run(&artifacts).await;
}

/// Checks 11 to 13: a custom status, a phone's session and a large
/// scope's counts in real browsers; see `browser/details.rs`.
#[tokio::test(flavor = "multi_thread")]
async fn presence_data_shows_in_real_browsers() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .unwrap_or_else(|e| panic!("creating {}: {e}", artifacts.display()));
    details::run(&artifacts).await;
}

// ------------------------------------------------------------------ checks

/// Which check failed, and why.
struct Failure {
    check: u8,
    title: &'static str,
    why: String,
}

impl Failure {
    /// `setup` or `checkN`, for file names.
    fn label(&self) -> String {
        if self.check == 0 {
            "setup".to_owned()
        } else {
            format!("check{}", self.check)
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.check == 0 {
            write!(f, "setup ({}) failed: {}", self.title, self.why)
        } else {
            write!(
                f,
                "check {} {} FAILED: {}",
                self.check, self.title, self.why
            )
        }
    }
}

/// Runs one check and prints its line; `body` returns the timings to print.
async fn check(
    number: u8,
    title: &'static str,
    body: impl Future<Output = Outcome<String>>,
) -> Result<(), Failure> {
    match body.await {
        Ok(detail) if number == 0 => {
            println!("setup: {detail}");
            Ok(())
        }
        Ok(detail) => {
            println!("check {number} {title}: ok ({detail})");
            Ok(())
        }
        Err(why) => Err(Failure {
            check: number,
            title,
            why,
        }),
    }
}

/// The three browsers.
struct World {
    bob: Browser,
    alice: Browser,
    carol: Browser,
}

impl World {
    fn browsers(&self) -> [&Browser; 3] {
        [&self.bob, &self.alice, &self.carol]
    }

    /// Runs the checks in order; a failed check is reported (with
    /// screenshots) and the next ones still run, since each starts from a
    /// state it sets up itself. Returns the failures.
    async fn run(&self, artifacts: &Path) -> Vec<Failure> {
        if let Err(failure) = check(0, "carol and bob log in", self.setup()).await {
            self.screenshots(artifacts, &failure).await;
            return vec![failure];
        }
        let checks: [(u8, &str, CheckBody<'_>); 8] = [
            (
                1,
                "login → ONLINE for the observer without reload",
                Box::pin(self.login_is_seen()),
            ),
            (
                2,
                "navigation keeps ONLINE, no OFFLINE in between",
                Box::pin(self.navigation_stays_online()),
            ),
            (
                3,
                "idle → AWAY → OFFLINE → ONLINE",
                Box::pin(self.idle_then_input()),
            ),
            (
                4,
                "two tabs: close one → ONLINE, close the last → OFFLINE after the linger",
                Box::pin(self.tabs_and_linger()),
            ),
            (
                5,
                "BUSY and INVISIBLE from the picker, back to ONLINE",
                Box::pin(self.manual_statuses()),
            ),
            (
                6,
                "logout → OFFLINE at once",
                Box::pin(self.logout_is_immediate()),
            ),
            (
                7,
                "the other org never appears nor hears anything",
                Box::pin(self.other_org_is_isolated()),
            ),
            (
                8,
                "\"last seen\" for an OFFLINE user",
                Box::pin(self.last_seen_shown()),
            ),
        ];
        let mut failures = Vec::new();
        for (number, title, body) in checks {
            let outcome = check(number, title, body).await;
            if number == 1 && outcome.is_ok() {
                // The member directory as bob sees it with alice just
                // signed in: the README's picture comes from here.
                self.bob.screenshot(artifacts, "members").await;
            }
            if let Err(failure) = outcome {
                println!("{failure}");
                self.screenshots(artifacts, &failure).await;
                failures.push(failure);
                if number == 1 {
                    // Without alice logged in, nothing after means anything.
                    break;
                }
            }
        }
        failures
    }

    /// Saves every browser's screenshot for a failed check.
    async fn screenshots(&self, artifacts: &Path, failure: &Failure) {
        for browser in self.browsers() {
            browser.screenshot(artifacts, &failure.label()).await;
        }
    }

    /// Carol (globex) logs in and records everything her client hears; bob
    /// (acme) logs in, opens `/members` and records what he sees of alice.
    async fn setup(&self) -> Outcome<String> {
        let Self { bob, carol, .. } = self;
        carol.goto("/members").await?;
        let landed = carol.path().await?;
        if landed != "/login" {
            return Err(format!(
                "/members without a login should redirect to /login, landed on {landed}"
            ));
        }
        carol.login("Carol", "globex").await?;
        carol.goto("/members").await?;
        carol.wait_connected().await?;
        carol.record_everything().await?;

        bob.login("Bob", "acme").await?;
        bob.goto("/members").await?;
        bob.wait_connected().await?;
        bob.js("window.__loadedOnce = 'bob-members';", vec![])
            .await?;
        bob.record_status("alice").await?;
        Ok("carol@globex and bob@acme on /members, recorders installed".to_owned())
    }

    /// Check 1.
    async fn login_is_seen(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        let mark = bob.log_len("alice").await?;
        alice.fill_login("Alice", "acme").await?;
        let clicked = now_ms();
        alice.submit_login().await?;
        let seen = bob
            .await_status("alice", "ONLINE", SLACK, mark, clicked)
            .await?;
        let in_list = bob
            .js(
                "return document.querySelectorAll('ul#members > li.member[data-user-id=\"alice\"]').length;",
                vec![],
            )
            .await?;
        if in_list != json!(1) {
            return Err(format!(
                "alice's row should be in ul#members once, found {in_list}"
            ));
        }
        bob.assert_not_reloaded().await?;
        Ok(format!(
            "bob's /members shows alice ONLINE {} after her submit, no reload",
            secs(seen)
        ))
    }

    /// Check 2.
    async fn navigation_stays_online(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        alice.wait_connected().await?;
        let mark = bob.log_len("alice").await?;
        let origin = now_ms();
        let mut hops = Vec::new();
        for (link, path) in [
            ("a#nav-members", "/members"),
            ("a#nav-channel-general", "/channels/general"),
            ("a#nav-dashboard", "/"),
        ] {
            let start = Instant::now();
            alice.click(link).await?;
            alice.wait_for_path(path).await?;
            alice.wait_connected().await?;
            hops.push(format!("{path} {}", secs_d(start.elapsed())));
        }
        // An OFFLINE from the last page's closed socket could only come once
        // the linger is over: keep watching that long, alice at the mouse.
        keep_active(alice, LINGER + Duration::from_millis(500)).await?;
        let log = bob.status_log("alice", mark).await?;
        let shown: Vec<&str> = log.iter().filter_map(Logged::dom_status).collect();
        if shown.contains(&"OFFLINE") {
            return Err(format!(
                "bob saw alice OFFLINE while she navigated{}",
                bob.log_context("alice", mark, origin).await
            ));
        }
        let now = bob.dot_status("alice").await?;
        if now.as_deref() != Some("ONLINE") {
            return Err(format!(
                "alice should still be ONLINE, bob shows {now:?}{}",
                bob.log_context("alice", mark, origin).await
            ));
        }
        bob.assert_not_reloaded().await?;
        Ok(format!(
            "3 clicks ({}); bob's log in between: {}",
            hops.join(", "),
            if shown.is_empty() {
                "no change".to_owned()
            } else {
                shown.join(" → ")
            }
        ))
    }

    /// Check 3.
    async fn idle_then_input(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        alice.wait_connected().await?;
        // One last input, past the throttle so it is surely sent; alice
        // idles from here on.
        tokio::time::sleep(ACTIVITY_THROTTLE + POLL).await;
        let mark = bob.log_len("alice").await?;
        alice.input().await?;
        let last_input = now_ms();
        let away = bob
            .await_status("alice", "AWAY", AWAY_AFTER + SLACK, mark, last_input)
            .await?;
        let offline = bob
            .await_status("alice", "OFFLINE", OFFLINE_AFTER + SLACK, mark, last_input)
            .await?;
        let log = bob.status_log("alice", mark).await?;
        let shown: Vec<&str> = log.iter().filter_map(Logged::dom_status).collect();
        if shown != ["AWAY", "OFFLINE"] {
            return Err(format!(
                "idle alice should show AWAY then OFFLINE, bob saw {shown:?}{}",
                bob.log_context("alice", mark, last_input).await
            ));
        }
        if away < ms(AWAY_AFTER - EARLY) || offline < ms(OFFLINE_AFTER - EARLY) {
            return Err(format!(
                "too early: AWAY after {}, OFFLINE after {} (thresholds {} and {})",
                secs(away),
                secs(offline),
                secs_d(AWAY_AFTER),
                secs_d(OFFLINE_AFTER)
            ));
        }
        if alice.connection_state().await? != "open" {
            return Err("alice's socket should have stayed open while she idled".to_owned());
        }

        let mark = bob.log_len("alice").await?;
        let before = now_ms();
        alice.input().await?;
        let back = bob
            .await_status("alice", "ONLINE", SLACK, mark, before)
            .await?;
        Ok(format!(
            "AWAY after {}, OFFLINE after {}, ONLINE {} after real input",
            secs(away),
            secs(offline),
            secs(back)
        ))
    }

    /// Check 4.
    async fn tabs_and_linger(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        let wd = &alice.session;
        let first = wd.window().await?;
        let second = wd.new_tab().await?;
        wd.switch_to(&second).await?;
        alice.goto("/members").await?;
        alice.wait_connected().await?;
        wd.switch_to(&first).await?;
        let left = wd.close_window().await?;
        if left != [second.clone()] {
            return Err(format!(
                "after closing one of two tabs, open tabs are {left:?}"
            ));
        }
        wd.switch_to(&second).await?;
        let closed_one = now_ms();
        let mark = bob.log_len("alice").await?;
        // Longer than a closed tab's linger and a lost socket's TTL together;
        // alice works in the tab left, so she never turns AWAY.
        let hold = LINGER + SESSION_TTL + Duration::from_millis(1500);
        keep_active(alice, hold).await?;
        let log = bob.status_log("alice", mark).await?;
        let shown: Vec<&str> = log.iter().filter_map(Logged::dom_status).collect();
        let now = bob.dot_status("alice").await?;
        if !shown.is_empty() || now.as_deref() != Some("ONLINE") {
            return Err(format!(
                "with one of two tabs closed alice should stay ONLINE for {}, bob shows {now:?}{}",
                secs_d(hold),
                bob.log_context("alice", mark, closed_one).await
            ));
        }

        // The last tab leaves the app: its socket closes.
        let mark = bob.log_len("alice").await?;
        alice.input().await?;
        let left_at = now_ms();
        wd.goto("about:blank").await?;
        let offline = bob
            .await_status(
                "alice",
                "OFFLINE",
                LINGER + SESSION_TTL + SLACK,
                mark,
                left_at,
            )
            .await?;
        if offline < ms(LINGER) {
            return Err(format!(
                "alice turned OFFLINE {} after her last tab left, before the linger of {}",
                secs(offline),
                secs_d(LINGER)
            ));
        }
        // Leaving the page closes its socket, so OFFLINE comes when the
        // linger ends; only a socket left open (its heartbeats stopped)
        // waits for the session to lapse first.
        if offline > ms(LINGER + CLOSE_SLACK) {
            return Err(format!(
                "alice turned OFFLINE {} after her last tab left for about:blank, not when the \
                 linger ({}) ended: the server did not see the page's socket close, so the session \
                 had to lapse (session_ttl {}) before the linger began (Chromium keeps a page it \
                 leaves, with its open WebSocket, in the back/forward cache unless the page closes \
                 the socket on `pagehide`){}",
                secs(offline),
                secs_d(LINGER),
                secs_d(SESSION_TTL),
                bob.log_context("alice", mark, left_at).await
            ));
        }
        Ok(format!(
            "still ONLINE {} after closing one tab; OFFLINE {} after the last left (linger {})",
            secs_d(hold),
            secs(offline),
            secs_d(LINGER)
        ))
    }

    /// Check 5.
    async fn manual_statuses(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        let reopened = now_ms();
        let mark = bob.log_len("alice").await?;
        alice.goto("/members").await?;
        alice.wait_connected().await?;
        bob.await_status("alice", "ONLINE", SLACK, mark, reopened)
            .await?;
        let mut timings = Vec::new();
        for (pick, for_hour, shown) in [
            ("BUSY", true, "BUSY"),
            ("INVISIBLE", false, "OFFLINE"),
            ("ONLINE", false, "ONLINE"),
        ] {
            let mark = bob.log_len("alice").await?;
            let applied = now_ms();
            alice.pick_status(pick, for_hour).await?;
            let seen = bob
                .await_status("alice", shown, SLACK, mark, applied)
                .await
                .map_err(|e| format!("after alice applied {pick}: {e}"))?;
            let hour = if for_hour { " for 1 hour" } else { "" };
            timings.push(format!("{pick}{hour} → {shown} in {}", secs(seen)));
        }
        Ok(timings.join(", "))
    }

    /// Check 6.
    async fn logout_is_immediate(&self) -> Outcome<String> {
        let Self { bob, alice, .. } = self;
        alice.wait_connected().await?;
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
            .await?;
        if offline >= ms(LINGER) {
            return Err(format!(
                "logout should be OFFLINE at once; bob saw it after {} (linger {})",
                secs(offline),
                secs_d(LINGER)
            ));
        }
        alice.wait_for_path("/login").await?;
        alice.goto("/members").await?;
        let landed = alice.path().await?;
        if landed != "/login" {
            return Err(format!(
                "after logout /members should redirect to /login, landed on {landed}"
            ));
        }
        Ok(format!(
            "bob sees OFFLINE {} after the click (linger {}); /members now redirects to /login",
            secs(offline),
            secs_d(LINGER)
        ))
    }

    /// Check 7.
    async fn other_org_is_isolated(&self) -> Outcome<String> {
        let carol = &self.carol;
        let seen = carol
            .js(
                "return {
                    events: window.__events || null,
                    known: window.presence ? Array.from(window.presence.all().keys()) : null,
                    dom: Array.from(document.querySelectorAll('[data-user-id]'))
                        .map((el) => el.getAttribute('data-user-id')),
                    reloaded: window.__loadedOnce !== 'carol-members',
                };",
                vec![],
            )
            .await?;
        if seen["reloaded"] == true {
            return Err("carol's page was reloaded, the recorder is gone".to_owned());
        }
        let events = seen["events"]
            .as_array()
            .ok_or_else(|| format!("carol's recorder is missing: {seen}"))?;
        let acme = |id: &Value| id == "alice" || id == "bob";
        let mut problems = Vec::new();
        for id in seen["dom"].as_array().into_iter().flatten() {
            if acme(id) {
                problems.push(format!("carol's DOM has [data-user-id={id}]"));
            }
        }
        for id in seen["known"].as_array().into_iter().flatten() {
            if acme(id) {
                problems.push(format!("carol's client knows {id}"));
            }
        }
        let mut own = 0;
        for event in events {
            let users = event["users"].as_array();
            let mentions_acme =
                acme(&event["user_id"]) || users.is_some_and(|u| u.iter().any(acme));
            if mentions_acme {
                problems.push(format!("carol's client heard {event}"));
            }
            let kind = event["kind"].as_str().unwrap_or("");
            if kind != "known at install" && event["scope"] != "globex" {
                problems.push(format!("an entry outside the globex scope: {event}"));
            }
            if event["user_id"] == "carol" {
                own += 1;
            }
        }
        if own == 0 {
            problems.push(format!(
                "carol's recorder heard nothing of carol herself (idle → AWAY/OFFLINE), so it proves nothing: {events:?}"
            ));
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let statuses: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "presence" && e["user_id"] == "carol")
            .filter_map(|e| e["status"].as_str())
            .collect();
        Ok(format!(
            "{} entries, all globex; carol's own events {}; no alice/bob in DOM, client or log",
            events.len(),
            statuses.join(" → ")
        ))
    }

    /// Check 8.
    async fn last_seen_shown(&self) -> Outcome<String> {
        let bob = &self.bob;
        let row = bob
            .js(
                "const li = document.querySelector('li.member[data-user-id=\"alice\"]');
                 const el = li && li.querySelector('.last-seen');
                 const dot = li && li.querySelector('.status-dot');
                 return {
                     text: el ? el.textContent.trim() : null,
                     title: el ? el.getAttribute('title') : null,
                     status: dot ? dot.getAttribute('data-status') : null,
                 };",
                vec![],
            )
            .await?;
        let text = row["text"].as_str().unwrap_or("");
        if row["status"] != "OFFLINE" {
            return Err(format!("alice should be OFFLINE for bob, the row is {row}"));
        }
        if text.is_empty() || text == "never" {
            return Err(format!(
                "alice's .last-seen on bob's page should tell when she was last seen, it is {row}"
            ));
        }
        bob.assert_not_reloaded().await?;
        Ok(format!(
            "bob's row for alice reads {text:?} (title {})",
            row["title"]
        ))
    }
}

/// Real input in `who`'s page every 700 ms for `how_long`.
async fn keep_active(who: &Browser, how_long: Duration) -> Outcome<()> {
    let end = Instant::now() + how_long;
    loop {
        who.input().await?;
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        tokio::time::sleep(left.min(Duration::from_millis(700))).await;
    }
}

// ------------------------------------------------------------------- utils

/// `target/e2e-artifacts` of the workspace.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap_or_else(|| Path::new("."))
        .join("target")
        .join("e2e-artifacts")
}

/// Wall-clock milliseconds, comparable with the pages' `Date.now()`.
fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn secs(milliseconds: f64) -> String {
    format!("{:.2} s", milliseconds / 1000.0)
}

fn secs_d(duration: Duration) -> String {
    secs(ms(duration))
}
