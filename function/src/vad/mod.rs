//! Voice activity detection: Silero VAD v6 on burn ([`SileroVad`]) and faster-whisper's use of
//! it ([`speech_timestamps`], [`collect_chunks`], [`TimestampMap`]): speech found, cut out and
//! joined for the decoder, and the decoder's times mapped back to the original audio.

mod model;
mod timestamps;

pub use model::{SileroVad, FRAME_SAMPLES, WEIGHTS_FILE};
pub use timestamps::{collect_chunks, python_round, speech_timestamps, Piece, SpeechChunk, TimestampMap, VadOptions};
