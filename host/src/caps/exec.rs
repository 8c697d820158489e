//! Capability `exec`: running the programs a plugin is granted.
//!
//! Policy ([`ProgramPolicy`]): a program has a plain name, never a path, and must be in the
//! grant; it is looked up on the host's `PATH`. Its arguments must match one of the
//! program's declared patterns (literal words, `*` for one argument not starting with
//! `-`, `**` for the rest). Its environment starts empty: the host adds `PATH`, a fresh
//! private `HOME` inside the run's scratch directory and `LANG`, then the plugin's
//! variables: only names the grant lists, never one of the names that make programs run
//! code ([`refused_env`]), with secret values only where a binding allows. On Linux
//! with Landlock the program may read the system and the checkout and write only its
//! scratch directory ([`super::confine`]). A plugin built against 0.1.0 declared no
//! argument patterns, so its programs never run.
//!
//! Standard input is closed. Output is read in chunks and streamed line by line to the
//! event sink, cleaned, redacted across lines ([`OutputLines`]: a secret wrapped or split
//! over writes is caught) and cut to [`MAX_LINE`] bytes (` [cut: N bytes]`); the
//! last lines are kept for error messages; once where output is kept is full
//! ([`OutputRoom`]), lines are only counted. Every run has a supervisor of its own
//! ([`supervise`]): a program that outlives its time limit is stopped with everything it
//! started, and nothing it started outlives it or `pier`. The same runner serves the
//! host's own deploy commands ([`run_program`]), which are the user's and run unconfined.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use crate::caps::Refusal;
use crate::caps::events::{Event, EventSink, OutputLines, clean_line, safe_line};
use crate::caps::host_keys::{HostKeys, KnownHosts};
use crate::caps::keys::KeyFile;
use crate::caps::secrets::{Vault, redact};
use crate::caps::{confine, supervise};
use crate::runtime::Contract;
use crate::runtime::bindings::pier::deploy::exec;
use crate::runtime::bindings::pier::deploy::types::{EnvValue, EnvVar, Program as ProgramDecl};

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

/// Whether `name` is a plain program (or tool) name: letters, digits, `.`, `_`, `+`, `-`,
/// not starting with `-` or `.`.
pub fn plain_program_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['-', '.'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'))
}

/// Why a plugin may never set the environment variable `name` for a program (or a deploy
/// command), if it may not: the variable changes which code runs, where configuration
/// or credentials are read from, or is one the host sets itself.
pub fn refused_env(name: &str) -> Option<&'static str> {
    let valid = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Some("is not a plain variable name (letters, digits and `_`)");
    }
    let upper = name.to_ascii_uppercase();
    let n = upper.as_str();
    const EXACT: &[&str] = &[
        "HOME",
        "BASH_ENV",
        "ENV",
        "SHELL",
        "IFS",
        "PS4",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "PYTHONSTARTUP",
        "PYTHONHOME",
        "GLIBC_TUNABLES",
        "LANG",
        "SEMAPHORE_SERVER_NAME",
        "TMPDIR",
    ];
    const PREFIXES: &[&str] = &["LD_", "DYLD_", "GIT_", "SSH_", "XDG_", "PIER_", "LESS", "BASH_FUNC", "NPM_CONFIG_"];
    const SUFFIXES: &[&str] =
        &["PATH", "_COMMAND", "_PAGER", "_EDITOR", "_OPTIONS", "OPT", "_WRAPPER", "_CONF", "_CONFIG", "PERL5LIB"];
    if EXACT.contains(&n) {
        return Some("is set by the host or makes programs run code");
    }
    if PREFIXES.iter().any(|p| n.starts_with(p)) || SUFFIXES.iter().any(|s| n.ends_with(s)) {
        return Some("can make programs run code or read another configuration");
    }
    None
}

/// Checks one declared argument pattern: `**` may only come last.
pub fn check_pattern(pattern: &[String]) -> Result<(), String> {
    if let Some(i) = pattern.iter().position(|w| w == "**")
        && i + 1 != pattern.len()
    {
        return Err(format!("argument pattern [{}]: `**` may only be the last word", pattern.join(" ")));
    }
    if pattern.iter().any(|w| w.contains('\0')) {
        return Err("argument pattern contains a NUL character".into());
    }
    Ok(())
}

/// Whether `args` match `pattern`: literal words match themselves, `*` one argument that
/// does not start with `-`, `**` (last) everything that remains.
pub fn matches(pattern: &[String], args: &[String]) -> bool {
    let mut args = args.iter();
    for word in pattern {
        match word.as_str() {
            "**" => return true,
            "*" => match args.next() {
                Some(arg) if !arg.starts_with('-') => {}
                _ => return false,
            },
            literal => match args.next() {
                Some(arg) if arg == literal => {}
                _ => return false,
            },
        }
    }
    args.next().is_none()
}

