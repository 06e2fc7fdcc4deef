//! Benchmarks and checks that run tingxie as a user would, as separate processes.
//!
//! `tingxie-bench versus`: tingxie and faster-whisper 1.2.1 (float32, same thread count) side by
//! side on the same files and settings, in one run; prints wall-time and peak-RSS ratios.
//! `tingxie-bench parity`: token-for-token comparison with the faster-whisper reference
//! segments on any device (used by `function/gpu-check.sh`).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::Value;

#[derive(Parser)]
struct Cli {
    /// Model directory (CTranslate2 layout, read by both engines).
    #[arg(long, default_value = "models/whisper-tiny-en", global = true)]
    model: PathBuf,
    /// Silero VAD's weights, for the vad_filter and batched rows.
    #[arg(long, default_value = "models/silero-vad", global = true)]
    vad_model: PathBuf,
    /// The shared fixtures folder.
    #[arg(long, env = "TINGXIE_FIXTURES", default_value = "../shared/fixtures", global = true)]
    fixtures: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Versus {
        /// CPU threads for both engines.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Python with faster-whisper 1.2.1 installed.
        #[arg(long, default_value = ".venv/bin/python")]
        python: PathBuf,
        /// Runs per case; the median is reported.
        #[arg(long, default_value_t = 1)]
        reps: usize,
        /// Only the long_5min.wav rows (greedy, beam 5): the comparison for larger models.
        #[arg(long)]
        long_only: bool,
    },
    Parity {
        /// cpu, cuda or cuda:N.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// greedy or beam5.
        #[arg(long, default_value = "greedy")]
        mode: String,
        /// Files of the corpus to check (default: every lossless 16 kHz file).
        files: Vec<String>,
    },
}

/// Wall seconds, peak RSS in MiB, stdout and stderr of one child process.
struct Run {
    wall: f64,
    peak_rss_mib: f64,
    stdout: String,
    stderr: String,
}

// The child is reaped by wait4, not `Child::wait`: wait4 also gives its peak RSS.
#[allow(clippy::zombie_processes)]
fn run(command: &mut Command) -> Run {
    let out_path = std::env::temp_dir().join(format!("tingxie-bench-{}.out", std::process::id()));
    let err_path = out_path.with_extension("err");
    command.stdout(Stdio::from(File::create(&out_path).unwrap()));
    command.stderr(Stdio::from(File::create(&err_path).unwrap()));
    let start = Instant::now();
    let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; `usage` is a valid out-pointer.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    let wall = start.elapsed().as_secs_f64();
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = (std::fs::remove_file(&out_path), std::fs::remove_file(&err_path));
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{command:?} failed: {stderr}");
    Run { wall, peak_rss_mib: usage.ru_maxrss as f64 / 1024.0, stdout, stderr }
}

fn tingxie_exe() -> PathBuf {
    std::env::current_exe().unwrap().with_file_name("tingxie")
}

fn manifest(fixtures: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(fixtures.join("speech/manifest.tsv")).expect("manifest.tsv");
    let mut lines = text.lines();
    let header: Vec<String> = lines.next().unwrap().split('\t').map(str::to_string).collect();
    lines.map(|l| header.iter().cloned().zip(l.split('\t').map(str::to_string)).collect()).collect()
}

