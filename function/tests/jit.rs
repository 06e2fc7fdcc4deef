//! The code every GPU runs, through a JIT backend on this CPU machine: wgpu on Mesa's software
//! Vulkan driver (lavapipe) runs the same CubeCL compilation, fusion and autotune as CUDA.
//! Needs a Vulkan device (`apt-get install mesa-vulkan-drivers libvulkan1`, done by
//! `scripts/system-packages.sh`).
//!
//! The kernel cache of the in-process test is `TINGXIE_TEST_KERNEL_CACHE` (CI keeps it in its
//! build folder, so autotuning is paid once per machine); the two-process test starts from an
//! empty cache every time.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use tingxie::device::{self, AnyTranscriber, DeviceKind};
use tingxie::kernels::{self, KernelCounts};
use tingxie::whisper::DecodeOptions;

/// Five short files and one longer than a window (several windows, prompts of previous text).
const FILES: [&str; 6] = ["s01.wav", "s02.wav", "s03.wav", "s04.wav", "s06.wav", "long_90s.wav"];

fn kernel_cache() -> PathBuf {
    std::env::var_os("TINGXIE_TEST_KERNEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("tingxie-test-kernels"))
}

#[test]
fn wgpu_matches_faster_whisper_and_compiles_nothing_after_warm_up() {
    kernels::configure(&kernel_cache(), DeviceKind::Wgpu);
    let model = AnyTranscriber::load(&common::model_dir(), DeviceKind::Wgpu).expect("wgpu device (lavapipe)");
    let start = kernels::settled_counts().expect("counters on");
    device::warm_up(&model, 1, 0).unwrap();
    let warmed = kernels::settled_counts().unwrap();
    eprintln!("warm-up: {:?}", warmed - start);

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
}

/// Kernels compiled and autotune runs for the one file of a `tingxie transcribe --timings` run.
fn transcribe_once(cache: &Path) -> KernelCounts {
    let out = Command::new(env!("CARGO_BIN_EXE_tingxie"))
        .args(["transcribe", "--device", "wgpu", "--timings", "--format", "text", "--beam-size", "1", "--model"])
        .arg(common::model_dir())
        .arg("--kernel-cache-dir")
        .arg(cache)
        .arg(common::speech("s04.wav"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), common::reference("faster-whisper-segments.json")["files"]["s04.wav"]["text"].as_str().unwrap().trim());
    let line: serde_json::Value = stderr.lines().filter_map(|l| serde_json::from_str(l).ok()).find(|v: &serde_json::Value| v.get("file").is_some()).expect("timings line");
    KernelCounts {
        kernels_compiled: line["kernels_compiled"].as_u64().expect("kernels_compiled"),
        autotune_runs: line["autotune_runs"].as_u64().expect("autotune_runs"),
    }
}

#[test]
fn a_warm_kernel_cache_saves_the_next_process_its_autotuning() {
    let cache = std::env::temp_dir().join(format!("tingxie-kernels-empty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&cache);
    let first = transcribe_once(&cache);
    let second = transcribe_once(&cache);
    eprintln!("empty cache: {first:?}; warm cache: {second:?}");
    std::fs::remove_dir_all(&cache).unwrap();
    assert!(first.autotune_runs > 0, "an empty cache must tune: {first:?}");
    assert_eq!(second.autotune_runs, 0, "the warm cache was not used: {second:?}");
    assert!(second.kernels_compiled < first.kernels_compiled, "{second:?} vs {first:?}");
}
