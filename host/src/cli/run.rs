//! `pier run` (a one-off command on a server, through its method) and `pier rollback`,
//! and the one way they, and `pier server remove`, call a server's method outside a
//! deploy: [`ServerCall`].

use std::io::{IsTerminal as _, Write as _};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::deploy::{actor_or, state_error};
use super::project::{Project, master_key};
use super::{CliError, Globals, Output};
use crate::caps::events::{Event, EventSink, Level};
use crate::caps::secrets::{Vault, redact};
use crate::exit::Exit;
use crate::project::STATE_DIR;
use crate::project::config::Server;
use crate::project::state::{Rollback, State};
use crate::runtime::{Answer, CallEnv, Context, Description, Plugin, RunRequest, Runtime};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The server's alias or name.
    pub server: String,
    /// Machine size of the one-off process (for Heroku, a dyno size such as standard-2x).
    #[arg(long, short = 's')]
    pub size: Option<String>,
    /// Process type to run as.
    #[arg(long = "type")]
    pub process_type: Option<String>,
    /// A variable for the command, KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Never attach a terminal, even when pier runs on one.
    #[arg(long)]
    pub no_tty: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The server's alias or name.
    pub server: String,
    /// The release to return to: a deploy id from the timeline (the release it made
    /// live), or the provider's name for a release (`v41`). Default: the last good release
    /// before the current one.
    #[arg(long, value_name = "DEPLOY_ID|RELEASE")]
    pub to: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Shows a one-off command's events: its output on stdout as it arrives (it is the
/// command's data), the method's own lines on stderr. In raw mode a line ends with CRLF,
/// as the terminal's own line discipline would have made it.
struct Terminal {
    raw: bool,
}

impl EventSink for Terminal {
    fn emit(&self, event: Event) {
        let end = if self.raw { "\r\n" } else { "\n" };
        match event {
            Event::Output { line } => {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "{line}{end}");
                let _ = out.flush();
            }
            Event::Log { level: Level::Debug, .. } => {}
            Event::Log { level, message } => eprint!("{}{message}{end}", prefix(level)),
            Event::Step { title } => eprint!("{title}{end}"),
        }
    }
}

fn prefix(level: Level) -> &'static str {
    match level {
        Level::Warn => "warning: ",
        Level::Error => "error: ",
        _ => "",
    }
}

/// A server's method, loaded with its secrets and grant, ready for one call outside a
/// deploy.
pub struct ServerCall {
    pub runtime: Runtime,
    pub plugin: Plugin,
    pub description: Description,
    pub server: Server,
    pub vault: Arc<Vault>,
}

impl ServerCall {
    /// Loads the method of `server` in `project`.
    pub async fn open(project: &Project, server: &Server, globals: &Globals) -> Result<ServerCall, CliError> {
        let runtime = globals.runtime()?;
        let plugin = project.plugin(&runtime, &server.method)?;
        let description = plugin.describe(&runtime).await?;
        let (key, source) = master_key()?;
        let vault = Arc::new(project.secrets()?.open_server(&key, &source.to_string(), &server.alias)?);
        Ok(ServerCall { runtime, plugin, description, server: server.clone(), vault })
    }

    /// The environment, context and settings of one call whose events go to `sink`.
    pub fn env(&self, sink: Arc<dyn EventSink>) -> Result<(CallEnv, Context, Vec<Answer>), CliError> {
        let (env, ctx) =
            crate::deploy::server_call(&self.server, &self.plugin, &self.description, self.vault.clone(), sink)
                .map_err(CliError::Usage)?;
        Ok((env, ctx, crate::deploy::settings_of(&self.server)))
    }

    /// A method error as the command's error.
    pub fn method_error(&self, e: crate::runtime::MethodError) -> CliError {
        let (message, exit) = crate::exit::for_method_error(&self.description, &e);
        CliError::Method { message, exit }
    }
}

/// Puts the terminal in raw mode while it lives, so that keys reach the remote terminal
/// as typed; restores it on drop.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

