//! One interface for where deploys are recorded and servers are locked: the project's
//! local state in `.pier/` (the SQLite timeline and `flock` locks, for one machine) or
//! the shared state in the PostgreSQL database `PIER_DATABASE_URL` names (for every CI
//! runner of a team). The deploy and timeline commands see only [`State`].
//!
//! Which one: `PIER_DATABASE_URL` set selects the shared state; `[state] backend =
//! "postgres"` in `pier.toml` requires it, so that a runner without the variable refuses
//! to deploy rather than lock and record on its own.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config::{Config, StateBackend};
use super::lock::{self, LockError};
use super::shared::{self, DatabaseUrl, SharedError, SharedLock, SharedLog, SharedState};
use super::timeline::{self, Deploy, DeployLog, Ended, Found, Timeline, TimelineError};
use crate::exit::Exit;

/// Why the state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error("{0}")]
    Lock(#[from] LockError),
    #[error("{0}")]
    Shared(#[from] SharedError),
    #[error(
        "pier.toml says this project keeps its state in PostgreSQL ([state] backend = \"postgres\"), and \
         {} is not set: set it to the database's postgres:// URL",
        shared::DATABASE_URL_VAR
    )]
    NoDatabase,
    #[error(
        "{} is set, but pier.toml has no [project] id to keep this project's deploys apart in the database: \
         run `pier init` to add one and commit pier.toml",
        shared::DATABASE_URL_VAR
    )]
    NoProjectId,
    #[error("{0} (kept in .pier/unrecorded/: the next pier run here that reaches the database records it)")]
    Unrecorded(SharedError),
    /// A deploy id given on the command line that begins or ends several: these (newest
    /// first, at most [`timeline::CANDIDATES`]), of `all`.
    #[error("{}", ambiguous(given, ids, *all))]
    Ambiguous { given: String, ids: Vec<String>, all: usize },
    #[error("cannot create {path}: {source}")]
    Dir { path: String, source: std::io::Error },
}

fn ambiguous(given: &str, ids: &[String], all: usize) -> String {
    let mut named = ids.join(", ");
    if all > ids.len() {
        named.push_str(&format!(" and {} more", all - ids.len()));
    }
    format!("`{given}` names {all} deploys ({named}): give more of the id, or all of it, as `pier timeline` lists it")
}

impl StateError {
    /// The exit code: a server being deployed is 1 (as a failed deploy), configuration
    /// (and an ambiguous deploy id) 2, an unreachable or refusing database 4.
    pub fn exit(&self) -> Exit {
        match self {
            StateError::Lock(LockError::Busy { .. }) | StateError::Shared(SharedError::Busy { .. }) => {
                Exit::DeployFailed
            }
            StateError::Shared(SharedError::Url(_)) | StateError::NoDatabase | StateError::NoProjectId => {
                Exit::BadInput
            }
            StateError::Shared(_) | StateError::Unrecorded(_) => Exit::Provider,
            _ => Exit::BadInput,
        }
    }

    /// Whether another deploy of the server holds its lock.
    pub fn is_busy(&self) -> bool {
        self.exit() == Exit::DeployFailed
    }
}

/// Where the timeline and the locks are.
pub enum State {
    /// `.pier/` of the checkout.
    Local { dir: PathBuf, timeline: Timeline },
    /// The shared database; `dir` keeps the ends of deploys the database missed.
    Shared { shared: SharedState, dir: PathBuf },
}

/// How a deploy ended, kept in `.pier/unrecorded/ID.json` when the shared database could
/// not take it, and recorded when it is reachable again.
#[derive(serde::Serialize, serde::Deserialize)]
struct Unrecorded {
    status: timeline::Status,
    exit_code: i32,
    summary: String,
    url: Option<String>,
    #[serde(default)]
    release: Option<String>,
    /// The whole record, when the database has none to update (a rollback, recorded
    /// only once it ended); `started_at` set, and `runner` the machine it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<Deploy>,
}

