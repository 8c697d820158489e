//! A deploy, end to end: the method's `deploy`, then the server's commands, recorded in
//! the timeline, under the server's lock.
//!
//! Exit codes are honest (S9): a failed build or release phase fails the deploy, and so
//! does the first command that exits non-zero; nothing after it runs.

use std::collections::{BTreeSet, VecDeque};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::caps::Grant;
use crate::caps::events::{Event, EventSink, Level, count, inert, safe_line};
use crate::caps::exec::{
    Env, OutputRoom, Program, base_env, find_program, plain_program_name, refused_env, run_program,
};
use crate::caps::host_keys::HostKeys;
use crate::caps::http::resolve_endpoints;
use crate::caps::keys::KeyFile;
use crate::caps::secrets::{Vault, redact};
use crate::caps::workspace::Workspace;
use crate::exit::Exit;
use crate::project::config::Server;
use crate::runtime::bindings::{CommandEnvValue, CommandRule, EnvValue, Tool, Trigger};
use crate::runtime::{BuildInfo, CallEnv, CallError, Context, Contract, Description, MethodError, Plugin, Runtime};

/// What to deploy and why.
#[derive(Debug, Clone)]
pub struct Build {
    pub commit: String,
    pub branch: String,
    pub build: Option<String>,
    pub trigger: Trigger,
    /// Who or what asked.
    pub actor: String,
}

/// Everything a deploy needs.
pub struct Deploy<'a> {
    pub runtime: &'a Runtime,
    pub plugin: &'a Plugin,
    pub description: &'a Description,
    pub server: &'a Server,
    /// The server's secrets.
    pub vault: Arc<Vault>,
    /// The commit deployed (`build.commit`) and its checkout.
    pub workspace: Workspace,
    /// Per-deploy scratch space outside the checkout (private key files live here);
    /// removed after.
    pub run_dir: PathBuf,
    pub build: Build,
    pub deploy_id: String,
    /// Where progress and log lines go.
    pub sink: Arc<dyn EventSink>,
    /// The longest a deploy command may run.
    pub command_timeout: Duration,
    /// Where the output of commands and programs ends up kept, when that can fill up (the
    /// deploy's log).
    pub room: Option<Arc<dyn OutputRoom>>,
    /// The server's pinned SSH host keys, the only hosts its SSH key is offered to; notes
    /// a host refused for its key.
    pub host_keys: HostKeys,
    /// The server's deploy lock, checked before each step: a deploy whose lock is lost
    /// (the shared database's connection holding it ended) stops before its next step.
    pub lock: Option<&'a crate::project::state::ServerLock>,
}

/// How the server's deploy commands will run, settled before anything deploys: the
/// user's commands with only the method's declared flags inserted, and an environment
/// whose values the host composed from the server's secrets, settings and endpoints.
#[derive(Debug, Default)]
pub struct CommandPlan {
    /// The commands to run, in order.
    pub commands: Vec<String>,
    /// Variables the method adds to every command's environment.
    pub env: Env,
    /// One line per rewrite, for the user.
    pub notes: Vec<String>,
    /// Programs the commands need on `PATH`.
    pub tools: Vec<Tool>,
    /// For each command, the one-off command the method runs in its place (a native
    /// command, see [`crate::native`]), or none to run it through `sh`.
    pub native: Vec<Option<crate::runtime::RunRequest>>,
    /// Why commands that begin with a native prefix run as written, for the message
    /// when their tool is missing.
    pub as_written: Vec<String>,
}

/// The host's form of a declared command rule.
pub fn rule_of(rule: &CommandRule) -> crate::commands::Rule {
    crate::commands::Rule {
        prefix: rule.prefix.clone(),
        flag: rule.flag.clone(),
        unless: rule.unless.clone(),
        reason: rule.reason.clone(),
    }
}

