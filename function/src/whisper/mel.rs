//! Log-mel front-end, exactly as faster-whisper computes it (see `../shared/fixtures/README.md`
//! section 6.1): 160 zero samples appended, centred STFT (reflect padding, periodic Hann,
//! n_fft 400, hop 160), last frame dropped, Slaney mel filters, log10, clamp to max - 8,
//! (x + 4) / 4. Windows are padded with 0.0 in the normalised domain.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

pub const SAMPLE_RATE: usize = crate::audio::SAMPLE_RATE as usize;
pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Frames in one 30 s window.
pub const WINDOW_FRAMES: usize = 3000;
/// Seconds per mel frame.
pub const FRAME_SECONDS: f64 = HOP_LENGTH as f64 / SAMPLE_RATE as f64;

/// A log-mel spectrogram, `n_mels` rows of `frames` values (row-major).
#[derive(Debug, Clone, PartialEq)]
pub struct LogMel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl LogMel {
    /// Frames the model may see: the final frame is never used (faster-whisper's `content_frames`).
    pub fn content_frames(&self) -> usize {
        self.frames.saturating_sub(1)
    }

    /// `[n_mels, 3000]` window starting at `seek`, holding `len` frames, zero-padded.
    pub fn window(&self, seek: usize, len: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n_mels * WINDOW_FRAMES];
        let len = len.min(WINDOW_FRAMES).min(self.frames.saturating_sub(seek));
        for m in 0..self.n_mels {
            let row = &self.data[m * self.frames + seek..m * self.frames + seek + len];
            out[m * WINDOW_FRAMES..m * WINDOW_FRAMES + len].copy_from_slice(row);
        }
        out
    }
}

/// Computes log-mel spectrograms; holds the FFT plan, window and filter bank.
pub struct MelFrontend {
    n_mels: usize,
    filters: Vec<f32>,
    window: Vec<f32>,
    fft: Arc<dyn Fft<f64>>,
}

impl MelFrontend {
    pub fn new(n_mels: usize) -> Self {
        // Periodic Hann: np.hanning(401)[:-1], computed in f64 and stored as f32 like numpy's cast.
        let window = (0..N_FFT).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / N_FFT as f64).cos()) as f32).collect();
        MelFrontend { n_mels, filters: slaney_mel_filters(n_mels), window, fft: FftPlanner::new().plan_fft_forward(N_FFT) }
    }

    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Log-mel of 16 kHz mono `samples`.
    pub fn compute(&self, samples: &[f32]) -> LogMel {
        let bins = N_FFT / 2 + 1;
        let padded = reflect_pad(samples);
        // Frames of the centred STFT over the padded signal, minus the last one.
        let frames = (padded.len() - N_FFT) / HOP_LENGTH + 1 - 1;
        let mut power = vec![0.0f32; frames * bins];
        let mut buffer = vec![Complex::new(0.0f64, 0.0); N_FFT];
        let mut scratch = vec![Complex::new(0.0f64, 0.0); self.fft.get_inplace_scratch_len()];
        for f in 0..frames {
            let start = f * HOP_LENGTH;
            for (i, slot) in buffer.iter_mut().enumerate() {
                *slot = Complex::new((padded[start + i] * self.window[i]) as f64, 0.0);
            }
            self.fft.process_with_scratch(&mut buffer, &mut scratch);
            for (b, value) in buffer[..bins].iter().enumerate() {
                let (re, im) = (value.re as f32, value.im as f32);
                power[f * bins + b] = re * re + im * im;
            }
        }
        let mut data = vec![0.0f32; self.n_mels * frames];
        for m in 0..self.n_mels {
            let filter = &self.filters[m * bins..(m + 1) * bins];
            for f in 0..frames {
                let spectrum = &power[f * bins..(f + 1) * bins];
                let energy: f32 = filter.iter().zip(spectrum).map(|(w, p)| w * p).sum();
                data[m * frames + f] = energy.max(1e-10).log10();
            }
        }
        let max = data.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for x in &mut data {
            *x = ((*x).max(max - 8.0) + 4.0) / 4.0;
        }
        LogMel { n_mels: self.n_mels, frames, data }
    }
}

