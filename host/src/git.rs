//! The git checkout a deploy ships from, read with the real `git` binary.
//!
//! Every `git` runs in a cleared environment holding only fixed values (and `HOME`, so
//! the user's own configuration, such as `safe.directory`, applies as it does to their
//! own git), with replace objects, lazy fetches of missing objects, optional locks and
//! the filesystem monitor turned off, and with `--end-of-options` or `--` before anything
//! that came from outside. What it reads is the repository's objects, never the working
//! tree, except for [`Checkout::changes`], which asks `git status`.

use std::ffi::OsStr;
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

/// Why a checkout cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`git` is not on PATH: Pier reads the commit it deploys with git")]
    NoGit,
    #[error(
        "{0} is not in a git repository: Pier deploys commits, so the checkout must be one (git init, then commit \
         what to deploy)"
    )]
    NotARepository(PathBuf),
    #[error("`{rev}` is not a commit of the repository at {}{}", top.display(), kind.as_deref().map(|k| format!(" (it names a {k})")).unwrap_or_default())]
    NotACommit { rev: String, top: PathBuf, kind: Option<String> },
    #[error("the repository at {} has no commit yet: commit what to deploy", .0.display())]
    NoCommit(PathBuf),
    #[error("commit {commit} has no directory `{prefix}`, where the checkout is in the repository")]
    NotInCommit { commit: String, prefix: String },
    #[error("object {0} is missing from the repository (a partial or shallow clone?)")]
    Missing(String),
    #[error("git {command}: {message}")]
    Failed { command: String, message: String },
    #[error("running git: {0}")]
    Io(#[from] std::io::Error),
}

/// What an entry of a commit's tree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (`executable`: mode 100755).
    File { executable: bool },
    /// A symbolic link; its blob holds the target.
    Symlink,
    /// A submodule: a commit of another repository (a gitlink), never read.
    Submodule,
}

/// One entry of a commit's tree, below the checkout's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path, relative to the checkout's directory, as git stores it (bytes, `/`).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// The object id, hex.
    pub oid: String,
    /// The blob's size in bytes (0 for a submodule).
    pub size: u64,
}

impl Entry {
    /// The path as text, for messages.
    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// A directory inside a git repository's working tree: the checkout being deployed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The `git` binary.
    git: PathBuf,
    /// The checkout's directory.
    dir: PathBuf,
    /// The top of the working tree.
    top: PathBuf,
    /// Where `dir` is below `top`: empty, or a path ending in `/`.
    prefix: String,
}

/// A name is plain hex of a full object id: 40 (SHA-1) or 64 (SHA-256) digits.
pub fn is_full_oid(name: &str) -> bool {
    (name.len() == 40 || name.len() == 64) && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The fixed environment of every `git` Pier runs.
fn base_command(git: &Path) -> Command {
    let mut cmd = Command::new(git);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LC_ALL", "C")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ADVICE", "0")
        .env("GIT_PAGER", "cat")
        .args(["--no-pager", "-c", "core.fsmonitor=false"])
        .stdin(Stdio::null());
    if let Some(home) = std::env::var_os("HOME") {
        cmd.env("HOME", home);
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME") {
        cmd.env("XDG_CONFIG_HOME", config);
    }
    cmd
}

/// Runs `cmd`; its standard output if it exits 0, else git's message.
fn output(mut cmd: Command) -> Result<Result<Vec<u8>, String>, GitError> {
    let out = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).output()?;
    if out.status.success() {
        return Ok(Ok(out.stdout));
    }
    let message = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Ok(Err(if message.is_empty() { format!("exited with {}", out.status) } else { message }))
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim_end_matches(['\n', '\r']).to_string()
}

impl Checkout {
    /// The checkout at `dir` (an existing directory), with the `git` found on `PATH`.
    pub fn open(dir: &Path) -> Result<Checkout, GitError> {
        let git = crate::caps::exec::find_program("git", std::env::var_os("PATH").as_ref()).ok_or(GitError::NoGit)?;
        Self::open_with(&git, dir)
    }

