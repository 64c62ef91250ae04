//! Entry points of the fuzz targets (fuzz/, docs/RELIABILITY.md), here so that `cargo
//! test` replays the committed corpora through the same code (tests/integration/
//! fuzz_corpus.rs). Each takes arbitrary bytes and must return, whatever they are: an
//! error is fine, a panic is a bug.

use std::path::PathBuf;

use crate::patch::apply::{apply_hunks, reversed};
use crate::patch::parse::parse;
use crate::project::Project;

/// The recipe loader on `data` as a recipe file, resolved against this checkout's
/// templates (recipes/) and series (patches/). The file is written to a per-process temp
/// dir because `recipe::load` reads a path (as the CLI does).
pub fn recipe(data: &[u8]) {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // Made and removed per input: nothing is left behind (a tmpfs makes this cheap).
    let dir = base.join(format!("ollama-vulkan-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ollama-v0.24.0.toml");
    std::fs::write(&path, data).expect("write the input");
    let project = Project {
        root: PathBuf::from(env!("CARGO_MANIFEST_DIR")),
    };
    if let Ok(r) = crate::recipe::load(&path, &project) {
        // What `dockerfile` and `--json` outputs do with a loaded recipe.
        let _ = crate::image::render(&r);
        let _ = serde_json::to_string(&r);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The patch parser on `data` as a patch file; a parsed patch's reports are rendered too.
pub fn patch(data: &[u8]) {
    if let Ok(p) = parse("fuzz.patch", data) {
        for f in &p.files {
            let _ = f.path();
            for h in &f.hunks {
                let _ = h.header();
            }
        }
        let _ = serde_json::to_string(&p);
    }
}

/// The hunk applier: `data` is a fuzz level (first byte, 0–3), the file's content up to
/// the first NUL, then a patch; every file section's hunks are applied to the content,
/// forwards and (as the upstreamed check does) reversed.
pub fn apply(data: &[u8]) {
    let Some((&level, rest)) = data.split_first() else {
        return;
    };
    let fuzz = usize::from(level % 4);
    let (content, patch_text) = match rest.iter().position(|b| *b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let Ok(p) = parse("fuzz.patch", patch_text) else {
        return;
    };
    for f in &p.files {
        if let Ok(a) = apply_hunks(content, &f.hunks, fuzz) {
            // What applied must un-apply with the reversed hunks.
            let _ = apply_hunks(&a.bytes, &reversed(&f.hunks), fuzz);
        }
        let _ = apply_hunks(content, &reversed(&f.hunks), fuzz);
    }
}
