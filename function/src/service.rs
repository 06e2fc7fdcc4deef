//! What the service does, free of HTTP: transcribe bytes, or transcribe a stored object once
//! per object version and write its transcripts back. The HTTP layer maps requests and events
//! onto these calls and their errors onto status codes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt, Shared};
use tracing::Instrument;

use crate::audio;
use crate::catalog::Catalog;
use crate::config::ServeConfig;
use crate::engine::{Done, Engine, Permit, StillWanted};
use crate::error::{bounded, Error, Result};
use crate::events::{ObjectRef, RequestOptions};
use crate::history::{unix_now, Callbacks, Entry, Failure, History, Record, Start, Status};
use crate::metrics::Metrics;
use crate::objects::{Claim, Location, Objects, OutputSet, Recorded, SourceVersion};
use crate::oidc::OidcVerifier;
use crate::output;
use crate::tenants::{Tenant, Tenants};
use crate::transcript::Transcript;
use crate::whisper::{DecodeOptions, Task};

/// What the engine is asked to do for a request: which model, with which options.
pub struct Work {
    pub model: Arc<str>,
    pub options: DecodeOptions,
}

/// Whose transcription it is and what of, for its history record.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub tenant: Arc<str>,
    /// The uploaded file's name, when the client gave one.
    pub filename: Option<String>,
}

impl Origin {
    pub fn upload(tenant: &Tenant, filename: Option<&str>) -> Origin {
        Origin { tenant: tenant.name.clone(), filename: filename.map(|f| bounded(f, 256)) }
    }

    fn start(self, work: &Work) -> Start {
        Start {
            tenant: self.tenant.to_string(),
            model: work.model.to_string(),
            task: work.options.task.as_str().to_string(),
            filename: self.filename,
            ..Default::default()
        }
    }
}

/// The result of a stored-object job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Completed {
    #[serde(flatten)]
    pub record: Recorded,
    /// True when an earlier delivery had already produced these transcripts.
    pub duplicate: bool,
    /// The history record of the transcription (none for a duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_id: Option<String>,
    pub processing_seconds: f64,
    pub queue_seconds: f64,
    pub compute_seconds: f64,
    pub real_time_factor: f64,
}

pub enum ObjectOutcome {
    Done(Box<Completed>),
    /// Nothing to do, e.g. the object is one of our own transcripts.
    Ignored(String),
}

type Flight = Shared<BoxFuture<'static, Result<Completed, Arc<Error>>>>;

pub struct Service {
    pub config: ServeConfig,
    pub catalog: Arc<Catalog>,
    pub engine: Engine,
    pub objects: Objects,
    pub metrics: Arc<Metrics>,
    pub tenants: Tenants,
    /// Verifies the platform's tokens on `POST /` (TINGXIE_OIDC_ISSUER); None when off.
    pub oidc: Option<OidcVerifier>,
    pub history: Arc<History>,
    callbacks: Callbacks,
    /// Signs transcript records (TINGXIE_RECORD_KEY, else the history's), read once.
    record_key: tokio::sync::OnceCell<Vec<u8>>,
    /// In-process single flight: concurrent deliveries of one object version share one run.
    flights: Mutex<HashMap<String, Flight>>,
    /// Names this process in claims (`NAME.claim`) on source versions.
    instance: String,
}

impl Service {
    pub fn new(
        config: ServeConfig,
        catalog: Arc<Catalog>,
        engine: Engine,
        objects: Objects,
        metrics: Arc<Metrics>,
        tenants: Tenants,
        history: History,
    ) -> Service {
        let callbacks = Callbacks::new(&config);
        let instance = history.owner().to_string();
        Service {
            config,
            catalog,
            engine,
            objects,
            metrics,
            tenants,
            oidc: None,
            history: Arc::new(history),
            callbacks,
            record_key: tokio::sync::OnceCell::new(),
            flights: Mutex::new(HashMap::new()),
            instance,
        }
    }

