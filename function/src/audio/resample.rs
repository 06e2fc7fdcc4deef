//! Sample-rate conversion to 16 kHz with rubato's FFT (windowed-sinc) resampler, one chunk at a
//! time as the decoder produces samples: what is held is the 16 kHz output plus one chunk of
//! input, whatever the input's rate or length.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};

use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Largest magnitude handed to the FFT: far past full scale, so over-range float audio reaches
/// the final clamp unchanged, yet small enough that no FFT sum overflows to infinity.
const MAX_MAGNITUDE: f32 = 65_536.0;

/// Mono samples at `rate` in, 16 kHz out. Output sample `k` lines up with input time
/// `k / 16000` (the resampler's delay is trimmed) and [`To16k::finish`] keeps
/// `round(n * 16000 / rate)` samples. The chunks are those `process_all` would cut from the
/// whole clip, so the output is the same as resampling it in one call.
pub(super) struct To16k {
    rate: u32,
    /// None at 16 kHz: samples pass through unchanged.
    fft: Option<Fft<f32>>,
    /// Input not yet a whole chunk.
    pending: Vec<f32>,
    /// One chunk's output, before the delay is trimmed.
    scratch: Vec<f32>,
    /// Leading output frames (the resampler's delay) still to drop.
    to_trim: usize,
    /// Output frames produced, the trimmed ones included.
    produced: usize,
    frames_in: u64,
    out: Vec<f32>,
}

impl To16k {
    /// `capacity`: 16 kHz samples to reserve for the output.
    pub(super) fn new(rate: u32, capacity: usize) -> Result<To16k> {
        let fft = (rate != SAMPLE_RATE).then(|| fft(rate)).transpose()?;
        let (pending, scratch, to_trim) = match &fft {
            Some(f) => (Vec::with_capacity(f.input_frames_max()), vec![0.0; f.output_frames_max()], f.output_delay()),
            None => (Vec::new(), Vec::new(), 0),
        };
        Ok(To16k { rate, fft, pending, scratch, to_trim, produced: 0, frames_in: 0, out: Vec::with_capacity(capacity) })
    }

    /// The input's rate.
    pub(super) fn rate(&self) -> u32 {
        self.rate
    }

    /// Input frames taken so far.
    pub(super) fn frames_in(&self) -> u64 {
        self.frames_in
    }

    /// Output samples so far.
    pub(super) fn output_len(&self) -> usize {
        self.out.len()
    }

    pub(super) fn push(&mut self, mut input: &[f32]) -> Result<()> {
        self.frames_in += input.len() as u64;
        let Some(fft) = &self.fft else {
            self.out.extend_from_slice(input);
            return Ok(());
        };
        let chunk = fft.input_frames_next();
        while !input.is_empty() {
            let take = (chunk - self.pending.len()).min(input.len());
            // A float WAV may hold NaN, infinities or huge values; any of them makes the FFT's
            // output NaN, which rubato answers with a panic. NaN becomes silence (as it does at
            // 16 kHz).
            self.pending.extend(input[..take].iter().map(|s| if s.is_nan() { 0.0 } else { s.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE) }));
            input = &input[take..];
            if self.pending.len() == chunk {
                self.process()?;
            }
        }
        Ok(())
    }

    /// Flushes the resampler's tail; the 16 kHz samples.
    pub(super) fn finish(mut self) -> Result<Vec<f32>> {
        let n = self.frames_in;
        let (rate_in, rate_out) = (u64::from(self.rate), u64::from(SAMPLE_RATE));
        if let Some(fft) = &self.fft {
            // As process_all: the partial last chunk, then silence until the output covers the
            // input's length (the ratio's ceiling) past the delay.
            let expected = (fft.resample_ratio() * n as f64).ceil() as usize + fft.output_delay();
            if !self.pending.is_empty() {
                self.process()?;
            }
            while self.produced < expected {
                self.process()?;
            }
        }
        let want = (u128::from(n) * u128::from(rate_out) + u128::from(rate_in) / 2) / u128::from(rate_in);
        self.out.truncate(usize::try_from(want).unwrap_or(usize::MAX));
        if self.out.is_empty() {
            return Err(Error::InvalidAudio(format!("audio is too short ({n} samples at {} Hz)", self.rate)));
        }
        Ok(self.out)
    }

    /// Resamples what is pending (a short chunk is padded with silence) and empties it.
    fn process(&mut self) -> Result<()> {
        let fft = self.fft.as_mut().expect("process is only called with a resampler");
        let rate = self.rate;
        let err = |e: &dyn std::fmt::Display| Error::InvalidAudio(format!("resampling from {rate} Hz failed: {e}"));
        let frames = self.pending.len();
        let input = InterleavedSlice::new(&self.pending[..], 1, frames).map_err(|e| err(&e))?;
        let out_frames = self.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut self.scratch[..], 1, out_frames).map_err(|e| err(&e))?;
        let indexing = Indexing::new().partial_len(frames);
        let (_, made) = fft.process_into_buffer(&input, &mut output, Some(&indexing)).map_err(|e| err(&e))?;
        let skip = self.to_trim.min(made);
        self.to_trim -= skip;
        self.produced += made;
        self.out.extend_from_slice(&self.scratch[skip..made]);
        self.pending.clear();
        Ok(())
    }
}

/// One FFT block per chunk, a whole number of `rate / gcd` frames. At least ~2048 frames put the
/// anti-alias cutoff near 0.98 of the lower Nyquist frequency. The sinc is centred on sample
/// `len / 2` of the block: with an odd block that is half an input sample off the delay rubato
/// reports and trims, so the block count is made even.
pub(super) fn fft(rate: u32) -> Result<Fft<f32>> {
    let (rate_in, rate_out) = (rate as usize, SAMPLE_RATE as usize);
    let gcd = gcd(rate_in, rate_out);
    let (min_in, min_out) = (rate_in / gcd, rate_out / gcd);
    let blocks = 2048usize.div_ceil(min_in.min(min_out)).next_multiple_of(2);
    let window = WindowFunction::BlackmanHarris2;
    Fft::<f32>::new_custom(rate_in, rate_out, blocks * min_in, 1, 1, window, FixedSync::Input)
        .map_err(|e| Error::InvalidAudio(format!("resampling from {rate} Hz failed: {e}")))
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
