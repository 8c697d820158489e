//! Reading and validating plugin files.
//!
//! Every way a file can be wrong gets one line naming it: unreadable, too large, not
//! WebAssembly, a core module instead of a component, malformed, targeting a contract
//! version this host does not support, missing the method export, or importing
//! something the host does not provide.

use std::fmt;
use std::path::Path;

use wasmtime::component::Component;

use super::cache::{CacheOutcome, Target, digest};
use super::{Compilation, Contract, Plugin, PluginFile, Pre, Runtime, SUPPORTED_CONTRACTS, Tier, bindings, builtin};

/// The export every plugin must have, without its version.
pub const METHOD_EXPORT: &str = "pier:deploy/method";

/// Interfaces of `pier:deploy` a plugin may import (`tls` only from 0.3.0 on: an older
/// version that named it would fail to link, which says so).
pub const HOST_INTERFACES: &[&str] = &["types", "events", "secrets", "http", "keys", "exec", "workspace", "tls"];

/// What is wrong with a plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The file cannot be read.
    Unreadable(String),
    /// The file is larger than the limit.
    TooLarge { size: u64, limit: u64 },
    /// The file does not start with the WebAssembly magic number.
    NotWasm,
    /// A core module, not a component.
    CoreModule,
    /// WebAssembly with an encoding this host does not know.
    UnknownEncoding,
    /// The component does not parse or validate (truncated, corrupt).
    Invalid(String),
    /// Compiling took longer than the limit.
    CompileTime { limit: std::time::Duration },
    /// The component targets a contract version outside the supported range.
    UnsupportedContract { found: String },
    /// The component lacks the method export.
    MissingExport { exports: Vec<String> },
    /// The component imports something the host does not provide.
    UnknownImport { name: String },
    /// No built-in plugin has that name.
    UnknownBuiltin { known: Vec<String> },
}

/// A plugin that could not be loaded, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file path or `builtin:NAME`.
    pub origin: String,
    /// What is wrong.
    pub kind: LoadErrorKind,
}

impl std::error::Error for LoadError {}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = &self.origin;
        match &self.kind {
            LoadErrorKind::Unreadable(e) => write!(f, "plugin {origin} cannot be read: {e}"),
            LoadErrorKind::TooLarge { size, limit } => {
                write!(f, "plugin {origin} is {size} bytes, over the limit of {limit} bytes")
            }
            LoadErrorKind::NotWasm => write!(f, "plugin {origin} is not a WebAssembly file"),
            LoadErrorKind::CoreModule => write!(
                f,
                "plugin {origin} is a core WebAssembly module, not a component: build it for wasm32-wasip2 against the pier:deploy WIT"
            ),
            LoadErrorKind::UnknownEncoding => {
                write!(f, "plugin {origin} uses a WebAssembly encoding this pier does not know")
            }
            LoadErrorKind::Invalid(e) => {
                write!(f, "plugin {origin} is not a valid component (truncated or corrupt?): {e}")
            }
            LoadErrorKind::CompileTime { limit } => write!(
                f,
                "plugin {origin} took longer than {limit:?} to compile and was given up: it is too large or too complex"
            ),
            LoadErrorKind::UnsupportedContract { found } => write!(
                f,
                "plugin {origin} targets pier:deploy@{found}, but this pier supports pier:deploy {SUPPORTED_CONTRACTS} (0.3.x, 0.2.x and 0.1.x)"
            ),
            LoadErrorKind::MissingExport { exports } => write!(
                f,
                "plugin {origin} does not export {METHOD_EXPORT} (it exports: {}): is it built for the pier:deploy/plugin world?",
                if exports.is_empty() { "nothing".to_string() } else { exports.join(", ") }
            ),
            LoadErrorKind::UnknownImport { name } => {
                write!(f, "plugin {origin} imports `{name}`, which this pier does not provide")
            }
            LoadErrorKind::UnknownBuiltin { known } => {
                write!(f, "there is no built-in plugin `{origin}` (built in: {})", known.join(", "))
            }
        }
    }
}

/// What loading learned about a plugin.
pub(super) struct LoadInfo {
    pub file: PluginFile,
    /// The compiler its machine code came from.
    pub tier: Tier,
}

fn error(origin: &str, kind: LoadErrorKind) -> LoadError {
    LoadError { origin: origin.to_string(), kind }
}

