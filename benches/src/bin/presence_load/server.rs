//! The server under load: a `presence-demo` child (README.md#two-commands), a bare
//! baseline child (this binary with `--serve bare|broadcast`), or a server
//! already running at a given URL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::Error;

/// A server and, when this tool started it, its process.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    child: Option<Child>,
    pid: Option<u32>,
    /// `/proc/PID/status`, opened up front: at the open-files limit this
    /// process could not open it any more.
    status: Option<std::sync::Mutex<std::fs::File>>,
}

/// How to start `presence-demo`.
#[derive(Clone, Debug)]
pub(crate) struct DemoSpec {
    pub(crate) binary: PathBuf,
    /// Extra environment (`PRESENCE_STORE_URL`, `PRESENCE_REDIS_PREFIX`, …).
    pub(crate) env: Vec<(String, String)>,
}

impl DemoSpec {
    /// `--demo PATH`, else `presence-demo` beside this binary (both are in
    /// target/release after `cargo build --release`).
    pub(crate) fn locate(explicit: Option<&str>) -> Result<PathBuf, Error> {
        let path = match explicit {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()?
                .parent()
                .ok_or("no directory")?
                .join("presence-demo"),
        };
        if !path.exists() {
            return Err(format!(
                "{} not found: build it with `cargo build --release -p presence-demo` or pass --demo PATH",
                path.display()
            )
            .into());
        }
        Ok(path)
    }
}

impl Server {
    /// Starts `presence-demo` on a free loopback port.
    pub(crate) async fn demo(spec: &DemoSpec, label: &str) -> Result<Self, Error> {
        let mut command = Command::new(&spec.binary);
        command
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .env("PRESENCE_METRICS", "1")
            .env(
                "RUST_LOG",
                std::env::var("PRESENCE_LOAD_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
            );
        for (name, value) in &spec.env {
            command.env(name, value);
        }
        Self::start("presence", command, label).await
    }

    /// Starts the library's routes with a large socket write buffer
    /// (`--server lib`, see `libserver`), with the spec's environment.
    pub(crate) async fn lib(spec: &DemoSpec, label: &str) -> Result<Self, Error> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--serve", "lib"]);
        for (name, value) in &spec.env {
            command.env(name, value);
        }
        Self::start("lib", command, label).await
    }

    /// Starts a bare baseline server: `bare` holds sockets, `broadcast`
    /// also fans a frame out to every socket through a tokio broadcast.
    pub(crate) async fn bare(kind: &'static str, label: &str) -> Result<Self, Error> {
        let mut command = Command::new(std::env::current_exe()?);
        command.args(["--serve", kind]);
        Self::start(kind, command, label).await
    }

    /// A server this tool did not start (no RSS unless `pid` is given).
    pub(crate) fn external(addr: SocketAddr, pid: Option<u32>) -> Self {
        Self {
            addr,
            child: None,
            pid,
            status: pid.and_then(open_status),
        }
    }

    async fn start(kind: &'static str, mut command: Command, label: &str) -> Result<Self, Error> {
        let log = std::env::temp_dir().join(format!(
            "presence-load-{}-{label}-{kind}.log",
            std::process::id()
        ));
        let stderr = std::fs::File::create(&log)?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut child = command.spawn()?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some((_, rest)) = line.split_once("listening on http://") {
                    return Ok::<_, Error>(rest.trim().parse::<SocketAddr>()?);
                }
            }
            Err(format!(
                "the {kind} server exited before listening (see {})",
                log.display()
            )
            .into())
        })
        .await
        .map_err(|_| format!("the {kind} server did not start in 30 s"))??;
        // Keep draining its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        println!(
            "started {kind} server {label} at {addr}, pid {}, stderr in {}",
            pid.unwrap_or(0),
            log.display()
        );
        Ok(Self {
            addr,
            child: Some(child),
            pid,
            status: pid.and_then(open_status),
        })
    }

    /// The server's resident memory, from `/proc/PID/status`.
    pub(crate) fn rss(&self) -> Option<u64> {
        use std::io::{Read, Seek};
        let mut file = self.status.as_ref()?.lock().ok()?;
        file.rewind().ok()?;
        let mut status = String::new();
        file.read_to_string(&mut status).ok()?;
        vm_rss(&status)
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the child is still running.
    pub(crate) fn alive(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Stops the child (SIGKILL: only figures matter now) and waits for it.
    pub(crate) async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

fn open_status(pid: u32) -> Option<std::sync::Mutex<std::fs::File>> {
    std::fs::File::open(format!("/proc/{pid}/status"))
        .ok()
        .map(std::sync::Mutex::new)
}

/// VmRSS of a `/proc/PID/status` text, in bytes.
fn vm_rss(status: &str) -> Option<u64> {
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Total CPU time (user + system) a process has used so far, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / ticks_per_second())
}

fn ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux this runs on.
    100.0
}
