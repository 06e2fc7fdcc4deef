//! Decoding tests on the real fixture corpus and on hand-made bad input.

use super::*;
use std::f64::consts::PI;
use std::path::PathBuf;

/// `TINGXIE_FIXTURES` (the fixtures folder or its `speech/` subfolder) overrides the
/// checkout layout, where the fixtures live in `shared/` next to the repository.
fn fixtures_dir() -> PathBuf {
    let dir = match std::env::var_os("TINGXIE_FIXTURES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures/speech")),
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
    assert!(path.is_file(), "missing fixture {} (set TINGXIE_FIXTURES)", path.display());
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
            (f[0].into(), f[1].parse().unwrap(), f[2].parse().unwrap(), f[3].parse().unwrap(), f[4].into())
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
            return data.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
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
    (-max_lag..=max_lag).map(|lag| (lag, ncc(a, b, lag))).max_by(|x, y| x.1.total_cmp(&y.1)).unwrap()
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
        assert!(samples.iter().all(|s| (-1.0..=1.0).contains(s)), "{file}: out of range");
        if codec == "mp3" {
            // ffprobe counts LAME's priming (576 + 529 decoder delay = 1105 samples) and the
            // padding of the last frame; the decoder drops both (gapless, from the LAME
            // header), so the file is 1105..=2256 samples shorter than the manifest says.
            let missing = (seconds - got) * rate as f64;
            assert!((1100.0..=2260.0).contains(&missing), "{file}: {got} s vs {seconds} s");
        } else {
            // Opus: ffprobe's figure includes the 312-sample (6.5 ms) pre-skip we drop.
            assert!((got - seconds).abs() <= 0.05, "{file}: {got} s vs {seconds} s");
        }
    }
}

#[test]
fn s01_is_bit_exact_int16_over_32768() {
    let path = fixture("s01.wav");
    let expected: Vec<f32> = wav_i16(&path).iter().map(|&s| s as f32 / 32768.0).collect();
    let got = decode_file(&path).unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
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
    let frames = (std::fs::metadata(fixture("s01_44k1_stereo.wav")).unwrap().len() - 44) / 4;
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
    for (lossy, source, max_lag, min_corr) in
        [("s05.mp3", "s05.wav", 0, 0.99), ("s08.ogg", "s08.wav", 0, 0.99), ("s10.opus", "s10.wav", 1, 0.95)]
    {
        let reference = decode_file(&fixture(source)).unwrap();
        let got = decode_file(&fixture(lossy)).unwrap();
        assert!(got.len().abs_diff(reference.len()) <= 2, "{lossy}: {} vs {}", got.len(), reference.len());
        let (lag, corr) = best_lag(&reference, &got, 200);
        assert!(lag.abs() <= max_lag, "{lossy}: best lag {lag}");
        assert!(corr > min_corr, "{lossy}: ncc {corr}");
    }
}

#[test]
fn resampler_is_time_aligned_and_band_limited() {
    let tone = |rate: u32, k: usize, f: f64| 0.5 * (2.0 * PI * f * k as f64 / rate as f64).sin();
    for rate in [8_000, 11_025, 22_050, 32_000, 44_100, 48_000, 96_000, 44_099, 655_000, 768_000] {
        let n = rate as usize; // one second
                               // 1 kHz must pass unchanged; 9 kHz (above 8 kHz Nyquist) must be removed.
        let input: Vec<f32> =
            (0..n).map(|k| (tone(rate, k, 1000.0) + if rate > 18_000 { tone(rate, k, 9000.0) } else { 0.0 }) as f32).collect();
        let got = decode_bytes(f32_wav(rate, &input), Some("wav")).unwrap();
        assert_eq!(got.len(), 16_000, "{rate} Hz");
        // Away from the edges (where the tone starts and stops abruptly) the output is the
        // 1 kHz tone sampled at 16 kHz: no delay, no gain change, no alias of 9 kHz.
        let err = (1600..14_400).map(|k| (got[k] as f64 - tone(16_000, k, 1000.0)).abs()).fold(0.0, f64::max);
        assert!(err < 2e-4, "{rate} Hz: max error {err}");
    }
}

/// The whole clip resampled in one call by the same resampler, as before resampling was chunked.
fn resample_whole(samples: &[f32], rate: u32) -> Vec<f32> {
    use rubato::audioadapter_buffers::direct::InterleavedSlice;
    use rubato::Resampler;
    let input = InterleavedSlice::new(samples, 1, samples.len()).unwrap();
    let mut out = resample::fft(rate).unwrap().process_all(&input, samples.len(), None).unwrap().take_data();
    out.truncate((samples.len() as f64 * 16_000.0 / rate as f64).round() as usize);
    out
}