/// What a plugin may do with one program it declared.
#[derive(Debug, Clone)]
pub struct ProgramPolicy {
    /// The program's name.
    pub name: String,
    /// Argument patterns; a run must match one.
    pub patterns: Vec<Vec<String>>,
    /// Environment variables the plugin may set (minus the refused ones).
    pub env: BTreeSet<String>,
    /// (secret handle, variable) pairs a binding allows.
    pub secret_env: BTreeSet<(String, String)>,
    /// Secret handles a binding allows as this program's SSH key.
    pub ssh_keys: BTreeSet<String>,
    /// The contract the plugin was built against.
    pub contract: Contract,
}

impl ProgramPolicy {
    /// The policy of a declared program; bindings are added by the caller.
    pub fn new(contract: Contract, program: &ProgramDecl) -> Self {
        ProgramPolicy {
            name: program.name.clone(),
            patterns: program.args.clone(),
            env: program.env.iter().cloned().collect(),
            secret_env: BTreeSet::new(),
            ssh_keys: BTreeSet::new(),
            contract,
        }
    }

    /// Checks a run's arguments, environment and SSH key against this policy.
    pub fn check(&self, command: &exec::Command) -> Result<(), (Refusal, String)> {
        let name = &self.name;
        if self.contract == Contract::V0_1 {
            return Err((
                Refusal::Args,
                format!(
                    "program `{name}` cannot run: the plugin is built against pier:deploy@0.1.0, which cannot \
                     declare argument patterns; rebuild it against pier:deploy@{}",
                    Contract::CURRENT
                ),
            ));
        }
        if !self.patterns.iter().any(|p| matches(p, &command.args)) {
            let args: Vec<String> = command.args.iter().map(|a| shell_words_for_message(a)).collect();
            return Err((
                Refusal::Args,
                format!(
                    "`{name} {}` matches none of the argument patterns granted for `{name}` ({})",
                    args.join(" "),
                    self.patterns_text()
                ),
            ));
        }
        for var in &command.env {
            if let Some(why) = refused_env(&var.name) {
                return Err((Refusal::Env, format!("environment variable `{}` {why}: never allowed", var.name)));
            }
            let allowed = match &var.value {
                EnvValue::Text(_) => self.env.contains(&var.name),
                EnvValue::Secret(handle) => self.secret_env.contains(&(handle.clone(), var.name.clone())),
            };
            if !allowed {
                let what = match &var.value {
                    EnvValue::Text(_) => format!("environment variable `{}` is not granted for `{name}`", var.name),
                    EnvValue::Secret(h) => {
                        format!("secret `{h}` is not bound to environment variable `{}` of `{name}`", var.name)
                    }
                };
                return Err((Refusal::Env, what));
            }
        }
        if let Some(handle) = &command.ssh_key
            && !self.ssh_keys.contains(handle)
        {
            return Err((Refusal::Secret, format!("secret `{handle}` is not bound as the SSH key of `{name}`")));
        }
        Ok(())
    }

