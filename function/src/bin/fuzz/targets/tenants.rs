//! `tokens` and `tenants`: the parsers of who a request is from.
//!
//! `tokens`: `OidcVerifier::verify` on JWTs, seeded with tokens signed by a key the target
//! makes (good ones, expired, another audience, another issuer, `alg: none`), mutated as text
//! or as their three JSON/binary parts. Property: a token is accepted only if its claims name
//! the issuer and audience, hold an expiry, and its signed part is one the target signed.
//!
//! `tenants`: `Tenants::parse` on a tenants file, then `identify`, `may_read` and `may_write`
//! with fuzzed text. Property: on a closed service, a tenant with no `source=`, `bucket=` or
//! `*` line reads nothing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use sha2::{Digest, Sha256};
use tingxie::oidc::OidcVerifier;
use tingxie::tenants::Tenants;

use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::{error_label, Target};

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "tingxie";

pub struct Tokens {
    runtime: tokio::runtime::Runtime,
    verifier: OidcVerifier,
    key: EcdsaKeyPair,
    /// SHA-256 of `HEADER.PAYLOAD` of every token this target signed (digests, so that a long
    /// run does not hold every message).
    signed: HashSet<[u8; 32]>,
    jwks: PathBuf,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Default for Tokens {
    fn default() -> Tokens {
        let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("an EC key");
        let point = key.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "k1", "x": b64(&point[1..33]), "y": b64(&point[33..])});
        let jwks = std::env::temp_dir().join(format!("tingxie-fuzz-jwks-{}.json", std::process::id()));
        std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).expect("the JWKS file");
        let verifier = OidcVerifier::new(ISSUER, AUDIENCE, jwks.to_str().expect("a UTF-8 temp dir")).expect("valid").expect("on");
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        Tokens { runtime, verifier, key, signed: HashSet::new(), jwks }
    }
}

impl Drop for Tokens {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.jwks);
    }
}

impl Tokens {
    fn sign(&mut self, header: &[u8], claims: &[u8]) -> String {
        let message = format!("{}.{}", b64(header), b64(claims));
        let signature = self.key.sign(&SystemRandom::new(), message.as_bytes()).expect("signs");
        self.signed.insert(Sha256::digest(message.as_bytes()).into());
        format!("{message}.{}", b64(signature.as_ref()))
    }
}

impl Target for Tokens {
    fn name(&self) -> &'static str {
        "tokens"
    }

    /// Control (a whole token, or parts to sign), the token or header, the claims.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Text, Kind::Json]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let header = json!({"alg": "ES256", "kid": "k1"}).to_string();
        let claims =
            |iss: &str, aud: &str, exp: i64| json!({"iss": iss, "aud": [aud], "exp": exp, "sub": "system:serviceaccount:a:b"}).to_string();
        let mut seeds = Vec::new();
        for body in [
            claims(ISSUER, AUDIENCE, now + 3600),
            claims(ISSUER, AUDIENCE, now - 3600),
            claims(ISSUER, "other", now + 3600),
            claims("https://evil", AUDIENCE, now + 3600),
            json!({"iss": ISSUER, "aud": AUDIENCE, "exp": 1e300, "nbf": -1e300}).to_string(),
        ] {
            seeds.push(vec![vec![1], header.clone().into_bytes(), body.into_bytes()]);
        }
        let none = format!("{}.{}.", b64(br#"{"alg":"none"}"#), b64(claims(ISSUER, AUDIENCE, now + 3600).as_bytes()));
        seeds.push(vec![vec![0], none.into_bytes(), Vec::new()]);
        seeds.push(vec![vec![0], b"eyJhbGciOiJFUzI1NiJ9.e30.AAAA".to_vec(), Vec::new()]);
        seeds
    }

    fn run(&mut self, input: &Input) -> String {
        // Even controls: the text is the whole token; odd: header and claims, signed here.
        let token = if control(input, 0).is_multiple_of(2) {
            String::from_utf8_lossy(section(input, 1)).into_owned()
        } else {
            self.sign(section(input, 1), section(input, 2))
        };
        let verified = self.runtime.block_on(self.verifier.verify(&token));
        match verified {
            Err(e) => error_label("refused", &e),
            Ok(_) => {
                let message = token.rsplit_once('.').map_or("", |(m, _)| m);
                if !self.signed.contains(&<[u8; 32]>::from(Sha256::digest(message.as_bytes()))) {
                    panic!("property: a token this target did not sign was accepted: {token:.200}");
                }
                // Read as the verifier reads them: unknown fields skipped, however deep.
                #[derive(serde::Deserialize)]
                struct Seen {
                    iss: Option<String>,
                    aud: Option<serde_json::Value>,
                    exp: Option<f64>,
                }
                let seen: Option<Seen> = token
                    .split('.')
                    .nth(1)
                    .and_then(|p| URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok())
                    .and_then(|b| serde_json::from_slice(&b).ok());
                let Some(Seen { iss, aud, exp }) = seen else { panic!("property: accepted claims that do not parse: {token:.200}") };
                let aud = aud.unwrap_or_default();
                let audience_ok = aud == AUDIENCE || aud.as_array().is_some_and(|a| a.iter().any(|x| x == AUDIENCE));
                if iss.as_deref() != Some(ISSUER) || !audience_ok || exp.is_none() {
                    panic!("property: accepted claims ({iss:?}, {aud}, {exp:?}) are not the issuer's for the audience");
                }
                "accepted".to_string()
            }
        }
    }
}