fn lossless_16k(fixtures: &Path) -> Vec<String> {
    manifest(fixtures)
        .into_iter()
        .filter(|r| r["sample_rate"] == "16000" && r["channels"] == "1" && (r["codec"] == "pcm_s16le" || r["codec"] == "flac"))
        .map(|r| r["file"].clone())
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn versus(setup: Setup, fixtures: &Path, reps: usize, long_only: bool) {
    let threads = setup.threads;
    let speech = fixtures.join("speech");
    let short: Vec<PathBuf> = manifest(fixtures)
        .iter()
        .filter(|r| r["file"].starts_with('s') && r["codec"] == "pcm_s16le" && !r["file"].contains("silence"))
        .map(|r| speech.join(&r["file"]))
        .collect();
    let mut cases: Vec<(&str, Vec<PathBuf>)> = vec![("long_5min.wav", vec![speech.join("long_5min.wav")]), ("short files", short)];
    cases.truncate(if long_only { 1 } else { 2 });
    println!("threads {threads}, median of {reps} run(s); wall = whole process (start, model load, decode, transcribe)\n");
    println!("| input | mode | tingxie wall s | faster-whisper wall s | wall ratio | tingxie peak RSS MiB | faster-whisper peak RSS MiB | RSS ratio | same text |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, files) in &cases {
        for (mode, beam) in [("greedy", 1), ("beam5", 5)] {
            let (ours, theirs) = race(&setup, Mode { beam, ..GREEDY }, files, reps);
            let same = ours[0].stdout.lines().zip(theirs[0].stdout.lines()).filter(|(a, b)| a.trim() == b.trim()).count();
            println!("| {name} | {mode} | {} | {same}/{} |", compare(&ours, &theirs), files.len());
        }
    }
    if long_only {
        return;
    }
    // Speech only and batches: both engines cut the recording with Silero VAD, tingxie's on burn;
    // word error rates against the spoken text.
    let spoken = &manifest(fixtures).into_iter().find(|r| r["file"] == "long_5min.wav").expect("long_5min.wav")["reference_text"];
    let long = vec![speech.join("long_5min.wav")];
    println!("\n| input | mode | tingxie wall s | faster-whisper wall s | wall ratio | tingxie peak RSS MiB | faster-whisper peak RSS MiB | RSS ratio | WER tingxie / faster-whisper | same text |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let wer = |r: &Run| tingxie::transcript::wer(spoken, r.stdout.trim());
    for (name, mode) in [("greedy, vad_filter", Mode { vad_filter: true, ..GREEDY }), ("greedy, batch 8", Mode { batch: BATCH, ..GREEDY })]
    {
        let (ours, theirs) = race(&setup, mode, &long, reps);
        let same = ours[0].stdout.trim() == theirs[0].stdout.trim();
        println!(
            "| long_5min.wav | {name} | {} | {:.4} / {:.4} | {} |",
            compare(&ours, &theirs),
            wer(&ours[0]),
            wer(&theirs[0]),
            u8::from(same)
        );
    }
    vad_cost(&setup, &long[0], reps);
}

/// Silero VAD alone on one file, in process on both sides (audio decoded beforehand): seconds
/// per minute of audio.
fn vad_cost(setup: &Setup, file: &Path, reps: usize) {
    tingxie::device::set_cpu_threads(setup.threads);
    let samples = tingxie::audio::decode_file(file).expect("audio");
    let minutes = samples.len() as f64 / f64::from(tingxie::audio::SAMPLE_RATE) / 60.0;
    let vad =
        tingxie::vad::SileroVad::<tingxie::device::CpuBackend>::load(&setup.vad_model, &Default::default()).expect("Silero VAD weights");
    let options = tingxie::vad::VadOptions::default();
    let ours = median(
        (0..reps + 1)
            .map(|_| {
                let start = Instant::now();
                let probabilities = vad.probabilities(&samples);
                std::hint::black_box(tingxie::vad::speech_timestamps(&probabilities, samples.len(), &options));
                start.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect(),
    );
    let mut cmd = Command::new(&setup.python);
    let peer = run(cmd.arg(&setup.peer_script).args(["--vad-only", &reps.to_string()]).arg(file));
    let theirs: Value = serde_json::from_str(peer.stderr.lines().last().unwrap_or("{}")).expect("peer timing");
    let theirs = theirs["vad_s"].as_f64().expect("vad_s");
    println!("\n| Silero VAD on {} ({minutes:.1} min), speech timestamps | tingxie s per audio minute | faster-whisper (onnxruntime, 1 thread) s per audio minute | ratio |", file.display());
    println!("|---|---|---|---|");
    println!(
        "| probabilities + timestamps, {} thread(s) | {:.4} | {:.4} | {:.2} |",
        setup.threads,
        ours / minutes,
        theirs / minutes,
        ours / theirs
    );
}

/// How a benchmark run decodes: beam width, windows per batch (0 = sequential), speech only.
#[derive(Clone, Copy)]
struct Mode {
    beam: usize,
    batch: usize,
    vad_filter: bool,
}

const GREEDY: Mode = Mode { beam: 1, batch: 0, vad_filter: false };

/// What every run of a comparison shares.
struct Setup {
    model: PathBuf,
    vad_model: PathBuf,
    peer_script: PathBuf,
    python: PathBuf,
    threads: usize,
}

/// Windows per batch in the batched rows (faster-whisper's example value).
const BATCH: usize = 8;

/// `reps` alternating runs of both engines on `files`.
fn race(setup: &Setup, mode: Mode, files: &[PathBuf], reps: usize) -> (Vec<Run>, Vec<Run>) {
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let mut cmd = Command::new(tingxie_exe());
        cmd.args(["transcribe", "--format", "text", "--threads", &setup.threads.to_string()])
            .args(["--beam-size", &mode.beam.to_string(), "--batch-size", &mode.batch.to_string()])
            .arg("--model")
            .arg(&setup.model)
            .arg("--vad-model")
            .arg(&setup.vad_model)
            .args(files);
        if mode.beam == 1 {
            cmd.args(["--temperature", "0"]);
        }
        if mode.vad_filter {
            cmd.arg("--vad-filter");
        }
        ours.push(run(&mut cmd));
        let mut cmd = Command::new(&setup.python);
        cmd.arg(&setup.peer_script).arg(&setup.model).arg(setup.threads.to_string()).arg(mode.beam.to_string());
        if mode.batch > 0 {
            cmd.args(["--batch-size", &mode.batch.to_string()]);
        }
        if mode.vad_filter {
            cmd.arg("--vad-filter");
        }
        theirs.push(run(cmd.args(files)));
    }
    eprintln!("tingxie: {}faster-whisper: {}", ours[0].stderr, theirs[0].stderr);
    (ours, theirs)
}

/// Median wall and peak RSS of both engines and their ratios, as table cells.
fn compare(ours: &[Run], theirs: &[Run]) -> String {
    let wall = |runs: &[Run]| median(runs.iter().map(|r| r.wall).collect());
    let rss = |runs: &[Run]| median(runs.iter().map(|r| r.peak_rss_mib).collect());
    let (ow, tw, orss, trss) = (wall(ours), wall(theirs), rss(ours), rss(theirs));
    format!("{ow:.2} | {tw:.2} | {:.2} | {orss:.0} | {trss:.0} | {:.2}", ow / tw, orss / trss)
}

fn parity(model: &Path, fixtures: &Path, device: &str, mode: &str, files: Vec<String>) -> bool {
    let (reference_name, beam) = match mode {
        "greedy" => ("faster-whisper-segments.json", 1),
        "beam5" => ("faster-whisper-segments-beam5.json", 5),
        other => panic!("unknown mode {other}: greedy or beam5"),
    };
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fixtures.join("speech").join(reference_name)).unwrap()).unwrap();
    let files = if files.is_empty() { lossless_16k(fixtures) } else { files };
    let paths: Vec<PathBuf> = files.iter().map(|f| fixtures.join("speech").join(f)).collect();
    let mut cmd = Command::new(tingxie_exe());
    cmd.args(["transcribe", "--format", "verbose_json", "--device", device, "--beam-size", &beam.to_string()])
        .arg("--model")
        .arg(model)
        .args(&paths);
    if beam == 1 {
        cmd.args(["--temperature", "0"]);
    }
    let result = run(&mut cmd);
    let mut equal = 0;
    for (file, line) in files.iter().zip(result.stdout.lines()) {
        let ours: Value = serde_json::from_str(line).unwrap();
        let tokens = |v: &Value| -> Vec<Value> { v["segments"].as_array().unwrap().iter().map(|s| s["tokens"].clone()).collect() };
        let same = tokens(&ours) == tokens(&reference["files"][file.as_str()]);
        equal += usize::from(same);
        println!("{file}: {}", if same { "same tokens" } else { "DIFFERENT" });
    }
    println!(
        "parity {mode} on {device}: {equal}/{} files token-identical; {:.2} s wall, peak RSS {:.0} MiB",
        files.len(),
        result.wall,
        result.peak_rss_mib
    );
    equal == files.len()
}

fn main() -> std::process::ExitCode {
    tingxie::startup::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Cmd::Versus { threads, python, reps, long_only } => {
            let peer_script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/faster_whisper_peer.py");
            let setup = Setup { model: cli.model, vad_model: cli.vad_model, peer_script, python, threads };
            versus(setup, &cli.fixtures, reps.max(1), long_only)
        }
        Cmd::Parity { device, mode, files } => {
            if !parity(&cli.model, &cli.fixtures, &device, &mode, files) {
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
