//! Picks the burn backend at run time: burn's CPU backend (flex) everywhere, CUDA where the
//! binary was built with the `cuda` feature and a GPU is asked for.

use std::path::Path;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::transcript::Transcript;
use crate::whisper::{DecodeOptions, Transcriber};

pub type CpuBackend = burn::backend::Flex;
#[cfg(feature = "cuda")]
pub type CudaBackend = burn::backend::Cuda;

/// `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = || Error::InvalidArgument { field: "device", reason: format!("`{s}`: expected cpu, cuda or cuda:N") };
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" | "gpu" => Ok(DeviceKind::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceKind::Cuda)
                .ok_or_else(invalid),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceKind::Cpu => write!(f, "cpu"),
            DeviceKind::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A transcriber on whichever backend was chosen.
pub enum AnyTranscriber {
    Cpu(Transcriber<CpuBackend>),
    #[cfg(feature = "cuda")]
    Cuda(Transcriber<CudaBackend>),
}

impl AnyTranscriber {
    pub fn load(dir: &Path, device: DeviceKind) -> Result<Self> {
        match device {
            DeviceKind::Cpu => Ok(AnyTranscriber::Cpu(Transcriber::load(dir, &Default::default())?)),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda(index) => {
                let device = burn::backend::cuda::CudaDevice::new(index);
                Ok(AnyTranscriber::Cuda(Transcriber::load(dir, &device)?))
            }
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda(_) => Err(Error::InvalidArgument {
                field: "device",
                reason: "this binary was built without the `cuda` feature".into(),
            }),
        }
    }

    pub fn transcribe(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        match self {
            AnyTranscriber::Cpu(t) => t.transcribe(samples, options),
            #[cfg(feature = "cuda")]
            AnyTranscriber::Cuda(t) => t.transcribe(samples, options),
        }
    }
}

/// Sizes the CPU thread pool once per process (burn's CPU kernels run on rayon).
pub fn set_cpu_threads(threads: usize) {
    // Fails only if the pool already exists, which leaves the earlier size in place.
    let _ = rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build_global();
}
