//! The files Pier keeps in a project: `pier.toml` (servers, committed, human-edited),
//! `pier.secrets` (sealed values, safe to commit) and `.pier/` (local state).
//!
//! Every write is atomic (a temporary file in the same directory, synced, then renamed),
//! so a crash never leaves a half-written file, and nothing is written until everything
//! it depends on has been checked.

pub mod alias;
pub mod config;
pub mod lock;
pub mod masterkey;
pub mod secrets_file;
pub mod shared;
pub mod state;
pub mod timeline;

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// The configuration file name.
pub const CONFIG_FILE: &str = "pier.toml";
/// The sealed secrets file name.
pub const SECRETS_FILE: &str = "pier.secrets";
/// The local state directory name.
pub const STATE_DIR: &str = ".pier";

/// Writes `bytes` to `path` atomically, with Unix permissions `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    write_whole(path, bytes, mode, false).map(|_| ())
}

/// The same, but never replaces a file: `Ok(false)` when `path` already exists, even if
/// another process created it a moment ago (the file appears whole, by a hard link).
pub fn write_new(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<bool> {
    write_whole(path, bytes, mode, true)
}

fn write_whole(path: &Path, bytes: &[u8], mode: u32, new: bool) -> std::io::Result<bool> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new().prefix(".pier-write-").tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.as_file().set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    if new {
        match file.persist_noclobber(path) {
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
            other => other.map_err(|e| e.error)?,
        };
    } else {
        file.persist(path).map_err(|e| e.error)?;
    }
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(true)
}

/// The project directory: the nearest directory at or above `start` holding
/// `pier.toml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| dir.join(CONFIG_FILE).is_file()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_file_is_written_once_even_by_racing_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let barrier = std::sync::Barrier::new(8);
        let won: Vec<(usize, bool)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (path, barrier) = (&path, &barrier);
                    scope.spawn(move || {
                        barrier.wait();
                        (i, write_new(path, format!("key {i}\n").as_bytes(), 0o600).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners: Vec<usize> = won.iter().filter(|(_, w)| *w).map(|(i, _)| *i).collect();
        assert_eq!(winners.len(), 1, "{won:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("key {}\n", winners[0]));
        // And a later writer never replaces it; write_atomic does.
        assert!(!write_new(&path, b"other\n", 0o600).unwrap());
        write_atomic(&path, b"replaced\n", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "replaced\n");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
