//! CI-native output of `pier deploy` and `pier ci` (GitHub Actions groups, annotations,
//! job summary and stopped commands; GitLab CI sections) through the real binary.

mod common;

use common::{Project, run};

/// What GitHub's runner would make of `text` (stdout or stderr of a step): the commands
/// it would process, in order, and whether it ends with commands stopped or a group open.
#[derive(Debug, Default)]
struct Runner {
    processed: Vec<String>,
    /// Lines with the older form (`##[`) read while commands were processed.
    old_form: Vec<String>,
    stopped: Option<String>,
    depth: i32,
}

impl Runner {
    fn read(text: &str) -> Runner {
        let mut r = Runner::default();
        for line in text.lines() {
            let trimmed = line.trim_start();
            let v2 = trimmed
                .strip_prefix("::")
                .and_then(|rest| rest.split_once("::"))
                .map(|(info, data)| (info.split(' ').next().unwrap_or_default().to_string(), data.to_string()));
            match (&r.stopped, v2) {
                (Some(token), Some((name, _))) if name.eq_ignore_ascii_case(token) => r.stopped = None,
                (Some(_), _) => {}
                (None, Some((name, data))) => {
                    match name.as_str() {
                        "stop-commands" => r.stopped = Some(data.clone()),
                        "group" => {
                            r.depth += 1;
                            assert_eq!(r.depth, 1, "groups are never nested:\n{text}");
                        }
                        "endgroup" => {
                            r.depth -= 1;
                            assert_eq!(r.depth, 0, "an endgroup closes an open group:\n{text}");
                        }
                        _ => {}
                    }
                    r.processed.push(format!("{name}::{data}"));
                }
                (None, None) => {
                    if line.contains("##[") {
                        r.old_form.push(line.to_string());
                    }
                }
            }
        }
        r
    }

    fn count(&self, name: &str) -> usize {
        self.processed.iter().filter(|c| c.starts_with(&format!("{name}::"))).count()
    }
}

/// What a deploy command prints to try to talk to GitHub's runner.
const INJECTION: &str = "echo '::add-mask::x'; echo '::error::fake'; echo 'see ##[set-output name=a]b'; \
                         echo '  ::set-output name=b::c' >&2";

fn github(project: &Project, summary: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = project.pier();
    cmd.env("GITHUB_ACTIONS", "true").env("GITHUB_STEP_SUMMARY", summary);
    cmd
}

#[test]
fn under_github_actions_steps_are_groups_and_program_output_is_never_a_command() {
    let (project, commit) = Project::with_app();
    project.commands(&[INJECTION, "echo second-command-ran"]);
    let summary = project.dir().join("summary.md");
    std::fs::write(&summary, "# Tests\nall passed\n").unwrap();
    let (out, err) = run(github(&project, &summary).args(["deploy", "prod"]), 0);

    assert!(out.starts_with("prod: succeeded"), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("::")), "stdout keeps only data:\n{out}");
    let runner = Runner::read(&err);
    assert!(runner.count("group") >= 3, "the deploy, the method's steps and each command:\n{err}");
    assert_eq!(runner.count("group"), runner.count("endgroup"), "{err}");
    assert_eq!((runner.depth, &runner.stopped), (0, &None), "all closed and commands resumed at the end:\n{err}");
    assert!(runner.processed.iter().any(|c| c.starts_with("group::Deploying ")), "{:?}", runner.processed);
    assert!(runner.processed.iter().any(|c| c.starts_with("group::Command 2")), "{:?}", runner.processed);
    for command in &runner.processed {
        let name = command.split("::").next().unwrap();
        assert!(["group", "endgroup", "stop-commands"].contains(&name), "`{command}` was processed:\n{err}");
    }
    assert!(runner.old_form.is_empty(), "{:?}", runner.old_form);
    // The program's lines are shown, inside stopped commands.
    for line in ["::add-mask::x", "::error::fake", "##[set-output name=a]b", "second-command-ran"] {
        assert!(err.contains(line), "`{line}` shown:\n{err}");
    }
    assert!(!err.contains("→ Deploying"), "the step is the group's title:\n{err}");

    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.starts_with("# Tests\nall passed\n"), "appended, not truncated:\n{text}");
    assert_eq!(text.matches("| Server | Commit |").count(), 1, "{text}");
    let id = out.rsplit_once("[deploy ").unwrap().1.trim().trim_end_matches(']');
    let row = text.lines().find(|l| l.starts_with("| prod |")).unwrap_or_else(|| panic!("a row for prod:\n{text}"));
    assert!(row.contains(&format!("`{}`", &commit[..12])) && row.contains("**succeeded**"), "{row}");
    assert!(row.contains(&format!("`{id}`")), "{row}");
}

