//! The shared state in PostgreSQL (`pier::project::shared`), against a real server.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use common::postgres::{self, Postgres};
use pier::project::shared::{self, DatabaseUrl, SharedError, SharedState};
use pier::project::timeline::{Deploy, Ended, Status};

/// The server the tests share while any of them runs (each in its own database); the
/// last test to finish stops it.
fn server() -> Arc<Postgres> {
    static SHARED: Mutex<Weak<Postgres>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pg) = shared.upgrade() {
        return pg;
    }
    let pg = Arc::new(Postgres::start());
    *shared = Arc::downgrade(&pg);
    pg
}

fn url(text: &str) -> DatabaseUrl {
    text.parse().unwrap()
}

async fn state(url: &DatabaseUrl, project: &str) -> SharedState {
    shared::connect(url, project).await.unwrap()
}

fn deploy(id: &str, server: &str) -> Deploy {
    Deploy {
        build: Some("build-7".into()),
        ..Deploy::running(id, server, "heroku", "0123456789abcdef", "main", "manual", "ada")
    }
}

/// Waits, up to 10 s, until `condition` holds.
async fn until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_are_idempotent_and_safe_concurrently() {
    let pg = server();
    let once = url(&pg.database("migrate_once"));
    state(&once, "demo").await;
    state(&once, "demo").await;
    assert_eq!(pg.sql("migrate_once", "SELECT count(*) || ' ' || max(version) FROM pier_schema"), "1 2");
    assert_eq!(shared::SCHEMA_VERSION, 2);

    // Two runners migrating a fresh database at the same moment.
    let race = url(&pg.database("migrate_race"));
    let (a, b) = tokio::join!(shared::connect(&race, "a"), shared::connect(&race, "b"));
    a.unwrap();
    b.unwrap();
    assert_eq!(pg.sql("migrate_race", "SELECT count(*) || ' ' || max(version) FROM pier_schema"), "1 2");
    assert_eq!(pg.sql("migrate_race", "SELECT count(*) FROM pg_indexes WHERE indexname = 'pier_deploys_server'"), "1");

    // A database a newer Pier migrated.
    pg.sql("migrate_once", "UPDATE pier_schema SET version = 99");
    let error = shared::connect(&once, "demo").await.err().expect("a newer schema is refused");
    assert!(matches!(error, SharedError::TooNew { found: 99, known: 2 }), "{error:?}");
    assert!(error.to_string().contains("upgrade Pier"), "{error}");
}

/// A database of schema version 1 (before releases) gets the column, keeping its deploys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_from_before_releases_is_migrated_keeping_its_deploys() {
    let pg = server();
    let db = url(&pg.database("migrate_release"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("65f0a1b2-aaa111", "prod"), "runner-1").await.unwrap();
    drop(timeline);
    pg.sql("migrate_release", "ALTER TABLE pier_deploys DROP COLUMN release; UPDATE pier_schema SET version = 1");
    let timeline = state(&db, "demo").await;
    assert_eq!(pg.sql("migrate_release", "SELECT max(version) FROM pier_schema"), "2");
    let (d, _) = timeline.get("65f0a1b2-aaa111").await.unwrap().unwrap();
    assert_eq!((d.status, d.release), (Status::Running, None));
    let ended =
        Ended { status: Status::Succeeded, exit_code: 0, summary: "released v2", url: None, release: Some("v2") };
    timeline.finish("65f0a1b2-aaa111", &ended).await.unwrap();
    assert_eq!(timeline.list(None, 10).await.unwrap()[0].release.as_deref(), Some("v2"));
}

