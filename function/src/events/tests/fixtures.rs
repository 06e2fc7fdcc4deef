//! Realistic payloads, one per shape, as producers send them, and small helpers.

use serde_json::{json, Value};

use super::super::*;

pub(super) const S3_NOTIFICATION: &str = r#"{"Records":[
 {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2024-05-02T09:14:07.512Z",
  "eventName":"ObjectCreated:Put","userIdentity":{"principalId":"AWS:AIDAJDPLRKLG7UEXAMPLE"},
  "requestParameters":{"sourceIPAddress":"203.0.113.7"},
  "responseElements":{"x-amz-request-id":"C3D13FE58DE4C810","x-amz-id-2":"FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"},
  "s3":{"s3SchemaVersion":"1.0","configurationId":"tingxie-uploads",
   "bucket":{"name":"meetings-audio","ownerIdentity":{"principalId":"A3NL1KOZZKExample"},"arn":"arn:aws:s3:::meetings-audio"},
   "object":{"key":"2024/standup+notes+%281%29+C%2B%2B.wav","size":1843260,"eTag":"d41d8cd98f00b204e9800998ecf8427e",
    "versionId":"096fKKXTRTtl3on89fVO.nfljtsv6qko","sequencer":"0055AED6DCD90281E5"}}},
 {"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"eu-west-1","eventTime":"2024-05-02T09:15:00.000Z",
  "eventName":"ObjectRemoved:Delete","userIdentity":{"principalId":"AWS:AIDAJDPLRKLG7UEXAMPLE"},
  "requestParameters":{"sourceIPAddress":"203.0.113.7"},"responseElements":{"x-amz-request-id":"X","x-amz-id-2":"Y"},
  "s3":{"s3SchemaVersion":"1.0","configurationId":"tingxie-uploads","bucket":{"name":"meetings-audio","arn":"arn:aws:s3:::meetings-audio"},
   "object":{"key":"old.wav","sequencer":"0055AED6DCD90281E6"}}}]}"#;

pub(super) const MINIO: &str = r#"{"EventName":"s3:ObjectCreated:Put","Key":"voice/inbox/day 1/memo.m4a",
 "Records":[{"eventVersion":"2.0","eventSource":"minio:s3","awsRegion":"","eventTime":"2024-05-02T09:14:07.512Z",
  "eventName":"s3:ObjectCreated:Put","userIdentity":{"principalId":"minioadmin"},
  "requestParameters":{"principalId":"minioadmin","region":"","sourceIPAddress":"10.0.0.12"},
  "responseElements":{"x-amz-id-2":"dd9025bab4ad464b049177c95eb6ebf374d3b3fd1af9251148b658df7ac2e3e8",
   "x-amz-request-id":"17CB6A9E2A9A8F3B","x-minio-deployment-id":"6a3f0b5e-0d1c-4f6e-9a52-4a1b2c3d4e5f","x-minio-origin-endpoint":"http://10.0.0.5:9000"},
  "s3":{"s3SchemaVersion":"1.0","configurationId":"Config","bucket":{"name":"voice","ownerIdentity":{"principalId":"minioadmin"},"arn":"arn:aws:s3:::voice"},
   "object":{"key":"inbox%2Fday+1%2Fmemo.m4a","size":48213,"eTag":"9b2cf535f27731c974343645a3985328","contentType":"audio/mp4",
    "userMetadata":{"content-type":"audio/mp4"},"sequencer":"17CB6A9E2B3C2E51"}},
  "source":{"host":"10.0.0.12","port":"","userAgent":"MinIO (linux; amd64) minio-go/v7.0.70 mc/RELEASE.2024-04-18T16-45-29Z"}}]}"#;

pub(super) const EVENTBRIDGE: &str = r#"{"version":"0","id":"17793124-05d4-b198-2fde-7ededc63b103","detail-type":"Object Created",
 "source":"aws.s3","account":"111122223333","time":"2024-05-02T09:14:07Z","region":"ca-central-1",
 "resources":["arn:aws:s3:::meetings-audio"],
 "detail":{"version":"0","bucket":{"name":"meetings-audio"},
  "object":{"key":"calls/2024-05-02/sales+call.mp3","size":5321987,"etag":"4af981f98d22a0b9979da24b259e5e42-12",
   "version-id":"uhggCJ2_B6gU2JaXWXebnXFDstO0ID6G","sequencer":"0064D3901D00059242"},
  "request-id":"N4N7GDK58NMKJ12R","requester":"111122223333","source-ip-address":"1.2.3.4","reason":"CompleteMultipartUpload"}}"#;

