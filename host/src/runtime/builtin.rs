//! Plugins compiled into the `pier` binary: built from source by `host/build.rs`, embedded
//! both as components and as artifacts precompiled for the build machine, so a fresh CI
//! runner pays no compilation.

/// One embedded plugin.
#[derive(Debug)]
pub struct Builtin {
    /// The method name, as `pier plugins list` shows it.
    pub name: &'static str,
    /// The component.
    pub wasm: &'static [u8],
    /// SHA-256 of the component, lowercase hex (computed at build time, so that a load
    /// does not read the whole component to hash it).
    pub sha256: &'static str,
    /// The component compiled at build time.
    pub compiled: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// The built-in plugin `name`.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}

/// Names of the built-in plugins.
pub fn names() -> Vec<String> {
    BUILTINS.iter().map(|b| b.name.to_string()).collect()
}

/// Whether artifacts precompiled at build time load into an engine whose key is
/// `engine_key` (same wasmtime, settings and CPU features).
pub fn artifact_fits(engine_key: &str) -> bool {
    engine_key == ENGINE_KEY
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_embedded_digest_is_that_of_its_component() {
        for builtin in super::BUILTINS {
            assert_eq!(builtin.sha256, super::super::cache::digest(builtin.wasm), "{}", builtin.name);
        }
    }
}
