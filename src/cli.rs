//! Command-line types (clap derive) and nothing else.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ollama-vulkan",
    version,
    about = "Build any Ollama release as a Vulkan-enabled binary and container image",
    long_about = None,
    after_help = "Exit codes: 0 success, 1 failure while working, 2 bad input, 3 tag or era without a Vulkan path."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// More log output (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print results as JSON on stdout (for CI).
    #[arg(long, global = true)]
    pub json: bool,
    /// The ollama-vulkan checkout holding recipes/ and patches/ (default: found from the
    /// working directory).
    #[arg(long, global = true, env = "OLLAMA_VULKAN_PROJECT", value_name = "DIR")]
    pub project: Option<PathBuf>,
    /// Cache for upstream mirrors (default: $XDG_CACHE_HOME/ollama-vulkan).
    #[arg(long, global = true, env = "OLLAMA_VULKAN_CACHE", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use a local git mirror for an upstream: NAME is `ollama`, `llama.cpp` or
    /// `virglrenderer` (`mesa`: a directory holding Debian's mesa .dsc and tarballs).
    /// Repeat a name to search several mirrors in order.
    #[arg(long = "mirror", global = true, value_name = "NAME=PATH")]
    pub mirrors: Vec<String>,
    /// Never touch the network; fail clearly when something is missing.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Never install host packages (mmdebstrap, podman, …) or make a missing base image:
    /// a missing prerequisite is an error naming the install command. By default they
    /// are installed with apt-get when run as root on Debian/Ubuntu, announced and
    /// recorded in the cache's provisioned.jsonl.
    #[arg(long, global = true, env = "OLLAMA_VULKAN_NO_INSTALL", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_install: bool,
}

impl Global {
    /// `--cache-dir`, else the default cache (XDG_CACHE_HOME/ollama-vulkan).
    pub fn cache(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(ollama_vulkan::project::default_cache_dir)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and check recipes.
    #[command(subcommand)]
    Recipe(RecipeCommand),
    /// Materialise clean Ollama and llama.cpp trees at the recipe's pins.
    Fetch(FetchArgs),
    /// Build a Vulkan-enabled Ollama: fetch → prepare → compile → dist + manifest.
    Build(BuildArgs),
    /// Build the recipe's container image (linux variant, amd64): renders
    /// Dockerfile.linux into the build directory and builds it with a local engine, no
    /// registry. By default the builder stage compiles the prepared trees with the era's
    /// build steps; --from-dist puts an existing dist into the runtime stage instead.
    Image(ImageArgs),
    /// Make a base image from Debian packages with mmdebstrap and import it locally
    /// (localhost/ollama-vulkan-ROLE:SUITE): image builds then need no registry.
    Base(BaseArgs),
    /// Prove a dist or an image works: tokens generated through Vulkan (and on CPU with
    /// Vulkan off).
    Smoke(SmokeArgs),
    /// Render the recipe's multi-stage Dockerfile (linux variant): the builder stage replays
    /// the era's build steps over the prepared trees, the runtime stage gets the dist, the
    /// Vulkan loader and Mesa ICDs. Build context: the recipe's build directory.
    Dockerfile(DockerfileArgs),
    /// Check the toolchain a build needs and say exactly what to install.
    Doctor(DoctorArgs),
    /// Apply the recipe's patch series to fresh trees (all or nothing; one commit per patch).
    Prepare(PrepareArgs),
    /// Check series against many tags in memory (no checkout): a tag × patch matrix.
    CheckPatches(CheckPatchesArgs),
    /// Carry the recipe's series onto another Ollama tag: a 3-way merge per patch (as
    /// `git am -3`), refreshed patches, SHA256SUMS and pins; stops at a conflict.
    RebasePatches(RebaseArgs),
    /// Classify Ollama tags into build eras (UPSTREAM.md §1), from git objects only.
    Era(EraArgs),
    /// Handle every new upstream tag: classify its era, write its recipe, check its
    /// patches; a summary per tag (`--json` for machines) and the highest tag in the
    /// state file. An era with no Vulkan path is skipped, not a failure.
    Ci(CiArgs),
    /// Generated series (patches/src → patches/<series>).
    #[command(subcommand)]
    Series(SeriesCommand),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Build directory; trees go to DEST/src (default: work/builds/<recipe name>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// A per-tag recipe (or give --ollama TAG to make one on the fly).
    #[arg(
        value_name = "RECIPE",
        required_unless_present = "ollama",
        conflicts_with = "ollama"
    )]
    pub recipe: Option<PathBuf>,
    /// Make the recipe for this Ollama tag first (`recipe new`), then build it.
    #[arg(long, value_name = "TAG")]
    pub ollama: Option<String>,
    /// Where compile steps run.
    #[arg(long, value_enum, default_value_t = ollama_vulkan::build::builder::BuilderChoice::Auto)]
    pub builder: ollama_vulkan::build::builder::BuilderChoice,
    /// The architecture the dist is for: another than this machine's is cross-compiled
    /// in a trixie cross root (docs/build.md).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::target::Arch::host())]
    pub arch: ollama_vulkan::target::Arch,
    /// Build directory (default: work/builds/<recipe name>, with -<arch> for another
    /// architecture than this machine's).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Parallel compile jobs (default: the number of CPUs).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Allow N lines of patch fuzz (a warning).
    #[arg(long, value_name = "N")]
    pub fuzz: Option<usize>,
    /// Then build the container image from the new dist (`image --from-dist`).
    #[arg(long)]
    pub image: bool,
    #[command(flatten)]
    pub image_args: ImageOptions,
}

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Build directory, the build context (default: work/builds/<recipe name>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// The runtime stage alone, over the dist `build` made (no compile in the image).
    #[arg(long)]
    pub from_dist: bool,
    /// The image's architecture; another than this machine's is assembled from its dist
    /// (`build --arch`). Repeat for a multi-architecture index under the one tag, each
    /// image also tagged TAG-ARCH.
    #[arg(long = "arch", value_enum, value_name = "ARCH")]
    pub archs: Vec<ollama_vulkan::target::Arch>,
    #[command(flatten)]
    pub image_args: ImageOptions,
}