    /// The platform's tokens on `POST /` are verified by `oidc` (TINGXIE_OIDC_ISSUER).
    pub fn with_oidc(self, oidc: Option<OidcVerifier>) -> Service {
        Service { oidc, ..self }
    }

    /// A queue place for `tenant`, within its class's share of the queue and its own limits
    /// (429 naming the limit).
    pub fn admit(&self, tenant: Tenant) -> Result<Permit> {
        let labels = [tenant.metric_label(), tenant.class.as_str()];
        let mut permit = self.engine.admit(tenant.clone())?;
        match self.tenants.admit(&tenant) {
            Ok(hold) => permit.hold(hold),
            Err(e) => {
                self.metrics.rejected.with_label_values(&["tenant_limit"]).inc();
                self.metrics.tenant_requests.with_label_values(&[labels[0], labels[1], "limited"]).inc();
                return Err(e);
            }
        }
        self.metrics.tenant_requests.with_label_values(&[labels[0], labels[1], "admitted"]).inc();
        Ok(permit)
    }

    /// The model a request names (`model`; the default when none), and its options over the
    /// configured defaults, validated.
    pub fn work(&self, requested: &RequestOptions) -> Result<Work> {
        requested.validate()?;
        let model = self.catalog.resolve(requested.model.as_deref())?;
        let defaults = DecodeOptions::default();
        let options = DecodeOptions {
            beam_size: requested.beam_size.unwrap_or(self.config.beam_size),
            batch_size: requested.batch_size.unwrap_or(self.config.batch_size),
            vad_filter: requested.vad_filter,
            vad_parameters: requested.vad_parameters()?,
            language: requested.language.clone().filter(|l| !l.is_empty()),
            task: requested.task()?,
            zh_script: requested.zh_script()?,
            initial_prompt: requested.prompt.clone().filter(|p| !p.is_empty()),
            temperatures: requested.temperature.map_or(defaults.temperatures.clone(), |t| vec![t]),
            ..defaults
        };
        options.validate()?;
        Ok(Work { model, options })
    }

    /// Transcribes audio bytes, recorded in the history (the record's id is in `Done::id`).
    pub async fn transcribe_bytes(
        &self,
        permit: &Permit,
        bytes: Vec<u8>,
        hint: Option<String>,
        work: Work,
        wanted: Option<StillWanted>,
        origin: Origin,
    ) -> Result<Done> {
        let entry = self.begin_record(origin.start(&work)).await;
        let result = self.recorded(entry.as_ref(), self.compute(permit, bytes, hint, work, wanted), |done| &done.transcript).await;
        let mut done = result?;
        if let Some(entry) = &entry {
            done.id = Some(entry.id().await);
        }
        Ok(done)
    }

    /// Runs `work` with its history record (if any) renewed meanwhile, and records its end.
    async fn recorded<T>(
        &self,
        entry: Option<&Entry>,
        work: impl std::future::Future<Output = Result<T>>,
        transcript: impl Fn(&T) -> &Transcript,
    ) -> Result<T> {
        let Some(entry) = entry else { return work.await };
        let result = entry.renewed_while(work).await;
        self.record_end(entry, result.as_ref().map(transcript)).await;
        result
    }

    /// The history record of a synchronous transcription. A history outage does not block
    /// one (the caller gets its transcript, without an id; the outage is logged and counted);
    /// asynchronous jobs, whose record is their state, do need it.
    async fn begin_record(&self, start: Start) -> Option<Entry> {
        match self.history.begin(start).await {
            Ok(entry) => Some(entry),
            Err(e) => {
                self.metrics.history_errors.inc();
                tracing::warn!(error = %e, "the history is unavailable: transcribing without a record");
                None
            }
        }
    }

