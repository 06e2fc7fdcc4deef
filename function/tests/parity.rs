//! Transcripts of the real model against faster-whisper 1.2.1 on the same weights
//! (`../shared/fixtures/speech/faster-whisper-segments*.json`): token ids, window starts and
//! segment times must be equal on every lossless 16 kHz file. On `TINGXIE_TEST_DEVICE` (`cpu`:
//! the CPU kernels; `cpu-generic`: the generic implementation, as every GPU runs it).

mod common;

use tingxie::transcript::Transcript;
use tingxie::whisper::DecodeOptions;

fn transcribe(file: &str, options: &DecodeOptions) -> Transcript {
    let samples = tingxie::audio::decode_file(&common::speech(file)).unwrap();
    common::device_transcriber().transcribe(&samples, options).unwrap()
}

fn check_all(reference_file: &str, options: &DecodeOptions, skip: &[&str]) {
    let reference = common::reference(reference_file);
    let mut failures = Vec::new();
    let files = common::lossless_16k_files();
    assert_eq!(files.len(), 29, "corpus changed: {files:?}");
    for file in files.iter().filter(|f| !skip.contains(&f.as_str())) {
        let ours = transcribe(file, options);
        let problems = common::differences(&ours, &reference["files"][file.as_str()]);
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
