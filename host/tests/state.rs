//! The timeline and the deploy locks through the real `pier` binary, one suite run
//! against both states: the local one in `.pier/`, and the shared one in a real
//! PostgreSQL server (`PIER_DATABASE_URL`). Then what only the shared state does: every
//! runner sees one timeline and one lock, a lost lock stops the deploy, an unreachable
//! database deploys nothing.

mod common;

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::postgres::Postgres;
use common::{Project, json, run, timeline};
use pier::project::state::{Rollback, State, StateError};
use pier::project::timeline::{Deploy, Ended, Status, Timeline, new_id, valid_id};

/// One PostgreSQL server for the file's tests; each test gets a database of its own.
fn server() -> &'static Postgres {
    static SERVER: OnceLock<Postgres> = OnceLock::new();
    SERVER.get_or_init(Postgres::start)
}

/// Which state a test runs against.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Local,
    Shared,
}

/// A project with a Heroku server `prod` and a committed app, using `backend`, as runner
/// `runner`.
fn project(backend: Backend, runner: &str) -> Project {
    let (mut project, _) = Project::with_app();
    project.env.push(("RUNNER_NAME".into(), runner.into()));
    if let Backend::Shared = backend {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("state_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        project.env.push(("PIER_DATABASE_URL".into(), server().database(&name)));
    }
    project
}

fn release(fifo: &std::path::Path) {
    std::fs::OpenOptions::new().write(true).open(fifo).unwrap().write_all(b"go\n").unwrap();
}

/// A runtime for the tests that use the state through the library.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// The state `pier` opens in `project`, through the library: its `.pier/`, or the
/// database of its `PIER_DATABASE_URL` for its project id.
async fn open(backend: Backend, project: &Project) -> State {
    let dir = project.dir().join(".pier");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".gitignore"), "*\n").unwrap();
    match backend {
        Backend::Local => State::Local { timeline: Timeline::open(&dir).unwrap(), dir },
        Backend::Shared => {
            let config = pier::project::config::Config::load(&project.dir().join("pier.toml")).unwrap();
            let url = project.env.iter().find(|(k, _)| k == "PIER_DATABASE_URL").unwrap().1.parse().unwrap();
            let shared = pier::project::shared::connect(&url, config.project_id().unwrap()).await.unwrap();
            State::Shared { shared, dir }
        }
    }
}

/// A deploy of `prod`, as `pier deploy` records it when it starts.
fn running(id: &str) -> Deploy {
    Deploy::running(id, "prod", "heroku", "0123456789abcdef", "main", "manual", "ada")
}

/// Runs `check` against both states.
macro_rules! both {
    ($name:ident, $check:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn local() {
                ($check)(Backend::Local)
            }
            #[test]
            fn shared() {
                ($check)(Backend::Shared)
            }
        }
    };
}

both!(a_deploy_is_recorded_with_its_log_and_found_by_any_unique_part, |backend| {
    let project = project(backend, "runner-a");
    project.commands(&["echo migrating-$((6 * 7))"]);
    let (out, _) = run(project.pier().args(["deploy", "prod", "--json"]), 0);
    let result = out.lines().map(json).find(|l| l["type"] == "result").unwrap();
    let id = result["data"]["deploy_id"].as_str().unwrap().to_string();
    let deploys = timeline(&project);
    assert_eq!(deploys.as_array().unwrap().len(), 1, "{deploys}");
    assert_eq!(deploys[0]["id"], id.as_str());
    assert_eq!(deploys[0]["status"], "succeeded");
    assert_eq!(deploys[0]["exit_code"], 0);
    let (shown, _) = run(project.pier().args(["timeline", "show", &id[id.len() - 6..], "--json"]), 0);
    let shown = json(&shown);
    assert_eq!(shown["deploy"]["id"], id.as_str());
    let log = shown["log"].as_str().unwrap();
    assert_eq!(log.matches("migrating-42").count(), 1, "{log}");
    if let Backend::Shared = backend {
        assert_eq!(shown["deploy"]["runner"], "runner-a", "{shown}");
    }
});

