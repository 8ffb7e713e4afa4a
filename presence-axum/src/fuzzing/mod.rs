//! Fuzz harnesses (feature `fuzzing`, not part of the public API): each
//! takes the fuzzer's bytes, drives one part of the socket protocol and
//! panics when an invariant breaks. The `fuzz/` crate runs them under
//! libFuzzer; `tests/fuzz_regressions.rs` replays the inputs that once
//! failed.

mod connection;
mod decode;

pub use connection::replay_connection;
pub use decode::check_decode;
