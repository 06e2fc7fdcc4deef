//! Command line: `run` (load against a running or spawned server) and `coldstart`
//! (scale from zero, optionally side by side with faster-whisper).

use crate::client::{create_bucket, Client, S3Target, Scenario};
use crate::coldstart::{CacheMode, ColdSpec, Peer};
use crate::corpus::Corpus;
use crate::load::{LoadModel, LoadSpec, RunData, Watch};
use crate::report::{self, Report};
use crate::server::{self, free_port, SpawnSpec, Spawned};
use crate::target::check_target;
use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Parser, Debug)]
#[command(name = "tingxie-loadtest", version, about = "Load, scale-from-zero and reports for tingxie")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Send load to a running tingxie (--target) or to one started here (--spawn).
    Run(RunArgs),
    /// Scale from zero: start the server on the first request, N times, and report phases.
    Coldstart(ColdArgs),
    /// Draw summary.md and the charts again from a report folder (report.json, requests.jsonl).
    Render {
        /// The report folder.
        dir: PathBuf,
    },
}

/// Parses `500ms`, `5s`, `10m`, `1h` or a number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num.trim().parse().map_err(|_| format!("{s:?} is not a duration (e.g. 500ms, 5s, 10m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h)")),
    };
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?} is not a duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected KEY=VALUE"))?;
    Ok((k.to_string(), v.to_string()))
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    /// Model for a server started here (TINGXIE_MODEL): a directory or a URI.
    #[arg(long, default_value = "models/whisper-tiny-en")]
    pub model: String,
    /// TINGXIE_THREADS for a server started here.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Extra environment for a server started here (repeatable).
    #[arg(long = "server-env", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// Seconds to wait for readiness of a server started here.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub ready_timeout: Duration,
    /// Start an S3-protocol server (moto_server) for the events scenario and s3:// models.
    #[arg(long)]
    pub moto: Option<PathBuf>,
    /// Use this S3 endpoint instead (default: AWS_ENDPOINT_URL, else the AWS default).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    pub s3_endpoint: Option<String>,
    /// Send load (and S3 traffic) to non-loopback addresses.
    #[arg(long)]
    pub allow_remote: bool,
    /// Write the report here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// A running tingxie. Ignored with --spawn.
    #[arg(long, default_value = "http://127.0.0.1:8080/")]
    pub target: String,
    /// Start `BIN serve` on a free loopback port and load it (its memory read from /proc).
    #[arg(long)]
    pub spawn: Option<PathBuf>,
    /// Scenarios, run one after another.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "http")]
    pub scenario: Vec<Scenario>,
    /// Closed loop: this many concurrent clients.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Open loop: Poisson arrivals at this many requests per second (overrides --concurrency).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Open loop: arrivals beyond this many outstanding requests are dropped by the client.
    #[arg(long, default_value_t = 256)]
    pub max_in_flight: usize,
    /// Warm-up, excluded from the figures.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Measured duration per scenario.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Stop a scenario after this many measured requests.
    #[arg(long)]
    pub requests: Option<u64>,
    /// Audio: a folder (every audio file in it) or one file.
    #[arg(long, default_value = "../shared/fixtures/speech")]
    pub audio: PathBuf,
    /// Only files matching these globs (repeatable).
    #[arg(long)]
    pub include: Vec<String>,
    /// Skip files longer than this (seconds; 0 = no limit).
    #[arg(long, default_value_t = 30.0)]
    pub max_audio_seconds: f64,
    /// `response_format` asked for.
    #[arg(long, default_value = "json")]
    pub response_format: String,
    /// `model` field of the OpenAI scenario.
    #[arg(long, default_value = "whisper-1")]
    pub openai_model: String,
    /// Bucket the events scenario writes to (created when --moto is used).
    #[arg(long, default_value = "tingxie-loadtest")]
    pub bucket: String,
    /// Where the service writes transcripts, relative to the bucket.
    #[arg(long, default_value = "transcripts/")]
    pub transcript_prefix: String,
    /// Client timeout of one request.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Seed of the arrival schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Exit with status 1 when any measured request failed other than by 429.
    #[arg(long)]
    pub fail_on_errors: bool,
    /// TINGXIE_QUEUE_DEPTH for a server started here.
    #[arg(long)]
    pub queue_depth: Option<usize>,
    #[command(flatten)]
    pub common: ServerArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PeerKind {
    FasterWhisper,
}

