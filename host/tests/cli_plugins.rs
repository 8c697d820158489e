//! `pier plugins list` and `pier plugins inspect` through the real binary.

mod common;

use common::{pier, plugin, run, tempdir};

#[test]
fn list_shows_the_builtin_heroku_plugin() {
    let home = tempdir();
    let (stdout, stderr) = run(pier(home.path()).args(["plugins", "list"]), 0);
    assert!(stderr.is_empty(), "{stderr}");
    let mut lines = stdout.lines();
    assert!(lines.next().unwrap().starts_with("NAME"));
    let heroku = lines.next().unwrap();
    assert!(heroku.starts_with("heroku ") && heroku.ends_with("built-in"), "{heroku}");
    let git_ssh = lines.next().unwrap();
    assert!(git_ssh.starts_with("git-ssh ") && git_ssh.ends_with("built-in"), "{git_ssh}");

    let (json, _) = run(pier(home.path()).args(["plugins", "list", "--json"]), 0);
    let list: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(list[0]["name"], "heroku");
    assert_eq!(list[0]["builtin"], true);
    assert_eq!(list[0]["contract"], "0.3.0");
    assert_eq!(list[1]["name"], "git-ssh");
    assert_eq!(list[1]["builtin"], true);
}

#[test]
fn inspect_shows_form_permissions_size_and_digest() {
    let home = tempdir();
    let path = plugin("everything");
    let (json, _) = run(pier(home.path()).args(["plugins", "inspect", path, "--json"]), 0);
    let mut view: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(view["size"], bytes.len() as u64);
    assert_eq!(view["sha256"].as_str().unwrap().len(), 64);
    // Size, digest and path change with every build: snapshot the rest.
    for volatile in ["size", "sha256", "source"] {
        view[volatile] = serde_json::Value::String(format!("[{volatile}]"));
    }
    // Whether programs are confined depends on the machine's kernel.
    let confinement = view["permissions"]["confinement"].as_str().unwrap().to_string();
    assert!(confinement.contains("Landlock"), "{confinement}");
    view["permissions"]["confinement"] = serde_json::Value::String("[confinement]".into());
    insta::assert_json_snapshot!(view);

    let (text, _) = run(pier(home.path()).args(["plugins", "inspect", path]), 0);
    assert!(
        text.contains("api_key        API key (secret, required)\n                   The provider's API key."),
        "{text}"
    );
    assert!(text.contains("http endpoint `api`: setting `api_url`"), "{text}");
    assert!(
        text.contains("run program `sh`: `sh` with arguments -c *; variables it may set: GREETING — WARNING"),
        "{text}"
    );
    assert!(text.contains("secret `api_key` → header `Authorization: Bearer …` to endpoint `api`"), "{text}");
}

#[test]
fn inspect_shows_where_streams_go_and_the_commands_a_method_runs_itself() {
    let home = tempdir();
    let (text, _) = run(pier(home.path()).args(["plugins", "inspect", "heroku"]), 0);
    assert!(
        text.contains("TLS to the host of endpoint `api`, any port, only where a response from its endpoints named"),
        "{text}"
    );
    assert!(text.contains("TLS to `*.heroku.com`, any port, only where"), "{text}");
    assert!(text.contains("runs commands beginning `heroku run` itself (its `run` export)"), "{text}");
}

#[test]
fn a_load_that_compiles_says_so_once_and_a_cached_one_says_nothing() {
    let home = tempdir();
    let cache = tempdir();
    let inspect = || {
        let mut cmd = pier(home.path());
        cmd.args(["plugins", "inspect", plugin("everything")])
            .env("PIER_CACHE_DIR", cache.path())
            .env("PIER_COMPILE_NOTICE_MS", "0");
        cmd
    };
    let (_, err) = run(&mut inspect(), 0);
    assert_eq!(err.matches("first run only").count(), 1, "{err}");
    assert!(err.starts_with("compiling plugin ") && err.contains("everything") && err.contains(" MB)"), "{err}");
    let (_, err) = run(&mut inspect(), 0);
    assert!(!err.contains("compiling"), "from the cache: {err}");
}

#[test]
fn a_file_named_like_a_builtin_does_not_replace_it() {
    let home = tempdir();
    let dir = tempdir();
    std::fs::copy(plugin("everything"), dir.path().join("heroku")).unwrap();
    let (text, _) = run(pier(home.path()).current_dir(dir.path()).args(["plugins", "inspect", "heroku"]), 0);
    assert!(text.contains("source:    builtin:heroku"), "{text}");
    let (text, _) = run(pier(home.path()).current_dir(dir.path()).args(["plugins", "inspect", "./heroku"]), 0);
    assert!(text.contains("source:    ./heroku"), "a path still names the file: {text}");
}

#[cfg(unix)]
#[test]
fn a_fifo_where_a_plugin_should_be_is_refused_without_hanging() {
    let home = tempdir();
    let dir = tempdir();
    let fifo = dir.path().join("plugin.wasm");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let (_, err) = run(pier(home.path()).args(["plugins", "inspect"]).arg(&fifo), 2);
    assert!(err.contains("not a regular file"), "{err}");
}

