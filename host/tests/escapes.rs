//! Ways out of the sandbox, one test each, named after the escape it guards: shell
//! smuggled through a program's arguments or environment, reads and writes outside a
//! program's scratch space, secrets sent where no binding says, wildcard URLs of the
//! plugin's own choosing, deploy commands rewritten by a 0.1.0 plugin, endpoint
//! variables that carry more than a host, command rules that carry shell, and terminal
//! controls in what the host shows. Each hostile case has a benign twin that must still
//! work.
//!
//! The library tests share one tokio runtime and one Pier runtime; the CLI tests run the
//! real `pier` binary. The provider is a small HTTP/1.1 server on loopback that records
//! every request it gets.

mod common;

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, mpsc};
use std::time::Duration;

use common::{commit_app, plugin, run, tempdir};
use pier::caps::Grant;
use pier::caps::events::MemorySink;
use pier::caps::secrets::Vault;
use pier::runtime::{Answer, BuildInfo, CallEnv, Context, Limits, Runtime};
use secrecy::SecretString;

// ---------------------------------------------------------------------------------------
// Shared fixtures
// ---------------------------------------------------------------------------------------

/// One tokio runtime for every library test, so that the Pier runtime's HTTP client
/// always lives on the runtime that made its connections.
static TOKIO: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("tokio runtime")
});

/// One Pier runtime for every library test.
static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    let limits = Limits { deploy_time: Duration::from_secs(60), ..Limits::default() };
    Runtime::new(limits, Some(common::cache_dir())).expect("runtime")
});

/// The API key the secret tests hand their plugins.
const KEY: &str = "sk-escape-test-4f1d2c3b5a69e870";

/// What `/handout` answers: an upload URL on the plugins' wildcard origin.
const HANDOUT: &str = r#"{"url":"http://bucket.uploads.test/put?sig=1"}"#;

fn build() -> BuildInfo {
    BuildInfo {
        deploy_id: "d-escape".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".into(),
        branch: "main".into(),
        build_id: Some("1".into()),
        trigger: pier::runtime::bindings::Trigger::Manual,
    }
}

/// A vault holding `api_key` = [`KEY`].
fn vault_with_key() -> Arc<Vault> {
    let vault = Arc::new(Vault::new());
    vault.insert("api_key", SecretString::from(KEY));
    vault
}

/// Deploys test plugin `name` with `settings` (which also resolve its endpoints), the
/// secrets of `vault`, the checkout `workspace` and scratch space under `scratch`, under
/// the grant its own permissions give for the contract it is built against. Returns the
/// deploy summary.
fn deploy(name: &str, settings: &[(&str, &str)], vault: Arc<Vault>, workspace: &Path, scratch: &Path) -> String {
    deploy_diverted(name, settings, vault, workspace, scratch, None)
}

/// The same, with every request that passes the policy sent to `divert`, if set (as the
/// conformance runner does), so no name is ever looked up.
fn deploy_diverted(
    name: &str,
    settings: &[(&str, &str)],
    vault: Arc<Vault>,
    workspace: &Path,
    scratch: &Path,
    divert: Option<&str>,
) -> String {
    TOKIO.block_on(async {
        let runtime = &*RUNTIME;
        let loaded = runtime.load_file(Path::new(plugin(name))).unwrap_or_else(|e| panic!("load {name}: {e}"));
        let description = loaded.describe(runtime).await.unwrap_or_else(|e| panic!("describe {name}: {e}"));
        let values: BTreeMap<String, String> = settings.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (grant, endpoints) = Grant::for_contract(loaded.contract(), &description.permissions, &values, &|_| None)
            .unwrap_or_else(|e| panic!("grant of {name}: {e}"));
        let sink = Arc::new(MemorySink::default());
        let mut env = CallEnv::new(grant, vault, sink.clone())
            .with_workspace(common::workspace(workspace))
            .with_scratch(scratch.to_path_buf());
        if let Some(origin) = divert {
            env = env.with_divert(origin);
        }
        let ctx = Context { endpoints, server: "escapes".into() };
        let answers: Vec<Answer> =
            settings.iter().map(|(k, v)| Answer { field: k.to_string(), value: v.to_string() }).collect();
        let result = loaded.deploy(runtime, &env, &ctx, &answers, &build()).await;
        let events = format!("{:?}", sink.events());
        match result {
            Ok(Ok(report)) => report.summary,
            other => panic!("{name} with {settings:?}: expected a deploy report, got {other:?}\nevents: {events}"),
        }
    })
}

