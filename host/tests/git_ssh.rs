//! The built-in git-ssh method end to end, through the real `pier` binary against a real
//! `sshd` on 127.0.0.1 serving a bare repository. This is where "the SSH private key is
//! stored encrypted and used by deploys" is proven: setup generates a key and shows only
//! its public half, the private half is sealed in `pier.secrets`, a deploy pushes with it,
//! and a server that does not accept it fails the deploy with a hint.

mod common;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{git, run, tempdir};

const SSHD: &str = "/usr/sbin/sshd";

/// Runs a program, panicking on failure; returns its standard output, trimmed.
fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A real `sshd` on a free port of 127.0.0.1, for the current user, trusting the keys in
/// [`Sshd::authorized_keys`]. Killed when dropped.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

impl Sshd {
    fn start() -> Sshd {
        Sshd::launch(tempdir(), None)
    }

    /// The same server (directory, port, authorized keys) restarted with a new host key,
    /// as after a reinstall, or as a machine in the middle would present itself.
    fn with_new_host_key(mut self) -> Sshd {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = std::mem::replace(&mut self.dir, tempdir());
        let port = self.port;
        drop(self);
        Sshd::launch(dir, Some(port))
    }

    fn launch(dir: tempfile::TempDir, port: Option<u16>) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "this test runs a real SSH server, and {SSHD} is missing: apt-get install openssh-server"
        );
        if sh("id", &["-u"]) == "0" {
            // As root, sshd refuses to start without its privilege separation directory,
            // which only the openssh-server service creates at boot.
            std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        }
        let host_key = dir.path().join("host_key");
        let _ = std::fs::remove_file(&host_key);
        let _ = std::fs::remove_file(host_key.with_extension("pub"));
        sh("ssh-keygen", &["-t", "ed25519", "-N", "", "-f", &host_key.display().to_string(), "-q"]);
        let port =
            port.unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let config = dir.path().join("sshd_config");
        if !dir.path().join("authorized_keys").exists() {
            std::fs::write(dir.path().join("authorized_keys"), "").unwrap();
        }
        std::fs::write(
            &config,
            format!(
                "ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n\
                 AuthorizedKeysFile {keys}\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nPidFile {pid}\nLogLevel VERBOSE\n",
                host_key = host_key.display(),
                keys = dir.path().join("authorized_keys").display(),
                pid = dir.path().join("sshd.pid").display(),
            ),
        )
        .unwrap();
        let mut child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sshd");
        // Ready when it says so; its log is kept (and drained, so it never blocks) after.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("Server listening on");
                    log.lock().unwrap().push(line);
                    if ready {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("sshd ended before listening:\n{}", log.lock().unwrap().join("\n"));
                }
            }
        }
        let drain = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| drain.lock().unwrap().push(l)));
        Sshd { child, port, dir, log }
    }

    fn authorized_keys(&self, keys: &str) {
        std::fs::write(self.dir.path().join("authorized_keys"), format!("{keys}\n")).unwrap();
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The SHA-256 fingerprint of its host key, as `ssh-keygen -l` shows it.
    fn fingerprint(&self) -> String {
        let public = self.dir.path().join("host_key.pub").display().to_string();
        sh("ssh-keygen", &["-l", "-f", &public]).split_whitespace().nth(1).unwrap().to_string()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The two fields of an OpenSSH public key line that identify it (type and key).
fn key_id(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn git_ssh_pushes_with_the_stored_key_and_a_refused_key_fails_the_deploy() {
    let sshd = Sshd::start();
    let (scratch, repo, remote) = bare_repo(&sshd);

    // A project that is a git checkout with one commit.
    let home = tempdir();
    let dir = home.path();
    // pier's own temporary files (the push's key file among them) go here, to be checked.
    let tmp = tempdir();
    // The user's home is not the checkout: programs a plugin runs may read the checkout,
    // never the home (where the master key is).
    let user = tempdir();
    let pier = |dir: &Path| {
        let mut cmd = common::pier(dir);
        cmd.env("TMPDIR", tmp.path()).env("HOME", user.path()).env("XDG_CONFIG_HOME", user.path().join(".config"));
        cmd
    };
    run(pier(dir).arg("init"), 0);
    let commit = common::commit_app(dir);

    // Setup generates a key and shows its public half, and only that.
    let set_remote = format!("remote={remote}");
    let args = ["server", "add", "--method", "git-ssh", "--name", "Box", "--strategy", "manual"];
    let (add_out, add_err) = run(pier(dir).args(args).args(["--set", &set_remote, "--json"]), 0);
    let added: serde_json::Value = serde_json::from_str(&add_out).unwrap();
    assert_eq!(added["server"]["alias"], "box");
    assert_eq!(added["server"]["method"], "git-ssh");
    assert_eq!(added["server"]["settings"]["remote"], remote.as_str());
    assert_eq!(added["server"]["settings"]["branch"], "main");
    assert_eq!(added["server"]["settings"]["force"], "false");
    assert_eq!(added["server"]["secrets"], serde_json::json!(["ssh_key"]));
    let note = added["notes"][0].as_str().unwrap_or_else(|| panic!("no note: {add_out}"));
    let public_key = &note[note.find("ssh-ed25519 ").unwrap_or_else(|| panic!("no public key in: {note}"))..];
    assert!(note.contains("authorized keys"), "{note}");
    assert!(public_key.ends_with(&format!("pier deploy key for {remote}")), "{public_key}");
    // Setup connected once and pinned the host key the server showed.
    let pinned = &added["pinned_host_keys"];
    assert_eq!(pinned[0]["host"], format!("127.0.0.1:{}", sshd.port), "{add_out}");
    assert_eq!(pinned[0]["fingerprint"], sshd.fingerprint().as_str(), "{add_out}");
    assert!(add_err.contains(&format!("pinned the SSH host key of 127.0.0.1:{}", sshd.port)), "{add_err}");
    sshd.authorized_keys(public_key);

    // A deploy command copies the key file the deploy hands out, so the test can prove
    // it is the generated key and that its private half is nowhere else.
    let captured = scratch.path().join("captured_key");
    let copy = format!("cp \"$PIER_SSH_KEY\" '{}'", captured.display());
    run(pier(dir).args(["server", "edit", "box", "--add-command", &copy]), 0);

    let (out, err) = run(pier(dir).args(["deploy", "box"]), 0);
    assert!(out.starts_with("box: succeeded in "), "{out}\n{err}");
    assert!(out.contains(&format!("pushed {} to {remote} main", &commit[..7])), "{out}");
    assert!(err.contains(&format!("Pushing {} to {remote} main", &commit[..7])), "{err}");
    let pushed = sh("git", &["--git-dir", &repo.display().to_string(), "rev-parse", "refs/heads/main"]);
    assert_eq!(pushed, commit, "the commit arrived in the bare repository");

    let private_key = std::fs::read_to_string(&captured).unwrap();
    assert!(private_key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"), "a private key was used");
    let derived = sh("ssh-keygen", &["-y", "-f", &captured.display().to_string()]);
    assert_eq!(key_id(&derived), key_id(public_key), "the deploy used the key setup generated");

    // The server stops trusting the key: the next deploy fails and says what to do.
    let other = scratch.path().join("other_key");
    sh("ssh-keygen", &["-t", "ed25519", "-N", "", "-f", &other.display().to_string(), "-q"]);
    sshd.authorized_keys(std::fs::read_to_string(other.with_extension("pub")).unwrap().trim());
    std::fs::write(dir.join("app.py"), "print('hello again')\n").unwrap();
    git(dir, &["commit", "-q", "-am", "again"]);
    let (out2, err2) = run(pier(dir).args(["deploy", "box"]), 1);
    assert!(out2.starts_with("box: failed"), "{out2}");
    assert!(err2.contains(&format!("git push to {remote} exited with 128")), "{err2}\nsshd:\n{}", sshd.log());
    assert!(err2.contains("the server refused this server's SSH key (Permission denied (publickey))"), "{err2}");
    assert!(err2.contains("add this public key to the authorized keys of the git server's user"), "{err2}");
    assert!(err2.contains(key_id(public_key).as_str()), "the hint shows the public key: {err2}");
    let still = sh("git", &["--git-dir", &repo.display().to_string(), "rev-parse", "refs/heads/main"]);
    assert_eq!(still, commit, "nothing was pushed with a refused key");

    // The private key is sealed in pier.secrets and appears nowhere in clear.
    let body: Vec<&str> = private_key.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(!body.is_empty());
    let timeline = String::from_utf8_lossy(&std::fs::read(dir.join(".pier/timeline.sqlite")).unwrap()).into_owned();
    let files = [("pier.toml", read(dir, "pier.toml")), ("pier.secrets", read(dir, "pier.secrets"))];
    let outputs = [("server add stdout", add_out), ("server add stderr", add_err), ("deploy stdout", out)];
    let outputs = outputs.into_iter().chain([("deploy stderr", err), ("failed deploy stdout", out2)]);
    let outputs = outputs.chain([("failed deploy stderr", err2), ("timeline", timeline)]);
    for (what, text) in outputs.chain(files) {
        assert!(!text.contains("PRIVATE KEY"), "{what} holds a private key");
        for line in &body {
            assert!(!text.contains(line), "{what} holds a line of the private key");
        }
    }
    assert!(read(dir, "pier.secrets").contains("ssh_key = \""), "the key is stored (sealed) with the server");

    // Key files lived only as long as each deploy and push.
    let run_dir = dir.join(".pier/run");
    let left: Vec<PathBuf> = match std::fs::read_dir(&run_dir) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    };
    assert!(left.is_empty(), ".pier/run/ must be empty after the deploys: {left:?}");
    let left: Vec<PathBuf> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "temporary files (the push's key file) must be gone: {left:?}");
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
}

/// A server added with `remote`, in a fresh git checkout: the project directory, the
/// pier command builder's environment, and the public key to authorize.
struct SshProject {
    home: tempfile::TempDir,
    user: tempfile::TempDir,
}

impl SshProject {
    fn new() -> SshProject {
        let project = SshProject { home: tempdir(), user: tempdir() };
        run(project.pier().arg("init"), 0);
        common::commit_app(project.dir());
        project
    }

    fn dir(&self) -> &Path {
        self.home.path()
    }

    fn pier(&self) -> assert_cmd::Command {
        let mut cmd = common::pier(self.dir());
        cmd.env("HOME", self.user.path()).env("XDG_CONFIG_HOME", self.user.path().join(".config"));
        cmd
    }

    /// Adds server `box` pushing to `remote`; returns `server add --json`'s output.
    fn add(&self, remote: &str) -> serde_json::Value {
        let set_remote = format!("remote={remote}");
        let args = ["server", "add", "--method", "git-ssh", "--name", "Box", "--strategy", "manual", "--json"];
        let (out, _) = run(self.pier().args(args).args(["--set", &set_remote]), 0);
        serde_json::from_str(&out).unwrap()
    }

    fn commit(&self, text: &str) -> String {
        std::fs::write(self.dir().join("app.py"), format!("print('{text}')\n")).unwrap();
        git(self.dir(), &["commit", "-q", "-am", text]);
        git(self.dir(), &["rev-parse", "HEAD"])
    }
}

fn public_key_of(added: &serde_json::Value) -> String {
    let note = added["notes"][0].as_str().unwrap();
    note[note.find("ssh-ed25519 ").unwrap()..].to_string()
}

/// A bare repository in a fresh directory, and its SSH URL on `sshd` for this user.
fn bare_repo(sshd: &Sshd) -> (tempfile::TempDir, PathBuf, String) {
    let scratch = tempdir();
    let repo = scratch.path().join("repo.git");
    sh("git", &["init", "--bare", "-q", &repo.display().to_string()]);
    let user = sh("id", &["-un"]);
    let remote = format!("ssh://{user}@127.0.0.1:{}{}", sshd.port, repo.display());
    (scratch, repo, remote)
}

fn head_of(repo: &Path) -> String {
    sh("git", &["--git-dir", &repo.display().to_string(), "rev-parse", "refs/heads/main"])
}

#[test]
fn a_replaced_host_key_stops_deploys_until_the_user_pins_it_again() {
    let sshd = Sshd::start();
    let (_scratch, repo, remote) = bare_repo(&sshd);
    let project = SshProject::new();
    let added = project.add(&remote);
    sshd.authorized_keys(&public_key_of(&added));
    let old_fingerprint = sshd.fingerprint();
    // A deploy command reaching the same server over SSH is held to the same pin.
    let ls = format!("git ls-remote '{remote}'");
    run(project.pier().args(["server", "edit", "box", "--add-command", &ls]), 0);

    // Benign twin: with the pinned key, deploys (and their SSH commands) go through.
    let first = project.commit("one");
    let (out, err) = run(project.pier().args(["deploy", "box"]), 0);
    assert!(out.starts_with("box: succeeded"), "{out}\n{err}");
    assert_eq!(head_of(&repo), first);

    // The server comes back with another host key: nothing is offered to it.
    let sshd = sshd.with_new_host_key();
    let new_fingerprint = sshd.fingerprint();
    assert_ne!(new_fingerprint, old_fingerprint);
    let second = project.commit("two");
    let (out, err) = run(project.pier().args(["deploy", "box"]), 4);
    assert!(out.starts_with("box: failed"), "{out}\n{err}");
    let host = format!("127.0.0.1:{}", sshd.port);
    assert!(err.contains(&format!("the SSH host key of {host} is not the one pinned for server `box`")), "{err}");
    assert!(err.contains(&new_fingerprint), "the message shows the key now offered: {err}");
    assert!(err.contains("`pier server edit box --trust-host-key`"), "{err}");
    assert_eq!(head_of(&repo), first, "nothing was pushed to a host with another key");
    assert!(!sshd.log().contains("Accepted publickey"), "the key was never offered:\n{}", sshd.log());
    let (timeline, _) = run(project.pier().args(["timeline", "--json"]), 0);
    let timeline: serde_json::Value = serde_json::from_str(&timeline).unwrap();
    assert_eq!(timeline[0]["status"], "failed", "{timeline}");
    assert_eq!(timeline[0]["exit_code"], 4, "{timeline}");

    // Re-pinning shows the new fingerprint and the one it replaces; then deploys work.
    let (_, err) = run(project.pier().args(["server", "edit", "box", "--trust-host-key"]), 0);
    assert!(err.contains(&format!("{host} ssh-ed25519 {new_fingerprint}")), "{err}");
    assert!(err.contains(&format!("replaces {old_fingerprint}")), "{err}");
    let (show, _) = run(project.pier().args(["server", "show", "box"]), 0);
    assert!(show.contains(&format!("host key:  {host} ssh-ed25519 {new_fingerprint}")), "{show}");
    assert!(!show.contains(&old_fingerprint), "{show}");
    let (out, err) = run(project.pier().args(["deploy", "box"]), 0);
    assert!(out.starts_with("box: succeeded"), "{out}\n{err}");
    assert_eq!(head_of(&repo), second);
}

#[test]
fn a_server_without_pins_is_refused_until_a_host_is_pinned_and_unreachable_setups_fail() {
    let sshd = Sshd::start();
    let (_scratch, _repo, remote) = bare_repo(&sshd);
    let project = SshProject::new();

    // Nothing listens on this port: setup cannot see a host key, and says so.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let user = sh("id", &["-un"]);
    let nowhere = format!("remote=ssh://{user}@127.0.0.1:{closed}/repo.git");
    let args = ["server", "add", "--method", "git-ssh", "--name", "Box", "--strategy", "manual"];
    let (_, err) = run(project.pier().args(args).args(["--set", &nowhere]), 2);
    assert!(err.contains("could not reach the SSH server of"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!std::fs::read_to_string(project.dir().join("pier.toml")).unwrap().contains("[servers.box]"));

    // A server whose pins were removed (as one set up by an older Pier) is refused.
    let added = project.add(&remote);
    sshd.authorized_keys(&public_key_of(&added));
    let toml = project.dir().join("pier.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let unpinned: String = text.lines().filter(|l| !l.contains("host_keys")).map(|l| format!("{l}\n")).collect();
    assert_ne!(unpinned, text, "setup wrote host_keys into pier.toml");
    std::fs::write(&toml, unpinned).unwrap();
    let host = format!("127.0.0.1:{}", sshd.port);
    let (_, err) = run(project.pier().args(["deploy", "box"]), 4);
    assert!(err.contains(&format!("no SSH host key is pinned for {host} on server `box`")), "{err}");
    assert!(err.contains(&format!("`pier server edit box --trust-host-key={host}`")), "{err}");
    assert!(!sshd.log().contains("Accepted publickey"), "{}", sshd.log());
    let (_, err) = run(project.pier().args(["server", "edit", "box", "--trust-host-key"]), 2);
    assert!(err.contains("has no pinned SSH host yet: name the host with --trust-host-key=HOST[:PORT]"), "{err}");
    let (_, err) = run(project.pier().args(["server", "edit", "box", "--trust-host-key=-oProxyCommand=x"]), 2);
    assert!(err.contains("is not a host name or address"), "{err}");

    let flag = format!("--trust-host-key={host}");
    let (_, err) = run(project.pier().args(["server", "edit", "box", &flag]), 0);
    assert!(err.contains(&format!("{host} ssh-ed25519 {} (newly pinned)", sshd.fingerprint())), "{err}");
    let (out, err) = run(project.pier().args(["deploy", "box"]), 0);
    assert!(out.starts_with("box: succeeded"), "{out}\n{err}");
}
