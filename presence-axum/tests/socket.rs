//! The presence WebSocket against a real axum server and a real client.

mod common;

use std::time::Duration;

use common::{Server, busy_alice, change, changes, ev};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite;

#[tokio::test]
async fn hello_snapshot_events_and_pong() {
    let server = Server::start().await;
    let bob_token = server.token("bob", "acme");
    let mut bob = server.connect(&bob_token).await;
    let (hello, snapshot) = bob.handshake().await;
    assert_eq!(hello["user_id"], "bob");
    assert_eq!(hello["heartbeat_interval_ms"], 10_000);
    assert!(
        hello["session_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(snapshot["scope"], "acme");
    let opened = server
        .clock_now()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(
        snapshot["users"],
        json!([{"user_id": "bob", "status": "ONLINE", "last_seen": opened, "v": 1}]),
        "opening a session is activity"
    );

    let alice_token = server.token("alice", "acme");
    let mut alice = server.connect(&alice_token).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    alice.ping().await;
    alice.send(json!({"type": "activity"})).await;
    bob.quiet(200).await; // a heartbeat, a repeated activity: nothing visible
}

#[tokio::test]
async fn the_upgrade_needs_a_user_and_an_allowed_origin() {
    let server = Server::start().await;
    let token = server.token("alice", "acme");
    let status = |result: Result<_, tungstenite::Error>| match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Ok(_) => 101,
        Err(other) => panic!("unexpected failure {other}"),
    };
    assert_eq!(status(server.try_connect(None, None).await), 401);
    assert_eq!(status(server.try_connect(Some("forged"), None).await), 401);
    assert_eq!(
        status(
            server
                .try_connect(Some(&token), Some("https://evil.example"))
                .await
        ),
        403
    );
    let own = format!("http://{}", server.addr);
    assert_eq!(
        status(server.try_connect(Some(&token), Some(&own)).await),
        101
    );
    assert_eq!(
        status(
            server
                .try_connect(Some(&token), Some("https://app.example.com"))
                .await
        ),
        101
    );
    assert_eq!(
        status(server.try_connect(Some(&token), None).await),
        101,
        "no Origin: not a browser"
    );
}

#[tokio::test]
async fn a_frame_over_4_kib_closes_with_1009() {
    let server = Server::start().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    let big = json!({"type": "heartbeat", "pad": "x".repeat(5000)}).to_string();
    alice.send_text(&big).await;
    assert_eq!(alice.closed().await.0, 1009);
}

#[tokio::test]
async fn bad_messages_get_error_frames_and_the_socket_stays_usable() {
    let server = Server::start().await;
    let bob_token = server.token("bob", "acme");
    let mut bob = server.connect(&bob_token).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    alice
        .ws
        .send(tungstenite::Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    assert_eq!(alice.error_code().await, "binary_frame");
    for (frame, code) in [
        ("{not json", "malformed_json"),
        (r#"{"type":"dance"}"#, "unknown_type"),
        (
            r#"{"type":"status_change","status":"SLEEPY"}"#,
            "unknown_status",
        ),
        (
            r#"{"type":"status_change","status":"BUSY","until":"tomorrow"}"#,
            "bad_until",
        ),
        (
            r#"{"type":"status_change","status":"BUSY","until":"2020-01-01T00:00:00Z"}"#,
            "bad_until",
        ),
        (
            r#"{"type":"status_change","status":"BUSY","user_id":"bob"}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"subscribe","scope":"globex"}"#,
            "forbidden_scope",
        ),
    ] {
        alice.send_text(frame).await;
        assert_eq!(alice.error_code().await, code, "for {frame}");
    }
    alice.ping().await;
    bob.quiet(200).await; // none of it changed anything anyone sees
    let bob_now = server.presence.status(&"bob".into()).await.expect("status");
    assert_eq!(
        bob_now.status,
        presence_core::Status::Online,
        "no one else's status moved"
    );
}

#[tokio::test]
async fn a_flood_is_throttled_then_closed_with_1008_and_others_do_not_notice() {
    let server = Server::start().await;
    let mut calm = server.connect(&server.token("bob", "acme")).await;
    calm.handshake().await;
    let mut flood = server.connect(&server.token("mallory", "acme")).await;
    flood.handshake().await;
    calm.expect("presence").await;
    for _ in 0..200 {
        if flood
            .ws
            .send(tungstenite::Message::Text(r#"{"type":"heartbeat"}"#.into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut pongs = 0;
    let mut throttled = 0;
    let code = loop {
        match tokio::time::timeout(
            Duration::from_secs(5),
            futures_util::StreamExt::next(&mut flood.ws),
        )
        .await
        .expect("frames in time")
        {
            Some(Ok(tungstenite::Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(text.as_str()).expect("json");
                match frame["type"].as_str() {
                    Some("pong") => pongs += 1,
                    Some("error") => {
                        assert_eq!(frame["code"], "rate_limited");
                        throttled += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some(Ok(tungstenite::Message::Close(Some(close)))) => break u16::from(close.code),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(
        (40..60).contains(&pongs),
        "a burst is served ({pongs} pongs)"
    );
    assert!(throttled > 0, "throttled before the close");
    calm.ping().await;
}

#[tokio::test]
async fn manual_status_with_expiry_reaches_watchers_and_only_changes_your_own_user() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    let until = (server.clock_now() + chrono::TimeDelta::seconds(60)).to_rfc3339();
    alice
        .send(json!({"type": "status_change", "status": "BUSY", "until": until}))
        .await;
    assert_eq!(change(&bob.next().await), ev("alice", "BUSY", 2));
    assert_eq!(
        change(&alice.next().await),
        ev("alice", "BUSY", 2),
        "your own changes too"
    );
    for _ in 0..5 {
        server.advance(10).await;
        alice.ping().await;
        bob.ping().await;
    }
    bob.quiet(100).await;
    server.advance(10).await;
    assert_eq!(
        change(&bob.next().await),
        ev("alice", "ONLINE", 3),
        "BUSY expired"
    );

    alice
        .send(json!({"type": "status_change", "status": "INVISIBLE"}))
        .await;
    assert_eq!(
        change(&bob.next().await),
        ev("alice", "OFFLINE", 4),
        "invisible looks offline"
    );
    let bob_now = server.presence.status(&"bob".into()).await.expect("status");
    assert_eq!(bob_now.status, presence_core::Status::Online);
}

#[tokio::test]
async fn closing_one_of_two_tabs_is_silent_the_last_one_lingers() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let token = server.token("alice", "acme");
    let mut first = server.connect(&token).await;
    first.handshake().await;
    let mut second = server.connect(&token).await;
    second.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    first.ws.close(None).await.expect("close");
    bob.quiet(300).await;
    second.ws.close(None).await.expect("close");
    bob.quiet(300).await;
    server.advance(4).await;
    bob.quiet(200).await; // inside the linger: a reload would show nothing
    server.advance(1).await;
    assert_eq!(change(&bob.next().await), ev("alice", "OFFLINE", 2));
}

#[tokio::test]
async fn a_reconnect_inside_the_linger_shows_no_flicker() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let token = server.token("alice", "acme");
    let mut page = server.connect(&token).await;
    page.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    page.ws.close(None).await.expect("close");
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.advance(3).await;
    let mut next_page = server.connect(&token).await;
    next_page.handshake().await;
    server.advance(10).await;
    bob.quiet(300).await;
}

#[tokio::test]
async fn logout_closes_that_logins_sockets_at_once() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let laptop = server.token("alice", "acme");
    let phone = server.token("alice", "acme");
    let mut laptop_socket = server.connect(&laptop).await;
    laptop_socket.handshake().await;
    let mut phone_socket = server.connect(&phone).await;
    phone_socket.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    let response = server
        .http
        .post(server.url("/logout"))
        .bearer_auth(&laptop)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 204);
    assert_eq!(
        laptop_socket.closed().await,
        (1000, "logged out".to_owned())
    );
    bob.quiet(300).await; // the phone still holds her
    phone_socket.ping().await;

    let response = server
        .http
        .post(server.url("/logout"))
        .bearer_auth(&phone)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 204);
    assert_eq!(phone_socket.closed().await.0, 1000);
    assert_eq!(
        change(&bob.next().await),
        ev("alice", "OFFLINE", 2),
        "no linger"
    );
}

/// A page that reconnects with a login presence was told is logged out
/// (the host's token check still let it through: a cache, another
/// process) is told so, and stops; not "presence unavailable", which the
/// client answers by reconnecting forever.
#[tokio::test]
async fn a_socket_of_a_logged_out_login_closes_as_logged_out() {
    let server = Server::start().await;
    let token = server.token("alice", "acme");
    let mut tab = server.connect(&token).await;
    tab.handshake().await;
    server
        .presence
        .logout(&"alice".into(), &token.as_str().into())
        .await
        .expect("logout");
    assert_eq!(tab.closed().await, (1000, "logged out".to_owned()));

    let mut again = server.connect(&token).await;
    assert_eq!(again.closed().await, (1000, "logged out".to_owned()));
}

#[tokio::test]
async fn a_silent_socket_is_closed_when_its_heartbeats_lapse() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut silent = server.connect(&server.token("alice", "acme")).await;
    silent.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    for _ in 0..3 {
        server.advance(10).await;
        bob.ping().await;
    }
    assert_eq!(silent.closed().await.0, presence_axum::CLOSE_SESSION_LAPSED);
    server.advance(5).await;
    assert_eq!(change(&bob.next().await), ev("alice", "OFFLINE", 2));
}

#[tokio::test]
async fn scopes_are_isolated_and_a_user_list_subscription_filters() {
    let server = Server::start().await;
    let mut outsider = server.connect(&server.token("gina", "globex")).await;
    outsider.handshake().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    // Bob watches only carol in the lobby.
    bob.send(json!({"type": "subscribe", "scope": "lobby", "user_ids": ["carol"]}))
        .await;
    let lobby = bob.expect("snapshot").await;
    assert_eq!(lobby["scope"], "lobby");
    assert_eq!(
        lobby["users"],
        json!([{"user_id": "carol", "status": "OFFLINE", "last_seen": null, "v": 0}])
    );

    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    outsider.quiet(300).await; // acme's events never reach globex
    outsider
        .send(json!({"type": "subscribe", "scope": "acme"}))
        .await;
    assert_eq!(outsider.error_code().await, "forbidden_scope");
    outsider.quiet(200).await;

    bob.send(json!({"type": "unsubscribe", "scope": "acme"}))
        .await;
    bob.ping().await;
    alice
        .send(json!({"type": "status_change", "status": "BUSY"}))
        .await;
    bob.quiet(300).await;
}

#[tokio::test]
async fn graceful_shutdown_closes_every_socket_with_1001() {
    let server = Server::start().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    alice.expect("presence").await;
    assert_eq!(server.routes.open_sockets(), 2);
    server.routes.shutdown(Duration::from_secs(5)).await;
    assert_eq!(alice.closed().await.0, 1001);
    assert_eq!(bob.closed().await.0, 1001);
    assert_eq!(server.routes.open_sockets(), 0);
}

trait ClockNow {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc>;
}

impl ClockNow for Server {
    fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        use presence_core::Clock;
        self.clock.now()
    }
}

#[tokio::test]
async fn a_client_that_stops_reading_does_not_stall_the_others() {
    let server = Server::start_with(presence_axum::SocketSettings {
        send_timeout: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let mut stuck = server.connect(&server.token("carol", "acme")).await;
    stuck.handshake().await; // and never reads again
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let (_tab, last_v) = busy_alice(&server, 20_000).await;
    // Bob catches up, by events or (when he lagged) by fresh snapshots.
    let started = std::time::Instant::now();
    let mut seen_v = 0;
    while seen_v < last_v {
        let frame = bob.next().await;
        match frame["type"].as_str() {
            Some("presence") if frame["user_id"] == "alice" => {
                seen_v = seen_v.max(frame["v"].as_u64().expect("v"));
            }
            Some("snapshot") => {
                for user in frame["users"].as_array().expect("users") {
                    if user["user_id"] == "alice" {
                        seen_v = seen_v.max(user["v"].as_u64().expect("v"));
                    }
                }
            }
            _ => {}
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    bob.ping().await;
    drop(stuck);
}

#[tokio::test]
async fn a_client_that_asks_for_batches_gets_a_busy_scope_in_presence_batch_frames() {
    let server = Server::start().await;
    let mut bob = server.connect_batched(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let (_tab, last_v) = busy_alice(&server, 50).await;
    let (mut seen, mut frames, mut batch_frames) = (Vec::new(), 0, 0);
    while seen.last().map(|(_, _, v)| *v) != Some(last_v) {
        let frame = bob.next().await;
        if frame["type"] == "presence_batch" {
            assert_eq!(frame["scope"], "acme");
            batch_frames += 1;
        }
        seen.extend(changes(&frame));
        frames += 1;
    }
    assert_eq!(
        seen.first(),
        Some(&ev("alice", "ONLINE", 1)),
        "the quiet scope's first change"
    );
    let versions: Vec<u64> = seen.iter().map(|(_, _, v)| *v).collect();
    assert_eq!(
        versions,
        (1..=last_v).collect::<Vec<_>>(),
        "every change, in order"
    );
    assert!(batch_frames > 0, "no presence_batch frame");
    assert!(frames < 20, "{frames} frames for {last_v} changes");
    bob.ping().await;
}

#[tokio::test]
async fn a_client_that_does_not_ask_for_batches_gets_each_change_as_a_presence_frame() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let (_tab, last_v) = busy_alice(&server, 50).await;
    let mut seen = Vec::new();
    while seen.last().map(|(_, _, v)| *v) != Some(last_v) {
        seen.push(change(&bob.next().await));
    }
    let versions: Vec<u64> = seen.iter().map(|(_, _, v)| *v).collect();
    assert_eq!(
        versions,
        (1..=last_v).collect::<Vec<_>>(),
        "every change in its own frame, in order"
    );
    bob.ping().await;
}

#[tokio::test]
async fn a_batched_client_that_falls_behind_is_resnapshotted_and_catches_up() {
    let server = Server::start_tuned(presence_axum::SocketSettings::default(), |builder| {
        builder.subscriber_capacity(2)
    })
    .await;
    let mut bob = server.connect_batched(&server.token("bob", "acme")).await;
    bob.handshake().await;
    // Bob's socket task gets no turn while the burst runs (one thread, no
    // cooperative yield): his queue of two deliveries overflows.
    let (_tab, last_v) = tokio::task::unconstrained(busy_alice(&server, 2_000)).await;
    assert!(server.presence.fanout_stats().dropped > 0, "bob lagged");
    let (mut known_v, mut snapshots) = (0, 0);
    while known_v < last_v {
        let frame = bob.next().await;
        if frame["type"] == "snapshot" {
            snapshots += 1;
            for user in frame["users"].as_array().expect("users") {
                if user["user_id"] == "alice" {
                    known_v = known_v.max(user["v"].as_u64().expect("v"));
                }
            }
            continue;
        }
        for (user, _, v) in changes(&frame) {
            if user == "alice" {
                assert!(v > known_v || snapshots > 0, "v{v} after v{known_v}");
                known_v = known_v.max(v);
            }
        }
    }
    assert!(snapshots > 0, "lagged, yet no fresh snapshot");
    // What was gathered before the snapshot may still come: stale, and
    // dropped by its version, never newer than what bob shows.
    bob.send(json!({"type": "heartbeat"})).await;
    loop {
        let frame = bob.next().await;
        if frame["type"] == "pong" {
            break;
        }
        for (_, _, v) in changes(&frame) {
            assert!(v <= last_v, "v{v} after the last change v{last_v}");
        }
    }
}

#[tokio::test]
async fn a_scope_too_large_for_one_frame_is_snapshotted_in_parts_and_the_socket_stays_open() {
    let server = Server::start().await;
    // ~1500 users online: a snapshot of well over the 64 KiB write buffer.
    let mut sessions = Vec::new();
    for n in 0..1500 {
        let spec = presence_core::SessionSpec::new(format!("user-{n:04}"), format!("login-{n}"))
            .scope("acme");
        sessions.push(server.presence.open_session(spec).await.expect("open"));
    }
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.expect("hello").await;
    let (mut parts, mut listed) = (0, std::collections::BTreeSet::new());
    loop {
        let frame = bob.expect("snapshot").await;
        parts += 1;
        assert_eq!(frame["scope"], "acme");
        for user in frame["users"].as_array().expect("users") {
            listed.insert(user["user_id"].as_str().expect("user_id").to_owned());
        }
        if frame.get("more").is_none() {
            break;
        }
        assert_eq!(frame["more"], true);
    }
    assert!(parts > 1, "one frame of every user: {parts} part(s)");
    for n in 0..1500 {
        assert!(
            listed.contains(&format!("user-{n:04}")),
            "user-{n:04} missing"
        );
    }
    bob.ping().await;
    drop(sessions);
}

/// The `custom`, `devices` and `state` of a frame or user entry, as they
/// are (absent ones `null`).
fn details(entry: &serde_json::Value) -> serde_json::Value {
    json!({
        "custom": entry.get("custom"),
        "devices": entry.get("devices"),
        "state": entry.get("state"),
    })
}

#[tokio::test]
async fn a_custom_status_is_one_presence_frame_with_a_new_v_and_clears_itself() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    alice
        .send(json!({"type": "status_change", "text": "In a meeting", "emoji": "📅"}))
        .await;
    let frame = bob.next().await;
    assert_eq!(
        change(&frame),
        ev("alice", "ONLINE", 2),
        "an update: status kept"
    );
    assert_eq!(
        details(&frame),
        json!({"custom": {"text": "In a meeting", "emoji": "📅"}, "devices": null, "state": null})
    );
    bob.quiet(200).await; // one frame, never leave + join

    // Only the text: one more frame, the whole presence again.
    alice
        .send(json!({"type": "status_change", "text": "Lunch", "emoji": null}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 3));
    assert_eq!(frame["custom"], json!({"text": "Lunch"}));
    bob.quiet(200).await;

    // A status and a custom status in one change; `until` ends both.
    let until = server.clock_now() + chrono::TimeDelta::seconds(60);
    let until_text = until.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    alice
        .send(
            json!({"type": "status_change", "status": "BUSY", "until": until_text,
                     "text": "Focus", "emoji": ":headphones:"}),
        )
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "BUSY", 4));
    assert_eq!(
        frame["custom"],
        json!({"text": "Focus", "emoji": ":headphones:", "until": until_text})
    );
    bob.quiet(200).await;

    // A watcher who comes later sees it in the snapshot.
    let mut carol = server.connect(&server.token("carol", "acme")).await;
    let (_, snapshot) = carol.handshake().await;
    let entry = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|user| user["user_id"] == "alice")
        .expect("alice listed")
        .clone();
    assert_eq!(entry["v"], 4);
    assert_eq!(entry["custom"]["text"], "Focus");
    assert_eq!(change(&bob.next().await), ev("carol", "ONLINE", 1));

    // Past `until`: BUSY and the custom status clear together.
    for _ in 0..5 {
        server.advance(10).await;
        alice.pong().await;
        bob.ping().await;
        carol.pong().await;
    }
    bob.quiet(100).await;
    server.advance(10).await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 5), "expired");
    assert_eq!(
        details(&frame),
        json!({"custom": null, "devices": null, "state": null})
    );

    // Cleared by hand: both null (or one null, the other absent).
    alice
        .send(json!({"type": "status_change", "emoji": "🌴"}))
        .await;
    assert_eq!(bob.next().await["custom"], json!({"emoji": "🌴"}));
    alice
        .send(json!({"type": "status_change", "text": null}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 7));
    assert!(frame.get("custom").is_none(), "cleared: {frame}");
}

#[tokio::test]
async fn a_mobile_session_shows_in_the_users_devices() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut laptop = server
        .connect(&server.token_of_kind("alice", "acme", "web"))
        .await;
    laptop.handshake().await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 1));
    assert_eq!(frame["devices"], json!({"web": "ONLINE"}));

    let mut phone = server
        .connect(&server.token_of_kind("alice", "acme", "mobile"))
        .await;
    phone.handshake().await;
    let frame = bob.next().await;
    assert_eq!(
        change(&frame),
        ev("alice", "ONLINE", 2),
        "a second kind is an update"
    );
    assert_eq!(
        frame["devices"],
        json!({"mobile": "ONLINE", "web": "ONLINE"})
    );

    phone
        .send(json!({"type": "status_change", "status": "BUSY"}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "BUSY", 3));
    assert_eq!(frame["devices"], json!({"mobile": "BUSY", "web": "BUSY"}));
    let alice_now = server
        .presence
        .status(&"alice".into())
        .await
        .expect("status");
    assert_eq!(alice_now.v, 3);

    phone.ws.close(None).await.expect("close");
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "BUSY", 4));
    assert_eq!(frame["devices"], json!({"web": "BUSY"}), "the phone left");
    laptop.pong().await;
}

