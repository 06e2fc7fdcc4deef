//! Proof that an event comes from the platform: Knative Eventing's OIDC tokens
//! (`authentication-oidc`). Each delivery carries `Authorization: Bearer JWT`, issued by the
//! cluster's service-account issuer for the sink's audience; it is verified here against the
//! issuer's public keys (a JWKS document: a mounted file, or fetched over HTTPS).
//!
//! Accepted: RS256 (Kubernetes' default) and ES256 signatures, `iss` equal to the configured
//! issuer, `aud` holding the configured audience, `exp` in the future and `nbf` in the past
//! (with [`LEEWAY`] for clock skew). Anything else, `none` and HMAC algorithms included, is 401.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;

use crate::error::{bounded, quote, Error, Result};

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);
/// Longest token read: Kubernetes tokens are about 1 KiB.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// A key set is looked at again for an unknown key id at most this often (a token naming a
/// made-up `kid` must not make every request fetch the JWKS).
const RELOAD_EVERY: Duration = Duration::from_secs(10);
/// Largest JWKS document read.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// What a verified token says about its sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sender {
    /// `sub`: the sender's service account (`system:serviceaccount:NS:NAME`).
    pub subject: String,
}

#[derive(Debug, Clone)]
enum PublicKey {
    Rsa { n: Vec<u8>, e: Vec<u8> },
    P256 { point: Vec<u8> },
}

#[derive(Debug, Clone)]
struct Key {
    id: Option<String>,
    key: PublicKey,
}

enum JwksSource {
    File(PathBuf),
    Url(String),
}

struct KeySet {
    keys: Vec<Key>,
    loaded: Option<Instant>,
}

pub struct OidcVerifier {
    issuer: String,
    audience: String,
    source: JwksSource,
    keys: Mutex<KeySet>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<Audience>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    sub: Option<String>,
}

#[derive(Deserialize)]
struct JwksDocument {
    keys: Vec<serde_json::Value>,
}

fn refused(reason: impl Into<String>) -> Error {
    Error::Unauthorized(format!("the OIDC token {}", reason.into()))
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// One part of a token as JSON text: base64url, then UTF-8 (serde would let invalid bytes
/// pass in fields it skips).
fn decode_part(part: &str, what: &str) -> Result<String> {
    let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).map_err(|_| refused(format!("has a {what} that is not base64url")))?;
    String::from_utf8(bytes).map_err(|_| refused(format!("has a {what} that is not UTF-8")))
}

/// True when `text` has the shape of a JWT (three base64url parts), so that a bearer value
/// can be told from an API key before any verification.
pub fn looks_like_jwt(text: &str) -> bool {
    let mut parts = 0;
    for part in text.split('.') {
        parts += 1;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=')) {
            return false;
        }
    }
    parts == 3
}

/// Parses one JWK; keys of other types or curves are skipped (None), malformed ones too.
fn parse_key(value: &serde_json::Value) -> Option<Key> {
    let field = |name: &str| value.get(name).and_then(|v| v.as_str());
    let bytes = |name: &str| field(name).and_then(|v| URL_SAFE_NO_PAD.decode(v.trim_end_matches('=')).ok());
    if field("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let key = match (field("kty")?, field("crv")) {
        ("RSA", _) => {
            let n = bytes("n")?;
            let first = n.iter().position(|b| *b != 0)?;
            PublicKey::Rsa { n: n[first..].to_vec(), e: bytes("e")? }
        }
        ("EC", Some("P-256")) => {
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != 32 || y.len() != 32 {
                return None;
            }
            PublicKey::P256 { point: [&[4u8][..], &x, &y].concat() }
        }
        _ => return None,
    };
    Some(Key { id: field("kid").map(str::to_string), key })
}

/// The signing keys of a JWKS document.
fn parse_jwks(bytes: &[u8]) -> Result<Vec<Key>> {
    let document: JwksDocument =
        serde_json::from_slice(bytes).map_err(|e| Error::Model(format!("TINGXIE_OIDC_JWKS: not a JWKS document: {e}")))?;
    Ok(document.keys.iter().filter_map(parse_key).collect())
}

