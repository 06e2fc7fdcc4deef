//! Structural JSON mutations: a random node becomes another type, an edge value, a huge string
//! or number, a deep nest (past serde_json's 128-level limit at times) or a subtree of another
//! input; objects gain unknown fields or lose known ones; arrays grow, shrink or empty.

use serde_json::{Map, Number, Value};

use super::mutate::{havoc, MAX_SECTION};
use super::rng::Rng;

/// Field names the event, manifest and CloudEvent parsers look for (and some they do not).
const KEYS: &[&str] = &[
    "Records",
    "EventName",
    "Key",
    "Event",
    "eventName",
    "eventSource",
    "s3",
    "bucket",
    "name",
    "object",
    "key",
    "size",
    "eTag",
    "etag",
    "versionId",
    "version-id",
    "sequencer",
    "detail",
    "detail-type",
    "source",
    "eventType",
    "subject",
    "topic",
    "data",
    "data_base64",
    "url",
    "api",
    "contentLength",
    "validationCode",
    "generation",
    "audio",
    "language",
    "task",
    "zh_script",
    "prompt",
    "temperature",
    "beam_size",
    "batch_size",
    "vad_filter",
    "vad_parameters",
    "response_format",
    "output",
    "specversion",
    "id",
    "type",
    "datacontenttype",
    "dataschema",
    "time",
    "format",
    "uri",
    "files",
    "sha256",
    "__proto__",
    "",
    "unknown_field",
];

/// Replaces `text` with a structural mutation of it; false when it is not JSON (or the
/// result would be too large), so that the caller mutates bytes instead.
pub fn mutate(rng: &mut Rng, text: &mut Vec<u8>, donor: &[u8]) -> bool {
    let Ok(mut value) = serde_json::from_slice::<Value>(text) else {
        return false;
    };
    let donor: Option<Value> = serde_json::from_slice(donor).ok();
    for _ in 0..1 + rng.below(3) {
        let target = rng.below(count(&value));
        if let Some(node) = nth(&mut value, &mut { target }) {
            mutate_node(rng, node, donor.as_ref());
        }
    }
    let out = serde_json::to_vec(&value).expect("a Value serialises");
    if out.len() > MAX_SECTION {
        return false;
    }
    *text = out;
    true
}

fn count(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count).sum(),
        Value::Object(m) => m.values().map(count).sum(),
        _ => 0,
    }
}

/// The node at depth-first position `n`.
fn nth<'a>(v: &'a mut Value, n: &mut usize) -> Option<&'a mut Value> {
    if *n == 0 {
        return Some(v);
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().find_map(|item| nth(item, n)),
        Value::Object(m) => m.values_mut().find_map(|item| nth(item, n)),
        _ => None,
    }
}

fn mutate_node(rng: &mut Rng, node: &mut Value, donor: Option<&Value>) {
    match rng.below(11) {
        0 => *node = edge_value(rng),
        1 => *node = Value::String(huge_string(rng)),
        2 => mutate_string(rng, node),
        3 => *node = nest(rng, node.take()),
        4 => {
            if let Some(d) = donor {
                let mut d = d.clone();
                let at = rng.below(count(&d));
                if let Some(sub) = nth(&mut d, &mut { at }) {
                    *node = sub.take();
                }
            }
        }
        5 | 6 => match node {
            Value::Object(m) => mutate_object(rng, m),
            Value::Array(items) => mutate_array(rng, items),
            other => *other = edge_value(rng),
        },
        7 => *node = if rng.one_in(2) { Value::Array(vec![]) } else { Value::Object(Map::new()) },
        // A scalar where a container was, or the same value as text ("size": "123").
        8 => *node = Value::String(node.to_string()),
        9 => *node = Value::Array(vec![node.take()]),
        _ => *node = Value::Number(edge_number(rng)),
    }
}

fn edge_value(rng: &mut Rng) -> Value {
    match rng.below(7) {
        0 => Value::Null,
        1 => Value::Bool(rng.one_in(2)),
        2 => Value::Number(edge_number(rng)),
        3 => Value::String(String::new()),
        4 => Value::String(rng.pick(KEYS).to_string()),
        5 => Value::Array(vec![Value::Null]),
        _ => Value::Object(Map::new()),
    }
}

fn edge_number(rng: &mut Rng) -> Number {
    match rng.below(8) {
        0 => Number::from(u64::MAX),
        1 => Number::from(i64::MIN),
        2 => Number::from(-1),
        3 => Number::from(0),
        4 => Number::from((1u64 << 53) + 1),
        5 => Number::from_f64(1e308).expect("finite"),
        6 => Number::from_f64(-0.5).expect("finite"),
        _ => Number::from(rng.next_u64() >> rng.below(64)),
    }
}

fn huge_string(rng: &mut Rng) -> String {
    let len = *rng.pick(&[255usize, 256, 1024, 1025, 4097, 70_000]);
    let unit = *rng.pick(&["a", "é", "/", "%", "\u{1F600}", "\\u0000", "a/"]);
    unit.repeat(len.div_ceil(unit.len()))
}

/// Byte mutations inside a string (kept valid UTF-8 by lossy decoding).
fn mutate_string(rng: &mut Rng, node: &mut Value) {
    let mut bytes = match &mut *node {
        Value::String(s) => std::mem::take(s).into_bytes(),
        other => other.to_string().into_bytes(),
    };
    havoc(rng, &mut bytes, &[], &["..", "%2e", "%", "/", "\0", "\n", "é", "s3://b/", "file:///", " "]);
    *node = Value::String(String::from_utf8_lossy(&bytes).into_owned());
}

/// `value` wrapped in arrays or objects, sometimes deeper than serde_json parses (128).
fn nest(rng: &mut Rng, mut value: Value) -> Value {
    let depth = *rng.pick(&[2usize, 16, 126, 127, 128, 129, 300]);
    let as_object = rng.one_in(2);
    for _ in 0..depth {
        value = if as_object { Value::Object(Map::from_iter([(rng.pick(KEYS).to_string(), value)])) } else { Value::Array(vec![value]) };
    }
    value
}

fn mutate_object(rng: &mut Rng, m: &mut Map<String, Value>) {
    let keys: Vec<String> = m.keys().cloned().collect();
    match rng.below(4) {
        0 if !keys.is_empty() => {
            m.remove(rng.pick(&keys));
        }
        1 if !keys.is_empty() => {
            // Rename: the value under a name the parser may not expect there.
            let value = m.remove(rng.pick(&keys)).unwrap_or(Value::Null);
            m.insert(rng.pick(KEYS).to_string(), value);
        }
        2 if !keys.is_empty() => {
            let value = m[rng.pick(&keys)].clone();
            m.insert(rng.pick(KEYS).to_string(), value);
        }
        _ => {
            m.insert(rng.pick(KEYS).to_string(), edge_value(rng));
        }
    }
}

fn mutate_array(rng: &mut Rng, items: &mut Vec<Value>) {
    match rng.below(4) {
        0 => items.clear(),
        1 if !items.is_empty() => {
            items.remove(rng.below(items.len()));
        }
        2 if !items.is_empty() => {
            let copies = *rng.pick(&[2usize, 10, 100, 1000]);
            let item = items[rng.below(items.len())].clone();
            items.extend(std::iter::repeat_n(item, copies));
        }
        _ => items.push(edge_value(rng)),
    }
}
