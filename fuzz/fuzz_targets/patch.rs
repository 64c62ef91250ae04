#![no_main]
//! `ollama_vulkan::fuzzing::patch` under libFuzzer (docs/RELIABILITY.md).

libfuzzer_sys::fuzz_target!(|data: &[u8]| ollama_vulkan::fuzzing::patch(data));
