//! The demo's configuration, from the environment (README.md#two-commands). A bad value is
//! an error naming the variable; `main` prints it and exits with code 2.
//! The value of `PRESENCE_DEMO_SECRET` is never shown, not even then.
//!
//! Self-contained (std, presence and humantime only): the fuzz target
//! `fuzz/fuzz_targets/settings.rs` compiles this file on its own.

use std::net::SocketAddr;
use std::time::Duration;

use presence_axum::AllowedOrigins;
use presence_core::PresenceConfig;

/// Everything the demo reads from its environment.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) listen: SocketAddr,
    pub(crate) store: StoreUrl,
    pub(crate) presence: PresenceConfig,
    pub(crate) allowed_origins: AllowedOrigins,
    /// The browser client's least gap between `activity` messages.
    pub(crate) activity_throttle: Duration,
    /// `PRESENCE_METRICS`: serve `GET /metrics` (Prometheus text format).
    pub(crate) metrics: bool,
    /// `PRESENCE_DEMO_SECRET`: signs the login tokens. Unset, `main` picks
    /// a random one, and logins last only as long as the process.
    pub(crate) secret: Option<SecretBytes>,
    /// `PRESENCE_DEMO_LOGIN_TTL`: how long a login's token is valid.
    pub(crate) login_ttl: Duration,
    /// `PRESENCE_NODE_LEASE`: how long this process's lease in the store
    /// lasts; a dead process's sockets' users go OFFLINE about this long
    /// (and a third of it, and the linger) after it died.
    pub(crate) node_lease: Duration,
    /// `PRESENCE_WEBHOOK_URL`: where to post when a user goes OFFLINE
    /// (`http://` only: the demo's client has no TLS).
    pub(crate) webhook_url: Option<String>,
    /// `PRESENCE_DEMO_CROWD=org:N`: N guests kept present in `org`.
    pub(crate) crowd: Option<(String, usize)>,
}

/// The bytes of `PRESENCE_DEMO_SECRET`, at least [`MIN_SECRET_BYTES`]
/// long. Its `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct SecretBytes(Vec<u8>);

impl SecretBytes {
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes>)", self.0.len())
    }
}

/// The shortest `PRESENCE_DEMO_SECRET`: 128 bits, if every byte counted.
pub(crate) const MIN_SECRET_BYTES: usize = 16;

/// Where presence state lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    Memory,
    /// `redis://…`: several demos on one Redis are one cluster.
    Redis(String),
    /// `sqlite://PATH`: presence and last seen survive a restart.
    Sqlite(String),
    /// `postgres://…`: several demos on one database are one cluster.
    Postgres(String),
}

/// A variable with a value the demo cannot use.
#[derive(Debug)]
pub(crate) struct BadSetting {
    pub(crate) variable: &'static str,
    pub(crate) value: String,
    pub(crate) why: String,
}

impl std::fmt::Display for BadSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={:?}: {}", self.variable, self.value, self.why)
    }
}