/// Every file or directory named `pwned` (any case) under `dir`.
fn marks(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name().to_string_lossy().eq_ignore_ascii_case("pwned") {
                found.push(path.clone());
            }
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(path);
            }
        }
    }
    found
}

/// Why the programs plugins run are not confined with Landlock here, if they are not.
fn unconfined() -> Option<String> {
    use pier::caps::confine::Status;
    match pier::caps::confine::status() {
        Status::Unavailable { reason } => Some(reason),
        Status::Enforced { .. } => None,
    }
}

/// One request the loopback provider received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    /// The value of header `name` (case-insensitive).
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether `secret` appears anywhere in the request line or headers.
    fn carries(&self, secret: &str) -> bool {
        self.path.contains(secret) || self.headers.iter().any(|(n, v)| n.contains(secret) || v.contains(secret))
    }
}

/// An HTTP/1.1 server on 127.0.0.1 that records every request, then answers 200 with
/// [`HANDOUT`] for `/handout` and `{}` otherwise. A request is recorded before it is
/// answered, so whatever a call sent is in [`Provider::seen`] once the call returns.
struct Provider {
    url: String,
    seen: Mutex<mpsc::Receiver<Seen>>,
}

impl Provider {
    fn start() -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the loopback provider");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let tx = tx.clone();
                std::thread::spawn(move || serve(stream, &tx));
            }
        });
        Provider { url, seen: Mutex::new(rx) }
    }

    /// `host:port`, as an endpoint variable would name it.
    fn host(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    /// The requests received since the last call.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().try_iter().collect()
    }
}

/// Serves one connection, recording each request in `tx`.
fn serve(stream: TcpStream, tx: &mpsc::Sender<Seen>) {
    common::loopback::serve(stream, |request| {
        let answer = if request.path.starts_with("/handout") { HANDOUT } else { "{}" };
        let _ = tx.send(Seen { method: request.method, path: request.path, headers: request.headers });
        (Some("application/json"), answer.to_string())
    });
}

// ---------------------------------------------------------------------------------------
// exec: arguments, environment and confinement (`exec-policy`)
// ---------------------------------------------------------------------------------------

/// A git checkout with a README, a home holding a master key, and scratch space, all
/// under one temporary directory.
struct Sandbox {
    root: tempfile::TempDir,
}

/// What the fake master key file holds.
const MASTER_KEY: &str = "pier-master-key-canary-8c41f0a2d7e95b36";

impl Sandbox {
    fn new() -> Sandbox {
        let sandbox = Sandbox { root: tempdir() };
        for dir in [sandbox.checkout(), sandbox.scratch(), sandbox.home().join(".config/pier")] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(sandbox.checkout().join("README"), "hello from the checkout\n").unwrap();
        commit_app(&sandbox.checkout());
        std::fs::write(sandbox.master_key(), MASTER_KEY).unwrap();
        sandbox
    }

    fn checkout(&self) -> PathBuf {
        self.root.path().join("checkout")
    }

    fn home(&self) -> PathBuf {
        self.root.path().join("home")
    }

    fn scratch(&self) -> PathBuf {
        self.root.path().join("scratch")
    }

    fn master_key(&self) -> PathBuf {
        self.home().join(".config/pier/master.key")
    }

