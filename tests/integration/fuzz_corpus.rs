//! The committed fuzz corpora (fuzz/corpus/<target>/) replayed through the fuzz targets'
//! entry points (src/fuzzing.rs): a crash the fuzzer once found, fixed and kept in the
//! corpus, fails here if it comes back. Fast: no process, no git.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let data = std::fs::read(e.path()).unwrap();
        let r = std::panic::catch_unwind(|| f(&data));
        assert!(r.is_ok(), "{target}: {} panics", e.path().display());
        n += 1;
    }
    assert!(n > 0, "{} is empty", dir.display());
}

#[test]
fn fuzz_corpus_recipe() {
    replay("recipe", ollama_vulkan::fuzzing::recipe);
}

#[test]
fn fuzz_corpus_patch() {
    replay("patch", ollama_vulkan::fuzzing::patch);
}

#[test]
fn fuzz_corpus_apply() {
    replay("apply", ollama_vulkan::fuzzing::apply);
}
