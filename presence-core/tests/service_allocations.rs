//! Allocations on the service path a host calls (issue 16): a heartbeat
//! through `SessionHandle::heartbeat` allocates nothing, and a change that
//! a watcher hears (`Presence::set_status`, delivered and received) costs a
//! small fixed number. One test in this binary: dhat's counts are
//! process-wide.

use std::sync::Arc;
use std::time::Duration;

use presence_core::{Delivery, ManualClock, Presence, RequestedStatus, ScopeId, SessionSpec};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// What one change may allocate, heard by one watcher: the store's
/// transition (its scope list), the event shared by every watcher, and the
/// service's bookkeeping (6 measured on 2026-12-03). A change that
/// allocates more fails here.
const ALLOCATIONS_PER_CHANGE: u64 = 6;
/// One-off growth of a queue or map during the measured changes.
const ONE_OFF: u64 = 32;

#[test]
fn heartbeats_allocate_nothing_and_a_change_a_small_fixed_number() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let clock = Arc::new(ManualClock::default());
        let presence = Presence::builder()
            .clock(clock.clone())
            .batch_interval(Duration::ZERO)
            .build()
            .await
            .expect("a service");
        let alice = presence
            .open_session(SessionSpec::new("alice", "login-a").scope("acme"))
            .await
            .expect("open");
        let (mut watcher, _) = presence.watch(&ScopeId::from("acme")).await.expect("watch");
        let user = alice.user().clone();
        // Warm up: the maps and queues reach their working size.
        for i in 0..20 {
            clock.advance(Duration::from_millis(10));
            alice.heartbeat().expect("live");
            let status = if i % 2 == 0 {
                RequestedStatus::Busy
            } else {
                RequestedStatus::Online
            };
            presence.set_status(&user, status, None).await.expect("set");
            watcher.recv().await.expect("heard");
        }

        let profiler = dhat::Profiler::builder().testing().build();
        let start = dhat::HeapStats::get().total_blocks;
        for _ in 0..1000 {
            clock.advance(Duration::from_millis(10));
            alice.heartbeat().expect("live");
        }
        let per_heartbeat = dhat::HeapStats::get().total_blocks - start;

        const CHANGES: u64 = 1000;
        let start = dhat::HeapStats::get().total_blocks;
        for i in 0..CHANGES {
            let status = if i % 2 == 0 {
                RequestedStatus::Busy
            } else {
                RequestedStatus::Online
            };
            presence.set_status(&user, status, None).await.expect("set");
            match watcher.recv().await {
                Some(Delivery::Event(event)) => assert_eq!(event.user_id, user),
                other => panic!("expected the change, got {other:?}"),
            }
        }
        let changes = dhat::HeapStats::get().total_blocks - start;
        drop(profiler);

        assert_eq!(
            per_heartbeat, 0,
            "1000 heartbeats allocated {per_heartbeat} blocks"
        );
        let per_change = changes / CHANGES;
        println!("allocations per change heard by one watcher: {per_change} ({changes} in all)");
        assert!(
            changes <= ALLOCATIONS_PER_CHANGE * CHANGES + ONE_OFF,
            "{changes} allocations for {CHANGES} changes: more than {ALLOCATIONS_PER_CHANGE} each"
        );
    });
}
