//! `cargo fuzz run azure`: see harness.rs (`azure`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::azure(data));
