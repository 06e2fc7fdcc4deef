//! Transcripts of the real model against faster-whisper 1.2.1 on the same weights
//! (`../shared/fixtures/speech/faster-whisper-segments*.json`): token ids, window starts and
//! segment times must be equal on every lossless 16 kHz file. On `TINGXIE_TEST_DEVICE` (`cpu`:
//! the CPU kernels; `cpu-generic`: the generic implementation, as every GPU runs it).

mod common;

use serde_json::Value;
use tingxie::transcript::Transcript;
use tingxie::whisper::DecodeOptions;

fn reference(name: &str) -> Value {
    let path = common::fixtures().join("speech").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Files decoded to the same samples as faster-whisper's FFmpeg: 16 kHz PCM WAV and FLAC.
fn lossless_16k_files() -> Vec<String> {
    common::read_tsv(&common::fixtures().join("speech/manifest.tsv"))
        .into_iter()
        .filter(|r| r["sample_rate"] == "16000" && r["channels"] == "1" && (r["codec"] == "pcm_s16le" || r["codec"] == "flac"))
        .map(|r| r["file"].clone())
        .collect()
}

fn transcribe(file: &str, options: &DecodeOptions) -> Transcript {
    let samples = tingxie::audio::decode_file(&common::speech(file)).unwrap();
    common::device_transcriber().transcribe(&samples, options).unwrap()
}

/// Differences between our transcript and the reference entry of one file, empty when equal.
fn differences(ours: &Transcript, expected: &Value) -> Vec<String> {
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

fn check_all(reference_file: &str, options: &DecodeOptions, skip: &[&str]) {
    let reference = reference(reference_file);
    let mut failures = Vec::new();
    let files = lossless_16k_files();
    assert_eq!(files.len(), 29, "corpus changed: {files:?}");
    for file in files.iter().filter(|f| !skip.contains(&f.as_str())) {
        let ours = transcribe(file, options);
        let problems = differences(&ours, &reference["files"][file.as_str()]);
        eprintln!("{file}: {}", if problems.is_empty() { "ok".to_string() } else { problems.join("; ") });
        if !problems.is_empty() {
            failures.push(format!("{file}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} file(s) differ from {reference_file}:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn greedy_matches_faster_whisper_token_for_token() {
    check_all("faster-whisper-segments.json", &DecodeOptions::greedy(), &[]);
}

#[test]
fn beam5_matches_faster_whisper_token_for_token() {
    // tone_noise_5s.wav needs the temperature-0.8 fallback: random sampling, not reproducible.
    check_all("faster-whisper-segments-beam5.json", &DecodeOptions::default(), &["tone_noise_5s.wav"]);
}

#[test]
fn resampled_and_lossy_files_stay_within_the_reference_wer() {
    let manifest = common::read_tsv(&common::fixtures().join("speech/manifest.tsv"));
    let reference = common::read_tsv(&common::fixtures().join("speech/faster-whisper.tsv"));
    for file in ["s01_44k1_stereo.wav", "s05.mp3", "s08.ogg", "s10.opus"] {
        let spoken = &manifest.iter().find(|r| r["file"] == file).unwrap()["reference_text"];
        let theirs = &reference.iter().find(|r| r["file"] == file && r["mode"] == "greedy").unwrap();
        let theirs_wer: f64 = theirs["wer"].parse().unwrap();
        let ours = transcribe(file, &DecodeOptions::greedy());
        let ours_wer = common::wer(spoken, &ours.text);
        eprintln!("{file}: WER {ours_wer:.4} (faster-whisper {theirs_wer:.4}): {}", ours.text);
        assert!(ours_wer <= theirs_wer + 0.10, "{file}: WER {ours_wer:.4} > {theirs_wer:.4} + 0.10: {:?}", ours.text);
    }
}
