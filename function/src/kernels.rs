//! Kernels compiled at run time by the JIT backends (CUDA, wgpu; CubeCL underneath): where
//! CubeCL keeps what it compiled and tuned, and how much it compiled.
//!
//! CubeCL persists its autotune results and (CUDA) the PTX it compiled; the driver turns PTX
//! into machine code and keeps that under `CUDA_CACHE_PATH`. All three live under
//! `TINGXIE_KERNEL_CACHE_DIR` (default `$TINGXIE_CACHE_DIR/kernels`, the node's hostPath), in
//! a folder named by GPU model and tingxie version, because CubeCL's keys hold neither. CubeCL
//! does not coordinate appends between processes, so one process per node writes (the one
//! holding `writer.lock`, normally the pre-warm DaemonSet or the first pod); the others work
//! on a private copy of what the writer has stored so far. A cache that cannot be written is
//! a warning and a private temporary folder, never a failure.
//!
//! Counting: CubeCL's compilation and autotune loggers write one entry per kernel compiled and
//! per tuning run to per-process files, whose entries [`counts`] reads.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::device::DeviceKind;

/// Kernels compiled and autotune runs, since the process started or between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct KernelCounts {
    pub kernels_compiled: u64,
    pub autotune_runs: u64,
}

impl std::ops::Sub for KernelCounts {
    type Output = KernelCounts;
    fn sub(self, earlier: KernelCounts) -> KernelCounts {
        KernelCounts {
            kernels_compiled: self.kernels_compiled.saturating_sub(earlier.kernels_compiled),
            autotune_runs: self.autotune_runs.saturating_sub(earlier.autotune_runs),
        }
    }
}

/// How this process uses the node's kernel cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheRole {
    /// Reads and extends the node's cache (holds `writer.lock`).
    Writer(PathBuf),
    /// Another process writes the node's cache; this one started from a copy of it.
    Reader { node: PathBuf, copy: PathBuf },
    /// No node cache (unwritable, or CubeCL was configured before): a private folder.
    Private(PathBuf),
}

struct Kernels {
    role: CacheRole,
    compile_log: PathBuf,
    autotune_log: PathBuf,
    /// Held for the life of the process: the writer's lock.
    _lock: Option<File>,
}

static KERNELS: OnceLock<Kernels> = OnceLock::new();

/// `kernels` in the node's model cache (`TINGXIE_CACHE_DIR`): where `TINGXIE_KERNEL_CACHE_DIR`
/// points when it is not set.
pub fn default_root() -> PathBuf {
    tingxie_model_cache::CacheConfig::from_env().cache_dir.join("kernels")
}

/// Points CubeCL at the kernel cache under `root` for `device` and turns the counters on.
/// Call before the device is first used; later calls return the first call's role.
pub fn configure(root: &Path, device: DeviceKind) -> CacheRole {
    KERNELS.get_or_init(|| set_up(root, device)).role.clone()
}

/// Counts so far, when [`configure`] ran (CubeCL's logger thread writes a little after each
/// compilation: see [`settled_counts`]).
pub fn counts() -> Option<KernelCounts> {
    let kernels = KERNELS.get()?;
    Some(KernelCounts {
        kernels_compiled: occurrences(&kernels.compile_log, "[Compiling kernel]"),
        autotune_runs: occurrences(&kernels.autotune_log, "Fastest result"),
    })
}

/// [`counts`] once they stop changing: after CubeCL's logger thread has written what it was
/// sent (up to half a second).
pub fn settled_counts() -> Option<KernelCounts> {
    let mut last = counts()?;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(25));
        let now = counts()?;
        if now == last {
            break;
        }
        last = now;
    }
    Some(last)
}

fn occurrences(path: &Path, needle: &str) -> u64 {
    std::fs::read_to_string(path).map(|text| text.matches(needle).count() as u64).unwrap_or(0)
}

fn set_up(root: &Path, device: DeviceKind) -> Kernels {
    let folder = root.join(gpu_model(device)).join(concat!("tingxie-", env!("CARGO_PKG_VERSION")));
    let private = std::env::temp_dir().join(format!("tingxie-kernels-{}", std::process::id()));
    let (role, lock) = choose_role(&folder, &private);
    let dir = match &role {
        CacheRole::Writer(dir) | CacheRole::Private(dir) | CacheRole::Reader { copy: dir, .. } => dir.clone(),
    };
    let logs = std::env::temp_dir().join(format!("tingxie-kernel-logs-{}", std::process::id()));
    let (compile_log, autotune_log) = (logs.join("compile.log"), logs.join("autotune.log"));
    let usable = std::fs::create_dir_all(&dir).is_ok() && std::fs::create_dir_all(&logs).is_ok();
    for log in [&compile_log, &autotune_log] {
        let _ = std::fs::remove_file(log);
    }
    if usable {
        set_cubecl_config(&dir, &compile_log, &autotune_log);
        if matches!(device, DeviceKind::Cuda(_)) && std::env::var_os("CUDA_CACHE_PATH").is_none() {
            // The driver's PTX -> machine code cache (its largest allowed size).
            std::env::set_var("CUDA_CACHE_PATH", dir.join("driver"));
            std::env::set_var("CUDA_CACHE_MAXSIZE", "4294967296");
        }
    } else {
        tracing::warn!(cache = %dir.display(), "no writable folder for kernels; caches and counters off");
    }
    tracing::info!(role = ?role, "kernel cache");
    Kernels { role, compile_log, autotune_log, _lock: lock }
}

