//! Capability `exec`: running the programs a plugin is granted.
//!
//! Policy: a program is named, never given as a path, and must be in the grant; it is
//! looked up on the host's `PATH`. Its environment starts empty: the host adds `PATH`,
//! `HOME` and `LANG`, then the plugin's variables, whose values may be secrets the host
//! substitutes. Standard input is closed. Output is streamed line by line to the event
//! sink, cleaned and redacted; the last lines are kept for error messages. A program
//! that outlives its time limit is killed. The same runner serves the host's own deploy
//! commands ([`run_program`]).

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::caps::events::{Event, EventSink, clean_line};
use crate::caps::keys::{KeyFile, known_hosts_in};
use crate::caps::secrets::{Vault, redact};
use crate::runtime::bindings::pier::deploy::exec;
use crate::runtime::bindings::pier::deploy::types::{EnvValue, EnvVar};

/// Lines of output kept for error messages.
pub const TAIL_LINES: usize = 20;
/// Most standard output captured for the plugin, in bytes.
pub const MAX_CAPTURE: usize = 1 << 20;

/// Time bounds of the `exec` capability.
#[derive(Debug, Clone)]
pub struct ExecLimits {
    /// When the plugin gives no time limit.
    pub default_timeout: Duration,
    /// The most a plugin may ask for.
    pub max_timeout: Duration,
}

impl Default for ExecLimits {
    fn default() -> Self {
        ExecLimits { default_timeout: Duration::from_secs(600), max_timeout: Duration::from_secs(3600) }
    }
}

/// Finds an executable named `program` on `path` (a `PATH` value).
pub fn find_program(program: &str, path: Option<&OsString>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(path).map(|dir| dir.join(program)).find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// The environment every program starts from: `PATH`, `HOME` and `LANG` of the host.
pub fn base_env() -> Env {
    let mut env = Vec::new();
    for name in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(name) {
            env.push((name.to_string(), value));
        }
    }
    env.push(("LANG".to_string(), std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into())));
    env
}

/// Why a program could not run to its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not start `{program}`: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("`{program}` ran longer than {}s and was killed", .limit.as_secs())]
    Timeout { program: String, limit: Duration },
    #[error("reading the output of `{program}` failed: {source}")]
    Io { program: String, source: std::io::Error },
}

/// How a program ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// Exit code, or -1 if a signal ended it.
    pub code: i32,
    /// Captured standard output (redacted), if asked for.
    pub stdout: String,
    /// The last lines of output (redacted).
    pub tail: Vec<String>,
}

/// What to run, fully resolved by the caller.
pub struct Program<'a> {
    /// The name shown in messages.
    pub name: &'a str,
    /// The executable.
    pub path: &'a Path,
    pub args: &'a [String],
    /// The complete environment.
    pub env: Env,
    pub cwd: &'a Path,
    pub capture_stdout: bool,
    pub timeout: Duration,
}

/// Runs a program to its end, streaming its output to `sink` as [`Event::Output`] lines.
pub async fn run_program(program: Program<'_>, sink: &dyn EventSink) -> Result<Finished, RunError> {
    let mut command = tokio::process::Command::new(program.path);
    command
        .args(program.args)
        .env_clear()
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .current_dir(program.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    command.process_group(0);
    let mut child = command.spawn().map_err(|source| RunError::Spawn { program: program.name.to_string(), source })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let tail = std::sync::Mutex::new(VecDeque::with_capacity(TAIL_LINES));
    let capture = std::sync::Mutex::new(String::new());
    let emit = |line: String, is_stdout: bool| {
        let line = clean_line(&redact(&line));
        if is_stdout && program.capture_stdout {
            let mut captured = capture.lock().unwrap_or_else(|e| e.into_inner());
            if captured.len() + line.len() < MAX_CAPTURE {
                captured.push_str(&line);
                captured.push('\n');
            }
            return;
        }
        let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        sink.emit(Event::Output { line });
    };
    let work = async {
        let (a, b) = tokio::join!(pump(stdout, |l| emit(l, true)), pump(stderr, |l| emit(l, false)));
        a.and(b).map_err(|source| RunError::Io { program: program.name.to_string(), source })?;
        child.wait().await.map_err(|source| RunError::Io { program: program.name.to_string(), source })
    };
    let status = match tokio::time::timeout(program.timeout, work).await {
        Ok(status) => status?,
        Err(_) => {
            kill_group(&mut child).await;
            return Err(RunError::Timeout { program: program.name.to_string(), limit: program.timeout });
        }
    };
    Ok(Finished {
        code: status.code().unwrap_or(-1),
        stdout: capture.into_inner().unwrap_or_else(|e| e.into_inner()),
        tail: tail.into_inner().unwrap_or_else(|e| e.into_inner()).into(),
    })
}

/// Kills a program and everything it started.
async fn kill_group(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        // The child leads its own process group: signal the whole group.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    let _ = child.kill().await;
}

async fn pump(reader: impl AsyncRead + Unpin, mut each: impl FnMut(String)) -> std::io::Result<()> {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&buf);
        each(line.trim_end_matches(['\n', '\r']).to_string());
    }
}

/// A program's environment: names and values.
pub type Env = Vec<(String, OsString)>;

