//! The load test against a stand-in server: report files parsed back, counts checked against
//! what the server saw, the open-loop schedule honoured, non-loopback targets refused.

mod common;

use common::{start, tempdir, wav, Fake};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tingxie_loadtest::client::{Client, Scenario};
use tingxie_loadtest::corpus::Corpus;
use tingxie_loadtest::load::{self, LoadModel, LoadSpec, Watch};
use tingxie_loadtest::report;
use tingxie_loadtest::schedule::poisson_arrivals;

const BIN: &str = env!("CARGO_BIN_EXE_tingxie-loadtest");

fn corpus_dir(tag: &str) -> std::path::PathBuf {
    let d = tempdir(tag);
    std::fs::write(d.join("a.wav"), wav(1.0)).unwrap();
    std::fs::write(d.join("b.wav"), wav(2.5)).unwrap();
    d
}

#[test]
fn refuses_non_loopback_targets() {
    for target in ["http://10.1.2.3:8080/", "http://192.0.2.1/", "http://[2001:db8::1]:80/"] {
        let out = Command::new(BIN).args(["run", "--target", target, "--duration", "1s"]).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{target}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not a loopback address") && err.contains("--allow-remote"), "{err}");
    }
    // an S3 endpoint elsewhere is refused too
    let out = Command::new(BIN)
        .args(["run", "--scenario", "events", "--s3-endpoint", "http://10.9.9.9:9000", "--duration", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_scenarios_report_parsed_back() {
    let (fake, base) = start(Fake { reject_every: 7, ..Default::default() }).await;
    let audio = corpus_dir("scen-audio");
    let out = tempdir("scen-out");
    let endpoint = base.trim_end_matches('/').to_string();
    let status = tokio::process::Command::new(BIN)
        .args(["run", "--target", &base, "--scenario", "http,openai,events", "--concurrency", "3"])
        .args(["--warmup", "300ms", "--duration", "1200ms", "--no-progress", "--bucket", "bkt"])
        .args(["--s3-endpoint", &endpoint, "--audio", audio.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_REGION", "us-east-1")
        .status()
        .await
        .unwrap();
    assert!(status.success());

    let r = report::read(&out).unwrap();
    assert_eq!(r.scenarios.len(), 3);
    let names: Vec<&str> = r.scenarios.iter().map(|s| s.scenario.as_str()).collect();
    assert_eq!(names, ["http", "openai", "events"]);
    let lines = std::fs::read_to_string(out.join("requests.jsonl")).unwrap();
    let requests: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let served = [fake.transcribe.load(Ordering::SeqCst), fake.openai.load(Ordering::SeqCst), fake.events.load(Ordering::SeqCst)];
    for (s, served) in r.scenarios.iter().zip(served) {
        let c = &s.counts;
        assert!(c.ok > 5, "{}: {c:?}", s.scenario);
        assert_eq!(c.non_429_errors, 0, "{}: {c:?}", s.scenario);
        // every request the server saw is in the report, warm-up or measured
        assert_eq!(c.measured + c.warmup, served, "{}", s.scenario);
        assert_eq!(c.ok + c.rejected_429 + c.non_429_errors + c.dropped_client, c.measured);
        let lines_here = requests.iter().filter(|v| v["scenario"] == s.scenario.as_str()).count() as u64;
        assert_eq!(lines_here, served);
        let p = &s.latency;
        assert!(p.p50.unwrap() <= p.p90.unwrap() && p.p90.unwrap() <= p.p99.unwrap() && p.p99.unwrap() <= p.max.unwrap());
        assert!(s.throughput_rps > 0.0);
        assert_eq!(s.audio_seconds_total, 2.0 * c.ok as f64);
        assert!((s.rtf_compute.unwrap() - 0.002).abs() < 1e-9);
        assert!((s.queue_wait.mean.unwrap() - 0.001).abs() < 1e-12);
        assert!((s.compute.p99.unwrap() - 0.004).abs() < 1e-12);
        assert_eq!(s.rss.peak_bytes, Some(104857600));
        assert!(!s.timeline.is_empty());
        let svg = std::fs::read_to_string(out.join(format!("latency-hist-{}.svg", s.scenario))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("latency (s)") && svg.matches("<rect").count() > 3);
        let tl = std::fs::read_to_string(out.join(format!("timeline-{}.svg", s.scenario))).unwrap();
        assert!(tl.contains("throughput") && tl.contains("<polyline"));
    }
    // 429s are counted apart, not as errors (http and openai reject every 7th)
    assert!(r.scenarios[0].counts.rejected_429 > 0);
    assert_eq!(r.scenarios[0].counts.errors_by_kind.get("429"), Some(&r.scenarios[0].counts.rejected_429));
    // the events scenario really put objects and found transcripts
    let objects = fake.objects.lock().unwrap();
    assert!(objects.keys().any(|k| k.starts_with("/bkt/loadtest/")));
    assert!(objects.keys().any(|k| k.starts_with("/bkt/transcripts/loadtest/") && k.ends_with(".json")));
    drop(objects);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for s in &r.scenarios {
        let row = md.lines().find(|l| l.starts_with(&format!("| {} |", s.scenario))).unwrap();
        assert!(row.contains(&format!("| {} | {} |", s.counts.measured, s.counts.ok)), "{row}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_follows_the_schedule_and_counts_errors() {
    let (fake, base) = start(Fake::default()).await;
    let audio = corpus_dir("open-audio");
    let corpus = Arc::new(Corpus::load(&audio, &[], None).unwrap());
    let client = Arc::new(Client {
        http: reqwest::Client::new(),
        base: reqwest::Url::parse(&base).unwrap(),
        s3: None,
        response_format: "json".into(),
        openai_model: "whisper-1".into(),
        run_id: "t".into(),
        timeout: Duration::from_secs(5),
    });
    let spec = LoadSpec {
        scenario: Scenario::Http,
        model: LoadModel::Open { rate: 40.0, max_in_flight: 64 },
        warmup: Duration::from_millis(500),
        duration: Duration::from_millis(1500),
        max_requests: None,
        seed: 9,
        progress: false,
    };
    let t = std::time::Instant::now();
    let data = load::run(client.clone(), corpus.clone(), &spec, Watch::Metrics).await;
    let expected = poisson_arrivals(40.0, 2.0, usize::MAX, 9);
    assert_eq!(data.outcomes.len(), expected.len());
    assert_eq!(fake.transcribe.load(Ordering::SeqCst), expected.len() as u64);
    let warm = expected.iter().filter(|&&t| t < 0.5).count();
    assert_eq!(data.outcomes.iter().filter(|o| o.warmup).count(), warm);
    // each request left at its scheduled time (not after the previous answer)
    for (o, at) in data.outcomes.iter().zip(&expected) {
        assert!(o.sent_at >= at - 0.001 && o.sent_at < at + 0.25, "sent {} scheduled {at}", o.sent_at);
    }
    assert!(t.elapsed() < Duration::from_secs(5));
    let s = report::summarize("http", spec.model, 0.5, 1.5, None, &data);
    assert_eq!(s.counts.measured as usize, expected.len() - warm);
    assert_eq!(s.counts.non_429_errors, 0);

    // the request bound stops it early; a dead server gives connect errors, not 429s
    let spec = LoadSpec { max_requests: Some(5), warmup: Duration::ZERO, ..spec };
    let data = load::run(client, corpus.clone(), &spec, Watch::Metrics).await;
    assert_eq!(data.outcomes.len(), 5);
    let dead = Arc::new(Client {
        http: reqwest::Client::new(),
        base: reqwest::Url::parse("http://127.0.0.1:9/").unwrap(),
        s3: None,
        response_format: "json".into(),
        openai_model: "whisper-1".into(),
        run_id: "t".into(),
        timeout: Duration::from_secs(2),
    });
    let data = load::run(dead, corpus, &spec, Watch::Metrics).await;
    let s = report::summarize("http", spec.model, 0.0, 1.5, Some(5), &data);
    assert_eq!(s.counts.non_429_errors, 5);
    assert_eq!(s.counts.errors_by_kind.get("connect"), Some(&5));
}
