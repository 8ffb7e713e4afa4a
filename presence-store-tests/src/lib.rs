//! The shared suites every [`PresenceStore`] must pass.
//!
//! # Conformance
//!
//! Each case in [`cases`] takes a fresh, empty store and checks one part of
//! the contract at the store level: transitions and versions, reference
//! counting of sessions, linger, logout, heartbeats and lapses, manual
//! status, scope membership, deadlines, node clean-up, races of many
//! tasks on one user, and what a user shows beyond the status (custom
//! status and its expiry, session kinds, app state, hidden last seen, none
//! of it while invisible) read back alike by `load_many` and
//! `scope_members`, and pages of a scope's members. A backend runs all of them with one macro call in an
//! integration test:
//!
//! ```
//! presence_store_tests::conformance_tests!(|| async {
//!     std::sync::Arc::new(presence_core::MemoryStore::new())
//!         as std::sync::Arc<dyn presence_core::store::PresenceStore>
//! });
//! # fn main() {}
//! ```
//!
//! # Cluster
//!
//! Each scenario in [`cluster`] takes a fresh, empty store that has a
//! cluster feed ([`PresenceStore::cluster_feed`]) and starts two
//! [`presence_core::Presence`] services on it, `node-a` and `node-b`,
//! sharing that one store and one [`presence_core::ManualClock`]. It then
//! checks, at the service level, what a user would notice across nodes:
//!
//! - a session opened on node A is `ONLINE` (version 1) to a watcher on
//!   node B, and node B's queries agree;
//! - a session's kind, a custom status, an app state and hidden last
//!   seen set on node A reach a watcher on node B whole, one event each,
//!   and node B's reads agree;
//! - closing it on node A shows `OFFLINE` on node B after the linger, not a
//!   second before;
//! - a node that dies without a word leaves no ghost: node B's sweeper
//!   publishes exactly one `OFFLINE` per user after `session_ttl` and the
//!   linger, while a user who also holds a live session on node B stays;
//! - fifty tasks per node opening and closing sessions of one user, all
//!   racing, show exactly one `ONLINE` and one `OFFLINE` to every watcher;
//! - a logout on node B ends the session held on node A at once
//!   ([`presence_core::SessionEnd::LoggedOut`]), with no linger;
//! - a watcher on node B of some users gets only their events;
//! - one user's changes made alternately on both nodes reach a watcher on
//!   each node in order and without duplicates: step by step with versions
//!   growing by exactly one, and in a burst each version with the status
//!   it was made with, ending at the last;
//! - a node shut down gracefully hands its users over: one who reconnects
//!   to node B inside the linger shows no flicker;
//! - an HTTP request that raced a logout on node B does not bring the
//!   login back on node A;
//! - a session resumed on node B (same session id) is not closed when node
//!   A drops its old handle;
//! - fifty snapshots of a scope node A watches read the store once between
//!   them, and node A's view of the scope stays current with node B's
//!   changes (no read) and agrees with node B's read of the store.
//!
//! Run them with one macro call in an integration test, the same way:
//!
//! ```
//! presence_store_tests::cluster_tests!(|| async {
//!     std::sync::Arc::new(presence_core::MemoryStore::new())
//!         as std::sync::Arc<dyn presence_core::store::PresenceStore>
//! });
//! # fn main() {}
//! ```
//!
//! The scenarios drive time with the manual clock and never sleep through
//! a presence threshold. Deliveries between nodes may cross a real network
//! (a store whose feed is Redis pub/sub), so every expected event is
//! awaited with a deadline of [`helpers::WAIT`] (5 s), and "nothing more"
//! means nothing within [`cluster::QUIET`] (200 ms) of real time, checked
//! together with what the store answers. Before a scenario acts, each
//! watcher is synchronised with the feed by a probe user (named with
//! [`cluster::PROBE_PREFIX`]) changing on the other node until the
//! watcher's node hears of it, so a feed that subscribes to scopes lazily
//! passes too. A watcher told to resnapshot in the middle of a scenario
//! ([`presence_core::Delivery::Lagged`]) fails it, since events were lost.
//!
//! # Soak
//!
//! [`soak::run`] drives one [`presence_core::Presence`] on a given store
//! with many sessions opening and closing at a steady rate, random
//! activity, heartbeats, manual statuses, logouts and crashed clients, a
//! recorder watching every scope, and compares the end state and every
//! recorded event with an independent model ([`soak::SoakReport`]). The
//! memory store and Redis run a short one in their tests; the
//! `churn-soak` binary of `presence-benches` runs the long one.
//!
//! # Helpers
//!
//! [`helpers`] is what the tests of every crate share: [`helpers::test_config`],
//! the thresholds they run with (the suites' too), and waiting with a
//! deadline for what a subscription or a service tells
//! ([`helpers::next_event`], [`helpers::quiet`], [`helpers::drain`],
//! [`helpers::status_becomes`], …).
//!
//! # What a backend needs
//!
//! The calling crate needs `tokio` (features `macros`, `rt-multi-thread`)
//! as a dev-dependency. `$make` is a closure returning a future of a fresh
//! `Arc<dyn PresenceStore>`; every test calls it once. The macros expand
//! to plain functions named after the cases and scenarios (the two suites
//! use different names, so one file may call both).
//!
//! Tests run in parallel, so a store shared by parallel tests (one Redis
//! server, one database) must isolate each test: give every store `$make`
//! returns its own random key prefix or schema, since cases and scenarios
//! assume an empty store. For the cluster suite, the prefix must isolate
//! the cluster feed too (its pub/sub channels), or the nodes of one test
//! would hear the changes of another.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cases;
pub mod cluster;
pub mod counting;
pub mod durable;
mod harness;
pub mod helpers;
#[cfg(feature = "redis")]
pub mod redis_keys;
pub mod sim;
pub mod soak;

