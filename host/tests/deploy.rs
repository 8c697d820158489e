//! Deploys (S2, S6, S7, S8, S9, S10) through the real `pier` binary against the fake Heroku.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{API_KEY, Project, dyno, fifo, json, release_with, run, timeline};
use fake_heroku::{BuildScript, FailRule, FinalStatus, ReleaseScript, RequestKind, Script};

measure_trampoline!();

fn failed_build(status: FinalStatus, release: Option<ReleaseScript>, output: &[&str]) -> Script {
    Script {
        next_build: Some(BuildScript {
            status,
            output: Some(output.iter().map(|s| s.to_string()).collect()),
            release: release.unwrap_or_default(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn a_deploy_uploads_the_checkout_builds_releases_and_is_recorded() {
    let (project, commit) = Project::with_app();
    let (out, err) = run(project.pier().args(["deploy", "prod", "--build", "77"]), 0);
    assert!(out.starts_with("prod: succeeded in "), "{out}");
    assert!(out.contains("released v1 of hello-app"), "{out}");
    assert!(err.contains("→ Building"), "{err}");
    assert!(err.contains("Migrating database... done"), "release phase output is streamed: {err}");

    // The Build API, in order, every request in Heroku's schema.
    let requests = project.fake.requests();
    fake_heroku::schema::check_all(&requests).unwrap();
    let posts: Vec<String> =
        requests.iter().filter(|r| r.method == "POST").map(|r| format!("{} {}", r.method, r.path)).collect();
    assert_eq!(posts[posts.len() - 2..], ["POST /sources", "POST /apps/hello-app/builds"]);
    let build = &project.fake.builds()[0];
    assert_eq!(build["source_blob"]["version"], commit);
    assert!(requests.iter().any(|r| r.method == "PUT" && r.kind == RequestKind::Blob));
    assert!(requests.iter().any(|r| r.path.contains("/releases/")));
    // The tarball holds the checkout, never .git.
    let url = build["source_blob"]["url"].as_str().unwrap();
    let blob_id = url.rsplit('/').next().unwrap().split('?').next().unwrap();
    let names = common::tar_names(&project.fake.blob(blob_id).unwrap());
    assert!(names.contains(&"Procfile".to_string()) && names.contains(&"app.py".to_string()), "{names:?}");
    assert!(
        names.iter().all(|n| !n.starts_with(".git/") && !n.starts_with(".config") && !n.starts_with(".pier")),
        "{names:?}"
    );

    let deploys = timeline(&project);
    let d = &deploys[0];
    assert_eq!(
        (d["server"].as_str(), d["status"].as_str(), d["exit_code"].as_i64()),
        (Some("prod"), Some("succeeded"), Some(0))
    );
    assert_eq!(
        (d["commit"].as_str(), d["branch"].as_str(), d["build"].as_str()),
        (Some(commit.as_str()), Some("main"), Some("77"))
    );
    assert_eq!(d["trigger"], "manual");
    let (log, _) = run(project.pier().args(["timeline", "show", d["id"].as_str().unwrap()]), 0);
    assert!(log.contains("Migrating database... done"), "{log}");
    assert!(!log.contains(API_KEY) && !out.contains(API_KEY) && !err.contains(API_KEY));
}

#[test]
fn a_failed_build_fails_the_deploy_and_its_streamed_lines_are_not_repeated() {
    let (project, _) = Project::with_app();
    project.fake.script(failed_build(
        FinalStatus::Failed,
        None,
        &["-----> Building", "error: could not compile app", "Build failed"],
    ));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    assert_eq!(count(&err, "error: could not compile app"), 1, "streamed once, not shown again: {err}");
    assert!(!err.contains("last lines of the output:"), "{err}");
    assert_eq!(timeline(&project)[0]["status"], "failed");
}

/// How many times `needle` occurs in `text`.
fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// The records of a `--json` deploy: its events, and its result.
fn json_records(out: &str) -> (Vec<serde_json::Value>, serde_json::Value) {
    let records: Vec<serde_json::Value> = out.lines().map(json).collect();
    let events = records.iter().filter(|r| r["type"] == "event").map(|r| r["data"]["event"].clone()).collect();
    let result = records.iter().find(|r| r["type"] == "result").expect("a result record")["data"].clone();
    (events, result)
}

/// The events whose text (message, title or line) contains `needle`.
fn events_with(events: &[serde_json::Value], needle: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            ["message", "title", "line"].iter().any(|k| e[*k].as_str().is_some_and(|text| text.contains(needle)))
        })
        .count()
}

/// Deploys `prod`, expecting a failure: each of `errors` is said once on stderr and
/// named once by the summary on stdout, each line of `streamed` shows once (live) and
/// is never repeated, and the same holds of the deploy's log and of `--json`.
fn fails_saying_once(project: &Project, errors: &[&str], streamed: &[&str]) {
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    let summary: Vec<&str> = out.lines().filter(|l| l.starts_with("prod: failed")).collect();
    assert_eq!(summary.len(), 1, "{out}");
    for error in errors {
        assert_eq!(count(&err, error), 1, "`{error}` said once on stderr:\n{err}");
        assert_eq!(count(&out, error), 1, "`{error}` named once by the summary:\n{out}");
    }
    for line in streamed {
        assert_eq!(count(&err, line), 1, "`{line}` streamed once and not repeated:\n{err}");
        assert!(!out.contains(line), "{out}");
    }
    assert!(!err.contains("last lines of the output"), "the streamed lines are not shown again:\n{err}");

    let id = timeline(project)[0]["id"].as_str().unwrap().to_string();
    let log = log_of(project, &id);
    for text in errors.iter().chain(streamed) {
        assert_eq!(count(&log, text), 1, "`{text}` once in the deploy's log:\n{log}");
    }

    let (out, err) = run(project.pier().args(["deploy", "prod", "--json"]), 1);
    let (events, result) = json_records(&out);
    assert_eq!(result["status"], "failed", "{result}");
    for error in errors {
        assert_eq!(events_with(&events, error), 1, "`{error}` carried by one event:\n{out}");
        assert!(result["summary"].as_str().unwrap().contains(error), "{result}");
        assert_eq!(count(&err, error), 0, "with --json the error is in the JSON Lines:\n{err}");
    }
    for line in streamed {
        assert_eq!(events_with(&events, line), 1, "`{line}` in one event:\n{out}");
    }
}

#[test]
fn a_failed_command_says_its_error_once() {
    let (project, _) = Project::with_app();
    // What the command prints (`kaboom-42`) is not in the command's text.
    project.commands(&["echo kaboom-$((6 * 7)) >&2; exit 3"]);
    fails_saying_once(
        &project,
        &["command 1 of 1 (`echo kaboom-$((6 * 7)) >&2; exit 3`) exited with 3"],
        &["kaboom-42"],
    );
}

#[test]
fn a_command_that_fails_after_filling_the_log_shows_how_it_ended() {
    let (project, _) = Project::with_app();
    // 17 MB in lines of 2,000 bytes: more than the log keeps, so the last ones are only
    // counted.
    project.commands(&["head -c 17000000 /dev/zero | tr '\\0' x | fold -w 2000; echo; echo last-words-9c; exit 5"]);
    let (out, err) = run(project.pier().args(["deploy", "prod", "--json"]), 1);
    let (events, result) = json_records(&out);
    let message = "command 1 of 1 (`head -c 17000000 /dev/zero | tr '\\0' x | fold -w 2000; echo; echo last-words-9c; \
                   exit 5`) exited with 5";
    assert_eq!(events_with(&events, message), 1, "{err}");
    assert_eq!(events_with(&events, "last lines of the output:"), 1);
    let log = log_of(&project, result["deploy_id"].as_str().unwrap());
    let (_, end) = log.rsplit_once("last lines of the output:").expect("the log shows the tail");
    assert!(end.contains("last-words-9c") && end.contains(message), "{end}");
    assert_eq!(count(&log, message), 1, "{end}");
}

#[test]
fn a_failed_release_phase_says_its_error_once_and_does_not_repeat_its_lines() {
    let (project, _) = Project::with_app();
    let lines = ["Running migrations (release 5e1f)", "ERROR: migration 0007 failed (release 5e1f)"];
    let release = ReleaseScript {
        status: FinalStatus::Failed,
        output: Some(lines.iter().map(|l| l.to_string()).collect()),
        ..Default::default()
    };
    // Two builds (one for the text deploy, one for the --json one), each failing so.
    for _ in 0..2 {
        project.fake.script(failed_build(FinalStatus::Succeeded, Some(release.clone()), &["Build succeeded"]));
    }
    fails_saying_once(&project, &["heroku: the release phase of v"], &lines);
    let summaries: Vec<String> =
        timeline(&project).as_array().unwrap().iter().map(|d| d["summary"].as_str().unwrap().to_string()).collect();
    assert_eq!(
        summaries,
        ["heroku: the release phase of v2 failed on Heroku", "heroku: the release phase of v1 failed on Heroku"]
    );
}

#[test]
fn rate_limits_are_waited_out_and_a_failed_post_is_never_repeated() {
    let (project, _) = Project::with_app();
    project.fake.script(Script { rate_limit_next: 1, retry_after_seconds: Some(0), ..Default::default() });
    run(project.pier().args(["deploy", "prod"]), 0);

    let (project, _) = Project::with_app();
    project.fake.script(Script {
        fail_next: vec![FailRule {
            method: "POST".into(),
            path: "/apps/hello-app/builds".into(),
            status: 503,
            id: "unavailable".into(),
            message: "Heroku is having a moment".into(),
            times: 1,
            retry_after: None,
        }],
        ..Default::default()
    });
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 4);
    assert!(err.contains("503"), "{err}");
    let posts =
        project.fake.requests().iter().filter(|r| r.method == "POST" && r.path == "/apps/hello-app/builds").count();
    assert_eq!(posts, 1, "a POST that failed must not be retried: it could start a second build");
}

#[test]
fn commands_get_the_deploy_environment_and_nothing_else() {
    let (project, commit) = Project::with_app();
    let env_file = project.dir().join("env.txt");
    project
        .commands(&[&format!("env | sort > '{}'", env_file.display()), "stat -c %a \"$PIER_SSH_KEY\" > key-mode.txt"]);
    run(project.pier().args(["server", "edit", "prod", "--url", "https://prod.example.com"]), 0);
    let (out, _) =
        run(project.pier().args(["deploy", "prod", "--build", "build-9", "--json"]).env("LEAKY_MARKER", "1"), 0);
    let result = out.lines().map(json).find(|l| l["type"] == "result").unwrap();
    let deploy_id = result["data"]["deploy_id"].as_str().unwrap().to_string();
    let env = std::fs::read_to_string(&env_file).unwrap();
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} missing:\n{env}"))
            .to_string()
    };
    assert_eq!(var("SEMAPHORE_SERVER_NAME"), "prod");
    assert_eq!(var("PIER_SERVER_NAME"), "prod");
    assert_eq!(var("PIER_SERVER_URL"), "https://prod.example.com");
    assert_eq!(var("PIER_DEPLOY_ID"), deploy_id);
    assert_eq!(var("PIER_COMMIT"), commit);
    assert_eq!(var("PIER_BRANCH"), "main");
    assert_eq!(var("PIER_BUILD"), "build-9");
    assert!(var("HEROKU_API_KEY") == API_KEY, "the Heroku CLI needs the key");
    assert_eq!(var("HEROKU_APP"), "hello-app");
    assert_eq!(var("HEROKU_HOST"), project.fake.url());
    assert!(var("GIT_SSH_COMMAND").contains("IdentitiesOnly=yes"));
    let key_path = var("PIER_SSH_KEY");
    assert!(!Path::new(&key_path).exists(), "the key file must be gone after the deploy");
    assert_eq!(std::fs::read_to_string(project.dir().join("key-mode.txt")).unwrap().trim(), "600");
    assert!(!env.contains("LEAKY_MARKER"), "the runner's environment must not leak into commands");
    assert!(!out.contains(API_KEY));
}

