//! Parallel ranged download of model files into a version folder.
//!
//! Each file is written in place into a temp file of its final size (`partial/<pid>-<time>-<n>.part`) by
//! up to `concurrency` ranged GETs at once, shared by all files. Bodies are written as they
//! arrive in blocks of at most [`WRITE_BLOCK`], so memory stays at about
//! `concurrency × WRITE_BLOCK` whatever the file size. When a file's last range lands it is
//! fsynced, hashed, checked and renamed into `model/`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::error::{Error, Result};
use crate::hash::reader_sha256;
use crate::layout::{create_dir_all, fsync_dir, VersionDir};
use crate::manifest::{mtime_ns, FileRecord};
use crate::store::RemoteFile;

/// Largest piece of a body held in memory before it is written.
const WRITE_BLOCK: usize = 1 << 20;

/// A file to fetch and the checksum it must have, when known.
pub(crate) struct Wanted<'a> {
    pub file: &'a RemoteFile,
    pub sha256: Option<String>,
}

/// What happened to one file.
pub(crate) enum Fetched {
    Ok(FileRecord),
    /// Downloaded but failed verification; the temp file is already deleted.
    Bad {
        name: String,
        detail: String,
    },
}

pub(crate) struct Downloader<'a> {
    pub store: Arc<dyn ObjectStore>,
    pub uri: &'a str,
    pub chunk_size: u64,
    pub concurrency: usize,
}

struct Slot {
    part: PathBuf,
    file: Arc<File>,
    chunks_left: AtomicUsize,
}

impl Downloader<'_> {
    /// Fetches `wanted` into `vdir`; returns one result per file (in order) and the bytes
    /// received. Transport and disk errors abort the whole call; the temp files stay for the
    /// next run to clean up.
    pub async fn fetch(
        &self,
        vdir: &VersionDir,
        wanted: &[Wanted<'_>],
    ) -> Result<(Vec<Fetched>, u64)> {
        let partial = vdir.partial();
        create_dir_all(&partial)?;
        create_dir_all(&vdir.model())?;
        // Temp names unique to this run: a cancelled earlier run may still have a blocking
        // write or hash in flight on its own temp files.
        let run = format!("{}-{}", std::process::id(), crate::manifest::now_ms());
        let slots = wanted
            .iter()
            .enumerate()
            .map(|(i, w)| self.open_slot(&partial, &format!("{run}-{i}"), w.file))
            .collect::<Result<Vec<_>>>()?;

        let mut chunks: Vec<(usize, Range<u64>)> = Vec::new();
        for (i, w) in wanted.iter().enumerate() {
            let mut start = 0;
            while start < w.file.size {
                let end = (start + self.chunk_size).min(w.file.size);
                chunks.push((i, start..end));
                start = end;
            }
            let count = w.file.size.div_ceil(self.chunk_size) as usize;
            slots[i].chunks_left.store(count, Ordering::SeqCst);
        }
        let total: u64 = wanted.iter().map(|w| w.file.size).sum();
        let received = AtomicU64::new(0);
        let progress = Progress::new(self.uri, total);

        let mut results: Vec<Option<Fetched>> = (0..wanted.len()).map(|_| None).collect();
        // Empty files have no range to fetch: finish them first.
        for (i, w) in wanted.iter().enumerate() {
            if w.file.size == 0 {
                results[i] = Some(finish(vdir, &slots[i], w.file, w.sha256.as_deref()).await?);
            }
        }
        let finished: Vec<(usize, Fetched)> = futures::stream::iter(chunks)
            .map(|(i, range)| {
                let (slots, received, progress) = (&slots, &received, &progress);
                async move {
                    let w = &wanted[i];
                    let n = self.fetch_range(&slots[i], w.file, range).await?;
                    progress.add(received.fetch_add(n, Ordering::Relaxed) + n);
                    if slots[i].chunks_left.fetch_sub(1, Ordering::SeqCst) == 1 {
                        let done = finish(vdir, &slots[i], w.file, w.sha256.as_deref()).await?;
                        return Ok(Some((i, done)));
                    }
                    Ok::<_, Error>(None)
                }
            })
            .buffer_unordered(self.concurrency)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        for (i, done) in finished {
            results[i] = Some(done);
        }
        sync_parents(vdir, wanted)?;
        let _ = fs::remove_dir(&partial);
        let results = results
            .into_iter()
            .map(|r| r.expect("every file finished"))
            .collect();
        Ok((results, received.into_inner()))
    }

    fn open_slot(&self, partial: &Path, name: &str, file: &RemoteFile) -> Result<Slot> {
        let part = partial.join(format!("{name}.part"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&part)
            .map_err(|e| Error::io(&part, e))?;
        // Reserve the final size up front; ranges then land at their offsets in any order.
        f.set_len(file.size).map_err(|e| Error::io(&part, e))?;
        Ok(Slot {
            part,
            file: Arc::new(f),
            chunks_left: AtomicUsize::new(0),
        })
    }

    /// One ranged GET, pinned to the listed ETag/version so that a file replaced mid-download
    /// fails instead of mixing two versions.
    async fn fetch_range(&self, slot: &Slot, file: &RemoteFile, range: Range<u64>) -> Result<u64> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: file.etag.clone(),
            version: file.version.clone(),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&file.location, options)
            .await
            .map_err(|e| Error::store(self.uri, e))?;
        if got.range != range {
            return Err(Error::Corrupt {
                path: file.name.clone(),
                detail: format!("asked for bytes {range:?}, got {:?}", got.range),
            });
        }
        let mut body = got.into_stream();
        let mut offset = range.start;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0;
        while let Some(piece) = body
            .try_next()
            .await
            .map_err(|e| Error::store(self.uri, e))?
        {
            pending_len += piece.len();
            pending.push(piece);
            if pending_len >= WRITE_BLOCK {
                offset = write_at(slot, offset, std::mem::take(&mut pending)).await?;
                pending_len = 0;
            }
        }
        offset = write_at(slot, offset, pending).await?;
        if offset != range.end {
            return Err(Error::Unreachable {
                uri: self.uri.to_string(),
                detail: format!(
                    "{}: body ended at {offset}, expected {}",
                    file.name, range.end
                ),
            });
        }
        Ok(range.end - range.start)
    }
}

