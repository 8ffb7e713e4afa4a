//! The conformance suite every [`PresenceStore`] must pass.
//!
//! Each case in [`cases`] takes a fresh, empty store and checks one part of
//! the contract at the store level: transitions and versions, reference
//! counting of sessions, linger, logout, heartbeats and lapses, manual
//! status, scope membership, deadlines, node clean-up, and races of many
//! tasks on one user. A backend runs all of them with one macro call in an
//! integration test:
//!
//! ```
//! presence_store_tests::conformance_tests!(|| async {
//!     std::sync::Arc::new(presence_core::MemoryStore::new())
//!         as std::sync::Arc<dyn presence_core::PresenceStore>
//! });
//! # fn main() {}
//! ```
//!
//! The calling crate needs `tokio` (features `macros`, `rt-multi-thread`)
//! as a dev-dependency. Stores shared by parallel tests must isolate each
//! test (a random key prefix or schema), since cases assume an empty store.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod cases;
mod harness;

pub use harness::Harness;
pub use presence_core::PresenceStore;

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
            a_silent_session_lapses_and_the_user_goes_offline,
            idleness_turns_away_then_offline_and_activity_returns_online,
            manual_status_outranks_idleness_and_expires_by_itself,
            invisible_users_show_offline_and_leak_no_activity,
            activity_on_an_unknown_session_fails_and_changes_nothing,
            the_session_limit_is_enforced,
            scope_members_are_present_users_of_the_scope,
            unknown_users_read_as_offline_version_zero,
            deadlines_are_indexed_and_move_on_after_refresh,
            a_restarted_node_clears_its_previous_incarnation,
            versions_survive_going_offline_and_coming_back,
            concurrent_first_and_last_sessions_are_decided_once,
            concurrent_open_close_pairs_leave_no_ghost,
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