/// How a deploy ended, when it ran to an end.
#[derive(Debug, Clone)]
pub struct Ended {
    /// `Success` or `DeployFailed`, or the code of what stopped it.
    pub exit: Exit,
    /// One line for the timeline.
    pub summary: String,
    /// Where the app can be seen, when known.
    pub url: Option<String>,
    /// The provider's name for what the deploy made live, as the method's report named
    /// it: what `pier rollback --to` returns to.
    pub release: Option<String>,
}

/// Why a deploy could not start or finish cleanly.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("{0}")]
    Method(String, Exit),
    #[error("{0}")]
    Setup(String),
}

impl DeployError {
    /// The exit code.
    pub fn exit(&self) -> Exit {
        match self {
            DeployError::Call(CallError::Fault(_)) => Exit::PluginFault,
            DeployError::Call(CallError::Host(_)) => Exit::Provider,
            DeployError::Method(_, exit) => *exit,
            DeployError::Setup(_) => Exit::BadInput,
        }
    }
}

/// How many of a call's last output lines are remembered: more than a failure's tail
/// holds.
const REMEMBERED: usize = 256;

/// Passes a call's events on and remembers its last output lines, so that the tail of a
/// failure is not shown again when its lines were streamed live a moment before.
struct Streamed {
    sink: Arc<dyn EventSink>,
    recent: Mutex<VecDeque<String>>,
}

impl Streamed {
    fn new(sink: Arc<dyn EventSink>) -> Streamed {
        Streamed { sink, recent: Mutex::new(VecDeque::with_capacity(REMEMBERED)) }
    }