#[derive(Debug, Args)]
pub struct BaseArgs {
    /// Debian suite.
    #[arg(long, default_value = "trixie", value_name = "SUITE")]
    pub suite: String,
    /// builder: every era's build deps + the host's Go; runtime: minbase + the Vulkan
    /// loader and Mesa ICDs.
    #[arg(long, value_enum)]
    pub role: ollama_vulkan::image::base::Role,
    #[arg(long, value_enum, default_value_t = ollama_vulkan::image::base::Arch::Amd64)]
    pub arch: ollama_vulkan::image::base::Arch,
    /// Also vulkan-tools (vulkaninfo) in a runtime base.
    #[arg(long)]
    pub with_tools: bool,
    /// Image name (default: localhost/ollama-vulkan-ROLE:SUITE).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// Container engine to import into.
    #[arg(long, value_enum, default_value_t = ollama_vulkan::image::engine::EngineChoice::Auto)]
    pub engine: ollama_vulkan::image::engine::EngineChoice,
    /// Make the root again with mmdebstrap and compare it with the cached one (nothing
    /// is imported): identical, drifted (Debian has other versions now) or differs (exit
    /// 1, each differing file and why).
    #[arg(long)]
    pub verify: bool,
}

#[derive(Debug, Args)]
pub struct SmokeArgs {
    /// The dist directory `build` made (work/builds/<recipe>/dist).
    #[arg(
        value_name = "DIST",
        required_unless_present = "image",
        conflicts_with = "image"
    )]
    pub dist: Option<PathBuf>,
    /// Run the smoke test in a container of this image (podman): the server answers
    /// on a published port; /dev/dri is passed through when present.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Container engine for --image (podman runs it; with buildah, podman is used).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::image::engine::EngineChoice::Auto)]
    pub engine: ollama_vulkan::image::engine::EngineChoice,
    /// Tokens to generate per run.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub tokens: usize,
    /// Skip the CPU-fallback run.
    #[arg(long)]
    pub no_cpu_fallback: bool,
    /// Only the CPU run (Vulkan off): e.g. an arm64 dist under qemu-user, where lavapipe's
    /// shader compiles run emulated too (docs/smoke.md).
    #[arg(long, conflicts_with_all = ["no_cpu_fallback", "venus", "lavapipe"])]
    pub cpu_only: bool,
    /// Use CPU-type Vulkan devices (Mesa lavapipe): default when no GPU device node
    /// (/dev/dri/renderD*, /dev/nvidia0) exists.
    #[arg(long)]
    pub lavapipe: bool,
    /// Run the dist on this machine's libraries even if it was built in the builder
    /// root (a dist copied to a GPU machine with a new enough libc).
    #[arg(long)]
    pub on_host: bool,
    /// Extra environment for the server in every run (repeatable), e.g.
    /// `--env OLLAMA_VULKAN_MEMORY_FRACTION=0.5`.
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env_var)]
    pub env: Vec<(String, String)>,
    /// Run the Vulkan mode on a real Mesa Venus device (the driver krunkit exposes):
    /// virglrenderer's vtest server from the Venus lab (recipes/lab/venus.toml, built
    /// once in a Debian trixie root), on lavapipe unless --venus-host-icd says otherwise.
    /// Asserts the Venus device, the memory rule's Venus default (0.75) and the GPU.
    #[arg(long)]
    pub venus: bool,
    /// The host Vulkan driver behind the Venus device: an ICD of the lab root, e.g.
    /// /usr/share/vulkan/icd.d/radeon_icd.x86_64.json (lavapipe by default).
    #[arg(long, value_name = "ICD", requires = "venus")]
    pub venus_host_icd: Option<PathBuf>,
    /// Which vtest server: ours (patched; needs virglrenderer's source: --mirror
    /// virglrenderer=PATH or the recipe's URL) or Debian's (stock; no model loads).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::venus::ServerChoice::Patched, requires = "venus")]
    pub venus_server: ollama_vulkan::venus::ServerChoice,
    /// Which Mesa Venus driver the dist runs on: the lab root's (debian) or ours for
    /// krunkit (recipes/lab/mesa.toml, built once; source from --mirror mesa=DIR or the
    /// root's Debian mirror). With `krunkit` the patched server refuses blobs that are
    /// not a multiple of 16 KiB, as krunkit's host does.
    #[arg(long, value_enum, default_value_t = ollama_vulkan::venus::MesaChoice::Debian, requires = "venus")]
    pub venus_mesa: ollama_vulkan::venus::MesaChoice,
    /// Make the patched vtest server refuse blobs that are not a multiple of 16 KiB, as
    /// krunkit's host (Hypervisor.framework) does: Debian's Mesa then fails
    /// vkCreateInstance with VK_ERROR_OUT_OF_HOST_MEMORY, as on a Mac. On with
    /// `--venus-mesa krunkit`.
    #[arg(long, requires = "venus")]
    pub venus_krunkit_host: bool,
}