/// Reads the plugin file at `path` once: a regular file (never a FIFO or device, which
/// could block or never end), opened without following it into a blocking open, and no
/// larger than `limit`. The bytes returned are the ones checked and loaded.
pub fn read_plugin_file(path: &Path, limit: u64) -> Result<Vec<u8>, LoadError> {
    use std::io::Read as _;
    let origin = path.display().to_string();
    let unreadable = |e: std::io::Error| error(&origin, LoadErrorKind::Unreadable(e.to_string()));
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        // A FIFO opened for reading blocks until a writer comes: never wait for one.
        options.custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits());
    }
    let file = options.open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(error(&origin, LoadErrorKind::Unreadable("not a regular file".into())));
    }
    if meta.len() > limit {
        return Err(error(&origin, LoadErrorKind::TooLarge { size: meta.len(), limit }));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut bytes).map_err(unreadable)?;
    if bytes.len() as u64 > limit {
        return Err(error(&origin, LoadErrorKind::TooLarge { size: bytes.len() as u64, limit }));
    }
    Ok(bytes)
}

/// Reads, checks, compiles (or loads from the cache) and links the plugin at `path`.
pub(super) fn load_file(runtime: &Runtime, path: &Path) -> Result<Plugin, LoadError> {
    let bytes = read_plugin_file(path, runtime.limits.max_plugin_size)?;
    load_bytes(runtime, &path.display().to_string(), bytes)
}

/// Checks, compiles (or loads from the cache) and links a plugin from its bytes.
pub(super) fn load_bytes(runtime: &Runtime, origin: &str, bytes: Vec<u8>) -> Result<Plugin, LoadError> {
    let limit = runtime.limits.max_plugin_size;
    if bytes.len() as u64 > limit {
        return Err(error(origin, LoadErrorKind::TooLarge { size: bytes.len() as u64, limit }));
    }
    check_encoding(origin, &bytes)?;
    let sha256 = digest(&bytes);
    let size = bytes.len() as u64;
    let (component, tier, outcome) = compile(runtime, origin, bytes.into(), sha256.clone())?;
    link(runtime, origin, component, tier, size, sha256, outcome)
}

/// Compiles `wasm` (or loads its artifact from the cache) within the compile time limit,
/// with the compiler [`Runtime::compilation`] picks: a cached Cranelift artifact when
/// there is one; else Winch, with Cranelift started in the background for later runs
/// (and Cranelift at once when Winch cannot compile the component). wasmtime cannot
/// stop a compilation, so it runs on its own thread; past the limit the load fails at
/// once and the thread's result is dropped when it ends.
fn compile(
    runtime: &Runtime,
    origin: &str,
    wasm: std::sync::Arc<[u8]>,
    sha256: String,
) -> Result<(Component, Tier, CacheOutcome), LoadError> {
    let size = wasm.len() as u64;
    let cache = runtime.cache.clone();
    let setup = |e: super::HostError| error(origin, LoadErrorKind::Unreadable(format!("cannot compile: {e}")));
    let optimized = runtime.compiler(Tier::Optimized).map_err(setup)?.target.clone();
    let cached = |target: &Target| cache.as_ref().is_some_and(|c| c.has(target, &sha256));
    let baseline = || runtime.compiler(Tier::Baseline).map(|c| c.target.clone()).map_err(setup);
    // The compilers to try in order: Cranelift after Winch only when Winch must compile.
    let targets = match runtime.compilation {
        Compilation::Optimized => vec![optimized],
        Compilation::Baseline => vec![baseline()?],
        Compilation::Tiered if cached(&optimized) => vec![optimized],
        Compilation::Tiered => match baseline()? {
            winch if cached(&winch) => vec![winch],
            winch => vec![winch, optimized],
        },
    };
    let hit = cached(&targets[0]);
    let (send, receive) = std::sync::mpsc::sync_channel(1);
    let (bytes, key) = (wasm.clone(), sha256.clone());
    let spawned = std::thread::Builder::new().name("pier-compile".into()).spawn(move || {
        let mut failed = None;
        for target in &targets {
            let compiled = match &cache {
                Some(cache) => cache.load_or_compile(target, &bytes, &key),
                None => target
                    .engines()
                    .component(|engine| Component::new(engine, &bytes))
                    .map(|c| (c, CacheOutcome::Compiled)),
            };
            match compiled {
                Ok((component, outcome)) => {
                    let _ = send.send(Ok((component, target.tier(), outcome)));
                    return;
                }
                Err(e) => {
                    if targets.len() > 1 && failed.is_none() {
                        tracing::debug!(
                            "{} cannot compile this plugin ({}); trying the next",
                            target.tier().compiler(),
                            first_line(&e)
                        );
                    }
                    failed = Some(first_line(&e));
                }
            }
        }
        let _ = send.send(Err(failed.unwrap_or_default()));
    });
    if let Err(e) = spawned {
        return Err(error(origin, LoadErrorKind::Unreadable(format!("cannot start compiling: {e}"))));
    }
    // No artifact in the cache: this load compiles, and says so once the wait is one a
    // person notices (a malformed component fails, and a small one compiles, before that).
    let limit = runtime.limits.compile_time;
    let first = if hit || runtime.notice.is_none() { limit } else { limit.min(runtime.limits.compile_notice) };
    let received = match receive.recv_timeout(first) {
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) if first < limit => {
            let _shown = runtime.notice.as_ref().map(|notice| notice(origin, size));
            receive.recv_timeout(limit - first)
        }
        other => other,
    };
    match received {
        Ok(Ok((component, tier, outcome))) => {
            if tier == Tier::Baseline && runtime.compilation == Compilation::Tiered {
                runtime.optimize_later(origin, wasm, &sha256);
            }
            Ok((component, tier, outcome))
        }
        Ok(Err(e)) => Err(error(origin, LoadErrorKind::Invalid(e))),
        Err(_) => Err(error(origin, LoadErrorKind::CompileTime { limit })),
    }
}

