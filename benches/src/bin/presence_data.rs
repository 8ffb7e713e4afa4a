//! What issue 19's presence data costs, through the public `Presence` API
//! on the memory store:
//!
//! ```text
//! cargo run --release -p presence-benches --bin presence-data -- [USERS]
//! ```
//!
//! - heap bytes per present user (dhat): one session and nothing more, as
//!   the baseline; then two sessions (web, mobile) of the same user, and
//!   the same with a custom status and a 100-byte app state;
//! - events per change: what a whole-scope watcher of each of a user's
//!   three scopes is told for a status change (the baseline), a
//!   text-only custom status change, a state change, hiding last seen, and
//!   a change to the same value;
//! - the wire: a `presence` frame's bytes with and without details;
//! - a large scope: what a whole-scope watcher and a counts watcher of a
//!   1,000-member scope receive while its members change for 2 s;
//! - changes per second: `set_custom_status` and `set_session_state`
//!   against `set_status` (the baseline) in the same run, one watcher per
//!   scope.

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_axum::ServerMessage;
use presence_core::{
    AppState, CustomStatus, ManualClock, MemoryStore, NodeId, Presence, PresenceConfig,
    RequestedStatus, ScopeId, SessionHandle, SessionKind, SessionSpec, Subscription, UserId,
};
use serde_json::json;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn heap_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

async fn service() -> Presence {
    Presence::builder()
        .store(MemoryStore::new())
        .clock(Arc::new(ManualClock::default()))
        .config(PresenceConfig::default())
        .node(NodeId::new("bench"))
        .batch_interval(Duration::ZERO)
        .build()
        .await
        .expect("a service")
}

fn user(i: usize) -> UserId {
    UserId::from(format!("user-{i}"))
}

fn meeting() -> CustomStatus {
    CustomStatus::new(Some("In a meeting".into()), Some("📅".into()), None).expect("valid")
}

fn state_100_bytes(i: usize) -> AppState {
    // {"in_call":true,"page":"…"}: 100 bytes of JSON.
    let page = format!("{i:0>71}");
    let state = AppState::new(json!({"in_call": true, "page": page})).expect("valid");
    debug_assert_eq!(serde_json::to_vec(&state).map(|v| v.len()).ok(), Some(100));
    state
}

/// Heap bytes per user of `users` users opened by `open`. The service and
/// its sessions are kept (in `kept`) until every measurement is done: a
/// teardown freeing memory during the next measurement would skew it.
async fn per_user<F, Fut>(
    users: usize,
    kept: &mut Vec<(Presence, Vec<Vec<SessionHandle>>)>,
    open: F,
) -> f64
where
    F: Fn(Presence, usize) -> Fut,
    Fut: std::future::Future<Output = Vec<SessionHandle>>,
{
    let presence = service().await;
    let base = heap_bytes();
    let mut held = Vec::with_capacity(users);
    for i in 0..users {
        held.push(open(presence.clone(), i).await);
    }
    let bytes = heap_bytes().saturating_sub(base);
    kept.push((presence, held));
    bytes as f64 / users as f64
}

async fn open(
    presence: &Presence,
    i: usize,
    login: &str,
    kind: Option<SessionKind>,
) -> SessionHandle {
    let mut spec = SessionSpec::new(user(i), format!("{login}-{i}")).scopes(["a", "b", "c"]);
    if let Some(kind) = kind {
        spec = spec.kind(kind);
    }
    presence.open_session(spec).await.expect("open")
}

async fn memory(users: usize) {
    let mut kept = Vec::new();
    let plain = per_user(users, &mut kept, |p, i| async move {
        vec![open(&p, i, "l", None).await]
    })
    .await;
    let two_bare = per_user(users, &mut kept, |p, i| async move {
        vec![
            open(&p, i, "web", None).await,
            open(&p, i, "phone", None).await,
        ]
    })
    .await;
    let two = per_user(users, &mut kept, |p, i| async move {
        vec![
            open(&p, i, "web", Some(SessionKind::web())).await,
            open(&p, i, "phone", Some(SessionKind::mobile())).await,
        ]
    })
    .await;
    let full = per_user(users, &mut kept, |p, i| async move {
        let web = open(&p, i, "web", Some(SessionKind::web())).await;
        let phone = open(&p, i, "phone", Some(SessionKind::mobile())).await;
        p.set_custom_status(&user(i), Some(meeting()))
            .await
            .expect("custom");
        p.set_session_state(&user(i), web.id(), Some(state_100_bytes(i)))
            .await
            .expect("state");
        vec![web, phone]
    })
    .await;
    println!("heap bytes per present user ({users} users, 3 scopes each, memory store + service):");
    println!("  one session, no details (baseline)          {plain:>8.0}");
    println!(
        "  two sessions of no kind                     {two_bare:>8.0}  ({:+.0})",
        two_bare - plain
    );
    println!(
        "  web + mobile sessions (devices shown)       {two:>8.0}  ({:+.0} over two of no kind)",
        two - two_bare
    );
    println!(
        "  + custom status + 100-byte state            {full:>8.0}  ({:+.0} over two sessions)",
        full - two
    );
}

