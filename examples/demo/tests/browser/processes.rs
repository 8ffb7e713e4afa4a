//! The processes the browser test runs, each behind a guard that ends it on
//! drop (also when the test panics): the demo, chromedriver, and the
//! browsers' throw-away profile folders.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Debian's browser and driver; never downloaded.
pub(crate) const CHROMIUM: &str = "/usr/bin/chromium";
pub(crate) const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running `presence-demo`, killed when dropped.
pub(crate) struct Demo {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
}

impl Demo {
    /// Starts the demo with `env`, its stderr into `log`, and reads the
    /// port from its one line on stdout.
    pub(crate) async fn start(env: &[(&str, &str)], log: &Path) -> Result<Self, String> {
        let stderr =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        // The test's own secret, as every demo a test starts has.
        let secret: String = (0..40).map(|_| fastrand::alphanumeric()).collect();
        let mut child = Command::new(env!("CARGO_BIN_EXE_presence-demo"))
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env_remove("PRESENCE_STORE_URL")
            .env("PRESENCE_DEMO_SECRET", secret)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting presence-demo: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .map_err(|_| "presence-demo printed nothing on stdout within 20 s".to_owned())?
            .map_err(|e| format!("reading presence-demo's stdout: {e}"))?
            .ok_or_else(|| {
                format!(
                    "presence-demo closed stdout without a line; see {}",
                    log.display()
                )
            })?;
        let base = first
            .trim()
            .strip_prefix("presence-demo listening on ")
            .ok_or_else(|| format!("unexpected first line on stdout: {first:?}"))?
            .trim_end_matches('/')
            .to_owned();
        // Keep draining stdout, so a later print can never fail on a closed pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("presence-demo stdout: {line}");
            }
        });
        Ok(Self { child, base })
    }

    /// SIGTERM, then waits for the exit; returns its status and how long
    /// the demo took.
    pub(crate) async fn terminate(
        &mut self,
        within: Duration,
    ) -> Result<(std::process::ExitStatus, Duration), String> {
        let pid = self.child.id().ok_or("the demo has already exited")?;
        let started = Instant::now();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .map_err(|e| format!("kill -TERM {pid}: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {pid} failed: {sent}"));
        }
        let status = tokio::time::timeout(within, self.child.wait())
            .await
            .map_err(|_| format!("the demo was still running {within:?} after SIGTERM"))?
            .map_err(|e| format!("waiting for the demo: {e}"))?;
        Ok((status, started.elapsed()))
    }
}

/// A running chromedriver in its own process group; the whole group (the
/// driver and any browser it left behind) is killed when dropped.
pub(crate) struct ChromeDriver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) url: String,
}

impl ChromeDriver {
    /// Starts chromedriver on a free port and waits until it is ready.
    pub(crate) async fn start(log: &Path) -> Result<Self, String> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                return Err(format!(
                    "{tool} is missing: the browser test needs Debian's Chromium \
                     (`apt-get install -y chromium chromium-driver`)"
                ));
            }
        }
        let port = free_port()?;
        let output =
            std::fs::File::create(log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let errors = output
            .try_clone()
            .map_err(|e| format!("cloning a file handle: {e}"))?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(output)
            .stderr(errors)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("starting {CHROMEDRIVER}: {e}"))?;
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        driver.wait_ready(Duration::from_secs(20)).await?;
        Ok(driver)
    }

    async fn wait_ready(&self, within: Duration) -> Result<(), String> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + within;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match http.get(format!("{}/status", self.url)).send().await {
                Ok(response) => match response.json::<serde_json::Value>().await {
                    Ok(status) if status["value"]["ready"] == true => return Ok(()),
                    Ok(status) => last = status.to_string(),
                    Err(e) => last = e.to_string(),
                },
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "chromedriver at {} not ready within {within:?}: {last}",
            self.url
        ))
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group id is the driver's pid (process_group(0)).
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("finding a free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// A fresh folder, removed with everything in it when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "presence-e2e-{label}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).map_err(|e| format!("creating {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
