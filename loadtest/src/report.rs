//! Figures from a run, and the report files: `report.json` (machines), `summary.md` (people),
//! SVG charts, and `requests.jsonl` (every request, for whoever wants to dig).

use crate::client::Outcome;
use crate::coldstart::ColdStartReport;
use crate::load::{LoadModel, RssSample, RunData};
use crate::prom;
use crate::stats::Summary;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub started_unix: u64,
    pub target: String,
    /// The command line, as run.
    pub command: Vec<String>,
    #[serde(default)]
    pub scenarios: Vec<ScenarioReport>,
    #[serde(default)]
    pub coldstart: Option<ColdStartReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Counts {
    /// Requests started after the warm-up (the measured ones).
    pub measured: u64,
    pub warmup: u64,
    pub ok: u64,
    pub rejected_429: u64,
    /// Every failure except 429 and client-side drops.
    pub non_429_errors: u64,
    pub dropped_client: u64,
    pub errors_by_kind: BTreeMap<String, u64>,
    /// A few error messages, one per kind, to start debugging from.
    pub error_examples: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rss {
    pub source: String,
    /// First sample after the warm-up, last sample, and the peak over the whole run.
    pub start_bytes: Option<u64>,
    pub end_bytes: Option<u64>,
    pub peak_bytes: Option<u64>,
    pub samples: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimelinePoint {
    /// Start of the one-second bucket, seconds from the start of the run.
    pub t: f64,
    pub completed_ok: u64,
    pub rejected_429: u64,
    pub errors: u64,
    pub audio_s: f64,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub rss_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: String,
    pub load: LoadModel,
    pub warmup_s: f64,
    pub duration_s: f64,
    pub max_requests: Option<u64>,
    pub elapsed_s: f64,
    /// Seconds from the end of the warm-up to the last measured answer.
    pub window_s: f64,
    pub counts: Counts,
    /// Client-side latency of successful measured requests.
    pub latency: Summary,
    /// Client-side latency of every measured answer, errors and 429s included.
    pub latency_all: Summary,
    /// From the `x-tingxie-queue-seconds` / `x-tingxie-compute-seconds` response headers.
    pub queue_wait: Summary,
    pub compute: Summary,
    /// Mean queue wait and compute over the window from the service's `/metrics` histograms.
    pub metrics_queue_wait_mean: Option<f64>,
    pub metrics_compute_mean: Option<f64>,
    pub max_queue_depth: Option<f64>,
    pub throughput_rps: f64,
    pub audio_seconds_per_s: f64,
    /// Server compute time over audio time (lower is faster; < 1 is faster than real time).
    pub rtf_compute: Option<f64>,
    /// Client latency over audio time.
    pub rtf_latency: Option<f64>,
    pub audio_seconds_total: f64,
    pub rss: Rss,
    pub timeline: Vec<TimelinePoint>,
}

pub fn summarize(
    scenario: &str,
    load: LoadModel,
    warmup_s: f64,
    duration_s: f64,
    max_requests: Option<u64>,
    data: &RunData,
) -> ScenarioReport {
    let measured: Vec<&Outcome> = data.outcomes.iter().filter(|o| !o.warmup).collect();
    let ok: Vec<&Outcome> = measured.iter().copied().filter(|o| o.ok()).collect();
    let mut errors_by_kind = BTreeMap::new();
    let mut error_examples = BTreeMap::new();
    for o in &measured {
        if let Some(k) = &o.error_kind {
            *errors_by_kind.entry(k.clone()).or_insert(0) += 1;
            error_examples.entry(k.clone()).or_insert_with(|| format!("{}: {}", o.file, o.error.clone().unwrap_or_default()));
        }
    }
    let count = |k: &str| errors_by_kind.get(k).copied().unwrap_or(0);
    let rejected_429 = count("429");
    let dropped_client = count("dropped_client");
    let failed = (measured.len() - ok.len()) as u64;
    let counts = Counts {
        measured: measured.len() as u64,
        warmup: (data.outcomes.len() - measured.len()) as u64,
        ok: ok.len() as u64,
        rejected_429,
        non_429_errors: failed - rejected_429 - dropped_client,
        dropped_client,
        errors_by_kind,
        error_examples,
    };
    let last_done = measured.iter().map(|o| o.sent_at + o.latency).fold(warmup_s, f64::max);
    let window_s = (last_done - warmup_s).max(1e-9);
    let audio_ok: f64 = ok.iter().filter_map(|o| o.audio_s).sum();
    let compute_ok: f64 = ok.iter().filter_map(|o| o.compute_s).sum();
    let audio_with_compute: f64 = ok.iter().filter(|o| o.compute_s.is_some()).filter_map(|o| o.audio_s).sum();
    let audio_with_latency: f64 = ok.iter().filter_map(|o| o.audio_s).sum();
    let latency_with_audio: f64 = ok.iter().filter(|o| o.audio_s.is_some()).map(|o| o.latency).sum();

    let metric_mean = |name: &str| -> Option<f64> {
        let (a, b) = (data.metrics_start.as_ref()?, data.metrics_end.as_ref()?);
        let sum = prom::value(b, &format!("{name}_sum"))? - prom::value(a, &format!("{name}_sum")).unwrap_or(0.0);
        let n = prom::value(b, &format!("{name}_count"))? - prom::value(a, &format!("{name}_count")).unwrap_or(0.0);
        (n > 0.0).then(|| sum / n)
    };

    ScenarioReport {
        scenario: scenario.to_string(),
        load,
        warmup_s,
        duration_s,
        max_requests,
        elapsed_s: data.elapsed_s,
        window_s,
        latency: Summary::of(&ok.iter().map(|o| o.latency).collect::<Vec<_>>()),
        latency_all: Summary::of(&measured.iter().filter(|o| o.status.is_some()).map(|o| o.latency).collect::<Vec<_>>()),
        queue_wait: Summary::of(&ok.iter().filter_map(|o| o.queue_s).collect::<Vec<_>>()),
        compute: Summary::of(&ok.iter().filter_map(|o| o.compute_s).collect::<Vec<_>>()),
        metrics_queue_wait_mean: metric_mean("tingxie_queue_wait_seconds"),
        metrics_compute_mean: metric_mean("tingxie_compute_seconds"),
        max_queue_depth: data.samples.iter().filter_map(|s| s.queue_depth).reduce(f64::max),
        throughput_rps: counts.ok as f64 / window_s,
        audio_seconds_per_s: audio_ok / window_s,
        rtf_compute: (audio_with_compute > 0.0).then(|| compute_ok / audio_with_compute),
        rtf_latency: (audio_with_latency > 0.0).then(|| latency_with_audio / audio_with_latency),
        audio_seconds_total: audio_ok,
        rss: rss_summary(&data.samples, &data.rss_source, warmup_s),
        timeline: timeline(&data.outcomes, &data.samples),
        counts,
    }
}

fn rss_summary(samples: &[RssSample], source: &str, warmup_s: f64) -> Rss {
    let start = samples.iter().find(|s| s.t >= warmup_s).or(samples.first());
    let peak = samples.iter().map(|s| s.hwm_bytes.unwrap_or(0).max(s.rss_bytes)).max();
    Rss {
        source: source.to_string(),
        start_bytes: start.map(|s| s.rss_bytes),
        end_bytes: samples.last().map(|s| s.rss_bytes),
        peak_bytes: peak,
        samples: samples.len(),
    }
}

fn timeline(outcomes: &[Outcome], samples: &[RssSample]) -> Vec<TimelinePoint> {
    let end = outcomes.iter().map(|o| o.sent_at + o.latency).fold(0.0, f64::max);
    let buckets = end.ceil() as usize;
    let mut points: Vec<(TimelinePoint, Vec<f64>)> = (0..buckets)
        .map(|i| {
            (
                TimelinePoint {
                    t: i as f64,
                    completed_ok: 0,
                    rejected_429: 0,
                    errors: 0,
                    audio_s: 0.0,
                    p50: None,
                    p99: None,
                    rss_bytes: None,
                },
                Vec::new(),
            )
        })
        .collect();
    for o in outcomes {
        let i = ((o.sent_at + o.latency) as usize).min(buckets.saturating_sub(1));
        let Some((p, lat)) = points.get_mut(i) else {
            continue;
        };
        match o.error_kind.as_deref() {
            None => {
                p.completed_ok += 1;
                p.audio_s += o.audio_s.unwrap_or(0.0);
                lat.push(o.latency);
            }
            Some("429") => p.rejected_429 += 1,
            Some(_) => p.errors += 1,
        }
    }
    for s in samples {
        if let Some((p, _)) = points.get_mut(s.t as usize) {
            p.rss_bytes = Some(p.rss_bytes.unwrap_or(0).max(s.rss_bytes));
        }
    }
    points
        .into_iter()
        .map(|(mut p, lat)| {
            p.p50 = crate::stats::percentile(&lat, 50.0);
            p.p99 = crate::stats::percentile(&lat, 99.0);
            p
        })
        .collect()
}

pub fn mib(b: Option<u64>) -> String {
    b.map(|b| format!("{:.0}", b as f64 / 1048576.0)).unwrap_or_else(|| "–".into())
}

pub fn secs(x: Option<f64>) -> String {
    match x {
        Some(x) if x < 10.0 => format!("{x:.3}"),
        Some(x) => format!("{x:.2}"),
        None => "–".into(),
    }
}

pub fn markdown(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# tingxie load test\n");
    let _ = writeln!(m, "Target: `{}`  ", r.target);
    let _ = writeln!(m, "Command: `{}`\n", r.command.join(" "));
    if !r.scenarios.is_empty() {
        let _ = writeln!(m, "## Load\n");
        let _ = writeln!(
            m,
            "| scenario | load | measured | ok | 429 | non-429 errors | p50 s | p90 s | p99 s | max s | req/s | audio s/s | RTF (compute) | queue wait mean s | compute mean s | RSS start / end / peak MiB |"
        );
        let _ = writeln!(m, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for s in &r.scenarios {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {} / {} / {} |",
                s.scenario,
                s.load.describe(),
                s.counts.measured,
                s.counts.ok,
                s.counts.rejected_429,
                s.counts.non_429_errors,
                secs(s.latency.p50),
                secs(s.latency.p90),
                secs(s.latency.p99),
                secs(s.latency.max),
                s.throughput_rps,
                s.audio_seconds_per_s,
                s.rtf_compute.map(|x| format!("{x:.3}")).unwrap_or_else(|| "–".into()),
                secs(s.queue_wait.mean.or(s.metrics_queue_wait_mean)),
                secs(s.compute.mean.or(s.metrics_compute_mean)),
                mib(s.rss.start_bytes),
                mib(s.rss.end_bytes),
                mib(s.rss.peak_bytes),
            );
        }
        let _ = writeln!(m);
        for s in &r.scenarios {
            let _ = writeln!(
                m,
                "- **{}**: warm-up {:.1} s excluded, then {:.1} s{}; window {:.1} s; {} warm-up requests; RSS from {}.",
                s.scenario,
                s.warmup_s,
                s.duration_s,
                s.max_requests.map(|n| format!(" or {n} requests")).unwrap_or_default(),
                s.window_s,
                s.counts.warmup,
                s.rss.source
            );
            if !s.counts.errors_by_kind.is_empty() {
                let kinds: Vec<String> = s.counts.errors_by_kind.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                let _ = writeln!(m, "  errors by kind: {}", kinds.join(", "));
                for (k, e) in &s.counts.error_examples {
                    let _ = writeln!(m, "  - first `{k}`: {}", e.replace('\n', " "));
                }
            }
            let _ = writeln!(m, "  charts: `latency-hist-{0}.svg`, `timeline-{0}.svg`", s.scenario);
        }
        let _ = writeln!(m);
    }
    if let Some(c) = &r.coldstart {
        m.push_str(&crate::coldstart::markdown(c));
    }
    m
}

/// Writes `report.json`, `summary.md`, `requests.jsonl` and the charts into `dir`.
pub fn write_all(dir: &Path, report: &Report, runs: &[(&str, &RunData)]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(report)?)?;
    std::fs::write(dir.join("summary.md"), markdown(report))?;
    if !runs.is_empty() {
        let mut lines = String::new();
        for (scenario, data) in runs {
            for o in &data.outcomes {
                let mut v = serde_json::to_value(o)?;
                v["scenario"] = serde_json::Value::String(scenario.to_string());
                lines.push_str(&v.to_string());
                lines.push('\n');
            }
        }
        std::fs::write(dir.join("requests.jsonl"), lines)?;
    }
    let outcomes: Vec<(String, Outcome)> =
        runs.iter().flat_map(|(s, d)| d.outcomes.iter().map(move |o| (s.to_string(), o.clone()))).collect();
    charts(dir, report, &outcomes)
}

fn charts(dir: &Path, report: &Report, outcomes: &[(String, Outcome)]) -> Result<()> {
    for s in &report.scenarios {
        let lat: Vec<f64> = outcomes.iter().filter(|(sc, o)| *sc == s.scenario && !o.warmup && o.ok()).map(|(_, o)| o.latency).collect();
        crate::charts::latency_histogram(&dir.join(format!("latency-hist-{}.svg", s.scenario)), &s.scenario, &lat)?;
        crate::charts::timeline(&dir.join(format!("timeline-{}.svg", s.scenario)), s)?;
    }
    if let Some(c) = &report.coldstart {
        crate::charts::coldstart_phases(&dir.join("coldstart-phases.svg"), c)?;
    }
    Ok(())
}

/// Draws `summary.md` and the charts again from `report.json` and `requests.jsonl`.
pub fn render(dir: &Path) -> Result<()> {
    let report = read(dir)?;
    let mut outcomes = Vec::new();
    if let Ok(text) = std::fs::read_to_string(dir.join("requests.jsonl")) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line)?;
            let scenario = v["scenario"].as_str().unwrap_or_default().to_string();
            outcomes.push((scenario, serde_json::from_value::<Outcome>(v)?));
        }
    }
    std::fs::write(dir.join("summary.md"), markdown(&report))?;
    charts(dir, &report, &outcomes)
}

/// Reads a `report.json` back.
pub fn read(dir: &Path) -> Result<Report> {
    let text = std::fs::read_to_string(dir.join("report.json"))?;
    Ok(serde_json::from_str(&text)?)
}
