//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod bomb;
pub mod loopback;
pub mod oracle;
pub mod postgres;

/// Where tests cache compiled plugins: shared by every test so each plugin compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compiled")
}

/// Whether an inherited variable named `key` could change what `pier` does, so that the
/// tests remove it: Pier's own settings, the Heroku CLI's, and what `pier ci` and the
/// deploy's actor read from a CI (the suite may itself run in GitHub Actions, with
/// `HEROKU_API_KEY` set, ...).
fn leaks_in(key: &str) -> bool {
    const PREFIXES: &[&str] =
        &["PIER_", "HEROKU_", "GITHUB_", "GITLAB_", "CI_", "SEMAPHORE", "CIRCLE", "BUILDKITE", "JENKINS_"];
    const NAMES: &[&str] = &[
        "CI",
        "BRANCH_NAME",
        "GIT_BRANCH",
        "GIT_COMMIT",
        "BUILD_NUMBER",
        "BUILD_USER_ID",
        "CHANGE_ID",
        // A test plugin's endpoint variable.
        "DEPLOY_API_HOST",
        "RUST_BACKTRACE",
    ];
    PREFIXES.iter().any(|p| key.starts_with(p)) || NAMES.contains(&key)
}

/// What the tests change in `pier`'s environment: no inherited variable that could change
/// what it does (`None`: removed, see [`leaks_in`]), the test cache, no colour, and
/// `HOME` / config pointing into `home`.
fn clean_env(home: &std::path::Path) -> Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> {
    let mut env: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)> = std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| key.to_str().is_some_and(leaks_in))
        .map(|key| (key, None))
        .collect();
    env.push(("PIER_CACHE_DIR".into(), Some(cache_dir().into())));
    env.push(("HOME".into(), Some(home.into())));
    env.push(("XDG_CONFIG_HOME".into(), Some(home.join(".config").into())));
    env.push(("NO_COLOR".into(), Some("1".into())));
    env
}

/// `cmd` with the environment of [`pier`] for `home`.
pub fn clean(cmd: &mut std::process::Command, home: &std::path::Path) {
    for (key, value) in clean_env(home) {
        match value {
            Some(value) => cmd.env(key, value),
            None => cmd.env_remove(key),
        };
    }
}

/// The `pier` binary with a clean environment: no inherited variable that could change
/// what it does (`PIER_*`, Heroku's, a CI's), the test cache, no colour, and `HOME` /
/// config pointing into `home`.
pub fn pier(home: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pier"));
    clean(&mut cmd, home);
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.current_dir(home);
    cmd
}

/// How a measured `pier` run ended.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Measured {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Peak resident memory, in bytes.
    pub max_rss: u64,
}

/// Set in a re-executed test binary: the file holding a measurement request.
const MEASURE_REQUEST: &str = "PIER_TESTS_MEASURE_REQUEST";

/// What a re-executed test binary is asked to measure, and where the answer goes.
#[derive(serde::Serialize, serde::Deserialize)]
struct MeasureRequest {
    home: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    answer: PathBuf,
}