    /// Deploys `exec-policy` in `mode`, with `target`.
    fn exec(&self, mode: &str, target: &str) -> String {
        let settings = [("mode", mode), ("target", target)];
        deploy("exec-policy", &settings, Arc::new(Vault::new()), &self.checkout(), &self.scratch())
    }

    /// Runs hostile `mode`: it must be denied and leave no mark anywhere.
    fn assert_denied(&self, mode: &str) {
        let summary = self.exec(mode, "");
        assert!(summary.starts_with("denied:"), "{mode}: {summary}");
        let found = marks(self.root.path());
        assert!(found.is_empty(), "{mode} left its mark: {found:?}");
    }
}

#[test]
fn a_git_alias_cannot_run_shell() {
    Sandbox::new().assert_denied("git-alias");
}

#[test]
fn a_plugin_cannot_set_git_ssh_command() {
    Sandbox::new().assert_denied("git-ssh-command");
}

#[test]
fn a_plugin_cannot_configure_git_through_the_environment() {
    Sandbox::new().assert_denied("git-config-env");
}

#[test]
fn a_plugin_cannot_point_path_at_programs_of_its_choosing() {
    Sandbox::new().assert_denied("path-env");
}

#[test]
fn a_plugin_cannot_preload_a_library_into_a_program() {
    Sandbox::new().assert_denied("ld-preload");
}

#[test]
fn a_program_gets_only_the_environment_names_declared_for_it() {
    let sandbox = Sandbox::new();
    sandbox.assert_denied("undeclared-env");
    // The benign twins: a declared name, and a declared program with declared arguments.
    assert_eq!(sandbox.exec("declared-env", ""), "ok 0: bar");
    assert_eq!(sandbox.exec("git-version", ""), "ok 0");
}

#[test]
fn a_program_cannot_read_the_master_key() {
    let sandbox = Sandbox::new();
    let summary = sandbox.exec("cat-target", &sandbox.master_key().display().to_string());
    match unconfined() {
        Some(reason) => eprintln!("skipping the Landlock assertion (programs are not confined here): {reason}"),
        None => {
            assert!(!summary.starts_with("ok 0"), "cat read the master key: {summary}");
            assert!(!summary.contains(MASTER_KEY), "{summary}");
        }
    }
}

#[test]
fn a_program_cannot_write_the_checkout_outside_its_scratch_space() {
    let sandbox = Sandbox::new();
    let target = sandbox.checkout().join("written-by-touch");
    let summary = sandbox.exec("touch-target", &target.display().to_string());
    match unconfined() {
        Some(reason) => eprintln!("skipping the Landlock assertion (programs are not confined here): {reason}"),
        None => {
            assert!(!summary.starts_with("ok 0"), "touch wrote into the checkout: {summary}");
            assert!(!target.exists(), "{} was created", target.display());
        }
    }
    // The benign twins: its own scratch directory is writable, the checkout readable.
    assert_eq!(sandbox.exec("touch-scratch", ""), "ok 0");
    assert_eq!(sandbox.exec("cat-workspace", "README"), "ok 0: hello from the checkout");
}

#[test]
fn a_program_gets_a_private_home() {
    let sandbox = Sandbox::new();
    let summary = sandbox.exec("home", "");
    let home = summary.strip_prefix("ok 0: ").unwrap_or_else(|| panic!("printenv HOME: {summary}"));
    assert!(!home.is_empty(), "{summary}");
    assert_ne!(Path::new(home), sandbox.home(), "the program got the test's HOME");
    if let Some(own) = std::env::var_os("HOME") {
        assert_ne!(Path::new(home), Path::new(&own), "the program got the process's HOME");
    }
}

// ---------------------------------------------------------------------------------------
// http: secret bindings and wildcard origins (`secret-policy`, `legacy-secret`)
// ---------------------------------------------------------------------------------------

