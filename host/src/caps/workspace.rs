//! Capability `workspace`: the commit being deployed, packed and uploaded by the host.
//!
//! Policy: only `deploy` calls have a workspace: a checkout and the full SHA of the commit
//! being deployed, resolved once before the deploy starts (the SHA the timeline records).
//! Packing reads that commit's tree through git ([`crate::git`]), never the working tree,
//! so untracked and modified files are never packed. It leaves out what the commit's own
//! `.pierignore` files exclude (`!` re-includes), and always `.git`, `.pier` and
//! `pier.secrets`, whatever those say. Symlinks are packed as symlinks (their target is
//! text; nothing is followed); submodules are skipped with a note. Every size is checked
//! on uncompressed bytes against what the call's blob budget has left before a blob is
//! read. The tarball is deterministic: entries sorted by path, owners zeroed, one fixed
//! time, modes 0644, 0755 or 0777 (symlinks). Uploads go through the `http` capability's
//! policy, so a blob can only be sent to a granted origin; its bytes never pass through
//! the plugin.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Resource, ResourceTable};

use crate::caps::events::{Event, EventSink, Level};
use crate::caps::http::HttpPolicy;
use crate::git::{Blobs, Checkout, Entry, EntryKind, GitError};
use crate::runtime::bindings::pier::deploy::http::{Header, HttpError};
use crate::runtime::bindings::pier::deploy::workspace;

/// The ignore file Pier reads from the deployed commit.
pub const IGNORE_FILE: &str = ".pierignore";

/// Names that never enter a tarball, whatever `.pierignore` says: git's directory,
/// Pier's state directory and the sealed secrets.
pub const NEVER_PACKED: [&str; 3] = [".git", crate::project::STATE_DIR, crate::project::SECRETS_FILE];

/// Largest packed checkout, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_BLOB: u64 = 512 << 20;

/// The most blobs one call may hold at once.
pub const MAX_BLOBS: usize = 64;

/// Largest `.pierignore` read, in bytes.
pub const MAX_IGNORE_FILE: u64 = 1 << 20;

/// The modification time of every member (2006-07-24, as `tar`'s deterministic mode):
/// fixed, and not so old that extractors warn about it.
const MTIME: u64 = 1_153_704_088;

/// A tar block.
const BLOCK: u64 = 512;

/// The commit a deploy ships: a checkout and the full SHA of one of its repository's
/// commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    checkout: Checkout,
    commit: String,
}

impl Workspace {
    /// The workspace of `commit` (a full SHA, as [`Checkout::resolve`] returns) in `checkout`.
    pub fn new(checkout: Checkout, commit: String) -> Self {
        Workspace { checkout, commit }
    }

    /// Opens the checkout at `dir` and resolves `rev` in it.
    pub fn open(dir: &Path, rev: &str) -> Result<Self, GitError> {
        let checkout = Checkout::open(dir)?;
        let commit = checkout.resolve(rev)?;
        Ok(Workspace { checkout, commit })
    }

    /// The checkout's directory (where programs run `in-workspace`).
    pub fn dir(&self) -> &Path {
        self.checkout.dir()
    }

    /// The full SHA of the commit packed.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The checkout.
    pub fn checkout(&self) -> &Checkout {
        &self.checkout
    }
}

/// A packed checkout (the `blob` resource).
pub struct Blob {
    bytes: bytes::Bytes,
    sha256: String,
}

impl Blob {
    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Why packing failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("reading the commit failed: {0}")]
    Git(#[from] GitError),
    #[error("packing the commit failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("`{0}` is larger than {MAX_IGNORE_FILE} bytes")]
    IgnoreFile(String),
    #[error("the packed commit is larger than {0} bytes")]
    TooLarge(u64),
}

/// What a pack of a commit holds: the entries, in order, and notes for the user about
/// what was left out.
#[derive(Debug, Default)]
pub struct Selection {
    pub entries: Vec<Entry>,
    pub notes: Vec<String>,
}

/// A packed commit.
#[derive(Debug)]
pub struct Packed {
    /// The gzipped tarball.
    pub bytes: Vec<u8>,
    /// What the user should know (skipped submodules, unreadable ignore lines).
    pub notes: Vec<String>,
}