#[test]
fn under_github_actions_a_failed_deploy_is_one_error_annotation() {
    let (project, _) = Project::with_app();
    project.commands(&["echo 100% broken, badly; exit 3"]);
    let summary = project.dir().join("summary.md");
    let (out, err) = run(github(&project, &summary).args(["deploy", "prod"]), 1);
    assert!(out.starts_with("prod: failed"), "{out}");
    let runner = Runner::read(&err);
    assert_eq!(runner.count("error"), 1, "{err}");
    let annotation: Vec<&str> = err.lines().filter(|l| l.starts_with("::error")).collect();
    assert_eq!(
        annotation,
        ["::error title=Deploy failed::prod: command 1 of 1 (`echo 100%25 broken, badly; exit 3`) exited with 3"],
        "{err}"
    );
    assert_eq!(runner.processed.last().map(|c| c.starts_with("error::")), Some(true), "after the groups: {err}");
    assert_eq!((runner.depth, &runner.stopped), (0, &None), "{err}");
    assert_eq!(err.matches("exited with 3").count(), 1, "said once:\n{err}");
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.contains("| prod |") && text.contains("**failed**: command 1 of 1"), "{text}");
}

#[test]
fn under_github_actions_json_lines_stay_json_and_carry_no_command() {
    let (project, _) = Project::with_app();
    project.commands(&[INJECTION]);
    let summary = project.dir().join("summary.md");
    let (out, err) = run(github(&project, &summary).args(["deploy", "prod", "--json"]), 0);
    let records: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    assert!(records.iter().any(|r| r["data"]["event"]["line"] == "see ##[set-output name=a]b"), "{out}");
    assert_eq!(records.last().unwrap()["data"]["status"], "succeeded");
    for text in [&out, &err] {
        let runner = Runner::read(text);
        assert!(runner.processed.is_empty() && runner.old_form.is_empty(), "{runner:?}\n{text}");
    }
    assert!(std::fs::read_to_string(&summary).unwrap().contains("| prod |"), "the summary is still written");
}

#[test]
fn without_a_summary_file_github_actions_says_so_and_deploys() {
    let (project, _) = Project::with_app();
    let (out, err) = run(project.pier().env("GITHUB_ACTIONS", "true").args(["deploy", "prod"]), 0);
    assert!(out.starts_with("prod: succeeded"), "{out}");
    assert_eq!(err.matches("GITHUB_STEP_SUMMARY is not set").count(), 1, "{err}");
    // A summary that cannot be written does not fail the deploy either.
    let dir = project.dir().join("a-directory");
    std::fs::create_dir(&dir).unwrap();
    let (out, err) = run(github(&project, &dir).args(["deploy", "prod"]), 0);
    assert!(out.starts_with("prod: succeeded"), "{out}");
    assert_eq!(err.matches("cannot append the job summary").count(), 1, "{err}");
}

