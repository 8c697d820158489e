//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// Where tests cache compiled plugins: shared by every test so each plugin compiles once.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("compiled")
}

/// The `pier` binary with a clean environment: no inherited `PIER_*` settings, the test
/// cache, no colour, and `HOME` / config pointing into `home`.
pub fn pier(home: &std::path::Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_pier"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PIER_") || key == "HEROKU_HOST" || key == "HEROKU_API_KEY" {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PIER_CACHE_DIR", cache_dir())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .current_dir(home);
    cmd
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
        let project = Project { home: tempdir(), fake };
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
        cmd
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
        let dir = project.dir();
        std::fs::write(dir.join("Procfile"), "web: python app.py\nrelease: python migrate.py\n").unwrap();
        let commit = commit_app(dir);
        run(&mut project.add("Prod", &["--strategy", "manual", "--set", "app=hello-app"]), 0);
        (project, commit)
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

/// Names of the files in a gzipped tarball, sorted.
pub fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    names.sort();
    names
}

/// A named pipe in `dir`: deploy commands block on it until the test writes, so tests
/// synchronise with a running deploy without sleeping.
pub fn fifo(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    path
}
