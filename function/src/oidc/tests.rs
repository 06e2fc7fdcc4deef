use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256};
use serde_json::json;

use super::*;

const ISSUER: &str = "https://kubernetes.default.svc";
const AUDIENCE: &str = "tingxie.transcribe";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An RSA public key's DER (`SEQUENCE { n INTEGER, e INTEGER }`) as its two integers.
fn rsa_components(der: &[u8]) -> (Vec<u8>, Vec<u8>) {
    fn read(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, first) = (der[0], der[1] as usize);
        let (len, start) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            (der[2..2 + n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize), 2 + n)
        };
        (tag, &der[start..start + len], &der[start + len..])
    }
    let (_, sequence, _) = read(der);
    let (_, n, rest) = read(sequence);
    let (_, e, _) = read(rest);
    (n.to_vec(), e.to_vec())
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

impl Signer {
    fn rsa() -> Signer {
        Signer::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn ec() -> Signer {
        Signer::Ec(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap())
    }

    fn jwk(&self, kid: &str) -> serde_json::Value {
        match self {
            Signer::Rsa(pair) => {
                let (n, e) = rsa_components(pair.public_key().as_ref());
                json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": b64(&n), "e": b64(&e)})
            }
            Signer::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "kid": kid, "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
        }
    }

    fn token(&self, kid: &str, claims: serde_json::Value) -> String {
        let alg = match self {
            Signer::Rsa(_) => "RS256",
            Signer::Ec(_) => "ES256",
        };
        let message = format!("{}.{}", b64(json!({"alg": alg, "kid": kid}).to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let signature = match self {
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message.as_bytes(), &mut signature).unwrap();
                signature
            }
            Signer::Ec(pair) => pair.sign(&SystemRandom::new(), message.as_bytes()).unwrap().as_ref().to_vec(),
        };
        format!("{message}.{}", b64(&signature))
    }
}

fn claims(exp_in: f64) -> serde_json::Value {
    let now = unix_now();
    json!({"iss": ISSUER, "aud": [AUDIENCE, "other"], "sub": "system:serviceaccount:knative-eventing:mt-broker-ingress",
           "iat": now, "nbf": now - 1.0, "exp": now + exp_in})
}

/// A verifier reading the key set from a file the test writes.
fn verifier(keys: &[serde_json::Value]) -> (OidcVerifier, PathBuf) {
    let path = std::env::temp_dir().join(format!("tingxie-jwks-{}-{}.json", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::write(&path, json!({ "keys": keys }).to_string()).unwrap();
    let verifier = OidcVerifier::new(ISSUER, AUDIENCE, path.to_str().unwrap()).unwrap().unwrap();
    (verifier, path)
}

fn refusal(result: Result<Sender>) -> String {
    match result {
        Err(Error::Unauthorized(message)) => message,
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn tokens_signed_by_the_issuer_for_the_audience_are_accepted() {
    let (rsa, ec) = (Signer::rsa(), Signer::ec());
    let (verifier, path) = verifier(&[rsa.jwk("r1"), ec.jwk("e1")]);
    let sender = verifier.verify(&rsa.token("r1", claims(600.0))).await.unwrap();
    assert_eq!(sender.subject, "system:serviceaccount:knative-eventing:mt-broker-ingress");
    assert!(verifier.verify(&ec.token("e1", claims(600.0))).await.is_ok());
    let mut single = claims(600.0);
    single["aud"] = AUDIENCE.into();
    assert!(verifier.verify(&rsa.token("r1", single)).await.is_ok(), "aud may be one string");
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn wrong_audience_issuer_expiry_key_or_algorithm_is_refused() {
    let (rsa, stranger) = (Signer::rsa(), Signer::rsa());
    let (verifier, path) = verifier(&[rsa.jwk("r1")]);
    let with = |field: &str, value: serde_json::Value| {
        let mut c = claims(600.0);
        c[field] = value;
        rsa.token("r1", c)
    };
    assert!(refusal(verifier.verify(&with("aud", "someone-else".into())).await).contains("audience"));
    assert!(refusal(verifier.verify(&with("iss", "https://evil.example".into())).await).contains("issued by"));
    assert!(refusal(verifier.verify(&rsa.token("r1", claims(-120.0))).await).contains("expired"));
    assert!(refusal(verifier.verify(&with("exp", serde_json::Value::Null)).await).contains("expiry"));
    assert!(refusal(verifier.verify(&with("nbf", (unix_now() + 600.0).into())).await).contains("not valid yet"));
    // Signed by a key the issuer does not publish, under a known and an unknown key id.
    assert!(refusal(verifier.verify(&stranger.token("r1", claims(600.0))).await).contains("not signed"));
    assert!(refusal(verifier.verify(&stranger.token("r9", claims(600.0))).await).contains("not signed"));
    // A good token with its payload changed.
    let good = rsa.token("r1", claims(600.0));
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims(600.0);
    forged["sub"] = "system:serviceaccount:x:admin".into();
    let tampered = format!("{}.{}.{}", parts[0], b64(forged.to_string().as_bytes()), parts[2]);
    assert!(refusal(verifier.verify(&tampered).await).contains("not signed"));
    // `none` and HMAC: never.
    for alg in ["none", "HS256"] {
        let header = b64(json!({"alg": alg, "kid": "r1"}).to_string().as_bytes());
        let token = format!("{header}.{}.{}", parts[1], parts[2]);
        assert!(refusal(verifier.verify(&token).await).contains("RS256 or ES256"), "{alg}");
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn malformed_tokens_are_refused_without_panicking() {
    let (verifier, path) = verifier(&[Signer::ec().jwk("e1")]);
    let long = "a".repeat(MAX_TOKEN_BYTES + 1);
    for token in ["", "a.b", "a.b.c.d", "!!.??.**", "e30.e30.", "bm90IGpzb24.e30.AA", long.as_str(), "\u{4f1a}.\u{8bae}.x"] {
        assert!(matches!(verifier.verify(token).await, Err(Error::Unauthorized(_))), "{token:.40}");
    }
    std::fs::remove_file(path).unwrap();
}

#[tokio::test]
async fn rotated_keys_are_found_and_an_unreadable_key_set_is_retryable() {
    let (old, new) = (Signer::ec(), Signer::rsa());
    let (verifier, path) = verifier(&[old.jwk("old")]);
    assert!(verifier.verify(&old.token("old", claims(600.0))).await.is_ok());
    // The issuer rotates: the new key is read on the first token naming it, once the set is
    // old enough to look at again.
    std::fs::write(&path, json!({"keys": [old.jwk("old"), new.jwk("new")]}).to_string()).unwrap();
    verifier.keys.lock().unwrap().loaded = Some(Instant::now() - RELOAD_EVERY);
    assert!(verifier.verify(&new.token("new", claims(600.0))).await.is_ok());
    std::fs::remove_file(&path).unwrap();
    let missing = OidcVerifier::new(ISSUER, AUDIENCE, path.to_str().unwrap()).unwrap().unwrap();
    assert!(matches!(missing.verify(&old.token("old", claims(600.0))).await, Err(Error::Unavailable(_))));
}

#[test]
fn configuration_and_token_shapes() {
    assert!(OidcVerifier::new("", "", "").unwrap().is_none(), "no issuer: off");
    assert!(OidcVerifier::new(ISSUER, " ", "").is_err(), "an issuer needs an audience");
    assert!(looks_like_jwt("eyJh.eyJi.c2ln"));
    for not in ["sk-test-123", "a.b", "a..c", "a.b.c.d", "a b.c.d"] {
        assert!(!looks_like_jwt(not), "{not}");
    }
    let keys = parse_jwks(br#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}, {"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}, {"kty": "RSA", "use": "enc", "n": "AQ", "e": "AQ"}]}"#).unwrap();
    assert!(keys.is_empty(), "symmetric keys, other curves and encryption keys are not signing keys");
    assert!(parse_jwks(b"[]").is_err());
}
