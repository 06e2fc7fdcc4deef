//! Hugging Face `model.safetensors` + `config.json` reader (f32, f16 or bf16 tensors).

use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use safetensors::{Dtype, SafeTensors};

use super::names::{hf_source, Part};
use super::{check_shape, map_file, missing, HostTensor, TensorSource};
use crate::error::{Error, Result};
use crate::whisper::config::WhisperConfig;

pub struct HfCheckpoint {
    path: PathBuf,
    map: memmap2::Mmap,
    /// The header, parsed once: tensor names, dtypes, shapes and byte ranges.
    metadata: Metadata,
    /// Where tensor data starts in the file (after the 8-byte length and the header).
    data_start: usize,
    config: WhisperConfig,
}

impl HfCheckpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|e| Error::io(&config_path, e))?;
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", config_path.display())))?;
        let config = WhisperConfig::from_hf_json(&json)?;
        config.validate()?;
        let path = dir.join("model.safetensors");
        let map = map_file(&path)?;
        let (header_len, metadata) = SafeTensors::read_metadata(&map).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        Ok(HfCheckpoint { path, map, metadata, data_start: 8 + header_len, config })
    }

    fn read(&self, name: &str) -> Result<HostTensor> {
        let info = self.metadata.info(name).ok_or_else(|| missing(name, &self.path))?;
        let (begin, end) = info.data_offsets;
        let bytes = self
            .map
            .get(self.data_start + begin..self.data_start + end)
            .ok_or_else(|| Error::Model(format!("tensor `{name}`: data beyond the end of {}", self.path.display())))?;
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            Dtype::F16 => super::widened(bytes, super::f16_to_f32),
            Dtype::BF16 => super::widened(bytes, super::bf16_to_f32),
            other => return Err(Error::Model(format!("tensor `{name}`: unsupported dtype {other:?}"))),
        };
        Ok(HostTensor { shape: info.shape.clone(), data })
    }
}

impl TensorSource for HfCheckpoint {
    fn config(&self) -> &WhisperConfig {
        &self.config
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let parts = hf_source(name).ok_or_else(|| Error::Model(format!("no Hugging Face name for tensor `{name}`")))?;
        // Fused tensors are the parts stacked on axis 0; a Zeros part is one block of rows.
        // The stored parts are read and checked first: `shape` comes from config.json, and
        // only a stored tensor of that shape bounds what may be allocated for it.
        let block_rows = shape.first().copied().unwrap_or(0) / parts.len().max(1);
        let mut expected = shape.to_vec();
        if let Some(rows) = expected.first_mut() {
            *rows = block_rows;
        }
        let mut stored = Vec::with_capacity(parts.len());
        for part in &parts {
            if let Part::Tensor(hf_name) = part {
                let t = self.read(hf_name)?;
                check_shape(hf_name, &expected, &t.shape)?;
                stored.push(t.data);
            }
        }
        let block_len = stored.first().map_or(0, Vec::len);
        let mut stored = stored.into_iter();
        let mut data = Vec::with_capacity(block_len * parts.len());
        for part in &parts {
            match part {
                Part::Zeros => data.extend(std::iter::repeat_n(0.0, block_len)),
                Part::Tensor(_) => data.extend(stored.next().expect("one stored block per tensor part")),
            }
        }
        let tensor = HostTensor { shape: shape.to_vec(), data };
        check_shape(name, shape, &tensor.shape)?;
        Ok(tensor)
    }
}