#[tokio::test]
async fn app_state_merges_per_user_and_clears_with_null() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let token = server.token("alice", "acme");
    let mut first = server.connect(&token).await;
    first.handshake().await;
    let mut second = server.connect(&token).await;
    second.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));

    first
        .send(json!({"type": "set_state", "state": {"in_call": true, "page": "inbox"}}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 2));
    assert_eq!(frame["state"], json!({"in_call": true, "page": "inbox"}));
    second
        .send(json!({"type": "set_state", "state": {"page": "calendar"}}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 3));
    assert_eq!(
        frame["state"],
        json!({"in_call": true, "page": "calendar"}),
        "merged: the state set last wins a key"
    );
    first
        .send(json!({"type": "set_state", "state": null}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 4));
    assert_eq!(frame["state"], json!({"page": "calendar"}));
    second
        .send(json!({"type": "set_state", "state": null}))
        .await;
    let frame = bob.next().await;
    assert!(frame.get("state").is_none(), "cleared: {frame}");
}

#[tokio::test]
async fn hidden_last_seen_is_null_for_watchers() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 1));
    let seen = frame["last_seen"].clone();
    assert!(seen.is_string());

    alice
        .send(json!({"type": "privacy", "hide_last_seen": true}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 2));
    assert_eq!(frame["last_seen"], json!(null));
    let mut carol = server.connect(&server.token("carol", "acme")).await;
    let (_, snapshot) = carol.handshake().await;
    let entry = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|user| user["user_id"] == "alice")
        .expect("alice")
        .clone();
    assert_eq!(entry["last_seen"], json!(null), "in snapshots too");
    assert_eq!(change(&bob.next().await), ev("carol", "ONLINE", 1));

    alice
        .send(json!({"type": "privacy", "hide_last_seen": false}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "ONLINE", 3));
    assert_eq!(frame["last_seen"], seen);
}

