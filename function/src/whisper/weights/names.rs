//! The one table mapping canonical tensor names (CTranslate2's) to Hugging Face names.
//! CTranslate2 fuses q/k/v (self-attention) and k/v (cross-attention); a Hugging Face checkpoint
//! is concatenated into that layout at load time, with zeros where Whisper has no key bias.

/// One piece of a canonical tensor in a Hugging Face checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Tensor(String),
    /// A run of zeros as long as one row block (the missing key bias).
    Zeros,
}

/// Per-layer names: canonical suffix -> Hugging Face suffixes concatenated on axis 0.
const LAYER_TABLE: &[(&str, &[&str])] = &[
    ("self_attention/layer_norm/gamma", &["self_attn_layer_norm.weight"]),
    ("self_attention/layer_norm/beta", &["self_attn_layer_norm.bias"]),
    ("self_attention/linear_0/weight", &["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"]),
    ("self_attention/linear_0/bias", &["self_attn.q_proj.bias", "0", "self_attn.v_proj.bias"]),
    ("self_attention/linear_1/weight", &["self_attn.out_proj.weight"]),
    ("self_attention/linear_1/bias", &["self_attn.out_proj.bias"]),
    ("attention/layer_norm/gamma", &["encoder_attn_layer_norm.weight"]),
    ("attention/layer_norm/beta", &["encoder_attn_layer_norm.bias"]),
    ("attention/linear_0/weight", &["encoder_attn.q_proj.weight"]),
    ("attention/linear_0/bias", &["encoder_attn.q_proj.bias"]),
    ("attention/linear_1/weight", &["encoder_attn.k_proj.weight", "encoder_attn.v_proj.weight"]),
    ("attention/linear_1/bias", &["0", "encoder_attn.v_proj.bias"]),
    ("attention/linear_2/weight", &["encoder_attn.out_proj.weight"]),
    ("attention/linear_2/bias", &["encoder_attn.out_proj.bias"]),
    ("ffn/layer_norm/gamma", &["final_layer_norm.weight"]),
    ("ffn/layer_norm/beta", &["final_layer_norm.bias"]),
    ("ffn/linear_0/weight", &["fc1.weight"]),
    ("ffn/linear_0/bias", &["fc1.bias"]),
    ("ffn/linear_1/weight", &["fc2.weight"]),
    ("ffn/linear_1/bias", &["fc2.bias"]),
];

/// Whole-model names: canonical -> Hugging Face.
const GLOBAL_TABLE: &[(&str, &str)] = &[
    ("encoder/conv1/weight", "model.encoder.conv1.weight"),
    ("encoder/conv1/bias", "model.encoder.conv1.bias"),
    ("encoder/conv2/weight", "model.encoder.conv2.weight"),
    ("encoder/conv2/bias", "model.encoder.conv2.bias"),
    ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    ("encoder/layer_norm/gamma", "model.encoder.layer_norm.weight"),
    ("encoder/layer_norm/beta", "model.encoder.layer_norm.bias"),
    ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
    ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    ("decoder/layer_norm/gamma", "model.decoder.layer_norm.weight"),
    ("decoder/layer_norm/beta", "model.decoder.layer_norm.bias"),
];

/// Every tensor a Whisper model of shape `c` loads, with its shape (canonical names).
pub fn canonical_tensors(c: &crate::whisper::WhisperConfig) -> Vec<(String, Vec<usize>)> {
    let d = c.n_audio_state;
    let mut out: Vec<(String, Vec<usize>)> = vec![
        ("encoder/conv1/weight".into(), vec![d, c.n_mels, 3]),
        ("encoder/conv1/bias".into(), vec![d]),
        ("encoder/conv2/weight".into(), vec![d, d, 3]),
        ("encoder/conv2/bias".into(), vec![d]),
        ("encoder/position_encodings/encodings".into(), vec![c.n_audio_ctx, d]),
        ("encoder/layer_norm/gamma".into(), vec![d]),
        ("encoder/layer_norm/beta".into(), vec![d]),
        ("decoder/embeddings/weight".into(), vec![c.n_vocab, d]),
        ("decoder/position_encodings/encodings".into(), vec![c.n_text_ctx, d]),
        ("decoder/layer_norm/gamma".into(), vec![d]),
        ("decoder/layer_norm/beta".into(), vec![d]),
    ];
    let shape = |suffix: &str| -> Vec<usize> {
        let rows = match suffix.split('/').nth(1) {
            Some("linear_0") if suffix.starts_with("self_attention") => 3 * d,
            Some("linear_1") if suffix.starts_with("attention") => 2 * d,
            Some("linear_0") if suffix.starts_with("ffn") => 4 * d,
            _ => d,
        };
        let cols = if suffix == "ffn/linear_1/weight" { 4 * d } else { d };
        if suffix.ends_with("weight") {
            vec![rows, cols]
        } else {
            vec![rows]
        }
    };
    for (stack, layers) in [("encoder", c.n_audio_layer), ("decoder", c.n_text_layer)] {
        for i in 0..layers {
            for (suffix, _) in LAYER_TABLE {
                if stack == "encoder" && suffix.starts_with("attention/") {
                    continue;
                }
                out.push((format!("{stack}/layer_{i}/{suffix}"), shape(suffix)));
            }
        }
    }
    out
}

/// The Hugging Face parts that make up canonical tensor `name`, or None for an unknown name.
pub fn hf_source(name: &str) -> Option<Vec<Part>> {
    if let Some((_, hf)) = GLOBAL_TABLE.iter().find(|(c, _)| *c == name) {
        return Some(vec![Part::Tensor(hf.to_string())]);
    }
    let (stack, rest) = name.split_once("/layer_")?;
    let (index, suffix) = rest.split_once('/')?;
    let index: usize = index.parse().ok()?;
    let (_, parts) = LAYER_TABLE.iter().find(|(c, _)| *c == suffix)?;
    let prefix = format!("model.{stack}.layers.{index}.");
    Some(
        parts
            .iter()
            .map(|p| match *p {
                "0" => Part::Zeros,
                p => Part::Tensor(format!("{prefix}{p}")),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_fused_self_attention_bias_with_zero_key_slice() {
        let parts = hf_source("decoder/layer_3/self_attention/linear_0/bias").unwrap();
        assert_eq!(
            parts,
            vec![
                Part::Tensor("model.decoder.layers.3.self_attn.q_proj.bias".into()),
                Part::Zeros,
                Part::Tensor("model.decoder.layers.3.self_attn.v_proj.bias".into()),
            ]
        );
    }

    #[test]
    fn maps_globals_and_rejects_unknown_names() {
        assert_eq!(hf_source("encoder/conv2/bias").unwrap(), vec![Part::Tensor("model.encoder.conv2.bias".into())]);
        assert!(hf_source("encoder/layer_x/ffn/linear_0/weight").is_none());
        assert!(hf_source("decoder/layer_0/nope").is_none());
    }
}
