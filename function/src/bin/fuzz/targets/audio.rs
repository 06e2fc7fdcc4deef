//! `audio`: `decode_bytes_limited`, the decoder requests and events go through: the WAV header
//! check and the container sniffing in front of symphonia, every demuxer and codec (WAV PCM,
//! float, A-law and mu-law, FLAC, MP3, Ogg Vorbis, Ogg Opus through libopus) and the resampler,
//! with each hint a client can send (none, extensions, MIME types).
//!
//! Properties: decoded samples are finite and within [-1, 1], and never longer than the limit.

use std::path::Path;

use tingxie::audio::{decode_bytes_limited, SAMPLE_RATE};

use crate::fuzz::input::{control, section, Input, Kind};
use crate::fuzz::{error_label, Target};

/// Short, so that a mutated length field cannot make one input decode for long.
const MAX_SECONDS: f64 = 30.0;

const HINTS: &[Option<&str>] = &[
    None,
    Some("wav"),
    Some(".WAV"),
    Some("flac"),
    Some("mp3"),
    Some("ogg"),
    Some("opus"),
    Some("oga"),
    Some("m4a"),
    Some("audio/wav"),
    Some("audio/x-wav"),
    Some("audio/flac"),
    Some("audio/mpeg"),
    Some("audio/ogg"),
    Some("audio/ogg; codecs=opus"),
    Some("audio/opus"),
    Some("application/octet-stream"),
    Some("text/plain"),
    Some(""),
    Some(" ; "),
];

/// Fixture files used whole when at most this long, else cut to it: a seed decodes in well
/// under a millisecond and still holds many packets.
const SEED_BYTES: usize = 16 * 1024;

pub struct Audio;

impl Target for Audio {
    fn name(&self) -> &'static str {
        "audio"
    }

    /// Control (hint), the file.
    fn kinds(&self) -> &'static [Kind] {
        &[Kind::Control, Kind::Binary]
    }

    fn seeds(&self, fixtures: &Path) -> Vec<Input> {
        let mut files = synthetic_wavs();
        let speech = fixtures.join("speech");
        for (name, hint) in [
            ("s01.wav", 1u8),
            ("s01_44k1_stereo.wav", 9),
            ("s03.flac", 3),
            ("s05.mp3", 12),
            ("s08.ogg", 5),
            ("s10.opus", 14),
            ("s03.flac", 0),
            ("s10.opus", 0),
        ] {
            match std::fs::read(speech.join(name)) {
                Ok(mut bytes) => {
                    bytes.truncate(SEED_BYTES);
                    fit_wav_sizes(&mut bytes);
                    files.push((hint, bytes));
                }
                Err(e) => eprintln!("audio: no seed {name} ({e}); the fixtures are in {}", fixtures.display()),
            }
        }
        files.into_iter().map(|(hint, bytes)| vec![vec![hint], bytes]).collect()
    }

    fn run(&mut self, input: &Input) -> String {
        let hint = HINTS[control(input, 0) % HINTS.len()];
        match decode_bytes_limited(section(input, 1).to_vec(), hint, MAX_SECONDS) {
            Err(e) => error_label("err", &e),
            Ok(samples) => {
                if let Some(bad) = samples.iter().find(|s| !(-1.0..=1.0).contains(*s)) {
                    panic!("property: decoded sample {bad} is outside [-1, 1]");
                }
                // The limit is checked before resampling; the resampler may add a little.
                let max = (MAX_SECONDS + 1.0) * f64::from(SAMPLE_RATE);
                if samples.len() as f64 > max {
                    panic!("property: {} samples decoded past the {MAX_SECONDS} s limit", samples.len());
                }
                "ok".into()
            }
        }
    }
}

/// WAV format tags.
const PCM: u16 = 1;
const FLOAT: u16 = 3;
const ALAW: u16 = 6;
const MULAW: u16 = 7;
const EXTENSIBLE: u16 = 0xFFFE;

/// One small WAV per encoding symphonia's RIFF reader handles: 0.1 s of a chirp.
fn synthetic_wavs() -> Vec<(u8, Vec<u8>)> {
    [
        (PCM, 1, 16_000, 16),
        (PCM, 1, 8_000, 8),
        (PCM, 2, 44_100, 24),
        (PCM, 1, 48_000, 32),
        (FLOAT, 1, 16_000, 32),
        (FLOAT, 2, 22_050, 64),
        (ALAW, 1, 8_000, 8),
        (MULAW, 1, 8_000, 8),
        (EXTENSIBLE, 2, 16_000, 16),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (tag, channels, rate, bits))| ((i % 3) as u8, wav(tag, channels, rate, bits)))
    .collect()
}

fn wav(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let frames = rate as usize / 10;
    let block = channels * bits / 8;
    let mut data = Vec::with_capacity(frames * block as usize);
    for n in 0..frames * channels as usize {
        let t = n as f64 / f64::from(rate);
        let x = (t * t * 40_000.0).sin() * 0.5;
        match (tag, bits) {
            (FLOAT, 32) => data.extend_from_slice(&(x as f32).to_le_bytes()),
            (FLOAT, _) => data.extend_from_slice(&x.to_le_bytes()),
            (_, 8) if tag == PCM => data.push((x * 127.0 + 128.0) as u8),
            (_, 8) => data.push((x * 127.0) as i8 as u8), // any byte is a G.711 sample
            (_, 16) => data.extend_from_slice(&((x * 32767.0) as i16).to_le_bytes()),
            (_, 24) => data.extend_from_slice(&((x * 8_388_607.0) as i32).to_le_bytes()[..3]),
            _ => data.extend_from_slice(&((x * 2_147_483_647.0) as i32).to_le_bytes()),
        }
    }
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    fmt.extend_from_slice(&block.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if tag == EXTENSIBLE {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes()); // valid bits
        fmt.extend_from_slice(&3u32.to_le_bytes()); // channel mask: front left, right
                                                    // KSDATAFORMAT_SUBTYPE_PCM
        fmt.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
    } else if tag != PCM {
        fmt.extend_from_slice(&0u16.to_le_bytes());
    }
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF\0\0\0\0WAVEfmt ");
    out.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    out.extend_from_slice(&fmt);
    if tag != PCM {
        // Non-PCM WAVs carry a fact chunk (frames per channel).
        out.extend_from_slice(b"fact");
        out.extend_from_slice(&4u32.to_le_bytes());
        out.extend_from_slice(&(frames as u32).to_le_bytes());
    }
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(&data);
    fit_wav_sizes(&mut out);
    out
}

/// Sets the RIFF and `data` sizes of a WAV to what it holds: a fixture cut short still decodes
/// to the end instead of stopping at "truncated".
fn fit_wav_sizes(wav: &mut [u8]) {
    if wav.len() < 12 || &wav[..4] != b"RIFF" {
        return;
    }
    let riff = (wav.len() - 8) as u32;
    wav[4..8].copy_from_slice(&riff.to_le_bytes());
    let mut pos = 12;
    while pos + 8 <= wav.len() {
        let size = u32::from_le_bytes(wav[pos + 4..pos + 8].try_into().expect("4 bytes")) as usize;
        if &wav[pos..pos + 4] == b"data" {
            let held = (wav.len() - pos - 8) as u32;
            wav[pos + 4..pos + 8].copy_from_slice(&held.to_le_bytes());
            return;
        }
        pos += 8 + size + (size & 1);
    }
}
