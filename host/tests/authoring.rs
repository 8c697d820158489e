//! The plugin author's path through the real binary: `pier plugins new`, a plain
//! `cargo build --target wasm32-wasip2`, `pier conformance`, then `pier plugins add` into a
//! project and a deploy through the installed plugin.

mod common;

use common::{Project, run};

#[test]
fn a_new_plugin_builds_conforms_installs_and_deploys() {
    let project = Project::new();
    let work = common::tempdir();
    let (out, _) = run(common::pier(work.path()).args(["plugins", "new", "acme-notify"]), 0);
    assert!(out.starts_with("created plugin `acme-notify` in acme-notify"), "{out}");
    let (_, err) = run(common::pier(work.path()).args(["plugins", "new", "acme-notify"]), 2);
    assert!(err.contains("already exists and is not empty"), "{err}");
    let (_, err) = run(common::pier(work.path()).args(["plugins", "new", "Acme"]), 2);
    assert!(err.contains("is not a method name"), "{err}");

    // Exactly what the generated README says to run. The target directory is shared
    // between test runs so the SDK's dependencies build once.
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("template");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .current_dir(work.path().join("acme-notify"))
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .unwrap();
    assert!(status.success(), "the generated plugin must build");
    let built = target.join("wasm32-wasip2/release/acme_notify.wasm");
    let wasm = project.dir().join("plugins/acme-notify.wasm");
    std::fs::create_dir_all(wasm.parent().unwrap()).unwrap();
    std::fs::copy(&built, &wasm).unwrap();

    let (out, _) = run(project.pier().args(["conformance", "plugins/acme-notify.wasm"]), 0);
    assert!(out.contains("0 failed"), "{out}");
    // With the responses the template ships, the happy path is checked too.
    let responses = work.path().join("acme-notify/conformance.json");
    let (out, _) =
        run(project.pier().args(["conformance", "plugins/acme-notify.wasm", "--responses"]).arg(&responses), 0);
    assert!(out.contains("pass  deploy.succeeds"), "{out}");

    // Installing shows the permissions and digest; without a terminal it needs --yes.
    let (out, err) = run(project.pier().args(["plugins", "add", "plugins/acme-notify.wasm"]), 2);
    assert!(out.contains("http endpoint `hook`: setting `url`"), "{out}");
    assert!(err.contains("pass --yes"), "{err}");
    let (out, _) = run(project.pier().args(["plugins", "add", "plugins/acme-notify.wasm", "--yes"]), 0);
    assert!(out.contains("installed plugin `acme-notify` (plugins/acme-notify.wasm, sha256 "), "{out}");
    let config = project.read("pier.toml");
    assert!(
        config.contains("[plugins.acme-notify]") && config.contains("path = \"plugins/acme-notify.wasm\""),
        "{config}"
    );
    let (list, _) = run(project.pier().args(["plugins", "list"]), 0);
    assert!(list.lines().any(|l| l.starts_with("acme-notify ") && l.ends_with("plugins/acme-notify.wasm")), "{list}");

    // A server of the installed method; its deploy POSTs to the URL, and the fake Heroku's
    // refusal (406: the hook sends no Heroku Accept header) fails the deploy.
    let hook = format!("{}/hooks/deploy", project.fake.url());
    run(
        project
            .pier()
            .args(["server", "add", "--method", "acme-notify", "--name", "Hook", "--strategy", "manual"])
            .args(["--set", &format!("url={hook}")]),
        0,
    );
    common::git(project.dir(), &["init", "-q", "-b", "main"]);
    std::fs::write(project.dir().join(".gitignore"), ".config/\n").unwrap();
    common::git(project.dir(), &["add", "-A"]);
    common::git(project.dir(), &["commit", "-q", "-m", "x"]);
    let (out, _) = run(project.pier().args(["deploy", "hook"]), 1);
    assert!(out.contains(&format!("{hook} answered HTTP 406")), "{out}");
    assert!(project.fake.requests().iter().any(|r| r.method == "POST" && r.path == "/hooks/deploy"));

    // A plugin file that changed since it was added is refused everywhere.
    let mut bytes = std::fs::read(&wasm).unwrap();
    bytes.extend_from_slice(b"\0");
    std::fs::write(&wasm, bytes).unwrap();
    let (_, err) = run(project.pier().args(["deploy", "hook"]), 2);
    assert!(err.contains("no longer matches the sha256 recorded in pier.toml"), "{err}");
    let (_, err) = run(project.pier().args(["plugins", "list"]), 2);
    assert!(err.contains("no longer matches"), "{err}");

    // A FIFO in its place is refused at once, never read (which would hang).
    std::fs::remove_file(&wasm).unwrap();
    common::fifo(wasm.parent().unwrap(), "acme-notify.wasm");
    let (_, err) = run(project.pier().args(["plugins", "list"]), 2);
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn pier_toml_cannot_install_a_plugin_under_a_builtin_name() {
    let project = Project::new();
    let wasm = project.dir().join("evil.wasm");
    std::fs::copy(common::plugin("notify"), &wasm).unwrap();
    let config = project.dir().join("pier.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("\n[plugins.heroku]\npath = \"evil.wasm\"\nsha256 = \"{}\"\n", "0".repeat(64)));
    std::fs::write(&config, text).unwrap();
    let (_, err) = run(project.pier().args(["server", "list"]), 2);
    assert!(err.contains("plugin `heroku` has the name of a built-in method"), "{err}");
}
