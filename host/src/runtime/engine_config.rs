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

/// Which compiler turns a plugin into machine code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// Winch, wasmtime's baseline compiler: compiles several times faster, runs somewhat
    /// slower. A plugin's first load on a machine uses it.
    Baseline,
    /// Cranelift optimising for speed: what a plugin runs as once its artifact is cached.
    Optimized,
}

impl Tier {
    /// The compiler's name, as messages, `--json` and cache file names give it.
    pub fn compiler(self) -> &'static str {
        match self {
            Tier::Baseline => "winch",
            Tier::Optimized => "cranelift",
        }
    }
}

/// The engine configuration of the optimised tier: the one built-in plugins are
/// precompiled with.
pub fn engine_config() -> wasmtime::Config {
    engine_config_for(Tier::Optimized)
}

/// The engine configuration of `tier`: component model, epoch interruption (wall-clock
/// limits) and bounded stacks in both; Cranelift optimising for speed, or Winch with
/// everything around it made for compiling fast.
pub fn engine_config_for(tier: Tier) -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    config.async_stack_size(ASYNC_STACK);
    config.parallel_compilation(true);
    match tier {
        Tier::Optimized => {
            config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        }
        Tier::Baseline => {
            config.strategy(wasmtime::Strategy::Winch);
            // Winch compiles the function bodies, but the trampolines between host and
            // guest (one for each function a table holds: thousands in a componentize-js
            // plugin) are Cranelift's: compile those quickly rather than well.
            config.cranelift_opt_level(wasmtime::OptLevel::None);
            config.cranelift_regalloc_algorithm(wasmtime::RegallocAlgorithm::SinglePass);
            // Unwind tables serve only outside unwinders (debuggers, profilers); wasmtime's
            // own backtraces do not use them. Registering one per function was a large
            // part of loading a big plugin. The optimised tier keeps them for profiling.
            config.native_unwind_info(false);
            // Nor the map from machine code back to WebAssembly offsets: it serves only
            // the offsets in a trap's backtrace, which Pier's messages do not show.
            config.generate_address_map(false);
        }
    }
    config
}

/// The optimised tier's configuration on one thread: for compiling in the background
/// while a plugin runs, leaving the other cores to it. Its artifacts load into the
/// [`engine_config`] engine (the same key).
pub fn background_config() -> wasmtime::Config {
    let mut config = engine_config_for(Tier::Optimized);
    config.parallel_compilation(false);
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
