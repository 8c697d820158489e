//! The wasmtime configuration every Pier engine uses.
//!
//! This file is also compiled into `host/build.rs`, which precompiles the built-in plugins
//! with it: an artifact loads only into an engine configured the same way, so there is
//! exactly one place that says how.

/// Largest WebAssembly stack a plugin may use, in bytes; deeper recursion traps.
pub const MAX_WASM_STACK: usize = 1 << 20;

/// Stack of the fiber each call runs on; must exceed [`MAX_WASM_STACK`] with room for
/// host frames.
pub const ASYNC_STACK: usize = 4 << 20;

/// The engine configuration: component model, epoch interruption (wall-clock limits),
/// bounded stacks, Cranelift optimising for speed.
pub fn engine_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.parallel_compilation(true);
    config
}

/// A `Hasher` that feeds SHA-256, so hashes are stable across runs and builds.
struct ShaHasher(sha2::Sha256);

impl std::hash::Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    fn finish(&self) -> u64 {
        let digest = sha2::Digest::finalize(self.0.clone());
        u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
    }
}

/// A short, stable digest of everything that decides whether a precompiled artifact
/// loads into `engine`: wasmtime's version, compiler settings and CPU features.
pub fn engine_key(engine: &wasmtime::Engine) -> String {
    use std::hash::Hash as _;
    let mut hasher = ShaHasher(<sha2::Sha256 as sha2::Digest>::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = sha2::Digest::finalize(hasher.0);
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}
