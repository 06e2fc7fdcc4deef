//! Brings one version folder to complete: reuses verified files already there (a resumed or
//! repaired download), fetches the rest, and writes the completion marker last.

use std::collections::HashMap;
use std::fs;
use std::sync::Arc;

use object_store::ObjectStore;

use crate::download::{blocking, Downloader, Fetched, Wanted};
use crate::error::{Error, Result};
use crate::hash::file_sha256;
use crate::layout::VersionDir;
use crate::manifest::{mtime_ns, now_ms, parse_checksums, FileRecord, Marker, CHECKSUM_FILES};
use crate::store::RemoteFile;
use crate::uri::RemoteUri;
use crate::Inner;

impl Inner {
    /// Fills `vdir` with `files` and writes its marker; returns the bytes received. The caller
    /// holds the model's lock.
    pub(crate) async fn fill(
        &self,
        store: Arc<dyn ObjectStore>,
        remote: &RemoteUri,
        vdir: &VersionDir,
        files: &[RemoteFile],
        old: Option<&Marker>,
    ) -> Result<u64> {
        // Temp files of an interrupted run are never trusted: their ranges may be half written.
        match fs::remove_dir_all(vdir.partial()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(Error::io(&vdir.partial(), e)),
            _ => {}
        }
        // An old marker that no longer matches the files must not survive a crash below.
        if old.is_some() {
            fs::remove_file(vdir.marker()).map_err(|e| Error::io(&vdir.marker(), e))?;
        }
        let downloader = Downloader {
            store,
            uri: &remote.given,
            chunk_size: self.config.chunk_size(),
            concurrency: self.config.concurrency(),
            split_after: self.config.split_after,
        };
        let mut records: HashMap<String, FileRecord> = HashMap::new();
        let mut received = 0;

        // The checksum file comes first: it says what the others must hash to.
        let sums_file = files.iter().find(|f| CHECKSUM_FILES.contains(&f.name.as_str()));
        let mut expected = HashMap::new();
        if let Some(sums) = sums_file {
            received += self.place(&downloader, vdir, &[sums], &HashMap::new(), old, &mut records).await?;
            let path = vdir.model().join(&sums.name);
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            expected = parse_checksums(&text);
            for name in expected.keys() {
                if !files.iter().any(|f| &f.name == name) {
                    return Err(Error::NotFound {
                        what: format!("{}: {} lists {name}, which is not in the store", remote.given, sums.name),
                    });
                }
            }
        }
        let rest: Vec<&RemoteFile> = files.iter().filter(|f| Some(&f.name) != sums_file.map(|s| &s.name)).collect();
        if sums_file.is_some() {
            for f in rest.iter().filter(|f| !expected.contains_key(&f.name)) {
                tracing::warn!(file = f.name, "not in sha256sums: checked by size and ETag only");
            }
        }
        received += self.place(&downloader, vdir, &rest, &expected, old, &mut records).await?;

        let marker = Marker {
            format: Marker::FORMAT,
            uri: remote.canonical.clone(),
            version: vdir.name(),
            completed_at_ms: now_ms(),
            files: files.iter().map(|f| records.remove(&f.name).expect("every file placed")).collect(),
        };
        marker.write(&vdir.marker())?;
        Ok(received)
    }

    /// Puts `files` into the model folder: keeps those already there and verified, fetches the
    /// others, and fetches again (once) any that fail verification.
    async fn place(
        &self,
        downloader: &Downloader<'_>,
        vdir: &VersionDir,
        files: &[&RemoteFile],
        expected: &HashMap<String, String>,
        old: Option<&Marker>,
        records: &mut HashMap<String, FileRecord>,
    ) -> Result<u64> {
        let kept = reusable(vdir, files, expected, old).await?;
        let mut missing: Vec<&RemoteFile> = Vec::new();
        for (f, rec) in files.iter().zip(kept) {
            match rec {
                Some(rec) => {
                    records.insert(f.name.clone(), rec);
                }
                None => missing.push(f),
            }
        }
        let mut received = 0;
        for attempt in 1..=2 {
            if missing.is_empty() {
                break;
            }
            let wanted: Vec<Wanted> = missing.iter().map(|f| Wanted { file: f, sha256: expected.get(&f.name).cloned() }).collect();
            let (results, bytes) = downloader.fetch(vdir, &wanted).await?;
            received += bytes;
            let mut again = Vec::new();
            for (f, result) in missing.iter().zip(results) {
                match result {
                    Fetched::Ok(rec) => {
                        records.insert(f.name.clone(), rec);
                    }
                    Fetched::Bad { name, detail } if attempt == 1 => {
                        tracing::warn!(file = name, detail, "verification failed; fetching again");
                        again.push(*f);
                    }
                    Fetched::Bad { name, detail } => return Err(Error::Corrupt { path: name, detail }),
                }
            }
            missing = again;
        }
        Ok(received)
    }
}

/// For each file, the record of a copy already in the model folder that can be kept: right
/// size and, when a checksum is known (from `sha256sums` or an earlier marker), right hash.
/// Files are only ever renamed into `model/` after verification, so a file left by an
/// interrupted run with the right size is good unless a checksum says otherwise.
async fn reusable(
    vdir: &VersionDir,
    files: &[&RemoteFile],
    expected: &HashMap<String, String>,
    old: Option<&Marker>,
) -> Result<Vec<Option<FileRecord>>> {
    let jobs: Vec<(RemoteFile, Option<String>, Option<FileRecord>)> = files
        .iter()
        .map(|f| {
            let prior = old.and_then(|m| m.file(&f.name)).cloned();
            ((*f).clone(), expected.get(&f.name).cloned(), prior)
        })
        .collect();
    let model = vdir.model();
    blocking(move || {
        Ok(jobs
            .into_iter()
            .map(|(f, want, prior)| {
                let path = model.join(&f.name);
                let meta = fs::metadata(&path).ok().filter(|m| m.is_file() && m.len() == f.size)?;
                let from_manifest = want.is_some();
                let want = want.or_else(|| prior.as_ref().map(|p| p.sha256.clone()));
                // Unchanged since it was verified: no need to read it again.
                if let Some(p) = prior.as_ref().filter(|p| p.mtime_ns == mtime_ns(&meta) && p.size == f.size) {
                    if want.as_deref().is_none_or(|w| w == p.sha256) {
                        return Some(p.clone());
                    }
                }
                let sha = file_sha256(&path).ok()?;
                if want.as_deref().is_some_and(|w| w != sha) {
                    tracing::warn!(file = f.name, "cached file does not match its checksum");
                    return None;
                }
                Some(FileRecord {
                    name: f.name.clone(),
                    size: f.size,
                    etag: f.etag.clone(),
                    object_version: f.version.clone(),
                    sha256_from_manifest: from_manifest,
                    sha256: sha,
                    mtime_ns: mtime_ns(&meta),
                })
            })
            .collect())
    })
    .await
}