/// A deploy recorded only once it ended (a rollback) is recorded whole, at the time it
/// names if any, and recording it again changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_deploy_is_recorded_whole_and_once() {
    let pg = server();
    let db = url(&pg.database("record_whole"));
    let timeline = state(&db, "demo").await;
    let rollback = Deploy {
        trigger: "rollback".into(),
        commit: String::new(),
        status: Status::Succeeded,
        ..deploy("65f0a1b2-bbb", "prod")
    };
    let ended = Ended {
        status: Status::Succeeded,
        exit_code: 0,
        summary: "rolled back to v41",
        url: Some("https://hello.example"),
        release: Some("v43"),
    };
    timeline.record(&rollback, "runner-1", &ended).await.unwrap();
    let (d, log) = timeline.get("65f0a1b2-bbb").await.unwrap().unwrap();
    assert_eq!(
        (d.status, d.exit_code, d.trigger.as_str(), d.commit.as_str()),
        (Status::Succeeded, Some(0), "rollback", "")
    );
    assert_eq!(
        (d.release.as_deref(), d.url.as_deref(), d.runner.as_deref()),
        (Some("v43"), Some("https://hello.example"), Some("runner-1"))
    );
    assert_eq!((d.ended_at.as_deref(), log.as_str()), (Some(d.started_at.as_str()), ""));
    let again = Ended { status: Status::Failed, exit_code: 1, summary: "other", url: None, release: None };
    timeline.record(&rollback, "runner-2", &again).await.unwrap();
    assert_eq!(timeline.get("65f0a1b2-bbb").await.unwrap().unwrap().0, d);
    let earlier = Deploy { started_at: "2020-01-01T00:00:00Z".into(), ..deploy("65f0a1b2-ccc", "prod") };
    timeline.record(&earlier, "runner-1", &ended).await.unwrap();
    let (d, _) = timeline.get("65f0a1b2-ccc").await.unwrap().unwrap();
    assert_eq!((d.started_at.as_str(), d.ended_at.as_deref()), ("2020-01-01T00:00:00Z", Some("2020-01-01T00:00:00Z")));
    assert_eq!(timeline.deploy("65f0a1b2-ccc").await.unwrap(), Some(d));
    assert_eq!(timeline.deploy("nope").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_round_trip_newest_first_and_per_project() {
    let pg = server();
    let db = url(&pg.database("round_trip"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("65f0a1b2-aaa111", "prod"), "runner-1").await.unwrap();
    let log = timeline.log("65f0a1b2-aaa111");
    log.push("building".into());
    log.push("released v1".into());
    let report = log.close().await;
    assert!(report.complete(), "{report:?}");
    assert_eq!((report.sent, report.dropped), (2, 0));
    let ended = Ended {
        status: Status::Succeeded,
        exit_code: 0,
        summary: "released v1",
        url: Some("https://hello.example"),
        release: Some("v1"),
    };
    timeline.finish("65f0a1b2-aaa111", &ended).await.unwrap();
    timeline.start(&deploy("65f0a1b3-bbb222", "staging"), "runner-2").await.unwrap();

    let all = timeline.list(None, 10).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(ids, ["65f0a1b3-bbb222", "65f0a1b2-aaa111"]);
    assert_eq!(timeline.list(None, 1).await.unwrap().len(), 1);
    let prod = timeline.list(Some("prod"), 10).await.unwrap();
    assert_eq!(prod.len(), 1);

    let (d, log) = timeline.get("65f0a1b2-aaa111").await.unwrap().unwrap();
    assert_eq!(log, "building\nreleased v1\n");
    assert_eq!((d.status, d.exit_code, d.summary.as_deref()), (Status::Succeeded, Some(0), Some("released v1")));
    assert_eq!(d.release.as_deref(), Some("v1"));
    assert_eq!((d.runner.as_deref(), d.build.as_deref(), d.actor.as_str()), (Some("runner-1"), Some("build-7"), "ada"));
    assert_eq!(d, prod[0]);
    for time in [d.started_at.as_str(), d.ended_at.as_deref().unwrap()] {
        assert!(time.len() == 20 && time.ends_with('Z') && time.as_bytes()[10] == b'T', "RFC 3339: {time}");
    }
    let (running, log) = timeline.get("65f0a1b3-bbb222").await.unwrap().unwrap();
    assert_eq!((running.status, running.ended_at, log.as_str()), (Status::Running, None, ""));
    assert!(timeline.get("nope").await.unwrap().is_none());

    assert_eq!(timeline.find("65f0a1b").await.unwrap(), ["65f0a1b3-bbb222", "65f0a1b2-aaa111"]);
    assert_eq!(timeline.find("aaa111").await.unwrap(), ["65f0a1b2-aaa111"]);
    assert_eq!(timeline.find("65f0a1b3").await.unwrap(), ["65f0a1b3-bbb222"]);
    assert!(timeline.find("a1b2-a").await.unwrap().is_empty(), "neither a prefix nor a suffix");
    assert!(timeline.find("%").await.unwrap().is_empty(), "no pattern characters");

    timeline.interrupt("65f0a1b3-bbb222").await.unwrap();
    let (d, _) = timeline.get("65f0a1b3-bbb222").await.unwrap().unwrap();
    assert_eq!((d.status, d.exit_code), (Status::Interrupted, Some(130)));
    assert!(d.summary.unwrap().starts_with("interrupted"));

    // Another project in the same database sees none of it.
    let other = state(&db, "other").await;
    assert!(other.list(None, 10).await.unwrap().is_empty());
    assert!(other.get("65f0a1b2-aaa111").await.unwrap().is_none());
    assert!(other.find("65f").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_runner_keeps_the_log_it_had_sent() {
    let pg = server();
    let db = url(&pg.database("killed"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("d-killed", "prod"), "runner-1").await.unwrap();
    let log = timeline.log("d-killed");
    for i in 0..1200 {
        log.push(format!("line {i}"));
    }
    let expected: String = (0..1200).map(|i| format!("line {i}\n")).collect();
    // Visible while the deploy runs, with the log still open.
    until("the lines are in the database", || async { timeline.get("d-killed").await.unwrap().unwrap().1 == expected })
        .await;
    // The runner dies: nothing is closed or finished.
    drop(timeline);
    std::mem::forget(log);
    let later = state(&db, "demo").await;
    let (d, log) = later.get("d-killed").await.unwrap().unwrap();
    assert_eq!((d.status, log), (Status::Running, expected));
    // And reconcile, finding its lock free, marks it interrupted, keeping its log.
    assert_eq!(later.reconcile(None).await.unwrap(), ["d-killed"]);
    let (d, log) = later.get("d-killed").await.unwrap().unwrap();
    assert_eq!(d.status, Status::Interrupted);
    assert!(log.ends_with("line 1199\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_outlives_a_lost_connection_and_arrives_in_order() {
    let pg = server();
    let db = url(&pg.database("log_reconnect"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("d-1", "prod"), "runner-1").await.unwrap();
    let log = timeline.log("d-1");
    log.push("before\0nul".into());
    until("the first line is in", || async { timeline.get("d-1").await.unwrap().unwrap().1.starts_with("before") })
        .await;
    // The server ends every session of the database (a failover, a restart).
    pg.sql("postgres", "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = 'log_reconnect'");
    for i in 0..700 {
        log.push(format!("after {i}"));
    }
    let report = log.close().await;
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.sent, 701);
    let (_, text) = timeline.get("d-1").await.unwrap().unwrap();
    let expected: String =
        std::iter::once("before\u{FFFD}nul\n".to_string()).chain((0..700).map(|i| format!("after {i}\n"))).collect();
    assert_eq!(text, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_whose_database_is_gone_never_blocks_and_says_what_did_not_arrive() {
    let pg = Postgres::start();
    let db = url(&pg.database("gone"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("d-1", "prod"), "runner-1").await.unwrap();
    let log = timeline.log("d-1");
    log.push("sent".into());
    until("the first line is in", || async { timeline.get("d-1").await.unwrap().unwrap().1 == "sent\n" }).await;
    drop(pg);
    let pushed = Instant::now();
    for i in 0..1000 {
        log.push(format!("kept {i}"));
    }
    assert!(pushed.elapsed() < Duration::from_secs(1), "pushing never waits: {:?}", pushed.elapsed());
    let report = log.close_within(Duration::from_millis(500)).await;
    assert!(!report.complete(), "{report:?}");
    assert_eq!((report.sent, report.unsent, report.dropped), (1, 1000, 0));
    assert!(report.error.is_some(), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_keeps_its_bound_then_says_what_it_dropped() {
    let pg = server();
    let db = url(&pg.database("log_bound"));
    let timeline = state(&db, "demo").await;
    timeline.start(&deploy("d-big", "prod"), "runner-1").await.unwrap();
    let log = timeline.log("d-big");
    let bound = pier::project::timeline::LOG_OUTPUT + pier::project::timeline::LOG_NOTES;
    let line = "y".repeat((1 << 20) - 1);
    for _ in 0..(bound >> 20) {
        log.push(line.clone());
    }
    log.push("over".into());
    log.push("and more".into());
    let report = log.close().await;
    assert!(report.complete(), "{report:?}");
    assert_eq!((report.sent, report.dropped), ((bound >> 20) + 1, 2));
    let (_, text) = timeline.get("d-big").await.unwrap().unwrap();
    let last = text.lines().last().unwrap();
    assert_eq!(last, "[log cut: 14 bytes in 2 lines not kept: a deploy's log keeps 16 MiB]");
    assert_eq!(text.len() as u64, bound + last.len() as u64 + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_lock_is_held_across_runners_and_waited_for() {
    let pg = server();
    let db = url(&pg.database("locks"));
    let first = state(&db, "demo").await;
    let second = state(&db, "demo").await;
    first.start(&deploy("d-first", "prod"), "runner-1").await.unwrap();
    let held = first.lock("prod", "d-first", "runner-1", Duration::ZERO).await.unwrap();
    assert!(!held.lost());
    held.check().unwrap();

    let asked = Instant::now();
    let error = second.lock("prod", "d-second", "runner-2", Duration::ZERO).await.expect_err("busy");
    assert!(asked.elapsed() < Duration::from_secs(2), "at once: {:?}", asked.elapsed());
    match &error {
        SharedError::Busy { server, deploy, runner, running_for } => {
            assert_eq!(
                (server.as_str(), deploy.as_deref(), runner.as_deref()),
                ("prod", Some("d-first"), Some("runner-1"))
            );
            assert!(running_for.is_some_and(|d| d < Duration::from_secs(60)), "{running_for:?}");
        }
        other => panic!("not busy: {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("d-first") && message.contains("runner-1") && message.contains("running for"),
        "{message}"
    );

    // Another server, and the same server of another project, are free.
    drop(second.lock("staging", "d-staging", "runner-2", Duration::ZERO).await.unwrap());
    let other = state(&db, "other").await;
    drop(other.lock("prod", "d-other", "runner-3", Duration::ZERO).await.unwrap());

    // Waiting gives up after its time.
    let asked = Instant::now();
    let error = second.lock("prod", "d-second", "runner-2", Duration::from_millis(300)).await.expect_err("busy");
    assert!(matches!(error, SharedError::Busy { .. }), "{error:?}");
    assert!(asked.elapsed() >= Duration::from_millis(300));

    // And takes the lock as soon as the holder lets go.
    let second = Arc::new(second);
    let waiter = tokio::spawn({
        let second = second.clone();
        async move { second.lock("prod", "d-second", "runner-2", Duration::from_secs(2)).await }
    });
    let waiting = || async {
        pg.sql(
            "locks",
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        ) == "1"
    };
    until("the second runner waits for the lock", waiting).await;
    tokio::spawn(async move { drop(held) }).await.unwrap();
    let taken = waiter.await.unwrap().expect("taken once the first let go");
    assert!(!taken.lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_whose_connection_ends_is_lost_and_free_for_others() {
    let pg = server();
    let db = url(&pg.database("lock_lost"));
    let first = state(&db, "demo").await;
    let held = first.lock("prod", "d-first", "runner-1", Duration::ZERO).await.unwrap();
    let pid = pg.sql(
        "lock_lost",
        "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid)
         WHERE l.locktype = 'advisory' AND l.granted AND a.datname = 'lock_lost'",
    );
    assert!(!pid.is_empty() && !pid.contains('\n'), "one holder: {pid}");
    assert_eq!(
        pg.sql("lock_lost", &format!("SELECT application_name FROM pg_stat_activity WHERE pid = {pid}")),
        "pier lock prod d-first"
    );
    pg.sql("lock_lost", &format!("SELECT pg_terminate_backend({pid})"));
    until("the lock is known lost", || async { held.lost() }).await;
    let error = held.check().expect_err("lost");
    assert!(matches!(&error, SharedError::LockLost { server } if server == "prod"), "{error:?}");
    assert!(error.to_string().contains("lost"), "{error}");
    let second = state(&db, "demo").await;
    second.lock("prod", "d-second", "runner-2", Duration::from_secs(2)).await.expect("free once its holder is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_marks_only_deploys_whose_runner_is_gone() {
    let pg = server();
    let db = url(&pg.database("reconcile"));
    let gone = state(&db, "demo").await;
    let live = state(&db, "demo").await;
    gone.start(&deploy("d-gone", "prod"), "runner-1").await.unwrap();
    drop(gone);
    live.start(&deploy("d-live", "staging"), "runner-2").await.unwrap();
    let _staging = live.lock("staging", "d-live", "runner-2", Duration::ZERO).await.unwrap();

    let third = state(&db, "demo").await;
    assert_eq!(third.reconcile(None).await.unwrap(), ["d-gone"]);
    assert_eq!(third.get("d-gone").await.unwrap().unwrap().0.status, Status::Interrupted);
    assert_eq!(third.get("d-live").await.unwrap().unwrap().0.status, Status::Running);
    assert!(third.reconcile(None).await.unwrap().is_empty(), "once");
    // The holder of a lock never marks its own deploy.
    assert!(live.reconcile(Some("staging")).await.unwrap().is_empty());

    // Holding prod's lock, every other running deploy of prod is stale (and only prod's).
    third.start(&deploy("d-stale", "prod"), "runner-1").await.unwrap();
    let _prod = third.lock("prod", "d-new", "runner-3", Duration::ZERO).await.unwrap();
    third.start(&deploy("d-new", "prod"), "runner-3").await.unwrap();
    assert_eq!(third.reconcile(Some("prod")).await.unwrap(), ["d-stale"]);
    assert_eq!(third.get("d-new").await.unwrap().unwrap().0.status, Status::Running);
    assert_eq!(third.get("d-live").await.unwrap().unwrap().0.status, Status::Running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_modes_against_a_server_with_tls() {
    use std::os::unix::fs::PermissionsExt as _;
    let certs = common::tempdir();
    let dir = certs.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    postgres::certificates(dir);
    let key = dir.join("server.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    postgres::give_to_server(&key);
    // The tests' superuser is trusted; every other user gives a password.
    let hba = dir.join("pg_hba.conf");
    std::fs::write(
        &hba,
        format!(
            "local all all trust\nhost all {} 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            postgres::USER
        ),
    )
    .unwrap();
    let setting = |name: &str, path: &Path| format!("{name}={}", path.display());
    let pg = Postgres::start_with(&[
        "ssl=on",
        &setting("ssl_cert_file", &dir.join("server.crt")),
        &setting("ssl_key_file", &key),
        &setting("hba_file", &hba),
    ]);
    let ca = dir.join("ca.crt");
    let base =
        |db: &str, host: &str, query: &str| format!("postgres://{}@{host}:{}/{db}?{query}", postgres::USER, pg.port);
    let sessions = |db: &str, ssl: bool| {
        pg.sql(
            "postgres",
            &format!(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.datname = '{db}' AND s.ssl = {ssl}"
            ),
        )
    };

    pg.database("verified");
    let verified = format!("sslmode=verify-full&sslrootcert={}", ca.display());
    let state_ = shared::connect(&url(&base("verified", "127.0.0.1", &verified)), "demo").await.unwrap();
    state_.list(None, 1).await.unwrap();
    assert_ne!(sessions("verified", true), "0");
    assert_eq!(sessions("verified", false), "0");
    shared::connect(&url(&base("verified", "localhost", &verified)), "demo").await.expect("by name too");

    // Without the CA, the chain is not trusted.
    let error = shared::connect(&url(&base("verified", "127.0.0.1", "sslmode=verify-full")), "demo")
        .await
        .err()
        .expect("an unknown issuer is refused");
    let message = error.to_string();
    assert!(matches!(error, SharedError::Connect { .. } | SharedError::Tls(_)), "{error:?}");
    assert!(message.to_lowercase().contains("certificate"), "{message}");

    // `require` encrypts without verifying.
    pg.database("required");
    let state_ = shared::connect(&url(&base("required", "127.0.0.1", "sslmode=require")), "demo").await.unwrap();
    state_.list(None, 1).await.unwrap();
    assert_ne!(sessions("required", true), "0");

    // `disable` talks in clear to a server that allows both.
    pg.database("clear");
    let state_ = shared::connect(&url(&base("clear", "127.0.0.1", "sslmode=disable")), "demo").await.unwrap();
    state_.list(None, 1).await.unwrap();
    assert_ne!(sessions("clear", false), "0");
    assert_eq!(sessions("clear", true), "0");

    // A password login (SCRAM, over TLS): a wrong password is refused at once, unnamed.
    pg.sql("postgres", "CREATE ROLE ada LOGIN PASSWORD 'right-horse-battery'");
    pg.sql("postgres", "CREATE DATABASE owned OWNER ada");
    let with = |password: &str| url(&format!("postgres://ada:{password}@127.0.0.1:{}/owned?{verified}", pg.port));
    let asked = Instant::now();
    let error = shared::connect(&with("wrong-staple-pw"), "demo").await.err().expect("a wrong password");
    assert!(asked.elapsed() < Duration::from_secs(3), "not tried again: {:?}", asked.elapsed());
    let (message, debug) = (error.to_string(), format!("{error:?}"));
    assert!(message.contains("password authentication failed"), "{message}");
    assert!(message.contains("postgres://ada:***@127.0.0.1"), "{message}");
    assert!(!message.contains("wrong-staple") && !debug.contains("wrong-staple"), "{message} {debug}");
    let ada = shared::connect(&with("right-horse-battery"), "demo").await.expect("the right password");
    ada.start(&deploy("d-ada", "prod"), "runner-1").await.unwrap();
    assert_eq!(ada.list(None, 5).await.unwrap().len(), 1);
}
