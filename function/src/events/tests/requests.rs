//! tingxie requests and source URIs.

use serde_json::{json, Value};

use super::super::*;
use super::fixtures::*;

fn request(data: Value) -> Result<Parsed, EventError> {
    from_cloudevent(REQUEST_EVENT_TYPE, "/apps/uploader", None, Some(EventData::Json(&data)))
}

#[test]
fn request_with_source_and_options() {
    let data = json!({"source": "s3://meetings-audio/2024/standup%20notes.wav", "language": "zh", "prompt": "听写",
        "temperature": 0.2, "beam_size": 5, "output": "s3://meetings-audio/transcripts/"});
    let j = jobs(request(data).unwrap()).remove(0);
    let Audio::Object(o) = &j.audio else { panic!() };
    assert_eq!((o.bucket.as_str(), o.key.as_str()), ("meetings-audio", "2024/standup notes.wav"));
    assert_eq!(j.options.language.as_deref(), Some("zh"));
    assert_eq!((j.options.temperature, j.options.beam_size), (Some(0.2), Some(5)));
    assert_eq!(j.options.output.as_deref(), Some("s3://meetings-audio/transcripts/"));
}

#[test]
fn request_with_inline_audio() {
    let data = json!({"audio": "UklGRiQAAABXQVZF\nZm10IA=="});
    assert_eq!(jobs(request(data).unwrap())[0].audio, Audio::Inline(b"RIFF$\0\0\0WAVEfmt ".to_vec()));
    let unpadded = json!({"audio": "UklGRg"});
    assert_eq!(jobs(request(unpadded).unwrap())[0].audio, Audio::Inline(b"RIFF".to_vec()));
}

#[test]
fn source_uris() {
    let cases = [
        ("gs://b/a%2Bb+c.wav", "b", "a+b+c.wav", "gs://b/a+b+c.wav"),
        ("az://uploads/x/y.wav", "uploads", "x/y.wav", "az://uploads/x/y.wav"),
        ("az://$root/y.wav", "$root", "y.wav", "az://$root/y.wav"),
        ("file:///data/in/a%20b.wav", "", "/data/in/a b.wav", "file:///data/in/a%20b.wav"),
        ("FILE://localhost/data/a.wav", "", "/data/a.wav", "file:///data/a.wav"),
        ("s3://b/%E4%BC%9A%E8%AE%AE.wav", "b", "会议.wav", "s3://b/%E4%BC%9A%E8%AE%AE.wav"),
        ("s3://b/a%3Fb%23c%25d", "b", "a?b#c%d", "s3://b/a%3Fb%23c%25d"),
    ];
    for (uri, bucket, key, canonical) in cases {
        let o = ObjectRef::parse(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!((o.bucket.as_str(), o.key.as_str(), o.uri.as_str()), (bucket, key, canonical), "{uri}");
        assert_eq!(ObjectRef::parse(&o.uri).unwrap(), o, "round trip of {uri}");
    }
    let bad = [
        "http://example.com/a.wav",
        "https://b.s3.amazonaws.com/k",
        "ftp://h/a",
        "s3:/b/k",
        "b/k",
        "",
        "s3://b/",
        "s3://b",
        "s3:///k",
        "s3://b/../etc/passwd",
        "s3://b/a/%2E%2E/c",
        "s3://b/./a",
        "s3://b/a%00b",
        "s3://b/a\nb",
        "s3://b/a?versionId=1",
        "s3://b/a#x",
        "s3://user@b/k",
        "s3://b:9000/k",
        "file://host/etc/passwd",
        "file:///",
        "file:///data/../etc/passwd",
        "file://relative",
        "s3://b/%FF",
    ];
    for uri in bad {
        assert!(matches!(ObjectRef::parse(uri), Err(EventError::InvalidSource { .. })), "{uri} should fail");
        assert!(request(json!({"source": uri})).is_err(), "{uri} should fail in a request");
    }
    let long = format!("s3://b/{}", "k".repeat(MAX_KEY_BYTES + 1));
    assert!(ObjectRef::parse(&long).is_err());
}

#[test]
fn request_errors_name_the_field() {
    let err = |data: Value| request(data).unwrap_err();
    assert!(matches!(err(json!({"source": "s3://b/k", "audio": "AAAA"})), EventError::InvalidData { .. }));
    assert!(matches!(err(json!({"language": "en"})), EventError::InvalidData { .. }));
    match err(json!({"source": "s3://b/k", "langauge": "en"})) {
        EventError::UnknownField { field, .. } => assert_eq!(field, "langauge"),
        e => panic!("{e}"),
    }
    let field_of = |data: Value| match request(data).unwrap_err() {
        EventError::InvalidField { field, .. } => field,
        e => panic!("{e}"),
    };
    assert_eq!(field_of(json!({"audio": "not base64!"})), "audio");
    assert_eq!(field_of(json!({"audio": "  "})), "audio");
    assert_eq!(field_of(json!({"source": 7})), "source");
    assert_eq!(field_of(json!({"source": "s3://b/k", "temperature": 1.5})), "temperature");
    assert_eq!(field_of(json!({"source": "s3://b/k", "temperature": "hot"})), "temperature");
    assert_eq!(field_of(json!({"source": "s3://b/k", "beam_size": 0})), "beam_size");
    assert_eq!(field_of(json!({"source": "s3://b/k", "beam_size": -1})), "beam_size");
    assert_eq!(field_of(json!({"source": "s3://b/k", "beam_size": 2.5})), "beam_size");
    assert_eq!(field_of(json!({"source": "s3://b/k", "response_format": "docx"})), "response_format");
    // A source's transcripts are written in every format: a format asked for is a mistake.
    assert_eq!(field_of(json!({"source": "s3://b/k", "response_format": "srt"})), "response_format");
    assert_eq!(field_of(json!({"source": "s3://b/k", "language": "en; rm -rf"})), "language");
    assert_eq!(field_of(json!({"source": "s3://b/k", "output": "https://x/y"})), "output");
    assert_eq!(field_of(json!({"source": "s3://b/k", "output": "s3://b/../x/"})), "output");
    assert!(request(json!({"source": "s3://b/k", "output": "s3://b"})).is_ok());
    assert!(request(json!({"source": "s3://b/k", "language": null, "output": "file:///out/"})).is_ok());
    assert!(matches!(
        from_cloudevent(REQUEST_EVENT_TYPE, "s", None, Some(EventData::Binary(b"\xff\x00"))),
        Err(EventError::InvalidData { .. })
    ));
    assert!(matches!(from_cloudevent(REQUEST_EVENT_TYPE, "s", None, None), Err(EventError::MissingField { .. })));
}
