//! Builds the built-in plugins from source, precompiles them for this host's engine and
//! writes `builtins.rs`, which embeds the component, its compiled artifact and what its
//! `describe` returns (so listing the built-ins needs no instance).

use std::fmt::Write as _;
use std::path::Path;
use std::{env, fs};

// The build precompiles for the optimised tier only.
#[path = "src/runtime/engine_config.rs"]
#[allow(dead_code)]
mod engine_config;

/// The current contract's types, to read what a built-in's `describe` returns.
#[allow(dead_code, clippy::all)]
mod contract {
    wasmtime::component::bindgen!({
        path: "../wit/0.3.0",
        world: "pier:deploy/plugin",
        additional_derives: [serde::Serialize],
    });
}

/// Built-in plugins: (method name, workspace package, library name).
const BUILTINS: &[(&str, &str, &str)] =
    &[("heroku", "pier-heroku", "pier_heroku"), ("git-ssh", "pier-git-ssh", "pier_git_ssh")];

fn main() {
    let root = pier_wasm_build::workspace_root();
    for dir in ["wit", "plugins"] {
        pier_wasm_build::rerun_if_changed(&root.join(dir));
    }
    pack_relative_relocations();
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
        let (contract, description) = describe(&engine, &compiled, name);
        let sha256: String = <sha2::Sha256 as sha2::Digest>::digest(&wasm).iter().map(|b| format!("{b:02x}")).collect();
        writeln!(
            table,
            "    Builtin {{ name: {name:?}, wasm: include_bytes!({wasm:?}), sha256: {sha256:?}, contract: {contract:?}, description: {description:?}, compiled: include_bytes!({compiled:?}) }},",
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

/// The contract version a built-in targets, and its `describe` as JSON. The call runs with
/// every import a trap: a description is data, and needs no capability.
fn describe(engine: &wasmtime::Engine, compiled: &[u8], name: &str) -> (String, String) {
    use wasmtime::component::{Component, Linker};
    // SAFETY: `compiled` was produced by `precompile_component` on this engine just now.
    let component = unsafe { Component::deserialize(engine, compiled) }.expect("load the precompiled built-in");
    let contract = component
        .component_type()
        .exports(engine)
        .find_map(|(export, _)| export.strip_prefix("pier:deploy/method@").map(str::to_string))
        .unwrap_or_else(|| panic!("built-in plugin `{name}` exports no pier:deploy/method"));
    let mut linker = Linker::new(engine);
    linker.define_unknown_imports_as_traps(&component).expect("stub the imports");
    let mut store = wasmtime::Store::new(engine, ());
    // Epochs never advance here: one tick of deadline never ends.
    store.set_epoch_deadline(1);
    let plugin = contract::Plugin::instantiate(&mut store, &component, &linker)
        .unwrap_or_else(|e| panic!("built-in plugin `{name}` does not instantiate against pier:deploy@0.3.0: {e:?}"));
    let description = plugin
        .pier_deploy_method()
        .call_describe(&mut store)
        .unwrap_or_else(|e| panic!("`describe` of built-in plugin `{name}` failed: {e:?}"));
    (contract, serde_json::to_string(&description).expect("a description serializes"))
}

/// Links `pier` with packed relative relocations (`DT_RELR`) on glibc: the dynamic loader
/// then reads a table of a few kilobytes at start instead of 1.3 MB of `RELA` entries,
/// which was a seventh of a short command's memory. Such a binary needs glibc 2.36 or
/// later; `PIER_PORTABLE_RELOCS=1` builds one without, for older systems.
fn pack_relative_relocations() {
    println!("cargo:rerun-if-env-changed=PIER_PORTABLE_RELOCS");
    let linux_gnu = env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu && env::var_os("PIER_PORTABLE_RELOCS").is_none_or(|v| v.is_empty() || v == "0") {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