#[test]
fn pier_ci_under_github_actions_summarises_every_server_in_one_table() {
    let (project, commit) = Project::with_app();
    for (name, branch) in [("Staging", "main"), ("Release", "release")] {
        let flags = ["--set", "app=hello-app", "--set", "register_ssh_key=false", "--strategy", "automatic"];
        run(&mut project.add(name, &[&flags[..], &["--branch", branch]].concat()), 0);
    }
    let summary = project.dir().join("summary.md");
    let mut cmd = github(&project, &summary);
    cmd.args(["ci"]).envs([("GITHUB_REF_NAME", "main"), ("GITHUB_SHA", commit.as_str()), ("GITHUB_RUN_ID", "7")]);
    let (out, err) = run(&mut cmd, 0);
    assert!(out.contains("staging: succeeded"), "{out}");
    let runner = Runner::read(&err);
    assert_eq!((runner.depth, &runner.stopped), (0, &None), "{err}");
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(text.matches("| Server | Commit |").count(), 1, "one table:\n{text}");
    let row = |server: &str| text.lines().find(|l| l.starts_with(&format!("| {server} |"))).unwrap().to_string();
    assert!(row("staging").contains("**succeeded**") && row("staging").contains(&commit[..12]), "{text}");
    assert!(row("prod").contains("**skipped**: manual strategy"), "{text}");
    assert!(row("release").contains("**skipped**: follows branch release, this build is on main"), "{text}");

    // A pull request's build skips every server and says why.
    let mut cmd = github(&project, &summary);
    cmd.args(["ci"]).envs([("GITHUB_EVENT_NAME", "pull_request"), ("GITHUB_SHA", commit.as_str())]);
    run(&mut cmd, 0);
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(text.matches("| Server | Commit |").count(), 2, "a table per invocation:\n{text}");
    assert_eq!(text.matches("pull requests never deploy").count(), 3, "{text}");

    // pier ci's own lines name the branch: nothing in it is read as a command.
    let mut cmd = github(&project, &summary);
    cmd.args(["ci"]).envs([("GITHUB_REF_NAME", "x##[set-output name=evil;]1"), ("GITHUB_SHA", commit.as_str())]);
    let (_, err) = run(&mut cmd, 0);
    assert!(err.contains("this build is on x## [set-output"), "{err}");
    let runner = Runner::read(&err);
    assert!(runner.old_form.is_empty() && runner.processed.is_empty(), "{runner:?}\n{err}");
}

#[test]
fn under_gitlab_ci_steps_are_collapsed_sections_on_stderr() {
    let (project, _) = Project::with_app();
    project.commands(&["echo inside-the-command"]);
    let (out, err) = run(project.pier().env("GITLAB_CI", "true").args(["deploy", "prod"]), 0);
    assert!(!out.contains("section_"), "{out}");
    let mut open: Option<String> = None;
    let mut sections = 0;
    for line in err.lines() {
        if let Some(rest) = line.strip_prefix("\x1b[0Ksection_start:") {
            assert!(open.is_none(), "sections are not nested:\n{err}");
            let (_, rest) = rest.split_once(':').unwrap();
            let (name, header) = rest.split_once("[collapsed=true]\r\x1b[0K").unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)), "{name}");
            assert!(header.starts_with("→ "), "{header}");
            open = Some(name.to_string());
            sections += 1;
        } else if let Some(rest) = line.strip_prefix("\x1b[0Ksection_end:") {
            let (_, name) = rest.split_once(':').unwrap();
            assert_eq!(Some(name.trim_end_matches("\r\x1b[0K")), open.as_deref(), "{err}");
            open = None;
        } else {
            assert!(!line.contains("section_"), "{line:?}");
        }
    }
    assert!(sections >= 2 && open.is_none(), "{err}");
    assert!(err.contains("inside-the-command"), "{err}");

    project.commands(&["exit 3"]);
    let (_, err) = run(project.pier().env("GITLAB_CI", "true").args(["deploy", "prod"]), 1);
    let (_, after) = err.rsplit_once("section_end:").unwrap();
    assert!(after.contains("error: command 1 of 1 (`exit 3`) exited with 3"), "the error follows the sections:\n{err}");
}

#[test]
fn outside_those_cis_the_output_is_unchanged() {
    let (project, _) = Project::with_app();
    project.commands(&[INJECTION, "exit 3"]);
    let summary = project.dir().join("summary.md");
    for vars in [&[][..], &[("CIRCLECI", "true")], &[("GITHUB_ACTIONS", "false")]] {
        let mut cmd = project.pier();
        cmd.args(["deploy", "prod"]).envs(vars.iter().copied()).env("GITHUB_STEP_SUMMARY", &summary);
        let (out, err) = run(&mut cmd, 1);
        for marker in ["::group::", "::endgroup::", "::stop-commands::", "::error title", "section_start", "\x1b"] {
            assert!(!out.contains(marker) && !err.contains(marker), "{vars:?}: `{marker}`\n{out}\n{err}");
        }
        assert!(err.contains("→ Deploying") && err.contains("  │ ::add-mask::x"), "{err}");
        assert!(err.contains("  error: command 2 of 2 (`exit 3`) exited with 3"), "{err}");
    }
    assert!(!summary.exists(), "no job summary outside GitHub Actions");
}
