//! Fuzzes `binary::HttpResponse::decode` with arbitrary bytes: see `modhost_fuzz::envelope::check`.

#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    modhost_fuzz::envelope::check::<binary::HttpResponse>(bytes);
});