#[tokio::test]
async fn an_invisible_user_shows_no_text_state_or_device() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server
        .connect(&server.token_of_kind("alice", "acme", "mobile"))
        .await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    alice
        .send(json!({"type": "status_change", "status": "INVISIBLE"}))
        .await;
    let frame = bob.next().await;
    assert_eq!(change(&frame), ev("alice", "OFFLINE", 2));
    assert_eq!(
        details(&frame),
        json!({"custom": null, "devices": null, "state": null})
    );

    alice
        .send(json!({"type": "status_change", "text": "Secret", "emoji": "🕵"}))
        .await;
    alice
        .send(json!({"type": "set_state", "state": {"in_call": true}}))
        .await;
    alice.pong().await;
    bob.quiet(300).await;
    let seen = server
        .presence
        .status(&"alice".into())
        .await
        .expect("status");
    assert_eq!(
        (seen.status, seen.v, seen.details),
        (presence_core::Status::Offline, 2, None)
    );
    let mut carol = server.connect(&server.token("carol", "acme")).await;
    let (_, snapshot) = carol.handshake().await;
    assert!(
        !snapshot.to_string().contains("alice"),
        "an invisible user is not listed: {snapshot}"
    );
    assert_eq!(change(&bob.next().await), ev("carol", "ONLINE", 1));
    let snapshot = server
        .http
        .get(server.url("/presence/snapshot?scope=acme&user_ids=alice"))
        .bearer_auth(server.token("dave", "acme"))
        .send()
        .await
        .expect("snapshot")
        .json::<serde_json::Value>()
        .await
        .expect("json");
    assert_eq!(
        details(&snapshot["users"][0]),
        json!({"custom": null, "devices": null, "state": null}),
        "named, she is OFFLINE with nothing more: {snapshot}"
    );

    // Visible again: what she set meanwhile shows, in one frame.
    alice
        .send(json!({"type": "status_change", "status": "ONLINE"}))
        .await;
    let frame = bob
        .until(|frame| frame["user_id"] == "alice")
        .await
        .pop()
        .expect("frame");
    assert_eq!(change(&frame), ev("alice", "ONLINE", 3));
    assert_eq!(
        details(&frame),
        json!({"custom": {"text": "Secret", "emoji": "🕵"}, "devices": {"mobile": "ONLINE"},
               "state": {"in_call": true}})
    );
}

