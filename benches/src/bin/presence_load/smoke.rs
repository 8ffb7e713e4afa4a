//! The smoke run, for CI: a few hundred sockets for a few seconds. Fails
//! when a delivery is missing or a socket is lost.

use crate::opts::Opts;
use crate::report::pass;
use crate::{Error, fanout, idle};

/// A small fan-out, then a small idle run, each with its baseline; the
/// options given override the small defaults.
pub(crate) async fn run(opts: &Opts) -> Result<bool, Error> {
    let fanout_opts = opts.with_defaults(&[
        ("watchers", "300"),
        ("changes", "6"),
        ("interval-ms", "50"),
        ("timeout-s", "20"),
    ]);
    let fanout_ok = fanout::run(&fanout_opts).await?;
    let idle_ok = idle::run(&opts.with_defaults(&[("sockets", "300")])).await?;
    println!("smoke: fanout {}, idle {}", pass(fanout_ok), pass(idle_ok));
    Ok(fanout_ok && idle_ok)
}
