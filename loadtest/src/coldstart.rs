//! Scale from zero, as Knative's activator does it: a request arrives while no server runs;
//! it is held, the server process is started (exec), readiness is polled, and the held
//! request is forwarded the moment the server is ready. Measured from exec: port bound
//! (liveness), ready, first transcript; plus the cold-start phases the service exports on
//! `/metrics` (`tingxie_cold_start_phase_seconds{phase=...}`) and the peak RSS of the process.
//!
//! Cache modes: `empty` (a fresh `TINGXIE_CACHE_DIR`: the model is pulled from its URI),
//! `warm` (the same directory again: the node already has the model), `local` (the model is a
//! local directory used in place, no cache). `--peer faster-whisper` runs a minimal
//! faster-whisper HTTP server (`bench/faster_whisper_server.py`) on the same model and audio.

use crate::client::{Client, Scenario};
use crate::corpus::AudioFile;
use crate::prom;
use crate::server::{free_port, proc_rss, scrape, SpawnSpec};
use crate::stats::median;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PHASE_METRIC: &str = "tingxie_cold_start_phase_seconds";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    Empty,
    Warm,
    Local,
}

impl CacheMode {
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Empty => "empty cache",
            CacheMode::Warm => "warm cache",
            CacheMode::Local => "local dir",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Peer {
    pub python: PathBuf,
    pub script: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ColdSpec {
    pub server: PathBuf,
    pub server_args: Vec<String>,
    /// The model as a local directory (the peer always reads this one).
    pub model_dir: PathBuf,
    /// The model URI tingxie pulls through its node cache (`s3://...`, `file://...`).
    pub model_uri: Option<String>,
    pub caches: Vec<CacheMode>,
    pub reps: usize,
    pub audio: AudioFile,
    pub threads: Option<usize>,
    /// Extra environment for the server (S3 endpoint, `--server-env`).
    pub env: Vec<(String, String)>,
    pub out: PathBuf,
    pub ready_timeout: Duration,
    pub peer: Option<Peer>,
    pub progress: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdRun {
    pub engine: String,
    pub cache: CacheMode,
    pub rep: usize,
    pub listening_s: Option<f64>,
    pub ready_s: Option<f64>,
    pub first_transcript_s: Option<f64>,
    pub first_request_s: Option<f64>,
    pub phases: Vec<(String, f64)>,
    pub peak_rss_bytes: Option<u64>,
    pub text: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    fn of(v: &[f64]) -> Option<Spread> {
        Some(Spread {
            median: median(v)?,
            min: v.iter().copied().fold(f64::INFINITY, f64::min),
            max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdRow {
    pub engine: String,
    pub cache: String,
    pub runs: usize,
    pub failed: usize,
    pub listening_s: Option<Spread>,
    pub ready_s: Spread,
    pub first_transcript_s: Spread,
    pub first_request_s: Spread,
    /// Median of each exported phase, in the order the service lists them.
    pub phases: Vec<(String, f64)>,
    /// What the stacked bar draws: the phases, the start-up time no phase accounts for, and
    /// the first request; they add up to the median exec → first transcript.
    pub segments: Vec<(String, f64)>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    pub cache: String,
    pub versus: String,
    pub ready: f64,
    pub first_transcript: f64,
    pub peak_rss: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdStartReport {
    pub server: String,
    pub model_dir: String,
    pub model_uri: Option<String>,
    pub audio: String,
    pub audio_seconds: Option<f64>,
    pub threads: Option<usize>,
    pub reps: usize,
    /// Seconds to GET the model's objects alone (no process start), for comparison with the
    /// empty-cache start.
    pub download_alone_s: Option<f64>,
    pub runs: Vec<ColdRun>,
    pub rows: Vec<ColdRow>,
    pub ratios: Vec<Ratio>,
}

async fn one_run(spec: &ColdSpec, http: &reqwest::Client, engine: &str, cache: CacheMode, rep: usize, spawn: SpawnSpec) -> ColdRun {
    let mut run = ColdRun {
        engine: engine.to_string(),
        cache,
        rep,
        listening_s: None,
        ready_s: None,
        first_transcript_s: None,
        first_request_s: None,
        phases: vec![],
        peak_rss_bytes: None,
        text: None,
        error: None,
    };
    // The request has arrived: it is held while the process starts.
    let mut s = match spawn.spawn() {
        Ok(s) => s,
        Err(e) => {
            run.error = Some(format!("{e:#}"));
            return run;
        }
    };
    match s.wait_ready(http, spec.ready_timeout, Duration::from_millis(5)).await {
        Ok(t) => {
            run.listening_s = t.listening_s;
            run.ready_s = Some(t.ready_s);
        }
        Err(e) => {
            run.error = Some(format!("{e:#}"));
            s.stop(Duration::from_secs(5)).await;
            return run;
        }
    }
    let client = Client {
        http: http.clone(),
        base: s.base.clone(),
        s3: None,
        response_format: "json".into(),
        openai_model: "whisper-1".into(),
        run_id: format!("cold-{rep}"),
        timeout: Duration::from_secs(600),
    };
    let t = Instant::now();
    let o = client.send(Scenario::Http, 0, &spec.audio).await;
    run.first_request_s = Some(t.elapsed().as_secs_f64());
    run.first_transcript_s = Some(s.exec_at.elapsed().as_secs_f64());
    if let Some(kind) = &o.error_kind {
        run.error = Some(format!("first request failed ({kind}): {}", o.error.unwrap_or_default()));
    }
    if let Ok(m) = scrape(http, &s.base).await {
        run.phases = prom::phases(&m, PHASE_METRIC);
    }
    run.peak_rss_bytes = proc_rss(s.pid).map(|(_, hwm)| hwm);
    if run.error.is_none() {
        run.text = first_text(&client, &spec.audio).await;
    }
    s.stop(Duration::from_secs(10)).await;
    run
}

/// The transcript text, for the report (a second request, after the measurement).
async fn first_text(client: &Client, audio: &AudioFile) -> Option<String> {
    let url = client.base.join("transcribe").ok()?;
    let r = client.http.post(url).header("content-type", audio.content_type).body(audio.bytes.clone()).send().await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.ok()?).ok()?;
    Some(v.get("text")?.as_str()?.trim().to_string())
}

fn tingxie_spawn(spec: &ColdSpec, cache: CacheMode, cache_dir: &std::path::Path, log: PathBuf) -> Result<SpawnSpec> {
    let model = match cache {
        CacheMode::Local => spec.model_dir.display().to_string(),
        _ => spec.model_uri.clone().context("empty/warm cache runs need --model-uri")?,
    };
    let mut env = vec![
        ("TINGXIE_MODEL".to_string(), model),
        ("TINGXIE_CACHE_DIR".to_string(), cache_dir.display().to_string()),
        // The run's history stays in its output folder, not in the working directory.
        ("TINGXIE_HISTORY".to_string(), spec.out.join("history").display().to_string()),
    ];
    if let Some(t) = spec.threads {
        env.push(("TINGXIE_THREADS".into(), t.to_string()));
    }
    env.extend(spec.env.iter().cloned());
    Ok(SpawnSpec { name: "tingxie".into(), program: spec.server.clone(), args: spec.server_args.clone(), env, port: free_port()?, log })
}

pub async fn run(spec: &ColdSpec, http: &reqwest::Client, download_alone_s: Option<f64>) -> Result<ColdStartReport> {
    let caches_root = spec.out.join("caches");
    let logs = spec.out.join("logs");
    let mut runs = Vec::new();
    let total = spec.reps * (spec.caches.len() + spec.peer.is_some() as usize);
    let bar = indicatif::ProgressBar::new(total as u64);
    if !spec.progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template("coldstart [{elapsed_precise}] {bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    for rep in 1..=spec.reps {
        // One cache directory per repetition: empty for its first start, warm after that.
        let cache_dir = caches_root.join(format!("rep{rep}"));
        let _ = std::fs::remove_dir_all(&cache_dir);
        std::fs::create_dir_all(&cache_dir)?;
        let mut filled = false;
        for &cache in &spec.caches {
            if cache == CacheMode::Warm && !filled && spec.model_uri.is_some() {
                // Fill the cache with one unmeasured start.
                let s = tingxie_spawn(spec, CacheMode::Empty, &cache_dir, logs.join(format!("fill-{rep}.log")))?;
                let _ = one_run(spec, http, "tingxie", CacheMode::Empty, rep, s).await;
            }
            bar.set_message(format!("tingxie, {}, run {rep}", cache.name()));
            let s = tingxie_spawn(spec, cache, &cache_dir, logs.join(format!("tingxie-{cache:?}-{rep}.log")))?;
            let r = one_run(spec, http, "tingxie", cache, rep, s).await;
            filled |= r.error.is_none();
            runs.push(r);
            bar.inc(1);
        }
        if let Some(peer) = &spec.peer {
            bar.set_message(format!("faster-whisper, run {rep}"));
            let mut args = vec![peer.script.display().to_string(), "--model".into(), spec.model_dir.display().to_string()];
            if let Some(t) = spec.threads {
                args.extend(["--threads".into(), t.to_string()]);
            }
            let s = SpawnSpec {
                name: "faster-whisper".into(),
                program: peer.python.clone(),
                args,
                env: vec![],
                port: free_port()?,
                log: logs.join(format!("faster-whisper-{rep}.log")),
            };
            runs.push(one_run(spec, http, "faster-whisper", CacheMode::Local, rep, s).await);
            bar.inc(1);
        }
    }
    bar.finish();
    let _ = std::fs::remove_dir_all(&caches_root);
    let rows = rows(&runs);
    let ratios = ratios(&rows);
    Ok(ColdStartReport {
        server: spec.server.display().to_string(),
        model_dir: spec.model_dir.display().to_string(),
        model_uri: spec.model_uri.clone(),
        audio: spec.audio.name.clone(),
        audio_seconds: spec.audio.seconds,
        threads: spec.threads,
        reps: spec.reps,
        download_alone_s,
        runs,
        rows,
        ratios,
    })
}

/// Phases that are totals rather than parts (not stacked).
fn is_total(phase: &str) -> bool {
    matches!(phase, "ready" | "total" | "first_request" | "first_transcript")
}

pub fn rows(runs: &[ColdRun]) -> Vec<ColdRow> {
    let mut keys: Vec<(String, CacheMode)> = Vec::new();
    for r in runs {
        if !keys.contains(&(r.engine.clone(), r.cache)) {
            keys.push((r.engine.clone(), r.cache));
        }
    }
    keys.into_iter()
        .filter_map(|(engine, cache)| {
            let all: Vec<&ColdRun> = runs.iter().filter(|r| r.engine == engine && r.cache == cache).collect();
            let ok: Vec<&ColdRun> = all.iter().copied().filter(|r| r.error.is_none()).collect();
            let pick = |f: fn(&ColdRun) -> Option<f64>| -> Vec<f64> { ok.iter().filter_map(|r| f(r)).collect() };
            let ready_s = Spread::of(&pick(|r| r.ready_s))?;
            let first_transcript_s = Spread::of(&pick(|r| r.first_transcript_s))?;
            let first_request_s = Spread::of(&pick(|r| r.first_request_s))?;
            let mut phase_names: Vec<String> = Vec::new();
            for r in &ok {
                for (p, _) in &r.phases {
                    if !phase_names.contains(p) {
                        phase_names.push(p.clone());
                    }
                }
            }
            let phases: Vec<(String, f64)> = phase_names
                .iter()
                .filter_map(|p| {
                    let v: Vec<f64> = ok.iter().filter_map(|r| r.phases.iter().find(|(n, _)| n == p).map(|(_, v)| *v)).collect();
                    Some((p.clone(), median(&v)?))
                })
                .collect();
            let mut segments: Vec<(String, f64)> = phases.iter().filter(|(p, _)| !is_total(p)).cloned().collect();
            let parts: f64 = segments.iter().map(|(_, v)| v).sum();
            let other = ready_s.median - parts;
            if other > 0.0005 {
                segments.push(("start-up not in a phase".into(), other));
            }
            segments.push(("first request".into(), (first_transcript_s.median - ready_s.median).max(0.0)));
            let rss: Vec<f64> = ok.iter().filter_map(|r| r.peak_rss_bytes.map(|b| b as f64)).collect();
            Some(ColdRow {
                engine,
                cache: cache.name().to_string(),
                runs: all.len(),
                failed: all.len() - ok.len(),
                listening_s: Spread::of(&pick(|r| r.listening_s)),
                ready_s,
                first_transcript_s,
                first_request_s,
                phases,
                segments,
                peak_rss_bytes: median(&rss).map(|b| b as u64),
            })
        })
        .collect()
}

pub fn ratios(rows: &[ColdRow]) -> Vec<Ratio> {
    let Some(peer) = rows.iter().find(|r| r.engine == "faster-whisper") else {
        return vec![];
    };
    rows.iter()
        .filter(|r| r.engine != "faster-whisper")
        .map(|r| Ratio {
            cache: r.cache.clone(),
            versus: format!("faster-whisper ({})", peer.cache),
            ready: r.ready_s.median / peer.ready_s.median,
            first_transcript: r.first_transcript_s.median / peer.first_transcript_s.median,
            peak_rss: match (r.peak_rss_bytes, peer.peak_rss_bytes) {
                (Some(a), Some(b)) if b > 0 => Some(a as f64 / b as f64),
                _ => None,
            },
        })
        .collect()
}

fn spread(s: &Spread) -> String {
    format!("{:.3} ({:.3}–{:.3})", s.median, s.min, s.max)
}

pub fn markdown(c: &ColdStartReport) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "## Scale from zero\n");
    let _ = writeln!(
        m,
        "Server `{}`, model `{}`{}, first request `{}`{}, {} repetition(s){}. Times are seconds from exec, median (min–max).\n",
        c.server,
        c.model_dir,
        c.model_uri.as_ref().map(|u| format!(" (pulled from `{u}`)")).unwrap_or_default(),
        c.audio,
        c.audio_seconds.map(|s| format!(" ({s:.2} s of audio)")).unwrap_or_default(),
        c.reps,
        c.threads.map(|t| format!(", {t} threads")).unwrap_or_default(),
    );
    let _ = writeln!(m, "| engine | cache | runs (failed) | exec → listening | exec → ready | exec → first transcript | first request | peak RSS MiB | phases (median s) |");
    let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|");
    for r in &c.rows {
        let phases: Vec<String> = r.phases.iter().map(|(p, v)| format!("{p} {v:.3}")).collect();
        let _ = writeln!(
            m,
            "| {} | {} | {} ({}) | {} | {} | {} | {} | {} | {} |",
            r.engine,
            r.cache,
            r.runs,
            r.failed,
            r.listening_s.as_ref().map(spread).unwrap_or_else(|| "–".into()),
            spread(&r.ready_s),
            spread(&r.first_transcript_s),
            spread(&r.first_request_s),
            crate::report::mib(r.peak_rss_bytes),
            if phases.is_empty() { "–".into() } else { phases.join(", ") },
        );
    }
    if let Some(d) = c.download_alone_s {
        let _ = writeln!(m, "\nThe model's objects fetched alone (GET, no process start): {d:.3} s.");
    }
    if !c.ratios.is_empty() {
        let _ = writeln!(m, "\n| tingxie cache | versus | exec → ready ratio | exec → first transcript ratio | peak RSS ratio |");
        let _ = writeln!(m, "|---|---|---|---|---|");
        for r in &c.ratios {
            let _ = writeln!(
                m,
                "| {} | {} | {:.2} | {:.2} | {} |",
                r.cache,
                r.versus,
                r.ready,
                r.first_transcript,
                r.peak_rss.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
            );
        }
    }
    let failures: Vec<&ColdRun> = c.runs.iter().filter(|r| r.error.is_some()).collect();
    if !failures.is_empty() {
        let _ = writeln!(m, "\nFailed runs:");
        for r in failures {
            let mut e = r.error.clone().unwrap_or_default().replace('\n', " ");
            e.truncate(400);
            let _ = writeln!(m, "- {} / {} run {}: {e}", r.engine, r.cache.name(), r.rep);
        }
    }
    let _ = writeln!(m, "\nChart: `coldstart-phases.svg`.\n");
    m
}

/// Times GETs of every object under `uri` (`s3://bucket/prefix/`), one after another.
pub async fn download_alone(store: Arc<object_store::aws::AmazonS3>, prefix: &str) -> Result<f64> {
    use object_store::{ObjectStore, ObjectStoreExt};
    let t = Instant::now();
    let list = store.list_with_delimiter(Some(&object_store::path::Path::from(prefix))).await?;
    for o in list.objects {
        store.get(&o.location).await?.bytes().await?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Uploads every file of `dir` to `s3://bucket/prefix/`.
pub async fn upload_dir(store: &object_store::aws::AmazonS3, dir: &std::path::Path, prefix: &str) -> Result<u64> {
    use object_store::ObjectStoreExt;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if !e.file_type()?.is_file() {
            continue;
        }
        let data = std::fs::read(e.path())?;
        bytes += data.len() as u64;
        let key = format!("{}/{}", prefix.trim_end_matches('/'), e.file_name().to_string_lossy());
        store
            .put(&object_store::path::Path::from(key.trim_start_matches('/')), data.into())
            .await
            .with_context(|| format!("uploading {}", e.path().display()))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(engine: &str, cache: CacheMode, ready: f64, first: f64, phases: &[(&str, f64)]) -> ColdRun {
        ColdRun {
            engine: engine.into(),
            cache,
            rep: 1,
            listening_s: Some(0.01),
            ready_s: Some(ready),
            first_transcript_s: Some(first),
            first_request_s: Some(first - ready),
            phases: phases.iter().map(|(p, v)| (p.to_string(), *v)).collect(),
            peak_rss_bytes: Some(100 << 20),
            text: None,
            error: None,
        }
    }

    #[test]
    fn rows_segments_and_ratios() {
        let runs = vec![
            run("tingxie", CacheMode::Warm, 0.3, 1.3, &[("weights", 0.1), ("warmup", 0.15), ("ready", 0.3)]),
            run("tingxie", CacheMode::Warm, 0.5, 1.5, &[("weights", 0.2), ("warmup", 0.25), ("ready", 0.5)]),
            run("tingxie", CacheMode::Warm, 0.4, 1.6, &[("weights", 0.3), ("warmup", 0.2), ("ready", 0.4)]),
            run("faster-whisper", CacheMode::Local, 2.0, 3.0, &[("import", 1.0), ("model_load", 0.8)]),
        ];
        let rows = rows(&runs);
        assert_eq!(rows.len(), 2);
        let t = &rows[0];
        assert_eq!(t.ready_s.median, 0.4);
        assert_eq!((t.ready_s.min, t.ready_s.max), (0.3, 0.5));
        assert_eq!(t.phases, vec![("weights".into(), 0.2), ("warmup".into(), 0.2), ("ready".into(), 0.4)]);
        // "ready" is a total, not stacked; the segments add up to the first transcript
        let total: f64 = t.segments.iter().map(|(_, v)| v).sum();
        assert!((total - t.first_transcript_s.median).abs() < 1e-9, "{:?}", t.segments);
        assert!(!t.segments.iter().any(|(p, _)| p == "ready"));
        let peer = &rows[1];
        assert!(peer.segments.iter().any(|(p, v)| p == "start-up not in a phase" && (v - 0.2).abs() < 1e-9));
        let r = ratios(&rows);
        assert_eq!(r.len(), 1);
        assert!((r[0].ready - 0.2).abs() < 1e-9);
        assert!((r[0].first_transcript - 0.5).abs() < 1e-9);
        assert_eq!(r[0].peak_rss, Some(1.0));
    }

    #[test]
    fn failed_runs_are_counted_not_averaged() {
        let mut bad = run("tingxie", CacheMode::Empty, 9.0, 9.0, &[]);
        bad.error = Some("boom".into());
        let rows = rows(&[run("tingxie", CacheMode::Empty, 1.0, 2.0, &[]), bad]);
        assert_eq!(rows[0].runs, 2);
        assert_eq!(rows[0].failed, 1);
        assert_eq!(rows[0].ready_s.median, 1.0);
    }
}
