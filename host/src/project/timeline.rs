//! The deployment timeline (S10): every deploy of every server, who and what and when, its
//! result and its (redacted) log, in an embedded SQLite database under `.pier/`.
//!
//! A deploy is recorded as `running` before it starts and updated when it ends. Its log is
//! also appended to `.pier/logs/ID.log` as it runs (brought up to date at every step and
//! every 200 ms), so a deploy that was killed keeps the log it had. A log is bounded
//! ([`DeployLog`]): 16 MiB of output lines and 1 MiB more of Pier's own, then one line
//! saying what was dropped. A `running` deploy whose server lock nobody holds belongs to a
//! process that died: [`Timeline::reconcile`] marks it `interrupted`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

/// How a deploy ended, or that it has not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Interrupted => "interrupted",
        }
    }

    fn parse(text: &str) -> Status {
        match text {
            "running" => Status::Running,
            "succeeded" => Status::Succeeded,
            "failed" => Status::Failed,
            _ => Status::Interrupted,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Deploy {
    pub id: String,
    pub server: String,
    pub method: String,
    pub commit: String,
    pub branch: String,
    pub build: Option<String>,
    /// `manual` or `automatic`, or `rollback` for a rollback of the server (see
    /// [`super::state::State::record_rollback`]).
    pub trigger: String,
    /// Who or what asked for it.
    pub actor: String,
    /// The machine (CI runner) that ran it, when the timeline is shared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runner: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub ended_at: Option<String>,
    pub status: Status,
    pub exit_code: Option<i32>,
    /// One line: what happened.
    pub summary: Option<String>,
    /// Where the deployed app can be seen, when the deploy succeeded and knew it: the
    /// server's URL, else the one the method reported.
    pub url: Option<String>,
    /// The provider's name for what the deploy made live (Heroku's `v42`), when it
    /// succeeded and its method named one: what `pier rollback --to` returns to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
}

impl Deploy {
    /// A deploy `id` of `server` with `method`, of `commit` on `branch`, asked for by
    /// `actor` with `trigger`, as it is recorded when it starts: running, nothing else
    /// known yet.
    pub fn running(
        id: &str,
        server: &str,
        method: &str,
        commit: &str,
        branch: &str,
        trigger: &str,
        actor: &str,
    ) -> Deploy {
        Deploy {
            id: id.into(),
            server: server.into(),
            method: method.into(),
            commit: commit.into(),
            branch: branch.into(),
            build: None,
            trigger: trigger.into(),
            actor: actor.into(),
            runner: None,
            started_at: String::new(),
            ended_at: None,
            status: Status::Running,
            exit_code: None,
            summary: None,
            url: None,
            release: None,
        }
    }
}

/// What a deploy id given on the command line names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// One deploy: the id, or the only one it begins or ends.
    One(String),
    /// No deploy.
    None,
    /// Several: these ids, newest first (at most [`CANDIDATES`]), and how many in all.
    Several(Vec<String>, usize),
}

/// How many candidates [`Timeline::find`] returns for an ambiguous id.
pub const CANDIDATES: usize = 5;

/// Why the timeline cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("timeline database {path}: {source}")]
    Db { path: String, source: rusqlite::Error },
    #[error("timeline {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The timeline of one project.
pub struct Timeline {
    conn: Connection,
    path: PathBuf,
    logs: PathBuf,
    /// How long a write keeps trying while the database is busy.
    patience: std::time::Duration,
    /// How many times a write found the database busy and tried again.
    retries: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deploys (
    id          TEXT PRIMARY KEY,
    server      TEXT NOT NULL,
    method      TEXT NOT NULL,
    git_commit  TEXT NOT NULL,
    branch      TEXT NOT NULL,
    build       TEXT,
    trigger     TEXT NOT NULL,
    actor       TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    status      TEXT NOT NULL,
    exit_code   INTEGER,
    summary     TEXT,
    log         TEXT,
    url         TEXT,
    release     TEXT
);
CREATE INDEX IF NOT EXISTS deploys_server ON deploys (server, started_at);
";

/// The timeline's database file, in the state directory.
pub const FILE: &str = "timeline.sqlite";

/// How long one statement waits for another process's write (SQLite's busy handler).
const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a write keeps trying while the database stays busy.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(120);

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')";

impl Timeline {
    /// Opens (creating if needed) the timeline in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Timeline, TimelineError> {
        Self::open_with(state_dir, BUSY_WAIT, PATIENCE)
    }

    /// The same, waiting `busy_wait` per statement and `patience` in all.
    fn open_with(
        state_dir: &Path,
        busy_wait: std::time::Duration,
        patience: std::time::Duration,
    ) -> Result<Timeline, TimelineError> {
        let path = state_dir.join(FILE);
        let logs = state_dir.join("logs");
        let io = |source| TimelineError::Io { path: logs.display().to_string(), source };
        std::fs::create_dir_all(&logs).map_err(io)?;
        let db = |source| TimelineError::Db { path: path.display().to_string(), source };
        let conn = Connection::open(&path).map_err(db)?;
        conn.busy_timeout(busy_wait).map_err(db)?;
        let timeline = Timeline { conn, path, logs, patience, retries: Default::default() };
        // Even setting the database up waits out another process's write.
        timeline.patiently(|c| c.pragma_update(None, "journal_mode", "WAL")).map_err(|e| timeline.db(e))?;
        // A finished deploy's log passes through the journal: do not keep it there too.
        timeline.patiently(|c| c.pragma_update(None, "journal_size_limit", 4 << 20)).map_err(|e| timeline.db(e))?;
        timeline.patiently(|c| c.execute_batch(SCHEMA)).map_err(|e| timeline.db(e))?;
        for (name, kind) in ADDED_COLUMNS {
            timeline.patiently(|c| add_column(c, name, kind)).map_err(|e| timeline.db(e))?;
        }
        Ok(timeline)
    }

    /// Runs `write`, again and again with growing pauses while the database is busy or
    /// locked by another process (a `pier timeline`, another deploy), for up to the
    /// timeline's patience: a deploy's record is never lost to a busy database.
    fn patiently<T>(&self, mut write: impl FnMut(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let deadline = std::time::Instant::now() + self.patience;
        let mut pause = std::time::Duration::from_millis(20);
        loop {
            match write(&self.conn) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                        && std::time::Instant::now() + pause < deadline =>
                {
                    tracing::warn!("the timeline database is busy; trying again in {pause:?}");
                    self.retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    fn db(&self, source: rusqlite::Error) -> TimelineError {
        TimelineError::Db { path: self.path.display().to_string(), source }
    }

    /// Where the live log of deploy `id` is written.
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.logs.join(format!("{id}.log"))
    }

    /// Records a deploy as running; returns the log it writes to.
    pub fn start(&self, d: &Deploy) -> Result<DeployLog, TimelineError> {
        self.patiently(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO deploys (id, server, method, git_commit, branch, build, trigger, actor, started_at, status)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, {NOW}, 'running')"
                ),
                params![d.id, d.server, d.method, d.commit, d.branch, d.build, d.trigger, d.actor],
            )
        })
        .map_err(|e| self.db(e))?;
        let path = self.log_path(&d.id);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| TimelineError::Io { path: path.display().to_string(), source })?;
        Ok(DeployLog::new(Some((file, path))))
    }

    /// Records how deploy `id` ended, with its log and, when they are known, the URL of
    /// the deployed app and the release it made live.
    pub fn finish(&self, id: &str, ended: Ended<'_>, log: &str) -> Result<(), TimelineError> {
        self.patiently(|conn| {
            conn.execute(
                &format!(
                    "UPDATE deploys SET status = ?2, exit_code = ?3, summary = ?4, log = ?5, url = ?6, release = ?7,
                     ended_at = {NOW}
                     WHERE id = ?1"
                ),
                params![id, ended.status.as_str(), ended.exit_code, ended.summary, log, ended.url, ended.release],
            )
        })
        .map_err(|e| self.db(e))?;
        let _ = std::fs::remove_file(self.log_path(id));
        Ok(())
    }

    /// Records `d`, which has already ended as `ended` (a rollback: nothing ran here to
    /// log as it went), with its log: started and ended now, or at `d.started_at` when
    /// it is set. A deploy of its id already recorded is kept as it is.
    pub fn record(&self, d: &Deploy, ended: Ended<'_>, log: &str) -> Result<(), TimelineError> {
        self.patiently(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO deploys (id, server, method, git_commit, branch, build, trigger, actor, started_at,
                         ended_at, status, exit_code, summary, log, url, release)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, coalesce(nullif(?9, ''), {NOW}),
                         coalesce(nullif(?9, ''), {NOW}), ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT (id) DO NOTHING"
                ),
                params![
                    d.id,
                    d.server,
                    d.method,
                    d.commit,
                    d.branch,
                    d.build,
                    d.trigger,
                    d.actor,
                    d.started_at,
                    ended.status.as_str(),
                    ended.exit_code,
                    ended.summary,
                    log,
                    ended.url,
                    ended.release
                ],
            )
        })
        .map_err(|e| self.db(e))?;
        Ok(())
    }

    /// Marks deploy `id` interrupted, keeping the log it had written.
    pub fn interrupt(&self, id: &str) -> Result<(), TimelineError> {
        let log = read_log(&self.log_path(id));
        let ended = Ended {
            status: Status::Interrupted,
            exit_code: 130,
            summary: "interrupted: the deploying process ended before the deploy did",
            url: None,
            release: None,
        };
        self.finish(id, ended, &log)
    }

    /// Marks `interrupted` every running deploy for which `is_stale` says its process is gone.
    pub fn reconcile(&self, is_stale: impl Fn(&Deploy) -> bool) -> Result<Vec<String>, TimelineError> {
        let mut marked = Vec::new();
        for d in self.list(None, usize::MAX)?.into_iter().filter(|d| d.status == Status::Running) {
            if is_stale(&d) {
                self.interrupt(&d.id)?;
                marked.push(d.id);
            }
        }
        Ok(marked)
    }

    /// Deploys, newest first, of one server or all.
    pub fn list(&self, server: Option<&str>, limit: usize) -> Result<Vec<Deploy>, TimelineError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, server, method, git_commit, branch, build, trigger, actor, started_at, ended_at, status, exit_code, summary, url, release
                 FROM deploys WHERE (?1 IS NULL OR server = ?1) ORDER BY started_at DESC, rowid DESC LIMIT ?2",
            )
            .map_err(|e| self.db(e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt.query_map(params![server, limit], row).map_err(|e| self.db(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.db(e))
    }

    /// The URL of the newest succeeded deploy of `server` that recorded one.
    pub fn last_url(&self, server: &str) -> Result<Option<String>, TimelineError> {
        self.conn
            .query_row(
                "SELECT url FROM deploys WHERE server = ?1 AND status = 'succeeded' AND url IS NOT NULL AND url != ''
                 ORDER BY started_at DESC, rowid DESC LIMIT 1",
                params![server],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// The deploy that `text` names: its id, or a part of one that only one id begins or
    /// ends with (ids are `TIME-RANDOM`: the random end is short and unique in practice).
    pub fn find(&self, text: &str) -> Result<Found, TimelineError> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() {
            return Ok(Found::None);
        }
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id FROM deploys
                 WHERE id = ?1 OR substr(id, 1, length(?1)) = ?1 OR substr(id, -length(?1)) = ?1
                 ORDER BY id = ?1 DESC, started_at DESC, rowid DESC",
            )
            .map_err(|e| self.db(e))?;
        let ids = stmt
            .query_map(params![text], |r| r.get::<_, String>(0))
            .map_err(|e| self.db(e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.db(e))?;
        Ok(match ids.as_slice() {
            [] => Found::None,
            [only] => Found::One(only.clone()),
            [first, ..] if *first == text => Found::One(first.clone()),
            _ => Found::Several(ids.iter().take(CANDIDATES).cloned().collect(), ids.len()),
        })
    }

    /// One deploy, without its log.
    pub fn deploy(&self, id: &str) -> Result<Option<Deploy>, TimelineError> {
        self.conn
            .query_row(
                "SELECT id, server, method, git_commit, branch, build, trigger, actor, started_at, ended_at, status, exit_code, summary, url, release
                 FROM deploys WHERE id = ?1",
                params![id],
                row,
            )
            .optional()
            .map_err(|e| self.db(e))
    }

    /// One deploy and its log (the live log while it runs).
    pub fn get(&self, id: &str) -> Result<Option<(Deploy, String)>, TimelineError> {
        let found = self
            .conn
            .query_row(
                "SELECT id, server, method, git_commit, branch, build, trigger, actor, started_at, ended_at, status, exit_code, summary, url, release, log
                 FROM deploys WHERE id = ?1",
                params![id],
                |r| Ok((row(r)?, r.get::<_, Option<String>>(15)?)),
            )
            .optional()
            .map_err(|e| self.db(e))?;
        Ok(found.map(|(d, log)| {
            let log = log.unwrap_or_else(|| read_log(&self.log_path(id)));
            (d, log)
        }))
    }
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Deploy> {
    Ok(Deploy {
        id: r.get(0)?,
        server: r.get(1)?,
        method: r.get(2)?,
        commit: r.get(3)?,
        branch: r.get(4)?,
        build: r.get(5)?,
        trigger: r.get(6)?,
        actor: r.get(7)?,
        runner: None,
        started_at: r.get(8)?,
        ended_at: r.get(9)?,
        status: Status::parse(&r.get::<_, String>(10)?),
        exit_code: r.get(11)?,
        summary: r.get(12)?,
        url: r.get(13)?,
        release: r.get(14)?,
    })
}

/// How a deploy ended, as [`Timeline::finish`] records it.
#[derive(Debug, Clone, Copy)]
pub struct Ended<'a> {
    pub status: Status,
    pub exit_code: i32,
    pub summary: &'a str,
    /// Where the deployed app can be seen, when known.
    pub url: Option<&'a str>,
    /// The provider's name for what the deploy made live, when it succeeded and its
    /// method named one.
    pub release: Option<&'a str>,
}

/// The columns of `deploys` added after its first release, with their types: a timeline
/// created before one existed gets it when opened ([`add_column`]).
const ADDED_COLUMNS: [(&str, &str); 2] = [("url", "TEXT"), ("release", "TEXT")];

/// Adds column `name` (of type `kind`, both from [`ADDED_COLUMNS`]) to the `deploys` of a
/// timeline created before it existed. Two processes may open an old timeline at once:
/// the one that finds the column already added is done.
fn add_column(conn: &Connection, name: &str, kind: &str) -> rusqlite::Result<()> {
    let has = |conn: &Connection| -> rusqlite::Result<bool> {
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('deploys') WHERE name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n > 0)
    };
    if has(conn)? {
        return Ok(());
    }
    match conn.execute_batch(&format!("ALTER TABLE deploys ADD COLUMN {name} {kind}")) {
        Err(_) if has(conn)? => Ok(()),
        other => other,
    }
}

/// Bytes of output lines one deploy's log keeps.
pub const LOG_OUTPUT: u64 = 16 << 20;
/// Bytes of Pier's own lines (steps, warnings, errors) a log keeps beyond [`LOG_OUTPUT`],
/// so that how a deploy ended is in its log even after a flood of output.
pub const LOG_NOTES: u64 = 1 << 20;
/// How often a live log's file is brought up to date while lines stream in.
const FLUSH_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Where a streamed log's kept lines go, one at a time, with whether the line is Pier's
/// own (a step, a warning, an error: worth sending at once) rather than output.
pub type Tee = Box<dyn Fn(&str, bool) + Send>;

/// The log of a running deploy, appended to its file as it runs (or kept in memory), and
/// bounded: it keeps [`LOG_OUTPUT`] bytes of output lines and [`LOG_NOTES`] more of Pier's
/// own, counts what it drops, and [`DeployLog::finish`] ends it with one line saying how
/// much that was.
pub struct DeployLog {
    file: Option<(std::io::BufWriter<std::fs::File>, PathBuf)>,
    /// Where kept lines go instead of the file or the text, when the log is streamed.
    tee: Option<Tee>,
    /// The text, when there is no file.
    text: String,
    kept: u64,
    /// Whether an output line did not fit: none is kept after it.
    full: bool,
    dropped_bytes: u64,
    dropped_lines: u64,
    flushed: std::time::Instant,
}

impl DeployLog {
    fn new(file: Option<(std::fs::File, PathBuf)>) -> DeployLog {
        DeployLog {
            file: file.map(|(file, path)| (std::io::BufWriter::with_capacity(64 << 10, file), path)),
            tee: None,
            text: String::new(),
            kept: 0,
            full: false,
            dropped_bytes: 0,
            dropped_lines: 0,
            flushed: std::time::Instant::now(),
        }
    }

    /// A log kept only in memory.
    pub fn memory() -> DeployLog {
        DeployLog::new(None)
    }

    /// A log whose kept lines (bounded as any log's) go to `tee` as they are written, and
    /// are not kept here: [`DeployLog::finish`] sends its closing line there too and returns
    /// nothing.
    pub fn streaming(tee: Tee) -> DeployLog {
        DeployLog { tee: Some(tee), ..DeployLog::new(None) }
    }

    /// Appends one (already redacted) line of output, if the log still keeps output.
    pub fn line(&mut self, line: &str) {
        self.append(line, LOG_OUTPUT);
    }

    /// Appends one (already redacted) line of Pier's own: a step, a warning, an error.
    pub fn note(&mut self, line: &str) {
        self.append(line, LOG_OUTPUT + LOG_NOTES);
        self.flush();
    }

    fn append(&mut self, line: &str, limit: u64) {
        let size = line.len() as u64 + 1;
        if self.kept + size > limit {
            self.unkept(size, 1);
            self.full |= limit == LOG_OUTPUT;
            return;
        }
        self.kept += size;
        if let Some(tee) = &self.tee {
            tee(line, limit != LOG_OUTPUT);
            return;
        }
        self.write(line);
        if self.flushed.elapsed() >= FLUSH_EVERY {
            self.flush();
        }
    }

    fn write(&mut self, line: &str) {
        if let Some(tee) = &self.tee {
            tee(line, true);
            return;
        }
        match &mut self.file {
            Some((file, _)) => {
                let _ = writeln!(file, "{line}");
            }
            None => {
                self.text.push_str(line);
                self.text.push('\n');
            }
        }
    }

    fn flush(&mut self) {
        if let Some((file, _)) = &mut self.file {
            let _ = file.flush();
        }
        self.flushed = std::time::Instant::now();
    }

    /// Whether output lines are still kept.
    pub fn has_room(&self) -> bool {
        !self.full && self.kept < LOG_OUTPUT
    }

    /// Counts output that never reached the log: `bytes` in `lines` lines.
    pub fn unkept(&mut self, bytes: u64, lines: u64) {
        self.dropped_bytes += bytes;
        self.dropped_lines += lines;
    }

    /// Ends the log with a line saying what it dropped, if it dropped anything, and
    /// returns all of it.
    pub fn finish(&mut self) -> String {
        if self.dropped_lines > 0 {
            let line = format!(
                "[log cut: {} in {} not kept: a deploy's log keeps {} MiB]",
                crate::caps::events::count(self.dropped_bytes, "byte"),
                crate::caps::events::count(self.dropped_lines, "line"),
                LOG_OUTPUT >> 20
            );
            (self.dropped_bytes, self.dropped_lines) = (0, 0);
            self.write(&line);
        }
        self.flush();
        match &self.file {
            Some((_, path)) => read_log(path),
            None => self.text.clone(),
        }
    }
}

/// The log file at `path`, as much of it as a log may hold.
fn read_log(path: &Path) -> String {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(LOG_OUTPUT + LOG_NOTES + (64 << 10)).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `secs` since the Unix epoch as RFC 3339 in UTC, to the second (as the timeline keeps
/// times): `2026-12-01T15:04:21Z`.
pub fn rfc3339(secs: u64) -> String {
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (Howard Hinnant's algorithm), from 1970-01-01.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Now, as [`rfc3339`].
pub fn now() -> String {
    rfc3339(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0))
}

/// Whether `id` has the form [`new_id`] gives: hex, `-`, hex (a safe file name).
pub fn valid_id(id: &str) -> bool {
    id.split_once('-').is_some_and(|(time, random)| {
        [time, random]
            .iter()
            .all(|part| !part.is_empty() && part.len() <= 16 && part.bytes().all(|b| b.is_ascii_hexdigit()))
    })
}

/// A new deploy id: UTC time to the second, then random hex, so ids sort by time.
pub fn new_id() -> String {
    use rand_core::RngCore as _;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut suffix = [0u8; 3];
    rand_core::OsRng.fill_bytes(&mut suffix);
    format!("{secs:x}-{}", hex::encode(suffix))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(id: &str) -> Deploy {
        Deploy::running(id, "prod", "heroku", "abc", "main", "manual", "ada")
    }

    fn ended<'a>(status: Status, summary: &'a str, url: Option<&'a str>) -> Ended<'a> {
        let exit_code = if status == Status::Succeeded { 0 } else { 1 };
        Ended { status, exit_code, summary, url, release: None }
    }

    #[test]
    fn a_deploy_is_recorded_even_while_another_process_holds_the_database() {
        use std::sync::atomic::Ordering;
        let dir = tempfile::tempdir().unwrap();
        // Each statement waits only 10 ms: without retries the write would fail at once.
        let timeline =
            Timeline::open_with(dir.path(), std::time::Duration::from_millis(10), std::time::Duration::from_secs(60))
                .unwrap();
        timeline.start(&deploy("a")).unwrap();
        let retries = timeline.retries.clone();
        let path = timeline.path.clone();
        let (locked, is_locked) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            // Another process's write transaction, held until the deploy has found the
            // database busy twice.
            let other = Connection::open(&path).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while retries.load(Ordering::Relaxed) < 2 && std::time::Instant::now() < deadline {
                std::thread::yield_now();
            }
            other.execute_batch("COMMIT").unwrap();
        });
        is_locked.recv().unwrap();
        timeline.finish("a", ended(Status::Succeeded, "released v1", None), "log").unwrap();
        holder.join().unwrap();
        assert!(timeline.retries.load(Ordering::Relaxed) >= 2);
        let (d, log) = timeline.get("a").unwrap().unwrap();
        assert_eq!((d.status, log.as_str()), (Status::Succeeded, "log"));
    }

    #[test]
    fn records_deploys_and_reconciles_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let timeline = Timeline::open(dir.path()).unwrap();
        let mut log = timeline.start(&deploy("a")).unwrap();
        log.line("building");
        timeline.finish("a", ended(Status::Succeeded, "released v1", None), &log.finish()).unwrap();
        let mut log = timeline.start(&deploy("b")).unwrap();
        log.line("half way");
        drop(log);
        assert_eq!(timeline.reconcile(|d| d.id == "b").unwrap(), ["b"]);
        let list = timeline.list(Some("prod"), 10).unwrap();
        assert_eq!(list.len(), 2);
        let (b, log) = timeline.get("b").unwrap().unwrap();
        assert_eq!(b.status, Status::Interrupted);
        assert_eq!(log, "half way\n");
        let (a, log) = timeline.get("a").unwrap().unwrap();
        assert_eq!((a.status, a.exit_code, log.as_str()), (Status::Succeeded, Some(0), "building\n"));
        assert!(timeline.get("zzz").unwrap().is_none());
    }

    #[test]
    fn a_deploy_is_found_by_its_id_or_a_unique_beginning_or_end() {
        let dir = tempfile::tempdir().unwrap();
        let timeline = Timeline::open(dir.path()).unwrap();
        for id in ["6b0ee1f5-72718f", "6b0ee1f5-17b202", "6b0ee2a0-17b2aa", "17b2"] {
            timeline.start(&deploy(id)).unwrap();
        }
        let one = |id: &str| Found::One(id.to_string());
        assert_eq!(timeline.find("6b0ee1f5-72718f").unwrap(), one("6b0ee1f5-72718f"));
        assert_eq!(timeline.find("72718f").unwrap(), one("6b0ee1f5-72718f"));
        assert_eq!(timeline.find(" 72718F ").unwrap(), one("6b0ee1f5-72718f"), "trimmed, any case");
        assert_eq!(timeline.find("6b0ee2").unwrap(), one("6b0ee2a0-17b2aa"));
        // An id that is also the beginning of others is itself.
        assert_eq!(timeline.find("17b2").unwrap(), one("17b2"));
        assert_eq!(timeline.find("nothing").unwrap(), Found::None);
        assert_eq!(timeline.find("").unwrap(), Found::None);
        let Found::Several(ids, all) = timeline.find("6b0ee1f5").unwrap() else { panic!("ambiguous") };
        assert_eq!(all, 2);
        let mut ids = ids;
        ids.sort();
        assert_eq!(ids, ["6b0ee1f5-17b202", "6b0ee1f5-72718f"]);
        for id in 0..10 {
            timeline.start(&deploy(&format!("aa-{id}"))).unwrap();
        }
        let Found::Several(ids, all) = timeline.find("aa-").unwrap() else { panic!("ambiguous") };
        assert_eq!((ids.len(), all), (CANDIDATES, 10));
    }

    #[test]
    fn the_url_of_the_last_succeeded_deploy_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let timeline = Timeline::open(dir.path()).unwrap();
        assert_eq!(timeline.last_url("prod").unwrap(), None);
        timeline.start(&deploy("a")).unwrap();
        timeline.finish("a", ended(Status::Succeeded, "v1", Some("https://one.example")), "").unwrap();
        timeline.start(&deploy("b")).unwrap();
        timeline.finish("b", ended(Status::Failed, "broken", Some("https://failed.example")), "").unwrap();
        timeline.start(&deploy("c")).unwrap();
        timeline.finish("c", ended(Status::Succeeded, "v2", None), "").unwrap();
        assert_eq!(timeline.last_url("prod").unwrap().as_deref(), Some("https://one.example"));
        assert_eq!(timeline.last_url("other").unwrap(), None);
        assert_eq!(timeline.get("a").unwrap().unwrap().0.url.as_deref(), Some("https://one.example"));
    }

    #[test]
    fn a_timeline_from_before_urls_gets_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let old = Connection::open(dir.path().join("timeline.sqlite")).unwrap();
        let schema = SCHEMA.replace(",\n    url         TEXT", "").replace(",\n    release     TEXT", "");
        assert!(!schema.contains("url") && !schema.contains("release"), "{schema}");
        old.execute_batch(&schema).unwrap();
        old.execute(
            "INSERT INTO deploys (id, server, method, git_commit, branch, trigger, actor, started_at, status)
             VALUES ('old', 'prod', 'heroku', 'abc', 'main', 'manual', 'ada', '2020-01-01T00:00:00Z', 'succeeded')",
            [],
        )
        .unwrap();
        assert!(old.prepare("SELECT url FROM deploys").is_err(), "the old schema has no url");
        drop(old);
        let timeline = Timeline::open(dir.path()).unwrap();
        assert_eq!(timeline.get("old").unwrap().unwrap().0.url, None);
        timeline.start(&deploy("new")).unwrap();
        timeline.finish("new", ended(Status::Succeeded, "v1", Some("https://app.example")), "").unwrap();
        assert_eq!(timeline.last_url("prod").unwrap().as_deref(), Some("https://app.example"));
        // Opening it again finds the column there.
        Timeline::open(dir.path()).unwrap();
    }

    #[test]
    fn a_timeline_from_before_releases_gets_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let old = Connection::open(dir.path().join("timeline.sqlite")).unwrap();
        let schema = SCHEMA.replace(",\n    release     TEXT", "");
        assert!(schema.contains("url") && !schema.contains("release"), "{schema}");
        old.execute_batch(&schema).unwrap();
        old.execute(
            "INSERT INTO deploys (id, server, method, git_commit, branch, trigger, actor, started_at, status, url)
             VALUES ('old', 'prod', 'heroku', 'abc', 'main', 'manual', 'ada', '2020-01-01T00:00:00Z', 'succeeded',
                     'https://old.example')",
            [],
        )
        .unwrap();
        assert!(old.prepare("SELECT release FROM deploys").is_err(), "the old schema has no release");
        drop(old);
        let timeline = Timeline::open(dir.path()).unwrap();
        let (d, _) = timeline.get("old").unwrap().unwrap();
        assert_eq!((d.url.as_deref(), d.release), (Some("https://old.example"), None));
        timeline.start(&deploy("new")).unwrap();
        let released = Ended { release: Some("v42"), ..ended(Status::Succeeded, "released v42", None) };
        timeline.finish("new", released, "").unwrap();
        assert_eq!(timeline.get("new").unwrap().unwrap().0.release.as_deref(), Some("v42"));
        assert_eq!(
            timeline.list(None, 10).unwrap().iter().map(|d| d.release.as_deref()).collect::<Vec<_>>(),
            [Some("v42"), None]
        );
        Timeline::open(dir.path()).unwrap();
    }

    #[test]
    fn a_finished_deploy_is_recorded_whole_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let timeline = Timeline::open(dir.path()).unwrap();
        let rollback =
            Deploy { trigger: "rollback".into(), commit: String::new(), branch: String::new(), ..deploy("r") };
        let done =
            Ended { release: Some("v43"), ..ended(Status::Succeeded, "rolled back to v41", Some("https://a.example")) };
        timeline.record(&rollback, done, "").unwrap();
        let (d, log) = timeline.get("r").unwrap().unwrap();
        assert_eq!((d.status, d.exit_code, d.trigger.as_str()), (Status::Succeeded, Some(0), "rollback"));
        assert_eq!(
            (d.release.as_deref(), d.url.as_deref(), log.as_str()),
            (Some("v43"), Some("https://a.example"), "")
        );
        assert_eq!(d.ended_at.as_deref(), Some(d.started_at.as_str()));
        assert!(d.started_at.ends_with('Z'), "{}", d.started_at);
        assert_eq!(timeline.last_url("prod").unwrap().as_deref(), Some("https://a.example"));
        // Recorded again (a replay), it is kept as it was.
        timeline.record(&rollback, ended(Status::Failed, "other", None), "").unwrap();
        assert_eq!(timeline.get("r").unwrap().unwrap().0, d);
        // A given start time is kept.
        let earlier = Deploy { started_at: "2020-01-01T00:00:00Z".into(), ..deploy("s") };
        timeline.record(&earlier, ended(Status::Succeeded, "v1", None), "").unwrap();
        assert_eq!(timeline.get("s").unwrap().unwrap().0.started_at, "2020-01-01T00:00:00Z");
    }

    #[test]
    fn times_are_rfc3339_in_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_137_461), "2026-12-01T15:04:21Z");
        assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59Z");
        let now = now();
        assert!(now.len() == 20 && now.starts_with("20"), "{now}");
    }

    #[test]
    fn a_log_keeps_its_bound_then_says_what_it_dropped() {
        let mut log = DeployLog::memory();
        let line = "y".repeat(1023);
        for _ in 0..(LOG_OUTPUT / 1024) {
            log.line(&line);
        }
        assert!(!log.finish().contains("log cut"), "exactly the bound is kept whole");
        log.line("one more");
        assert!(!log.has_room());
        log.line("y");
        log.unkept(100, 10);
        log.note("→ how it ended");
        let text = log.finish();
        assert_eq!(
            text.len() as u64,
            LOG_OUTPUT + "→ how it ended\n".len() as u64 + text.lines().last().unwrap().len() as u64 + 1
        );
        let tail: Vec<&str> = text.lines().rev().take(2).collect();
        assert_eq!(tail, ["[log cut: 111 bytes in 12 lines not kept: a deploy's log keeps 16 MiB]", "→ how it ended"]);
    }
}
