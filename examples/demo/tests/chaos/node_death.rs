//! `kill -9` of one of two demos sharing a store, with clients on both.
//!
//! Node A holds `ann` and `art`, node B holds `bea`, `bob` and the watcher
//! `wes`, and `dua` has a socket on each. After A is killed, B must show
//! `ann` and `art` OFFLINE within A's lease, the sweep that finds it run
//! out, the linger and one sweep,
//! say nothing about the others, and keep `dua` ONLINE. A restarted with
//! the same node name must bring nobody back; and a user connected to A
//! when it dies and restarts at once goes OFFLINE too (the restart clears
//! what its previous run left).

use std::time::{Duration, Instant};

use crate::client::{Client, mentions, says};
use crate::nodes::{
    HEARTBEAT, LINGER, NODE_LEASE, Node, ORG, SWEEP, scope_statuses, status_in, thresholds,
};

/// Long enough that a heartbeat flushed to the store once a second never
/// looks lapsed to the other node, even on a loaded machine.
const SESSION_TTL: Duration = Duration::from_secs(3);
/// Scheduling slack on a busy 2-core CI machine.
const SLACK: Duration = Duration::from_millis(1500);

/// What one run measured.
#[derive(Debug)]
pub(crate) struct Figures {
    /// From the kill to B's OFFLINE event, for each user only on A, in the
    /// order B told them.
    pub(crate) offline_after_kill: Vec<(&'static str, Duration)>,
    /// From the restart of a killed node to the OFFLINE of its user.
    pub(crate) offline_after_restart: Duration,
}

impl Figures {
    pub(crate) fn print(&self, store: &str) {
        eprintln!(
            "chaos figure: {store} kill -9 (node lease {NODE_LEASE:?}, session_ttl {SESSION_TTL:?}, linger {LINGER:?}): \
             A-only users OFFLINE on B after {:?}; a user of a node killed and \
             restarted at once OFFLINE {:?} after the restart",
            self.offline_after_kill, self.offline_after_restart
        );
    }
}

/// Runs the scenario on two demos started with `store` (URL and prefix or
/// schema).
pub(crate) async fn kill_one_of_two_nodes(store: &[(&'static str, String)]) -> Figures {
    let mut env: Vec<(&str, String)> = store.to_vec();
    env.extend(thresholds(SESSION_TTL));
    let env_a = [env.clone(), vec![("PRESENCE_NODE_NAME", "chaos-a".into())]].concat();
    let env_b = [env, vec![("PRESENCE_NODE_NAME", "chaos-b".into())]].concat();
    let mut a = Node::start(&env_a);
    let mut b = Node::start(&env_b);

    let wes = b.demo.login("wes", ORG).await;
    let mut watcher = Client::open(&b.demo, "wes", &wes, HEARTBEAT).await;
    let mut on_a = Vec::new();
    for name in ["ann", "art", "dua"] {
        let token = a.demo.login(name, ORG).await;
        on_a.push(Client::open(&a.demo, name, &token, HEARTBEAT).await);
    }
    let mut on_b = Vec::new();
    for name in ["bea", "bob", "dua"] {
        let token = b.demo.login(name, ORG).await;
        on_b.push(Client::open(&b.demo, name, &token, HEARTBEAT).await);
    }
    let everyone = ["wes", "ann", "art", "dua", "bea", "bob"];
    let all_online: Vec<(&str, &str)> = everyone.iter().map(|u| (*u, "ONLINE")).collect();
    crate::nodes::until_shown(&b.demo, &wes, Duration::from_secs(10), &all_online).await;
    // The logins' own HTTP sessions lapse meanwhile, unseen: the sockets
    // hold every user.
    watcher.listen(SESSION_TTL + SWEEP).await;
    for user in everyone {
        assert_eq!(watcher.shows(ORG, user), "ONLINE", "{user} before the kill");
    }

    a.kill();
    let killed = Instant::now();
    // A's sockets' heartbeats stayed on A: its lease speaks for them.
    let bound = NODE_LEASE + SWEEP + LINGER + SWEEP + SLACK;
    let mut offline_after_kill = Vec::new();
    // In whichever order B's sweep finds them.
    let mut pending = vec!["ann", "art"];
    while !pending.is_empty() {
        let (at, frame) = watcher
            .wait_for_frame(
                bound.saturating_sub(killed.elapsed()),
                &format!("{} OFFLINE", pending.join(" and ")),
                |f| pending.iter().any(|user| says(f, user, "OFFLINE")),
            )
            .await;
        if let Some(told) = pending.iter().position(|user| frame["user_id"] == *user) {
            offline_after_kill.push((pending.remove(told), at - killed));
        }
    }
    watcher.listen(SWEEP).await;
    for user in ["wes", "dua", "bea", "bob"] {
        let told: Vec<_> = watcher
            .frames_since(killed)
            .filter(|f| mentions(f, user))
            .collect();
        assert!(
            told.is_empty(),
            "{user} is untouched by A's death: {told:?}"
        );
    }
    for client in &mut on_b {
        assert_eq!(client.closed(), None, "{} stays connected", client.name());
    }
    let statuses = scope_statuses(&b.demo, &wes).await.expect("B answers");
    for (user, status) in [
        ("ann", "OFFLINE"),
        ("art", "OFFLINE"),
        ("dua", "ONLINE"),
        ("bea", "ONLINE"),
        ("bob", "ONLINE"),
    ] {
        assert_eq!(status_in(&statuses, user), status, "{user}: {statuses:?}");
    }

    // A comes back under the same name: nobody of its previous run returns.
    drop(on_a);
    let restarted = Instant::now();
    let mut a = Node::start(&env_a);
    let vic = a.demo.login("vic", ORG).await;
    let mut vic_client = Client::open(&a.demo, "vic", &vic, HEARTBEAT).await;
    watcher
        .wait_for(SWEEP + SLACK, "vic ONLINE through the restarted A", |f| {
            says(f, "vic", "ONLINE")
        })
        .await;
    vic_client.listen(SWEEP).await;
    for user in ["ann", "art"] {
        let ghost: Vec<_> = watcher
            .frames_since(restarted)
            .filter(|f| mentions(f, user))
            .collect();
        assert!(ghost.is_empty(), "{user} stays gone: {ghost:?}");
        assert_eq!(vic_client.shows(ORG, user), "OFFLINE", "{user} seen on A");
    }
    assert_eq!(vic_client.shows(ORG, "dua"), "ONLINE", "dua seen on A");

    // A dies with vic connected and comes back at once: the new run ends
    // what the old one left, before vic's session would have lapsed.
    a.kill();
    drop(vic_client);
    let killed = Instant::now();
    let a = Node::start(&env_a);
    let restarted = Instant::now();
    let at = watcher
        .wait_for(bound, "vic OFFLINE after A's restart", |f| {
            says(f, "vic", "OFFLINE")
        })
        .await;
    let offline_after_restart = at.saturating_duration_since(restarted);
    assert!(
        at - killed < SESSION_TTL + LINGER + SWEEP,
        "vic OFFLINE {:?} after the kill, {offline_after_restart:?} after the restart",
        at - killed
    );
    watcher.listen(SWEEP).await;
    assert_eq!(watcher.shows(ORG, "vic"), "OFFLINE", "no ghost of vic");
    assert_eq!(watcher.closed(), None, "the watcher stays connected");
    b.assert_alive_and_sane();
    drop(a);
    Figures {
        offline_after_kill,
        offline_after_restart,
    }
}
