//! `tingxie-fuzz`: fuzzes the parsers that read untrusted bytes (CloudEvents and webhooks, the
//! multipart reader, the audio decoders, the checkpoint readers, the model cache's URI and
//! manifest parsers) with a mutation fuzzer that runs on stable Rust. See FUZZING.md.
//!
//! `tingxie-fuzz --target all --seconds 300` runs each target for 5 minutes; a panic, an input
//! over the time limit or the memory limit stops that target, saves the input under
//! `fuzz-crashes/TARGET/` and makes the exit status 1. `--replay FILE` runs saved inputs again.

mod fuzz;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use fuzz::runner::{self, Report, Settings};
use fuzz::watchdog::Watchdog;

#[global_allocator]
static ALLOC: fuzz::alloc::Counting = fuzz::alloc::Counting;

#[derive(Parser)]
#[command(about = "Fuzzes tingxie's parsers of untrusted input (see FUZZING.md)")]
struct Cli {
    /// A target, a comma-separated list of them, or `all`: events, multipart, audio, ct2,
    /// safetensors, uri, manifest.
    #[arg(long, default_value = "all")]
    target: String,
    /// Mutated inputs per target (the seeds come on top).
    #[arg(long)]
    inputs: Option<u64>,
    /// Seconds per target; with --inputs, whichever ends first. Default: 10 when neither is set.
    #[arg(long)]
    seconds: Option<f64>,
    /// Seed of the mutator: the same seed and count replay the same inputs.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The shared fixtures folder (audio seeds).
    #[arg(long, env = "TINGXIE_FIXTURES", default_value = "../shared/fixtures")]
    fixtures: PathBuf,
    /// Where failing inputs are saved (a folder per target).
    #[arg(long, default_value = "fuzz-crashes")]
    crashes: PathBuf,
    /// An input that runs longer than this (CPU time, or wall time twice) is a hang.
    #[arg(long, default_value_t = 1.0)]
    hang_seconds: f64,
    /// The process's resident set may not pass this (MiB).
    #[arg(long, default_value_t = 2048)]
    rss_limit_mib: u64,
    /// Corpus entries kept per target.
    #[arg(long, default_value_t = 4096)]
    max_corpus: usize,
    /// Known bugs (see fuzz/known.rs) fail the run like any other panic.
    #[arg(long)]
    strict: bool,
    /// Prints each new outcome a target reaches.
    #[arg(long)]
    verbose: bool,
    /// Writes each target's seeds to DIR/TARGET/seed-N.bin (the saved-input format) and exits.
    #[arg(long, value_name = "DIR")]
    write_seeds: Option<PathBuf>,
    /// Runs these saved inputs once each (with the ordinary panic message) instead of fuzzing.
    #[arg(long, num_args = 1..)]
    replay: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let names: Vec<&str> = if cli.target == "all" { fuzz::targets::NAMES.to_vec() } else { cli.target.split(',').map(str::trim).collect() };
    let mut targets = Vec::new();
    for name in &names {
        match fuzz::targets::by_name(name) {
            Some(t) => targets.push(t),
            None => {
                eprintln!("unknown target {name:?}; targets: {}, all", fuzz::targets::NAMES.join(", "));
                return ExitCode::from(2);
            }
        }
    }
    if !cli.replay.is_empty() {
        return replay(&mut targets, &cli.replay);
    }
    if let Some(dir) = &cli.write_seeds {
        for target in &targets {
            let folder = dir.join(target.name());
            std::fs::create_dir_all(&folder).expect("create the seed folder");
            for (i, seed) in target.seeds(&cli.fixtures).iter().enumerate() {
                std::fs::write(folder.join(format!("seed-{i}.bin")), fuzz::input::encode(seed)).expect("write a seed");
            }
        }
        return ExitCode::SUCCESS;
    }
    fuzz::panics::install_recorder(false);
    let hang = Duration::from_secs_f64(cli.hang_seconds);
    let settings = Settings {
        inputs: cli.inputs,
        seconds: cli.seconds.or(if cli.inputs.is_none() { Some(10.0) } else { None }),
        seed: cli.seed,
        hang,
        rss_limit: cli.rss_limit_mib << 20,
        crash_dir: cli.crashes.clone(),
        fixtures: cli.fixtures.clone(),
        max_corpus: cli.max_corpus,
        strict: cli.strict,
        verbose: cli.verbose,
    };
    // Far past the hang limit: whatever is still running then will not return.
    let watchdog = Watchdog::start((hang * 10).max(Duration::from_secs(10)));
    let mut reports = Vec::new();
    for target in &mut targets {
        eprintln!("fuzzing {} ...", target.name());
        let report = runner::fuzz(target.as_mut(), &settings, &watchdog);
        eprintln!("{}", one_line(&report));
        reports.push(report);
    }
    println!("{}", table(&reports));
    if reports.iter().any(|r| r.failure.is_some()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn one_line(r: &Report) -> String {
    let status = r.failure.as_deref().unwrap_or("ok");
    format!(
        "  {}: {} inputs + {} seeds in {:.1} s ({:.0}/s), corpus {}, outcomes {}, known bugs hit {}, contained panics {}{}, slowest {:.1} ms CPU, peak heap {:.1} MiB, peak RSS {:.0} MiB: {status}",
        r.target,
        r.inputs,
        r.seeds,
        r.seconds,
        r.inputs as f64 / r.seconds.max(1e-9),
        r.corpus,
        r.outcomes,
        r.known,
        r.contained,
        r.contained_sites.iter().map(|(site, n)| format!(" ({n} at {site})")).collect::<String>(),
        r.slowest_cpu.as_secs_f64() * 1e3,
        r.peak_heap as f64 / f64::from(1 << 20),
        r.peak_rss as f64 / f64::from(1 << 20),
    )
}

/// The summary as a Markdown table (FUZZING.md keeps one).
fn table(reports: &[Report]) -> String {
    let mut out = String::from("| target | inputs | inputs/s | panics | hangs (> limit) | over memory | known bugs hit | contained panics | slowest input (CPU) | peak heap / input | peak RSS | result |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for r in reports {
        out += &format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} ms | {:.1} MiB | {:.0} MiB | {} |\n",
            r.target,
            r.inputs,
            r.inputs as f64 / r.seconds.max(1e-9),
            r.panics,
            r.hangs,
            r.over_memory,
            r.known,
            r.contained,
            r.slowest_cpu.as_secs_f64() * 1e3,
            r.peak_heap as f64 / f64::from(1 << 20),
            r.peak_rss as f64 / f64::from(1 << 20),
            if r.failure.is_some() { "FAILED" } else { "ok" },
        );
    }
    out
}

/// Runs saved inputs through the target (one target: the files name no target). Any panic
/// fails, even one the code under test caught itself.
fn replay(targets: &mut [Box<dyn fuzz::Target>], files: &[PathBuf]) -> ExitCode {
    let [target] = targets else {
        eprintln!("--replay needs exactly one --target");
        return ExitCode::from(2);
    };
    fuzz::panics::install_recorder(true);
    let mut failed = false;
    for file in files {
        let bytes = std::fs::read(file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
        let input = fuzz::input::decode(&bytes).unwrap_or_else(|| panic!("{} is not a saved input", file.display()));
        let started = std::time::Instant::now();
        let panics = fuzz::panics::count();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(&input)));
        let verdict = match outcome {
            Err(_) => "PANIC".to_string(),
            Ok(_) if fuzz::panics::count() != panics => "CONTAINED PANIC".to_string(),
            Ok(label) => label,
        };
        failed |= fuzz::panics::count() != panics;
        println!("{}: {verdict} ({:?})", file.display(), started.elapsed());
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
