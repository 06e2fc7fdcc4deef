//! `tingxie-fuzz` in CI: a short fuzzing pass over every target, which must end with no failure
//! and a useful number of inputs per target, and the inputs fuzzing found to fail, replayed.
//! `make fuzz` runs the long pass (FUZZING.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Seconds per target: long enough for thousands of parser inputs, short enough for CI.
const SECONDS_PER_TARGET: &str = "3";
/// Fewer than this many inputs in that time means a target is stuck or far too slow.
const MIN_INPUTS: u64 = 100;
const TARGETS: [&str; 9] = ["events", "multipart", "audio", "ct2", "safetensors", "uri", "manifest", "tokens", "tenants"];

fn fuzz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tingxie-fuzz")).args(args).output().expect("run tingxie-fuzz")
}

fn fixtures() -> PathBuf {
    std::env::var_os("TINGXIE_FIXTURES")
        .map(Into::into)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"))
}

/// Saved inputs: `tests/fuzz-regressions/TARGET/*.bin` (fixed bugs) or `.../known/TARGET/*.bin`.
fn saved_inputs(folder: &Path) -> Vec<(String, Vec<String>)> {
    TARGETS
        .iter()
        .filter_map(|target| {
            let mut files: Vec<String> = std::fs::read_dir(folder.join(target))
                .ok()?
                .map(|e| e.expect("list saved inputs").path().to_string_lossy().into_owned())
                .filter(|p| p.ends_with(".bin"))
                .collect();
            files.sort();
            Some((target.to_string(), files))
        })
        .collect()
}

fn replay(folder: &Path) {
    let saved = saved_inputs(folder);
    assert!(!saved.is_empty(), "no saved inputs in {}", folder.display());
    for (target, files) in saved {
        let mut args = vec!["--target", &target, "--replay"];
        args.extend(files.iter().map(String::as_str));
        let out = fuzz(&args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{target}: a saved input fails again:\n{stdout}\n{stderr}");
    }
}

#[test]
fn every_target_survives_a_short_fuzzing_pass() {
    let crashes = std::env::temp_dir().join(format!("tingxie-fuzz-ci-{}", std::process::id()));
    let (fixtures, crash_dir) = (fixtures().to_string_lossy().into_owned(), crashes.to_string_lossy().into_owned());
    let out = fuzz(&["--target", "all", "--seconds", SECONDS_PER_TARGET, "--seed", "7", "--fixtures", &fixtures, "--crashes", &crash_dir]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "tingxie-fuzz failed (inputs saved in {crash_dir}):\n{stdout}\n{stderr}");
    // The summary table: `| target | inputs | ...`, one row per target.
    let rows: Vec<(&str, u64)> = stdout
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            Some((*cells.get(1)?, cells.get(2)?.parse().ok()?))
        })
        .collect();
    for target in TARGETS {
        let inputs = rows.iter().find(|(t, _)| *t == target).map(|(_, n)| *n);
        assert!(inputs.is_some_and(|n| n >= MIN_INPUTS), "{target}: {inputs:?} inputs (want >= {MIN_INPUTS})\n{stdout}\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&crashes);
}

/// Every input that once failed a target (and was fixed) passes.
#[test]
fn fixed_fuzzing_failures_stay_fixed() {
    replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions"));
}

/// The bugs of FUZZING.md's "Known bugs", in code outside the fuzz harness's reach: run with
/// `--ignored` once they are fixed, then move their inputs up to tests/fuzz-regressions/ and
/// take them off the list in src/bin/fuzz/known.rs.
#[test]
#[ignore = "known bugs, not fixed yet (FUZZING.md)"]
fn known_fuzzing_failures_are_fixed() {
    replay(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions/known"));
}