    /// The checkout at `dir`, read with the `git` binary at `git`.
    pub fn open_with(git: &Path, dir: &Path) -> Result<Checkout, GitError> {
        let mut cmd = base_command(git);
        cmd.arg("-C").arg(dir).args(["rev-parse", "--show-toplevel", "--show-prefix"]);
        let out = match output(cmd)? {
            Ok(out) => text(out),
            Err(message) if message.contains("not a git repository") => {
                return Err(GitError::NotARepository(dir.to_path_buf()));
            }
            Err(message) => return Err(GitError::Failed { command: "rev-parse".into(), message }),
        };
        let mut lines = out.lines();
        let top = lines.next().filter(|t| !t.is_empty()).ok_or_else(|| GitError::NotARepository(dir.to_path_buf()))?;
        let prefix = lines.next().unwrap_or_default().to_string();
        Ok(Checkout { git: git.to_path_buf(), dir: dir.to_path_buf(), top: PathBuf::from(top), prefix })
    }

    /// Makes `dir` a repository (if it is not one) and commits everything in it; returns
    /// the checkout and the commit. Hooks and signing are off; the author is Pier.
    pub fn create(dir: &Path, message: &str) -> Result<(Checkout, String), GitError> {
        let git = crate::caps::exec::find_program("git", std::env::var_os("PATH").as_ref()).ok_or(GitError::NoGit)?;
        let steps: [&[&str]; 3] = [
            &["init", "-q"],
            &["add", "-A", "-f"],
            &[
                "-c",
                "user.name=Pier",
                "-c",
                "user.email=pier@localhost",
                "-c",
                "commit.gpgsign=false",
                "-c",
                "core.hooksPath=/dev/null",
                "commit",
                "-q",
                "--no-verify",
                "--allow-empty",
                "-m",
                message,
            ],
        ];
        for args in steps {
            let mut cmd = base_command(&git);
            cmd.arg("-C").arg(dir).args(args);
            output(cmd)?.map_err(|message| GitError::Failed { command: args[0].to_string(), message })?;
        }
        let checkout = Checkout::open_with(&git, dir)?;
        let commit = checkout.head()?;
        Ok((checkout, commit))
    }

    /// The checkout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The top of the repository's working tree.
    pub fn top(&self) -> &Path {
        &self.top
    }

    /// `git -C TOP ARGS...`.
    fn git(&self) -> Command {
        let mut cmd = base_command(&self.git);
        cmd.arg("-C").arg(&self.top);
        cmd
    }

    fn run<I, S>(&self, args: I) -> Result<Result<String, String>, GitError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.git();
        cmd.args(args);
        Ok(output(cmd)?.map(text))
    }

    /// The full SHA of the commit `rev` names (a SHA, abbreviated or not, a branch, a tag).
    pub fn resolve(&self, rev: &str) -> Result<String, GitError> {
        let not_a_commit =
            |kind: Option<String>| GitError::NotACommit { rev: rev.to_string(), top: self.top.clone(), kind };
        // Never an option, whatever git makes of `--end-of-options`.
        if rev.is_empty() || rev.starts_with('-') || rev.contains(|c: char| c.is_control()) {
            return Err(not_a_commit(None));
        }
        let peeled = format!("{rev}^{{commit}}");
        match self.run(["rev-parse", "--verify", "--quiet", "--end-of-options", &peeled])? {
            Ok(sha) if is_full_oid(&sha) => Ok(sha.to_ascii_lowercase()),
            Ok(other) => {
                Err(GitError::Failed { command: "rev-parse".into(), message: format!("unexpected `{other}`") })
            }
            Err(_) => {
                let kind = self.run(["cat-file", "-t", "--end-of-options", rev])?.ok().filter(|k| !k.is_empty());
                Err(not_a_commit(kind))
            }
        }
    }

    /// The full SHA of `HEAD`.
    pub fn head(&self) -> Result<String, GitError> {
        match self.resolve("HEAD") {
            Err(GitError::NotACommit { .. }) => Err(GitError::NoCommit(self.top.clone())),
            other => other,
        }
    }

    /// git's `user.name` for this checkout (its repository's, else the user's), if set.
    pub fn user_name(&self) -> Option<String> {
        let name = self.run(["config", "--get", "user.name"]).ok()?.ok()?;
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_string())
    }

    /// The branch checked out, if one is.
    pub fn branch(&self) -> Option<String> {
        let name = self.run(["symbolic-ref", "--quiet", "--short", "HEAD"]).ok()?.ok()?;
        (!name.is_empty()).then_some(name)
    }

    /// Paths below the checkout's directory that differ from `HEAD`: modified, added,
    /// deleted or untracked (not ignored), as `git status` lists them (submodules left out).
    pub fn changes(&self) -> Result<Vec<String>, GitError> {
        let mut cmd = base_command(&self.git);
        cmd.arg("-C").arg(&self.dir).args([
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=normal",
            "--ignore-submodules=all",
            "--no-renames",
            "--",
            ".",
        ]);
        let out = output(cmd)?.map_err(|message| GitError::Failed { command: "status".into(), message })?;
        Ok(out
            .split(|b| *b == 0)
            .filter(|record| record.len() > 3)
            .map(|record| String::from_utf8_lossy(&record[3..]).into_owned())
            .collect())
    }

    /// Every file, symlink and submodule of `commit`'s tree below the checkout's
    /// directory, with sizes, sorted by path.
    pub fn entries(&self, commit: &str) -> Result<Vec<Entry>, GitError> {
        if !is_full_oid(commit) {
            return Err(GitError::NotACommit { rev: commit.to_string(), top: self.top.clone(), kind: None });
        }
        let dir = self.prefix.trim_end_matches('/');
        let tree =
            match self.run(["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{commit}:{dir}")])? {
                Ok(tree) if is_full_oid(&tree) => tree,
                _ => return Err(GitError::NotInCommit { commit: commit.to_string(), prefix: dir.to_string() }),
            };
        let mut cmd = self.git();
        cmd.args(["ls-tree", "-r", "-z", "-l", "--end-of-options", &tree]);
        let out = output(cmd)?.map_err(|message| GitError::Failed { command: "ls-tree".into(), message })?;
        let mut entries = Vec::new();
        for record in out.split(|b| *b == 0).filter(|r| !r.is_empty()) {
            entries.push(parse_entry(record).ok_or_else(|| GitError::Failed {
                command: "ls-tree".into(),
                message: format!("unexpected line `{}`", String::from_utf8_lossy(record)),
            })?);
        }
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(entries)
    }

    /// A reader of blobs (one `git cat-file --batch` for all of them).
    pub fn blobs(&self) -> Result<Blobs, GitError> {
        let mut cmd = self.git();
        cmd.args(["cat-file", "--batch"]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
        let mut child = cmd.spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().map(BufReader::new);
        match (stdin, stdout) {
            (Some(stdin), Some(stdout)) => Ok(Blobs { child, stdin: Some(stdin), stdout }),
            _ => Err(GitError::Io(std::io::Error::other("cat-file has no pipes"))),
        }
    }
}