/// Events a whole-scope watcher of each of the user's scopes got.
fn told(watchers: &mut [Subscription]) -> usize {
    let mut events = 0;
    for watcher in watchers {
        while let Some(delivery) = watcher.try_recv() {
            events += delivery.events().len();
        }
    }
    events
}

async fn events_per_change() {
    let presence = service().await;
    let mut watchers = Vec::new();
    for scope in ["a", "b", "c"] {
        watchers.push(
            presence
                .watch(&ScopeId::from(scope))
                .await
                .expect("watch")
                .0,
        );
    }
    let alice = user(0);
    let web = open(&presence, 0, "web", Some(SessionKind::web())).await;
    told(&mut watchers);
    println!("events per change, user in 3 scopes, a watcher of each:");
    presence
        .set_status(&alice, RequestedStatus::Busy, None)
        .await
        .expect("busy");
    println!(
        "  status ONLINE → BUSY (baseline)             {}",
        told(&mut watchers)
    );
    presence
        .set_custom_status(&alice, Some(meeting()))
        .await
        .expect("custom");
    println!(
        "  custom status set                           {}",
        told(&mut watchers)
    );
    let lunch = CustomStatus::new(Some("Lunch".into()), Some("📅".into()), None).expect("valid");
    presence
        .set_custom_status(&alice, Some(lunch.clone()))
        .await
        .expect("custom");
    println!(
        "  custom text only changed                    {}",
        told(&mut watchers)
    );
    presence
        .set_custom_status(&alice, Some(lunch))
        .await
        .expect("custom");
    println!(
        "  the same custom status again                {}",
        told(&mut watchers)
    );
    presence
        .set_session_state(&alice, web.id(), Some(state_100_bytes(1)))
        .await
        .expect("state");
    println!(
        "  session state set                           {}",
        told(&mut watchers)
    );
    presence
        .set_last_seen_hidden(&alice, true)
        .await
        .expect("hide");
    println!(
        "  last seen hidden                            {}",
        told(&mut watchers)
    );
    presence
        .set_status(&alice, RequestedStatus::Invisible, None)
        .await
        .expect("invisible");
    told(&mut watchers);
    presence
        .set_custom_status(&alice, Some(meeting()))
        .await
        .expect("custom");
    presence
        .set_session_state(&alice, web.id(), Some(state_100_bytes(2)))
        .await
        .expect("state");
    println!(
        "  custom + state while INVISIBLE              {}",
        told(&mut watchers)
    );
    drop(web);
}

async fn wire() {
    let presence = service().await;
    let (mut watcher, _) = presence.watch(&"acme".into()).await.expect("watch");
    let bare = presence
        .open_session(SessionSpec::new("alice", "l0").scope("acme"))
        .await
        .expect("open");
    let plain = frame(&mut watcher);
    let spec = SessionSpec::new("alice", "l1").scope("acme");
    let web = presence
        .open_session(spec.kind(SessionKind::web()))
        .await
        .expect("open");
    frame(&mut watcher);
    let phone = presence
        .open_session(
            SessionSpec::new("alice", "l2")
                .scope("acme")
                .kind(SessionKind::mobile()),
        )
        .await
        .expect("open");
    frame(&mut watcher);
    presence
        .set_custom_status(&"alice".into(), Some(meeting()))
        .await
        .expect("custom");
    frame(&mut watcher);
    presence
        .set_session_state(
            &"alice".into(),
            web.id(),
            Some(AppState::new(json!({"in_call": true})).expect("valid")),
        )
        .await
        .expect("state");
    let full = frame(&mut watcher);
    println!("a presence frame on the wire (presence-axum's encoder):");
    println!(
        "  a session of no kind, no details            {:>5} bytes",
        plain.len()
    );
    println!(
        "  web + mobile, custom status, in_call state   {:>5} bytes ({:+})",
        full.len(),
        full.len() as i64 - plain.len() as i64
    );
    println!("    {full}");
    drop((bare, web, phone));
}

fn frame(watcher: &mut Subscription) -> String {
    let mut last = String::new();
    while let Some(delivery) = watcher.try_recv() {
        for event in delivery.events() {
            last = ServerMessage::presence(event.event()).to_json();
        }
    }
    last
}

