#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| raftnet::fuzzing::tls_session(data));
