//! Prometheus metrics of the service. The names are a contract: the alert rules and the
//! Grafana dashboard under `knative/` use them, and a check compares them with `/metrics`.

use prometheus::{
    Counter, Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Buckets for request latency and compute time: 50 ms to 30 min.
const SECONDS_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0];
/// Buckets for the real-time factor (compute seconds per audio second).
const RTF_BUCKETS: &[f64] = &[0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0];

pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub inflight: IntGauge,
    pub queue_depth: IntGauge,
    pub queue_capacity: IntGauge,
    pub places_held: IntGauge,
    pub engine_busy: IntGauge,
    pub body_bytes: IntGauge,
    pub build_info: IntGaugeVec,
    pub queue_wait: Histogram,
    pub class_queue_wait: HistogramVec,
    pub tenant_requests: IntCounterVec,
    pub history_errors: IntCounter,
    pub preemptions: IntCounter,
    pub callbacks: IntCounterVec,
    pub compute: Histogram,
    pub audio_seconds: Counter,
    pub transcriptions: IntCounterVec,
    pub model_requests: IntCounterVec,
    pub model_loads: IntCounterVec,
    pub model_unloads: IntCounterVec,
    pub model_load_seconds: HistogramVec,
    pub model_resident_bytes: IntGaugeVec,
    pub real_time_factor: Histogram,
    pub events: IntCounterVec,
    pub duplicates_skipped: IntCounter,
    pub rejected: IntCounterVec,
    pub cancelled: IntCounter,
    pub ready: IntGauge,
    pub cold_start_phase: GaugeVec,
    pub cache_requests: IntCounterVec,
    pub cache_bytes: IntCounter,
    pub kernels_compiled: IntCounter,
    pub autotune_runs: IntCounter,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            register(&r, IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"))
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            register(&r, Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid metric"))
        };
        let gauge = |name: &str, help: &str| register(&r, IntGauge::new(name, help).expect("valid metric"));
        let counter = |name: &str, help: &str| register(&r, IntCounter::new(name, help).expect("valid metric"));
        #[cfg(target_os = "linux")]
        r.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).expect("process metrics");
        let metrics = Metrics {
            http_requests: counter_vec("tingxie_http_requests_total", "HTTP requests by route and status.", &["route", "status"]),
            http_duration: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("tingxie_http_request_duration_seconds", "HTTP request latency by route.")
                        .buckets(SECONDS_BUCKETS.to_vec()),
                    &["route"],
                )
                .expect("valid metric"),
            ),
            inflight: gauge("tingxie_inflight_requests", "HTTP requests being served and asynchronous jobs running."),
            queue_depth: gauge("tingxie_queue_depth", "Jobs waiting for the engine."),
            queue_capacity: gauge("tingxie_queue_capacity", "Jobs the engine admits at once (queue depth + 1 computing)."),
            places_held: gauge("tingxie_queue_places_held", "Queue places held by requests (waiting, uploading or computing)."),
            engine_busy: gauge("tingxie_engine_busy", "1 while the engine computes a job."),
            body_bytes: gauge(
                "tingxie_body_bytes_buffered",
                "Bytes of request bodies held in memory (bounded by TINGXIE_BODY_MEMORY_BYTES).",
            ),
            build_info: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("tingxie_build_info", "1, labelled with the version, model and device."),
                    &["version", "model", "device"],
                )
                .expect("valid metric"),
            ),
            queue_wait: histogram("tingxie_queue_wait_seconds", "Time a job waited for the engine.", SECONDS_BUCKETS),
            compute: histogram("tingxie_compute_seconds", "Engine time per job.", SECONDS_BUCKETS),
            class_queue_wait: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("tingxie_class_queue_wait_seconds", "Time a job waited for the engine, by service class.")
                        .buckets(SECONDS_BUCKETS.to_vec()),
                    &["class"],
                )
                .expect("valid metric"),
            ),
            tenant_requests: counter_vec(
                "tingxie_tenant_requests_total",
                "Requests by tenant (listed ones; others `unlisted`), class and outcome (admitted, limited).",
                &["tenant", "class", "outcome"],
            ),
            preemptions: counter(
                "tingxie_preemptions_total",
                "Higher-class jobs computed inside a running lower-class job, between two of its steps.",
            ),
            history_errors: counter("tingxie_history_errors_total", "History records that could not be written."),
            callbacks: counter_vec(
                "tingxie_callbacks_total",
                "Callbacks of asynchronous jobs by outcome (delivered, given_up after TINGXIE_CALLBACK_ATTEMPTS).",
                &["outcome"],
            ),
            audio_seconds: register(
                &r,
                Counter::new("tingxie_audio_seconds_total", "Seconds of audio transcribed.").expect("valid metric"),
            ),
            transcriptions: counter_vec(
                "tingxie_transcriptions_total",
                "Transcripts produced, by language (given or detected) and task (transcribe, translate).",
                &["language", "task"],
            ),
            model_requests: counter_vec("tingxie_model_requests_total", "Jobs computed, by model.", &["model"]),
            model_loads: counter_vec("tingxie_model_loads_total", "Models loaded onto the device (the first at start).", &["model"]),
            model_unloads: counter_vec(
                "tingxie_model_unloads_total",
                "Idle models unloaded to make room under TINGXIE_MODEL_MEMORY.",
                &["model"],
            ),
            model_load_seconds: register(
                &r,
                HistogramVec::new(
                    HistogramOpts::new("tingxie_model_load_seconds", "Time to bring a model from the node cache onto the device.")
                        .buckets(SECONDS_BUCKETS.to_vec()),
                    &["model"],
                )
                .expect("valid metric"),
            ),
            model_resident_bytes: register(
                &r,
                IntGaugeVec::new(
                    Opts::new("tingxie_model_resident_bytes", "Weight bytes of each loaded model (0 once unloaded)."),
                    &["model"],
                )
                .expect("valid metric"),
            ),
            real_time_factor: histogram("tingxie_real_time_factor", "Compute seconds per audio second.", RTF_BUCKETS),
            events: counter_vec("tingxie_events_total", "Storage events and requests by type and outcome.", &["type", "outcome"]),
            duplicates_skipped: counter("tingxie_duplicates_skipped_total", "Deliveries answered from an existing transcript."),
            rejected: counter_vec(
                "tingxie_rejected_total",
                "Requests refused (queue_full, body_memory, not_ready, draining, model_loading: a model still loading past TINGXIE_MODEL_LOAD_WAIT_SECONDS).",
                &["reason"],
            ),
            cancelled: counter("tingxie_cancelled_total", "Jobs dropped before compute because the client went away."),
            ready: gauge("tingxie_ready", "1 when a request would be served without loading."),
            cold_start_phase: register(
                &r,
                GaugeVec::new(Opts::new("tingxie_cold_start_phase_seconds", "Seconds spent in each start-up phase."), &["phase"])
                    .expect("valid metric"),
            ),
            cache_requests: counter_vec("tingxie_model_cache_requests_total", "Model cache lookups by outcome.", &["outcome"]),
            cache_bytes: counter("tingxie_model_cache_bytes_downloaded_total", "Model bytes downloaded into the node cache."),
            kernels_compiled: counter(
                "tingxie_kernels_compiled_total",
                "GPU kernels compiled at run time (JIT backends), warm-up included.",
            ),
            autotune_runs: counter("tingxie_autotune_runs_total", "Autotune runs (JIT backends), warm-up included."),
            registry: r,
        };
        // Known label values start at 0, so rates and alerts see the series before the first
        // event of each kind.
        for reason in ["queue_full", "body_memory", "not_ready", "draining", "model_loading", "tenant_limit", "unauthorized"] {
            metrics.rejected.with_label_values(&[reason]);
        }
        for outcome in ["hit", "miss", "stale", "repaired", "offline", "local"] {
            metrics.cache_requests.with_label_values(&[outcome]);
        }
        metrics
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("writing to memory");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
