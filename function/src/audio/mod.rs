//! Audio input: any supported container and codec in, mono `f32` samples at 16 kHz out.
//!
//! Containers/codecs: WAV (PCM 8/16/24/32-bit integer, 32/64-bit float, A-law, mu-law), FLAC,
//! MP3, Ogg/Vorbis and Ogg/Opus (libopus through `symphonia-adapter-libopus`). Channels are
//! averaged; other sample rates are resampled with rubato's FFT (windowed-sinc) resampler.
//! Both happen packet by packet as the stream decodes, so what a decode holds is its 16 kHz mono
//! output (bounded by the duration limit) plus one packet and one resampler chunk, however high
//! the input's rate or many its channels.
//! Encoder delay and padding are removed where the container records them (LAME/Xing header
//! for MP3, pre-skip and end granule for Opus), so decoded files have their true duration.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;

use symphonia::core::audio::conv::FromSample;
use symphonia::core::audio::sample::Sample;
use symphonia::core::audio::{Audio, AudioBuffer, GenericAudioBufferRef};
use symphonia::core::codecs::audio::well_known::*;
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoderOptions};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::{Hint, Probe, ProbeOptions};
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia_adapter_libopus::OpusDecoder;

use crate::error::{Error, Result};

mod resample;
mod sniff;

use resample::To16k;
use sniff::{check_wav_header, describe_unrecognized};

/// The sample rate Whisper expects, and the rate of everything this module returns.
pub const SAMPLE_RATE: u32 = 16_000;

/// Rates outside this range are either corrupt headers or would make the resampler's
/// output (or its FFT) absurdly large.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 768_000;

/// How far into the input the first audio frame may be (after tags or junk).
const MAX_PROBE_DEPTH: u32 = 16 << 20;

/// Most 16 kHz samples reserved up front from a declared length (a header may lie).
const MAX_RESERVED_SAMPLES: f64 = (1u64 << 26) as f64;

/// How much of the input is kept aside to explain failures (WAV header, magic numbers).
const HEAD_LEN: usize = 4096;

/// Decodes an audio file; the extension (if any) is used as a probing hint only.
pub fn decode_file(path: &Path) -> Result<Vec<f32>> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    (&mut file).take(HEAD_LEN as u64).read_to_end(&mut head).and_then(|_| file.seek(SeekFrom::Start(0))).map_err(|e| Error::io(path, e))?;
    let hint = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), &head, hint, f64::INFINITY)
}

/// Decodes audio held in memory. `hint` is a file extension (`"mp3"`, `".wav"`) or a MIME type
/// (`"audio/ogg; codecs=opus"`); without one the content alone decides.
pub fn decode_bytes(bytes: Vec<u8>, hint: Option<&str>) -> Result<Vec<f32>> {
    decode_bytes_limited(bytes, hint, f64::INFINITY)
}

/// [`decode_bytes`] for untrusted input: audio longer than `max_seconds` is refused
/// ([`Error::TooLarge`]) from the duration the container declares, before decoding, or else
/// as soon as the decoded samples pass it, so a few megabytes of compressed silence cannot
/// make the process hold hours of samples.
pub fn decode_bytes_limited(bytes: Vec<u8>, hint: Option<&str>, max_seconds: f64) -> Result<Vec<f32>> {
    let head = bytes[..bytes.len().min(HEAD_LEN)].to_vec();
    decode_source(Box::new(Cursor::new(bytes)), &head, hint, max_seconds)
}

fn too_long(seconds: f64, max_seconds: f64, how: &str) -> Error {
    Error::TooLarge(format!("the audio is {how} {seconds:.1} s long; the limit is {max_seconds} s (TINGXIE_MAX_AUDIO_SECONDS)"))
}

