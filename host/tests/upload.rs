//! What a deploy uploads is the commit the timeline records: through the real `pier`
//! binary, with real git, against the fake Heroku, which unpacks every upload.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;

use common::{Project, git, run};
use fake_heroku::{MemberKind, Upload};

/// The line Pier prints once when the checkout has uncommitted changes.
const DIRTY: &str = "uncommitted changes in the checkout are not deployed";

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The timeline as JSON, newest first.
fn timeline(project: &Project) -> Vec<serde_json::Value> {
    let (out, _) = run(project.pier().args(["timeline", "--json"]), 0);
    json(&out).as_array().unwrap().clone()
}

/// The one upload the fake received since `before` uploads.
fn only_upload(project: &Project, before: usize) -> Upload {
    let uploads = project.fake.uploads();
    assert_eq!(
        uploads.len(),
        before + 1,
        "one upload expected: {:?}",
        uploads.iter().map(Upload::names).collect::<Vec<_>>()
    );
    uploads.into_iter().last().unwrap()
}

/// The contents of the regular file `path` in `upload`.
fn contents(upload: &Upload, path: &str) -> String {
    let member = upload.member(path).unwrap_or_else(|| panic!("no `{path}` in {:?}", upload.names()));
    assert_eq!(member.kind, MemberKind::File, "{path}");
    String::from_utf8(member.contents.clone()).unwrap()
}

/// Every byte of every member, for checking that a value appears nowhere.
fn everything(upload: &Upload) -> String {
    let members = upload.members.as_ref().expect("a gzipped tarball");
    members.iter().map(|m| format!("{}\n{:?}\n{}\n", m.path, m.kind, String::from_utf8_lossy(&m.contents))).collect()
}

/// A project with the app of [`Project::with_app`] and its configuration committed too, so
/// the checkout is clean. Returns the commit.
fn clean_app() -> (Project, String) {
    let (project, _) = Project::with_app();
    git(project.dir(), &["add", "-A"]);
    git(project.dir(), &["commit", "-q", "-m", "servers"]);
    let head = git(project.dir(), &["rev-parse", "HEAD"]);
    assert_eq!(git(project.dir(), &["status", "--porcelain"]), "", "the checkout is clean");
    (project, head)
}

/// `git add -A` and commit; returns the new commit.
fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

#[test]
fn a_clean_checkout_deploys_exactly_its_committed_files() {
    let (project, head) = clean_app();
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(!err.contains(DIRTY), "a clean checkout has nothing to warn about: {err}");
    let upload = only_upload(&project, 0);
    // Exactly the tracked files, less pier.secrets, which never ships.
    let tracked = git(project.dir(), &["ls-files"]);
    let expected: Vec<String> = tracked.lines().filter(|f| *f != "pier.secrets").map(String::from).collect();
    assert_eq!(upload.names(), expected);
    for name in &expected {
        assert_eq!(contents(&upload, name), std::fs::read_to_string(project.dir().join(name)).unwrap(), "{name}");
    }
    assert_eq!(timeline(&project)[0]["commit"], head);
}

#[test]
fn untracked_and_modified_files_are_not_uploaded_and_the_committed_content_is() {
    let (project, head) = clean_app();
    let secret = "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
    std::fs::write(project.dir().join(".env"), format!("{secret}\n")).unwrap();
    std::fs::write(project.dir().join("app.py"), "print('not committed')\n").unwrap();
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 0);

    let upload = only_upload(&project, 0);
    assert!(upload.member(".env").is_none(), "an untracked file was uploaded: {:?}", upload.names());
    assert_eq!(contents(&upload, "app.py"), "print('hello')\n", "the committed content ships");
    let all = everything(&upload);
    assert!(!all.contains("wJalrXUtnFEMI") && !all.contains("not committed"), "{all}");

    assert_eq!(err.matches(DIRTY).count(), 1, "said once: {err}");
    let d = &timeline(&project)[0];
    assert_eq!((d["commit"].as_str(), d["status"].as_str()), (Some(head.as_str()), Some("succeeded")));
    assert_eq!(project.fake.builds()[0]["source_blob"]["version"], head);
}

