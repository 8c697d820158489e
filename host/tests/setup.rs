//! The setup flow (S1–S8) through the real `pier` binary against the fake Heroku.

mod common;

use std::time::Duration;

use common::{API_KEY, EMAIL, Project, ada, run};
use fake_heroku::{FailRule, RateLimitSetting, Script, SeedAccount};

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Everything a user could see or commit must be free of the API key and private key.
fn assert_no_secrets(project: &Project, outputs: &[&str]) {
    let private = "BEGIN OPENSSH PRIVATE KEY";
    for text in
        outputs.iter().copied().chain([project.read("pier.toml").as_str(), project.read("pier.secrets").as_str()])
    {
        assert!(!text.contains(API_KEY), "API key leaked:\n{text}");
        assert!(!text.contains(private), "private key leaked:\n{text}");
    }
}

#[test]
fn init_creates_the_config_and_a_private_master_key() {
    let project = Project::new();
    assert!(project.read("pier.toml").starts_with("# Pier"));
    let key = project.dir().join(".config/pier/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let before = std::fs::read(&key).unwrap();
    let (out, _) = run(project.pier().arg("init"), 0);
    assert!(out.contains("already exists"), "{out}");
    assert_eq!(std::fs::read(&key).unwrap(), before, "init must never replace a master key");
}

#[test]
fn non_interactive_setup_validates_registers_a_key_and_saves() {
    let project = Project::new();
    let (out, err) = run(
        &mut project.add(
            "Production EU!",
            &[
                "--strategy",
                "automatic",
                "--branch",
                "main",
                "--url",
                "https://hello.example.com",
                "--set",
                "app=hello-app",
                "--json",
            ],
        ),
        0,
    );
    let added = json(&out);
    assert_eq!(added["server"]["alias"], "production-eu");
    assert_eq!(added["server"]["settings"]["app"], "hello-app");
    assert_eq!(added["server"]["secrets"], serde_json::json!(["api_key", "ssh_key"]));
    assert_eq!(added["validation"], format!("authenticated as {EMAIL}; app hello-app found"));
    // S5: the public key is registered with the account, the private key sealed.
    let keys = project.fake.keys(EMAIL);
    assert_eq!(keys.len(), 1);
    assert!(keys[0].public_key.starts_with("ssh-ed25519 "));
    assert_eq!(keys[0].comment, "pier deploy key for hello-app");
    let config = project.read("pier.toml");
    assert!(config.contains("[servers.production-eu]"), "{config}");
    assert!(config.contains("name = \"Production EU!\""), "{config}");
    assert!(config.contains("strategy = \"automatic\""), "{config}");
    assert!(config.contains("branch = \"main\""), "{config}");
    let secrets = project.read("pier.secrets");
    assert!(
        secrets.contains("[servers.production-eu]") && secrets.contains("api_key = ") && secrets.contains("ssh_key = ")
    );
    assert_no_secrets(&project, &[&out, &err]);
    // Every request of the setup exists in Heroku's published schema (POST /account/keys
    // is the one documented exception, which the checker names).
    fake_heroku::schema::check_all(&project.fake.requests()).unwrap();

    let (list, _) = run(project.pier().args(["server", "list", "--json"]), 0);
    assert_eq!(json(&list)[0]["alias"], "production-eu");
    let (show, _) = run(project.pier().args(["server", "show", "Production EU!"]), 0);
    assert!(show.contains("strategy:  automatic, on branch main"), "{show}");
    assert!(show.contains("secrets:   api_key, ssh_key"), "{show}");
    // The public half of the generated key, to install elsewhere; never the private half.
    let public = format!("  ssh_key (public): {}", keys[0].public_key);
    assert!(show.lines().any(|l| l == public), "{public}\n{show}");
    assert_no_secrets(&project, &[&show]);
}

#[test]
fn without_a_terminal_every_missing_flag_is_named_and_nothing_is_asked() {
    let project = Project::new();
    let (_, err) = run(project.pier().args(["server", "add"]), 2);
    assert_eq!(
        err.trim(),
        "error: not a terminal, so nothing can be asked; missing: --method NAME, --name TEXT, --strategy automatic|manual"
    );
    let (_, err) = run(project.pier().args(["server", "add", "--method", "heroku", "--strategy", "automatic"]), 2);
    assert_eq!(
        err.trim(),
        "error: not a terminal, so nothing can be asked; missing: --branch NAME (required with --strategy automatic), \
         --name TEXT, --secret api_key=env:VAR (Heroku API key), --set app=VALUE (App)"
    );
    assert!(project.fake.requests().is_empty(), "nothing may reach the provider before the form is complete");
    assert!(!project.read("pier.toml").contains("[servers"));
}

#[test]
fn bad_flags_are_refused_before_any_request() {
    let project = Project::new();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "api_key=oops"],
            "`api_key` is a secret: pass it with --secret api_key=env:VAR, never on the command line",
        ),
        (&["--set", "colour=blue"], "method heroku has no field `colour`"),
        (&["--set", "register_ssh_key=maybe"], "--set register_ssh_key must be true or false"),
        (&["--secret", "app=env:HOME"], "`app` is not a secret"),
        (&["--url", "not a url"], "--url `not a url` is not an http(s) URL"),
    ];
    for (flags, message) in cases {
        let (_, err) = run(project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]).args(*flags), 2);
        assert!(err.contains(message), "{flags:?}: {err}");
    }
    let (_, err) = run(
        project.pier().args([
            "server",
            "add",
            "--method",
            "heroku",
            "--name",
            "P",
            "--strategy",
            "manual",
            "--secret",
            "api_key=env:NOPE_NOT_SET",
        ]),
        2,
    );
    assert!(err.contains("environment variable NOPE_NOT_SET is empty or not set"), "{err}");
    assert!(project.fake.requests().is_empty());
}

