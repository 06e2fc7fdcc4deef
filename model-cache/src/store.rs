//! Object stores: building a client for a model URI and listing the model's files.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, RetryConfig};

use crate::config::CacheConfig;
use crate::error::{Error, Result};
use crate::hash::hex_sha256;
use crate::manifest::{parse_checksums, CHECKSUM_FILES};
use crate::uri::{safe_relative_path, RemoteUri};

/// One file of a remote model.
#[derive(Debug, Clone)]
pub(crate) struct RemoteFile {
    /// Path relative to the model prefix, `/`-separated, checked by `safe_relative_path`.
    pub name: String,
    pub location: StorePath,
    pub size: u64,
    pub etag: Option<String>,
    pub version: Option<String>,
    pub last_modified_ms: i64,
}

/// Object store clients, one per model URI, kept for their connection pools.
pub(crate) struct Stores {
    config: CacheConfig,
    clients: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub fn new(config: CacheConfig) -> Stores {
        Stores { config, clients: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, uri: &RemoteUri) -> Result<Arc<dyn ObjectStore>> {
        let mut clients = self.clients.lock().expect("store map");
        if let Some(store) = clients.get(&uri.canonical) {
            return Ok(store.clone());
        }
        let store = build(uri, &self.config)?;
        clients.insert(uri.canonical.clone(), store.clone());
        Ok(store)
    }
}

/// Applies `key=value` options to a builder; unknown keys are logged, not fatal, because the
/// same option list serves every store kind.
macro_rules! configure {
    ($builder:expr, $options:expr) => {{
        let mut b = $builder;
        for (k, v) in $options {
            match k.to_ascii_lowercase().parse() {
                Ok(key) => b = b.with_config(key, v.clone()),
                Err(_) => tracing::debug!(key = %k, "option does not apply to this store"),
            }
        }
        b
    }};
}

pub(crate) fn build(uri: &RemoteUri, config: &CacheConfig) -> Result<Arc<dyn ObjectStore>> {
    let mut options = vec![
        ("connect_timeout".to_string(), format!("{}ms", config.connect_timeout.as_millis())),
        ("timeout".to_string(), format!("{}ms", config.request_timeout.as_millis())),
    ];
    options.extend(config.store_options.iter().cloned());
    let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: config.retries, retry_timeout: config.retry_timeout };
    let url = uri.url.as_str();
    let err = |e: object_store::Error| Error::store(&uri.given, e);
    let store: Arc<dyn ObjectStore> = match uri.scheme {
        ObjectStoreScheme::AmazonS3 => {
            let b = object_store::aws::AmazonS3Builder::from_env().with_url(url).with_retry(retry);
            Arc::new(configure!(b, &options).build().map_err(err)?)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            let b = object_store::gcp::GoogleCloudStorageBuilder::from_env().with_url(url).with_retry(retry);
            Arc::new(configure!(b, &options).build().map_err(err)?)
        }
        ObjectStoreScheme::MicrosoftAzure => {
            let b = object_store::azure::MicrosoftAzureBuilder::from_env().with_url(url).with_retry(retry);
            Arc::new(configure!(b, &options).build().map_err(err)?)
        }
        ObjectStoreScheme::Http => {
            let base = &uri.url[..url::Position::BeforePath];
            let b = object_store::http::HttpBuilder::new().with_url(base).with_retry(retry);
            Arc::new(configure!(b, &options).build().map_err(err)?)
        }
        ObjectStoreScheme::Local => Arc::new(object_store::local::LocalFileSystem::new()),
        _ => return Err(Error::InvalidUri { uri: uri.given.clone(), reason: "unsupported store".into() }),
    };
    Ok(store)
}

