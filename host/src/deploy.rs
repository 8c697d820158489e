//! A deploy, end to end: the method's `deploy`, then the server's commands, recorded in
//! the timeline, under the server's lock.
//!
//! Exit codes are honest (S9): a failed build or release phase fails the deploy, and so
//! does the first command that exits non-zero; nothing after it runs.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::caps::Grant;
use crate::caps::events::{Event, EventSink, Level};
use crate::caps::exec::{Env, Program, base_env, find_program, resolve_env, run_program};
use crate::caps::keys::{KeyFile, known_hosts_in};
use crate::caps::secrets::{Vault, redact};
use crate::exit::Exit;
use crate::project::config::Server;
use crate::runtime::bindings::Trigger;
use crate::runtime::{BuildInfo, CallEnv, CallError, CommandPlan, Context, Description, MethodError, Plugin, Runtime};

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
    /// The checkout.
    pub checkout: PathBuf,
    /// Per-deploy scratch space (private key files live here); removed after.
    pub run_dir: PathBuf,
    pub build: Build,
    pub deploy_id: String,
    /// Where progress and log lines go.
    pub sink: Arc<dyn EventSink>,
    /// The longest a deploy command may run.
    pub command_timeout: Duration,
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

fn method_failure(d: &Description, e: MethodError, sink: &dyn EventSink) -> DeployError {
    if let MethodError::DeployFailed(f) = &e
        && !f.tail.is_empty()
    {
        sink.emit(Event::Log { level: Level::Error, message: "last lines of the output:".into() });
        for line in &f.tail {
            sink.emit(Event::Log { level: Level::Error, message: format!("  {line}") });
        }
    }
    let (message, exit) = crate::exit::for_method_error(d, &e);
    DeployError::Method(message, exit)
}