async fn write_at(slot: &Slot, offset: u64, pieces: Vec<Bytes>) -> Result<u64> {
    if pieces.is_empty() {
        return Ok(offset);
    }
    let (file, part) = (slot.file.clone(), slot.part.clone());
    blocking(move || {
        let mut at = offset;
        for p in &pieces {
            file.write_all_at(p, at).map_err(|e| Error::io(&part, e))?;
            at += p.len() as u64;
        }
        Ok(at)
    })
    .await
}

/// fsync, hash, compare, rename into place.
async fn finish(
    vdir: &VersionDir,
    slot: &Slot,
    file: &RemoteFile,
    expected: Option<&str>,
) -> Result<Fetched> {
    let (handle, part) = (slot.file.clone(), slot.part.clone());
    let dest = vdir.model().join(&file.name);
    let (name, size, expected) = (file.name.clone(), file.size, expected.map(str::to_string));
    let (etag, object_version) = (file.etag.clone(), file.version.clone());
    blocking(move || {
        handle.sync_all().map_err(|e| Error::io(&part, e))?;
        let actual_size = handle.metadata().map_err(|e| Error::io(&part, e))?.len();
        // Hash through our own handle: the path may already be gone if this run was cancelled.
        let sha = reader_sha256(&*handle).map_err(|e| Error::io(&part, e))?;
        let problem = if actual_size != size {
            Some(format!("size {actual_size}, expected {size}"))
        } else if expected.as_ref().is_some_and(|e| *e != sha) {
            Some(format!(
                "sha256 {sha}, sha256sums says {}",
                expected.as_deref().unwrap_or("")
            ))
        } else {
            None
        };
        if let Some(detail) = problem {
            let _ = fs::remove_file(&part);
            return Ok(Fetched::Bad { name, detail });
        }
        if let Some(parent) = dest.parent() {
            create_dir_all(parent)?;
        }
        fs::rename(&part, &dest).map_err(|e| Error::io(&dest, e))?;
        let meta = fs::metadata(&dest).map_err(|e| Error::io(&dest, e))?;
        Ok(Fetched::Ok(FileRecord {
            name,
            size,
            etag,
            object_version,
            sha256: sha,
            sha256_from_manifest: expected.is_some(),
            mtime_ns: mtime_ns(&meta),
        }))
    })
    .await
}

/// Makes the renames into `model/` durable before the completion marker is written.
fn sync_parents(vdir: &VersionDir, wanted: &[Wanted<'_>]) -> Result<()> {
    let model = vdir.model();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::from([model.clone()]);
    for w in wanted {
        let mut p = model.join(&w.file.name);
        while let Some(parent) = p.parent() {
            if !parent.starts_with(&model) {
                break;
            }
            dirs.insert(parent.to_path_buf());
            p = parent.to_path_buf();
        }
    }
    dirs.iter().try_for_each(|d| fsync_dir(d))
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .expect("blocking task panicked")
}

/// Logs progress at every tenth of the total.
struct Progress<'a> {
    uri: &'a str,
    total: u64,
    logged_tenths: AtomicU64,
}

impl<'a> Progress<'a> {
    fn new(uri: &'a str, total: u64) -> Self {
        Progress {
            uri,
            total,
            logged_tenths: AtomicU64::new(0),
        }
    }

    fn add(&self, received: u64) {
        if self.total == 0 {
            return;
        }
        let tenths = received * 10 / self.total;
        let before = self.logged_tenths.fetch_max(tenths, Ordering::Relaxed);
        if tenths > before {
            tracing::info!(
                uri = self.uri,
                received,
                total = self.total,
                "download {}%",
                tenths * 10
            );
        }
    }
}
