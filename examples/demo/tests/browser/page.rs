//! One headless Chromium as the test drives it: login, navigation, real
//! input, the status picker, reading and awaiting a member's dot, and the
//! in-page recorders whose logs the checks read.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::processes::{CHROMIUM, ChromeDriver, TempDir};
use crate::webdriver::Session;
use crate::{Outcome, POLL, SLACK, secs, secs_d};

/// One headless Chromium with its own profile (so its own cookies), on one
/// page of the demo at a time.
pub(crate) struct Browser {
    name: &'static str,
    base: String,
    pub(crate) session: Session,
    /// Varies the pointer's position, so every input is a real move.
    inputs: AtomicU32,
    _profile: TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the browser before its profile folder is removed.
        self.session.quit_blocking();
    }
}

/// One status change bob's recorder logged for a user.
#[derive(Debug)]
pub(crate) struct Logged {
    /// `dom` (the dot's `data-status` changed) or `event` (the client's
    /// `presence` event).
    pub(crate) src: String,
    pub(crate) status: Option<String>,
    /// `Date.now()` in the observing page.
    pub(crate) t: f64,
    pub(crate) v: Option<i64>,
}

impl Logged {
    /// The status the dot showed (`none`: no row), for DOM entries only.
    pub(crate) fn dom_status(&self) -> Option<&str> {
        (self.src == "dom").then_some(self.status.as_deref().unwrap_or("none"))
    }
}

/// One entry of the connection recorder (`window.__connections`):
/// `connected` (with the hello's epoch), `disconnected` (with the close
/// code) or `unauthorized` (with the HTTP status the probe got).
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) kind: String,
    /// `Date.now()` in the page.
    pub(crate) t: f64,
    pub(crate) epoch: Option<String>,
    pub(crate) code: Option<i64>,
    pub(crate) status: Option<i64>,
}

impl std::fmt::Display for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.kind)?;
        if let Some(code) = self.code {
            write!(f, " {code}")?;
        }
        if let Some(status) = self.status {
            write!(f, " {status}")?;
        }
        if let Some(epoch) = &self.epoch {
            write!(f, " (epoch {epoch})")?;
        }
        Ok(())
    }
}

/// One `.status-dot` of a page, as `dots` reads it.
#[derive(Debug)]
pub(crate) struct Dot {
    /// The `data-user-id` of the element it belongs to.
    pub(crate) user: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) classes: String,
    pub(crate) title: Option<String>,
}

/// A phone's Chromium, as it names itself.
const PHONE_USER_AGENT: &str = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
     (KHTML, like Gecko) Chrome/156.0.0.0 Mobile Safari/537.36";

impl Browser {
    pub(crate) async fn open(
        name: &'static str,
        driver: &ChromeDriver,
        base: &str,
    ) -> Outcome<Self> {
        Self::open_as(name, driver, base, false).await
    }

    /// A phone-sized Chromium whose User-Agent is a phone's (the demo
    /// makes its sessions `mobile`).
    pub(crate) async fn open_phone(
        name: &'static str,
        driver: &ChromeDriver,
        base: &str,
    ) -> Outcome<Self> {
        Self::open_as(name, driver, base, true).await
    }