#[test]
fn an_older_commit_is_deployed_as_it_was_committed() {
    let (project, first) = clean_app();
    std::fs::write(project.dir().join("app.py"), "print('second')\n").unwrap();
    std::fs::write(project.dir().join("later.txt"), "added later\n").unwrap();
    let second = commit_all(project.dir(), "second");
    assert_ne!(first, second);

    // An abbreviated SHA is resolved once, to the full SHA, and that commit's tree ships.
    let (_, err) = run(project.pier().args(["deploy", "prod", "--commit", &first[..10]]), 0);
    assert!(!err.contains(DIRTY), "{err}");
    let upload = only_upload(&project, 0);
    assert_eq!(contents(&upload, "app.py"), "print('hello')\n");
    assert!(upload.member("later.txt").is_none(), "{:?}", upload.names());
    assert_eq!(timeline(&project)[0]["commit"], first, "the timeline records the full SHA");
    assert_eq!(project.fake.builds()[0]["source_blob"]["version"], first);

    // PIER_COMMIT is the same as --commit.
    run(project.pier().args(["deploy", "prod"]).env("PIER_COMMIT", &first), 0);
    let upload = only_upload(&project, 1);
    assert_eq!(contents(&upload, "app.py"), "print('hello')\n");
    assert_eq!(timeline(&project)[0]["commit"], first);

    // And HEAD, by default, is HEAD.
    run(project.pier().args(["deploy", "prod"]), 0);
    let upload = only_upload(&project, 2);
    assert_eq!(contents(&upload, "app.py"), "print('second')\n");
    assert_eq!(contents(&upload, "later.txt"), "added later\n");
    assert_eq!(timeline(&project)[0]["commit"], second);
}

#[test]
fn an_unknown_commit_or_an_object_that_is_not_one_is_refused_before_anything_runs() {
    let (project, _) = clean_app();
    let tree = git(project.dir(), &["rev-parse", "HEAD^{tree}"]);
    let before = project.fake.requests().len();
    for (args, env, named) in [
        (vec!["deploy", "prod", "--commit", "deadbeef"], None, "deadbeef"),
        (vec!["deploy", "prod"], Some("deadbeef"), "deadbeef"),
        (vec!["deploy", "prod", "--commit", &tree], None, tree.as_str()),
        (vec!["deploy", "prod", "--commit=--output=/tmp/pier-x"], None, "--output=/tmp/pier-x"),
    ] {
        let mut cmd = project.pier();
        cmd.args(&args);
        if let Some(commit) = env {
            cmd.env("PIER_COMMIT", commit);
        }
        let (out, err) = run(&mut cmd, 2);
        assert!(err.contains(&format!("`{named}`")) && err.contains("not a commit"), "{args:?}: {err}");
        assert!(err.contains("nothing was deployed"), "{err}");
        assert!(out.is_empty(), "{out}");
    }
    // `pier ci` resolves the CI's commit the same way.
    let (_, err) = run(project.pier().args(["ci"]).env("PIER_BRANCH", "main").env("PIER_COMMIT", "deadbeef"), 2);
    assert!(err.contains("`deadbeef`") && err.contains("not a commit"), "{err}");
    assert_eq!(project.fake.requests().len(), before, "nothing may reach Heroku");
    assert!(project.fake.uploads().is_empty());
    assert!(timeline(&project).is_empty(), "nothing is recorded");
}

#[test]
fn a_checkout_that_is_not_a_git_repository_is_refused() {
    let project = Project::new();
    std::fs::write(project.dir().join("app.py"), "print('hello')\n").unwrap();
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    let before = project.fake.requests().len();
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 2);
    assert!(err.contains("is not in a git repository"), "{err}");
    let (_, err) = run(project.pier().args(["deploy", "prod", "--commit", "deadbeef", "--branch", "main"]), 2);
    assert!(err.contains("is not in a git repository"), "{err}");
    assert_eq!(project.fake.requests().len(), before, "nothing may reach Heroku");
    assert!(project.fake.uploads().is_empty());
}