#[test]
fn the_first_failing_command_stops_the_deploy() {
    let (project, _) = Project::with_app();
    project.commands(&["echo first", "exit 3", "touch should-not-run"]);
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(err.contains("command 2 of 3 (`exit 3`) exited with 3"), "{err}");
    assert!(err.contains("1 later command not run"), "{err}");
    assert!(out.contains("prod: failed"), "{out}");
    assert!(!project.dir().join("should-not-run").exists());
    let d = &timeline(&project)[0];
    assert_eq!((d["status"].as_str(), d["exit_code"].as_i64()), (Some("failed"), Some(1)));
}

/// A stand-in `heroku` on PATH that records its arguments and exits with `code`.
fn stand_in_heroku(dir: &Path, code: i32) -> std::ffi::OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("heroku");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit {code}\n", dir.join("heroku-args.txt").display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&path));
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn heroku_run_gets_exit_code_and_its_failure_fails_the_deploy() {
    let (project, _) = Project::with_app();
    // Forms Pier does not run itself (see `one_off.rs` for those it does) go through the CLI.
    project.commands(&[
        "heroku run --remote production rake db:migrate",
        "heroku run -x -- rake seed; true",
        "heroku ps",
    ]);
    let path = stand_in_heroku(project.dir(), 0);
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", &path), 0);
    let args = std::fs::read_to_string(project.dir().join("heroku-args.txt")).unwrap();
    assert_eq!(args, "run --exit-code --remote production rake db:migrate\nrun -x -- rake seed\nps\n");
    assert_eq!(err.matches("added `--exit-code` to `heroku run`").count(), 1, "said once: {err}");
    assert!(err.contains("command 1 runs as written: Pier does not run `heroku run` with `--remote` itself"), "{err}");
    assert!(project.fake.runs().is_empty(), "no one-off dyno of Pier's own");

    // The dyno's failure, passed through by --exit-code, fails the deploy.
    let path = stand_in_heroku(project.dir(), 7);
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", &path), 1);
    assert!(
        err.contains("command 1 of 3 (`heroku run --exit-code --remote production rake db:migrate`) exited with 7"),
        "{err}"
    );
}

