//! `prefetch URI`: what `tingxie cache prefetch` does, without the rest of tingxie. For
//! benchmarks and manual checks; configuration from `TINGXIE_CACHE_*` and `AWS_*`.

use clap::Parser;
use tingxie_model_cache::cli::{run, CacheCommand};
use tingxie_model_cache::CacheConfig;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: CacheCommand,
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let args = Args::parse();
    match run(args.cmd, CacheConfig::from_env()).await {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
