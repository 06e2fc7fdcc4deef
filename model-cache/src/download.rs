//! Parallel ranged download of model files into a version folder.
//!
//! Each file is written in place into a temp file of its final size (`partial/<pid>-<time>-<n>.part`) by
//! up to `concurrency` ranged GETs at once, shared by all files. A file starts as pieces of at
//! most `chunk_size` bytes, one GET each. A GET that is slow for what it has left splits
//! itself while a request slot is idle ([`split_point`]): it keeps the first half of its rest
//! and queues the second half for a GET of its own. So a store that streams a file quickly
//! is asked once per file, and a slow one gets as many streams as `concurrency` allows. Bodies
//! are written as they arrive in blocks of at most [`WRITE_BLOCK`], so memory stays at about
//! `concurrency × WRITE_BLOCK` whatever the file size (plus, per file being hashed, one block
//! and one read-back buffer of at most [`WRITE_BLOCK`] each, below).
//!
//! Each file is hashed while it is written ([`Frontier`]): after each block, a blocking task
//! of the file's own (one at a time) extends the hash over the written bytes that now follow
//! the hashed ones without a gap — from memory when the block itself is next, read back from
//! the page cache for blocks that landed ahead of it — while the streams go on receiving.
//! Ranges run side by side, so the hash can only follow the first unfinished range; when the
//! last range lands, what may be left is the bytes written ahead of it. Each block's
//! writeback is started as soon as it is written (Linux), so the fsync at the end has little
//! left to wait for. Then the file is fsynced, its size and hash are checked, and only then is
//! it renamed into `model/`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, GetRange, ObjectStore};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::hash::{Claim, Frontier};
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
    /// Largest range one GET asks for.
    pub chunk_size: u64,
    pub concurrency: usize,
    /// See [`split_point`]; `None`: GETs never split.
    pub split_after: Option<Duration>,
}

struct Slot {
    part: PathBuf,
    file: Arc<File>,
    hash: Arc<FileHash>,
    /// Bytes no finished GET has written yet; the GET that brings it to 0 finishes the file.
    bytes_left: AtomicU64,
}

/// Bytes `range` of file `file` (an index into the wanted files), waiting for a GET.
struct Piece {
    file: usize,
    range: Range<u64>,
}

/// The pieces waiting for a GET and the number of GETs running, shared with the GETs so that
/// one can tell whether a request slot is idle and hand work to it.
struct Work {
    queue: Mutex<Vec<Piece>>,
    running: AtomicUsize,
    concurrency: usize,
    queued: tokio::sync::Notify,
}

impl Work {
    fn push(&self, piece: Piece) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(piece);
        self.queued.notify_one();
    }

    fn pop(&self) -> Option<Piece> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// True when a new piece would start at once instead of waiting for a running GET.
    fn has_idle_slot(&self) -> bool {
        let queued = self.queue.lock().unwrap_or_else(|e| e.into_inner()).len();
        self.running.load(Ordering::SeqCst) + queued < self.concurrency
    }
}