/// Runs `pier ARGS` in `home` with the environment of [`pier`] (and `extra_env` on top)
/// and returns how it ended with its peak resident memory.
///
/// A child's `ru_maxrss` counts the memory of the process it was forked from (the test
/// process, large with the in-process tests' runtimes), so `pier` is spawned and reaped
/// by a fresh, small copy of this test binary running only [`measure_trampoline`]: the
/// figure is then `pier`'s own. Each test binary that measures declares that trampoline
/// test with `common::measure_trampoline!()`.
pub fn pier_measured(home: &std::path::Path, args: &[&str], extra_env: &[(&str, &str)]) -> Measured {
    let dir = tempdir();
    let request = MeasureRequest {
        home: home.to_path_buf(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        answer: dir.path().join("answer.json"),
    };
    let file = dir.path().join("request.json");
    std::fs::write(&file, serde_json::to_vec(&request).expect("a request as JSON")).expect("write the request");
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args(["measure_trampoline", "--exact", "--nocapture", "--test-threads=1", "--quiet"])
        .env(MEASURE_REQUEST, &file)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("re-run the test binary to measure pier");
    let answer = std::fs::read(&request.answer).unwrap_or_else(|e| {
        panic!(
            "no measurement ({e}): is `common::measure_trampoline!()` declared?\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_slice(&answer).expect("a measurement")
}

/// The trampoline of [`pier_measured`]: in a test binary re-executed with a request,
/// measures `pier` and writes the answer; otherwise does nothing.
pub fn trampoline() {
    let Some(file) = std::env::var_os(MEASURE_REQUEST) else { return };
    let request: MeasureRequest =
        serde_json::from_slice(&std::fs::read(file).expect("read the request")).expect("a request");
    let args: Vec<&str> = request.args.iter().map(String::as_str).collect();
    let env: Vec<(&str, &str)> = request.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let measured = measure_here(&request.home, &args, &env);
    std::fs::write(&request.answer, serde_json::to_vec(&measured).expect("an answer as JSON")).expect("write it");
}

/// Declares the test that [`pier_measured`] re-executes its test binary to run.
#[macro_export]
macro_rules! measure_trampoline {
    () => {
        /// Measures `pier` when this test binary is re-executed to (see
        /// `common::pier_measured`); passes at once otherwise.
        #[test]
        fn measure_trampoline() {
            common::trampoline();
        }
    };
}

/// Spawns `pier ARGS` from this process, reaps it with `wait4` and returns how it ended
/// with its `ru_maxrss` (which includes this process's own size at the fork).
fn measure_here(home: &std::path::Path, args: &[&str], extra_env: &[(&str, &str)]) -> Measured {
    use std::io::Read as _;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pier"));
    clean(&mut cmd, home);
    cmd.envs(extra_env.iter().copied())
        .args(args)
        .current_dir(home)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // Reaped below with `wait4`, which `Child` does not know about.
    #[allow(clippy::zombie_processes)]
    let mut child = cmd.spawn().expect("spawn pier");
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let pid = nix::libc::pid_t::try_from(child.id()).expect("a pid fits pid_t");
    let mut status: nix::libc::c_int = 0;
    // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our own unreaped child; `status` and `usage` are valid for writes.
        let reaped = unsafe { nix::libc::wait4(pid, &mut status, 0, &mut usage) };
        if reaped == pid {
            break;
        }
        let error = std::io::Error::last_os_error();
        assert_eq!(error.kind(), std::io::ErrorKind::Interrupted, "wait4 of pier: {error}");
    }
    let (code, signal) = if nix::libc::WIFEXITED(status) {
        (Some(nix::libc::WEXITSTATUS(status)), None)
    } else if nix::libc::WIFSIGNALED(status) {
        (None, Some(nix::libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    // Linux reports `ru_maxrss` in KiB.
    let max_rss = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    Measured {
        code,
        signal,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
        max_rss,
    }
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// The test plugin `name`.
pub fn plugin(name: &str) -> &'static str {
    pier_test_plugin_artifacts::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .unwrap_or_else(|| panic!("no test plugin `{name}`"))
}

/// Runs `cmd`, checks its exit code, and returns (stdout, stderr).
pub fn run(cmd: &mut assert_cmd::Command, code: i32) -> (String, String) {
    let output = cmd.output().expect("run pier");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(code), "exit code\nstdout:\n{stdout}\nstderr:\n{stderr}");
    (stdout, stderr)
}

/// A project directory with its own HOME (so its own master key), a fake Heroku, and
/// `pier init` already run.
pub struct Project {
    pub home: tempfile::TempDir,
    pub fake: fake_heroku::FakeHeroku,
    /// Variables every `pier` of the project gets (for example `PIER_DATABASE_URL`).
    pub env: Vec<(String, String)>,
}

/// The API key of the seeded account.
pub const API_KEY: &str = "heroku-api-key-ada-5f0c2b7e9d";
/// The seeded account's email.
pub const EMAIL: &str = "ada@example.com";

pub fn seed(accounts: Vec<fake_heroku::SeedAccount>) -> fake_heroku::Seed {
    fake_heroku::Seed { accounts }
}

pub fn ada() -> fake_heroku::SeedAccount {
    fake_heroku::SeedAccount {
        email: EMAIL.into(),
        api_key: API_KEY.into(),
        apps: vec!["hello-app".into(), "other-app".into()],
        ..Default::default()
    }
}

impl Project {
    /// A project whose fake Heroku holds `accounts`.
    pub fn with(accounts: Vec<fake_heroku::SeedAccount>) -> Project {
        let fake = fake_heroku::FakeHeroku::start(seed(accounts)).expect("start fake Heroku");
        let project = Project { home: tempdir(), fake, env: Vec::new() };
        run(project.pier().arg("init"), 0);
        project
    }

    /// A project with Ada's account.
    pub fn new() -> Project {
        Project::with(vec![ada()])
    }

    pub fn dir(&self) -> &std::path::Path {
        self.home.path()
    }

    /// `pier` in the project, talking to the fake through `HEROKU_HOST` as the Heroku
    /// CLI would, with the API key in `HEROKU_API_KEY`.
    pub fn pier(&self) -> assert_cmd::Command {
        let mut cmd = pier(self.dir());
        cmd.env("HEROKU_HOST", self.fake.url()).env("HEROKU_API_KEY", API_KEY);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts `pier deploy prod ARGS` whose one command writes `$PIER_SSH_KEY` to the
    /// fifo `started`, then blocks until the test writes to the fifo `release`: returns
    /// the running pier, the key file's path, and the `release` fifo.
    pub fn blocked_deploy(&self, extra: &[&str]) -> (std::process::Child, String, PathBuf) {
        use std::io::Read as _;
        let started = fifo(self.dir(), "started");
        let release = fifo(self.dir(), "release");
        self.commands(&[&format!(
            "echo \"$PIER_SSH_KEY\" > '{}'; cat '{}' > /dev/null",
            started.display(),
            release.display()
        )]);
        let mut args = vec!["deploy", "prod"];
        args.extend_from_slice(extra);
        let child = self.spawn(&args);
        let mut key_path = String::new();
        std::fs::File::open(&started).unwrap().read_to_string(&mut key_path).unwrap();
        (child, key_path.trim().to_string(), release)
    }

    /// `pier server add` of a Heroku server non-interactively.
    pub fn add(&self, name: &str, extra: &[&str]) -> assert_cmd::Command {
        let mut cmd = self.pier();
        cmd.args(["server", "add", "--method", "heroku", "--name", name, "--secret", "api_key=env:HEROKU_API_KEY"])
            .args(extra);
        cmd
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir().join(file)).unwrap_or_default()
    }
}

/// `text` parsed as JSON, or a panic showing it.
pub fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The project's timeline as JSON, newest first.
pub fn timeline(project: &Project) -> serde_json::Value {
    json(&run(project.pier().args(["timeline", "--json"]), 0).0)
}

/// A script whose next build's release runs `dynos`.
pub fn release_with(dynos: Vec<fake_heroku::DynoScript>) -> fake_heroku::Script {
    fake_heroku::Script {
        next_build: Some(fake_heroku::BuildScript {
            release: fake_heroku::ReleaseScript { dynos, ..Default::default() },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A dyno `name` that is `state` after `polls_starting` dyno lists showing it starting.
pub fn dyno(name: &str, state: &str, polls_starting: u32) -> fake_heroku::DynoScript {
    fake_heroku::DynoScript { name: name.into(), state: state.into(), polls_starting }
}

/// Runs git in `dir`, panicking on failure.
pub fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Project {
    /// A project that is also a git checkout of a small app, with one Heroku server
    /// `prod` (manual) set up for hello-app. Returns the commit.
    pub fn with_app() -> (Project, String) {
        let project = Project::new();
        let commit = project.app();
        (project, commit)
    }

    /// Makes the project a git checkout of a small app, with one Heroku server `prod`
    /// (manual) set up for hello-app. Returns the commit.
    pub fn app(&self) -> String {
        let dir = self.dir();
        std::fs::write(dir.join("Procfile"), "web: python app.py\nrelease: python migrate.py\n").unwrap();
        let commit = commit_app(dir);
        run(&mut self.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
        commit
    }

    /// A project with Ada's account whose hello-app has one release (v1) live, and whose
    /// fake Heroku also serves one-off dynos' rendezvous over TLS, with a certificate of a
    /// test CA that `pier` trusts through `SSL_CERT_FILE` (the files are in the project's
    /// `.config/`, which the app's checkout ignores).
    pub fn with_rendezvous() -> Project {
        let home = tempdir();
        let certs = home.path().join(".config/certs");
        std::fs::create_dir_all(&certs).unwrap();
        postgres::certificates(&certs);
        let mut account = ada();
        account.releases = vec![fake_heroku::SeedRelease { app: "hello-app".into(), ..Default::default() }];
        let tls = fake_heroku::TlsFiles { cert: certs.join("server.crt"), key: certs.join("server.key") };
        let options = fake_heroku::ServeOptions { tls: Some(tls), ..Default::default() };
        let fake = fake_heroku::FakeHeroku::start_with(seed(vec![account]), options).expect("start fake Heroku");
        let ca = certs.join("ca.crt").to_string_lossy().into_owned();
        let project = Project { home, fake, env: vec![("SSL_CERT_FILE".into(), ca)] };
        run(project.pier().arg("init"), 0);
        project
    }

    /// Sets the deploy commands of `prod`.
    pub fn commands(&self, commands: &[&str]) {
        let mut cmd = self.pier();
        cmd.args(["server", "edit", "prod", "--clear-commands"]);
        for c in commands {
            cmd.args(["--add-command", c]);
        }
        run(&mut cmd, 0);
    }

    /// A `pier` process started in the background (for concurrency and signal tests).
    pub fn spawn(&self, args: &[&str]) -> std::process::Child {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pier"));
        cmd.args(args)
            .current_dir(self.dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir())
            .env("XDG_CONFIG_HOME", self.dir().join(".config"))
            .env("PIER_CACHE_DIR", cache_dir())
            .env("HEROKU_HOST", self.fake.url())
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("spawn pier")
    }
}

/// Makes `dir` a git checkout of a one-file app (the project's own files ignored but for
/// `pier.toml`) and returns its commit.
pub fn commit_app(dir: &std::path::Path) -> String {
    std::fs::write(dir.join("app.py"), "print('hello')\n").unwrap();
    std::fs::write(dir.join(".gitignore"), ".config/\n").unwrap();
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "app"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// `dir` as a workspace: everything in it committed (the directory made a repository if
/// it is not one), and that commit.
pub fn workspace(dir: &std::path::Path) -> pier::caps::workspace::Workspace {
    let dir = dir.canonicalize().expect("the checkout exists");
    let (checkout, commit) = pier::git::Checkout::create(&dir, "checkout").expect("commit the checkout");
    pier::caps::workspace::Workspace::new(checkout, commit)
}

/// Names of the files in a gzipped tarball, sorted.
pub fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    names.sort();
    names
}

/// A `PATH` that holds only `programs`: a directory in `dir` of links to where they are on
/// the test's own `PATH`. A test that needs a program to be missing (the Heroku CLI,
/// say) passes whatever the machine has installed.
pub fn only_programs(dir: &std::path::Path, programs: &[&str]) -> std::ffi::OsString {
    let bin = dir.join("only-programs");
    std::fs::create_dir_all(&bin).expect("create the PATH directory");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for program in programs {
        let found = std::env::split_paths(&path)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
            .unwrap_or_else(|| panic!("`{program}` is not on PATH"));
        let link = bin.join(program);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(&found, link).expect("link the program");
        }
    }
    bin.into_os_string()
}

/// A named pipe in `dir`: deploy commands block on it until the test writes, so tests
/// synchronise with a running deploy without sleeping.
pub fn fifo(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path
}