    async fn open_as(
        name: &'static str,
        driver: &ChromeDriver,
        base: &str,
        phone: bool,
    ) -> Outcome<Self> {
        let profile = TempDir::new(name)?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-dev-shm-usage",
            "--disable-renderer-backgrounding",
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--no-proxy-server",
            "--window-size=1280,900",
        ]
        .map(str::to_owned)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let mut options = json!({ "binary": CHROMIUM, "args": args });
        if phone {
            options["mobileEmulation"] = json!({
                "deviceMetrics": { "width": 390, "height": 844, "pixelRatio": 3.0 },
                "userAgent": PHONE_USER_AGENT,
            });
        }
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": options,
        });
        let session = Session::start(&driver.url, capabilities)
            .await
            .map_err(|e| format!("{name}: {e}"))?;
        Ok(Self {
            name,
            base: base.to_owned(),
            session,
            inputs: AtomicU32::new(0),
            _profile: profile,
        })
    }

    fn fail(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what}", self.name)
    }

    pub(crate) async fn goto(&self, path: &str) -> Outcome<()> {
        self.session
            .goto(&format!("{}{path}", self.base))
            .await
            .map_err(|e| self.fail(e))
    }

    /// The current page's path, or the whole URL off the demo.
    pub(crate) async fn path(&self) -> Outcome<String> {
        let url = self.session.current_url().await.map_err(|e| self.fail(e))?;
        Ok(match url.strip_prefix(&self.base) {
            Some("") => "/".to_owned(),
            Some(path) => path.split(['?', '#']).next().unwrap_or(path).to_owned(),
            None => url,
        })
    }

    pub(crate) async fn wait_for_path(&self, path: &str) -> Outcome<()> {
        let deadline = Instant::now() + SLACK;
        loop {
            let now = self.path().await?;
            if now == path {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.fail(format!("expected to be on {path}, still on {now}")));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub(crate) async fn js(&self, script: &str, args: Vec<Value>) -> Outcome<Value> {
        self.session
            .execute(script, args)
            .await
            .map_err(|e| self.fail(e))
    }

    /// A real click on the first element matching `css`.
    pub(crate) async fn click(&self, css: &str) -> Outcome<()> {
        let element = self.session.find(css).await.map_err(|e| self.fail(e))?;
        self.session
            .click(&element)
            .await
            .map_err(|e| self.fail(format!("clicking {css}: {e}")))
    }

    pub(crate) async fn type_into(&self, css: &str, text: &str) -> Outcome<()> {
        let element = self.session.find(css).await.map_err(|e| self.fail(e))?;
        self.session
            .clear(&element)
            .await
            .map_err(|e| self.fail(e))?;
        self.session
            .send_keys(&element, text)
            .await
            .map_err(|e| self.fail(e))
    }

    /// Fills and submits the login form; lands on the dashboard.
    pub(crate) async fn login(&self, username: &str, org: &str) -> Outcome<()> {
        self.fill_login(username, org).await?;
        self.submit_login().await
    }

    /// Opens `/login` and types the username and organisation.
    pub(crate) async fn fill_login(&self, username: &str, org: &str) -> Outcome<()> {
        self.goto("/login").await?;
        self.type_into("form#login-form input[name=username]", username)
            .await?;
        self.type_into("form#login-form input[name=org]", org).await
    }

    /// Clicks the login form's submit button; lands on the dashboard.
    pub(crate) async fn submit_login(&self) -> Outcome<()> {
        self.click("form#login-form button[type=submit]").await?;
        self.wait_for_path("/").await
    }

    /// `window.presence.state`, or `missing` without a client.
    pub(crate) async fn connection_state(&self) -> Outcome<String> {
        let state = self
            .js(
                "return window.presence ? String(window.presence.state) : 'missing';",
                vec![],
            )
            .await?;
        Ok(state.as_str().unwrap_or("?").to_owned())
    }

    /// Waits until the page's presence client has its `hello`.
    pub(crate) async fn wait_connected(&self) -> Outcome<()> {
        let deadline = Instant::now() + SLACK;
        loop {
            let state = self.connection_state().await?;
            if state == "open" {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.fail(format!(
                    "window.presence.state is {state:?}, not 'open', {} after load",
                    secs_d(SLACK)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Real input through WebDriver actions: the pointer moves over the
    /// page's body and Shift is pressed.
    pub(crate) async fn input(&self) -> Outcome<()> {
        let n = self.inputs.fetch_add(1, Ordering::Relaxed);
        let (x, y) = (300 + (n % 7) * 40, 450 + (n % 5) * 30);
        let actions = json!([
            {
                "type": "pointer",
                "id": "mouse",
                "parameters": { "pointerType": "mouse" },
                "actions": [
                    { "type": "pointerMove", "duration": 0, "origin": "viewport", "x": x, "y": y },
                    { "type": "pointerMove", "duration": 50, "origin": "viewport", "x": x + 15, "y": y + 10 },
                ],
            },
            {
                "type": "key",
                "id": "keyboard",
                "actions": [
                    { "type": "keyDown", "value": "\u{E008}" },
                    { "type": "keyUp", "value": "\u{E008}" },
                ],
            },
        ]);
        self.session
            .perform_actions(actions)
            .await
            .map_err(|e| self.fail(format!("input actions: {e}")))
    }

    /// The `data-status` of `user`'s dot in a member list, `None` without a
    /// row.
    pub(crate) async fn dot_status(&self, user: &str) -> Outcome<Option<String>> {
        let status = self
            .js(
                "const dot = document.querySelector(
                     'li.member[data-user-id=\"' + CSS.escape(arguments[0]) + '\"] .status-dot');
                 return dot ? dot.getAttribute('data-status') : null;",
                vec![json!(user)],
            )
            .await?;
        Ok(status.as_str().map(str::to_owned))
    }

    /// Polls until `user`'s dot shows `status`; returns how long it took.
    pub(crate) async fn wait_for_status(
        &self,
        user: &str,
        status: &str,
        within: Duration,
    ) -> Outcome<Duration> {
        let start = Instant::now();
        loop {
            let shown = self.dot_status(user).await?;
            if shown.as_deref() == Some(status) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(self.fail(format!(
                    "{user} shows {} after {}, expected {status}",
                    shown.as_deref().unwrap_or("no row"),
                    secs_d(within)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Installs a recorder of every status this page shows for `user`:
    /// a MutationObserver on the dot and the client's `presence` hook push
    /// into `window.__<user>Log`.
    pub(crate) async fn record_status(&self, user: &str) -> Outcome<()> {
        self.js(
            "const user = arguments[0];
             const key = '__' + user + 'Log';
             if (window[key]) return;
             const log = window[key] = [];
             const selector = 'li.member[data-user-id=\"' + CSS.escape(user) + '\"] .status-dot';
             let shown;
             const look = () => {
                 const dot = document.querySelector(selector);
                 const status = dot ? dot.getAttribute('data-status') : null;
                 if (status !== shown) {
                     shown = status;
                     log.push({ src: 'dom', status, t: Date.now() });
                 }
             };
             new MutationObserver(look).observe(document.body, {
                 subtree: true, childList: true, attributes: true, attributeFilter: ['data-status'],
             });
             look();
             window.presence.on('presence', (d) => {
                 if (d.user_id === user) log.push({ src: 'event', status: d.status, v: d.v, t: Date.now() });
             });",
            vec![json!(user)],
        )
        .await
        .map(drop)
    }

    pub(crate) async fn log_len(&self, user: &str) -> Outcome<usize> {
        let len = self
            .js(
                "const log = window['__' + arguments[0] + 'Log']; return log ? log.length : -1;",
                vec![json!(user)],
            )
            .await?;
        match len.as_i64() {
            Some(n) if n >= 0 => Ok(n as usize),
            _ => Err(self.fail(format!(
                "the recorder for {user} is gone (was the page reloaded?)"
            ))),
        }
    }

    /// The recorder's entries for `user` from index `from` on.
    pub(crate) async fn status_log(&self, user: &str, from: usize) -> Outcome<Vec<Logged>> {
        let entries = self
            .js(
                "return (window['__' + arguments[0] + 'Log'] || []).slice(arguments[1]);",
                vec![json!(user), json!(from)],
            )
            .await?;
        Ok(entries
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Logged {
                src: e["src"].as_str().unwrap_or("?").to_owned(),
                status: e["status"].as_str().map(str::to_owned),
                t: e["t"].as_f64().unwrap_or(f64::NAN),
                v: e["v"].as_i64(),
            })
            .collect())
    }

    /// The first time since `from` the DOM showed `user` as `status`.
    pub(crate) async fn first_logged(
        &self,
        user: &str,
        from: usize,
        status: &str,
    ) -> Outcome<Logged> {
        self.status_log(user, from)
            .await?
            .into_iter()
            .find(|e| e.dom_status() == Some(status))
            .ok_or_else(|| self.fail(format!("the recorder never logged {user} as {status}")))
    }

    /// The recorder's entries since `from`, timed from `origin` (ms), to
    /// append to a failure.
    pub(crate) async fn log_context(&self, user: &str, from: usize, origin: f64) -> String {
        match self.status_log(user, from).await {
            Ok(log) => {
                let entries: Vec<String> = log
                    .iter()
                    .map(|e| {
                        let v = e.v.map_or(String::new(), |v| format!(" v{v}"));
                        let status = e.status.as_deref().unwrap_or("no row");
                        format!("+{} {} {status}{v}", secs(e.t - origin), e.src)
                    })
                    .collect();
                format!(
                    "\n  {}'s log of {user}: [{}]",
                    self.name,
                    entries.join(", ")
                )
            }
            Err(e) => format!("\n  (no log: {e})"),
        }
    }

    /// Waits until `user` shows `status`, and returns the milliseconds from
    /// `origin` to the first time the recorder logged it since `mark`.
    /// A failure carries the log.
    pub(crate) async fn await_status(
        &self,
        user: &str,
        status: &str,
        within: Duration,
        mark: usize,
        origin: f64,
    ) -> Outcome<f64> {
        let logged = match self.wait_for_status(user, status, within).await {
            Ok(_) => self.first_logged(user, mark, status).await,
            Err(e) => Err(e),
        };
        match logged {
            Ok(entry) => Ok(entry.t - origin),
            Err(e) => Err(e + &self.log_context(user, mark, origin).await),
        }
    }

    /// Fails if the page was reloaded since setup marked it.
    pub(crate) async fn assert_not_reloaded(&self) -> Outcome<()> {
        let marker = self
            .js("return window.__loadedOnce || null;", vec![])
            .await?;
        if marker.is_null() {
            return Err(self.fail("the page was reloaded (its marker is gone)"));
        }
        Ok(())
    }

    /// Records everything the page's client hears: `presence` events,
    /// snapshots and `presence:change`, into `window.__events`.
    pub(crate) async fn record_everything(&self) -> Outcome<()> {
        self.js(
            "if (window.__events) return;
             window.__loadedOnce = 'carol-members';
             const log = window.__events = [];
             const p = window.presence;
             const scope = (s) => (s === undefined ? null : s);
             p.on('presence', (d) => log.push({
                 kind: 'presence', user_id: d.user_id, status: d.status, scope: scope(d.scope), t: Date.now(),
             }));
             p.on('snapshot', (s) => log.push({
                 kind: 'snapshot', scope: scope(s.scope), users: s.users.map((u) => u.user_id), t: Date.now(),
             }));
             document.addEventListener('presence:change', (e) => log.push({
                 kind: 'presence:change', user_id: e.detail.user_id, status: e.detail.status,
                 scope: scope(e.detail.scope), t: Date.now(),
             }));
             log.push({ kind: 'known at install', users: Array.from(p.all().keys()) });",
            vec![],
        )
        .await
        .map(drop)
    }

    /// Picks `status` in the header's picker (real clicks), sets "for 1
    /// hour" to `for_hour`, and applies.
    pub(crate) async fn pick_status(&self, status: &str, for_hour: bool) -> Outcome<()> {
        self.click(&format!("select#status-picker option[value=\"{status}\"]"))
            .await?;
        let checked = self
            .js(
                "return document.getElementById('status-for-hour').checked;",
                vec![],
            )
            .await?;
        if checked != json!(for_hour) {
            self.click("input#status-for-hour").await?;
        }
        let state = self
            .js(
                "return [document.getElementById('status-picker').value,
                         document.getElementById('status-for-hour').checked];",
                vec![],
            )
            .await?;
        if state != json!([status, for_hour]) {
            return Err(self.fail(format!(
                "the picker shows {state} after picking {status} (for 1 hour: {for_hour})"
            )));
        }
        self.click("button#status-apply").await
    }

    /// Polls until `window.presence.state` is `state`; returns how long it
    /// took.
    pub(crate) async fn wait_for_state(&self, state: &str, within: Duration) -> Outcome<Duration> {
        let start = Instant::now();
        loop {
            let now = self.connection_state().await?;
            if now == state {
                return Ok(start.elapsed());
            }
            if start.elapsed() > within {
                return Err(self.fail(format!(
                    "window.presence.state is {now:?}, not {state:?}, after {}",
                    secs_d(within)
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Installs a recorder of the client's connection events into
    /// `window.__connections`, and asks the HTTP snapshot of `scope` for the
    /// store's epoch now (`epoch_at_install` reads it), since the hello that
    /// carried it came before the recorder.
    pub(crate) async fn record_connection(&self, scope: &str) -> Outcome<()> {
        self.js(
            "if (window.__connections) return;
             const log = window.__connections = [];
             const p = window.presence;
             p.on('connected', (h) => log.push({ kind: 'connected', epoch: h.epoch, t: Date.now() }));
             p.on('disconnected', (d) => log.push({ kind: 'disconnected', code: d.code, t: Date.now() }));
             p.on('unauthorized', (d) => log.push({ kind: 'unauthorized', status: d.status, t: Date.now() }));
             fetch('/api/presence?scope=' + encodeURIComponent(arguments[0]), { cache: 'no-store' })
                 .then((r) => (r.ok ? r.json() : Promise.reject(new Error('HTTP ' + r.status))))
                 .then((s) => { window.__epochAtInstall = { epoch: String(s.epoch) }; },
                       (e) => { window.__epochAtInstall = { error: String(e) }; });",
            vec![json!(scope)],
        )
        .await
        .map(drop)
    }

    /// The store's epoch when `record_connection` ran.
    pub(crate) async fn epoch_at_install(&self) -> Outcome<String> {
        let deadline = Instant::now() + SLACK;
        loop {
            let answer = self
                .js("return window.__epochAtInstall || null;", vec![])
                .await?;
            if let Some(epoch) = answer["epoch"].as_str() {
                return Ok(epoch.to_owned());
            }
            if let Some(error) = answer["error"].as_str() {
                return Err(self.fail(format!("GET /api/presence for the epoch: {error}")));
            }
            if Instant::now() > deadline {
                return Err(self.fail("GET /api/presence for the epoch never answered"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The connection recorder's entries from index `from` on.
    pub(crate) async fn connection_log(&self, from: usize) -> Outcome<Vec<Connection>> {
        let entries = self
            .js(
                "const log = window.__connections;
                 return log ? log.slice(arguments[0]) : null;",
                vec![json!(from)],
            )
            .await?;
        let entries = entries
            .as_array()
            .ok_or_else(|| self.fail("the connection recorder is gone (was the page reloaded?)"))?;
        Ok(entries
            .iter()
            .map(|e| Connection {
                kind: e["kind"].as_str().unwrap_or("?").to_owned(),
                t: e["t"].as_f64().unwrap_or(f64::NAN),
                epoch: e["epoch"].as_str().map(str::to_owned),
                code: e["code"].as_i64(),
                status: e["status"].as_i64(),
            })
            .collect())
    }

    /// Polls until the connection recorder logged a `kind` entry since
    /// `from`; returns every entry since `from`. A failure carries them,
    /// timed from `origin` (ms).
    pub(crate) async fn wait_for_connection(
        &self,
        kind: &str,
        from: usize,
        within: Duration,
        origin: f64,
    ) -> Outcome<Vec<Connection>> {
        let start = Instant::now();
        loop {
            let log = self.connection_log(from).await?;
            if log.iter().any(|e| e.kind == kind) {
                return Ok(log);
            }
            if start.elapsed() > within {
                let entries: Vec<String> = log
                    .iter()
                    .map(|e| format!("+{} {e}", secs(e.t - origin)))
                    .collect();
                let state = self.connection_state().await?;
                return Err(self.fail(format!(
                    "no {kind:?} from the client within {} (state {state:?}); its connection log: [{}]",
                    secs_d(within),
                    entries.join(", ")
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every `.status-dot` of the page.
    pub(crate) async fn dots(&self) -> Outcome<Vec<Dot>> {
        let dots = self
            .js(
                "return Array.from(document.querySelectorAll('.status-dot')).map((dot) => {
                     const host = dot.closest('[data-user-id]');
                     return {
                         user: host ? host.getAttribute('data-user-id') : null,
                         status: dot.getAttribute('data-status'),
                         classes: dot.className,
                         title: dot.getAttribute('title'),
                     };
                 });",
                vec![],
            )
            .await?;
        Ok(dots
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| Dot {
                user: d["user"].as_str().map(str::to_owned),
                status: d["status"].as_str().map(str::to_owned),
                classes: d["classes"].as_str().unwrap_or("").to_owned(),
                title: d["title"].as_str().map(str::to_owned),
            })
            .collect())
    }

    /// Saves a PNG of the current window as `<label>-<name>.png`.
    pub(crate) async fn screenshot(&self, dir: &Path, label: &str) {
        let path = dir.join(format!("{label}-{}.png", self.name));
        match self.session.screenshot().await {
            Ok(png) => match std::fs::write(&path, png) {
                Ok(()) => eprintln!("screenshot: {}", path.display()),
                Err(e) => eprintln!("screenshot {}: {e}", path.display()),
            },
            Err(e) => eprintln!("screenshot of {}: {e}", self.name),
        }
    }
}
