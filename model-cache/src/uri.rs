//! Model URIs: which store, which prefix, and the cache folder name that stands for them.
//!
//! Nothing of a URI or of a remote object name reaches the file system unchecked: the cache
//! folder of a model is a hash of its canonical URI (with a sanitised label for people), and
//! remote names become paths only after [`safe_relative_path`] accepted every segment.

use std::path::PathBuf;

use object_store::path::Path as StorePath;
use object_store::ObjectStoreScheme;
use url::Url;

use crate::error::{Error, Result};
use crate::hash::hex_sha256;

/// Where a model comes from.
#[derive(Debug, Clone)]
pub enum ModelSource {
    /// A directory on this machine, used in place.
    Local(PathBuf),
    /// A prefix in an object store, copied into the cache.
    Remote(RemoteUri),
}

/// A parsed remote model URI.
#[derive(Debug, Clone)]
pub struct RemoteUri {
    /// The URI as the user gave it (for messages).
    pub given: String,
    /// Scheme, authority and prefix without a trailing slash: equal for equal models.
    pub canonical: String,
    pub scheme: ObjectStoreScheme,
    /// The parsed URI, given to the store builder (which takes bucket, account, host from it).
    pub url: Url,
    /// The model's prefix inside the store.
    pub prefix: StorePath,
    /// Name of the model's folder in the cache.
    pub key: String,
}

/// Parses a model URI or a local directory path.
pub fn parse(uri: &str) -> Result<ModelSource> {
    let invalid = |reason: &str| Error::InvalidUri { uri: uri.to_string(), reason: reason.into() };
    if uri.is_empty() {
        return Err(invalid("empty"));
    }
    if uri.chars().any(|c| c.is_control()) {
        return Err(invalid("control characters"));
    }
    if !uri.contains("://") && !uri.starts_with("file:") {
        return Ok(ModelSource::Local(PathBuf::from(uri)));
    }
    // The URL parser would silently fold `a/../b` into `b`: refuse dot segments before it runs.
    let after_scheme = uri.split_once(':').map(|(_, rest)| rest).unwrap_or("");
    for seg in after_scheme.split(['/', '?', '#']) {
        let decoded = percent_decode(seg);
        if decoded == "." || decoded == ".." {
            return Err(invalid("`.` and `..` segments are not allowed"));
        }
        if decoded.contains('\\') || decoded.contains('\0') {
            return Err(invalid("backslashes and NUL are not allowed"));
        }
    }
    let url = Url::parse(uri).map_err(|e| invalid(&e.to_string()))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("query strings and fragments are not supported"));
    }
    let (scheme, prefix) = ObjectStoreScheme::parse(&url).map_err(|e| invalid(&e.to_string()))?;
    if matches!(scheme, ObjectStoreScheme::Memory) {
        return Err(invalid("memory:// is not a model source"));
    }
    let authority = match scheme {
        ObjectStoreScheme::Local => String::new(),
        _ => url[url::Position::BeforeHost..url::Position::AfterPort].to_string(),
    };
    // Path-style Azure/S3 https URLs keep their container/bucket in the path: keep what the
    // scheme parser stripped in the canonical form so two buckets never share a folder.
    let canonical = format!("{}://{}{}", url.scheme(), authority, url.path().trim_end_matches('/'));
    let key = folder_name(&canonical, prefix.filename());
    Ok(ModelSource::Remote(RemoteUri { given: uri.to_string(), canonical, scheme, url, prefix, key }))
}

/// `label-hash`: the hash makes it unique, the label (letters, digits, `._-` only) helps people.
fn folder_name(canonical: &str, last_segment: Option<&str>) -> String {
    let label: String = last_segment
        .unwrap_or("model")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(48)
        .collect();
    let label = label.trim_start_matches('.');
    let label = if label.is_empty() { "model" } else { label };
    format!("{label}-{}", &hex_sha256(canonical.as_bytes())[..20])
}

/// Turns a remote object name relative to the model prefix into a relative path that stays
/// inside the model folder, or refuses it.
pub fn safe_relative_path(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for seg in rel.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg.len() <= 255
            && !seg.contains(['\\', '\0'])
            && !seg.chars().any(|c| c.is_control());
        if !ok {
            return None;
        }
        out.push(seg);
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(uri: &str) -> RemoteUri {
        match parse(uri).unwrap() {
            ModelSource::Remote(r) => r,
            ModelSource::Local(p) => panic!("{uri} parsed as local {p:?}"),
        }
    }

    #[test]
    fn trailing_slash_does_not_change_the_folder() {
        let a = remote("s3://bucket/models/whisper-tiny-en/");
        let b = remote("s3://bucket/models/whisper-tiny-en");
        assert_eq!(a.key, b.key);
        assert_eq!(a.prefix.as_ref(), "models/whisper-tiny-en");
        assert!(a.key.starts_with("whisper-tiny-en-"));
    }

    #[test]
    fn buckets_and_schemes_get_distinct_folders() {
        let a = remote("s3://one/m").key;
        let b = remote("s3://two/m").key;
        let c = remote("gs://one/m").key;
        assert!(a != b && a != c && b != c);
    }

    #[test]
    fn dot_segments_are_refused_even_encoded() {
        for uri in ["s3://b/models/../etc", "s3://b/models/%2e%2e/etc", "s3://b/./x", "https://host/a/%2E%2E/b", "s3://b/a\\..\\b"] {
            assert!(matches!(parse(uri), Err(Error::InvalidUri { .. })), "{uri}");
        }
    }

    #[test]
    fn odd_characters_make_a_safe_folder_name() {
        let r = remote("s3://b/models/wh%20isp%C3%BCr%20$%7B%7D/");
        assert!(r.key.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{}", r.key);
        let r = remote("s3://b/.hidden");
        assert!(!r.key.starts_with('.'));
    }

    #[test]
    fn plain_paths_are_local() {
        assert!(matches!(parse("/models/x").unwrap(), ModelSource::Local(_)));
        assert!(matches!(parse("models/x").unwrap(), ModelSource::Local(_)));
        assert!(matches!(parse("file:///models/x").unwrap(), ModelSource::Remote(_)));
        assert!(matches!(parse("ftp://h/x"), Err(Error::InvalidUri { .. })));
        assert!(matches!(parse("s3://b/x?versionId=1"), Err(Error::InvalidUri { .. })));
    }

    #[test]
    fn relative_names_cannot_escape() {
        assert_eq!(safe_relative_path("a/b.bin"), Some(PathBuf::from("a/b.bin")));
        for bad in ["", "/abs", "a//b", "../x", "a/../../x", "a/./b", "a\\b", "x\0"] {
            assert_eq!(safe_relative_path(bad), None, "{bad:?}");
        }
    }
}