    /// The patterns as a user reads them: `push * *; --version`.
    pub fn patterns_text(&self) -> String {
        if self.patterns.is_empty() {
            return "none".into();
        }
        self.patterns
            .iter()
            .map(|p| if p.is_empty() { "(no arguments)".to_string() } else { p.join(" ") })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An argument as shown in a message: quoted when it has spaces, cleaned of controls.
fn shell_words_for_message(arg: &str) -> String {
    let clean = safe_line(arg);
    if clean.is_empty() || clean.contains(char::is_whitespace) { format!("'{clean}'") } else { clean }
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
    /// Lines of output that were read but not passed on, because where output is kept
    /// was full.
    pub unkept_lines: u64,
}

/// Where a run's output lines end up kept (a deploy's log), when that can fill up: once
/// it is full, the runner only counts what a program prints, and says how much.
pub trait OutputRoom: Send + Sync {
    /// Whether more output lines would be kept.
    fn has_room(&self) -> bool;
    /// Counts output that was read and not passed on: `bytes` in `lines` lines.
    fn unkept(&self, bytes: u64, lines: u64);
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
    /// Landlock rules applied to the child, for programs a plugin runs.
    pub confinement: Option<confine::Confinement>,
    /// Where the output lines are kept, if that can fill up.
    pub room: Option<&'a dyn OutputRoom>,
}

/// Bytes of one line that are shown; the rest is cut, and counted.
pub const MAX_LINE: usize = crate::caps::events::MAX_LINE;
/// Bytes of a long line read beyond what is shown, so that redaction sees whole a
/// secret that begins in the shown part.
pub const REDACT_MARGIN: usize = 16 << 10;
/// Bytes read from a program at a time.
const READ_CHUNK: usize = 64 << 10;

/// One line of output as it is passed on: redacted, cleaned, and cut to [`MAX_LINE`]
/// bytes with ` [cut: N bytes]` if it was longer. `bytes` are the first bytes of the
/// line (at most [`MAX_LINE`] + [`REDACT_MARGIN`]), `beyond` how many more it had.
pub fn line_text(bytes: &[u8], beyond: u64) -> String {
    let bytes = if beyond == 0 { bytes.strip_suffix(b"\r").unwrap_or(bytes) } else { bytes };
    let length = bytes.len() as u64 + beyond;
    let text = String::from_utf8_lossy(bytes);
    // Cleaned first: an escape sequence inside a secret must not hide it from redaction.
    let redacted = redact(&clean(&text)).into_owned();
    if length <= MAX_LINE as u64 {
        return redacted;
    }
    let mut cut = MAX_LINE.min(redacted.len());
    while !redacted.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{} [cut: {} bytes]", &redacted[..cut], length - MAX_LINE as u64)
}

/// One output stream of a run redacted across its lines, and how far each line still
/// waiting in it ran past [`MAX_LINE`], to say so when it is passed on.
#[derive(Default)]
struct StreamLines {
    lines: OutputLines<'static>,
    beyond: VecDeque<u64>,
}

impl StreamLines {
    /// Takes one line (its first bytes, and how many more it had); returns the lines that
    /// may be passed on now.
    fn push(&mut self, bytes: &[u8], beyond: u64) -> Vec<String> {
        let bytes = if beyond == 0 { bytes.strip_suffix(b"\r").unwrap_or(bytes) } else { bytes };
        let length = bytes.len() as u64 + beyond;
        self.beyond.push_back(length.saturating_sub(MAX_LINE as u64));
        let released = self.lines.push_line(&String::from_utf8_lossy(bytes));
        self.mark(released)
    }

    /// Every line still waiting.
    fn finish(&mut self) -> Vec<String> {
        let released = self.lines.finish();
        self.mark(released)
    }

    fn mark(&mut self, lines: Vec<String>) -> Vec<String> {
        lines
            .into_iter()
            .map(|line| match self.beyond.pop_front().unwrap_or(0) {
                0 => line,
                extra => format!("{} [cut: {extra} bytes]", line.strip_suffix(" [cut]").unwrap_or(&line)),
            })
            .collect()
    }
}

/// [`clean_line`], skipped for printable ASCII, which it leaves as it is.
fn clean(text: &str) -> String {
    if text.len() <= MAX_LINE && text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        text.to_string()
    } else {
        clean_line(text)
    }
}

/// What a run keeps of its output while it reads it: the last lines as read (turned into
/// text only at the end), the captured standard output, and what was not passed on.
struct Gathered {
    tail: VecDeque<(Vec<u8>, u64)>,
    captured: String,
    unkept_bytes: u64,
    unkept_lines: u64,
}

impl Gathered {
    fn remember(&mut self, bytes: &[u8], beyond: u64) {
        let mut slot =
            if self.tail.len() == TAIL_LINES { self.tail.pop_front().unwrap_or_default() } else { Default::default() };
        slot.0.clear();
        slot.0.extend_from_slice(bytes);
        slot.1 = beyond;
        self.tail.push_back(slot);
    }
}

/// Runs a program to its end, streaming its output to `sink` as [`Event::Output`] lines.
///
/// The program runs under a supervisor of its own ([`supervise`]): when it exits, times
/// out, or its output cannot be read, everything it started is stopped (SIGTERM, then
/// SIGKILL after a grace) before this returns; if this future is dropped, the tree is
/// asked to stop and [`supervise::settle`] waits for it. Output is read in chunks, lines
/// cut to [`MAX_LINE`], so memory stays flat whatever the program prints.
pub async fn run_program(mut program: Program<'_>, sink: &dyn EventSink) -> Result<Finished, RunError> {
    let mut command = tokio::process::Command::new(program.path);
    command
        .args(program.args)
        .env_clear()
        .envs(program.env.iter().map(|(k, v)| (k, v)))
        .current_dir(program.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    supervise::prepare(&mut command);
    if let Some(confinement) = program.confinement.take() {
        confinement.apply_to(&mut command);
    }
    let name = program.name;
    let mut tree =
        supervise::spawn(command).await.map_err(|source| RunError::Spawn { program: name.to_string(), source })?;
    let child = tree.child().expect("a tree that was just started");
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let kept = std::sync::Mutex::new(Gathered {
        tail: VecDeque::with_capacity(TAIL_LINES),
        captured: String::new(),
        unkept_bytes: 0,
        unkept_lines: 0,
    });
    // Each stream is redacted across its lines (a secret wrapped or split over writes).
    let (out_lines, err_lines) = (std::sync::Mutex::default(), std::sync::Mutex::default());
    let out = Reader { kept: &kept, stream: &out_lines, program: &program, sink, is_stdout: true };
    let err = Reader { is_stdout: false, stream: &err_lines, ..out };
    let work = async {
        let (a, b) = tokio::join!(pump(stdout, &out), pump(stderr, &err));
        a.and(b).map_err(|source| RunError::Io { program: name.to_string(), source })?;
        tree.wait().await.map_err(|source| RunError::Io { program: name.to_string(), source })
    };
    let ended = tokio::time::timeout(program.timeout, work).await;
    out.finish();
    err.finish();
    let status = match ended {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RunError::Timeout { program: name.to_string(), limit: program.timeout }),
    };
    if status.is_err() {
        tree.stop().await;
    }
    let kept = kept.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(room) = program.room
        && kept.unkept_lines > 0
    {
        room.unkept(kept.unkept_bytes, kept.unkept_lines);
    }
    Ok(Finished {
        code: status?.code().unwrap_or(-1),
        stdout: kept.captured,
        tail: kept.tail.iter().map(|(bytes, beyond)| line_text(bytes, *beyond)).collect(),
        unkept_lines: kept.unkept_lines,
    })
}

/// Where [`pump`] hands the lines of one of a run's streams.
#[derive(Clone, Copy)]
struct Reader<'a, 'p> {
    kept: &'a std::sync::Mutex<Gathered>,
    stream: &'a std::sync::Mutex<StreamLines>,
    program: &'a Program<'p>,
    sink: &'a dyn EventSink,
    is_stdout: bool,
}

impl Reader<'_, '_> {
    fn kept(&self) -> std::sync::MutexGuard<'_, Gathered> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn capturing(&self) -> bool {
        self.is_stdout && self.program.capture_stdout
    }

