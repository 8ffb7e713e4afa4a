//! From the command-line options to a run's servers and client settings.

use crate::Error;
use crate::client::ClientConfig;
use crate::opts::Opts;
use crate::server::{DemoSpec, Server};

/// How the clients of a run against `server` connect and behave.
pub(crate) fn client_config(
    opts: &Opts,
    server: &Server,
    snapshots: bool,
) -> Result<ClientConfig, Error> {
    Ok(ClientConfig {
        server: server.addr,
        batch: opts.flag("batch", false),
        heartbeat: opts.millis("heartbeat-ms", 25_000)?,
        activity: opts.millis("activity-ms", 0)?,
        snapshots,
    })
}

/// How to start presence servers for this run.
pub(crate) fn demo_spec(opts: &Opts, default_store: &str) -> Result<DemoSpec, Error> {
    let store = opts.get("store").unwrap_or(default_store).to_owned();
    let mut env = vec![("PRESENCE_STORE_URL".to_owned(), store)];
    // A fresh key prefix / schema per run, so runs never share state.
    let tag = format!(
        "presence-load-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    );
    env.push(("PRESENCE_REDIS_PREFIX".to_owned(), tag.clone()));
    env.push(("PRESENCE_PG_SCHEMA".to_owned(), tag.replace('-', "_")));
    let binary = if opts.server_kind() == "lib" {
        std::env::current_exe()?
    } else {
        DemoSpec::locate(opts.get("demo"))?
    };
    Ok(DemoSpec { binary, env })
}

/// The presence server at `--{url_opt}` when given, else one started as
/// `--server` says.
pub(crate) async fn presence_server(
    opts: &Opts,
    spec: &DemoSpec,
    label: &str,
    url_opt: &str,
) -> Result<Server, Error> {
    match opts.external(url_opt)? {
        Some(addr) => {
            let pid = opts.get("pid").map(str::parse).transpose()?;
            Ok(Server::external(addr, pid))
        }
        None if opts.server_kind() == "lib" => Server::lib(spec, label).await,
        None => Server::demo(spec, label).await,
    }
}

/// The server of one run of a scenario: presence (`kind` "presence"), or
/// the bare baseline `kind` (`bare`, `broadcast`).
pub(crate) async fn scenario_server(
    opts: &Opts,
    spec: &DemoSpec,
    kind: &'static str,
    label: &str,
) -> Result<Server, Error> {
    match kind {
        "presence" => presence_server(opts, spec, label, "url").await,
        baseline => Server::bare(baseline, label).await,
    }
}
