//! One short end-to-end run against the real service: the real `tingxie serve` binary, the
//! real model, real audio, and (when `TINGXIE_MOTO_SERVER` names moto, as `make test` does)
//! the events scenario through a real S3-protocol server. It must produce a report with zero
//! non-429 errors, and a scale-from-zero report whose runs all succeeded.
//!
//! The binary is `TINGXIE_BIN`, else `tingxie` next to this test's target directory (built by
//! `cargo test --workspace`, which `make test` runs).

use std::path::PathBuf;
use std::process::Command;
use tingxie_loadtest::report;

const BIN: &str = env!("CARGO_BIN_EXE_tingxie-loadtest");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn tingxie_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TINGXIE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/e2e-HASH -> target/<profile>/tingxie
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("tingxie")
}

fn model_dir() -> PathBuf {
    std::env::var_os("TINGXIE_TEST_MODEL_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("models/whisper-tiny-en"))
}

fn has_serve(bin: &PathBuf) -> bool {
    Command::new(bin).args(["serve", "--help"]).output().map(|o| o.status.success()).unwrap_or(false)
}

#[test]
fn real_server_load_and_cold_start() {
    let bin = tingxie_bin();
    assert!(bin.exists(), "{} does not exist: build it (cargo build --release -p tingxie) or set TINGXIE_BIN", bin.display());
    assert!(has_serve(&bin), "{} has no `serve` subcommand", bin.display());
    let model = model_dir();
    assert!(model.join("model.bin").exists(), "model missing at {} (make models)", model.display());
    let audio = root().join("../shared/fixtures/speech");
    let out = std::env::temp_dir().join(format!("tingxie-lt-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let moto = std::env::var("TINGXIE_MOTO_SERVER").ok().filter(|p| std::path::Path::new(p).exists());
    let scenarios = if moto.is_some() { "http,openai,events" } else { "http,openai" };
    if moto.is_none() {
        eprintln!("TINGXIE_MOTO_SERVER not set: the events scenario is left out of the end-to-end run");
    }

    // Load: closed loop, 2 clients, 1 s warm-up, 4 s per scenario.
    let load_out = out.join("load");
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--spawn", bin.to_str().unwrap(), "--model", model.to_str().unwrap()])
        .args(["--scenario", scenarios, "--concurrency", "2", "--warmup", "1s", "--duration", "4s"])
        .args(["--audio", audio.to_str().unwrap(), "--include", "s01.wav", "--include", "s04.wav"])
        .args(["--out", load_out.to_str().unwrap(), "--no-progress", "--threads", "2"]);
    if let Some(m) = &moto {
        cmd.args(["--moto", m]);
    }
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stderr}");
    assert!(!stderr.contains("exited during the run"), "the server stopped before the load test stopped it:\n{stderr}");
    assert!(run.status.success(), "load run failed: {}\n{stderr}", run.status);
    let r = report::read(&load_out).unwrap();
    assert_eq!(r.scenarios.len(), scenarios.split(',').count());
    for s in &r.scenarios {
        let c = &s.counts;
        assert_eq!(c.non_429_errors, 0, "{}: {:?}", s.scenario, c.error_examples);
        assert!(c.ok >= 1, "{}: no successful measured request: {c:?}", s.scenario);
        assert!(s.latency.p50.is_some() && s.throughput_rps > 0.0);
        assert!(s.rss.peak_bytes.unwrap_or(0) > 10 << 20, "{:?}", s.rss);
    }

    // Scale from zero: one start, the model used in place.
    let cold_out = out.join("cold");
    let status = Command::new(BIN)
        .args(["coldstart", "--server", bin.to_str().unwrap(), "--model", model.to_str().unwrap()])
        .args(["--reps", "1", "--cache", "local", "--threads", "2"])
        .args(["--audio", audio.join("s01.wav").to_str().unwrap()])
        .args(["--out", cold_out.to_str().unwrap(), "--no-progress"])
        .status()
        .unwrap();
    assert!(status.success(), "coldstart failed: {status}");
    let c = report::read(&cold_out).unwrap().coldstart.unwrap();
    assert_eq!(c.rows.len(), 1);
    let row = &c.rows[0];
    assert_eq!(row.failed, 0);
    assert!(row.first_transcript_s.median >= row.ready_s.median);
    let text = c.runs[0].text.clone().unwrap_or_default().to_lowercase();
    assert!(text.contains("quick brown fox"), "{text}");
    let _ = std::fs::remove_dir_all(&out);
}