/// Where the bytes of a tree's blobs come from.
pub trait BlobSource {
    /// A reader of exactly the bytes of `entry`'s blob, read to its end before the next.
    fn open(&mut self, entry: &Entry) -> Result<Box<dyn Read + '_>, PackError>;
}

impl BlobSource for Blobs {
    fn open(&mut self, entry: &Entry) -> Result<Box<dyn Read + '_>, PackError> {
        Ok(Box::new(Blobs::open(self, &entry.oid, entry.size)?))
    }
}

/// Whether a path (git's bytes, `/`-separated) names something that never ships.
fn never_packed(path: &[u8]) -> bool {
    path.split(|b| *b == b'/').any(|part| NEVER_PACKED.iter().any(|n| n.as_bytes() == part))
}

/// The directory part of a path (`b""` at the top).
fn parent(path: &[u8]) -> &[u8] {
    path.iter().rposition(|b| *b == b'/').map(|i| &path[..i]).unwrap_or(b"")
}

fn to_path(bytes: &[u8]) -> PathBuf {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
    }
    #[cfg(not(unix))]
    PathBuf::from(String::from_utf8_lossy(bytes).into_owned())
}

/// The `.pierignore` files of a tree, by the directory holding each.
struct Ignores {
    by_dir: BTreeMap<Vec<u8>, ignore::gitignore::Gitignore>,
    /// Whether each directory seen so far is excluded.
    dirs: BTreeMap<Vec<u8>, bool>,
}

impl Ignores {
    /// The decision of the deepest ignore file holding a rule for `path`: excluded or not.
    fn matched(&self, path: &[u8], is_dir: bool) -> bool {
        let mut dir = parent(path);
        loop {
            if let Some(matcher) = self.by_dir.get(dir) {
                let relative = if dir.is_empty() { path } else { &path[dir.len() + 1..] };
                match matcher.matched(to_path(relative), is_dir) {
                    ignore::Match::Ignore(_) => return true,
                    ignore::Match::Whitelist(_) => return false,
                    ignore::Match::None => {}
                }
            }
            if dir.is_empty() {
                return false;
            }
            dir = parent(dir);
        }
    }

    /// Whether the file `path` is excluded, itself or through a directory holding it (a
    /// file in an excluded directory cannot be re-included, as in git).
    fn excludes(&mut self, path: &[u8]) -> bool {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|b| *b == b'/') {
            let dir = &path[..end + i];
            let excluded = match self.dirs.get(dir) {
                Some(excluded) => *excluded,
                None => {
                    let excluded = self.matched(dir, true);
                    self.dirs.insert(dir.to_vec(), excluded);
                    excluded
                }
            };
            if excluded {
                return true;
            }
            end += i + 1;
        }
        self.matched(path, false)
    }
}

/// What a pack of a tree, as `entries` lists it, holds: the entries that ship, with the
/// ignore files read through `source` (together at most `max` bytes, each at most
/// [`MAX_IGNORE_FILE`], checked before reading).
pub fn select(entries: Vec<Entry>, source: &mut dyn BlobSource, max: u64) -> Result<Selection, PackError> {
    let mut selection = Selection::default();
    let mut read = 0u64;
    let mut ignores = Ignores { by_dir: BTreeMap::new(), dirs: BTreeMap::new() };
    for entry in &entries {
        let is_ignore_file = entry.path.rsplit(|b| *b == b'/').next() == Some(IGNORE_FILE.as_bytes());
        if !is_ignore_file || !matches!(entry.kind, EntryKind::File { .. }) || never_packed(&entry.path) {
            continue;
        }
        if entry.size > MAX_IGNORE_FILE {
            return Err(PackError::IgnoreFile(entry.display()));
        }
        read += entry.size;
        if read > max {
            return Err(PackError::TooLarge(max));
        }
        let mut text = Vec::new();
        source.open(entry)?.read_to_end(&mut text)?;
        let mut builder = ignore::gitignore::GitignoreBuilder::new(".");
        for (i, line) in String::from_utf8_lossy(&text).lines().enumerate() {
            if let Err(e) = builder.add_line(None, line) {
                selection.notes.push(format!("{} line {}: {e}; the line is left out", entry.display(), i + 1));
            }
        }
        match builder.build() {
            Ok(matcher) => {
                ignores.by_dir.insert(parent(&entry.path).to_vec(), matcher);
            }
            Err(e) => selection.notes.push(format!("{}: {e}; the file is left out", entry.display())),
        }
    }
    for entry in entries {
        if never_packed(&entry.path) || ignores.excludes(&entry.path) {
            continue;
        }
        if entry.kind == EntryKind::Submodule {
            selection.notes.push(format!(
                "submodule `{}` is not deployed: Pier does not follow submodules (it records commit {})",
                entry.display(),
                entry.oid.get(..12).unwrap_or(&entry.oid)
            ));
            continue;
        }
        selection.entries.push(entry);
    }
    Ok(selection)
}

