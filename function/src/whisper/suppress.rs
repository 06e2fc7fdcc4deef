//! Token ids never generated (non-speech symbols, control tokens) and those not generated
//! first. Read from the checkpoint: CTranslate2's `config.json` (`suppress_ids`,
//! `suppress_ids_begin`, what faster-whisper uses) or Hugging Face's `generation_config.json`.

use std::path::Path;

use serde_json::Value;

use super::tokenizer::WhisperTokenizer;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuppressLists {
    pub always: Vec<u32>,
    pub at_start: Vec<u32>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    if !path.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map(Some).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
}

fn ids(json: &Value, key: &str) -> Option<Vec<u32>> {
    json.get(key)?.as_array()?.iter().map(|v| v.as_u64().map(|x| x as u32)).collect()
}

impl SuppressLists {
    pub fn load(dir: &Path, tokenizer: &WhisperTokenizer) -> Result<Self> {
        if let Some(json) = read_json(&dir.join("config.json"))? {
            if let (Some(always), Some(at_start)) = (ids(&json, "suppress_ids"), ids(&json, "suppress_ids_begin")) {
                return Ok(SuppressLists { always, at_start });
            }
        }
        let path = dir.join("generation_config.json");
        let json = read_json(&path)?.ok_or_else(|| {
            Error::Model(format!("{}: no suppress lists (config.json suppress_ids or generation_config.json)", dir.display()))
        })?;
        let mut always =
            ids(&json, "suppress_tokens").ok_or_else(|| Error::Model(format!("{}: missing `suppress_tokens`", path.display())))?;
        // CTranslate2 adds the control tokens to the list; do the same for identical decoding.
        let s = &tokenizer.specials;
        for id in [s.sot, s.translate, s.transcribe, s.sot_prev - 1, s.sot_prev, s.no_speech] {
            if !always.contains(&id) {
                always.push(id);
            }
        }
        let at_start = ids(&json, "begin_suppress_tokens").unwrap_or_else(|| vec![220, s.eot]);
        Ok(SuppressLists { always, at_start })
    }
}
