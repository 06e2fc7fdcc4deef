//! `list`, `gc` (leftovers and LRU eviction) and `verify`. All blocking.

use std::fmt;
use std::fs;
use std::path::PathBuf;

use serde::Serialize;

use crate::hash::file_sha256;
use crate::layout::VersionDir;
use crate::lock;
use crate::manifest::Marker;
use crate::{CacheEntry, Inner};

/// What [`ModelCache::gc`](crate::ModelCache::gc) did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    /// Versions deleted: leftovers of interrupted downloads, then least recently used models.
    pub removed: Vec<CacheEntry>,
    pub freed_bytes: u64,
    /// Versions that eviction would have removed but that a process is using.
    pub kept_in_use: Vec<CacheEntry>,
    /// Bytes in the cache afterwards.
    pub total_bytes: u64,
    pub limit: Option<u64>,
}

/// One problem found by [`ModelCache::verify`](crate::ModelCache::verify).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyProblem {
    pub uri: String,
    pub version: String,
    /// The file (or version folder) concerned.
    pub path: PathBuf,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A version folder without completion marker that no process is filling: the leftover of
    /// an interrupted download (never served; resumed by the next `ensure`, removed by `gc`).
    Incomplete,
    /// The completion marker cannot be read; it was removed so the version counts as incomplete.
    UnreadableMarker,
    Missing,
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    ChecksumMismatch {
        expected: String,
        actual: String,
    },
}

impl fmt::Display for VerifyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.problem {
            Problem::Incomplete => "incomplete download".to_string(),
            Problem::UnreadableMarker => "unreadable completion marker".to_string(),
            Problem::Missing => "missing file".to_string(),
            Problem::SizeMismatch { expected, actual } => {
                format!("size {actual}, expected {expected}")
            }
            Problem::ChecksumMismatch { expected, actual } => {
                format!("sha256 {actual}, expected {expected}")
            }
        };
        write!(f, "{} [{}] {}: {what}", self.uri, self.version, self.path.display())
    }
}

impl Inner {
    pub(crate) fn list(&self) -> Vec<CacheEntry> {
        let mut out = Vec::new();
        for key in self.layout.keys() {
            let uri = self.source_uri(&key);
            for v in self.layout.versions_of(&key) {
                out.push(self.entry(&key, &uri, &v));
            }
        }
        out
    }

    fn entry(&self, key: &str, uri: &str, v: &VersionDir) -> CacheEntry {
        let marker = Marker::read(&v.marker());
        CacheEntry {
            uri: uri.to_string(),
            key: key.to_string(),
            version: v.name(),
            path: v.model(),
            complete: marker.is_some(),
            bytes: v.bytes(),
            files: marker.map(|m| m.files.len()).unwrap_or(0),
            in_use: lock::is_in_use(&v.inuse()),
            last_used: v.last_used(),
        }
    }

    fn source_uri(&self, key: &str) -> String {
        fs::read(self.layout.source_file(key))
            .ok()
            .and_then(|d| serde_json::from_slice::<serde_json::Value>(&d).ok())
            .and_then(|v| v.get("uri")?.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("? ({key})"))
    }

    /// Removes leftovers, then evicts until the cache plus `incoming` bytes fits the limit.
    pub(crate) fn gc(&self, incoming: u64) -> GcReport {
        let mut report = GcReport { limit: self.config.max_bytes, ..GcReport::default() };
        self.layout.empty_trash();
        for key in self.layout.keys() {
            // A held model lock means a download is running: its folder is not a leftover.
            let Ok(Some(_key_lock)) = lock::try_exclusive(&self.layout.key_lock(&key)) else {
                continue;
            };
            let uri = self.source_uri(&key);
            let versions = self.layout.versions_of(&key);
            // Only the newest complete version can be served again (a hit or offline start).
            let newest = versions
                .iter()
                .filter_map(|v| Marker::read(&v.marker()).map(|m| (m.completed_at_ms, v.dir.clone())))
                .max()
                .map(|(_, dir)| dir);
            for v in versions {
                if newest.as_ref() != Some(&v.dir) {
                    self.remove(&key, &uri, &v, &mut report);
                }
            }
        }
        let mut entries = self.list();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        if let Some(limit) = self.config.max_bytes {
            let target = limit.saturating_sub(incoming);
            entries.sort_by_key(|e| e.last_used);
            for e in entries {
                if total <= target {
                    break;
                }
                let Ok(Some(_key_lock)) = lock::try_exclusive(&self.layout.key_lock(&e.key)) else {
                    continue;
                };
                let v = self.layout.version(&e.key, &e.version);
                if self.remove(&e.key, &e.uri, &v, &mut report) {
                    total = total.saturating_sub(e.bytes);
                } else {
                    report.kept_in_use.push(e);
                }
            }
        }
        report.total_bytes = total;
        report
    }