/// Deploys `name` in `mode` against `provider`, with [`KEY`] as `api_key`.
fn send(name: &str, provider: &Provider, mode: &str) -> String {
    let dir = tempdir();
    let workspace = dir.path().join("checkout");
    std::fs::create_dir_all(&workspace).unwrap();
    std::fs::write(workspace.join("README"), "to upload\n").unwrap();
    deploy(name, &[("api_url", &provider.url), ("mode", mode)], vault_with_key(), &workspace, dir.path())
}

/// Runs hostile `mode` of `name`: it must be denied, and nothing carrying the key may
/// have reached the provider.
fn assert_secret_denied(name: &str, mode: &str) {
    let provider = Provider::start();
    let summary = send(name, &provider, mode);
    assert!(summary.starts_with("denied:"), "{name} {mode}: {summary}");
    let leaked: Vec<Seen> = provider.seen().into_iter().filter(|s| s.carries(KEY)).collect();
    assert!(leaked.is_empty(), "{name} {mode}: the key reached the provider: {leaked:?}");
}

#[test]
fn a_bound_secret_reaches_its_endpoint_in_its_header() {
    let provider = Provider::start();
    let summary = send("secret-policy", &provider, "bound");
    assert!(summary.starts_with("ok 200"), "{summary}");
    let seen = provider.seen();
    let bound = seen.iter().find(|s| s.path == "/bound").unwrap_or_else(|| panic!("no request: {seen:?}"));
    assert_eq!(bound.header("Authorization"), Some(format!("Bearer {KEY}").as_str()), "{bound:?}");
}

#[test]
fn a_secret_cannot_travel_in_another_header() {
    assert_secret_denied("secret-policy", "user-agent");
    assert_secret_denied("secret-policy", "x-anything");
}

#[test]
fn a_secret_cannot_take_another_prefix_or_a_suffix() {
    assert_secret_denied("secret-policy", "prefix");
    assert_secret_denied("secret-policy", "suffix");
}

#[test]
fn a_secret_cannot_go_to_a_declared_origin_that_is_not_its_endpoint() {
    assert_secret_denied("secret-policy", "extra-origin");
}

#[test]
fn a_secret_cannot_go_to_a_wildcard_origin() {
    assert_secret_denied("secret-policy", "wildcard-secret");
}

#[test]
fn a_plugin_cannot_reach_a_wildcard_url_of_its_own_choosing() {
    let provider = Provider::start();
    let summary = send("secret-policy", &provider, "wildcard-unlisted");
    assert!(summary.starts_with("denied:"), "{summary}");
}

#[test]
fn a_wildcard_url_the_endpoint_handed_out_is_reachable() {
    // Diverted to the provider, so `bucket.uploads.test` is never looked up: the handed-out
    // URL must be sent, and arrive.
    for (mode, path) in [("wildcard-listed", "/put?sig=1"), ("wildcard-listed-upload", "/put?sig=1")] {
        let provider = Provider::start();
        let dir = tempdir();
        let workspace = dir.path().join("checkout");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("README"), "to upload\n").unwrap();
        let settings = [("api_url", provider.url.as_str()), ("mode", mode)];
        let summary =
            deploy_diverted("secret-policy", &settings, vault_with_key(), &workspace, dir.path(), Some(&provider.url));
        assert!(!summary.starts_with("denied:") && !summary.starts_with("connection:"), "{mode}: {summary}");
        let seen = provider.seen();
        assert!(seen.iter().any(|s| s.path == "/handout"), "{mode}: /handout was not asked");
        assert!(seen.iter().any(|s| s.path == path), "{mode}: {path} did not arrive: {seen:?}");
    }
}

#[test]
fn a_legacy_plugin_may_send_its_secret_in_any_header_to_its_endpoint() {
    let provider = Provider::start();
    let summary = send("legacy-secret", &provider, "any-header");
    assert!(summary.starts_with("ok 200"), "{summary}");
    let seen = provider.seen();
    let any = seen.iter().find(|s| s.path == "/any").unwrap_or_else(|| panic!("no request: {seen:?}"));
    assert_eq!(any.header("X-Anything"), Some(KEY), "{any:?}");
}