/// The private key among the server's secrets, if it has one.
fn private_key_handle(vault: &Vault) -> Option<String> {
    vault.handles().into_iter().find(|h| {
        vault.get(h).is_some_and(|v| v.expose_secret().trim_start().starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"))
    })
}

impl Deploy<'_> {
    fn env_and_context(&self) -> Result<(CallEnv, Context), DeployError> {
        let values = self.server.settings.clone().into_iter().collect();
        let (grant, endpoints) =
            Grant::for_call(&self.description.permissions, &values, &|name| std::env::var(name).ok())
                .map_err(|e| DeployError::Setup(format!("method {}: {e}", self.description.name)))?;
        let env = CallEnv::new(grant, self.vault.clone(), self.sink.clone())
            .with_workspace(self.checkout.clone())
            .with_scratch(self.run_dir.clone());
        Ok((env, Context { endpoints, server: self.server.alias.clone() }))
    }

    fn settings(&self) -> Vec<crate::runtime::Answer> {
        self.server
            .settings
            .iter()
            .map(|(k, v)| crate::runtime::Answer { field: k.clone(), value: v.clone() })
            .collect()
    }

    fn say(&self, level: Level, message: impl Into<String>) {
        self.sink.emit(Event::Log { level, message: redact(&message.into()).into_owned() });
    }

    /// Asks the method how to run the commands, and checks that the programs they need
    /// are installed, before anything is deployed.
    pub async fn plan(&self) -> Result<CommandPlan, DeployError> {
        let (env, ctx) = self.env_and_context()?;
        let plan = self
            .plugin
            .prepare_commands(self.runtime, &env, &ctx, &self.settings(), &self.server.commands)
            .await?
            .map_err(|e| method_failure(self.description, e, self.sink.as_ref()))?;
        let path = std::env::var_os("PATH");
        let mut missing = Vec::new();
        for tool in &plan.tools {
            if find_program(&tool.program, path.as_ref()).is_none() {
                missing.push(format!("`{}` (install it with: {})", tool.program, tool.install_hint));
            }
        }
        if !missing.is_empty() {
            return Err(DeployError::Setup(format!(
                "the deploy commands of `{}` need {}, which is not on PATH; nothing was deployed",
                self.server.alias,
                missing.join(" and ")
            )));
        }
        Ok(plan)
    }

    /// Runs the method's deploy, then the commands; returns how it ended.
    pub async fn run(&self, plan: &CommandPlan) -> Result<Ended, DeployError> {
        let (env, ctx) = self.env_and_context()?;
        let build = BuildInfo {
            deploy_id: self.deploy_id.clone(),
            commit: self.build.commit.clone(),
            branch: self.build.branch.clone(),
            build_id: self.build.build.clone(),
            trigger: self.build.trigger,
        };
        let report = self
            .plugin
            .deploy(self.runtime, &env, &ctx, &self.settings(), &build)
            .await?
            .map_err(|e| method_failure(self.description, e, self.sink.as_ref()))?;
        self.say(Level::Info, format!("{}: {}", self.description.name, report.summary));
        let url = self.server.url.clone().or(report.url.clone());
        if plan.commands.is_empty() {
            return Ok(Ended { exit: Exit::Success, summary: report.summary, url });
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
            self.sink.emit(Event::Step { title: format!("Command {}/{total}: {command}", i + 1) });
            env.retain(|(k, _)| k != "PIER_COMMAND_INDEX");
            env.push(("PIER_COMMAND_INDEX".into(), (i + 1).to_string().into()));
            let args = ["-c".to_string(), command.clone()];
            let program = Program {
                name: "sh",
                path: &shell,
                args: &args,
                env: env.clone(),
                cwd: &self.checkout,
                capture_stdout: false,
                timeout: self.command_timeout,
            };
            let finished = run_program(program, self.sink.as_ref()).await.map_err(|e| {
                DeployError::Method(format!("command {} (`{command}`): {e}", i + 1), Exit::DeployFailed)
            })?;
            if finished.code != 0 {
                let message = format!("command {} of {total} (`{command}`) exited with {}", i + 1, finished.code);
                self.say(Level::Error, message.clone());
                if i + 1 < total {
                    self.say(Level::Error, format!("{} later command(s) not run", total - i - 1));
                }
                return Err(DeployError::Method(message, Exit::DeployFailed));
            }
        }
        Ok(Ended { exit: Exit::Success, summary: format!("{}; {total} command(s) passed", report.summary), url })
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
        let method_env = resolve_env(&plan.env, &self.vault)
            .map_err(|e| DeployError::Method(format!("{}: {e}", self.description.name), Exit::PluginFault))?;
        let reserved: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect::<BTreeSet<_>>();
        let method_env: Vec<_> = method_env.into_iter().filter(|(k, _)| !reserved.contains(k.as_str())).collect();
        env.extend(method_env);
        let key = match private_key_handle(&self.vault) {
            Some(handle) => {
                let file = KeyFile::write(&self.vault, &handle, &self.run_dir)
                    .map_err(|e| DeployError::Setup(e.to_string()))?;
                env.push(("PIER_SSH_KEY".into(), file.path().into()));
                env.push(("GIT_SSH_COMMAND".into(), file.git_ssh_command(&known_hosts_in(&self.run_dir)).into()));
                Some(file)
            }
            None => None,
        };
        Ok((env, key))
    }
}

/// The per-deploy scratch directory, private to the user; removed when dropped.
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates `.pier/run/ID`.
    pub fn create(state_dir: &Path, deploy_id: &str) -> std::io::Result<RunDir> {
        let path = state_dir.join("run").join(deploy_id);
        std::fs::create_dir_all(&path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(RunDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Marks `interrupted` every running deploy whose process is gone (nobody holds its
/// server's lock, or `held` says the caller holds it for a new deploy), and removes the
/// scratch directories (private key files) of every deploy that is not running.
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
            if !running.contains(entry.file_name().to_string_lossy().as_ref()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(marked)
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
