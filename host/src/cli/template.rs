//! `pier plugins new`: a plugin project, in Rust, Python or JavaScript, that builds with
//! that language's toolchain and passes `pier conformance` as generated. Each template
//! vendors the contract (`wit/0.3.0`, included from this repository so it never drifts)
//! and a small SDK, so the project builds on its own.

use std::path::Path;

/// The language of a new plugin project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust: `cargo build --target wasm32-wasip2`, with the Rust SDK vendored.
    Rust,
    /// Python: built with componentize-py (PyPI).
    Python,
    /// JavaScript: built with componentize-js (npm).
    Js,
}

/// What one language's project holds.
struct Template {
    /// (path in the new project, contents) of its own files, before `{{…}}` substitution.
    files: &'static [(&'static str, &'static str)],
    /// Where in the project the contract's WIT files go.
    contract: &'static str,
    /// Files to make executable.
    executable: &'static [&'static str],
    /// The commands that install the project's toolchain, build it and run conformance on
    /// it, from its directory.
    build: &'static str,
    /// What those commands need installed first, if anything but Rust's toolchain.
    needs: &'static str,
}

/// The contract's WIT files, by file name.
const CONTRACT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/0.3.0/types.wit")),
    ("method.wit", include_str!("../../../wit/0.3.0/method.wit")),
    ("capabilities.wit", include_str!("../../../wit/0.3.0/capabilities.wit")),
    ("world.wit", include_str!("../../../wit/0.3.0/world.wit")),
];

const RUST: Template = Template {
    files: &[
        ("Cargo.toml", include_str!("../../templates/plugin-rust/Cargo.toml.in")),
        ("rust-toolchain.toml", include_str!("../../templates/plugin-rust/rust-toolchain.toml.in")),
        (".gitignore", include_str!("../../templates/plugin-rust/gitignore.in")),
        ("README.md", include_str!("../../templates/plugin-rust/README.md.in")),
        ("conformance.json", include_str!("../../templates/plugin-rust/conformance.json.in")),
        ("src/lib.rs", include_str!("../../templates/plugin-rust/src/lib.rs.in")),
        ("pier-plugin-sdk/Cargo.toml", include_str!("../../templates/plugin-rust/sdk-Cargo.toml.in")),
        ("pier-plugin-sdk/src/lib.rs", include_str!("../../../plugins/sdk/src/lib.rs")),
        ("pier-plugin-sdk/src/api.rs", include_str!("../../../plugins/sdk/src/api.rs")),
        ("pier-plugin-sdk/src/log.rs", include_str!("../../../plugins/sdk/src/log.rs")),
        ("pier-plugin-sdk/src/wait.rs", include_str!("../../../plugins/sdk/src/wait.rs")),
    ],
    contract: "pier-plugin-sdk/wit",
    executable: &[],
    build: "cargo build --release --target wasm32-wasip2 && pier conformance target/wasm32-wasip2/release/{{lib}}.wasm --responses conformance.json",
    needs: "",
};

const PYTHON: Template = Template {
    files: &[
        ("app.py", include_str!("../../templates/plugin-python/app.py.in")),
        ("pier_sdk.py", include_str!("../../templates/plugin-python/pier_sdk.py.in")),
        ("build.sh", include_str!("../../templates/plugin-python/build.sh.in")),
        ("requirements.txt", include_str!("../../templates/plugin-python/requirements.txt.in")),
        (".gitignore", include_str!("../../templates/plugin-python/gitignore.in")),
        ("README.md", include_str!("../../templates/plugin-python/README.md.in")),
        ("conformance.json", include_str!("../../templates/plugin-python/conformance.json.in")),
    ],
    contract: "wit",
    executable: &["build.sh"],
    build: "python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && ./build.sh && pier conformance {{name}}.wasm --responses conformance.json",
    needs: "Python 3",
};

const JS: Template = Template {
    files: &[
        ("package.json", include_str!("../../templates/plugin-js/package.json.in")),
        ("package-lock.json", include_str!("../../templates/plugin-js/package-lock.json.in")),
        ("build.mjs", include_str!("../../templates/plugin-js/build.mjs.in")),
        ("src/plugin.js", include_str!("../../templates/plugin-js/src/plugin.js.in")),
        ("src/pier.js", include_str!("../../templates/plugin-js/src/pier.js.in")),
        ("wit/plugin.wit", include_str!("../../templates/plugin-js/wit/plugin.wit.in")),
        ("wit/deps/wasi-clocks/monotonic-clock.wit", include_str!("../../templates/plugin-js/wit/wasi-clocks.wit.in")),
        ("wit/deps/wasi-io/poll.wit", include_str!("../../templates/plugin-js/wit/wasi-io.wit.in")),
        (".gitignore", include_str!("../../templates/plugin-js/gitignore.in")),
        ("README.md", include_str!("../../templates/plugin-js/README.md.in")),
        ("conformance.json", include_str!("../../templates/plugin-js/conformance.json.in")),
    ],
    contract: "wit/deps/pier-deploy",
    executable: &[],
    build: "npm ci && node build.mjs && pier conformance {{name}}.wasm --responses conformance.json",
    needs: "Node.js 20 or later and npm",
};

