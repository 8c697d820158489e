//! The on-disk cache of compiled plugins.
//!
//! An artifact is keyed by the SHA-256 of the component's bytes and by the engine's
//! compatibility hash (wasmtime version, compiler settings, CPU features), so a changed
//! file or a changed engine never gets a stale artifact. Writes are atomic (a temporary
//! file renamed into place); an artifact that fails to load is compiled again and
//! replaced. The cache directory is trusted like the `pier` binary itself: anyone who
//! can write it can run code as the user.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether a load used the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// A cached or embedded artifact was loaded: no compilation.
    Hit,
    /// The component was compiled (and the artifact stored, if the cache is enabled).
    Compiled,
}

/// The directory of cached artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

impl ArtifactCache {
    /// A cache in `dir` for artifacts of `engine`. The directory is made on first write.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        ArtifactCache { dir, engine_key: super::engine_config::engine_key(engine) }
    }

    /// Where the cache lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an artifact of the component with SHA-256 `digest` is stored.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// Loads the artifact of the component with SHA-256 `digest`, or compiles `wasm` and
    /// stores the artifact.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.path(digest);
        if path.is_file() {
            // SAFETY: artifacts in the cache were written by `store` below from
            // `Engine::precompile_component` output for an engine with this key; the
            // directory is as trusted as the binary (see the module docs).
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(e) => tracing::warn!("cached artifact {} is unusable ({e}); compiling again", path.display()),
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        if let Err(e) = self.store(&path, &compiled) {
            tracing::warn!("could not write the compiled artifact to {}: {e}", self.dir.display());
        }
        Ok((component, CacheOutcome::Compiled))
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
