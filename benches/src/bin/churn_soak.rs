//! Issue 8, item 3: the churn soak. Sessions over many users open and close
//! at a steady rate, with random activity, heartbeats, manual statuses,
//! logouts and crashed clients, while a recorder watches every scope; at
//! the end the service is compared with an independent model fed the same
//! operations (see `presence_store_tests::soak`).
//!
//! ```text
//! cargo run --release -p presence-benches --bin churn-soak -- \
//!     --store memory|redis://127.0.0.1:6379 --seconds 60 --sessions 10000 --rate 1000
//! ```
//!
//! Prints the report and exits non-zero on any violation (a ghost, a
//! missing OFFLINE, a status the model disagrees with, a duplicate,
//! out-of-order or lost event). On Redis it writes only under a random key
//! prefix, deleted at the end.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use presence_core::MemoryStore;
use presence_core::store::PresenceStore;
use presence_redis::{RedisConfig, RedisStore};
use presence_store_tests::redis_keys::delete_keys;
use presence_store_tests::soak::{self, SoakConfig};

/// What the command line asked for.
struct Options {
    store: String,
    seconds: u64,
    sessions: usize,
    rate: u32,
    workers: Option<usize>,
    seed: Option<u64>,
}

const USAGE: &str = "usage: churn-soak [--store memory|redis://HOST:PORT] [--seconds N] \
                     [--sessions N] [--rate OPENS_PLUS_CLOSES_PER_S] [--workers N] [--seed N]";

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        store: "memory".into(),
        seconds: 60,
        sessions: 10_000,
        rate: 1_000,
        workers: None,
        seed: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |_| format!("bad value for {flag}: {value}\n{USAGE}");
        match flag.as_str() {
            "--store" => options.store = value.clone(),
            "--seconds" => options.seconds = value.parse().map_err(bad)?,
            "--sessions" => options.sessions = value.parse().map_err(bad)?,
            "--rate" => options.rate = value.parse().map_err(bad)?,
            "--workers" => options.workers = Some(value.parse().map_err(bad)?),
            "--seed" => options.seed = Some(value.parse().map_err(bad)?),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let mut config = SoakConfig::new(
        options.sessions,
        options.rate,
        Duration::from_secs(options.seconds),
    );
    if let Some(workers) = options.workers {
        config.workers = workers;
    }
    if let Some(seed) = options.seed {
        config.seed = seed;
    }
    let prefix = format!("presence-soak-{}-{}", std::process::id(), fastrand::u64(..));
    let store: Arc<dyn PresenceStore> = if options.store == "memory" {
        Arc::new(MemoryStore::new())
    } else {
        let redis = RedisConfig::new(options.store.as_str()).prefix(prefix.as_str());
        match RedisStore::connect(redis).await {
            Ok(store) => Arc::new(store),
            Err(error) => {
                eprintln!("cannot reach Redis at {}: {error}", options.store);
                return ExitCode::from(2);
            }
        }
    };
    println!(
        "churn soak on {}: {} sessions, {} opens+closes/s, {} s",
        options.store, options.sessions, options.rate, options.seconds
    );
    let result = soak::run(store, &config).await;
    // The store's background flusher may be finishing a last round (it
    // re-claims the epoch key): let it end before deleting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    if options.store != "memory"
        && let Err(error) = delete_keys(&options.store, &prefix).await
    {
        eprintln!("could not delete the keys under {prefix}: {error}");
    }
    match result {
        Ok(report) => {
            println!("{report}");
            if report.violations() == 0 {
                println!("OK: no violation");
                ExitCode::SUCCESS
            } else {
                println!("FAILED: {} violations", report.violations());
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("the soak failed: {error}");
            ExitCode::FAILURE
        }
    }
}
