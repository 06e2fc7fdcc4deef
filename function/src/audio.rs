//! Audio input: any supported container and codec in, mono `f32` samples at 16 kHz out.
//!
//! Containers/codecs: WAV (PCM 8/16/24/32-bit integer, 32/64-bit float, A-law, mu-law), FLAC,
//! MP3, Ogg/Vorbis and Ogg/Opus (libopus through `symphonia-adapter-libopus`). Channels are
//! averaged; other sample rates are resampled with rubato's FFT (windowed-sinc) resampler.
//! Encoder delay and padding are removed where the container records them (LAME/Xing header
//! for MP3, pre-skip and end granule for Opus), so decoded files have their true duration.

use std::fs::File;
use std::io::{Cursor, Read, Seek, SeekFrom};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::OnceLock;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler, WindowFunction};
use symphonia::core::audio::GenericAudioBufferRef;
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

/// The sample rate Whisper expects, and the rate of everything this module returns.
pub const SAMPLE_RATE: u32 = 16_000;

/// Rates outside this range are either corrupt headers or would make the resampler's
/// output (or its FFT) absurdly large.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 768_000;

/// How far into the input the first audio frame may be (after tags or junk).
const MAX_PROBE_DEPTH: u32 = 16 << 20;

/// How much of the input is kept aside to explain failures (WAV header, magic numbers).
const HEAD_LEN: usize = 4096;

/// Decodes an audio file; the extension (if any) is used as a probing hint only.
pub fn decode_file(path: &Path) -> Result<Vec<f32>> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    (&mut file)
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .and_then(|_| file.seek(SeekFrom::Start(0)))
        .map_err(|e| Error::io(path, e))?;
    let hint = path.extension().and_then(|e| e.to_str());
    decode_source(Box::new(file), &head, hint)
}

/// Decodes audio held in memory. `hint` is a file extension (`"mp3"`, `".wav"`) or a MIME type
/// (`"audio/ogg; codecs=opus"`); without one the content alone decides.
pub fn decode_bytes(bytes: Vec<u8>, hint: Option<&str>) -> Result<Vec<f32>> {
    let head = bytes[..bytes.len().min(HEAD_LEN)].to_vec();
    decode_source(Box::new(Cursor::new(bytes)), &head, hint)
}

fn decode_source(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Option<&str>,
) -> Result<Vec<f32>> {
    if head.is_empty() {
        return Err(Error::InvalidAudio("input is empty (0 bytes)".into()));
    }
    check_wav_header(head)?;
    let hint = make_hint(hint);
    // Symphonia is meant to return errors on bad input, but it is a large parser fed untrusted
    // bytes: a panic in it (or in the resampler) must fail this request, not the process.
    let mut samples = panic::catch_unwind(AssertUnwindSafe(|| {
        demux_and_decode(source, &hint, head).and_then(|(samples, rate)| resample(samples, rate))
    }))
    .unwrap_or_else(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(Error::InvalidAudio(format!(
            "decoder failed on malformed data ({msg})"
        )))
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
        let opts = ProbeOptions {
            max_probe_depth: MAX_PROBE_DEPTH,
            ..Default::default()
        };
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

/// Returns the mono samples and their sample rate.
fn demux_and_decode(
    source: Box<dyn MediaSource>,
    hint: &Hint,
    head: &[u8],
) -> Result<(Vec<f32>, u32)> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut format = probe()
        .probe(
            hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| match e {
            // No reader claimed the data (other `Unsupported` errors come from a reader that
            // did, e.g. "wav: unsupported wave format").
            SymError::Unsupported(msg) if msg.contains("no suitable format reader") => {
                describe_unrecognized(head)
            }
            e => sym_error("cannot read container", e),
        })?;

    let no_track = || Error::InvalidAudio("no audio track found".into());
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(no_track)?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(no_track)?;
    match params.sample_rate {
        None | Some(0) => {
            return Err(Error::InvalidAudio(
                "stream declares no sample rate (0 Hz)".into(),
            ))
        }
        Some(r) if !(MIN_RATE..=MAX_RATE).contains(&r) => {
            return Err(Error::UnsupportedAudio(format!(
                "sample rate {r} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
            )))
        }
        Some(_) => {}
    }
    if params.channels.as_ref().is_some_and(|c| c.count() == 0) {
        return Err(Error::InvalidAudio("stream declares 0 channels".into()));
    }
    let mut decoder = codecs()
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(msg) => {
                Error::UnsupportedAudio(format!("codec {} ({msg})", codec_name(params.codec)))
            }
            e => sym_error("cannot initialise decoder", e),
        })?;

    let mut mono = Vec::new();
    let mut rate = None;
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut skipped = 0usize;
    let mut last_error: Option<String> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            // A chained Ogg stream starts a new track list; the first stream is what we want.
            Err(SymError::ResetRequired) => break,
            // Truncated or corrupt from here on: keep what was decoded so far (as ffmpeg does).
            Err(e) => {
                last_error = Some(e.to_string());
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buf) => {
                let r = buf.spec().rate();
                if *rate.get_or_insert(r) == r {
                    append_mono(&buf, &mut planes, &mut mono);
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

    if mono.is_empty() {
        let why = match last_error {
            Some(e) if skipped > 0 => {
                format!("no audio samples decoded ({skipped} packets failed; last error: {e})")
            }
            Some(e) => format!("no audio samples decoded ({e})"),
            None => "no audio samples decoded (the stream is empty)".to_string(),
        };
        return Err(Error::InvalidAudio(why));
    }
    // The track's declared rate was validated; the decoder's own rate is what counts.
    let rate = rate.unwrap_or(SAMPLE_RATE);
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(Error::UnsupportedAudio(format!(
            "sample rate {rate} Hz is outside {MIN_RATE}-{MAX_RATE} Hz"
        )));
    }
    Ok((mono, rate))
}