#[test]
fn a_secret_too_short_to_redact_is_refused_naming_its_field() {
    let project = Project::new();
    let before = (project.read("pier.toml"), project.read("pier.secrets"));
    for short in ["abc12", "a b c d e", "12345 "] {
        let (_, err) = run(
            project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]).env("HEROKU_API_KEY", short),
            2,
        );
        assert!(
            err.contains("secret `api_key` (from --secret api_key=env:HEROKU_API_KEY) is too short to redact safely"),
            "{err}"
        );
        assert!(err.contains("at least 6 characters"), "{err}");
    }
    assert_eq!((project.read("pier.toml"), project.read("pier.secrets")), before);
    assert!(project.fake.requests().is_empty(), "refused before any request");
    // And when a secret is replaced.
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    let before = project.read("pier.secrets");
    let (_, err) =
        run(project.pier().args(["server", "edit", "prod", "--secret", "api_key=env:SHORT"]).env("SHORT", "xyz"), 2);
    assert!(err.contains("secret `api_key`") && err.contains("too short"), "{err}");
    assert_eq!(project.read("pier.secrets"), before);
}

#[test]
fn a_wrong_key_writes_nothing() {
    let project = Project::new();
    let before = (project.read("pier.toml"), project.read("pier.secrets"));
    let (_, err) = run(
        project
            .add("Prod", &["--strategy", "manual", "--set", "app=hello-app"])
            .env("HEROKU_API_KEY", "wrong-key-0000"),
        2,
    );
    assert!(err.contains("Heroku API key (api_key): Heroku rejected the API key (401 unauthorized)"), "{err}");
    assert_eq!((project.read("pier.toml"), project.read("pier.secrets")), before);
    assert!(!err.contains("wrong-key-0000"), "{err}");
}

#[test]
fn two_factor_and_suspended_accounts_are_named() {
    let two_factor = SeedAccount { two_factor_required: true, ..ada() };
    let project = Project::with(vec![two_factor]);
    let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 2);
    assert!(err.contains("requires two-factor authentication"), "{err}");
    assert!(err.contains("heroku authorizations:create"), "{err}");

    let suspended = SeedAccount { suspended: true, ..ada() };
    let project = Project::with(vec![suspended]);
    let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 4);
    assert!(err.contains("the Heroku account is suspended"), "{err}");
}

#[test]
fn an_unknown_app_is_refused() {
    let project = Project::new();
    let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=nope"]), 2);
    assert!(err.contains("App (app): there is no app `nope` on this Heroku account"), "{err}");
    assert!(project.fake.keys(EMAIL).is_empty(), "no key may be registered when validation fails");
}

