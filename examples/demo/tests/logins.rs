//! Logins of the demo as processes: a signed token outlives the process
//! that issued it and holds on every node with the same
//! `PRESENCE_DEMO_SECRET`; without one, the demo says its logins end with
//! it; and a logout holds on every node of a shared store, also after a
//! restart.

mod common;

#[allow(dead_code)] // this file uses the shared stores' cleanup only
#[path = "chaos/servers.rs"]
mod servers;

use std::time::Duration;

use common::{Demo, demo_command, next_json};
use servers::{Prefix, Schema, shared_postgres_url, shared_redis_url, unique};

/// `GET /api/presence?scope=acme` as `token`: the status.
async fn snapshot_status(demo: &Demo, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/api/presence?scope=acme", demo.base))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("an answer")
        .status()
        .as_u16()
}

/// The HTTP status that refused `token`'s socket; `None` when it opened.
async fn upgrade_status(demo: &Demo, token: &str) -> Option<u16> {
    use tokio_tungstenite::tungstenite::Error;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = format!("{}/ws/presence", demo.base.replace("http://", "ws://"))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => None,
        Err(Error::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("the upgrade failed below HTTP: {other}"),
    }
}

#[tokio::test]
async fn a_login_survives_a_restart_with_the_same_secret() {
    let secret = unique("a-fixed-secret-of-this-test");
    let env = [("PRESENCE_DEMO_SECRET", secret.as_str())];
    let mut first = Demo::start(&env);
    let token = first.login("Alice", "acme").await;
    assert_eq!(snapshot_status(&first, &token).await, 200);
    assert!(first.stop().success(), "a clean exit");

    let second = Demo::start(&env);
    assert_ne!(first.base, second.base, "another process, another port");
    assert_eq!(
        snapshot_status(&second, &token).await,
        200,
        "still signed in"
    );
    let mut socket = second.connect(&token).await;
    assert_eq!(next_json(&mut socket).await["type"], "hello");
    let snapshot = next_json(&mut socket).await;
    assert_eq!(snapshot["type"], "snapshot");
    assert!(
        snapshot["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["user_id"] == "alice" && u["status"] == "ONLINE"),
        "{snapshot}"
    );
    // The browser's cookie too, and the new process lists her as a member.
    let page = reqwest::Client::new()
        .get(format!("{}/members", second.base))
        .header("cookie", format!("presence_demo_login={token}"))
        .send()
        .await
        .expect("the members page");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("html");
    assert!(
        page.contains(r#"class="member" data-user-id="alice""#),
        "{page}"
    );
}

#[tokio::test]
async fn without_a_secret_the_demo_says_so_and_a_restart_ends_its_logins() {
    let log = std::env::temp_dir().join(format!("{}.log", unique("presence-demo-no-secret")));
    let start = || {
        let mut command = demo_command(&[]);
        command.env_remove("PRESENCE_DEMO_SECRET");
        command.stderr(std::fs::File::create(&log).expect("a log file"));
        Demo::spawn(command)
    };
    let mut first = start();
    let said = std::fs::read_to_string(&log).expect("the log");
    assert!(
        said.contains("PRESENCE_DEMO_SECRET is not set")
            && said.contains("will not survive a restart nor work across nodes"),
        "{said}"
    );
    assert!(said.contains("WARN"), "a warning: {said}");
    let token = first.login("Alice", "acme").await;
    assert_eq!(snapshot_status(&first, &token).await, 200);
    assert!(first.stop().success(), "a clean exit");

    let second = start();
    assert_eq!(
        snapshot_status(&second, &token).await,
        401,
        "another secret"
    );
    assert_eq!(upgrade_status(&second, &token).await, Some(401));
    drop(second);
    let _ = std::fs::remove_file(&log);
}

/// Alice signs in through node one and is accepted by node two; she logs
/// out through node one: node two refuses her token, also after it
/// restarts, and so does node one.
async fn a_logout_holds_on_every_node(env: &[(&str, &str)]) {
    let one = Demo::start(env);
    let mut two = Demo::start(env);
    let token = one.login("alice", "acme").await;
    assert_eq!(snapshot_status(&two, &token).await, 200, "one cluster");
    let logout = reqwest::Client::new()
        .post(format!("{}/api/logout", one.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);

    assert_eq!(snapshot_status(&one, &token).await, 401, "on node one");
    assert_eq!(snapshot_status(&two, &token).await, 401, "on node two");
    assert_eq!(upgrade_status(&two, &token).await, Some(401));
    assert!(two.stop().success(), "a clean exit");
    let two = Demo::start(env);
    assert_eq!(
        snapshot_status(&two, &token).await,
        401,
        "after node two's restart"
    );
    assert_eq!(upgrade_status(&two, &token).await, Some(401));
    // Other logins are untouched.
    let bob = two.login("bob", "acme").await;
    assert_eq!(snapshot_status(&one, &bob).await, 200);
}

#[tokio::test]
async fn a_logout_holds_on_every_node_of_one_redis() {
    let url = shared_redis_url();
    let prefix = Prefix::fresh(&url);
    a_logout_holds_on_every_node(&[
        ("PRESENCE_STORE_URL", url.as_str()),
        ("PRESENCE_REDIS_PREFIX", prefix.name.as_str()),
    ])
    .await;
}

#[tokio::test]
async fn a_logout_holds_on_every_node_of_one_postgres() {
    let url = shared_postgres_url();
    let schema = Schema::fresh(&url);
    a_logout_holds_on_every_node(&[
        ("PRESENCE_STORE_URL", url.as_str()),
        ("PRESENCE_PG_SCHEMA", schema.name.as_str()),
    ])
    .await;
}

#[tokio::test]
async fn a_logout_survives_a_restart_on_sqlite() {
    let file = std::env::temp_dir().join(format!("{}.db", unique("presence-demo-logout")));
    let url = format!("sqlite://{}", file.display());
    let env = [("PRESENCE_STORE_URL", url.as_str())];
    let mut demo = Demo::start(&env);
    let token = demo.login("alice", "acme").await;
    let logout = reqwest::Client::new()
        .post(format!("{}/api/logout", demo.base))
        .bearer_auth(&token)
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    assert!(demo.stop().success(), "a clean exit");
    let demo = Demo::start(&env);
    assert_eq!(
        snapshot_status(&demo, &token).await,
        401,
        "still logged out"
    );
    drop(demo);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
    }
}
