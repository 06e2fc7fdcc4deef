//! Renders a [`Transcript`] in the response formats of OpenAI's transcription API
//! (`response_format`), which are also the output formats of the whisper CLI.

use std::fmt::{self, Write as _};
use std::str::FromStr;

use serde::Serialize;

use crate::error::Error;
use crate::transcript::Transcript;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// `{"text": "..."}`, OpenAI's default.
    #[default]
    Json,
    /// The plain text and a newline.
    Text,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
    /// OpenAI's `verbose_json`: text, language, duration and segments with their scores.
    VerboseJson,
}

impl Format {
    pub const ALL: [Format; 5] = [Format::Json, Format::Text, Format::Srt, Format::Vtt, Format::VerboseJson];

    /// The name used by OpenAI's `response_format` parameter.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Text => "text",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
            Format::VerboseJson => "verbose_json",
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Json | Format::VerboseJson => "application/json",
            Format::Text => "text/plain; charset=utf-8",
            Format::Srt => "application/x-subrip; charset=utf-8",
            Format::Vtt => "text/vtt; charset=utf-8",
        }
    }

    /// File extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            Format::Json | Format::VerboseJson => "json",
            Format::Text => "txt",
            Format::Srt => "srt",
            Format::Vtt => "vtt",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let wanted = s.trim();
        Format::ALL.into_iter().find(|f| f.name().eq_ignore_ascii_case(wanted)).ok_or_else(|| {
            let names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
            Error::InvalidArgument {
                field: "response_format",
                reason: format!("unknown format `{wanted}`, expected one of: {}", names.join(", ")),
            }
        })
    }
}

pub fn render(t: &Transcript, format: Format) -> String {
    match format {
        Format::Text => format!("{}\n", t.text),
        Format::Json => serde_json::json!({ "text": t.text }).to_string(),
        Format::VerboseJson => verbose_json(t).to_string(),
        Format::Srt => render_subtitles(t, false),
        Format::Vtt => render_subtitles(t, true),
    }
}

#[derive(Serialize)]
struct VerboseJson<'a> {
    task: &'static str,
    language: &'a str,
    /// faster-whisper's `TranscriptionInfo.language_probability` (not in OpenAI's shape).
    language_probability: f32,
    duration: f64,
    /// Seconds of speech decoded, when Silero VAD chose them (faster-whisper's
    /// `TranscriptionInfo.duration_after_vad`).
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_after_vad: Option<f64>,
    text: &'a str,
    segments: Vec<VerboseSegment<'a>>,
}

#[derive(Serialize)]
struct VerboseSegment<'a> {
    id: usize,
    seek: usize,
    start: f64,
    end: f64,
    text: &'a str,
    tokens: &'a [u32],
    temperature: f32,
    avg_logprob: f32,
    compression_ratio: f32,
    no_speech_prob: f32,
}

/// OpenAI's `verbose_json` as a JSON value, for callers that add fields to it.
pub fn verbose_json(t: &Transcript) -> serde_json::Value {
    let segments = t
        .segments
        .iter()
        .map(|s| VerboseSegment {
            // OpenAI numbers verbose_json segments from 0; `Segment::id` counts from 1.
            id: s.id.saturating_sub(1),
            seek: s.seek,
            start: s.start,
            end: s.end,
            text: &s.text,
            tokens: &s.tokens,
            temperature: s.temperature,
            avg_logprob: s.avg_logprob,
            compression_ratio: s.compression_ratio,
            no_speech_prob: s.no_speech_prob,
        })
        .collect();
    let body = VerboseJson {
        task: t.task.as_str(),
        language: &t.language,
        language_probability: t.language_probability,
        duration: t.duration,
        duration_after_vad: t.duration_after_vad,
        text: &t.text,
        segments,
    };
    serde_json::to_value(&body).expect("plain structs always serialize")
}

/// SRT or WebVTT. Cues are separated by one blank line (in VTT the first one also follows a
/// blank line after the `WEBVTT` header); SRT numbers them from 1. Segments whose text is empty
/// once cleaned are left out, since an empty cue body would read as the end of the cue.
fn render_subtitles(t: &Transcript, vtt: bool) -> String {
    let ms_sep = if vtt { '.' } else { ',' };
    let mut out = String::from(if vtt { "WEBVTT\n" } else { "" });
    let mut n = 0;
    for s in &t.segments {
        let text = cue_text(&if vtt { escape_vtt(&s.text) } else { no_arrows(&s.text) });
        if text.is_empty() {
            continue;
        }
        n += 1;
        if vtt || n > 1 {
            out.push('\n');
        }
        if !vtt {
            let _ = writeln!(out, "{n}");
        }
        // A cue may not end before it starts.
        let (start, end) = (timestamp(s.start, ms_sep), timestamp(s.end.max(s.start), ms_sep));
        let _ = write!(out, "{start} --> {end}\n{text}\n");
    }
    out
}