#[test]
fn a_missing_heroku_cli_is_named_before_anything_deploys() {
    let (project, _) = Project::with_app();
    // `heroku run` alone needs no CLI (`one_off.rs`); other subcommands do.
    project.commands(&["heroku ps:scale web=1"]);
    let before = project.fake.requests().len();
    // A PATH of only what this deploy needs, so a Heroku CLI installed on the machine
    // (in /usr/bin, say) is not found.
    let bin = common::tempdir();
    let path = common::only_programs(bin.path(), &["sh", "git"]);
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", &path), 2);
    assert!(
        err.contains(
            "need `heroku` (install it with: npm install -g heroku), which is not on PATH; nothing was deployed"
        ),
        "{err}"
    );
    assert_eq!(project.fake.requests().len(), before, "nothing may reach Heroku");
}

#[test]
fn two_deploys_of_one_server_never_overlap() {
    let (project, _) = Project::with_app();
    let (first, _, release) = project.blocked_deploy(&[]);
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(err.contains("server `prod` is being deployed by deploy "), "{err}");
    assert!(err.contains(&format!("(pid {})", first.id())), "{err}");
    assert!(err.contains("--wait SECONDS"), "{err}");

    // A deploy that waits gets its turn when the first ends.
    let waiting = project.spawn(&["deploy", "prod", "--wait", "120"]);
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().write_all(b"go\n").unwrap();
    let first = first.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    // The second runs the same blocking command: release it too.
    let started = project.dir().join("started");
    let mut seen = String::new();
    std::fs::File::open(&started).unwrap().read_to_string(&mut seen).unwrap();
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().write_all(b"go\n").unwrap();
    let second = waiting.wait_with_output().unwrap();
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    let statuses: Vec<String> =
        timeline(&project).as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
}

#[test]
fn an_interrupted_deploy_cleans_up_and_is_recorded() {
    let (project, _) = Project::with_app();
    let (child, key_path, _release) = project.blocked_deploy(&[]);
    assert!(Path::new(&key_path).exists());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!Path::new(&key_path).exists(), "the key file must be gone after an interruption");
    let d = &timeline(&project)[0];
    assert_eq!(d["status"], "interrupted");
}

