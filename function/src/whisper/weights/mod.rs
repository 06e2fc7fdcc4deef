//! Checkpoint readers. Both formats are read through a memory map and exposed under one naming
//! scheme (CTranslate2's, with fused projections), so the model builder asks for a tensor once.

mod ct2;
mod hf;
mod names;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::whisper::config::WhisperConfig;

pub use names::{canonical_tensors, hf_source};

/// A tensor in host memory, float32, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Swaps the two axes of a matrix: checkpoints store `[out, in]`, burn's `linear` wants `[in, out]`.
    /// Tiled, so that reads and writes both stay within cache lines (a plain double loop
    /// strides through memory on one side and dominated model load time).
    pub fn transposed(&self) -> HostTensor {
        const TILE: usize = 32;
        let (rows, cols) = (self.shape[0], self.shape[1]);
        let mut data = vec![0.0; self.data.len()];
        for r0 in (0..rows).step_by(TILE) {
            for c0 in (0..cols).step_by(TILE) {
                for r in r0..(r0 + TILE).min(rows) {
                    for c in c0..(c0 + TILE).min(cols) {
                        data[c * rows + r] = self.data[r * cols + c];
                    }
                }
            }
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
}

/// Finds which format `dir` holds (CTranslate2 wins when both are present: it carries the
/// suppression lists faster-whisper uses).
pub fn detect_format(dir: &Path) -> Result<CheckpointFormat> {
    if dir.join("model.bin").is_file() {
        Ok(CheckpointFormat::CTranslate2)
    } else if dir.join("model.safetensors").is_file() {
        Ok(CheckpointFormat::HuggingFace)
    } else {
        Err(Error::Model(format!(
            "{}: neither model.bin (CTranslate2) nor model.safetensors (Hugging Face) found",
            dir.display()
        )))
    }
}

/// Opens the checkpoint in `dir`.
pub fn open(dir: &Path) -> Result<Box<dyn TensorSource>> {
    Ok(match detect_format(dir)? {
        CheckpointFormat::CTranslate2 => Box::new(ct2::Ct2Checkpoint::open(&dir.join("model.bin"))?),
        CheckpointFormat::HuggingFace => Box::new(hf::HfCheckpoint::open(dir)?),
    })
}

/// Maps `path` read-only. The map lives as long as the checkpoint reader.
/// Little-endian 16-bit floats widened to f32 with half's slice conversion, which uses the
/// CPU's conversion instructions (F16C) where present: per-element conversion was a visible
/// part of model load.
macro_rules! widen_16 {
    ($name:ident, $half:ty) => {
        pub(crate) fn $name(bytes: &[u8]) -> Vec<f32> {
            use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
            let bits: Vec<u16> = bytes.chunks_exact(2).map(|b| u16::from_le_bytes([b[0], b[1]])).collect();
            let halves: &[$half] = bits.reinterpret_cast();
            let mut out = vec![0.0f32; halves.len()];
            halves.convert_to_f32_slice(&mut out);
            out
        }
    };
}
widen_16!(f16_to_f32, half::f16);
widen_16!(bf16_to_f32, half::bf16);

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
        Err(Error::Model(format!(
            "tensor `{name}`: expected shape {expected:?}, found {found:?}"
        )))
    }
}

fn missing(name: &str, file: &PathBuf) -> Error {
    Error::Model(format!("tensor `{name}` missing from {}", file.display()))
}
