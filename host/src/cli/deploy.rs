//! `pier deploy` (manual) and `pier ci` (automatic): run deploys and record them.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use super::ci_output::{CiOutput, Steps, SummaryRow};
use super::project::{Project, master_key};
use super::{CliError, Globals, Output, ci_env};
use crate::caps::events::{self, Event, EventSink, Level, inert};
use crate::caps::exec::OutputRoom;
use crate::caps::secrets::redact;
use crate::caps::workspace::Workspace;
use crate::deploy::{Build, Deploy, DeployError, RunDir};
use crate::exit::Exit;
use crate::git::Checkout;
use crate::project::STATE_DIR;
use crate::project::config::Server;
use crate::project::state::{State, StateError};
use crate::project::timeline::{self, DeployLog, Status};
use crate::runtime::bindings::Trigger;

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The server's alias or name.
    server: String,
    /// The commit to deploy (default: HEAD of the checkout).
    #[arg(long, value_name = "SHA")]
    commit: Option<String>,
    /// The branch the commit is on (default: the checkout's branch).
    #[arg(long, value_name = "NAME")]
    branch: Option<String>,
    /// The CI build id, for the timeline.
    #[arg(long, value_name = "ID")]
    build: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct CiArgs {
    #[command(flatten)]
    run: RunArgs,
}

/// What `deploy` and `ci` share.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The checkout to deploy.
    #[arg(long, value_name = "PATH", default_value = ".")]
    dir: PathBuf,
    /// Wait up to this many seconds for a running deploy of a server to finish.
    #[arg(long, value_name = "SECONDS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    wait: u64,
    /// Print JSON Lines: one event per line, then a result per server.
    #[arg(long)]
    json: bool,
}

/// One JSON Lines record: `{"type": ..., "data": ...}`.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: T,
}