#[test]
fn pier_state_and_secrets_never_ship_whatever_pierignore_says() {
    let (project, _) = clean_app();
    run(project.pier().args(["deploy", "prod"]), 0);
    assert!(project.dir().join(".pier/timeline.sqlite").exists());
    std::fs::write(project.dir().join(".pierignore"), "!*\n!.pier/\n!pier.secrets\n").unwrap();
    std::fs::create_dir_all(project.dir().join("nested/.pier")).unwrap();
    std::fs::write(project.dir().join("nested/.pier/state"), "nested state\n").unwrap();
    std::fs::write(project.dir().join("nested/pier.secrets"), "nested secrets\n").unwrap();
    git(project.dir(), &["add", "-f", "-A", ".pier", "pier.secrets", ".pierignore", "nested"]);
    git(project.dir(), &["commit", "-q", "-m", "everything"]);
    assert!(git(project.dir(), &["ls-files"]).contains(".pier/timeline.sqlite"), "the state is committed");

    run(project.pier().args(["deploy", "prod"]), 0);
    let upload = only_upload(&project, 1);
    let names = upload.names();
    assert!(
        names.iter().all(|n| !n.starts_with(".pier/") && !n.contains("/.pier/") && !n.ends_with("pier.secrets")),
        "{names:?}"
    );
    // The benign twin: everything else committed ships, `.pierignore` included.
    for name in [".pierignore", "app.py", "Procfile", "pier.toml"] {
        assert!(names.contains(&name.to_string()), "{name} missing: {names:?}");
    }
}

