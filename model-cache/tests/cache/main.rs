//! Integration tests against a real S3-protocol server (moto, started here) behind a counting
//! proxy. One test binary, so one shared moto; tests that kill a server start their own.

#[path = "../common/mod.rs"]
mod common;

mod crash;
mod eviction;
mod pull;
mod safety;

use tingxie_model_cache::ModelCache;

/// Not a test of its own: the body of the child processes that `common::child_command`
/// starts (the "other pod"). Without its environment variables it does nothing.
#[test]
fn child_process_entry() {
    let Ok(uri) = std::env::var("TINGXIE_TEST_CHILD_URI") else {
        return;
    };
    let cache_dir = std::env::var("TINGXIE_TEST_CHILD_CACHE").unwrap();
    let endpoint = std::env::var("TINGXIE_TEST_CHILD_ENDPOINT").unwrap();
    common::init_tracing();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let result = rt.block_on(async {
        let cache = ModelCache::new(common::config(cache_dir.as_ref(), &endpoint)).unwrap();
        cache.ensure(&uri).await
    });
    let line = match result {
        Ok(m) => serde_json::json!({
            "ok": true,
            "outcome": m.outcome.as_str(),
            "path": m.path,
            "bytes": m.bytes_downloaded,
        }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    };
    println!("CHILD_RESULT {line}");
}
