//! The master key that seals `pier.secrets`: from `PIER_MASTER_KEY` (in CI), or from a
//! key file in the user's config directory that only its owner can read.
//!
//! The key is 32 random bytes, written as base64 (standard alphabet, with padding).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::caps::secrets::SealingKey;

/// The environment variable holding the master key.
pub const ENV: &str = "PIER_MASTER_KEY";

/// Why there is no usable master key.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    #[error("{ENV} is not a master key: it must be 32 bytes in base64 (44 characters)")]
    BadEnv,
    #[error("master key file {0} is not a master key: it must hold 32 bytes in base64")]
    BadFile(String),
    #[error("no master key: set {ENV}, or run `pier init` to create {0}")]
    Missing(String),
    #[error("master key file {0} can be read by others: run `chmod 600 {0}`")]
    Exposed(String),
    #[error("cannot use master key file {path}: {message}")]
    Io { path: String, message: String },
    #[error("no config directory to keep the master key in: set {ENV}")]
    NoConfigDir,
}

/// Where the key file lives: `$XDG_CONFIG_HOME/pier/master.key` or the platform's
/// equivalent.
pub fn key_file() -> Result<PathBuf, MasterKeyError> {
    dirs::config_dir().map(|d| d.join("pier").join("master.key")).ok_or(MasterKeyError::NoConfigDir)
}

fn decode(text: &str) -> Option<SealingKey> {
    let bytes = Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(text.trim()).ok()?);
    let array: [u8; 32] = bytes.as_slice().try_into().ok()?;
    Some(SealingKey::from_bytes(array))
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Env,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Env => write!(f, "{ENV}"),
            Source::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The master key in force: `PIER_MASTER_KEY` if set, else the key file.
pub fn load() -> Result<(SealingKey, Source), MasterKeyError> {
    if let Ok(text) = std::env::var(ENV)
        && !text.trim().is_empty()
    {
        return decode(&text).map(|k| (k, Source::Env)).ok_or(MasterKeyError::BadEnv);
    }
    let path = key_file()?;
    load_file(&path).map(|k| (k, Source::File(path)))
}

fn load_file(path: &Path) -> Result<SealingKey, MasterKeyError> {
    let shown = path.display().to_string();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(MasterKeyError::Missing(shown)),
        Err(e) => return Err(MasterKeyError::Io { path: shown, message: e.to_string() }),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(MasterKeyError::Exposed(shown));
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| MasterKeyError::Io { path: shown.clone(), message: e.to_string() })?,
    );
    decode(&text).ok_or(MasterKeyError::BadFile(shown))
}

/// Creates the key file with a fresh key, readable by its owner only. Returns its path,
/// or `None` when a key file already exists (it is never replaced).
pub fn create_file() -> Result<Option<PathBuf>, MasterKeyError> {
    let path = key_file()?;
    let shown = path.display().to_string();
    if path.exists() {
        return Ok(None);
    }
    let io = |e: std::io::Error| MasterKeyError::Io { path: shown.clone(), message: e.to_string() };
    let dir = path
        .parent()
        .ok_or_else(|| MasterKeyError::Io { path: shown.clone(), message: "no parent directory".into() })?;
    std::fs::create_dir_all(dir).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    let key = SealingKey::generate();
    let text = Zeroizing::new(format!("{}\n", base64::engine::general_purpose::STANDARD.encode(key.expose_bytes())));
    // Never replace a key: two `pier init`s at once must agree on one.
    if !super::write_new(&path, text.as_bytes(), 0o600).map_err(io)? {
        return Ok(None);
    }
    Ok(Some(path))
}