impl Unrecorded {
    fn ended(&self) -> Ended<'_> {
        Ended {
            status: self.status,
            exit_code: self.exit_code,
            summary: &self.summary,
            url: self.url.as_deref(),
            release: self.release.as_deref(),
        }
    }

    fn of(ended: &Ended<'_>, record: Option<Deploy>) -> Unrecorded {
        Unrecorded {
            status: ended.status,
            exit_code: ended.exit_code,
            summary: ended.summary.to_string(),
            url: ended.url.map(str::to_string),
            release: ended.release.map(str::to_string),
            record,
        }
    }

    /// Keeps it as `.pier/unrecorded/ID.json` in `dir`.
    fn keep(&self, dir: &Path, id: &str) -> std::io::Result<()> {
        std::fs::create_dir_all(unrecorded_dir(dir))?;
        let json = serde_json::to_vec(self).unwrap_or_default();
        super::write_atomic(&unrecorded_dir(dir).join(format!("{id}.json")), &json, 0o600)
    }
}

/// A rollback of a server, as [`State::record_rollback`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Rollback<'a> {
    /// The server (its alias).
    pub server: &'a str,
    /// Its method.
    pub method: &'a str,
    /// Who or what asked for it.
    pub actor: &'a str,
    /// The machine that ran it ([`runner`]), recorded with the shared state.
    pub runner: &'a str,
    /// The commit and branch live again, when known (those of the deploy `--to DEPLOY_ID`
    /// named); else empty.
    pub commit: &'a str,
    pub branch: &'a str,
    /// One (already redacted) line: what the method did.
    pub summary: &'a str,
    /// The provider's name for what is live now, when the method named it.
    pub release: Option<&'a str>,
    /// Where the app can be seen, when known.
    pub url: Option<&'a str>,
}

fn unrecorded_dir(dir: &Path) -> PathBuf {
    dir.join("unrecorded")
}

/// A server's deploy lock, held while it lives.
pub enum ServerLock {
    Local(lock::Lock),
    Shared(SharedLock),
}

impl ServerLock {
    /// Whether the lock is still held: a local lock cannot be lost; a shared one is asked
    /// of the database, and lost with its connection.
    pub async fn confirm(&self) -> Result<(), String> {
        match self {
            ServerLock::Local(_) => Ok(()),
            ServerLock::Shared(lock) => lock.confirm().await.map_err(|e| e.to_string()),
        }
    }
}

/// The database side of a running deploy's log, with the shared state: what
/// [`State::finish`] flushes.
pub struct LogStream(Option<SharedLog>);

/// How a deploy's record ended up, when it did not all arrive.
#[derive(Debug, Default)]
pub struct Recorded {
    /// Lines of the log that did not reach the database, and why.
    pub unsent: Option<String>,
}