#[derive(Debug, Args)]
pub struct DockerfileArgs {
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Write here (atomically) instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The runtime stage alone, over dist/ in the build directory (`image --from-dist`).
    #[arg(long)]
    pub from_dist: bool,
    /// vulkan-tools (vulkaninfo) in the runtime stage.
    #[arg(long)]
    pub with_tools: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[arg(value_name = "RECIPE")]
    pub recipe: Option<PathBuf>,
    /// Check this builder (default: the host; `root` checks the trixie builder root,
    /// making it if needed).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::build::builder::BuilderChoice::Host)]
    pub builder: ollama_vulkan::build::builder::BuilderChoice,
    /// Install what is missing first (apt-get, as root on Debian/Ubuntu): the host
    /// packages the pipeline runs, and for `--builder host` its toolchain.
    #[arg(long)]
    pub fix: bool,
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    #[arg(value_name = "RECIPE")]
    pub recipe: PathBuf,
    /// Build directory (default: work/builds/<recipe name>).
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Apply nothing: report per patch and hunk against the pinned trees (from git
    /// objects).
    #[arg(long)]
    pub check: bool,
    /// Allow N lines of fuzz at each end of every hunk (overrides the recipe; reported
    /// as a warning).
    #[arg(long, value_name = "N")]
    pub fuzz: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckPatchesArgs {
    /// Series names under patches/ (default: all).
    #[arg(value_name = "SERIES")]
    pub series: Vec<String>,
    /// FROM..TO (inclusive; either side may be left out) or one tag.
    #[arg(long, value_name = "RANGE", required_unless_present = "all_tags")]
    pub tags: Option<String>,
    /// Every tag of the mirror.
    #[arg(long, conflicts_with = "tags")]
    pub all_tags: bool,
    /// Allow N lines of fuzz (default 0).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub fuzz: usize,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Subcommand)]
pub enum SeriesCommand {
    /// Write the series generated from patches/src (docs/patches.md, "Generated series").
    Generate {
        /// Write nothing; exit 1 listing the generated files that are stale.
        #[arg(long)]
        check: bool,
    },
}

/// Image options shared by `image` and `build --image`.
#[derive(Debug, Clone, Args)]
pub struct ImageOptions {
    /// linux: Debian's Mesa (hosts with /dev/dri); krunkit: our Venus driver with the
    /// 16 KiB blob fix, selected explicitly (Podman on Apple Silicon; docs/RUNNING.md).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::image::Variant::Linux)]
    pub variant: ollama_vulkan::image::Variant,
    /// Container engine (default: podman, else buildah, else docker with a daemon).
    #[arg(long, value_enum, default_value_t = ollama_vulkan::image::engine::EngineChoice::Auto)]
    pub engine: ollama_vulkan::image::engine::EngineChoice,
    /// Override a stage's base image: builder=IMAGE or runtime=IMAGE (repeat for both);
    /// ROLE@ARCH=IMAGE for one architecture's image only (runtime@arm64=IMAGE).
    #[arg(long = "base", value_name = "ROLE[@ARCH]=IMAGE")]
    pub bases: Vec<String>,
    /// Image name (default: localhost/ollama-vulkan:TAG).
    #[arg(long, value_name = "NAME")]
    pub tag: Option<String>,
    /// Run the server as this non-root uid (a user `ollama` is made in the image).
    #[arg(long, value_name = "UID")]
    pub uid: Option<u32>,
    /// vulkan-tools (vulkaninfo) in the runtime stage.
    #[arg(long)]
    pub with_tools: bool,
    /// Also export: oci-archive:PATH (one tar file) or oci:DIR (an OCI layout).
    #[arg(long, value_name = "KIND:PATH")]
    pub output: Option<ollama_vulkan::image::engine::Output>,
    /// Ignore the engine's layer cache (every step runs; ccache and Go's cache still
    /// apply in the builder stage).
    #[arg(long)]
    pub no_cache: bool,
    /// Write the runtime image natively as an OCI archive (or --output oci:DIR) from the
    /// dist and the mmdebstrap root, with no engine: the same inputs and
    /// SOURCE_DATE_EPOCH give the same digest (docs/provenance.md). Implies --from-dist.
    #[arg(long)]
    pub assemble: bool,
    /// The runtime root's Debian packages must match recipes/base/packages.lock exactly
    /// (drift, or no entry for the base, is an error and the lock is not written).
    #[arg(long)]
    pub locked: bool,
}

#[derive(Debug, Subcommand)]
pub enum RecipeCommand {
    /// Write a per-tag recipe: classify the tag's tree and pin its commits.
    New {
        /// The Ollama tag, e.g. v0.24.0.
        #[arg(long = "ollama", value_name = "TAG")]
        tag: String,
        /// Where to write the recipe (default: work/recipes/ollama-TAG.toml).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check recipes and templates; every error names file:line:column and the fix.
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print a recipe resolved over its template.
    Show {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct EraArgs {
    /// Tags to classify.
    #[arg(value_name = "TAG", required_unless_present = "all_tags")]
    pub tags: Vec<String>,
    /// Every tag of the ollama mirror.
    #[arg(long, conflicts_with = "tags")]
    pub all_tags: bool,
}

#[derive(Debug, Args)]
pub struct CiArgs {
    /// Tags FROM..TO (inclusive; either side may be left out) or one tag, instead of the
    /// tags newer than the state file's.
    #[arg(long, value_name = "RANGE", conflicts_with = "since")]
    pub tags: Option<String>,
    /// Every tag newer (by version) than TAG, instead of the state file's highest.
    #[arg(long, value_name = "TAG")]
    pub since: Option<String>,
    /// Release candidates (vX.Y.Z-rcN) too.
    #[arg(long)]
    pub include_rc: bool,
    /// The highest tag handled so far (default: work/ci-state.json), written after each
    /// run.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Only print the job matrix for fanning the selected tags out over runners (tags
    /// with a Vulkan path); nothing is written.
    #[arg(long, value_enum, value_name = "KIND")]
    pub matrix: Option<MatrixKind>,
    /// Also build each tag whose check passed, then smoke the dist (lavapipe when the
    /// machine has no GPU).
    #[arg(long, conflicts_with = "matrix")]
    pub build: bool,
    /// Also assemble each smoked dist's runtime image as OUT/images/TAG.oci.tar and
    /// report its digest (implies --build; no engine needed).
    #[arg(long, conflicts_with = "matrix")]
    pub image: bool,
    /// Where proposals (OUT/proposals/TAG) and images (OUT/images) go (default: work/ci).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Parallel compile jobs for --build (default: the number of CPUs).
    #[arg(long, value_name = "N")]
    pub jobs: Option<usize>,
    /// Where --build's compile steps run.
    #[arg(long, value_enum, default_value_t = ollama_vulkan::build::builder::BuilderChoice::Auto)]
    pub builder: ollama_vulkan::build::builder::BuilderChoice,
}

/// `ci --matrix`'s format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum MatrixKind {
    /// `{"include":[{"tag":..,"era":..}]}` on one line, for `strategy.matrix`.
    Github,
    /// A child pipeline (YAML) with one job per tag in `parallel:matrix`, for
    /// GitLab's `trigger:include:artifact`.
    Gitlab,
}

#[derive(Debug, Args)]
pub struct RebaseArgs {
    /// A per-tag recipe: its pins are the old base.
    #[arg(value_name = "RECIPE")]
    pub recipe: std::path::PathBuf,
    /// The Ollama tag to rebase onto.
    #[arg(long, value_name = "TAG", required_unless_present_any = ["cont", "skip", "abort"])]
    pub onto: Option<String>,
    /// Carry on after resolving a conflict in the rebase work tree.
    #[arg(long = "continue", conflicts_with_all = ["onto", "skip", "abort"])]
    pub cont: bool,
    /// Drop the conflicting patch and carry on.
    #[arg(long, conflicts_with_all = ["onto", "abort"])]
    pub skip: bool,
    /// Give up: restore the series, recipe and work tree as they were.
    #[arg(long, conflicts_with = "onto")]
    pub abort: bool,
    /// Rebase even when TAG is another era (or switches Vulkan on differently).
    #[arg(long, requires = "onto")]
    pub allow_era_change: bool,
}

/// `KEY=VALUE` for `smoke --env`: the key an environment variable name that smoke does not
/// set itself (it owns the server's address, model store and home).
fn parse_env_var(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| {
        format!("`{s}` is not KEY=VALUE (e.g. OLLAMA_VULKAN_MEMORY_FRACTION=0.5)")
    })?;
    if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("`{k}` is not an environment variable name"));
    }
    if matches!(k, "OLLAMA_HOST" | "OLLAMA_MODELS" | "HOME") {
        return Err(format!(
            "smoke sets {k} itself (a private server); leave it out"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}
