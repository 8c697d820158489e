//! Builds the built-in plugins from source, precompiles them for this host's engine and
//! writes `builtins.rs`, which embeds both the component and its compiled artifact.

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

// The build precompiles for the optimised tier only.
#[path = "src/runtime/engine_config.rs"]
#[allow(dead_code)]
mod engine_config;

/// Built-in plugins: (method name, workspace package, library name).
const BUILTINS: &[(&str, &str, &str)] =
    &[("heroku", "pier-heroku", "pier_heroku"), ("git-ssh", "pier-git-ssh", "pier_git_ssh")];

fn main() {
    let root = pier_wasm_build::workspace_root();
    for dir in ["wit", "plugins"] {
        pier_wasm_build::rerun_if_changed(&root.join(dir));
    }
    let out = env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts");
    let out = Path::new(&out);
    let engine = wasmtime::Engine::new(&engine_config::engine_config()).expect("engine configuration is valid");

    let mut table = String::from("/// Plugins compiled into this binary.\npub static BUILTINS: &[Builtin] = &[\n");
    for (name, package, lib) in BUILTINS {
        let artifact = pier_wasm_build::build(package, pier_wasm_build::Targets::Lib, &[lib])
            .pop()
            .expect("one artifact per built-in");
        let wasm = fs::read(&artifact.path).expect("read built plugin");
        let compiled = engine
            .precompile_component(&wasm)
            .unwrap_or_else(|e| panic!("precompiling built-in plugin `{name}` failed: {e:?}"));
        let wasm_path = out.join(format!("{name}.wasm"));
        let compiled_path = out.join(format!("{name}.cwasm"));
        fs::write(&wasm_path, &wasm).expect("write plugin");
        fs::write(&compiled_path, &compiled).expect("write compiled plugin");
        let sha256: String = <sha2::Sha256 as sha2::Digest>::digest(&wasm).iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            table,
            "    Builtin {{ name: {name:?}, wasm: include_bytes!({wasm:?}), sha256: {sha256:?}, compiled: include_bytes!({compiled:?}) }},",
            wasm = wasm_path.display().to_string(),
            compiled = compiled_path.display().to_string(),
        )
        .expect("write to string");
    }
    table.push_str("];\n");
    writeln!(
        table,
        "/// The engine key the embedded artifacts were compiled for.\npub const ENGINE_KEY: &str = {:?};",
        engine_config::engine_key(&engine)
    )
    .expect("write to string");
    fs::write(out.join("builtins.rs"), table).expect("write builtins.rs");
}