/// Appends 160 zeros, then reflect-pads N_FFT/2 on both sides (numpy "reflect": edge not repeated).
fn reflect_pad(samples: &[f32]) -> Vec<f32> {
    let mut signal = samples.to_vec();
    signal.extend(std::iter::repeat_n(0.0, HOP_LENGTH));
    let half = N_FFT / 2;
    let n = signal.len();
    let reflect = |i: isize| -> f32 {
        // Reflection about the edges, repeated for signals shorter than the pad.
        let period = 2 * (n as isize - 1).max(1);
        let mut j = i.rem_euclid(period);
        if j >= n as isize {
            j = period - j;
        }
        signal[j as usize]
    };
    (-(half as isize)..(n + half) as isize).map(reflect).collect()
}

// The Slaney mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
const HZ_PER_MEL: f64 = 200.0 / 3.0;
const LOG_START_HZ: f64 = 1000.0;
const LOG_START_MEL: f64 = LOG_START_HZ / HZ_PER_MEL;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

fn hz_to_mel(hz: f64) -> f64 {
    if hz >= LOG_START_HZ {
        LOG_START_MEL + (hz / LOG_START_HZ).ln() / log_step()
    } else {
        hz / HZ_PER_MEL
    }
}

fn mel_to_hz(mel: f64) -> f64 {
    if mel >= LOG_START_MEL {
        LOG_START_HZ * (log_step() * (mel - LOG_START_MEL)).exp()
    } else {
        HZ_PER_MEL * mel
    }
}

/// Slaney-scale, Slaney-normalised triangular filters `[n_mels, N_FFT / 2 + 1]` (librosa's
/// `mel(sr=16000, n_fft=400, n_mels)`), computed in f64 and stored as f32.
fn slaney_mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = N_FFT / 2 + 1;
    let nyquist = SAMPLE_RATE as f64 / 2.0;
    let fft_freqs: Vec<f64> = (0..bins).map(|i| nyquist * i as f64 / (bins - 1) as f64).collect();
    let (mel_min, mel_max) = (hz_to_mel(0.0), hz_to_mel(nyquist));
    let mel_points: Vec<f64> = (0..n_mels + 2).map(|i| mel_to_hz(mel_min + (mel_max - mel_min) * i as f64 / (n_mels + 1) as f64)).collect();
    let mut filters = vec![0.0f32; n_mels * bins];
    for m in 0..n_mels {
        let (lo, center, hi) = (mel_points[m], mel_points[m + 1], mel_points[m + 2]);
        let norm = 2.0 / (hi - lo);
        for (b, &f) in fft_freqs.iter().enumerate() {
            let lower = (f - lo) / (center - lo);
            let upper = (hi - f) / (hi - center);
            filters[m * bins + b] = (lower.min(upper).max(0.0) * norm) as f32;
        }
    }
    filters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_librosa_shape_and_area_normalisation() {
        let filters = slaney_mel_filters(80);
        assert_eq!(filters.len(), 80 * 201);
        // Every filter is non-negative and non-empty.
        for m in 0..80 {
            let row = &filters[m * 201..(m + 1) * 201];
            assert!(row.iter().all(|&w| w >= 0.0));
            assert!(row.iter().any(|&w| w > 0.0), "filter {m} is empty");
        }
        // librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)[0, 1] = 0.02486259
        assert!((filters[1] - 0.024_862_59).abs() < 1e-6, "{}", filters[1]);
    }

    #[test]
    fn frames_follow_the_centred_stft_minus_one() {
        let frontend = MelFrontend::new(80);
        // 1 s: (16000 + 160 + 400 - 400) / 160 + 1 - 1 = 101 frames.
        let mel = frontend.compute(&vec![0.0; 16000]);
        assert_eq!(mel.frames, 101);
        assert_eq!(mel.content_frames(), 100);
        // All-zero audio: every value is the clamp floor (log10(1e-10) + 4) / 4.
        assert!(mel.data.iter().all(|&x| (x - (-1.5)).abs() < 1e-6));
    }

    #[test]
    fn window_pads_with_zero_in_the_normalised_domain() {
        let mel = LogMel { n_mels: 2, frames: 4, data: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0] };
        let w = mel.window(1, 2);
        assert_eq!(w.len(), 2 * WINDOW_FRAMES);
        assert_eq!(&w[..3], &[2.0, 3.0, 0.0]);
        assert_eq!(&w[WINDOW_FRAMES..WINDOW_FRAMES + 3], &[6.0, 7.0, 0.0]);
    }
}
