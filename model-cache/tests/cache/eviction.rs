//! LRU eviction under a size limit, sparing models in use.

use std::collections::BTreeMap;
use std::time::Duration;

use tingxie_model_cache::{ModelCache, Outcome};

use crate::common::*;

fn size(files: &BTreeMap<String, Vec<u8>>) -> u64 {
    files.values().map(|d| d.len() as u64).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eviction_keeps_the_cache_under_its_limit_and_never_removes_a_model_in_use() {
    let moto = moto::shared();
    moto.create_bucket("evict");
    let models: Vec<_> = (0..3).map(|i| synthetic_model(3 * MIB, 30 + i)).collect();
    for (i, files) in models.iter().enumerate() {
        upload(moto, "evict", &format!("m{i}"), files, false).await;
    }
    let one = size(&models[0]);
    let dir = TempDir::new("evict");
    let mut cfg = config(dir.path(), &moto.endpoint());
    cfg.max_bytes = Some(one * 2 + one / 2); // room for two models
    let limit = cfg.max_bytes.unwrap();
    let cache = ModelCache::new(cfg).unwrap();
    let pause = || tokio::time::sleep(Duration::from_millis(20));
    let present = |cache: &ModelCache| {
        let mut uris: Vec<String> = cache.list().into_iter().map(|e| e.uri).collect();
        uris.sort();
        uris
    };

    let m0 = cache.ensure("s3://evict/m0").await.unwrap(); // oldest, but kept in use
    pause().await;
    drop(cache.ensure("s3://evict/m1").await.unwrap()); // not in use
    pause().await;
    let m2 = cache.ensure("s3://evict/m2").await.unwrap(); // needs room: m1 goes, not m0
    assert_eq!(present(&cache), ["s3://evict/m0", "s3://evict/m2"]);
    assert!(cache.list().iter().map(|e| e.bytes).sum::<u64>() <= limit);
    assert_same_files(&m0.path, &models[0]);

    // Everything in use: nothing is removed, the cache goes over its limit rather than break
    // a running process.
    pause().await;
    let m1 = cache.ensure("s3://evict/m1").await.unwrap();
    assert_eq!(m1.outcome, Outcome::Miss);
    let report = cache.gc();
    assert!(report.removed.is_empty(), "{report:?}");
    assert_eq!(report.kept_in_use.len(), 3, "{report:?}");
    assert_eq!(present(&cache).len(), 3);

    // Once the least recently used one is released, gc brings the cache back under the limit.
    drop(m0);
    let report = cache.gc();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(report.removed[0].uri, "s3://evict/m0");
    assert!(report.total_bytes <= limit, "{report:?}");
    assert_eq!(present(&cache), ["s3://evict/m1", "s3://evict/m2"]);
    assert_same_files(&m1.path, &models[1]);
    assert_same_files(&m2.path, &models[2]);
    assert!(cache.list().iter().all(|e| e.in_use));
}
