//! The fault-injecting simulation on the memory store (see
//! `presence_store_tests::sim`): a short campaign in every test run; set
//! `SIM_SEEDS` and `SIM_STEPS` for a longer one, `SIM_SEED` to replay one
//! seed.

use presence_store_tests::sim::{Campaign, MemoryBackend, campaign};

#[test]
fn the_simulation_finds_nothing_wrong_on_the_memory_store() {
    let report = campaign(&MemoryBackend, &Campaign::from_env(1, 200, 150));
    println!("{report}");
    assert!(report.failures.is_empty(), "{report}");
}
