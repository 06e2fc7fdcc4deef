//! Audio sources and transcript outputs in object storage (S3, GCS, Azure, local files), through
//! `object_store` with the credentials of the standard environment variables.

mod allow;
mod outputs;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tingxie_model_cache::CacheConfig;

pub use allow::AllowList;
pub use outputs::{Claim, OutputSet, Recorded};

use crate::error::{bounded, Error, Result};
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
    /// Where a request's own `output` may write: TINGXIE_ALLOWED_OUTPUTS and TINGXIE_OUTPUT.
    writable: AllowList,
    output: String,
    /// How long reading one source (HEAD, then the whole object) may take.
    read_timeout: Duration,
}

/// `s3://bucket/` for `s3://bucket/key`; `file:///` for local files.
fn root_of(obj: &ObjectRef) -> Result<String> {
    let scheme =
        obj.uri.split_once("://").map(|(s, _)| s).ok_or_else(|| Error::InvalidRequest(format!("source `{}` is not a URI", obj.uri)))?;
    Ok(format!("{scheme}://{}/", obj.bucket))
}

/// What a client is told of a store's failure: the object it named and the kind of failure.
/// The store's own message (its endpoint, its key layout, local paths) goes to the log only.
fn store_error(uri: &str, e: object_store::Error) -> Error {
    tracing::warn!(object = %bounded(uri, 256), error = %e, "object store request failed");
    if name_too_long(&e) {
        return Error::InvalidRequest(format!("{uri}: a name in the path is too long for the store"));
    }
    if let Some(fault) = local_fault(&e) {
        return Error::InvalidRequest(format!("{uri}: {fault}"));
    }
    match e {
        object_store::Error::NotFound { .. } => Error::NotFound(uri.to_string()),
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
            Error::Store { message: format!("{uri}: the store denied access"), retryable: false }
        }
        object_store::Error::InvalidPath { .. } => Error::InvalidRequest(format!("{uri}: not a valid object path")),
        _ => Error::Store { message: format!("{uri}: the object store could not be reached or failed; try again"), retryable: true },
    }
}

/// A local path the client chose that cannot name a file: the request's fault (400), said
/// without the server's paths.
fn local_fault(e: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    match io_cause(e)?.raw_os_error()? {
        libc::ENOTDIR => Some("a part of the path is not a folder"),
        libc::ELOOP => Some("the path has too many levels of links"),
        libc::EISDIR => Some("the path is a folder, not a file"),
        libc::ENAMETOOLONG => Some("a name in the path is too long"),
        _ => None,
    }
}

