//! `cargo fuzz run model_card`: see harness.rs (`model_card`).
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::model_card(data));
