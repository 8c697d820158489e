//! `pier plugins new`: a plugin project that builds with `cargo build --target
//! wasm32-wasip2` and passes `pier conformance` as generated. The SDK and the contract are
//! vendored into it, so it builds on its own.

use std::path::Path;

/// (path in the new project, contents) of every file, before `{{…}}` substitution.
const FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../templates/plugin/Cargo.toml.in")),
    ("rust-toolchain.toml", include_str!("../../templates/plugin/rust-toolchain.toml.in")),
    (".gitignore", include_str!("../../templates/plugin/gitignore.in")),
    ("README.md", include_str!("../../templates/plugin/README.md.in")),
    ("conformance.json", include_str!("../../templates/plugin/conformance.json.in")),
    ("src/lib.rs", include_str!("../../templates/plugin/src/lib.rs.in")),
    ("pier-plugin-sdk/Cargo.toml", include_str!("../../templates/plugin/sdk-Cargo.toml.in")),
    ("pier-plugin-sdk/src/lib.rs", include_str!("../../../plugins/sdk/src/lib.rs")),
    ("pier-plugin-sdk/src/api.rs", include_str!("../../../plugins/sdk/src/api.rs")),
    ("pier-plugin-sdk/src/log.rs", include_str!("../../../plugins/sdk/src/log.rs")),
    ("pier-plugin-sdk/wit/types.wit", include_str!("../../../wit/0.3.0/types.wit")),
    ("pier-plugin-sdk/wit/method.wit", include_str!("../../../wit/0.3.0/method.wit")),
    ("pier-plugin-sdk/wit/capabilities.wit", include_str!("../../../wit/0.3.0/capabilities.wit")),
    ("pier-plugin-sdk/wit/world.wit", include_str!("../../../wit/0.3.0/world.wit")),
];

/// Where `plugins/sdk/src/lib.rs` reads the contract from in this repository ...
const SDK_WIT_PATH: &str = r#"path: "../../wit/0.3.0""#;
/// ... and where the vendored SDK reads it from in a new project (`pier-plugin-sdk/wit`).
const VENDORED_WIT_PATH: &str = r#"path: "wit""#;

/// Whether `name` can name a method (and its crate).
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

/// Writes the project for method `name` into `dir`, which must not exist or be empty.
/// Returns the paths written, relative to `dir`.
pub fn write(dir: &Path, name: &str) -> std::io::Result<Vec<&'static str>> {
    let lib = name.replace('-', "_");
    let title = title(name);
    for (path, text) in FILES {
        let text = text
            .replace("{{name}}", name)
            .replace("{{title}}", &title)
            .replace("{{lib}}", &lib)
            // The SDK's bindings read the contract from the vendored copy.
            .replace(SDK_WIT_PATH, VENDORED_WIT_PATH);
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, text)?;
    }
    Ok(FILES.iter().map(|(p, _)| *p).collect())
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

    #[test]
    fn the_sdk_points_at_its_vendored_contract() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "acme").unwrap();
        let sdk = std::fs::read_to_string(dir.path().join("pier-plugin-sdk/src/lib.rs")).unwrap();
        assert!(sdk.contains(VENDORED_WIT_PATH), "{sdk}");
        assert!(!sdk.contains("../../wit"), "{sdk}");
        let world = std::fs::read_to_string(dir.path().join("pier-plugin-sdk/wit/world.wit")).unwrap();
        assert!(world.contains("package pier:deploy@0.3.0;"), "{world}");
        let lib = std::fs::read_to_string(dir.path().join("src/lib.rs")).unwrap();
        assert!(lib.contains(r#"name: "acme".into()"#));
        assert!(!lib.contains("{{"));
        assert!(!lib.contains("prepare_commands"), "{lib}");
    }
}
