//! `presence-load`: real WebSocket clients against a running presence
//! server (P5–P7 of issue 7), each scenario beside a bare baseline measured
//! in the same run where one makes sense.
//!
//! ```text
//! cargo build --release -p presence-demo -p presence-benches --bin presence-load
//! target/release/presence-load idle   --sockets 5000
//! target/release/presence-load fanout --watchers 1000 --changes 20 --interval-ms 100
//! target/release/presence-load storm  --watchers 10000 --rate 5000 --duration-ms 1500 [--nodes 2]
//! target/release/presence-load smoke
//! ```
//!
//! The server is `presence-demo` (beside this binary, or `--demo PATH`)
//! started as a child process per run with the environment of README.md#two-commands
//! (`LISTEN_ADDR=127.0.0.1:0`, `PRESENCE_STORE_URL` from `--store`, a random
//! `PRESENCE_REDIS_PREFIX`, `PRESENCE_METRICS=1`), or one already running
//! (`--url http://127.0.0.1:3000`, `--pid PID` for its memory). Clients log
//! in with `POST /api/login` and connect with `Authorization: Bearer`.
//! Everything is on loopback and bounded in time and count.
//!
//! Latency is measured by this tool on its own clock: from the instant a
//! trigger is sent (a `status_change` frame written, a joiner's login
//! request written) to the instant each watcher reads the matching event
//! (`presence` frames, or the events of `presence_batch` frames with
//! `--batch`). The clients and the server share the machine's cores: the
//! output gives the CPU seconds each used.
//!
//! Every scenario prints a table and one line `RESULT {json}` per run.

mod bare;
mod client;
mod fanout;
mod fleet;
mod http;
mod idle;
mod libserver;
mod machine;
mod opts;
mod report;
mod server;
mod setup;
mod shared;
mod smoke;
mod storm;
mod token;

use crate::opts::Opts;

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("presence-load: the run did not meet its checks (see above)");
            std::process::ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("presence-load: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) const USAGE: &str = "usage: presence-load idle|fanout|storm|smoke [--option value]…
common:  --server demo|lib  --demo PATH  --url http://HOST:PORT [--pid PID] [--url-b …]  --store URL  --batch
         --heartbeat-ms 25000  --activity-ms 0  --no-baseline
idle:    --sockets 5000
fanout:  --watchers 1000 --triggers 1 --changes 20 --interval-ms 100 --timeout-s 60
storm:   --watchers 10000 --rate 5000 --duration-ms 1500 --nodes 1|2 --interest 0|50
         --joiner-sockets true|false --timeout-s 90";

async fn run() -> Result<bool, Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--serve") {
        let kind = args.get(1).ok_or("--serve bare|broadcast|lib")?;
        if kind == "lib" {
            libserver::serve().await?;
        } else {
            bare::serve(kind).await?;
        }
        return Ok(true);
    }
    let Some(scenario) = args.first().cloned() else {
        println!("{USAGE}");
        return Ok(false);
    };
    let opts = Opts::parse(&args[1..])?;
    println!("{}", machine::header(machine::raise_fd_limit()));
    let ok = match scenario.as_str() {
        "idle" => idle::run(&opts).await?,
        "fanout" => fanout::run(&opts).await?,
        "storm" => storm::run(&opts).await?,
        "smoke" => smoke::run(&opts).await?,
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            true
        }
        other => return Err(format!("unknown scenario {other:?}\n{USAGE}").into()),
    };
    Ok(ok)
}
