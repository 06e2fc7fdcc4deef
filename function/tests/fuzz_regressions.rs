//! What `tingxie-fuzz` (FUZZING.md) found, as plain tests of the public functions involved.
//! The raw inputs are in tests/fuzz-regressions/, replayed by tests/fuzz.rs.

use std::path::Path;

use actix_web::http::header::HeaderValue;
use serde_json::{json, Value};
use tingxie::events::{from_cloudevent, from_webhook, EventData, Parsed};

fn ignored_reason(parsed: Parsed) -> String {
    match parsed {
        Parsed::Ignored { reason } => reason,
        Parsed::Jobs(jobs) => panic!("expected an ignored event, got {jobs:?}"),
    }
}

/// An ignored event's reason goes back as the `x-tingxie-ignored` header (CR and LF replaced):
/// event names with control characters made it invalid, so the server answered 500, not 202;
/// and a huge name or key made it as huge.
#[test]
fn ignored_reasons_stay_valid_short_headers() {
    let long_folder = format!("{}/", "a".repeat(100_000));
    let webhooks = [
        json!({"Records": [{"eventName": "s3:\u{0}ObjectRemoved:Delete", "s3": {}}]}),
        json!({"Records": [{"eventName": "x".repeat(100_000), "s3": {}}]}),
        json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": long_folder}}}]}),
        json!([{"eventType": "Microsoft.Storage.Blob\u{1}Deleted", "data": {}}]),
        json!({"source": "aws.s3", "detail-type": "Object\u{7f}Deleted", "detail": {}}),
    ];
    let mut reasons: Vec<String> = webhooks.iter().map(|body| ignored_reason(from_webhook(body).unwrap())).collect();
    let bus_event = json!({"source": "aws.\u{0}ec2", "detail-type": "EC2 Instance State-change Notification"});
    reasons.push(ignored_reason(from_cloudevent("com.amazon.events.event", "/bus", None, Some(EventData::Json(&bus_event))).unwrap()));
    for reason in reasons {
        assert!(HeaderValue::try_from(reason.replace(['\r', '\n'], " ")).is_ok(), "{reason:?}");
        assert!(reason.len() < 300, "{} bytes: {}…", reason.len(), &reason[..100]);
    }
}

/// A float WAV holding NaN, infinities or values near f32::MAX, at a rate that is resampled:
/// the resampler's FFT turned them into NaN and panicked (caught, so the request failed with
/// "decoder failed on malformed data"); now NaN is silence and the rest is clamped, as at 16 kHz.
#[test]
fn float_wav_with_nan_and_infinities_decodes_at_any_rate() {
    for rate in [16_000u32, 44_100] {
        let values: Vec<f32> = (0..4410)
            .map(|n| match n {
                100 => f32::NAN,
                200 => f32::INFINITY,
                300 => f32::NEG_INFINITY,
                400 => 3e38,
                500 => -3e38,
                n => (n as f32 * 0.05).sin() * 0.5,
            })
            .collect();
        let samples = tingxie::audio::decode_bytes(float_wav(rate, &values), Some("wav")).unwrap_or_else(|e| panic!("{rate} Hz: {e}"));
        assert!(!samples.is_empty() && samples.iter().all(|s| (-1.0..=1.0).contains(s)), "{rate} Hz");
    }
}

fn float_wav(rate: u32, values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut fmt = Vec::new();
    for field in [3u16, 1] {
        fmt.extend_from_slice(&field.to_le_bytes()); // IEEE float, mono
    }
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * 4).to_le_bytes());
    for field in [4u16, 32, 0] {
        fmt.extend_from_slice(&field.to_le_bytes()); // block align, bits, extension size
    }
    let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    wav.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    wav.extend_from_slice(&fmt);
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    let riff = (wav.len() - 8) as u32;
    wav[4..8].copy_from_slice(&riff.to_le_bytes());
    wav
}

/// A Hugging Face checkpoint whose config.json declares absurd dimensions: the reader sized a
/// buffer from the requested shape before reading anything (`num_mel_bins` = u64::MAX gave a
/// capacity overflow panic; a fused tensor starting with zeros, an attempt at terabytes).
/// Now the stored tensors are read and checked first.
#[test]
fn hugging_face_reader_checks_stored_shapes_before_allocating() {
    let dir = std::env::temp_dir().join(format!("tingxie-fuzz-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = json!({"num_mel_bins": u64::MAX, "max_source_positions": 3, "d_model": 4, "encoder_attention_heads": 2,
        "encoder_layers": 1, "vocab_size": 5, "max_target_positions": 3, "decoder_attention_heads": 2, "decoder_layers": 1});
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    write_safetensors(&dir, &[("model.encoder.conv1.weight", vec![4, 2, 3]), ("model.decoder.layers.0.encoder_attn.v_proj.bias", vec![4])]);
    let source = tingxie::whisper::weights::open(&dir).unwrap();
    let c = source.config().clone();
    assert!(source.tensor("encoder/conv1/weight", &[c.n_audio_state, c.n_mels, 3]).is_err());
    let huge = 1usize << 40;
    assert!(source.tensor("decoder/layer_0/attention/linear_1/bias", &[2 * huge]).is_err());
    let fused = source.tensor("decoder/layer_0/attention/linear_1/bias", &[8]).unwrap();
    assert_eq!(fused.data.len(), 8);
    assert_eq!(&fused.data[..4], &[0.0; 4], "the key bias is zeros");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Float32 tensors of the given names and shapes, values 0.5.
fn write_safetensors(dir: &Path, tensors: &[(&str, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape) in tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        data.extend((0..n).flat_map(|_| 0.5f32.to_le_bytes()));
        header.insert(name.to_string(), json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}));
    }
    let header = Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend_from_slice(&data);
    std::fs::write(dir.join("model.safetensors"), file).unwrap();
}
