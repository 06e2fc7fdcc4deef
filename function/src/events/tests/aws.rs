//! S3 notifications, MinIO, EventBridge, TriggerMesh and the Knative aws-s3 connector.

use serde_json::json;

use super::super::*;
use super::fixtures::*;

#[test]
fn s3_notification_decodes_keys_and_skips_deletions() {
    let j = jobs(from_webhook(&v(S3_NOTIFICATION)).unwrap());
    assert_eq!(j.len(), 1);
    assert_eq!(j[0].event_name.as_deref(), Some("ObjectCreated:Put"));
    let Audio::Object(o) = &j[0].audio else { panic!() };
    assert_eq!(o.bucket, "meetings-audio");
    assert_eq!(o.key, "2024/standup notes (1) C++.wav");
    assert_eq!(o.uri, "s3://meetings-audio/2024/standup%20notes%20(1)%20C++.wav");
    assert_eq!(o.size, Some(1843260));
    assert_eq!(o.etag.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
    assert_eq!(o.version.as_deref(), Some("096fKKXTRTtl3on89fVO.nfljtsv6qko"));
    assert_eq!(o.account, None);
}

#[test]
fn multiple_created_records_give_multiple_jobs() {
    let mut body = v(S3_NOTIFICATION);
    let first = body["Records"][0].clone();
    let mut second = first.clone();
    second["s3"]["object"]["key"] = json!("b.wav");
    body["Records"] = json!([first, second]);
    let keys: Vec<String> = jobs(from_webhook(&body).unwrap())
        .into_iter()
        .map(|j| match j.audio {
            Audio::Object(o) => o.key,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(keys, ["2024/standup notes (1) C++.wav", "b.wav"]);
}

#[test]
fn all_records_ignored_is_ignored() {
    let mut body = v(S3_NOTIFICATION);
    body["Records"].as_array_mut().unwrap().remove(0);
    let Parsed::Ignored { reason } = from_webhook(&body).unwrap() else { panic!() };
    assert!(reason.contains("ObjectRemoved:Delete"), "{reason}");
    let test_event = json!({"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-02T09:00:00.000Z",
        "Bucket":"meetings-audio","RequestId":"5582815E1AEA5ADF","HostId":"8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"});
    assert!(matches!(from_webhook(&test_event).unwrap(), Parsed::Ignored { .. }));
    assert!(matches!(from_webhook(&json!({"Records": []})).unwrap(), Parsed::Ignored { .. }));
}

#[test]
fn folder_placeholders_and_empty_objects_are_ignored() {
    let mut body = v(S3_NOTIFICATION);
    body["Records"][0]["s3"]["object"]["key"] = json!("2024/new+folder/");
    let Parsed::Ignored { reason } = from_webhook(&body).unwrap() else { panic!() };
    assert!(reason.contains("folder placeholder"), "{reason}");
    let mut body = v(S3_NOTIFICATION);
    body["Records"][0]["s3"]["object"]["size"] = json!(0);
    let Parsed::Ignored { reason } = from_webhook(&body).unwrap() else { panic!() };
    assert!(reason.contains("size 0"), "{reason}");
}

#[test]
fn minio_webhook() {
    let o = one_object(from_webhook(&v(MINIO)).unwrap());
    assert_eq!((o.bucket.as_str(), o.key.as_str()), ("voice", "inbox/day 1/memo.m4a"));
    assert_eq!(o.uri, "s3://voice/inbox/day%201/memo.m4a");
    assert_eq!(o.size, Some(48213));
    assert_eq!(o.version, None);
}

#[test]
fn eventbridge_webhook_and_cloudevents() {
    let body = v(EVENTBRIDGE);
    let j = jobs(from_webhook(&body).unwrap());
    assert_eq!(j[0].event_name.as_deref(), Some("Object Created:CompleteMultipartUpload"));
    let o = one_object(from_webhook(&body).unwrap());
    assert_eq!(o.key, "calls/2024-05-02/sales call.mp3");
    assert_eq!(o.etag.as_deref(), Some("4af981f98d22a0b9979da24b259e5e42-12"));
    assert_eq!(o.version.as_deref(), Some("uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G"));
    for ty in ["com.amazon.events.event", "aws.s3.object.created"] {
        let src = "arn:aws:events:ca-central-1:111122223333:event-bus/default";
        assert_eq!(one_object(from_cloudevent(ty, src, None, Some(EventData::Json(&body))).unwrap()), o);
    }
    // The detail alone, as some bridges forward it.
    let detail = &body["detail"];
    assert_eq!(one_object(from_cloudevent("aws.s3.object.created", "x", None, Some(EventData::Json(detail))).unwrap()).key, o.key);
    let mut deleted = body.clone();
    deleted["detail-type"] = json!("Object Deleted");
    assert!(matches!(from_webhook(&deleted).unwrap(), Parsed::Ignored { .. }));
    let ec2 =
        json!({"version":"0","source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{"state":"terminated"}});
    let p = from_cloudevent("com.amazon.events.event", "x", None, Some(EventData::Json(&ec2))).unwrap();
    assert!(matches!(p, Parsed::Ignored { .. }));
    assert!(matches!(from_webhook(&ec2), Err(EventError::InvalidField { .. })));
}

#[test]
fn triggermesh_and_cloudevents_adapter_records() {
    let rec = v(TRIGGERMESH_RECORD);
    let src = "arn:aws:s3:::demobkt-triggermesh";
    for ty in ["com.amazon.s3.objectcreated", "com.amazonaws.s3.ObjectCreated:Put"] {
        let o = one_object(from_cloudevent(ty, src, Some("podcast/ep%C3%AFsode+12.ogg"), Some(EventData::Json(&rec))).unwrap());
        assert_eq!(o.key, "podcast/epïsode 12.ogg");
        assert_eq!(o.uri, "s3://demobkt-triggermesh/podcast/ep%C3%AFsode%2012.ogg");
        assert_eq!(ObjectRef::parse(&o.uri).unwrap().key, o.key);
    }
    // Wrapped in Records, and as JSON bytes with a non-JSON content type.
    let wrapped = json!({"Records": [rec.clone()]});
    assert_eq!(jobs(from_cloudevent("com.amazon.s3.objectcreated", src, None, Some(EventData::Json(&wrapped))).unwrap()).len(), 1);
    let bytes = serde_json::to_vec(&rec).unwrap();
    assert_eq!(jobs(from_cloudevent("com.amazon.s3.objectcreated", src, None, Some(EventData::Binary(&bytes))).unwrap()).len(), 1);
    // The `s3` part alone, as the early `aws.s3.object.created` demos sent it.
    let o = one_object(from_cloudevent("aws.s3.object.created", src, None, Some(EventData::Json(&rec["s3"]))).unwrap());
    assert_eq!(o.etag.as_deref(), Some("d69281f54535f2b0ac226a3fd66916a1"));
}

#[test]
fn knative_aws_s3_connector_sends_bytes() {
    let wav = b"RIFF\x24\x00\x00\x00WAVEfmt ";
    for ty in ["dev.knative.connector.event.aws-s3", "dev.knative.eventing.aws-s3"] {
        let p = from_cloudevent(ty, "dev.knative.eventing.aws-s3-source", Some("aws-s3-source"), Some(EventData::Binary(wav)));
        let j = jobs(p.unwrap());
        assert_eq!(j[0].audio, Audio::Inline(wav.to_vec()));
    }
    let ty = "dev.knative.connector.event.aws-s3";
    assert!(matches!(from_cloudevent(ty, "s", None, Some(EventData::Binary(b""))).unwrap(), Parsed::Ignored { .. }));
    assert!(matches!(from_cloudevent(ty, "s", None, None), Err(EventError::InvalidData { .. })));
    assert!(matches!(from_cloudevent(ty, "s", None, Some(EventData::Json(&json!({"a": 1})))), Err(EventError::InvalidData { .. })));
}
