//! Loading plugins and calling them inside their sandbox.
//!
//! A [`Runtime`] owns the wasmtime engine, the linker with every host capability, the
//! compiled-artifact cache and the epoch ticker that enforces wall-clock limits. A
//! [`Plugin`] is a validated, compiled component. Each call runs in a fresh store and
//! instance ([`CallEnv`] says what it may use), so a trap ends that call alone and no
//! state survives between calls.
//!
//! Error layers: a `method-error` the plugin returns is a value ([`MethodError`]); a trap
//! or exceeded limit ends the instance and becomes a [`PluginFault`]; a failure of the
//! host itself is a [`HostError`].

pub mod bindings;
pub mod builtin;
pub mod cache;
pub mod engine_config;
pub mod inert;
mod legacy;
mod load;
#[cfg(test)]
mod no_panics;
pub mod pool;
pub mod v0_1;
pub mod v0_2;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::caps::events::{EventSink, EventsCap, NullSink};
use crate::caps::exec::{ExecCap, ExecLimits};
use crate::caps::http::{HttpCap, HttpLimits, HttpPolicy, SharedClient};
use crate::caps::keys::{GeneratedKey, KeysCap};
use crate::caps::secrets::{SecretsCap, Vault, redact};
use crate::caps::tls::{TlsCap, TlsLimits};
use crate::caps::workspace::{DEFAULT_MAX_BLOB, Workspace, WorkspaceCap};
use crate::caps::{Audit, Grant};
pub use bindings::{
    Answer, BuildInfo, Choice, Context, DeployReport, Description, MethodError, RunRequest, SetupResult,
};
pub use cache::CacheOutcome;
pub use engine_config::Tier;
use legacy::To as _;
pub use load::{LoadError, LoadErrorKind};
pub use v0_1::LegacyPlan;

/// The contract this host is built from.
pub const CONTRACT_VERSION: &str = "0.3.0";

/// The contract versions this host accepts, as semver requirements.
pub const SUPPORTED_CONTRACTS: &str = "^0.3, ^0.2 or ^0.1";

/// A contract version a plugin is built against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, serde::Serialize)]
pub enum Contract {
    /// `pier:deploy@0.1.x`, frozen: no argument patterns, secret bindings or declared
    /// command support.
    V0_1,
    /// `pier:deploy@0.2.x`, frozen: no TLS streams, native deploy commands, one-off
    /// commands, rollback or remove.
    V0_2,
    /// `pier:deploy@0.3.x`, the current contract.
    #[default]
    V0_3,
}

impl Contract {
    /// The current contract.
    pub const CURRENT: Contract = Contract::V0_3;

    /// The contract a `pier:deploy` version belongs to, if this host supports it.
    pub fn of_version(version: &str) -> Option<Contract> {
        let version = semver::Version::parse(version).ok()?;
        match (version.major, version.minor) {
            (0, 1) => Some(Contract::V0_1),
            (0, 2) => Some(Contract::V0_2),
            (0, 3) => Some(Contract::V0_3),
            _ => None,
        }
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
            Contract::V0_3 => "0.3.0",
        })
    }
}

/// Bounds on plugins and calls.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest plugin file, in bytes.
    pub max_plugin_size: u64,
    /// Most linear memory one instance may use, in bytes.
    pub max_memory: usize,
    /// Wall-clock limit of `describe`.
    pub describe_time: Duration,
    /// Wall-clock limit of `choices`, `validate`, `setup` and `prepare-commands`.
    pub setup_time: Duration,
    /// Wall-clock limit of `deploy`.
    pub deploy_time: Duration,
    /// Bounds of the `http` capability.
    pub http: HttpLimits,
    /// Bounds of the `exec` capability.
    pub exec: ExecLimits,
    /// Bounds of the `tls` capability.
    pub tls: TlsLimits,
    /// Most bytes the packed workspaces of one call may hold together.
    pub max_blob: u64,
    /// How many instances, tables and memories one call's store may hold.
    pub store: StoreCounts,
    /// Largest value one export may return, in bytes (as the host holds it).
    pub max_returned: usize,
    /// Wall-clock limit of compiling a plugin.
    pub compile_time: Duration,
    /// How long a compiling load runs before the runtime's compile notice is told.
    pub compile_notice: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_plugin_size: 64 << 20,
            max_memory: 512 << 20,
            describe_time: Duration::from_secs(10),
            setup_time: Duration::from_secs(120),
            deploy_time: Duration::from_secs(3600),
            http: HttpLimits::default(),
            exec: ExecLimits::default(),
            tls: TlsLimits::default(),
            max_blob: DEFAULT_MAX_BLOB,
            store: StoreCounts::default(),
            max_returned: 1 << 20,
            compile_time: Duration::from_secs(60),
            compile_notice: Duration::from_millis(100),
        }
    }
}

/// A plugin export, for limits and messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Export {
    Describe,
    Choices,
    Validate,
    Setup,
    Deploy,
    PrepareCommands,
    Run,
    Rollback,
    Remove,
}

impl Export {
    /// The export's WIT name.
    pub fn name(self) -> &'static str {
        match self {
            Export::Describe => "describe",
            Export::Choices => "choices",
            Export::Validate => "validate",
            Export::Setup => "setup",
            Export::Deploy => "deploy",
            Export::PrepareCommands => "prepare-commands",
            Export::Run => "run",
            Export::Rollback => "rollback",
            Export::Remove => "remove",
        }
    }

    fn time_limit(self, limits: &Limits) -> Duration {
        match self {
            Export::Describe => limits.describe_time,
            Export::Deploy | Export::Run | Export::Rollback => limits.deploy_time,
            _ => limits.setup_time,
        }
    }
}