pub struct TenantFile;

impl Target for TenantFile {
    fn name(&self) -> &'static str {
        "tenants"
    }

    /// The file, an Authorization value, a tenant name, a source URI.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Text, Kind::Text, Kind::Text, Kind::Text]
    }

    fn seeds(&self, _fixtures: &Path) -> Vec<Input> {
        let file = "# name class keys and limits\n\
            radiology priority key=sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 queued=2 rpm=120 bucket=rad output=s3://reports/rad/\n\
            research batch key=sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 source=s3://shared/research/ source=*\n\
            * standard rpm=30 source=file:///data/public/\n";
        [
            ("Bearer test", "radiology", "s3://rad/a.wav"),
            ("Bearer test2", "research", "s3://shared/research/%E4%BC%9A.wav"),
            ("bearer eyJh.eyJi.c2ln", "someone", "file:///data/public/../secret.wav"),
        ]
        .iter()
        .map(|(auth, name, uri)| {
            vec![file.as_bytes().to_vec(), auth.as_bytes().to_vec(), name.as_bytes().to_vec(), uri.as_bytes().to_vec()]
        })
        .collect()
    }

    fn run(&mut self, input: &Input) -> String {
        let text = |i| String::from_utf8_lossy(section(input, i)).into_owned();
        let (file, authorization, name, uri) = (text(0), text(1), text(2), text(3));
        let tenants = match Tenants::parse(&file, Some("x-tingxie-tenant".into())) {
            Ok(tenants) => tenants,
            // The kind of mistake, not the text it quotes (names come unquoted).
            Err(e) => {
                let message = e.to_string();
                let words: Vec<&str> = message.split_whitespace().skip(3).filter(|w| !w.contains(['`', '"'])).take(3).collect();
                return error_label("file", &words.join(" "));
            }
        };
        let identified = match tenants.identify(Some(&authorization), None) {
            Ok(t) => format!("key:{}", t.listed),
            Err(e) => error_label("key", &e),
        };
        let Ok(tenant) = tenants.named(name.trim()) else { return format!("{identified}|name") };
        let bucket = uri.split_once("://").and_then(|(_, rest)| rest.split('/').next()).unwrap_or("");
        let read = tenants.may_read(&tenant, &uri, bucket).is_ok();
        let wrote = tenants.may_write(&tenant, &uri).is_ok();
        // A closed service (it has a header): a line naming no data reads nothing.
        let line = file.lines().map(|l| l.split('#').next().unwrap_or("")).find(|l| l.split_whitespace().next() == Some(name.trim()));
        let star = file.lines().any(|l| l.split('#').next().unwrap_or("").split_whitespace().next() == Some("*"));
        let names_data = |l: &str| l.split_whitespace().any(|w| w.starts_with("source=") || w.starts_with("bucket="));
        if read && !star && line.is_some_and(|l| !names_data(l)) {
            panic!("property: tenant {name:?} with no data of its own may read {uri:?}");
        }
        format!("{identified}|{read}|{wrote}")
    }
}
