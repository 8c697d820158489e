//! Heroku without the Node CLI: `pier run` and native `heroku run` deploy commands over
//! the fake's TLS rendezvous, with no `heroku` program on `PATH`; rollback, automatic
//! rollback after a failed health check, and `server remove` deregistering the SSH key.

mod common;

use common::{EMAIL, Project, dyno, only_programs, release_with, run, timeline};
use fake_heroku::{RunScript, Script};

/// A project with the app, one seeded release (v1) live, and rendezvous over TLS.
fn project() -> Project {
    let project = Project::with_rendezvous();
    project.app();
    project
}

fn script_run(project: &Project, run: RunScript) {
    project.fake.script(Script { runs: vec![run], ..Default::default() });
}

fn output(lines: &[&str], status: i32) -> RunScript {
    RunScript { output: lines.iter().map(|l| l.to_string()).collect(), status, ..Default::default() }
}

/// `pier` with a `PATH` holding only `sh` and `git`: no `heroku`, no `node`.
fn pier_without_cli(project: &Project) -> assert_cmd::Command {
    let mut cmd = project.pier();
    cmd.env("PATH", only_programs(project.dir(), &["sh", "git"]));
    cmd
}

#[test]
fn pier_run_shows_the_output_and_exits_with_the_remote_status() {
    let project = project();
    script_run(&project, output(&["migrating users", "done"], 0));
    let (out, err) = run(
        pier_without_cli(&project)
            .args(["run", "prod", "-e", "RAILS_ENV=production", "--size", "standard-2x", "--"])
            .args(["rake", "db:migrate"]),
        0,
    );
    assert_eq!(out, "migrating users\ndone\n", "{err}");
    let runs = project.fake.runs();
    assert_eq!(runs.len(), 1);
    let r = &runs[0];
    assert_eq!(r.base_command, "rake db:migrate");
    assert!(r.attached, "the rendezvous was used");
    assert_eq!(r.force_no_tty, Some(true), "no terminal here");
    assert_eq!(r.size.as_deref(), Some("standard-2x"));
    assert_eq!(r.env.get("RAILS_ENV").map(String::as_str), Some("production"));

    // The remote status is pier's, whatever it is.
    script_run(&project, output(&["boom"], 3));
    let (out, _) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/fail"]), 3);
    assert_eq!(out, "boom\n");
    script_run(&project, output(&[], 0));
    // Words are quoted for the dyno's shell: one argument stays one.
    run(pier_without_cli(&project).args(["run", "prod", "--", "echo", "two words", "it's"]), 0);
    assert_eq!(project.fake.runs()[2].base_command, "echo 'two words' \"it's\"");
}

#[test]
fn the_exit_status_is_found_across_reads_and_a_missing_one_fails() {
    let project = project();
    script_run(&project, RunScript { split_marker: true, crlf: Some(true), ..output(&["a", "b"], 7) });
    let (out, _) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/x"]), 7);
    assert_eq!(out, "a\nb\n", "CRLF line ends are one line end");

    script_run(&project, RunScript { no_marker: true, ..output(&["half"], 0) });
    let (out, err) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/x"]), 1);
    assert_eq!(out, "half\n");
    assert!(err.contains("no exit status returned"), "{err}");
}

#[test]
fn a_rendezvous_elsewhere_is_refused_and_never_connected_to() {
    let project = project();
    let port = project.fake.rendezvous_port().unwrap();
    // Someone listening where the hostile answer points.
    let listener = std::net::TcpListener::bind(("127.0.0.2", port)).expect("bind 127.0.0.2");
    listener.set_nonblocking(true).unwrap();
    script_run(&project, RunScript { attach_host: Some("127.0.0.2".into()), ..output(&["never"], 0) });
    let (out, err) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/x"]), 3);
    assert_eq!(out, "");
    assert!(err.contains("127.0.0.2"), "{err}");
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "nothing connected to 127.0.0.2"
    );
    // The benign twin: the same answer on the API's own host is followed.
    script_run(&project, output(&["here"], 0));
    let (out, _) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/x"]), 0);
    assert_eq!(out, "here\n");
}

#[test]
fn input_reaches_the_dyno() {
    let project = project();
    script_run(&project, RunScript { echo_input: true, crlf: Some(false), ..output(&[], 0) });
    let (out, _) = run(pier_without_cli(&project).args(["run", "prod", "--", "cat"]).write_stdin("hello\n"), 0);
    assert!(out.contains("hello"), "{out}");
    assert!(String::from_utf8_lossy(&project.fake.runs()[0].input).contains("hello"));
}

#[test]
fn a_release_not_ready_is_tried_again() {
    let project = project();
    script_run(&project, RunScript { conflicts: 2, ..output(&["ok"], 0) });
    let (out, _) = run(pier_without_cli(&project).args(["run", "prod", "--", "bin/x"]), 0);
    assert_eq!(out, "ok\n");
}

