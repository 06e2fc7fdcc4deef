//! The engine: one thread owns the model and the device; async handlers reach it through a
//! queue whose places ([`Permit`]s) are counted per class. A handler takes a permit *before* it
//! reads a body, so a full queue costs the client one round trip and the server no memory.

mod models;
mod schedule;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use models::{Loaded, Models};
use schedule::Waiting;
use tingxie_model_cache::{CacheConfig, LocalModel, ModelCache};
use tokio::sync::{oneshot, watch};

use crate::audio::SAMPLE_RATE;
use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::device::{self, AnyTranscriber};
use crate::error::{Error, Result};
use crate::kernels;
use crate::metrics::Metrics;
use crate::startup::Phases;
use crate::tenants::{Class, Tenant};
use crate::transcript::Transcript;
use crate::whisper::preempt::{self, Hook};
use crate::whisper::DecodeOptions;

/// A place in the engine's queue, the tenant it was admitted for, and what else the request
/// holds while it has one (its body's share of the memory budget, its place in the tenant's
/// limit). Dropping it frees them all.
pub struct Permit {
    places: Arc<Places>,
    tenant: Tenant,
    held: Vec<Box<dyn Send + Sync>>,
    metrics: Arc<Metrics>,
}

impl Permit {
    /// Keeps `other` (a reservation freed on drop) until this place is freed.
    pub fn hold(&mut self, other: impl Send + Sync + 'static) {
        self.held.push(Box::new(other));
    }

    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        *self.places.held.lock().expect("places") -= 1;
        self.metrics.places_held.dec();
    }
}

/// The queue's places: `capacity` in all, of which `reserved` only the priority class takes,
/// so that a queue full of lower-class work still admits it.
struct Places {
    held: Mutex<usize>,
    capacity: usize,
    reserved: usize,
}

/// The hook a lower-class job runs at its preemption points, and the time it lent.
struct Preemption {
    hook: Hook,
    lent: Rc<Cell<Duration>>,
}

/// A transcript, the model that made it, and where the time went.
pub struct Done {
    /// The transcription's history record, once the service has recorded it.
    pub id: Option<String>,
    pub model: Arc<str>,
    pub transcript: Transcript,
    pub queue_wait: Duration,
    pub compute: Duration,
}

/// Asked just before compute: does anyone still want the result?
pub type StillWanted = Box<dyn Fn() -> bool + Send>;

struct Job {
    model: Arc<str>,
    class: Class,
    samples: Vec<f32>,
    options: DecodeOptions,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Done>>,
    wanted: Option<StillWanted>,
}

/// What handlers see of the engine.
#[derive(Clone)]
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    places: Arc<Places>,
    ready: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    phases: Arc<Mutex<Option<Phases>>>,
    /// The model the engine thread is loading, if any.
    loading: Arc<watch::Sender<Option<Arc<str>>>>,
    /// How long a request waits for its model's load before it gets 503.
    load_wait: Duration,
    /// A waiting job climbs one class per this much waiting.
    aging: Duration,
}

impl Engine {
    /// Starts loading the model at once on the engine thread; [`Engine::is_ready`] turns true
    /// when a request would be served without further loading. A model that cannot be loaded
    /// ends the process (exit 1), so the platform shows the failure and restarts with backoff.
    /// `reserved`: places held for the priority class (at most all but one).
    pub fn start(config: &ServeConfig, catalog: Arc<Catalog>, metrics: Arc<Metrics>, phases: Phases, reserved: usize) -> Engine {
        let capacity = config.queue_depth + 1;
        metrics.queue_capacity.set(capacity as i64);
        let (tx, rx) = mpsc::channel();
        let engine = Engine {
            jobs: tx,
            places: Arc::new(Places { held: Mutex::new(0), capacity, reserved: reserved.min(capacity - 1) }),
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            metrics,
            phases: Arc::new(Mutex::new(None)),
            loading: Arc::new(watch::channel(None).0),
            load_wait: config.model_load_wait(),
            aging: config.priority_aging(),
        };
        let worker = engine.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name("tingxie-engine".into())
            .spawn(move || worker.run(config, catalog, phases, rx))
            .expect("spawning the engine thread");
        engine
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Stops admitting work (SIGTERM); admitted work still completes.
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.ready.set(0);
    }

    /// The start-up phases, once ready.
    pub fn phases(&self) -> Option<Phases> {
        self.phases.lock().expect("phases").clone()
    }