/// Blocks of a header for `name` (`bytes` long): one, plus a GNU long-name entry when it
/// does not fit the header's 100 bytes.
fn header_bytes(name: usize) -> u64 {
    let name = name as u64;
    if name < 100 { BLOCK } else { BLOCK + BLOCK + (name + 1).div_ceil(BLOCK) * BLOCK }
}

/// Counts the bytes written through it.
struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A member's header with the deterministic fields set.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(size);
    header.set_mtime(MTIME);
    header.set_uid(0);
    header.set_gid(0);
    header
}

/// Writes `entries` as a gzipped tarball whose uncompressed bytes are at most `max`,
/// checking each member's size before reading its blob from `source`.
pub fn write_tar(entries: &[Entry], source: &mut dyn BlobSource, max: u64) -> Result<Vec<u8>, PackError> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(Counting { inner: encoder, count: 0 });
    // The two zero blocks that end an archive.
    let end = 2 * BLOCK;
    for entry in entries {
        let name = header_bytes(entry.path.len());
        let needed = match entry.kind {
            // The target becomes the link name: a long one takes a long-name entry.
            EntryKind::Symlink => name + header_bytes(usize::try_from(entry.size).unwrap_or(usize::MAX)) - BLOCK,
            _ => name + entry.size.div_ceil(BLOCK) * BLOCK,
        };
        if tar.get_ref().count.saturating_add(needed).saturating_add(end) > max {
            return Err(PackError::TooLarge(max));
        }
        let path = to_path(&entry.path);
        match entry.kind {
            EntryKind::File { executable } => {
                let mut header = header(tar::EntryType::Regular, if executable { 0o755 } else { 0o644 }, entry.size);
                let reader = source.open(entry)?;
                tar.append_data(&mut header, &path, reader)?;
            }
            EntryKind::Symlink => {
                let mut target = Vec::new();
                source.open(entry)?.read_to_end(&mut target)?;
                let mut header = header(tar::EntryType::Symlink, 0o777, 0);
                tar.append_link(&mut header, &path, to_path(&target))?;
            }
            EntryKind::Submodule => {}
        }
    }
    let bytes = tar.into_inner()?.inner.finish()?;
    // What the call holds is the compressed bytes: they count against the budget too.
    if bytes.len() as u64 > max {
        return Err(PackError::TooLarge(max));
    }
    Ok(bytes)
}

/// Packs `workspace`'s commit as a gzipped tarball of at most `max` uncompressed bytes.
pub fn pack(workspace: &Workspace, max: u64) -> Result<Packed, PackError> {
    let checkout = workspace.checkout();
    let entries = checkout.entries(workspace.commit())?;
    let mut blobs = checkout.blobs()?;
    let selection = select(entries, &mut blobs, max)?;
    let bytes = write_tar(&selection.entries, &mut blobs, max)?;
    Ok(Packed { bytes, notes: selection.notes })
}

/// The per-call state of the `workspace` capability.
pub struct WorkspaceCap {
    workspace: Option<Workspace>,
    /// What the live blobs of this call may hold together, in bytes.
    max_blob: u64,
    /// What they hold now.
    live: u64,
    http: Arc<HttpPolicy>,
    sink: Arc<dyn EventSink>,
    table: ResourceTable,
}

