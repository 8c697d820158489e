//! Deploys (S2, S6, S7, S8, S9, S10) through the real `pier` binary against the fake Heroku.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;

use common::{API_KEY, Project, fifo, run};
use fake_heroku::{BuildScript, FailRule, FinalStatus, ReleaseScript, RequestKind, Script};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The timeline as JSON.
fn timeline(project: &Project) -> serde_json::Value {
    let (out, _) = run(project.pier().args(["timeline", "--json"]), 0);
    json(&out)
}

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
fn a_failed_build_fails_the_deploy_with_its_last_lines() {
    let (project, _) = Project::with_app();
    project.fake.script(failed_build(
        FinalStatus::Failed,
        None,
        &["-----> Building", "error: could not compile app", "Build failed"],
    ));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    assert!(err.contains("last lines of the output:"), "{err}");
    assert!(err.contains("error: could not compile app"), "{err}");
    assert_eq!(timeline(&project)[0]["status"], "failed");
}

#[test]
fn a_failed_release_phase_fails_the_deploy() {
    let (project, _) = Project::with_app();
    let release = ReleaseScript {
        status: FinalStatus::Failed,
        output: Some(vec!["Running migrations".into(), "ERROR: migration 0007 failed".into()]),
        ..Default::default()
    };
    project.fake.script(failed_build(FinalStatus::Succeeded, Some(release), &["Build succeeded"]));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(out.contains("the release phase of v1 failed on Heroku"), "{out}");
    assert!(err.contains("ERROR: migration 0007 failed"), "{err}");
    let d = &timeline(&project)[0];
    assert_eq!((d["status"].as_str(), d["exit_code"].as_i64()), (Some("failed"), Some(1)));
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
    assert!(err.contains("1 later command(s) not run"), "{err}");
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
    project.commands(&["heroku run rake db:migrate", "heroku run -x -- rake seed", "heroku ps"]);
    let path = stand_in_heroku(project.dir(), 0);
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", &path), 0);
    let args = std::fs::read_to_string(project.dir().join("heroku-args.txt")).unwrap();
    assert_eq!(args, "run --exit-code rake db:migrate\nrun -x -- rake seed\nps\n");
    assert_eq!(err.matches("added `--exit-code` to `heroku run`").count(), 1, "said once: {err}");

    // The dyno's failure, passed through by --exit-code, fails the deploy.
    let path = stand_in_heroku(project.dir(), 7);
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", &path), 1);
    assert!(err.contains("command 1 of 3 (`heroku run --exit-code rake db:migrate`) exited with 7"), "{err}");
}

#[test]
fn a_missing_heroku_cli_is_named_before_anything_deploys() {
    let (project, _) = Project::with_app();
    project.commands(&["heroku run rake db:migrate"]);
    let before = project.fake.requests().len();
    let (_, err) = run(project.pier().args(["deploy", "prod"]).env("PATH", "/usr/bin:/bin"), 2);
    assert!(
        err.contains(
            "need `heroku` (install it with: npm install -g heroku), which is not on PATH; nothing was deployed"
        ),
        "{err}"
    );
    assert_eq!(project.fake.requests().len(), before, "nothing may reach Heroku");
}

/// Starts a deploy whose only command blocks on a pipe; returns the process once the
/// command runs, with the key file path it saw.
fn blocked_deploy(project: &Project, extra: &[&str]) -> (std::process::Child, String, std::path::PathBuf) {
    let started = fifo(project.dir(), "started");
    let release = fifo(project.dir(), "release");
    project.commands(&[&format!(
        "echo \"$PIER_SSH_KEY\" > '{}'; cat '{}' > /dev/null",
        started.display(),
        release.display()
    )]);
    let mut args = vec!["deploy", "prod"];
    args.extend_from_slice(extra);
    let child = project.spawn(&args);
    let mut key_path = String::new();
    std::fs::File::open(&started).unwrap().read_to_string(&mut key_path).unwrap();
    (child, key_path.trim().to_string(), release)
}

#[test]
fn two_deploys_of_one_server_never_overlap() {
    let (project, _) = Project::with_app();
    let (first, _, release) = blocked_deploy(&project, &[]);
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
    let (child, key_path, _release) = blocked_deploy(&project, &[]);
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
    let (mut child, key_path, release) = blocked_deploy(&project, &[]);
    child.kill().unwrap(); // SIGKILL: no cleanup can run in the process
    child.wait().unwrap();
    // Let the orphaned command finish.
    std::fs::OpenOptions::new().write(true).open(&release).unwrap().write_all(b"go\n").unwrap();
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