/// The machine a deploy runs on, as the shared timeline names it: the CI runner's name
/// when the CI gives one, else the host name.
pub fn runner() -> String {
    for var in ["RUNNER_NAME", "CI_RUNNER_DESCRIPTION", "BUILDKITE_AGENT_NAME", "NODE_NAME"] {
        if let Ok(name) = std::env::var(var)
            && !name.trim().is_empty()
        {
            return crate::caps::events::inert(name.trim());
        }
    }
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

impl State {
    /// The state `config` and the environment select; the local one lives in `state_dir`.
    pub async fn open(config: &Config, state_dir: &Path) -> Result<State, StateError> {
        match DatabaseUrl::from_env()? {
            Some(url) => {
                let project = config.project_id().ok_or(StateError::NoProjectId)?;
                let state =
                    State::Shared { shared: shared::connect(&url, project).await?, dir: state_dir.to_path_buf() };
                state.record_missed().await;
                Ok(state)
            }
            None if config.state_backend() == StateBackend::Postgres => Err(StateError::NoDatabase),
            None => {
                std::fs::create_dir_all(state_dir)
                    .map_err(|source| StateError::Dir { path: state_dir.display().to_string(), source })?;
                let _ = std::fs::write(state_dir.join(".gitignore"), "# Local state of pier: not for committing.\n*\n");
                Ok(State::Local { dir: state_dir.to_path_buf(), timeline: Timeline::open(state_dir)? })
            }
        }
    }

    /// Whether this is the shared state.
    pub fn is_shared(&self) -> bool {
        matches!(self, State::Shared { .. })
    }

    /// Records the ends of deploys that the shared database missed on this machine.
    async fn record_missed(&self) {
        let State::Shared { shared, dir } = self else { return };
        let Ok(entries) = std::fs::read_dir(unrecorded_dir(dir)) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(id) = path.file_stem().and_then(|s| s.to_str()).filter(|id| timeline::valid_id(id)) else {
                continue;
            };
            let Some(missed) = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Unrecorded>(&b).ok())
            else {
                continue;
            };
            let ended = missed.ended();
            let recorded = match &missed.record {
                Some(d) => shared.record(d, d.runner.as_deref().unwrap_or_default(), &ended).await,
                None => shared.finish(id, &ended).await,
            };
            if recorded.is_ok() {
                let _ = std::fs::remove_file(&path);
                match &missed.record {
                    Some(d) => eprintln!(
                        "recorded {} {id} of {} ({}), which the shared timeline had missed",
                        d.trigger, d.server, missed.status
                    ),
                    None => eprintln!(
                        "recorded how deploy {id} ended ({}), which the shared timeline had missed",
                        missed.status
                    ),
                }
            }
        }
    }

    /// Takes the deploy lock of `server`, waiting up to `wait` for a running deploy.
    pub async fn lock(
        &self,
        server: &str,
        deploy_id: &str,
        runner: &str,
        wait: Duration,
    ) -> Result<ServerLock, StateError> {
        Ok(match self {
            State::Local { dir, .. } => ServerLock::Local(lock::lock(dir, server, deploy_id, wait).await?),
            State::Shared { shared, .. } => ServerLock::Shared(shared.lock(server, deploy_id, runner, wait).await?),
        })
    }

    /// Marks `interrupted` the running deploys (of `held`, whose lock this process holds,
    /// or of every server) whose process is gone; returns their ids.
    pub async fn reconcile(&self, held: Option<&str>) -> Result<Vec<String>, StateError> {
        Ok(match self {
            State::Local { dir, timeline } => crate::deploy::reconcile(dir, timeline, held)?,
            State::Shared { shared, .. } => shared.reconcile(held).await?,
        })
    }

    /// Records `d` as running (on `runner`); returns the log it writes to (bounded; in
    /// its file, or streamed to the database) and, with the shared state, its stream.
    pub async fn start(&self, d: &Deploy, runner: &str) -> Result<(DeployLog, LogStream), StateError> {
        Ok(match self {
            State::Local { timeline, .. } => (timeline.start(d)?, LogStream(None)),
            State::Shared { shared, .. } => {
                shared.start(d, runner).await?;
                let stream = shared.log(&d.id);
                let tee = stream.pusher();
                let log = DeployLog::streaming(Box::new(move |line: &str, now: bool| {
                    tee.push(line.to_string());
                    if now {
                        tee.send_now();
                    }
                }));
                (log, LogStream(Some(stream)))
            }
        })
    }

    /// Records how deploy `id` ended, with its log (`text`, as [`DeployLog::finish`]
    /// returned it; the shared state has it already, through `stream`).
    pub async fn finish(
        &self,
        id: &str,
        ended: Ended<'_>,
        text: &str,
        stream: LogStream,
    ) -> Result<Recorded, StateError> {
        match self {
            State::Local { timeline, .. } => {
                timeline.finish(id, ended, text)?;
                Ok(Recorded::default())
            }
            State::Shared { shared, dir } => {
                let report = match stream.0 {
                    Some(stream) => Some(stream.close().await),
                    None => None,
                };
                if let Err(e) = shared.finish(id, &ended).await {
                    // Kept here, and recorded by the next run that reaches the database.
                    return Err(match Unrecorded::of(&ended, None).keep(dir, id) {
                        Ok(()) => StateError::Unrecorded(e),
                        Err(_) => StateError::Shared(e),
                    });
                }
                let unsent = report.filter(|r| !r.complete()).map(|r| {
                    format!(
                        "{} log lines did not reach the database{}",
                        r.unsent,
                        r.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    )
                });
                Ok(Recorded { unsent })
            }
        }
    }

    /// Records a rollback of `r.server`, once the method has made an earlier release
    /// live again: one finished entry of the timeline, of a new id, trigger `rollback`,
    /// succeeded (exit 0), with no log, started and ended now. `pier timeline` shows it as
    /// any deploy, and it is the server's newest succeeded entry (it is what is live).
    /// Returns its id.
    ///
    /// With the shared state, a rollback the database cannot take is kept in
    /// `.pier/unrecorded/` (with the time it ended) and recorded by the next run that
    /// reaches it: then this is [`StateError::Unrecorded`].
    pub async fn record_rollback(&self, r: &Rollback<'_>) -> Result<String, StateError> {
        let mut d = Deploy {
            runner: self.is_shared().then(|| r.runner.to_string()),
            status: timeline::Status::Succeeded,
            exit_code: Some(0),
            summary: Some(r.summary.to_string()),
            url: r.url.map(str::to_string),
            release: r.release.map(str::to_string),
            ..Deploy::running(&timeline::new_id(), r.server, r.method, r.commit, r.branch, "rollback", r.actor)
        };
        let ended = Ended {
            status: timeline::Status::Succeeded,
            exit_code: 0,
            summary: r.summary,
            url: r.url,
            release: r.release,
        };
        match self {
            State::Local { timeline, .. } => timeline.record(&d, ended, "")?,
            State::Shared { shared, dir } => {
                if let Err(e) = shared.record(&d, r.runner, &ended).await {
                    d.started_at = timeline::now();
                    return Err(match Unrecorded::of(&ended, Some(d.clone())).keep(dir, &d.id) {
                        Ok(()) => StateError::Unrecorded(e),
                        Err(_) => StateError::Shared(e),
                    });
                }
            }
        }
        Ok(d.id)
    }

    /// The deploy `text` names (its id, or a part only that id begins or ends with, as
    /// [`State::find`]), for `pier rollback --to DEPLOY_ID`: its `server`, and the
    /// `release` it made live (none when it failed, or its method named none), with its
    /// `commit` and `branch`. `None` when no deploy has such an id;
    /// [`StateError::Ambiguous`] when several do.
    pub async fn release_of(&self, text: &str) -> Result<Option<Deploy>, StateError> {
        match self.find(text).await? {
            Found::None => Ok(None),
            Found::One(id) => Ok(match self {
                State::Local { timeline, .. } => timeline.deploy(&id)?,
                State::Shared { shared, .. } => shared.deploy(&id).await?,
            }),
            Found::Several(ids, all) => Err(StateError::Ambiguous { given: text.trim().to_string(), ids, all }),
        }
    }

    /// Deploys, newest first, of one server or all.
    pub async fn list(&self, server: Option<&str>, limit: usize) -> Result<Vec<Deploy>, StateError> {
        Ok(match self {
            State::Local { timeline, .. } => timeline.list(server, limit)?,
            State::Shared { shared, .. } => shared.list(server, limit).await?,
        })
    }

    /// One deploy and its log.
    pub async fn get(&self, id: &str) -> Result<Option<(Deploy, String)>, StateError> {
        Ok(match self {
            State::Local { timeline, .. } => timeline.get(id)?,
            State::Shared { shared, .. } => shared.get(id).await?,
        })
    }

    /// The deploy `text` names: its id, or a part only that id begins or ends with.
    pub async fn find(&self, text: &str) -> Result<Found, StateError> {
        Ok(match self {
            State::Local { timeline, .. } => timeline.find(text)?,
            State::Shared { shared, .. } => {
                let text = text.trim().to_ascii_lowercase();
                if text.is_empty() {
                    return Ok(Found::None);
                }
                let ids = shared.find(&text).await?;
                match ids.as_slice() {
                    [] => Found::None,
                    [only] => Found::One(only.clone()),
                    _ if ids.contains(&text) => Found::One(text),
                    _ => Found::Several(ids.iter().take(timeline::CANDIDATES).cloned().collect(), ids.len()),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_end_kept_before_releases_is_still_read() {
        let old = br#"{"status":"succeeded","exit_code":0,"summary":"released v1","url":null}"#;
        let missed: Unrecorded = serde_json::from_slice(old).unwrap();
        let ended = missed.ended();
        assert_eq!((ended.status, ended.summary, ended.release), (timeline::Status::Succeeded, "released v1", None));
        assert!(missed.record.is_none());
    }
}
