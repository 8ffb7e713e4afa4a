//! A runnable walk through `presence-core` on the embedded memory store.
//!
//! A manual clock stands in for the wall clock, so half an hour of idleness
//! passes in a blink: `cargo run -p presence-quickstart`.

use std::sync::Arc;
use std::time::Duration;

use presence_core::{
    Clock, Delivery, ManualClock, Presence, RequestedStatus, ScopeId, SessionSpec, Subscription,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), presence_core::Error> {
    let clock = Arc::new(ManualClock::default());
    let start = clock.now();
    let presence = Presence::builder().clock(clock.clone()).build().await?;
    let acme = ScopeId::from("acme");
    let (mut events, _) = presence.watch(&acme).await?;
    let elapsed = || (clock.now() - start).num_seconds();

    println!("alice opens two tabs");
    let first_tab = presence
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await?;
    let second_tab = presence
        .open_session(SessionSpec::new("alice", "laptop").scope("acme"))
        .await?;
    print_events(&mut events, elapsed()).await;

    println!("she closes one tab: nothing changes");
    second_tab.close().await?;
    print_events(&mut events, elapsed()).await;

    println!("her tab stays open but she does nothing for 31 minutes");
    for _ in 0..62 {
        clock.advance(Duration::from_secs(30));
        first_tab.heartbeat()?;
        presence.run_due().await?;
        print_events(&mut events, elapsed()).await;
    }

    println!("she comes back and sets BUSY for ten minutes, then idles on");
    first_tab.activity().await?;
    let until = clock.now() + chrono::TimeDelta::minutes(10);
    presence
        .set_status(first_tab.user(), RequestedStatus::Busy, Some(until))
        .await?;
    print_events(&mut events, elapsed()).await;
    for _ in 0..20 {
        clock.advance(Duration::from_secs(30));
        first_tab.heartbeat()?;
        presence.run_due().await?;
        print_events(&mut events, elapsed()).await;
    }

    println!("she closes her last tab; after the 10 s linger she is OFFLINE");
    first_tab.close().await?;
    clock.advance(Duration::from_secs(10));
    presence.run_due().await?;
    print_events(&mut events, elapsed()).await;
    Ok(())
}

/// Prints every event the watcher is told until it has heard nothing for a
/// moment: a scope that changes faster than 50 times a second sends its
/// events in batches, one per batch interval (20 ms by default), so a change
/// may take that long.
async fn print_events(events: &mut Subscription, elapsed_seconds: i64) {
    let settle = Duration::from_millis(100);
    while let Ok(Some(delivery)) = tokio::time::timeout(settle, events.recv()).await {
        if delivery == Delivery::Lagged {
            println!("  (fell behind; a real watcher re-reads the snapshot)");
        }
        for event in delivery.events() {
            println!(
                "  t+{elapsed_seconds:>4}s  {} is {} (v{})",
                event.user_id, event.status, event.v
            );
        }
    }
}
