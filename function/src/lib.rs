//! tingxie: speech-to-text for Knative, with Whisper running on burn.

pub mod audio;
pub mod device;
pub mod error;
pub mod output;
pub mod transcript;
pub mod whisper;

pub use error::{Error, Result};
