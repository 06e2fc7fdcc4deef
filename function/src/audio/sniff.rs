//! Recognising what a file is when the decoder cannot: WAV headers with impossible values,
//! text, other known formats.

use crate::error::{Error, Result};

/// Symphonia's own checks reject 0 channels or 0 Hz with generic messages (or not at all):
/// read the `fmt ` chunk of a RIFF/WAVE file to say exactly what is wrong.
pub(super) fn check_wav_header(head: &[u8]) -> Result<()> {
    if head.len() < 12 || &head[0..4] != b"RIFF" || &head[8..12] != b"WAVE" {
        return Ok(());
    }
    let mut pos = 12;
    while pos < head.len().saturating_sub(7) {
        let id = &head[pos..pos + 4];
        let size = u32::from_le_bytes([head[pos + 4], head[pos + 5], head[pos + 6], head[pos + 7]]) as usize;
        let body = &head[pos + 8..];
        if id == b"fmt " {
            if size < 16 {
                return Err(Error::InvalidAudio(format!("WAV fmt chunk is {size} bytes, needs at least 16")));
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
                return Err(Error::InvalidAudio("WAV header declares a sample rate of 0 Hz".into()));
            }
            return Ok(());
        }
        // Chunks are padded to an even length.
        pos = pos.saturating_add(8).saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// The probe found no reader: name the container if we know it, else say it is not audio.
pub(super) fn describe_unrecognized(head: &[u8]) -> Error {
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
        return Error::UnsupportedAudio(format!("{name} container; supported: WAV, FLAC, MP3, Ogg Vorbis, Ogg Opus"));
    }
    if looks_like_text(head) {
        return Error::InvalidAudio("input is text, not audio".into());
    }
    Error::InvalidAudio("unrecognized data: not a WAV, FLAC, MP3, Ogg Vorbis or Ogg Opus file".into())
}

fn looks_like_text(head: &[u8]) -> bool {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // The head may cut a multi-byte character in two.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or(""),
        Err(_) => return false,
    };
    !text.is_empty() && text.chars().all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}