    /// An asynchronous job: recorded as queued and answered at once; the work runs in its own
    /// task in the queue place `permit` holds, its transcript is stored beside the record,
    /// and the finished record is delivered to `callback_url` if one is given.
    pub async fn submit(
        self: &Arc<Self>,
        permit: Permit,
        bytes: Vec<u8>,
        hint: Option<String>,
        work: Work,
        origin: Origin,
        callback_url: Option<String>,
    ) -> Result<Record> {
        if let Some(url) = &callback_url {
            self.callbacks.check(url)?;
        }
        let start = Start { asynchronous: true, callback_url: callback_url.clone(), ..origin.start(&work) };
        let entry = self.history.begin(start).await?;
        let record = entry.record().await;
        if callback_url.is_some() {
            self.history.mark_callback(&record.tenant, &record.id).await?;
        }
        let service = Arc::clone(self);
        // Counted as in flight, so that a shutdown waits for it within its grace period.
        self.metrics.inflight.inc();
        tokio::spawn(
            async move {
                let job = async {
                    entry
                        .update(|r| {
                            r.status = Status::Running;
                            r.started_at = Some(unix_now());
                        })
                        .await?;
                    let done = service.compute(&permit, bytes, hint, work, None).await?;
                    let mut result = output::verbose_json(&done.transcript);
                    result["model"] = (&*done.model).into();
                    entry.put_result(&result).await?;
                    Ok((done, result))
                };
                let result = entry.renewed_while(job).await;
                drop(permit);
                service.record_end(&entry, result.as_ref().map(|(done, _)| &done.transcript)).await;
                if callback_url.is_some() {
                    service.deliver_callback(&entry, result.ok().map(|(_, transcript)| transcript)).await;
                }
                service.metrics.inflight.dec();
            }
            .in_current_span(),
        );
        Ok(record)
    }

    /// Delivers the finished record of `entry` (with `result`, its transcript) to its
    /// callback URL, renewing the record's lease meanwhile, and removes the pending marker.
    async fn deliver_callback(&self, entry: &Entry, result: Option<serde_json::Value>) {
        let record = entry.record().await;
        let Some(callback) = &record.callback else { return };
        let mut body = serde_json::to_value(&record).expect("records serialise");
        if let Some(transcript) = result {
            body["result"] = transcript;
        }
        let delivered = entry.renewed_while(self.callbacks.deliver(entry, &callback.url, &record.id, body.to_string().as_bytes())).await;
        self.metrics.callbacks.with_label_values(&[if delivered { "delivered" } else { "given_up" }]).inc();
        if let Err(e) = entry.update(|r| r.lease_until = None).await {
            tracing::warn!(error = %e, "could not end a delivered callback's lease");
        }
        self.history.unmark_callback(&record.tenant, &record.id).await;
    }

    /// Every `TINGXIE_CLAIM_SECONDS`: callbacks whose process stopped before delivering them
    /// (a shutdown's grace ran out, a crash) are taken over and delivered from here.
    pub async fn sweep_callbacks(self: Arc<Self>) {
        if !self.callbacks.enabled() {
            return;
        }
        let mut every = tokio::time::interval(self.config.claim_lease());
        loop {
            every.tick().await;
            let adopted = match self.history.adopt_callbacks(self.callbacks.attempts()).await {
                Ok(adopted) => adopted,
                Err(e) => {
                    tracing::warn!(error = %e, "could not look for callbacks left undelivered");
                    continue;
                }
            };
            for entry in adopted {
                let service = Arc::clone(&self);
                service.metrics.inflight.inc();
                tokio::spawn(async move {
                    let record = entry.record().await;
                    let result = match record.status {
                        Status::Completed => service.history.result(&record.tenant, &record.id).await.ok().flatten(),
                        _ => None,
                    };
                    service.deliver_callback(&entry, result).await;
                    service.metrics.inflight.dec();
                });
            }
        }
    }

