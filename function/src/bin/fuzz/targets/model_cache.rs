//! `uri` and `manifest`: the model cache's parsers of text it does not control, and the event
//! source URI parser beside them.
//!
//! `uri`: a model URI (`uri::parse`), a remote object name (`safe_relative_path`), and the
//! same text as an event's source URI and output prefix. Properties: a cache folder name holds
//! only `[A-Za-z0-9._-]` and never starts with a dot; a relative path accepted stays inside the
//! model folder; an event object round-trips through its URI.
//!
//! `manifest`: the completion marker (`complete.json`) and a `sha256sums` file. Properties:
//! every checksum kept is 64 lower-case hex digits for a non-empty name.

use std::path::{Component, Path};

use tingxie::events::{ObjectRef, RequestOptions};
use tingxie_model_cache::manifest::{parse_checksums, Marker};
use tingxie_model_cache::uri::{self, ModelSource};

use super::events::check_round_trip;
use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::{error_label, Target};

pub struct Uri;

impl Target for Uri {
    fn name(&self) -> &'static str {
        "uri"
    }

    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Text]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        [
            "s3://models/whisper-tiny-en/",
            "gs://bucket/models/whisper%20tiny/",
            "az://account/container/models/x",
            "abfss://container@account.dfs.core.windows.net/models/x",
            "https://account.blob.core.windows.net/container/models/x/",
            "https://s3.eu-west-1.amazonaws.com/bucket/models/x",
            "http://localhost:9000/models/x",
            "file:///mnt/models/whisper-tiny-en/",
            "file:/mnt/models/x",
            "/models/whisper-tiny-en",
            "models/x",
            "tokenizer/tokenizer.json",
            "s3://meetings-audio/2024/standup%20notes%20%C3%A9t%C3%A9.wav",
            "s3://b/transcripts/",
        ]
        .iter()
        .map(|s| vec![s.as_bytes().to_vec()])
        .collect()
    }

    fn run(&mut self, input: &Input) -> String {
        let text = String::from_utf8_lossy(section(input, 0));
        let model = match uri::parse(&text) {
            Ok(ModelSource::Remote(remote)) => {
                let key = &remote.key;
                let safe = key.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
                if !safe || key.starts_with('.') || key.is_empty() {
                    panic!("property: cache folder name {key:?} for {text:?} is not a safe file name");
                }
                "remote".to_string()
            }
            Ok(ModelSource::Local(_)) => "local".to_string(),
            Err(e) => error_label("model-uri", &e),
        };
        if let Some(path) = uri::safe_relative_path(&text) {
            if !path.components().all(|c| matches!(c, Component::Normal(_))) {
                panic!("property: {text:?} became {path:?}, which leaves the model folder");
            }
        }
        let object = match ObjectRef::parse(&text) {
            Ok(obj) => {
                check_round_trip(&obj);
                "object".to_string()
            }
            Err(e) => error_label("object", &e),
        };
        let output = RequestOptions { output: Some(text.into_owned()), ..Default::default() }.validate().is_ok();
        format!("{model}|{object}|{output}")
    }
}

pub struct Manifest;

impl Target for Manifest {
    fn name(&self) -> &'static str {
        "manifest"
    }

    /// Control (which file), the file.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Json]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        vec![
            vec![vec![0], include_bytes!("../seeds/marker.json").to_vec()],
            vec![vec![1], include_bytes!("../seeds/sha256sums.txt").to_vec()],
        ]
    }

    fn run(&mut self, input: &Input) -> String {
        let bytes = section(input, 1);
        if control(input, 0).is_multiple_of(2) {
            // Marker::read: the JSON, then the format check.
            match serde_json::from_slice::<Marker>(bytes) {
                Err(e) => error_label("marker", &e),
                Ok(marker) => {
                    let names: Vec<&str> = marker.files.iter().map(|f| f.name.as_str()).collect();
                    let found = names.iter().all(|n| marker.file(n).is_some());
                    format!("marker:{}:{found}", marker.format == Marker::FORMAT)
                }
            }
        } else {
            let sums = parse_checksums(&String::from_utf8_lossy(bytes));
            for (name, hash) in &sums {
                let hex = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                if name.is_empty() || !hex {
                    panic!("property: checksum line kept as {name:?} -> {hash:?}");
                }
            }
            format!("sums:{}", sums.len().min(3))
        }
    }
}