/// A call ended the plugin's instance: a trap or an exceeded limit.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginFault {
    #[error("plugin `{plugin}` ran past its time limit of {limit:?} in `{export}` and was stopped")]
    TimeLimit { plugin: String, export: &'static str, limit: Duration },
    #[error("plugin `{plugin}` tried to use more than its memory limit of {} MiB in `{export}` and was stopped", .limit >> 20)]
    MemoryLimit { plugin: String, export: &'static str, limit: usize },
    #[error("plugin `{plugin}` went over its resource limit in `{export}` ({what}) and was stopped")]
    ResourceLimit { plugin: String, export: &'static str, what: String },
    #[error("plugin `{plugin}` returned too much from `{export}`: its result is over the limit of {} MiB", .limit >> 20)]
    TooLarge { plugin: String, export: &'static str, limit: usize },
    #[error("plugin `{plugin}` made the host fail in `{export}`, which is a bug in pier: {message}")]
    HostPanic { plugin: String, export: &'static str, message: String },
    #[error("plugin `{plugin}` overflowed its stack in `{export}` (too deep recursion) and was stopped")]
    StackOverflow { plugin: String, export: &'static str },
    #[error("plugin `{plugin}` crashed in `{export}`: {message}")]
    Trap { plugin: String, export: &'static str, message: String },
    #[error("plugin `{plugin}` broke the contract in `{export}`: {message}")]
    Contract { plugin: String, export: &'static str, message: String },
}

/// The host could not make the call at all.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("could not set up the plugin sandbox: {0}")]
    Setup(String),
    #[error("the plugin's permissions cannot be granted: {0}")]
    Grant(#[from] crate::caps::GrantError),
}

/// Why a call produced no value.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Fault(#[from] PluginFault),
    #[error(transparent)]
    Host(#[from] HostError),
}

/// What one call may use and where its events go.
#[derive(Clone)]
pub struct CallEnv {
    /// Origins and programs granted.
    pub grant: Grant,
    /// Secrets reachable by handle.
    pub vault: Arc<Vault>,
    /// The commit being deployed and its checkout, for `deploy`.
    pub workspace: Option<Workspace>,
    /// Where events go.
    pub sink: Arc<dyn EventSink>,
    /// Records what the plugin does, when set (the conformance runner).
    pub audit: Option<Arc<Audit>>,
    /// Where granted programs are looked up, instead of the host's `PATH`.
    pub path: Option<std::ffi::OsString>,
    /// Where programs' scratch directories (and private key files) go, instead of the
    /// system's temporary directory: a deploy's run directory, cleaned up even after a kill.
    pub scratch: Option<PathBuf>,
    /// An origin (`http://127.0.0.1:PORT`) that every request which passed the policy is
    /// sent to instead of its own: scheme, host and port replaced, path and query kept, no
    /// lookup of the original host. Audit records keep the original URL. For the
    /// conformance runner.
    pub divert: Option<String>,
    /// Where the output of granted programs ends up kept, when that can fill up (a
    /// deploy's log): once it is full, their lines are counted, not passed on.
    pub room: Option<Arc<dyn crate::caps::exec::OutputRoom>>,
    /// How ssh run with the server's key checks host keys: strictly against the server's
    /// pins (none by default), or learning them while the server is set up.
    pub host_keys: crate::caps::host_keys::HostKeys,
    /// Whether the call may forward the user's standard input to a TLS stream (`pier run`).
    pub input: bool,
}

impl CallEnv {
    /// A call with `grant` and the secrets of `vault`, whose events go to `sink`.
    pub fn new(grant: Grant, vault: Arc<Vault>, sink: Arc<dyn EventSink>) -> Self {
        CallEnv {
            grant,
            vault,
            workspace: None,
            sink,
            audit: None,
            path: None,
            scratch: None,
            divert: None,
            room: None,
            host_keys: crate::caps::host_keys::HostKeys::pinned(Vec::new()),
            input: false,
        }
    }

    /// Nothing granted, no secrets, events dropped: the environment of `describe`.
    pub fn denied() -> Self {
        CallEnv::new(Grant::none(), Arc::new(Vault::new()), Arc::new(NullSink))
    }

    /// The same, with `workspace` (a commit and its checkout) as the workspace.
    pub fn with_workspace(mut self, workspace: Workspace) -> Self {
        self.workspace = Some(workspace);
        self
    }

    /// The same, recording into `audit`.
    pub fn with_audit(mut self, audit: Arc<Audit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The same, with ssh checking host keys as `host_keys` says.
    pub fn with_host_keys(mut self, host_keys: crate::caps::host_keys::HostKeys) -> Self {
        self.host_keys = host_keys;
        self
    }

    /// The same, with the user's standard input for `tls.stream.forward-input`.
    pub fn with_input(mut self) -> Self {
        self.input = true;
        self
    }

    /// The same, with programs' scratch space under `dir`.
    pub fn with_scratch(mut self, dir: PathBuf) -> Self {
        self.scratch = Some(dir);
        self
    }

    /// The same, with programs' output kept in `room`.
    pub fn with_room(mut self, room: Arc<dyn crate::caps::exec::OutputRoom>) -> Self {
        self.room = Some(room);
        self
    }

    /// The same, looking programs up on `path`.
    pub fn with_path(mut self, path: std::ffi::OsString) -> Self {
        self.path = Some(path);
        self
    }

    /// The same, sending every request that passes the policy to the origin `origin`
    /// (like `http://127.0.0.1:PORT`) instead.
    pub fn with_divert(mut self, origin: impl Into<String>) -> Self {
        self.divert = Some(origin.into());
        self
    }
}

/// A call's value and what the host collected during it.
#[derive(Debug)]
pub struct CallOutput<R> {
    /// What the export returned.
    pub value: R,
    /// Key pairs generated during the call (their private keys are in the call's vault).
    pub generated_keys: Vec<GeneratedKey>,
}

/// Memory accounting for one call's store: linear memories and tables together stay
/// under one byte limit, and the store holds a bounded number of instances, tables and
/// memories, so a small component cannot make the host allocate outside the limit.
struct Limiter {
    max: usize,
    memory: usize,
    tables: usize,
    hit: bool,
    counts: StoreCounts,
}

/// How many instances, tables and memories one call's store may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreCounts {
    /// Core instances.
    pub instances: usize,
    /// Tables.
    pub tables: usize,
    /// Linear memories.
    pub memories: usize,
}

impl Default for StoreCounts {
    fn default() -> Self {
        StoreCounts { instances: 100, tables: 100, memories: 10 }
    }
}

/// Bytes the host holds per table element: a pointer (wasmtime's own accounting).
pub const TABLE_ELEMENT_BYTES: usize = size_of::<usize>();

#[derive(Debug, thiserror::Error)]
#[error("memory limit reached")]
struct MemoryLimitHit;

#[derive(Debug, thiserror::Error)]
#[error("time limit reached")]
struct TimeLimitHit;

impl Limiter {
    fn new(max: usize, counts: StoreCounts) -> Self {
        Limiter { max, memory: 0, tables: 0, hit: false, counts }
    }

    /// Accounts one memory (or table) growing from `current` to `desired` bytes.
    fn grow(&mut self, table: bool, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let (mine, other) = if table { (self.tables, self.memory) } else { (self.memory, self.tables) };
        let total = mine.saturating_sub(current).saturating_add(desired);
        if total.saturating_add(other) > self.max {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryLimitHit));
        }
        if table {
            self.tables = total;
        } else {
            self.memory = total;
        }
        Ok(true)
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.grow(false, current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let bytes = |n: usize| n.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(true, bytes(current), bytes(desired))
    }

    fn instances(&self) -> usize {
        self.counts.instances
    }

    fn tables(&self) -> usize {
        self.counts.tables
    }

    fn memories(&self) -> usize {
        self.counts.memories
    }
}

/// Everything one call's store holds: WASI (empty: no files, no network, no
/// environment), the memory limiter and one state per capability.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    limiter: Limiter,
    events: EventsCap,
    secrets: SecretsCap,
    http: HttpCap,
    keys: KeysCap,
    exec: ExecCap,
    workspace: WorkspaceCap,
    tls: TlsCap,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

macro_rules! capability {
    ($marker:ident, $field:ident, $ty:ty) => {
        struct $marker;
        impl HasData for $marker {
            type Data<'a> = &'a mut $ty;
        }
    };
}
capability!(EventsData, events, EventsCap);
// `types` has no functions; its (empty) host trait rides on the events state.
impl bindings::pier::deploy::types::Host for EventsCap {}
capability!(SecretsData, secrets, SecretsCap);
capability!(HttpData, http, HttpCap);
capability!(KeysData, keys, KeysCap);
capability!(ExecData, exec, ExecCap);
capability!(WorkspaceData, workspace, WorkspaceCap);
capability!(TlsData, tls, TlsCap);

/// Increments the epoch of every engine in `engines` every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The most WASI resources one call may hold at once.
pub const MAX_WASI_RESOURCES: usize = 10_000;

/// How often running plugins yield and check their deadline.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

impl EpochTicker {
    fn start(engines: Arc<Mutex<Vec<Engine>>>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pier-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    // Parked rather than asleep, so that dropping the ticker wakes it at once.
                    std::thread::park_timeout(EPOCH_TICK);
                    for engine in engines.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("spawning the epoch thread");
        EpochTicker { stop, thread: Some(thread) }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// How long after a Winch load its Cranelift compilation starts in the background.
pub const OPTIMIZE_AFTER: Duration = Duration::from_secs(1);

/// Which compiler a load uses when no artifact of the plugin is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compilation {
    /// Winch now, so the plugin runs at once; Cranelift on a background thread from
    /// [`OPTIMIZE_AFTER`] on (a process that lives that long runs a deploy), whose
    /// artifact later loads use once it is stored. A load always prefers a cached
    /// Cranelift artifact.
    #[default]
    Tiered,
    /// Cranelift, waiting for it (`pier plugins compile`, `PIER_COMPILER=cranelift`).
    Optimized,
    /// Winch only (`PIER_COMPILER=winch`): never Cranelift, even from the cache.
    Baseline,
}

impl Compilation {
    /// `auto`, `cranelift` or `winch`, as `PIER_COMPILER` takes it.
    pub fn parse(text: &str) -> Option<Compilation> {
        match text {
            "auto" => Some(Compilation::Tiered),
            "cranelift" => Some(Compilation::Optimized),
            "winch" => Some(Compilation::Baseline),
            _ => None,
        }
    }
}

/// One tier's engines and target (where its artifacts are cached), and the linker with
/// every host capability for each engine.
struct Compiler {
    target: cache::Target,
    linker: Linker<CallState>,
    /// The on-demand engine's linker, made when a plugin first needs it.
    on_demand: std::sync::OnceLock<Result<Linker<CallState>, String>>,
}

impl Compiler {
    fn new(tier: Tier) -> Result<Self, HostError> {
        let engines =
            pool::Engines::new(tier).map_err(|e| HostError::Setup(format!("the {} engine: {e}", tier.compiler())))?;
        let linker = Runtime::linker(&engines.pooled)?;
        Ok(Compiler { target: cache::Target::new(engines, tier), linker, on_demand: std::sync::OnceLock::new() })
    }

    fn engines(&self) -> &pool::Engines {
        self.target.engines()
    }

    /// The linker of `engine`, one of this tier's.
    fn linker(&self, engine: &Engine) -> Result<&Linker<CallState>, HostError> {
        if Engine::same(engine, &self.engines().pooled) {
            return Ok(&self.linker);
        }
        self.on_demand
            .get_or_init(|| Runtime::linker(&self.engines().on_demand).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HostError::Setup(e.clone()))
    }
}

/// A compilation waiting or running in the background, and the sender that starts it.
type Background = (JoinHandle<()>, std::sync::mpsc::Sender<()>);

/// The engines, linkers and cache that load and run plugins.
pub struct Runtime {
    optimized: Compiler,
    /// Made on the first load that needs Winch.
    baseline: std::sync::OnceLock<Result<Compiler, String>>,
    compilation: Compilation,
    cache: Option<cache::ArtifactCache>,
    limits: Limits,
    http: SharedClient,
    notice: Option<CompileNotice>,
    /// The engines whose epoch the ticker advances.
    engines: Arc<Mutex<Vec<Engine>>>,
    /// Optimised compilations in the background, by component digest, each with the
    /// sender that starts it before its delay ends.
    background: Mutex<BTreeMap<String, Background>>,
    _ticker: EpochTicker,
}

impl Drop for Runtime {
    /// An artifact still being written is finished, not lost with the process (an
    /// optimised compilation still running is: the next run starts it again).
    fn drop(&mut self) {
        if let Some(cache) = &self.cache {
            cache.finish_writes();
        }
    }
}

/// Told when loading a plugin means compiling it (its artifact is not in the cache), with
/// where it came from and its size in bytes; what it returns lives until the compilation
/// ends (a spinner, say).
pub type CompileNotice = Arc<dyn Fn(&str, u64) -> Box<dyn std::any::Any> + Send + Sync>;

impl Runtime {
    /// A runtime with `limits`, caching compiled plugins in `cache_dir` (none: no cache).
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> Result<Self, HostError> {
        let optimized = Compiler::new(Tier::Optimized)?;
        let cache = cache_dir.map(cache::ArtifactCache::new);
        let engines = Arc::new(Mutex::new(optimized.engines().all()));
        let ticker = EpochTicker::start(engines.clone());
        let http = SharedClient::new(&limits.http);
        Ok(Runtime {
            optimized,
            baseline: std::sync::OnceLock::new(),
            compilation: Compilation::default(),
            cache,
            limits,
            http,
            notice: None,
            engines,
            background: Mutex::new(BTreeMap::new()),
            _ticker: ticker,
        })
    }

    /// The same, telling `notice` when a load has to compile.
    pub fn with_compile_notice(mut self, notice: CompileNotice) -> Self {
        self.notice = Some(notice);
        self
    }

    /// The same, compiling uncached plugins as `compilation` says.
    pub fn with_compilation(mut self, compilation: Compilation) -> Self {
        self.compilation = compilation;
        self
    }

    /// How uncached plugins are compiled.
    pub fn compilation(&self) -> Compilation {
        self.compilation
    }

    /// The compiler of `tier`; Winch's is made on first use.
    fn compiler(&self, tier: Tier) -> Result<&Compiler, HostError> {
        match tier {
            Tier::Optimized => Ok(&self.optimized),
            Tier::Baseline => self
                .baseline
                .get_or_init(|| {
                    let compiler = Compiler::new(Tier::Baseline).map_err(|e| e.to_string())?;
                    self.engines.lock().unwrap_or_else(|e| e.into_inner()).extend(compiler.engines().all());
                    Ok(compiler)
                })
                .as_ref()
                .map_err(|e| HostError::Setup(e.clone())),
        }
    }

    /// Compiles the component `wasm` (SHA-256 `digest`, from `origin`) with Cranelift on
    /// a background thread and caches the artifact, unless it is cached already, being
    /// compiled, or there is no cache to keep it in.
    fn optimize_later(&self, origin: &str, wasm: Arc<[u8]>, digest: &str) {
        let Some(cache) = self.cache.clone() else { return };
        let target = self.optimized.target.clone();
        if cache.has(&target, digest) {
            return;
        }
        let mut background = self.background.lock().unwrap_or_else(|e| e.into_inner());
        if background.contains_key(digest) {
            return;
        }
        let (name, key) = (origin.to_string(), digest.to_string());
        let (start_now, wait) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new().name("pier-optimize".into()).spawn(move || {
            // A short command (a listing, one conformance check) ends before this, and
            // spends nothing on code it would never run.
            let _ = wait.recv_timeout(OPTIMIZE_AFTER);
            let started = Instant::now();
            // On this thread alone, so that the plugin keeps the other cores.
            let target = Engine::new(&engine_config::background_config())
                .map(|engine| cache::Target::single(engine, Tier::Optimized))
                .ok()
                .filter(|single| single.same_artifacts(&target))
                .unwrap_or(target);
            match cache.compile(&target, &wasm, &key) {
                Ok(_) => tracing::debug!("optimised plugin {name} in {:.1?}", started.elapsed()),
                Err(e) => tracing::debug!("Cranelift could not compile plugin {name}: {e}"),
            }
        });
        match spawned {
            Ok(handle) => {
                tracing::debug!("optimising plugin {origin} with Cranelift in the background");
                background.insert(digest.to_string(), (handle, start_now));
            }
            Err(e) => tracing::debug!("cannot start optimising plugin {origin}: {e}"),
        }
    }

    /// Starts the optimised compilations waiting in the background at once and waits for
    /// them to end, and for every artifact being written, so that all are stored.
    pub fn finish_background(&self) {
        let running = std::mem::take(&mut *self.background.lock().unwrap_or_else(|e| e.into_inner()));
        for (_, (handle, start_now)) in running {
            let _ = start_now.send(());
            let _ = handle.join();
        }
        if let Some(cache) = &self.cache {
            cache.finish_writes();
        }
    }

    /// A linker for `engine` with every host capability.
    fn linker(engine: &Engine) -> Result<Linker<CallState>, HostError> {
        let mut linker = Linker::new(engine);
        Runtime::link(&mut linker).map_err(|e| HostError::Setup(e.to_string()))?;
        Ok(linker)
    }

    fn link(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
        use bindings::pier::deploy as api;
        // A std guest imports a dozen WASI interfaces even when it uses none of them:
        // link WASI with an empty context rather than refusing such plugins.
        wasmtime_wasi::p2::add_to_linker_async(linker)?;
        api::types::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        api::events::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        api::secrets::add_to_linker::<CallState, SecretsData>(linker, |s| &mut s.secrets)?;
        api::http::add_to_linker::<CallState, HttpData>(linker, |s| &mut s.http)?;
        api::keys::add_to_linker::<CallState, KeysData>(linker, |s| &mut s.keys)?;
        api::exec::add_to_linker::<CallState, ExecData>(linker, |s| &mut s.exec)?;
        api::workspace::add_to_linker::<CallState, WorkspaceData>(linker, |s| &mut s.workspace)?;
        api::tls::add_to_linker::<CallState, TlsData>(linker, |s| &mut s.tls)?;
        // The frozen 0.2.0 and 0.1.0 contracts, served by the same capability states.
        use bindings::v0_2::pier::deploy as v2;
        v2::types::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        v2::events::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        v2::secrets::add_to_linker::<CallState, SecretsData>(linker, |s| &mut s.secrets)?;
        v2::http::add_to_linker::<CallState, HttpData>(linker, |s| &mut s.http)?;
        v2::keys::add_to_linker::<CallState, KeysData>(linker, |s| &mut s.keys)?;
        v2::exec::add_to_linker::<CallState, ExecData>(linker, |s| &mut s.exec)?;
        v2::workspace::add_to_linker::<CallState, WorkspaceData>(linker, |s| &mut s.workspace)?;
        use bindings::v0_1::pier::deploy as old;
        old::types::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        old::events::add_to_linker::<CallState, EventsData>(linker, |s| &mut s.events)?;
        old::secrets::add_to_linker::<CallState, SecretsData>(linker, |s| &mut s.secrets)?;
        old::http::add_to_linker::<CallState, HttpData>(linker, |s| &mut s.http)?;
        old::keys::add_to_linker::<CallState, KeysData>(linker, |s| &mut s.keys)?;
        old::exec::add_to_linker::<CallState, ExecData>(linker, |s| &mut s.exec)?;
        old::workspace::add_to_linker::<CallState, WorkspaceData>(linker, |s| &mut s.workspace)?;
        Ok(())
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Loads and validates a plugin file.
    pub fn load_file(&self, path: &Path) -> Result<Plugin, LoadError> {
        load::load_file(self, path)
    }

    /// Loads a plugin from bytes already read (and checked) by the caller; `origin` names
    /// it in messages.
    pub fn load_bytes(&self, origin: &str, bytes: Vec<u8>) -> Result<Plugin, LoadError> {
        load::load_bytes(self, origin, bytes)
    }

    /// Reads a plugin file once, as [`Runtime::load_file`] does: a regular file within the
    /// size limit.
    pub fn read_plugin_file(&self, path: &Path) -> Result<Vec<u8>, LoadError> {
        load::read_plugin_file(path, self.limits.max_plugin_size)
    }

    /// Loads a built-in plugin by method name.
    pub fn load_builtin(&self, name: &str) -> Result<Plugin, LoadError> {
        load::load_builtin(self, name)
    }

    fn store(
        &self,
        plugin: &str,
        engine: &Engine,
        env: &CallEnv,
        export: Export,
    ) -> Result<Store<CallState>, HostError> {
        let stderr = MemoryOutputPipe::new(16 << 10);
        // What the guest prints (a Rust panic's message, a Python traceback) is kept, bounded,
        // for its log at debug level and a trap's message.
        let wasi = WasiCtx::builder().stdout(stderr.clone()).stderr(stderr.clone()).build();
        let policy = HttpPolicy::new(
            env.grant.http.clone(),
            self.limits.http.clone(),
            self.http.clone(),
            env.vault.clone(),
            env.audit.clone(),
            env.divert.as_deref(),
        )
        .map_err(|e| HostError::Setup(format!("divert origin: {e}")))?
        .watching_addresses(env.grant.streams.needs_handed_out());
        let policy = Arc::new(policy);
        // WASI resources (streams, pollables) a guest holds at once: a std guest holds a
        // handful; a bound keeps a loop that never drops them from growing the host.
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_WASI_RESOURCES);
        let state = CallState {
            wasi,
            table,
            stderr,
            limiter: Limiter::new(self.limits.max_memory, self.limits.store),
            events: EventsCap::new(env.sink.clone(), env.audit.clone()),
            secrets: SecretsCap::new(env.vault.clone()),
            http: HttpCap::new(policy.clone()),
            keys: KeysCap::new(env.vault.clone()),
            exec: ExecCap::new(
                env.grant.programs.clone(),
                env.vault.clone(),
                env.workspace.as_ref().map(|w| w.dir().to_path_buf()),
                env.sink.clone(),
                self.limits.exec.clone(),
            )
            .with_audit(env.audit.clone())
            .with_path(env.path.clone())
            .with_scratch(env.scratch.clone())
            .with_room(env.room.clone())
            .with_host_keys(env.host_keys.clone()),
            workspace: WorkspaceCap::new(env.workspace.clone(), self.limits.max_blob, policy.clone(), env.sink.clone()),
            tls: TlsCap::new(env.grant.streams.clone(), policy, self.limits.tls.clone(), env.input)
                .with_audit(env.audit.clone()),
        };
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = Instant::now() + export.time_limit(&self.limits);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(TimeLimitHit))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        tracing::debug!(plugin, export = export.name(), "new store");
        Ok(store)
    }
}

/// A validated, compiled plugin.
pub struct Plugin {
    name: String,
    pre: Pre,
    /// The same plugin in the on-demand engine, for calls that find the pool full.
    on_demand: std::sync::OnceLock<Result<Pre, String>>,
    info: load::LoadInfo,
}

/// A plugin linked against the contract it was built for.
enum Pre {
    V0_3(bindings::PluginPre<CallState>, DescribeExport),
    V0_2(bindings::v0_2::PluginPre<CallState>),
    V0_1(bindings::v0_1::PluginPre<CallState>),
}

impl Pre {
    fn engine(&self) -> &Engine {
        match self {
            Pre::V0_3(pre, _) => pre.engine(),
            Pre::V0_2(pre) => pre.engine(),
            Pre::V0_1(pre) => pre.engine(),
        }
    }

    fn component(&self) -> &wasmtime::component::Component {
        match self {
            Pre::V0_3(pre, _) => pre.instance_pre().component(),
            Pre::V0_2(pre) => pre.instance_pre().component(),
            Pre::V0_1(pre) => pre.instance_pre().component(),
        }
    }

    async fn instantiate(&self, store: &mut Store<CallState>) -> wasmtime::Result<Instance> {
        Ok(match self {
            Pre::V0_3(pre, describe) => {
                let instance = pre.instantiate_async(store).await?;
                // The bindings checked every export's type against the contract.
                describe.checked.store(true, Ordering::Release);
                Instance::V0_3(instance)
            }
            Pre::V0_2(pre) => Instance::V0_2(pre.instantiate_async(store).await?),
            Pre::V0_1(pre) => Instance::V0_1(pre.instantiate_async(store).await?),
        })
    }

    /// An instance for `describe` alone. Instantiating through the bindings checks the
    /// type of every export against the contract, each time; once one instance of this
    /// component has passed that check, the next ones look up `describe` alone.
    async fn instantiate_for_describe(&self, store: &mut Store<CallState>) -> wasmtime::Result<Describer> {
        match self {
            Pre::V0_3(pre, describe) if describe.checked.load(Ordering::Acquire) => {
                let instance = pre.instance_pre().instantiate_async(&mut *store).await?;
                let func = instance
                    .get_func(&mut *store, describe.index)
                    .ok_or_else(|| wasmtime::format_err!("the instance has no `describe` export"))?;
                // SAFETY: `func` is the export at `describe.index` of an instance of this
                // component, and the bindings found that export, in an earlier instance of
                // the same component, to have exactly this type (`checked`). The type of an
                // export is a property of the component, not of the instance.
                Ok(Describer::Func(unsafe { wasmtime::component::TypedFunc::new_unchecked(func) }))
            }
            _ => Ok(Describer::Instance(self.instantiate(store).await?)),
        }
    }
}

/// Where a current-contract plugin's `describe` export is, and whether its type has been
/// checked against the contract.
struct DescribeExport {
    index: wasmtime::component::ComponentExportIndex,
    checked: AtomicBool,
}

impl DescribeExport {
    /// The `describe` export of `pre`'s component, unchecked.
    fn of(pre: &bindings::PluginPre<CallState>, method: &str) -> wasmtime::Result<Self> {
        let component = pre.instance_pre().component();
        let index = component
            .get_export_index(None, method)
            .and_then(|interface| component.get_export_index(Some(&interface), "describe"))
            .ok_or_else(|| wasmtime::format_err!("export `{method}` does not have export `describe`"))?;
        Ok(DescribeExport { index, checked: AtomicBool::new(false) })
    }
}

/// What `describe` is called on.
enum Describer {
    /// An instance through the bindings, any contract.
    Instance(Instance),
    /// A current-contract instance's `describe`, looked up alone.
    Func(wasmtime::component::TypedFunc<(), (Description,)>),
}

/// An instance of a plugin, of either contract.
enum Instance {
    V0_3(bindings::Plugin),
    V0_2(bindings::v0_2::Plugin),
    V0_1(bindings::v0_1::Plugin),
}

/// Facts about a loaded plugin file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PluginFile {
    /// Where it came from: a path, or `builtin:NAME`.
    pub source: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// The contract version it targets.
    pub contract: String,
    /// Whether loading it needed no compilation.
    pub cache: CacheOutcome,
    /// The compiler its machine code came from: `cranelift` or `winch`.
    pub compiler: &'static str,
}

impl Plugin {
    /// How the plugin is referred to in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Facts about the file.
    pub fn file(&self) -> &PluginFile {
        &self.info.file
    }

    /// The plugin in its tier's on-demand engine (the same machine code, loaded again).
    fn on_demand(&self, runtime: &Runtime) -> Result<&Pre, String> {
        self.on_demand
            .get_or_init(|| {
                let compiler = runtime.compiler(self.info.tier).map_err(|e| e.to_string())?;
                let artifact = self.pre.component().serialize().map_err(|e| e.to_string())?;
                // SAFETY: the artifact is this plugin's machine code, serialized just now by
                // an engine with the same configuration and key.
                let component =
                    unsafe { wasmtime::component::Component::deserialize(&compiler.engines().on_demand, &artifact) }
                        .map_err(|e| e.to_string())?;
                load::instance_pre(runtime, &self.name, component, self.info.tier)
                    .map(|(pre, _)| pre)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| format!("plugin {}: {e}", self.name))
    }

    /// The contract the plugin is built against.
    pub fn contract(&self) -> Contract {
        match self.pre {
            Pre::V0_1(_) => Contract::V0_1,
            Pre::V0_2(_) => Contract::V0_2,
            Pre::V0_3(..) => Contract::V0_3,
        }
    }

    async fn call<R: std::fmt::Debug + serde::Serialize>(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        export: Export,
        run: impl AsyncFnOnce(&mut Store<CallState>, &Instance) -> wasmtime::Result<R>,
    ) -> Result<CallOutput<R>, CallError> {
        self.call_on(runtime, env, export, Pre::instantiate, run).await
    }

    /// [`Plugin::call`] on what `instantiate` makes of the plugin.
    async fn call_on<I, R: std::fmt::Debug + serde::Serialize>(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        export: Export,
        instantiate: impl AsyncFn(&Pre, &mut Store<CallState>) -> wasmtime::Result<I>,
        run: impl AsyncFnOnce(&mut Store<CallState>, &I) -> wasmtime::Result<R>,
    ) -> Result<CallOutput<R>, CallError> {
        use futures_util::FutureExt as _;
        let mut store = runtime.store(&self.name, self.pre.engine(), env, export)?;
        let limit = export.time_limit(&runtime.limits);
        let plugin = self.name.clone();
        let export_name = export.name();
        let result = {
            let store = &mut store;
            let work = async {
                let instance = match instantiate(&self.pre, store).await {
                    // Every pooled slot is taken (many calls at once): this call's instance
                    // is allocated on demand, in a store of that engine.
                    Err(e) if pool::exhausted(&e) => {
                        let pre = self.on_demand(runtime).map_err(wasmtime::Error::msg)?;
                        tracing::debug!(plugin = self.name, "the instance pool is full; allocating on demand");
                        *store = runtime.store(&self.name, pre.engine(), env, export)?;
                        instantiate(pre, store).await?
                    }
                    instance => instance?,
                };
                run(store, &instance).await
            };
            // A panic while serving the plugin is a host bug, but it must end this call,
            // not the process (a `pier ci` run has other deploys to finish).
            let work = std::panic::AssertUnwindSafe(work).catch_unwind();
            // The epoch deadline stops guest code; this stops host waits too.
            match tokio::time::timeout(limit + EPOCH_TICK * 10, work).await {
                Ok(Err(panic)) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into());
                    let message = redact(&crate::caps::events::inert(&message)).into_owned();
                    return Err(PluginFault::HostPanic { plugin, export: export_name, message }.into());
                }
                Ok(Ok(result)) => Ok(result),
                Err(elapsed) => Err(elapsed),
            }
        };
        let state = store.data_mut();
        state.events.flush();
        let printed = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
        for line in printed.lines().filter(|l| !l.trim().is_empty()) {
            let message = redact(&crate::caps::events::inert(&format!("{plugin} printed: {line}"))).into_owned();
            env.sink.emit(crate::caps::events::Event::Log { level: crate::caps::events::Level::Debug, message });
        }
        match result {
            Err(_) => Err(PluginFault::TimeLimit { plugin, export: export_name, limit }.into()),
            Ok(Ok(value)) => {
                if !fits(&value, runtime.limits.max_returned) {
                    return Err(PluginFault::TooLarge {
                        plugin,
                        export: export_name,
                        limit: runtime.limits.max_returned,
                    }
                    .into());
                }
                Ok(CallOutput { value, generated_keys: state.keys.take_generated() })
            }
            Ok(Err(error)) => {
                let fault = if state.limiter.hit || error.is::<MemoryLimitHit>() {
                    PluginFault::MemoryLimit { plugin, export: export_name, limit: runtime.limits.max_memory }
                } else if error.is::<TimeLimitHit>() {
                    PluginFault::TimeLimit { plugin, export: export_name, limit }
                } else if let Some(what) = count_limit(&error) {
                    let counts = runtime.limits.store;
                    PluginFault::ResourceLimit {
                        plugin,
                        export: export_name,
                        what: format!(
                            "{what}; a call may hold at most {} instances, {} tables and {} memories",
                            counts.instances, counts.tables, counts.memories
                        ),
                    }
                } else if let Some(mismatch) = export_type_mismatch(&error) {
                    PluginFault::Contract {
                        plugin,
                        export: export_name,
                        message: format!(
                            "its exports do not have the types contract {} gives them ({mismatch})",
                            self.contract()
                        ),
                    }
                } else {
                    match error.downcast_ref::<Trap>() {
                        Some(Trap::StackOverflow) => PluginFault::StackOverflow { plugin, export: export_name },
                        Some(Trap::Interrupt) => PluginFault::TimeLimit { plugin, export: export_name, limit },
                        _ => PluginFault::Trap { plugin, export: export_name, message: trap_message(&error, &printed) },
                    }
                };
                Err(fault.into())
            }
        }
    }

    /// Calls `describe` with nothing granted, makes its text inert and checks it.
    pub async fn describe(&self, runtime: &Runtime) -> Result<Description, CallError> {
        Ok(self.describe_inert(runtime).await?.0)
    }

    /// The same, also saying whether the plugin's text had control characters or escape
    /// sequences that had to be removed.
    pub async fn describe_inert(&self, runtime: &Runtime) -> Result<(Description, bool), CallError> {
        let (description, changed) = self.describe_unchecked(runtime).await?;
        check_description(&description, self.contract()).map_err(|message| describe_fault(&self.name, message))?;
        Ok((description, changed))
    }

    /// The same without the contract's rules: for the conformance runner, which tells
    /// the author which rule failed. Never act on a description this returns.
    pub async fn describe_unchecked(&self, runtime: &Runtime) -> Result<(Description, bool), CallError> {
        let out = self
            .call_on(
                runtime,
                &CallEnv::denied(),
                Export::Describe,
                Pre::instantiate_for_describe,
                async |store, describer| match describer {
                    Describer::Func(describe) => Ok(describe.call_async(store, ()).await?.0),
                    Describer::Instance(Instance::V0_3(w)) => w.pier_deploy_method().call_describe(store).await,
                    Describer::Instance(Instance::V0_2(w)) => {
                        Ok(w.pier_deploy_method().call_describe(store).await?.to())
                    }
                    Describer::Instance(Instance::V0_1(w)) => {
                        Ok(w.pier_deploy_method().call_describe(store).await?.to())
                    }
                },
            )
            .await?;
        let mut changed = false;
        let description = inert::Inert::inert_noting(out.value, &mut changed);
        Ok((description, changed))
    }

    /// Calls `choices`.
    pub async fn choices(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        field: &str,
        answers: &[Answer],
    ) -> Result<Result<Vec<Choice>, MethodError>, CallError> {
        let out = self
            .call(runtime, env, Export::Choices, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_choices(store, ctx, field, answers).await,
                Instance::V0_2(w) => {
                    let (ctx, answers) = v0_2::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_choices(store, &ctx, field, &answers).await?.to())
                }
                Instance::V0_1(w) => {
                    let (ctx, answers) = v0_1::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_choices(store, &ctx, field, &answers).await?.to())
                }
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }

    /// Calls `validate`.
    pub async fn validate(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        answers: &[Answer],
    ) -> Result<Result<String, MethodError>, CallError> {
        let out = self
            .call(runtime, env, Export::Validate, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_validate(store, ctx, answers).await,
                Instance::V0_2(w) => {
                    let (ctx, answers) = v0_2::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_validate(store, &ctx, &answers).await?.to())
                }
                Instance::V0_1(w) => {
                    let (ctx, answers) = v0_1::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_validate(store, &ctx, &answers).await?.to())
                }
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }

    /// Calls `setup`; the output carries the keys it generated.
    pub async fn setup(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        answers: &[Answer],
    ) -> Result<CallOutput<Result<SetupResult, MethodError>>, CallError> {
        let mut out = self
            .call(runtime, env, Export::Setup, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_setup(store, ctx, answers).await,
                Instance::V0_2(w) => {
                    let (ctx, answers) = v0_2::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_setup(store, &ctx, &answers).await?.to())
                }
                Instance::V0_1(w) => {
                    let (ctx, answers) = v0_1::old_args(ctx, answers);
                    Ok(w.pier_deploy_method().call_setup(store, &ctx, &answers).await?.to())
                }
            })
            .await?;
        out.value = inert::Inert::inert(out.value);
        Ok(out)
    }

    /// Calls `deploy`.
    pub async fn deploy(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        settings: &[Answer],
        build: &BuildInfo,
    ) -> Result<Result<DeployReport, MethodError>, CallError> {
        let out = self
            .call(runtime, env, Export::Deploy, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_deploy(store, ctx, settings, build).await,
                Instance::V0_2(w) => {
                    let (ctx, settings) = v0_2::old_args(ctx, settings);
                    let build: bindings::v0_2::pier::deploy::types::BuildInfo = build.clone().to();
                    Ok(w.pier_deploy_method().call_deploy(store, &ctx, &settings, &build).await?.to())
                }
                Instance::V0_1(w) => {
                    let (ctx, settings) = v0_1::old_args(ctx, settings);
                    let build: bindings::v0_1::pier::deploy::types::BuildInfo = build.clone().to();
                    Ok(w.pier_deploy_method().call_deploy(store, &ctx, &settings, &build).await?.to())
                }
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }

    /// Calls a 0.1.0 plugin's `prepare-commands` (the current contract has none: command
    /// support is declared). `None` for a current plugin. The caller checks the plan.
    pub async fn legacy_prepare_commands(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        settings: &[Answer],
        commands: &[String],
    ) -> Result<Option<Result<LegacyPlan, MethodError>>, CallError> {
        if self.contract() != Contract::V0_1 {
            return Ok(None);
        }
        let out = self
            .call(runtime, env, Export::PrepareCommands, async |store, world| match world {
                Instance::V0_3(_) | Instance::V0_2(_) => Ok(None),
                Instance::V0_1(w) => {
                    let (ctx, settings) = v0_1::old_args(ctx, settings);
                    let plan = w.pier_deploy_method().call_prepare_commands(store, &ctx, &settings, commands).await?;
                    Ok(Some(plan.to()))
                }
            })
            .await?;
        let value: Option<Result<LegacyPlan, MethodError>> = out.value;
        if let Some(Ok(plan)) = &value
            && plan.commands.len() != commands.len()
        {
            return Err(CallError::Fault(PluginFault::Contract {
                plugin: self.name.clone(),
                export: "prepare-commands",
                message: format!("returned {} commands for {} given", plan.commands.len(), commands.len()),
            }));
        }
        Ok(inert::Inert::inert(value))
    }
}

impl Plugin {
    /// What an old contract's plugin answers for an export it cannot have.
    fn missing(&self, what: &str) -> MethodError {
        MethodError::Unsupported(format!(
            "plugin `{}` is built against pier:deploy {}, which has no {what}; a build against {CONTRACT_VERSION} may \
             offer it",
            self.name,
            self.contract()
        ))
    }

    /// Calls `run`: a one-off command on the server; the value is its exit status. A
    /// plugin of an older contract answers `unsupported`.
    pub async fn run(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        settings: &[Answer],
        request: &RunRequest,
    ) -> Result<Result<i32, MethodError>, CallError> {
        let out = self
            .call(runtime, env, Export::Run, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_run(store, ctx, settings, request).await,
                Instance::V0_2(_) | Instance::V0_1(_) => Ok(Err(self.missing("one-off commands (`run`)"))),
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }

    /// Calls `rollback` to `release` (none: the last good one before the current).
    pub async fn rollback(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        settings: &[Answer],
        release: Option<&str>,
    ) -> Result<Result<DeployReport, MethodError>, CallError> {
        let release = release.map(str::to_string);
        let out = self
            .call(runtime, env, Export::Rollback, async |store, world| match world {
                Instance::V0_3(w) => {
                    w.pier_deploy_method().call_rollback(store, ctx, settings, release.as_deref()).await
                }
                Instance::V0_2(_) | Instance::V0_1(_) => Ok(Err(self.missing("rollback"))),
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }

    /// Calls `remove`: the lines to show after undoing what setup registered. A plugin of
    /// an older contract has nothing to undo.
    pub async fn remove(
        &self,
        runtime: &Runtime,
        env: &CallEnv,
        ctx: &Context,
        settings: &[Answer],
    ) -> Result<Result<Vec<String>, MethodError>, CallError> {
        let out = self
            .call(runtime, env, Export::Remove, async |store, world| match world {
                Instance::V0_3(w) => w.pier_deploy_method().call_remove(store, ctx, settings).await,
                Instance::V0_2(_) | Instance::V0_1(_) => Ok(Ok(vec![])),
            })
            .await?;
        Ok(inert::Inert::inert(out.value))
    }
}

/// Plugin `plugin` broke the contract in `describe`, as `message` says.
fn describe_fault(plugin: &str, message: String) -> CallError {
    CallError::Fault(PluginFault::Contract { plugin: plugin.to_string(), export: "describe", message })
}

/// Whether `value`, as the host holds it, is at most `limit` bytes: its JSON form is
/// counted, and counting stops at the limit.
fn fits(value: &impl serde::Serialize, limit: usize) -> bool {
    struct Count {
        left: usize,
    }
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.left = self.left.checked_sub(bytes.len()).ok_or(std::io::ErrorKind::FileTooLarge)?;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    serde_json::to_writer(Count { left: limit }, value).is_ok()
}

/// What an instantiation ran out of, when wasmtime refused it for a count limit (its
/// error is text: "resource limit exceeded: instance count too high at 101").
fn count_limit(error: &wasmtime::Error) -> Option<String> {
    let text = format!("{error:#}");
    let at = text.find("resource limit exceeded: ")?;
    let what = &text[at + "resource limit exceeded: ".len()..];
    Some(what.lines().next().unwrap_or(what).to_string())
}

/// How many of the last lines a guest printed a trap's message shows, when they are not a
/// Rust panic's.
const TRAP_LINES: usize = 3;

/// What wasmtime said, when `error` is an export whose type is not the one the contract
/// gives it: the bindings check each export's type as an instance is made, and wasmtime
/// names the mismatch ("failed to convert function to given type: type mismatch with
/// results: ..."), though not the export.
fn export_type_mismatch(error: &wasmtime::Error) -> Option<String> {
    error
        .chain()
        .any(|cause| cause.to_string().starts_with("type mismatch with "))
        .then(|| redact(&crate::caps::events::inert(&format!("{error:#}"))).into_owned())
}

/// One line explaining a trap: the guest's panic message if it printed one, else the
/// trap itself and the last lines the guest printed (a Python traceback ends with the
/// exception's name and message).
fn trap_message(error: &wasmtime::Error, stderr: &str) -> String {
    let lines: Vec<&str> = stderr.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let text = match (uncaught_exception(&lines).or_else(|| panic_message(&lines)), error.downcast_ref::<Trap>()) {
        (Some(text), _) => text,
        (None, trap) => {
            let trap = trap.map_or_else(|| error.to_string(), |t| t.to_string());
            let trap = trap.lines().next().unwrap_or("unknown trap").to_string();
            match lines.len() {
                0 => trap,
                n => format!("{trap}; it printed last: {}", lines[n.saturating_sub(TRAP_LINES)..].join(" | ")),
            }
        }
    };
    redact(&crate::caps::events::inert(text.lines().next().unwrap_or("unknown trap"))).into_owned()
}

/// A Rust panic's message and where it was raised, from what the guest printed.
fn panic_message(lines: &[&str]) -> Option<String> {
    let i = lines.iter().position(|l| l.contains("panicked at"))?;
    let location = lines[i].split("panicked at").nth(1).unwrap_or("").trim().trim_end_matches(':');
    let message = lines.get(i + 1).filter(|l| !l.starts_with("note:")).copied().unwrap_or("(no message)");
    Some(format!("panicked: {message} (at {location})"))
}

/// An exception a Python or JavaScript plugin did not catch, by its name and message,
/// from what its language's runtime printed as it gave up: componentize-py prints the
/// traceback, then panics with a message of its own; componentize-js names the thrown
/// value where it expected a `method-error`.
fn uncaught_exception(lines: &[&str]) -> Option<String> {
    if let Some(i) = lines.iter().position(|l| l.contains("panicked at"))
        && lines.get(i + 1).is_some_and(|l| l.contains("Python function threw an unexpected exception"))
    {
        let raised = lines[..i].iter().rev().find(|l| !l.starts_with("File ") && !l.starts_with('^'))?;
        return Some(format!("uncaught Python exception: {raised}"));
    }
    lines.iter().rev().find_map(|l| {
        let thrown = l.split_once("(received `")?.1;
        let thrown = thrown.rsplit_once("`)").map_or(thrown, |(t, _)| t);
        Some(format!("uncaught JavaScript exception: {thrown}"))
    })
}

/// Checks that a description follows the contract's rules (of `contract`): well-formed
/// names and form, endpoints whose environment variables may only pick a host, plain
/// program names with valid argument patterns and no refused variables, secret bindings
/// and command support that name what the plugin declares.
pub fn check_description(d: &Description, contract: Contract) -> Result<(), String> {
    use crate::caps::exec::{check_pattern, plain_program_name, refused_env};
    use bindings::{CommandEnvValue, FieldKind, SecretUse};
    let name_ok =
        |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok(&d.name) {
        return Err(format!("name `{}` must be lowercase letters, digits and `-`", d.name));
    }
    if d.title.trim().is_empty() {
        return Err("title is empty".into());
    }
    if semver::Version::parse(&d.version).is_err() {
        return Err(format!("version `{}` is not semver", d.version));
    }
    let mut ids = std::collections::BTreeSet::new();
    for field in &d.fields {
        if !crate::caps::keys::valid_handle(&field.id) {
            return Err(format!("field id `{}` must be lowercase letters, digits and `_`", field.id));
        }
        if !ids.insert(field.id.as_str()) {
            return Err(format!("field id `{}` appears twice", field.id));
        }
        if field.label.trim().is_empty() {
            return Err(format!("field `{}` has no label", field.id));
        }
        if field.kind == FieldKind::Secret && field.default.is_some() {
            return Err(format!("secret field `{}` must not have a default", field.id));
        }
        if field.kind == FieldKind::Boolean
            && let Some(default) = &field.default
            && default != "true"
            && default != "false"
        {
            return Err(format!("boolean field `{}` has default `{default}`, not true or false", field.id));
        }
    }
    let mut endpoint_ids = std::collections::BTreeSet::new();
    for endpoint in &d.permissions.endpoints {
        if !endpoint_ids.insert(endpoint.id.as_str()) {
            return Err(format!("endpoint `{}` appears twice", endpoint.id));
        }
        if endpoint.sources.is_empty() {
            return Err(format!("endpoint `{}` has no sources", endpoint.id));
        }
        for source in &endpoint.sources {
            match source {
                bindings::EndpointSource::Field(f) if !ids.contains(f.as_str()) => {
                    return Err(format!("endpoint `{}` names field `{f}`, which the form does not have", endpoint.id));
                }
                bindings::EndpointSource::Field(f) => {
                    let default =
                        d.fields.iter().find(|field| field.id == *f).and_then(|field| field.default.as_deref());
                    if let Some(why) = default.and_then(crate::caps::http::internal_address) {
                        return Err(format!(
                            "endpoint `{}`: the default of field `{f}` is an internal address ({why}); only the user \
                             may point an endpoint at one",
                            endpoint.id
                        ));
                    }
                }
                bindings::EndpointSource::Fixed(url) => {
                    crate::caps::http::OriginPattern::of(
                        &url::Url::parse(url)
                            .map_err(|_| format!("endpoint `{}`: `{url}` is not a URL", endpoint.id))?,
                    )
                    .map_err(|e| format!("endpoint `{}`: {e}", endpoint.id))?;
                }
                bindings::EndpointSource::Env(env) => {
                    crate::caps::http::check_env_endpoint(env)
                        .map_err(|e| format!("endpoint `{}`: {e}", endpoint.id))?;
                }
            }
        }
    }
    for origin in &d.permissions.origins {
        crate::caps::http::OriginPattern::parse(origin).map_err(|e| format!("origin: {e}"))?;
    }
    let mut programs = std::collections::BTreeSet::new();
    for program in &d.permissions.programs {
        if !plain_program_name(&program.name) {
            return Err(format!(
                "program `{}` must be a plain name (letters, digits, `.`, `_`, `+`, `-`), not a path",
                program.name
            ));
        }
        if !programs.insert(program.name.as_str()) {
            return Err(format!("program `{}` appears twice", program.name));
        }
        for pattern in &program.args {
            check_pattern(pattern).map_err(|e| format!("program `{}`: {e}", program.name))?;
        }
        for var in &program.env {
            if let Some(why) = refused_env(var) {
                return Err(format!("program `{}`: environment variable `{var}` {why}", program.name));
            }
        }
    }
    for binding in &d.permissions.secrets {
        let secret = &binding.secret;
        if !crate::caps::keys::valid_handle(secret) {
            return Err(format!("secret binding: `{secret}` is not a secret handle"));
        }
        match &binding.use_ {
            SecretUse::Header(h) => {
                if !endpoint_ids.contains(h.endpoint.as_str()) {
                    return Err(format!(
                        "secret `{secret}` is bound to endpoint `{}`, which is not declared",
                        h.endpoint
                    ));
                }
                let header = reqwest::header::HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                    format!("secret `{secret}` is bound to header `{}`, which is not a header name", h.name)
                })?;
                if header == reqwest::header::HOST {
                    return Err(format!("secret `{secret}` cannot be bound to the Host header"));
                }
                if h.prefix.len() > 64 || !h.prefix.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                    return Err(format!(
                        "secret `{secret}`: prefix {:?} must be at most 64 printable ASCII characters",
                        h.prefix
                    ));
                }
            }
            SecretUse::ProgramEnv(e) => {
                if !programs.contains(e.program.as_str()) {
                    return Err(format!(
                        "secret `{secret}` is bound to program `{}`, which is not declared",
                        e.program
                    ));
                }
                if let Some(why) = refused_env(&e.variable) {
                    return Err(format!("secret `{secret}`: environment variable `{}` {why}", e.variable));
                }
            }
            SecretUse::SshKey(program) if !programs.contains(program.as_str()) => {
                return Err(format!("secret `{secret}` is bound as the SSH key of `{program}`, which is not declared"));
            }
            SecretUse::SshKey(_) => {}
        }
    }
    let commands = &d.permissions.commands;
    let mut names = std::collections::BTreeSet::new();
    for var in &commands.env {
        if let Some(why) = refused_env(&var.name) {
            return Err(format!("deploy-command variable `{}` {why}", var.name));
        }
        if !names.insert(var.name.as_str()) {
            return Err(format!("deploy-command variable `{}` appears twice", var.name));
        }
        match &var.value {
            CommandEnvValue::Secret(h) if !crate::caps::keys::valid_handle(h) => {
                return Err(format!("deploy-command variable `{}`: `{h}` is not a secret handle", var.name));
            }
            CommandEnvValue::Setting(f) if !ids.contains(f.as_str()) && !crate::caps::keys::valid_handle(f) => {
                return Err(format!(
                    "deploy-command variable `{}` names setting `{f}`, which is not a field id",
                    var.name
                ));
            }
            CommandEnvValue::Endpoint(e) | CommandEnvValue::EndpointOverride(e)
                if !endpoint_ids.contains(e.as_str()) =>
            {
                return Err(format!(
                    "deploy-command variable `{}` names endpoint `{e}`, which is not declared",
                    var.name
                ));
            }
            _ => {}
        }
    }
    for rule in &commands.rules {
        crate::commands::check_rule(&crate::deploy::rule_of(rule)).map_err(|e| format!("command rule: {e}"))?;
    }
    for tool in &commands.tools {
        if !plain_program_name(&tool.program) {
            return Err(format!("tool `{}` must be a plain program name", tool.program));
        }
    }
    for native in &commands.native {
        crate::native::check_native(native, &ids).map_err(|e| format!("native command: {e}"))?;
    }
    for stream in &d.permissions.streams {
        crate::caps::tls::check_stream_grant(stream, &endpoint_ids)?;
    }
    if contract == Contract::V0_1 && !d.permissions.secrets.is_empty() {
        return Err("a 0.1.0 plugin cannot declare secret bindings".into());
    }
    Ok(())
}

/// Turns stored settings or answers into the map endpoint resolution reads.
pub fn values_of(answers: &[Answer]) -> BTreeMap<String, String> {
    answers.iter().map(|a| (a.field.clone(), a.value.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::{CommandSupport, Endpoint, EndpointSource, Field, FieldKind, Permissions};

    #[test]
    fn background_compilation_makes_the_artifacts_the_optimised_tier_loads() {
        let optimized = cache::Target::single(Engine::new(&engine_config::engine_config()).unwrap(), Tier::Optimized);
        let background =
            cache::Target::single(Engine::new(&engine_config::background_config()).unwrap(), Tier::Optimized);
        let baseline = cache::Target::single(
            Engine::new(&engine_config::engine_config_for(Tier::Baseline)).unwrap(),
            Tier::Baseline,
        );
        assert!(background.same_artifacts(&optimized));
        assert!(!baseline.same_artifacts(&optimized));
    }

    #[test]
    fn uncaught_exceptions_are_named_by_what_the_language_runtime_printed() {
        let python = "Traceback (most recent call last):\n  File \"/app.py\", line 40, in deploy\n    raise ValueError(\"the release went sideways\")\nValueError: the release went sideways\nthread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace";
        let lines: Vec<&str> = python.lines().map(str::trim).collect();
        assert_eq!(
            uncaught_exception(&lines).as_deref(),
            Some("uncaught Python exception: ValueError: the release went sideways")
        );
        let js = "Stack:\n  export_method_0_3_0$deploy@initializer.js:3846:17\ninvalid variant tag value `undefined` (received `TypeError: the release went sideways`) specified for `MethodError`\nRedirecting call to abort() to mozalloc_abort";
        let lines: Vec<&str> = js.lines().map(str::trim).collect();
        assert_eq!(
            uncaught_exception(&lines).as_deref(),
            Some("uncaught JavaScript exception: TypeError: the release went sideways")
        );
        // A Rust panic stays a panic, with its own message.
        let rust =
            "thread '<unnamed>' panicked at src/lib.rs:3:5:\nthe plugin gave up\nnote: run with `RUST_BACKTRACE=1`";
        let lines: Vec<&str> = rust.lines().map(str::trim).collect();
        assert_eq!(uncaught_exception(&lines), None);
        assert_eq!(panic_message(&lines).as_deref(), Some("panicked: the plugin gave up (at src/lib.rs:3:5)"));
    }

    #[test]
    fn memories_and_tables_share_one_limit() {
        let mut limiter = Limiter::new(1000, StoreCounts::default());
        assert!(limiter.memory_growing(0, 600, None).unwrap());
        // 50 elements of a table are 400 bytes: 1000 in all, at the limit.
        assert!(limiter.table_growing(0, 50, None).unwrap());
        assert!(!limiter.hit);
        // One more element goes over, and so does any memory growth.
        assert!(limiter.table_growing(50, 51, None).is_err());
        assert!(limiter.hit);
        let mut limiter = Limiter::new(1000, StoreCounts::default());
        limiter.table_growing(0, 50, None).unwrap();
        assert!(limiter.memory_growing(0, 601, None).is_err());
        // Growing an existing memory counts only the difference.
        assert!(limiter.memory_growing(0, 300, None).unwrap());
        assert!(limiter.memory_growing(300, 600, None).unwrap());
        // Sizes near usize::MAX saturate rather than wrap.
        assert!(limiter.table_growing(0, usize::MAX, None).is_err());
    }

    #[test]
    fn returned_values_are_measured_up_to_the_limit() {
        assert!(fits(&"x".repeat(10), 12));
        assert!(!fits(&"x".repeat(11), 12));
        assert!(fits(&vec![0u8; 3], 100));
    }

    #[test]
    fn count_limits_are_told_from_other_errors() {
        let error = wasmtime::Error::msg("resource limit exceeded: instance count too high at 101");
        assert_eq!(count_limit(&error).as_deref(), Some("instance count too high at 101"));
        assert_eq!(count_limit(&wasmtime::Error::msg("wasm trap: unreachable")), None);
    }

    /// A description whose endpoint `api` comes from field `api_url`, defaulting to `default`.
    fn with_default(default: Option<&str>) -> Description {
        Description {
            name: "test".into(),
            title: "Test".into(),
            version: "0.1.0".into(),
            summary: "A test.".into(),
            fields: vec![Field {
                id: "api_url".into(),
                label: "API URL".into(),
                help: "Where the API is.".into(),
                kind: FieldKind::Text,
                required: false,
                default: default.map(String::from),
                advanced: true,
                example: None,
            }],
            permissions: Permissions {
                endpoints: vec![Endpoint { id: "api".into(), sources: vec![EndpointSource::Field("api_url".into())] }],
                origins: vec![],
                programs: vec![],
                secrets: vec![],
                commands: CommandSupport { env: vec![], rules: vec![], tools: vec![], native: vec![] },
                streams: vec![],
            },
        }
    }

    #[test]
    fn an_endpoint_field_cannot_default_to_an_internal_address() {
        for default in ["http://169.254.169.254", "http://127.0.0.1:5000", "http://localhost:8080", "http://[fd00::1]"]
        {
            let message = check_description(&with_default(Some(default)), Contract::CURRENT).unwrap_err();
            assert!(
                message.starts_with("endpoint `api`: the default of field `api_url` is an internal address"),
                "{message}"
            );
        }
        // The benign twins: a public default, or none.
        assert_eq!(check_description(&with_default(Some("https://api.example.com")), Contract::CURRENT), Ok(()));
        assert_eq!(check_description(&with_default(None), Contract::CURRENT), Ok(()));
    }
}