impl Downloader<'_> {
    /// Fetches `wanted` into `vdir`; returns one result per file (in order) and the bytes
    /// received. Transport and disk errors abort the whole call; the temp files stay for the
    /// next run to clean up.
    pub async fn fetch(&self, vdir: &VersionDir, wanted: &[Wanted<'_>]) -> Result<(Vec<Fetched>, u64)> {
        let partial = vdir.partial();
        create_dir_all(&partial)?;
        create_dir_all(&vdir.model())?;
        // Temp names unique to this run: a cancelled earlier run may still have a blocking
        // write or hash in flight on its own temp files.
        let run = format!("{}-{}", std::process::id(), crate::manifest::now_ms());
        let slots =
            wanted.iter().enumerate().map(|(i, w)| self.open_slot(&partial, &format!("{run}-{i}"), w.file)).collect::<Result<Vec<_>>>()?;

        let work = Work {
            queue: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            concurrency: self.concurrency,
            queued: tokio::sync::Notify::new(),
        };
        // Popped from the back: the first files' first pieces start first.
        for (i, w) in wanted.iter().enumerate().rev() {
            let mut end = w.file.size;
            while end > 0 {
                let start = (end - 1) / self.chunk_size * self.chunk_size;
                work.push(Piece { file: i, range: start..end });
                end = start;
            }
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
        let get = |piece: Piece| {
            let (slots, work, received, progress) = (&slots, &work, &received, &progress);
            async move {
                let (i, w) = (piece.file, &wanted[piece.file]);
                let n = self.fetch_range(&slots[i], w.file, piece, work).await?;
                progress.add(received.fetch_add(n, Ordering::Relaxed) + n);
                if slots[i].bytes_left.fetch_sub(n, Ordering::SeqCst) == n {
                    let done = finish(vdir, &slots[i], w.file, w.sha256.as_deref()).await?;
                    return Ok(Some((i, done)));
                }
                Ok::<_, Error>(None)
            }
        };
        let mut running = futures::stream::FuturesUnordered::new();
        loop {
            while running.len() < work.concurrency {
                let Some(piece) = work.pop() else { break };
                running.push(get(piece));
            }
            work.running.store(running.len(), Ordering::SeqCst);
            if running.is_empty() {
                break;
            }
            // A GET that splits queues its second half: start it at once.
            tokio::select! {
                done = running.next() => {
                    if let Some((i, fetched)) = done.expect("running is not empty")? {
                        results[i] = Some(fetched);
                    }
                }
                _ = work.queued.notified() => {}
            }
        }
        drop(running);
        sync_parents(vdir, wanted)?;
        let _ = fs::remove_dir(&partial);
        let results = results.into_iter().map(|r| r.expect("every file finished")).collect();
        Ok((results, received.into_inner()))
    }

    fn open_slot(&self, partial: &Path, name: &str, file: &RemoteFile) -> Result<Slot> {
        let part = partial.join(format!("{name}.part"));
        let f = OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&part).map_err(|e| Error::io(&part, e))?;
        // Reserve the final size up front; ranges then land at their offsets in any order.
        f.set_len(file.size).map_err(|e| Error::io(&part, e))?;
        Ok(Slot {
            part,
            file: Arc::new(f),
            hash: Arc::new(FileHash::new(tokio::runtime::Handle::current())),
            bytes_left: AtomicU64::new(file.size),
        })
    }

    /// One ranged GET, pinned to the listed ETag/version so that a file replaced mid-download
    /// fails instead of mixing two versions. Returns the bytes written: the piece's, less the
    /// tail it handed to another GET when it split.
    async fn fetch_range(&self, slot: &Slot, file: &RemoteFile, piece: Piece, work: &Work) -> Result<u64> {
        let range = piece.range;
        let options = GetOptions {
            range: Some(GetRange::Bounded(range.clone())),
            if_match: file.etag.clone(),
            version: file.version.clone(),
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&file.location, options).await.map_err(|e| Error::store(self.uri, e))?;
        if got.range != range {
            return Err(Error::Corrupt { path: file.name.clone(), detail: format!("asked for bytes {range:?}, got {:?}", got.range) });
        }
        let mut body = got.into_stream();
        let mut offset = range.start;
        // Where this GET stops writing: moves down when it splits. The server's bytes past it
        // are not read; dropping the body closes the connection.
        let mut end = range.end;
        let mut first_byte = None;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0;
        while offset + (pending_len as u64) < end {
            let Some(bytes) = body.try_next().await.map_err(|e| Error::store(self.uri, e))? else {
                break;
            };
            let since = *first_byte.get_or_insert_with(Instant::now);
            pending_len += bytes.len();
            pending.push(bytes);
            if pending_len >= WRITE_BLOCK {
                let block = take_upto(&mut pending, end - offset);
                offset = write_at(slot, offset, block).await?;
                pending_len = 0;
                let measured = (offset - range.start, since.elapsed());
                let idle = || work.has_idle_slot();
                if let Some(mid) = split_point(offset..end, measured, self.split_after, idle) {
                    work.push(Piece { file: piece.file, range: mid..end });
                    end = mid;
                }
            }
        }
        offset = write_at(slot, offset, take_upto(&mut pending, end - offset)).await?;
        if offset != end {
            return Err(Error::Unreachable {
                uri: self.uri.to_string(),
                detail: format!("{}: body ended at {offset}, expected {end}", file.name),
            });
        }
        Ok(end - range.start)
    }
}

