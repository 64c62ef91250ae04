//! `dockerfile`: the recipe's multi-stage Dockerfile, on stdout or written atomically.

use ollama_vulkan::error::Error;
use ollama_vulkan::image::{render_with, RenderOptions};

use super::{per_tag_recipe, Status};
use crate::cli::{DockerfileArgs, Global};

pub fn run(g: &Global, a: DockerfileArgs) -> Result<Status, Error> {
    let project = g.project()?;
    let r = per_tag_recipe(&a.recipe, &project, "dockerfile")?;
    let text = render_with(
        &r,
        RenderOptions {
            from_dist: a.from_dist,
            with_tools: a.with_tools,
            krunkit: None,
        },
    )?;
    // The Dockerfile is the output itself (no report, no --json form).
    let Some(p) = a.output else {
        print!("{text}");
        return Ok(Status::Success);
    };
    ollama_vulkan::fsutil::write_output(&p, text.as_bytes()).map_err(|e| {
        if e.kind() == std::io::ErrorKind::InvalidInput {
            Error::Usage(format!(
                "-o {}: {e}\n  help: pass a regular file or `-` (stdout)",
                p.display()
            ))
        } else {
            Error::Io {
                what: format!("writing {}", p.display()),
                source: e,
            }
        }
    })?;
    if !g.quiet && p.as_os_str() != "-" && p.as_os_str() != "/dev/stdout" {
        eprintln!("wrote {}", p.display());
    }
    Ok(Status::Success)
}
