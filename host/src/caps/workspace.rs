//! Capability `workspace`: the checkout being deployed, packed and uploaded by the host.
//!
//! Policy: only `deploy` calls have a workspace. Packing walks the checkout, never
//! enters `.git`, and leaves out what `.gitignore` or `.pierignore` excludes (a
//! `.pierignore` can re-include with `!`). The tarball is deterministic: entries sorted,
//! owners and times zeroed. Uploads go through the `http` capability's policy, so a blob
//! can only be sent to a granted origin; its bytes never pass through the plugin.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::component::{Resource, ResourceTable};

use crate::caps::http::HttpPolicy;
use crate::runtime::bindings::pier::deploy::http::{Header, HttpError};
use crate::runtime::bindings::pier::deploy::workspace;

/// The ignore file Pier reads besides `.gitignore`.
pub const IGNORE_FILE: &str = ".pierignore";

/// Largest packed checkout, in bytes, unless configured otherwise.
pub const DEFAULT_MAX_BLOB: u64 = 512 << 20;

/// The most blobs one call may hold at once.
pub const MAX_BLOBS: usize = 64;

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
    #[error("reading the checkout failed: {0}")]
    Walk(#[from] ignore::Error),
    #[error("reading the checkout failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the packed checkout is larger than {0} bytes")]
    TooLarge(u64),
}

/// The files of `dir` that a deploy ships, relative to it, sorted.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, PackError> {
    let mut out = Vec::new();
    let walker = ignore::WalkBuilder::new(dir)
        .hidden(false)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(false)
        .require_git(false)
        .ignore(false)
        .parents(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| entry.file_name() != ".git")
        .build();
    for entry in walker {
        let entry = entry?;
        // Only regular files and symlinks ship: never a directory entry, a pipe, a
        // socket or a device (opening a pipe would block the deploy).
        let Some(kind) = entry.file_type() else { continue };
        if !kind.is_file() && !kind.is_symlink() {
            continue;
        }
        if let Ok(relative) = entry.path().strip_prefix(dir) {
            out.push(relative.to_path_buf());
        }
    }
    out.sort();
    Ok(out)
}

/// Packs `dir` as a gzipped tarball of [`files`], at most `max` bytes.
pub fn pack(dir: &Path, max: u64) -> Result<Vec<u8>, PackError> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    tar.follow_symlinks(false);
    for relative in files(dir)? {
        let path = dir.join(&relative);
        let meta = std::fs::symlink_metadata(&path)?;
        let mut header = tar::Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Deterministic);
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path)?;
            tar.append_link(&mut header, &relative, target)?;
        } else {
            header.set_size(meta.len());
            tar.append_data(&mut header, &relative, std::fs::File::open(&path)?)?;
        }
        if tar.get_ref().get_ref().len() as u64 > max {
            return Err(PackError::TooLarge(max));
        }
    }
    let bytes = tar.into_inner()?.finish()?;
    if bytes.len() as u64 > max {
        return Err(PackError::TooLarge(max));
    }
    Ok(bytes)
}

/// The per-call state of the `workspace` capability.
pub struct WorkspaceCap {
    dir: Option<PathBuf>,
    /// What the live blobs of this call may hold together, in bytes.
    max_blob: u64,
    /// What they hold now.
    live: u64,
    http: Arc<HttpPolicy>,
    table: ResourceTable,
}

impl WorkspaceCap {
    /// The checkout is `dir`, if this call has one; uploads follow `http`.
    pub fn new(dir: Option<PathBuf>, max_blob: u64, http: Arc<HttpPolicy>) -> Self {
        let mut table = ResourceTable::new();
        // Even empty blobs cost a table entry each: bound their number too.
        table.set_max_capacity(MAX_BLOBS);
        WorkspaceCap { dir, max_blob, live: 0, http, table }
    }
}

impl workspace::Host for WorkspaceCap {
    async fn pack(&mut self) -> wasmtime::Result<Result<Resource<Blob>, workspace::WorkspaceError>> {
        let Some(dir) = self.dir.clone() else { return Ok(Err(workspace::WorkspaceError::Unavailable)) };
        // Blobs held at once share one budget: a plugin that packs again and again
        // without dropping gets `too-large`, never the host's memory.
        let max = self.max_blob.saturating_sub(self.live);
        let packed = tokio::task::spawn_blocking(move || pack(&dir, max)).await?;
        match packed {
            Ok(bytes) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                self.live += bytes.len() as u64;
                Ok(Ok(self.table.push(Blob { bytes: bytes.into(), sha256 })?))
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

    #[test]
    fn pack_skips_git_and_ignored_files_and_is_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".git/objects")).unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::fs::create_dir_all(root.join("src")).unwrap();
        std::fs::write(root.join("src/app.py"), "print('hi')").unwrap();
        std::fs::write(root.join(".gitignore"), "*.log\nbuild/\n").unwrap();
        std::fs::write(root.join("debug.log"), "noise").unwrap();
        std::fs::create_dir_all(root.join("build")).unwrap();
        std::fs::write(root.join("build/out"), "x").unwrap();
        std::fs::write(root.join(IGNORE_FILE), "secret.txt\n!keep.log\n").unwrap();
        std::fs::write(root.join("secret.txt"), "x").unwrap();
        std::fs::write(root.join("keep.log"), "kept").unwrap();
        #[cfg(unix)]
        nix::unistd::mkfifo(&root.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let names: Vec<String> = files(root).unwrap().iter().map(|p| p.display().to_string()).collect();
        assert_eq!(names, [".gitignore", ".pierignore", "keep.log", "src/app.py"]);
        assert_eq!(pack(root, DEFAULT_MAX_BLOB).unwrap(), pack(root, DEFAULT_MAX_BLOB).unwrap());
        assert!(matches!(pack(root, 10), Err(PackError::TooLarge(10))));
    }
}
