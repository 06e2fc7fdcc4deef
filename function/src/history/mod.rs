//! The transcription history: one JSON record per transcription, kept as objects in the store
//! `TINGXIE_HISTORY` names (a bucket prefix every replica shares, or a local folder), so it
//! outlives pods and needs no database. A record is created when work starts and updated as it
//! goes, each update conditional on the version read (two writers never lose each other's
//! changes); a running record carries a lease its owner renews, and a record whose lease ran
//! out is reported `interrupted`: its process died mid-job.
//!
//! Layout under the prefix: `records/TENANT/ID.json`, and for asynchronous jobs the
//! transcript at `results/TENANT/ID.json`. Ids sort newest first.

mod callback;
mod record;

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use tingxie_model_cache::CacheConfig;

pub use callback::Callbacks;
pub use record::{unix_now, Attempt, Failure, Record, Start, Status};

use crate::error::{Error, Result};
use crate::tenants::check_name;

/// What a listing asks for.
#[derive(Debug, Default, Clone)]
pub struct Query {
    /// Only records created at or after this time (Unix seconds).
    pub since: Option<f64>,
    pub status: Option<Status>,
    /// Records per page (1-100).
    pub limit: usize,
    /// The id of the last record of the previous page.
    pub after: Option<String>,
}

pub struct Page {
    pub data: Vec<Record>,
    pub has_more: bool,
}

pub struct History {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    pub uri: String,
    lease: Duration,
    owner: String,
}

/// A history failure as a client sees it: what could not be done, not the store's internals
/// (its endpoint, its key layout), which go to the log.
fn store_error(what: &str, e: object_store::Error) -> Error {
    tracing::warn!(error = %e, "history {what} failed");
    let retryable = !matches!(e, object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. });
    Error::Store { message: format!("the history (TINGXIE_HISTORY) failed on a {what}; try again"), retryable }
}

/// A write conditional on `version` (any version when the store gave none).
fn update_mode(version: Option<UpdateVersion>) -> PutMode {
    version.map_or(PutMode::Overwrite, PutMode::Update)
}

/// The version a conditional update must find.
fn version_of(e_tag: Option<String>, version: Option<String>) -> Option<UpdateVersion> {
    (e_tag.is_some() || version.is_some()).then_some(UpdateVersion { e_tag, version })
}

impl History {
    /// `location`: a URI prefix (`s3://bucket/history`) or a local folder, created if missing.
    pub fn open(location: &str, cache: &CacheConfig, lease: Duration, owner: &str) -> Result<History> {
        let uri = if location.contains("://") {
            location.trim_end_matches('/').to_string()
        } else {
            std::fs::create_dir_all(location).map_err(|e| Error::io(location, e))?;
            let dir = std::fs::canonicalize(location).map_err(|e| Error::io(location, e))?;
            format!("file://{}", dir.display())
        };
        let (store, prefix) = tingxie_model_cache::open_store(&uri, cache)
            .map_err(|e| Error::Store { message: format!("TINGXIE_HISTORY {uri}: {e}"), retryable: false })?;
        Ok(History { store, prefix, uri, lease, owner: owner.to_string() })
    }

