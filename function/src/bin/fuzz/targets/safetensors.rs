//! `safetensors`: the Hugging Face reader, `config.json` + `model.safetensors`, on a small
//! synthetic checkpoint (float32, float16 and bfloat16 tensors under Hugging Face names, fused
//! into CTranslate2's layout on load). The header JSON, the config and the data are mutated
//! apart; the 8-byte header length is the true one or, now and then, a lie.

use std::path::Path;

use serde_json::{json, Map, Value};
use tingxie::whisper::weights::{canonical_tensors, hf_source, Part};

use super::checkpoint::{load_all, tiny_config, Scratch};
use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::Target;

pub struct Safetensors {
    scratch: Scratch,
}

impl Default for Safetensors {
    fn default() -> Safetensors {
        Safetensors { scratch: Scratch::new("safetensors") }
    }
}

impl Target for Safetensors {
    fn name(&self) -> &'static str {
        "safetensors"
    }

    /// Control (header length mode), config.json, safetensors header, tensor data.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Json, Kind::Json, Kind::Binary]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        let (header, data) = checkpoint();
        vec![vec![vec![0, 0], config_json(), header, data]]
    }

    fn run(&mut self, input: &Input) -> String {
        let (header, data) = (section(input, 2), section(input, 3));
        let true_len = header.len() as u64;
        let len = match control(input, 0) {
            0..=223 => true_len,
            n => match n % 4 {
                0 => true_len.wrapping_add(control(input, 1) as i8 as u64),
                1 => u64::MAX,
                2 => 0,
                _ => true_len << 32,
            },
        };
        let mut file = Vec::with_capacity(8 + header.len() + data.len());
        file.extend_from_slice(&len.to_le_bytes());
        file.extend_from_slice(header);
        file.extend_from_slice(data);
        self.scratch.write("config.json", section(input, 1));
        self.scratch.write("model.safetensors", &file);
        load_all(&self.scratch.0)
    }
}

fn config_json() -> Vec<u8> {
    let c = tiny_config();
    let config = json!({
        "architectures": ["WhisperForConditionalGeneration"],
        "model_type": "whisper",
        "num_mel_bins": c.n_mels,
        "max_source_positions": c.n_audio_ctx,
        "d_model": c.n_audio_state,
        "encoder_attention_heads": c.n_audio_head,
        "encoder_layers": c.n_audio_layer,
        "vocab_size": c.n_vocab,
        "max_target_positions": c.n_text_ctx,
        "decoder_attention_heads": c.n_text_head,
        "decoder_layers": c.n_text_layer,
        "torch_dtype": "float32"
    });
    serde_json::to_vec(&config).expect("serialises")
}

/// The header JSON and the data of a checkpoint of [`tiny_config`]: every canonical tensor's
/// Hugging Face parts, in three dtypes by turns.
fn checkpoint() -> (Vec<u8>, Vec<u8>) {
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut data = Vec::new();
    for (i, (name, shape)) in canonical_tensors(&tiny_config()).into_iter().enumerate() {
        let parts = hf_source(&name).expect("every canonical tensor has Hugging Face parts");
        let mut part_shape = shape.clone();
        part_shape[0] /= parts.len();
        for part in parts {
            let Part::Tensor(hf_name) = part else { continue }; // a run of zeros: not stored
            let n: usize = part_shape.iter().product();
            let values = (0..n).map(|k| ((i * 5 + k) % 11) as f32 / 11.0 - 0.5);
            let (dtype, bytes): (&str, Vec<u8>) = match i % 3 {
                0 => ("F32", values.flat_map(f32::to_le_bytes).collect()),
                1 => ("F16", values.flat_map(|v| half::f16::from_f32(v).to_le_bytes()).collect()),
                _ => ("BF16", values.flat_map(|v| half::bf16::from_f32(v).to_le_bytes()).collect()),
            };
            let offsets = [data.len(), data.len() + bytes.len()];
            header.insert(hf_name, json!({"dtype": dtype, "shape": part_shape, "data_offsets": offsets}));
            data.extend_from_slice(&bytes);
        }
    }
    (serde_json::to_vec(&Value::Object(header)).expect("serialises"), data)
}
