//! Where things live under the cache directory, and the few file system moves that keep it
//! consistent across crashes.
//!
//! ```text
//! <cache_dir>/
//!   models/<label>-<hash of URI>/      one folder per model URI
//!     lock                             exclusive while a process fills or removes a version
//!     source.json                      {"uri": ...}, for `list`
//!     v-<version>/                     one folder per remote version (hash of names, sizes, ETags)
//!       model/...                      the model files; what `LocalModel::path` points at
//!       partial/<pid>-<time>-<n>.part  files being downloaded (never served)
//!       complete.json                  completion marker and manifest, written last
//!       inuse                          shared-locked by every process using this version
//!       last-used                      its mtime is the last use, for LRU eviction
//!   trash/                             versions being deleted (renamed here first)
//! ```
//! Lock files are never deleted: a process waiting on a deleted lock file would lock a
//! different inode than the next process.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The cache directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }

    pub fn models(&self) -> PathBuf {
        self.root.join("models")
    }

    pub fn trash(&self) -> PathBuf {
        self.root.join("trash")
    }

    pub fn key_dir(&self, key: &str) -> PathBuf {
        self.models().join(key)
    }

    pub fn key_lock(&self, key: &str) -> PathBuf {
        self.key_dir(key).join("lock")
    }

    pub fn source_file(&self, key: &str) -> PathBuf {
        self.key_dir(key).join("source.json")
    }

    pub fn version(&self, key: &str, version: &str) -> VersionDir {
        VersionDir { dir: self.key_dir(key).join(format!("v-{version}")) }
    }

    /// Every version folder of a key, complete or not.
    pub fn versions_of(&self, key: &str) -> Vec<VersionDir> {
        let mut out: Vec<VersionDir> = read_dir_names(&self.key_dir(key))
            .into_iter()
            .filter(|n| n.starts_with("v-"))
            .map(|n| VersionDir { dir: self.key_dir(key).join(n) })
            .collect();
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        out
    }

    /// Every key folder.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = read_dir_names(&self.models());
        keys.sort();
        keys
    }

    /// Moves a folder out of the way atomically, then deletes it: a crash in the middle leaves
    /// only garbage in `trash/`, never a half-deleted model that looks complete.
    pub fn remove_dir(&self, dir: &Path) -> Result<()> {
        let trash = self.trash();
        create_dir_all(&trash)?;
        let name = format!(
            "{}-{}-{}",
            dir.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
            std::process::id(),
            SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        );
        let target = trash.join(name);
        fs::rename(dir, &target).map_err(|e| Error::io(dir, e))?;
        fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))
    }

    /// Deletes whatever an interrupted removal left in `trash/`.
    pub fn empty_trash(&self) {
        for name in read_dir_names(&self.trash()) {
            let _ = fs::remove_dir_all(self.trash().join(name));
        }
    }
}

/// One version folder of a model.
#[derive(Debug, Clone)]
pub(crate) struct VersionDir {
    pub dir: PathBuf,
}

impl VersionDir {
    pub fn name(&self) -> String {
        self.dir.file_name().and_then(|n| n.to_str()).unwrap_or("").trim_start_matches("v-").into()
    }
    pub fn model(&self) -> PathBuf {
        self.dir.join("model")
    }
    pub fn partial(&self) -> PathBuf {
        self.dir.join("partial")
    }
    pub fn marker(&self) -> PathBuf {
        self.dir.join("complete.json")
    }
    pub fn inuse(&self) -> PathBuf {
        self.dir.join("inuse")
    }
    pub fn last_used_file(&self) -> PathBuf {
        self.dir.join("last-used")
    }

    /// Records a use now (the mtime of `last-used`).
    pub fn touch(&self) -> Result<()> {
        let path = self.last_used_file();
        let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        file.set_modified(SystemTime::now()).map_err(|e| Error::io(&path, e))
    }

    pub fn last_used(&self) -> Option<SystemTime> {
        fs::metadata(self.last_used_file()).and_then(|m| m.modified()).ok()
    }

    /// Bytes used on disk by the folder's files (apparent sizes).
    pub fn bytes(&self) -> u64 {
        tree_size(&self.dir)
    }
}

pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| Error::io(path, e))
}

/// Makes a rename or a new entry in `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes `data` to `path` so that readers see the old content or the new, never a part:
/// temporary file, fsync, rename, fsync of the folder.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().expect("file in a folder");
    let tmp = dir.join(format!(".{}.tmp-{}", path.file_name().and_then(|n| n.to_str()).unwrap_or("file"), std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, e)
    })?;
    fsync_dir(dir)
}

/// Names of the entries of a folder; empty when it does not exist.
pub(crate) fn read_dir_names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir).map(|rd| rd.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default()
}

/// Sum of the sizes of the regular files below `dir` (symlinks are not followed).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let Ok(rd) = fs::read_dir(dir) else { return 0 };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
