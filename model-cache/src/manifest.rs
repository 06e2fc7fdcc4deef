//! The completion marker (`complete.json`) and the optional `sha256sums` file beside a model.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::layout::write_atomic;

/// Names under which a checksum file beside the model is recognised (`sha256sum` format).
pub(crate) const CHECKSUM_FILES: [&str; 3] = ["sha256sums", "SHA256SUMS", "sha256sums.txt"];

/// Written last into a version folder: its presence means every file is in place and verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub format: u32,
    pub uri: String,
    pub version: String,
    pub completed_at_ms: u64,
    pub files: Vec<FileRecord>,
}

/// One model file as it was verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRecord {
    /// Path relative to the model folder, `/`-separated.
    pub name: String,
    pub size: u64,
    pub etag: Option<String>,
    pub object_version: Option<String>,
    pub sha256: String,
    /// True when the checksum came from the model's `sha256sums`, false when it was computed
    /// after a size (+ ETag) check.
    pub sha256_from_manifest: bool,
    /// Modification time seen right after verification; a change means the file was touched.
    pub mtime_ns: u64,
}

impl Marker {
    pub const FORMAT: u32 = 1;

    pub fn read(path: &Path) -> Option<Marker> {
        let data = fs::read(path).ok()?;
        serde_json::from_slice::<Marker>(&data).ok().filter(|m| m.format == Marker::FORMAT)
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let data = serde_json::to_vec_pretty(self).expect("marker serialises");
        write_atomic(path, &data)
    }

    /// Names of files that are missing or whose size or mtime changed since verification:
    /// a cheap check done on every hit.
    pub fn changed_files(&self, model_dir: &Path) -> Vec<String> {
        self.files
            .iter()
            .filter(|f| match fs::metadata(model_dir.join(&f.name)) {
                Ok(m) => !m.is_file() || m.len() != f.size || mtime_ns(&m) != f.mtime_ns,
                Err(_) => true,
            })
            .map(|f| f.name.clone())
            .collect()
    }

    pub fn file(&self, name: &str) -> Option<&FileRecord> {
        self.files.iter().find(|f| f.name == name)
    }
}

pub(crate) fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Parses `sha256sum` output: `<64 hex> <space or *><name>` per line. Lines that do not fit
/// are skipped with a warning rather than failing the model.
pub fn parse_checksums(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.lines().map(str::trim_end).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let parsed = line.split_once(' ').and_then(|(hash, rest)| {
            let name = rest.strip_prefix([' ', '*']).unwrap_or(rest);
            let name = name.strip_prefix("./").unwrap_or(name);
            let ok = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
            (ok && !name.is_empty()).then(|| (name.to_string(), hash.to_ascii_lowercase()))
        });
        match parsed {
            Some((name, hash)) => {
                out.insert(name, hash);
            }
            None => tracing::warn!(line, "ignoring a malformed line of sha256sums"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_binary_mode_lines() {
        let h = "a".repeat(64);
        let text = format!("{h}  model.bin\n{h} *./config.json\n# comment\nnot a line\n\n");
        let sums = parse_checksums(&text);
        assert_eq!(sums.len(), 2);
        assert_eq!(sums["model.bin"], h);
        assert_eq!(sums["config.json"], h);
    }
}
