//! Silero VAD and the modes built on it, against faster-whisper 1.2.1 (issue 19): frame
//! probabilities and speech timestamps on every 16 kHz fixture; `vad_filter` token ids and
//! restored times; the batched pipeline (batch 8) token for token, and its accuracy on
//! `long_5min.wav`; nothing made up over silence and noise. References: `make models`
//! (`tests/reference/vad_references.py`). The Whisper tiny.en runs on `TINGXIE_TEST_DEVICE`.

mod common;

use std::sync::OnceLock;

use serde_json::Value;
use tingxie::device::{AnyTranscriber, CpuBackend, GenericCpu};
use tingxie::vad::{speech_timestamps, SileroVad, SpeechChunk, VadOptions};
use tingxie::whisper::DecodeOptions;

fn tiny() -> &'static AnyTranscriber {
    static T: OnceLock<AnyTranscriber> = OnceLock::new();
    T.get_or_init(|| {
        let mut model = AnyTranscriber::load(&common::model_dir(), common::test_device()).expect("load tiny.en");
        model.add_vad(&common::vad_dir()).expect("load Silero VAD");
        model
    })
}

fn base() -> &'static AnyTranscriber {
    static T: OnceLock<AnyTranscriber> = OnceLock::new();
    T.get_or_init(|| {
        let mut model = AnyTranscriber::load(&common::base_model_dir(), common::test_device()).expect("load base");
        model.add_vad(&common::vad_dir()).expect("load Silero VAD");
        model
    })
}