/// `pier run SERVER -- COMMAND...`: exits with the remote command's status.
pub async fn run(args: RunArgs, globals: &Globals) -> Result<Exit, CliError> {
    let mut env = Vec::new();
    for pair in &args.env {
        match pair.split_once('=') {
            Some((k, v)) if crate::native::valid_env_name(k) => env.push((k.to_string(), v.to_string())),
            _ => return Err(CliError::Usage(format!("--env {pair}: expected KEY=VALUE with a plain KEY"))),
        }
    }
    let project = Project::open()?;
    let server = project.server(&args.server)?.clone();
    let call = ServerCall::open(&project, &server, globals).await?;
    let tty = !args.no_tty && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let request = RunRequest { command: args.command, env, size: args.size, process_type: args.process_type, tty };
    let raw = if tty { RawMode::enter() } else { None };
    let (env, ctx, settings) = call.env(Arc::new(Terminal { raw: raw.is_some() }))?;
    let env = env.with_input();
    let result = call.plugin.run(&call.runtime, &env, &ctx, &settings, &request).await?;
    drop(raw);
    let status = result.map_err(|e| call.method_error(e))?;
    Ok(Exit::remote(status))
}

/// `pier rollback SERVER [--to ...]`: the method makes an earlier release live, under the
/// server's lock, and the timeline records it as a rollback of the server.
pub async fn rollback(args: RollbackArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let server = project.server(&args.server)?.clone();
    let dir = project.root.join(STATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| CliError::Usage(format!("cannot create {}: {e}", dir.display())))?;
    let state = State::open(&project.config, &dir).await.map_err(state_error)?;
    // `--to` names a deploy of the timeline when one matches, else a release.
    let deploy = match &args.to {
        Some(to) => state.release_of(to).await.map_err(state_error)?,
        None => None,
    };
    let release = match (&args.to, &deploy) {
        (None, _) => None,
        (Some(_), Some(d)) if d.server != server.alias => {
            return Err(CliError::Usage(format!(
                "deploy {} was of server `{}`, not `{}`",
                d.id, d.server, server.alias
            )));
        }
        (Some(_), Some(d)) => Some(d.release.clone().ok_or_else(|| {
            CliError::Usage(format!(
                "deploy {} recorded no release to return to (it failed, or its method names none): pass the \
                 provider's name for a release instead, for example --to v41",
                d.id
            ))
        })?),
        (Some(to), None) => Some(to.clone()),
    };
    let call = ServerCall::open(&project, &server, globals).await?;
    let runner = crate::project::state::runner();
    let id = crate::project::timeline::new_id();
    let _lock = state.lock(&server.alias, &id, &runner, Duration::ZERO).await.map_err(|e| match e.is_busy() {
        true => CliError::Method { message: format!("{e}; roll back once it has ended"), exit: Exit::DeployFailed },
        false => state_error(e),
    })?;
    let (env, ctx, settings) = call.env(Arc::new(Terminal { raw: false }))?;
    let report = call
        .plugin
        .rollback(&call.runtime, &env, &ctx, &settings, release.as_deref())
        .await?
        .map_err(|e| call.method_error(e))?;
    let summary = redact(&report.summary).into_owned();
    let url = server.url.clone().or(report.url.clone());
    let actor = actor_or(|| crate::git::Checkout::open(&project.root).ok().and_then(|c| c.user_name()));
    let record = Rollback {
        server: &server.alias,
        method: &server.method,
        actor: &actor,
        runner: &runner,
        commit: deploy.as_ref().map_or("", |d| d.commit.as_str()),
        branch: deploy.as_ref().map_or("", |d| d.branch.as_str()),
        summary: &summary,
        release: report.release.as_deref(),
        url: url.as_deref(),
    };
    let id = state.record_rollback(&record).await.map_err(state_error)?;
    if args.json {
        out.json(&serde_json::json!({
            "server": server.alias,
            "rollback": id,
            "summary": summary,
            "release": report.release,
        }))?;
    } else {
        out.line(format!("{}: {summary} (rollback {id})", server.alias))?;
    }
    Ok(Exit::Success)
}
