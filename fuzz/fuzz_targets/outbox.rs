//! `cargo fuzz run outbox`: see harness.rs (`outbox`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::outbox(data));