#[tokio::test]
async fn every_bad_detail_is_refused_with_its_code_and_stores_nothing() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    let past = (server.clock_now() - chrono::TimeDelta::seconds(1)).to_rfc3339();
    let cases = [
        (
            json!({"type": "status_change", "text": "x".repeat(101)}),
            "text_too_long",
        ),
        (
            json!({"type": "status_change", "status": "BUSY", "text": "é".repeat(101)}),
            "text_too_long",
        ),
        (
            json!({"type": "status_change", "text": "two\nlines"}),
            "bad_text",
        ),
        (
            json!({"type": "status_change", "text": "tab\there"}),
            "bad_text",
        ),
        (json!({"type": "status_change", "emoji": "a"}), "bad_emoji"),
        (
            json!({"type": "status_change", "emoji": "📅📅"}),
            "bad_emoji",
        ),
        (
            json!({"type": "status_change", "emoji": ":Not Ok:"}),
            "bad_emoji",
        ),
        (
            json!({"type": "status_change", "text": "   "}),
            "empty_custom_status",
        ),
        (
            json!({"type": "status_change", "text": "", "emoji": ""}),
            "empty_custom_status",
        ),
        (
            json!({"type": "status_change", "text": "Away", "until": past}),
            "bad_until",
        ),
        (
            json!({"type": "status_change", "text": 42}),
            "invalid_message",
        ),
        (json!({"type": "status_change"}), "invalid_message"),
        (
            json!({"type": "set_state", "state": "in_call"}),
            "state_not_object",
        ),
        (
            json!({"type": "set_state", "state": [1, 2]}),
            "state_not_object",
        ),
        (
            json!({"type": "set_state", "state": {"k": "v".repeat(1100)}}),
            "state_too_large",
        ),
        (json!({"type": "set_state"}), "invalid_message"),
        (
            json!({"type": "privacy", "hide_last_seen": "yes"}),
            "invalid_message",
        ),
        (
            json!({"type": "subscribe", "scope": "lobby", "counts": "yes"}),
            "invalid_message",
        ),
    ];
    for (frame, code) in cases {
        alice.send(frame.clone()).await;
        assert_eq!(alice.error_code().await, code, "for {frame}");
    }
    alice.pong().await;
    bob.quiet(200).await;
    let seen = server
        .presence
        .status(&"alice".into())
        .await
        .expect("status");
    assert_eq!(
        (seen.status, seen.v, seen.details),
        (presence_core::Status::Online, 1, None),
        "nothing stored"
    );
    // Still usable for a good one.
    alice
        .send(json!({"type": "status_change", "text": "Fine"}))
        .await;
    assert_eq!(bob.next().await["custom"], json!({"text": "Fine"}));
}

