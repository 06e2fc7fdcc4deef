//! Audio sources and transcript outputs in object storage (S3, GCS, Azure, local files), through
//! `object_store` with the credentials of the standard environment variables.

mod allow;
mod outputs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tingxie_model_cache::CacheConfig;

pub use allow::AllowList;
pub use outputs::{Claim, OutputSet, Recorded};

use crate::error::{Error, Result};
use crate::events::ObjectRef;

/// The version of a source object that a transcript was made from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SourceVersion {
    pub uri: String,
    pub etag: Option<String>,
    pub version: Option<String>,
    pub size: u64,
}

impl SourceVersion {
    /// Same object version: the version id when both have one, else the ETag.
    pub fn same_as(&self, other: &SourceVersion) -> bool {
        match (&self.version, &other.version) {
            (Some(a), Some(b)) => a == b,
            _ => self.etag.is_some() && self.etag == other.etag && self.size == other.size,
        }
    }
}

/// Where in a store an object lives.
#[derive(Clone)]
pub struct Location {
    pub store: Arc<dyn ObjectStore>,
    pub path: StorePath,
    pub uri: String,
}

/// Store clients (one per bucket, kept for their connection pools), the allow-list and the
/// output rule.
pub struct Objects {
    cache_config: CacheConfig,
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    pub allow: AllowList,
    output: String,
}

/// `s3://bucket/` for `s3://bucket/key`; `file:///` for local files.
fn root_of(obj: &ObjectRef) -> Result<String> {
    let scheme = obj
        .uri
        .split_once("://")
        .map(|(s, _)| s)
        .ok_or_else(|| Error::InvalidRequest(format!("source `{}` is not a URI", obj.uri)))?;
    Ok(format!("{scheme}://{}/", obj.bucket))
}

fn store_error(uri: &str, e: object_store::Error) -> Error {
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound(uri.to_string()),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Error::Store { message: format!("{uri}: access denied ({e})"), retryable: false }
        }
        object_store::Error::InvalidPath { .. } => Error::InvalidRequest(format!("{uri}: {e}")),
        other => Error::Store { message: format!("{uri}: {other}"), retryable: true },
    }
}

impl Objects {
    pub fn new(cache_config: CacheConfig, allowed: &[String], output: &str) -> Objects {
        Objects {
            cache_config,
            stores: Mutex::new(HashMap::new()),
            allow: AllowList::new(allowed),
            output: output.trim_end_matches('/').to_string(),
        }
    }

    /// The client for the store at `root` (`scheme://bucket/`) and `key`'s path in it.
    pub fn locate(&self, root: &str, key: &str) -> Result<Location> {
        let uri = format!("{root}{key}");
        let path = StorePath::parse(key).map_err(|e| Error::InvalidRequest(format!("object key `{key}`: {e}")))?;
        let mut stores = self.stores.lock().expect("store map");
        let store = match stores.get(root) {
            Some(store) => store.clone(),
            None => {
                let (store, _) = tingxie_model_cache::open_store(root, &self.cache_config)
                    .map_err(|e| Error::Store { message: format!("{root}: {e}"), retryable: e.is_retryable() })?;
                stores.insert(root.to_string(), store.clone());
                store
            }
        };
        Ok(Location { store, path, uri })
    }

    /// Checks the allow-list and finds the object. The error names the source.
    pub fn source(&self, obj: &ObjectRef) -> Result<(Location, &str)> {
        let admitted = self.allow.admits(&obj.uri).ok_or_else(|| {
            Error::Forbidden(format!("`{}` is not under TINGXIE_ALLOWED_SOURCES", obj.uri))
        })?;
        Ok((self.locate(&root_of(obj)?, obj.key.trim_start_matches('/'))?, admitted))
    }

    /// The current version of a source object (HEAD).
    pub async fn head(&self, at: &Location) -> Result<SourceVersion> {
        let meta = at.store.head(&at.path).await.map_err(|e| store_error(&at.uri, e))?;
        Ok(SourceVersion {
            uri: at.uri.clone(),
            etag: meta.e_tag.map(|t| t.trim_matches('"').to_string()),
            version: meta.version,
            size: meta.size,
        })
    }

    /// Reads a whole object of at most `limit` bytes.
    pub async fn read(&self, at: &Location, limit: u64) -> Result<Vec<u8>> {
        let got = at.store.get(&at.path).await.map_err(|e| store_error(&at.uri, e))?;
        if got.meta.size > limit {
            return Err(Error::TooLarge(format!(
                "{} is {} bytes; the limit is {limit} (TINGXIE_MAX_BODY_BYTES)",
                at.uri, got.meta.size
            )));
        }
        let bytes = got.bytes().await.map_err(|e| store_error(&at.uri, e))?;
        Ok(bytes.to_vec())
    }