impl Settings {
    /// Reads the settings through `get` (the process environment in
    /// `main`, a map in tests).
    pub(crate) fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, BadSetting> {
        let defaults = PresenceConfig::default();
        let duration = |variable: &'static str, default: Duration| {
            get(variable).map_or(Ok(default), |value| parse_duration(variable, &value))
        };
        let listen = match get("LISTEN_ADDR") {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(value) => value.parse().map_err(|e| BadSetting {
                variable: "LISTEN_ADDR",
                why: format!("not a socket address like 127.0.0.1:3000 ({e})"),
                value,
            })?,
        };
        let store = parse_store(get("PRESENCE_STORE_URL"))?;
        let presence = PresenceConfig {
            heartbeat_interval: duration(
                "PRESENCE_HEARTBEAT_INTERVAL",
                defaults.heartbeat_interval,
            )?,
            session_ttl: duration("PRESENCE_SESSION_TTL", defaults.session_ttl)?,
            away_after: duration("PRESENCE_AWAY_AFTER", defaults.away_after)?,
            offline_after: duration("PRESENCE_OFFLINE_AFTER", defaults.offline_after)?,
            linger: duration("PRESENCE_LINGER", defaults.linger)?,
            ..defaults
        };
        presence.validate().map_err(|e| BadSetting {
            variable: "PRESENCE_*",
            value: format!("{presence:?}"),
            why: e.to_string(),
        })?;
        // The client reports input at most this often: never so rarely that
        // a user at the keyboard could turn AWAY.
        // Never zero either (a tiny PRESENCE_AWAY_AFTER): the client would
        // report every keystroke and trip the socket's flood control.
        let default_throttle = Duration::from_secs(15)
            .min(presence.away_after / 4)
            .max(MIN_ACTIVITY_THROTTLE);
        let activity_throttle = duration("PRESENCE_ACTIVITY_THROTTLE", default_throttle)?;
        let mut allowed_origins = AllowedOrigins::same_origin();
        if let Some(list) = get("PRESENCE_ALLOWED_ORIGINS") {
            for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
                if !(origin.starts_with("http://") || origin.starts_with("https://")) {
                    return Err(BadSetting {
                        variable: "PRESENCE_ALLOWED_ORIGINS",
                        value: list.clone(),
                        why: format!("{origin:?} is not an origin like https://app.example.com"),
                    });
                }
                allowed_origins = allowed_origins.allow(origin);
            }
        }
        let metrics = parse_switch("PRESENCE_METRICS", get("PRESENCE_METRICS"))?;
        let secret = get("PRESENCE_DEMO_SECRET").map(parse_secret).transpose()?;
        let login_ttl = duration("PRESENCE_DEMO_LOGIN_TTL", DEFAULT_LOGIN_TTL)?;
        let node_lease = duration("PRESENCE_NODE_LEASE", DEFAULT_NODE_LEASE)?;
        if node_lease < MIN_NODE_LEASE {
            return Err(BadSetting {
                variable: "PRESENCE_NODE_LEASE",
                value: get("PRESENCE_NODE_LEASE").unwrap_or_default(),
                why: format!("must be at least {MIN_NODE_LEASE:?}"),
            });
        }
        if login_ttl > MAX_LOGIN_TTL {
            return Err(BadSetting {
                variable: "PRESENCE_DEMO_LOGIN_TTL",
                value: get("PRESENCE_DEMO_LOGIN_TTL").unwrap_or_default(),
                why: "must be at most 10 years".into(),
            });
        }
        let webhook_url = get("PRESENCE_WEBHOOK_URL")
            .map(parse_webhook_url)
            .transpose()?;
        let crowd = get("PRESENCE_DEMO_CROWD").map(parse_crowd).transpose()?;
        Ok(Self {
            listen,
            store,
            presence,
            allowed_origins,
            activity_throttle,
            metrics,
            secret,
            login_ttl,
            node_lease,
            webhook_url,
            crowd,
        })
    }
}

/// The shortest default gap between the client's `activity` messages: the
/// socket's default flood limit (20 messages a second).
const MIN_ACTIVITY_THROTTLE: Duration = Duration::from_millis(50);

/// How long a login lasts unless `PRESENCE_DEMO_LOGIN_TTL` says.
const DEFAULT_LOGIN_TTL: Duration = Duration::from_secs(7 * 24 * 3_600);

/// A process's lease unless `PRESENCE_NODE_LEASE` says (the library's
/// default).
const DEFAULT_NODE_LEASE: Duration = Duration::from_secs(15);

/// The shortest lease: renewed every third of it, a shorter one would be
/// renewed faster than a store answers.
const MIN_NODE_LEASE: Duration = Duration::from_millis(300);

/// The longest login: far beyond any use, and far from the calendar's end.
const MAX_LOGIN_TTL: Duration = Duration::from_secs(3_650 * 24 * 3_600);

/// The secret's value is never repeated, not even in an error.
fn parse_secret(value: String) -> Result<SecretBytes, BadSetting> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(BadSetting {
            variable: "PRESENCE_DEMO_SECRET",
            value: format!("<hidden, {} bytes>", value.len()),
            why: format!("must be at least {MIN_SECRET_BYTES} bytes"),
        });
    }
    Ok(SecretBytes(value.into_bytes()))
}

fn parse_duration(variable: &'static str, value: &str) -> Result<Duration, BadSetting> {
    let bad = |why: String| BadSetting {
        variable,
        value: value.to_owned(),
        why,
    };
    let duration = humantime::parse_duration(value.trim())
        .map_err(|e| bad(format!("not a duration like 500ms, 30s or 5m ({e})")))?;
    if duration.is_zero() {
        return Err(bad("must be more than zero".into()));
    }
    Ok(duration)
}