fn decode_source(source: Box<dyn MediaSource>, head: &[u8], hint: Option<&str>, max_seconds: f64) -> Result<Vec<f32>> {
    if head.is_empty() {
        return Err(Error::InvalidAudio("input is empty (0 bytes)".into()));
    }
    check_wav_header(head)?;
    let hint = make_hint(hint);
    // Symphonia is meant to return errors on bad input, but it is a large parser fed untrusted
    // bytes: a panic in it (or in the resampler) must fail this request, not the process.
    let mut samples =
        panic::catch_unwind(AssertUnwindSafe(|| demux_and_decode(source, &hint, head, max_seconds))).unwrap_or_else(|payload| {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(Error::InvalidAudio(format!("decoder failed on malformed data ({msg})")))
        })?;
    // Float WAVs may hold NaN or values past full scale, and band-limiting can overshoot
    // slightly on clipped input: keep the documented [-1, 1] contract.
    for s in &mut samples {
        *s = if s.is_nan() { 0.0 } else { s.clamp(-1.0, 1.0) };
    }
    Ok(samples)
}

/// Symphonia's format readers, scanning further than its 1 MB default for the first frame:
/// without the `id3v2` feature an MP3's ID3 tag (cover art can take megabytes) is skipped by
/// that scan.
fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let opts = ProbeOptions { max_probe_depth: MAX_PROBE_DEPTH, ..Default::default() };
        let mut probe = Probe::new_with_options(&opts);
        symphonia::default::register_enabled_formats(&mut probe);
        probe
    })
}

/// Symphonia's built-in codecs plus libopus, which symphonia does not implement natively.
fn codecs() -> &'static CodecRegistry {
    static CODECS: OnceLock<CodecRegistry> = OnceLock::new();
    CODECS.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_audio_decoder::<OpusDecoder>();
        registry
    })
}

fn make_hint(hint: Option<&str>) -> Hint {
    let mut out = Hint::new();
    if let Some(h) = hint.map(str::trim).filter(|h| !h.is_empty()) {
        if h.contains('/') {
            // Drop MIME parameters such as "; codecs=opus".
            let mime = h.split(';').next().unwrap_or(h).trim();
            out.mime_type(&mime.to_ascii_lowercase());
        } else {
            out.with_extension(&h.trim_start_matches('.').to_ascii_lowercase());
        }
    }
    out
}