    /// Where the transcripts of `obj` go: TINGXIE_OUTPUT, a request's own `output`, or next to
    /// the source under `transcripts/`. None when the object is itself a transcript (a storage
    /// notification for our own output must not start a loop).
    pub fn outputs_for(&self, obj: &ObjectRef, admitted: &str, requested: Option<&str>) -> Result<Option<OutputSet>> {
        let requested = requested.map(|r| r.trim_end_matches('/')).filter(|r| !r.is_empty());
        let prefix_uri = match requested.or(Some(self.output.as_str()).filter(|o| !o.is_empty())) {
            Some(explicit) => {
                if obj.uri.starts_with(&format!("{explicit}/")) {
                    return Ok(None);
                }
                let relative = if obj.bucket.is_empty() { obj.key.trim_start_matches('/').to_string() } else { format!("{}/{}", obj.bucket, obj.key) };
                format!("{explicit}/{relative}")
            }
            None => {
                // Next to the source: the bucket root, or for local files the allowed folder.
                let (root, relative) = match admitted.strip_prefix("file://").filter(|_| obj.uri.starts_with("file://")) {
                    Some(dir) if !dir.is_empty() => (admitted.to_string(), obj.key.strip_prefix(dir).unwrap_or(&obj.key)),
                    _ => (root_of(obj)?, obj.key.trim_start_matches('/')),
                };
                if relative.starts_with(outputs::DEFAULT_PREFIX) {
                    return Ok(None);
                }
                format!("{root}{}{relative}", outputs::DEFAULT_PREFIX)
            }
        };
        let (root, key) = split_root(&prefix_uri)?;
        Ok(Some(OutputSet::new(self.locate(&root, &key)?)))
    }
}

/// `s3://bucket/a/b` → (`s3://bucket/`, `a/b`); `file:///x/y` → (`file:///`, `x/y`).
fn split_root(uri: &str) -> Result<(String, String)> {
    let (scheme, rest) = uri.split_once("://").ok_or_else(|| Error::InvalidRequest(format!("`{uri}` is not a URI")))?;
    let (authority, key) = rest.split_once('/').unwrap_or((rest, ""));
    if key.is_empty() {
        return Err(Error::InvalidRequest(format!("`{uri}` names no object")));
    }
    Ok((format!("{scheme}://{authority}/"), key.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(uri: &str, bucket: &str, key: &str) -> ObjectRef {
        ObjectRef { uri: uri.into(), bucket: bucket.into(), key: key.into(), etag: None, version: None, size: None, account: None }
    }

    #[test]
    fn output_locations() {
        let objects = Objects::new(CacheConfig::new("/tmp/unused"), &["s3://b/".into()], "");
        let o = objects.outputs_for(&obj("s3://b/in/a.wav", "b", "in/a.wav"), "s3://b/", None).unwrap().unwrap();
        assert_eq!(o.uri("json"), "s3://b/transcripts/in/a.wav.json");
        // Our own outputs never trigger work.
        assert!(objects.outputs_for(&obj("s3://b/transcripts/in/a.wav.json", "b", "transcripts/in/a.wav.json"), "s3://b/", None).unwrap().is_none());
        let o = objects.outputs_for(&obj("file:///data/in/a.wav", "", "/data/in/a.wav"), "file:///data/", None).unwrap().unwrap();
        assert_eq!(o.uri("txt"), "file:///data/transcripts/in/a.wav.txt");
        let o = objects.outputs_for(&obj("s3://b/in/a.wav", "b", "in/a.wav"), "s3://b/", Some("s3://out/t/")).unwrap().unwrap();
        assert_eq!(o.uri("srt"), "s3://out/t/b/in/a.wav.srt");
    }

    #[test]
    fn version_comparison() {
        let v = |etag: Option<&str>, version: Option<&str>| SourceVersion { uri: "s3://b/k".into(), etag: etag.map(Into::into), version: version.map(Into::into), size: 1 };
        assert!(v(Some("e"), None).same_as(&v(Some("e"), None)));
        assert!(!v(Some("e"), None).same_as(&v(Some("f"), None)));
        assert!(!v(None, None).same_as(&v(None, None)), "no ETag: cannot tell, transcribe again");
        assert!(v(Some("e"), Some("1")).same_as(&v(Some("x"), Some("1"))));
        assert!(!v(Some("e"), Some("1")).same_as(&v(Some("e"), Some("2"))));
    }
}