/// Lists the files of a model, sorted by name. HTTP servers cannot list a folder: there the
/// model's `sha256sums` file is the list.
pub(crate) async fn list_model(store: &dyn ObjectStore, uri: &RemoteUri) -> Result<Vec<RemoteFile>> {
    let mut files = match uri.scheme {
        ObjectStoreScheme::Http => list_from_checksums(store, uri).await?,
        _ => {
            let metas: Vec<_> = store.list(Some(&uri.prefix)).try_collect().await.map_err(|e| Error::store(&uri.given, e))?;
            let mut files = Vec::with_capacity(metas.len());
            for meta in metas {
                let Some(name) = relative_name(uri, &meta.location)? else {
                    continue;
                };
                files.push(RemoteFile {
                    name,
                    location: meta.location,
                    size: meta.size,
                    etag: meta.e_tag,
                    version: meta.version,
                    last_modified_ms: meta.last_modified.timestamp_millis(),
                });
            }
            files
        }
    };
    if files.is_empty() {
        return Err(Error::NotFound { what: format!("{} (no files under this prefix)", uri.given) });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The part of `location` below the model prefix, or `None` for the prefix itself (a folder
/// marker object). Names that could leave the model folder are refused.
fn relative_name(uri: &RemoteUri, location: &StorePath) -> Result<Option<String>> {
    let prefix = uri.prefix.as_ref();
    let full = location.as_ref();
    let rel = if prefix.is_empty() {
        full
    } else if let Some(rest) = full.strip_prefix(prefix) {
        match rest.strip_prefix('/') {
            Some(r) => r,
            None if rest.is_empty() => return Ok(None),
            None => return Ok(None), // a sibling such as `model-v2/...`: not ours
        }
    } else {
        return Ok(None);
    };
    if rel.is_empty() {
        return Ok(None);
    }
    match safe_relative_path(rel) {
        Some(_) => Ok(Some(rel.to_string())),
        None => Err(Error::InvalidUri { uri: uri.given.clone(), reason: format!("object name {rel:?} would leave the model folder") }),
    }
}

async fn list_from_checksums(store: &dyn ObjectStore, uri: &RemoteUri) -> Result<Vec<RemoteFile>> {
    for sums_name in CHECKSUM_FILES {
        let location = uri.prefix.clone().join(sums_name);
        let got = match store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(Error::store(&uri.given, e)),
        };
        let meta = got.meta.clone();
        let text = got.bytes().await.map_err(|e| Error::store(&uri.given, e))?;
        let mut names: Vec<String> = parse_checksums(&String::from_utf8_lossy(&text)).into_keys().collect();
        names.sort();
        let mut files = vec![RemoteFile {
            name: sums_name.to_string(),
            location,
            size: meta.size,
            etag: meta.e_tag,
            version: meta.version,
            last_modified_ms: meta.last_modified.timestamp_millis(),
        }];
        for name in names {
            if safe_relative_path(&name).is_none() {
                return Err(Error::InvalidUri {
                    uri: uri.given.clone(),
                    reason: format!("{sums_name} names {name:?}, which would leave the model folder"),
                });
            }
            let location = name.split('/').fold(uri.prefix.clone(), |p, seg| p.join(seg));
            let meta = store.head(&location).await.map_err(|e| Error::store(&uri.given, e))?;
            files.push(RemoteFile {
                name,
                location,
                size: meta.size,
                etag: meta.e_tag,
                version: meta.version,
                last_modified_ms: meta.last_modified.timestamp_millis(),
            });
        }
        return Ok(files);
    }
    Err(Error::NotFound { what: format!("{}: an http(s) model needs a sha256sums file listing its files", uri.given) })
}

/// Identifies a remote version: changes when any file is added, removed or rewritten.
pub(crate) fn version_id(files: &[RemoteFile]) -> String {
    let mut text = String::new();
    for f in files {
        let stamp = f.etag.clone().unwrap_or_else(|| f.last_modified_ms.to_string());
        let version = f.version.as_deref().unwrap_or("");
        text.push_str(&format!("{}\0{}\0{}\0{}\n", f.name, f.size, stamp, version));
    }
    hex_sha256(text.as_bytes())[..16].to_string()
}
