//! The models a service may run: `TINGXIE_MODELS` (`name=URI` pairs, or a mounted file of them)
//! and `TINGXIE_MODEL`, the default (a catalog name, or a URI of its own). Requests name a
//! model by its catalog name; OpenAI's `whisper-1`, which every OpenAI client sends, means the
//! default.

use std::sync::Arc;

use crate::config::ServeConfig;
use crate::error::{bounded, Error, Result, QUOTE_CHARS};

/// The model name OpenAI clients send; it means the default model.
pub const OPENAI_MODEL: &str = "whisper-1";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// `(name, URI or folder)` in the order given, the default among them.
    entries: Vec<(Arc<str>, String)>,
    default: Arc<str>,
}

fn invalid(reason: String) -> Error {
    Error::Model(format!("TINGXIE_MODELS: {reason}"))
}

impl Catalog {
    pub fn from_config(config: &ServeConfig) -> Result<Catalog> {
        let listed = match std::path::Path::new(config.models.trim()) {
            path if !config.models.trim().is_empty() && path.is_file() => {
                std::fs::read_to_string(path).map_err(|e| invalid(format!("{}: {e}", path.display())))?
            }
            _ => config.models.clone(),
        };
        Catalog::parse(&listed, &config.model, config.model_name.as_deref())
    }

    /// `listed`: pairs separated by commas or lines (`#` starts a comment); `model`: the default,
    /// a listed name or a URI; `model_name`: the default's name when it is a URI.
    pub fn parse(listed: &str, model: &str, model_name: Option<&str>) -> Result<Catalog> {
        let mut entries: Vec<(Arc<str>, String)> = Vec::new();
        for item in listed.lines().map(|l| l.split('#').next().unwrap_or("")).flat_map(|l| l.split(',')) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            let (name, uri) = item.split_once('=').ok_or_else(|| invalid(format!("`{}` is not NAME=URI", bounded(item, QUOTE_CHARS))))?;
            let (name, uri) = (name.trim(), uri.trim());
            check_name(name)?;
            if uri.is_empty() {
                return Err(invalid(format!("model `{name}` has no URI")));
            }
            if entries.iter().any(|(n, _)| &**n == name) {
                return Err(invalid(format!("model `{name}` is listed twice")));
            }
            entries.push((name.into(), uri.to_string()));
        }
        let default: Arc<str> = match entries.iter().find(|(n, _)| &**n == model.trim()) {
            Some((name, _)) => name.clone(),
            None => {
                let name = model_name.map(str::to_string).unwrap_or_else(|| last_segment(model));
                check_name(&name)?;
                if entries.iter().any(|(n, _)| **n == *name) {
                    return Err(invalid(format!("`{name}` names a listed model and TINGXIE_MODEL `{model}` too")));
                }
                entries.insert(0, (name.as_str().into(), model.to_string()));
                name.into()
            }
        };
        Ok(Catalog { entries, default })
    }

    pub fn default_name(&self) -> &Arc<str> {
        &self.default
    }

    pub fn uri(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| &**n == name).map(|(_, uri)| uri.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &Arc<str>> {
        self.entries.iter().map(|(name, _)| name)
    }

    /// The model a request means: its `model` field (a catalog name, or `whisper-1` for the
    /// default), else the default; an unknown name is a 400 naming it.
    pub fn resolve(&self, requested: Option<&str>) -> Result<Arc<str>> {
        match requested.map(str::trim).filter(|r| !r.is_empty()) {
            None | Some(OPENAI_MODEL) => Ok(self.default.clone()),
            Some(name) => self.entries.iter().find(|(n, _)| &**n == name).map(|(n, _)| n.clone()).ok_or_else(|| Error::InvalidArgument {
                field: "model",
                reason: format!(
                    "unknown model {}; this service has {} (GET /v1/models)",
                    crate::error::quote(name),
                    self.names().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }
}

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("model name `{}` must be 1-64 letters, digits, `.`, `_` or `-`", bounded(name, QUOTE_CHARS))))
    }
}

/// `s3://models/whisper-base/` → `whisper-base`.
fn last_segment(uri: &str) -> String {
    let trimmed = uri.trim().trim_end_matches('/');
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_listed_name_or_a_uri_of_its_own() {
        let c = Catalog::parse("tiny=s3://m/tiny/, base = s3://m/base/", "base", None).unwrap();
        assert_eq!(&**c.default_name(), "base");
        assert_eq!(c.names().map(|n| n.to_string()).collect::<Vec<_>>(), ["tiny", "base"]);
        let c = Catalog::parse("base=s3://m/base/", "s3://m/whisper-tiny-en/", None).unwrap();
        assert_eq!(&**c.default_name(), "whisper-tiny-en");
        assert_eq!(c.uri("whisper-tiny-en"), Some("s3://m/whisper-tiny-en/"));
        let c = Catalog::parse("", "models/whisper-tiny-en", Some("tiny.en")).unwrap();
        assert_eq!(&*c.resolve(None).unwrap(), "tiny.en");
    }

    #[test]
    fn a_file_lists_one_pair_per_line_with_comments() {
        let c = Catalog::parse("# models\ntiny=s3://m/tiny/\n\nbase=s3://m/base/  # multilingual\n", "tiny", None).unwrap();
        assert_eq!(c.uri("base"), Some("s3://m/base/"));
    }

    #[test]
    fn requests_name_a_listed_model_or_openais_default() {
        let c = Catalog::parse("tiny=s3://m/tiny/,base=s3://m/base/", "tiny", None).unwrap();
        assert_eq!(&*c.resolve(Some("base")).unwrap(), "base");
        assert_eq!(&*c.resolve(Some("whisper-1")).unwrap(), "tiny");
        assert_eq!(&*c.resolve(Some(" ")).unwrap(), "tiny");
        match c.resolve(Some("large")) {
            Err(Error::InvalidArgument { field: "model", reason }) => assert!(reason.contains("\"large\"") && reason.contains("`base`")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_catalogs_are_refused() {
        for (listed, model) in
            [("tiny", "x"), ("tiny=", "x"), ("a b=s3://x/", "x"), ("t=s3://a/,t=s3://b/", "t"), ("t=s3://a/", "s3://b/t/")]
        {
            assert!(Catalog::parse(listed, model, None).is_err(), "{listed} / {model}");
        }
    }
}