both!(a_second_deploy_of_a_server_fails_at_once_naming_the_running_one, |backend| {
    let project = project(backend, "runner-a");
    let (first, _, release_fifo) = project.blocked_deploy(&[]);
    let running = timeline(&project)[0]["id"].as_str().unwrap().to_string();
    let mut second = project.pier();
    second.args(["deploy", "prod"]).env("RUNNER_NAME", "runner-b");
    let (_, err) = run(&mut second, 1);
    assert!(err.contains("server `prod` is being deployed by"), "{err}");
    assert!(err.contains(&running), "the running deploy is named: {err}");
    assert!(err.contains("--wait SECONDS"), "{err}");
    if let Backend::Shared = backend {
        assert!(err.contains(&format!("by deploy {running} on runner-a (running for ")), "runner and age: {err}");
    }
    release(&release_fifo);
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let statuses: Vec<_> = timeline(&project).as_array().unwrap().iter().map(|d| d["status"].clone()).collect();
    assert_eq!(statuses, ["succeeded"], "the refused deploy was never started");
});

both!(a_killed_runner_loses_its_lock_and_its_deploy_shows_as_interrupted, |backend| {
    let project = project(backend, "runner-a");
    let (mut first, _, _release) = project.blocked_deploy(&[]);
    let killed = timeline(&project)[0]["id"].as_str().unwrap().to_string();
    // Its log reaches the timeline as it runs (the shared state sends a step at once).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let written = || {
        let shown = json(&run(project.pier().args(["timeline", "show", &killed, "--json"]), 0).0);
        shown["log"].as_str().unwrap().contains("Command 1/1")
    };
    while !written() {
        assert!(std::time::Instant::now() < deadline, "the running deploy's step never reached its log");
    }
    first.kill().unwrap(); // SIGKILL: nothing runs in the process
    first.wait().unwrap();
    project.commands(&["true"]);
    // The lock goes with the process (and its commands): the next deploy waits for it.
    let mut next = project.pier();
    next.args(["deploy", "prod", "--wait", "60"]).env("RUNNER_NAME", "runner-b");
    run(&mut next, 0);
    let deploys = timeline(&project);
    let of = |id: &str| deploys.as_array().unwrap().iter().find(|d| d["id"] == id).unwrap().clone();
    assert_eq!(of(&killed)["status"], "interrupted", "{deploys}");
    assert_eq!(deploys[0]["status"], "succeeded", "{deploys}");
    // What the killed runner wrote before it died is kept.
    let shown = json(&run(project.pier().args(["timeline", "show", &killed, "--json"]), 0).0);
    let log = shown["log"].as_str().unwrap();
    assert!(log.contains("Releasing") && log.contains("Command 1/1"), "{log}");
});

/// Runners of one team share the timeline: a fresh checkout (no `.pier/`) sees the
/// deploys of every other runner.
#[test]
fn every_runner_sees_one_timeline() {
    let project = project(Backend::Shared, "runner-a");
    run(project.pier().args(["deploy", "prod"]), 0);
    std::fs::remove_dir_all(project.dir().join(".pier")).unwrap();
    let mut list = project.pier();
    list.args(["timeline", "--json"]).env("RUNNER_NAME", "runner-b");
    let deploys = json(&run(&mut list, 0).0);
    assert_eq!(deploys.as_array().unwrap().len(), 1, "{deploys}");
    assert_eq!(deploys[0]["runner"], "runner-a");
    // And a project of another id in the same database sees none of them.
    let other = Project::with_app().0;
    let url = project.env.iter().find(|(k, _)| k == "PIER_DATABASE_URL").unwrap().1.clone();
    let mut list = other.pier();
    list.args(["timeline", "--json"]).env("PIER_DATABASE_URL", &url);
    assert_eq!(json(&run(&mut list, 0).0), serde_json::json!([]));
}

