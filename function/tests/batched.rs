//! The batched mode (independent windows cut at pauses, several decoded at once) on the real
//! model. It is not faster-whisper's sequential algorithm, so it is held to the reference's
//! word error rate rather than its tokens; and batching must not change any window's result.

mod common;

use tingxie::transcript::Transcript;
use tingxie::whisper::DecodeOptions;

fn transcribe(file: &str, options: &DecodeOptions) -> Transcript {
    let samples = tingxie::audio::decode_file(&common::speech(file)).unwrap();
    common::device_transcriber().transcribe(&samples, options).unwrap()
}

fn tokens(t: &Transcript) -> Vec<(usize, Vec<u32>)> {
    t.segments.iter().map(|s| (s.seek, s.tokens.clone())).collect()
}

#[test]
fn batched_windows_transcribe_a_long_recording_as_well_as_the_reference() {
    let file = "long_90s.wav";
    let manifest = common::read_tsv(&common::fixtures().join("speech/manifest.tsv"));
    let spoken = &manifest.iter().find(|r| r["file"] == file).unwrap()["reference_text"];
    let reference = common::read_tsv(&common::fixtures().join("speech/faster-whisper.tsv"));
    let theirs: f64 = reference.iter().find(|r| r["file"] == file && r["mode"] == "greedy").unwrap()["wer"].parse().unwrap();

    let batched = transcribe(file, &DecodeOptions { batch_size: 4, ..DecodeOptions::greedy() });
    let one_by_one = transcribe(file, &DecodeOptions { batch_size: 1, ..DecodeOptions::greedy() });
    let ours = common::wer(spoken, &batched.text);
    eprintln!("{file} batched: WER {ours:.4} (faster-whisper sequential {theirs:.4}): {}", batched.text);
    assert!(ours <= theirs + 0.05, "WER {ours:.4} > {theirs:.4} + 0.05: {:?}", batched.text);

    // 90 s is cut into 4 windows; decoding them side by side gives what each gives alone.
    let windows: std::collections::BTreeSet<usize> = batched.segments.iter().map(|s| s.seek).collect();
    assert!(windows.len() >= 4, "segments from {} windows: {windows:?}", windows.len());
    assert_eq!(tokens(&batched), tokens(&one_by_one), "batching changed a window's tokens");

    // Segments are in order, inside the audio, and each inside the window it came from.
    for pair in batched.segments.windows(2) {
        assert!(pair[0].end <= pair[1].start + 1e-9, "overlap: {:?} then {:?}", (pair[0].start, pair[0].end), (pair[1].start, pair[1].end));
    }
    for s in &batched.segments {
        let window_start = s.seek as f64 * 0.01;
        assert!(s.start >= window_start - 1e-9 && s.start < s.end && s.end <= window_start + 30.0 + 1e-9, "{s:?}");
        assert!(s.end <= batched.duration, "{s:?} past {}", batched.duration);
    }
}

#[test]
fn silence_is_skipped_in_batched_mode_too() {
    let t = transcribe("silence_10s.wav", &DecodeOptions { batch_size: 8, ..DecodeOptions::greedy() });
    assert_eq!(t.text, "", "{t:?}");
}

#[test]
fn beam_search_works_in_batched_mode() {
    // Beam search decodes one window at a time over the batched encoder output.
    let file = "s01.wav";
    let sequential = transcribe(file, &DecodeOptions::default());
    let batched = transcribe(file, &DecodeOptions { batch_size: 2, ..DecodeOptions::default() });
    assert_eq!(batched.text, sequential.text);
}

#[test]
fn batch_size_is_validated() {
    let samples = tingxie::audio::decode_file(&common::speech("s01.wav")).unwrap();
    let err = common::device_transcriber().transcribe(&samples, &DecodeOptions { batch_size: 65, ..DecodeOptions::greedy() }).unwrap_err();
    assert!(err.to_string().contains("batch_size"), "{err}");
}
