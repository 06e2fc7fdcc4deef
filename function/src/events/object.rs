//! Building and checking [`ObjectRef`]s: key validation, the canonical URI, and parsing
//! `s3://`, `gs://`, `az://` and `file://` source URIs.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use super::{EventError, ObjectRef};

/// Longest object key accepted (S3, GCS and Azure all stop at 1024). File paths get 4096.
pub const MAX_KEY_BYTES: usize = 1024;
const MAX_PATH_BYTES: usize = 4096;

/// What a URI path cannot hold as is; everything else (`/`, `+`, `:`, `=`, ...) stays
/// readable. Non-ASCII is always encoded.
const URI_PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scheme {
    S3,
    Gs,
    Az,
    File,
}

impl Scheme {
    fn name(self) -> &'static str {
        match self {
            Scheme::S3 => "s3",
            Scheme::Gs => "gs",
            Scheme::Az => "az",
            Scheme::File => "file",
        }
    }

    fn from_name(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "s3" => Some(Scheme::S3),
            "gs" => Some(Scheme::Gs),
            "az" => Some(Scheme::Az),
            "file" => Some(Scheme::File),
            _ => None,
        }
    }
}

/// Bucket and container names: letters, digits, `.`, `_`, `-` (and Azure's `$root`,
/// `$web`, `$logs`). Anything else would need escaping in a URI authority.
pub(super) fn check_bucket(bucket: &str) -> Result<(), String> {
    if bucket.is_empty() {
        return Err("empty bucket name".into());
    }
    if bucket.len() > 255 {
        return Err("bucket name longer than 255 bytes".into());
    }
    let body = bucket.strip_prefix('$').unwrap_or(bucket);
    if body.is_empty() || !body.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        return Err(format!("bucket name {bucket:?} may hold only letters, digits, '.', '_' and '-'"));
    }
    Ok(())
}

/// Rejects keys that could escape a prefix or break logs: empty, NUL or other control
/// characters, `.` or `..` segments, and over-long keys.
pub(super) fn check_key(key: &str, max: usize) -> Result<(), String> {
    if key.is_empty() {
        return Err("empty object key".into());
    }
    if key.len() > max {
        return Err(format!("object key longer than {max} bytes"));
    }
    if key.contains('\0') {
        return Err("object key contains NUL".into());
    }
    if key.chars().any(char::is_control) {
        return Err("object key contains a control character".into());
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!("object key {key:?} has a '.' or '..' segment"));
    }
    Ok(())
}

impl ObjectRef {
    /// A checked reference to `key` in `bucket`; the key is already decoded.
    pub(super) fn new(scheme: Scheme, bucket: &str, key: &str) -> Result<ObjectRef, String> {
        let uri = match scheme {
            Scheme::File => {
                if !bucket.is_empty() {
                    return Err("file:// takes no host".into());
                }
                if !key.starts_with('/') || key == "/" {
                    return Err("file:// needs an absolute file path".into());
                }
                check_key(key, MAX_PATH_BYTES)?;
                format!("file://{}", utf8_percent_encode(key, URI_PATH))
            }
            _ => {
                check_bucket(bucket)?;
                check_key(key, MAX_KEY_BYTES)?;
                format!("{}://{bucket}/{}", scheme.name(), utf8_percent_encode(key, URI_PATH))
            }
        };
        Ok(ObjectRef { uri, bucket: bucket.to_string(), key: key.to_string(), etag: None, version: None, size: None, account: None })
    }

    /// Parses a source URI: `s3://bucket/key`, `gs://bucket/key`, `az://container/blob` or
    /// `file:///abs/path`. The path is percent-decoded as in any URI (`%20` is a space,
    /// `+` stays `+`); a `?` or `#` must be written `%3F` / `%23`, so a query or fragment
    /// is an error rather than silently part of the key.
    pub fn parse(uri: &str) -> Result<ObjectRef, EventError> {
        let err = |reason: String| EventError::InvalidSource { uri: uri.to_string(), reason };
        let Some((scheme, rest)) = uri.split_once("://") else {
            return Err(err("expected scheme://bucket/key (s3, gs, az or file)".into()));
        };
        let Some(scheme) = Scheme::from_name(scheme) else {
            return Err(err(format!(
                "unsupported scheme {scheme:?}: use s3://, gs://, az:// or file:// \
                 (other URLs are not fetched from events)"
            )));
        };
        if uri.contains(['?', '#']) {
            return Err(err("'?' and '#' must be percent-encoded (%3F, %23) in a source URI".into()));
        }
        if uri.chars().any(char::is_control) {
            return Err(err("contains a control character".into()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let decoded = percent_decode_str(path).decode_utf8().map_err(|_| err("path is not UTF-8 once percent-decoded".into()))?;
        let (bucket, key) = match scheme {
            Scheme::File => {
                if !(authority.is_empty() || authority.eq_ignore_ascii_case("localhost")) {
                    return Err(err(format!("file:// takes no host (got {authority:?})")));
                }
                ("", &*decoded)
            }
            _ => (authority, decoded.strip_prefix('/').unwrap_or("")),
        };
        ObjectRef::new(scheme, bucket, key).map_err(err)
    }
}

/// Decodes an S3 notification key: `application/x-www-form-urlencoded`, so `+` is a space
/// and `%2B` a plus.
pub(super) fn form_decode(s: &str) -> Result<String, String> {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8().map(|c| c.into_owned()).map_err(|_| "not UTF-8 once URL-decoded".to_string())
}

/// Checks a `output` prefix: a supported scheme, a valid bucket, and no `.`/`..`
/// segments. A trailing `/` and an empty key (the bucket root) are fine here.
pub(super) fn check_output_prefix(prefix: &str) -> Result<(), EventError> {
    let mut probe = prefix.to_string();
    if prefix.split_once("://").is_some_and(|(_, rest)| !rest.contains('/')) {
        probe.push('/');
    }
    if probe.ends_with('/') {
        probe.push('x');
    }
    ObjectRef::parse(&probe).map(|_| ()).map_err(|e| match e {
        EventError::InvalidSource { reason, .. } => EventError::InvalidSource { uri: prefix.to_string(), reason },
        other => other,
    })
}