/// Smallest piece a GET hands off: below it, a request's own latency is most of its time.
const MIN_PIECE: u64 = 4 << 20;
/// A rate read over less time than this is noise (one scheduling hiccup).
const MEASURE_FOR: Duration = Duration::from_millis(50);

/// Where a GET that has `rest` left to write should stop and hand the remainder to a new GET,
/// if anywhere: when, at the rate it has received so far (`measured`: bytes over the time
/// since its first byte), the rest would take longer than `split_after`, each half is at least
/// [`MIN_PIECE`], and a request slot is `idle`. The split is in the middle of the rest.
fn split_point(
    rest: Range<u64>,
    (bytes, time): (u64, Duration),
    split_after: Option<Duration>,
    idle: impl FnOnce() -> bool,
) -> Option<u64> {
    let split_after = split_after?;
    let left = rest.end - rest.start;
    if time < MEASURE_FOR || left < 2 * MIN_PIECE {
        return None;
    }
    let rate = bytes as f64 / time.as_secs_f64();
    let slow = left as f64 > rate * split_after.as_secs_f64();
    (slow && idle()).then(|| rest.start + left / 2)
}

/// Takes the first `limit` bytes of `pieces` (all of them if fewer), leaving `pieces` empty.
fn take_upto(pieces: &mut Vec<Bytes>, limit: u64) -> Vec<Bytes> {
    let mut left = limit as usize;
    let mut kept = Vec::with_capacity(pieces.len());
    for mut p in pieces.drain(..) {
        if left == 0 {
            break;
        }
        p.truncate(left);
        left -= p.len();
        kept.push(p);
    }
    kept
}

/// Writes one block at `offset`, starts its writeback and records it for the file's hash.
async fn write_at(slot: &Slot, offset: u64, pieces: Vec<Bytes>) -> Result<u64> {
    if pieces.is_empty() {
        return Ok(offset);
    }
    let (file, part, hash) = (slot.file.clone(), slot.part.clone(), slot.hash.clone());
    blocking(move || {
        let mut at = offset;
        for p in &pieces {
            file.write_all_at(p, at).map_err(|e| Error::io(&part, e))?;
            at += p.len() as u64;
        }
        start_writeback(&file, offset, at - offset);
        FileHash::written(&hash, &file, offset, pieces);
        Ok(at)
    })
    .await
}

/// Asks the kernel to start writing `len` bytes at `offset` to disk now rather than when the
/// file is fsynced (without waiting for it). Errors are left for the fsync to report.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor this `File` keeps open; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset as libc::off64_t, len as libc::off64_t, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

/// The hash of one temp file, extended as its blocks are written (see [`Frontier`]).
///
/// The hashing itself runs in a blocking task of its own ([`Hashing`]), at most one per file at
/// a time, so that a write returns as soon as its bytes are written and its stream goes on
/// receiving while the hash catches up.
struct FileHash {
    frontier: Mutex<Frontier>,
    /// Signalled whenever a claim is given back or given up.
    released: Condvar,
    runtime: tokio::runtime::Handle,
}

impl FileHash {
    fn new(runtime: tokio::runtime::Handle) -> Self {
        FileHash { frontier: Mutex::new(Frontier::new()), released: Condvar::new(), runtime }
    }

