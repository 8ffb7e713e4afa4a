//! The browser client's handling of batches and of snapshots in parts, run
//! in node against a fake WebSocket (node is installed for the
//! `node --check` test as well).

use std::process::Command;

/// Loads the client (the path is its argument) behind a fake WebSocket;
/// each test's script follows it.
const PRELUDE: &str = r#"
console.debug = () => {};
const sockets = [];
class FakeSocket {
  constructor(url) { this.url = url; this.readyState = 1; this.sent = []; sockets.push(this); }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() {}
}
const root = { WebSocket: FakeSocket, location: { href: 'https://app.example/page' } };
globalThis.window = root;
require(process.argv[2]);
const client = root.Presence.connect({});
const ws = sockets[0];
const receive = (frame) => ws.onmessage({ data: JSON.stringify(frame) });
receive({ type: 'hello', session_id: 's', user_id: 'me', heartbeat_interval_ms: 30000 });
"#;

/// Feeds the client a batch and prints what it shows as JSON.
const BATCHES: &str = r#"
receive({ type: 'snapshot', scope: 'acme', users: [{ user_id: 'bob', status: 'ONLINE', last_seen: null, v: 3 }] });
const seen = [];
client.on('presence', (e) => seen.push(`${e.user_id}:${e.status}:${e.v}`));
receive({ type: 'presence_batch', scope: 'acme', events: [
  { user_id: 'bob', status: 'AWAY', last_seen: '2026-01-01T00:00:00Z', v: 4 },
  { user_id: 'alice', status: 'ONLINE', last_seen: '2026-01-01T00:00:01Z', v: 1 },
  { user_id: 'bob', status: 'BUSY', last_seen: '2026-01-01T00:00:02Z', v: 2 },
  { user_id: 'bob', status: 'OFFLINE', last_seen: '2026-01-01T00:00:03Z', v: 5 },
] });
const plain = root.Presence.connect({ batch: false, url: 'wss://elsewhere.example/ws/presence' });
console.log(JSON.stringify({
  url: ws.url,
  plainUrl: sockets[1].url,
  seen,
  bob: client.get('bob').status,
  alice: client.get('alice').status,
}));
client.close(); plain.close();
"#;

/// Runs the prelude and `script` in node; what the script prints, as JSON.
fn run_client(name: &str, script: &str) -> serde_json::Value {
    let dir = std::env::temp_dir().join(format!("presence-client-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let client = dir.join("client.js");
    let harness = dir.join("harness.js");
    std::fs::write(&client, presence_axum::CLIENT_JS).expect("write client");
    std::fs::write(&harness, format!("{PRELUDE}{script}")).expect("write harness");
    let run = Command::new("node")
        .arg(&harness)
        .arg(&client)
        .output()
        .expect("node is installed (.ci/run installs it)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        run.status.success(),
        "the harness failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    serde_json::from_slice(&run.stdout).expect("the harness prints JSON")
}

#[test]
fn the_client_asks_for_batches_and_applies_them_in_order_dropping_stale_entries() {
    let shown = run_client("batch", BATCHES);
    assert_eq!(shown["url"], "wss://app.example/ws/presence?batch=1");
    assert_eq!(
        shown["plainUrl"], "wss://elsewhere.example/ws/presence",
        "batch: false opts out"
    );
    assert_eq!(
        shown["seen"],
        serde_json::json!(["bob:AWAY:4", "alice:ONLINE:1", "bob:OFFLINE:5"]),
        "in order, bob's v2 (older than the snapshot's v3) dropped"
    );
    assert_eq!(shown["bob"], "OFFLINE");
    assert_eq!(shown["alice"], "ONLINE");
}

/// Feeds the client a snapshot in two parts and prints what it shows after
/// each.
const SNAPSHOT_PARTS: &str = r#"
const user = (user_id, v) => ({ user_id, status: 'ONLINE', last_seen: null, v });
receive({ type: 'snapshot', scope: 'acme', users: [user('carol', 1)] });
const snapshots = [];
client.on('snapshot', (e) => snapshots.push(e.users.map((u) => u.user_id)));
receive({ type: 'snapshot', scope: 'acme', users: [user('alice', 2)], more: true });
const afterFirstPart = { alice: client.get('alice'), carol: client.get('carol').status, snapshots: snapshots.length };
receive({ type: 'snapshot', scope: 'acme', users: [user('bob', 3)] });
console.log(JSON.stringify({
  afterFirstPart,
  alice: client.get('alice').status,
  bob: client.get('bob').status,
  carol: client.get('carol').status,
  snapshots,
}));
client.close();
"#;

#[test]
fn a_snapshot_in_parts_is_applied_whole_when_its_last_part_arrives() {
    let shown = run_client("snapshot-parts", SNAPSHOT_PARTS);
    assert_eq!(
        shown["afterFirstPart"],
        serde_json::json!({"alice": null, "carol": "ONLINE", "snapshots": 0}),
        "nothing applied before the last part (alice unknown yet, carol kept)"
    );
    assert_eq!(shown["alice"], "ONLINE");
    assert_eq!(shown["bob"], "ONLINE");
    assert_eq!(
        shown["carol"], "OFFLINE",
        "listed in neither part: OFFLINE once the snapshot is whole"
    );
    assert_eq!(shown["snapshots"], serde_json::json!([["alice", "bob"]]));
}
