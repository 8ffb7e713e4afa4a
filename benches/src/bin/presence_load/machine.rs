//! The machine a run is on and what its processes use: cores, memory, the
//! open-files limit, open descriptors and CPU seconds.

use crate::server::{self, Server};

/// Raises the soft open-files limit to the hard one; returns (soft, hard).
pub(crate) fn raise_fd_limit() -> (u64, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    rlimit::Resource::NOFILE.get().unwrap_or((0, 0))
}

/// The first line of every run: when, and on what.
pub(crate) fn header((soft, hard): (u64, u64)) -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!("{:.1} GiB", kib as f64 / 1048576.0)
        });
    format!(
        "presence-load {}: {cores} cores, {mem} RAM, open files {soft} (hard {hard}); \
         the clients and the server share these cores",
        chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
    )
}

/// Warns when `needed` sockets will not fit under the open-files limit.
pub(crate) fn fd_warning(what: &str, needed: usize) {
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((0, 0));
    if needed as u64 + 64 > soft {
        println!(
            "warning: {what} needs ~{needed} open files, the limit is {soft}: \
             the run will stop at the limit (reported as such below)"
        );
    }
}

/// How many descriptors process `pid` has open.
pub(crate) fn fd_count(pid: Option<u32>) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{}/fd", pid?))
        .ok()
        .map(Iterator::count)
}

fn own_cpu() -> f64 {
    server::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// The CPU seconds the servers (those whose process is known) use
/// together.
fn servers_cpu(servers: &[&Server]) -> f64 {
    servers
        .iter()
        .filter_map(|s| s.pid().and_then(server::cpu_seconds))
        .fold(0.0, |sum, seconds| sum + seconds)
}

/// The CPU seconds the servers and this tool use over a span of a run.
pub(crate) struct CpuMeter {
    servers: f64,
    tool: f64,
}

impl CpuMeter {
    pub(crate) fn start(servers: &[&Server]) -> Self {
        Self {
            servers: servers_cpu(servers),
            tool: own_cpu(),
        }
    }

    /// (servers, tool) CPU seconds since `start`.
    pub(crate) fn stop(&self, servers: &[&Server]) -> (f64, f64) {
        (servers_cpu(servers) - self.servers, own_cpu() - self.tool)
    }
}