#[test]
fn a_killed_deploy_shows_as_interrupted_and_its_lock_is_taken_over() {
    let (project, _) = Project::with_app();
    let (mut child, key_path, _release) = project.blocked_deploy(&[]);
    child.kill().unwrap(); // SIGKILL: no cleanup can run in the process
    child.wait().unwrap();
    // The command dies with pier; its supervisor holds the lock until it has.
    assert!(lock_freed_within(&project, DEADLINE), "the lock of a killed deploy was never released");
    let d = &timeline(&project)[0];
    assert_eq!(d["status"], "interrupted", "{d}");
    // The next deploy is not blocked by the dead process's lock, and cleans its key up.
    project.commands(&["true"]);
    run(project.pier().args(["deploy", "prod"]), 0);
    assert!(!Path::new(&key_path).exists(), "a killed deploy's key file is removed by the next run");
    // So is its run directory, outside the checkout, and the state's record of it.
    let run_dir = Path::new(&key_path).parent().unwrap();
    assert!(!run_dir.starts_with(project.dir()) && !run_dir.exists(), "{}", run_dir.display());
    let records = std::fs::read_dir(project.dir().join(".pier/run")).unwrap().count();
    assert_eq!(records, 0, "no record of a run directory is left");
}

#[test]
fn pier_ci_deploys_only_the_automatic_servers_of_the_build_branch() {
    let (project, commit) = Project::with_app();
    let add = |name: &str, flags: &[&str]| {
        run(
            &mut project.add(name, &[&["--set", "app=hello-app", "--set", "register_ssh_key=false"], flags].concat()),
            0,
        );
    };
    add("Staging", &["--strategy", "automatic", "--branch", "main"]);
    add("Release", &["--strategy", "automatic", "--branch", "release"]);
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_SHA", commit.as_str()),
        ("GITHUB_RUN_ID", "4242"),
        ("GITHUB_ACTOR", "octocat"),
    ];
    let mut cmd = project.pier();
    cmd.args(["ci", "--json"]).envs(github);
    let (out, _) = run(&mut cmd, 0);
    let results: Vec<serde_json::Value> =
        out.lines().map(json).filter(|l| l["type"] == "result").map(|l| l["data"].clone()).collect();
    let by = |s: &str| results.iter().find(|r| r["server"] == s).unwrap().clone();
    assert_eq!(by("staging")["status"], "succeeded");
    assert_eq!(by("prod")["status"], "skipped");
    assert!(by("prod")["summary"].as_str().unwrap().contains("manual strategy"));
    assert_eq!(by("release")["summary"], "follows branch release, this build is on main");
    let d = &timeline(&project)[0];
    assert_eq!(
        (d["server"].as_str(), d["trigger"].as_str(), d["build"].as_str(), d["actor"].as_str()),
        (Some("staging"), Some("automatic"), Some("4242"), Some("octocat"))
    );

    let gitlab = [
        ("GITLAB_CI", "true"),
        ("CI_COMMIT_BRANCH", "release"),
        ("CI_COMMIT_SHA", commit.as_str()),
        ("CI_PIPELINE_ID", "99"),
    ];
    let (out, _) = run(project.pier().args(["ci"]).envs(gitlab), 0);
    assert!(out.contains("release: succeeded"), "{out}");
    assert!(out.contains("staging: skipped"), "{out}");
    assert_eq!(timeline(&project)[0]["server"], "release");

    let (_, err) = run(project.pier().args(["ci"]), 2);
    assert!(
        err.contains("cannot tell which build this is (no CI environment recognised): set PIER_BRANCH and PIER_COMMIT"),
        "{err}"
    );

    // Pull- and merge-request builds deploy nothing, on every CI, whatever their branch is
    // called (a fork may call its branch `main`).
    let deploys = timeline(&project).as_array().map(Vec::len);
    let sha = commit.as_str();
    let pull_requests: [&[(&str, &str)]; 8] = [
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request_target"),
            ("GITHUB_REF_NAME", "main"),
            ("GITHUB_HEAD_REF", "main"),
            ("GITHUB_SHA", sha),
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_HEAD_REF", "main"),
            ("GITHUB_SHA", sha),
        ],
        &[("GITLAB_CI", "true"), ("CI_MERGE_REQUEST_IID", "4"), ("CI_COMMIT_BRANCH", "main"), ("CI_COMMIT_SHA", sha)],
        &[("GITLAB_CI", "true"), ("CI_PIPELINE_SOURCE", "merge_request_event"), ("CI_COMMIT_SHA", sha)],
        &[
            ("SEMAPHORE", "true"),
            ("SEMAPHORE_GIT_PR_NUMBER", "12"),
            ("SEMAPHORE_GIT_BRANCH", "main"),
            ("SEMAPHORE_GIT_SHA", sha),
        ],
        &[
            ("CIRCLECI", "true"),
            ("CIRCLE_PULL_REQUEST", "https://github.com/o/r/pull/3"),
            ("CIRCLE_BRANCH", "main"),
            ("CIRCLE_SHA1", sha),
        ],
        &[
            ("BUILDKITE", "true"),
            ("BUILDKITE_PULL_REQUEST", "7"),
            ("BUILDKITE_BRANCH", "main"),
            ("BUILDKITE_COMMIT", sha),
        ],
        &[("JENKINS_URL", "http://jenkins.test"), ("CHANGE_ID", "9"), ("BRANCH_NAME", "main"), ("GIT_COMMIT", sha)],
    ];
    for vars in pull_requests {
        let mut cmd = project.pier();
        cmd.args(["ci", "--json"]).envs(vars.iter().copied()).env("PIER_BRANCH", "main");
        let (out, _) = run(&mut cmd, 0);
        let results: Vec<serde_json::Value> =
            out.lines().map(json).filter(|l| l["type"] == "result").map(|l| l["data"].clone()).collect();
        assert_eq!(results.len(), 3, "{vars:?}: {out}");
        for r in &results {
            assert_eq!(r["status"], "skipped", "{vars:?}: {r}");
            assert!(r["summary"].as_str().unwrap().contains("pull requests never deploy"), "{vars:?}: {r}");
        }
    }
    assert_eq!(timeline(&project).as_array().map(Vec::len), deploys, "a pull-request build deployed");
    // The benign twin: the same project deploys a push to main.
    let mut cmd = project.pier();
    cmd.args(["ci"]).envs([
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_EVENT_NAME", "push"),
        ("GITHUB_REF_NAME", "main"),
        ("GITHUB_SHA", sha),
    ]);
    let (out, _) = run(&mut cmd, 0);
    assert!(out.contains("staging: succeeded"), "{out}");
}

