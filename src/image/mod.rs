//! The image stage (first part): the multi-stage Dockerfile rendered from the recipe.
//! The builder stage replays the template's `[[build.steps]]` — the same data the native
//! build runs, not a second copy — with container paths; the runtime stage gets the
//! era's dist layout, the Vulkan loader + Mesa ICDs and the era's Vulkan switch.

use std::collections::BTreeMap;

use crate::build::{expand, step_argv, version_var};
use crate::recipe::model::{LlamaSource, Recipe};

const TEMPLATE: &str = include_str!("../../Dockerfiles/linux.Dockerfile.in");

/// Where the trees and the dist live inside the builder stage.
const SRC: &str = "/build/src";
const DIST: &str = "/build/dist";

/// POSIX-shell quoting for one word (Dockerfile RUN in shell form).
fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The build's placeholders with container paths; `{jobs}` and `{go_module}` are left to
/// the container's shell (see `word`).
fn vars(r: &Recipe) -> BTreeMap<&'static str, String> {
    let llama = match r.llamacpp.source {
        LlamaSource::FetchContent => format!("{SRC}/llama.cpp"),
        LlamaSource::Submodule => format!("{SRC}/ollama/llm/llama.cpp"),
        LlamaSource::Vendored => String::new(),
    };
    BTreeMap::from([
        ("dist", DIST.to_string()),
        ("ollama", format!("{SRC}/ollama")),
        ("llama", llama),
        ("version", version_var(r)),
    ])
}

/// Renders the `linux` variant's Dockerfile for a per-tag recipe.
pub fn render(r: &Recipe) -> String {
    let vars = vars(r);
    // One shell word; `{jobs}` and `{go_module}` are decided in the container.
    let word = |e: &str| -> String {
        if e == "{jobs}" {
            return "\"$(nproc)\"".into();
        }
        match e.split_once("{go_module}") {
            Some((pre, post)) => format!(
                "{}\"$(sed -n 's/^module //p' go.mod)\"{}",
                sh_quote(pre),
                sh_quote(post)
            ),
            None => sh_quote(e),
        }
    };
    let mut steps = Vec::new();
    for s in &r.build.steps {
        let words: Vec<String> = step_argv(s, r, &vars).iter().map(|a| word(a)).collect();
        let env: Vec<String> = s
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", sh_quote(&expand(v, &vars))))
            .collect();
        let cd = s
            .cwd
            .as_ref()
            .map(|c| format!("cd {} && ", sh_quote(&expand(c, &vars))))
            .unwrap_or_default();
        steps.push(format!(
            "# {}\nRUN {cd}{}{}",
            s.name,
            if env.is_empty() {
                String::new()
            } else {
                format!("{} ", env.join(" "))
            },
            words.join(" ")
        ));
    }
    let builder_env: Vec<String> = std::iter::once("ENV CGO_ENABLED=1".to_string())
        .chain(
            r.build
                .env
                .iter()
                .map(|(k, v)| format!("ENV {k}={}", sh_quote(&expand(v, &vars)))),
        )
        .collect();
    // Eras 1a/1b embed their runners in the binary; later eras ship lib/ollama beside it.
    let has_libs = r.build.check_libs.iter().any(|l| l.starts_with("lib/"));
    let mut copies = vec![format!(
        "COPY --from=builder {DIST}/bin/ollama /usr/bin/ollama"
    )];
    if has_libs {
        copies.push(format!(
            "COPY --from=builder {DIST}/lib/ollama /usr/lib/ollama"
        ));
    }
    let runtime_env: String = r
        .image
        .env
        .iter()
        .map(|(k, v)| format!(" \\\n    {k}={}", sh_quote(v)))
        .collect();
    let base = |role: &str, default: &str| {
        r.image
            .base
            .get(role)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    TEMPLATE
        .replace("{{tool_version}}", env!("CARGO_PKG_VERSION"))
        .replace(
            "{{recipe}}",
            &r.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
        .replace("{{tag}}", r.ollama.tag.as_deref().unwrap_or(""))
        .replace("{{era}}", r.era.label())
        .replace(
            "{{ollama_commit}}",
            r.ollama.commit.as_deref().unwrap_or(""),
        )
        .replace("{{builder_image}}", &base("builder", "debian:trixie"))
        .replace("{{runtime_image}}", &base("runtime", "debian:trixie-slim"))
        .replace("{{builder_env}}", &builder_env.join("\n"))
        .replace("{{builder_steps}}", &steps.join("\n"))
        .replace("{{runtime_packages}}", &r.image.runtime_packages.join(" "))
        .replace("{{dist_copies}}", &copies.join("\n"))
        .replace("{{runtime_env}}", &runtime_env)
}
