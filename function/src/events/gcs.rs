//! Google Cloud Storage through Eventarc: `google.cloud.storage.object.v1.finalized`, whose
//! data is a `StorageObjectData` (protobuf JSON, so `size` and `generation` are strings),
//! `source` is `//storage.googleapis.com/projects/_/buckets/BUCKET` and `subject` is
//! `objects/NAME`. Object names arrive unencoded.

use serde_json::Value;

use super::json;
use super::object::{check_bucket, Scheme};
use super::s3::skip_reason;
use super::{collect, EventError, Job, ObjectRef, Outcome, Parsed};

pub(super) const FINALIZED: &str = "google.cloud.storage.object.v1.finalized";

pub(super) fn parse(ty: &str, subject: Option<&str>, data: &Value) -> Result<Parsed, EventError> {
    let m = json::as_obj(ty, "", data)?;
    let bucket = json::req_str(ty, m, "", "bucket")?;
    check_bucket(bucket).map_err(|r| json::invalid(ty, "bucket", r))?;
    // `name` is the object; the subject repeats it and stands in when a producer omits it.
    let name = match json::opt_str(ty, m, "", "name")? {
        Some(n) => n,
        None => subject.and_then(|s| s.strip_prefix("objects/")).ok_or_else(|| json::missing(ty, "name"))?,
    };
    let size = json::opt_u64(ty, m, "", "size")?;
    if let Some(reason) = skip_reason("", name, size) {
        return Ok(Parsed::Ignored { reason });
    }
    let mut obj = ObjectRef::new(Scheme::Gs, bucket, name).map_err(|r| json::invalid(ty, "name", r))?;
    obj.size = size;
    obj.version = json::opt_version(ty, m, "", "generation")?;
    obj.etag = json::etag(json::opt_str(ty, m, "", "etag")?);
    Ok(collect(vec![Outcome::Job(Job::object(obj, Some(ty.to_string())))]))
}
