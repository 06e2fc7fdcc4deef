//! Fixture access shared by the integration tests: the real model, the speech corpus and the
//! faster-whisper references described in `../shared/fixtures/README.md`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;
use tingxie::transcript::Transcript;

use tingxie::device::{AnyTranscriber, CpuBackend, DeviceKind};
use tingxie::whisper::Transcriber;

/// `../shared/fixtures`, or `TINGXIE_FIXTURES`.
pub fn fixtures() -> PathBuf {
    std::env::var_os("TINGXIE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

pub fn speech(file: &str) -> PathBuf {
    fixtures().join("speech").join(file)
}

fn existing_dir(var: &str, default: &str, how: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(default));
    assert!(dir.is_dir(), "test model missing at {} (set {var}); create it with {how}", dir.display());
    dir
}

/// Whisper tiny.en in CTranslate2 layout (`make models`).
pub fn model_dir() -> PathBuf {
    existing_dir("TINGXIE_TEST_MODEL", "models/whisper-tiny-en", "`make models`")
}

/// The same weights converted to Hugging Face layout by `ct2_to_hf.py` (`make models`).
pub fn hf_model_dir() -> PathBuf {
    existing_dir("TINGXIE_TEST_MODEL_HF", "models/whisper-tiny-en-hf", "`make models`")
}

/// Whisper base, multilingual, CTranslate2 layout (`make models`:
/// `../shared/fixtures/fetch-whisper-base-multilingual.sh`).
pub fn base_model_dir() -> PathBuf {
    existing_dir("TINGXIE_TEST_MODEL_BASE", "models/whisper-base", "`make models`")
}

/// The same weights in Hugging Face layout (`make models`, `ct2_to_hf.py`).
pub fn base_hf_model_dir() -> PathBuf {
    existing_dir("TINGXIE_TEST_MODEL_BASE_HF", "models/whisper-base-hf", "`make models`")
}

/// faster-whisper's output with base on the fixtures, one file per mode
/// (`tests/reference/faster_whisper_references.py`, run by `make models`).
pub fn base_reference(mode: &str) -> Value {
    let dir = existing_dir("TINGXIE_TEST_REFERENCES_BASE", "models/whisper-base/faster-whisper", "`make models`");
    let path = dir.join(format!("{mode}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Silero VAD v6 (`make models`: `scripts/fetch-vad.sh`).
pub fn vad_dir() -> PathBuf {
    existing_dir("TINGXIE_TEST_VAD", "models/silero-vad", "`make models`")
}

/// faster-whisper's VAD, `vad_filter` and batched output on the fixtures, one file per mode
/// (`tests/reference/vad_references.py`, run by `make models`).
pub fn vad_reference(mode: &str) -> Value {
    let dir = existing_dir("TINGXIE_TEST_REFERENCES_VAD", "models/silero-vad/faster-whisper", "`make models`");
    let path = dir.join(format!("{mode}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// One CPU transcriber per test binary: loading takes a moment and tests share it.
pub fn transcriber() -> &'static Transcriber<CpuBackend> {
    static T: OnceLock<Transcriber<CpuBackend>> = OnceLock::new();
    T.get_or_init(|| Transcriber::load(&model_dir(), &Default::default()).expect("load model"))
}

/// The device the parity and batched suites run on: `TINGXIE_TEST_DEVICE` (default `cpu`, the
/// CPU kernels; `cpu-generic` runs the implementation every GPU runs).
pub fn test_device() -> DeviceKind {
    std::env::var("TINGXIE_TEST_DEVICE").map(|d| d.parse().expect("TINGXIE_TEST_DEVICE")).unwrap_or(DeviceKind::Cpu)
}

/// One transcriber on [`test_device`] per test binary.
pub fn device_transcriber() -> &'static AnyTranscriber {
    static T: OnceLock<AnyTranscriber> = OnceLock::new();
    T.get_or_init(|| {
        let device = test_device();
        eprintln!("device: {device}");
        AnyTranscriber::load(&model_dir(), device).expect("load model")
    })
}

/// A faster-whisper reference file of `../shared/fixtures/speech`.
pub fn reference(name: &str) -> Value {
    let path = fixtures().join("speech").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Files decoded to the same samples as faster-whisper's FFmpeg: 16 kHz PCM WAV and FLAC.
pub fn lossless_16k_files() -> Vec<String> {
    read_tsv(&fixtures().join("speech/manifest.tsv"))
        .into_iter()
        .filter(|r| r["sample_rate"] == "16000" && r["channels"] == "1" && (r["codec"] == "pcm_s16le" || r["codec"] == "flac"))
        .map(|r| r["file"].clone())
        .collect()
}

/// Differences between our transcript and the reference entry of one file, empty when equal.
pub fn differences(ours: &Transcript, expected: &Value) -> Vec<String> {
    let expected = expected["segments"].as_array().unwrap();
    let mut problems = Vec::new();
    if ours.segments.len() != expected.len() {
        problems.push(format!("{} segments, expected {}", ours.segments.len(), expected.len()));
    }
    for (s, e) in ours.segments.iter().zip(expected) {
        let tokens: Vec<u32> = e["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect();
        if s.tokens != tokens {
            let at = s.tokens.iter().zip(&tokens).position(|(a, b)| a != b).unwrap_or(s.tokens.len().min(tokens.len()));
            problems.push(format!(
                "segment {}: tokens differ from index {at}: ours {:?} vs {:?} ({:?} vs {:?})",
                s.id,
                &s.tokens[at..(at + 5).min(s.tokens.len())],
                &tokens[at..(at + 5).min(tokens.len())],
                s.text,
                e["text"].as_str().unwrap()
            ));
            break;
        }
        if s.seek as u64 != e["seek"].as_u64().unwrap() {
            problems.push(format!("segment {}: seek {} vs {}", s.id, s.seek, e["seek"]));
        }
        for (ours, key) in [(s.start, "start"), (s.end, "end")] {
            let theirs = e[key].as_f64().unwrap();
            if (ours - theirs).abs() > 0.0015 {
                problems.push(format!("segment {}: {key} {ours:.3} vs {theirs:.3}", s.id));
            }
        }
    }
    problems
}

/// Rows of a tab-separated file with a header, as maps from column name to value.
pub fn read_tsv(path: &Path) -> Vec<std::collections::HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines.filter(|l| !l.is_empty()).map(|l| header.iter().map(|h| h.to_string()).zip(l.split('\t').map(str::to_string)).collect()).collect()
}

/// A float32 NPY v1 array: (shape, data).
pub fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an NPY file");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.contains("'descr': '<f4'") && header.contains("'fortran_order': False"), "{header}");
    let shape_text = header.split("'shape': (").nth(1).unwrap().split(')').next().unwrap();
    let shape: Vec<usize> = shape_text.split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let data = bytes[10 + header_len..].chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (shape, data)
}

#[allow(unused_imports)]
pub use tingxie::transcript::wer;