/// Loads a built-in plugin: its embedded artifact when it fits this machine (and
/// Cranelift is allowed), else its embedded component compiled through the cache.
pub(super) fn load_builtin(runtime: &Runtime, name: &str) -> Result<Plugin, LoadError> {
    let origin = format!("builtin:{name}");
    let Some(builtin) = builtin::find(name) else {
        return Err(error(name, LoadErrorKind::UnknownBuiltin { known: builtin::names() }));
    };
    let sha256 = builtin.sha256.to_string();
    let optimized = &runtime.optimized.target;
    let precompiled = if runtime.compilation != Compilation::Baseline && builtin::artifact_fits(optimized.engine_key())
    {
        // SAFETY: the artifact was produced at build time by `Engine::precompile_component`
        // with the same engine configuration, and is embedded in this binary.
        unsafe { optimized.deserialize(builtin.compiled) }.ok()
    } else {
        None
    };
    let (component, tier, outcome) = match precompiled {
        Some(component) => (component, Tier::Optimized, CacheOutcome::Hit),
        None => {
            tracing::debug!("embedded artifact of `{name}` is not used on this machine; compiling");
            compile(runtime, &origin, builtin.wasm.into(), sha256.clone())?
        }
    };
    link(runtime, &origin, component, tier, builtin.wasm.len() as u64, sha256, outcome)
}

/// Tells a component from a core module or anything else by its first eight bytes.
fn check_encoding(origin: &str, bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(error(origin, LoadErrorKind::NotWasm));
    }
    match &bytes[4..8] {
        [1, 0, 0, 0] => Err(error(origin, LoadErrorKind::CoreModule)),
        [_, _, 1, 0] => Ok(()),
        _ => Err(error(origin, LoadErrorKind::UnknownEncoding)),
    }
}

/// `name@version` split, for `pier:deploy/x@0.1.0`.
fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((base, version)) => (base, Some(version)),
        None => (name, None),
    }
}

fn supported(version: Option<&str>) -> bool {
    version.and_then(Contract::of_version).is_some()
}

fn link(
    runtime: &Runtime,
    origin: &str,
    component: Component,
    tier: Tier,
    size: u64,
    sha256: String,
    cache: CacheOutcome,
) -> Result<Plugin, LoadError> {
    let (pre, contract) = instance_pre(runtime, origin, component, tier)?;
    Ok(Plugin {
        name: origin.to_string(),
        pre,
        on_demand: std::sync::OnceLock::new(),
        info: LoadInfo {
            file: PluginFile { source: origin.to_string(), size, sha256, contract, cache, compiler: tier.compiler() },
            tier,
        },
    })
}

