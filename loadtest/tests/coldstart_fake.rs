//! The scale-from-zero mode against a stand-in server process: this test binary starts itself
//! again as the "server" (the `fake_child` test below, which serves only when told to by its
//! environment), so the real spawn / readiness / forward / stop path is exercised.

mod common;

use common::{tempdir, wav, Fake};
use std::process::Command;
use std::time::Duration;
use tingxie_loadtest::report;

const BIN: &str = env!("CARGO_BIN_EXE_tingxie-loadtest");

/// The stand-in: only when started by the load test (LT_FAKE_CHILD=1), serves on $PORT,
/// ready 300 ms after start, until it is stopped.
#[test]
fn fake_child() {
    if std::env::var("LT_FAKE_CHILD").as_deref() != Ok("1") {
        return;
    }
    let port: u16 = std::env::var("PORT").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let fake = std::sync::Arc::new(Fake { ready_after: Duration::from_millis(300), ..Default::default() });
        common::serve(fake, listener).await;
    });
}

#[test]
fn coldstart_report_from_spawned_servers() {
    let dir = tempdir("cold");
    let audio = dir.join("clip.wav");
    std::fs::write(&audio, wav(2.0)).unwrap();
    let model = dir.join("model");
    std::fs::create_dir_all(&model).unwrap();
    let out = dir.join("out");
    let me = std::env::current_exe().unwrap();
    let status = Command::new(BIN)
        .args(["coldstart", "--server", me.to_str().unwrap()])
        .args(["--server-args", "fake_child --exact --nocapture --test-threads 1"])
        .args(["--server-env", "LT_FAKE_CHILD=1", "--reps", "2", "--cache", "empty,warm"])
        .args(["--model-uri", &format!("file://{}", model.display())])
        .args(["--model", model.to_str().unwrap(), "--audio", audio.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--no-progress", "--ready-timeout", "30s"])
        .status()
        .unwrap();
    assert!(status.success());
    let r = report::read(&out).unwrap();
    let c = r.coldstart.expect("coldstart section");
    assert_eq!(c.runs.len(), 4);
    assert!(c.runs.iter().all(|r| r.error.is_none()), "{:?}", c.runs);
    assert_eq!(c.rows.len(), 2);
    for row in &c.rows {
        assert_eq!((row.runs, row.failed), (2, 0));
        // readiness came after the stand-in's 300 ms, and the transcript after readiness
        assert!(row.ready_s.min >= 0.3, "{row:?}");
        assert!(row.first_transcript_s.median > row.ready_s.median);
        assert!(row.listening_s.as_ref().unwrap().median <= row.ready_s.median);
        let phases: Vec<&str> = row.phases.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(phases, ["config", "weights", "warmup"]);
        let total: f64 = row.segments.iter().map(|(_, v)| v).sum();
        assert!((total - row.first_transcript_s.median).abs() < 1e-6, "{:?}", row.segments);
        assert!(row.peak_rss_bytes.unwrap() > 1 << 20);
    }
    assert_eq!(c.rows[0].cache, "empty cache");
    assert_eq!(c.rows[1].cache, "warm cache");
    let svg = std::fs::read_to_string(out.join("coldstart-phases.svg")).unwrap();
    assert!(svg.contains("warmup") && svg.contains("first request") && svg.contains("tingxie / warm cache"));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("| tingxie | empty cache | 2 (0) |"), "{md}");
    // the servers were stopped: their ports no longer answer
    assert!(std::fs::read_dir(out.join("logs")).unwrap().count() >= 4);
}
