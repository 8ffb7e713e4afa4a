//! The command line after the scenario: `--name value` pairs, read with a
//! default for each option.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::{Error, USAGE};

/// `--name value` pairs; a `--name` followed by another option or nothing
/// is `true`.
#[derive(Clone, Debug)]
pub(crate) struct Opts(HashMap<String, String>);

impl Opts {
    pub(crate) fn parse(args: &[String]) -> Result<Self, Error> {
        let mut map = HashMap::new();
        let mut i = 0;
        while i < args.len() {
            let name = args[i]
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --option, got {:?}\n{USAGE}", args[i]))?;
            match args.get(i + 1) {
                Some(value) if !value.starts_with("--") => {
                    map.insert(name.to_owned(), value.clone());
                    i += 2;
                }
                _ => {
                    map.insert(name.to_owned(), "true".to_owned());
                    i += 1;
                }
            }
        }
        Ok(Self(map))
    }

    /// These options, with `defaults` for the ones not given.
    pub(crate) fn with_defaults(&self, defaults: &[(&str, &str)]) -> Self {
        let mut map = self.0.clone();
        for (name, value) in defaults {
            map.entry((*name).to_owned())
                .or_insert_with(|| (*value).to_owned());
        }
        Self(map)
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub(crate) fn num(&self, name: &str, default: u64) -> Result<u64, Error> {
        self.get(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| format!("--{name} {v}: not a number").into())
        })
    }

    pub(crate) fn usize(&self, name: &str, default: usize) -> Result<usize, Error> {
        Ok(usize::try_from(self.num(name, default as u64)?)?)
    }

    pub(crate) fn flag(&self, name: &str, default: bool) -> bool {
        self.get(name).map_or(default, |v| v != "false" && v != "0")
    }

    /// A period in milliseconds; 0 is none.
    pub(crate) fn millis(&self, name: &str, default: u64) -> Result<Option<Duration>, Error> {
        let ms = self.num(name, default)?;
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }

    /// The address of a server already running (`--url http://IP:PORT`).
    pub(crate) fn external(&self, name: &str) -> Result<Option<SocketAddr>, Error> {
        self.get(name)
            .map(|url| {
                let hostport = url
                    .trim_start_matches("http://")
                    .trim_start_matches("ws://")
                    .trim_end_matches('/');
                hostport
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--{name} {url}: want http://IP:PORT ({e})").into())
            })
            .transpose()
    }

    /// `--server`: which presence server runs (`demo` or `lib`).
    pub(crate) fn server_kind(&self) -> &str {
        self.get("server").unwrap_or("demo")
    }

    /// Whether a bare baseline runs beside presence: not against a server
    /// already running (`--url`), nor with `--no-baseline`.
    pub(crate) fn wants_baseline(&self) -> bool {
        self.get("url").is_none() && !self.flag("no-baseline", false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Opts {
        let args: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        Opts::parse(&args).expect("parses")
    }

    #[test]
    fn pairs_flags_and_defaults() {
        let opts = parse("--watchers 300 --batch --interval-ms 0 --joiner-sockets false");
        assert_eq!(opts.usize("watchers", 1).ok(), Some(300));
        assert_eq!(opts.usize("changes", 20).ok(), Some(20));
        assert!(opts.flag("batch", false));
        assert!(!opts.flag("joiner-sockets", true));
        assert_eq!(opts.millis("interval-ms", 100).ok(), Some(None));
        assert_eq!(
            opts.millis("heartbeat-ms", 25_000).ok(),
            Some(Some(Duration::from_secs(25)))
        );
        assert!(opts.num("batch", 0).is_err(), "a flag is not a number");
        assert_eq!(opts.server_kind(), "demo");
        assert!(opts.wants_baseline());
    }

    #[test]
    fn a_bare_word_is_refused() {
        let args = vec!["watchers".to_owned(), "3".to_owned()];
        assert!(Opts::parse(&args).is_err());
    }

    #[test]
    fn defaults_do_not_override_given_options() {
        let opts = parse("--watchers 50").with_defaults(&[("watchers", "300"), ("changes", "6")]);
        assert_eq!(opts.get("watchers"), Some("50"));
        assert_eq!(opts.get("changes"), Some("6"));
    }

    #[test]
    fn an_external_server_is_an_ip_and_port() {
        let opts = parse("--url http://127.0.0.1:3000/ --url-b localhost:1");
        assert_eq!(
            opts.external("url").ok().flatten(),
            Some(SocketAddr::from(([127, 0, 0, 1], 3000)))
        );
        assert!(opts.external("url-b").is_err());
        assert!(!opts.wants_baseline());
    }
}
