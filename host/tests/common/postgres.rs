//! A real PostgreSQL server for the tests: a fresh cluster in a temporary directory,
//! listening on a free port of 127.0.0.1 (and a private socket directory), trusting local
//! connections, stopped and removed when dropped. As root, the server runs as the
//! `postgres` user (it refuses to run as root).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

/// Where Debian puts the server programs; `PATH` is tried first.
const BIN_DIRS: &[&str] = &["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"];

/// The superuser the tests connect as.
pub const USER: &str = "pier";

pub struct Postgres {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
    log: Arc<Mutex<Vec<String>>>,
}

fn program(name: &str) -> PathBuf {
    if let Some(dir) = BIN_DIRS.iter().map(Path::new).find(|d| d.join(name).exists()) {
        return dir.join(name);
    }
    let on_path =
        std::env::var_os("PATH").iter().flat_map(std::env::split_paths).map(|d| d.join(name)).find(|p| p.exists());
    on_path.unwrap_or_else(|| {
        panic!("this test runs a real PostgreSQL server, and `{name}` is missing: apt-get install postgresql")
    })
}

/// Makes `path` the server's own (its user's, when this process is root), for files the
/// server insists on owning, such as its TLS key.
pub fn give_to_server(path: &Path) {
    if let Some((uid, gid)) = unprivileged() {
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
            .expect("chown to the server's user");
    }
}

/// The user and group to run the server as, when this process is root.
fn unprivileged() -> Option<(u32, u32)> {
    if !nix::unistd::Uid::effective().is_root() {
        return None;
    }
    let user = nix::unistd::User::from_name("postgres")
        .ok()
        .flatten()
        .expect("running as root, and there is no `postgres` user to run PostgreSQL as");
    Some((user.uid.as_raw(), user.gid.as_raw()))
}

fn as_server_user(command: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = unprivileged() {
        use std::os::unix::process::CommandExt as _;
        command.uid(uid).gid(gid);
    }
    command
}

impl Postgres {
    /// Starts a fresh cluster; returns once it accepts connections.
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// The same, with more server settings (`name=value`, as `postgres -c` takes them).
    pub fn start_with(settings: &[&str]) -> Postgres {
        let dir = tempfile::Builder::new().prefix("pier-pg-").tempdir().expect("temporary directory");
        let data = dir.path().join("data");
        let sockets = dir.path().join("sockets");
        std::fs::create_dir(&sockets).unwrap();
        if let Some((uid, gid)) = unprivileged() {
            let owner = (Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)));
            nix::unistd::chown(dir.path(), owner.0, owner.1).unwrap();
            nix::unistd::chown(&sockets, owner.0, owner.1).unwrap();
        }
        let init = as_server_user(
            Command::new(program("initdb"))
                .args(["-A", "trust", "-U", USER, "--no-sync", "-E", "UTF8", "-D"])
                .arg(&data),
        )
        .output()
        .expect("run initdb");
        assert!(init.status.success(), "initdb failed:\n{}", String::from_utf8_lossy(&init.stderr));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = as_server_user(
            Command::new(program("postgres"))
                .arg("-D")
                .arg(&data)
                .args(["-p", &port.to_string(), "-h", "127.0.0.1", "-k"])
                .arg(&sockets)
                .args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "log_min_messages=warning", "-c", "max_connections=100"])
                .args(settings.iter().flat_map(|s| ["-c", s]))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .expect("start postgres");
        // Ready when it says so; its log is kept (and drained, so it never blocks) after.
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let log = Arc::new(Mutex::new(Vec::new()));
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    let ready = line.contains("database system is ready to accept connections");
                    log.lock().unwrap().push(line);
                    if ready {
                        break;
                    }
                }
                _ => {
                    let _ = child.kill();
                    panic!("postgres ended before it was ready:\n{}", log.lock().unwrap().join("\n"));
                }
            }
        }
        let drain = log.clone();
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|l| drain.lock().unwrap().push(l)));
        Postgres { child, port, dir, log }
    }

    /// A `postgres://` URL of database `db` (`postgres` exists from the start), TLS off.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}?sslmode=disable", self.port)
    }

    /// Runs SQL with `psql` as the superuser in database `db`; returns its output.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(program("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", USER, "-d", db, "-c", sql])
            .env_remove("PGPASSWORD")
            .output()
            .expect("run psql");
        assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A fresh database for one test, so tests sharing a server never see each other.
    pub fn database(&self, name: &str) -> String {
        self.sql("postgres", &format!("CREATE DATABASE \"{name}\""));
        self.url(name)
    }

    /// What the server logged.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Where the cluster lives.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: it ends sessions and exits.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.child.wait();
    }
}

/// Runs `openssl ARGS` in `dir`.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA (`ca.crt`) and a server certificate (`server.crt`, `server.key`) for 127.0.0.1
/// and localhost, signed by it, made in `dir` with the `openssl` CLI.
pub fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &ec,
            &["-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=Pier test CA"],
            &["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[&["req"][..], &ec, &["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]].concat(),
    );
    std::fs::write(
        dir.join("server.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n\
         subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}
