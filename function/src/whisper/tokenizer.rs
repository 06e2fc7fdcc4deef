//! Whisper's byte-level BPE tokenizer (`tokenizer.json`) plus its special and timestamp tokens.
//! Timestamp tokens are not in `tokenizer.json`; they follow `<|notimestamps|>` up to the end
//! of the model's vocabulary.

use std::path::Path;

use crate::error::{Error, Result};

/// Seconds per timestamp token.
pub const TIME_PRECISION: f64 = 0.02;

/// Ids of the control tokens, looked up by name so every checkpoint family works.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    pub eot: u32,
    pub sot: u32,
    pub translate: u32,
    pub transcribe: u32,
    pub sot_prev: u32,
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; timestamps run from here to the last id of the vocabulary in 0.02 s steps.
    pub timestamp_begin: u32,
    pub timestamp_end: u32,
}

impl SpecialTokens {
    /// A tiny vocabulary for unit tests: text ids 0-9, eot 10, controls 11-16, timestamps 17..=end.
    #[cfg(test)]
    pub fn for_tests(timestamp_end: u32) -> Self {
        SpecialTokens {
            eot: 10,
            sot: 11,
            translate: 12,
            transcribe: 13,
            sot_prev: 14,
            no_speech: 15,
            no_timestamps: 16,
            timestamp_begin: 17,
            timestamp_end,
        }
    }
}

pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    pub specials: SpecialTokens,
    /// Language codes (`en`, `zh`, ...) with their token ids, in vocabulary order.
    pub languages: Vec<(String, u32)>,
}

impl WhisperTokenizer {
    /// Loads `dir/tokenizer.json` for a model whose vocabulary has `n_vocab` entries.
    pub fn load(dir: &Path, n_vocab: usize) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let id = |name: &str| {
            inner
                .token_to_id(name)
                .ok_or_else(|| Error::Model(format!("{}: no token {name}", path.display())))
        };
        let no_timestamps = id("<|notimestamps|>")?;
        let no_speech = id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?;
        let specials = SpecialTokens {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            translate: id("<|translate|>")?,
            transcribe: id("<|transcribe|>")?,
            sot_prev: id("<|startofprev|>")?,
            no_speech,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            timestamp_end: n_vocab as u32 - 1,
        };
        // Language tokens sit between <|startoftranscript|> and <|translate|>.
        let languages = (specials.sot + 1..specials.translate)
            .filter_map(|id| {
                let token = inner.id_to_token(id)?;
                let code = token.strip_prefix("<|")?.strip_suffix("|>")?;
                Some((code.to_string(), id))
            })
            .collect();
        Ok(WhisperTokenizer { inner, specials, languages })
    }

    pub fn is_timestamp(&self, id: u32) -> bool {
        id >= self.specials.timestamp_begin
    }

    /// Text of the text tokens among `ids` (special and timestamp tokens are left out).
    pub fn decode(&self, ids: &[u32]) -> String {
        let text: Vec<u32> = ids.iter().copied().filter(|&id| id < self.specials.eot).collect();
        self.inner.decode(&text, false).unwrap_or_default()
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::InvalidArgument { field: "prompt", reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages.iter().find(|(c, _)| c == code).map(|&(_, id)| id)
    }

    pub fn language_code(&self, token: u32) -> Option<&str> {
        self.languages.iter().find(|&&(_, id)| id == token).map(|(c, _)| c.as_str())
    }
}
