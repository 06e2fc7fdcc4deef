//! Cold-start phases: how long each step from process exec to ready took. Logged once as one
//! JSON line and exported as `tingxie_cold_start_phase_seconds{phase}`.

use std::time::{Duration, Instant};

/// Phases in the order they happen; their sum is the time from exec to ready.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Phases {
    phases: Vec<(&'static str, f64)>,
    #[serde(skip)]
    mark: Option<Instant>,
}

impl Phases {
    /// Starts the clock, counting the time the process ran before `main` as phase `exec`.
    pub fn start() -> Phases {
        let mut phases = Phases { phases: Vec::new(), mark: Some(Instant::now()) };
        if let Some(age) = process_age() {
            phases.phases.push(("exec", age.as_secs_f64()));
        }
        phases
    }

    /// Ends the current phase, naming it.
    pub fn lap(&mut self, name: &'static str) -> Duration {
        let now = Instant::now();
        let took = now - self.mark.unwrap_or(now);
        self.mark = Some(now);
        self.phases.push((name, took.as_secs_f64()));
        took
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, f64)> + '_ {
        self.phases.iter().copied()
    }

    pub fn total(&self) -> f64 {
        self.phases.iter().map(|(_, s)| s).sum()
    }

    /// `{"exec": 0.004, "config": 0.001, ..., "total": 0.25}`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, seconds) in &self.phases {
            map.insert((*name).to_string(), serde_json::json!(seconds));
        }
        map.insert("total".into(), serde_json::json!(self.total()));
        serde_json::Value::Object(map)
    }
}

/// Keeps memory the process frees mapped, for its next allocation, instead of handing it back
/// to the kernel. Call first thing in `main`; true when the allocator took the settings.
///
/// glibc serves blocks above its mmap threshold (128 KiB, raised only as such blocks are freed)
/// with fresh mappings and unmaps them on free, and trims the heap top above 128 KiB. The
/// encoder makes a new tensor of megabytes per op, so each pass paid a page fault per 4 KiB it
/// touched: 88,000 faults and 0.37 s of kernel time to transcribe one 5 s file. With blocks up
/// to 32 MiB (glibc's most) from the heap and the top trimmed only above 256 MiB, the pages stay
/// mapped from one op and one request to the next (38,000 faults, most of them the first
/// pass). RSS then stays near its peak between requests.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; both values are within glibc's limits.
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1 && libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Time since the kernel started this process (Linux: /proc/self/stat field 22, in clock
/// ticks since boot, against /proc/uptime). 10 ms resolution.
#[cfg(target_os = "linux")]
fn process_age() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let start_ticks: f64 = after_name.split(' ').nth(19)?.parse().ok()?;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime").ok()?.split(' ').next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks_per_second > 0.0).then(|| Duration::from_secs_f64((uptime - start_ticks / ticks_per_second).max(0.0)))
}

#[cfg(not(target_os = "linux"))]
fn process_age() -> Option<Duration> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn the_allocator_takes_the_settings() {
        assert!(keep_freed_memory());
    }

    #[test]
    fn phases_add_up() {
        let mut p = Phases::start();
        std::thread::sleep(Duration::from_millis(20));
        p.lap("one");
        p.lap("two");
        let sum: f64 = p.iter().map(|(_, s)| s).sum();
        assert!((p.total() - sum).abs() < 1e-12);
        assert!(p.iter().any(|(n, s)| n == "one" && s >= 0.02));
        assert!(p.iter().any(|(n, _)| n == "exec"), "process age is read on Linux");
        assert_eq!(p.to_json()["total"].as_f64().unwrap(), p.total());
    }
}
