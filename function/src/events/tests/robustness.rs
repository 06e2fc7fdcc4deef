//! Every error variant says what and where; odd JSON never panics.

use serde_json::{json, Value};

use super::super::*;
use super::fixtures::*;

#[test]
fn event_errors_say_where() {
    assert!(matches!(from_cloudevent("com.example.other", "s", None, None), Err(EventError::UnknownType(t)) if t == "com.example.other"));
    assert!(matches!(from_webhook(&json!({"hello": "world"})), Err(EventError::UnrecognizedWebhook(_))));
    let mut body = v(S3_NOTIFICATION);
    body["Records"][0]["s3"]["object"].as_object_mut().unwrap().remove("key");
    match from_webhook(&body).unwrap_err() {
        EventError::MissingField { event_type, field } => {
            assert_eq!((event_type.as_str(), field.as_str()), ("s3-notification", "Records[0].s3.object.key"))
        }
        e => panic!("{e}"),
    }
    let mut body = v(MINIO);
    body["Records"][0]["s3"]["object"]["key"] = json!("a%2F..%2Fb");
    match from_webhook(&body).unwrap_err() {
        EventError::InvalidField { event_type, field, .. } => {
            assert_eq!((event_type.as_str(), field.as_str()), ("minio-notification", "Records[0].s3.object.key"))
        }
        e => panic!("{e}"),
    }
    let mut body = v(S3_NOTIFICATION);
    body["Records"][0]["s3"]["object"]["size"] = json!("big");
    assert!(matches!(from_webhook(&body), Err(EventError::InvalidField { field, .. }) if field == "Records[0].s3.object.size"));
    let mut data = v(GCS);
    data["bucket"] = json!("bad/bucket");
    assert!(
        matches!(from_cloudevent(gcs::FINALIZED, "", None, Some(EventData::Json(&data))), Err(EventError::InvalidField { field, .. }) if field == "bucket")
    );
    for ty in ACCEPTED_EVENT_TYPES {
        let e = from_cloudevent(ty, "s", None, None).unwrap_err();
        assert!(!matches!(e, EventError::UnknownType(_)), "{ty} has no parser");
    }
    assert!(matches!(from_cloudevent("com.amazonaws.s3.ObjectRemoved:Delete", "s", None, None), Err(EventError::UnknownType(_))));
    let msg = from_cloudevent("x", "s", None, None).unwrap_err().to_string();
    assert!(msg.contains("google.cloud.storage.object.v1.finalized"), "{msg}");
}

/// Every value in every fixture replaced by odd JSON: parsers may fail, never panic.
#[test]
fn odd_json_never_panics() {
    let odd = [
        json!(null),
        json!([]),
        json!({}),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(1e300),
        json!(u64::MAX),
        json!(""),
        json!("+"),
        json!("%"),
        json!("%ZZ"),
        json!("a/"),
        json!("../x"),
        json!(true),
        json!([1, "a"]),
        json!({"a": null}),
    ];
    let mut fixtures: Vec<(Option<&str>, Value)> = vec![
        (None, v(S3_NOTIFICATION)),
        (None, v(MINIO)),
        (None, v(EVENTBRIDGE)),
        (None, eventgrid_array()),
        (Some("com.amazon.s3.objectcreated"), v(TRIGGERMESH_RECORD)),
        (Some("com.amazon.events.event"), v(EVENTBRIDGE)),
        (Some("aws.s3.object.created"), v(TRIGGERMESH_RECORD)["s3"].clone()),
        (Some(gcs::FINALIZED), v(GCS)),
        (Some(azure::BLOB_CREATED), v(AZURE_DATA)),
        (Some(REQUEST_EVENT_TYPE), json!({"source": "s3://b/k", "temperature": 0.1, "beam_size": 2, "output": "gs://o/"})),
        (Some(REQUEST_EVENT_TYPE), json!({"audio": "AAAA", "language": "en"})),
    ];
    for o in &odd {
        fixtures.push((None, o.clone()));
    }
    for (ty, fixture) in fixtures {
        let mut paths = Vec::new();
        collect_paths(&fixture, &mut Vec::new(), &mut paths);
        for path in paths {
            for o in &odd {
                let mut mutated = fixture.clone();
                *pointer_mut(&mut mutated, &path) = o.clone();
                run_all(ty, &mutated);
            }
        }
    }
    for bytes in [&b""[..], b"\xff\xfe", b"null", b"[]", b"{\"Records\": 1}", b"12"] {
        for ty in ACCEPTED_EVENT_TYPES {
            let _ = from_cloudevent(ty, "", Some(""), Some(EventData::Binary(bytes)));
            let _ = from_cloudevent(ty, "", None, None);
        }
    }
}

fn run_all(ty: Option<&str>, data: &Value) {
    let _ = from_webhook(data);
    let _ = eventgrid_validation_code(data);
    let types: Vec<&str> = match ty {
        Some(t) => vec![t],
        None => ACCEPTED_EVENT_TYPES.to_vec(),
    };
    for t in types {
        for subject in [None, Some(""), Some("objects/"), Some("blobServices/default/containers//blobs/")] {
            let _ = from_cloudevent(t, "/x/storageAccounts/", subject, Some(EventData::Json(data)));
        }
    }
}

fn collect_paths(v: &Value, here: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    out.push(here.clone());
    let children: Vec<(String, &Value)> = match v {
        Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
        Value::Array(a) => a.iter().enumerate().map(|(i, c)| (i.to_string(), c)).collect(),
        _ => Vec::new(),
    };
    for (k, c) in children {
        here.push(k);
        collect_paths(c, here, out);
        here.pop();
    }
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match v {
        Value::Object(m) => m.get_mut(k).unwrap(),
        Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
        _ => unreachable!(),
    })
}
