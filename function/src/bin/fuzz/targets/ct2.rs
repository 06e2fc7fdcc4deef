//! `ct2`: the CTranslate2 `model.bin` reader, on small synthetic checkpoints in the format it
//! reads (binary versions 6, 3 and 1; float32, float16, bfloat16 and int8/int16 with per-row
//! scales; scalars; an alias), mutated, then every tensor loaded as the model loader would.

use std::path::Path;

use tingxie::whisper::weights::canonical_tensors;

use super::checkpoint::{load_all, tiny_config, Scratch};
use crate::fuzz::input::{section, Input, Kind};
use crate::fuzz::Target;

const F32: u8 = 0;
const I8: u8 = 1;
const I16: u8 = 2;
const I32: u8 = 3;
const F16: u8 = 4;
const BF16: u8 = 5;

pub struct Ct2 {
    scratch: Scratch,
}

impl Default for Ct2 {
    fn default() -> Ct2 {
        Ct2 { scratch: Scratch::new("ct2") }
    }
}

impl Target for Ct2 {
    fn name(&self) -> &'static str {
        "ct2"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Binary]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        [6, 3, 1].into_iter().map(|version| vec![model_bin(version)]).collect()
    }

    fn run(&mut self, input: &Input) -> String {
        self.scratch.write("model.bin", section(input, 0));
        load_all(&self.scratch.0)
    }
}

/// A CTranslate2 checkpoint of [`tiny_config`]; versions below 4 store item sizes instead of
/// dtypes (so float32 and integers only), version 1 has no spec name and no aliases.
fn model_bin(version: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_le_bytes());
    if version >= 2 {
        string(&mut out, "WhisperSpec");
        out.extend_from_slice(&3u32.to_le_bytes());
    }
    let mut variables: Vec<(String, Vec<usize>, u8, Vec<u8>)> = Vec::new();
    for (i, (name, shape)) in canonical_tensors(&tiny_config()).into_iter().enumerate() {
        let n: usize = shape.iter().product();
        let values = (0..n).map(|k| ((i * 7 + k) % 13) as f32 / 13.0 - 0.5);
        let quantized = name.ends_with("ffn/linear_0/weight");
        let dtype = match (version >= 4, i % 4) {
            _ if quantized => {
                if i % 2 == 0 {
                    I8
                } else {
                    I16
                }
            }
            (false, _) => F32,
            (true, 1) => F16,
            (true, 2) => BF16,
            _ => F32,
        };
        let bytes: Vec<u8> = match dtype {
            F16 => values.flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect(),
            BF16 => values.flat_map(|v| half::bf16::from_f32(v).to_le_bytes()).collect(),
            I8 => values.map(|v| (v * 200.0) as i8 as u8).collect(),
            I16 => values.flat_map(|v| ((v * 20_000.0) as i16).to_le_bytes()).collect(),
            _ => values.flat_map(f32::to_le_bytes).collect(),
        };
        if matches!(dtype, I8 | I16) {
            let rows = shape[0];
            let scales = (0..rows).flat_map(|r| (100.0 + r as f32).to_le_bytes()).collect();
            variables.push((format!("{name}_scale"), vec![rows], F32, scales));
        }
        variables.push((name, shape, dtype, bytes));
    }
    let scalar = |name: &str, dtype: u8, bytes: Vec<u8>| (name.to_string(), vec![], dtype, bytes);
    let heads = tiny_config().n_audio_head as i16;
    variables.push(scalar("encoder/num_heads", I16, heads.to_le_bytes().to_vec()));
    variables.push(if version >= 4 {
        scalar("decoder/num_heads", I32, i32::from(heads).to_le_bytes().to_vec())
    } else {
        scalar("decoder/num_heads", I16, heads.to_le_bytes().to_vec())
    });
    variables.push(scalar("decoder/activation", I8, vec![3]));
    out.extend_from_slice(&(variables.len() as u32).to_le_bytes());
    for (name, shape, dtype, bytes) in &variables {
        string(&mut out, name);
        out.push(shape.len() as u8);
        for d in shape {
            out.extend_from_slice(&(*d as u32).to_le_bytes());
        }
        if version >= 4 {
            out.push(*dtype);
            out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        } else {
            let item = match *dtype {
                I8 => 1usize,
                I16 => 2,
                _ => 4,
            };
            out.push(item as u8);
            out.extend_from_slice(&((bytes.len() / item) as u32).to_le_bytes());
        }
        out.extend_from_slice(bytes);
    }
    if version >= 3 {
        out.extend_from_slice(&1u32.to_le_bytes());
        string(&mut out, "decoder/projection/weight");
        string(&mut out, "decoder/embeddings/weight");
    }
    out
}

/// `u16` length (with the NUL) + bytes + NUL.
fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16 + 1).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}
