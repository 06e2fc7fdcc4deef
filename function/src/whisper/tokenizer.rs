//! Whisper's byte-level BPE tokenizer (`tokenizer.json`) plus its special and timestamp tokens.
//! Timestamp tokens are not in `tokenizer.json`; they follow `<|notimestamps|>` up to the end
//! of the model's vocabulary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

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
    /// The bytes each vocabulary token stands for, by id.
    bytes: Vec<Vec<u8>>,
    /// The full BPE tokenizer, built on the first [`WhisperTokenizer::encode`] (a prompt): its
    /// ~50,000 merges take ~100 ms to build, a cold start's worth, and decoding needs none.
    encoder: OnceLock<std::result::Result<tokenizers::Tokenizer, String>>,
    path: PathBuf,
    pub specials: SpecialTokens,
    /// Language codes (`en`, `zh`, ...) with their token ids, in vocabulary order.
    pub languages: Vec<(String, u32)>,
}

/// The parts of `tokenizer.json` decoding needs (the merges are skipped).
#[derive(serde::Deserialize)]
struct TokenizerFile {
    model: VocabOnly,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(serde::Deserialize)]
struct VocabOnly {
    vocab: Vocab,
}

#[derive(serde::Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
}

/// `model.vocab` (token → id), read straight into each id's bytes: no map of 50,000 owned
/// strings to build and drop at every start. Control tokens (`<|...|>`) are kept by name.
#[derive(Default)]
struct Vocab {
    bytes: Vec<Vec<u8>>,
    controls: HashMap<String, u32>,
}

impl Vocab {
    fn insert(&mut self, token: &str, id: u32) {
        let index = id as usize;
        if index >= self.bytes.len() {
            self.bytes.resize(index + 1, Vec::new());
        }
        self.bytes[index] = token_bytes(token);
        if token.starts_with("<|") {
            self.controls.insert(token.to_string(), id);
        }
    }
}

impl<'de> serde::Deserialize<'de> for Vocab {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Vocab;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of token to id")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<Vocab, A::Error> {
                let mut vocab = Vocab::default();
                while let Some((Token(token), id)) = map.next_entry::<Token, u32>()? {
                    vocab.insert(&token, id);
                }
                Ok(vocab)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// A token as written in the file: borrowed from it unless it holds escapes.
struct Token<'a>(std::borrow::Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Token<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Token<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a token")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Token<'de>, E> {
                Ok(Token(v.into()))
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Token<'de>, E> {
                Ok(Token(v.to_string().into()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

impl WhisperTokenizer {
    /// Loads `dir/tokenizer.json` for a model whose vocabulary has `n_vocab` entries.
    pub fn load(dir: &Path, n_vocab: usize) -> Result<Self> {
        Ok(Self::read(dir)?.with_vocab_size(n_vocab))
    }

    /// Sets where the timestamp tokens end: the model's last id (they are not in the file).
    pub fn with_vocab_size(mut self, n_vocab: usize) -> Self {
        self.specials.timestamp_end = n_vocab as u32 - 1;
        self
    }

    /// Reads `dir/tokenizer.json`; timestamps end at the file's last id until
    /// [`with_vocab_size`](Self::with_vocab_size) says where the model's do.
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let text = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let file: TokenizerFile = serde_json::from_slice(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let mut vocab = file.model.vocab;
        for added in &file.added_tokens {
            vocab.insert(&added.content, added.id);
        }
        let id = |name: &str| vocab.controls.get(name).copied().ok_or_else(|| Error::Model(format!("{}: no token {name}", path.display())));
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
            timestamp_end: vocab.bytes.len().saturating_sub(1) as u32,
        };
        // Language tokens sit between <|startoftranscript|> and <|translate|>.
        let mut languages: Vec<(String, u32)> = vocab
            .controls
            .iter()
            .filter(|&(_, &id)| id > specials.sot && id < specials.translate)
            .filter_map(|(token, &id)| Some((token.strip_prefix("<|")?.strip_suffix("|>")?.to_string(), id)))
            .collect();
        languages.sort_by_key(|&(_, id)| id);
        Ok(WhisperTokenizer { bytes: vocab.bytes, encoder: OnceLock::new(), path, specials, languages })
    }

    pub fn is_timestamp(&self, id: u32) -> bool {
        id >= self.specials.timestamp_begin
    }

    /// Text of the text tokens among `ids` (special and timestamp tokens are left out), as the
    /// byte-level decoder of `tokenizer.json` gives it: the tokens' bytes, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32]) -> String {
        String::from_utf8_lossy(&self.text_bytes(ids)).into_owned()
    }

    /// The bytes of the text tokens among `ids`: a token may end inside a UTF-8 character
    /// (CJK characters often take two tokens).
    pub fn text_bytes(&self, ids: &[u32]) -> Vec<u8> {
        let eot = self.specials.eot;
        ids.iter().filter(|&&id| id < eot).filter_map(|&id| self.bytes.get(id as usize)).flatten().copied().collect()
    }

    /// Token ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoder = self
            .encoder
            .get_or_init(|| tokenizers::Tokenizer::from_file(&self.path).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Model(format!("{}: {e}", self.path.display())))?;
        let encoding = encoder.encode(text, false).map_err(|e| Error::InvalidArgument { field: "prompt", reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn language_token(&self, code: &str) -> Option<u32> {
        self.languages.iter().find(|(c, _)| c == code).map(|&(_, id)| id)
    }

    pub fn language_code(&self, token: u32) -> Option<&str> {
        self.languages.iter().find(|&&(_, id)| id == token).map(|(c, _)| c.as_str())
    }
}

/// The bytes a byte-level BPE token stands for. GPT-2 writes each byte as a printable
/// character: bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` as themselves, the other 68 as U+0100
/// onwards in byte order. A token with a character outside that table is taken as its own
/// UTF-8, as the `tokenizers` crate's decoder does.
fn token_bytes(token: &str) -> Vec<u8> {
    const fn printable(b: u8) -> bool {
        matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
    }
    /// The 68 other bytes, in order: U+0100 + i stands for `SHIFTED[i]`.
    const SHIFTED: [u8; 68] = {
        let (mut table, mut n, mut b) = ([0u8; 68], 0, 0usize);
        while b < 256 {
            if !printable(b as u8) {
                table[n] = b as u8;
                n += 1;
            }
            b += 1;
        }
        table
    };
    let byte_of = |c: char| -> Option<u8> {
        let code = c as u32;
        if code < 0x100 && printable(code as u8) {
            return Some(code as u8);
        }
        SHIFTED.get(code.checked_sub(0x100)? as usize).copied()
    };
    token.chars().map(byte_of).collect::<Option<Vec<u8>>>().unwrap_or_else(|| token.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::token_bytes;

    #[test]
    fn byte_level_characters_map_back_to_bytes() {
        assert_eq!(token_bytes("Hello"), b"Hello");
        assert_eq!(token_bytes("\u{120}world"), b" world"); // Ġ: the space
        assert_eq!(token_bytes("\u{10a}"), b"\n"); // Ċ
        assert_eq!(token_bytes("\u{100}"), [0u8]);
        assert_eq!(token_bytes("\u{143}"), [0xADu8]); // the last of the 68
        assert_eq!(token_bytes("\u{c3}\u{a9}"), [0xC3u8, 0xA9]); // é in two byte characters
        assert_eq!(token_bytes("\u{144}x"), "\u{144}x".as_bytes(), "outside the table: its UTF-8");
    }
}
