//! A user browsing plain pages (no socket) with a short `session_ttl`: the
//! regression test of issue 15's defect 8. Every authenticated request
//! proves the login's HTTP session live, even inside the window in which
//! repeated activity costs the store nothing.

use std::sync::Arc;
use std::time::Duration;

use presence_core::{Clock, ManualClock, Presence, PresenceConfig, Status};

#[tokio::test]
async fn browsing_a_page_every_600_ms_keeps_a_user_online_with_a_2_s_ttl() {
    let clock = Arc::new(ManualClock::default());
    let presence = Presence::builder()
        .clock(clock.clone())
        .config(PresenceConfig {
            heartbeat_interval: Duration::from_secs(1),
            session_ttl: Duration::from_secs(2),
            away_after: Duration::from_secs(3),
            offline_after: Duration::from_secs(60),
            linger: Duration::from_secs(1),
            ..PresenceConfig::default()
        })
        .build()
        .await
        .expect("a valid configuration (the default coalescing window fits it)");
    let (user, login, scopes) = (&"alice".into(), &"l1".into(), &["acme".into()]);
    for _ in 0..20 {
        presence
            .mark_http_activity(user, login, scopes)
            .await
            .expect("marked");
        clock.advance(Duration::from_millis(600));
        presence.run_due().await.expect("sweep");
        let status = presence.status(user).await.expect("status").status;
        assert_eq!(status, Status::Online, "at {}", clock.now());
    }
}

/// A coalescing window that activity could hide in (not shorter than
/// `away_after` or `session_ttl`) is refused when the service is built.
#[tokio::test]
async fn a_coalescing_window_longer_than_a_threshold_is_refused() {
    let config = PresenceConfig {
        session_ttl: Duration::from_secs(2),
        heartbeat_interval: Duration::from_secs(1),
        ..PresenceConfig::default()
    };
    let refused = Presence::builder()
        .config(config)
        .http_activity_coalesce(Duration::from_secs(5))
        .build()
        .await
        .expect_err("a 5 s window with a 2 s ttl");
    let message = refused.to_string();
    assert!(
        message.contains("http_activity_coalesce") && message.contains("session_ttl"),
        "{message}"
    );
}