impl WorkspaceCap {
    /// The commit is `workspace`, if this call has one; uploads follow `http`; notes
    /// about what was left out go to `sink`.
    pub fn new(workspace: Option<Workspace>, max_blob: u64, http: Arc<HttpPolicy>, sink: Arc<dyn EventSink>) -> Self {
        let mut table = ResourceTable::new();
        // Even empty blobs cost a table entry each: bound their number too.
        table.set_max_capacity(MAX_BLOBS);
        WorkspaceCap { workspace, max_blob, live: 0, http, sink, table }
    }
}

impl workspace::Host for WorkspaceCap {
    async fn pack(&mut self) -> wasmtime::Result<Result<Resource<Blob>, workspace::WorkspaceError>> {
        let Some(ws) = self.workspace.clone() else { return Ok(Err(workspace::WorkspaceError::Unavailable)) };
        // Blobs held at once share one budget: a plugin that packs again and again
        // without dropping gets `too-large`, never the host's memory.
        let max = self.max_blob.saturating_sub(self.live);
        let packed = tokio::task::spawn_blocking(move || pack(&ws, max)).await?;
        match packed {
            Ok(packed) => {
                for note in packed.notes {
                    self.sink.emit(Event::Log { level: Level::Warn, message: note });
                }
                let sha256 = hex::encode(Sha256::digest(&packed.bytes));
                self.live += packed.bytes.len() as u64;
                Ok(Ok(self.table.push(Blob { bytes: packed.bytes.into(), sha256 })?))
            }
            Err(PackError::TooLarge(_)) => Ok(Err(workspace::WorkspaceError::TooLarge(self.max_blob))),
            Err(e) => Ok(Err(workspace::WorkspaceError::Io(e.to_string()))),
        }
    }

    async fn upload(
        &mut self,
        blob: Resource<Blob>,
        url: String,
        headers: Vec<Header>,
    ) -> wasmtime::Result<Result<u16, workspace::WorkspaceError>> {
        let body = self.table.get(&blob)?.bytes.clone();
        let upload = |e: HttpError| workspace::WorkspaceError::Upload(e);
        let request = match self.http.build(reqwest::Method::PUT, &url, &headers, Some(body.into())) {
            Ok(r) => r,
            Err(e) => return Ok(Err(upload(e))),
        };
        let timeout = u32::try_from(self.http.limits().max_timeout.as_millis()).ok();
        Ok(self.http.send(request, timeout).await.map(|r| r.status).map_err(upload))
    }
}

impl workspace::HostBlob for WorkspaceCap {
    async fn size(&mut self, blob: Resource<Blob>) -> wasmtime::Result<u64> {
        Ok(self.table.get(&blob)?.bytes.len() as u64)
    }

    async fn sha256(&mut self, blob: Resource<Blob>) -> wasmtime::Result<String> {
        Ok(self.table.get(&blob)?.sha256.clone())
    }

