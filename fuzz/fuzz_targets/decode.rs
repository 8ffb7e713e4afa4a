//! Arbitrary text into the WebSocket message decoder (docs/protocol.md): never a
//! panic; accepted messages survive a round trip; refusals carry a stable
//! code.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    presence_axum::fuzzing::check_decode(data);
});
