//! Pulling models: cold and warm, once per node, new versions, other URI kinds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use tingxie_model_cache::cli::{run, CacheCommand};
use tingxie_model_cache::{Error, ModelCache, Outcome};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_pull_then_warm_hit_fetches_no_model_file() {
    let moto = moto::shared();
    moto.create_bucket("cold-warm");
    let files = synthetic_model(20 * MIB, 1);
    upload(moto, "cold-warm", "models/synthetic", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("cold-warm");
    let uri = "s3://cold-warm/models/synthetic/";

    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let t = Instant::now();
    let cold = cache.ensure(uri).await.unwrap();
    eprintln!("cold pull of {} bytes: {:?}", cold.bytes_downloaded, t.elapsed());
    assert_eq!(cold.outcome, Outcome::Miss);
    assert!(cold.path.starts_with(dir.path()));
    assert_same_files(&cold.path, &files);
    let expected: usize = files.values().map(Vec::len).sum::<usize>() + checksums(&files).len();
    assert_eq!(cold.bytes_downloaded, expected as u64);
    let ranged = proxy.object_gets("/cold-warm/models/synthetic/model.bin");
    assert_eq!(ranged.len(), 10, "20 MiB in 2 MiB ranges: {ranged:?}");
    assert!(ranged.iter().all(|r| r.range.is_some()), "every GET is ranged: {ranged:?}");
    assert!(proxy.max_open() >= 2, "ranges were fetched in parallel");
    drop(cold);
    drop(cache);

    // A new process on the same node: same cache folder, new client.
    proxy.clear();
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let warm = cache.ensure(uri).await.unwrap();
    assert_eq!(warm.outcome, Outcome::Hit);
    assert_eq!(warm.bytes_downloaded, 0);
    assert!(proxy.object_gets("/models/").is_empty(), "GETs on a hit: {:?}", proxy.requests());
    assert_same_files(&warm.path, &files);
}

/// A store that streams slowly: a file asked for in one GET is split into several GETs
/// (the slots are idle and the rest would take seconds), and arrives whole and verified. A
/// store fast for what is left keeps one GET per file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_get_splits_its_rest_across_idle_slots() {
    let moto = moto::shared();
    moto.create_bucket("split");
    let files = synthetic_model(24 * MIB, 4);
    upload(moto, "split", "m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    // Per connection: one stream would need 6 s.
    proxy.set_throttle(4 * MIB as u64);
    let dir = TempDir::new("split");
    let mut cfg = config(dir.path(), &proxy.endpoint());
    cfg.chunk_size = 64 * MIB as u64;
    cfg.split_after = Some(std::time::Duration::from_millis(250));

    let got = ModelCache::new(cfg.clone()).unwrap().ensure("s3://split/m/").await.unwrap();
    assert_same_files(&got.path, &files);
    let gets = proxy.object_gets("/split/m/model.bin");
    assert!(gets.len() >= 3, "split into several GETs: {gets:?}");
    let starts: Vec<&str> = gets.iter().filter_map(|g| g.range.as_deref()).collect();
    assert!(starts.iter().any(|r| r.starts_with("bytes=0-")), "{gets:?}");
    assert!(proxy.max_open() >= 3, "the pieces ran at once");
    drop(got);

    // Unthrottled, with a threshold no local GET reaches: one GET per file.
    proxy.set_throttle(0);
    proxy.clear();
    let dir = TempDir::new("split-fast");
    cfg.cache_dir = dir.path().to_path_buf();
    cfg.split_after = Some(std::time::Duration::from_secs(30));
    let got = ModelCache::new(cfg).unwrap().ensure("s3://split/m/").await.unwrap();
    assert_same_files(&got.path, &files);
    assert_eq!(proxy.object_gets("/split/m/model.bin").len(), 1, "{:?}", proxy.requests());
}

/// The real fixture model (Whisper tiny.en), when `TINGXIE_TEST_MODEL_DIR` points at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_model_cold_pull_then_warm_hit() {
    let Ok(model_dir) = std::env::var("TINGXIE_TEST_MODEL_DIR") else {
        eprintln!("TINGXIE_TEST_MODEL_DIR not set: fixture model test not run");
        return;
    };
    let model_dir = PathBuf::from(model_dir);
    let names = ["config.json", "model.bin", "tokenizer.json", "vocabulary.txt"];
    for n in names {
        assert!(
            model_dir.join(n).is_file(),
            "TINGXIE_TEST_MODEL_DIR={} lacks {n}: run shared/fixtures/fetch-whisper-tiny-en.sh DIR",
            model_dir.display()
        );
    }
    let files: BTreeMap<String, Vec<u8>> = names.iter().map(|n| (n.to_string(), std::fs::read(model_dir.join(n)).unwrap())).collect();
    let moto = moto::shared();
    moto.create_bucket("fixture");
    upload(moto, "fixture", "models/whisper-tiny-en", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("fixture");
    let uri = "s3://fixture/models/whisper-tiny-en/";
    let mut cfg = config(dir.path(), &proxy.endpoint());
    cfg.chunk_size = 8 * MIB as u64;

    let t = Instant::now();
    let cold = ModelCache::new(cfg.clone()).unwrap().ensure(uri).await.unwrap();
    eprintln!("fixture cold pull: {} bytes in {:?}", cold.bytes_downloaded, t.elapsed());
    assert_eq!(cold.outcome, Outcome::Miss);
    assert_same_files(&cold.path, &files);
    assert_eq!(
        sha256_hex(&std::fs::read(cold.path.join("model.bin")).unwrap()),
        "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    );
    let model_bin_gets = proxy.object_gets("whisper-tiny-en/model.bin").len();
    assert_eq!(model_bin_gets, 75_537_502usize.div_ceil(8 * MIB));
    drop(cold);

    proxy.clear();
    let warm = ModelCache::new(cfg).unwrap().ensure(uri).await.unwrap();
    assert_eq!(warm.outcome, Outcome::Hit);
    assert!(proxy.object_gets("/models/").is_empty(), "GETs on a hit: {:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_in_one_process_download_once() {
    let moto = moto::shared();
    moto.create_bucket("single-flight");
    let files = synthetic_model(5 * MIB, 2);
    upload(moto, "single-flight", "m", &files, false).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("single-flight");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let uri = "s3://single-flight/m";

    let (a, b, c) = tokio::join!(cache.ensure(uri), cache.ensure(uri), cache.ensure(uri));
    let mut outcomes: Vec<_> = [a, b, c].into_iter().map(|r| r.unwrap().outcome).collect();
    outcomes.sort_by_key(|o| o.as_str());
    assert_eq!(outcomes, [Outcome::Hit, Outcome::Hit, Outcome::Miss]);
    assert_eq!(proxy.object_gets("/single-flight/m/model.bin").len(), 3, "5 MiB in 2 MiB ranges, once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_at_once_download_once() {
    let moto = moto::shared();
    moto.create_bucket("two-procs");
    let files = synthetic_model(20 * MIB, 3);
    upload(moto, "two-procs", "models/m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    // Slow enough (about 2 s) that both processes are surely running during the download.
    proxy.set_throttle(3 * MIB as u64);
    let dir = TempDir::new("two-procs");
    let uri = "s3://two-procs/models/m/";

    let one = child_command(dir.path(), &proxy.endpoint(), uri).spawn().unwrap();
    let two = child_command(dir.path(), &proxy.endpoint(), uri).spawn().unwrap();
    let (one, two) = tokio::join!(one.wait_with_output(), two.wait_with_output());
    let mut results = Vec::new();
    for out in [one.unwrap(), two.unwrap()] {
        let r = child_result(&out.stdout).unwrap_or_else(|| {
            panic!(
                "child printed no result ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(r["ok"], true, "{r}");
        results.push(r);
    }
    let mut outcomes: Vec<&str> = results.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["hit", "miss"], "one process downloads, the other waits and reuses");
    assert_eq!(results[0]["path"], results[1]["path"]);
    for name in files.keys() {
        let gets = proxy.object_gets(&format!("/two-procs/models/m/{name}")).len();
        let expected = if name == "model.bin" { 10 } else { 1 };
        assert_eq!(gets, expected, "GETs of {name}: {:?}", proxy.requests());
    }
    assert_same_files(PathBuf::from(results[0]["path"].as_str().unwrap()).as_path(), &files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_remote_version_is_fetched_and_the_old_one_kept_while_in_use() {
    let moto = moto::shared();
    moto.create_bucket("versions");
    let v1 = synthetic_model(3 * MIB, 4);
    upload(moto, "versions", "m", &v1, true).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("versions");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let uri = "s3://versions/m";

    let old = cache.ensure(uri).await.unwrap();
    assert_eq!(old.outcome, Outcome::Miss);
    let mut v2 = v1.clone();
    v2.insert("model.bin".into(), random_bytes(3 * MIB, 5));
    upload(moto, "versions", "m", &v2, true).await;
    proxy.clear();

    let new = cache.ensure(uri).await.unwrap();
    assert_eq!(new.outcome, Outcome::StaleRefreshed);
    assert_ne!(new.path, old.path);
    assert_same_files(&new.path, &v2);
    assert_same_files(&old.path, &v1); // still used: not removed under the running process
    assert!(proxy.object_gets("/versions/m/config.json").len() == 1);

    drop(old);
    let report = cache.gc();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert_eq!(cache.list().len(), 1);
    assert_same_files(&new.path, &v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_model_is_not_found_and_not_retryable() {
    let moto = moto::shared();
    moto.create_bucket("empty");
    let dir = TempDir::new("missing");
    let cache = ModelCache::new(config(dir.path(), &moto.endpoint())).unwrap();
    let err = cache.ensure("s3://empty/models/nothing/").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert!(!err.is_retryable());
    let err = cache.ensure("s3://no-such-bucket/m/").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_uri_takes_its_file_list_from_sha256sums() {
    let moto = moto::shared();
    moto.create_bucket("web");
    let files = synthetic_model(3 * MIB, 6);
    for (name, data) in &files {
        moto.put_public("web", &format!("models/m/{name}"), data);
    }
    moto.put_public("web", "models/m/sha256sums", &checksums(&files));
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("http");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let uri = format!("{}/web/models/m/", proxy.endpoint());

    let cold = cache.ensure(&uri).await.unwrap();
    assert_eq!(cold.outcome, Outcome::Miss);
    assert_same_files(&cold.path, &files);
    drop(cold);
    proxy.clear();
    let warm = cache.ensure(&uri).await.unwrap();
    assert_eq!(warm.outcome, Outcome::Hit);
    assert!(proxy.object_gets("model.bin").is_empty(), "{:?}", proxy.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_uri_is_copied_and_a_plain_path_is_used_in_place() {
    let src = TempDir::new("file-src");
    let files = synthetic_model(MIB, 7);
    for (name, data) in &files {
        std::fs::write(src.path().join(name), data).unwrap();
    }
    let dir = TempDir::new("file-cache");
    let cache = ModelCache::new(config(dir.path(), "http://127.0.0.1:9")).unwrap();

    let copied = cache.ensure(&format!("file://{}", src.path().display())).await.unwrap();
    assert_eq!(copied.outcome, Outcome::Miss);
    assert!(copied.path.starts_with(dir.path()));
    assert_same_files(&copied.path, &files);

    let local = cache.ensure(src.path().to_str().unwrap()).await.unwrap();
    assert_eq!(local.outcome, Outcome::Local);
    assert_eq!(local.path, src.path());

    let err = cache.ensure("/no/such/model/dir").await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_subcommands_run() {
    let moto = moto::shared();
    moto.create_bucket("cli");
    let files = synthetic_model(MIB, 8);
    upload(moto, "cli", "m", &files, true).await;
    let dir = TempDir::new("cli");
    let cfg = config(dir.path(), &moto.endpoint());
    let prefetch = CacheCommand::Prefetch { uri: "s3://cli/m/".into() };
    assert_eq!(run(prefetch, cfg.clone()).await.unwrap(), 0);
    assert_eq!(run(CacheCommand::Ls, cfg.clone()).await.unwrap(), 0);
    assert_eq!(run(CacheCommand::Verify, cfg.clone()).await.unwrap(), 0);
    assert_eq!(run(CacheCommand::Gc, cfg.clone()).await.unwrap(), 0);
    let entries = ModelCache::new(cfg).unwrap().list();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].complete && !entries[0].in_use, "{entries:?}");
}
