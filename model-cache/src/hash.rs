//! SHA-256 of byte strings and files, as lowercase hex, and [`Frontier`]: the hash of a file
//! whose ranges are written out of order.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::ops::Range;
use std::path::Path;

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `data`.
pub(crate) fn hex_sha256(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Lowercase hex SHA-256 of a file's content (blocking).
pub(crate) fn file_sha256(path: &Path) -> io::Result<String> {
    reader_sha256(File::open(path)?)
}

/// Lowercase hex SHA-256 of everything `reader` yields, read in 1 MiB blocks (blocking).
pub(crate) fn reader_sha256(mut reader: impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(to_hex(&hasher.finalize()))
}

/// SHA-256 of a file whose byte ranges are written in any order, extended while it is written.
///
/// The hash covers the bytes from 0 up to the *frontier*; written ranges beyond it wait in
/// `pending` (merged, so at most one entry per gap) until the bytes before them are written.
/// Pure bookkeeping, no I/O: a writer records its range with [`Frontier::written`], then, while
/// [`Frontier::claim`] hands it a run of written bytes that starts at the frontier, feeds exactly
/// those bytes to the claimed hasher (outside any lock) and gives it back with
/// [`Frontier::release`]. Only one claim is out at a time, so the bytes go into the hash in file
/// order; a writer that finds the hasher claimed just records its range, and the holder picks it
/// up when it releases and claims again.
pub(crate) struct Frontier {
    /// `None` while claimed.
    hasher: Option<Sha256>,
    hashed: u64,
    /// Written but not yet hashed: start → end, disjoint and not adjacent, all ≥ `hashed`.
    pending: BTreeMap<u64, u64>,
    failed: bool,
}

/// A run of written bytes handed out by [`Frontier::claim`], with the hasher to feed them to.
pub(crate) struct Claim {
    pub hasher: Sha256,
    pub range: Range<u64>,
}

impl Frontier {
    pub fn new() -> Self {
        Frontier { hasher: Some(Sha256::new()), hashed: 0, pending: BTreeMap::new(), failed: false }
    }

    /// Bytes hashed so far (all of `0..hashed()`).
    #[cfg(test)]
    pub fn hashed(&self) -> u64 {
        self.hashed
    }

    /// Whether a claim is out.
    pub fn busy(&self) -> bool {
        self.hasher.is_none() && !self.failed
    }

    /// Whether a claim was given up ([`Frontier::fail`]): the hash can no longer be completed.
    #[cfg(test)]
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Records that `range` is written (once; ranges never overlap).
    pub fn written(&mut self, range: Range<u64>) {
        if range.is_empty() {
            return;
        }
        debug_assert!(range.start >= self.hashed, "{range:?} written twice");
        let (mut start, mut end) = (range.start, range.end);
        if let Some((&s, &e)) = self.pending.range(..=start).next_back() {
            if e >= start {
                debug_assert!(e == start, "{range:?} overlaps {s}..{e}");
                start = s;
                self.pending.remove(&s);
            }
        }
        if let Some(&e) = self.pending.get(&end) {
            self.pending.remove(&end);
            end = e;
        }
        debug_assert!(self.pending.range(start..end).next().is_none_or(|(&s, _)| s >= end));
        self.pending.insert(start, end);
    }

    /// The hasher and the written run that starts at the frontier, when the hasher is free and
    /// there is one. The caller must feed exactly `range`'s bytes, then [`Frontier::release`].
    pub fn claim(&mut self) -> Option<Claim> {
        let (&start, &end) = self.pending.first_key_value()?;
        if start != self.hashed || self.hasher.is_none() {
            return None;
        }
        self.pending.remove(&start);
        let hasher = self.hasher.take()?;
        Some(Claim { hasher, range: start..end })
    }

    /// Gives back a claim whose bytes were all fed to its hasher.
    pub fn release(&mut self, claim: Claim) {
        debug_assert_eq!(claim.range.start, self.hashed);
        self.hashed = claim.range.end;
        self.hasher = Some(claim.hasher);
    }

    /// Gives up a claim whose bytes could not be read: the hash stays unfinished for good.
    pub fn fail(&mut self) {
        self.failed = true;
    }

    /// The hex SHA-256 of `0..size` when exactly that much is hashed and no claim is out.
    pub fn finish(&mut self, size: u64) -> Option<String> {
        if self.failed || self.hashed != size || !self.pending.is_empty() {
            return None;
        }
        let hasher = self.hasher.take()?;
        Some(to_hex(&hasher.finalize()))
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn known_digest() {
        assert_eq!(super::hex_sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    /// xorshift64*: deterministic pseudo-random numbers without a dependency.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        pub fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                v.swap(i, self.below(i + 1));
            }
        }
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn feed(hasher: &mut Sha256, data: &[u8], range: &Range<u64>) {
        hasher.update(&data[range.start as usize..range.end as usize]);
    }

    /// Splits `0..size` into chunks of `chunk`, each written as blocks of `block` in order (as
    /// one ranged GET does); the chunks' blocks interleave in a random order, and the hasher is
    /// sometimes held across several writes (another thread hashing) before it is released.
    fn shuffled_writes(data: &[u8], chunk: u64, block: u64, seed: u64) -> String {
        let size = data.len() as u64;
        let mut rng = Rng(seed);
        let mut chunks: Vec<Vec<Range<u64>>> = (0..size.div_ceil(chunk))
            .map(|c| {
                let (start, end) = (c * chunk, ((c + 1) * chunk).min(size));
                (start..end).step_by(block as usize).map(|s| s..(s + block).min(end)).collect()
            })
            .collect();
        chunks.iter_mut().for_each(|c| c.reverse());
        rng.shuffle(&mut chunks);
        let mut f = Frontier::new();
        let mut held: Option<Claim> = None;
        while !chunks.is_empty() {
            let i = rng.below(chunks.len());
            let range = chunks[i].pop().unwrap();
            if chunks[i].is_empty() {
                chunks.swap_remove(i);
            }
            f.written(range);
            if held.is_none() {
                held = f.claim();
                if let Some(c) = held.as_mut() {
                    feed(&mut c.hasher, data, &c.range);
                }
            }
            // Release now or after a few more writes have been recorded meanwhile.
            if rng.below(3) == 0 {
                continue;
            }
            while let Some(c) = held.take() {
                f.release(c);
                held = f.claim();
                if let Some(c) = held.as_mut() {
                    feed(&mut c.hasher, data, &c.range);
                }
            }
        }
        while let Some(c) = held.take() {
            f.release(c);
            held = f.claim();
            if let Some(c) = held.as_mut() {
                feed(&mut c.hasher, data, &c.range.clone());
            }
        }
        assert!(!f.busy());
        assert_eq!(f.hashed(), size);
        f.finish(size).expect("complete")
    }

    #[test]
    fn out_of_order_writes_hash_like_the_whole_file() {
        let mut rng = Rng(7);
        for size in [0usize, 1, 100, 4095, 4096, 4097, 65_536, 300_001] {
            let data = rng.bytes(size);
            let want = hex_sha256(&data);
            for (chunk, block) in [(1u64, 1u64), (7, 3), (4096, 1024), (4096, 4096), (10_000, 999), (65_536, 8192), (1 << 20, 1 << 16)] {
                for seed in 1..=5 {
                    assert_eq!(shuffled_writes(&data, chunk, block, seed), want, "size {size}, chunk {chunk}, block {block}, seed {seed}");
                }
            }
        }
    }

    #[test]
    fn empty_file_and_incomplete_files() {
        let mut f = Frontier::new();
        assert_eq!(f.finish(0).unwrap(), hex_sha256(b""));

        // A gap: nothing past it can be hashed, and the hash is not complete.
        let mut f = Frontier::new();
        f.written(10..20);
        assert!(f.claim().is_none());
        assert_eq!(f.finish(20), None);
        f.written(0..10);
        let c = f.claim().unwrap();
        assert_eq!(c.range, 0..20);
        // Claimed: nobody else gets the hasher, and it cannot be finished.
        f.written(20..30);
        assert!(f.claim().is_none());
        assert!(f.busy());
        assert_eq!(f.finish(30), None);
        f.release(c);
        assert_eq!(f.claim().unwrap().range, 20..30);

        let mut f = Frontier::new();
        f.written(0..5);
        let _ = f.claim().unwrap();
        f.fail();
        assert!(f.failed() && !f.busy());
        assert_eq!(f.finish(5), None);
    }

    #[test]
    fn written_ranges_merge() {
        let mut f = Frontier::new();
        for r in [40..50, 20..30, 30..40, 60..70, 50..60, 5..10] {
            f.written(r);
        }
        assert_eq!(f.pending.iter().map(|(&s, &e)| (s, e)).collect::<Vec<_>>(), [(5, 10), (20, 70)]);
        f.written(0..5);
        f.written(10..20);
        assert_eq!(f.claim().unwrap().range, 0..70);
    }
}
