//! The audio the load is made of: every audio file of a folder (the fixture corpus by
//! default), read into memory once, with its duration when it can be known locally
//! (`manifest.tsv` beside the files, or the WAV header).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use std::collections::HashMap;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct AudioFile {
    pub name: String,
    pub bytes: Bytes,
    pub content_type: &'static str,
    /// Seconds of audio, when known before the server answers.
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Corpus {
    pub files: Vec<AudioFile>,
}

pub fn content_type_for(name: &str) -> Option<&'static str> {
    let ext = name.rsplit('.').next()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "mp3" => "audio/mpeg",
        "ogg" | "opus" | "oga" => "audio/ogg",
        _ => return None,
    })
}

impl Corpus {
    /// Loads `path`: one audio file, or every audio file in a folder whose duration is at
    /// most `max_seconds` (files of unknown duration are kept), optionally only names matching
    /// one of the `include` globs (`*` and `?`).
    pub fn load(path: &Path, include: &[String], max_seconds: Option<f64>) -> Result<Corpus> {
        let (dir, names): (&Path, Vec<String>) = if path.is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (path.parent().unwrap_or(Path::new(".")), vec![name])
        } else {
            let mut names: Vec<String> = std::fs::read_dir(path)
                .with_context(|| format!("reading audio folder {}", path.display()))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_file()).unwrap_or(false))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| content_type_for(n).is_some())
                .filter(|n| include.is_empty() || include.iter().any(|g| glob_match(g, n)))
                .collect();
            names.sort();
            (path, names)
        };
        let manifest = read_manifest(&dir.join("manifest.tsv"));
        let mut files = Vec::new();
        for name in names {
            let content_type = content_type_for(&name).with_context(|| format!("{name}: not a known audio extension"))?;
            let bytes = std::fs::read(dir.join(&name)).with_context(|| format!("reading {name}"))?;
            let seconds = manifest.get(&name).copied().or_else(|| wav_seconds(&bytes));
            if let (Some(max), Some(s)) = (max_seconds, seconds) {
                if s > max {
                    continue;
                }
            }
            files.push(AudioFile { name, bytes: Bytes::from(bytes), content_type, seconds });
        }
        if files.is_empty() {
            bail!("no audio files in {} (after filters)", path.display());
        }
        Ok(Corpus { files })
    }

    /// The file for request number `i` (round robin, so every file is used evenly).
    pub fn pick(&self, i: u64) -> &AudioFile {
        &self.files[(i % self.files.len() as u64) as usize]
    }
}

fn read_manifest(path: &Path) -> HashMap<String, f64> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return HashMap::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split('\t');
            let name = cols.next()?.to_string();
            let secs = cols.next()?.parse().ok()?;
            Some((name, secs))
        })
        .collect()
}

/// Duration of a RIFF/WAVE file from its `fmt ` and `data` chunks.
pub fn wav_seconds(b: &[u8]) -> Option<f64> {
    if b.len() < 12 || &b[0..4] != b"RIFF" || &b[8..12] != b"WAVE" {
        return None;
    }
    let mut i = 12;
    let mut byte_rate = None;
    while i + 8 <= b.len() {
        let id = &b[i..i + 4];
        let size = u32::from_le_bytes(b[i + 4..i + 8].try_into().ok()?) as usize;
        let body = i + 8;
        if id == b"fmt " && body + 12 <= b.len() {
            byte_rate = Some(u32::from_le_bytes(b[body + 8..body + 12].try_into().ok()?));
        } else if id == b"data" {
            let rate = byte_rate.filter(|&r| r > 0)?;
            let size = size.min(b.len() - body);
            return Some(size as f64 / rate as f64);
        }
        i = body + size + (size & 1);
    }
    None
}

/// Glob with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn wav(seconds: f64, rate: u32) -> Vec<u8> {
        let n = (seconds * rate as f64) as u32;
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + n * 2).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&(rate * 2).to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&16u16.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(n * 2).to_le_bytes());
        v.resize(v.len() + n as usize * 2, 0);
        v
    }

    #[test]
    fn wav_duration() {
        assert_eq!(wav_seconds(&wav(2.5, 16000)), Some(2.5));
        assert_eq!(wav_seconds(b"not a wav file"), None);
    }

    #[test]
    fn globs() {
        assert!(glob_match("s*", "s01.wav"));
        assert!(glob_match("s??.wav", "s01.wav"));
        assert!(!glob_match("s??.wav", "s01_44k1_stereo.wav"));
        assert!(glob_match("*.flac", "s03.flac"));
        assert!(!glob_match("long*", "s01.wav"));
        assert!(glob_match("*", ""));
    }

    #[test]
    fn loads_folder_with_filters() {
        let dir = std::env::temp_dir().join(format!("tingxie-lt-corpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.wav"), wav(1.0, 8000)).unwrap();
        std::fs::write(dir.join("b.wav"), wav(40.0, 8000)).unwrap();
        std::fs::write(dir.join("c.mp3"), b"ID3").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::fs::write(dir.join("manifest.tsv"), "file\tseconds\nc.mp3\t3.5\n").unwrap();
        let c = Corpus::load(&dir, &[], Some(30.0)).unwrap();
        let names: Vec<_> = c.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.wav", "c.mp3"]);
        assert_eq!(c.files[1].seconds, Some(3.5));
        assert_eq!(c.files[1].content_type, "audio/mpeg");
        assert_eq!(c.pick(3).name, "c.mp3");
        let only = Corpus::load(&dir, &["b*".into()], None).unwrap();
        assert_eq!(only.files.len(), 1);
        assert!(Corpus::load(&dir, &["zzz*".into()], None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