#[test]
fn rate_limited_then_success() {
    let project = Project::new();
    project.fake.script(Script { rate_limit_next: 2, retry_after_seconds: Some(0), ..Default::default() });
    let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    assert!(err.contains("rate limiting"), "{err}");
    let statuses: Vec<u16> = project.fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(&statuses[..3], [429, 429, 200]);

    // A bucket that stays empty gives up with exit 4.
    let project = Project::new();
    project.fake.script(Script {
        set_rate_limit_remaining: vec![RateLimitSetting { email: EMAIL.into(), remaining: 0 }],
        retry_after_seconds: Some(0),
        ..Default::default()
    });
    let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 4);
    assert!(err.contains("rate limiting requests"), "{err}");
}

#[test]
fn a_503_on_a_get_is_retried() {
    let project = Project::new();
    project.fake.script(Script {
        fail_next: vec![FailRule {
            method: "GET".into(),
            path: "/account".into(),
            status: 503,
            id: "unavailable".into(),
            message: "try later".into(),
            times: 1,
            retry_after: None,
        }],
        ..Default::default()
    });
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
}

#[test]
fn an_unreachable_api_is_a_provider_error() {
    let project = Project::new();
    let (_, err) = run(
        project
            .add("Prod", &["--strategy", "manual", "--set", "app=hello-app"])
            .env("HEROKU_HOST", "http://127.0.0.1:9"),
        4,
    );
    assert!(err.contains("cannot reach the Heroku API at http://127.0.0.1:9"), "{err}");
}

#[test]
fn api_url_setting_overrides_heroku_host_and_the_grant_follows_it() {
    let project = Project::new();
    // HEROKU_HOST points nowhere; the api_url setting wins, and only its origin is granted.
    let (out, _) = run(
        project
            .add("Prod", &["--strategy", "manual", "--set", "app=hello-app", "--json"])
            .args(["--set", &format!("api_url={}", project.fake.url())])
            .env("HEROKU_HOST", "http://127.0.0.1:9"),
        0,
    );
    assert_eq!(json(&out)["server"]["settings"]["api_url"], project.fake.url());
}

#[test]
fn aliases_are_safe_unique_and_names_cannot_repeat() {
    let project = Project::new();
    let alias = |name: &str| {
        let (out, _) = run(
            &mut project.add(
                name,
                &["--strategy", "manual", "--set", "app=hello-app", "--set", "register_ssh_key=false", "--json"],
            ),
            0,
        );
        json(&out)["server"]["alias"].as_str().unwrap().to_string()
    };
    assert_eq!(alias("Production EU!"), "production-eu");
    assert_eq!(alias("production-eu"), "production-eu-2");
    assert_eq!(alias("Staging (old)"), "staging-old");
    let (_, err) = run(&mut project.add("PRODUCTION EU!", &["--strategy", "manual", "--set", "app=hello-app"]), 2);
    assert!(err.contains("a server named `Production EU!` already exists (alias production-eu)"), "{err}");
    let (_, err) = run(&mut project.add("!!!", &["--strategy", "manual", "--set", "app=hello-app"]), 2);
    assert!(err.contains("needs at least one letter or digit"), "{err}");
}