/// A project that says it keeps its state in PostgreSQL never deploys on its own: the
/// variable missing is exit 2, the database unreachable exit 4, and nothing reaches the
/// provider either way.
#[test]
fn without_its_database_a_shared_project_deploys_nothing() {
    let project = project(Backend::Local, "runner-a");
    let toml = project.dir().join("pier.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(&toml, format!("[state]\nbackend = \"postgres\"\n{text}")).unwrap();
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 2);
    assert!(err.contains("PIER_DATABASE_URL is not set"), "{err}");
    assert_eq!(err.lines().filter(|l| l.starts_with("error:")).count(), 1, "one error line: {err}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("postgres://pier:hunter2-not-shown@127.0.0.1:{closed}/pier?sslmode=disable");
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PIER_DATABASE_URL", &url), 4);
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains("hunter2"), "the password is never shown: {err}");
    let deploying =
        project.fake.requests().iter().filter(|r| r.path.contains("/sources") || r.path.contains("/builds")).count();
    assert_eq!(deploying, 0, "nothing was deployed");
}

/// The database ends the connection that holds a deploy's lock: the deploy stops before
/// its next step, so no second deploy can overlap it.
#[test]
fn a_lost_lock_stops_the_deploy_before_its_next_step() {
    let project = project(Backend::Shared, "runner-a");
    let started = common::fifo(project.dir(), "started");
    let release_fifo = common::fifo(project.dir(), "release");
    project.commands(&[
        &format!("echo started > '{}'; cat '{}' > /dev/null", started.display(), release_fifo.display()),
        "echo the-second-command-ran",
    ]);
    let child = project.spawn(&["deploy", "prod"]);
    std::fs::read_to_string(&started).unwrap();
    let url = project.env.iter().find(|(k, _)| k == "PIER_DATABASE_URL").unwrap().1.clone();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let ended = server().sql(
        &db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'pier lock prod %'",
    );
    assert_eq!(ended, "1", "the lock's connection was found and ended");
    release(&release_fifo);
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{err}");
    assert!(err.contains("stopped before the next step"), "{err}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("the-second-command-ran"));
    assert!(!err.contains("the-second-command-ran"), "{err}");
    assert_eq!(timeline(&project)[0]["status"], "failed");
}

/// The database goes away while the last step runs: the deploy's success stands (exit
/// 0, with a warning), its end is kept on the runner, and recorded as soon as the
/// database is back, before anything could take the deploy for a dead one.
#[test]
fn a_deploy_whose_end_cannot_be_recorded_still_succeeds_and_is_recorded_later() {
    let project = project(Backend::Shared, "runner-a");
    let (child, _, release_fifo) = project.blocked_deploy(&[]);
    let url = project.env.iter().find(|(k, _)| k == "PIER_DATABASE_URL").unwrap().1.clone();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    server().sql(
        "postgres",
        &format!(
            "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false; \
             SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
        ),
    );
    release(&release_fifo);
    let output = child.wait_with_output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "the deploy's result stands:\n{out}\n{err}");
    assert!(out.starts_with("prod: succeeded"), "{out}");
    assert!(err.contains("but the timeline could not record how it ended"), "{err}");
    assert!(err.contains(".pier/unrecorded/"), "{err}");

    server().sql("postgres", &format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"));
    let (listed, err) = run(project.pier().args(["timeline", "--json"]), 0);
    assert!(err.contains("which the shared timeline had missed"), "{err}");
    let deploys = json(&listed);
    assert_eq!(deploys[0]["status"], "succeeded", "{deploys}");
    assert_eq!(deploys[0]["exit_code"], 0, "{deploys}");
    assert_eq!(std::fs::read_dir(project.dir().join(".pier/unrecorded")).unwrap().count(), 0);
}

/// Through `pier` itself: a database whose certificate a CA the user names vouches for is
/// used (`verify-full`, the default, with `sslrootcert`); the same database without that
/// CA is refused (exit 4), and nothing deploys.
#[test]
fn the_database_certificate_is_verified() {
    use std::os::unix::fs::PermissionsExt as _;
    let certs = common::tempdir();
    let dir = certs.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    common::postgres::certificates(dir);
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    common::postgres::give_to_server(&key);
    let setting = |name: &str, file: &str| format!("{name}={}", dir.join(file).display());
    let pg = Postgres::start_with(&[
        "ssl=on",
        &setting("ssl_cert_file", "server.crt"),
        &setting("ssl_key_file", "server.key"),
    ]);
    pg.database("tls");
    let base = format!("postgres://{}@127.0.0.1:{}/tls", common::postgres::USER, pg.port);

    let mut project = project(Backend::Local, "runner-a");
    let unverified = project.pier().args(["deploy", "prod"]).env("PIER_DATABASE_URL", &base).output().unwrap();
    let err = String::from_utf8_lossy(&unverified.stderr);
    assert_eq!(unverified.status.code(), Some(4), "{err}");
    assert!(err.contains("certificate"), "{err}");
    let deploying = project.fake.requests().iter().filter(|r| r.path.contains("/builds")).count();
    assert_eq!(deploying, 0, "nothing was deployed");

    let verified = format!("{base}?sslrootcert={}", dir.join("ca.crt").display());
    project.env.push(("PIER_DATABASE_URL".into(), verified));
    run(project.pier().args(["deploy", "prod"]), 0);
    assert_eq!(timeline(&project)[0]["status"], "succeeded");
}

both!(a_deploys_release_is_kept_listed_and_shown, |backend| {
    let project = project(backend, "runner-a");
    // Through pier: the release the Heroku method reports it made live.
    run(project.pier().args(["deploy", "prod"]), 0);
    let deployed = timeline(&project)[0].clone();
    let release = deployed["release"].as_str().unwrap_or_else(|| panic!("no release: {deployed}")).to_string();
    let summary = deployed["summary"].as_str().unwrap();
    assert!(release.starts_with('v') && summary.starts_with(&format!("released {release} of ")), "{deployed}");
    let (named, unnamed) = (new_id(), new_id());
    runtime().block_on(async {
        let state = open(backend, &project).await;
        for (id, release) in [(&unnamed, None), (&named, Some("v42"))] {
            let (mut log, stream) = state.start(&running(id), "runner-a").await.unwrap();
            log.note("released");
            let text = log.finish();
            let ended = Ended { status: Status::Succeeded, exit_code: 0, summary: "released", url: None, release };
            state.finish(id, ended, &text, stream).await.unwrap();
        }
        let (got, log) = state.get(&named).await.unwrap().unwrap();
        assert_eq!((got.release.as_deref(), got.status, log.as_str()), (Some("v42"), Status::Succeeded, "released\n"));
        let listed = state.list(Some("prod"), 10).await.unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0], got);
        assert_eq!((listed[1].id.as_str(), listed[1].release.as_deref()), (unnamed.as_str(), None));
        assert_eq!(listed[2].release.as_deref(), Some(release.as_str()));
    });
    // Through pier: in the JSON when there is one, and in `timeline show`.
    let deploys = timeline(&project);
    assert_eq!(deploys[0]["release"], "v42", "{deploys}");
    assert!(deploys[1].get("release").is_none(), "no release, no field: {deploys}");
    let shown = json(&run(project.pier().args(["timeline", "show", &named, "--json"]), 0).0);
    assert_eq!(shown["deploy"]["release"], "v42", "{shown}");
    let (shown, _) = run(project.pier().args(["timeline", "show", &named]), 0);
    assert!(shown.contains("\n  release:  v42\n"), "{shown}");
    let (shown, _) = run(project.pier().args(["timeline", "show", &unnamed]), 0);
    assert!(!shown.contains("release:"), "{shown}");
});