/// The first I/O error in `e`'s chain of causes (a local file system's failure).
fn io_cause<'e>(e: &'e (dyn std::error::Error + 'static)) -> Option<&'e std::io::Error> {
    let mut cause = Some(e);
    while let Some(error) = cause {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cause = error.source();
    }
    None
}

/// The store refused a name as too long (a local file system's 255-byte file names): the
/// request's fault, not the store's.
fn name_too_long(e: &(dyn std::error::Error + 'static)) -> bool {
    io_cause(e).is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidFilename)
}

/// A local path with every link in it resolved; the part that does not exist yet (outputs not
/// written) is appended as it is. Object paths have no `.` or `..` segments.
fn resolve(path: &std::path::Path) -> std::io::Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        match existing.canonicalize() {
            Ok(real) => return Ok(rest.iter().rev().fold(real, |p, part| p.join(part))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match (existing.parent(), existing.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_owned());
                    existing = parent;
                }
                _ => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}

/// For local files: is `uri` under the folder `prefix` once links are resolved (a link
/// inside an allowed folder must not lead out of it)? Other schemes have no links.
fn stays_under(prefix: &str, uri: &str, what: &str) -> Result<bool> {
    let (Some(dir), Some(path)) = (prefix.strip_prefix("file://"), uri.strip_prefix("file://")) else {
        return Ok(true);
    };
    let io_error = |e: std::io::Error| match (e.kind(), local_fault(&e)) {
        (std::io::ErrorKind::InvalidFilename, _) => Error::InvalidRequest(format!("{what} `{uri}`: a name in the path is too long")),
        (_, Some(fault)) => Error::InvalidRequest(format!("{what} `{uri}`: {fault}")),
        (std::io::ErrorKind::PermissionDenied, _) => Error::Forbidden(format!("{what} `{uri}`: the service may not read that path")),
        _ => Error::Store { message: format!("{what} `{uri}`: the local file system failed ({})", e.kind()), retryable: true },
    };
    let path = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    // `%252e%252e` is `%2e%2e` once decoded, and `..` to a layer that decodes again.
    if path.split('/').any(|segment| matches!(&*percent_encoding::percent_decode_str(segment).decode_utf8_lossy(), "." | "..")) {
        return Err(Error::InvalidRequest(format!("{what} `{uri}`: a segment of the path is an (encoded) `.` or `..`")));
    }
    let dir = percent_encoding::percent_decode_str(dir).decode_utf8_lossy();
    let real = resolve(std::path::Path::new(path.as_ref())).map_err(io_error)?;
    // A FIFO or a device would block the reader (opening a FIFO waits for a writer).
    if what == "source" && std::fs::metadata(&real).is_ok_and(|m| !m.is_file()) {
        return Err(Error::InvalidRequest(format!("{what} `{uri}` is not a regular file")));
    }
    Ok(real.starts_with(resolve(std::path::Path::new(dir.as_ref())).map_err(io_error)?))
}

impl Objects {
    pub fn new(cache_config: CacheConfig, allowed: &[String], output: &str, allowed_outputs: &[String]) -> Objects {
        let output = output.trim_end_matches('/').to_string();
        // TINGXIE_OUTPUT itself is always a place to write.
        let writable: Vec<String> = allowed_outputs.iter().cloned().chain((!output.is_empty()).then(|| output.clone())).collect();
        Objects {
            cache_config,
            stores: Mutex::new(HashMap::new()),
            allow: AllowList::new(allowed),
            writable: AllowList::new(&writable),
            output,
            read_timeout: Duration::from_secs(300),
        }
    }

    pub fn with_read_timeout(self, read_timeout: Duration) -> Objects {
        Objects { read_timeout, ..self }
    }

    /// `work` on the source at `uri`, or 503 (retryable) once the read deadline passes.
    async fn within<T>(&self, uri: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.read_timeout, work).await.unwrap_or_else(|_| {
            Err(Error::Unavailable(format!(
                "{} did not arrive within {} s (TINGXIE_SOURCE_TIMEOUT_SECONDS)",
                bounded(uri, 256),
                self.read_timeout.as_secs()
            )))
        })
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
        let refused = || Error::Forbidden(format!("`{}` is not under TINGXIE_ALLOWED_SOURCES", obj.uri));
        let admitted = self.allow.admits(&obj.uri).ok_or_else(refused)?;
        if !admitted.is_empty() && !stays_under(admitted, &obj.uri, "source")? {
            return Err(Error::Forbidden(format!("`{}` leads, through a link, outside TINGXIE_ALLOWED_SOURCES", obj.uri)));
        }
        Ok((self.locate(&root_of(obj)?, obj.key.trim_start_matches('/'))?, admitted))
    }

    /// The current version of a source object (HEAD).
    pub async fn head(&self, at: &Location) -> Result<SourceVersion> {
        let meta = self.within(&at.uri, async { at.store.head(&at.path).await.map_err(|e| store_error(&at.uri, e)) }).await?;
        Ok(SourceVersion {
            uri: at.uri.clone(),
            etag: meta.e_tag.map(|t| t.trim_matches('"').to_string()),
            version: meta.version,
            size: meta.size,
        })
    }

    /// Reads a whole object of at most `limit` bytes.
    pub async fn read(&self, at: &Location, limit: u64) -> Result<Vec<u8>> {
        self.within(&at.uri, async {
            let got = at.store.get(&at.path).await.map_err(|e| store_error(&at.uri, e))?;
            if got.meta.size > limit {
                return Err(Error::TooLarge(format!(
                    "{} is {} bytes; the limit is {limit} (TINGXIE_MAX_BODY_BYTES)",
                    at.uri, got.meta.size
                )));
            }
            let bytes = got.bytes().await.map_err(|e| store_error(&at.uri, e))?;
            Ok(bytes.to_vec())
        })
        .await
    }

    /// Where the transcripts of `obj` go: TINGXIE_OUTPUT, a request's own `output`, or next to
    /// the source under `transcripts/`. None when the object is itself a transcript (a storage
    /// notification for our own output must not start a loop).
    pub fn outputs_for(&self, obj: &ObjectRef, admitted: &str, requested: Option<&str>) -> Result<Option<OutputSet>> {
        let requested = requested.map(|r| r.trim_end_matches('/')).filter(|r| !r.is_empty());
        // Where the outputs may go, for the check below that links do not lead elsewhere.
        let allowed_root = match requested {
            Some(r) => self.writable.admits(&format!("{r}/")).ok_or_else(|| {
                Error::OutputForbidden(format!("`{}` is not under TINGXIE_ALLOWED_OUTPUTS or TINGXIE_OUTPUT", bounded(r, 256)))
            })?,
            None if !self.output.is_empty() => self.writable.admits(&format!("{}/", self.output)).unwrap_or(""),
            None => admitted,
        }
        .to_string();
        let prefix_uri = match requested.or(Some(self.output.as_str()).filter(|o| !o.is_empty())) {
            Some(explicit) => {
                if obj.uri.starts_with(&format!("{explicit}/")) {
                    return Ok(None);
                }
                let relative =
                    if obj.bucket.is_empty() { obj.key.trim_start_matches('/').to_string() } else { format!("{}/{}", obj.bucket, obj.key) };
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
        if !allowed_root.is_empty() && !stays_under(&allowed_root, &prefix_uri, "output")? {
            return Err(Error::OutputForbidden(format!("`{prefix_uri}` leads, through a link, outside the folder it is allowed in")));
        }
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
        let objects = Objects::new(CacheConfig::new("/tmp/unused"), &["s3://b/".into()], "", &["s3://out/".into()]);
        let o = objects.outputs_for(&obj("s3://b/in/a.wav", "b", "in/a.wav"), "s3://b/", None).unwrap().unwrap();
        assert_eq!(o.uri("json"), "s3://b/transcripts/in/a.wav.json");
        // Our own outputs never trigger work.
        assert!(objects
            .outputs_for(&obj("s3://b/transcripts/in/a.wav.json", "b", "transcripts/in/a.wav.json"), "s3://b/", None)
            .unwrap()
            .is_none());
        let o = objects.outputs_for(&obj("file:///data/in/a.wav", "", "/data/in/a.wav"), "file:///data/", None).unwrap().unwrap();
        assert_eq!(o.uri("txt"), "file:///data/transcripts/in/a.wav.txt");
        let o = objects.outputs_for(&obj("s3://b/in/a.wav", "b", "in/a.wav"), "s3://b/", Some("s3://out/t/")).unwrap().unwrap();
        assert_eq!(o.uri("srt"), "s3://out/t/b/in/a.wav.srt");
    }

    #[test]
    fn outputs_a_request_names_must_be_allowed() {
        let objects = Objects::new(CacheConfig::new("/tmp/unused"), &["s3://b/".into()], "s3://o/t", &["s3://out/".into()]);
        let source = obj("s3://b/in/a.wav", "b", "in/a.wav");
        for allowed in ["s3://out/x", "s3://out", "s3://o/t/sub/"] {
            assert!(objects.outputs_for(&source, "s3://b/", Some(allowed)).unwrap().is_some(), "{allowed}");
        }
        for refused in ["s3://outside/x", "s3://b/", "file:///tmp/x/", "s3://o/tt/"] {
            assert!(matches!(objects.outputs_for(&source, "s3://b/", Some(refused)), Err(Error::OutputForbidden(_))), "{refused}");
        }
    }

    #[test]
    fn links_out_of_an_allowed_folder_are_refused() {
        let root = std::env::temp_dir().join(format!("tingxie-links-{}", std::process::id()));
        let (inside, outside) = (root.join("in"), root.join("out"));
        std::fs::create_dir_all(&inside).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret.wav"), b"x").unwrap();
        std::fs::write(inside.join("real.wav"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.join("secret.wav"), inside.join("leak.wav")).unwrap();
        std::os::unix::fs::symlink(inside.join("real.wav"), inside.join("alias.wav")).unwrap();
        let allowed = format!("file://{}/", inside.display());
        let objects = Objects::new(CacheConfig::new("/tmp/unused"), std::slice::from_ref(&allowed), "", &[]);
        let local = |name: &str| {
            let path = inside.join(name).display().to_string();
            obj(&format!("file://{path}"), "", &path)
        };
        assert!(matches!(objects.source(&local("leak.wav")), Err(Error::Forbidden(m)) if m.contains("link")));
        assert!(objects.source(&local("alias.wav")).is_ok());
        assert!(objects.source(&local("not-yet.wav")).is_ok(), "a missing file is the store's 404");
        let long = "n".repeat(300);
        assert!(matches!(objects.source(&local(&long)), Err(Error::InvalidRequest(m)) if m.contains("too long")));
        // Transcripts beside the source go under `transcripts/`: a link there must not lead out.
        std::os::unix::fs::symlink(&outside, inside.join("transcripts")).unwrap();
        assert!(matches!(objects.outputs_for(&local("real.wav"), &allowed, None), Err(Error::OutputForbidden(_))));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn version_comparison() {
        let v = |etag: Option<&str>, version: Option<&str>| SourceVersion {
            uri: "s3://b/k".into(),
            etag: etag.map(Into::into),
            version: version.map(Into::into),
            size: 1,
        };
        assert!(v(Some("e"), None).same_as(&v(Some("e"), None)));
        assert!(!v(Some("e"), None).same_as(&v(Some("f"), None)));
        assert!(!v(None, None).same_as(&v(None, None)), "no ETag: cannot tell, transcribe again");
        assert!(v(Some("e"), Some("1")).same_as(&v(Some("x"), Some("1"))));
        assert!(!v(Some("e"), Some("1")).same_as(&v(Some("e"), Some("2"))));
    }
}