    /// Writes the end of a transcription into its record; a failure to write is logged (the
    /// transcript itself is not lost: the caller has it, or the store's outputs do).
    async fn record_end(&self, entry: &Entry, outcome: std::result::Result<&Transcript, &Error>) {
        let outcome = outcome
            .map(|t| (t.language.as_str(), t.duration))
            .map_err(|e| Failure { code: e.code().to_string(), message: bounded(&e.to_string(), 1024) });
        if let Err(e) = entry.update(|record| record.finish(outcome.clone())).await {
            self.metrics.history_errors.inc();
            tracing::warn!(error = %e, "could not record the end of a transcription in the history");
        }
    }

    /// Decodes audio bytes off the async threads, checks the duration limit and transcribes.
    async fn compute(
        &self,
        permit: &Permit,
        bytes: Vec<u8>,
        hint: Option<String>,
        work: Work,
        wanted: Option<StillWanted>,
    ) -> Result<Done> {
        let max_seconds = self.config.max_audio_seconds;
        let samples = tokio::task::spawn_blocking(move || audio::decode_bytes_limited(bytes, hint.as_deref(), max_seconds))
            .await
            .map_err(|e| Error::Device(format!("audio decoder task: {e}")))??;
        self.engine.transcribe(permit, work.model, samples, work.options, wanted).await
    }

    /// Transcribes a stored object unless this version already has transcripts, in the queue
    /// place `permit` holds. Concurrent calls for the same object version run the model once;
    /// all but the first are answered as duplicates.
    pub async fn transcribe_object(
        self: &Arc<Self>,
        obj: &ObjectRef,
        requested: &RequestOptions,
        permit: Arc<Permit>,
        tenant: &Tenant,
    ) -> Result<ObjectOutcome> {
        // The tenant's own data first (its line in TINGXIE_TENANTS), then the global lists.
        self.tenants.may_read(tenant, &obj.uri, &obj.bucket)?;
        if let Some(output) = requested.output.as_deref().filter(|o| !o.trim().is_empty()) {
            self.tenants.may_write(tenant, output)?;
        }
        let (source, admitted) = self.objects.source(obj)?;
        let Some(mut outputs) = self.objects.outputs_for(obj, admitted, requested.output.as_deref())? else {
            return Ok(ObjectOutcome::Ignored(format!("{} is a transcript output", obj.uri)));
        };
        let work = self.work(requested)?;
        // Another model's transcript, and a translation, are kept beside the default model's
        // transcript: each is written once per source version.
        if work.model != *self.catalog.default_name() {
            outputs = outputs.variant(&work.model);
        }
        if work.options.task == Task::Translate {
            outputs = outputs.variant("translation");
        }
        let version = self.objects.head(&source).await?;
        let origin = Origin::upload(tenant, None);
        let key = format!(
            "{}\u{0}{:?}\u{0}{:?}\u{0}{}\u{0}{}\u{0}{}",
            version.uri,
            version.etag,
            version.version,
            version.size,
            work.model,
            work.options.task.as_str()
        );
        let (flight, joined) = {
            let mut flights = self.flights.lock().expect("flights");
            let joined = flights.contains_key(&key);
            let flight = flights
                .entry(key.clone())
                .or_insert_with(|| {
                    // A task of its own: the work finishes (and its permit is freed) even if
                    // every delivery waiting for it goes away; a redelivery then finds it done.
                    let service = Arc::clone(self);
                    let key = key.clone();
                    let task = tokio::spawn(
                        async move {
                            let result = service.run_object(&permit, source, version, outputs, work, origin).await.map_err(Arc::new);
                            service.flights.lock().expect("flights").remove(&key);
                            result
                        }
                        .in_current_span(),
                    );
                    async move { task.await.unwrap_or_else(|e| Err(Arc::new(Error::Device(format!("object job failed: {e}"))))) }
                        .boxed()
                        .shared()
                })
                .clone();
            (flight, joined)
        };
        let completed = flight.await.map_err(|e| e.duplicate())?;
        Ok(ObjectOutcome::Done(Box::new(Completed { duplicate: completed.duplicate || joined, ..completed })))
    }