    /// One line: its first bytes (at most [`MAX_LINE`] + [`REDACT_MARGIN`], without the
    /// newline) and how many more it had.
    fn line(&self, bytes: &[u8], beyond: u64) {
        let mut kept = self.kept();
        if !self.capturing() {
            kept.remember(bytes, beyond);
            if self.counting() {
                kept.unkept_bytes += bytes.len() as u64 + beyond + 1;
                kept.unkept_lines += 1;
                return;
            }
        }
        drop(kept);
        let lines = self.stream.lock().unwrap_or_else(|e| e.into_inner()).push(bytes, beyond);
        self.pass_on(lines);
    }

    /// Lines the stream's redaction let through: captured, or shown.
    fn pass_on(&self, lines: Vec<String>) {
        if self.capturing() {
            let mut kept = self.kept();
            for line in lines {
                if kept.captured.len() + line.len() < MAX_CAPTURE {
                    kept.captured.push_str(&line);
                    kept.captured.push('\n');
                }
            }
            return;
        }
        for line in lines {
            self.sink.emit(Event::Output { line });
        }
    }

    /// Passes on what the stream still holds back, at its end.
    fn finish(&self) {
        let lines = self.stream.lock().unwrap_or_else(|e| e.into_inner()).finish();
        self.pass_on(lines);
    }

    /// Whether lines are only counted now (where output is kept is full).
    fn counting(&self) -> bool {
        !self.capturing() && self.program.room.is_some_and(|room| !room.has_room())
    }

    /// Counts `lines` complete lines of `bytes` bytes, newlines included, that were never
    /// handed over one by one.
    fn skip(&self, lines: u64, bytes: u64) {
        let mut kept = self.kept();
        kept.unkept_lines += lines;
        kept.unkept_bytes += bytes;
    }
}

/// Reads `reader` to its end, handing `to` every line. While `to` only counts lines, the
/// complete lines of each chunk read but its last [`TAIL_LINES`] are counted at once.
async fn pump(mut reader: impl AsyncRead + Unpin, to: &Reader<'_, '_>) -> std::io::Result<()> {
    const WINDOW: usize = MAX_LINE + REDACT_MARGIN;
    let mut chunk = vec![0u8; READ_CHUNK];
    let mut line: Vec<u8> = Vec::new();
    let mut beyond = 0u64;
    let add = |line: &mut Vec<u8>, beyond: &mut u64, bytes: &[u8]| {
        let room = WINDOW.saturating_sub(line.len()).min(bytes.len());
        line.extend_from_slice(&bytes[..room]);
        *beyond += (bytes.len() - room) as u64;
    };
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            if !line.is_empty() || beyond > 0 {
                to.line(&line, beyond);
            }
            return Ok(());
        }
        let mut rest = &chunk[..n];
        let mut counted = false;
        while let Some(i) = memchr::memchr(b'\n', rest) {
            if !counted && line.is_empty() && beyond == 0 {
                counted = true;
                if to.counting()
                    && let Some(end) = bulk_end(rest)
                {
                    to.skip(count_newlines(&rest[..end]), end as u64);
                    rest = &rest[end..];
                    continue;
                }
            }
            add(&mut line, &mut beyond, &rest[..i]);
            to.line(&line, beyond);
            line.clear();
            beyond = 0;
            rest = &rest[i + 1..];
        }
        add(&mut line, &mut beyond, rest);
    }
}

