//! Our Mesa for krunkit (recipes/lab/mesa.toml, src/mesa.rs): the recipe is untrusted
//! input, refused with the file and the key before anything is made. The build itself runs
//! in `build::the_trixie_builder_root_builds_and_smokes_the_era_4_fixture` (it needs the
//! root and a dist).

use std::fs;

use crate::support::Scratch;

/// A dist the refusals never reach.
fn fake_dist(s: &Scratch) -> std::path::PathBuf {
    let fake = s.path().join("fake");
    fs::create_dir_all(fake.join("bin")).unwrap();
    fs::write(fake.join("bin/ollama"), "").unwrap();
    fake
}

#[test]
fn a_hostile_mesa_recipe_is_refused_before_anything_runs() {
    let s = Scratch::new();
    let fake = fake_dist(&s);
    let recipe = s.project().join("recipes/lab/mesa.toml");
    let shipped = fs::read_to_string(&recipe).unwrap();
    for (from, to, needle) in [
        (
            "dsc_sha256 = \"c3605bc6",
            "dsc_sha256 = \"zz05bc6",
            "[source] dsc_sha256",
        ),
        (
            "orig_sha256 = \"592272df3cf01e85e7db300c449df5061092574d099da275d19e97ef0510f8a6\"",
            "orig_sha256 = \"592272df\"",
            "[source] orig_sha256 `592272df` is not a SHA-256",
        ),
        (
            "orig = \"mesa_25.0.7.orig.tar.xz\"",
            "orig = \"../../etc/passwd\"",
            "[source] orig `../../etc/passwd`",
        ),
        (
            "version = \"25.0.7-2+deb13u1\"",
            "version = \"25.0.7; rm -rf /\"",
            "[source] version",
        ),
        (
            "package = \"mesa\"",
            "package = \"mesa:arm64\"",
            "[source] package",
        ),
        (
            "name = \"lab/mesa-venus-krunkit\"",
            "name = \"../../../etc\"",
            "[series] name `../../../etc`",
        ),
        (
            "sha256 = \"7c106866",
            "sha256 = \"0c106866",
            "[series] sha256: series lab/mesa-venus-krunkit hashes to 7c106866",
        ),
        ("[build]", "[build]\nunknown = 1", "unknown field `unknown`"),
        (
            "[series]",
            "[sources]\nx = 1\n[series]",
            "unknown field `sources`",
        ),
        (
            "\"-Dbuildtype=release\"",
            "\"-Dprefix=/usr\"",
            "[build] meson_options: `-Dprefix=/usr`",
        ),
        (
            "\"-Dbuildtype=release\"",
            "\"-Dlibdir=/tmp\"",
            "[build] meson_options: `-Dlibdir=/tmp`",
        ),
        (
            "\"-Dbuildtype=release\"",
            "\"--cross-file=/tmp/x\"",
            "[build] meson_options: `--cross-file=/tmp/x`",
        ),
        (
            "\"-Dbuildtype=release\"",
            "\"-Dbuildtype\"",
            "[build] meson_options: `-Dbuildtype`",
        ),
        (
            "\"dpkg-dev\",",
            "\"dpkg-dev; rm -rf /\",",
            "[build] packages: `dpkg-dev; rm -rf /`",
        ),
        (
            "packages_arm64 = [\"libdrm-dev\",",
            "packages_arm64 = [\"libdrm-dev:arm64\",",
            "[build] packages_arm64: `libdrm-dev:arm64`",
        ),
    ] {
        assert!(shipped.contains(from), "{from}");
        fs::write(&recipe, shipped.replace(from, to)).unwrap();
        let run = s.run(&[
            "smoke",
            fake.to_str().unwrap(),
            "--venus",
            "--venus-mesa",
            "krunkit",
        ]);
        run.fails(2, &["recipes/lab/mesa.toml", needle, "help:"]);
    }
    fs::write(&recipe, &shipped).unwrap();
    // A --mirror mesa=DIR without the pinned .dsc (empty, or another file of that name).
    let dir = s.path().join("mesa-src");
    fs::create_dir_all(&dir).unwrap();
    let mirror = format!("mesa={}", dir.display());
    let args = [
        "smoke",
        fake.to_str().unwrap(),
        "--venus",
        "--venus-mesa",
        "krunkit",
        "--mirror",
        mirror.as_str(),
    ];
    s.run(&args)
        .fails(2, &["--mirror mesa", "mesa_25.0.7-2+deb13u1.dsc", "help:"]);
    fs::write(
        dir.join("mesa_25.0.7-2+deb13u1.dsc"),
        "Format: 3.0 (quilt)\n",
    )
    .unwrap();
    s.run(&args)
        .fails(2, &["--mirror mesa", "the recipe pins c3605bc6", "help:"]);
    // The series must say what it patches.
    let series = s.project().join("patches/lab/mesa-venus-krunkit/series");
    let text = fs::read_to_string(&series).unwrap();
    fs::write(
        &series,
        text.replace("# target: mesa\n", "# target: ollama\n"),
    )
    .unwrap();
    s.run(&[
        "smoke",
        fake.to_str().unwrap(),
        "--venus",
        "--venus-mesa",
        "krunkit",
    ])
    .fails(
        2,
        &["patches/lab/mesa-venus-krunkit/series", "# target: mesa"],
    );
    fs::write(&series, text).unwrap();
    // krunkit's blob rule is our vtest series' (VTEST_BLOB_ALIGNMENT): Debian's server
    // cannot apply it.
    s.run(&[
        "smoke",
        fake.to_str().unwrap(),
        "--venus",
        "--venus-server",
        "stock",
        "--venus-krunkit-host",
    ])
    .fails(2, &["--venus-krunkit-host", "--venus-server patched"]);
    // Nothing was made: no root, no Mesa build, no lab.
    assert!(!s.cache().join("builders").exists());
    assert!(!s.cache().join("mesa").exists());
    assert!(!s.cache().join("venus").exists());
    // An image runs its own Mesa.
    s.run(&[
        "smoke",
        "--image",
        "localhost/x:y",
        "--venus",
        "--venus-mesa",
        "krunkit",
    ])
    .fails(2, &["--venus-mesa krunkit", "help:"]);
}

