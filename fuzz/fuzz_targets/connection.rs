//! Arbitrary frame sequences (text, binary, control, close, oversized,
//! broken; with waits and clock jumps) into one socket's message handling,
//! against an in-memory service on a manual clock.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    presence_axum::fuzzing::replay_connection(data);
});