/// Where the complete lines of `bytes` (which starts a line) end, but for the last
/// [`TAIL_LINES`]: the index after their newline, if there are more lines than that.
fn bulk_end(bytes: &[u8]) -> Option<usize> {
    let mut end = bytes.len();
    for _ in 0..=TAIL_LINES {
        end = memchr::memrchr(b'\n', &bytes[..end])?;
    }
    Some(end + 1)
}

/// How many newlines `bytes` holds, eight bytes at a time.
fn count_newlines(bytes: &[u8]) -> u64 {
    const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const NEWLINES: u64 = 0x0a0a_0a0a_0a0a_0a0a;
    let mut words = bytes.chunks_exact(8);
    let mut n = 0u64;
    for word in &mut words {
        let x = u64::from_ne_bytes(word.try_into().unwrap_or_default()) ^ NEWLINES;
        // The high bit of each byte that was a newline (is now zero), and nothing else.
        let zero = !(((x & LOW) + LOW) | x | LOW);
        n += u64::from(zero.count_ones());
    }
    n + words.remainder().iter().filter(|b| **b == b'\n').count() as u64
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
    programs: BTreeMap<String, ProgramPolicy>,
    vault: Arc<Vault>,
    workspace: Option<PathBuf>,
    sink: Arc<dyn EventSink>,
    limits: ExecLimits,
    audit: Option<Arc<crate::caps::Audit>>,
    path: Option<OsString>,
    scratch: Option<PathBuf>,
    room: Option<Arc<dyn OutputRoom>>,
    host_keys: HostKeys,
}