/// An on/off variable: `1`, `true`, `yes`, `on` or `0`, `false`, `no`,
/// `off` (any case); unset or empty is off.
/// The most guests `PRESENCE_DEMO_CROWD` may ask for.
const MAX_CROWD: usize = 10_000;

fn parse_webhook_url(value: String) -> Result<String, BadSetting> {
    let host = value.strip_prefix("http://").unwrap_or_default();
    if host.is_empty() || value.chars().any(char::is_whitespace) {
        return Err(BadSetting {
            variable: "PRESENCE_WEBHOOK_URL",
            value,
            why: "not a URL like http://127.0.0.1:9000/hooks/presence (http only)".into(),
        });
    }
    Ok(value)
}

fn parse_crowd(value: String) -> Result<(String, usize), BadSetting> {
    let parsed = value.split_once(':').and_then(|(org, size)| {
        let org = org.trim().to_ascii_lowercase();
        let fits = (1..=32).contains(&org.len())
            && org
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let size = size.trim().parse::<usize>().ok()?;
        (fits && size <= MAX_CROWD).then_some((org, size))
    });
    parsed.ok_or_else(|| BadSetting {
        variable: "PRESENCE_DEMO_CROWD",
        value,
        why: format!("not an organisation and a size up to {MAX_CROWD}, like acme:300"),
    })
}

fn parse_switch(variable: &'static str, value: Option<String>) -> Result<bool, BadSetting> {
    let Some(value) = value else {
        return Ok(false);
    };
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(BadSetting {
            variable,
            value,
            why: "expected 1 or 0".into(),
        }),
    }
}

