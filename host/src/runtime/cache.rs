//! The on-disk cache of compiled plugins.
//!
//! An artifact is keyed by the SHA-256 of the component's bytes, the compiler tier
//! (`winch` or `cranelift`) and the engine's compatibility hash (wasmtime version,
//! compiler settings, CPU features), so a changed file or a changed engine never gets a
//! stale artifact, and a baseline artifact never stands in for an optimised one. Writes are atomic (a temporary
//! file renamed into place); an artifact that fails to load is compiled again and
//! replaced. The cache directory is trusted like the `pier` binary itself: anyone who
//! can write it can run code as the user.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine_config::Tier;
use super::pool::Engines;

/// Whether a load used the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// A cached or embedded artifact was loaded: no compilation.
    Hit,
    /// The component was compiled (and the artifact stored, if the cache is enabled).
    Compiled,
}

/// The engines artifacts are compiled for, with their tier and the part of an artifact's
/// file name that says both (the compiler, then the engines' compatibility hash), so
/// artifacts of the two tiers never take each other's place.
#[derive(Clone)]
pub struct Target {
    engines: Engines,
    tier: Tier,
    engine_key: String,
    key: String,
}

impl Target {
    /// The target of `engines`, configured for `tier`.
    pub fn new(engines: Engines, tier: Tier) -> Self {
        let engine_key = super::engine_config::engine_key(&engines.pooled);
        let key = format!("{}-{engine_key}", tier.compiler());
        Target { engines, tier, engine_key, key }
    }

    /// The target of `engine` alone (no pool), configured for `tier`.
    pub fn single(engine: Engine, tier: Tier) -> Self {
        Target::new(Engines { pooled: engine.clone(), on_demand: engine }, tier)
    }

    /// The engines.
    pub fn engines(&self) -> &Engines {
        &self.engines
    }

    /// The engines' compatibility hash ([`super::engine_config::engine_key`]).
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The tier its compiler is.
    pub fn tier(&self) -> Tier {
        self.tier
    }

    /// Whether artifacts compiled for `self` and for `other` are the same files.
    pub fn same_artifacts(&self, other: &Target) -> bool {
        self.key == other.key
    }

    /// Compiles `wasm` for this target, returning the artifact's bytes.
    pub fn precompile(&self, wasm: &[u8]) -> wasmtime::Result<Vec<u8>> {
        self.engines.pooled.precompile_component(wasm)
    }

    /// The component of `artifact`, made by [`Target::precompile`] or for an engine with
    /// this target's key (embedded in `pier`, or in the cache).
    ///
    /// # Safety
    /// As [`Component::deserialize`]: `artifact` must come from wasmtime for this key.
    pub unsafe fn deserialize(&self, artifact: &[u8]) -> wasmtime::Result<Component> {
        // SAFETY: the caller's promise.
        self.engines.component(|engine| unsafe { Component::deserialize(engine, artifact) })
    }
}

/// The directory of cached artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// A cache in `dir`. The directory is made on first write.
    pub fn new(dir: PathBuf) -> Self {
        ArtifactCache { dir }
    }

    /// Where the cache lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an artifact of the component with SHA-256 `digest` is stored for `target`.
    pub fn has(&self, target: &Target, digest: &str) -> bool {
        self.path(target, digest).is_file()
    }

    /// The file of the artifact of the component with SHA-256 `digest` for `target`.
    pub fn path(&self, target: &Target, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", target.key))
    }

    /// Loads the artifact of the component with SHA-256 `digest` for `target`, or compiles
    /// `wasm` and stores the artifact.
    pub fn load_or_compile(
        &self,
        target: &Target,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        if let Some(component) = self.load(target, digest) {
            return Ok((component, CacheOutcome::Hit));
        }
        self.compile(target, wasm, digest).map(|c| (c, CacheOutcome::Compiled))
    }

    /// The stored artifact of the component with SHA-256 `digest` for `target`, if there
    /// is one that loads.
    pub fn load(&self, target: &Target, digest: &str) -> Option<Component> {
        let path = self.path(target, digest);
        if !path.is_file() {
            return None;
        }
        // SAFETY: artifacts in the cache were written by `compile` below from
        // `Engine::precompile_component` output for an engine with this key; the
        // directory is as trusted as the binary (see the module docs).
        match target.engines.component(|engine| unsafe { Component::deserialize_file(engine, &path) }) {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!("cached artifact {} is unusable ({e}); compiling again", path.display());
                None
            }
        }
    }

    /// Compiles `wasm` for `target` and stores the artifact.
    pub fn compile(&self, target: &Target, wasm: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let compiled = target.precompile(wasm)?;
        // SAFETY: `compiled` was produced just now by this target's engine.
        let component = unsafe { target.deserialize(&compiled)? };
        if let Err(e) = self.store(&self.path(target, digest), &compiled) {
            tracing::warn!("could not write the compiled artifact to {}: {e}", self.dir.display());
        }
        Ok(component)
    }

    fn store(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let mut file = tempfile::NamedTempFile::new_in(&self.dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
