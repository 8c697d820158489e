//! The `pier` command line.
//!
//! Manners: data on stdout, logs and progress on stderr; `--json` for machines; colour
//! and progress bars only on a terminal and never under `NO_COLOR`; never a prompt
//! without a terminal; every failure one line on stderr and an exit code from
//! [`crate::exit`].

mod ask;
mod ci_env;
mod ci_output;
mod conformance;
mod deploy;
mod init;
mod output;
mod plugins;
pub mod progress;
mod project;
mod run;
mod server;
mod table;
mod template;
mod timeline;

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::exit::Exit;
use crate::runtime::{CallError, HostError, LoadError, Runtime};

pub use output::Output;

/// Deploy from CI with deployment methods that run as sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "pier", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Log more: -v for debug, -vv for trace (also PIER_LOG=debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a project here: create pier.toml and, unless PIER_MASTER_KEY is set, a master key.
    Init {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add, list, show, edit and remove deployment servers.
    #[command(subcommand)]
    Server(server::ServerCommand),
    /// Deploy a server now: the method's deploy, then its commands.
    Deploy(deploy::DeployArgs),
    /// In CI, after the tests pass: deploy every automatic server that follows this build's branch.
    Ci(deploy::CiArgs),
    /// Run a one-off command on a server through its method; exits with the command's status.
    Run(run::RunArgs),
    /// Make an earlier release of a server live again.
    Rollback(run::RollbackArgs),
    /// Show the deployment timeline, or one deploy's log.
    Timeline(timeline::TimelineArgs),
    /// Check a plugin against the pier:deploy contract (exit 0 only if every applicable check passes).
    Conformance(conformance::ConformanceArgs),
    /// List, inspect and install deployment-method plugins.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
}