#[test]
fn edits_round_trip_and_keep_what_the_user_wrote() {
    let project = Project::new();
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    let path = project.dir().join("pier.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace("[servers.prod]", "# our production app\n[servers.prod]") + "# end of file\n";
    std::fs::write(&path, &text).unwrap();

    run(
        project.pier().args([
            "server",
            "edit",
            "prod",
            "--command",
            "echo one",
            "--command",
            "heroku run rake db:migrate",
        ]),
        0,
    );
    run(project.pier().args(["server", "edit", "prod", "--add-command", "echo three"]), 0);
    let (_, err) = run(project.pier().args(["server", "edit", "prod", "--strategy", "automatic"]), 2);
    assert!(err.contains("switching to automatic needs a branch"), "{err}");
    let (out, _) = run(
        project.pier().args([
            "server",
            "edit",
            "prod",
            "--strategy",
            "automatic",
            "--branch",
            "release",
            "--url",
            "https://x.example",
            "--json",
        ]),
        0,
    );
    let server = json(&out);
    assert_eq!(server["commands"], serde_json::json!(["echo one", "heroku run rake db:migrate", "echo three"]));
    assert_eq!(server["strategy"], "automatic");
    assert_eq!(server["branch"], "release");
    let text = project.read("pier.toml");
    assert!(text.contains("# our production app\n[servers.prod]"), "{text}");
    assert!(text.ends_with("# end of file\n"), "{text}");
    // A changed setting is validated first: an unknown app is refused and nothing changes.
    let (_, err) = run(project.pier().args(["server", "edit", "prod", "--set", "app=nope"]), 2);
    assert!(err.contains("there is no app `nope`"), "{err}");
    assert_eq!(project.read("pier.toml"), text);
    run(project.pier().args(["server", "edit", "prod", "--set", "app=other-app"]), 0);
    assert!(project.read("pier.toml").contains("app = \"other-app\""));

    let (_, err) = run(project.pier().args(["server", "edit", "nope", "--url", ""]), 2);
    assert!(err.contains("no server `nope`"), "{err}");
    run(project.pier().args(["server", "remove", "prod"]), 0);
    assert!(!project.read("pier.toml").contains("[servers.prod]"));
    assert!(!project.read("pier.secrets").contains("[servers.prod]"));
    assert!(project.read("pier.toml").contains("# end of file"));
}

#[test]
fn a_wrong_master_key_or_a_tampered_secrets_file_changes_nothing() {
    let project = Project::new();
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    let before = (project.read("pier.toml"), project.read("pier.secrets"));
    let other_key = "q83vEjRWeJAbM1HvEjRWeJAbM1HvEjRWeJAbM1HvEjQ=";
    let (_, err) = run(
        project.add("Staging", &["--strategy", "manual", "--set", "app=hello-app"]).env("PIER_MASTER_KEY", other_key),
        2,
    );
    assert!(
        err.contains("pier.secrets was sealed with a different master key than the one in PIER_MASTER_KEY"),
        "{err}"
    );
    let (_, err) = run(
        project.pier().args(["server", "edit", "prod", "--set", "app=hello-app"]).env("PIER_MASTER_KEY", "short"),
        2,
    );
    assert!(err.contains("PIER_MASTER_KEY is not a master key"), "{err}");
    assert_eq!((project.read("pier.toml"), project.read("pier.secrets")), before);

    // Swap the two sealed values: each is bound to its name, so neither opens.
    let secrets = project.read("pier.secrets");
    let line = |name: &str| secrets.lines().find(|l| l.starts_with(name)).unwrap().to_string();
    let (api, ssh) = (line("api_key"), line("ssh_key"));
    let swapped = secrets
        .replace(&api, "API")
        .replace(&ssh, &ssh.replacen("ssh_key", "api_key", 1))
        .replace("API", &api.replacen("api_key", "ssh_key", 1));
    std::fs::write(project.dir().join("pier.secrets"), &swapped).unwrap();
    let (_, err) = run(project.pier().args(["server", "edit", "prod", "--set", "app=hello-app"]), 2);
    assert!(err.contains("has been tampered with or moved"), "{err}");
    assert_eq!(project.read("pier.secrets"), swapped);
}

#[test]
fn an_exposed_master_key_file_is_refused() {
    let project = Project::new();
    let key = project.dir().join(".config/pier/master.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (_, err) = run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 2);
        assert!(err.contains("can be read by others: run `chmod 600"), "{err}");
    }
}

#[test]
fn a_broken_pier_toml_names_the_line() {
    let project = Project::new();
    std::fs::write(
        project.dir().join("pier.toml"),
        "[servers.prod]\nname = \"Prod\"\nmethod = \"heroku\"\nstrategy = \"sometimes\"\n",
    )
    .unwrap();
    let (_, err) = run(project.pier().args(["server", "list"]), 2);
    assert!(err.contains("pier.toml:4: server `prod`: strategy `sometimes` must be `automatic` or `manual`"), "{err}");
}

/// `pier ARGS` on a pseudo-terminal in `project`, with a plain environment: no colour, no
/// Heroku variables but `HEROKU_HOST` (the fake) and those in `extra`.
fn on_terminal(
    project: &Project,
    program: &str,
    args: &[&str],
    extra: &[(&str, &str)],
) -> rexpect::session::PtySession {
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .current_dir(project.dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", project.dir())
        .env("XDG_CONFIG_HOME", project.dir().join(".config"))
        .env("PIER_CACHE_DIR", common::cache_dir())
        .env("HEROKU_HOST", project.fake.url())
        .env("TERM", "xterm")
        .env("NO_COLOR", "1");
    for (k, v) in extra {
        command.env(k, v);
    }
    let timeout = Duration::from_secs(60).as_millis() as u64;
    rexpect::session::spawn_command(command, Some(timeout)).unwrap()
}

/// The exit code of a finished terminal session.
fn exit_code(term: &mut rexpect::session::PtySession) -> i32 {
    match term.process().wait().unwrap() {
        rexpect::process::WaitStatus::Exited(_, code) => code,
        other => panic!("pier did not exit normally: {other:?}"),
    }
}

/// The wizard asks again, in its own words, whatever can be checked: a taken or empty
/// name, a URL that is not one, an empty API key, and a key Heroku refuses (checked before
/// the app list, which needs it); each field's help is shown.
#[test]
fn the_wizard_asks_again_until_each_answer_is_right() {
    let project = Project::with(vec![ada()]);
    run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
    let mut term = on_terminal(&project, env!("CARGO_BIN_EXE_pier"), &["server", "add"], &[]);
    term.exp_string("Deployment method").unwrap();
    term.send_line("").unwrap();
    term.exp_string("its alias (lowercase letters").unwrap();
    term.exp_string("Server name").unwrap();
    term.send_line("prod").unwrap();
    term.exp_string("a server named `Prod` already exists (alias prod)").unwrap();
    term.send_line("").unwrap();
    term.exp_string("a server needs a name").unwrap();
    term.send_line("Staging").unwrap();
    term.exp_string("Strategy").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Server URL").unwrap();
    term.send_line("staging.example").unwrap();
    term.exp_string("`staging.example` is not an http(s) URL").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Run `heroku auth:token`").unwrap();
    term.exp_string("Heroku API key").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Heroku API key: an answer is required").unwrap();
    term.send_line("wrong-key-4242-abcd").unwrap();
    term.exp_string("Heroku API key: Heroku rejected the API key (401 unauthorized)").unwrap();
    term.exp_string("Heroku API key").unwrap();
    term.send_line(API_KEY).unwrap();
    term.exp_string("The Heroku app to deploy to.").unwrap();
    term.exp_string("other-app").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Register an SSH key").unwrap();
    term.send("n").unwrap();
    term.flush().unwrap();
    term.exp_string("added server Staging (staging)").unwrap();
    let rest = term.exp_eof().unwrap();
    assert!(!rest.contains(API_KEY));
    assert_eq!(exit_code(&mut term), 0);
    let config = project.read("pier.toml");
    assert!(config.contains("[servers.staging]") && config.contains("app = \"hello-app\""), "{config}");
    assert!(!project.read("pier.toml").contains("wrong-key"));
}

/// `HEROKU_API_KEY` is offered as the answer; an account with no apps is told how to make
/// one, rather than that the method "offers no choices".
#[test]
fn the_wizard_offers_the_environment_s_key_and_names_an_empty_account() {
    let empty = SeedAccount { apps: vec![], ..ada() };
    let project = Project::with(vec![empty]);
    let args = ["server", "add", "--method", "heroku", "--name", "Prod", "--strategy", "manual", "--url", ""];
    let mut term = on_terminal(&project, env!("CARGO_BIN_EXE_pier"), &args, &[("HEROKU_API_KEY", API_KEY)]);
    term.exp_string("Use $HEROKU_API_KEY from the environment as the Heroku API key?").unwrap();
    term.send("y").unwrap();
    term.flush().unwrap();
    term.exp_string("this account has no apps: create one with `heroku create`").unwrap();
    let rest = term.exp_eof().unwrap();
    assert!(!rest.contains("offers no choices"), "{rest}");
    assert_eq!(exit_code(&mut term), 2);
    assert!(!project.read("pier.toml").contains("[servers."));
    let keys: Vec<_> = project.fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(keys.contains(&"/apps".to_string()), "the key from the environment was used: {keys:?}");
}

/// Ctrl-C in a list prompt ends `pier` with 130 and the cursor shown again; in the secret
/// prompt (echo off), the terminal's modes are back as they were for the next program.
#[test]
fn ctrl_c_leaves_the_terminal_as_it_was() {
    let project = Project::with(vec![ada()]);
    let mut term = on_terminal(&project, env!("CARGO_BIN_EXE_pier"), &["server", "add"], &[]);
    term.exp_string("git-ssh").unwrap(); // the method list is on screen
    term.send_control('c').unwrap();
    let rest = term.exp_eof().unwrap();
    assert_eq!(exit_code(&mut term), 130);
    let hidden = rest.rfind("\x1b[?25l");
    let shown = rest.rfind("\x1b[?25h");
    assert!(shown.is_some() && shown > hidden, "the cursor is shown again after the list: {rest:?}");

    // A shell with echo on (the pseudo-terminal starts without) prints the terminal's
    // modes, runs pier (catching Ctrl-C itself, so its child gets the default handling),
    // and prints them again.
    let script = format!(
        "stty echo; echo \"before: $(stty -g)\"; trap 'true' INT; \
         '{}' server add --method heroku --name Prod --strategy manual --url ''; \
         echo \"pier exited $?\"; echo \"after: $(stty -g)\"",
        env!("CARGO_BIN_EXE_pier")
    );
    let mut term = on_terminal(&project, "/bin/sh", &["-c", &script], &[]);
    let (_, before) = term.exp_regex("before: [0-9a-f:]+").unwrap();
    term.exp_string("Heroku API key").unwrap();
    term.send_control('c').unwrap();
    term.exp_string("pier exited 130").unwrap();
    let (_, after) = term.exp_regex("after: [0-9a-f:]+").unwrap();
    assert_eq!(after.trim_start_matches("after: "), before.trim_start_matches("before: "), "echo is on again");
}

/// Drives `pier server add` through a pseudo-terminal, as a person would: picks the method,
/// types a name, picks the strategy, types the API key (not echoed), filters the app list
/// (250 apps over two pages) and confirms key registration.
#[test]
fn interactive_setup_through_a_terminal() {
    let account = SeedAccount { generated_apps: 250, ..ada() };
    let project = Project::with(vec![account]);
    let mut term = on_terminal(&project, env!("CARGO_BIN_EXE_pier"), &["server", "add"], &[]);
    term.exp_string("Deployment method").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Server name").unwrap();
    term.send_line("Interactive Prod").unwrap();
    term.exp_string("Strategy").unwrap();
    term.send_line("").unwrap(); // manual
    term.exp_string("Server URL").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Heroku API key").unwrap();
    term.send_line("short").unwrap();
    term.exp_string("Heroku API key is too short to redact safely").unwrap();
    term.exp_string("Heroku API key").unwrap();
    term.send_line(API_KEY).unwrap();
    term.exp_string("App").unwrap();
    term.exp_string("app-0012").unwrap(); // the list is on screen: type to filter it
    term.send("app-0250").unwrap();
    term.flush().unwrap();
    term.exp_string("app-0250").unwrap();
    term.send_line("").unwrap();
    term.exp_string("Register an SSH key").unwrap();
    term.send("y").unwrap();
    term.flush().unwrap();
    term.exp_string("added server Interactive Prod (interactive-prod)").unwrap();
    let rest = term.exp_eof().unwrap();
    assert!(!rest.contains(API_KEY));

    let config = project.read("pier.toml");
    assert!(config.contains("app = \"app-0250\""), "{config}");
    let app_pages: Vec<String> = project
        .fake
        .requests()
        .iter()
        .filter(|r| r.path == "/apps")
        .map(|r| r.header("range").unwrap_or_default().to_string())
        .collect();
    assert_eq!(app_pages, ["name ..; max=200", "name ]app-0200..; max=200"]);
    assert_eq!(project.fake.keys(EMAIL).len(), 1);
    fake_heroku::schema::check_all(&project.fake.requests()).unwrap();
}
