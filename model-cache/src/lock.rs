//! Cross-process locks on files (`flock` through `std::fs::File::lock*`).
//!
//! The kernel drops a lock when its holder dies, SIGKILL included, so a crashed download never
//! leaves a model locked. Two opens of one file conflict even inside one process, which is what
//! lets the same lock serve threads and processes alike.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// An exclusive lock, released when dropped.
#[derive(Debug)]
pub(crate) struct Exclusive {
    _file: File,
}

/// A shared lock, released when dropped.
#[derive(Debug)]
pub(crate) struct Shared {
    _file: File,
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new().create(true).truncate(false).read(true).write(true).open(path).map_err(|e| Error::io(path, e))
}

/// Takes the exclusive lock if it is free.
pub(crate) fn try_exclusive(path: &Path) -> Result<Option<Exclusive>> {
    let file = open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(Exclusive { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(Error::io(path, e)),
    }
}

/// Waits for the exclusive lock, polling so that the wait can time out and be cancelled
/// (a blocking `lock()` would pin a thread and ignore both).
pub(crate) async fn exclusive(path: &Path, timeout: Duration) -> Result<Exclusive> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(5);
    let mut logged = false;
    loop {
        if let Some(lock) = try_exclusive(path)? {
            return Ok(lock);
        }
        if !logged {
            tracing::info!(lock = %path.display(), "waiting for another process using this model");
            logged = true;
        }
        if start.elapsed() >= timeout {
            return Err(Error::LockTimeout { path: PathBuf::from(path), waited_s: start.elapsed().as_secs_f64() });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
}

/// Takes a shared lock. Exclusive holders of `inuse` files only probe for a moment, so a
/// short retry is enough.
pub(crate) fn shared(path: &Path) -> Result<Shared> {
    let file = open(path)?;
    for _ in 0..2000 {
        match file.try_lock_shared() {
            Ok(()) => return Ok(Shared { _file: file }),
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
            Err(TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
    Err(Error::LockTimeout { path: path.to_path_buf(), waited_s: 2.0 })
}

/// Whether some process holds a shared lock on `path`. A missing file is not in use.
pub(crate) fn is_in_use(path: &Path) -> bool {
    let Ok(file) = OpenOptions::new().read(true).write(true).open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(TryLockError::WouldBlock) => true,
        Err(TryLockError::Error(_)) => false,
    }
}