/// Returns the mono samples at 16 kHz.
fn demux_and_decode(source: Box<dyn MediaSource>, hint: &Hint, head: &[u8], max_seconds: f64) -> Result<Vec<f32>> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut format = probe().probe(hint, mss, FormatOptions::default(), MetadataOptions::default()).map_err(|e| match e {
        // No reader claimed the data (other `Unsupported` errors come from a reader that
        // did, e.g. "wav: unsupported wave format").
        SymError::Unsupported(msg) if msg.contains("no suitable format reader") => describe_unrecognized(head),
        e => sym_error("cannot read container", e),
    })?;

    let no_track = || Error::InvalidAudio("no audio track found".into());
    let track = format.default_track(TrackType::Audio).ok_or_else(no_track)?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let params = track.codec_params.as_ref().and_then(|p| p.audio()).ok_or_else(no_track)?;
    let declared_rate = match params.sample_rate {
        None | Some(0) => return Err(Error::InvalidAudio("stream declares no sample rate (0 Hz)".into())),
        Some(r) if !(MIN_RATE..=MAX_RATE).contains(&r) => {
            return Err(Error::UnsupportedAudio(format!("sample rate {r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")))
        }
        Some(r) => r,
    };
    if let Some(frames) = declared_frames {
        let seconds = frames as f64 / f64::from(declared_rate);
        if seconds > max_seconds {
            return Err(too_long(seconds, max_seconds, "declared"));
        }
    }
    if params.channels.as_ref().is_some_and(|c| c.count() == 0) {
        return Err(Error::InvalidAudio("stream declares 0 channels".into()));
    }
    let mut decoder = codecs().make_audio_decoder(params, &AudioDecoderOptions::default()).map_err(|e| match e {
        SymError::Unsupported(msg) => Error::UnsupportedAudio(format!("codec {} ({msg})", codec_name(params.codec))),
        e => sym_error("cannot initialise decoder", e),
    })?;

    // The limit counts 16 kHz output, so neither the input's rate nor its channels change what
    // it allows to be held.
    let max_samples = max_seconds * f64::from(SAMPLE_RATE);
    // Room for the declared length at once (no doubling), at most the limit (and bounded again:
    // a header may lie about a length the limit allows).
    let declared_samples = declared_frames.map_or(0.0, |f| f as f64 * f64::from(SAMPLE_RATE) / f64::from(declared_rate));
    let capacity = declared_samples.min(max_samples).min(MAX_RESERVED_SAMPLES) as usize;
    let mut out: Option<To16k> = None;
    let mut mono = Vec::new();
    let mut skipped = 0usize;
    let mut last_error: Option<String> = None;
    // How far into the stream the packets read reach, in the track's time base.
    let mut reached = 0u64;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A chained Ogg stream starts a new track list; the first stream is what we want.
            Err(SymError::ResetRequired) => break,
            // The data stop mid-packet before the stream's declared end: the upload was cut
            // short. (A stream of unknown length, such as a piped WAV, just ends.)
            // A compressed frame cut in two is truncation too; a WAV of unknown length (piped
            // from a recorder) just ends, possibly mid-packet.
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                if declared_frames.is_none() && is_wav(head) {
                    break;
                }
                return Err(truncated(reached, declared_frames, declared_rate));
            }
            // Corrupt from here on: keep what was decoded so far (as ffmpeg does).
            Err(e) => {
                last_error = Some(e.to_string());
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        reached = reached.max(packet.pts.get().max(0) as u64 + packet.dur.get());
        match decoder.decode(&packet) {
            Ok(buf) => {
                let rate = buf.spec().rate();
                // The track's declared rate was validated; the decoder's own rate is what counts.
                if out.is_none() {
                    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
                        return Err(Error::UnsupportedAudio(format!("sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz")));
                    }
                    out = Some(To16k::new(rate, capacity)?);
                }
                let out = out.as_mut().expect("set above");
                if out.rate() == rate {
                    downmix(&buf, &mut mono);
                    out.push(&mono)?;
                    if out.output_len() as f64 > max_samples {
                        return Err(too_long(out.output_len() as f64 / f64::from(SAMPLE_RATE), max_seconds, "over"));
                    }
                } else {
                    // A mid-stream rate change (possible in MP3) cannot join one signal.
                    skipped += 1;
                }
            }
            // A corrupt packet: skip it and go on, as ffmpeg does.
            Err(SymError::DecodeError(msg)) => {
                skipped += 1;
                last_error = Some(msg.to_string());
            }
            Err(SymError::IoError(e)) => {
                skipped += 1;
                last_error = Some(e.to_string());
            }
            Err(e) => {
                last_error = Some(e.to_string());
                break;
            }
        }
    }

    let Some(out) = out.filter(|o| o.frames_in() > 0) else {
        let why = match last_error {
            Some(e) if skipped > 0 => {
                format!("no audio samples decoded ({skipped} packets failed; last error: {e})")
            }
            Some(e) => format!("no audio samples decoded ({e})"),
            None => "no audio samples decoded (the stream is empty)".to_string(),
        };
        return Err(Error::InvalidAudio(why));
    };
    // Packets that reach well short of the declared end (skipped corrupt packets do not count:
    // they still advance the position).
    if let Some(frames) = declared_frames {
        let slack = (frames / 100).max(u64::from(declared_rate) / 10);
        if reached + slack < frames && time_base_is_frames(format.tracks(), track_id, declared_rate) {
            return Err(truncated(reached, Some(frames), declared_rate));
        }
    }
    out.finish()
}

fn truncated(reached: u64, declared: Option<u64>, rate: u32) -> Error {
    let seconds = |frames: u64| frames as f64 / f64::from(rate);
    Error::InvalidAudio(match declared {
        Some(frames) => format!("truncated: the data end at {:.2} s of the {:.2} s the stream declares", seconds(reached), seconds(frames)),
        None => format!("truncated: the data end inside a frame at {:.2} s", seconds(reached)),
    })
}

