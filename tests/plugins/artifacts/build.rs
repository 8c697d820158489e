//! Builds every test plugin (the examples of `pier-test-plugins`) and writes their paths
//! as constants: `EVERYTHING`, `ILOOP`, ... and `ALL`.

use std::fmt::Write as _;
use std::{env, fs, path::Path};

fn main() {
    let root = pier_wasm_build::workspace_root();
    for dir in [
        "wit",
        "plugins/sdk",
        "tests/plugins/examples",
        "tests/plugins/wit-0.9",
        "tests/plugins/wit-other",
        "tests/plugins/wit-mistyped",
    ] {
        pier_wasm_build::rerun_if_changed(&root.join(dir));
    }
    pier_wasm_build::rerun_if_changed(&root.join("tests/plugins/Cargo.toml"));
    let manifest = fs::read_to_string(root.join("tests/plugins/Cargo.toml")).expect("read test plugin manifest");
    let names: Vec<String> = manifest
        .lines()
        .filter_map(|l| l.trim().strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_string())
        .filter(|n| n != "pier-test-plugins")
        .collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let artifacts = pier_wasm_build::build("pier-test-plugins", pier_wasm_build::Targets::Examples, &refs);
    let mut code = String::new();
    for a in &artifacts {
        let constant = a.name.to_uppercase().replace('-', "_");
        writeln!(
            code,
            "/// The `{}` test plugin.\npub const {constant}: &str = {:?};",
            a.name,
            a.path.display().to_string()
        )
        .expect("write to string");
    }
    code.push_str("/// Every test plugin: (name, path).\npub const ALL: &[(&str, &str)] = &[\n");
    for a in &artifacts {
        writeln!(code, "    ({:?}, {}),", a.name, a.name.to_uppercase().replace('-', "_")).expect("write to string");
    }
    code.push_str("];\n");
    let out = env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts");
    fs::write(Path::new(&out).join("plugins.rs"), code).expect("write plugins.rs");
}
