//! Hostile URIs and object names cannot write outside the cache directory.

use tingxie_model_cache::{Error, ModelCache, Outcome};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_uris_and_object_names_stay_inside_the_cache() {
    let moto = moto::shared();
    moto.create_bucket("hostile");
    // Object names with `..` segments and an empty segment, written past object_store (which
    // refuses them) with raw requests; moto decodes %2E and %2F into the key.
    for key in ["evil/%2E%2E/%2E%2E/%2E%2E/escape.txt", "evil/x/..%2F..%2F..%2Fescape2.txt", "evil2//escape3.txt"] {
        let status = http::raw_request(moto.port, "PUT", &format!("/hostile/{key}"), &[], b"pwned").unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{key}: {status}");
    }
    let odd = synthetic_model(64 * 1024, 20);
    for (name, data) in &odd {
        moto.put_raw("hostile", &format!("models/we ird ü $(x) ;'&=,@!/{name}"), data, &[]);
    }

    let root = TempDir::new("hostile");
    let cache_dir = root.path().join("cache");
    let cache = ModelCache::new(config(&cache_dir, &moto.endpoint())).unwrap();

    for uri in [
        "s3://hostile/../../etc",
        "s3://hostile/models/%2e%2e/%2e%2e/x",
        "s3://hostile/models/..%2F..%2F/x",
        "s3:///etc/passwd",
        "s3://hostile//etc/passwd",
        "s3://hostile/models\\..\\..\\x",
        "s3://hostile/models/x\u{0}y",
        "s3://hostile/models/x?prefix=../",
        "ftp://hostile/models/x",
    ] {
        let err = cache.ensure(uri).await.expect_err(uri);
        assert!(matches!(err, Error::InvalidUri { .. }), "{uri}: {err:?}");
    }
    for uri in ["s3://hostile/evil/", "s3://hostile/evil2/"] {
        let err = cache.ensure(uri).await.expect_err(uri);
        assert!(!err.is_retryable(), "{uri}: {err:?}");
        eprintln!("{uri}: {err}");
    }
    let model = cache.ensure("s3://hostile/models/we ird ü $(x) ;'&=,@!/").await.unwrap();
    assert_eq!(model.outcome, Outcome::Miss);
    assert_same_files(&model.path, &odd);
    assert!(model.path.starts_with(&cache_dir));
    let folder = model.path.parent().unwrap().parent().unwrap().file_name().unwrap().to_str().unwrap();
    assert!(folder.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)), "{folder}");

    // Nothing was written next to the cache, and nothing named escape* anywhere.
    let outside: Vec<String> = tree(root.path()).into_iter().filter(|p| !p.starts_with("cache")).collect();
    assert!(outside.is_empty(), "{outside:?}");
    let escaped: Vec<String> = tree(root.path()).into_iter().filter(|p| p.contains("escape")).collect();
    assert!(escaped.is_empty(), "{escaped:?}");
}