    /// Reserves a place in the queue for `tenant`, or says why not (503 loading/draining, 429
    /// full: for classes below priority, full once only the reserved places are left).
    pub fn admit(&self, tenant: Tenant) -> Result<Permit> {
        let refuse = |reason: &str, error: Error| {
            self.metrics.rejected.with_label_values(&[reason]).inc();
            Err(error)
        };
        if self.draining.load(Ordering::Acquire) {
            return refuse("draining", Error::Unavailable("the server is shutting down".into()));
        }
        if !self.ready.load(Ordering::Acquire) {
            return refuse("not_ready", Error::Unavailable("the model is still loading".into()));
        }
        let places = &self.places;
        let mut held = places.held.lock().expect("places");
        let ceiling = if tenant.class == Class::Priority { places.capacity } else { places.capacity - places.reserved };
        if *held >= ceiling {
            drop(held);
            let reserved = if places.reserved > 0 && tenant.class != Class::Priority {
                format!(
                    " for the {} class ({} of its {} places are held for priority work)",
                    tenant.class.as_str(),
                    places.reserved,
                    places.capacity
                )
            } else {
                String::new()
            };
            return refuse("queue_full", Error::Busy(format!("the transcription queue is full{reserved}")));
        }
        *held += 1;
        self.metrics.places_held.inc();
        Ok(Permit { places: places.clone(), tenant, held: Vec::new(), metrics: self.metrics.clone() })
    }

    /// Transcribes on the engine thread, in the queue place `permit` holds (a request's jobs
    /// run one after another in it), ahead of lower classes' work. If the caller stops waiting, or `wanted` says its client
    /// went away, the job is dropped before compute. A job whose model is still loading past
    /// TINGXIE_MODEL_LOAD_WAIT_SECONDS is answered 503 (the load goes on).
    pub async fn transcribe(
        &self,
        permit: &Permit,
        model: Arc<str>,
        samples: Vec<f32>,
        options: DecodeOptions,
        wanted: Option<StillWanted>,
    ) -> Result<Done> {
        let (reply, done) = oneshot::channel();
        self.metrics.queue_depth.inc();
        let job = Job { model: model.clone(), class: permit.tenant.class, samples, options, enqueued: Instant::now(), reply, wanted };
        if self.jobs.send(job).is_err() {
            self.metrics.queue_depth.dec();
            return Err(Error::Device("the engine has stopped".into()));
        }
        self.wait_for(&model, done).await
    }

    /// The job's answer; 503 once it has waited `load_wait` and its model is (still) loading.
    /// Waiting behind other work is the queue's business, not bounded here.
    async fn wait_for(&self, model: &str, mut done: oneshot::Receiver<Result<Done>>) -> Result<Done> {
        let dropped = || Err(Error::Device("the engine dropped the job".into()));
        let mut loading = self.loading.subscribe();
        let deadline = tokio::time::sleep(self.load_wait);
        tokio::pin!(deadline);
        let mut past_deadline = false;
        loop {
            tokio::select! {
                answer = &mut done => return answer.unwrap_or_else(|_| dropped()),
                _ = &mut deadline, if !past_deadline => past_deadline = true,
                changed = loading.changed(), if past_deadline => {
                    if changed.is_err() {
                        return (&mut done).await.unwrap_or_else(|_| dropped());
                    }
                }
            }
            if past_deadline && loading.borrow_and_update().as_deref() == Some(model) {
                self.metrics.rejected.with_label_values(&["model_loading"]).inc();
                return Err(Error::Unavailable(format!(
                    "the model `{model}` is still loading after {:.1} s (TINGXIE_MODEL_LOAD_WAIT_SECONDS); its load goes on",
                    self.load_wait.as_secs_f64()
                )));
            }
        }
    }

