//! Era detection from git objects, on fixture upstreams shaped like each era.

use crate::support::Fixture;

#[test]
fn classifies_every_era_layout_from_the_tree() {
    let fx = Fixture::new();
    let run = fx.run(&["era", "--all-tags", "--json"]);
    assert_eq!(
        run.code, 2,
        "the unknown layout makes the run fail:\n{}",
        run.stderr
    );
    let rows = run.json();
    let era = |tag: &str| -> String {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["tag"] == tag)
            .unwrap_or_else(|| panic!("{tag}"));
        row["era"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| format!("error: {}", row["error"]))
    };
    assert_eq!(era("v0.1.17"), "0");
    assert_eq!(era("v0.1.22"), "1a");
    assert_eq!(era("v0.1.23"), "1a");
    assert_eq!(era("v0.1.48"), "1b");
    assert_eq!(era("v0.4.0"), "2");
    assert_eq!(era("v0.12.5"), "3");
    assert_eq!(era("v0.24.0"), "4");
    assert_eq!(era("v0.32.15"), "5");
    assert!(
        era("v0.0.1").contains("matches no known Ollama layout"),
        "{}",
        era("v0.0.1")
    );
}

#[test]
fn tag_names_play_no_part_in_classification() {
    // v9.9.9 carries an era-4 layout; a name-based rule would call it era 5 or unknown.
    let fx = Fixture::new();
    let rows = fx.run(&["era", "v9.9.9", "--json"]).ok().json();
    assert_eq!(rows[0]["era"], "4");
    assert_eq!(rows[0]["vulkan_path"], true);
}

#[test]
fn resolves_llama_cpp_pins_and_build_numbers() {
    let fx = Fixture::new();
    let rows = fx
        .run(&["era", "v0.1.22", "v0.1.23", "v0.24.0", "v0.32.15", "--json"])
        .ok()
        .json();
    let row = |tag: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["tag"] == tag)
            .unwrap()
            .clone()
    };
    // Submodule gitlink → build number by rev-list count.
    assert_eq!(
        row("v0.1.23")["llamacpp_commit"],
        fx.llama.commits[4].as_str()
    );
    assert_eq!(row("v0.1.23")["llamacpp_version"], "b5");
    // The pin at b3 predates the fixture's Vulkan backend (b5).
    assert_eq!(row("v0.1.22")["vulkan_path"], false);
    assert_eq!(row("v0.1.23")["vulkan_path"], true);
    // Abbreviated FETCH_HEAD resolved in the mirror.
    assert_eq!(row("v0.24.0")["llamacpp_pin"], &fx.llama.commits[8][..9]);
    assert_eq!(
        row("v0.24.0")["llamacpp_commit"],
        fx.llama.commits[8].as_str()
    );
    // LLAMA_CPP_VERSION b11 has no tag: found by count on master's first-parent chain.
    assert_eq!(
        row("v0.32.15")["llamacpp_commit"],
        fx.llama.commits[10].as_str()
    );
}

#[test]
fn human_table_lists_tags_in_release_order() {
    let fx = Fixture::new();
    let run = fx.run(&["era", "v0.24.0", "v0.1.48", "v0.12.5"]);
    run.ok();
    let tags: Vec<&str> = run
        .stdout
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(tags, ["v0.1.48", "v0.12.5", "v0.24.0"]);
    assert!(
        run.stdout.lines().next().unwrap().contains(" 1b "),
        "{}",
        run.stdout
    );
}

#[test]
fn unknown_layout_is_a_clear_error() {
    let fx = Fixture::new();
    fx.run(&["era", "v0.0.1"]);
    let run = fx.run(&["recipe", "new", "--ollama", "v0.0.1"]);
    run.fails(2, &["matches no known Ollama layout", "LLAMA_CPP_VERSION"]);
}