pub use harness::Harness;
pub use presence_core::store::PresenceStore;

/// Expands to one `#[tokio::test]` per conformance case. `$make` is a
/// closure returning a future of a fresh `Arc<dyn PresenceStore>`.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@cases $make;
            first_session_shows_online_once,
            more_tabs_and_closing_some_change_nothing,
            last_close_lingers_then_goes_offline,
            a_new_session_inside_the_linger_cancels_the_offline,
            logout_ends_one_login_at_once_without_linger,
            logout_everywhere_ends_every_login,
            logout_of_another_login_keeps_a_pending_linger,
            heartbeats_keep_a_session_live_and_never_revive_a_dead_one,
            reopening_a_lapsed_session_before_the_sweep_keeps_it_live,
            a_logged_out_login_cannot_open_again_for_a_ttl,
            restoring_a_session_is_not_activity,
            a_silent_session_lapses_and_the_user_goes_offline,
            idleness_turns_away_then_offline_and_activity_returns_online,
            manual_status_outranks_idleness_and_expires_by_itself,
            invisible_users_show_offline_and_leak_no_activity,
            activity_on_an_unknown_session_fails_and_changes_nothing,
            the_session_limit_is_enforced,
            scope_members_are_present_users_of_the_scope,
            joining_and_leaving_a_scope_while_present_is_told_in_that_scope,
            a_logout_keeps_the_scopes_another_login_lingers_in,
            a_logout_leaves_the_scopes_only_its_login_lingers_in,
            a_reconnect_keeps_each_scope_lingering_for_its_own_login,
            unknown_users_read_as_offline_version_zero,
            deadlines_are_indexed_and_move_on_after_refresh,
            a_claimed_user_is_passed_by_until_its_hold,
            racing_sweeps_claim_each_due_user_once,
            a_restarted_node_clears_its_previous_incarnation,
            node_leases_are_kept_per_incarnation,
            expired_leases_are_found_across_node_names,
            a_held_session_lapses_only_when_its_holder_says,
            versions_survive_going_offline_and_coming_back,
            concurrent_first_and_last_sessions_are_decided_once,
            concurrent_open_close_pairs_leave_no_ghost,
            a_custom_status_reads_back_and_a_new_text_is_one_update,
            a_custom_status_clears_by_itself_at_its_expiry,
            each_kind_of_session_shows_its_own_status,
            session_state_merges_newest_first_and_clears,
            hiding_last_seen_hides_it_from_every_read,
            an_invisible_user_shows_no_custom_status_devices_or_state,
            members_pages_run_in_user_id_order,
            changes_are_kept_for_their_node_until_forgotten,
            a_change_raced_by_many_is_kept_once,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::PresenceStore> = ($make)().await;
                $crate::cases::$case(store).await;
            }
        )*
    };
}

/// Expands to one `#[tokio::test]` per cluster scenario (see [`cluster`]).
/// `$make` is a closure returning a future of a fresh
/// `Arc<dyn PresenceStore>` whose store has a cluster feed. With
/// `in_sequence`, it expands instead to the scenarios run one after
/// another, each on a fresh store from `$make`, inside the caller's async
/// test (for a test that brings a deployment to some state first, such as
/// a failed-over Redis Cluster).
#[macro_export]
macro_rules! cluster_tests {
    (in_sequence $make:expr) => {
        $crate::cluster_tests!(@every sequence $make);
    };
    ($make:expr) => {
        $crate::cluster_tests!(@every scenarios $make);
    };
    (@every $how:ident $make:expr) => {
        $crate::cluster_tests!(@$how $make;
            a_session_on_one_node_is_online_on_the_other,
            details_set_on_one_node_reach_the_other_as_one_event_each,
            a_close_on_one_node_is_offline_on_the_other_after_the_linger,
            a_dead_nodes_users_go_offline_once_after_its_lease_and_linger,
            racing_opens_and_closes_on_both_nodes_show_one_online_and_one_offline,
            a_logout_on_one_node_ends_the_session_held_on_the_other,
            a_watcher_of_some_users_gets_only_their_events_from_the_other_node,
            alternating_changes_from_both_nodes_reach_every_watcher_in_order,
            a_node_shut_down_gracefully_hands_its_users_over_without_a_flicker,
            an_http_request_that_raced_a_logout_on_the_other_node_does_not_bring_the_login_back,
            a_session_resumed_on_the_other_node_is_not_closed_by_its_old_handle,
            the_watchers_of_a_scope_on_one_node_read_it_from_the_store_once,
        );
    };
    (@sequence $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            let store: ::std::sync::Arc<dyn $crate::PresenceStore> = ($make)().await;
            $crate::cluster::$scenario(store).await;
        )*
    };
    (@scenarios $make:expr; $($scenario:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let store: ::std::sync::Arc<dyn $crate::PresenceStore> = ($make)().await;
                $crate::cluster::$scenario(store).await;
            }
        )*
    };
}

/// The README's example, compiled (and run unless `no_run`) as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
