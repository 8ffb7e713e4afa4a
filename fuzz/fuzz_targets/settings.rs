//! Arbitrary environments into the demo's configuration parser, and
//! arbitrary thresholds into `PresenceConfig::validate`: never a panic, and
//! whatever is accepted is usable.
#![no_main]

// The demo's parser itself, compiled into this target: depending on the
// demo crate would build its stores (sqlx, redis) with sanitizer flags too.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/demo/src/settings.rs"]
mod settings;

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use presence_core::PresenceConfig;

/// The variables the demo reads (README.md#two-commands).
const VARIABLES: [&str; 11] = [
    "LISTEN_ADDR",
    "PRESENCE_STORE_URL",
    "PRESENCE_HEARTBEAT_INTERVAL",
    "PRESENCE_SESSION_TTL",
    "PRESENCE_AWAY_AFTER",
    "PRESENCE_OFFLINE_AFTER",
    "PRESENCE_LINGER",
    "PRESENCE_ALLOWED_ORIGINS",
    "PRESENCE_ACTIVITY_THROTTLE",
    "PRESENCE_METRICS",
    "PRESENCE_NODE_NAME",
];

#[derive(Arbitrary, Debug)]
struct Input {
    environment: Vec<(u8, String)>,
    thresholds: [(u64, u32); 5],
    max_sessions: usize,
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    check_environment(&input.environment);
    check_thresholds(input.thresholds, input.max_sessions);
});

fn check_environment(pairs: &[(u8, String)]) {
    let get = |name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(index, _)| VARIABLES[usize::from(*index) % VARIABLES.len()] == name)
            .map(|(_, value)| value.clone())
    };
    match settings::Settings::from_env(get) {
        Ok(settings) => {
            assert_eq!(settings.presence.validate(), Ok(()));
            assert!(!settings.activity_throttle.is_zero());
        }
        Err(bad) => {
            assert!(
                VARIABLES.contains(&bad.variable) || bad.variable == "PRESENCE_*",
                "{bad}"
            );
            assert!(!bad.why.is_empty());
            let _ = bad.to_string();
        }
    }
}

fn check_thresholds(thresholds: [(u64, u32); 5], max_sessions: usize) {
    let [heartbeat, ttl, away, offline, linger] =
        thresholds.map(|(seconds, nanos)| Duration::new(seconds, nanos % 1_000_000_000));
    let config = PresenceConfig {
        heartbeat_interval: heartbeat,
        session_ttl: ttl,
        away_after: away,
        offline_after: offline,
        linger,
        max_sessions_per_user: max_sessions,
    };
    match config.validate() {
        Ok(()) => {
            assert!(config.heartbeat_interval < config.session_ttl);
            assert!(config.away_after < config.offline_after);
            assert!(config.max_sessions_per_user >= 1);
            assert!(!config.heartbeat_interval.is_zero());
        }
        Err(refused) => assert!(!refused.to_string().is_empty()),
    }
}
