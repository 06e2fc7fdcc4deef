//! Sample-rate conversion to 16 kHz with rubato's FFT (windowed-sinc) resampler.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};

use super::SAMPLE_RATE;
use crate::error::{Error, Result};

/// Largest magnitude handed to the FFT: far past full scale, so over-range float audio reaches
/// the final clamp unchanged, yet small enough that no FFT sum overflows to infinity.
const MAX_MAGNITUDE: f32 = 65_536.0;

/// Resamples to [`SAMPLE_RATE`], trimming the resampler's delay so output sample `k` lines up
/// with input time `k / 16000`, and keeping `round(n * 16000 / rate)` samples.
pub(super) fn resample(mut samples: Vec<f32>, rate: u32) -> Result<Vec<f32>> {
    if rate == SAMPLE_RATE {
        return Ok(samples);
    }
    // A float WAV may hold NaN, infinities or huge values; any of them makes the FFT's output
    // NaN, which rubato answers with a panic. NaN becomes silence (as it does at 16 kHz).
    for s in &mut samples {
        *s = if s.is_nan() { 0.0 } else { s.clamp(-MAX_MAGNITUDE, MAX_MAGNITUDE) };
    }
    let n = samples.len();
    let (rate_in, rate_out) = (rate as usize, SAMPLE_RATE as usize);
    let gcd = gcd(rate_in, rate_out);
    // One FFT block per chunk, a whole number of `rate / gcd` frames. At least ~2048 frames put
    // the anti-alias cutoff near 0.98 of the lower Nyquist frequency. The sinc is centred on
    // sample `len / 2` of the block: with an odd block that is half an input sample off the
    // delay rubato reports and trims, so the block count is made even.
    let (min_in, min_out) = (rate_in / gcd, rate_out / gcd);
    let blocks = 2048usize.div_ceil(min_in.min(min_out)).next_multiple_of(2);
    let resample_err = |e: &dyn std::fmt::Display| Error::InvalidAudio(format!("resampling from {rate} Hz failed: {e}"));
    let window = WindowFunction::BlackmanHarris2;
    let mut resampler =
        Fft::<f32>::new_custom(rate_in, rate_out, blocks * min_in, 1, 1, window, FixedSync::Input).map_err(|e| resample_err(&e))?;
    let input = InterleavedSlice::new(&samples[..], 1, n).map_err(|e| resample_err(&e))?;
    // process_all flushes the tail and drops the first `output_delay()` frames.
    let mut out = resampler.process_all(&input, n, None).map_err(|e| resample_err(&e))?.take_data();
    let want = ((n as u128 * rate_out as u128 + rate_in as u128 / 2) / rate_in as u128) as usize;
    out.truncate(want);
    if out.is_empty() {
        return Err(Error::InvalidAudio(format!("audio is too short ({n} samples at {rate} Hz)")));
    }
    Ok(out)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}