/// Appends one decoded buffer to `out`, averaging its channels.
fn append_mono(buf: &GenericAudioBufferRef<'_>, planes: &mut Vec<Vec<f32>>, out: &mut Vec<f32>) {
    // Integer samples become f32 by plain division (i16: s / 32768), so 16-bit mono input
    // comes out bit-identical to numpy's `int16 / 32768.0`.
    buf.copy_to_vecs_planar::<f32>(planes);
    match planes.as_slice() {
        [] => {}
        [only] => out.extend_from_slice(only),
        all => {
            let n = all.len() as f32;
            out.extend((0..all[0].len()).map(|i| all.iter().map(|p| p[i]).sum::<f32>() / n));
        }
    }
}

/// Resamples to [`SAMPLE_RATE`], trimming the resampler's delay so output sample `k` lines up
/// with input time `k / 16000`, and keeping `round(n * 16000 / rate)` samples.
fn resample(samples: Vec<f32>, rate: u32) -> Result<Vec<f32>> {
    if rate == SAMPLE_RATE {
        return Ok(samples);
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
    let resample_err = |e: &dyn std::fmt::Display| {
        Error::InvalidAudio(format!("resampling from {rate} Hz failed: {e}"))
    };
    let window = WindowFunction::BlackmanHarris2;
    let mut resampler = Fft::<f32>::new_custom(
        rate_in,
        rate_out,
        blocks * min_in,
        1,
        1,
        window,
        FixedSync::Input,
    )
    .map_err(|e| resample_err(&e))?;
    let input = InterleavedSlice::new(&samples[..], 1, n).map_err(|e| resample_err(&e))?;
    // process_all flushes the tail and drops the first `output_delay()` frames.
    let mut out = resampler
        .process_all(&input, n, None)
        .map_err(|e| resample_err(&e))?
        .take_data();
    let want = ((n as u128 * rate_out as u128 + rate_in as u128 / 2) / rate_in as u128) as usize;
    out.truncate(want);
    if out.is_empty() {
        return Err(Error::InvalidAudio(format!(
            "audio is too short ({n} samples at {rate} Hz)"
        )));
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

/// Symphonia's own checks reject 0 channels or 0 Hz with generic messages (or not at all):
/// read the `fmt ` chunk of a RIFF/WAVE file to say exactly what is wrong.
fn check_wav_header(head: &[u8]) -> Result<()> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Ok(());
    }
    let mut pos = 12;
    while pos < head.len().saturating_sub(7) {
        let id = &head[pos..pos + 4];
        let size = u32::from_le_bytes([head[pos + 4], head[pos + 5], head[pos + 6], head[pos + 7]])
            as usize;
        let body = &head[pos + 8..];
        if id == b"fmt " {
            if size < 16 {
                return Err(Error::InvalidAudio(format!(
                    "WAV fmt chunk is {size} bytes, needs at least 16"
                )));
            }
            if body.len() < 8 {
                break; // Truncated here; symphonia reports it.
            }
            let channels = u16::from_le_bytes([body[2], body[3]]);
            let rate = u32::from_le_bytes([body[4], body[5], body[6], body[7]]);
            if channels == 0 {
                return Err(Error::InvalidAudio("WAV header declares 0 channels".into()));
            }
            if rate == 0 {
                return Err(Error::InvalidAudio(
                    "WAV header declares a sample rate of 0 Hz".into(),
                ));
            }
            return Ok(());
        }
        // Chunks are padded to an even length.
        pos = pos
            .saturating_add(8)
            .saturating_add(size)
            .saturating_add(size & 1);
    }
    Ok(())
}

/// The probe found no reader: name the container if we know it, else say it is not audio.
fn describe_unrecognized(head: &[u8]) -> Error {
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    let container = if at(4, b"ftyp") {
        Some("MP4/M4A/MOV (AAC or ALAC audio)")
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("Matroska/WebM")
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Some("AIFF")
    } else if at(0, b"caff") {
        Some("CAF")
    } else if at(0, b"#!AMR") {
        Some("AMR")
    } else if at(0, &[0x30, 0x26, 0xB2, 0x75]) {
        Some("ASF/WMA")
    } else if at(0, b".snd") {
        Some("Sun AU")
    } else if at(0, b"RIFF") && !at(8, b"WAVE") {
        Some("RIFF (not WAVE)")
    } else if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xF6 == 0xF0 {
        Some("AAC (ADTS)")
    } else {
        None
    };
    if at(0, b"ID3") {
        return Error::InvalidAudio("ID3 tag without MP3 audio after it".into());
    }
    if let Some(name) = container {
        return Error::UnsupportedAudio(format!(
            "{name} container; supported: WAV, FLAC, MP3, Ogg Vorbis, Ogg Opus"
        ));
    }
    if looks_like_text(head) {
        return Error::InvalidAudio("input is text, not audio".into());
    }
    Error::InvalidAudio(
        "unrecognized data: not a WAV, FLAC, MP3, Ogg Vorbis or Ogg Opus file".into(),
    )
}

fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // The head may cut a multi-byte character in two.
        Err(e) if e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or("")
        }
        Err(_) => return false,
    };
    !text.is_empty()
        && text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
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
mod tests {
    use super::*;
    use std::f64::consts::PI;
    use std::path::PathBuf;