/// The writer of `folder` (with its lock), a reader working on a copy of it in `private`, or,
/// when `folder` cannot be used, `private` alone. Never fails: a cache is an optimisation.
fn choose_role(folder: &Path, private: &Path) -> (CacheRole, Option<File>) {
    match claim(folder) {
        Ok(Some(lock)) => (CacheRole::Writer(folder.to_path_buf()), Some(lock)),
        Ok(None) => match copy_tree(folder, private) {
            Ok(()) => (CacheRole::Reader { node: folder.to_path_buf(), copy: private.to_path_buf() }, None),
            Err(e) => {
                tracing::warn!(cache = %folder.display(), error = %e, "cannot copy the node's kernel cache; compiling into a private folder");
                (CacheRole::Private(private.to_path_buf()), None)
            }
        },
        Err(e) => {
            tracing::warn!(cache = %folder.display(), error = %e, "kernel cache not writable; compiling into a private folder");
            (CacheRole::Private(private.to_path_buf()), None)
        }
    }
}

/// Creates `folder` and takes its writer lock: `Some` when this process is the writer.
fn claim(folder: &Path) -> std::io::Result<Option<File>> {
    std::fs::create_dir_all(folder)?;
    let lock = File::options().create(true).truncate(false).write(true).open(folder.join("writer.lock"))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != "writer.lock" {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The configuration is process-wide and fixed once CubeCL first reads it: set it in code, so
/// a `cubecl.toml` in the working directory cannot redirect the caches.
fn set_cubecl_config(dir: &Path, compile_log: &Path, autotune_log: &Path) {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    {
        use burn::cubecl::config::autotune::{AutotuneLevel, AutotuneLogLevel};
        use burn::cubecl::config::cache::CacheConfig;
        use burn::cubecl::config::compilation::CompilationLogLevel;
        use burn::cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

        let mut config = CubeClRuntimeConfig::default();
        config.autotune.cache = CacheConfig::File(dir.to_path_buf());
        config.autotune.level = AutotuneLevel::Minimal;
        config.autotune.logger.level = AutotuneLogLevel::Minimal;
        config.autotune.logger.file = Some(autotune_log.to_path_buf());
        config.compilation.cache = Some(CacheConfig::File(dir.to_path_buf()));
        config.compilation.logger.level = CompilationLogLevel::Basic;
        config.compilation.logger.file = Some(compile_log.to_path_buf());
        // CubeCL panics when its configuration was read before (a device already in use).
        if std::panic::catch_unwind(|| CubeClRuntimeConfig::set(config)).is_err() {
            tracing::warn!("CubeCL was configured before tingxie could set its kernel cache");
        }
    }
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    let _ = (dir, compile_log, autotune_log);
}

/// A folder name for the GPU: its model for CUDA (from the NVIDIA driver's /proc entries,
/// which need no CUDA call), the backend's name otherwise.
fn gpu_model(device: DeviceKind) -> String {
    let model = match device {
        DeviceKind::Cuda(_) => nvidia_model().unwrap_or_else(|| "cuda".into()),
        other => other.to_string(),
    };
    model.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c.to_ascii_lowercase() } else { '-' }).collect()
}

fn nvidia_model() -> Option<String> {
    let mut models: Vec<String> = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()?
        .flatten()
        .filter_map(|gpu| std::fs::read_to_string(gpu.path().join("information")).ok())
        .filter_map(|info| info.lines().find_map(|l| l.strip_prefix("Model:").map(|m| m.trim().to_string())))
        .collect();
    models.sort();
    models.dedup();
    match models.len() {
        0 => None,
        1 => models.pop(),
        _ => Some("mixed-gpus".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_per_folder_the_others_copy_and_an_unusable_folder_is_private() {
        let base = std::env::temp_dir().join(format!("tingxie-kernel-roles-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (folder, private) = (base.join("node/gpu/tingxie-x"), base.join("private"));

        let (first, lock) = choose_role(&folder, &base.join("unused"));
        assert_eq!(first, CacheRole::Writer(folder.clone()));
        std::fs::create_dir_all(folder.join("autotune/0.10.0")).unwrap();
        std::fs::write(folder.join("autotune/0.10.0/matmul.json.log"), "tuned").unwrap();

        // While the writer holds its lock, another process reads a copy (the lock is per open
        // file, so a second open in this process stands for another process).
        let (second, none) = choose_role(&folder, &private);
        assert_eq!(second, CacheRole::Reader { node: folder.clone(), copy: private.clone() });
        assert!(none.is_none());
        assert_eq!(std::fs::read_to_string(private.join("autotune/0.10.0/matmul.json.log")).unwrap(), "tuned");
        assert!(!private.join("writer.lock").exists());

        // The writer gone, the next process writes.
        drop(lock);
        assert_eq!(choose_role(&folder, &private).0, CacheRole::Writer(folder.clone()));

        // A folder that cannot be created (below a file): private, no panic.
        let blocked = base.join("a-file");
        std::fs::write(&blocked, "").unwrap();
        assert_eq!(choose_role(&blocked.join("gpu"), &private).0, CacheRole::Private(private.clone()));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn gpu_folder_names_are_safe_path_segments() {
        assert_eq!(gpu_model(DeviceKind::Wgpu), "wgpu");
        let name = gpu_model(DeviceKind::Cuda(0));
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'), "{name}");
    }
}
