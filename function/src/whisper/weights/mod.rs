//! Checkpoint readers. Both formats are read through a memory map and exposed under one naming
//! scheme (CTranslate2's, with fused projections), so the model builder asks for a tensor once.

mod ct2;
mod hf;
mod names;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::whisper::config::WhisperConfig;

pub use names::{canonical_tensors, hf_source, Part};

/// A tensor in host memory, float32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Swaps the two axes of a matrix: checkpoints store `[out, in]`, burn's `linear` wants
    /// `[in, out]` (a transposed view instead makes every decoding step's products several
    /// times slower). Each task writes whole output rows, reading the input in tiles that stay
    /// within cache lines.
    pub fn transposed(&self) -> HostTensor {
        use rayon::prelude::*;
        const TILE: usize = 32;
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0f32; self.data.len()];
        if rows > 0 {
            data.par_chunks_mut(TILE * rows).enumerate().for_each(|(block, out)| {
                let c0 = block * TILE;
                let width = out.len() / rows;
                for r0 in (0..rows).step_by(TILE) {
                    for r in r0..(r0 + TILE).min(rows) {
                        let from = &self.data[r * cols + c0..r * cols + c0 + width];
                        for (c, &value) in from.iter().enumerate() {
                            out[c * rows + r] = value;
                        }
                    }
                }
            });
        }
        HostTensor { shape: vec![cols, rows], data }
    }
}

/// Which on-disk layout a model directory uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// CTranslate2 `model.bin`, as faster-whisper uses.
    CTranslate2,
    /// Hugging Face transformers `model.safetensors`.
    HuggingFace,
}

/// Tensors of a checkpoint, addressed by canonical (CTranslate2) names.
pub trait TensorSource: Sync {
    fn config(&self) -> &WhisperConfig;
    /// The tensor named `name` as float32, checked against `shape`.
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor>;
    /// The tensor's values as stored, when the checkpoint stores them as f16 (`None` otherwise,
    /// or when the format does not say so cheaply): the CPU kernels read f16 directly.
    fn tensor_f16(&self, _name: &str, _shape: &[usize]) -> Result<Option<F16Rows>> {
        Ok(None)
    }
}

/// f16 values as the checkpoint stores them, as their little-endian bytes: in the mapped file
/// itself (no copy, and no page of their own: the page cache's pages are shared), or owned.
/// Bytes, not `[f16]`: a CTranslate2 file may place a tensor at an odd offset.
pub enum F16Rows {
    Owned(Vec<u8>),
    /// `len` bytes at `offset` of `map`.
    Mapped {
        map: Arc<memmap2::Mmap>,
        offset: usize,
        len: usize,
    },
}

impl F16Rows {
    /// The values whose bytes are `offset..offset + len` of `map`, read in place.
    fn mapped(map: &Arc<memmap2::Mmap>, offset: usize, len: usize) -> Self {
        assert!(offset + len <= map.len() && len.is_multiple_of(2), "f16 rows outside the map");
        F16Rows::Mapped { map: map.clone(), offset, len }
    }

    /// Number of values.
    pub fn values(&self) -> usize {
        self.len() / 2
    }
}

impl std::ops::Deref for F16Rows {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            F16Rows::Owned(bytes) => bytes,
            F16Rows::Mapped { map, offset, len } => &map[*offset..*offset + *len],
        }
    }
}

impl From<Vec<half::f16>> for F16Rows {
    fn from(values: Vec<half::f16>) -> Self {
        F16Rows::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}

impl std::fmt::Debug for F16Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, F16Rows::Mapped { .. }) { "mapped" } else { "owned" };
        write!(f, "F16Rows({kind}, {} values)", self.values())
    }
}