both!(a_rollback_is_recorded_as_the_servers_newest_deploy, |backend| {
    let project = project(backend, "runner-a");
    let (out, _) = run(project.pier().args(["deploy", "prod", "--json"]), 0);
    let result = out.lines().map(json).find(|l| l["type"] == "result").unwrap();
    let deployed = result["data"]["deploy_id"].as_str().unwrap().to_string();
    let commit = timeline(&project)[0]["commit"].as_str().unwrap().to_string();
    let (rollback, bare) = runtime().block_on(async {
        let state = open(backend, &project).await;
        let to = state.release_of(&deployed).await.unwrap().expect("the deploy is found");
        assert_eq!((to.server.as_str(), to.commit.as_str()), ("prod", commit.as_str()));
        assert!(to.release.as_deref().is_some_and(|r| r.starts_with('v')), "the release it made live: {to:?}");
        let rollback = Rollback {
            server: "prod",
            method: "heroku",
            actor: "ada",
            runner: "runner-b",
            commit: &to.commit,
            branch: &to.branch,
            summary: "rolled back to v41 of hello-app",
            release: Some("v43"),
            url: Some("https://rolled-back.example"),
        };
        let id = state.record_rollback(&rollback).await.unwrap();
        // One that knows neither the commit nor the release.
        let unknown = Rollback { commit: "", branch: "", release: None, url: None, summary: "rolled back", ..rollback };
        let bare = state.record_rollback(&unknown).await.unwrap();
        assert!(valid_id(&id) && valid_id(&bare) && id != bare, "{id} {bare}");
        let found = state.release_of(&id[id.len() - 6..]).await.unwrap().unwrap();
        assert_eq!((found.trigger.as_str(), found.release.as_deref()), ("rollback", Some("v43")));
        (id, bare)
    });
    let deploys = timeline(&project);
    let ids: Vec<&str> = deploys.as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [bare.as_str(), rollback.as_str(), deployed.as_str()], "newest first: {deploys}");
    let r = &deploys[1];
    assert_eq!(
        (r["server"].as_str(), r["trigger"].as_str(), r["status"].as_str()),
        (Some("prod"), Some("rollback"), Some("succeeded"))
    );
    assert_eq!(
        (r["exit_code"].as_i64(), r["release"].as_str(), r["commit"].as_str()),
        (Some(0), Some("v43"), Some(commit.as_str()))
    );
    assert_eq!(
        (r["summary"].as_str(), r["url"].as_str()),
        (Some("rolled back to v41 of hello-app"), Some("https://rolled-back.example"))
    );
    assert_eq!(r["ended_at"], r["started_at"], "{r}");
    assert_eq!((deploys[0]["commit"].as_str(), deploys[0]["branch"].as_str()), (Some(""), Some("")));
    assert!(deploys[0].get("release").is_none(), "{deploys}");
    if let Backend::Shared = backend {
        assert_eq!(r["runner"], "runner-b", "{r}");
    }
    // The table lists them as deploys, the commit left empty when unknown.
    let (table, _) = run(project.pier().args(["timeline"]), 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    for (line, id) in [(lines[1], &bare), (lines[2], &rollback)] {
        assert!(
            line.starts_with(id.as_str()) && line.contains(" succeeded ") && line.contains("rolled back"),
            "{table}"
        );
    }
    let (shown, _) = run(project.pier().args(["timeline", "show", &bare]), 0);
    assert!(shown.contains("  trigger:  rollback by ada\n") && !shown.contains("commit:"), "{shown}");
    // What is live is the rollback's: its URL is the server's last one.
    if let Backend::Local = backend {
        let (list, _) = run(project.pier().args(["server", "list"]), 0);
        assert!(list.contains("https://rolled-back.example"), "{list}");
    }
});