#[test]
fn pierignore_is_read_from_the_deployed_commit() {
    let (project, _) = clean_app();
    std::fs::write(project.dir().join(".pierignore"), "notes.txt\n").unwrap();
    std::fs::write(project.dir().join("notes.txt"), "internal notes\n").unwrap();
    std::fs::write(project.dir().join("docs.txt"), "public docs\n").unwrap();
    std::fs::create_dir_all(project.dir().join("sub")).unwrap();
    std::fs::write(project.dir().join("sub/.pierignore"), "*.tmp\n").unwrap();
    std::fs::write(project.dir().join("sub/cache.tmp"), "x\n").unwrap();
    std::fs::write(project.dir().join("sub/kept.txt"), "kept\n").unwrap();
    commit_all(project.dir(), "ignore notes");
    // The working tree's .pierignore says otherwise; it is not what was committed.
    std::fs::write(project.dir().join(".pierignore"), "docs.txt\n").unwrap();

    let (_, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert_eq!(err.matches(DIRTY).count(), 1, "{err}");
    let upload = only_upload(&project, 0);
    let names = upload.names();
    assert!(upload.member("notes.txt").is_none(), "{names:?}");
    assert!(upload.member("sub/cache.tmp").is_none(), "{names:?}");
    assert_eq!(contents(&upload, "docs.txt"), "public docs\n");
    assert_eq!(contents(&upload, "sub/kept.txt"), "kept\n");
    assert_eq!(contents(&upload, ".pierignore"), "notes.txt\n");
}

#[test]
fn symlinks_ship_as_symlinks_and_are_never_followed() {
    let (project, _) = clean_app();
    let outside = common::tempdir();
    let target = outside.path().join("credentials");
    std::fs::write(&target, "outside-the-tree-secret-7f3a\n").unwrap();
    std::os::unix::fs::symlink(&target, project.dir().join("credentials")).unwrap();
    std::os::unix::fs::symlink("../../../../etc/hostname", project.dir().join("up")).unwrap();
    std::os::unix::fs::symlink("app.py", project.dir().join("main.py")).unwrap();
    commit_all(project.dir(), "links");

    run(project.pier().args(["deploy", "prod"]), 0);
    let upload = only_upload(&project, 0);
    let link = |name: &str| upload.member(name).unwrap_or_else(|| panic!("{name}: {:?}", upload.names())).clone();
    assert_eq!(link("credentials").kind, MemberKind::Symlink(target.display().to_string()));
    assert_eq!(link("up").kind, MemberKind::Symlink("../../../../etc/hostname".into()));
    assert_eq!(link("main.py").kind, MemberKind::Symlink("app.py".into()));
    assert!(link("credentials").contents.is_empty());
    assert!(!everything(&upload).contains("outside-the-tree-secret"), "a symlink was followed");
}

#[test]
fn a_submodule_is_skipped_with_a_note() {
    let (project, _) = clean_app();
    let head = git(project.dir(), &["rev-parse", "HEAD"]);
    // A gitlink, as `git submodule add` records one.
    git(project.dir(), &["update-index", "--add", "--cacheinfo", &format!("160000,{head},vendor/lib")]);
    git(project.dir(), &["commit", "-q", "-m", "submodule"]);
    let (_, err) = run(project.pier().args(["deploy", "prod"]), 0);
    assert!(err.contains("submodule `vendor/lib` is not deployed"), "{err}");
    let upload = only_upload(&project, 0);
    assert!(upload.names().iter().all(|n| !n.starts_with("vendor")), "{:?}", upload.names());
}

#[test]
fn pier_ci_says_once_that_uncommitted_changes_are_not_deployed() {
    let (project, head) = clean_app();
    for name in ["Staging", "Canary"] {
        run(&mut project.add(name, &["--strategy", "automatic", "--branch", "main", "--set", "app=hello-app"]), 0);
    }
    std::fs::write(project.dir().join("scratch.txt"), "work in progress\n").unwrap();
    let (out, err) = run(project.pier().args(["ci"]).env("PIER_BRANCH", "main").env("PIER_COMMIT", &head[..8]), 0);
    assert!(out.contains("staging: succeeded") && out.contains("canary: succeeded"), "{out}");
    assert_eq!(err.matches(DIRTY).count(), 1, "once, not per server: {err}");
    assert_eq!(project.fake.uploads().len(), 2);
    for upload in project.fake.uploads() {
        assert!(upload.member("scratch.txt").is_none(), "{:?}", upload.names());
    }
    let commits: Vec<String> = timeline(&project).iter().map(|d| d["commit"].as_str().unwrap().to_string()).collect();
    assert_eq!(commits, [head.clone(), head]);
}

#[test]
fn scratch_space_and_key_files_are_outside_the_checkout() {
    let (project, _) = clean_app();
    let pipes = common::tempdir();
    let started = common::fifo(pipes.path(), "started");
    let release = common::fifo(pipes.path(), "release");
    // The command reports where its key file is, then waits for the test.
    project.commands(&[&format!(
        "{{ echo \"$PIER_SSH_KEY\"; stat -c %a \"$(dirname \"$PIER_SSH_KEY\")\"; \
         git -C \"$(dirname \"$PIER_SSH_KEY\")\" rev-parse --show-toplevel 2>/dev/null || echo no-repository; }} > '{}'; \
         cat '{}' > /dev/null",
        started.display(),
        release.display()
    )]);
    git(project.dir(), &["commit", "-q", "-a", "-m", "commands"]);
    let child = project.spawn(&["deploy", "prod"]);
    let mut seen = String::new();
    std::fs::File::open(&started).unwrap().read_to_string(&mut seen).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    let key = Path::new(lines[0]);
    let checkout = project.dir().canonicalize().unwrap();
    assert!(key.is_absolute() && key.exists(), "{seen}");
    assert!(!key.starts_with(&checkout), "the key file {} is under the checkout", key.display());
    assert!(key.starts_with(std::env::temp_dir().canonicalize().unwrap()), "{}", key.display());
    assert_eq!(lines[1], "700", "the run directory is private");
    assert_eq!(lines[2], "no-repository", "git finds no repository above the run directory");
    // While it runs, the state records where its run directory is, and nothing of it is
    // under the checkout.
    let records: Vec<_> =
        std::fs::read_dir(project.dir().join(".pier/run")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    assert!(records[0].is_file(), "{records:?}");
    let run_dir = std::fs::read_to_string(&records[0]).unwrap().trim().to_string();
    assert!(key.starts_with(&run_dir), "{run_dir} does not hold {}", key.display());

    std::fs::OpenOptions::new().write(true).open(&release).unwrap().write_all(b"go\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!key.exists() && !Path::new(&run_dir).exists(), "the run directory is removed after the deploy");
    assert!(!records[0].exists(), "and so is its record");
}
