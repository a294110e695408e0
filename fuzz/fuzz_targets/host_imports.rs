//! Fuzzes the guest-to-host boundary: random import calls with random arguments against a
//! live instance. See `modhost_fuzz::puppet`.

#![no_main]

libfuzzer_sys::fuzz_target!(|script: modhost_fuzz::puppet::Script| {
    modhost_fuzz::puppet::Harness::get().run(&script);
});