fn is_wav(head: &[u8]) -> bool {
    head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WAVE".as_slice())
}

/// Packet positions count frames at the declared rate (true of every container here, checked
/// so that a stream with another time base is never called truncated by mistake).
fn time_base_is_frames(tracks: &[symphonia::core::formats::Track], track_id: u32, rate: u32) -> bool {
    tracks.iter().find(|t| t.id == track_id).and_then(|t| t.time_base).is_none_or(|tb| tb.numer.get() == 1 && tb.denom.get() == rate)
}

/// One decoded buffer as mono `f32` in `out` (replacing what it held), its channels averaged.
fn downmix(buf: &GenericAudioBufferRef<'_>, out: &mut Vec<f32>) {
    match buf {
        GenericAudioBufferRef::U8(b) => downmix_planes(b, out),
        GenericAudioBufferRef::U16(b) => downmix_planes(b, out),
        GenericAudioBufferRef::U24(b) => downmix_planes(b, out),
        GenericAudioBufferRef::U32(b) => downmix_planes(b, out),
        GenericAudioBufferRef::S8(b) => downmix_planes(b, out),
        GenericAudioBufferRef::S16(b) => downmix_planes(b, out),
        GenericAudioBufferRef::S24(b) => downmix_planes(b, out),
        GenericAudioBufferRef::S32(b) => downmix_planes(b, out),
        GenericAudioBufferRef::F32(b) => downmix_planes(b, out),
        GenericAudioBufferRef::F64(b) => downmix_planes(b, out),
    }
}

/// Sums the planes straight from the decoder's buffer (no per-channel copy) in channel order,
/// then divides, as averaging copied planes did. Integer samples become f32 by plain division
/// (i16: s / 32768), so 16-bit mono input comes out bit-identical to numpy's `int16 / 32768.0`.
fn downmix_planes<S: Sample>(buf: &AudioBuffer<S>, out: &mut Vec<f32>)
where
    f32: FromSample<S>,
{
    out.clear();
    let mut planes = buf.iter_planes();
    let Some(first) = planes.next() else { return };
    out.extend(first.iter().map(|&s| f32::from_sample(s)));
    let mut count = 1u32;
    for plane in planes {
        out.iter_mut().zip(plane).for_each(|(m, &s)| *m += f32::from_sample(s));
        count += 1;
    }
    if count > 1 {
        let n = count as f32;
        out.iter_mut().for_each(|m| *m /= n);
    }
}

/// Explains a symphonia error as one of ours; `what` says which step failed.
fn sym_error(what: &str, e: SymError) -> Error {
    match e {
        SymError::Unsupported(msg) => Error::UnsupportedAudio(msg.to_string()),
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::InvalidAudio(format!("{what}: data ends early (truncated file?)"))
        }
        e => Error::InvalidAudio(format!("{what}: {e}")),
    }
}

fn codec_name(id: AudioCodecId) -> String {
    let name = match id {
        CODEC_ID_OPUS => "Opus",
        CODEC_ID_VORBIS => "Vorbis",
        CODEC_ID_FLAC => "FLAC",
        CODEC_ID_MP3 => "MP3",
        CODEC_ID_AAC => "AAC",
        CODEC_ID_ALAC => "ALAC",
        CODEC_ID_AC3 | CODEC_ID_EAC3 => "AC-3",
        CODEC_ID_WMA => "WMA",
        CODEC_ID_SPEEX => "Speex",
        CODEC_ID_MP1 | CODEC_ID_MP2 => "MPEG audio layer I/II",
        CODEC_ID_ADPCM_MS | CODEC_ID_ADPCM_IMA_WAV | CODEC_ID_ADPCM_IMA_QT => "ADPCM",
        CODEC_ID_ADPCM_G722 | CODEC_ID_ADPCM_G726 | CODEC_ID_ADPCM_G726LE => "G.722/G.726 ADPCM",
        _ => return format!("{id}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests;
