//! Stores the scenarios own: a `redis-server` and a PostgreSQL cluster of
//! the test's own (on free ports, so they can be killed and restarted),
//! and the cleanup of what a scenario leaves in the shared services.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A store a scenario can take away and bring back.
pub(crate) trait OwnStore {
    /// What `PRESENCE_STORE_URL` says to reach it.
    fn url(&self) -> String;
    /// Takes it away at once, as a crash would.
    fn stop(&mut self);
    /// Starts it again on the same port; returns once it answers.
    fn start(&mut self);
}

/// A port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// A name no other run uses: `base`, the process id and the time.
pub(crate) fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{base}_{}_{nanos}", std::process::id())
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `redis-server` without persistence on a free port, killed on drop: a
/// restart brings it back empty.
pub(crate) struct OwnRedis {
    child: Option<Child>,
    port: u16,
}

impl OwnRedis {
    /// Starts it and waits until it listens.
    pub(crate) fn start_new() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        redis.start();
        redis
    }
}

impl OwnStore for OwnRedis {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn start(&mut self) {
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (.ci/run installs it)");
        self.child = Some(child);
        wait_listening(self.port, "redis-server");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL cluster made with `initdb` in a temporary directory, on a
/// free port; stopped and deleted on drop, even after a failure.
pub(crate) struct OwnPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl OwnPostgres {
    /// `initdb` (as the `postgres` OS user when the test runs as root,
    /// since initdb refuses root), then starts it.
    pub(crate) fn start_new() -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("presence-chaos-pg-{}", unique("c")));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let mut cluster = Self {
            bin: postgres_bin(),
            dir,
            port,
        };
        if running_as_root() {
            let chown = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&cluster.dir)
                .status()
                .expect("chown");
            assert!(chown.success(), "the postgres OS user exists");
        }
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").display().to_string()
    }

    /// Runs one of the server's programs as the user that owns the
    /// cluster; panics if it fails.
    fn run(&self, program: &str, args: &[&str]) {
        if let Err(failure) = self.try_run(program, args) {
            panic!("{failure}");
        }
    }

    /// Runs one of the server's programs as the user that owns the cluster.
    fn try_run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        let output = command
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "{} {args:?}: {}{}",
            program.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

impl OwnStore for OwnPostgres {
    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn stop(&mut self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }

    fn start(&mut self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        wait_listening(self.port, "postgres");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Stopped already when a scenario failed during the outage.
        let _ = self.try_run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest `/usr/lib/postgresql/*/bin` (Debian's layout).
fn postgres_bin() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .expect("PostgreSQL's server programs under /usr/lib/postgresql")
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL with initdb").1
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The shared PostgreSQL of the test environment.
pub(crate) fn shared_postgres_url() -> String {
    std::env::var("PRESENCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The shared Redis of the test environment.
pub(crate) fn shared_redis_url() -> String {
    std::env::var("PRESENCE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A schema of the shared PostgreSQL, dropped when this is dropped.
pub(crate) struct Schema {
    pub(crate) name: String,
    url: String,
}

impl Schema {
    /// A fresh name; the demo creates the schema.
    pub(crate) fn fresh(url: &str) -> Self {
        Self {
            name: unique("presence_chaos"),
            url: url.to_owned(),
        }
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.url)
            .args([
                "-qc",
                &format!("drop schema if exists {} cascade", self.name),
            ])
            .output();
    }
}

/// A key prefix of the shared Redis, whose keys are deleted when this is
/// dropped.
pub(crate) struct Prefix {
    pub(crate) name: String,
    url: String,
}

impl Prefix {
    /// A fresh prefix; the demo writes the keys.
    pub(crate) fn fresh(url: &str) -> Self {
        Self {
            name: unique("presence-chaos"),
            url: url.to_owned(),
        }
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let Ok(scan) = Command::new("redis-cli")
            .args(["-u", &self.url, "--scan", "--pattern"])
            .arg(format!("{}:*", self.name))
            .output()
        else {
            return;
        };
        let keys = String::from_utf8_lossy(&scan.stdout);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(100) {
            let _ = Command::new("redis-cli")
                .args(["-u", &self.url, "del"])
                .args(chunk)
                .output();
        }
    }
}