#[derive(Args, Debug)]
pub struct ColdArgs {
    /// The tingxie binary to start.
    #[arg(long, default_value = "target/release/tingxie")]
    pub server: PathBuf,
    /// Its arguments.
    #[arg(long, default_value = "serve", allow_hyphen_values = true)]
    pub server_args: String,
    /// The model URI pulled through the node cache (s3://bucket/prefix/ or file:///dir); with
    /// it, runs use an empty and a warm TINGXIE_CACHE_DIR; without it, --model in place.
    #[arg(long)]
    pub model_uri: Option<String>,
    /// Upload --model to --model-uri (s3://) before the runs.
    #[arg(long)]
    pub upload_model: bool,
    /// Cache modes to run (default: empty,warm with --model-uri, else local).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub cache: Vec<CacheMode>,
    /// Repetitions of each mode.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// The held first request.
    #[arg(long, default_value = "../shared/fixtures/speech/s23.wav")]
    pub audio: PathBuf,
    /// Run the same for a minimal faster-whisper server and print the ratios.
    #[arg(long, value_enum)]
    pub peer: Option<PeerKind>,
    #[arg(long, default_value = ".venv/bin/python")]
    pub python: PathBuf,
    #[arg(long, default_value = "bench/faster_whisper_server.py")]
    pub peer_script: PathBuf,
    #[command(flatten)]
    pub common: ServerArgs,
}

fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn http_client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder().pool_max_idle_per_host(1024).no_proxy().build()?)
}

/// Starts moto when asked and returns the S3 endpoint to use.
async fn s3_endpoint(args: &ServerArgs, out: &std::path::Path, http: &reqwest::Client) -> Result<(Option<String>, Option<Spawned>)> {
    if let Some(bin) = &args.moto {
        let moto = server::start_moto(bin, &out.join("logs/moto.log"), http).await?;
        let ep = moto.base.as_str().trim_end_matches('/').to_string();
        return Ok((Some(ep), Some(moto)));
    }
    if let Some(ep) = &args.s3_endpoint {
        check_target(ep, args.allow_remote).context("S3 endpoint")?;
    }
    Ok((args.s3_endpoint.clone(), None))
}

pub async fn main(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Run(a) => run(a).await,
        Command::Coldstart(a) => coldstart(a).await,
        Command::Render { dir } => {
            report::render(&dir)?;
            println!("{}", std::fs::read_to_string(dir.join("summary.md"))?);
            Ok(0)
        }
    }
}