#[tokio::test]
async fn a_state_flood_is_rate_limited_and_the_socket_stays_usable() {
    let server = Server::start().await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    let mut alice = server.connect(&server.token("alice", "acme")).await;
    alice.handshake().await;
    assert_eq!(change(&bob.next().await), ev("alice", "ONLINE", 1));
    for n in 0..8 {
        alice
            .send(json!({"type": "set_state", "state": {"n": n}}))
            .await;
    }
    alice.send(json!({"type": "heartbeat"})).await;
    let frames = alice.until(|frame| frame["type"] == "pong").await;
    let codes: Vec<_> = frames
        .iter()
        .filter(|frame| frame["type"] == "error")
        .map(|frame| frame["code"].as_str().expect("code"))
        .collect();
    assert_eq!(codes, ["rate_limited"; 3], "a burst of 5, then refused");
    let mut last = json!(null);
    while last != json!({"n": 4}) {
        let frame = bob.next().await;
        assert_eq!(frame["user_id"], "alice");
        last = frame["state"].clone();
    }
    bob.quiet(300).await;
    let seen = server
        .presence
        .status(&"alice".into())
        .await
        .expect("status");
    assert_eq!(seen.v, 6, "five states, none of the refused ones");

    // A second later, one more fits; other messages were never limited.
    alice
        .send(json!({"type": "status_change", "status": "BUSY"}))
        .await;
    assert_eq!(change(&bob.next().await), ev("alice", "BUSY", 7));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    alice
        .send(json!({"type": "set_state", "state": {"n": "later"}}))
        .await;
    assert_eq!(bob.next().await["state"], json!({"n": "later"}));
    alice.pong().await;
}

