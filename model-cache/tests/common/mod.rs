//! Test helpers: moto, a counting proxy, synthetic models, temp folders, child processes.
#![allow(dead_code)]

pub mod http;
pub mod moto;
pub mod proxy;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tingxie_model_cache::CacheConfig;

pub use moto::{free_port, Moto};
pub use proxy::Proxy;

pub const MIB: usize = 1024 * 1024;

/// A folder removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("mc-test-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Deterministic pseudo-random bytes (xorshift), fast enough for tens of MB.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// A Whisper-like model folder: a large `model.bin` and three small files.
pub fn synthetic_model(model_bin_len: usize, seed: u64) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    files.insert("config.json".into(), br#"{"d_model": 384, "synthetic": true}"#.to_vec());
    files.insert("model.bin".into(), random_bytes(model_bin_len, seed));
    files.insert("tokenizer.json".into(), random_bytes(200_000, seed + 1));
    files.insert("vocabulary.txt".into(), b"hello\nworld\n".repeat(1000));
    files
}

/// `sha256sum` output for `files`.
pub fn checksums(files: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    files.iter().map(|(n, d)| format!("{}  {n}\n", sha256_hex(d))).collect::<String>().into_bytes()
}

/// Uploads `files` under `prefix/`, plus `prefix/sha256sums` when `with_sums`.
pub async fn upload(moto: &Moto, bucket: &str, prefix: &str, files: &BTreeMap<String, Vec<u8>>, with_sums: bool) {
    for (name, data) in files {
        moto.put(bucket, &format!("{prefix}/{name}"), data).await;
    }
    if with_sums {
        moto.put(bucket, &format!("{prefix}/sha256sums"), &checksums(files)).await;
    }
}

/// A cache configuration pointing at an S3 endpoint (moto, usually through a proxy), with
/// small chunks so that a 20 MB file takes several ranged GETs, no splitting, and quick give-up
/// on errors.
pub fn config(cache_dir: &Path, endpoint: &str) -> CacheConfig {
    let mut c = CacheConfig::new(cache_dir)
        .with_store_option("endpoint", endpoint)
        .with_store_option("allow_http", "true")
        .with_store_option("access_key_id", "test")
        .with_store_option("secret_access_key", "test")
        .with_store_option("region", "us-east-1")
        .with_store_option("virtual_hosted_style_request", "false");
    c.chunk_size = 2 * MIB as u64;
    // GET counts stay exact; tests of splitting turn it on.
    c.split_after = None;
    c.concurrency = 4;
    c.retries = 2;
    c.retry_timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(30);
    c
}

/// Asserts that `dir` holds exactly `files`, byte for byte.
pub fn assert_same_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in files {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(got == *data, "{name} differs from the source ({} vs {} bytes)", got.len(), data.len());
    }
}

/// Every file path below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                out.push(p.strip_prefix(base).unwrap().display().to_string());
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(base, &p, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Runs this test binary again as a child process that resolves one model through the
/// cache (see `child_process_entry` in the tests) and prints its result.
pub fn child_command(cache_dir: &Path, endpoint: &str, uri: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env("TINGXIE_TEST_CHILD_CACHE", cache_dir)
        .env("TINGXIE_TEST_CHILD_ENDPOINT", endpoint)
        .env("TINGXIE_TEST_CHILD_URI", uri)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The `CHILD_RESULT …` line of a child's output.
pub fn child_result(stdout: &[u8]) -> Option<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .find_map(|l| l.split_once("CHILD_RESULT ").map(|(_, json)| json))
        .and_then(|j| serde_json::from_str(j).ok())
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
}