impl Lang {
    fn template(self) -> &'static Template {
        match self {
            Lang::Rust => &RUST,
            Lang::Python => &PYTHON,
            Lang::Js => &JS,
        }
    }

    /// The commands that install the toolchain of a project of method `name`, build it and
    /// run conformance on it, from its directory.
    pub fn build_commands(self, name: &str) -> String {
        substitute(self.template().build, name)
    }

    /// What those commands need installed first, if anything but Rust's toolchain.
    pub fn needs(self) -> Option<&'static str> {
        Some(self.template().needs).filter(|n| !n.is_empty())
    }
}

/// Where `plugins/sdk/src/lib.rs` reads the contract from in this repository ...
const SDK_WIT_PATH: &str = r#"path: "../../wit/0.3.0""#;
/// ... and where the vendored SDK reads it from in a new project (`pier-plugin-sdk/wit`).
const VENDORED_WIT_PATH: &str = r#"path: "wit""#;

/// Whether `name` can name a method (and its crate or package).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.as_bytes()[0].is_ascii_lowercase()
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `my-method` → `My Method`.
fn title(name: &str) -> String {
    name.split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` with the placeholders of method `name` filled in.
fn substitute(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{title}}", &title(name))
        .replace("{{lib}}", &name.replace('-', "_"))
        // The Rust SDK's bindings read the contract from the vendored copy.
        .replace(SDK_WIT_PATH, VENDORED_WIT_PATH)
}

/// Writes the `lang` project for method `name` into `dir`, which must not exist or be
/// empty. Returns the paths written, relative to `dir`.
pub fn write(dir: &Path, name: &str, lang: Lang) -> std::io::Result<Vec<String>> {
    let template = lang.template();
    let contract = CONTRACT.iter().map(|(file, text)| (format!("{}/{file}", template.contract), *text));
    let files: Vec<(String, &str)> =
        template.files.iter().map(|(path, text)| (path.to_string(), *text)).chain(contract).collect();
    for (path, text) in &files {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&target, substitute(text, name))?;
        if template.executable.contains(&path.as_str()) {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(files.into_iter().map(|(path, _)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_titles() {
        assert!(valid_name("acme-cloud"));
        assert!(!valid_name("Acme"));
        assert!(!valid_name("9lives"));
        assert!(!valid_name("a_b"));
        assert_eq!(title("acme-cloud-run"), "Acme Cloud Run");
    }

    fn read(dir: &Path, path: &str) -> String {
        std::fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_sdk_points_at_its_vendored_contract() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme", Lang::Rust).unwrap();
        let sdk = read(dir.path(), "pier-plugin-sdk/src/lib.rs");
        assert!(sdk.contains(VENDORED_WIT_PATH), "{sdk}");
        assert!(!sdk.contains("../../wit"), "{sdk}");
        let world = read(dir.path(), "pier-plugin-sdk/wit/world.wit");
        assert!(world.contains("package pier:deploy@0.3.0;"), "{world}");
        let lib = read(dir.path(), "src/lib.rs");
        assert!(lib.contains(r#"name: "acme".into()"#));
        assert!(!lib.contains("{{"));
        assert!(!lib.contains("prepare_commands"), "{lib}");
        // Every module the SDK declares is vendored.
        for module in sdk.lines().filter_map(|l| l.strip_prefix("pub mod ")) {
            let file = format!("pier-plugin-sdk/src/{}.rs", module.trim_end_matches(';'));
            assert!(dir.path().join(&file).is_file(), "{file} is not vendored");
        }
    }

    #[test]
    fn every_language_vendors_the_contract_and_fills_every_placeholder() {
        for (lang, world) in [
            (Lang::Rust, "pier-plugin-sdk/wit/world.wit"),
            (Lang::Python, "wit/world.wit"),
            (Lang::Js, "wit/deps/pier-deploy/world.wit"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let files = write(dir.path(), "acme-cloud", lang).unwrap();
            assert!(read(dir.path(), world).contains("package pier:deploy@0.3.0;"), "{lang:?}");
            for file in &files {
                let text = read(dir.path(), file);
                assert!(!text.contains("{{"), "{lang:?}: {file} keeps a placeholder");
            }
            assert!(!lang.build_commands("acme-cloud").contains("{{"), "{lang:?}");
        }
    }

    #[test]
    fn the_python_build_script_is_executable_and_names_the_output() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme-cloud", Lang::Python).unwrap();
        let mode = std::fs::metadata(dir.path().join("build.sh")).unwrap().permissions().mode();
        assert_eq!(mode & 0o111, 0o111, "{mode:o}");
        let script = read(dir.path(), "build.sh");
        assert!(script.contains("componentize-py -d wit -w pier:deploy/plugin componentize app -o acme-cloud.wasm"));
        assert!(read(dir.path(), "app.py").contains(r#"name="acme-cloud""#));
    }

    #[test]
    fn the_js_lockfile_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme-cloud", Lang::Js).unwrap();
        let package: serde_json::Value = serde_json::from_str(&read(dir.path(), "package.json")).unwrap();
        let lock: serde_json::Value = serde_json::from_str(&read(dir.path(), "package-lock.json")).unwrap();
        assert_eq!(package["name"], "acme-cloud");
        assert_eq!(lock["name"], "acme-cloud");
        assert_eq!(lock["packages"][""]["dependencies"], package["dependencies"]);
    }
}
