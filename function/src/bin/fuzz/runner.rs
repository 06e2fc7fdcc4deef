//! The fuzzing loop: seeds first, then mutations of the corpus, each input timed, measured and
//! run under `catch_unwind`. Inputs that reach an outcome not seen before join the corpus
//! (the outcome label is this fuzzer's stand-in for coverage feedback), at most a few per class
//! of outcome, as messages that echo input make new labels without new behaviour.

use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::input::{self, Input};
use super::rng::Rng;
use super::watchdog::Watchdog;
use super::{alloc, known, mutate, panics, rss, Target};

/// An outcome class is the start of its label (`err:model: tensor _ missing`, ...) ...
const CLASS_CHARS: usize = 48;
/// ... and each class admits this many inputs with new labels to the corpus.
const PER_CLASS: usize = 32;
/// Outcome labels remembered per target: enough to steer, bounded in memory.
const MAX_OUTCOMES: usize = 100_000;
/// The corpus's size in memory (beyond it, new entries replace old ones).
const MAX_CORPUS_BYTES: usize = 64 << 20;

pub struct Settings {
    /// Mutated inputs per target (the seeds come on top); with `seconds`, whichever ends first.
    pub inputs: Option<u64>,
    pub seconds: Option<f64>,
    pub seed: u64,
    pub hang: Duration,
    pub rss_limit: u64,
    pub crash_dir: PathBuf,
    pub fixtures: PathBuf,
    pub max_corpus: usize,
    /// Known bugs ([`known`]) fail the target like any other.
    pub strict: bool,
    /// Prints each new outcome label (to see what the fuzzer reaches).
    pub verbose: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub target: &'static str,
    pub seeds: usize,
    pub inputs: u64,
    pub seconds: f64,
    pub corpus: usize,
    pub outcomes: usize,
    pub panics: u64,
    /// Panics at a site listed in [`known`] (not fixed yet; not failures unless `--strict`).
    pub known: u64,
    pub known_sites: Vec<(String, u64)>,
    /// Panics the code under test caught itself (the service survives them), by site.
    pub contained: u64,
    pub contained_sites: Vec<(String, u64)>,
    pub hangs: u64,
    pub over_memory: u64,
    pub slowest_cpu: Duration,
    pub peak_heap: usize,
    pub peak_rss: u64,
    /// What failed, and where the input was saved.
    pub failure: Option<String>,
}

/// One input's run.
struct Run {
    label: String,
    panic: Option<String>,
    contained: Option<String>,
    wall: Duration,
    cpu: Duration,
    heap: usize,
    refused: usize,
}