/// Resolves a list of plugin environment variables, substituting secrets from `vault`.
pub fn resolve_env(vars: &[EnvVar], vault: &Vault) -> Result<Env, String> {
    vars.iter()
        .map(|var| {
            if var.name.is_empty() || var.name.contains(['=', '\0']) {
                return Err(format!("`{}` is not a valid environment variable name", var.name));
            }
            let value = match &var.value {
                EnvValue::Text(text) => OsString::from(text),
                EnvValue::Secret(handle) => OsString::from(
                    vault.get(handle).ok_or_else(|| format!("unknown secret handle `{handle}`"))?.expose_secret(),
                ),
            };
            Ok((var.name.clone(), value))
        })
        .collect()
}

/// The per-call state of the `exec` capability.
pub struct ExecCap {
    programs: BTreeSet<String>,
    vault: Arc<Vault>,
    workspace: Option<PathBuf>,
    sink: Arc<dyn EventSink>,
    limits: ExecLimits,
    audit: Option<Arc<crate::caps::Audit>>,
    path: Option<OsString>,
    scratch: Option<PathBuf>,
}

impl ExecCap {
    /// Programs named in `programs` may run; `workspace` is the checkout, if the call has one.
    pub fn new(
        programs: BTreeSet<String>,
        vault: Arc<Vault>,
        workspace: Option<PathBuf>,
        sink: Arc<dyn EventSink>,
        limits: ExecLimits,
    ) -> Self {
        ExecCap { programs, vault, workspace, sink, limits, audit: None, path: None, scratch: None }
    }

    /// The same, recording every run in `audit`, if set.
    pub fn with_audit(mut self, audit: Option<Arc<crate::caps::Audit>>) -> Self {
        self.audit = audit;
        self
    }

    /// The same, making each run's scratch directory (and private key file) under `dir`
    /// instead of the system's temporary directory.
    pub fn with_scratch(mut self, dir: Option<PathBuf>) -> Self {
        self.scratch = dir;
        self
    }

    /// The same, looking programs up on `path` (and giving it to them as `PATH`) instead
    /// of the host's `PATH`, if set.
    pub fn with_path(mut self, path: Option<OsString>) -> Self {
        self.path = path;
        self
    }

    async fn run(&self, command: exec::Command) -> Result<exec::Exit, exec::ExecError> {
        let granted = !command.program.contains(['/', '\\']) && self.programs.contains(&command.program);
        if let Some(audit) = &self.audit {
            let mut plugin_text = command.args.join("\n");
            for var in &command.env {
                if let EnvValue::Text(t) = &var.value {
                    plugin_text.push('\n');
                    plugin_text.push_str(t);
                }
            }
            audit.record(crate::caps::AuditRecord::Exec {
                program: command.program.clone(),
                allowed: granted,
                plugin_text,
            });
        }
        if !granted {
            let granted: Vec<_> = self.programs.iter().cloned().collect();
            return Err(exec::ExecError::Denied(format!(
                "program `{}` is not granted to this plugin (granted: {})",
                command.program,
                if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
            )));
        }
        let search = self.path.clone().or_else(|| std::env::var_os("PATH"));
        let path = find_program(&command.program, search.as_ref())
            .ok_or_else(|| exec::ExecError::NotFound(format!("`{}` is not on PATH", command.program)))?;
        let mut env = base_env();
        if let Some(search) = &self.path {
            env.retain(|(k, _)| k != "PATH");
            env.push(("PATH".into(), search.clone()));
        }
        env.extend(resolve_env(&command.env, &self.vault).map_err(exec::ExecError::Failed)?);
        let mut scratch = tempfile::Builder::new();
        scratch.prefix("pier-exec-");
        let scratch = match &self.scratch {
            Some(dir) => scratch.tempdir_in(dir),
            None => scratch.tempdir(),
        }
        .map_err(|e| exec::ExecError::Failed(format!("could not make a temporary directory: {e}")))?;
        let _key_file = match &command.ssh_key {
            Some(handle) => {
                let file = KeyFile::write(&self.vault, handle, scratch.path())
                    .map_err(|e| exec::ExecError::Failed(e.to_string()))?;
                env.push(("GIT_SSH_COMMAND".into(), file.git_ssh_command(&known_hosts_in(scratch.path())).into()));
                env.push(("PIER_SSH_KEY".into(), file.path().into()));
                Some(file)
            }
            None => None,
        };
        let cwd = if command.in_workspace {
            self.workspace
                .clone()
                .ok_or_else(|| exec::ExecError::Failed("this call has no workspace (only deploy has one)".into()))?
        } else {
            scratch.path().to_path_buf()
        };
        let timeout = command
            .timeout_ms
            .map(|ms| Duration::from_millis(ms.into()))
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout);
        let program = Program {
            name: &command.program,
            path: &path,
            args: &command.args,
            env,
            cwd: &cwd,
            capture_stdout: command.capture_stdout,
            timeout,
        };
        match run_program(program, self.sink.as_ref()).await {
            Ok(done) => Ok(exec::Exit { code: done.code, stdout: done.stdout, tail: done.tail }),
            Err(RunError::Timeout { .. }) => Err(exec::ExecError::Timeout),
            Err(e) => Err(exec::ExecError::Failed(e.to_string())),
        }
    }
}

impl exec::Host for ExecCap {
    async fn run(&mut self, command: exec::Command) -> wasmtime::Result<Result<exec::Exit, exec::ExecError>> {
        Ok(ExecCap::run(self, command).await)
    }
}