#[test]
fn chunked_resampling_equals_resampling_the_whole_clip() {
    // Pushes of every size, from single samples to more than a chunk, and lengths that end on,
    // just past and well inside a chunk.
    let sizes = [1, 7, 1152, 4096, 65_535, 200_000];
    for (rate, n) in [
        (8_000, 12_345),
        (44_100, 441_000),
        (48_000, 10),
        (96_000, 300_001),
        (655_000, 1_310_000),
        (768_000, 98_304 * 3),
        (44_099, 100_000),
    ] {
        let input: Vec<f32> = (0..n).map(|k| (0.3 * (k as f64 * 0.001).sin() + 0.2 * (k as f64 * 0.37).sin()) as f32).collect();
        let want = resample_whole(&input, rate);
        let mut stream = To16k::new(rate, 0).unwrap();
        let mut rest = &input[..];
        for size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (now, later) = rest.split_at((*size).min(rest.len()));
            stream.push(now).unwrap();
            rest = later;
        }
        let got = stream.finish().unwrap();
        assert_eq!(got.len(), (n as f64 * 16_000.0 / rate as f64).round() as usize, "{n} samples at {rate} Hz");
        assert_eq!(got.len(), want.len(), "{rate} Hz");
        let err = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err <= 1e-6, "{rate} Hz: max difference {err}");
    }
}

