//! Picks the burn backend at run time: burn's CPU backend (flex) everywhere, CUDA or wgpu where
//! the binary was built with their feature and the device is asked for.

use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::transcript::Transcript;
use crate::whisper::{DecodeOptions, Transcriber};

pub type CpuBackend = burn::backend::Flex;
pub use crate::whisper::backend::GenericCpu;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;
#[cfg(feature = "wgpu")]
pub type WgpuBackend = burn::backend::Wgpu;

/// `cpu` (tingxie's CPU kernels), `cpu-generic` (the CPU through the implementation every GPU
/// runs: for tests), `cuda` / `cuda:N`, or `wgpu` (Vulkan; Mesa's software driver on a machine
/// without a GPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    CpuGeneric,
    Cuda(usize),
    Wgpu,
}

impl DeviceKind {
    /// Whether kernels are compiled at run time (and so worth warming up and caching).
    pub fn compiles_kernels(self) -> bool {
        matches!(self, DeviceKind::Cuda(_) | DeviceKind::Wgpu)
    }
}

impl FromStr for DeviceKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid =
            || Error::InvalidArgument { field: "device", reason: format!("`{s}`: expected cpu, cpu-generic, cuda, cuda:N or wgpu") };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cpu-generic" => Ok(DeviceKind::CpuGeneric),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(0)),
            "wgpu" => Ok(DeviceKind::Wgpu),
            other => other.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(DeviceKind::Cuda).ok_or_else(invalid),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => write!(f, "cpu"),
            DeviceKind::CpuGeneric => write!(f, "cpu-generic"),
            DeviceKind::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceKind::Wgpu => write!(f, "wgpu"),
        }
    }
}

/// A transcriber on whichever backend was chosen.
pub enum AnyTranscriber {
    Cpu(Transcriber<CpuBackend>),
    CpuGeneric(Transcriber<GenericCpu>),
    #[cfg(feature = "cuda")]
    Cuda(Transcriber<CudaBackend>),
    #[cfg(feature = "wgpu")]
    Wgpu(Transcriber<WgpuBackend>),
}

/// Runs `$body` with `$t` bound to the transcriber, whatever its backend.
macro_rules! each_backend {
    ($any:expr, $t:ident => $body:expr) => {
        match $any {
            AnyTranscriber::Cpu($t) => $body,
            AnyTranscriber::CpuGeneric($t) => $body,
            #[cfg(feature = "cuda")]
            AnyTranscriber::Cuda($t) => $body,
            #[cfg(feature = "wgpu")]
            AnyTranscriber::Wgpu($t) => $body,
        }
    };
}

#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
fn not_built(feature: &str) -> Error {
    Error::InvalidArgument { field: "device", reason: format!("this binary was built without the `{feature}` feature") }
}

impl AnyTranscriber {
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self> {
        match device {
            DeviceKind::Cpu => Ok(AnyTranscriber::Cpu(Transcriber::load(dir, &Default::default())?)),
            DeviceKind::CpuGeneric => Ok(AnyTranscriber::CpuGeneric(Transcriber::load(dir, &Default::default())?)),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda(index) => {
                let device = burn::backend::cuda::CudaDevice::new(index);
                Ok(AnyTranscriber::Cuda(Transcriber::load(dir, &device)?))
            }
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda(_) => Err(not_built("cuda")),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => Ok(AnyTranscriber::Wgpu(Transcriber::load(dir, &burn::backend::wgpu::WgpuDevice::DefaultDevice)?)),
            #[cfg(not(feature = "wgpu"))]
            DeviceKind::Wgpu => Err(not_built("wgpu")),
        }
    }

    pub fn has_vad(&self) -> bool {
        each_backend!(self, t => t.has_vad())
    }

    /// Adds Silero VAD from `dir` on the same device (for `vad_filter` and batches).
    pub fn add_vad(&mut self, dir: &Path) -> Result<()> {
        each_backend!(self, t => t.add_vad(dir))
    }

    pub fn transcribe(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        each_backend!(self, t => t.transcribe(samples, options))
    }

    /// Bytes of the weights as held on the device (f32).
    pub fn weight_bytes(&self) -> u64 {
        each_backend!(self, t => t.model.config.parameter_count() as u64 * 4)
    }
}

/// Runs the model once on every shape requests will use, so that a JIT backend compiles and
/// tunes its kernels before the first request: greedy windows with and without a prompt
/// (previous text), the fallback's sampling rows, beam search at `beam_size`, a batch of
/// `batch_size` windows, and Silero VAD's one pass shape.
pub fn warm_up(model: &AnyTranscriber, beam_size: usize, batch_size: usize) -> Result<()> {
    let silence = vec![0.0f32; crate::audio::SAMPLE_RATE as usize];
    // A few tokens per window: every step after the first has the shapes of the first.
    let short = DecodeOptions { max_new_tokens: Some(3), ..DecodeOptions::greedy() };
    for initial_prompt in [None, Some("warm up".to_string())] {
        model.transcribe(&silence, &DecodeOptions { initial_prompt, ..short.clone() })?;
    }
    // The temperature fallback's sampling rows (best_of).
    model.transcribe(&silence, &DecodeOptions { temperatures: vec![0.5], ..short.clone() })?;
    if beam_size > 1 {
        model.transcribe(&silence, &DecodeOptions { beam_size, ..short.clone() })?;
    }
    if batch_size > 0 {
        // Without the VAD, so that silence still makes a chunk to decode.
        model.transcribe(&silence, &DecodeOptions { batch_size, vad_filter: Some(false), ..short.clone() })?;
    }
    if model.has_vad() {
        model.transcribe(&silence, &DecodeOptions { vad_filter: Some(true), ..short })?;
    }
    Ok(())
}

/// Sizes the CPU thread pool once per process (burn's CPU kernels run on rayon).
pub fn set_cpu_threads(threads: usize) {
    // Fails only if the pool already exists, which leaves the earlier size in place.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global();
}