both!(a_deploy_to_roll_back_to_is_found_by_any_unique_part, |backend| {
    let project = project(backend, "runner-a");
    let ids = [new_id(), new_id()];
    runtime().block_on(async {
        let state = open(backend, &project).await;
        for (id, release) in ids.iter().zip([Some("v7"), None]) {
            let (_, stream) = state.start(&running(id), "runner-a").await.unwrap();
            let ended = Ended { status: Status::Succeeded, exit_code: 0, summary: "released", url: None, release };
            state.finish(id, ended, "", stream).await.unwrap();
        }
        let found = state.release_of(&ids[0][..ids[0].len() - 1]).await.unwrap().expect("a unique beginning");
        assert_eq!(
            (found.id.as_str(), found.server.as_str(), found.release.as_deref()),
            (ids[0].as_str(), "prod", Some("v7"))
        );
        let found = state.release_of(&format!(" {} ", ids[1][ids[1].len() - 6..].to_uppercase())).await.unwrap();
        assert_eq!(found.map(|d| (d.id, d.release)), Some((ids[1].clone(), None)), "a unique end, any case");
        assert!(state.release_of("v7").await.unwrap().is_none(), "a release name is no deploy");
        assert!(state.release_of("").await.unwrap().is_none());
        // Both begin with the time they started.
        let error = state.release_of(&ids[0][..3]).await.expect_err("ambiguous");
        assert!(matches!(&error, StateError::Ambiguous { all: 2, .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains(&ids[0]) && text.contains(&ids[1]) && text.contains("names 2 deploys"), "{text}");
        assert_eq!(error.exit(), pier::exit::Exit::BadInput);
    });
});

/// The shared database cannot take the end of a deploy, nor a rollback: both are kept on
/// the runner, with their releases, and recorded (the rollback at the time it ended) by
/// the next run that reaches the database.
#[test]
fn ends_and_rollbacks_the_database_missed_are_recorded_later_with_their_releases() {
    let project = project(Backend::Shared, "runner-a");
    let url = project.env.iter().find(|(k, _)| k == "PIER_DATABASE_URL").unwrap().1.clone();
    let db = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_string();
    let deployed = new_id();
    let before = runtime().block_on(async {
        let state = open(Backend::Shared, &project).await;
        let (_, stream) = state.start(&running(&deployed), "runner-a").await.unwrap();
        server().sql(
            "postgres",
            &format!(
                "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false; \
                 SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        );
        let ended =
            Ended { status: Status::Succeeded, exit_code: 0, summary: "released v42", url: None, release: Some("v42") };
        let error = state.finish(&deployed, ended, "", stream).await.expect_err("the database is gone");
        assert!(matches!(error, StateError::Unrecorded(_)), "{error}");
        let rollback = Rollback {
            server: "prod",
            method: "heroku",
            actor: "ada",
            runner: "runner-b",
            commit: "",
            branch: "",
            summary: "rolled back to v41",
            release: Some("v43"),
            url: None,
        };
        let error = state.record_rollback(&rollback).await.expect_err("the database is gone");
        assert!(matches!(error, StateError::Unrecorded(_)), "{error}");
        pier::project::timeline::now()
    });
    let kept: Vec<String> = std::fs::read_dir(project.dir().join(".pier/unrecorded"))
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(kept.len(), 2, "{kept:?}");
    let rolled = kept.iter().find(|k| **k != deployed).unwrap().clone();
    std::thread::sleep(std::time::Duration::from_millis(1100));

    server().sql("postgres", &format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"));
    let (listed, err) = run(project.pier().args(["timeline", "--json"]), 0);
    assert!(err.contains(&format!("recorded how deploy {deployed} ended (succeeded), which the shared")), "{err}");
    assert!(err.contains(&format!("recorded rollback {rolled} of prod (succeeded), which the shared")), "{err}");
    let deploys = json(&listed);
    let of = |id: &str| deploys.as_array().unwrap().iter().find(|d| d["id"] == id).unwrap().clone();
    let (d, r) = (of(&deployed), of(&rolled));
    assert_eq!((d["status"].as_str(), d["release"].as_str()), (Some("succeeded"), Some("v42")), "{d}");
    assert_eq!((r["trigger"].as_str(), r["status"].as_str()), (Some("rollback"), Some("succeeded")), "{r}");
    assert_eq!((r["release"].as_str(), r["runner"].as_str()), (Some("v43"), Some("runner-b")), "{r}");
    assert!(r["started_at"].as_str().unwrap() <= before.as_str(), "the time it ended: {r}, not {before}");
    assert_eq!(r["ended_at"], r["started_at"], "{r}");
    assert_eq!(std::fs::read_dir(project.dir().join(".pier/unrecorded")).unwrap().count(), 0);
}
