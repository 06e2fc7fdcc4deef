//! The code every GPU runs, through a JIT backend on this CPU machine: wgpu on Mesa's software
//! Vulkan driver (lavapipe) runs the same CubeCL compilation, fusion and autotune as CUDA.
//! Needs a Vulkan device (`apt-get install mesa-vulkan-drivers libvulkan1`, done by
//! `scripts/system-packages.sh`).
//!
//! Every run starts from an empty kernel cache: the first warm-up compiles and tunes, a second
//! process on the same cache does not tune again.

mod common;

use std::path::Path;
use std::process::Command;

use tingxie::device::{self, AnyTranscriber, DeviceKind};
use tingxie::kernels::{self, KernelCounts};
use tingxie::whisper::DecodeOptions;

/// Five short files and one longer than a window (several windows, prompts of previous text).
const FILES: [&str; 6] = ["s01.wav", "s02.wav", "s03.wav", "s04.wav", "s06.wav", "long_90s.wav"];

/// A process of its own: `tingxie transcribe --warm-up --timings` of one file on `cache`.
/// Returns the kernel counts of its warm-up and of its file.
fn second_process(cache: &Path, file: &str) -> (KernelCounts, KernelCounts) {
    let out = Command::new(env!("CARGO_BIN_EXE_tingxie"))
        .args([
            "transcribe",
            "--device",
            "wgpu",
            "--warm-up",
            "--timings",
            "--format",
            "text",
            "--beam-size",
            "1",
            "--temperature",
            "0",
            "--model",
        ])
        .arg(common::model_dir())
        .arg("--kernel-cache-dir")
        .arg(cache)
        .arg(common::speech(file))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let expected = common::reference("faster-whisper-segments.json")["files"][file]["text"].as_str().unwrap().trim().to_string();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
    let lines: Vec<serde_json::Value> = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let counts = |key: &str| {
        let line = lines.iter().find(|v| v.get(key).is_some()).unwrap_or_else(|| panic!("no `{key}` line in {stderr}"));
        KernelCounts {
            kernels_compiled: line["kernels_compiled"].as_u64().expect("kernels_compiled"),
            autotune_runs: line["autotune_runs"].as_u64().expect("autotune_runs"),
        }
    };
    (counts("warm_up_s"), counts("file"))
}

#[test]
fn wgpu_matches_faster_whisper_compiles_nothing_after_warm_up_and_keeps_its_tuning() {
    let cache = std::env::temp_dir().join(format!("tingxie-test-kernels-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    kernels::configure(&cache, DeviceKind::Wgpu);
    let model = AnyTranscriber::load(&common::model_dir(), DeviceKind::Wgpu).expect("wgpu device (lavapipe)");
    let start = kernels::settled_counts().expect("counters on");
    device::warm_up(&model, 1, 0).unwrap();
    let first_warm_up = kernels::settled_counts().unwrap() - start;
    eprintln!("warm-up from an empty cache: {first_warm_up:?}");
    assert!(first_warm_up.kernels_compiled > 0 && first_warm_up.autotune_runs > 0, "{first_warm_up:?}");

    let reference = common::reference("faster-whisper-segments.json");
    let mut failures = Vec::new();
    for file in FILES {
        let samples = tingxie::audio::decode_file(&common::speech(file)).unwrap();
        let before = kernels::settled_counts().unwrap();
        let ours = model.transcribe(&samples, &DecodeOptions::greedy()).unwrap();
        let during = kernels::settled_counts().unwrap() - before;
        let mut problems = common::differences(&ours, &reference["files"][file]);
        if during != KernelCounts::default() {
            problems.push(format!("compiled after the warm-up: {during:?}"));
        }
        eprintln!("{file} ({:.1} s): {}", ours.duration, if problems.is_empty() { "ok".into() } else { problems.join("; ") });
        if !problems.is_empty() {
            failures.push(format!("{file}: {}", problems.join("; ")));
        }
    }
    assert!(failures.is_empty(), "on wgpu:\n{}", failures.join("\n"));

    // A second process on the now warm cache: no tuning, fewer kernels (WGSL itself is not
    // cached: the kernels the tunings chose are compiled again), none for its file.
    let (warm_up, file) = second_process(&cache, "s04.wav");
    eprintln!("second process: warm-up {warm_up:?}, file {file:?}");
    std::fs::remove_dir_all(&cache).unwrap();
    assert_eq!(warm_up.autotune_runs, 0, "the warm cache was not used: {warm_up:?}");
    assert!(warm_up.kernels_compiled < first_warm_up.kernels_compiled, "{warm_up:?} vs {first_warm_up:?}");
    assert_eq!(file, KernelCounts::default(), "the second process compiled for its file");
}
