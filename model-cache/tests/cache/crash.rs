//! Failures: server killed, client killed, store down, damaged files.

use std::path::Path;
use std::time::{Duration, Instant};

use tingxie_model_cache::{Error, ModelCache, Outcome, Problem};

use crate::common::*;

/// Waits until the proxy has relayed `bytes` bytes of responses.
async fn wait_for_bytes(proxy: &Proxy, bytes: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while proxy.response_bytes() < bytes {
        assert!(Instant::now() < deadline, "download did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn markers_under(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().filter(|p| p.ends_with("complete.json")).collect()
}

fn part_files_under(dir: &Path) -> Vec<String> {
    tree(dir).into_iter().filter(|p| p.ends_with(".part")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_mid_download_leaves_no_marker_and_the_next_run_completes() {
    let mut moto = Moto::start();
    moto.create_bucket("kill-server");
    let files = synthetic_model(20 * MIB, 10);
    upload(&moto, "kill-server", "m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    proxy.set_throttle(MIB as u64);
    let dir = TempDir::new("kill-server");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let uri = "s3://kill-server/m/";

    let pull = tokio::spawn({
        let cache = cache.clone();
        async move { cache.ensure(uri).await }
    });
    wait_for_bytes(&proxy, 4 * MIB as u64).await;
    moto.kill();
    let err = pull.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(markers_under(dir.path()).is_empty(), "no completion marker after a failed pull");
    assert!(cache.list().iter().all(|e| !e.complete));

    // The server comes back (empty, as moto keeps data in memory): same objects uploaded again.
    let moto = Moto::start();
    moto.create_bucket("kill-server");
    upload(&moto, "kill-server", "m", &files, true).await;
    proxy.set_upstream(moto.port);
    proxy.set_throttle(0);
    let model = cache.ensure(uri).await.unwrap();
    assert_eq!(model.outcome, Outcome::Miss);
    assert_same_files(&model.path, &files);
    assert!(part_files_under(dir.path()).is_empty());
    assert!(cache.verify().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_sigkilled_mid_download_leaves_no_marker_and_the_next_run_completes() {
    let moto = moto::shared();
    moto.create_bucket("kill-client");
    let files = synthetic_model(20 * MIB, 11);
    upload(moto, "kill-client", "m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    proxy.set_throttle(MIB as u64);
    let dir = TempDir::new("kill-client");
    let uri = "s3://kill-client/m/";

    let mut child = child_command(dir.path(), &proxy.endpoint(), uri).spawn().unwrap();
    wait_for_bytes(&proxy, 4 * MIB as u64).await;
    child.start_kill().unwrap(); // SIGKILL
    child.wait().await.unwrap();

    assert!(markers_under(dir.path()).is_empty(), "no completion marker after a kill");
    assert!(!part_files_under(dir.path()).is_empty(), "the kill happened mid-download");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let problems = cache.verify();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].problem, Problem::Incomplete);

    proxy.set_throttle(0);
    let model = cache.ensure(uri).await.unwrap();
    assert_eq!(model.outcome, Outcome::Miss);
    assert_same_files(&model.path, &files);
    assert!(part_files_under(dir.path()).is_empty(), "temp files cleaned up");
    assert!(cache.verify().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_of_an_interrupted_download_are_removed_by_gc() {
    let moto = moto::shared();
    moto.create_bucket("leftover");
    let files = synthetic_model(8 * MIB, 12);
    upload(moto, "leftover", "m", &files, false).await;
    let proxy = Proxy::start(moto.port).await;
    proxy.set_throttle(MIB as u64);
    let dir = TempDir::new("leftover");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();

    let pull = tokio::spawn({
        let cache = cache.clone();
        async move { cache.ensure("s3://leftover/m").await }
    });
    wait_for_bytes(&proxy, 2 * MIB as u64).await;
    pull.abort(); // a cancelled future: as abrupt as it gets inside one process
    let _ = pull.await;
    assert!(markers_under(dir.path()).is_empty());

    let report = cache.gc();
    assert_eq!(report.removed.len(), 1, "{report:?}");
    assert!(!report.removed[0].complete);
    assert!(cache.list().is_empty());
    assert!(part_files_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_with_a_complete_copy_starts_offline() {
    let moto = moto::shared();
    moto.create_bucket("offline");
    let files = synthetic_model(3 * MIB, 13);
    upload(moto, "offline", "m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("offline");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    drop(cache.ensure("s3://offline/m").await.unwrap());

    proxy.stop();
    let t = Instant::now();
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let model = cache.ensure("s3://offline/m").await.unwrap();
    eprintln!("offline start took {:?}", t.elapsed());
    assert_eq!(model.outcome, Outcome::Offline);
    assert_same_files(&model.path, &files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_without_a_copy_is_a_clear_retryable_error() {
    let proxy = Proxy::start(free_port()).await;
    proxy.stop();
    let dir = TempDir::new("down");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let t = Instant::now();
    let err = cache.ensure("s3://down/m").await.unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(30), "gave up after {:?}", t.elapsed());
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("no complete copy is cached"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_file_is_reported_by_verify_and_repaired_by_the_next_ensure() {
    let moto = moto::shared();
    moto.create_bucket("corrupt");
    let files = synthetic_model(6 * MIB, 14);
    upload(moto, "corrupt", "m", &files, true).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("corrupt");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let path = cache.ensure("s3://corrupt/m").await.unwrap().path;

    // Bit rot: content changes, size and mtime do not (the cheap check on a hit cannot see it).
    let model_bin = path.join("model.bin");
    let mtime = std::fs::metadata(&model_bin).unwrap().modified().unwrap();
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&model_bin).unwrap();
        f.write_all_at(b"garbage!", 3 * MIB as u64).unwrap();
        f.set_modified(mtime).unwrap();
    }
    let problems = cache.verify();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].path.ends_with("model.bin"));
    assert!(matches!(problems[0].problem, Problem::ChecksumMismatch { .. }));

    proxy.clear();
    let model = cache.ensure("s3://corrupt/m").await.unwrap();
    assert_eq!(model.outcome, Outcome::Repaired);
    assert_same_files(&model.path, &files);
    assert_eq!(proxy.object_gets("/corrupt/m/model.bin").len(), 3);
    assert!(proxy.object_gets("/corrupt/m/tokenizer.json").is_empty(), "only the damaged file is fetched");
    assert!(cache.verify().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_file_is_noticed_by_ensure_itself() {
    let moto = moto::shared();
    moto.create_bucket("tamper");
    let files = synthetic_model(MIB, 15);
    upload(moto, "tamper", "m", &files, false).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("tamper");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();
    let path = cache.ensure("s3://tamper/m").await.unwrap().path;

    std::fs::write(path.join("tokenizer.json"), b"{}").unwrap();
    proxy.clear();
    let model = cache.ensure("s3://tamper/m").await.unwrap();
    assert_eq!(model.outcome, Outcome::Repaired);
    assert_same_files(&model.path, &files);
    assert_eq!(proxy.object_gets("/tamper/m/tokenizer.json").len(), 1);
    assert!(proxy.object_gets("/tamper/m/model.bin").is_empty());
}

/// After a rejected download: no completion marker, and `model.bin` never reached `model/`.
fn assert_model_bin_never_in_place(dir: &Path) {
    assert!(markers_under(dir).is_empty());
    assert!(!tree(dir).iter().any(|p| p.ends_with("model/model.bin")), "never put in place");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksum_mismatch_after_a_second_fetch_is_corrupt() {
    let moto = moto::shared();
    moto.create_bucket("bad-sums");
    let files = synthetic_model(MIB, 16);
    upload(moto, "bad-sums", "m", &files, false).await;
    let mut lying = files.clone();
    lying.insert("model.bin".into(), random_bytes(MIB, 99));
    moto.put("bad-sums", "m/sha256sums", &checksums(&lying)).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("bad-sums");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();

    let err = cache.ensure("s3://bad-sums/m").await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert_eq!(proxy.object_gets("/bad-sums/m/model.bin").len(), 2, "fetched again once");
    assert_model_bin_never_in_place(dir.path());
}

/// Files of many small ranges fetched 8 at a time (so they complete out of order), one
/// smaller than a range, one empty: each is hashed while it downloads, and the marker records
/// the true SHA-256 of every file, whether or not `sha256sums` lists it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_hashed_while_downloading_record_their_true_sha256() {
    let moto = moto::shared();
    moto.create_bucket("hash-along");
    let mut files = synthetic_model(5 * MIB + 12_345, 21);
    files.insert("empty.bin".into(), Vec::new());
    files.insert("small.bin".into(), random_bytes(1000, 22));
    upload(moto, "hash-along", "m", &files, false).await;
    // sha256sums lists all but one file; that one is hashed all the same.
    let mut listed = files.clone();
    listed.remove("tokenizer.json");
    moto.put("hash-along", "m/sha256sums", &checksums(&listed)).await;
    let dir = TempDir::new("hash-along");
    let mut cfg = config(dir.path(), &moto.endpoint());
    cfg.chunk_size = 64 * 1024;
    cfg.concurrency = 8;
    let cache = ModelCache::new(cfg).unwrap();

    let model = cache.ensure("s3://hash-along/m").await.unwrap();
    assert_eq!(model.outcome, Outcome::Miss);
    assert_same_files(&model.path, &files);
    let markers = markers_under(dir.path());
    assert_eq!(markers.len(), 1, "{markers:?}");
    let marker: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join(&markers[0])).unwrap()).unwrap();
    for (name, data) in &files {
        let rec = marker["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} not in the marker"));
        assert_eq!(rec["sha256"], sha256_hex(data), "{name}");
        assert_eq!(rec["size"], data.len(), "{name}");
    }
    assert!(part_files_under(dir.path()).is_empty());
}

/// A file of many ranges whose content does not match `sha256sums` is rejected after the
/// download, fetched once more, then reported as corrupt; it is never put in place and no
/// temp file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_range_checksum_mismatch_is_never_put_in_place() {
    let moto = moto::shared();
    moto.create_bucket("bad-sums-ranges");
    let files = synthetic_model(3 * MIB + 777, 23);
    upload(moto, "bad-sums-ranges", "m", &files, false).await;
    let mut lying = files.clone();
    let mut wrong = files["model.bin"].clone();
    let last = wrong.len() - 1;
    wrong[last] ^= 1;
    lying.insert("model.bin".into(), wrong);
    moto.put("bad-sums-ranges", "m/sha256sums", &checksums(&lying)).await;
    let proxy = Proxy::start(moto.port).await;
    let dir = TempDir::new("bad-sums-ranges");
    let mut cfg = config(dir.path(), &proxy.endpoint());
    cfg.chunk_size = 256 * 1024;
    cfg.concurrency = 8;
    let cache = ModelCache::new(cfg).unwrap();

    let err = cache.ensure("s3://bad-sums-ranges/m").await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert_eq!(proxy.object_gets("/bad-sums-ranges/m/model.bin").len(), 2 * 13, "13 ranges, fetched twice");
    assert_model_bin_never_in_place(dir.path());
    assert!(part_files_under(dir.path()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_is_a_clear_error() {
    let mount = TempDir::new("disk-full");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mount.path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        eprintln!("cannot mount a small tmpfs here (needs root): disk-full test not run");
        return;
    }
    let moto = moto::shared();
    moto.create_bucket("disk-full");
    let files = synthetic_model(4 * MIB, 17);
    upload(moto, "disk-full", "m", &files, false).await;
    let cache = ModelCache::new(config(mount.path(), &moto.endpoint())).unwrap();
    let err = cache.ensure("s3://disk-full/m").await.unwrap_err();
    let marker_count = markers_under(mount.path()).len();
    let _ = std::process::Command::new("umount").arg(mount.path()).status();
    assert!(matches!(err, Error::DiskFull { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(marker_count, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_replaced_during_the_download_is_not_mixed_in() {
    let moto = moto::shared();
    moto.create_bucket("replaced");
    let files = synthetic_model(16 * MIB, 18);
    upload(moto, "replaced", "m", &files, false).await;
    let proxy = Proxy::start(moto.port).await;
    proxy.set_throttle(MIB as u64);
    let dir = TempDir::new("replaced");
    let cache = ModelCache::new(config(dir.path(), &proxy.endpoint())).unwrap();

    let pull = tokio::spawn({
        let cache = cache.clone();
        async move { cache.ensure("s3://replaced/m").await }
    });
    wait_for_bytes(&proxy, 2 * MIB as u64).await;
    let mut v2 = files.clone();
    v2.insert("model.bin".into(), random_bytes(16 * MIB, 19));
    moto.put("replaced", "m/model.bin", &v2["model.bin"]).await;
    let err = pull.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Changed { .. }), "{err:?}");
    assert!(err.is_retryable());
    assert!(markers_under(dir.path()).is_empty());

    proxy.set_throttle(0);
    let model = cache.ensure("s3://replaced/m").await.unwrap();
    assert_same_files(&model.path, &v2);
}
