//! `ensure`: from a URI to a complete local folder (hit, miss, stale, repair or offline).
//!
//! Lock order: the in-process single flight, then the model's `lock` file (exclusive, held
//! while the version folder is checked or filled), then the version's `inuse` file (shared,
//! held by the returned `LocalModel`). Eviction takes `lock` and then `inuse` exclusively, so it
//! can never remove a version between the moment `ensure` checks it and the moment it is held.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::layout::{create_dir_all, write_atomic, VersionDir};
use crate::manifest::Marker;
use crate::store::{list_model, version_id};
use crate::uri::{parse, ModelSource, RemoteUri};
use crate::{lock, Inner, LocalModel, Outcome};

impl Inner {
    pub(crate) async fn ensure(&self, given: &str) -> Result<LocalModel> {
        let start = Instant::now();
        let remote = match parse(given)? {
            ModelSource::Local(path) => return local_folder(given, path, start),
            ModelSource::Remote(remote) => remote,
        };
        let flight = self.flight(&remote.key);
        let _flight = flight.lock().await;

        let store = self.stores.get(&remote)?;
        let files = match list_model(&*store, &remote).await {
            Ok(files) => files,
            Err(e @ Error::Unreachable { .. }) => {
                let _key = self.lock_key(&remote).await?;
                return self.offline(&remote, e, start);
            }
            Err(e) => return Err(e),
        };
        let version = version_id(&files);
        let _key = self.lock_key(&remote).await?;
        let vdir = self.layout.version(&remote.key, &version);
        create_dir_all(&vdir.dir)?;
        let in_use = lock::shared(&vdir.inuse())?;

        let marker = Marker::read(&vdir.marker());
        if let Some(m) = &marker {
            if self.is_intact(m, &vdir).await? {
                vdir.touch()?;
                tracing::info!(uri = given, version, "model cache hit");
                return Ok(model(&remote, &vdir, version, Outcome::Hit, 0, start, in_use));
            }
            tracing::warn!(uri = given, version, "cached model damaged; fetching what is missing");
        }

        let had_older = self.layout.versions_of(&remote.key).iter().any(|v| v.dir != vdir.dir && Marker::read(&v.marker()).is_some());
        let incoming: u64 = files.iter().map(|f| f.size).sum();
        self.gc(incoming);

        let bytes = match self.fill(store, &remote, &vdir, &files, marker.as_ref()).await {
            Ok(bytes) => bytes,
            Err(e @ Error::Unreachable { .. }) => {
                drop(in_use);
                return self.offline(&remote, e, start);
            }
            Err(e) => return Err(e),
        };
        vdir.touch()?;
        self.drop_other_versions(&remote, &vdir);
        let outcome = if marker.is_some() {
            Outcome::Repaired
        } else if had_older {
            Outcome::StaleRefreshed
        } else {
            Outcome::Miss
        };
        tracing::info!(
            uri = given,
            version,
            outcome = outcome.as_str(),
            bytes,
            elapsed_ms = start.elapsed().as_millis() as u64,
            "model downloaded"
        );
        Ok(model(&remote, &vdir, version, outcome, bytes, start, in_use))
    }

    fn flight(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().expect("flight map");
        flights.entry(key.to_string()).or_default().clone()
    }

    async fn lock_key(&self, remote: &RemoteUri) -> Result<lock::Exclusive> {
        create_dir_all(&self.layout.key_dir(&remote.key))?;
        let lock = lock::exclusive(&self.layout.key_lock(&remote.key), self.config.lock_timeout).await?;
        let source = self.layout.source_file(&remote.key);
        if !source.exists() {
            let json = serde_json::json!({ "uri": remote.canonical });
            write_atomic(&source, json.to_string().as_bytes())?;
        }
        Ok(lock)
    }

    /// Cheap check on every hit (sizes and mtimes); a full hash when `verify_on_hit` is set.
    async fn is_intact(&self, marker: &Marker, vdir: &VersionDir) -> Result<bool> {
        if !marker.changed_files(&vdir.model()).is_empty() {
            return Ok(false);
        }
        if !self.config.verify_on_hit {
            return Ok(true);
        }
        let (marker, model_dir) = (marker.clone(), vdir.model());
        crate::download::blocking(move || {
            Ok(marker.files.iter().all(|f| crate::hash::file_sha256(&model_dir.join(&f.name)).is_ok_and(|h| h == f.sha256)))
        })
        .await
    }

    /// The store is unreachable: serve the newest complete copy, if any. The caller holds the
    /// model's lock.
    fn offline(&self, remote: &RemoteUri, cause: Error, start: Instant) -> Result<LocalModel> {
        let best = self
            .layout
            .versions_of(&remote.key)
            .into_iter()
            .filter_map(|v| Marker::read(&v.marker()).map(|m| (v, m)))
            .filter(|(v, m)| m.changed_files(&v.model()).is_empty())
            .max_by_key(|(_, m)| m.completed_at_ms);
        let Some((vdir, marker)) = best else {
            let detail = match cause {
                Error::Unreachable { detail, .. } => detail,
                other => other.to_string(),
            };
            return Err(Error::Unreachable { uri: remote.given.clone(), detail: format!("{detail}; and no complete copy is cached") });
        };
        let in_use = lock::shared(&vdir.inuse())?;
        vdir.touch()?;
        tracing::warn!(
            uri = remote.given,
            version = marker.version,
            cause = %cause,
            "object store unreachable; starting from the cached copy"
        );
        Ok(model(remote, &vdir, marker.version, Outcome::Offline, 0, start, in_use))
    }

    /// After a new version is complete, older ones (and leftovers of interrupted downloads)
    /// are deleted unless a process still uses them; eviction gets those later.
    fn drop_other_versions(&self, remote: &RemoteUri, keep: &VersionDir) {
        for v in self.layout.versions_of(&remote.key) {
            if v.dir == keep.dir {
                continue;
            }
            if let Ok(Some(_probe)) = lock::try_exclusive(&v.inuse()) {
                match self.layout.remove_dir(&v.dir) {
                    Ok(()) => tracing::info!(uri = remote.given, version = v.name(), "removed old version"),
                    Err(e) => tracing::warn!(error = %e, "could not remove an old version"),
                }
            }
        }
    }
}

fn model(
    remote: &RemoteUri,
    vdir: &VersionDir,
    version: String,
    outcome: Outcome,
    bytes: u64,
    start: Instant,
    in_use: lock::Shared,
) -> LocalModel {
    LocalModel {
        path: vdir.model(),
        uri: remote.given.clone(),
        version: Some(version),
        outcome,
        bytes_downloaded: bytes,
        elapsed: start.elapsed(),
        in_use: Some(in_use),
    }
}

fn local_folder(given: &str, path: PathBuf, start: Instant) -> Result<LocalModel> {
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(LocalModel {
            path,
            uri: given.to_string(),
            version: None,
            outcome: Outcome::Local,
            bytes_downloaded: 0,
            elapsed: start.elapsed(),
            in_use: None,
        }),
        Ok(_) => Err(Error::NotFound { what: format!("{given} is not a folder") }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound { what: given.to_string() }),
        Err(e) => Err(Error::io(&path, e)),
    }
}