    /// `TINGXIE_FIXTURES` (the fixtures folder or its `speech/` subfolder) overrides the
    /// checkout layout, where the fixtures live in `shared/` next to the repository.
    fn fixtures_dir() -> PathBuf {
        let dir = match std::env::var_os("TINGXIE_FIXTURES") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/fixtures/speech"
            )),
        };
        let speech = dir.join("speech");
        if speech.join("manifest.tsv").is_file() {
            speech
        } else {
            dir
        }
    }

    fn fixture(name: &str) -> PathBuf {
        let path = fixtures_dir().join(name);
        assert!(
            path.is_file(),
            "missing fixture {} (set TINGXIE_FIXTURES)",
            path.display()
        );
        path
    }

    /// (file, seconds, sample_rate, channels, codec) for every row of manifest.tsv.
    fn manifest() -> Vec<(String, f64, u32, u32, String)> {
        std::fs::read_to_string(fixture("manifest.tsv"))
            .unwrap()
            .lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split('\t').collect();
                (
                    f[0].into(),
                    f[1].parse().unwrap(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].into(),
                )
            })
            .collect()
    }

    /// The 16-bit samples of a canonical WAV, read without symphonia.
    fn wav_i16(path: &Path) -> Vec<i16> {
        let bytes = std::fs::read(path).unwrap();
        let mut pos = 12;
        loop {
            let size = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap()) as usize;
            if &bytes[pos..pos + 4] == b"data" {
                let data = &bytes[pos + 8..(pos + 8 + size).min(bytes.len())];
                return data
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect();
            }
            pos += 8 + size + (size & 1);
        }
    }

    /// A WAV file with a 16-byte `fmt ` chunk (tag 1 = integer PCM, 3 = IEEE float).
    fn wav(tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
        let block = channels.wrapping_mul(bits / 8);
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate.wrapping_mul(block as u32)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_wav(rate: u32, samples: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        wav(3, 1, rate, 32, &data)
    }

    /// Normalized cross-correlation of `a[i]` with `b[i + lag]`.
    fn ncc(a: &[f32], b: &[f32], lag: isize) -> f64 {
        let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
        for (i, &x) in a.iter().enumerate() {
            let Some(&y) = b.get((i as isize + lag) as usize) else {
                continue;
            };
            let (x, y) = (x as f64, y as f64);
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        ab / (aa * bb).sqrt()
    }

    /// (lag, ncc) of the best match within ±`max_lag` samples.
    fn best_lag(a: &[f32], b: &[f32], max_lag: isize) -> (isize, f64) {
        (-max_lag..=max_lag)
            .map(|lag| (lag, ncc(a, b, lag)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .unwrap()
    }

    fn invalid(result: Result<Vec<f32>>) -> String {
        match result {
            Err(e @ Error::InvalidAudio(_)) => e.to_string(),
            other => panic!("expected InvalidAudio, got {:?}", other.map(|s| s.len())),
        }
    }

    #[test]
    fn every_manifest_file_decodes_with_its_duration() {
        let rows = manifest();
        assert_eq!(rows.len(), 33);
        for (file, seconds, rate, _channels, codec) in rows {
            let samples = decode_file(&fixture(&file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let got = samples.len() as f64 / SAMPLE_RATE as f64;
            assert!(
                samples.iter().all(|s| (-1.0..=1.0).contains(s)),
                "{file}: out of range"
            );
            if codec == "mp3" {
                // ffprobe counts LAME's priming (576 + 529 decoder delay = 1105 samples) and the
                // padding of the last frame; the decoder drops both (gapless, from the LAME
                // header), so the file is 1105..=2256 samples shorter than the manifest says.
                let missing = (seconds - got) * rate as f64;
                assert!(
                    (1100.0..=2260.0).contains(&missing),
                    "{file}: {got} s vs {seconds} s"
                );
            } else {
                // Opus: ffprobe's figure includes the 312-sample (6.5 ms) pre-skip we drop.
                assert!(
                    (got - seconds).abs() <= 0.05,
                    "{file}: {got} s vs {seconds} s"
                );
            }
        }
    }

    #[test]
    fn s01_is_bit_exact_int16_over_32768() {
        let path = fixture("s01.wav");
        let expected: Vec<f32> = wav_i16(&path).iter().map(|&s| s as f32 / 32768.0).collect();
        let got = decode_file(&path).unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got
            .iter()
            .zip(&expected)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        // Same through the in-memory path, with and without a hint.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(decode_bytes(bytes.clone(), None).unwrap(), got);
        assert_eq!(decode_bytes(bytes, Some("audio/wav")).unwrap(), got);
    }

    #[test]
    fn s03_flac_equals_wav() {
        let wav = decode_file(&fixture("s03.wav")).unwrap();
        assert_eq!(decode_file(&fixture("s03.flac")).unwrap(), wav);
    }

    #[test]
    fn s01_44k1_stereo_resamples_onto_s01() {
        let reference = decode_file(&fixture("s01.wav")).unwrap();
        let got = decode_file(&fixture("s01_44k1_stereo.wav")).unwrap();
        // 156_910 frames at 44.1 kHz -> round(156_910 * 16_000 / 44_100) = 56_929.
        let frames = (std::fs::metadata(fixture("s01_44k1_stereo.wav"))
            .unwrap()
            .len()
            - 44)
            / 4;
        let want = (frames as f64 * 16_000.0 / 44_100.0).round() as usize;
        assert!(got.len().abs_diff(want) <= 1, "{} vs {want}", got.len());
        let (lag, corr) = best_lag(&reference, &got, 10);
        assert_eq!(lag, 0, "resampled audio is shifted");
        assert!(corr > 0.999, "ncc {corr}");
    }

    #[test]
    fn lossy_reencodings_are_gapless_and_aligned() {
        // Each was encoded by ffmpeg from the named 16 kHz WAV; encoder delay and padding must be
        // gone, so lengths agree and the best alignment is at lag 0 (Opus is within a sample:
        // its 48 kHz round trip through ffmpeg's resampler moves it by about 0.6 sample).
        for (lossy, source, max_lag, min_corr) in [
            ("s05.mp3", "s05.wav", 0, 0.99),
            ("s08.ogg", "s08.wav", 0, 0.99),
            ("s10.opus", "s10.wav", 1, 0.95),
        ] {
            let reference = decode_file(&fixture(source)).unwrap();
            let got = decode_file(&fixture(lossy)).unwrap();
            assert!(
                got.len().abs_diff(reference.len()) <= 2,
                "{lossy}: {} vs {}",
                got.len(),
                reference.len()
            );
            let (lag, corr) = best_lag(&reference, &got, 200);
            assert!(lag.abs() <= max_lag, "{lossy}: best lag {lag}");
            assert!(corr > min_corr, "{lossy}: ncc {corr}");
        }
    }

    #[test]
    fn resampler_is_time_aligned_and_band_limited() {
        let tone =
            |rate: u32, k: usize, f: f64| 0.5 * (2.0 * PI * f * k as f64 / rate as f64).sin();
        for rate in [
            8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000, 44_099,
        ] {
            let n = rate as usize; // one second
                                   // 1 kHz must pass unchanged; 9 kHz (above 8 kHz Nyquist) must be removed.
            let input: Vec<f32> = (0..n)
                .map(|k| {
                    (tone(rate, k, 1000.0)
                        + if rate > 18_000 {
                            tone(rate, k, 9000.0)
                        } else {
                            0.0
                        }) as f32
                })
                .collect();
            let got = decode_bytes(f32_wav(rate, &input), Some("wav")).unwrap();
            assert_eq!(got.len(), 16_000, "{rate} Hz");
            // Away from the edges (where the tone starts and stops abruptly) the output is the
            // 1 kHz tone sampled at 16 kHz: no delay, no gain change, no alias of 9 kHz.
            let err = (1600..14_400)
                .map(|k| (got[k] as f64 - tone(16_000, k, 1000.0)).abs())
                .fold(0.0, f64::max);
            assert!(err < 2e-4, "{rate} Hz: max error {err}");
        }
    }

    #[test]
    fn output_length_is_rounded_rate_ratio() {
        for (rate, n) in [
            (44_100, 1),
            (44_100, 2),
            (44_100, 441),
            (48_000, 4_799),
            (22_050, 12_345),
            (8_000, 7),
        ] {
            let want = (n as f64 * 16_000.0 / rate as f64).round() as usize;
            let result = decode_bytes(f32_wav(rate, &vec![0.1; n]), None);
            if want == 0 {
                assert!(invalid(result).contains("too short"));
            } else {
                assert_eq!(result.unwrap().len(), want, "{n} samples at {rate} Hz");
            }
        }
    }

    #[test]
    fn wav_sample_formats() {
        let le = |v: &[i32], bytes: usize| -> Vec<u8> {
            v.iter()
                .flat_map(|s| s.to_le_bytes()[..bytes].to_vec())
                .collect()
        };
        // 8-bit WAV is unsigned with 128 as zero.
        let u8_wav = wav(1, 1, 16_000, 8, &[0, 64, 128, 192, 255]);
        assert_eq!(
            decode_bytes(u8_wav, None).unwrap(),
            [-1.0, -0.5, 0.0, 0.5, 127.0 / 128.0]
        );
        let s16 = wav(1, 1, 16_000, 16, &le(&[-32768, -16384, 0, 16384, 32767], 2));
        assert_eq!(
            decode_bytes(s16, None).unwrap(),
            [-1.0, -0.5, 0.0, 0.5, 32767.0 / 32768.0]
        );
        let s24 = wav(
            1,
            1,
            16_000,
            24,
            &le(&[-8_388_608, -4_194_304, 0, 4_194_304, 8_388_607], 3),
        );
        assert_eq!(
            decode_bytes(s24, None).unwrap(),
            [-1.0, -0.5, 0.0, 0.5, 8_388_607.0 / 8_388_608.0]
        );
        let s32 = wav(
            1,
            1,
            16_000,
            32,
            &le(&[i32::MIN, -(1 << 30), 0, 1 << 30, i32::MAX], 4),
        );
        assert_eq!(
            decode_bytes(s32, None).unwrap(),
            [-1.0, -0.5, 0.0, 0.5, 1.0]
        );
        let f64_data: Vec<u8> = [-1.0f64, -0.5, 0.0, 0.25, 1.0]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            decode_bytes(wav(3, 1, 16_000, 64, &f64_data), None).unwrap(),
            [-1.0, -0.5, 0.0, 0.25, 1.0]
        );
        // Float input past full scale or NaN is clamped / zeroed.
        let wild = f32_wav(16_000, &[2.0, -3.0, f32::NAN, 0.25]);
        assert_eq!(decode_bytes(wild, None).unwrap(), [1.0, -1.0, 0.0, 0.25]);
    }

    #[test]
    fn channels_are_averaged() {
        // Three interleaved channels per frame.
        let frames = [
            [16384i16, -16384, 8192],
            [32767, 32767, 32767],
            [0, 0, -32768],
        ];
        let data: Vec<u8> = frames
            .iter()
            .flatten()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let got = decode_bytes(wav(1, 3, 16_000, 16, &data), None).unwrap();
        let want: Vec<f32> = frames
            .iter()
            .map(|f| f.iter().map(|&s| s as f32 / 32768.0).sum::<f32>() / 3.0)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn hints_are_optional_and_may_be_wrong() {
        let mp3 = std::fs::read(fixture("s05.mp3")).unwrap();
        let plain = decode_bytes(mp3.clone(), None).unwrap();
        for hint in [
            "mp3",
            ".MP3",
            "audio/mpeg",
            "wav",
            "audio/ogg; codecs=opus",
            "",
        ] {
            assert_eq!(
                decode_bytes(mp3.clone(), Some(hint)).unwrap(),
                plain,
                "hint {hint:?}"
            );
        }
        let opus = std::fs::read(fixture("s10.opus")).unwrap();
        assert!(decode_bytes(opus, Some("audio/ogg; codecs=opus")).is_ok());
    }

    #[test]
    fn mp3_behind_a_large_id3_tag() {
        // Podcast-style cover art: a 2 MB ID3v2.3 APIC frame of noise (full of false MPEG syncs)
        // in place of s05.mp3's own 20-byte tag.
        let mp3 = std::fs::read(fixture("s05.mp3")).unwrap();
        assert_eq!(&mp3[..3], b"ID3");
        let mut x: u32 = 0x9E37_79B9;
        let mut frame = b"APIC".to_vec();
        frame.extend_from_slice(&2_000_000u32.to_be_bytes());
        frame.extend_from_slice(&[0, 0]);
        frame.extend((0..2_000_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        }));
        let n = frame.len();
        let mut tagged = b"ID3\x03\x00\x00".to_vec();
        tagged.extend([21, 14, 7, 0].map(|shift| ((n >> shift) & 0x7F) as u8)); // syncsafe size
        tagged.extend_from_slice(&frame);
        tagged.extend_from_slice(&mp3[20..]);
        assert_eq!(
            decode_bytes(tagged, Some("mp3")).unwrap(),
            decode_bytes(mp3, None).unwrap()
        );
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let s01 = std::fs::read(fixture("s01.wav")).unwrap();
        assert!(invalid(decode_bytes(Vec::new(), None)).contains("empty"));
        // Cut inside the fmt chunk, and right after the header (no samples at all).
        assert!(invalid(decode_bytes(s01[..30].to_vec(), Some("wav"))).contains("truncated"));
        assert!(
            invalid(decode_bytes(s01[..44].to_vec(), None)).contains("no audio samples decoded")
        );

        let mut x: u32 = 0x1234_5678;
        let random: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        assert!(invalid(decode_bytes(random, None)).contains("unrecognized data"));
        let text = b"This is a text file, not a recording.\nSecond line.\n".repeat(20);
        assert_eq!(
            invalid(decode_bytes(text, Some("wav"))),
            "invalid audio: input is text, not audio"
        );

        let pcm = [0u8; 64];
        assert_eq!(
            invalid(decode_bytes(wav(1, 0, 16_000, 16, &pcm), None)),
            "invalid audio: WAV header declares 0 channels"
        );
        assert_eq!(
            invalid(decode_bytes(wav(1, 1, 0, 16, &pcm), None)),
            "invalid audio: WAV header declares a sample rate of 0 Hz"
        );
        assert!(invalid(decode_bytes(wav(1, 1, 16_000, 16, &[]), None))
            .contains("no audio samples decoded"));

        let mp4 = b"\0\0\0\x18ftypM4A \0\0\0\0M4A mp42isom\0\0\0\0".to_vec();
        assert!(
            matches!(decode_bytes(mp4, None), Err(Error::UnsupportedAudio(m)) if m.contains("MP4"))
        );
        // WAV holding MPEG audio (format tag 0x55) is a codec symphonia has no WAV path for.
        let wav_mp3 = wav(0x55, 1, 16_000, 0, &pcm);
        assert!(
            matches!(decode_bytes(wav_mp3, None), Err(Error::UnsupportedAudio(m)) if m.contains("wav"))
        );
        let odd_rate = wav(1, 1, 100, 16, &pcm);
        assert!(
            matches!(decode_bytes(odd_rate, None), Err(Error::UnsupportedAudio(m)) if m.contains("100 Hz"))
        );

        let missing = fixtures_dir().join("no-such-file.wav");
        assert!(matches!(decode_file(&missing), Err(Error::Io { .. })));
    }

    #[test]
    fn truncated_and_corrupt_streams_keep_what_decodes() {
        // A WAV cut in half: the first half, exactly.
        let s01 = std::fs::read(fixture("s01.wav")).unwrap();
        let full = decode_bytes(s01.clone(), None).unwrap();
        let half = decode_bytes(s01[..s01.len() / 2].to_vec(), None).unwrap();
        assert_eq!(half.len(), (s01.len() / 2 - 44) / 2);
        assert_eq!(half[..], full[..half.len()]);

        // Garbage in the middle of compressed streams: the damaged frame/page is skipped.
        for (name, max_loss_s) in [
            ("s03.flac", 0.1),
            ("s05.mp3", 0.2),
            ("s08.ogg", 1.5),
            ("s10.opus", 1.5),
        ] {
            let mut bytes = std::fs::read(fixture(name)).unwrap();
            let full = decode_bytes(bytes.clone(), None).unwrap().len();
            let mid = bytes.len() / 2;
            bytes[mid..mid + 16].iter_mut().for_each(|b| *b ^= 0x5A);
            let got = decode_bytes(bytes, None)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .len();
            let lost = full.saturating_sub(got) as f64 / SAMPLE_RATE as f64;
            assert!(lost <= max_loss_s, "{name}: lost {lost} s");
        }
    }

    #[test]
    fn mangled_fixtures_never_panic() {
        // Random byte damage and truncation of every container; each call must return.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        };
        for name in [
            "s01_44k1_stereo.wav",
            "s03.flac",
            "s05.mp3",
            "s08.ogg",
            "s10.opus",
        ] {
            let original = std::fs::read(fixture(name)).unwrap();
            for _ in 0..40 {
                let mut bytes = original.clone();
                // Damage the headers half of the time, anywhere otherwise.
                let region = if rnd() % 2 == 0 { 256 } else { bytes.len() };
                for _ in 0..1 + rnd() % 16 {
                    let i = rnd() % region;
                    bytes[i] = rnd() as u8;
                }
                if rnd() % 3 == 0 {
                    bytes.truncate(rnd() % bytes.len());
                }
                if let Ok(samples) = decode_bytes(bytes, None) {
                    assert!(
                        !samples.is_empty() && samples.iter().all(|s| (-1.0..=1.0).contains(s))
                    );
                }
            }
        }
    }
}