impl ExecCap {
    /// Programs named in `programs` may run under their policies; `workspace` is the
    /// checkout, if the call has one.
    pub fn new(
        programs: BTreeMap<String, ProgramPolicy>,
        vault: Arc<Vault>,
        workspace: Option<PathBuf>,
        sink: Arc<dyn EventSink>,
        limits: ExecLimits,
    ) -> Self {
        ExecCap {
            programs,
            vault,
            workspace,
            sink,
            limits,
            audit: None,
            path: None,
            scratch: None,
            room: None,
            host_keys: HostKeys::pinned(Vec::new()),
        }
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

    /// The same, counting rather than passing on output lines once `room` is full.
    pub fn with_room(mut self, room: Option<Arc<dyn OutputRoom>>) -> Self {
        self.room = room;
        self
    }

    /// The same, with ssh checking host keys as `host_keys` says (by default strictly,
    /// against no pins: every host refused).
    pub fn with_host_keys(mut self, host_keys: HostKeys) -> Self {
        self.host_keys = host_keys;
        self
    }

    /// The same, looking programs up on `path` (and giving it to them as `PATH`) instead
    /// of the host's `PATH`, if set.
    pub fn with_path(mut self, path: Option<OsString>) -> Self {
        self.path = path;
        self
    }

    /// Which rule, if any, refuses `command`.
    fn policy_check(&self, command: &exec::Command) -> Result<(), (Refusal, String)> {
        let Some(policy) = self.programs.get(&command.program) else {
            let granted: Vec<_> = self.programs.keys().cloned().collect();
            return Err((
                Refusal::Program,
                format!(
                    "program `{}` is not granted to this plugin (granted: {})",
                    clean_line(&command.program),
                    if granted.is_empty() { "none".to_string() } else { granted.join(", ") }
                ),
            ));
        };
        policy.check(command)
    }

    async fn run(&self, command: exec::Command) -> Result<exec::Exit, exec::ExecError> {
        let checked = self.policy_check(&command);
        if let Some(audit) = &self.audit {
            let mut plugin_text = command.args.join("\n");
            for var in &command.env {
                plugin_text.push('\n');
                plugin_text.push_str(&var.name);
                if let EnvValue::Text(t) = &var.value {
                    plugin_text.push('=');
                    plugin_text.push_str(t);
                }
            }
            audit.record(crate::caps::AuditRecord::Exec {
                program: command.program.clone(),
                refused: checked.as_ref().err().map(|(r, _)| *r),
                plugin_text,
            });
        }
        if let Err((_, message)) = checked {
            return Err(exec::ExecError::Denied(message));
        }
        let search = self.path.clone().or_else(|| std::env::var_os("PATH"));
        let path = find_program(&command.program, search.as_ref())
            .ok_or_else(|| exec::ExecError::NotFound(format!("`{}` is not on PATH", command.program)))?;
        let mut scratch = tempfile::Builder::new();
        scratch.prefix("pier-exec-");
        let scratch = match &self.scratch {
            Some(dir) => scratch.tempdir_in(dir),
            None => scratch.tempdir(),
        }
        .map_err(|e| exec::ExecError::Failed(format!("could not make a temporary directory: {e}")))?;
        let home = scratch.path().join("home");
        std::fs::create_dir(&home)
            .map_err(|e| exec::ExecError::Failed(format!("could not make a private HOME: {e}")))?;
        let work = scratch.path().join("work");
        std::fs::create_dir(&work)
            .map_err(|e| exec::ExecError::Failed(format!("could not make a working directory: {e}")))?;
        let tmp = scratch.path().join("tmp");
        std::fs::create_dir(&tmp)
            .map_err(|e| exec::ExecError::Failed(format!("could not make a temporary directory: {e}")))?;
        let mut env: Env = vec![
            ("PATH".into(), search.clone().unwrap_or_default()),
            ("HOME".into(), home.clone().into()),
            ("TMPDIR".into(), tmp.into()),
            ("LANG".into(), std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into())),
        ];
        env.extend(resolve_env(&command.env, &self.vault).map_err(exec::ExecError::Failed)?);
        let ssh: Option<(KeyFile, KnownHosts)> = match &command.ssh_key {
            Some(handle) => {
                let file = KeyFile::write(&self.vault, handle, scratch.path())
                    .map_err(|e| exec::ExecError::Failed(e.to_string()))?;
                let known_hosts = self
                    .host_keys
                    .known_hosts(scratch.path())
                    .map_err(|e| exec::ExecError::Failed(format!("could not write the pinned SSH host keys: {e}")))?;
                env.push(("GIT_SSH_COMMAND".into(), file.git_ssh_command(&known_hosts).into()));
                env.push(("PIER_SSH_KEY".into(), file.path().into()));
                Some((file, known_hosts))
            }
            None => None,
        };
        let cwd = if command.in_workspace {
            self.workspace
                .clone()
                .ok_or_else(|| exec::ExecError::Failed("this call has no workspace (only deploy has one)".into()))?
        } else {
            work
        };
        let confinement = self
            .confinement(&path, search.as_ref(), scratch.path())
            .map_err(|e| exec::ExecError::Failed(format!("could not confine `{}`: {e}", command.program)))?;
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
            confinement,
            room: self.room.as_deref(),
        };
        let ran = run_program(program, self.sink.as_ref()).await;
        if let (Some((_, known_hosts)), Ok(done)) = (&ssh, &ran) {
            self.host_keys.after(known_hosts, &done.tail);
        }
        match ran {
            Ok(done) => Ok(exec::Exit { code: done.code, stdout: done.stdout, tail: done.tail }),
            Err(RunError::Timeout { .. }) => Err(exec::ExecError::Timeout),
            Err(e) => Err(exec::ExecError::Failed(e.to_string())),
        }
    }

    /// The Landlock rules of one run: read the system, the checkout, the program's own
    /// directory and `PATH`; write the scratch directory; never the user's home or Pier's
    /// configuration.
    fn confinement(
        &self,
        program: &Path,
        search: Option<&OsString>,
        scratch: &Path,
    ) -> Result<Option<confine::Confinement>, confine::ConfineError> {
        let mut read: Vec<PathBuf> = Vec::new();
        read.extend(self.workspace.iter().cloned());
        read.extend(program.parent().map(Path::to_path_buf));
        if let Some(search) = search {
            read.extend(std::env::split_paths(search).filter(|p| p.is_absolute()));
        }
        let mut deny_under = Vec::new();
        deny_under.extend(dirs::home_dir());
        deny_under.extend(std::env::var_os("HOME").map(PathBuf::from));
        deny_under.extend(dirs::config_dir().map(|d| d.join("pier")));
        confine::prepare(&confine::Spec { read, write: vec![scratch.to_path_buf()], deny_under })
    }
}