#[test]
fn inspect_a_builtin_by_name() {
    let home = tempdir();
    let (text, _) = run(pier(home.path()).args(["plugins", "inspect", "heroku"]), 0);
    assert!(text.starts_with("Heroku (heroku)"), "{text}");
    assert!(text.contains("source:    builtin:heroku"), "{text}");
}

/// Every malformed file gets exit 2 and exactly one line on stderr, never a panic.
#[test]
fn malformed_plugin_files_get_one_clear_line() {
    let home = tempdir();
    let dir = home.path();
    let component = std::fs::read(plugin("everything")).unwrap();
    std::fs::write(dir.join("text.wasm"), "this is not wasm").unwrap();
    std::fs::write(dir.join("empty.wasm"), "").unwrap();
    std::fs::write(dir.join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.join("truncated.wasm"), &component[..component.len() / 2]).unwrap();
    let mut corrupt = component.clone();
    for byte in corrupt.iter_mut().skip(64).step_by(97) {
        *byte ^= 0x5a;
    }
    std::fs::write(dir.join("corrupt.wasm"), &corrupt).unwrap();
    let cases = [
        ("text.wasm", "is not a WebAssembly file"),
        ("empty.wasm", "is not a WebAssembly file"),
        ("core.wasm", "is a core WebAssembly module, not a component"),
        ("truncated.wasm", "is not a valid component"),
        ("corrupt.wasm", "is not a valid component"),
        ("missing.wasm", "cannot be read: No such file"),
        (plugin("wrong-contract"), "targets pier:deploy@0.9.0, but this pier supports pier:deploy ^0.3, ^0.2 or ^0.1"),
        (plugin("no-method"), "does not export pier:deploy/method (it exports: acme:cloud/greeter@1.0.0)"),
        (plugin("extra-import"), "imports `acme:cloud/magic@1.0.0`, which this pier does not provide"),
    ];
    for (file, message) in cases {
        let (stdout, stderr) = run(pier(dir).args(["plugins", "inspect", file]), 2);
        assert!(stdout.is_empty(), "{file}: {stdout}");
        assert_eq!(stderr.lines().count(), 1, "{file}: {stderr}");
        assert!(stderr.starts_with("error: plugin "), "{file}: {stderr}");
        assert!(stderr.contains(message), "{file}: {stderr}");
    }
}

#[test]
fn oversized_plugin_is_refused_before_reading() {
    let home = tempdir();
    let big = home.path().join("big.wasm");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(65 << 20).unwrap();
    let (_, stderr) = run(pier(home.path()).args(["plugins", "inspect", "big.wasm"]), 2);
    assert!(stderr.contains("over the limit of 67108864 bytes"), "{stderr}");
}

#[test]
fn unknown_builtin_names_the_known_ones() {
    let home = tempdir();
    let (_, stderr) = run(pier(home.path()).args(["plugins", "inspect", "fly"]), 2);
    assert_eq!(stderr.trim(), "error: there is no built-in plugin `fly` (built in: heroku, git-ssh)");
}