    async fn drop(&mut self, blob: Resource<Blob>) -> wasmtime::Result<()> {
        let blob = self.table.delete(blob)?;
        self.live = self.live.saturating_sub(blob.bytes.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::git::tests::git;

    /// A repository in a fresh directory with `files` committed; returns it with the commit.
    fn repo(files: &[(&str, &str)]) -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        git(&root, &["init", "-q", "-b", "main"]);
        for (name, text) in files {
            let path = root.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        git(&root, &["add", "-A", "-f"]);
        git(&root, &["commit", "-q", "-m", "files"]);
        let ws = Workspace::open(&root, "HEAD").unwrap();
        (dir, ws)
    }

    /// Member (path, type byte, mode, contents or link target) of a tarball, in order.
    fn members(bytes: &[u8]) -> Vec<(String, u8, u32, String)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let kind = e.header().entry_type().as_byte();
                let mode = e.header().mode().unwrap();
                assert_eq!((e.header().mtime().unwrap(), e.header().uid().unwrap()), (MTIME, 0));
                let mut text = String::new();
                if let Some(link) = e.link_name().unwrap() {
                    text = link.display().to_string();
                } else {
                    e.read_to_string(&mut text).unwrap();
                }
                (path, kind, mode, text)
            })
            .collect()
    }

    fn names(bytes: &[u8]) -> Vec<String> {
        members(bytes).into_iter().map(|m| m.0).collect()
    }

    #[test]
    fn packs_the_commit_not_the_working_tree_deterministically() {
        let (dir, ws) = repo(&[("app.py", "print('hi')\n"), ("run.sh", "#!/bin/sh\n"), ("src/lib.py", "x = 1\n")]);
        let root = ws.dir().to_path_buf();
        git(&root, &["update-index", "--chmod=+x", "run.sh"]);
        git(&root, &["commit", "-q", "-m", "exec"]);
        let ws = Workspace::open(&root, "HEAD").unwrap();
        // Working-tree changes that must not ship.
        std::fs::write(root.join("app.py"), "print('edited')\n").unwrap();
        std::fs::write(root.join(".env"), "SECRET=1\n").unwrap();
        std::fs::remove_file(root.join("src/lib.py")).unwrap();

        let packed = pack(&ws, DEFAULT_MAX_BLOB).unwrap();
        assert_eq!(
            members(&packed.bytes),
            [
                ("app.py".to_string(), b'0', 0o644, "print('hi')\n".to_string()),
                ("run.sh".to_string(), b'0', 0o755, "#!/bin/sh\n".to_string()),
                ("src/lib.py".to_string(), b'0', 0o644, "x = 1\n".to_string()),
            ]
        );
        assert!(packed.notes.is_empty());
        assert_eq!(packed.bytes, pack(&ws, DEFAULT_MAX_BLOB).unwrap().bytes, "deterministic");
        // The same tree in another clone packs to the same bytes.
        let clone = tempfile::tempdir().unwrap();
        git(clone.path(), &["clone", "-q", root.to_str().unwrap(), "c"]);
        let other = Workspace::open(&clone.path().join("c").canonicalize().unwrap(), ws.commit()).unwrap();
        assert_eq!(pack(&other, DEFAULT_MAX_BLOB).unwrap().bytes, packed.bytes);
        drop(dir);
    }

    #[test]
    fn pierignore_of_the_commit_applies_and_never_packed_names_stay_out() {
        let (_dir, ws) = repo(&[
            (".pierignore", "*.log\n!keep.log\nbuild/\n!*\n!.pier/\n!pier.secrets\n"),
            ("a.log", "x"),
            ("keep.log", "kept"),
            ("build/out", "x"),
            ("docs/.pierignore", "draft.md\n"),
            ("docs/draft.md", "x"),
            ("docs/final.md", "final"),
            (".pier/timeline.sqlite", "state"),
            ("pier.secrets", "sealed"),
            ("sub/pier.secrets", "sealed"),
            ("sub/.pier/lock", "x"),
            ("app.py", "print()"),
        ]);
        let packed = pack(&ws, DEFAULT_MAX_BLOB).unwrap();
        // `!*` re-includes everything the root file excluded before it, but never `.pier`
        // or `pier.secrets`; the nested file still excludes its draft.
        assert_eq!(
            names(&packed.bytes),
            [".pierignore", "a.log", "app.py", "build/out", "docs/.pierignore", "docs/final.md", "keep.log"]
        );

        let (_dir, ws) = repo(&[
            (".pierignore", "*.log\n!keep.log\nbuild/\n!build/keep\n"),
            ("a.log", "x"),
            ("keep.log", "kept"),
            ("build/keep", "a file in an excluded directory stays out"),
            ("z.txt", "z"),
        ]);
        assert_eq!(names(&pack(&ws, DEFAULT_MAX_BLOB).unwrap().bytes), [".pierignore", "keep.log", "z.txt"]);
        // The working tree's ignore file is not the commit's.
        std::fs::write(ws.dir().join(".pierignore"), "z.txt\n").unwrap();
        assert_eq!(names(&pack(&ws, DEFAULT_MAX_BLOB).unwrap().bytes), [".pierignore", "keep.log", "z.txt"]);
    }

    #[test]
    fn symlinks_are_members_and_submodules_are_notes() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "outside").unwrap();
        let (_dir, ws) = repo(&[("app.py", "print()")]);
        let root = ws.dir().to_path_buf();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../x", root.join("up")).unwrap();
        let long_target = format!("{}/file", "d".repeat(150));
        std::os::unix::fs::symlink(&long_target, root.join("long")).unwrap();
        git(&root, &["add", "-A"]);
        let head = git(&root, &["rev-parse", "HEAD"]);
        git(&root, &["update-index", "--add", "--cacheinfo", &format!("160000,{head},vendor/lib")]);
        git(&root, &["commit", "-q", "-m", "links"]);
        let ws = Workspace::open(&root, "HEAD").unwrap();
        let packed = pack(&ws, DEFAULT_MAX_BLOB).unwrap();
        let got = members(&packed.bytes);
        let link = |name: &str| got.iter().find(|m| m.0 == name).cloned().unwrap();
        assert_eq!(link("abs"), ("abs".into(), b'2', 0o777, outside.path().join("secret").display().to_string()));
        assert_eq!(link("up").3, "../../x");
        assert_eq!(link("long").3, long_target);
        assert!(got.iter().all(|m| m.0 != "vendor/lib" && m.3 != "outside"), "{got:?}");
        assert_eq!(packed.notes.len(), 1, "{:?}", packed.notes);
        assert!(packed.notes[0].starts_with("submodule `vendor/lib` is not deployed"), "{:?}", packed.notes);
    }

    #[test]
    fn a_subdirectory_checkout_packs_its_part_of_the_tree() {
        let (_dir, ws) = repo(&[("top.txt", "top"), ("app/main.py", "print()"), ("app/.pierignore", "*.tmp\n")]);
        let app = Workspace::open(&ws.dir().join("app"), "HEAD").unwrap();
        assert_eq!(names(&pack(&app, DEFAULT_MAX_BLOB).unwrap().bytes), [".pierignore", "main.py"]);
    }

    /// A source of blobs of the sizes entries declare, which fails the test if asked for
    /// a blob the packer should have refused to read.
    struct Declared {
        refuse_over: u64,
        opened: Vec<String>,
    }

    impl BlobSource for Declared {
        fn open(&mut self, entry: &Entry) -> Result<Box<dyn Read + '_>, PackError> {
            assert!(entry.size <= self.refuse_over, "{} ({} bytes) was read", entry.display(), entry.size);
            self.opened.push(entry.display());
            Ok(Box::new(std::io::repeat(b'x').take(entry.size)))
        }
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry { path: path.as_bytes().to_vec(), kind: EntryKind::File { executable: false }, oid: "0".repeat(40), size }
    }

    #[test]
    fn sizes_are_checked_on_uncompressed_bytes_before_a_blob_is_read() {
        // Zeros compress to almost nothing: the limit still holds on what they unpack to.
        let entries = [file("a", 1000), file("big", 10 << 20), file("c", 10)];
        let mut source = Declared { refuse_over: 1 << 20, opened: vec![] };
        let refused = write_tar(&entries, &mut source, 1 << 20);
        assert!(matches!(refused, Err(PackError::TooLarge(_))), "{refused:?}");
        assert_eq!(source.opened, ["a"], "the big blob was never opened");

        // The limit is exact to the block: a tarball that just fits is packed.
        let entries = [file("a", 1000), file("b", 512)];
        let exact = (BLOCK + 1024) + (BLOCK + 512) + 2 * BLOCK;
        let mut source = Declared { refuse_over: u64::MAX, opened: vec![] };
        assert!(write_tar(&entries, &mut source, exact).is_ok());
        let mut source = Declared { refuse_over: u64::MAX, opened: vec![] };
        assert!(matches!(write_tar(&entries, &mut source, exact - 1), Err(PackError::TooLarge(_))));
        assert_eq!(source.opened, ["a"]);

        // Through git: a commit whose files unpack past the limit is refused.
        let (_dir, ws) = repo(&[("zeros", &"\0".repeat(4 << 20))]);
        assert!(matches!(pack(&ws, 1 << 20), Err(PackError::TooLarge(_))));
        assert!(pack(&ws, 5 << 20).unwrap().bytes.len() < 64 << 10);
    }

    #[test]
    fn header_sizes_cover_long_names() {
        let path = "p".repeat(300);
        let mut source = Declared { refuse_over: u64::MAX, opened: vec![] };
        let needed = header_bytes(300) + BLOCK + 2 * BLOCK;
        assert!(write_tar(&[file(&path, 1)], &mut source, needed).is_ok());
        let mut source = Declared { refuse_over: u64::MAX, opened: vec![] };
        assert!(matches!(write_tar(&[file(&path, 1)], &mut source, needed - 1), Err(PackError::TooLarge(_))));
    }
}