impl exec::Host for ExecCap {
    async fn run(&mut self, command: exec::Command) -> wasmtime::Result<Result<exec::Exit, exec::ExecError>> {
        Ok(ExecCap::run(self, command).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    fn policy(contract: Contract, patterns: &[&str], env: &[&str]) -> ProgramPolicy {
        let decl = ProgramDecl {
            name: "git".into(),
            args: patterns.iter().map(|p| words(p)).collect(),
            env: env.iter().map(|e| e.to_string()).collect(),
        };
        ProgramPolicy::new(contract, &decl)
    }

    fn command(args: &str, env: &[(&str, &str)]) -> exec::Command {
        exec::Command {
            program: "git".into(),
            args: words(args),
            env: env
                .iter()
                .map(|(k, v)| EnvVar { name: k.to_string(), value: EnvValue::Text(v.to_string()) })
                .collect(),
            in_workspace: false,
            ssh_key: None,
            capture_stdout: false,
            timeout_ms: None,
        }
    }

    #[test]
    fn patterns_match_literals_single_words_and_the_rest() {
        let p = |t: &str| words(t);
        assert!(matches(&p("push * *"), &words("push origin HEAD:refs/heads/main")));
        assert!(!matches(&p("push * *"), &words("push --receive-pack=x origin")));
        assert!(!matches(&p("push * *"), &words("push origin")));
        assert!(!matches(&p("push * *"), &words("push a b c")));
        assert!(!matches(&p("push * *"), &words("-c alias.x=!sh push a")));
        assert!(matches(&p("--version"), &words("--version")));
        assert!(matches(&p("run **"), &words("run -x --anything")));
        assert!(matches(&p("run **"), &words("run")));
        assert!(matches(&[], &[]));
        assert!(!matches(&[], &words("x")));
        assert!(check_pattern(&p("** push")).is_err());
        assert!(check_pattern(&p("push **")).is_ok());
    }

    #[test]
    fn code_running_variables_are_always_refused() {
        for name in [
            "PATH",
            "HOME",
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "GIT_SSH_COMMAND",
            "GIT_CONFIG_COUNT",
            "GIT_DIR",
            "SSH_AUTH_SOCK",
            "PROMPT_COMMAND",
            "BASH_ENV",
            "ENV",
            "PAGER",
            "GIT_PAGER",
            "EDITOR",
            "VISUAL",
            "NODE_OPTIONS",
            "RUBYOPT",
            "PERL5OPT",
            "PYTHONPATH",
            "GCONV_PATH",
            "OPENSSL_CONF",
            "XDG_CONFIG_HOME",
            "PIER_MASTER_KEY",
            "LESSOPEN",
            "BASH_FUNC_x%%",
            "A=B",
            "",
            "path",
            "TMPDIR",
        ] {
            assert!(refused_env(name).is_some(), "{name}");
        }
        for name in ["FOO", "HEROKU_APP", "HEROKU_API_KEY", "RAILS_ENV", "DOKKU_APP"] {
            assert!(refused_env(name).is_none(), "{name}");
        }
    }

    #[test]
    fn a_run_must_match_a_pattern_and_declared_variables() {
        let p = policy(Contract::V0_2, &["push * *", "--version"], &["FOO"]);
        assert!(p.check(&command("push origin main", &[])).is_ok());
        assert!(p.check(&command("--version", &[("FOO", "1")])).is_ok());
        assert_eq!(p.check(&command("-c alias.x=!touch x", &[])).unwrap_err().0, Refusal::Args);
        assert_eq!(p.check(&command("--version", &[("BAR", "1")])).unwrap_err().0, Refusal::Env);
        assert_eq!(p.check(&command("--version", &[("GIT_SSH_COMMAND", "sh")])).unwrap_err().0, Refusal::Env);
        let mut keyed = command("push a b", &[]);
        keyed.ssh_key = Some("ssh_key".into());
        assert_eq!(p.check(&keyed).unwrap_err().0, Refusal::Secret);
        let mut bound = p.clone();
        bound.ssh_keys.insert("ssh_key".into());
        assert!(bound.check(&keyed).is_ok());
    }

    #[test]
    fn programs_of_a_0_1_plugin_never_run() {
        let p = policy(Contract::V0_1, &["**"], &[]);
        let (refusal, message) = p.check(&command("--version", &[])).unwrap_err();
        assert_eq!(refusal, Refusal::Args);
        assert!(message.contains("0.1.0"), "{message}");
    }

    #[test]
    fn program_names_are_plain() {
        for ok in ["git", "heroku", "g++", "python3.11", "dokku_cli", "x-y"] {
            assert!(plain_program_name(ok), "{ok}");
        }
        for bad in ["", "/bin/sh", "../x", "x$(id)", "a b", "-x", ".hidden", "x;y", "é"] {
            assert!(!plain_program_name(bad), "{bad}");
        }
    }

    #[test]
    fn newlines_are_counted_at_every_offset() {
        let text = b"a\nbb\n\n\nccc\ndddddddd\ne\n\nf";
        for start in 0..text.len() {
            let slice = &text[start..];
            let plain = slice.iter().filter(|b| **b == b'\n').count() as u64;
            assert_eq!(count_newlines(slice), plain, "from {start}");
        }
        assert_eq!(count_newlines(&[b'\n'; 100]), 100);
        assert_eq!(count_newlines(&[0x8a; 100]), 0);
    }

    #[test]
    fn only_lines_before_the_last_tail_are_counted_in_bulk() {
        let lines = "x\n".repeat(TAIL_LINES);
        assert_eq!(bulk_end(lines.as_bytes()), None);
        let more = format!("first\nsecond\n{lines}partial");
        assert_eq!(bulk_end(more.as_bytes()), Some("first\nsecond\n".len()));
    }

    #[test]
    fn long_lines_are_cut_with_the_count_of_what_was_cut() {
        assert_eq!(line_text(b"plain\r", 0), "plain");
        assert_eq!(line_text(b"\x1b[31mred\x1b[0m", 0), "red");
        let exact = "a".repeat(MAX_LINE);
        assert_eq!(line_text(exact.as_bytes(), 0), exact);
        let window = "b".repeat(MAX_LINE + REDACT_MARGIN);
        assert_eq!(
            line_text(window.as_bytes(), 10),
            format!("{} [cut: {} bytes]", "b".repeat(MAX_LINE), REDACT_MARGIN + 10)
        );
        // Cut on a character boundary.
        let wide = "é".repeat(MAX_LINE);
        let cut = line_text(wide.as_bytes(), 0);
        assert_eq!(cut, format!("{} [cut: {} bytes]", "é".repeat(MAX_LINE / 2), MAX_LINE));
    }

    /// Whether a process with `arg` as an argument is alive.
    fn running(arg: &str) -> bool {
        std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline"))
                .map(|cmdline| cmdline.split(|b| *b == 0).skip(1).any(|w| w == arg.as_bytes()))
                .unwrap_or(false)
        })
    }