#[test]
fn a_plugin_that_breaks_the_contract_in_describe_is_a_plugin_fault() {
    let home = tempdir();
    let (_, stderr) = run(pier(home.path()).args(["plugins", "inspect", plugin("bad-describe")]), 3);
    assert!(stderr.contains("broke the contract in `describe`: field id `token` appears twice"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let home = tempdir();
    run(pier(home.path()).args(["plugins", "frobnicate"]), 2);
    run(pier(home.path()).args(["plugins", "inspect"]), 2);
    let (stdout, _) = run(pier(home.path()).arg("--help"), 0);
    assert!(stdout.contains("plugins"));
}

#[test]
fn a_closed_stdout_is_not_an_error() {
    let home = tempdir();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pier"));
    common::clean(&mut cmd, home.path());
    let mut child = cmd
        .args(["plugins", "list", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("panicked"));
}

#[test]
fn every_test_plugin_is_covered_by_a_test() {
    // Adding a test plugin without a test fails here: name it in a test of this file,
    // sandbox.rs, escapes.rs, bounds.rs, addresses.rs or conformance.rs, then add it below.
    let tested = [
        "addresses",
        "bad-describe",
        "bounds",
        "conf-args",
        "conf-bad-program",
        "conf-big-describe",
        "conf-controls",
        "conf-env",
        "conf-origin",
        "conf-rewrite",
        "conf-secret",
        "deep-recursion",
        "env-host",
        "env-steal",
        "escapes",
        "everything",
        "exec-policy",
        "extra-import",
        "forbidden-exec",
        "forbidden-http",
        "host-calls",
        "iloop",
        "leak-secret",
        "legacy-addresses",
        "legacy-bounds",
        "legacy-notify",
        "legacy-rewrite",
        "legacy-secret",
        "memory-bomb",
        "mistyped",
        "no-method",
        "notify",
        "panics",
        "procs",
        "remembers",
        "rule-bad",
        "secret-policy",
        "sloppy-form",
        "stateful",
        "streams",
        "swallows-failure",
        "wrong-contract",
    ];
    let mut built: Vec<&str> = pier_test_plugin_artifacts::ALL.iter().map(|(n, _)| *n).collect();
    built.sort();
    assert_eq!(built, tested);
}

#[test]
fn limits_from_the_environment_are_checked_not_trusted() {
    let home = tempdir();
    for (name, value, says) in [
        ("PIER_LIMIT_SECONDS", "1e30", "PIER_LIMIT_SECONDS must be a number from 0.1 to 86400, not `1e30`"),
        ("PIER_LIMIT_SECONDS", "nan", "PIER_LIMIT_SECONDS must be a number from 0.1 to 86400"),
        ("PIER_LIMIT_SECONDS", "0", "PIER_LIMIT_SECONDS must be a number from 0.1 to 86400"),
        ("PIER_LIMIT_MEMORY_MB", "1e19", "PIER_LIMIT_MEMORY_MB must be a number from 16 to 65536"),
        ("PIER_LIMIT_MEMORY_MB", "0.5", "PIER_LIMIT_MEMORY_MB must be a number from 16 to 65536"),
        ("PIER_LIMIT_MEMORY_MB", "100.5", "PIER_LIMIT_MEMORY_MB must be a whole number of MiB"),
        ("PIER_RESOLVE", "nonsense", "PIER_RESOLVE must be `host=address"),
        ("PIER_LOG", "[[[", "PIER_LOG must be a log filter"),
    ] {
        let (_, stderr) = run(pier(home.path()).args(["plugins", "inspect", "heroku"]).env(name, value), 2);
        assert!(stderr.contains(says), "{name}={value}: {stderr}");
    }
    // Flags have ranges too.
    for (args, says) in [
        (&["deploy", "prod", "--wait", "99999999999"][..], "is not in 0..=86400"),
        (&["timeline", "--limit", "0"][..], "is not in 1..=100000"),
    ] {
        let (_, stderr) = run(pier(home.path()).args(args), 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Within bounds, the same command works.
    run(pier(home.path()).args(["plugins", "inspect", "heroku"]).env("PIER_LIMIT_SECONDS", "30"), 0);
}

#[test]
fn plugins_compile_stores_the_optimised_artifact_that_later_loads_use() {
    let home = tempdir();
    let cache = tempdir();
    let pier_with = |compiler: &str| {
        let mut cmd = pier(home.path());
        cmd.env("PIER_CACHE_DIR", cache.path()).env("PIER_COMPILER", compiler).env("PIER_COMPILE_NOTICE_MS", "0");
        cmd
    };
    let artifacts = || -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(cache.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    };
    let (_, err) = run(pier_with("fast").args(["plugins", "list"]), 2);
    assert!(err.contains("PIER_COMPILER must be `auto`, `cranelift` or `winch`, not `fast`"), "{err}");

    // A first load with the baseline compiler stores only its artifact.
    let (_, err) = run(pier_with("winch").args(["plugins", "inspect", plugin("everything")]), 0);
    assert!(err.contains("first run only"), "{err}");
    let stored = artifacts();
    assert!(stored.len() == 1 && stored[0].contains("-winch-"), "{stored:?}");

    // `plugins compile` adds the Cranelift one; run again, it has nothing to do.
    let compile = |expect_cached: bool| {
        let (out, _) = run(pier_with("auto").args(["plugins", "compile", plugin("everything"), "heroku", "--json"]), 0);
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let plugins = report["plugins"].as_array().unwrap();
        assert_eq!(plugins[0]["compiler"], "cranelift", "{out}");
        assert_eq!(plugins[0]["cached"], expect_cached, "{out}");
        // A built-in plugin's artifact is embedded in pier.
        assert_eq!((plugins[1]["plugin"].as_str(), plugins[1]["cached"].as_bool()), (Some("heroku"), Some(true)));
    };
    compile(false);
    let stored = artifacts();
    assert!(stored.len() == 2 && stored.iter().any(|n| n.contains("-cranelift-")), "{stored:?}");
    compile(true);
    let (out, _) = run(pier_with("auto").args(["plugins", "compile", plugin("everything")]), 0);
    assert!(out.starts_with(&format!("{}: already compiled with cranelift (", plugin("everything"))), "{out}");
    // Later loads use it without compiling, whichever compiler may be asked for first.
    let (_, err) = run(pier_with("auto").args(["plugins", "inspect", plugin("everything")]), 0);
    assert!(!err.contains("compiling"), "{err}");

    // With nothing named, it compiles what the project installed: here, nothing.
    let project = tempdir();
    run(pier_with("auto").current_dir(project.path()).arg("init"), 0);
    let (out, _) = run(pier_with("auto").current_dir(project.path()).args(["plugins", "compile"]), 0);
    assert!(out.starts_with("no plugins are installed in this project"), "{out}");
}