/// TriggerMesh AWSS3Source: one record per CloudEvent.
pub(super) const TRIGGERMESH_RECORD: &str = r#"{"awsRegion":"us-west-2","eventName":"ObjectCreated:Put","eventSource":"aws:s3",
 "eventTime":"2024-05-02T13:28:21.524Z","eventVersion":"2.1","requestParameters":{"sourceIPAddress":"162.247.91.133"},
 "responseElements":{"x-amz-id-2":"jlxEx2aJTL/L+XG3FFf5t6wq3FRNst07pZfdAaFWnYb8G6CVwdNeFS9DLwjmozEW","x-amz-request-id":"J65PZJJPHMHVSYYD"},
 "s3":{"bucket":{"arn":"arn:aws:s3:::demobkt-triggermesh","name":"demobkt-triggermesh","ownerIdentity":{"principalId":"A3L2KFRRF0JY9H"}},
  "configurationId":"io.triggermesh.awss3sources.dmo.my-bucket",
  "object":{"eTag":"d69281f54535f2b0ac226a3fd66916a1","key":"podcast/ep%C3%AFsode+12.ogg","sequencer":"0060E5ABF789917970","size":1142782},
  "s3SchemaVersion":"1.0"},"userIdentity":{"principalId":"A3L2KFRRF0JY9H"}}"#;

pub(super) const GCS: &str = r#"{"kind":"storage#object","id":"tingxie-uploads/interviews/été 2024/a.flac/1714641247231057",
 "selfLink":"https://www.googleapis.com/storage/v1/b/tingxie-uploads/o/interviews%2F%C3%A9t%C3%A9%202024%2Fa.flac",
 "name":"interviews/été 2024/a.flac","bucket":"tingxie-uploads","generation":"1714641247231057","metageneration":"1",
 "contentType":"audio/flac","timeCreated":"2024-05-02T09:14:07.262Z","updated":"2024-05-02T09:14:07.262Z",
 "storageClass":"STANDARD","timeStorageClassUpdated":"2024-05-02T09:14:07.262Z","size":"2097152",
 "md5Hash":"XrY7u+Ae7tCTyyK7j1rNww==","mediaLink":"https://storage.googleapis.com/download/storage/v1/b/tingxie-uploads/o/x?alt=media",
 "crc32c":"AAAAAA==","etag":"CNHZkbuF/ugCEAE="}"#;
pub(super) const GCS_SOURCE: &str = "//storage.googleapis.com/projects/_/buckets/tingxie-uploads";

pub(super) const AZURE_SOURCE: &str =
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-speech/providers/Microsoft.Storage/storageAccounts/tingxiestore";
pub(super) const AZURE_DATA: &str = r#"{"api":"PutBlockList","clientRequestId":"4c5dd7fb-2c48-4a27-bb30-5361b5de920a",
 "requestId":"9aeb0fdf-c01e-0131-0922-9eb549000000","eTag":"0x8D76C39E4407333","contentType":"audio/wav","contentLength":3072000,
 "blobType":"BlockBlob","accessTier":"Default","url":"https://tingxiestore.blob.core.windows.net/uploads/team%20sync/monday.wav",
 "sequencer":"000000000000000000000000000099240000000000c41c18","storageDiagnostics":{"batchId":"681fe319-3006-00a8-0022-9e7cde000000"}}"#;

pub(super) fn eventgrid_array() -> Value {
    json!([
      {"topic": AZURE_SOURCE, "subject": "/blobServices/default/containers/uploads/blobs/team sync/monday.wav",
       "eventType": "Microsoft.Storage.BlobCreated", "id": "831e1650-001e-001b-66ab-eeb76e069631",
       "data": serde_json::from_str::<Value>(AZURE_DATA).unwrap(),
       "dataVersion": "", "metadataVersion": "1", "eventTime": "2024-05-02T09:14:07.9725393Z"},
      {"topic": AZURE_SOURCE, "subject": "/blobServices/default/containers/uploads/blobs/old.wav",
       "eventType": "Microsoft.Storage.BlobDeleted", "id": "x", "data": {"api": "DeleteBlob"},
       "dataVersion": "", "metadataVersion": "1", "eventTime": "2024-05-02T09:15:00Z"}
    ])
}

pub(super) fn v(s: &str) -> Value {
    serde_json::from_str(s).unwrap()
}

pub(super) fn jobs(p: Parsed) -> Vec<Job> {
    match p {
        Parsed::Jobs(j) => j,
        Parsed::Ignored { reason } => panic!("ignored: {reason}"),
    }
}

pub(super) fn one_object(p: Parsed) -> ObjectRef {
    let mut j = jobs(p);
    assert_eq!(j.len(), 1, "{j:?}");
    match j.remove(0).audio {
        Audio::Object(o) => o,
        a => panic!("not an object: {a:?}"),
    }
}
