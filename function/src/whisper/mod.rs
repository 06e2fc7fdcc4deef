//! Whisper speech recognition in burn: checkpoint loading, front-end, network, decoding.
//! Knows nothing of HTTP; see `crate::engine` for how requests reach it.

pub mod backend;
pub mod batched;
pub mod config;
pub mod decoding;
pub mod mel;
pub mod model;
pub mod preempt;
pub mod session;
mod simd;
mod speech;
pub mod suppress;
pub mod tokenizer;
pub mod transcriber;
pub mod weights;

pub use config::WhisperConfig;
pub use decoding::options::{DecodeOptions, Task, ZhScript};
pub use transcriber::Transcriber;
