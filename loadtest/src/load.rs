//! Load generation: closed loop (N clients, each sending its next request when the last one
//! is answered) or open loop (Poisson arrivals at R requests/s, whatever the answers), a
//! warm-up excluded from the figures, a bounded duration and request count, and a sampler
//! that follows the server's memory and queue while the load runs.

use crate::client::{Client, Outcome, Scenario};
use crate::corpus::Corpus;
use crate::prom;
use crate::schedule::poisson_arrivals;
use crate::server::{proc_rss, scrape};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum LoadModel {
    /// `concurrency` clients, each waiting for its answer before sending again.
    Closed { concurrency: usize },
    /// Poisson arrivals at `rate` per second; at most `max_in_flight` outstanding, arrivals
    /// beyond that are counted as `dropped_client` (the client, not the server, gave up).
    Open { rate: f64, max_in_flight: usize },
}

impl LoadModel {
    pub fn describe(&self) -> String {
        match self {
            LoadModel::Closed { concurrency } => format!("closed loop, {concurrency} clients"),
            LoadModel::Open { rate, .. } => format!("open loop, Poisson {rate} req/s"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub scenario: Scenario,
    pub model: LoadModel,
    pub warmup: Duration,
    pub duration: Duration,
    /// Measured requests (warm-up not counted); the run stops at whichever bound comes first.
    pub max_requests: Option<u64>,
    pub seed: u64,
    pub progress: bool,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RssSample {
    /// Seconds from the start of the run.
    pub t: f64,
    pub rss_bytes: u64,
    /// Peak resident memory so far (`VmHWM`), when the process is ours to read.
    pub hwm_bytes: Option<u64>,
    pub queue_depth: Option<f64>,
}

/// Where the server's memory figures came from.
#[derive(Debug, Clone)]
pub enum Watch {
    /// The load test spawned the server: `/proc/PID/status` (VmRSS, VmHWM).
    Pid(u32),
    /// A server started elsewhere: `process_resident_memory_bytes` from `/metrics`.
    Metrics,
}

pub struct RunData {
    pub outcomes: Vec<Outcome>,
    pub samples: Vec<RssSample>,
    pub rss_source: String,
    pub metrics_start: Option<Vec<prom::Sample>>,
    pub metrics_end: Option<Vec<prom::Sample>>,
    pub elapsed_s: f64,
}

pub async fn run(client: Arc<Client>, corpus: Arc<Corpus>, spec: &LoadSpec, watch: Watch) -> RunData {
    let start = Instant::now();
    let total = spec.warmup + spec.duration;
    let warm_end = start + spec.warmup;
    let deadline = start + total;
    let outcomes = Arc::new(Mutex::new(Vec::<Outcome>::new()));
    let bar = progress_bar(spec, total);
    let stop = Arc::new(AtomicBool::new(false));

    // Sampler: memory every 500 ms, queue depth and the metrics snapshots around the window.
    let sampler = {
        let (client, stop, base) = (client.clone(), stop.clone(), client.base.clone());
        let watch = watch.clone();
        tokio::spawn(async move { sample_loop(&client.http, &base, watch, start, warm_end, stop).await })
    };

    let counters = Arc::new(Counters::default());
    let ticker = {
        let (bar, counters, stop) = (bar.clone(), counters.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                bar.set_position(start.elapsed().as_millis().min(total.as_millis()) as u64);
                bar.set_message(counters.message());
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let record = {
        let (outcomes, counters) = (outcomes.clone(), counters.clone());
        move |o: Outcome| {
            counters.add(&o);
            outcomes.lock().unwrap().push(o);
        }
    };

    match spec.model {
        LoadModel::Closed { concurrency } => {
            let next = Arc::new(AtomicU64::new(0));
            let measured = Arc::new(AtomicU64::new(0));
            let mut set = JoinSet::new();
            for _ in 0..concurrency.max(1) {
                let (client, corpus, next, measured, record) =
                    (client.clone(), corpus.clone(), next.clone(), measured.clone(), record.clone());
                let (scenario, max) = (spec.scenario, spec.max_requests);
                set.spawn(async move {
                    loop {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        let warmup = now < warm_end;
                        if !warmup && max.is_some_and(|m| measured.fetch_add(1, Ordering::SeqCst) >= m) {
                            break;
                        }
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let mut o = client.send(scenario, i, corpus.pick(i)).await;
                        o.sent_at = (now - start).as_secs_f64();
                        o.warmup = warmup;
                        let back_off = matches!(o.error_kind.as_deref(), Some("429" | "503" | "connect"));
                        record(o);
                        if back_off {
                            // A rejected client waits a little, as a polite one would.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                });
            }
            while set.join_next().await.is_some() {}
        }
        LoadModel::Open { rate, max_in_flight } => {
            let arrivals = poisson_arrivals(rate, total.as_secs_f64(), usize::MAX, spec.seed);
            let in_flight = Arc::new(AtomicUsize::new(0));
            let mut measured = 0u64;
            let mut set = JoinSet::new();
            for (i, t) in arrivals.into_iter().enumerate() {
                let warmup = t < spec.warmup.as_secs_f64();
                if !warmup {
                    if spec.max_requests.is_some_and(|m| measured >= m) {
                        break;
                    }
                    measured += 1;
                }
                tokio::time::sleep_until((start + Duration::from_secs_f64(t)).into()).await;
                let file = corpus.pick(i as u64).clone();
                if in_flight.load(Ordering::SeqCst) >= max_in_flight {
                    record(Outcome {
                        index: i as u64,
                        file: file.name.clone(),
                        sent_at: t,
                        latency: 0.0,
                        status: None,
                        error_kind: Some("dropped_client".into()),
                        error: Some(format!("{max_in_flight} requests already in flight")),
                        queue_s: None,
                        compute_s: None,
                        audio_s: file.seconds,
                        put_s: None,
                        warmup,
                    });
                    continue;
                }
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (client, in_flight, record, scenario) = (client.clone(), in_flight.clone(), record.clone(), spec.scenario);
                let sent_at = start.elapsed().as_secs_f64();
                set.spawn(async move {
                    let mut o = client.send(scenario, i as u64, &file).await;
                    o.sent_at = sent_at;
                    o.warmup = warmup;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    record(o);
                });
                while set.try_join_next().is_some() {}
            }
            // Outstanding requests finish (each is bounded by the client timeout).
            while set.join_next().await.is_some() {}
        }
    }

    let elapsed_s = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    let _ = ticker.await;
    let (samples, metrics_start, mut metrics_end, rss_source) = sampler.await.unwrap_or_default();
    if metrics_end.is_none() {
        metrics_end = scrape(&client.http, &client.base).await.ok();
    }
    bar.set_message(counters.message());
    bar.finish();
    let mut outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    outcomes.sort_by(|a, b| a.sent_at.partial_cmp(&b.sent_at).unwrap());
    RunData { outcomes, samples, rss_source, metrics_start, metrics_end, elapsed_s }
}

type SamplerResult = (Vec<RssSample>, Option<Vec<prom::Sample>>, Option<Vec<prom::Sample>>, String);

async fn sample_loop(
    http: &reqwest::Client,
    base: &Url,
    watch: Watch,
    start: Instant,
    warm_end: Instant,
    stop: Arc<AtomicBool>,
) -> SamplerResult {
    let mut samples = Vec::new();
    let mut metrics_start = None;
    let mut tick = 0u64;
    let source = match watch {
        Watch::Pid(pid) => format!("/proc/{pid}/status (VmRSS, VmHWM)"),
        Watch::Metrics => "process_resident_memory_bytes from /metrics".to_string(),
    };
    loop {
        let t = start.elapsed().as_secs_f64();
        // Every second (and once the warm-up is over) the metrics are read too.
        let want_metrics = tick.is_multiple_of(2) || (metrics_start.is_none() && Instant::now() >= warm_end);
        let metrics = if want_metrics || matches!(watch, Watch::Metrics) { scrape(http, base).await.ok() } else { None };
        if metrics_start.is_none() && Instant::now() >= warm_end {
            metrics_start = metrics.clone();
        }
        let queue_depth = metrics.as_ref().and_then(|m| prom::value(m, "tingxie_queue_depth"));
        let mem = match watch {
            Watch::Pid(pid) => proc_rss(pid).map(|(rss, hwm)| (rss, Some(hwm))),
            Watch::Metrics => metrics.as_ref().and_then(|m| prom::value(m, "process_resident_memory_bytes")).map(|v| (v as u64, None)),
        };
        if let Some((rss_bytes, hwm_bytes)) = mem {
            samples.push(RssSample { t, rss_bytes, hwm_bytes, queue_depth });
        }
        if stop.load(Ordering::SeqCst) {
            return (samples, metrics_start, metrics, source);
        }
        tick += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    r429: AtomicU64,
    err: AtomicU64,
}

impl Counters {
    fn add(&self, o: &Outcome) {
        match o.error_kind.as_deref() {
            None => &self.ok,
            Some("429") => &self.r429,
            Some(_) => &self.err,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
    fn message(&self) -> String {
        format!(
            "ok {}  429 {}  errors {}",
            self.ok.load(Ordering::Relaxed),
            self.r429.load(Ordering::Relaxed),
            self.err.load(Ordering::Relaxed)
        )
    }
}

fn progress_bar(spec: &LoadSpec, total: Duration) -> ProgressBar {
    let bar = ProgressBar::new(total.as_millis() as u64);
    if !spec.progress {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(ProgressStyle::with_template("{prefix:>8} [{elapsed_precise}] {bar:30} {percent:>3}% {msg}").expect("valid template"));
    bar.set_prefix(spec.scenario.name());
    bar
}