#[test]
fn secrets_never_reach_the_timeline() {
    let (project, _) = Project::with_app();
    project.commands(&["echo \"key is $HEROKU_API_KEY\"", "printf %s \"$HEROKU_API_KEY\" | base64"]);
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(err.contains("key is [redacted]"), "{err}");
    let id = timeline(&project)[0]["id"].as_str().unwrap().to_string();
    let (log, _) = run(project.pier().args(["timeline", "show", &id, "--json"]), 0);
    let db = std::fs::read(project.dir().join(".pier/timeline.sqlite")).unwrap();
    for text in [out.as_str(), err.as_str(), log.as_str(), &String::from_utf8_lossy(&db)] {
        assert!(!text.contains(API_KEY), "API key leaked");
        assert!(!text.contains("aGVyb2t1LWFwaS1rZXktYWRh"), "base64 API key leaked");
    }
}

// ---------------------------------------------------------------------------------------
// No process outlives its deploy
// ---------------------------------------------------------------------------------------

/// The longest the tests wait for processes to end or a lock to be released: far more
/// than the supervisor's 2 s grace before SIGKILL.
const DEADLINE: Duration = Duration::from_secs(20);

/// An argument no other process has: `313`, this test process's pid, a counter. The
/// tests find their deploy commands' processes by it.
fn unique() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!("313{}{:03}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The live processes with `arg` as one whole argument (zombies have no arguments).
fn processes_with(arg: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let words: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if words.iter().skip(1).any(|w| *w == arg.as_bytes()) {
            found.push(format!("{name}: {}", String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

/// Polls `/proc` until `want` holds of the processes with `arg`, or `limit` passes.
fn poll_processes(arg: &str, limit: Duration, want: impl Fn(&[String]) -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if want(&processes_with(arg)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether every process with `arg` is gone within `limit`.
fn gone_within(arg: &str, limit: Duration) -> bool {
    poll_processes(arg, limit, |found| found.is_empty())
}

/// Whether the lock of `prod` can be taken within `limit` (polling, then released again).
fn lock_freed_within(project: &Project, limit: Duration) -> bool {
    let path = project.dir().join(".pier/locks/prod.lock");
    let deadline = Instant::now() + limit;
    loop {
        let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
        if nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to a `pier` started by the test.
fn signal(child: &std::process::Child, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
}

/// Starts a deploy of `prod`, whose command runs `sleep ARG` as a child of its shell, and
/// returns once that runs. A `stubborn` command ignores SIGTERM (the sleep inherits it),
/// so only SIGKILL ends it.
fn deploy_sleeping(project: &Project, arg: &str, stubborn: bool) -> std::process::Child {
    let trap = if stubborn { "trap '' TERM; " } else { "" };
    project.commands(&[&format!("{trap}sleep {arg}; echo after")]);
    let child = project.spawn(&["deploy", "prod"]);
    assert!(poll_processes(arg, Duration::from_secs(120), |f| !f.is_empty()), "the deploy command never started");
    child
}

#[test]
fn sigterm_of_pier_ends_the_deploy_commands_processes_before_it_exits() {
    let (project, _) = Project::with_app();
    let arg = unique();
    let child = deploy_sleeping(&project, &arg, false);
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", String::from_utf8_lossy(&output.stderr));
    // pier waits for the command's processes before it exits and releases the lock.
    assert_eq!(processes_with(&arg), Vec::<String>::new(), "the command outlived pier");
    assert_eq!(timeline(&project)[0]["status"], "interrupted");
    project.commands(&["true"]);
    run(project.pier().args(["deploy", "prod"]), 0);
}

#[test]
fn sigkill_of_pier_takes_the_deploy_commands_processes_with_it() {
    let (project, _) = Project::with_app();
    let arg = unique();
    let mut child = deploy_sleeping(&project, &arg, false);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(gone_within(&arg, DEADLINE), "left behind by a SIGKILLed pier: {:?}", processes_with(&arg));
    assert!(lock_freed_within(&project, DEADLINE));
    assert_eq!(timeline(&project)[0]["status"], "interrupted");
}

#[test]
fn a_deploy_after_a_killed_one_never_runs_beside_its_leftovers() {
    let (project, _) = Project::with_app();
    let arg = unique();
    let started = project.dir().join("second-started");
    let release = fifo(project.dir(), "second-release");
    // The first deploy sleeps, ignoring SIGTERM; the second (once `second` exists) says it
    // runs, then blocks until the test releases it.
    project.commands(&[&format!(
        "if [ -e second ]; then touch '{}'; cat '{}' > /dev/null; else trap '' TERM; sleep {arg}; echo after; fi",
        started.display(),
        release.display()
    )]);
    let mut first = project.spawn(&["deploy", "prod"]);
    assert!(poll_processes(&arg, Duration::from_secs(120), |f| !f.is_empty()), "the first deploy never ran");
    std::fs::write(project.dir().join("second"), "").unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    // Only SIGKILL ends the leftover, 2 s after SIGTERM: it still runs now.
    assert!(!processes_with(&arg).is_empty(), "the leftover should outlive SIGTERM for the grace period");
    let second = project.spawn(&["deploy", "prod", "--wait", "120"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the second deploy's command never started");
        std::thread::sleep(Duration::from_millis(10));
    }
    let beside = processes_with(&arg);
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().write_all(b"go\n").unwrap();
    let output = second.wait_with_output().unwrap();
    assert_eq!(beside, Vec::<String>::new(), "the second deploy ran beside a leftover of the first");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let statuses: Vec<String> =
        timeline(&project).as_array().unwrap().iter().map(|d| d["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses, ["succeeded", "interrupted"]);
}

/// A project whose server `procs` runs the `procs` test plugin in `mode`, with the
/// stand-in `pier-forker` in `bin` (outside the project: confined programs may not read
/// under `HOME`).
fn procs_project(mode: &str, arg: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    let home = common::tempdir();
    let dir = home.path();
    run(common::pier(dir).arg("init"), 0);
    std::fs::create_dir_all(dir.join("plugins")).unwrap();
    std::fs::copy(common::plugin("procs"), dir.join("plugins/procs.wasm")).unwrap();
    run(common::pier(dir).args(["plugins", "add", "plugins/procs.wasm", "--yes"]), 0);
    common::commit_app(dir);
    run(
        common::pier(dir)
            .args(["server", "add", "--method", "procs", "--name", "Procs", "--strategy", "manual"])
            .args(["--set", &format!("mode={mode}"), "--set", &format!("arg={arg}")]),
        0,
    );
    let bin = common::tempdir();
    let script = bin.path().join("pier-forker");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         if [ \"$2\" = hang ]; then sleep \"$1\" & echo \"child $!\"; wait; fi\n\
         (sleep 0.1; echo 'child finished') &\n\
         wait\n\
         echo 'program finished'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (home, bin)
}

/// Deploys `procs` with `bin` first on `PATH`; returns the deploy's summary.
fn deploy_procs(home: &Path, bin: &Path) -> String {
    let path = std::env::join_paths(
        std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
    )
    .unwrap();
    let (out, _) = run(common::pier(home).args(["deploy", "procs", "--json"]).env("PATH", path), 0);
    let result = out.lines().map(json).find(|l| l["type"] == "result").unwrap();
    result["data"]["summary"].as_str().unwrap().to_string()
}

#[test]
fn a_plugin_program_past_its_time_limit_is_killed_with_its_children() {
    let arg = unique();
    let (home, bin) = procs_project("hang", &arg);
    let summary = deploy_procs(home.path(), bin.path());
    assert_eq!(summary, "timeout");
    // The run ended only once the program and its child were gone.
    assert_eq!(processes_with(&arg), Vec::<String>::new(), "the program's child outlived its time limit");

    // The benign twin: a child that ends by itself is left to, and its output kept.
    run(common::pier(home.path()).args(["server", "edit", "procs", "--set", "mode=finish"]), 0);
    assert_eq!(deploy_procs(home.path(), bin.path()), "ok 0: child finished program finished");
}

#[test]
fn a_commands_children_that_end_by_themselves_are_left_to() {
    let (project, _) = Project::with_app();
    project.commands(&["(sleep 0.2; echo child-finished > child.txt) & wait; echo \"waited $?\" > wait.txt"]);
    run(project.pier().args(["deploy", "prod"]), 0);
    assert_eq!(project.read("child.txt"), "child-finished\n");
    assert_eq!(project.read("wait.txt"), "waited 0\n");
}

// ---------------------------------------------------------------------------------------
// Output is bounded in memory and on disk
// ---------------------------------------------------------------------------------------

const MIB: u64 = 1 << 20;

/// A long line as a message: its start and its end.
fn short(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= 120 {
        return line.to_string();
    }
    let head: String = chars[..40].iter().collect();
    let tail: String = chars[chars.len() - 60..].iter().collect();
    format!("{head}…({} chars)…{tail}", chars.len())
}

/// The log of deploy `id`, from `pier timeline show`.
fn log_of(project: &Project, id: &str) -> String {
    let (out, _) = run(project.pier().args(["timeline", "show", id, "--json"]), 0);
    json(&out)["log"].as_str().unwrap().to_string()
}

/// The bytes of every file under `dir`.
fn size_of(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() { size_of(&entry.path()) } else { meta.len() };
    }
    total
}

/// Deploys `prod` with `command` as its only command, measuring `pier`: how it ended,
/// the deploy's log and the size of `.pier/` after.
fn flood(command: &str) -> (common::Measured, String, u64) {
    let (project, _) = Project::with_app();
    project.commands(&[command]);
    let url = project.fake.url();
    let measured = common::pier_measured(
        project.dir(),
        &["deploy", "prod"],
        &[("HEROKU_HOST", url.as_str()), ("HEROKU_API_KEY", API_KEY)],
    );
    let state = size_of(&project.dir().join(".pier"));
    let log = log_of(&project, timeline(&project)[0]["id"].as_str().unwrap());
    (measured, log, state)
}

#[test]
fn a_flood_without_newlines_keeps_memory_and_disk_flat() {
    const BYTES: u64 = 300_000_000;
    let (m, log, state) = flood(&format!("head -c {BYTES} /dev/zero | tr '\\0' x"));
    eprintln!(
        "300 MB without a newline: exit {:?}, peak RSS {} MiB, .pier/ {} KiB, stderr {} bytes",
        m.code,
        m.max_rss / MIB,
        state >> 10,
        m.stderr.len()
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert!(m.max_rss < 256 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
    assert!(state < 64 * MIB, ".pier/ holds {state} bytes");
    let last = log.lines().last().unwrap();
    let expected = format!("  │ {} [cut: {} bytes]", "x".repeat(4096), BYTES - 4096);
    assert!(last == expected, "the log ends with the cut line, not {}", short(last));
}

#[test]
fn a_flood_of_lines_keeps_memory_and_disk_flat_and_the_log_says_what_it_dropped() {
    const BYTES: u64 = 100_000_000;
    let (m, log, state) = flood(&format!("yes | head -c {BYTES}"));
    eprintln!(
        "100 MB of `yes`: exit {:?}, peak RSS {} MiB, .pier/ {} KiB, log {} KiB, stderr {} bytes",
        m.code,
        m.max_rss / MIB,
        state >> 10,
        log.len() >> 10,
        m.stderr.len()
    );
    assert_eq!(m.code, Some(0), "{}", m.stderr);
    assert!(m.max_rss < 256 * MIB, "peak RSS {} MiB", m.max_rss / MIB);
    assert!(state < 64 * MIB, ".pier/ holds {state} bytes");
    assert!(log.len() as u64 <= 17 * MIB, "the log holds {} bytes", log.len());
    // The log ends with one line saying what it dropped, and every line is accounted for.
    let last = log.lines().last().unwrap();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert!(last.starts_with("[log cut: ") && last.ends_with("a deploy's log keeps 16 MiB]"), "{last}");
    let number = |i: usize| words[i].replace(',', "").parse::<u64>().unwrap_or_else(|_| panic!("{last}"));
    let (dropped_bytes, dropped_lines) = (number(2), number(5));
    let kept = log.lines().filter(|l| *l == "  │ y").count() as u64;
    assert_eq!(kept + dropped_lines, BYTES / 2, "{last}");
    assert!(dropped_bytes >= 2 * dropped_lines, "{last}");
    // What the terminal got is rate-limited, and says so.
    assert!(m.stderr.len() < 4 << 20, "stderr got {} bytes", m.stderr.len());
    assert!(m.stderr.contains("output lines not shown here"), "{}", &m.stderr[m.stderr.len().saturating_sub(2000)..]);
}

#[test]
fn long_lines_are_cut_after_redaction_and_short_output_is_kept_whole() {
    let (project, _) = Project::with_app();
    let script = [
        "printf 'first\\n\\n  indented ünïcödé\\n'",
        "head -c 4096 /dev/zero | tr '\\0' a; echo",
        "head -c 10000 /dev/zero | tr '\\0' x; echo",
        "head -c 4090 /dev/zero | tr '\\0' s; printf %s \"$HEROKU_API_KEY\"; head -c 30000 /dev/zero | tr '\\0' b; echo",
        "echo last",
    ]
    .join("; ");
    project.commands(&[&script]);
    let (out, _) = run(project.pier().args(["deploy", "prod", "--json"]), 0);
    let result = out.lines().map(json).find(|l| l["type"] == "result").unwrap();
    let log = log_of(&project, result["data"]["deploy_id"].as_str().unwrap());
    let (_, after) = log.split_once("→ Command 1/1").unwrap();
    let output: Vec<&str> = after.lines().skip(1).filter_map(|l| l.strip_prefix("  │ ")).collect();
    assert_eq!(output[..3], ["first", "", "  indented ünïcödé"], "{output:?}");
    assert!(output[3] == "a".repeat(4096), "a line of exactly 4 KiB is kept whole: {}", short(output[3]));
    assert!(output[4] == format!("{} [cut: 5904 bytes]", "x".repeat(4096)), "{}", short(output[4]));
    // A secret that begins in the shown part of a cut line is redacted whole.
    let cut = format!("{}[redac [cut: {} bytes]", "s".repeat(4090), 4090 + API_KEY.len() + 30000 - 4096);
    assert!(output[5] == cut, "{}", short(output[5]));
    assert!(!log.contains("heroku-"), "a secret's prefix is in the log");
    assert_eq!(output[6..], ["last"]);
    assert!(!log.contains("log cut"), "{log}");
}

// ---------------------------------------------------------------------------------------
// A server remembers where its API is
// ---------------------------------------------------------------------------------------

#[test]
fn a_server_set_up_with_heroku_host_keeps_its_api_when_the_variable_is_gone() {
    let (project, _) = Project::with_app();
    let fake = project.fake.url();
    // `server add` ran with HEROKU_HOST pointing at the fake: the API is stored with it.
    let toml = project.read("pier.toml");
    assert!(toml.contains(&format!("[servers.prod.endpoints]\napi = \"{fake}\"\n")), "{toml}");
    let (show, _) = run(project.pier().args(["server", "show", "prod"]), 0);
    assert!(show.contains(&format!("  endpoint:  api = {fake}\n")), "{show}");
    let (show, _) = run(project.pier().args(["server", "show", "prod", "--json"]), 0);
    assert_eq!(json(&show)["endpoints"], serde_json::json!({ "api": fake }), "{show}");

    // Without the variable, later calls use the stored API: validation of an edit, and a
    // deploy, whose commands get the same API for the Heroku CLI.
    // What stderr says of HEROKU_HOST, but for the command's own text.
    let about_host =
        |err: &str| err.lines().filter(|l| l.contains("HEROKU_HOST") && !l.starts_with("→ Command")).count();
    let without = || {
        let mut cmd = project.pier();
        cmd.env_remove("HEROKU_HOST");
        cmd
    };
    run(without().args(["server", "edit", "prod", "--set", "app=hello-app"]), 0);
    project.commands(&["printf %s \"$HEROKU_HOST\" > heroku-host.txt"]);
    let (_, err) = run(without().args(["deploy", "prod"]), 0);
    assert_eq!(about_host(&err), 0, "nothing to say when the variable is not set: {err}");
    assert_eq!(project.fake.builds().len(), 1, "the deploy reached the stored API");
    assert_eq!(project.read("heroku-host.txt"), fake);

    // A variable given for this run wins, and is said once, with both URLs.
    let second = fake_heroku::FakeHeroku::start(common::seed(vec![common::ada()])).expect("a second fake Heroku");
    let (_, err) = run(project.pier().env("HEROKU_HOST", second.url()).args(["deploy", "prod"]), 0);
    let said: Vec<&str> = err.lines().filter(|l| l.contains("HEROKU_HOST") && !l.starts_with("→ Command")).collect();
    assert_eq!(said.len(), 1, "{err}");
    assert!(said[0].contains(&second.url()) && said[0].contains(&fake), "{err}");
    assert!(!err.contains(API_KEY));
    assert_eq!((project.fake.builds().len(), second.builds().len()), (1, 1), "the second fake got the build");
    assert_eq!(project.read("heroku-host.txt"), second.url());
    // The same value as the stored one is nothing to say.
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert_eq!(about_host(&err), 0, "{err}");
}

#[test]
fn a_server_set_up_without_heroku_host_stores_no_endpoint() {
    let (project, _) = Project::with_app();
    let fake = project.fake.url();
    // The API given as a setting instead: the setting is kept, no endpoint is stored.
    let mut cmd =
        project.add("Direct", &["--strategy", "manual", "--set", "app=hello-app", "--set", &format!("api_url={fake}")]);
    run(cmd.env_remove("HEROKU_HOST"), 0);
    let toml = project.read("pier.toml");
    let direct = &toml[toml.find("[servers.direct]").expect("the server is saved")..];
    assert!(!direct.contains("endpoints"), "{toml}");
    let (show, _) = run(project.pier().args(["server", "show", "direct", "--json"]), 0);
    assert_eq!(json(&show)["endpoints"], serde_json::json!({}), "{show}");
    let (show, _) = run(project.pier().args(["server", "show", "direct"]), 0);
    assert!(!show.contains("endpoint:"), "{show}");
    let mut cmd = project.pier();
    run(cmd.env_remove("HEROKU_HOST").args(["deploy", "direct"]), 0);
    assert_eq!(project.fake.builds().len(), 1);
}

/// A release whose dynos are `dynos`.
fn dyno_lists(project: &Project) -> usize {
    project.fake.requests().iter().filter(|r| r.method == "GET" && r.path == "/apps/hello-app/dynos").count()
}

/// After the release, the deploy waits until the new release's dynos are up (as
/// `heroku ps:wait`); `run` and `release` dynos are not waited for.
#[test]
fn a_deploy_ends_when_the_new_dynos_are_up() {
    let (project, _) = Project::with_app();
    project.fake.script(release_with(vec![
        dyno("web.1", "up", 2),
        dyno("worker.1", "up", 1),
        dyno("run.4242", "crashed", 0),
    ]));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(out.contains("released v1 of hello-app; 2 dynos up (web.1, worker.1)"), "{out}\n{err}");
    assert!(err.contains("Waiting for the dynos of v1 to be up"), "{err}");
    assert!(dyno_lists(&project) >= 3, "it listed the dynos until they were up");
    fake_heroku::schema::check_all(&project.fake.requests()).unwrap();
}

/// A dyno of the new release that crashes fails the deploy (exit 1), naming it; one that
/// never comes up fails it after the server's wait; a wait of 0 skips the check.
#[test]
fn a_crashed_or_never_up_dyno_fails_the_deploy() {
    let (project, _) = Project::with_app();
    project.fake.script(release_with(vec![dyno("web.1", "up", 1), dyno("worker.1", "crashed", 1)]));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    assert!(err.contains("dyno worker.1 of v1 crashed after the release"), "{err}");
    assert_eq!(timeline(&project)[0]["status"], "failed");

    run(project.pier().args(["server", "edit", "prod", "--set", "health_timeout=1"]), 0);
    project.fake.script(release_with(vec![dyno("web.1", "up", 1_000_000)]));
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(err.contains("the dynos of v2 were not all up after 1 s: web.1 starting on v2"), "{err}");

    run(project.pier().args(["server", "edit", "prod", "--set", "health_timeout=0"]), 0);
    let before = dyno_lists(&project);
    project.fake.script(release_with(vec![dyno("web.1", "crashed", 0)]));
    let (out, _) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(out.contains("released v3 of hello-app"), "{out}");
    assert_eq!(dyno_lists(&project), before, "no wait, no dyno list");

    let (_, err) = run(project.pier().args(["server", "edit", "prod", "--set", "health_timeout=soon"]), 2);
    assert!(err.contains("`soon` is not a number of seconds from 0 to 3600"), "{err}");
}