fn parse_store(url: Option<String>) -> Result<StoreUrl, BadSetting> {
    let Some(url) = url.filter(|u| !u.trim().is_empty()) else {
        return Ok(StoreUrl::Memory);
    };
    let bad = |why: &str| BadSetting {
        variable: "PRESENCE_STORE_URL",
        value: url.clone(),
        why: why.to_owned(),
    };
    match url.split_once("://").map(|(scheme, _)| scheme) {
        Some("memory") => Ok(StoreUrl::Memory),
        Some("redis" | "rediss") => Ok(StoreUrl::Redis(url)),
        Some("sqlite") => Ok(StoreUrl::Sqlite(url)),
        Some("postgres" | "postgresql") => Ok(StoreUrl::Postgres(url)),
        _ => Err(bad(
            "expected memory://, sqlite://PATH, postgres://… or redis://HOST:PORT",
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, BadSetting> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::from_env(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_need_nothing() {
        let s = settings(&[]).expect("defaults");
        assert_eq!(s.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(s.store, StoreUrl::Memory);
        assert_eq!(s.presence, PresenceConfig::default());
        assert_eq!(s.activity_throttle, Duration::from_secs(15));
        assert!(!s.metrics, "no /metrics unless asked");
        assert!(s.secret.is_none(), "a random secret unless set");
        assert_eq!(s.login_ttl, Duration::from_secs(7 * 24 * 3_600));
        assert_eq!(s.node_lease, Duration::from_secs(15));
    }

    #[test]
    fn the_node_lease_is_read_and_a_tiny_one_refused() {
        let s = settings(&[("PRESENCE_NODE_LEASE", "4s")]).expect("valid");
        assert_eq!(s.node_lease, Duration::from_secs(4));
        let error = settings(&[("PRESENCE_NODE_LEASE", "10ms")]).expect_err("too short");
        assert_eq!(error.variable, "PRESENCE_NODE_LEASE");
    }

    #[test]
    fn the_secret_and_login_ttl_are_read() {
        let s = settings(&[
            ("PRESENCE_DEMO_SECRET", "sixteen bytes!!!"),
            ("PRESENCE_DEMO_LOGIN_TTL", "12h"),
        ])
        .expect("valid");
        assert_eq!(
            s.secret.clone().map(SecretBytes::into_bytes),
            Some(b"sixteen bytes!!!".to_vec())
        );
        assert_eq!(format!("{:?}", s.secret), "Some(SecretBytes(<16 bytes>))");
        assert_eq!(s.login_ttl, Duration::from_secs(12 * 3_600));
    }

    #[test]
    fn a_short_secret_is_refused_without_being_shown() {
        let error = settings(&[("PRESENCE_DEMO_SECRET", "hunter2")]).expect_err("too short");
        assert_eq!(error.variable, "PRESENCE_DEMO_SECRET");
        let said = error.to_string();
        assert!(!said.contains("hunter2"), "{said}");
        assert!(said.contains("at least 16 bytes"), "{said}");
        let error = settings(&[("PRESENCE_DEMO_SECRET", "")]).expect_err("empty");
        assert_eq!(error.variable, "PRESENCE_DEMO_SECRET");
    }

    #[test]
    fn the_webhook_and_the_crowd_are_read_and_bad_ones_refused() {
        let s = settings(&[
            ("PRESENCE_WEBHOOK_URL", "http://127.0.0.1:9000/hook"),
            ("PRESENCE_DEMO_CROWD", "Acme:300"),
        ])
        .expect("valid");
        assert_eq!(s.webhook_url.as_deref(), Some("http://127.0.0.1:9000/hook"));
        assert_eq!(s.crowd, Some(("acme".into(), 300)));
        for bad in ["https://x", "ftp://x", "http://", "http://a b"] {
            let error = settings(&[("PRESENCE_WEBHOOK_URL", bad)]).expect_err(bad);
            assert_eq!(error.variable, "PRESENCE_WEBHOOK_URL");
        }
        for bad in ["acme", "acme:lots", ":3", "acme:10001", "a c:3"] {
            let error = settings(&[("PRESENCE_DEMO_CROWD", bad)]).expect_err(bad);
            assert_eq!(error.variable, "PRESENCE_DEMO_CROWD");
        }
    }

    #[test]
    fn metrics_are_switched_on_and_off() {
        for (value, on) in [
            ("1", true),
            ("true", true),
            ("On", true),
            ("0", false),
            ("", false),
        ] {
            let s = settings(&[("PRESENCE_METRICS", value)]).expect("valid");
            assert_eq!(s.metrics, on, "PRESENCE_METRICS={value:?}");
        }
    }

    #[test]
    fn humane_durations_are_read() {
        let s = settings(&[
            ("PRESENCE_HEARTBEAT_INTERVAL", "500ms"),
            ("PRESENCE_SESSION_TTL", "2s"),
            ("PRESENCE_AWAY_AFTER", "2s"),
            ("PRESENCE_OFFLINE_AFTER", "5s"),
            ("PRESENCE_LINGER", "1s"),
        ])
        .expect("valid");
        assert_eq!(s.presence.heartbeat_interval, Duration::from_millis(500));
        assert_eq!(s.presence.offline_after, Duration::from_secs(5));
        assert_eq!(s.activity_throttle, Duration::from_millis(500));
    }

    /// Found by `fuzz/run.sh` (fuzz/regressions/settings): a tiny
    /// `PRESENCE_AWAY_AFTER` made the default activity throttle zero.
    #[test]
    fn a_tiny_away_after_still_throttles_activity() {
        let s = settings(&[("PRESENCE_AWAY_AFTER", "3ns")]).expect("valid");
        assert_eq!(s.activity_throttle, MIN_ACTIVITY_THROTTLE);
    }

    #[test]
    fn bad_values_name_their_variable() {
        let cases = [
            ("LISTEN_ADDR", "localhost"),
            ("PRESENCE_AWAY_AFTER", "soon"),
            ("PRESENCE_LINGER", "0s"),
            ("PRESENCE_STORE_URL", "mongodb://x"),
            ("PRESENCE_STORE_URL", "no-scheme"),
            ("PRESENCE_ALLOWED_ORIGINS", "evil.example"),
            ("PRESENCE_METRICS", "maybe"),
            ("PRESENCE_DEMO_SECRET", "short"),
            ("PRESENCE_DEMO_LOGIN_TTL", "a week"),
            ("PRESENCE_DEMO_LOGIN_TTL", "0s"),
            ("PRESENCE_DEMO_LOGIN_TTL", "11years"),
        ];
        for (variable, value) in cases {
            let error = settings(&[(variable, value)]).expect_err("refused");
            assert_eq!(error.variable, variable, "{error}");
        }
        let error = settings(&[("PRESENCE_AWAY_AFTER", "1h")]).expect_err("away after offline");
        assert!(error.to_string().contains("away"), "{error}");
    }
}
