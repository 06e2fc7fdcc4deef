//! Typed access to JSON fields that names the field in every error, so a bad event says
//! exactly what was wrong and where. `null` counts as absent, as most producers mean it.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{EventData, EventError};

pub(super) type Obj = Map<String, Value>;

/// Field path for errors: `Records[1].s3.object.key`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(super) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn missing(ty: &str, field: impl Into<String>) -> EventError {
    EventError::MissingField { event_type: ty.to_string(), field: field.into() }
}

pub(super) fn invalid(ty: &str, field: impl Into<String>, reason: impl Into<String>) -> EventError {
    EventError::InvalidField { event_type: ty.to_string(), field: field.into(), reason: reason.into() }
}

pub(super) fn invalid_data(ty: &str, reason: impl Into<String>) -> EventError {
    EventError::InvalidData { event_type: ty.to_string(), reason: reason.into() }
}

fn wrong_type(ty: &str, field: &str, expected: &str, got: &Value) -> EventError {
    invalid(ty, field, format!("expected {expected}, got {}", describe(got)))
}

/// The event's data as JSON; bytes are parsed, since some producers send JSON with a
/// non-JSON content type.
pub(super) fn data_as_json<'a>(ty: &str, data: Option<EventData<'a>>) -> Result<Cow<'a, Value>, EventError> {
    match data {
        None => Err(missing(ty, "data")),
        Some(EventData::Json(v)) => Ok(Cow::Borrowed(v)),
        Some(EventData::Binary(b)) => {
            serde_json::from_slice(b).map(Cow::Owned).map_err(|e| invalid_data(ty, format!("data is not JSON: {e}")))
        }
    }
}

pub(super) fn as_obj<'v>(ty: &str, path: &str, v: &'v Value) -> Result<&'v Obj, EventError> {
    v.as_object().ok_or_else(|| wrong_type(ty, if path.is_empty() { "data" } else { path }, "an object", v))
}

fn present<'v>(m: &'v Obj, key: &str) -> Option<&'v Value> {
    m.get(key).filter(|v| !v.is_null())
}

pub(super) fn req_obj<'v>(ty: &str, m: &'v Obj, path: &str, key: &str) -> Result<&'v Obj, EventError> {
    let field = join(path, key);
    match present(m, key) {
        None => Err(missing(ty, field)),
        Some(v) => as_obj(ty, &field, v),
    }
}

pub(super) fn opt_str<'v>(ty: &str, m: &'v Obj, path: &str, key: &str) -> Result<Option<&'v str>, EventError> {
    match present(m, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(wrong_type(ty, &join(path, key), "a string", v)),
    }
}

pub(super) fn req_str<'v>(ty: &str, m: &'v Obj, path: &str, key: &str) -> Result<&'v str, EventError> {
    opt_str(ty, m, path, key)?.ok_or_else(|| missing(ty, join(path, key)))
}

/// A non-negative integer, as a JSON number or a decimal string (protobuf JSON writes
/// int64 as strings: GCS `size` and `generation`).
pub(super) fn opt_u64(ty: &str, m: &Obj, path: &str, key: &str) -> Result<Option<u64>, EventError> {
    let bad = |v: &Value| wrong_type(ty, &join(path, key), "a non-negative integer", v);
    match present(m, key) {
        None => Ok(None),
        Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad(v));
            }
            s.parse().map(Some).map_err(|_| bad(v))
        }
        Some(v) => Err(bad(v)),
    }
}

/// A version or generation: a string, or an integer written as a number.
pub(super) fn opt_version(ty: &str, m: &Obj, path: &str, key: &str) -> Result<Option<String>, EventError> {
    match present(m, key) {
        Some(Value::Number(_)) => Ok(opt_u64(ty, m, path, key)?.map(|n| n.to_string())),
        _ => Ok(opt_str(ty, m, path, key)?.filter(|s| !s.is_empty()).map(str::to_string)),
    }
}

/// ETags arrive bare (`d41d8c...`) or quoted (`"0x8D4..."`); keep them bare.
pub(super) fn etag(s: Option<&str>) -> Option<String> {
    let s = s?.trim();
    let s = s.strip_prefix('"').and_then(|x| x.strip_suffix('"')).unwrap_or(s);
    (!s.is_empty()).then(|| s.to_string())
}