    fn run(self, config: ServeConfig, catalog: Arc<Catalog>, mut phases: Phases, jobs: mpsc::Receiver<Job>) {
        let default = catalog.default_name().clone();
        let mut models = Models::new(&config, catalog);
        if let Err(e) = self.load_default(&config, &mut models, &default, &mut phases) {
            tracing::error!(error = %e, model = %config.model, "cannot load the model; exiting");
            std::process::exit(1);
        }
        for (phase, seconds) in phases.iter() {
            self.metrics.cold_start_phase.with_label_values(&[phase]).set(seconds);
        }
        self.metrics.cold_start_phase.with_label_values(&["ready"]).set(phases.total());
        tracing::info!(phases = %phases.to_json(), model = %config.model, device = %config.device, "cold start");
        *self.phases.lock().expect("phases") = Some(phases);
        self.ready.store(true, Ordering::Release);
        if !self.draining.load(Ordering::Acquire) {
            self.metrics.ready.set(1);
        }
        let waiting = Waiting::new(jobs, self.aging);
        while let Some(job) = waiting.next() {
            self.metrics.queue_depth.dec();
            let Some(job) = self.still_wanted(job) else { continue };
            let queue_wait = job.enqueued.elapsed();
            let model = match models.get(&self, &job.model, &waiting.models()) {
                Ok(model) => model,
                Err(e) => {
                    tracing::error!(error = %e, model = %job.model, "cannot load the model");
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            };
            // Its client may have stopped waiting while the model loaded (503 past the bound).
            if job.reply.is_closed() {
                self.metrics.cancelled.inc();
                continue;
            }
            let preemption = (job.class < Class::Priority).then(|| self.preemption(&waiting, &model, &job));
            self.compute(job, queue_wait, &model, preemption);
        }
    }

    /// The job, unless its client went away (answered, counted and dropped then).
    fn still_wanted(&self, job: Job) -> Option<Job> {
        if job.reply.is_closed() || job.wanted.as_ref().is_some_and(|wanted| !wanted()) {
            self.metrics.cancelled.inc();
            let _ = job.reply.send(Err(Error::ClientGone("before its audio was transcribed".into())));
            return None;
        }
        Some(job)
    }

    /// What `running` does at each of its preemption points: computes, there and then, the
    /// waiting jobs of a higher class on the same model, so that a priority request waits for
    /// one decoding step of batch work, not for all of it.
    fn preemption(&self, waiting: &Rc<Waiting>, model: &Rc<AnyTranscriber>, running: &Job) -> Preemption {
        let (engine, waiting, model) = (self.clone(), waiting.clone(), model.clone());
        let (class, name) = (running.class, running.model.clone());
        let lent = Rc::new(Cell::new(Duration::ZERO));
        let lent_to_others = lent.clone();
        let hook: Hook = Rc::new(move || {
            while let Some(urgent) = waiting.urgent(class, &name) {
                engine.metrics.queue_depth.dec();
                let Some(urgent) = engine.still_wanted(urgent) else { continue };
                engine.metrics.preemptions.inc();
                let started = Instant::now();
                let queue_wait = urgent.enqueued.elapsed();
                engine.compute(urgent, queue_wait, &model, None);
                engine.metrics.engine_busy.set(1);
                lent_to_others.set(lent_to_others.get() + started.elapsed());
            }
        });
        Preemption { hook, lent }
    }

    /// Transcribes `job` on `model` and answers it; `preemption` runs at its preemption points
    /// (the time it lends to other jobs is not counted as this job's compute).
    fn compute(&self, job: Job, queue_wait: Duration, model: &AnyTranscriber, preemption: Option<Preemption>) {
        self.metrics.class_queue_wait.with_label_values(&[job.class.as_str()]).observe(queue_wait.as_secs_f64());
        let started = Instant::now();
        self.metrics.engine_busy.set(1);
        self.metrics.model_requests.with_label_values(&[&*job.model]).inc();
        let run = || model.transcribe(&job.samples, &job.options);
        let lent = preemption.as_ref().map(|p| p.lent.clone());
        let result = panic::catch_unwind(AssertUnwindSafe(|| match preemption {
            Some(preemption) => preempt::with_hook(preemption.hook, run),
            None => run(),
        }))
        .unwrap_or_else(|_| Err(Error::Device("the model panicked on this input".into())));
        self.metrics.engine_busy.set(0);
        let compute = started.elapsed().saturating_sub(lent.map_or(Duration::ZERO, |lent| lent.get()));
        self.record(&job.samples, queue_wait, compute);
        self.count_kernels();
        if let Ok(transcript) = &result {
            tracing::info!(
                model = %job.model,
                class = job.class.as_str(),
                language = %transcript.language,
                task = transcript.task.as_str(),
                audio_seconds = transcript.duration,
                queue_seconds = queue_wait.as_secs_f64(),
                compute_seconds = compute.as_secs_f64(),
                "transcribed"
            );
            // Bounded: languages are the model's codes, tasks two names.
            self.metrics.transcriptions.with_label_values(&[transcript.language.as_str(), transcript.task.as_str()]).inc();
        }
        let _ = job.reply.send(result.map(|transcript| Done { id: None, model: job.model.clone(), transcript, queue_wait, compute }));
    }

    /// Brings the kernel counters up to CubeCL's counts (JIT backends only).
    fn count_kernels(&self) {
        if let Some(now) = kernels::counts() {
            let m = &self.metrics;
            m.kernels_compiled.inc_by(now.kernels_compiled.saturating_sub(m.kernels_compiled.get()));
            m.autotune_runs.inc_by(now.autotune_runs.saturating_sub(m.autotune_runs.get()));
        }
    }

    fn record(&self, samples: &[f32], queue_wait: Duration, compute: Duration) {
        let audio_seconds = samples.len() as f64 / f64::from(SAMPLE_RATE);
        self.metrics.queue_wait.observe(queue_wait.as_secs_f64());
        self.metrics.compute.observe(compute.as_secs_f64());
        self.metrics.audio_seconds.inc_by(audio_seconds);
        if audio_seconds > 0.0 {
            self.metrics.real_time_factor.observe(compute.as_secs_f64() / audio_seconds);
        }
    }

    /// The default model at start: cache lookup or download, weight load, warm-up, each a phase.
    fn load_default(&self, config: &ServeConfig, models: &mut Models, name: &Arc<str>, phases: &mut Phases) -> Result<()> {
        if let Some(threads) = config.threads {
            device::set_cpu_threads(threads);
        }
        if config.device.compiles_kernels() {
            kernels::configure(&config.kernel_cache_dir(), config.device);
        }
        models.load(self, name, Some(phases))
    }

    /// A model of the catalog from the node cache (downloaded on first use) onto the device,
    /// warmed up on JIT devices; its weights' bytes.
    fn load_model(&self, config: &ServeConfig, uri: &str, phases: Option<&mut Phases>) -> Result<Loaded> {
        let mut laps = phases;
        let (dir, in_use) = self.resolve_model(uri)?;
        if let Some(p) = laps.as_deref_mut() {
            p.lap("cache");
        }
        let model = self.with_vad(AnyTranscriber::load(&dir, config.device)?, &config.vad_model);
        if let Some(p) = laps.as_deref_mut() {
            p.lap("load");
        }
        // The CPU backend compiles nothing at run time: a warm-up there only costs time.
        if config.device.compiles_kernels() {
            device::warm_up(&model, config.beam_size, config.batch_size)?;
            if let Some(p) = laps {
                p.lap("warmup");
            }
            self.count_kernels();
        }
        Ok(Loaded { bytes: model.weight_bytes(), model: Rc::new(model), last_used: Instant::now(), _in_use: in_use })
    }

    /// `model` with Silero VAD from `vad` added; without it (a warning, and requests that need
    /// it say so) when the weights cannot be had: the model itself still serves.
    fn with_vad(&self, mut model: AnyTranscriber, vad: &str) -> AnyTranscriber {
        let added = if !vad.contains("://") && !std::path::Path::new(vad).exists() {
            Err(Error::Model(format!("{vad}: no such folder")))
        } else {
            self.resolve_model(vad).and_then(|(dir, _in_use)| model.add_vad(&dir))
        };
        if let Err(e) = added {
            tracing::warn!(vad, error = %e, "no Silero VAD (TINGXIE_VAD_MODEL): vad_filter and batch_size requests will fail");
        }
        model
    }

    fn resolve_model(&self, model: &str) -> Result<(PathBuf, Option<LocalModel>)> {
        if !model.contains("://") {
            return Ok((PathBuf::from(model), None));
        }
        let cache_error = |e: tingxie_model_cache::Error| Error::Model(format!("model cache: {e}"));
        let cache = ModelCache::new(CacheConfig::from_env()).map_err(cache_error)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Device(format!("runtime for the model download: {e}")))?;
        let local = runtime.block_on(cache.ensure(model)).map_err(cache_error)?;
        self.metrics.cache_requests.with_label_values(&[local.outcome.as_str()]).inc();
        self.metrics.cache_bytes.inc_by(local.bytes_downloaded);
        tracing::info!(model, cache = local.outcome.as_str(), bytes_downloaded = local.bytes_downloaded, "model resolved");
        Ok((local.path.clone(), Some(local)))
    }
}
