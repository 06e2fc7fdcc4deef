//! CTranslate2 `model.bin` reader (binary versions 1-6). Layout, little endian:
//! `u32 version`, [`str spec`, `u32 revision`], `u32 n`, n x (`str name`, `u8 rank`, `u32 dims[rank]`,
//! `u8 dtype`, `u32 bytes`, data), [`u32 n_alias`, n_alias x (`str alias`, `str target`)];
//! `str` = `u16 length incl. NUL` + bytes. Weights may be f32, f16, bf16 or int8/int16 with a
//! per-row `weight_scale`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{check_shape, map_file, missing, F16Rows, HostTensor, TensorSource};
use crate::error::{Error, Result};
use crate::whisper::config::WhisperConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DType {
    F32,
    I8,
    I16,
    I32,
    F16,
    BF16,
}

impl DType {
    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => DType::F32,
            1 => DType::I8,
            2 => DType::I16,
            3 => DType::I32,
            4 => DType::F16,
            5 => DType::BF16,
            _ => return None,
        })
    }

    fn size(self) -> usize {
        match self {
            DType::I8 => 1,
            DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::F32 | DType::I32 => 4,
        }
    }
}

#[derive(Debug, Clone)]
struct Variable {
    shape: Vec<usize>,
    dtype: DType,
    offset: usize,
    len: usize,
}

pub struct Ct2Checkpoint {
    path: PathBuf,
    map: Arc<memmap2::Mmap>,
    variables: HashMap<String, Variable>,
    config: WhisperConfig,
}

/// Bounds-checked reader over the mapped bytes: a truncated file is an error, never a panic.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| Error::Model(format!("model.bin truncated at byte {}", self.pos)))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn string(&mut self) -> Result<String> {
        let len = self.u16()? as usize;
        let raw = self.take(len)?;
        let raw = raw.strip_suffix(&[0]).unwrap_or(raw);
        String::from_utf8(raw.to_vec()).map_err(|_| Error::Model("model.bin: name is not UTF-8".into()))
    }
}

impl Ct2Checkpoint {
    pub fn open(path: &Path) -> Result<Self> {
        let map = Arc::new(map_file(path)?);
        let variables = parse(&map)?;
        let mut checkpoint = Ct2Checkpoint { path: path.to_path_buf(), map, variables, config: placeholder_config() };
        checkpoint.config = checkpoint.infer_config()?;
        Ok(checkpoint)
    }

    fn shape_of(&self, name: &str) -> Result<&[usize]> {
        self.variables.get(name).map(|v| v.shape.as_slice()).ok_or_else(|| missing(name, &self.path))
    }

    fn scalar(&self, name: &str) -> Result<i64> {
        let var = self.variables.get(name).ok_or_else(|| missing(name, &self.path))?;
        let bytes = &self.map[var.offset..var.offset + var.len];
        Ok(match var.dtype {
            DType::I8 => bytes[0] as i8 as i64,
            DType::I16 => i16::from_le_bytes([bytes[0], bytes[1]]) as i64,
            DType::I32 => i32::from_le_bytes(bytes[..4].try_into().unwrap()) as i64,
            other => return Err(Error::Model(format!("`{name}`: expected an integer, found {other:?}"))),
        })
    }

    fn count_layers(&self, stack: &str) -> usize {
        (0..)
            .take_while(|i| {
                let name = format!("{stack}/layer_{i}/ffn/linear_0/weight");
                self.variables.contains_key(&name)
            })
            .count()
    }

    fn infer_config(&self) -> Result<WhisperConfig> {
        let conv1 = self.shape_of("encoder/conv1/weight")?.to_vec();
        let audio_pos = self.shape_of("encoder/position_encodings/encodings")?.to_vec();
        let embeddings = self.shape_of("decoder/embeddings/weight")?.to_vec();
        let text_pos = self.shape_of("decoder/position_encodings/encodings")?.to_vec();
        if conv1.len() != 3 || audio_pos.len() != 2 || embeddings.len() != 2 || text_pos.len() != 2 {
            return Err(Error::Model("model.bin: unexpected ranks of the embedding tensors".into()));
        }
        // Whisper uses exact GELU (code 3 in CTranslate2's ActivationType) and pre-norm blocks.
        if let Ok(activation) = self.scalar("decoder/activation") {
            if activation != 3 {
                return Err(Error::Model(format!("model.bin: activation {activation} is not GELU")));
            }
        }
        let config = WhisperConfig {
            n_mels: conv1[1],
            n_audio_ctx: audio_pos[0],
            n_audio_state: conv1[0],
            n_audio_head: self.scalar("encoder/num_heads")? as usize,
            n_audio_layer: self.count_layers("encoder"),
            n_vocab: embeddings[0],
            n_text_ctx: text_pos[0],
            n_text_state: embeddings[1],
            n_text_head: self.scalar("decoder/num_heads")? as usize,
            n_text_layer: self.count_layers("decoder"),
        };
        config.validate()?;
        Ok(config)
    }
}

