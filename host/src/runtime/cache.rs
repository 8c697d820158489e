//! The on-disk cache of compiled plugins.
//!
//! An artifact is keyed by the SHA-256 of the component's bytes, the compiler tier
//! (`winch` or `cranelift`) and the engine's compatibility hash (wasmtime version,
//! compiler settings, CPU features), so a changed file or a changed engine never gets a
//! stale artifact, and a baseline artifact never stands in for an optimised one. Writes
//! are atomic (a temporary file, flushed, renamed into place); an artifact that fails to
//! load is compiled again and replaced. A load that compiles does not wait for its
//! artifact to reach the disk (a Winch artifact is about four times the component): the
//! write runs on a thread of its own, which a later look-up of the same artifact waits
//! for, and so does [`ArtifactCache::finish_writes`] (the runtime calls it as it ends).
//! The cache directory is trusted like the `pier` binary itself: anyone who can write it
//! can run code as the user.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

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
    /// Artifacts being written, by file: shared by the clones of one cache.
    writes: Arc<Mutex<BTreeMap<PathBuf, JoinHandle<()>>>>,
}

impl ArtifactCache {
    /// A cache in `dir`. The directory is made on first write.
    pub fn new(dir: PathBuf) -> Self {
        ArtifactCache { dir, writes: Arc::default() }
    }

    /// Where the cache lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether an artifact of the component with SHA-256 `digest` is stored for `target`.
    pub fn has(&self, target: &Target, digest: &str) -> bool {
        let path = self.path(target, digest);
        self.wait_for(&path);
        path.is_file()
    }

    /// The file of the artifact of the component with SHA-256 `digest` for `target`.
    pub fn path(&self, target: &Target, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", target.key))
    }

    /// Loads the artifact of the component with SHA-256 `digest` for `target`, or compiles
    /// `wasm` and stores the artifact, returning before it is written.
    pub fn load_or_compile(
        &self,
        target: &Target,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        if let Some(component) = self.load(target, digest) {
            return Ok((component, CacheOutcome::Hit));
        }
        let (component, compiled) = compile(target, wasm)?;
        self.store_behind(self.path(target, digest), compiled);
        Ok((component, CacheOutcome::Compiled))
    }

    /// The stored artifact of the component with SHA-256 `digest` for `target`, if there
    /// is one that loads.
    pub fn load(&self, target: &Target, digest: &str) -> Option<Component> {
        if !self.has(target, digest) {
            return None;
        }
        let path = self.path(target, digest);
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

    /// Compiles `wasm` for `target` and stores the artifact, returning once it is written.
    pub fn compile(&self, target: &Target, wasm: &[u8], digest: &str) -> wasmtime::Result<Component> {
        let (component, compiled) = compile(target, wasm)?;
        store(&self.path(target, digest), &compiled);
        Ok(component)
    }

    /// Writes `bytes` as `path` on a thread of its own; [`ArtifactCache::has`] waits for it.
    /// A write of the same file already under way (two loads of one plugin at once) is
    /// waited for here, so that none is left behind unjoined.
    fn store_behind(&self, path: PathBuf, bytes: Vec<u8>) {
        let file = path.clone();
        let earlier =
            match std::thread::Builder::new().name("pier-cache-write".into()).spawn(move || store(&file, &bytes)) {
                Ok(write) => self.writes.lock().unwrap_or_else(|e| e.into_inner()).insert(path, write),
                Err(e) => {
                    tracing::warn!("could not write the compiled artifact to {}: {e}", path.display());
                    None
                }
            };
        if let Some(earlier) = earlier {
            let _ = earlier.join();
        }
    }

    /// Waits for the artifact being written to `path`, if one is.
    fn wait_for(&self, path: &Path) {
        let write = self.writes.lock().unwrap_or_else(|e| e.into_inner()).remove(path);
        if let Some(write) = write {
            let _ = write.join();
        }
    }

    /// Waits for every artifact still being written, so that it is stored before the
    /// process ends.
    pub fn finish_writes(&self) {
        let writes = std::mem::take(&mut *self.writes.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, write) in writes {
            let _ = write.join();
        }
    }
}

/// The component `wasm` compiled for `target`, and its artifact's bytes.
fn compile(target: &Target, wasm: &[u8]) -> wasmtime::Result<(Component, Vec<u8>)> {
    let compiled = target.precompile(wasm)?;
    // SAFETY: `compiled` was produced just now by this target's engine.
    let component = unsafe { target.deserialize(&compiled)? };
    Ok((component, compiled))
}

/// Writes `bytes` as the artifact `path`: to a temporary file in its directory, flushed to
/// the disk, then renamed into place, so that no reader ever maps a partial artifact. A
/// failure is logged: the next load compiles again.
fn store(path: &Path, bytes: &[u8]) {
    #[cfg(test)]
    let _held = tests::WRITES_HELD.lock().unwrap_or_else(|e| e.into_inner());
    let write = || -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        Ok(())
    };
    if let Err(e) = write() {
        tracing::warn!("could not write the compiled artifact to {}: {e}", path.display());
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::runtime::engine_config::engine_config_for;

    /// Held by a test, this keeps every artifact write waiting.
    pub static WRITES_HELD: Mutex<()> = Mutex::new(());

    /// The smallest component: the preamble alone.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_load_does_not_wait_for_its_artifact_but_every_later_look_up_does() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path().join("cache"));
        let target = Target::single(Engine::new(&engine_config_for(Tier::Baseline)).unwrap(), Tier::Baseline);

        let held = WRITES_HELD.lock().unwrap_or_else(|e| e.into_inner());
        let (_, outcome) = cache.load_or_compile(&target, EMPTY_COMPONENT, "first").unwrap();
        assert_eq!(outcome, CacheOutcome::Compiled);
        assert!(!cache.path(&target, "first").exists(), "the load waited for its artifact to be written");
        drop(held);
        assert!(cache.has(&target, "first"), "a look-up did not wait for the artifact being written");
        let (_, again) = cache.load_or_compile(&target, EMPTY_COMPONENT, "first").unwrap();
        assert_eq!(again, CacheOutcome::Hit);

        let held = WRITES_HELD.lock().unwrap_or_else(|e| e.into_inner());
        cache.load_or_compile(&target, EMPTY_COMPONENT, "second").unwrap();
        drop(held);
        cache.finish_writes();
        let mut files: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        let names = ["first", "second"]
            .map(|digest| cache.path(&target, digest).file_name().unwrap().to_string_lossy().into_owned());
        assert_eq!(files, names, "every artifact written in full, and no temporary file left");

        // `compile` (the background optimisation's) returns once its artifact is stored.
        cache.compile(&target, EMPTY_COMPONENT, "third").unwrap();
        assert!(cache.path(&target, "third").is_file());
    }
}