async fn throughput(users: usize) {
    let presence = service().await;
    let mut watchers = Vec::new();
    for scope in ["a", "b", "c"] {
        watchers.push(
            presence
                .watch(&ScopeId::from(scope))
                .await
                .expect("watch")
                .0,
        );
    }
    let mut sessions = Vec::with_capacity(users);
    for i in 0..users {
        sessions.push(open(&presence, i, "l", Some(SessionKind::web())).await);
    }
    told(&mut watchers);
    let told_so_far = |p: &Presence| {
        let stats = p.fanout_stats();
        stats.delivered + stats.dropped
    };
    let mut before = told_so_far(&presence);
    let mut round = |label: &'static str, took: Duration, watchers: &mut [Subscription]| {
        told(watchers);
        let now = told_so_far(&presence);
        let events = now - before;
        before = now;
        let rate = users as f64 / took.as_secs_f64();
        println!(
            "  {label:<44}{rate:>10.0}/s  ({:.2} events per change)",
            events as f64 / users as f64
        );
        rate
    };
    println!(
        "changes per second ({users} users in 3 scopes, one watcher per scope; \
         three rounds, each value changed every round):"
    );
    let mut rates = [Vec::new(), Vec::new(), Vec::new()];
    for round_number in 0..3 {
        let started = Instant::now();
        for i in 0..users {
            let status = if (i + round_number) % 2 == 0 {
                RequestedStatus::Busy
            } else {
                RequestedStatus::Away
            };
            presence
                .set_status(&user(i), status, None)
                .await
                .expect("status");
        }
        rates[0].push(round(
            "set_status (baseline)",
            started.elapsed(),
            &mut watchers,
        ));
        let started = Instant::now();
        let texts = ["In a meeting", "Lunch", "Commuting"];
        for i in 0..users {
            let custom =
                CustomStatus::new(Some(texts[round_number].into()), Some("📅".into()), None)
                    .expect("valid");
            presence
                .set_custom_status(&user(i), Some(custom))
                .await
                .expect("custom");
        }
        rates[1].push(round("set_custom_status", started.elapsed(), &mut watchers));
        let started = Instant::now();
        for (i, session) in sessions.iter().enumerate() {
            presence
                .set_session_state(
                    &user(i),
                    session.id(),
                    Some(state_100_bytes(i * 3 + round_number)),
                )
                .await
                .expect("state");
        }
        rates[2].push(round(
            "set_session_state (100 bytes)",
            started.elapsed(),
            &mut watchers,
        ));
    }
    // The median of the rounds.
    let median = |rates: &mut Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let base = median(&mut rates[0]);
    let custom = median(&mut rates[1]);
    let state = median(&mut rates[2]);
    println!(
        "  ratios to set_status: custom {:.2}×, state {:.2}×",
        custom / base,
        state / base
    );
}

/// A large scope's watchers: what a whole-scope watcher and a counts
/// watcher receive while its members change for two seconds.
async fn large_scope() {
    const MEMBERS: usize = 1_000;
    const WATCHERS: usize = 100;
    let presence = Presence::builder()
        .store(MemoryStore::new())
        .clock(Arc::new(ManualClock::default()))
        .config(PresenceConfig::default())
        .node(NodeId::new("bench"))
        .subscriber_capacity(1 << 20)
        .build()
        .await
        .expect("a service");
    let hall = ScopeId::from("hall");
    let mut sessions = Vec::with_capacity(MEMBERS);
    for i in 0..MEMBERS {
        let spec = SessionSpec::new(user(i), format!("l-{i}")).scope("hall");
        sessions.push(presence.open_session(spec).await.expect("open"));
    }
    let mut whole = Vec::new();
    let mut counting = Vec::new();
    for _ in 0..WATCHERS {
        whole.push(presence.watch(&hall).await.expect("watch").0);
        counting.push(
            presence
                .watch_counts(&hall, &[user(0)])
                .await
                .expect("watch")
                .0,
        );
    }
    let started = Instant::now();
    let mut changes = 0_u64;
    while started.elapsed() < Duration::from_secs(2) {
        let i = changes as usize % MEMBERS;
        let status = if (changes as usize / MEMBERS).is_multiple_of(2) {
            RequestedStatus::Busy
        } else {
            RequestedStatus::Online
        };
        presence
            .set_status(&user(i), status, None)
            .await
            .expect("status");
        changes += 1;
        if changes.is_multiple_of(256) {
            tokio::task::yield_now().await;
        }
    }
    // The last tick's counts.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let received = |watchers: &mut [Subscription]| {
        let (mut counts, mut events) = (0_usize, 0_usize);
        for watcher in watchers.iter_mut() {
            while let Some(delivery) = watcher.try_recv() {
                if matches!(delivery, presence_core::Delivery::Occupancy(_)) {
                    counts += 1;
                }
                events += delivery.events().len();
            }
        }
        (
            counts as f64 / watchers.len() as f64,
            events / watchers.len(),
        )
    };
    let (_, whole_events) = received(&mut whole);
    let (counts, count_events) = received(&mut counting);
    println!(
        "a {MEMBERS}-member scope, {changes} changes in 2 s (threshold 200, counts every 1 s), per watcher:"
    );
    println!("  whole-scope watcher                         {whole_events:>7} events");
    println!(
        "  counts watcher naming one member            {count_events:>7} events (the named member's), {counts:.1} counts"
    );
    drop(sessions);
}

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // The rates without dhat (its backtrace per allocation would weigh on
    // them), first: the heap measurement's teardown would run beside them.
    runtime.block_on(async {
        events_per_change().await;
        wire().await;
        large_scope().await;
        throughput(users).await;
        // The last service's sessions close in tasks: done before the heap
        // is measured.
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let _profiler = dhat::Profiler::builder().testing().build();
    runtime.block_on(memory(users));
}