    fn lock(&self) -> MutexGuard<'_, Frontier> {
        self.frontier.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records that `pieces` were written at `offset`. When that makes written bytes follow
    /// the hashed ones and nobody is hashing this file, starts a task that hashes them
    /// (`pieces` from memory when they are next, the rest read back through `file`) and goes
    /// on while more become ready.
    fn written(me: &Arc<Self>, file: &Arc<File>, offset: u64, pieces: Vec<Bytes>) {
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        let block = offset..offset + len;
        let claim = {
            let mut frontier = me.lock();
            frontier.written(block.clone());
            frontier.claim()
        };
        if let Some(claim) = claim {
            let job = Hashing { hash: me.clone(), file: file.clone(), claim: Some(claim), block, pieces };
            me.runtime.spawn_blocking(move || job.run());
        }
    }

    /// The file's hex SHA-256, once all its writes have returned: waits for the hashing task,
    /// if one is still at work (the tail: the bytes written ahead of the last gap to close).
    /// Falls back to reading the whole file when the hash does not cover exactly `size` bytes
    /// (the task failed or never ran, or the file's size is not the listed one). Blocking.
    fn finish(&self, file: &File, size: u64) -> std::io::Result<String> {
        let mut frontier = self.lock();
        while frontier.busy() {
            frontier = self.released.wait(frontier).unwrap_or_else(|e| e.into_inner());
        }
        if let Some(sha) = frontier.finish(size) {
            return Ok(sha);
        }
        drop(frontier);
        let mut hasher = Sha256::new();
        read_back(file, &mut hasher, 0..size)?;
        Ok(crate::hash::to_hex(&hasher.finalize()))
    }
}

/// A claim being hashed outside the lock, in a blocking task. Dropped with its claim still
/// out (a read error, a panic, a task that never ran), it marks the hash failed, so that
/// [`FileHash::finish`] reads the file again instead of waiting for it.
struct Hashing {
    hash: Arc<FileHash>,
    file: Arc<File>,
    claim: Option<Claim>,
    /// The block whose write started this task, and its bytes, hashed from memory when
    /// they are part of the first claim.
    block: Range<u64>,
    pieces: Vec<Bytes>,
}

impl Hashing {
    fn run(mut self) {
        loop {
            let Some(claim) = self.claim.as_mut() else {
                return;
            };
            if let Err(e) = feed(&self.file, claim, &self.block, &self.pieces) {
                tracing::warn!(error = %e, "hashing during the download failed; reading the file again at the end");
                return;
            }
            // Done with the bytes in memory: later runs are read back.
            self.pieces = Vec::new();
            self.block = 0..0;
            let mut frontier = self.hash.lock();
            frontier.release(self.claim.take().expect("claim"));
            self.claim = frontier.claim();
            drop(frontier);
            self.hash.released.notify_all();
        }
    }
}

impl Drop for Hashing {
    fn drop(&mut self) {
        if self.claim.take().is_some() {
            self.hash.lock().fail();
            self.hash.released.notify_all();
        }
    }
}

/// Feeds `claim.range` to its hasher: the block `pieces` (written at `block`) from memory when
/// it lies in the range, everything else read back from `file`.
fn feed(file: &File, claim: &mut Claim, block: &Range<u64>, pieces: &[Bytes]) -> std::io::Result<()> {
    let run = claim.range.clone();
    let hasher = &mut claim.hasher;
    if block.is_empty() || block.start < run.start || block.end > run.end {
        return read_back(file, hasher, run);
    }
    read_back(file, hasher, run.start..block.start)?;
    pieces.iter().for_each(|p| hasher.update(p));
    read_back(file, hasher, block.end..run.end)
}