async fn run(a: RunArgs) -> Result<u8> {
    let out = a.common.out.clone().unwrap_or_else(|| PathBuf::from("target/loadtest/run"));
    std::fs::create_dir_all(&out)?;
    let http = http_client()?;
    // Refuse a remote target before anything is sent anywhere.
    let target = if a.spawn.is_none() { Some(check_target(&a.target, a.common.allow_remote)?) } else { None };
    if let (Some(ep), None) = (&a.common.s3_endpoint, &a.common.moto) {
        check_target(ep, a.common.allow_remote).context("S3 endpoint")?;
    }
    let max = (a.max_audio_seconds > 0.0).then_some(a.max_audio_seconds);
    let corpus = Arc::new(Corpus::load(&a.audio, &a.include, max)?);
    let needs_s3 = a.scenario.contains(&Scenario::Events);
    let (endpoint, moto) = if needs_s3 { s3_endpoint(&a.common, &out, &http).await? } else { (None, None) };
    if let (Some(ep), Some(_)) = (&endpoint, &moto) {
        create_bucket(&http, ep, &a.bucket).await?;
    }

    // The server: started here, or the given target.
    let mut spawned = None;
    let (base, watch) = if let Some(bin) = &a.spawn {
        // The run's history stays in its output folder, not in the working directory.
        let history = out.join("history").display().to_string();
        let mut env = vec![("TINGXIE_MODEL".to_string(), a.common.model.clone()), ("TINGXIE_HISTORY".to_string(), history)];
        if let Some(t) = a.common.threads {
            env.push(("TINGXIE_THREADS".into(), t.to_string()));
        }
        if let Some(q) = a.queue_depth {
            env.push(("TINGXIE_QUEUE_DEPTH".into(), q.to_string()));
        }
        if let Some(ep) = &endpoint {
            env.extend(server::s3_env(ep));
            env.push(("TINGXIE_ALLOWED_SOURCES".into(), format!("s3://{}/", a.bucket)));
        }
        env.extend(a.common.server_env.iter().cloned());
        let spec = SpawnSpec {
            name: "tingxie".into(),
            program: bin.clone(),
            args: vec!["serve".into()],
            env,
            port: free_port()?,
            log: out.join("logs/tingxie.log"),
        };
        let mut s = spec.spawn()?;
        let t = s.wait_ready(&http, a.common.ready_timeout, Duration::from_millis(50)).await?;
        eprintln!("tingxie ready {:.2} s after exec (pid {}, {})", t.ready_s, s.pid, s.base);
        let r = (s.base.clone(), Watch::Pid(s.pid));
        spawned = Some(s);
        r
    } else {
        let base = target.expect("checked above");
        let ready = http.get(base.join("health/readiness")?).timeout(Duration::from_secs(10)).send().await;
        match ready {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => bail!("{base} is not ready (GET /health/readiness: {})", r.status()),
            Err(e) => bail!("{base} does not answer: {e}"),
        }
        (base, Watch::Metrics)
    };

    let run_id = format!("{}-{}", now_unix(), std::process::id());
    let s3 = if needs_s3 { Some(S3Target::new(&a.bucket, endpoint.as_deref(), "loadtest/", &a.transcript_prefix)?) } else { None };
    let client = Arc::new(Client {
        http: http.clone(),
        base: base.clone(),
        s3,
        response_format: a.response_format.clone(),
        openai_model: a.openai_model.clone(),
        run_id,
        timeout: a.timeout,
    });
    let model = match a.rate {
        Some(rate) if rate > 0.0 => LoadModel::Open { rate, max_in_flight: a.max_in_flight },
        Some(_) => bail!("--rate must be positive"),
        None => LoadModel::Closed { concurrency: a.concurrency },
    };
    let mut runs: Vec<(&str, RunData)> = Vec::new();
    let mut scenarios = Vec::new();
    for sc in &a.scenario {
        let spec = LoadSpec {
            scenario: *sc,
            model,
            warmup: a.warmup,
            duration: a.duration,
            max_requests: a.requests,
            seed: a.seed,
            progress: !a.common.no_progress,
        };
        let data = crate::load::run(client.clone(), corpus.clone(), &spec, watch.clone()).await;
        scenarios.push(report::summarize(sc.name(), model, a.warmup.as_secs_f64(), a.duration.as_secs_f64(), a.requests, &data));
        runs.push((sc.name(), data));
        if let Some(s) = spawned.as_mut() {
            if let Ok(Some(status)) = s.child.try_wait() {
                eprintln!("tingxie exited during the run ({status}); log tail:\n{}", s.log_tail(20));
                break;
            }
        }
    }
    if let Some(s) = spawned {
        s.stop(Duration::from_secs(10)).await;
    }
    if let Some(m) = moto {
        m.stop(Duration::from_secs(5)).await;
    }
    let rep = Report {
        tool: format!("tingxie-loadtest {}", env!("CARGO_PKG_VERSION")),
        started_unix: now_unix(),
        target: base.to_string(),
        command: std::env::args().collect(),
        scenarios,
        coldstart: None,
    };
    let refs: Vec<(&str, &RunData)> = runs.iter().map(|(n, d)| (*n, d)).collect();
    report::write_all(&out, &rep, &refs)?;
    println!("{}", report::markdown(&rep));
    eprintln!("report: {}", out.display());
    let errors: u64 = rep.scenarios.iter().map(|s| s.counts.non_429_errors).sum();
    Ok(if a.fail_on_errors && errors > 0 { 1 } else { 0 })
}