fn samples(name: &str) -> Vec<f32> {
    tingxie::audio::decode_file(&common::fixtures().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn chunks(value: &Value) -> Vec<SpeechChunk> {
    serde_json::from_value(value.clone()).expect("speech chunks")
}

/// Probabilities within 1e-4 of faster-whisper's ONNX run, and its speech timestamps sample for
/// sample, with the sequential defaults and the batched options, on one backend.
fn check_vad<B: tingxie::whisper::backend::WhisperBackend>(vad: &SileroVad<B>, backend: &str) {
    let reference = common::vad_reference("vad");
    let files = reference["files"].as_object().expect("files");
    assert!(files.len() >= 39, "{} files", files.len());
    let mut failures = Vec::new();
    for (name, expected) in files {
        let audio = samples(name);
        assert_eq!(audio.len() as u64, expected["samples"].as_u64().unwrap(), "{name}: decoded length");
        let ours = vad.probabilities(&audio);
        let theirs: Vec<f32> = expected["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap() as f32).collect();
        assert_eq!(ours.len(), theirs.len(), "{name}: frames");
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        if worst > 1e-4 {
            failures.push(format!("{name}: probability differs by {worst}"));
        }
        // Timestamps from faster-whisper's own probabilities isolate the algorithm; from ours,
        // the whole path.
        for (key, options) in [("timestamps", VadOptions::default()), ("timestamps_30s", VadOptions::for_batches(30.0))] {
            let want = chunks(&expected[key]);
            for (probs, what) in [(&theirs, "their probabilities"), (&ours, "our probabilities")] {
                let got = speech_timestamps(probs, audio.len(), &options);
                if got != want {
                    failures.push(format!("{name} {key} from {what}: {got:?} vs {want:?}"));
                }
            }
        }
        eprintln!("{backend} {name}: {} frames, worst difference {worst:.2e}", ours.len());
    }
    assert!(failures.is_empty(), "{backend}:\n{}", failures.join("\n"));
}

#[test]
fn probabilities_and_speech_timestamps_match_faster_whisper() {
    let dir = common::vad_dir();
    check_vad(&SileroVad::<CpuBackend>::load(&dir, &Default::default()).unwrap(), "cpu");
    check_vad(&SileroVad::<GenericCpu>::load(&dir, &Default::default()).unwrap(), "cpu-generic");
}

/// Every file of a reference mode through the model it names, with `options` and its language.
fn check_transcripts(mode: &str, options: DecodeOptions) {
    let reference = common::vad_reference(mode);
    let files = reference["files"].as_object().expect("files");
    let mut failures = Vec::new();
    for (name, expected) in files {
        let model = if expected["model"] == "base" { base() } else { tiny() };
        let language = expected["language"].as_str().map(str::to_string);
        let ours =
            model.transcribe(&samples(name), &DecodeOptions { language, ..options.clone() }).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut problems = common::differences(&ours, expected);
        let after = expected["duration_after_vad"].as_f64().unwrap();
        if (ours.duration_after_vad.unwrap_or(-1.0) - after).abs() > 1e-9 {
            problems.push(format!("duration_after_vad {:?} vs {after}", ours.duration_after_vad));
        }
        if ours.text != expected["text"].as_str().unwrap() {
            problems.push(format!("text {:?} vs {:?}", ours.text, expected["text"]));
        }
        eprintln!("{mode} {name}: {}", if problems.is_empty() { "ok".to_string() } else { problems.join("; ") });
        if !problems.is_empty() {
            failures.push(format!("{name}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{} of {} differ from faster-whisper ({mode}):\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn vad_filter_matches_faster_whisper_token_for_token() {
    check_transcripts("vad_filter", DecodeOptions { vad_filter: Some(true), ..DecodeOptions::greedy() });
}

#[test]
fn batches_of_8_match_faster_whispers_batched_pipeline() {
    check_transcripts("batched", DecodeOptions { batch_size: 8, ..DecodeOptions::greedy() });
}

#[test]
fn batched_accuracy_on_long_5min_is_no_worse_than_faster_whisper_batched() {
    let truth = std::fs::read_to_string(common::speech("long_5min.txt")).ok().or_else(|| {
        common::read_tsv(&common::fixtures().join("speech/manifest.tsv"))
            .into_iter()
            .find(|r| r["file"] == "long_5min.wav")
            .map(|r| r["reference_text"].clone())
    });
    let truth = truth.expect("a reference text for long_5min.wav");
    let ours = tiny()
        .transcribe(
            &samples("speech/long_5min.wav"),
            &DecodeOptions { batch_size: 8, language: Some("en".into()), ..DecodeOptions::greedy() },
        )
        .unwrap();
    let theirs = common::vad_reference("batched")["files"]["speech/long_5min.wav"]["text"].as_str().unwrap().to_string();
    let (ours_wer, theirs_wer) = (common::wer(&truth, &ours.text), common::wer(&truth, &theirs));
    eprintln!("long_5min.wav batched WER: tingxie {ours_wer:.4}, faster-whisper {theirs_wer:.4}");
    assert!(ours_wer <= theirs_wer + 1e-12, "WER {ours_wer} > faster-whisper's {theirs_wer}");
}

#[test]
fn silence_and_noise_give_an_empty_transcript() {
    let mut noise = vec![0.0f32; 16_000 * 40];
    let mut seed = 12345u64;
    for x in &mut noise {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        *x = ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
    }
    let files = [
        ("speech/silence_10s.wav", samples("speech/silence_10s.wav")),
        ("speech/tone_noise_5s.wav", samples("speech/tone_noise_5s.wav")),
        ("40 s of low white noise", noise),
        ("no samples at all", Vec::new()),
    ];
    for (name, audio) in &files {
        for options in [
            DecodeOptions { vad_filter: Some(true), ..DecodeOptions::default() },
            DecodeOptions { batch_size: 8, ..DecodeOptions::greedy() },
        ] {
            let transcript = tiny().transcribe(audio, &options).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(transcript.text.is_empty() && transcript.segments.is_empty(), "{name} ({options:?}): {:?}", transcript.text);
            assert_eq!(transcript.duration_after_vad, Some(0.0), "{name}");
        }
    }
}

#[test]
fn a_transcriber_without_the_vad_says_what_is_missing() {
    let plain = AnyTranscriber::load(&common::model_dir(), common::test_device()).unwrap();
    let audio = samples("speech/s01.wav");
    for options in
        [DecodeOptions { vad_filter: Some(true), ..DecodeOptions::greedy() }, DecodeOptions { batch_size: 4, ..DecodeOptions::greedy() }]
    {
        let error = plain.transcribe(&audio, &options).unwrap_err().to_string();
        assert!(error.contains("VAD") && error.contains("TINGXIE_VAD_MODEL"), "{error}");
    }
    // Batches without the VAD: audio under 30 s is one chunk.
    let one = plain.transcribe(&audio, &DecodeOptions { batch_size: 4, vad_filter: Some(false), ..DecodeOptions::greedy() }).unwrap();
    assert_eq!(one.segments.len(), 1);
}

#[test]
fn batching_does_not_change_a_chunks_result() {
    let audio = samples("speech/long_90s.wav");
    let tokens = |batch_size: usize| -> Vec<Vec<u32>> {
        let options = DecodeOptions { batch_size, language: Some("en".into()), ..DecodeOptions::greedy() };
        tiny().transcribe(&audio, &options).unwrap().segments.into_iter().map(|s| s.tokens).collect()
    };
    let together = tokens(8);
    assert!(together.len() >= 3, "{} chunks", together.len());
    assert_eq!(together, tokens(1), "decoding chunks side by side changed one");
}

#[test]
fn beam_search_and_validation_in_the_batched_mode() {
    let audio = samples("speech/s01.wav");
    let sequential = tiny().transcribe(&audio, &DecodeOptions::default()).unwrap();
    let batched = tiny().transcribe(&audio, &DecodeOptions { batch_size: 2, ..DecodeOptions::default() }).unwrap();
    assert_eq!(batched.text, sequential.text);
    let error = tiny().transcribe(&audio, &DecodeOptions { batch_size: 65, ..DecodeOptions::greedy() }).unwrap_err();
    assert!(error.to_string().contains("batch_size"), "{error}");
    let long = samples("speech/long_90s.wav");
    let error = tiny().transcribe(&long, &DecodeOptions { batch_size: 8, vad_filter: Some(false), ..DecodeOptions::greedy() }).unwrap_err();
    assert!(error.to_string().contains("vad_filter"), "{error}");
}