    async fn run_object(
        &self,
        permit: &Permit,
        source: Location,
        version: SourceVersion,
        outputs: OutputSet,
        work: Work,
        origin: Origin,
    ) -> Result<Completed> {
        let started = Instant::now();
        let key = self.record_key().await?;
        if let Some(record) = outputs.existing(&version, key).await? {
            self.metrics.duplicates_skipped.inc();
            tracing::info!(source = %version.uri, "transcript exists for this version; not transcribing again");
            return Ok(Completed {
                record,
                duplicate: true,
                transcription_id: None,
                processing_seconds: started.elapsed().as_secs_f64(),
                queue_seconds: 0.0,
                compute_seconds: 0.0,
                real_time_factor: 0.0,
            });
        }
        if version.size > self.config.max_body_bytes {
            return Err(Error::TooLarge(format!(
                "{} is {} bytes; the limit is {} (TINGXIE_MAX_BODY_BYTES)",
                version.uri, version.size, self.config.max_body_bytes
            )));
        }
        let lease = self.config.claim_lease();
        let claim = match outputs.claim(&version, &self.instance, lease).await? {
            Claim::HeldElsewhere { age } => {
                let renewed = age.as_secs_f64();
                return Err(Error::Unavailable(format!(
                    "{} is being transcribed by another instance (its claim was renewed {renewed:.0} s ago); \
                     its transcript will be returned on retry",
                    version.uri
                )));
            }
            Claim::Acquired(claim) => claim,
        };
        // The claim is renewed while the work runs, so it outlives only a dead owner's lease.
        let start = Start { source: Some(version.uri.clone()), outputs: outputs.uris(), ..origin.start(&work) };
        let result = claim.renewed_while(lease, self.transcribe_source(permit, &source, &version, &outputs, work, start)).await;
        claim.release().await;
        let (record, done) = result?;
        let compute = done.compute.as_secs_f64();
        Ok(Completed {
            duplicate: false,
            transcription_id: done.id.clone(),
            processing_seconds: started.elapsed().as_secs_f64(),
            queue_seconds: done.queue_wait.as_secs_f64(),
            compute_seconds: compute,
            real_time_factor: if record.duration > 0.0 { compute / record.duration } else { 0.0 },
            record,
        })
    }

    /// The key of record signatures: TINGXIE_RECORD_KEY, else the one kept in the history.
    async fn record_key(&self) -> Result<&[u8]> {
        let key = self
            .record_key
            .get_or_try_init(|| async {
                match self.config.record_key.as_bytes() {
                    [] => self.history.record_key().await,
                    configured => Ok(configured.to_vec()),
                }
            })
            .await?;
        Ok(key)
    }

    async fn transcribe_source(
        &self,
        permit: &Permit,
        source: &Location,
        version: &SourceVersion,
        outputs: &OutputSet,
        work: Work,
        start: Start,
    ) -> Result<(Recorded, Done)> {
        let entry = self.begin_record(start).await;
        // Stored objects are finished even if the deliverer gives up: a redelivery finds them.
        let job = async {
            let bytes = self.objects.read(source, self.config.max_body_bytes).await?;
            let hint = source.path.extension().map(str::to_string);
            let done = self.compute(permit, bytes, hint, work, None).await?;
            let record = outputs.write(&done.transcript, version, &done.model, self.record_key().await?).await?;
            Ok((record, done))
        };
        let (record, mut done) = self.recorded(entry.as_ref(), job, |(_, done)| &done.transcript).await?;
        if let Some(entry) = &entry {
            done.id = Some(entry.id().await);
        }
        Ok((record, done))
    }
}

/// Names this process in claims and history records: host (the pod), PID, and a random part.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "tingxie".into());
    format!("{host}/{}/{}", std::process::id(), uuid::Uuid::new_v4())
}