/// Finds which format `dir` holds (CTranslate2 wins when both are present: it carries the
/// suppression lists faster-whisper uses).
pub fn detect_format(dir: &Path) -> Result<CheckpointFormat> {
    if dir.join("model.bin").is_file() {
        Ok(CheckpointFormat::CTranslate2)
    } else if dir.join("model.safetensors").is_file() {
        Ok(CheckpointFormat::HuggingFace)
    } else {
        Err(Error::Model(format!("{}: neither model.bin (CTranslate2) nor model.safetensors (Hugging Face) found", dir.display())))
    }
}

/// Opens the checkpoint in `dir`.
pub fn open(dir: &Path) -> Result<Box<dyn TensorSource>> {
    Ok(match detect_format(dir)? {
        CheckpointFormat::CTranslate2 => Box::new(ct2::Ct2Checkpoint::open(&dir.join("model.bin"))?),
        CheckpointFormat::HuggingFace => Box::new(hf::HfCheckpoint::open(dir)?),
    })
}

/// Little-endian 16-bit floats widened to f32 with half's slice conversion, which uses the
/// CPU's conversion instructions (F16C) where present, on every core: widening the 20 M
/// token embeddings was the longest step of model load.
macro_rules! widen_16 {
    ($name:ident, $half:ty) => {
        /// Little-endian `bytes` widened into `out` (as many values as both hold).
        pub(crate) fn $name(bytes: &[u8], out: &mut [f32]) {
            use half::slice::HalfFloatSliceExt;
            use rayon::prelude::*;
            const CHUNK: usize = 1 << 16;
            let n = out.len().min(bytes.len() / 2);
            let (bytes, out) = (&bytes[..2 * n], &mut out[..n]);
            // SAFETY: any bit pattern is a valid half; `align_to` only yields the aligned middle.
            let (head, halves, _) = unsafe { bytes.align_to::<$half>() };
            if head.is_empty() && cfg!(target_endian = "little") {
                if n <= CHUNK {
                    halves.convert_to_f32_slice(out);
                } else {
                    out.par_chunks_mut(CHUNK).zip(halves.par_chunks(CHUNK)).for_each(|(o, h)| h.convert_to_f32_slice(o));
                }
            } else {
                // An odd offset in the file: widen pair by pair.
                for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                    *o = <$half>::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
                }
            }
        }
    };
}
widen_16!(f16_to_f32, half::f16);
widen_16!(bf16_to_f32, half::bf16);

/// `bytes` widened by `widen` (one of the above) into a new vector.
pub(crate) fn widened(bytes: &[u8], widen: fn(&[u8], &mut [f32])) -> Vec<f32> {
    let mut out = vec![0.0f32; bytes.len() / 2];
    widen(bytes, &mut out);
    out
}

/// Maps `path` read-only. The map lives as long as the checkpoint reader.
fn map_file(path: &Path) -> Result<memmap2::Mmap> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: model files are immutable once in the cache (written to a temp name, then renamed).
    // Populated: every weight is read at load, and one bulk read-ahead beats a page fault per
    // 4 KiB.
    unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(|e| Error::io(path, e))
}

fn check_shape(name: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::Model(format!("tensor `{name}`: expected shape {expected:?}, found {found:?}")))
    }
}

fn missing(name: &str, file: &Path) -> Error {
    Error::Model(format!("tensor `{name}` missing from {}", file.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values are read in the map at any offset, even an odd one.
    #[test]
    fn f16_rows_are_read_in_place_at_any_offset() {
        let values: Vec<half::f16> = (0..100).map(|i| half::f16::from_f32(i as f32 / 8.0 - 3.0)).collect();
        let path = std::env::temp_dir().join(format!("tingxie-f16rows-{}", std::process::id()));
        for pad in [0usize, 1, 2, 3] {
            let mut bytes = vec![0xAAu8; pad];
            bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
            std::fs::write(&path, &bytes).unwrap();
            let map = Arc::new(map_file(&path).unwrap());
            let rows = F16Rows::mapped(&map, pad, 2 * values.len());
            assert_eq!(rows.values(), values.len());
            assert_eq!(&rows[..], &F16Rows::from(values.clone())[..], "pad {pad}");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
