//! `vad_filter` for sequential decoding, as faster-whisper's `transcribe(vad_filter=True)`:
//! Silero VAD finds speech, the speech is cut out and joined, the joined audio is transcribed
//! like any other, and segment times are mapped back to the original audio. Silence and music
//! never reach the decoder, so it cannot hallucinate text over them.

use super::backend::WhisperBackend;
use super::transcriber::Transcriber;
use super::DecodeOptions;
use crate::audio::SAMPLE_RATE;
use crate::error::{Error, Result};
use crate::transcript::Transcript;
use crate::vad::{collect_chunks, speech_timestamps, SpeechChunk, TimestampMap};

impl<B: WhisperBackend> Transcriber<B> {
    pub(super) fn transcribe_speech(&self, samples: &[f32], options: &DecodeOptions) -> Result<Transcript> {
        let speech = self.speech_chunks(samples, &options.vad_parameters.unwrap_or_default())?;
        let joined = collect_chunks(samples, &speech, usize::MAX).swap_remove(0).samples;
        let mut transcript = self.transcribe(&joined, &DecodeOptions { vad_filter: Some(false), ..options.clone() })?;
        let map = TimestampMap::new(&speech);
        for segment in &mut transcript.segments {
            segment.start = map.original_time(segment.start, false);
            segment.end = map.original_time(segment.end, true);
        }
        transcript.duration = samples.len() as f64 / f64::from(SAMPLE_RATE);
        transcript.duration_after_vad = Some(joined.len() as f64 / f64::from(SAMPLE_RATE));
        Ok(transcript)
    }

    /// Speech in `samples` as Silero VAD finds it with `vad_options`.
    pub(super) fn speech_chunks(&self, samples: &[f32], vad_options: &crate::vad::VadOptions) -> Result<Vec<SpeechChunk>> {
        vad_options.validate()?;
        let vad = self.vad.as_ref().ok_or_else(|| {
            Error::Model("no Silero VAD weights are loaded (TINGXIE_VAD_MODEL; scripts/fetch-vad.sh fetches them): vad_filter and batch_size need them".into())
        })?;
        Ok(speech_timestamps(&vad.probabilities(samples), samples.len(), vad_options))
    }
}