    /// A line as compared: whitespace runs count as one space, ends trimmed.
    fn key(line: &str) -> String {
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    /// Whether a failure's `tail` should be shown: unless every line of it that says
    /// something was passed on as output, into a log that still had room (once the log
    /// is full, output lines may have been dropped, and the log keeps Pier's notes).
    fn shows(&self, tail: &[String], room: Option<&dyn OutputRoom>) -> bool {
        if tail.is_empty() {
            return false;
        }
        if room.is_some_and(|r| !r.has_room()) {
            return true;
        }
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let seen: BTreeSet<String> = recent.iter().map(|line| Self::key(line)).collect();
        !tail.iter().map(|line| Self::key(&safe_line(line))).filter(|k| !k.is_empty()).all(|k| seen.contains(&k))
    }
}

impl EventSink for Streamed {
    fn emit(&self, event: Event) {
        if let Event::Output { line } = &event {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            if recent.len() == REMEMBERED {
                recent.pop_front();
            }
            // Kept as it is: lines are compared (normalised) only when a failure is shown.
            recent.push_back(line.clone());
        }
        self.sink.emit(event);
    }
}

/// The error for a `method-error` of method `d`. The tail of a failed deploy is shown
/// only when its lines did not reach the terminal and the log as they were streamed
/// (`streamed` did not pass them on, or the log was full).
fn method_failure(d: &Description, e: MethodError, streamed: &Streamed, room: Option<&dyn OutputRoom>) -> DeployError {
    if let MethodError::DeployFailed(f) = &e
        && streamed.shows(&f.tail, room)
    {
        let sink = &streamed.sink;
        sink.emit(Event::Log { level: Level::Error, message: "last lines of the output:".into() });
        for line in &f.tail {
            sink.emit(Event::Log { level: Level::Error, message: format!("  {line}") });
        }
    }
    let (message, exit) = crate::exit::for_method_error(d, &e);
    DeployError::Method(message, exit)
}

/// What one call of `server`'s method may use, and its context: the grant of the method's
/// permissions with the server's settings and stored endpoints (the environment's
/// variables in force), its secrets, ssh checking host keys against its pins, and
/// events to `sink`.
pub fn server_call(
    server: &Server,
    plugin: &Plugin,
    description: &Description,
    vault: Arc<Vault>,
    sink: Arc<dyn EventSink>,
) -> Result<(CallEnv, Context), String> {
    let values = server.settings.clone().into_iter().collect();
    let (grant, endpoints) =
        Grant::for_server(plugin.contract(), &description.permissions, &values, &server.endpoints, &|name| {
            std::env::var(name).ok()
        })
        .map_err(|e| format!("method {}: {e}", description.name))?;
    let env = CallEnv::new(grant, vault, sink).with_host_keys(HostKeys::pinned(server.pins()));
    Ok((env, Context { endpoints, server: server.alias.clone() }))
}

/// A server's stored settings, as a method receives them.
pub fn settings_of(server: &Server) -> Vec<crate::runtime::Answer> {
    server.settings.iter().map(|(k, v)| crate::runtime::Answer { field: k.clone(), value: v.clone() }).collect()
}

/// The message of command `i` (from 0) of `total` failing with `code`.
fn failed_command(i: usize, total: usize, command: &str, code: &str) -> String {
    let mut message = format!("command {} of {total} (`{command}`) exited with {code}", i + 1);
    if i + 1 < total {
        message.push_str(&format!("; {} not run", count((total - i - 1) as u64, "later command")));
    }
    message
}

/// The program a native command names: its first word.
fn request_program(command: &str) -> String {
    crate::commands::first_words(command).into_iter().next().unwrap_or_default()
}

/// The private key among the server's secrets, if it has one.
fn private_key_handle(vault: &Vault) -> Option<String> {
    vault.handles().into_iter().find(|h| {
        vault.get(h).is_some_and(|v| v.expose_secret().trim_start().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"))
    })
}

impl Deploy<'_> {
    /// The environment and context of a call, and the sink its events go through.
    fn env_and_context(&self) -> Result<(CallEnv, Context, Arc<Streamed>), DeployError> {
        let streamed = Arc::new(Streamed::new(self.sink.clone()));
        let (env, ctx) = server_call(self.server, self.plugin, self.description, self.vault.clone(), streamed.clone())
            .map_err(DeployError::Setup)?;
        let mut env = env
            .with_workspace(self.workspace.clone())
            .with_scratch(self.run_dir.clone())
            .with_host_keys(self.host_keys.clone());
        if let Some(room) = &self.room {
            env = env.with_room(room.clone());
        }
        Ok((env, ctx, streamed))
    }

    fn settings(&self) -> Vec<crate::runtime::Answer> {
        settings_of(self.server)
    }

    fn say(&self, level: Level, message: impl Into<String>) {
        self.sink.emit(Event::Log { level, message: redact(&message.into()).into_owned() });
    }

    /// Settles how the commands will run, and checks that the programs they need are
    /// installed, before anything is deployed. A 0.1.0 method is asked (`prepare-commands`)
    /// and its answer accepted only where it keeps to what a current method may declare.
    /// Says, once, where a variable set for this run replaces an endpoint stored with the
    /// server.
    pub async fn plan(&self) -> Result<CommandPlan, DeployError> {
        for note in self.endpoints()?.iter().filter_map(|r| r.replaced_note(&self.server.alias)) {
            self.say(Level::Warn, note);
        }
        let commands = &self.server.commands;
        let plan = match self.plugin.contract() {
            Contract::V0_1 => self.legacy_plan().await?,
            Contract::V0_2 | Contract::V0_3 => self.declared_plan()?,
        };
        debug_assert_eq!(plan.commands.len(), commands.len());
        let path = std::env::var_os("PATH");
        let mut missing = Vec::new();
        for tool in &plan.tools {
            if find_program(&tool.program, path.as_ref()).is_none() {
                missing.push(format!("`{}` (install it with: {})", tool.program, tool.install_hint));
            }
        }
        if !missing.is_empty() {
            let why =
                if plan.as_written.is_empty() { String::new() } else { format!(" ({})", plan.as_written.join("; ")) };
            return Err(DeployError::Setup(format!(
                "the deploy commands of `{}` need {}, which is not on PATH{why}; nothing was deployed",
                self.server.alias,
                missing.join(" and ")
            )));
        }
        Ok(plan)
    }

    /// The endpoints in force for this server, with where each came from.
    fn endpoints(&self) -> Result<Vec<crate::caps::http::Resolved>, DeployError> {
        let values = self.server.settings.clone().into_iter().collect();
        resolve_endpoints(&self.description.permissions, &values, &self.server.endpoints, &|name| {
            std::env::var(name).ok()
        })
        .map_err(|e| DeployError::Setup(format!("method {}: {e}", self.description.name)))
    }

    /// The plan of a current method: its declared rules, environment and tools.
    fn declared_plan(&self) -> Result<CommandPlan, DeployError> {
        let support = &self.description.permissions.commands;
        let rules: Vec<_> = support.rules.iter().map(rule_of).collect();
        let mut plan = CommandPlan::default();
        let mut first_words = BTreeSet::new();
        for (i, command) in self.server.commands.iter().enumerate() {
            match crate::native::classify(command, &support.native, &self.server.settings) {
                crate::native::Native::Run(request) => {
                    plan.notes.push(format!(
                        "command {}: runs through the {} method itself, with no `{}` program needed",
                        i + 1,
                        self.description.name,
                        request_program(command)
                    ));
                    plan.commands.push(command.clone());
                    plan.native.push(Some(request));
                    continue;
                }
                crate::native::Native::AsWritten(why) => {
                    let why = format!("command {} runs as written: {why}", i + 1);
                    plan.notes.push(why.clone());
                    plan.as_written.push(why);
                }
                crate::native::Native::NotNative => {}
            }
            plan.native.push(None);
            let applied = crate::commands::apply(command, &rules);
            for note in applied.notes {
                plan.notes.push(format!("command {}: {note}", i + 1));
            }
            first_words.extend(crate::commands::first_words(&applied.command));
            plan.commands.push(applied.command);
        }
        plan.tools = support.tools.iter().filter(|t| first_words.contains(&t.program)).cloned().collect();
        let endpoints = self.endpoints()?;
        for var in &support.env {
            let value = match &var.value {
                CommandEnvValue::Secret(handle) => self.vault.get(handle).map(|v| v.expose_secret().to_string()),
                CommandEnvValue::Setting(field) => self.server.settings.get(field).cloned(),
                CommandEnvValue::Endpoint(id) => {
                    endpoints.iter().find(|r| r.endpoint.id == *id).map(|r| r.endpoint.url.clone())
                }
                CommandEnvValue::EndpointOverride(id) => endpoints
                    .iter()
                    .find(|r| r.endpoint.id == *id && r.source.user_given())
                    .map(|r| r.endpoint.url.clone()),
            };
            if let Some(value) = value {
                plan.env.push((var.name.clone(), OsString::from(value)));
            }
        }
        Ok(plan)
    }

    /// The plan of a 0.1.0 method, which returns command text and environment values
    /// itself: each command must be the user's with flag words inserted (the host runs
    /// its own reconstruction, never the plugin's text), each variable a name a current
    /// method could declare, with a secret or a value the server already has.
    async fn legacy_plan(&self) -> Result<CommandPlan, DeployError> {
        let (env, ctx, streamed) = self.env_and_context()?;
        let plugin = self.plugin.name();
        let legacy = self
            .plugin
            .legacy_prepare_commands(self.runtime, &env, &ctx, &self.settings(), &self.server.commands)
            .await?
            .unwrap_or_else(|| {
                Ok(crate::runtime::LegacyPlan {
                    env: vec![],
                    commands: self.server.commands.clone(),
                    notes: vec![],
                    tools: vec![],
                })
            })
            .map_err(|e| method_failure(self.description, e, &streamed, self.room.as_deref()))?;
        let refuse = |message: String| {
            DeployError::Method(format!("plugin `{plugin}`: {message}; nothing was deployed"), Exit::PluginFault)
        };
        let mut plan = CommandPlan { notes: legacy.notes, ..CommandPlan::default() };
        for (i, (original, returned)) in self.server.commands.iter().zip(&legacy.commands).enumerate() {
            let accepted = crate::commands::accept_rewrite(original, returned).map_err(|e| {
                refuse(format!(
                    "prepare-commands turned deploy command {} (`{}`) into `{}`, which is not the same command with \
                     flags inserted ({e})",
                    i + 1,
                    inert(original),
                    inert(returned)
                ))
            })?;
            plan.commands.push(accepted);
            plan.native.push(None);
        }
        let known: BTreeSet<String> =
            self.server.settings.values().cloned().chain(ctx.endpoints.iter().map(|e| e.url.clone())).collect();
        for var in legacy.env {
            if let Some(why) = refused_env(&var.name) {
                return Err(refuse(format!("deploy-command variable `{}` {why}", inert(&var.name))));
            }
            let value = match var.value {
                EnvValue::Secret(handle) => self
                    .vault
                    .get(&handle)
                    .map(|v| v.expose_secret().to_string())
                    .ok_or_else(|| refuse(format!("unknown secret handle `{}`", inert(&handle))))?,
                EnvValue::Text(text) if known.contains(&text) => text,
                EnvValue::Text(_) => {
                    return Err(refuse(format!(
                        "deploy-command variable `{}` must hold a secret, one of the server's settings or an endpoint \
                         URL; the plugin gave other text",
                        var.name
                    )));
                }
            };
            plan.env.push((var.name, OsString::from(value)));
        }
        for tool in legacy.tools {
            if !plain_program_name(&tool.program) {
                return Err(refuse(format!("tool `{}` is not a plain program name", inert(&tool.program))));
            }
            plan.tools.push(tool);
        }
        Ok(plan)
    }

    /// Runs the method's deploy, then the commands; returns how it ended. An error is
    /// returned, not said: the caller reports it, once.
    pub async fn run(&self, plan: &CommandPlan) -> Result<Ended, DeployError> {
        let (env, ctx, streamed) = self.env_and_context()?;
        // The plugin is told the commit it ships, and only that one.
        debug_assert_eq!(self.build.commit, self.workspace.commit());
        let build = BuildInfo {
            deploy_id: self.deploy_id.clone(),
            commit: self.workspace.commit().to_string(),
            branch: self.build.branch.clone(),
            build_id: self.build.build.clone(),
            trigger: self.build.trigger,
        };
        self.still_locked().await?;
        let result = self.plugin.deploy(self.runtime, &env, &ctx, &self.settings(), &build).await?;
        // A host refused for its key ends the deploy, whatever the plugin made of it.
        self.host_key_refused()?;
        let report = result.map_err(|e| method_failure(self.description, e, &streamed, self.room.as_deref()))?;
        self.say(Level::Info, format!("{}: {}", self.description.name, report.summary));
        let url = self.server.url.clone().or(report.url.clone());
        if plan.commands.is_empty() {
            return Ok(Ended { exit: Exit::Success, summary: report.summary, url, release: report.release });
        }
        for note in &plan.notes {
            self.say(Level::Warn, note.clone());
        }
        let env = self.command_env(plan, url.as_deref())?;
        let (mut env, _key) = env;
        let shell = find_program("sh", std::env::var_os("PATH").as_ref())
            .ok_or_else(|| DeployError::Setup("`sh` is not on PATH".into()))?;
        let total = plan.commands.len();
        for (i, command) in plan.commands.iter().enumerate() {
            self.still_locked().await?;
            self.sink.emit(Event::Step { title: format!("Command {}/{total}: {command}", i + 1) });
            if let Some(request) = plan.native.get(i).and_then(Option::as_ref) {
                let code = self.run_native(request).await?;
                if code != 0 {
                    return Err(DeployError::Method(
                        failed_command(i, total, command, &code.to_string()),
                        Exit::DeployFailed,
                    ));
                }
                continue;
            }
            env.retain(|(k, _)| k != "PIER_COMMAND_INDEX");
            env.push(("PIER_COMMAND_INDEX".into(), (i + 1).to_string().into()));
            let args = ["-c".to_string(), command.clone()];
            let program = Program {
                name: "sh",
                path: &shell,
                args: &args,
                env: env.clone(),
                cwd: self.workspace.dir(),
                capture_stdout: false,
                timeout: self.command_timeout,
                confinement: None,
                room: self.room.as_deref(),
            };
            let finished = run_program(program, self.sink.as_ref()).await.map_err(|e| {
                DeployError::Method(format!("command {} (`{command}`): {e}", i + 1), Exit::DeployFailed)
            })?;
            if finished.code != 0 {
                self.host_keys.note(&finished.tail);
                self.host_key_refused()?;
                let message = failed_command(i, total, command, &finished.code.to_string());
                if finished.unkept_lines > 0 {
                    // The log was full before the command ended: show how it ended.
                    self.say(Level::Error, "last lines of the output:");
                    for line in &finished.tail {
                        self.say(Level::Error, format!("  {line}"));
                    }
                }
                // Said once, by whoever reports the deploy's end.
                return Err(DeployError::Method(message, Exit::DeployFailed));
            }
        }
        let passed = count(total as u64, "command");
        Ok(Ended {
            exit: Exit::Success,
            summary: format!("{}; {passed} passed", report.summary),
            url,
            release: report.release,
        })
    }

    /// Runs a native command through the method's `run`: its remote exit status, or the
    /// method's error.
    async fn run_native(&self, request: &crate::runtime::RunRequest) -> Result<i32, DeployError> {
        let (env, ctx, streamed) = self.env_and_context()?;
        let result = self.plugin.run(self.runtime, &env, &ctx, &self.settings(), request).await?;
        result.map_err(|e| method_failure(self.description, e, &streamed, self.room.as_deref()))
    }

    /// Exit 4 when the server's lock was lost: no next step may run beside another
    /// runner's deploy that has taken it since.
    async fn still_locked(&self) -> Result<(), DeployError> {
        let Some(lock) = self.lock else { return Ok(()) };
        lock.confirm().await.map_err(|lost| {
            DeployError::Method(format!("{lost}: stopped before the next step of the deploy"), Exit::Provider)
        })
    }

    /// Exit 4 when ssh refused a host for its key during this deploy.
    fn host_key_refused(&self) -> Result<(), DeployError> {
        match self.host_keys.refused() {
            Some(refusal) => Err(DeployError::Method(refusal.message(&self.server.alias), Exit::Provider)),
            None => Ok(()),
        }
    }

    /// The environment of deploy commands, and the key file it names (deleted on drop).
    fn command_env(&self, plan: &CommandPlan, url: Option<&str>) -> Result<(Env, Option<KeyFile>), DeployError> {
        let mut env = base_env();
        let alias = &self.server.alias;
        let mut add = |k: &str, v: &str| env.push((k.to_string(), OsString::from(v)));
        add("SEMAPHORE_SERVER_NAME", alias);
        add("PIER_SERVER_NAME", alias);
        add("PIER_SERVER_URL", url.unwrap_or(""));
        add("PIER_DEPLOY_ID", &self.deploy_id);
        add("PIER_COMMIT", &self.build.commit);
        add("PIER_BRANCH", &self.build.branch);
        add("PIER_BUILD", self.build.build.as_deref().unwrap_or(""));
        let reserved: BTreeSet<String> = env.iter().map(|(k, _)| k.clone()).collect();
        env.extend(plan.env.iter().filter(|(k, _)| !reserved.contains(k)).cloned());
        let key = match private_key_handle(&self.vault) {
            Some(handle) => {
                let file = KeyFile::write(&self.vault, &handle, &self.run_dir)
                    .map_err(|e| DeployError::Setup(e.to_string()))?;
                env.push(("PIER_SSH_KEY".into(), file.path().into()));
                let known_hosts = self
                    .host_keys
                    .known_hosts(&self.run_dir)
                    .map_err(|e| DeployError::Setup(format!("could not write the pinned SSH host keys: {e}")))?;
                env.push(("GIT_SSH_COMMAND".into(), file.git_ssh_command(&known_hosts).into()));
                Some(file)
            }
            None => None,
        };
        Ok((env, key))
    }
}

/// The prefix of every run directory's name.
const RUN_DIR_PREFIX: &str = "pier-run-";

/// Where run directories go: the system's temporary directory, refused when it is
/// inside the repository at `repo_top` (tools walking up from a run directory would find
/// the repository, and scratch files would sit in the checkout).
pub fn scratch_root(repo_top: &Path) -> Result<PathBuf, DeployError> {
    let temp = std::env::temp_dir();
    let resolved = temp
        .canonicalize()
        .map_err(|e| DeployError::Setup(format!("the temporary directory {} cannot be used: {e}", temp.display())))?;
    if resolved.starts_with(repo_top) {
        return Err(DeployError::Setup(format!(
            "the temporary directory {} is inside the repository at {}: set TMPDIR to a directory outside it; nothing \
             was deployed",
            resolved.display(),
            repo_top.display()
        )));
    }
    Ok(resolved)
}

/// The per-deploy scratch directory, private to the user, outside the checkout: a fresh
/// `pier-run-*` directory of the temporary directory, whose path `.pier/run/ID` records
/// until it is removed (when dropped, or by [`reconcile`] after a kill).
pub struct RunDir {
    dir: Option<tempfile::TempDir>,
    record: PathBuf,
}

impl RunDir {
    /// Creates a run directory under `root` (see [`scratch_root`]) for deploy `deploy_id`
    /// and records it in `state_dir/run/ID`.
    pub fn create(state_dir: &Path, root: &Path, deploy_id: &str) -> std::io::Result<RunDir> {
        let records = state_dir.join("run");
        std::fs::create_dir_all(&records)?;
        let dir = tempfile::Builder::new().prefix(RUN_DIR_PREFIX).tempdir_in(root)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        let record = records.join(deploy_id);
        let mut line = dir.path().as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        crate::project::write_atomic(&record, &line, 0o600)?;
        Ok(RunDir { dir: Some(dir), record })
    }