/// The (online, away, busy, v) of an `occupancy` frame or a snapshot's
/// `occupancy`.
fn counts(value: &serde_json::Value) -> (u64, u64, u64, u64) {
    let n = |key: &str| {
        value[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {value}"))
    };
    (n("online"), n("away"), n("busy"), n("v"))
}

/// Opens a session for each of `users` in `scope`.
async fn crowd(
    server: &Server,
    scope: &str,
    users: impl Iterator<Item = String>,
) -> Vec<presence_core::SessionHandle> {
    let mut sessions = Vec::new();
    for user in users {
        let spec =
            presence_core::SessionSpec::new(user.clone(), format!("{user}-login")).scope(scope);
        sessions.push(server.presence.open_session(spec).await.expect("open"));
    }
    sessions
}

async fn counted_server() -> Server {
    Server::start_tuned(presence_axum::SocketSettings::default(), |builder| {
        builder
            .large_scope_threshold(5)
            .occupancy_interval(Duration::from_millis(50))
    })
    .await
}

#[tokio::test]
async fn a_counted_subscribe_of_a_large_scope_gets_counts_and_the_named_users_only() {
    let server = counted_server().await;
    let members = crowd(&server, "lobby", (0..10).map(|n| format!("m{n}"))).await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    bob.send(
        json!({"type": "subscribe", "scope": "lobby", "counts": true, "user_ids": ["m0", "m1"]}),
    )
    .await;
    let snapshot = bob.expect("snapshot").await;
    assert_eq!(snapshot["scope"], "lobby");
    assert_eq!(counts(&snapshot["occupancy"]), (10, 0, 0, 1));
    let listed: Vec<_> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|user| user["user_id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, ["m0", "m1"], "only the named users");

    // Someone else's change: no presence frame, new counts within the interval.
    server
        .presence
        .set_status(&"m5".into(), presence_core::RequestedStatus::Busy, None)
        .await
        .expect("busy");
    let frames = bob
        .until(|frame| frame["type"] == "occupancy" && frame["busy"] == 1)
        .await;
    for frame in &frames {
        assert_eq!(frame["type"], "occupancy", "only counts: {frame}");
        assert_eq!(frame["scope"], "lobby");
    }
    assert_eq!(counts(frames.last().expect("counts")), (9, 0, 1, 2));

    // A named user's change: their presence frame, and the counts.
    server
        .presence
        .set_status(&"m0".into(), presence_core::RequestedStatus::Away, None)
        .await
        .expect("away");
    let frame = bob.next().await;
    assert_eq!(frame["scope"], "lobby");
    assert_eq!(change(&frame), ev("m0", "AWAY", 2));
    let frame = bob.expect("occupancy").await;
    assert_eq!(counts(&frame), (8, 1, 1, 3));
    bob.quiet(200).await; // counts go out only when they change
    bob.pong().await;

    // The scope turns small (at most 3 of the threshold's 5): a plain
    // snapshot of every member, then each member's events.
    let mut members = members;
    for session in members.drain(3..) {
        session.close().await.expect("close");
    }
    server.advance(6).await; // the linger
    let snapshot = bob
        .until(|frame| frame["type"] == "snapshot" && frame["scope"] == "lobby")
        .await
        .pop()
        .expect("snapshot");
    assert!(snapshot.get("occupancy").is_none(), "{snapshot}");
    let mut listed: Vec<_> = snapshot["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|user| user["user_id"].as_str().expect("id").to_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["m0", "m1", "m2"]);
    server
        .presence
        .set_status(&"m2".into(), presence_core::RequestedStatus::Busy, None)
        .await
        .expect("busy");
    let frame = bob
        .until(|frame| frame["type"] == "presence" && frame["user_id"] == "m2")
        .await;
    assert_eq!(change(frame.last().expect("m2")).1, "BUSY");

    // Large again, with the very counts last sent (8, 1, 1): sent again,
    // newer, so the client goes back to counts.
    server
        .presence
        .set_status(&"m5".into(), presence_core::RequestedStatus::Online, None)
        .await
        .expect("m5 no longer BUSY");
    members.extend(crowd(&server, "lobby", (3..10).map(|n| format!("m{n}"))).await);
    let frames = bob.until(|frame| frame["type"] == "occupancy").await;
    assert_eq!(counts(frames.last().expect("counts")), (8, 1, 1, 4));
    for frame in &frames[..frames.len() - 1] {
        assert_eq!(
            frame["type"], "presence",
            "members' joins while small: {frame}"
        );
    }
}

#[tokio::test]
async fn a_counted_watcher_that_lags_is_resnapshotted_as_counts() {
    let server = Server::start_tuned(presence_axum::SocketSettings::default(), |builder| {
        builder
            .large_scope_threshold(5)
            .occupancy_interval(Duration::from_millis(50))
            .subscriber_capacity(2)
    })
    .await;
    let _members = crowd(&server, "lobby", (0..10).map(|n| format!("m{n}"))).await;
    let mut bob = server.connect(&server.token("bob", "acme")).await;
    bob.handshake().await;
    bob.send(json!({"type": "subscribe", "scope": "lobby", "counts": true, "user_ids": ["m0"]}))
        .await;
    let snapshot = bob.expect("snapshot").await;
    assert_eq!(counts(&snapshot["occupancy"]).0, 10);
    bob.pong().await;
    // m0, named, changes faster than bob's queue of two can take.
    let m0 = presence_core::UserId::from("m0");
    let flips = async {
        for n in 0..200 {
            let status = if n % 2 == 0 {
                presence_core::RequestedStatus::Busy
            } else {
                presence_core::RequestedStatus::Online
            };
            server
                .presence
                .set_status(&m0, status, None)
                .await
                .expect("set");
        }
    };
    tokio::task::unconstrained(flips).await;
    assert!(server.presence.fanout_stats().dropped > 0, "bob lagged");
    let frames = bob
        .until(|frame| frame["type"] == "snapshot" && frame["scope"] == "lobby")
        .await;
    let snapshot = frames.last().expect("snapshot");
    assert!(
        snapshot.get("occupancy").is_some(),
        "still counts: {snapshot}"
    );
    assert_eq!(snapshot["users"].as_array().expect("users").len(), 1);
    assert_eq!(snapshot["users"][0]["user_id"], "m0");
    assert_eq!(snapshot["users"][0]["v"], 201);
}