    /// The process name written into records (and claims).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn path(&self, kind: &str, tenant: &str, id: &str) -> StorePath {
        self.prefix.clone().join(kind).join(tenant).join(format!("{id}.json"))
    }

    /// Records the start of a transcription (queued or running) and returns its entry.
    pub async fn begin(self: &Arc<Self>, start: Start) -> Result<Entry> {
        let record = Record::new(start, &self.owner, self.lease);
        let path = self.path("records", &record.tenant, &record.id);
        let version = self.put_record(&path, &record, PutMode::Create).await.map_err(|e| store_error("write", e))?;
        Ok(Entry { history: self.clone(), path, state: tokio::sync::Mutex::new((record, version)) })
    }

    /// The record `id` of `tenant` (404 for another tenant's id), its transcript when it has
    /// one stored. A record whose owner died is reported, and rewritten, as interrupted.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<(Record, Option<serde_json::Value>)> {
        let missing =
            || Error::NoSuchTranscription(format!("`{}` is not in the history of tenant `{tenant}`", crate::error::bounded(id, 80)));
        if check_name(id).is_err() {
            return Err(missing());
        }
        let path = self.path("records", tenant, id);
        let (mut record, version) = match self.read(&path).await? {
            Some(found) => found,
            None => return Err(missing()),
        };
        if record.settle(unix_now()) {
            // Best effort: a reader that loses the race reports the same state.
            let _ = self.put_record(&path, &record, update_mode(version)).await;
        }
        let result = match record.status {
            Status::Completed if record.asynchronous => self.result(tenant, id).await?,
            _ => None,
        };
        Ok((record, result))
    }

    /// Notes that the record `id` of `tenant` has a callback to deliver (`callbacks/TENANT/ID`),
    /// so that another process finds it if this one stops before delivering it.
    pub async fn mark_callback(&self, tenant: &str, id: &str) -> Result<()> {
        let path = self.path("callbacks", tenant, id);
        self.store.put(&path, PutPayload::from_static(b"{}")).await.map_err(|e| store_error("write", e))?;
        Ok(())
    }

    /// The callback of `id` is delivered or given up.
    pub async fn unmark_callback(&self, tenant: &str, id: &str) {
        match self.store.delete(&self.path("callbacks", tenant, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => tracing::warn!(error = %e, id, "could not remove a delivered callback's marker"),
        }
    }

    /// Records whose callback is still to deliver and whose owner stopped renewing them (a
    /// process stopped mid-delivery, or mid-job), taken over by this process: each is written
    /// with this process as its owner, conditionally on the version read, so of two takers one
    /// wins (a store without conditional writes may let both deliver: callbacks are at least
    /// once, and carry their transcription id).
    pub async fn adopt_callbacks(self: &Arc<Self>, max_attempts: u32) -> Result<Vec<Entry>> {
        let folder = self.prefix.clone().join("callbacks");
        let markers: Vec<StorePath> =
            self.store.list(Some(&folder)).map_ok(|meta| meta.location).try_collect().await.map_err(|e| store_error("list", e))?;
        let mut adopted = Vec::new();
        for marker in markers {
            let parts: Vec<String> = marker.parts().map(|p| p.as_ref().to_string()).collect();
            let [.., tenant, file] = parts.as_slice() else { continue };
            let id = file.trim_end_matches(".json");
            let path = self.path("records", tenant, id);
            let Some((mut record, version)) = self.read(&path).await? else {
                self.unmark_callback(tenant, id).await;
                continue;
            };
            let now = unix_now();
            record.settle(now);
            if !record.callback_pending(max_attempts) {
                self.unmark_callback(tenant, id).await;
                continue;
            }
            if !record.is_finished() || !record.orphaned(now) {
                continue;
            }
            tracing::info!(id, previous_owner = %record.owner, "taking over a callback whose process stopped");
            record.owner = self.owner.clone();
            record.lease_until = Some(now + self.lease.as_secs_f64());
            match self.put_record(&path, &record, update_mode(version)).await {
                Ok(written) => adopted.push(Entry { history: self.clone(), path, state: tokio::sync::Mutex::new((record, written)) }),
                Err(object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(store_error("write", e)),
            }
        }
        Ok(adopted)
    }

    /// The stored transcript of the asynchronous job `id` of `tenant`, if any.
    pub async fn result(&self, tenant: &str, id: &str) -> Result<Option<serde_json::Value>> {
        self.read_json(&self.path("results", tenant, id)).await
    }

    /// A page of `tenant`'s records, newest first.
    pub async fn list(&self, tenant: &str, query: &Query) -> Result<Page> {
        let folder = self.prefix.clone().join("records").join(tenant);
        let mut ids: Vec<String> = self
            .store
            .list(Some(&folder))
            .map_ok(|meta| meta.location.filename().unwrap_or_default().trim_end_matches(".json").to_string())
            .try_collect()
            .await
            .map_err(|e| store_error("list", e))?;
        // Stores do not promise an order: ids sort newest first.
        ids.sort_unstable();
        if let Some(after) = &query.after {
            ids.retain(|id| id.as_str() > after.as_str());
        }
        if let Some(since) = query.since {
            let bound = record::id_bound(since);
            ids.retain(|id| id.as_str() <= bound.as_str());
        }
        let now = unix_now();
        let mut data = Vec::new();
        let mut rest = ids.into_iter();
        for id in rest.by_ref() {
            if let Some(record) = self.listed(tenant, &id, query, now).await? {
                data.push(record);
                if data.len() == query.limit {
                    break;
                }
            }
        }
        // More exist if any later id passes the filters; without a status filter, any id.
        let has_more = match query.status {
            None => rest.next().is_some(),
            Some(_) => {
                let mut more = false;
                for id in rest {
                    if self.listed(tenant, &id, query, now).await?.is_some() {
                        more = true;
                        break;
                    }
                }
                more
            }
        };
        Ok(Page { data, has_more })
    }

    /// The record `id` of `tenant` as a listing at `now` shows it, if it passes the filters.
    async fn listed(&self, tenant: &str, id: &str, query: &Query, now: f64) -> Result<Option<Record>> {
        let Some((mut record, _)) = self.read(&self.path("records", tenant, id)).await? else { return Ok(None) };
        record.settle(now);
        let wanted = query.status.is_none_or(|s| s == record.status) && query.since.is_none_or(|s| record.created_at >= s);
        Ok(wanted.then_some(record))
    }

    /// Writes `record` in `mode`, falling back to a plain overwrite on a store that lacks the
    /// mode (a local folder has no conditional updates); the version written.
    async fn put_record(
        &self,
        path: &StorePath,
        record: &Record,
        mode: PutMode,
    ) -> std::result::Result<Option<UpdateVersion>, object_store::Error> {
        let body = || PutPayload::from(serde_json::to_vec(record).expect("records serialise"));
        let written = match self.store.put_opts(path, body(), PutOptions { mode, ..Default::default() }).await {
            Err(object_store::Error::NotImplemented { .. }) => self.store.put(path, body()).await?,
            other => other?,
        };
        Ok(version_of(written.e_tag, written.version))
    }

    /// The key that signs transcript records when `TINGXIE_RECORD_KEY` is not set: 32 random
    /// bytes, created once in the history (`record-key`), so every replica sharing the history
    /// shares it. Whoever can read the history can forge records: set the key from a Secret
    /// where uploaders may read it.
    pub async fn record_key(&self) -> Result<Vec<u8>> {
        let path = self.prefix.clone().join("record-key");
        for _ in 0..3 {
            if let Some((bytes, _)) = self.fetch(&path).await? {
                if bytes.len() >= 32 {
                    return Ok(bytes.to_vec());
                }
            }
            let mut key = vec![0u8; 32];
            aws_lc_rs::rand::fill(&mut key).map_err(|_| Error::Device("no random bytes for the record key".into()))?;
            let create = PutOptions { mode: PutMode::Create, ..Default::default() };
            match self.store.put_opts(&path, PutPayload::from(key.clone()), create).await {
                Ok(_) => return Ok(key),
                // Another replica made it first, or one was cut short: read it again.
                Err(object_store::Error::AlreadyExists { .. }) | Err(object_store::Error::Precondition { .. }) => {}
                Err(e) => return Err(store_error("write", e)),
            }
        }
        Err(Error::Store { message: "history: the record key could not be read or created".into(), retryable: true })
    }

    /// An object's bytes and version; None when there is none.
    async fn fetch(&self, path: &StorePath) -> Result<Option<(bytes::Bytes, Option<UpdateVersion>)>> {
        let got = match self.store.get(path).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_error("read", e)),
        };
        let version = version_of(got.meta.e_tag.clone(), got.meta.version.clone());
        Ok(Some((got.bytes().await.map_err(|e| store_error("read", e))?, version)))
    }

    async fn read(&self, path: &StorePath) -> Result<Option<(Record, Option<UpdateVersion>)>> {
        let Some((bytes, version)) = self.fetch(path).await? else { return Ok(None) };
        let record = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Store { message: format!("history record {path}: {e}"), retryable: false })?;
        Ok(Some((record, version)))
    }

    async fn read_json(&self, path: &StorePath) -> Result<Option<serde_json::Value>> {
        Ok(self.fetch(path).await?.and_then(|(bytes, _)| serde_json::from_slice(&bytes).ok()))
    }
}

