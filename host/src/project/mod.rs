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
    file.persist(path).map_err(|e| e.error)?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

/// The project directory: the nearest directory at or above `start` holding
/// `pier.toml`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| dir.join(CONFIG_FILE).is_file()).map(Path::to_path_buf)
}
