//! What the `ct2` and `safetensors` targets share: a tiny model shape, a scratch folder the
//! checkpoint files are written to (the readers map files), and the walk the model loader does.

use std::path::{Path, PathBuf};

use tingxie::whisper::weights::{canonical_tensors, open};
use tingxie::whisper::WhisperConfig;

use crate::fuzz::error_label;

/// A Whisper small enough that its checkpoint is a few kilobytes.
pub fn tiny_config() -> WhisperConfig {
    WhisperConfig {
        n_mels: 2,
        n_audio_ctx: 3,
        n_audio_state: 4,
        n_audio_head: 2,
        n_audio_layer: 1,
        n_vocab: 5,
        n_text_ctx: 3,
        n_text_state: 4,
        n_text_head: 2,
        n_text_layer: 2,
    }
}

/// A folder of this process in memory-backed storage where there is one: written per input.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(target: &str) -> Scratch {
        let base = Path::new("/dev/shm");
        let base = if base.is_dir() { base.to_path_buf() } else { std::env::temp_dir() };
        let dir = base.join(format!("tingxie-fuzz-{}-{target}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the scratch folder");
        Scratch(dir)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.0.join(name), bytes).expect("write a scratch file");
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens the checkpoint in `dir` and reads every tensor the loader would, in its order and
/// with its shapes (from the checkpoint's own config), stopping at the first error as the
/// loader does; 2-D tensors are transposed as the generic backend does.
pub fn load_all(dir: &Path) -> String {
    let source = match open(dir) {
        Ok(s) => s,
        Err(e) => return error_label("open", &e),
    };
    let config = source.config().clone();
    // One layer of each stack names every per-layer tensor; the layers differ only in index.
    let one_layer =
        WhisperConfig { n_audio_layer: config.n_audio_layer.min(1), n_text_layer: config.n_text_layer.min(1), ..config.clone() };
    let plan = canonical_tensors(&one_layer);
    for (stack, layers) in [("encoder", config.n_audio_layer), ("decoder", config.n_text_layer)] {
        let prefix = format!("{stack}/layer_0/");
        for i in 0..layers {
            for (name, shape) in plan.iter().filter(|(n, _)| n.starts_with(&prefix)) {
                let name = name.replacen("layer_0", &format!("layer_{i}"), 1);
                if let Err(e) = read_tensor(source.as_ref(), &name, shape) {
                    return error_label("tensor", &e);
                }
            }
        }
    }
    for (name, shape) in plan.iter().filter(|(n, _)| !n.contains("/layer_")) {
        if let Err(e) = read_tensor(source.as_ref(), name, shape) {
            return error_label("tensor", &e);
        }
    }
    "ok".into()
}

fn read_tensor(source: &dyn tingxie::whisper::weights::TensorSource, name: &str, shape: &[usize]) -> tingxie::Result<()> {
    if let Some(rows) = source.tensor_f16(name, shape)? {
        assert!(rows.len() % 2 == 0, "property: f16 rows of `{name}` have an odd byte count");
    }
    let tensor = source.tensor(name, shape)?;
    // The loader hands data and shape to burn, which refuses a mismatch with a panic.
    let elements = tensor.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if elements != Some(tensor.data.len()) {
        panic!("property: tensor `{name}` has {} values for shape {:?}", tensor.data.len(), tensor.shape);
    }
    if tensor.shape.len() == 2 {
        tensor.transposed();
    }
    Ok(())
}