fn placeholder_config() -> WhisperConfig {
    WhisperConfig {
        n_mels: 0,
        n_audio_ctx: 0,
        n_audio_state: 0,
        n_audio_head: 0,
        n_audio_layer: 0,
        n_vocab: 0,
        n_text_ctx: 0,
        n_text_state: 0,
        n_text_head: 0,
        n_text_layer: 0,
    }
}

fn parse(bytes: &[u8]) -> Result<HashMap<String, Variable>> {
    let mut cur = Cursor { bytes, pos: 0 };
    let version = cur.u32()?;
    if !(1..=6).contains(&version) {
        return Err(Error::Model(format!("model.bin: unsupported binary version {version}")));
    }
    if version >= 2 {
        let spec = cur.string()?;
        let _revision = cur.u32()?;
        if !spec.is_empty() && spec != "WhisperSpec" {
            return Err(Error::Model(format!("model.bin holds a {spec}, not a Whisper model")));
        }
    }
    let count = cur.u32()?;
    let mut variables = HashMap::new();
    for _ in 0..count {
        let name = cur.string()?;
        let rank = cur.u8()? as usize;
        let shape = (0..rank).map(|_| cur.u32().map(|d| d as usize)).collect::<Result<Vec<_>>>()?;
        let (dtype, len) = if version >= 4 {
            let code = cur.u8()?;
            let dtype = DType::from_code(code).ok_or_else(|| Error::Model(format!("`{name}`: unknown dtype code {code}")))?;
            (dtype, cur.u32()? as usize)
        } else {
            let item = cur.u8()? as usize;
            let n = cur.u32()? as usize;
            let dtype = match item {
                4 => DType::F32,
                2 => DType::I16,
                1 => DType::I8,
                _ => return Err(Error::Model(format!("`{name}`: unknown item size {item}"))),
            };
            (dtype, n * item)
        };
        let elements: usize = shape.iter().product::<usize>().max(1);
        if elements * dtype.size() != len {
            return Err(Error::Model(format!("`{name}`: {len} bytes do not hold {shape:?} of {dtype:?}")));
        }
        let offset = cur.pos;
        cur.take(len)?;
        variables.insert(name, Variable { shape, dtype, offset, len });
    }
    if version >= 3 {
        let aliases = cur.u32()?;
        for _ in 0..aliases {
            let alias = cur.string()?;
            let target = cur.string()?;
            let var =
                variables.get(&target).cloned().ok_or_else(|| Error::Model(format!("alias `{alias}` points to missing `{target}`")))?;
            variables.insert(alias, var);
        }
    }
    Ok(variables)
}

impl TensorSource for Ct2Checkpoint {
    fn config(&self) -> &WhisperConfig {
        &self.config
    }

    fn tensor(&self, name: &str, shape: &[usize]) -> Result<HostTensor> {
        let (var, bytes) = self.stored(name, shape)?;
        let data: Vec<f32> = match var.dtype {
            DType::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            DType::F16 => super::widened(bytes, super::f16_to_f32),
            DType::BF16 => super::widened(bytes, super::bf16_to_f32),
            DType::I8 | DType::I16 => self.dequantize(name, var, bytes)?,
            DType::I32 => return Err(Error::Model(format!("`{name}`: int32 is not a weight type"))),
        };
        Ok(HostTensor { shape: var.shape.clone(), data })
    }

    fn tensor_f16(&self, name: &str, shape: &[usize]) -> Result<Option<F16Rows>> {
        let (var, _) = self.stored(name, shape)?;
        if var.dtype != DType::F16 || cfg!(target_endian = "big") {
            return Ok(None);
        }
        Ok(Some(F16Rows::mapped(&self.map, var.offset, var.len)))
    }
}

impl Ct2Checkpoint {
    /// The variable `name`, checked against `shape`, and its bytes in the file.
    fn stored(&self, name: &str, shape: &[usize]) -> Result<(&Variable, &[u8])> {
        let var = self.variables.get(name).ok_or_else(|| missing(name, &self.path))?;
        check_shape(name, shape, &var.shape)?;
        Ok((var, &self.map[var.offset..var.offset + var.len]))
    }

    /// Quantized weights carry one scale per output row: value = q / scale.
    fn dequantize(&self, name: &str, var: &Variable, bytes: &[u8]) -> Result<Vec<f32>> {
        let scale_name = format!("{}_scale", name);
        let rows = var.shape.first().copied().unwrap_or(1);
        let scales = self.tensor(&scale_name, &[rows])?.data;
        let cols = var.shape.iter().skip(1).product::<usize>().max(1);
        let values: Vec<f32> = match var.dtype {
            DType::I8 => bytes.iter().map(|&b| b as i8 as f32).collect(),
            _ => bytes.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32).collect(),
        };
        Ok(values.iter().enumerate().map(|(i, q)| q / scales[i / cols]).collect())
    }
}
