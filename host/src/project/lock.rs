//! Deploy locks: two deploys of one server never run at once, across processes.
//!
//! A lock is an exclusive `flock` on `.pier/locks/SERVER.lock`, which also holds the id and
//! pid of the deploy that took it, so a second deploy can name what it waits for. The
//! kernel releases a `flock` when the last descriptor of its open file is closed: every
//! run's supervisor keeps the descriptor open ([`crate::caps::supervise::keep_open`]), so a
//! lock lasts until the deploy's process *and* every process it started are gone, however
//! they end, and is then taken over at once rather than honoured forever.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// A held lock; released on drop.
pub struct Lock {
    // Unregistered before the descriptor is closed.
    _kept: crate::caps::supervise::Kept,
    _flock: Flock<File>,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("server `{server}` is being deployed by {holder}")]
    Busy { server: String, holder: String },
    #[error("lock file {path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// The lock file of `server`.
pub fn path(state_dir: &Path, server: &str) -> PathBuf {
    state_dir.join("locks").join(format!("{server}.lock"))
}

fn open(path: &Path) -> Result<File, LockError> {
    let io = |source| LockError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(io)
}

fn holder(path: &Path) -> String {
    let mut text = String::new();
    let _ = File::open(path).and_then(|mut f| f.read_to_string(&mut text));
    let text = text.trim();
    if text.is_empty() { "another process".to_string() } else { text.to_string() }
}

/// Takes the lock of `server` for deploy `deploy_id` without waiting.
pub fn try_lock(state_dir: &Path, server: &str, deploy_id: &str) -> Result<Lock, LockError> {
    let path = path(state_dir, server);
    let file = open(&path)?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut flock) => {
            let io = |source| LockError::Io { path: path.display().to_string(), source };
            flock.set_len(0).map_err(io)?;
            flock.rewind().map_err(io)?;
            write!(flock, "deploy {deploy_id} (pid {})", std::process::id()).map_err(io)?;
            flock.flush().map_err(io)?;
            Ok(Lock { _kept: crate::caps::supervise::keep_open(&*flock), _flock: flock })
        }
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            Err(LockError::Busy { server: server.to_string(), holder: holder(&path) })
        }
        Err((_, errno)) => Err(LockError::Io { path: path.display().to_string(), source: errno.into() }),
    }
}

/// Takes the lock, waiting up to `wait` for a running deploy to finish.
pub async fn lock(state_dir: &Path, server: &str, deploy_id: &str, wait: Duration) -> Result<Lock, LockError> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    loop {
        match try_lock(state_dir, server, deploy_id) {
            Err(LockError::Busy { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// Whether the lock of `server` is free (nobody deploying it). Takes and drops it.
pub fn is_free(state_dir: &Path, server: &str) -> bool {
    let path = path(state_dir, server);
    match open(&path) {
        Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok(),
        Err(_) => false,
    }
}