#[test]
fn a_heroku_run_deploy_command_needs_no_cli_and_its_status_counts() {
    let project = project();
    project.commands(&["heroku run rake db:migrate"]);
    script_run(&project, output(&["migrated"], 0));
    let (out, err) = run(pier_without_cli(&project).args(["deploy", "prod"]), 0);
    assert!(out.contains("1 command passed"), "{out}");
    assert!(err.contains("migrated"), "{err}");
    assert_eq!(project.fake.runs()[0].base_command, "rake db:migrate");

    script_run(&project, output(&["migration failed"], 1));
    let (out, err) = run(pier_without_cli(&project).args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    assert!(err.contains("command 1 of 1 (`heroku run rake db:migrate`) exited with 1"), "{err}");
    assert_eq!(timeline(&project)[0]["status"], "failed");
}

#[test]
fn a_flag_pier_does_not_run_itself_needs_the_cli_and_says_so_before_deploying() {
    let project = project();
    project.commands(&["heroku run --remote staging rake db:migrate"]);
    let (_, err) = run(pier_without_cli(&project).args(["deploy", "prod"]), 2);
    assert!(err.contains("`heroku`"), "{err}");
    assert!(err.contains("`--remote`"), "{err}");
    assert!(err.contains("nothing was deployed"), "{err}");
    assert!(project.fake.builds().is_empty(), "nothing was built");
    assert!(project.fake.runs().is_empty());
}

#[test]
fn rollback_returns_to_the_previous_release_and_is_in_the_timeline() {
    let project = project();
    run(project.pier().args(["deploy", "prod"]), 0);
    let (out, err) = run(project.pier().args(["rollback", "prod"]), 0);
    assert!(out.contains("rolled back hello-app to v1 (now v3)"), "{out}");
    assert!(err.contains("add-ons and config vars are not rolled back"), "{err}");
    let rollbacks = project.fake.rollbacks();
    assert_eq!(rollbacks.len(), 1);
    assert_eq!(rollbacks[0].to_version, 1);
    let entries = timeline(&project);
    assert_eq!(entries[0]["trigger"], "rollback", "{entries}");
    assert_eq!(entries[0]["release"], "v3");

    // Back to what a deploy made live, by its id.
    let deploy = entries[1]["id"].as_str().unwrap().to_string();
    let (out, _) = run(project.pier().args(["rollback", "prod", "--to", &deploy]), 0);
    assert!(out.contains("to v2 (now v4)"), "{out}");
    let (_, err) = run(project.pier().args(["rollback", "prod", "--to", "v99"]), 4);
    assert!(err.contains("no release `v99`"), "{err}");
}

#[test]
fn a_failed_health_check_rolls_back_when_the_server_says_so() {
    let project = project();
    run(project.pier().args(["server", "edit", "prod", "--set", "rollback_on_failure=true"]), 0);
    project.fake.script(release_with(vec![dyno("web.1", "crashed", 0)]));
    let (out, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    assert!(err.contains("dyno web.1 of v2 crashed after the release"), "{err}");
    assert!(err.contains("; rolled back to v1 (now v3)"), "{err}");
    assert_eq!(project.fake.rollbacks().len(), 1);

    // The no-permission twin: without the setting, a crash is not rolled back.
    run(project.pier().args(["server", "edit", "prod", "--set", "rollback_on_failure=false"]), 0);
    project.fake.script(release_with(vec![dyno("web.1", "crashed", 0)]));
    run(project.pier().args(["deploy", "prod"]), 1);
    assert_eq!(project.fake.rollbacks().len(), 1);
}

#[test]
fn a_health_path_must_answer_before_the_deploy_passes() {
    let project = project();
    let web = format!("web_url={}/__app/hello-app/", project.fake.url());
    run(project.pier().args(["server", "edit", "prod", "--set", &web, "--set", "health_path=/health"]), 0);
    project.fake.script(Script { web: vec![503, 502], ..Default::default() });
    let (out, _) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(out.contains("web.1 up; GET /health answered 200"), "{out}");
    let checks = project.fake.requests().into_iter().filter(|r| r.kind == fake_heroku::RequestKind::Web).count();
    assert_eq!(checks, 3, "asked until it answered");

    // Never healthy within the window: the deploy fails, and rolls back when told to.
    let settings = ["--set", "health_timeout=1", "--set", "rollback_on_failure=true"];
    run(project.pier().args(["server", "edit", "prod"]).args(settings), 0);
    project.fake.script(Script { web: vec![503; 1000], ..Default::default() });
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 1);
    assert!(err.contains("/__app/hello-app/health did not pass within 1 s: last answer HTTP 503"), "{err}");
    assert!(err.contains("rolled back to v2 (now v4)"), "{err}");
    let (_, err) = run(project.pier().args(["server", "edit", "prod", "--set", "health_path=health"]), 2);
    assert!(err.contains("`health` is not a path starting with /"), "{err}");
}

#[test]
fn removing_a_server_deregisters_its_ssh_key() {
    let project = project();
    assert_eq!(project.fake.keys(EMAIL).len(), 1, "setup registered one key");
    let (out, _) = run(project.pier().args(["server", "remove", "prod"]), 0);
    assert!(out.contains("deregistered SSH key"), "{out}");
    assert!(out.contains("removed server"), "{out}");
    assert!(project.fake.keys(EMAIL).is_empty());
}

#[test]
fn a_server_whose_key_cannot_be_deregistered_is_removed_with_a_warning() {
    let project = project();
    let refused = fake_heroku::FailRule {
        method: "GET".into(),
        path: "/account/keys".into(),
        status: 403,
        id: "forbidden".into(),
        message: "this key may not list SSH keys".into(),
        times: 1,
        retry_after: None,
    };
    project.fake.script(Script { fail_next: vec![refused], ..Default::default() });
    let (out, err) = run(project.pier().args(["server", "remove", "prod"]), 0);
    assert!(out.contains("removed server"), "{out}");
    assert!(err.contains("this key may not list SSH keys"), "{err}");
    assert!(err.contains("must be removed by hand"), "{err}");
    assert_eq!(project.fake.keys(EMAIL).len(), 1);
}