#[test]
fn output_length_is_rounded_rate_ratio() {
    for (rate, n) in [(44_100, 1), (44_100, 2), (44_100, 441), (48_000, 4_799), (22_050, 12_345), (8_000, 7)] {
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
    let le = |v: &[i32], bytes: usize| -> Vec<u8> { v.iter().flat_map(|s| s.to_le_bytes()[..bytes].to_vec()).collect() };
    // 8-bit WAV is unsigned with 128 as zero.
    let u8_wav = wav(1, 1, 16_000, 8, &[0, 64, 128, 192, 255]);
    assert_eq!(decode_bytes(u8_wav, None).unwrap(), [-1.0, -0.5, 0.0, 0.5, 127.0 / 128.0]);
    let s16 = wav(1, 1, 16_000, 16, &le(&[-32768, -16384, 0, 16384, 32767], 2));
    assert_eq!(decode_bytes(s16, None).unwrap(), [-1.0, -0.5, 0.0, 0.5, 32767.0 / 32768.0]);
    let s24 = wav(1, 1, 16_000, 24, &le(&[-8_388_608, -4_194_304, 0, 4_194_304, 8_388_607], 3));
    assert_eq!(decode_bytes(s24, None).unwrap(), [-1.0, -0.5, 0.0, 0.5, 8_388_607.0 / 8_388_608.0]);
    let s32 = wav(1, 1, 16_000, 32, &le(&[i32::MIN, -(1 << 30), 0, 1 << 30, i32::MAX], 4));
    assert_eq!(decode_bytes(s32, None).unwrap(), [-1.0, -0.5, 0.0, 0.5, 1.0]);
    let f64_data: Vec<u8> = [-1.0f64, -0.5, 0.0, 0.25, 1.0].iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(decode_bytes(wav(3, 1, 16_000, 64, &f64_data), None).unwrap(), [-1.0, -0.5, 0.0, 0.25, 1.0]);
    // Float input past full scale or NaN is clamped / zeroed.
    let wild = f32_wav(16_000, &[2.0, -3.0, f32::NAN, 0.25]);
    assert_eq!(decode_bytes(wild, None).unwrap(), [1.0, -1.0, 0.0, 0.25]);
}

#[test]
fn channels_are_averaged() {
    // Three interleaved channels per frame.
    let frames = [[16384i16, -16384, 8192], [32767, 32767, 32767], [0, 0, -32768]];
    let data: Vec<u8> = frames.iter().flatten().flat_map(|s| s.to_le_bytes()).collect();
    let got = decode_bytes(wav(1, 3, 16_000, 16, &data), None).unwrap();
    let want: Vec<f32> = frames.iter().map(|f| f.iter().map(|&s| s as f32 / 32768.0).sum::<f32>() / 3.0).collect();
    assert_eq!(got, want);
}

#[test]
fn hints_are_optional_and_may_be_wrong() {
    let mp3 = std::fs::read(fixture("s05.mp3")).unwrap();
    let plain = decode_bytes(mp3.clone(), None).unwrap();
    for hint in ["mp3", ".MP3", "audio/mpeg", "wav", "audio/ogg; codecs=opus", ""] {
        assert_eq!(decode_bytes(mp3.clone(), Some(hint)).unwrap(), plain, "hint {hint:?}");
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
    assert_eq!(decode_bytes(tagged, Some("mp3")).unwrap(), decode_bytes(mp3, None).unwrap());
}

#[test]
fn bad_inputs_are_clear_errors() {
    let s01 = std::fs::read(fixture("s01.wav")).unwrap();
    assert!(invalid(decode_bytes(Vec::new(), None)).contains("empty"));
    // Cut inside the fmt chunk, and right after the header (no samples at all).
    assert!(invalid(decode_bytes(s01[..30].to_vec(), Some("wav"))).contains("truncated"));
    assert!(invalid(decode_bytes(s01[..44].to_vec(), None)).contains("truncated"));

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
    assert_eq!(invalid(decode_bytes(text, Some("wav"))), "invalid audio: input is text, not audio");

    let pcm = [0u8; 64];
    assert_eq!(invalid(decode_bytes(wav(1, 0, 16_000, 16, &pcm), None)), "invalid audio: WAV header declares 0 channels");
    assert_eq!(invalid(decode_bytes(wav(1, 1, 0, 16, &pcm), None)), "invalid audio: WAV header declares a sample rate of 0 Hz");
    assert!(invalid(decode_bytes(wav(1, 1, 16_000, 16, &[]), None)).contains("no audio samples decoded"));

    let mp4 = b"\0\0\0\x18ftypM4A \0\0\0\0M4A mp42isom\0\0\0\0".to_vec();
    assert!(matches!(decode_bytes(mp4, None), Err(Error::UnsupportedAudio(m)) if m.contains("MP4")));
    // WAV holding MPEG audio (format tag 0x55) is a codec symphonia has no WAV path for.
    let wav_mp3 = wav(0x55, 1, 16_000, 0, &pcm);
    assert!(matches!(decode_bytes(wav_mp3, None), Err(Error::UnsupportedAudio(m)) if m.contains("wav")));
    let odd_rate = wav(1, 1, 100, 16, &pcm);
    assert!(matches!(decode_bytes(odd_rate, None), Err(Error::UnsupportedAudio(m)) if m.contains("100 Hz")));

    let missing = fixtures_dir().join("no-such-file.wav");
    assert!(matches!(decode_file(&missing), Err(Error::Io { .. })));
}

#[test]
fn truncated_streams_are_refused_and_corrupt_ones_keep_what_decodes() {
    // Cut short (an upload that broke off): refused, saying so, whatever the container.
    for name in ["s01.wav", "s01_44k1_stereo.wav", "s03.flac", "s05.mp3", "s08.ogg", "s10.opus"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for cut in [bytes.len() / 2, 44 + 2000] {
            let result = decode_bytes(bytes[..cut].to_vec(), None);
            let message = result.as_ref().map(|s| format!("{} samples", s.len())).unwrap_or_else(|e| e.to_string());
            assert!(message.contains("truncated"), "{name} cut at {cut}: {message}");
        }
    }

    // Garbage in the middle of compressed streams: the damaged frame/page is skipped.
    for (name, max_loss_s) in [("s03.flac", 0.1), ("s05.mp3", 0.2), ("s08.ogg", 1.5), ("s10.opus", 1.5)] {
        let mut bytes = std::fs::read(fixture(name)).unwrap();
        let full = decode_bytes(bytes.clone(), None).unwrap().len();
        let mid = bytes.len() / 2;
        bytes[mid..mid + 16].iter_mut().for_each(|b| *b ^= 0x5A);
        let got = decode_bytes(bytes, None).unwrap_or_else(|e| panic!("{name}: {e}")).len();
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
    for name in ["s01_44k1_stereo.wav", "s03.flac", "s05.mp3", "s08.ogg", "s10.opus"] {
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
                assert!(!samples.is_empty() && samples.iter().all(|s| (-1.0..=1.0).contains(s)));
            }
        }
    }
}

#[test]
fn the_duration_limit_holds_while_decoding() {
    let s01 = std::fs::read(fixture("s01.wav")).unwrap();
    let too_large = |result: Result<Vec<f32>>| match result {
        Err(Error::TooLarge(m)) => m,
        other => panic!("expected TooLarge, got {:?}", other.map(|s| s.len())),
    };
    // Declared by the header: refused before a sample is decoded.
    let message = too_large(decode_bytes_limited(s01.clone(), None, 1.0));
    assert!(message.contains("declared") && message.contains("TINGXIE_MAX_AUDIO_SECONDS"), "{message}");
    // A streamed WAV (RIFF and data lengths 0xFFFFFFFF: unknown) is counted as it decodes.
    let data_at = s01.windows(4).position(|w| w == b"data").unwrap();
    let mut streamed = s01.clone();
    streamed[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    streamed[data_at + 4..data_at + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    let message = too_large(decode_bytes_limited(streamed.clone(), None, 1.0));
    assert!(message.contains("over"), "{message}");
    // Within the limit both decode to the same samples.
    assert_eq!(decode_bytes_limited(streamed, None, 60.0).unwrap(), decode_bytes_limited(s01, None, 60.0).unwrap());
}
