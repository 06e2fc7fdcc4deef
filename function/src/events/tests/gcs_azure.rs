//! GCS finalized, and Azure BlobCreated in both schemas.

use serde_json::json;

use super::super::*;
use super::fixtures::*;

#[test]
fn gcs_finalized() {
    let data = v(GCS);
    let subject = "objects/interviews/été 2024/a.flac";
    let o = one_object(from_cloudevent(gcs::FINALIZED, GCS_SOURCE, Some(subject), Some(EventData::Json(&data))).unwrap());
    assert_eq!((o.bucket.as_str(), o.key.as_str()), ("tingxie-uploads", "interviews/été 2024/a.flac"));
    assert_eq!(o.uri, "gs://tingxie-uploads/interviews/%C3%A9t%C3%A9%202024/a.flac");
    assert_eq!(o.size, Some(2097152));
    assert_eq!(o.version.as_deref(), Some("1714641247231057"));
    assert_eq!(o.etag.as_deref(), Some("CNHZkbuF/ugCEAE="));
    let mut no_name = data.clone();
    no_name.as_object_mut().unwrap().remove("name");
    let o2 = one_object(from_cloudevent(gcs::FINALIZED, GCS_SOURCE, Some(subject), Some(EventData::Json(&no_name))).unwrap());
    assert_eq!(o2.key, o.key);
    let mut empty = data;
    empty["size"] = json!("0");
    assert!(matches!(from_cloudevent(gcs::FINALIZED, GCS_SOURCE, None, Some(EventData::Json(&empty))).unwrap(), Parsed::Ignored { .. }));
}

#[test]
fn azure_cloudevents_schema() {
    let data = v(AZURE_DATA);
    let subject = "blobServices/default/containers/uploads/blobs/team sync/monday.wav";
    let p = from_cloudevent(azure::BLOB_CREATED, AZURE_SOURCE, Some(subject), Some(EventData::Json(&data))).unwrap();
    assert_eq!(jobs(p.clone())[0].event_name.as_deref(), Some("BlobCreated:PutBlockList"));
    let o = one_object(p);
    assert_eq!((o.bucket.as_str(), o.key.as_str()), ("uploads", "team sync/monday.wav"));
    assert_eq!(o.uri, "az://uploads/team%20sync/monday.wav");
    assert_eq!(o.account.as_deref(), Some("tingxiestore"));
    assert_eq!((o.size, o.etag.as_deref()), (Some(3072000), Some("0x8D76C39E4407333")));
    // Without a subject, the URL gives the same object.
    assert_eq!(one_object(from_cloudevent(azure::BLOB_CREATED, "", None, Some(EventData::Json(&data))).unwrap()), o);
    // Azurite's path-style URL.
    let mut local = data.clone();
    local["url"] = json!("http://127.0.0.1:10000/devstoreaccount1/uploads/a%2Bb.wav");
    let o = one_object(from_cloudevent(azure::BLOB_CREATED, "", None, Some(EventData::Json(&local))).unwrap());
    assert_eq!((o.account.as_deref(), o.bucket.as_str(), o.key.as_str()), (Some("devstoreaccount1"), "uploads", "a+b.wav"));
    // Data Lake: CreateFile comes before the content.
    let mut create = data;
    create["api"] = json!("CreateFile");
    create["contentLength"] = json!(0);
    assert!(matches!(
        from_cloudevent(azure::BLOB_CREATED, AZURE_SOURCE, Some(subject), Some(EventData::Json(&create))).unwrap(),
        Parsed::Ignored { .. }
    ));
}

#[test]
fn azure_eventgrid_schema_webhook() {
    let j = jobs(from_webhook(&eventgrid_array()).unwrap());
    assert_eq!(j.len(), 1);
    let Audio::Object(o) = &j[0].audio else { panic!() };
    assert_eq!((o.bucket.as_str(), o.key.as_str(), o.account.as_deref()), ("uploads", "team sync/monday.wav", Some("tingxiestore")));
    let validation = json!([{"id":"2d1781af-3a4c-4d7c-bd0c-e34b19da4e66","topic":AZURE_SOURCE,"subject":"",
        "data":{"validationCode":"512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                "validationUrl":"https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/x/validate?id=512d38b6&t=2024-05-02T09:14:07Z"},
        "eventType":"Microsoft.EventGrid.SubscriptionValidationEvent","eventTime":"2024-05-02T09:14:07Z","metadataVersion":"1","dataVersion":"1"}]);
    assert_eq!(eventgrid_validation_code(&validation).as_deref(), Some("512d38b6-c7b8-40c8-89fe-f46f9e9622b6"));
    assert_eq!(eventgrid_validation_code(&eventgrid_array()), None);
    let Parsed::Ignored { reason } = from_webhook(&validation).unwrap() else { panic!() };
    assert!(reason.contains("eventgrid_validation_code"), "{reason}");
}