fn json_line<T: Serialize>(kind: &str, data: T, ci: Option<&CiOutput>) {
    if let Ok(text) = serde_json::to_string(&Envelope { kind, data }) {
        let text = redact(&text);
        let text = match ci {
            Some(ci) => ci.json(&text).into_owned(),
            None => text.into_owned(),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Shows a deploy's events on stderr (or as JSON Lines on stdout) and writes them to its
/// log. The log is bounded ([`DeployLog`]); what the terminal shows of programs' output is
/// rate-limited like a plugin's lines ([`events::RATE_PER_SECOND`], bursts of
/// [`events::BURST`]), with a note of how many lines it did not show. In a CI that has
/// them, each step shown as text opens a collapsible group or section ([`CiOutput`]).
struct DeploySink {
    state: Mutex<SinkState>,
    /// Whether the log is full of output: programs then only count what they print.
    full: AtomicBool,
    json: bool,
    ci: Option<CiOutput>,
    server: String,
    deploy_id: String,
}

struct SinkState {
    log: DeployLog,
    tokens: f64,
    refilled: Instant,
    /// Output lines not shown since the last note.
    hidden: u64,
    /// The CI's groups or sections of the steps shown as text.
    steps: Option<Steps>,
}

impl DeploySink {
    fn new(log: DeployLog, json: bool, ci: Option<&CiOutput>, server: &str, deploy_id: &str) -> DeploySink {
        let steps = if json { None } else { ci.map(|ci| ci.steps(deploy_id)) };
        DeploySink {
            state: Mutex::new(SinkState { log, tokens: events::BURST, refilled: Instant::now(), hidden: 0, steps }),
            full: AtomicBool::new(false),
            json,
            ci: ci.cloned(),
            server: server.to_string(),
            deploy_id: deploy_id.to_string(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn show(&self, state: &mut SinkState, event: &Event, line: &str) {
        if self.json {
            json_line("event", serde_json::json!({ "server": self.server, "event": event }), self.ci.as_ref());
            return;
        }
        let mut err = std::io::stderr().lock();
        match (event, state.steps.as_mut()) {
            (Event::Step { title }, Some(steps)) => {
                let _ = write!(err, "{}", steps.step_started(title));
            }
            _ => {
                let _ = writeln!(err, "{line}");
            }
        }
    }

    /// Says the deploy failed with `message`, once: after its steps, as the CI's error
    /// annotation if it has one, else as an error line; and in the log.
    fn failed(&self, message: &str) {
        let mut state = self.lock();
        self.note_hidden(&mut state);
        self.steps_done(&mut state);
        match state.steps.as_ref().and_then(|steps| steps.annotation(&self.server, message)) {
            Some(text) => {
                let event = Event::Log { level: Level::Error, message: message.to_string() };
                let line = redact(&super::progress::render(&event)).into_owned();
                state.log.note(&line);
                let _ = write!(std::io::stderr(), "{text}");
            }
            None => {
                drop(state);
                self.emit(Event::Log { level: Level::Error, message: message.to_string() });
            }
        }
    }

    /// Ends the CI's open group or section, if any.
    fn steps_done(&self, state: &mut SinkState) {
        if let Some(steps) = state.steps.as_mut() {
            let _ = write!(std::io::stderr(), "{}", steps.steps_done());
        }
    }

    /// Says how many output lines the terminal did not show, if any.
    fn note_hidden(&self, state: &mut SinkState) {
        let hidden = std::mem::take(&mut state.hidden);
        if hidden > 0 {
            let event = Event::Log {
                level: Level::Warn,
                message: format!(
                    "{} not shown here (more than {} a second); `pier timeline show {}` has the deploy's log",
                    events::count(hidden, "output line"),
                    events::RATE_PER_SECOND,
                    self.deploy_id
                ),
            };
            self.show(state, &event, &super::progress::render(&event));
        }
    }

    /// Ends the log (with what it dropped) and returns it; says what the terminal skipped
    /// and ends the CI's open group or section.
    fn finish(&self) -> String {
        let mut state = self.lock();
        self.note_hidden(&mut state);
        self.steps_done(&mut state);
        state.log.finish()
    }
}

impl Drop for DeploySink {
    /// However the deploy ended, no group is left open and GitHub reads commands again.
    fn drop(&mut self) {
        let mut state = self.lock();
        self.steps_done(&mut state);
    }
}

impl SinkState {
    /// Whether one more output line may be shown now.
    fn admit(&mut self) -> bool {
        let now = Instant::now();
        let refill = now.duration_since(self.refilled).as_secs_f64() * events::RATE_PER_SECOND;
        self.tokens = (self.tokens + refill).min(events::BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

impl EventSink for DeploySink {
    fn emit(&self, event: Event) {
        let mut state = self.lock();
        let output = matches!(event, Event::Output { .. });
        let shown = !output || state.admit();
        if output && !shown && !state.log.has_room() {
            let Event::Output { line } = &event else { return };
            state.log.unkept(line.len() as u64 + 1, 1);
            state.hidden += 1;
            self.full.store(true, Ordering::Relaxed);
            return;
        }
        let line = super::progress::render(&event);
        let line = redact(&line).into_owned();
        if output {
            state.log.line(&line);
            self.full.store(!state.log.has_room(), Ordering::Relaxed);
        } else {
            state.log.note(&line);
        }
        if shown {
            if !output {
                self.note_hidden(&mut state);
            }
            self.show(&mut state, &event, &line);
        } else {
            state.hidden += 1;
        }
    }
}

impl OutputRoom for DeploySink {
    fn has_room(&self) -> bool {
        !self.full.load(Ordering::Relaxed)
    }

    fn unkept(&self, bytes: u64, lines: u64) {
        let mut state = self.lock();
        state.log.unkept(bytes, lines);
        state.hidden += lines;
    }
}

/// Who asked for a deploy: the CI's user; else the local user (`USER`, `LOGNAME`, or the
/// system's name for this user); else git's `user.name` of the checkout. Never nobody.
fn actor(checkout: &Checkout) -> String {
    actor_or(|| checkout.user_name())
}

/// [`actor`], with `git_user` asked last.
pub(super) fn actor_or(git_user: impl FnOnce() -> Option<String>) -> String {
    let uid = nix::unistd::geteuid();
    actor_from(
        &|name| std::env::var(name).ok(),
        || nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name),
        git_user,
        uid.as_raw(),
    )
}

/// [`actor`] from the variables `var` reads, the system's name for the user, git's
/// `user.name`, and the user id when none of them says.
fn actor_from(
    var: &dyn Fn(&str) -> Option<String>,
    system_user: impl FnOnce() -> Option<String>,
    git_user: impl FnOnce() -> Option<String>,
    uid: u32,
) -> String {
    let given = |text: Option<String>| text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    [
        "GITHUB_ACTOR",
        "GITLAB_USER_LOGIN",
        "CIRCLE_USERNAME",
        "BUILDKITE_BUILD_CREATOR",
        "SEMAPHORE_GIT_COMMITTER",
        "BUILD_USER_ID",
        "USER",
        "LOGNAME",
    ]
    .into_iter()
    .find_map(|name| given(var(name)))
    .or_else(|| given(system_user()))
    .or_else(|| given(git_user()))
    .unwrap_or_else(|| format!("uid {uid}"))
}

/// The checkout at `dir`, refusing a directory that does not exist or is not in a git
/// repository.
fn checkout(dir: &Path) -> Result<Checkout, CliError> {
    let dir = dir.canonicalize().map_err(|e| CliError::Usage(format!("--dir {}: {e}", dir.display())))?;
    Checkout::open(&dir).map_err(|e| CliError::Usage(format!("{e}; nothing was deployed")))
}

/// The full SHA of the commit `rev` names, `from` saying where the name came from; the
/// checkout's `HEAD` when there is no name.
fn resolve(checkout: &Checkout, rev: Option<(String, &str)>) -> Result<String, CliError> {
    let resolved = match &rev {
        Some((rev, _)) => checkout.resolve(rev),
        None => checkout.head(),
    };
    resolved.map_err(|e| {
        let e = inert(&e.to_string());
        CliError::Usage(match rev {
            Some((_, from)) => format!("{from}: {e}; nothing was deployed"),
            None => format!("{e}; nothing was deployed"),
        })
    })
}

/// Says, once, that uncommitted changes of the checkout are not deployed.
fn warn_uncommitted(checkout: &Checkout, commit: &str) {
    const SHOWN: usize = 5;
    match checkout.changes() {
        Ok(changes) if !changes.is_empty() => {
            let mut paths: Vec<String> = changes.iter().take(SHOWN).map(|p| format!("`{}`", inert(p))).collect();
            if changes.len() > SHOWN {
                paths.push(format!("and {} more", changes.len() - SHOWN));
            }
            let line = format!(
                "warning: uncommitted changes in the checkout are not deployed ({}): Pier deploys commit {} as it was \
                 committed",
                paths.join(", "),
                commit.get(..12).unwrap_or(commit)
            );
            let _ = writeln!(std::io::stderr(), "{}", redact(&line));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot tell whether the checkout has uncommitted changes: {e}"),
    }
}

/// Where the deploys' run directories go, checked before anything runs.
fn scratch_root(checkout: &Checkout) -> Result<PathBuf, CliError> {
    crate::deploy::scratch_root(checkout.top()).map_err(|e| CliError::Usage(e.to_string()))
}

pub async fn deploy(args: DeployArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let server = project.server(&args.server)?.clone();
    let checkout = checkout(&args.run.dir)?;
    let rev = match args.commit {
        Some(c) => Some((c, "--commit")),
        None => std::env::var("PIER_COMMIT").ok().filter(|v| !v.is_empty()).map(|c| (c, "PIER_COMMIT")),
    };
    let commit = resolve(&checkout, rev)?;
    let branch = match args.branch.or_else(|| std::env::var("PIER_BRANCH").ok().filter(|v| !v.is_empty())) {
        Some(b) => b,
        None => checkout.branch().ok_or_else(|| {
            CliError::Usage(format!("cannot tell the branch of {}: pass --branch NAME", checkout.dir().display()))
        })?,
    };
    let scratch = scratch_root(&checkout)?;
    let build = Build {
        commit: commit.clone(),
        branch,
        build: args.build.or_else(|| std::env::var("PIER_BUILD").ok().filter(|v| !v.is_empty())),
        trigger: Trigger::Manual,
        actor: actor(&checkout),
    };
    warn_uncommitted(&checkout, &commit);
    let workspace = Workspace::new(checkout, commit.clone());
    let wait = Duration::from_secs(args.run.wait);
    let ci = CiOutput::from_env();
    let json = args.run.json;
    let result = run_one(&project, &server, build, &workspace, &scratch, wait, json, ci.as_ref(), globals)
        .await
        .inspect_err(|e| {
            // A deploy that could not start (the server is being deployed, say) is a row too.
            if let Some(ci) = &ci {
                let message = redact(&e.to_string()).into_owned();
                let row =
                    SummaryRow { server: &server.alias, status: "failed", summary: &message, ..Default::default() };
                ci.summary(&[row]);
            }
        })?;
    let results = [result];
    summarize(ci.as_ref(), &results, &commit);
    report(&results, json, ci.as_ref(), out)
}

/// Appends the CI's job summary of `results`, deploys of `commit`, if the CI has one.
fn summarize(ci: Option<&CiOutput>, results: &[ServerResult], commit: &str) {
    let Some(ci) = ci else { return };
    let rows: Vec<SummaryRow> = results
        .iter()
        .map(|r| SummaryRow {
            server: &r.server,
            commit: r.deploy_id.as_ref().map(|_| commit),
            status: &r.status,
            summary: &r.summary,
            seconds: r.seconds,
            url: r.url.as_deref(),
            deploy_id: r.deploy_id.as_deref(),
        })
        .collect();
    ci.summary(&rows);
}

/// What `pier deploy` and `pier ci` print per server.
#[derive(Debug, Serialize)]
pub struct ServerResult {
    pub server: String,
    /// `succeeded`, `failed`, `interrupted` or `skipped`.
    pub status: String,
    pub deploy_id: Option<String>,
    pub exit_code: u8,
    pub summary: String,
    pub url: Option<String>,
    pub seconds: Option<f64>,
}

fn report(results: &[ServerResult], json: bool, ci: Option<&CiOutput>, out: &mut Output) -> Result<Exit, CliError> {
    // The first failure decides the exit code.
    let first_failure = results.iter().find(|r| r.status != "succeeded" && r.status != "skipped").map(|r| r.exit_code);
    for r in results {
        if json {
            json_line("result", r, ci);
        } else {
            let took = r.seconds.map(|s| format!(" in {s:.1}s")).unwrap_or_default();
            let id = r.deploy_id.as_deref().map(|i| format!(" [deploy {i}]")).unwrap_or_default();
            let url = r.url.as_deref().map(|u| format!(" {u}")).unwrap_or_default();
            let line = format!("{}: {}{took}: {}{url}{id}", r.server, r.status, r.summary);
            out.line(ci.map(|ci| ci.plain(&line).into_owned()).unwrap_or(line))?;
        }
    }
    Ok(first_failure.map(Exit::from_code).unwrap_or(Exit::Success))
}

/// Waits for SIGINT or SIGTERM.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// A line of `pier ci`'s own on stderr: under GitHub Actions, with nothing in it (a
/// branch name, a reason) that GitHub would read as a workflow command.
fn say(ci: Option<&CiOutput>, line: &str) {
    eprintln!("{}", ci.map(|ci| ci.plain(line)).unwrap_or(line.into()));
}

/// The CLI error for a state that cannot be used, with its exit code.
pub fn state_error(e: StateError) -> CliError {
    CliError::Method { exit: e.exit(), message: redact(&e.to_string()).into_owned() }
}

/// Deploys one server under its lock and records it in the timeline: `workspace`'s
/// commit, which is `build.commit`, with its run directory under `scratch`.
#[allow(clippy::too_many_arguments)]
async fn run_one(
    project: &Project,
    server: &Server,
    build: Build,
    workspace: &Workspace,
    scratch: &Path,
    wait: Duration,
    json: bool,
    ci: Option<&CiOutput>,
    globals: &Globals,
) -> Result<ServerResult, CliError> {
    let state = project.root.join(STATE_DIR);
    std::fs::create_dir_all(&state).map_err(|e| CliError::Usage(format!("cannot create {}: {e}", state.display())))?;
    let _ = std::fs::write(state.join(".gitignore"), "# Local state of pier: not for committing.\n*\n");
    let runtime = globals.runtime()?;
    let plugin = project.plugin(&runtime, &server.method)?;
    let description = plugin.describe(&runtime).await?;
    let (key, source) = master_key()?;
    let vault = Arc::new(project.secrets()?.open_server(&key, &source.to_string(), &server.alias)?);

    let deploy_id = timeline::new_id();
    // The database unreachable or refusing: nothing deploys, and never without its lock.
    let shared = State::open(&project.config, &state).await.map_err(state_error)?;
    let runner = crate::project::state::runner();
    let lock = shared.lock(&server.alias, &deploy_id, &runner, wait).await.map_err(|e| match e.is_busy() {
        true => CliError::Method { message: format!("{e}; wait for it with --wait SECONDS"), exit: Exit::DeployFailed },
        false => state_error(e),
    })?;
    for stale in shared.reconcile(Some(&server.alias)).await.map_err(state_error)? {
        tracing::warn!("deploy {stale} was interrupted (its process ended); marked as such in the timeline");
    }
    let trigger = match build.trigger {
        Trigger::Manual => "manual",
        Trigger::Automatic => "automatic",
    };
    let record = timeline::Deploy {
        build: build.build.clone(),
        runner: shared.is_shared().then(|| runner.clone()),
        ..timeline::Deploy::running(
            &deploy_id,
            &server.alias,
            &server.method,
            &build.commit,
            &build.branch,
            trigger,
            &build.actor,
        )
    };
    let (log, stream) = shared.start(&record, &runner).await.map_err(state_error)?;
    let sink = Arc::new(DeploySink::new(log, json, ci, &server.alias, &deploy_id));
    let run_dir = RunDir::create(&state, scratch, &deploy_id)
        .map_err(|e| CliError::Usage(format!("cannot create the run directory: {e}")))?;
    let deploy = Deploy {
        runtime: &runtime,
        plugin: &plugin,
        description: &description,
        server,
        vault,
        workspace: workspace.clone(),
        run_dir: run_dir.path().to_path_buf(),
        build: build.clone(),
        deploy_id: deploy_id.clone(),
        sink: sink.clone(),
        command_timeout: runtime.limits().deploy_time,
        room: Some(sink.clone()),
        host_keys: crate::caps::host_keys::HostKeys::pinned(server.pins()),
        lock: Some(&lock),
    };
    sink.emit(Event::Step {
        title: format!(
            "Deploying {} of {} to {} ({}, deploy {deploy_id})",
            &build.commit.get(..12).unwrap_or(&build.commit),
            build.branch,
            server.alias,
            server.method
        ),
    });
    let started = Instant::now();
    let outcome = tokio::select! {
        result = async {
            let plan = deploy.plan().await?;
            deploy.run(&plan).await
        } => Some(result),
        _ = interrupted() => None,
    };
    // An interrupted deploy's programs were asked to stop: wait until they are gone
    // before the run directory and the lock go.
    crate::caps::supervise::settle().await;
    drop(deploy);
    drop(run_dir);
    let seconds = Some(started.elapsed().as_secs_f64());
    let (status, exit, summary, url, release) = match outcome {
        None => (Status::Interrupted, None, "interrupted by a signal".to_string(), None, None),
        Some(Ok(ended)) => (Status::Succeeded, Some(ended.exit), ended.summary, ended.url, ended.release),
        Some(Err(e)) => {
            // The one place a deploy's error is said: on stderr (or in the JSON Lines) and
            // in the log, then named by the summary.
            let exit = e.exit();
            let message = match &e {
                DeployError::Call(c) => c.to_string(),
                other => other.to_string(),
            };
            sink.failed(&message);
            (Status::Failed, Some(exit), message, None, None)
        }
    };
    let code = exit.unwrap_or(Exit::Interrupted).code();
    let log = sink.finish();
    let ended = timeline::Ended {
        status,
        exit_code: i32::from(code),
        summary: &redact(&summary),
        url: url.as_deref(),
        release: release.as_deref(),
    };
    // How the deploy went is what it reports, even when its record cannot be written.
    match shared.finish(&deploy_id, ended, &log, stream).await {
        Ok(recorded) => {
            if let Some(unsent) = recorded.unsent {
                eprintln!("warning: {}: deploy {deploy_id}: {unsent}", server.alias);
            }
        }
        Err(e) => eprintln!(
            "warning: {}: deploy {deploy_id} {status}, but the timeline could not record how it ended: {}",
            server.alias,
            redact(&e.to_string())
        ),
    }
    drop(lock);
    Ok(ServerResult {
        server: server.alias.clone(),
        status: status.to_string(),
        deploy_id: Some(deploy_id),
        exit_code: code,
        summary: redact(&summary).into_owned(),
        url,
        seconds,
    })
}

pub async fn ci(args: CiArgs, globals: &Globals, out: &mut Output) -> Result<Exit, CliError> {
    let project = Project::open()?;
    let checkout = checkout(&args.run.dir)?;
    let detected = ci_env::detect(&|name| std::env::var(name).ok());
    let ci = CiOutput::from_env();
    if let Some(why) = &detected.pull_request {
        // A pull request's branch name is its author's choice: never deploy one.
        let reason = format!("a pull-request build ({}, {why}): pull requests never deploy", detected.describe());
        let results: Vec<ServerResult> = project
            .config
            .servers()
            .iter()
            .map(|server| {
                if !args.run.json {
                    say(ci.as_ref(), &format!("skipping {}: {reason}", server.alias));
                }
                ServerResult {
                    server: server.alias.clone(),
                    status: "skipped".into(),
                    deploy_id: None,
                    exit_code: 0,
                    summary: reason.clone(),
                    url: None,
                    seconds: None,
                }
            })
            .collect();
        summarize(ci.as_ref(), &results, "");
        return report(&results, args.run.json, ci.as_ref(), out);
    }
    let (Some(branch), Some(rev)) = (detected.branch.clone(), detected.commit.clone()) else {
        return Err(CliError::Usage(format!(
            "cannot tell which build this is ({}): set PIER_BRANCH and PIER_COMMIT",
            detected.describe()
        )));
    };
    let commit = resolve(&checkout, Some((rev, detected.commit_var.unwrap_or("the build's commit"))))?;
    let scratch = scratch_root(&checkout)?;
    let mut warned = false;
    let who = actor(&checkout);
    let workspace = Workspace::new(checkout, commit.clone());
    if !args.run.json {
        say(
            ci.as_ref(),
            &format!("{}: branch {branch}, commit {}", detected.describe(), commit.get(..12).unwrap_or(&commit)),
        );
    }
    let mut results = Vec::new();
    let mut failed = false;
    for server in project.config.servers() {
        let skip = |reason: String| ServerResult {
            server: server.alias.clone(),
            status: "skipped".into(),
            deploy_id: None,
            exit_code: 0,
            summary: reason,
            url: None,
            seconds: None,
        };
        let reason = match (&server.strategy, &server.branch) {
            (crate::project::config::Strategy::Manual, _) => {
                Some("manual strategy: deploy it with `pier deploy`".to_string())
            }
            (_, Some(b)) if *b != branch => Some(format!("follows branch {b}, this build is on {branch}")),
            _ if failed => Some("not deployed: an earlier deploy in this run failed".to_string()),
            _ => None,
        };
        if let Some(reason) = reason {
            let result = skip(reason);
            if !args.run.json {
                say(ci.as_ref(), &format!("skipping {}: {}", result.server, result.summary));
            }
            results.push(result);
            continue;
        }
        let build = Build {
            commit: commit.clone(),
            branch: branch.clone(),
            build: detected.build.clone(),
            trigger: Trigger::Automatic,
            actor: who.clone(),
        };
        if !std::mem::replace(&mut warned, true) {
            warn_uncommitted(workspace.checkout(), &commit);
        }
        let wait = Duration::from_secs(args.run.wait);
        let json = args.run.json;
        let result =
            match run_one(&project, server, build, &workspace, &scratch, wait, json, ci.as_ref(), globals).await {
                Ok(r) => r,
                Err(e) => {
                    say(ci.as_ref(), &format!("error: {}: {}", server.alias, redact(&e.to_string())));
                    ServerResult {
                        server: server.alias.clone(),
                        status: "failed".into(),
                        deploy_id: None,
                        exit_code: e.exit().code(),
                        summary: redact(&e.to_string()).into_owned(),
                        url: None,
                        seconds: None,
                    }
                }
            };
        failed |= result.status != "succeeded";
        let interrupted = result.status == "interrupted";
        results.push(result);
        if interrupted {
            break;
        }
    }
    if results.iter().all(|r| r.status == "skipped") && !args.run.json {
        say(ci.as_ref(), &format!("no automatic server follows branch {branch}: nothing to deploy"));
    }
    summarize(ci.as_ref(), &results, &commit);
    report(&results, args.run.json, ci.as_ref(), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn the_actor_is_the_ci_user_then_the_local_user_then_git_then_the_uid() {
        let none = || None;
        let system = || Some("ada".to_string());
        let git = || Some("Ada Lovelace".to_string());
        let ci = vars(&[("GITHUB_ACTOR", "octocat"), ("USER", "runner")]);
        assert_eq!(actor_from(&ci, system, git, 1000), "octocat");
        assert_eq!(actor_from(&vars(&[("USER", "bob"), ("LOGNAME", "b")]), system, git, 1000), "bob");
        assert_eq!(actor_from(&vars(&[("USER", " "), ("LOGNAME", "bee")]), system, git, 1000), "bee");
        assert_eq!(actor_from(&vars(&[("GITHUB_ACTOR", "")]), system, git, 1000), "ada");
        assert_eq!(actor_from(&vars(&[]), none, git, 1000), "Ada Lovelace");
        assert_eq!(actor_from(&vars(&[]), none, none, 1000), "uid 1000");
    }
}
