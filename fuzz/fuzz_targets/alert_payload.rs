//! `cargo fuzz run alert_payload`: see harness.rs (`alert_payload`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::alert_payload(data));