    fn sh<'a>(script: &'a [String], timeout: Duration, room: Option<&'a dyn OutputRoom>) -> Program<'a> {
        Program {
            name: "sh",
            path: Path::new("/bin/sh"),
            args: script,
            env: base_env(),
            cwd: Path::new("/"),
            capture_stdout: false,
            timeout,
            confinement: None,
            room,
        }
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_program_is_stopped_with_its_children_and_leaves_nothing_behind() {
        let arg = format!("3131{}", std::process::id());
        // Past its time limit: the program and its child (which ignores SIGTERM) end
        // before the run returns.
        let script = ["-c".to_string(), format!("trap '' TERM; sleep {arg} & echo started; wait")];
        let sink = crate::caps::events::MemorySink::default();
        let started = std::time::Instant::now();
        let ended = run_program(sh(&script, Duration::from_millis(500), None), &sink).await;
        assert!(matches!(ended, Err(RunError::Timeout { .. })), "{ended:?}");
        assert!(!running(&arg), "the child outlived its program");
        assert!(started.elapsed() >= supervise::GRACE, "SIGKILL came before the grace");
        assert_eq!(sink.events(), [Event::Output { line: "started".into() }]);

        // A program that exits leaving a child behind: the child is stopped too, at once.
        let script = ["-c".to_string(), format!("sleep {arg} & exit 3")];
        let started = std::time::Instant::now();
        let done = run_program(sh(&script, Duration::from_secs(60), None), &sink).await.unwrap();
        assert_eq!(done.code, 3);
        assert!(!running(&arg), "a child left behind outlived its program");
        assert!(started.elapsed() < supervise::GRACE, "a child that heeds SIGTERM is not waited for");

        // A daemon, in a session of its own, whose parent exits at once: it is orphaned to
        // the supervisor, which stops it too.
        let script = ["-c".to_string(), format!("(setsid sleep {arg} < /dev/null > /dev/null 2>&1 &); exit 0")];
        let done = run_program(sh(&script, Duration::from_secs(60), None), &sink).await.unwrap();
        assert_eq!(done.code, 0);
        assert!(!running(&arg), "a daemon outlived the command that started it");

        // A dropped run is asked to stop; `settle` waits until it has.
        let script = ["-c".to_string(), format!("sleep {arg}; true")];
        let run = run_program(sh(&script, Duration::from_secs(60), None), &sink);
        let dropped = tokio::time::timeout(Duration::from_millis(300), run).await;
        assert!(dropped.is_err());
        supervise::settle().await;
        assert!(!running(&arg), "a dropped run outlived `settle`");
    }

    /// A room that is full from the start.
    #[derive(Default)]
    struct Full(std::sync::Mutex<(u64, u64)>);

    impl OutputRoom for Full {
        fn has_room(&self) -> bool {
            false
        }
        fn unkept(&self, bytes: u64, lines: u64) {
            let mut counted = self.0.lock().unwrap();
            counted.0 += bytes;
            counted.1 += lines;
        }
    }

    #[tokio::test]
    async fn output_is_only_counted_once_the_room_is_full_and_the_tail_is_kept() {
        let script = ["-c".to_string(), "seq 1 100000; echo the end >&2; exit 4".to_string()];
        let sink = crate::caps::events::MemorySink::default();
        let room = Full::default();
        let done = run_program(sh(&script, Duration::from_secs(60), Some(&room)), &sink).await.unwrap();
        assert_eq!(done.code, 4);
        assert!(sink.events().is_empty(), "{:?}", sink.events());
        let seq_bytes: u64 = (1..=100_000u64).map(|n| n.to_string().len() as u64 + 1).sum();
        assert_eq!(*room.0.lock().unwrap(), (seq_bytes + "the end\n".len() as u64, 100_001));
        assert_eq!(done.unkept_lines, 100_001);
        assert_eq!(done.tail.len(), TAIL_LINES);
        assert!(done.tail.contains(&"the end".to_string()) && done.tail.contains(&"100000".to_string()));
    }
}