/// Checks what `component` imports and exports, and links it in its engine (of `tier`):
/// the plugin ready to instantiate, and the contract version it exports.
pub(super) fn instance_pre(
    runtime: &Runtime,
    origin: &str,
    component: Component,
    tier: Tier,
) -> Result<(Pre, String), LoadError> {
    let cannot_link = |e: super::HostError| error(origin, LoadErrorKind::Unreadable(format!("cannot link: {e}")));
    let compiler = runtime.compiler(tier).map_err(cannot_link)?;
    let engine = component.engine().clone();
    let linker = compiler.linker(&engine).map_err(cannot_link)?;
    let engine = &engine;
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    for (name, _) in ty.imports(engine) {
        let (base, version) = split_version(name);
        if let Some(interface) = base.strip_prefix("pier:deploy/") {
            if !HOST_INTERFACES.contains(&interface) {
                return Err(error(origin, LoadErrorKind::UnknownImport { name: name.to_string() }));
            }
            if !supported(version) {
                return Err(error(
                    origin,
                    LoadErrorKind::UnsupportedContract { found: version.unwrap_or("(none)").to_string() },
                ));
            }
        }
    }
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        let text = first_line(&e);
        // wasmtime names the import in backticks: surface just that when it does.
        let name = text.split('`').nth(1).map(str::to_string).unwrap_or(text);
        error(origin, LoadErrorKind::UnknownImport { name })
    })?;
    let method = exports.iter().find(|e| split_version(e).0 == METHOD_EXPORT);
    let Some(method) = method else {
        return Err(error(origin, LoadErrorKind::MissingExport { exports }));
    };
    let version = split_version(method).1;
    let Some(contract) = version.and_then(Contract::of_version) else {
        return Err(error(
            origin,
            LoadErrorKind::UnsupportedContract { found: version.unwrap_or("(none)").to_string() },
        ));
    };
    // Every `pier:deploy` import must come from the same contract as the export.
    for (name, _) in ty.imports(engine) {
        let (base, import_version) = split_version(name);
        if base.starts_with("pier:deploy/") && import_version.and_then(Contract::of_version) != Some(contract) {
            return Err(error(
                origin,
                LoadErrorKind::Invalid(format!(
                    "it exports pier:deploy@{} but imports `{name}`: all of pier:deploy must come from one version",
                    version.unwrap_or_default()
                )),
            ));
        }
    }
    let invalid = |e: wasmtime::Error| error(origin, LoadErrorKind::Invalid(first_line(&e)));
    let pre = match contract {
        Contract::V0_3 => {
            let pre = bindings::PluginPre::new(pre).map_err(invalid)?;
            let describe = super::DescribeExport::of(&pre, method).map_err(invalid)?;
            Pre::V0_3(pre, describe)
        }
        Contract::V0_2 => Pre::V0_2(bindings::v0_2::PluginPre::new(pre).map_err(invalid)?),
        Contract::V0_1 => Pre::V0_1(bindings::v0_1::PluginPre::new(pre).map_err(invalid)?),
    };
    Ok((pre, version.unwrap_or_default().to_string()))
}

fn first_line(error: &wasmtime::Error) -> String {
    let text = format!("{error:#}");
    text.lines().next().unwrap_or("unknown error").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_told_apart() {
        assert_eq!(check_encoding("f", b"hello world").unwrap_err().kind, LoadErrorKind::NotWasm);
        assert_eq!(check_encoding("f", b"\0asm").unwrap_err().kind, LoadErrorKind::NotWasm);
        assert_eq!(check_encoding("f", b"\0asm\x01\0\0\0").unwrap_err().kind, LoadErrorKind::CoreModule);
        assert!(check_encoding("f", b"\0asm\x0d\0\x01\0").is_ok());
        assert_eq!(check_encoding("f", b"\0asm\x02\0\x02\0").unwrap_err().kind, LoadErrorKind::UnknownEncoding);
    }

    #[test]
    fn contract_versions() {
        assert!(supported(Some("0.1.0")));
        assert!(supported(Some("0.1.7")));
        assert!(supported(Some("0.2.0")));
        assert!(supported(Some("0.3.0")));
        assert!(supported(Some("0.3.2")));
        assert!(!supported(Some("0.4.0")));
        assert!(!supported(Some("1.0.0")));
        assert!(!supported(None));
    }
}