/// Hashes `range` of `file`, read in blocks of at most [`WRITE_BLOCK`].
fn read_back(file: &File, hasher: &mut Sha256, range: Range<u64>) -> std::io::Result<()> {
    if range.is_empty() {
        return Ok(());
    }
    let mut buf = vec![0u8; (range.end - range.start).min(WRITE_BLOCK as u64) as usize];
    let mut at = range.start;
    while at < range.end {
        let n = ((range.end - at) as usize).min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(())
}

/// fsync, finish the hash, compare, rename into place.
async fn finish(vdir: &VersionDir, slot: &Slot, file: &RemoteFile, expected: Option<&str>) -> Result<Fetched> {
    let (handle, part, hash) = (slot.file.clone(), slot.part.clone(), slot.hash.clone());
    let dest = vdir.model().join(&file.name);
    let (name, size, expected) = (file.name.clone(), file.size, expected.map(str::to_string));
    let (etag, object_version) = (file.etag.clone(), file.version.clone());
    blocking(move || {
        handle.sync_all().map_err(|e| Error::io(&part, e))?;
        let actual_size = handle.metadata().map_err(|e| Error::io(&part, e))?.len();
        // Read back (if at all) through our own handle: the path may already be gone if this
        // run was cancelled.
        let sha = hash.finish(&handle, actual_size).map_err(|e| Error::io(&part, e))?;
        let problem = if actual_size != size {
            Some(format!("size {actual_size}, expected {size}"))
        } else if expected.as_ref().is_some_and(|e| *e != sha) {
            Some(format!("sha256 {sha}, sha256sums says {}", expected.as_deref().unwrap_or("")))
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

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.expect("blocking task panicked")
}

/// Logs progress at every tenth of the total.
struct Progress<'a> {
    uri: &'a str,
    total: u64,
    logged_tenths: AtomicU64,
}

impl<'a> Progress<'a> {
    fn new(uri: &'a str, total: u64) -> Self {
        Progress { uri, total, logged_tenths: AtomicU64::new(0) }
    }

    fn add(&self, received: u64) {
        if self.total == 0 {
            return;
        }
        let tenths = received * 10 / self.total;
        let before = self.logged_tenths.fetch_max(tenths, Ordering::Relaxed);
        if tenths > before {
            tracing::info!(uri = self.uri, received, total = self.total, "download {}%", tenths * 10);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hex_sha256;

    /// Several threads write a file's chunks at once, block by block, as the ranged GETs do,
    /// with the chunks started in a shuffled order; the hash carried along equals the hash of
    /// the whole file, for files smaller than one block or chunk, empty, and of many chunks.
    #[test]
    fn hash_carried_along_concurrent_writes_matches_the_file() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = std::env::temp_dir().join(format!("mc-unit-hash-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut seed = 1;
        for (size, chunk, block, threads) in [
            (0usize, 4096u64, 1024usize, 4usize),
            (1, 4096, 1024, 4),
            (1000, 4096, 1024, 4),
            (4096, 4096, 1024, 4),
            (100_000, 4096, 1000, 8),
            (100_000, 30_000, 4096, 3),
            (1 << 20, 1 << 16, 1 << 12, 8),
            (3_000_001, 1 << 20, WRITE_BLOCK, 4),
        ] {
            seed += 1;
            let mut rng = Rng(seed);
            let data = Arc::new(rng.bytes(size));
            let path = dir.join(format!("{seed}.part"));
            let file = Arc::new(OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&path).unwrap());
            file.set_len(size as u64).unwrap();
            let hash = Arc::new(FileHash::new(rt.handle().clone()));
            let mut chunks: Vec<Range<u64>> =
                (0..(size as u64).div_ceil(chunk)).map(|c| c * chunk..((c + 1) * chunk).min(size as u64)).collect();
            rng.shuffle(&mut chunks);
            let queue = Arc::new(Mutex::new(chunks));
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (queue, data, file, hash) = (queue.clone(), data.clone(), file.clone(), hash.clone());
                    std::thread::spawn(move || loop {
                        let Some(range) = queue.lock().unwrap().pop() else {
                            return;
                        };
                        let mut at = range.start as usize;
                        while at < range.end as usize {
                            let end = (at + block).min(range.end as usize);
                            // A block arrives as a few pieces, like a body stream.
                            let mid = (at + end) / 2;
                            let pieces = vec![Bytes::copy_from_slice(&data[at..mid]), Bytes::copy_from_slice(&data[mid..end])];
                            file.write_all_at(&data[at..end], at as u64).unwrap();
                            FileHash::written(&hash, &file, at as u64, pieces);
                            at = end;
                        }
                    })
                })
                .collect();
            workers.into_iter().for_each(|w| w.join().unwrap());
            let got = hash.finish(&file, size as u64).unwrap();
            assert!(!hash.lock().failed(), "size {size}: carried along, not read again");
            assert_eq!(got, hex_sha256(&data), "size {size}, chunk {chunk}, block {block}");
            fs::remove_file(&path).unwrap();
        }
        let _ = fs::remove_dir_all(&dir);
    }

    /// A hash that could not be carried along falls back to reading the whole file at the end,
    /// instead of waiting forever.
    #[test]
    fn failed_hash_falls_back_to_reading_the_file() {
        let dir = std::env::temp_dir().join(format!("mc-unit-fail-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.part");
        let data = Rng(3).bytes(10_000);
        fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let hash = Arc::new(FileHash::new(rt.handle().clone()));
        // A hashing task dropped without running (e.g. the runtime was shutting down).
        let claim = {
            let mut f = hash.lock();
            f.written(0..10_000);
            f.claim().unwrap()
        };
        drop(Hashing {
            hash: hash.clone(),
            file: Arc::new(file.try_clone().unwrap()),
            claim: Some(claim),
            block: 0..0,
            pieces: Vec::new(),
        });
        assert!(hash.lock().failed());
        assert_eq!(hash.finish(&file, 10_000).unwrap(), hex_sha256(&data));
        let _ = fs::remove_dir_all(&dir);
    }

    /// A GET splits only when it has measured long enough, its rest is slow at that rate,
    /// both halves are worth a request, and a slot is idle; then in the middle of its rest.
    #[test]
    fn split_point_needs_a_slow_rest_an_idle_slot_and_two_pieces() {
        const MB: u64 = 1 << 20;
        let after = Some(Duration::from_millis(250));
        let ms = Duration::from_millis;
        let at = |rest, measured, idle| split_point(rest, measured, after, || idle);
        // 10 MB/s so far, 40 MB left: 4 s > 0.25 s.
        assert_eq!(at(10 * MB..50 * MB, (MB, ms(100)), true), Some(30 * MB));
        assert_eq!(at(10 * MB..50 * MB, (MB, ms(100)), false), None, "no idle slot");
        assert_eq!(at(10 * MB..50 * MB, (MB, ms(10)), true), None, "measured too briefly");
        assert_eq!(at(10 * MB..17 * MB, (MB, ms(100)), true), None, "halves under MIN_PIECE");
        assert_eq!(split_point(10 * MB..50 * MB, (MB, ms(100)), None, || true), None, "off");
        // 1 GB/s so far: 40 MB left is 40 ms, not worth another GET.
        assert_eq!(at(10 * MB..50 * MB, (100 * MB, ms(100)), true), None);
        // Exactly at the threshold is not slow.
        assert_eq!(at(0..25 * MB, (10 * MB, ms(100)), true), None);
        assert!(at(0..25 * MB + 1, (10 * MB, ms(100)), true).is_some());
    }

    #[test]
    fn take_upto_cuts_the_pieces_at_the_limit() {
        let pieces = || vec![Bytes::from_static(b"abc"), Bytes::from_static(b"defg"), Bytes::from_static(b"h")];
        let joined = |v: Vec<Bytes>| v.concat();
        for (limit, want) in [(0, &b""[..]), (2, b"ab"), (3, b"abc"), (5, b"abcde"), (8, b"abcdefgh"), (99, b"abcdefgh")] {
            let mut p = pieces();
            assert_eq!(joined(take_upto(&mut p, limit)), want, "limit {limit}");
            assert!(p.is_empty());
        }
    }

    use crate::hash::tests::Rng;
}