#[test]
fn a_legacy_plugin_cannot_send_its_secret_to_another_origin() {
    assert_secret_denied("legacy-secret", "extra-origin");
}

// ---------------------------------------------------------------------------------------
// The CLI: legacy command plans, endpoint variables, load-time refusals, terminal output
// ---------------------------------------------------------------------------------------

/// A `pier init`-ed project in its own HOME.
struct Cli {
    home: tempfile::TempDir,
}

impl Cli {
    fn new() -> Cli {
        let cli = Cli { home: tempdir() };
        run(cli.pier().arg("init"), 0);
        cli
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn pier(&self) -> assert_cmd::Command {
        common::pier(self.dir())
    }

    /// Copies test plugin `name` into the project's `plugins/` and returns its path.
    fn copy(&self, name: &str) -> String {
        let file = format!("plugins/{name}.wasm");
        std::fs::create_dir_all(self.dir().join("plugins")).unwrap();
        std::fs::copy(plugin(name), self.dir().join(&file)).unwrap();
        file
    }

    /// Installs test plugin `name`.
    fn install(&self, name: &str) {
        let file = self.copy(name);
        run(self.pier().args(["plugins", "add", &file, "--yes"]), 0);
    }

    /// Replaces the deploy commands of server `alias`.
    fn commands(&self, alias: &str, commands: &[&str]) {
        let mut cmd = self.pier();
        cmd.args(["server", "edit", alias, "--clear-commands"]);
        for c in commands {
            cmd.args(["--add-command", c]);
        }
        run(&mut cmd, 0);
    }

    fn set(&self, alias: &str, setting: &str) {
        run(self.pier().args(["server", "edit", alias, "--set", setting]), 0);
    }
}

/// A stand-in `heroku` in `dir/bin` that appends its arguments to `dir/heroku-args.txt`
/// and exits 0; returns a `PATH` with it first.
fn stand_in_heroku(dir: &Path) -> std::ffi::OsString {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = bin.join("heroku");
    std::fs::write(&script, format!("#!/bin/sh\necho \"$*\" >> '{}'\nexit 0\n", dir.join("heroku-args.txt").display()))
        .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut dirs = vec![bin];
    dirs.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()));
    std::env::join_paths(dirs).unwrap()
}

/// What `legacy-rewrite`'s deploy logs: if it shows, the deploy ran.
const LEGACY_DEPLOY_RAN: &str = "legacy-rewrite deploy ran";

/// The command the legacy rewrite tests deploy.
const MIGRATE: &str = "heroku run rake db:migrate";

/// A project with `legacy-rewrite` installed and server `prod` of it in `mode`, a git
/// checkout, and `PATH` with a stand-in `heroku`.
fn legacy_rewrite(mode: &str) -> (Cli, std::ffi::OsString) {
    let cli = Cli::new();
    cli.install("legacy-rewrite");
    commit_app(cli.dir());
    let mode = format!("mode={mode}");
    run(
        cli.pier()
            .args(["server", "add", "--method", "legacy-rewrite", "--name", "Prod", "--strategy", "manual"])
            .args(["--set", "api_url=http://127.0.0.1:9", "--set", "app=hello-app", "--set", &mode])
            .args(["--secret", "api_key=env:LEGACY_API_KEY"])
            .env("LEGACY_API_KEY", KEY),
        0,
    );
    let path = stand_in_heroku(cli.dir());
    (cli, path)
}

/// Deploys `prod` in a legacy-rewrite project whose plan must be refused: exit 3, a
/// message naming the plugin and the command, nothing run, no mark left.
fn assert_plan_refused(cli: &Cli, path: &std::ffi::OsStr, names: &str) {
    let (out, err) = run(cli.pier().args(["deploy", "prod"]).env("PATH", path), 3);
    assert!(
        err.lines().any(|l| l.contains("legacy-rewrite") && l.contains(names)),
        "no line names the plugin and `{names}`:\n{err}"
    );
    assert!(!err.contains(LEGACY_DEPLOY_RAN) && !out.contains(LEGACY_DEPLOY_RAN), "the deploy ran:\n{err}");
    assert!(!cli.dir().join("heroku-args.txt").exists(), "a deploy command ran");
    let found = marks(cli.dir());
    assert!(found.is_empty(), "shell ran: {found:?}");
}