    pub fn path(&self) -> &Path {
        self.dir.as_ref().map(tempfile::TempDir::path).unwrap_or(Path::new(""))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
        let _ = std::fs::remove_file(&self.record);
    }
}

/// Removes the run directory a record names, if it is one Pier made: an absolute path
/// to a real directory named `pier-run-*` owned by this user (a record edited to name
/// anything else removes nothing but itself).
fn remove_recorded(record: &Path) {
    if let Ok(text) = std::fs::read(record) {
        let text = text.strip_suffix(b"\n").unwrap_or(&text);
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            use std::os::unix::fs::MetadataExt as _;
            let dir = Path::new(std::ffi::OsStr::from_bytes(text));
            let named = dir.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(RUN_DIR_PREFIX.as_bytes()));
            let ours = std::fs::symlink_metadata(dir)
                .is_ok_and(|m| m.is_dir() && m.uid() == nix::unistd::Uid::effective().as_raw());
            if dir.is_absolute() && named && ours {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
    let _ = std::fs::remove_file(record);
}

/// Marks `interrupted` every running deploy whose process is gone (nobody holds its
/// server's lock, or `held` says the caller holds it for a new deploy), and removes the
/// run directories (private key files) of every deploy that is not running.
pub fn reconcile(
    state_dir: &Path,
    timeline: &crate::project::timeline::Timeline,
    held: Option<&str>,
) -> Result<Vec<String>, crate::project::timeline::TimelineError> {
    use crate::project::lock;
    let marked = timeline.reconcile(|d| held == Some(d.server.as_str()) || lock::is_free(state_dir, &d.server))?;
    let running: BTreeSet<String> = timeline
        .list(None, usize::MAX)?
        .into_iter()
        .filter(|d| d.status == crate::project::timeline::Status::Running)
        .map(|d| d.id)
        .collect();
    if let Ok(entries) = std::fs::read_dir(state_dir.join("run")) {
        for entry in entries.flatten() {
            if running.contains(entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            match entry.file_type() {
                // A run directory of an earlier version of Pier, inside the state directory.
                Ok(kind) if kind.is_dir() => {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                _ => remove_recorded(&entry.path()),
            }
        }
    }
    Ok(marked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn run_directories_are_private_recorded_and_removed() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let run = RunDir::create(state.path(), root.path(), "d-1").unwrap();
        let dir = run.path().to_path_buf();
        assert!(dir.starts_with(root.path()) && dir.file_name().unwrap().to_string_lossy().starts_with("pier-run-"));
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let record = state.path().join("run/d-1");
        assert_eq!(std::fs::read_to_string(&record).unwrap(), format!("{}\n", dir.display()));
        std::fs::write(dir.join("key"), "x").unwrap();
        drop(run);
        assert!(!dir.exists() && !record.exists());
    }

    #[test]
    fn reconcile_removes_what_a_killed_deploy_left_and_only_that() {
        let state = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let timeline = crate::project::timeline::Timeline::open(state.path()).unwrap();
        // A deploy killed before it could clean up: its directory and record stay behind.
        let killed = RunDir::create(state.path(), root.path(), "d-killed").unwrap();
        let left = killed.path().to_path_buf();
        std::mem::forget(killed);
        // A record edited to name a directory Pier did not make removes only itself.
        let precious = root.path().join("precious");
        std::fs::create_dir(&precious).unwrap();
        std::fs::write(state.path().join("run/d-edited"), format!("{}\n", precious.display())).unwrap();
        // An earlier version's run directory inside the state directory.
        std::fs::create_dir_all(state.path().join("run/d-old")).unwrap();

        reconcile(state.path(), &timeline, None).unwrap();
        assert!(!left.exists(), "the killed deploy's run directory is removed");
        assert!(precious.exists(), "a directory Pier did not make is kept");
        assert_eq!(std::fs::read_dir(state.path().join("run")).unwrap().count(), 0);
    }

    /// A log that is full, or not.
    struct Room(bool);

    impl OutputRoom for Room {
        fn has_room(&self) -> bool {
            !self.0
        }

        fn unkept(&self, _: u64, _: u64) {}
    }

    #[test]
    fn a_failures_tail_is_shown_only_when_its_lines_were_not_streamed() {
        let sink = Arc::new(crate::caps::events::MemorySink::default());
        let streamed = Streamed::new(sink.clone());
        for line in ["-----> Building", "error:\tcould not compile", "Build failed"] {
            streamed.emit(Event::Output { line: safe_line(line) });
        }
        assert_eq!(sink.events().len(), 3, "every event is passed on");
        let tail = |lines: &[&str]| lines.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        let (room, full) = (Room(false), Room(true));
        // Streamed lines (however their spaces were shown) are not shown again.
        let shown = tail(&["error:\tcould not compile ", "", "Build failed"]);
        assert!(!streamed.shows(&shown, Some(&room)));
        assert!(!streamed.shows(&shown, None));
        assert!(!streamed.shows(&[], Some(&full)));
        // A line that was never streamed, or a log that was full, shows the tail.
        assert!(streamed.shows(&tail(&["Build failed", "the dyno ran out of memory"]), Some(&room)));
        assert!(streamed.shows(&shown, Some(&full)));
    }

    #[test]
    fn scratch_space_is_never_inside_the_repository() {
        let temp = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(scratch_root(Path::new("/nonexistent/repository")).unwrap(), temp);
        let refused = scratch_root(&temp).unwrap_err().to_string();
        assert!(refused.contains("is inside the repository") && refused.contains("set TMPDIR"), "{refused}");
    }
}