impl OidcVerifier {
    /// None when `issuer` is empty (OIDC off). `jwks` is a file path or an `http(s)://` URL;
    /// empty means the issuer's own (`{issuer}/openid/v1/jwks`, where Kubernetes serves it).
    pub fn new(issuer: &str, audience: &str, jwks: &str) -> Result<Option<OidcVerifier>> {
        let issuer = issuer.trim();
        if issuer.is_empty() {
            return Ok(None);
        }
        let audience = audience.trim();
        if audience.is_empty() {
            return Err(Error::Model("TINGXIE_OIDC_ISSUER is set but TINGXIE_OIDC_AUDIENCE is not: say the sink's audience".into()));
        }
        let jwks = match jwks.trim() {
            "" => format!("{}/openid/v1/jwks", issuer.trim_end_matches('/')),
            other => other.to_string(),
        };
        let source = if jwks.starts_with("https://") || jwks.starts_with("http://") {
            JwksSource::Url(jwks)
        } else {
            JwksSource::File(PathBuf::from(jwks.strip_prefix("file://").unwrap_or(&jwks)))
        };
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| Error::Model(format!("OIDC: HTTP client: {e}")))?;
        Ok(Some(OidcVerifier {
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            source,
            keys: Mutex::new(KeySet { keys: Vec::new(), loaded: None }),
            client,
        }))
    }

    /// Reads the key set; a failure is retryable (503): the token may be good.
    async fn load(&self) -> Result<Vec<Key>> {
        let unavailable = |e: String| Error::Unavailable(format!("the OIDC issuer's keys (TINGXIE_OIDC_JWKS) could not be read: {e}"));
        let bytes = match &self.source {
            JwksSource::File(path) => std::fs::read(path).map_err(|e| unavailable(e.kind().to_string()))?,
            JwksSource::Url(url) => {
                let response = self.client.get(url).send().await.map_err(|e| unavailable(bounded(&e.to_string(), 200)))?;
                if !response.status().is_success() {
                    return Err(unavailable(format!("HTTP {}", response.status().as_u16())));
                }
                let body = response.bytes().await.map_err(|e| unavailable(bounded(&e.to_string(), 200)))?;
                body.to_vec()
            }
        };
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(unavailable(format!("the document is over {MAX_JWKS_BYTES} bytes")));
        }
        parse_jwks(&bytes).map_err(|e| unavailable(e.to_string()))
    }

    /// The keys that may have signed a token with key id `kid`, reloading the set when none
    /// is known (keys rotate) at most every [`RELOAD_EVERY`].
    async fn keys_for(&self, kid: Option<&str>) -> Result<Vec<Key>> {
        let matching = |keys: &[Key]| -> Vec<Key> {
            keys.iter().filter(|k| kid.is_none() || k.id.is_none() || k.id.as_deref() == kid).cloned().collect()
        };
        let stale = {
            let set = self.keys.lock().expect("oidc keys");
            let found = matching(&set.keys);
            if !found.is_empty() {
                return Ok(found);
            }
            set.loaded.is_none_or(|at| at.elapsed() >= RELOAD_EVERY)
        };
        if !stale {
            return Ok(Vec::new());
        }
        let keys = self.load().await?;
        let found = matching(&keys);
        *self.keys.lock().expect("oidc keys") = KeySet { keys, loaded: Some(Instant::now()) };
        Ok(found)
    }

    /// Verifies `token`: its signature by one of the issuer's keys, then its claims.
    pub async fn verify(&self, token: &str) -> Result<Sender> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(refused(format!("is over {MAX_TOKEN_BYTES} bytes")));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return Err(refused("is not a JWT (three base64url parts)"));
        };
        let header: Header = serde_json::from_str(&decode_part(header, "header")?).map_err(|_| refused("has a header that is not JSON"))?;
        if !matches!(header.alg.as_str(), "RS256" | "ES256") {
            return Err(refused(format!("is signed with {}; RS256 or ES256 is required", quote(&header.alg))));
        }
        let signature =
            URL_SAFE_NO_PAD.decode(signature.trim_end_matches('=')).map_err(|_| refused("has a signature that is not base64url"))?;
        let message = &token.as_bytes()[..header_and_payload_len(token)];
        let keys = self.keys_for(header.kid.as_deref()).await?;
        let verified = keys.iter().any(|key| match (header.alg.as_str(), &key.key) {
            ("RS256", PublicKey::Rsa { n, e }) => {
                RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }.verify(&RSA_PKCS1_2048_8192_SHA256, message, &signature).is_ok()
            }
            ("ES256", PublicKey::P256 { point }) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point).verify(message, &signature).is_ok()
            }
            _ => false,
        });
        if !verified {
            return Err(refused("is not signed by a key of the configured issuer (TINGXIE_OIDC_JWKS)"));
        }
        let claims: Claims =
            serde_json::from_str(&decode_part(payload, "payload")?).map_err(|_| refused("has claims that are not JSON"))?;
        self.check_claims(&claims, unix_now())?;
        Ok(Sender { subject: claims.sub.unwrap_or_default() })
    }

    fn check_claims(&self, claims: &Claims, now: f64) -> Result<()> {
        if claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(refused(format!("was issued by {}, not by TINGXIE_OIDC_ISSUER", quote(claims.iss.as_deref().unwrap_or("nobody")))));
        }
        let audiences = match &claims.aud {
            Some(Audience::One(one)) => std::slice::from_ref(one),
            Some(Audience::Many(many)) => many.as_slice(),
            None => &[],
        };
        if !audiences.contains(&self.audience) {
            return Err(refused("is not for this sink's audience (TINGXIE_OIDC_AUDIENCE)"));
        }
        let leeway = LEEWAY.as_secs_f64();
        match claims.exp {
            None => return Err(refused("has no expiry (exp)")),
            // NaN is no time: refused like a past one.
            Some(exp) if exp.is_nan() || exp + leeway <= now => return Err(refused("has expired")),
            _ => {}
        }
        if claims.nbf.is_some_and(|nbf| nbf.is_nan() || nbf - leeway > now) {
            return Err(refused("is not valid yet (nbf)"));
        }
        Ok(())
    }
}

/// Length of `HEADER.PAYLOAD`, the signed part of a token known to have three parts.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

#[cfg(test)]
mod tests;