#[test]
fn a_plugin_cannot_append_shell_to_a_deploy_command() {
    let (cli, path) = legacy_rewrite("append");
    cli.commands("prod", &[MIGRATE]);
    assert_plan_refused(&cli, &path, MIGRATE);
}

#[test]
fn a_plugin_cannot_end_a_deploy_command_early_with_a_semicolon() {
    let (cli, path) = legacy_rewrite("semicolon");
    cli.commands("prod", &[MIGRATE]);
    assert_plan_refused(&cli, &path, MIGRATE);
}

#[test]
fn a_plugin_cannot_hide_shell_in_an_inserted_flag() {
    let (cli, path) = legacy_rewrite("flag-value");
    cli.commands("prod", &[MIGRATE]);
    assert_plan_refused(&cli, &path, MIGRATE);
}

#[test]
fn a_legacy_plugin_may_keep_its_commands_or_insert_a_flag() {
    let (cli, path) = legacy_rewrite("same");
    cli.commands("prod", &[MIGRATE]);
    let (_, err) = run(cli.pier().args(["deploy", "prod"]).env("PATH", &path), 0);
    assert!(err.contains(&format!("Command 1/1: {MIGRATE}")), "{err}");
    assert!(err.contains(LEGACY_DEPLOY_RAN), "{err}");

    cli.set("prod", "mode=flag");
    let (_, err) = run(cli.pier().args(["deploy", "prod"]).env("PATH", &path), 0);
    assert!(err.contains("Command 1/1: heroku run --exit-code rake db:migrate"), "{err}");
    let args = std::fs::read_to_string(cli.dir().join("heroku-args.txt")).unwrap();
    assert_eq!(args, "run rake db:migrate\nrun --exit-code rake db:migrate\n");
    assert!(marks(cli.dir()).is_empty());
}

#[test]
fn a_legacy_plugin_cannot_point_deploy_commands_at_other_programs_or_hosts() {
    for (mode, variable) in [("env-path", "`PATH`"), ("env-text", "HEROKU_HOST")] {
        let (cli, path) = legacy_rewrite(mode);
        cli.commands("prod", &["printenv > seen-env.txt"]);
        let (_, err) = run(cli.pier().args(["deploy", "prod"]).env("PATH", &path), 3);
        assert!(err.contains(variable), "{mode}: the message does not name {variable}:\n{err}");
        assert!(!cli.dir().join("seen-env.txt").exists(), "{mode}: a deploy command ran");
        assert!(!err.contains(LEGACY_DEPLOY_RAN), "{mode}: the deploy ran:\n{err}");
    }
}

