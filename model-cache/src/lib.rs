//! Node-local cache of model directories pulled from object storage.
//!
//! A model URI names a folder (prefix): `s3://bucket/models/whisper-tiny-en/`, `gs://…`,
//! `az://…`, `file:///mnt/models/x` (copied into the cache) or `http(s)://…` (the folder must
//! hold a `sha256sums` file, which then lists its files). A plain path (`/models/x`) is used in
//! place. [`ModelCache::ensure`] returns a local folder holding every file of the model:
//!
//! * once per node: a file lock per model makes concurrent processes download it once, and a
//!   single flight per model does the same for tasks of one process;
//! * fast: parallel ranged GETs written in place into temp files, no whole-file buffering;
//! * safe: size and checksum verified (`sha256sums` beside the model when present, otherwise
//!   size + ETag), fsync and atomic rename, a completion marker written last; a partial
//!   download is never served and is cleaned up or resumed by the next run;
//! * offline: when the store cannot be reached, a complete cached copy is used (with a warning);
//! * bounded: least recently used models are evicted above `max_bytes`, never one in use.
//!
//! The cache layout is described in the `layout` module source.

mod config;
mod download;
mod ensure;
mod error;
mod fill;
mod hash;
mod layout;
mod lock;
mod maintenance;
/// Public for the fuzz harness (`tingxie-fuzz`): parsers of files a model store supplies.
pub mod manifest;
mod store;
/// Public for the fuzz harness (`tingxie-fuzz`): the model URI parser.
pub mod uri;

pub mod cli;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use config::{defaults, CacheConfig};
pub use error::{Error, Result};
pub use maintenance::{GcReport, Problem, VerifyProblem};

/// How [`ModelCache::ensure`] obtained the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A complete copy of the current remote version was cached: no model file was fetched.
    Hit,
    /// Nothing usable was cached: the model was downloaded.
    Miss,
    /// An older version was cached; the new remote version was downloaded and is now used.
    StaleRefreshed,
    /// The current version was cached but some files were missing or damaged; they were
    /// fetched again.
    Repaired,
    /// The object store could not be reached; a complete cached copy is used.
    Offline,
    /// The URI is a local folder, used in place.
    Local,
}

impl Outcome {
    /// A short lowercase label, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::StaleRefreshed => "stale",
            Outcome::Repaired => "repaired",
            Outcome::Offline => "offline",
            Outcome::Local => "local",
        }
    }
}

/// A model ready on local disk. While this value lives, the model's folder is marked in use
/// and eviction leaves it alone (in this and every other process).
#[derive(Debug)]
pub struct LocalModel {
    /// The folder holding the model files.
    pub path: PathBuf,
    /// The URI that was asked for.
    pub uri: String,
    /// The remote version (hash of names, sizes and ETags); `None` for local folders.
    pub version: Option<String>,
    pub outcome: Outcome,
    /// Bytes received from the object store by this call.
    pub bytes_downloaded: u64,
    /// Time spent in the call.
    pub elapsed: Duration,
    in_use: Option<lock::Shared>,
}

impl LocalModel {
    /// Gives up the in-use mark early; the folder may then be evicted at any time.
    pub fn release(&mut self) {
        self.in_use = None;
    }
}

/// One version of one model in the cache.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheEntry {
    /// The model URI (canonical form).
    pub uri: String,
    /// Folder name of the model under `models/`.
    pub key: String,
    pub version: String,
    /// The model files' folder.
    pub path: PathBuf,
    /// Whether the completion marker is there (only complete entries are ever served).
    pub complete: bool,
    /// Bytes on disk, temp files included.
    pub bytes: u64,
    pub files: usize,
    /// Whether some process holds it.
    pub in_use: bool,
    pub last_used: Option<SystemTime>,
}

/// An object store client for the bucket (or container, or the local file system) that `uri`
/// names, built as model downloads build theirs: credentials from the standard environment
/// variables, the cache's timeouts and retries. Returns the client and the path of `uri` in it.
/// The service uses it for audio sources and transcript outputs.
pub fn open_store(uri: &str, config: &CacheConfig) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
    match uri::parse(uri)? {
        uri::ModelSource::Remote(remote) => Ok((store::build(&remote, config)?, remote.prefix)),
        uri::ModelSource::Local(_) => {
            Err(Error::InvalidUri { uri: uri.to_string(), reason: "expected a URI such as s3://bucket/ or file:///dir/".into() })
        }
    }
}

/// The cache. Cheap to clone; clones share the single flights and store clients.
#[derive(Clone)]
pub struct ModelCache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    layout: layout::Layout,
    stores: store::Stores,
    /// One async mutex per model folder: the in-process single flight.
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ModelCache {
    /// Opens (and creates if needed) the cache directory.
    pub fn new(config: CacheConfig) -> Result<ModelCache> {
        let layout = layout::Layout::new(config.cache_dir.clone());
        layout::create_dir_all(&layout.models())?;
        Ok(ModelCache {
            inner: Arc::new(Inner { stores: store::Stores::new(config.clone()), config, layout, flights: Mutex::new(HashMap::new()) }),
        })
    }

    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    /// Returns a complete local copy of the model at `uri`, downloading what is missing.
    pub async fn ensure(&self, uri: &str) -> Result<LocalModel> {
        self.inner.ensure(uri).await
    }

    /// Like [`ensure`](Self::ensure) but does not keep the model marked in use: for init
    /// containers and node pre-warming.
    pub async fn prefetch(&self, uri: &str) -> Result<LocalModel> {
        let mut model = self.inner.ensure(uri).await?;
        model.release();
        Ok(model)
    }

    /// Every cached version of every model (blocking file system reads).
    pub fn list(&self) -> Vec<CacheEntry> {
        self.inner.list()
    }

    /// Removes leftovers of interrupted downloads and evicts least recently used models not in
    /// use until the cache fits `max_bytes` (blocking).
    pub fn gc(&self) -> GcReport {
        self.inner.gc(0)
    }

    /// Re-hashes every cached file (blocking, reads everything). Damaged files are deleted so
    /// that no process loads them; the next `ensure` fetches them again.
    pub fn verify(&self) -> Vec<VerifyProblem> {
        self.inner.verify()
    }
}