/// Why a command failed; each maps to one exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad flags or input.
    #[error("{0}")]
    Usage(String),
    /// A plugin file is unusable.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A plugin call failed.
    #[error(transparent)]
    Call(#[from] CallError),
    /// The runtime could not start.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The method reported an error.
    #[error("{message}")]
    Method { message: String, exit: Exit },
    /// `pier.toml` is invalid or cannot be written.
    #[error(transparent)]
    Config(#[from] crate::project::config::ConfigError),
    /// `pier.secrets` cannot be used.
    #[error(transparent)]
    Secrets(#[from] crate::project::secrets_file::SecretsFileError),
    /// No usable master key.
    #[error(transparent)]
    MasterKey(#[from] crate::project::masterkey::MasterKeyError),
    /// The timeline cannot be used.
    #[error(transparent)]
    Timeline(#[from] crate::project::timeline::TimelineError),
    /// Writing output failed.
    #[error("writing output failed: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The exit code for this error.
    pub fn exit(&self) -> Exit {
        match self {
            CliError::Usage(_)
            | CliError::Load(_)
            | CliError::Config(_)
            | CliError::Secrets(_)
            | CliError::MasterKey(_)
            | CliError::Timeline(_) => Exit::BadInput,
            CliError::Call(CallError::Fault(_)) => Exit::PluginFault,
            CliError::Call(CallError::Host(_)) | CliError::Host(_) => Exit::Provider,
            CliError::Method { exit, .. } => *exit,
            CliError::Output(_) => Exit::BadInput,
        }
    }
}

/// Settings every command shares.
pub struct Globals {
    /// Where compiled plugins are cached.
    pub cache_dir: Option<PathBuf>,
}

impl Globals {
    fn from_env() -> Self {
        let cache_dir = match std::env::var_os("PIER_CACHE_DIR") {
            Some(dir) if dir.is_empty() => None,
            Some(dir) => Some(PathBuf::from(dir)),
            None => dirs::cache_dir().map(|d| d.join("pier").join("compiled")),
        };
        Globals { cache_dir }
    }

    /// A runtime with the default limits, overridable by `PIER_LIMIT_MEMORY_MB` and
    /// `PIER_LIMIT_SECONDS` (every call's wall-clock limit), resolving the names
    /// `PIER_RESOLVE` lists to its addresses.
    pub fn runtime(&self) -> Result<Runtime, CliError> {
        let mut limits = crate::runtime::Limits::default();
        self.apply_env_limits(&mut limits)?;
        self.runtime_with(limits)
    }

    /// Applies `PIER_LIMIT_MEMORY_MB`, `PIER_LIMIT_SECONDS` and `PIER_RESOLVE`
    /// (`host=address[,address...]` pairs separated by whitespace: the addresses to use
    /// for these names; they are checked like any other) to `limits`.
    pub fn apply_env_limits(&self, limits: &mut crate::runtime::Limits) -> Result<(), CliError> {
        if let Some(text) = std::env::var_os("PIER_RESOLVE") {
            let text = text.into_string().map_err(|_| CliError::Usage("PIER_RESOLVE is not valid UTF-8".into()))?;
            limits.http.resolve = crate::caps::http::address::parse_overrides(&text).map_err(|e| {
                CliError::Usage(format!(
                    "PIER_RESOLVE must be `host=address[,address...]` pairs separated by spaces: {e}"
                ))
            })?;
        }
        if let Some(mb) = env_number("PIER_LIMIT_MEMORY_MB", 16.0..=65_536.0)? {
            if mb.fract() != 0.0 {
                return Err(CliError::Usage(format!("PIER_LIMIT_MEMORY_MB must be a whole number of MiB, not {mb}")));
            }
            limits.max_memory = (mb as usize) << 20;
        }
        // At most a day: a limit must be a number the clock can add to now.
        if let Some(ms) = env_number("PIER_COMPILE_NOTICE_MS", 0.0..=600_000.0)? {
            limits.compile_notice = std::time::Duration::from_millis(ms as u64);
        }
        if let Some(secs) = env_number("PIER_LIMIT_SECONDS", 0.1..=86_400.0)? {
            let limit = std::time::Duration::from_secs_f64(secs);
            limits.describe_time = limit;
            limits.setup_time = limit;
            limits.deploy_time = limit;
        }
        Ok(())
    }

    /// A runtime with exactly `limits`, compiling uncached plugins as `PIER_COMPILER` says
    /// (`auto`: Winch first, Cranelift in the background; `cranelift`; `winch`).
    pub fn runtime_with(&self, limits: crate::runtime::Limits) -> Result<Runtime, CliError> {
        let compilation = compilation_from_env()?;
        Ok(Runtime::new(limits, self.cache_dir.clone())?
            .with_compilation(compilation)
            .with_compile_notice(std::sync::Arc::new(compiling)))
    }

    /// Checks what the environment says a runtime should be, without starting one: for a
    /// command that may need none, so that a bad setting is refused all the same.
    pub fn check_runtime_env(&self) -> Result<(), CliError> {
        self.apply_env_limits(&mut crate::runtime::Limits::default())?;
        compilation_from_env().map(drop)
    }
}

/// How `PIER_COMPILER` says uncached plugins are compiled.
fn compilation_from_env() -> Result<crate::runtime::Compilation, CliError> {
    match std::env::var("PIER_COMPILER") {
        Err(std::env::VarError::NotPresent) => Ok(crate::runtime::Compilation::default()),
        Ok(text) if text.is_empty() => Ok(crate::runtime::Compilation::default()),
        Ok(text) => crate::runtime::Compilation::parse(&text).ok_or_else(|| {
            CliError::Usage(format!("PIER_COMPILER must be `auto`, `cranelift` or `winch`, not `{text}`"))
        }),
        Err(_) => Err(CliError::Usage("PIER_COMPILER is not valid UTF-8".into())),
    }
}

/// Says on stderr that plugin `origin` of `size` bytes is being compiled, once per load
/// that compiles, with a spinner while it lasts when stderr is a terminal.
fn compiling(origin: &str, size: u64) -> Box<dyn std::any::Any> {
    use std::io::IsTerminal as _;
    let line = format!("compiling plugin {origin} ({:.1} MB), first run only", size as f64 / 1e6);
    if !std::io::stderr().is_terminal() {
        eprintln!("{line}");
        return Box::new(());
    }
    let bar = indicatif::ProgressBar::new_spinner().with_message(line);
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    struct Done(indicatif::ProgressBar);
    impl Drop for Done {
        fn drop(&mut self) {
            let message = self.0.message();
            self.0.finish_and_clear();
            eprintln!("{message}");
        }
    }
    Box::new(Done(bar))
}

/// The number in environment variable `name`, if set: finite and within `range`, else a
/// usage error naming the variable and the range.
fn env_number(name: &str, range: std::ops::RangeInclusive<f64>) -> Result<Option<f64>, CliError> {
    let Ok(text) = std::env::var(name) else { return Ok(None) };
    match text.trim().parse::<f64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err(CliError::Usage(format!(
            "{name} must be a number from {} to {}, not `{text}`",
            range.start(),
            range.end()
        ))),
    }
}

/// The CLI error for a `method-error` a plugin returned.
pub fn method_error(d: &crate::runtime::Description, error: crate::runtime::MethodError) -> CliError {
    let (message, exit) = crate::exit::for_method_error(d, &error);
    CliError::Method { message, exit }
}

/// Starts logging at `-v`'s level, or `PIER_LOG`'s filter when set; a filter that does
/// not parse is a usage error rather than silently ignored.
fn init_logging(verbose: u8) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("PIER_LOG") {
        Ok(text) if !text.trim().is_empty() => EnvFilter::try_new(&text)
            .map_err(|e| format!("PIER_LOG must be a log filter such as `debug` or `pier=trace`, not `{text}`: {e}"))?,
        _ => EnvFilter::new(default),
    };
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_target(false)
        .with_writer(output::RedactingStderr::default)
        .try_init();
    Ok(())
}

/// Runs the command line and returns the exit code.
pub fn main() -> Exit {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::BadInput } else { Exit::Success };
        }
    };
    if let Err(message) = init_logging(cli.verbose) {
        eprintln!("error: {message}");
        return Exit::BadInput;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return Exit::Provider;
        }
    };
    let globals = Globals::from_env();
    let mut out = Output::stdout();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init { json } => init::run(json, &mut out),
            Command::Server(command) => server::run(command, &globals, &mut out).await,
            Command::Plugins(command) => plugins::run(command, &globals, &mut out).await,
            Command::Deploy(args) => deploy::deploy(args, &globals, &mut out).await,
            Command::Ci(args) => deploy::ci(args, &globals, &mut out).await,
            Command::Run(args) => run::run(args, &globals).await,
            Command::Rollback(args) => run::rollback(args, &globals, &mut out).await,
            Command::Timeline(args) => timeline::run(args, &mut out).await,
            Command::Conformance(args) => conformance::run(args, &globals, &mut out).await,
        }
    });
    // A forwarder of the user's input (`pier run`) may still be blocked reading a
    // terminal: never wait for it on the way out.
    runtime.shutdown_background();
    match result {
        Ok(exit) => exit,
        // `pier ... | head` closes stdout early: not an error.
        Err(CliError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
        Err(e) => {
            let text = crate::caps::secrets::redact(&e.to_string()).into_owned();
            eprintln!("error: {}", text.lines().next().unwrap_or_default());
            e.exit()
        }
    }
}