pub fn fuzz(target: &mut dyn Target, settings: &Settings, watchdog: &Watchdog) -> Report {
    let name = target.name();
    let dir = settings.crash_dir.join(name);
    std::fs::create_dir_all(&dir).expect("create the crash folder");
    alloc::set_dump_path(&dir.join("over-memory-current.bin"));
    rss::reset_peak();
    let mut report = Report { target: name, ..Report::default() };
    let mut rng = Rng::new(settings.seed ^ fnv(name.as_bytes()));
    let mut corpus = target.seeds(&settings.fixtures);
    report.seeds = corpus.len();
    assert!(!corpus.is_empty(), "{name}: no seeds");
    let mut seen = HashSet::new();
    let mut admitted_per_class: HashMap<String, usize> = HashMap::new();
    let mut corpus_bytes: usize = corpus.iter().flatten().map(Vec::len).sum();
    let started = Instant::now();
    let deadline = settings.seconds.map(|s| started + Duration::from_secs_f64(s));
    let mut last_progress = Instant::now();
    let mut n = 0u64;
    loop {
        let input = if (n as usize) < report.seeds {
            corpus[n as usize].clone()
        } else {
            let parent = &corpus[rng.below(corpus.len())];
            let donor = &corpus[rng.below(corpus.len())];
            mutate::mutate(&mut rng, parent, target.kinds(), donor)
        };
        let encoded = input::encode(&input);
        let run = run_one(target, &input, &encoded, &dir, watchdog);
        if (n as usize) >= report.seeds {
            report.inputs += 1;
        }
        n += 1;
        report.slowest_cpu = report.slowest_cpu.max(run.cpu);
        report.peak_heap = report.peak_heap.max(run.heap);
        if let Some(failure) = judge(target, &input, &encoded, &run, settings, &dir, watchdog, &mut report) {
            report.failure = Some(failure);
            break;
        }
        if let Some(msg) = &run.contained {
            report.contained += 1;
            let site = msg.rsplit(" at ").next().unwrap_or(msg);
            count_first(&mut report.contained_sites, site, || {
                save(&dir, "contained", &encoded, name, msg);
            });
        }
        let label = normalise(&run.label);
        if settings.verbose && !seen.contains(&label) {
            eprintln!("  {name}: new outcome {label}");
        }
        let class: String = label.chars().take(CLASS_CHARS).collect();
        let new = if seen.len() < MAX_OUTCOMES { seen.insert(label) } else { !seen.contains(&label) };
        let admitted = admitted_per_class.get(&class).copied();
        let room = admitted.map_or(admitted_per_class.len() < MAX_OUTCOMES, |a| a < PER_CLASS);
        if new && room && (n as usize) > report.seeds {
            admitted_per_class.insert(class, admitted.unwrap_or(0) + 1);
            let size = input.iter().map(Vec::len).sum::<usize>();
            if corpus.len() < settings.max_corpus && corpus_bytes + size <= MAX_CORPUS_BYTES {
                corpus.push(input);
                corpus_bytes += size;
            } else if corpus.len() > report.seeds {
                // Seeds stay; a random later entry makes room.
                let at = report.seeds + rng.below(corpus.len() - report.seeds);
                corpus_bytes = corpus_bytes + size - corpus[at].iter().map(Vec::len).sum::<usize>();
                corpus[at] = input;
            }
        }
        if n.is_multiple_of(256) {
            let now = Instant::now();
            if settings.inputs.is_some_and(|max| report.inputs >= max) || deadline.is_some_and(|d| now >= d) {
                break;
            }
            if now.duration_since(last_progress) > Duration::from_secs(30) {
                last_progress = now;
                let secs = now.duration_since(started).as_secs_f64();
                eprintln!("  {name}: {} inputs, {:.0}/s, corpus {}", report.inputs, report.inputs as f64 / secs, corpus.len());
            }
            let rss = rss::peak();
            if rss > settings.rss_limit {
                report.failure = Some(format!("peak RSS {} MiB passed the limit of {} MiB", rss >> 20, settings.rss_limit >> 20));
                break;
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.corpus = corpus.len();
    report.outcomes = seen.len();
    report.peak_rss = rss::peak();
    if report.failure.is_none() && report.peak_rss > settings.rss_limit {
        report.failure = Some(format!("peak RSS {} MiB passed the limit of {} MiB", report.peak_rss >> 20, settings.rss_limit >> 20));
    }
    report
}

/// A failure's description (the input saved), or None when the run was fine.
#[allow(clippy::too_many_arguments)]
fn judge(
    target: &mut dyn Target,
    input: &Input,
    encoded: &[u8],
    run: &Run,
    settings: &Settings,
    dir: &std::path::Path,
    watchdog: &Watchdog,
    report: &mut Report,
) -> Option<String> {
    let name = target.name();
    if let Some(msg) = &run.panic {
        if let Some(bug) = known::matching(name, msg).filter(|_| !settings.strict) {
            report.known += 1;
            count_first(&mut report.known_sites, bug.pattern, || {
                eprintln!("  {name}: known bug hit ({msg}): {}", bug.why);
                save(dir, "known", encoded, name, msg);
            });
            return None;
        }
        report.panics += 1;
        return Some(match msg.strip_prefix("property: ") {
            Some(property) => save(dir, "property", encoded, name, property),
            None => save(dir, "panic", encoded, name, msg),
        });
    }
    let limit = target.memory_limit();
    if run.heap > limit || run.refused > 0 {
        report.over_memory += 1;
        let msg = format!("heap peak {} MiB (refused {} bytes); limit {} MiB", run.heap >> 20, run.refused, limit >> 20);
        return Some(save(dir, "memory", encoded, name, &msg));
    }
    // CPU time first (a busy machine stretches wall time); wall time if it repeats on a rerun.
    let slow = |r: &Run| r.cpu > settings.hang || r.wall > settings.hang;
    if slow(run) {
        let again = run_one(target, input, encoded, dir, watchdog);
        if run.cpu > settings.hang || slow(&again) {
            report.hangs += 1;
            let msg = format!(
                "took {:?} CPU, {:?} wall (rerun: {:?} CPU, {:?} wall); limit {:?}",
                run.cpu, run.wall, again.cpu, again.wall, settings.hang
            );
            return Some(save(dir, "hang", encoded, name, &msg));
        }
    }
    None
}

fn run_one(target: &mut dyn Target, input: &Input, encoded: &[u8], dir: &std::path::Path, watchdog: &Watchdog) -> Run {
    watchdog.enter(encoded, dir.join(format!("hang-{:016x}.bin", fnv(encoded))));
    let panics_before = panics::count();
    let cpu_start = thread_cpu();
    let wall_start = Instant::now();
    let base = alloc::begin_input(encoded, target.memory_limit());
    let result = panic::catch_unwind(AssertUnwindSafe(|| target.run(input)));
    let (heap, refused) = alloc::end_input(base);
    let (wall, cpu) = (wall_start.elapsed(), thread_cpu().saturating_sub(cpu_start));
    watchdog.leave();
    let (label, panic) = match result {
        Ok(label) => (label, None),
        Err(_) => ("panic".to_string(), Some(panics::last())),
    };
    let contained = (panic.is_none() && panics::count() != panics_before).then(panics::last);
    Run { label, panic, contained, wall, cpu, heap, refused }
}

/// Counts one more hit of `key`; `first` runs on its first hit (to save that input).
fn count_first(counts: &mut Vec<(String, u64)>, key: &str, first: impl FnOnce()) {
    match counts.iter_mut().find(|(k, _)| k == key) {
        Some((_, n)) => *n += 1,
        None => {
            first();
            counts.push((key.to_string(), 1));
        }
    }
}

/// CPU time of this thread.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Outcome labels without numbers, quoted input or lists: `offset 17` and `offset 18` are the
/// same outcome, and so are two messages that quote different field values or shapes.
fn normalise(label: &str) -> String {
    let mut out = String::new();
    let mut chars = label.chars();
    while let Some(c) = chars.next() {
        let close = match c {
            '"' => '"',
            '`' => '`',
            '[' => ']',
            '(' => ')',
            c if c.is_ascii_digit() => continue,
            c => {
                out.push(c);
                if out.len() >= 100 {
                    break;
                }
                continue;
            }
        };
        // Skip to the closing character, past backslash escapes.
        while let Some(d) = chars.next() {
            if d == '\\' {
                chars.next();
            } else if d == close {
                break;
            }
        }
        out.push('_');
    }
    out
}

/// Writes the input (`KIND-HASH.bin`, replayable with `--replay`) and a note beside it with
/// the message and the input as base64; returns the description for the report.
fn save(dir: &std::path::Path, kind: &str, encoded: &[u8], target: &str, msg: &str) -> String {
    let path = dir.join(format!("{kind}-{:016x}.bin", fnv(encoded)));
    let note = format!(
        "target: {target}\nkind: {kind}\nmessage: {msg}\nreplay: tingxie-fuzz --target {target} --replay {}\ninput (sections framed as u32 LE length + bytes), base64:\n{}\n",
        path.display(),
        base64::engine::general_purpose::STANDARD.encode(encoded)
    );
    let written = std::fs::write(&path, encoded).and_then(|_| std::fs::write(path.with_extension("txt"), note));
    if let Err(e) = written {
        eprintln!("tingxie-fuzz: cannot save {}: {e}", path.display());
    }
    format!("{kind}: {msg} (input: {})", path.display())
}

pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