#[test]
fn the_shipped_mesa_recipe_and_series_check() {
    // The shipped recipe loads, pins its series, and its series is a Mesa series.
    let project = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let recipe = ollama_vulkan::mesa::MesaRecipe::load(&project.join("recipes")).unwrap();
    assert_eq!(recipe.dsc_name(), "mesa_25.0.7-2+deb13u1.dsc");
    let series = ollama_vulkan::patch::series::Series::load(
        &project.join("patches").join(&recipe.series.name),
    )
    .unwrap();
    assert_eq!(series.hash, recipe.series.sha256);
    assert_eq!(series.target, Some(ollama_vulkan::source::RepoName::Mesa));
    // Venus alone, and nothing that decides where the driver goes.
    let o = &recipe.build.meson_options;
    assert!(o.contains(&"-Dvulkan-drivers=virtio".to_string()));
    assert!(o.contains(&"-Dgallium-drivers=".to_string()));
    assert!(!o
        .iter()
        .any(|x| x.contains("prefix") || x.contains("libdir")));
    // The cross file names the arm64 toolchain and pkg-config's arm64 directories.
    use ollama_vulkan::image::base::Arch;
    let cross = ollama_vulkan::mesa::cross_file(Arch::Arm64).unwrap();
    assert!(cross.contains("c = 'aarch64-linux-gnu-gcc'"), "{cross}");
    assert!(
        cross.contains("/usr/lib/aarch64-linux-gnu/pkgconfig"),
        "{cross}"
    );
    assert!(ollama_vulkan::mesa::cross_file(Arch::Amd64).is_none());
    let p = ollama_vulkan::mesa::build_packages(&recipe, Arch::Arm64);
    assert!(p.contains(&"crossbuild-essential-arm64".to_string()));
    assert!(p.contains(&"libdrm-dev:arm64".to_string()));
    // A cross target is built in the cross root, which --offline may not make: refused
    // before anything is made.
    let s = Scratch::new();
    let mirrors = ollama_vulkan::source::Mirrors::new(&[], s.cache(), false).unwrap();
    let other = if Arch::host() == Arch::Amd64 {
        Arch::Arm64
    } else {
        Arch::Amd64
    };
    let err = ollama_vulkan::mesa::ensure(&ollama_vulkan::mesa::MesaRequest {
        recipes_dir: &project.join("recipes"),
        patches_dir: &project.join("patches"),
        mirrors: &mirrors,
        cache: &s.cache(),
        target: other,
        offline: true,
        quiet: true,
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("--offline forbids making it")
            || err
                .to_string()
                .contains("needs a Debian or Ubuntu host and root"),
        "{err}"
    );
    assert!(!s.cache().exists() || !s.cache().join("mesa").exists());
}