#[test]
fn a_legacy_plugin_may_give_commands_the_servers_own_values() {
    let (cli, path) = legacy_rewrite("env-ok");
    cli.commands("prod", &[r#"printf '%s|%s|%s\n' "$HEROKU_APP" "$HEROKU_HOST" "${#HEROKU_API_KEY}" > seen-env.txt"#]);
    run(cli.pier().args(["deploy", "prod"]).env("PATH", &path), 0);
    let seen = std::fs::read_to_string(cli.dir().join("seen-env.txt")).unwrap();
    let fields: Vec<&str> = seen.trim().split('|').collect();
    assert_eq!(fields[0], "hello-app", "{seen}");
    assert!(fields[1].starts_with("http://127.0.0.1:9"), "{seen}");
    assert_eq!(fields[2], KEY.len().to_string(), "the key's length: {seen}");
}

#[test]
fn a_legacy_plugin_cannot_run_programs() {
    let (cli, path) = legacy_rewrite("exec");
    let (out, _) = run(cli.pier().args(["deploy", "prod", "--json"]).env("PATH", &path), 0);
    let result = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["type"] == "result")
        .unwrap_or_else(|| panic!("no result: {out}"));
    let summary = result["data"]["summary"].as_str().unwrap_or_default();
    assert!(summary.starts_with("denied:"), "{summary}");
    assert!(summary.contains("0.3.0"), "the denial says what to rebuild against: {summary}");
}

#[test]
fn an_endpoint_cannot_take_the_master_key_from_the_environment() {
    let cli = Cli::new();
    let file = cli.copy("env-steal");
    let canary = "pier-master-key-in-the-environment-0f6b";
    let (out, err) = run(cli.pier().args(["plugins", "inspect", &file]).env("PIER_MASTER_KEY", canary), 3);
    assert!(err.contains("PIER_MASTER_KEY"), "{err}");
    assert!(!out.contains(canary) && !err.contains(canary), "{out}\n{err}");
    let before = std::fs::read_to_string(cli.dir().join("pier.toml")).unwrap();
    let (_, err) = run(cli.pier().args(["plugins", "add", &file, "--yes"]), 3);
    assert!(err.contains("PIER_MASTER_KEY"), "{err}");
    assert_eq!(std::fs::read_to_string(cli.dir().join("pier.toml")).unwrap(), before, "nothing is installed");
}

#[test]
fn a_command_rule_cannot_insert_shell() {
    let cli = Cli::new();
    let file = cli.copy("rule-bad");
    let (_, err) = run(cli.pier().args(["plugins", "inspect", &file]), 3);
    assert!(err.contains("; touch pwned"), "the message names the flag: {err}");
    let before = std::fs::read_to_string(cli.dir().join("pier.toml")).unwrap();
    run(cli.pier().args(["plugins", "add", &file, "--yes"]), 3);
    assert_eq!(std::fs::read_to_string(cli.dir().join("pier.toml")).unwrap(), before, "nothing is installed");
}

/// The terminal controls in `text`: C0 and C1 controls but line feed and tab, and the
/// bidirectional overrides and isolates.
fn controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || ('\u{202a}'..='\u{202e}').contains(&c)
                || ('\u{2066}'..='\u{2069}').contains(&c)
        })
        .collect()
}

/// Every string in a JSON value.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
        serde_json::Value::Object(map) => map.iter().for_each(|(k, v)| {
            out.push(k.clone());
            strings(v, out);
        }),
        _ => {}
    }
}

#[test]
fn a_plugin_cannot_write_terminal_controls() {
    let cli = Cli::new();
    let file = cli.copy("escapes");
    let (out, err) = run(cli.pier().args(["plugins", "inspect", &file]), 0);
    for (what, text) in [("stdout", &out), ("stderr", &err)] {
        assert!(controls(text).is_empty(), "inspect {what} holds {:?}:\n{text:?}", controls(text));
    }
    assert!(out.contains("Nice"), "{out}");
    assert!(out.contains("http endpoint `api`"), "the permission lines are still shown: {out}");
    assert!(out.contains("run program `true`"), "the permission lines are still shown: {out}");

    let (json, _) = run(cli.pier().args(["plugins", "inspect", &file, "--json"]), 0);
    let mut all = Vec::new();
    strings(&serde_json::from_str(&json).unwrap(), &mut all);
    for s in &all {
        assert!(controls(s).is_empty(), "inspect --json holds {:?} in {s:?}", controls(s));
    }

    // What the plugin returns from its other exports is shown inert too.
    run(cli.pier().args(["plugins", "add", &file, "--yes"]), 0);
    commit_app(cli.dir());
    let (out, err) = run(
        cli.pier().args(["server", "add", "--method", "escapes", "--name", "Esc", "--strategy", "manual"]).args([
            "--set",
            "api_url=http://127.0.0.1:9",
            "--set",
            "flavour=plain",
        ]),
        0,
    );
    assert!(err.contains("all good"), "{err}");
    let (out2, err2) = run(cli.pier().args(["deploy", "esc"]), 1);
    assert!(out2.contains("bad") && out2.contains("thing"), "{out2}");
    for (what, text) in [("server add stdout", out), ("server add stderr", err), ("deploy stdout", out2)] {
        assert!(controls(&text).is_empty(), "{what} holds {:?}:\n{text:?}", controls(&text));
    }
    assert!(controls(&err2).is_empty(), "deploy stderr holds {:?}:\n{err2:?}", controls(&err2));
}

