//! The demo as a process: configuration errors, the JSON API, the presence
//! socket with a bearer token, and graceful shutdown on SIGTERM.

mod common;

#[allow(dead_code)] // the shared Redis's cleanup only
#[path = "chaos/servers.rs"]
mod servers;

use std::process::Command;
use std::time::Duration;

use common::{DEMO, Demo, next_json};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn a_bad_setting_is_a_clear_error_and_exit_code_2() {
    for (variable, value, says) in [
        ("PRESENCE_AWAY_AFTER", "soon", "PRESENCE_AWAY_AFTER"),
        ("PRESENCE_LINGER", "-1s", "PRESENCE_LINGER"),
        ("LISTEN_ADDR", "nowhere", "LISTEN_ADDR"),
        (
            "PRESENCE_STORE_URL",
            "mongodb://127.0.0.1",
            "expected memory://",
        ),
        ("PRESENCE_OFFLINE_AFTER", "1s", "away"),
        ("PRESENCE_DEMO_SECRET", "too-short", "PRESENCE_DEMO_SECRET"),
        (
            "PRESENCE_DEMO_LOGIN_TTL",
            "a week",
            "PRESENCE_DEMO_LOGIN_TTL",
        ),
    ] {
        let output = Command::new(DEMO)
            .env(variable, value)
            .output()
            .expect("the demo runs");
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{variable}={value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains("too-short"),
            "a secret is never shown: {stderr}"
        );
    }
}

#[tokio::test]
async fn api_login_socket_snapshot_logout_and_sigterm() {
    let mut demo = Demo::start(&[]);
    let http = reqwest::Client::new();
    let login = |name: &'static str, org: &'static str| {
        http.post(format!("{}/api/login", demo.base))
            .json(&json!({"username": name, "org": org}))
            .send()
    };
    let alice: Value = login("Alice", "acme")
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert_eq!(alice["user_id"], "alice");
    let token = alice["token"].as_str().expect("token").to_owned();
    let refused = login("ALICE", "globex").await.expect("login");
    assert_eq!(refused.status(), 400, "usernames are unique");

    let snapshot: Value = http
        .get(format!("{}/api/presence?scope=acme", demo.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("snapshot")
        .json()
        .await
        .expect("json");
    assert_eq!(
        snapshot["users"][0]["user_id"], "alice",
        "ONLINE at login: {snapshot}"
    );
    assert_eq!(snapshot["users"][0]["status"], "ONLINE");
    let foreign = http
        .get(format!("{}/api/presence?scope=globex", demo.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("snapshot");
    assert_eq!(foreign.status(), 403);

    let mut socket = demo.connect(&token).await;
    let frame = next_json(&mut socket).await;
    assert_eq!(frame["type"], "hello");
    assert_eq!(frame["heartbeat_interval_ms"], 30_000);
    assert_eq!(next_json(&mut socket).await["type"], "snapshot");

    demo.terminate();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(1001));
    let status = tokio::task::spawn_blocking(move || demo.child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(status.success(), "exits cleanly: {status}");
}

#[tokio::test]
async fn two_demos_on_one_redis_are_one_cluster() {
    let url = servers::shared_redis_url();
    // Its keys (presence's, and the logout's revocation) are deleted after.
    let prefix = servers::Prefix::fresh(&url);
    two_demos_are_one_cluster(&[
        ("PRESENCE_STORE_URL", url.as_str()),
        ("PRESENCE_REDIS_PREFIX", prefix.name.as_str()),
    ])
    .await;
}

#[tokio::test]
async fn two_demos_on_one_postgres_are_one_cluster() {
    let schema = format!("presence_demo_test_{}", std::process::id());
    let url = std::env::var("PRESENCE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    two_demos_are_one_cluster(&[
        ("PRESENCE_STORE_URL", url.as_str()),
        ("PRESENCE_PG_SCHEMA", schema.as_str()),
    ])
    .await;
    let _ = Command::new("psql")
        .args([
            url.as_str(),
            "-qc",
            &format!("drop schema if exists {schema} cascade"),
        ])
        .output();
}

/// Alice signs in on one demo; the other sees her, and sees her leave.
async fn two_demos_are_one_cluster(env: &[(&str, &str)]) {
    let one = Demo::start(env);
    let two = Demo::start(env);
    let http = reqwest::Client::new();
    let bob = two.login("bob", "acme").await;
    let alice = one.login("alice", "acme").await;
    // Alice signed in on demo one; Bob asks demo two.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let snapshot: Value = http
            .get(format!("{}/api/presence?scope=acme", two.base))
            .bearer_auth(&bob)
            .send()
            .await
            .expect("snapshot")
            .json()
            .await
            .expect("json");
        let users = snapshot["users"].as_array().expect("users");
        if users
            .iter()
            .any(|u| u["user_id"] == "alice" && u["status"] == "ONLINE")
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "demo two never saw alice: {snapshot}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = http
        .post(format!("{}/api/logout", one.base))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("logout");
    assert_eq!(response.status(), 204);
    let snapshot: Value = http
        .get(format!("{}/api/presence?scope=acme", two.base))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("snapshot")
        .json()
        .await
        .expect("json");
    let users = snapshot["users"].as_array().expect("users");
    assert!(
        !users.iter().any(|u| u["user_id"] == "alice"),
        "logged out on one, gone on two: {snapshot}"
    );
}

#[tokio::test]
async fn a_demo_on_sqlite_restarted_with_users_connected_leaves_no_ghost_and_keeps_last_seen() {
    let file =
        std::env::temp_dir().join(format!("presence-demo-restart-{}.db", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let url = format!("sqlite://{}", file.display());
    let env = [
        ("PRESENCE_STORE_URL", url.as_str()),
        ("PRESENCE_NODE_NAME", "demo-restart"),
        ("PRESENCE_LINGER", "1s"),
    ];
    let http = reqwest::Client::new();
    let alice_seen = {
        let mut demo = Demo::start(&env);
        let alice = demo.login("alice", "acme").await;
        // Alice is connected when the demo dies.
        let mut socket = demo.connect(&alice).await;
        assert_eq!(next_json(&mut socket).await["type"], "hello");
        let snapshot = next_json(&mut socket).await;
        let alice_now = snapshot["users"]
            .as_array()
            .expect("users")
            .iter()
            .find(|u| u["user_id"] == "alice")
            .cloned()
            .expect("alice in her own snapshot");
        assert_eq!(alice_now["status"], "ONLINE");
        // Let the heartbeats and the record reach the file, then kill -9.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        demo.child.kill().expect("kill");
        demo.child.wait().expect("wait");
        alice_now["last_seen"].clone()
    };

    let demo = Demo::start(&env);
    let bob = demo.login("bob", "acme").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let alice = loop {
        let snapshot: Value = http
            .get(format!(
                "{}/api/presence?scope=acme&user_ids=alice",
                demo.base
            ))
            .bearer_auth(&bob)
            .send()
            .await
            .expect("snapshot")
            .json()
            .await
            .expect("json");
        let alice = snapshot["users"][0].clone();
        if alice["status"] == "OFFLINE" {
            break alice;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a ghost after the restart: {alice}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        alice["last_seen"].is_string(),
        "last_seen survived the restart: {alice}"
    );
    assert!(
        alice["last_seen"].as_str() >= alice_seen.as_str(),
        "last_seen {} is not older than before the restart ({alice_seen})",
        alice["last_seen"]
    );
    drop(demo);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