    /// Deletes a version unless it is in use. The caller holds the model's lock.
    fn remove(&self, key: &str, uri: &str, v: &VersionDir, report: &mut GcReport) -> bool {
        let Ok(Some(_probe)) = lock::try_exclusive(&v.inuse()) else {
            return false;
        };
        let entry = self.entry(key, uri, v);
        match self.layout.remove_dir(&v.dir) {
            Ok(()) => {
                tracing::info!(uri, version = entry.version, bytes = entry.bytes, "evicted");
                report.freed_bytes += entry.bytes;
                report.removed.push(entry);
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not remove {}", v.dir.display());
                false
            }
        }
    }

    pub(crate) fn verify(&self) -> Vec<VerifyProblem> {
        let mut problems = Vec::new();
        for key in self.layout.keys() {
            let uri = self.source_uri(&key);
            for v in self.layout.versions_of(&key) {
                let found = self.verify_version(&uri, &v);
                if found.iter().any(|p| p.problem != Problem::Incomplete) {
                    self.discard_damaged(&key, &v, &found);
                }
                problems.extend(found);
            }
        }
        problems
    }

    fn verify_version(&self, uri: &str, v: &VersionDir) -> Vec<VerifyProblem> {
        let problem = |path: PathBuf, problem| VerifyProblem { uri: uri.to_string(), version: v.name(), path, problem };
        let Some(marker) = Marker::read(&v.marker()) else {
            if v.marker().exists() {
                return vec![problem(v.marker(), Problem::UnreadableMarker)];
            }
            let key_lock = v.dir.parent().map(|k| k.join("lock")).unwrap_or_default();
            return match lock::try_exclusive(&key_lock) {
                Ok(Some(_)) => vec![problem(v.dir.clone(), Problem::Incomplete)],
                _ => Vec::new(), // being downloaded right now
            };
        };
        let mut out = Vec::new();
        for f in &marker.files {
            let path = v.model().join(&f.name);
            let found = match fs::metadata(&path) {
                Err(_) => Some(Problem::Missing),
                Ok(m) if m.len() != f.size => Some(Problem::SizeMismatch { expected: f.size, actual: m.len() }),
                Ok(_) => match file_sha256(&path) {
                    Ok(sha) if sha == f.sha256 => None,
                    Ok(sha) => Some(Problem::ChecksumMismatch { expected: f.sha256.clone(), actual: sha }),
                    Err(_) => Some(Problem::Missing),
                },
            };
            if let Some(p) = found {
                out.push(problem(path, p));
            }
        }
        out
    }

    /// Deletes damaged files (or an unreadable marker) under the model's lock, so that no
    /// process loads them and the next `ensure` fetches them again. Processes that already have
    /// a file open keep their copy of it.
    fn discard_damaged(&self, key: &str, v: &VersionDir, problems: &[VerifyProblem]) {
        let Ok(Some(_key_lock)) = lock::try_exclusive(&self.layout.key_lock(key)) else {
            tracing::warn!(version = v.name(), "model busy; damaged files left for the next ensure");
            return;
        };
        for p in problems {
            if matches!(p.problem, Problem::Missing | Problem::Incomplete) {
                continue;
            }
            if let Err(e) = fs::remove_file(&p.path) {
                tracing::warn!(error = %e, "could not remove {}", p.path.display());
            }
        }
    }
}