async fn coldstart(a: ColdArgs) -> Result<u8> {
    let out = a.common.out.clone().unwrap_or_else(|| PathBuf::from("target/loadtest/coldstart"));
    std::fs::create_dir_all(&out)?;
    let http = http_client()?;
    let audio = Corpus::load(&a.audio, &[], None)?.files.remove(0);
    let model_dir =
        std::fs::canonicalize(&a.common.model).with_context(|| format!("--model {} must be a local directory here", a.common.model))?;
    let mut env = a.common.server_env.clone();
    let mut moto = None;
    let mut download_alone_s = None;
    if let Some(uri) = a.model_uri.as_deref().filter(|u| u.starts_with("s3://")) {
        let (endpoint, m) = s3_endpoint(&a.common, &out, &http).await?;
        moto = m;
        let rest = &uri["s3://".len()..];
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if let Some(ep) = &endpoint {
            env.extend(server::s3_env(ep));
            if moto.is_some() {
                create_bucket(&http, ep, bucket).await?;
            }
        }
        let target = S3Target::new(bucket, endpoint.as_deref(), "", "")?;
        if a.upload_model {
            let bytes = crate::coldstart::upload_dir(&target.store, &model_dir, prefix).await?;
            eprintln!("uploaded {bytes} bytes to {uri}");
        }
        download_alone_s = crate::coldstart::download_alone(target.store.clone(), prefix.trim_end_matches('/'))
            .await
            .map_err(|e| eprintln!("timing the download alone failed: {e:#}"))
            .ok();
    }
    let caches = if !a.cache.is_empty() {
        a.cache.clone()
    } else if a.model_uri.is_some() {
        vec![CacheMode::Empty, CacheMode::Warm]
    } else {
        vec![CacheMode::Local]
    };
    let spec = ColdSpec {
        server: std::fs::canonicalize(&a.server).unwrap_or(a.server.clone()),
        server_args: a.server_args.split_whitespace().map(str::to_string).collect(),
        model_dir,
        model_uri: a.model_uri.clone(),
        caches,
        reps: a.reps.max(1),
        audio,
        threads: a.common.threads,
        env,
        out: out.clone(),
        ready_timeout: a.common.ready_timeout,
        peer: a.peer.map(|_| Peer { python: a.python.clone(), script: a.peer_script.clone() }),
        progress: !a.common.no_progress,
    };
    let cold = crate::coldstart::run(&spec, &http, download_alone_s).await?;
    if let Some(m) = moto {
        m.stop(Duration::from_secs(5)).await;
    }
    let failed = cold.runs.iter().filter(|r| r.error.is_some()).count();
    let rep = Report {
        tool: format!("tingxie-loadtest {}", env!("CARGO_PKG_VERSION")),
        started_unix: now_unix(),
        target: "spawned per run".into(),
        command: std::env::args().collect(),
        scenarios: vec![],
        coldstart: Some(cold),
    };
    report::write_all(&out, &rep, &[])?;
    println!("{}", report::markdown(&rep));
    eprintln!("report: {}", out.display());
    Ok(if failed > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn cli_parses() {
        let c = Cli::try_parse_from(["tingxie-loadtest", "run", "--scenario", "http,openai,events", "--rate", "2.5", "--duration", "10m"])
            .unwrap();
        let Command::Run(r) = c.command else { panic!() };
        assert_eq!(r.scenario, vec![Scenario::Http, Scenario::Openai, Scenario::Events]);
        assert_eq!(r.rate, Some(2.5));
        assert_eq!(r.duration, Duration::from_secs(600));
    }
}
