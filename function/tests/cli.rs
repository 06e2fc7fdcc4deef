//! The `tingxie transcribe` command as a user runs it: real binary, real model, real files.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tingxie(args: &[&str], files: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tingxie"))
        .arg("transcribe")
        .arg("--model")
        .arg(common::model_dir())
        .args(args)
        .args(files)
        .output()
        .expect("run tingxie")
}

fn scratch(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tingxie-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A 44-byte PCM WAV header with the given channel count and sample rate, then `data`.
fn wav(channels: u16, rate: u32, data: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&(rate * channels as u32 * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data.len() as u32).to_le_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn text_format_prints_only_the_transcript() {
    let out = tingxie(&["--format", "text", "--beam-size", "1", "--temperature", "0"], &[&common::speech("s01.wav")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "The quick roundfire stump over the lazy dog.\n");
}

#[test]
fn json_verbose_json_srt_and_vtt_are_well_formed() {
    let file = common::speech("s02.wav");
    let json: serde_json::Value = serde_json::from_slice(&tingxie(&["--format", "json"], &[&file]).stdout).unwrap();
    assert!(json["text"].as_str().unwrap().len() > 10);
    let verbose: serde_json::Value = serde_json::from_slice(&tingxie(&["--format", "verbose_json"], &[&file]).stdout).unwrap();
    assert_eq!(verbose["language"], "en");
    assert!(verbose["duration"].as_f64().unwrap() > 1.0);
    assert_eq!(verbose["text"], json["text"]);
    assert!(!verbose["segments"].as_array().unwrap().is_empty());
    let srt = String::from_utf8(tingxie(&["--format", "srt"], &[&file]).stdout).unwrap();
    assert!(srt.starts_with("1\n00:00:0") && srt.contains(" --> "), "{srt}");
    let vtt = String::from_utf8(tingxie(&["--format", "vtt"], &[&file]).stdout).unwrap();
    assert!(vtt.starts_with("WEBVTT\n\n00:00:0"), "{vtt}");
}

#[test]
fn a_prompt_steers_the_spelling() {
    // Without a prompt tiny.en hears "roundfire stump"; the prompt supplies the words.
    let prompt = "The quick brown fox jumps over the lazy dog.";
    let out = tingxie(&["--beam-size", "1", "--prompt", prompt], &[&common::speech("s01.wav")]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("brown fox"), "{text}");
}

#[test]
fn bad_inputs_fail_clearly_and_the_good_files_still_get_transcribed() {
    let cases: Vec<(PathBuf, &str)> = vec![
        (scratch("empty.wav", b""), "empty"),
        (scratch("truncated.wav", &wav(1, 16000, &[0; 2000])[..30]), "truncated"),
        // A header that declares 2 s, then 0.5 s of speech: cut short in transit.
        (scratch("cut.wav", &wav(1, 16000, &std::fs::read(common::speech("s01.wav")).unwrap()[44..44 + 64000])[..44 + 16000]), "truncated"),
        (scratch("random.bin", &(0..1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect::<Vec<_>>()), "invalid audio"),
        (scratch("notes.txt", b"this is a text file, not audio\n"), "text"),
        (scratch("zero-channels.wav", &wav(0, 16000, &[0; 3200])), "0 channels"),
        (scratch("zero-rate.wav", &wav(1, 0, &[0; 3200])), "0 Hz"),
        (PathBuf::from("/nonexistent/audio.wav"), "No such file"),
    ];
    for (path, expected) in &cases {
        let out = tingxie(&[], &[path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.contains(&path.display().to_string()) && stderr.contains(expected), "{}: {stderr}", path.display());
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // One bad file among good ones: the good one is transcribed, the exit code says failure.
    let out = tingxie(&["--beam-size", "1"], &[&cases[0].0, &common::speech("s01.wav")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lazy dog"));
}

#[test]
fn bad_arguments_and_models_are_refused() {
    let s01 = common::speech("s01.wav");
    let out = tingxie(&["--format", "docx"], &[&s01]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("docx"));
    let out = tingxie(&["--language", "de"], &[&s01]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("English-only"));
    let out = Command::new(env!("CARGO_BIN_EXE_tingxie")).args(["transcribe", "--model", "/nonexistent-model"]).arg(&s01).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot load model"));
}

#[test]
fn hugging_face_layout_transcribes_the_same() {
    let s03 = common::speech("s03.wav");
    let ct2 = tingxie(&["--beam-size", "1", "--format", "verbose_json"], &[&s03]);
    let hf = Command::new(env!("CARGO_BIN_EXE_tingxie"))
        .args(["transcribe", "--beam-size", "1", "--format", "verbose_json", "--model"])
        .arg(common::hf_model_dir())
        .arg(&s03)
        .output()
        .unwrap();
    assert!(hf.status.success(), "{}", String::from_utf8_lossy(&hf.stderr));
    assert_eq!(ct2.stdout, hf.stdout);
}

#[test]
fn a_model_uri_is_pulled_once_into_the_node_cache() {
    let cache = std::env::temp_dir().join(format!("tingxie-cli-cache-{}", std::process::id()));
    let uri = format!("file://{}/", common::model_dir().canonicalize().unwrap().display());
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_tingxie")).env("TINGXIE_CACHE_DIR", &cache).args(args).output().unwrap();
    let s01 = common::speech("s01.wav");
    let s01 = s01.to_str().unwrap();
    let transcribe = ["transcribe", "--timings", "--beam-size", "1", "--model", &uri, s01];
    let cold = run(&transcribe);
    assert!(cold.status.success(), "{}", String::from_utf8_lossy(&cold.stderr));
    assert!(String::from_utf8_lossy(&cold.stderr).contains(r#""cache":"miss""#), "{}", String::from_utf8_lossy(&cold.stderr));
    assert!(String::from_utf8_lossy(&cold.stdout).contains("lazy dog"));
    let warm = run(&transcribe);
    assert!(String::from_utf8_lossy(&warm.stderr).contains(r#""cache":"hit""#), "{}", String::from_utf8_lossy(&warm.stderr));
    assert_eq!(warm.stdout, cold.stdout);
    let ls = run(&["cache", "ls"]);
    assert!(ls.status.success());
    let listed = String::from_utf8_lossy(&ls.stdout);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains(&uri) || listed.contains("whisper-tiny-en"), "{listed}");
    assert!(run(&["cache", "verify"]).status.success());
    // A cached file damaged on disk is found by verify (exit 1) and repaired by the next pull.
    let cached_bin = std::fs::read_dir(cache.join("models"))
        .unwrap()
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).unwrap().flatten())
        .map(|v| v.path().join("model/model.bin"))
        .find(|p| p.is_file())
        .expect("cached model.bin");
    let mut bytes = std::fs::read(&cached_bin).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&cached_bin, &bytes).unwrap();
    assert_eq!(run(&["cache", "verify"]).status.code(), Some(1));
    let repaired = run(&transcribe);
    assert!(repaired.status.success(), "{}", String::from_utf8_lossy(&repaired.stderr));
    assert_eq!(repaired.stdout, cold.stdout);
    std::fs::remove_dir_all(&cache).unwrap();
}
