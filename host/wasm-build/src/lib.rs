//! Builds Pier's WebAssembly plugins from source, for use in build scripts.
//!
//! The host embeds its built-in plugins, and the tests use plugins built from source, so
//! both build scripts run a nested `cargo build --target wasm32-wasip2`. The nested build
//! uses its own directory under the workspace's target directory so it never waits on the
//! lock of the build that runs it, and it is cleaned of the variables the outer cargo sets
//! for build scripts (wrappers, flags, jobserver) so that `cargo clippy` or coverage runs
//! of the host do not leak into the guests.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The target every plugin is built for.
pub const TARGET: &str = "wasm32-wasip2";

/// The cargo profile plugins are built with (see the workspace `Cargo.toml`).
pub const PROFILE: &str = "plugin";

/// What to build from a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets {
    /// The package's library (a `cdylib`): one component named after the package.
    Lib,
    /// Every example of the package, each a `cdylib`: one component per example. The
    /// package's `guest` feature is turned on (its examples require it, so that native
    /// builds of the workspace leave them out).
    Examples,
}

/// A component the nested build produced.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The library or example name, with `-` as in the manifest.
    pub name: String,
    /// Where the `.wasm` file is.
    pub path: PathBuf,
}

/// The workspace root, found from the calling package's manifest directory.
pub fn workspace_root() -> PathBuf {
    let start = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set for build scripts"));
    let mut dir = start.as_path();
    loop {
        let manifest = dir.join("Cargo.toml");
        if let Ok(text) = std::fs::read_to_string(&manifest)
            && text.lines().any(|l| l.trim() == "[workspace]")
        {
            return dir.to_path_buf();
        }
        dir = dir.parent().unwrap_or_else(|| panic!("no workspace Cargo.toml above {}", start.display()));
    }
}

/// Directory the nested builds share, under the workspace's target directory.
pub fn target_dir(root: &Path) -> PathBuf {
    let base = env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let base = if base.is_relative() { root.join(base) } else { base };
    base.join("wasm")
}

/// Asks cargo to rerun the build script when anything under `path` changes.
pub fn rerun_if_changed(path: &Path) {
    println!("cargo:rerun-if-changed={}", path.display());
}

/// Builds `package` of the workspace for [`TARGET`] with the [`PROFILE`] profile and
/// returns the components it produced. `names` lists the library or example names
/// expected; a missing output is an error.
///
/// # Panics
///
/// Panics (failing the build script with the message) if cargo cannot be run, the build
/// fails, or an expected component is missing.
pub fn build(package: &str, targets: Targets, names: &[&str]) -> Vec<Artifact> {
    let root = workspace_root();
    let target_dir = target_dir(&root);
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .arg("build")
        .arg("--quiet")
        .arg("--package")
        .arg(package)
        .arg("--target")
        .arg(TARGET)
        .arg("--profile")
        .arg(PROFILE)
        .arg("--target-dir")
        .arg(&target_dir);
    match targets {
        Targets::Lib => cmd.arg("--lib"),
        Targets::Examples => cmd.arg("--examples").arg("--features").arg("guest"),
    };
    for var in [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CLIPPY_ARGS",
        "CARGO_PRIMARY_PACKAGE",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not run cargo to build plugin `{package}`: {e}"));
    if !status.success() {
        panic!(
            "building plugin `{package}` for {TARGET} failed ({status}); is the target installed? \
             run `rustup target add {TARGET}`"
        );
    }
    let out = target_dir.join(TARGET).join(PROFILE);
    names
        .iter()
        .map(|name| {
            let file = format!("{}.wasm", name.replace('-', "_"));
            let path = match targets {
                Targets::Lib => out.join(&file),
                Targets::Examples => out.join("examples").join(&file),
            };
            assert!(path.is_file(), "building `{package}` did not produce {}", path.display());
            Artifact { name: (*name).to_string(), path }
        })
        .collect()
}
