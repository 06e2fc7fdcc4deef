//! tingxie: speech-to-text for Knative, with Whisper running on burn.

pub mod audio;
pub mod catalog;
pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod events;
pub mod history;
pub mod hmac;
pub mod kernels;
pub mod metrics;
pub mod objects;
pub mod oidc;
pub mod output;
pub mod server;
pub mod service;
pub mod startup;
pub mod tenants;
pub mod transcript;
pub mod vad;
pub mod whisper;

pub use error::{Error, Result};
