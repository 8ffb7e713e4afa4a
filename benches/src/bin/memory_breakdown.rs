//! What a present user costs in heap bytes, part by part (issue 16):
//! counted by dhat, not read from RSS, so each part is exact.
//!
//! ```text
//! cargo run --release -p presence-benches --bin memory-breakdown -- [USERS]
//! ```
//!
//! Each user has one session in one scope, with its own login, as in the
//! `service` bench. The parts: the user's identifiers themselves (what the
//! host hands in), the store's records and indexes (`MemoryStore`), and
//! what the service adds per session (its local registry and the handle
//! the host keeps).

use std::sync::Arc;

use chrono::Utc;
use presence_core::store::{NewSession, PresenceStore, Update, UserOp};
use presence_core::{
    LoginId, MemoryStore, NodeId, Presence, PresenceConfig, ScopeId, SessionHandle, SessionId,
    SessionSpec, UserId,
};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn heap_bytes() -> usize {
    dhat::HeapStats::get().curr_bytes
}

fn ids(i: usize) -> (UserId, LoginId, SessionId) {
    (
        UserId::from(format!("user-{i}")),
        LoginId::from(format!("login-{i}")),
        SessionId::from(format!("s-{i}")),
    )
}

fn main() {
    let users: usize = std::env::args()
        .nth(1)
        .and_then(|arg| arg.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _profiler = dhat::Profiler::builder().testing().build();
    let per_user = |bytes: usize| bytes as f64 / users as f64;

    // The identifiers alone, as a host holds them.
    let base = heap_bytes();
    let held: Vec<(UserId, LoginId, SessionId)> = (0..users).map(ids).collect();
    let identifiers = heap_bytes() - base;

    // The store alone: one open per user.
    let store = Arc::new(MemoryStore::new());
    let config = PresenceConfig::default();
    let node = NodeId::new("bench");
    let scope = ScopeId::from("org");
    let base = heap_bytes();
    runtime.block_on(async {
        for (user, login, session) in &held {
            let op = UserOp::Open(NewSession {
                id: session.clone(),
                login: login.clone(),
                node: node.clone(),
                scopes: vec![scope.clone()],
                metadata: Default::default(),
                liveness: Default::default(),
                kind: None,
            });
            store
                .apply(Update {
                    user,
                    op: &op,
                    now: Utc::now(),
                    node: &node,
                    config: &config,
                    keep_change: false,
                })
                .await
                .expect("open");
        }
    });
    let store_bytes = heap_bytes() - base;
    drop(store);

    // The service: store, local registry and handles.
    let base = heap_bytes();
    let (presence, handles) = runtime.block_on(async {
        let presence = Presence::builder()
            .build()
            .await
            .expect("a service on the memory store");
        let mut handles: Vec<SessionHandle> = Vec::with_capacity(users);
        for (user, login, session) in &held {
            handles.push(
                presence
                    .open_session(
                        SessionSpec::new(user.clone(), login.clone())
                            .scope("org")
                            .id(session.clone()),
                    )
                    .await
                    .expect("open"),
            );
        }
        (presence, handles)
    });
    let service_bytes = heap_bytes() - base;
    let handle_size = std::mem::size_of::<SessionHandle>();

    println!("heap bytes per present user ({users} users, one session each, one scope):");
    println!(
        "  identifiers the host hands in (user, login, session id): {:.0}",
        per_user(identifiers)
    );
    println!(
        "  MemoryStore alone (records, session map, scope, node and deadline indexes): {:.0}",
        per_user(store_bytes)
    );
    println!(
        "  Presence in all (store + local registry + the handles, {handle_size} B each inline): {:.0}",
        per_user(service_bytes)
    );
    println!(
        "  of which the service adds: {:.0}",
        per_user(service_bytes.saturating_sub(store_bytes))
    );
    println!(
        "  sizes inline: UserRecord {} B, SessionRecord {} B, NewSession {} B",
        std::mem::size_of::<presence_core::store::UserRecord>(),
        std::mem::size_of::<presence_core::store::SessionRecord>(),
        std::mem::size_of::<NewSession>(),
    );
    drop((handles, presence, held));
}
