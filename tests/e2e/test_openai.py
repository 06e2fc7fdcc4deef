"""The official `openai` Python client against /v1/audio/transcriptions."""

import openai
import pytest
import requests

from conftest import SPEECH, reference_text


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def transcribe(client, name="s01.wav", **kwargs):
    with open(SPEECH / name, "rb") as f:
        return client.audio.transcriptions.create(model="whisper-1", file=f, **kwargs)


def test_json(client):
    assert transcribe(client).text == reference_text("s01.wav")


def test_text(client):
    assert transcribe(client, response_format="text").strip() == reference_text("s01.wav")


def test_srt(client):
    srt = transcribe(client, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and reference_text("s01.wav") in srt


def test_vtt(client):
    vtt = transcribe(client, response_format="vtt")
    assert vtt.startswith("WEBVTT") and reference_text("s01.wav") in vtt


def test_verbose_json(client):
    result = transcribe(client, "s02.wav", response_format="verbose_json", timestamp_granularities=["segment"], language="en")
    assert result.text == reference_text("s02.wav")
    assert result.language == "en" and abs(result.duration - 7.217) < 0.01
    assert result.segments[0].start == 0.0 and result.segments[-1].end <= result.duration + 0.5


def test_compressed_audio_and_options(client):
    result = transcribe(client, "s05.mp3", temperature=0.0, prompt="Quarterly report.")
    assert result.text


def test_word_timestamps_are_refused_clearly(client):
    with pytest.raises(openai.BadRequestError) as e:
        transcribe(client, timestamp_granularities=["word"])
    assert e.value.status_code == 400 and "timestamp_granularities" in str(e.value)


def test_unknown_response_format(client):
    with pytest.raises(openai.BadRequestError) as e:
        transcribe(client, response_format="docx")
    assert "response_format" in str(e.value)


def test_raw_upload_endpoint(server):
    body = (SPEECH / "s03.flac").read_bytes()
    r = requests.post(server.url + "/transcribe?response_format=verbose_json", data=body, headers={"content-type": "audio/flac"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == reference_text("s03.wav")
    assert float(r.headers["x-tingxie-compute-seconds"]) > 0 and float(r.headers["x-tingxie-audio-seconds"]) > 7


def test_batched_windows_through_the_api(client):
    # tingxie's extra form field: speech chunks of up to 30 s cut by Silero VAD, 4 decoded at once.
    result = transcribe(client, "long_90s.wav", response_format="verbose_json", extra_body={"batch_size": 4})
    windows = sorted({s.seek for s in result.segments})
    assert len(windows) >= 3, windows
    assert "bicycle" in result.text.lower()
    ends = [(s.start, s.end) for s in result.segments]
    assert all(a[1] <= b[0] for a, b in zip(ends, ends[1:])) and ends[-1][1] <= result.duration, ends


def test_bad_batch_size_is_named(client):
    with pytest.raises(openai.BadRequestError) as e:
        transcribe(client, extra_body={"batch_size": 100})
    assert "batch_size" in str(e.value)