/// `MODE SP TYPE SP OID SP+ SIZE TAB PATH`, as `git ls-tree -l -z` writes.
fn parse_entry(record: &[u8]) -> Option<Entry> {
    let tab = record.iter().position(|b| *b == b'\t')?;
    let (head, path) = (std::str::from_utf8(&record[..tab]).ok()?, &record[tab + 1..]);
    let mut fields = head.split_ascii_whitespace();
    let (mode, kind, oid, size) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    let kind = match (mode, kind) {
        ("100644" | "100664", "blob") => EntryKind::File { executable: false },
        ("100755", "blob") => EntryKind::File { executable: true },
        ("120000", "blob") => EntryKind::Symlink,
        ("160000", "commit") => EntryKind::Submodule,
        _ => return None,
    };
    let size = if kind == EntryKind::Submodule { 0 } else { size.parse().ok()? };
    (is_full_oid(oid) && !path.is_empty()).then(|| Entry { path: path.to_vec(), kind, oid: oid.to_string(), size })
}

/// Reads blobs by id from one `git cat-file --batch`, one at a time.
pub struct Blobs {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Blobs {
    /// Asks for the blob `oid` of `size` bytes; the returned reader yields exactly its
    /// bytes and must be read to its end before the next blob is asked for.
    pub fn open(&mut self, oid: &str, size: u64) -> Result<BlobReader<'_>, GitError> {
        let stdin = self.stdin.as_mut().ok_or_else(|| GitError::Io(std::io::Error::other("cat-file closed")))?;
        writeln!(stdin, "{oid}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let line = line.trim_end();
        if line.ends_with(" missing") || line.is_empty() {
            return Err(GitError::Missing(oid.to_string()));
        }
        let mut fields = line.split(' ');
        let (got, kind, len) = (fields.next(), fields.next(), fields.next().and_then(|s| s.parse::<u64>().ok()));
        if got != Some(oid) || kind != Some("blob") || len != Some(size) {
            return Err(GitError::Failed {
                command: "cat-file".into(),
                message: format!("expected blob {oid} of {size} bytes, got `{line}`"),
            });
        }
        if size == 0 {
            // No bytes, only the newline after them.
            let mut newline = [0u8; 1];
            self.stdout.read_exact(&mut newline)?;
        }
        Ok(BlobReader { blobs: self, left: size })
    }
}

impl Drop for Blobs {
    fn drop(&mut self) {
        // End of input ends cat-file; one stopped mid-object could be blocked writing
        // what nobody reads, so it is ended rather than waited for.
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bytes of one blob, then nothing.
pub struct BlobReader<'a> {
    blobs: &'a mut Blobs,
    left: u64,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.blobs.stdout.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        if self.left == 0 {
            // The newline cat-file writes after every object.
            let mut newline = [0u8; 1];
            self.blobs.stdout.read_exact(&mut newline)?;
        }
        Ok(n)
    }
}

impl Drop for BlobReader<'_> {
    fn drop(&mut self) {
        // A reader dropped early leaves the stream mid-object: nothing more can be read.
        if self.left > 0 {
            self.blobs.stdin = None;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs git in `dir` with a fixed identity (for this module's tests and the workspace's).
    pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn resolves_commits_and_names_what_is_not_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert!(matches!(Checkout::open(&root), Err(GitError::NotARepository(_))));
        git(&root, &["init", "-q", "-b", "main"]);
        let checkout = Checkout::open(&root).unwrap();
        assert!(matches!(checkout.head(), Err(GitError::NoCommit(_))));
        std::fs::write(root.join("a"), "a\n").unwrap();
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "one"]);
        git(&root, &["tag", "-a", "-m", "v1", "v1"]);
        let head = git(&root, &["rev-parse", "HEAD"]);
        assert_eq!(checkout.head().unwrap(), head);
        assert_eq!(checkout.resolve(&head[..7]).unwrap(), head);
        assert_eq!(checkout.resolve("v1").unwrap(), head, "a tag is peeled to its commit");
        assert_eq!(checkout.branch().as_deref(), Some("main"));
        let tree = git(&root, &["rev-parse", "HEAD^{tree}"]);
        let e = checkout.resolve(&tree).unwrap_err();
        assert!(e.to_string().contains("(it names a tree)"), "{e}");
        for rev in ["deadbeef", "--output=/tmp/x", "", "HEAD\n"] {
            assert!(matches!(checkout.resolve(rev), Err(GitError::NotACommit { .. })), "{rev:?}");
        }
    }

    #[test]
    fn lists_a_subdirectory_and_reports_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        std::fs::create_dir_all(root.join("app/src")).unwrap();
        std::fs::write(root.join("top.txt"), "top\n").unwrap();
        std::fs::write(root.join("app/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::write(root.join("app/src/main.py"), "print(1)\n").unwrap();
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(root.join("app/run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        git(&root, &["add", "-A"]);
        git(&root, &["commit", "-q", "-m", "one"]);
        let head = git(&root, &["rev-parse", "HEAD"]);
        let app = Checkout::open(&root.join("app")).unwrap();
        let entries = app.entries(&head).unwrap();
        let listed: Vec<(String, EntryKind, u64)> = entries.iter().map(|e| (e.display(), e.kind, e.size)).collect();
        assert_eq!(
            listed,
            [
                ("run.sh".to_string(), EntryKind::File { executable: true }, 10),
                ("src/main.py".to_string(), EntryKind::File { executable: false }, 9)
            ]
        );
        let mut blobs = app.blobs().unwrap();
        for entry in &entries {
            let mut bytes = Vec::new();
            blobs.open(&entry.oid, entry.size).unwrap().read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes, std::fs::read(root.join("app").join(entry.display())).unwrap());
        }
        assert!(app.changes().unwrap().is_empty());
        std::fs::write(root.join("top.txt"), "changed outside the checkout\n").unwrap();
        assert!(app.changes().unwrap().is_empty(), "only the checkout's directory counts");
        std::fs::write(root.join("app/.env"), "X=1\n").unwrap();
        std::fs::write(root.join("app/run.sh"), "#!/bin/sh\nexit 1\n").unwrap();
        assert_eq!(app.changes().unwrap(), ["app/run.sh", "app/.env"]);

        // A commit from before the directory existed has nothing to deploy there.
        git(&root, &["checkout", "-q", "--orphan", "other"]);
        git(&root, &["rm", "-q", "-r", "-f", "--cached", "app"]);
        git(&root, &["commit", "-q", "-m", "no app"]);
        let other = git(&root, &["rev-parse", "HEAD"]);
        assert!(matches!(app.entries(&other), Err(GitError::NotInCommit { .. })));
    }
}
