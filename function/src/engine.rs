//! The engine: one thread owns the model and the device; async handlers reach it through a
//! queue whose size a semaphore bounds. A handler takes a [`Permit`] *before* it reads a body,
//! so a full queue costs the client one round trip and the server no memory.

use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tingxie_model_cache::{CacheConfig, LocalModel, ModelCache};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::audio::SAMPLE_RATE;
use crate::config::ServeConfig;
use crate::device::{self, AnyTranscriber};
use crate::error::{Error, Result};
use crate::kernels;
use crate::metrics::Metrics;
use crate::startup::Phases;
use crate::transcript::Transcript;
use crate::whisper::DecodeOptions;

/// A place in the engine's queue, and what else the request holds while it has one (its
/// body's share of the memory budget). Dropping it frees them all.
pub struct Permit {
    _place: OwnedSemaphorePermit,
    held: Vec<Box<dyn Send + Sync>>,
    metrics: Arc<Metrics>,
}

impl Permit {
    /// Keeps `other` (a reservation freed on drop) until this place is freed.
    pub fn hold(&mut self, other: impl Send + Sync + 'static) {
        self.held.push(Box::new(other));
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.metrics.places_held.dec();
    }
}

/// A transcript and where the time went.
pub struct Done {
    pub transcript: Transcript,
    pub queue_wait: Duration,
    pub compute: Duration,
}

/// Asked just before compute: does anyone still want the result?
pub type StillWanted = Box<dyn Fn() -> bool + Send>;

struct Job {
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
    admission: Arc<Semaphore>,
    ready: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    phases: Arc<Mutex<Option<Phases>>>,
}

impl Engine {
    /// Starts loading the model at once on the engine thread; [`Engine::is_ready`] turns true
    /// when a request would be served without further loading. A model that cannot be loaded
    /// ends the process (exit 1), so the platform shows the failure and restarts with backoff.
    pub fn start(config: &ServeConfig, metrics: Arc<Metrics>, phases: Phases) -> Engine {
        let capacity = config.queue_depth + 1;
        metrics.queue_capacity.set(capacity as i64);
        let (tx, rx) = mpsc::channel();
        let engine = Engine {
            jobs: tx,
            admission: Arc::new(Semaphore::new(capacity)),
            ready: Arc::new(AtomicBool::new(false)),
            draining: Arc::new(AtomicBool::new(false)),
            metrics,
            phases: Arc::new(Mutex::new(None)),
        };
        let worker = engine.clone();
        let config = config.clone();
        std::thread::Builder::new()
            .name("tingxie-engine".into())
            .spawn(move || worker.run(config, phases, rx))
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

    /// Reserves a place in the queue, or says why not (503 loading/draining, 429 full).
    pub fn admit(&self) -> Result<Permit> {
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
        match self.admission.clone().try_acquire_owned() {
            Ok(place) => {
                self.metrics.places_held.inc();
                Ok(Permit { _place: place, held: Vec::new(), metrics: self.metrics.clone() })
            }
            Err(_) => refuse("queue_full", Error::Busy("the transcription queue is full".into())),
        }
    }

    /// Transcribes on the engine thread, in the queue place `_permit` holds (a request's jobs
    /// run one after another in it). If the caller stops waiting, or `wanted` says its client
    /// went away, the job is dropped before compute.
    pub async fn transcribe(
        &self,
        _permit: &Permit,
        samples: Vec<f32>,
        options: DecodeOptions,
        wanted: Option<StillWanted>,
    ) -> Result<Done> {
        let (reply, done) = oneshot::channel();
        self.metrics.queue_depth.inc();
        let job = Job { samples, options, enqueued: Instant::now(), reply, wanted };
        if self.jobs.send(job).is_err() {
            self.metrics.queue_depth.dec();
            return Err(Error::Device("the engine has stopped".into()));
        }
        done.await.unwrap_or_else(|_| Err(Error::Device("the engine dropped the job".into())))
    }

    fn run(self, config: ServeConfig, mut phases: Phases, jobs: mpsc::Receiver<Job>) {
        let (model, _in_use) = match self.load(&config, &mut phases) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!(error = %e, model = %config.model, "cannot load the model; exiting");
                std::process::exit(1);
            }
        };
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
        for job in jobs {
            self.metrics.queue_depth.dec();
            if job.reply.is_closed() || job.wanted.as_ref().is_some_and(|wanted| !wanted()) {
                self.metrics.cancelled.inc();
                let _ = job.reply.send(Err(Error::ClientGone("before its audio was transcribed".into())));
                continue;
            }
            let queue_wait = job.enqueued.elapsed();
            let started = Instant::now();
            self.metrics.engine_busy.set(1);
            let result = panic::catch_unwind(AssertUnwindSafe(|| model.transcribe(&job.samples, &job.options)))
                .unwrap_or_else(|_| Err(Error::Device("the model panicked on this input".into())));
            self.metrics.engine_busy.set(0);
            let compute = started.elapsed();
            self.record(&job.samples, queue_wait, compute);
            self.count_kernels();
            if let Ok(transcript) = &result {
                // Bounded: languages are the model's codes, tasks two names.
                self.metrics.transcriptions.with_label_values(&[transcript.language.as_str(), transcript.task.as_str()]).inc();
            }
            let _ = job.reply.send(result.map(|transcript| Done { transcript, queue_wait, compute }));
        }
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

    /// Cache lookup or download, weight load, warm-up: each a phase.
    fn load(&self, config: &ServeConfig, phases: &mut Phases) -> Result<(AnyTranscriber, Option<LocalModel>)> {
        if let Some(threads) = config.threads {
            device::set_cpu_threads(threads);
        }
        let (dir, in_use) = self.resolve_model(&config.model)?;
        phases.lap("cache");
        if config.device.compiles_kernels() {
            kernels::configure(&config.kernel_cache_dir(), config.device);
        }
        let model = AnyTranscriber::load(&dir, config.device)?;
        phases.lap("load");
        // The CPU backend compiles nothing at run time: a warm-up there only costs time.
        if config.device.compiles_kernels() {
            device::warm_up(&model, config.beam_size, config.batch_size)?;
            phases.lap("warmup");
            self.count_kernels();
        }
        Ok((model, in_use))
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
