//! `tingxie cache …` subcommands, for the tingxie binary to mount:
//!
//! ```ignore
//! #[derive(clap::Subcommand)]
//! enum Command { #[command(subcommand)] Cache(tingxie_model_cache::cli::CacheCommand), … }
//! // …
//! Command::Cache(cmd) => std::process::exit(cli::run(cmd, CacheConfig::from_env()).await?),
//! ```
//! Results go to stdout as JSON lines (one per model, entry or problem); progress and
//! warnings go through `tracing`, which the binary formats (JSON logs or a terminal).

use clap::Subcommand;

use crate::{CacheConfig, ModelCache, Result};

#[derive(Debug, Clone, Subcommand)]
pub enum CacheCommand {
    /// Download a model into the node cache (init containers, node pre-warm).
    Prefetch {
        /// Model URI, e.g. s3://bucket/models/whisper-tiny-en/
        uri: String,
    },
    /// List cached models.
    Ls,
    /// Remove leftovers of interrupted downloads and evict least recently used models above
    /// the size limit.
    Gc,
    /// Re-hash every cached file; damaged files are reported and deleted (exit code 1).
    Verify,
}

/// Runs one subcommand; returns the process exit code.
pub async fn run(cmd: CacheCommand, config: CacheConfig) -> Result<i32> {
    let cache = ModelCache::new(config)?;
    let line = |v: serde_json::Value| println!("{v}");
    match cmd {
        CacheCommand::Prefetch { uri } => {
            let model = cache.prefetch(&uri).await?;
            line(serde_json::json!({
                "uri": model.uri,
                "path": model.path,
                "version": model.version,
                "outcome": model.outcome,
                "bytes_downloaded": model.bytes_downloaded,
                "elapsed_s": model.elapsed.as_secs_f64(),
            }));
            Ok(0)
        }
        CacheCommand::Ls => {
            let entries = blocking(move || cache.list()).await;
            entries.iter().for_each(|e| line(serde_json::to_value(e).expect("entry serialises")));
            Ok(0)
        }
        CacheCommand::Gc => {
            let report = blocking(move || cache.gc()).await;
            line(serde_json::to_value(&report).expect("report serialises"));
            Ok(0)
        }
        CacheCommand::Verify => {
            let problems = blocking(move || cache.verify()).await;
            problems.iter().for_each(|p| line(serde_json::to_value(p).expect("problem serialises")));
            Ok(if problems.is_empty() { 0 } else { 1 })
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("blocking task panicked")
}