#[test]
fn an_endpoint_variable_may_pick_a_host_and_nothing_else() {
    let provider = Provider::start();
    let cli = Cli::new();
    cli.install("env-host");
    commit_app(cli.dir());
    run(cli.pier().args(["server", "add", "--method", "env-host", "--name", "Api", "--strategy", "manual"]), 0);

    let (out, _) = run(cli.pier().args(["deploy", "api"]).env("DEPLOY_API_HOST", provider.host()), 0);
    assert!(out.contains("ok 200"), "{out}");
    assert!(provider.seen().iter().any(|s| s.method == "GET" && s.path == "/ping"), "the deploy reached the host");

    let (out, err) = run(cli.pier().args(["deploy", "api"]).env("DEPLOY_API_HOST", "evil.example/x?leak=VALUE"), 2);
    assert!(err.contains("DEPLOY_API_HOST"), "the message names the variable: {err}");
    let (timeline, _) = run(cli.pier().args(["timeline", "--json"]), 0);
    for text in [&out, &err, &timeline] {
        assert!(!text.contains("leak=VALUE"), "the variable's value was shown: {text}");
    }
    assert!(provider.seen().is_empty(), "nothing may be sent with the bad value");
}

/// The `legacy-notify` test plugin as built against contract 0.1.0 and kept, bytes and all.
const NOTIFY_0_1_0: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/notify-0.1.0.wasm");

#[test]
fn a_legacy_plugin_keeps_loading_and_deploying() {
    // Built from source today, and the binary built when 0.1.0 was current.
    a_legacy_plugin_deploys(plugin("legacy-notify"));
    a_legacy_plugin_deploys(NOTIFY_0_1_0);
}

fn a_legacy_plugin_deploys(file: &str) {
    let provider = Provider::start();
    let cli = Cli::new();
    std::fs::create_dir_all(cli.dir().join("plugins")).unwrap();
    std::fs::copy(file, cli.dir().join("plugins/notify.wasm")).unwrap();
    let (out, _) = run(cli.pier().args(["plugins", "inspect", "plugins/notify.wasm", "--json"]), 0);
    assert_eq!(common::json(&out)["contract"], "0.1.0", "{out}");
    run(cli.pier().args(["plugins", "add", "plugins/notify.wasm", "--yes"]), 0);
    commit_app(cli.dir());
    let hook = format!("url={}/hook", provider.url);
    run(
        cli.pier()
            .args(["server", "add", "--method", "notify", "--name", "Hook", "--strategy", "manual", "--set", &hook])
            .args(["--secret", "token=env:HOOK_TOKEN"])
            .env("HOOK_TOKEN", KEY),
        0,
    );
    cli.commands("hook", &[MIGRATE]);
    let path = stand_in_heroku(cli.dir());
    let (out, _) = run(cli.pier().args(["deploy", "hook"]).env("PATH", &path), 0);
    assert!(out.contains("notified (HTTP 200)"), "{out}");
    let seen = provider.seen();
    let post = seen.iter().find(|s| s.method == "POST" && s.path == "/hook").unwrap_or_else(|| panic!("{seen:?}"));
    assert_eq!(post.header("Authorization"), Some(format!("Bearer {KEY}").as_str()));
    let args = std::fs::read_to_string(cli.dir().join("heroku-args.txt")).unwrap();
    assert_eq!(args, "run --exit-code rake db:migrate\n", "its --exit-code insertion is kept");
}