/// A record this process is writing.
pub struct Entry {
    history: Arc<History>,
    path: StorePath,
    state: tokio::sync::Mutex<(Record, Option<UpdateVersion>)>,
}

impl Entry {
    pub async fn id(&self) -> String {
        self.state.lock().await.0.id.clone()
    }

    pub async fn record(&self) -> Record {
        self.state.lock().await.0.clone()
    }

    /// Applies `change` and writes the record, conditional on the version last written; when
    /// another writer got there first, its version is read and `change` applied to it.
    pub async fn update(&self, change: impl Fn(&mut Record)) -> Result<()> {
        let mut state = self.state.lock().await;
        for _ in 0..8 {
            let (record, version) = &mut *state;
            change(record);
            match self.history.put_record(&self.path, record, update_mode(version.clone())).await {
                Ok(written) => {
                    *version = written;
                    return Ok(());
                }
                Err(object_store::Error::Precondition { .. }) => match self.history.read(&self.path).await? {
                    Some(current) => *state = current,
                    None => *version = None,
                },
                Err(e) => return Err(store_error("write", e)),
            }
        }
        Err(Error::Store { message: format!("history record {}: too many concurrent updates", self.path), retryable: true })
    }

    /// Runs `work`, renewing the record's lease every third of it until it ends.
    pub async fn renewed_while<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let lease = self.history.lease;
        let renew = async {
            let mut every = tokio::time::interval(lease / 3);
            every.tick().await;
            loop {
                every.tick().await;
                if let Err(e) = self.update(|r| r.lease_until = Some(unix_now() + lease.as_secs_f64())).await {
                    tracing::warn!(error = %e, "could not renew a history record's lease");
                }
            }
        };
        tokio::select! {
            out = work => out,
            _ = renew => unreachable!("renewal never ends"),
        }
    }

    /// Stores the transcript of an asynchronous job, to be fetched by id.
    pub async fn put_result(&self, result: &serde_json::Value) -> Result<()> {
        let (tenant, id) = {
            let state = self.state.lock().await;
            (state.0.tenant.clone(), state.0.id.clone())
        };
        let path = self.history.path("results", &tenant, &id);
        self.history.store.put(&path, PutPayload::from(result.to_string().into_bytes())).await.map_err(|e| store_error("write", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