/// SRT has no escapes: `-->` in text becomes `->`, repeatedly, since `--->` would leave `-->`.
fn no_arrows(text: &str) -> String {
    let mut text = text.to_string();
    while text.contains("-->") {
        text = text.replace("-->", "->");
    }
    text
}

/// Trimmed text with no blank lines: a blank line would end the cue early.
fn cue_text(text: &str) -> String {
    text.split(['\n', '\r']).map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("\n")
}

/// WebVTT cue text is markup: `<` opens a tag and `&` an entity; escaping `>` also breaks `-->`.
fn escape_vtt(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// `HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (VTT). Rounds to the nearest millisecond before
/// splitting into fields, so 59.9999 s is `00:01:00,000`, never `00:00:59,1000` or `00:00:59,999`.
fn timestamp(seconds: f64, ms_sep: char) -> String {
    // NaN and negative times clamp to 0 (`as` saturates and maps NaN to 0).
    let total_ms = (seconds * 1000.0).round().max(0.0) as u64;
    let (h, rest) = (total_ms / 3_600_000, total_ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{ms_sep}{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcript::Segment;

    fn seg(id: usize, start: f64, end: f64, text: &str) -> Segment {
        Segment {
            id,
            seek: 0,
            start,
            end,
            text: text.to_string(),
            tokens: vec![50363, 440, 2068, 50413],
            temperature: 0.0,
            avg_logprob: -0.25,
            compression_ratio: 1.5,
            no_speech_prob: 0.01,
        }
    }

    fn transcript(segments: Vec<Segment>) -> Transcript {
        let text = segments.iter().map(|s| s.text.as_str()).collect::<String>().trim().to_string();
        Transcript {
            text,
            segments,
            language: "en".into(),
            language_probability: 1.0,
            task: crate::whisper::Task::Transcribe,
            duration: 3725.5,
            duration_after_vad: None,
        }
    }

    fn two_segments() -> Transcript {
        transcript(vec![seg(1, 0.0, 2.5, " Hello there."), seg(2, 3661.02, 3725.5, " Past the hour.")])
    }

    fn empty() -> Transcript {
        Transcript {
            text: String::new(),
            segments: vec![],
            language: "en".into(),
            language_probability: 1.0,
            task: crate::whisper::Task::Transcribe,
            duration: 10.0,
            duration_after_vad: None,
        }
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
        assert_eq!("verbose_json".parse::<Format>().unwrap(), Format::VerboseJson);
        assert_eq!(" SRT ".parse::<Format>().unwrap(), Format::Srt);
        assert_eq!(Format::default(), Format::Json);
    }

    #[test]
    fn unknown_format_lists_valid_names() {
        match "xml".parse::<Format>() {
            Err(Error::InvalidArgument { field, reason }) => {
                assert_eq!(field, "response_format");
                assert!(reason.contains("`xml`"), "{reason}");
                assert!(reason.contains("json, text, srt, vtt, verbose_json"), "{reason}");
            }
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }

    #[test]
    fn content_types_and_extensions() {
        let got: Vec<_> = Format::ALL.iter().map(|f| (f.content_type(), f.extension())).collect();
        assert_eq!(
            got,
            [
                ("application/json", "json"),
                ("text/plain; charset=utf-8", "txt"),
                ("application/x-subrip; charset=utf-8", "srt"),
                ("text/vtt; charset=utf-8", "vtt"),
                ("application/json", "json"),
            ]
        );
    }

    #[test]
    fn text_is_transcript_plus_newline() {
        assert_eq!(render(&two_segments(), Format::Text), "Hello there. Past the hour.\n");
        assert_eq!(render(&empty(), Format::Text), "\n");
    }

    #[test]
    fn json_has_only_text() {
        let mut t = two_segments();
        t.text = "say \"hi\" \\ 你好\n".into();
        let v: serde_json::Value = serde_json::from_str(&render(&t, Format::Json)).unwrap();
        assert_eq!(v, serde_json::json!({ "text": "say \"hi\" \\ 你好\n" }));
    }

    #[test]
    fn verbose_json_has_openai_fields() {
        let out = render(&two_segments(), Format::VerboseJson);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["task"], "transcribe");
        assert_eq!(v["language"], "en");
        assert_eq!(v["duration"], 3725.5);
        assert_eq!(v["text"], "Hello there. Past the hour.");
        let segs = v["segments"].as_array().unwrap();
        assert_eq!(segs.len(), 2);
        let s = segs[1].as_object().unwrap();
        let mut keys: Vec<_> = s.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["avg_logprob", "compression_ratio", "end", "id", "no_speech_prob", "seek", "start", "temperature", "text", "tokens"]
        );
        // Ids from 0, as OpenAI numbers them.
        assert_eq!(segs[0]["id"], 0);
        assert_eq!(s["id"], 1);
        assert_eq!(s["start"], 3661.02);
        assert_eq!(s["end"], 3725.5);
        assert_eq!(s["text"], " Past the hour.");
        assert_eq!(s["tokens"], serde_json::json!([50363, 440, 2068, 50413]));
        assert_eq!(s["temperature"], 0.0);
        assert_eq!(s["avg_logprob"], -0.25);
        assert_eq!(s["compression_ratio"], 1.5);
        assert!((s["no_speech_prob"].as_f64().unwrap() - 0.01).abs() < 1e-6);

        let v: serde_json::Value = serde_json::from_str(&render(&empty(), Format::VerboseJson)).unwrap();
        assert_eq!(v["segments"], serde_json::json!([]));
        assert_eq!(v["text"], "");
    }

    #[test]
    fn srt_cues() {
        let expected = "1\n00:00:00,000 --> 00:00:02,500\nHello there.\n\n\
                        2\n01:01:01,020 --> 01:02:05,500\nPast the hour.\n";
        assert_eq!(render(&two_segments(), Format::Srt), expected);
    }

    #[test]
    fn vtt_cues() {
        let expected = "WEBVTT\n\n00:00:00.000 --> 00:00:02.500\nHello there.\n\n\
                        01:01:01.020 --> 01:02:05.500\nPast the hour.\n";
        assert_eq!(render(&two_segments(), Format::Vtt), expected);
    }

    #[test]
    fn empty_transcript_gives_empty_subtitles() {
        assert_eq!(render(&empty(), Format::Srt), "");
        assert_eq!(render(&empty(), Format::Vtt), "WEBVTT\n");
        assert_eq!(render(&empty(), Format::Json), r#"{"text":""}"#);
    }

    #[test]
    fn timestamps_round_to_the_millisecond() {
        let cases = [
            (0.0, "00:00:00,000"),
            (0.0004, "00:00:00,000"),
            (0.0006, "00:00:00,001"),
            (1.9995001, "00:00:02,000"),
            (59.9999, "00:01:00,000"),
            (61.001, "00:01:01,001"),
            (3599.9994, "00:59:59,999"),
            (3599.9996, "01:00:00,000"),
            (3661.02, "01:01:01,020"),
            (100.0 * 3600.0 + 0.5, "100:00:00,500"),
            (-0.3, "00:00:00,000"),
            (f64::NAN, "00:00:00,000"),
        ];
        for (secs, want) in cases {
            assert_eq!(timestamp(secs, ','), want, "{secs}");
        }
        assert_eq!(timestamp(3599.9996, '.'), "01:00:00.000");
    }

    #[test]
    fn cue_text_cannot_break_cue_structure() {
        let t = transcript(vec![
            seg(1, 1.0, 2.0, " a ---> b\n\n  second line  \r\n\r\rthird"),
            seg(2, 2.0, 3.0, "   \n\n "),
            seg(3, 4.0, 3.5, " <i>Tom & Jerry</i>"),
        ]);
        let srt = render(&t, Format::Srt);
        assert_eq!(
            srt,
            "1\n00:00:01,000 --> 00:00:02,000\na -> b\nsecond line\nthird\n\n\
             2\n00:00:04,000 --> 00:00:04,000\n<i>Tom & Jerry</i>\n"
        );
        let vtt = render(&t, Format::Vtt);
        assert_eq!(
            vtt,
            "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\na ---&gt; b\nsecond line\nthird\n\n\
             00:00:04.000 --> 00:00:04.000\n&lt;i&gt;Tom &amp; Jerry&lt;/i&gt;\n"
        );
        // Only the timing lines carry an arrow, and each cue is one block.
        assert_eq!(vtt.matches("-->").count(), 2);
        assert_eq!(srt.split("\n\n").count(), 2);
    }
}
