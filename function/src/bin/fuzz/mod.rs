//! The in-process fuzzer behind `tingxie-fuzz`: targets, a mutator and the loop that runs them.
//! cargo-fuzz needs nightly and AFL++ needs clang, neither of which the build machines have, so
//! this is a mutation fuzzer on stable Rust: seeds from the fixtures, deterministic mutations,
//! outcome labels in place of coverage to choose which inputs to keep.

pub mod alloc;
pub mod input;
pub mod json;
pub mod known;
pub mod mutate;
pub mod panics;
pub mod rng;
pub mod rss;
pub mod runner;
pub mod targets;
pub mod watchdog;

use std::path::Path;

use input::{Input, Kind};

/// Something to fuzz: one parser or reader of untrusted bytes, and the seeds to start from.
pub trait Target {
    fn name(&self) -> &'static str;
    /// What each section of an input holds (how the mutator treats it).
    fn kinds(&self) -> &'static [Kind];
    /// Seed inputs; `fixtures` is the shared fixtures folder (it may be missing).
    fn seeds(&self, fixtures: &Path) -> Vec<Input>;
    /// Runs one input. Panics are failures; so are broken properties (they panic with a
    /// message starting `property:`). The label names the outcome (`ok`, an error class):
    /// an input that reaches a label not seen before joins the corpus.
    fn run(&mut self, input: &Input) -> String;
    /// Heap one input may hold at its peak.
    fn memory_limit(&self) -> usize {
        1 << 30
    }
}

/// A label for an error: its message (the runner drops numbers and quoted input from it).
pub fn error_label(prefix: &str, error: &dyn std::fmt::Display) -> String {
    format!("{prefix}:{error}")
}
