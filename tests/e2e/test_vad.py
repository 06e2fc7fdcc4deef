"""Silero VAD through every entry point (issue 19): `vad_filter`, `vad_parameters` and the
batched mode on the query, a JSON body, CloudEvent data and the OpenAI form (the official
client), compared with faster-whisper 1.2.1's `transcribe(vad_filter=True)` and
`BatchedInferencePipeline` on the same weights (`make models`: models/silero-vad/faster-whisper)."""

import base64
import json
import uuid

import openai
import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import REPO, SPEECH, VAD

REFERENCES = VAD / "faster-whisper"


def reference(mode, name):
    with open(REFERENCES / f"{mode}.json") as f:
        return json.load(f)["files"][name]


def segments_match(ours, theirs):
    assert [s["tokens"] for s in ours] == [s["tokens"] for s in theirs["segments"]]
    for a, b in zip(ours, theirs["segments"]):
        assert abs(a["start"] - b["start"]) < 0.0015 and abs(a["end"] - b["end"]) < 0.0015, (a, b)


def wav(name):
    return (SPEECH / name).read_bytes()


def request_event(data):
    event = CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/tests/vad", "id": str(uuid.uuid4())}, data)
    return to_binary_event(event)


def test_vad_filter_on_the_query_equals_faster_whisper(server):
    expected = reference("vad_filter", "speech/long_90s.wav")
    r = requests.post(server.url + "/transcribe", params={"vad_filter": "true", "temperature": 0, "response_format": "verbose_json"},
                      data=wav("long_90s.wav"), headers={"content-type": "audio/wav"}, timeout=300)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"] == expected["text"]
    assert body["duration_after_vad"] == pytest.approx(expected["duration_after_vad"], abs=1e-9)
    assert body["duration"] == pytest.approx(expected["duration"], abs=1e-9)
    segments_match(body["segments"], expected)


def test_vad_filter_and_parameters_in_a_json_body_and_a_cloudevent(server):
    audio = base64.b64encode(wav("s12.wav")).decode()
    expected = reference("vad_filter", "speech/s12.wav")
    # The defaults spelled out as an object, as faster-whisper takes `vad_parameters`.
    params = {"threshold": 0.5, "min_silence_duration_ms": 2000, "speech_pad_ms": 400}
    r = requests.post(server.url + "/transcribe", json={"audio": audio, "vad_filter": True, "vad_parameters": params,
                                                        "temperature": 0, "response_format": "verbose_json"}, timeout=300)
    assert r.status_code == 200, r.text
    segments_match(r.json()["segments"], expected)
    message = request_event({"audio": audio, "vad_filter": True, "vad_parameters": json.dumps(params), "temperature": 0.0,
                             "response_format": "verbose_json"})
    r = requests.post(server.url + "/", headers=message.headers, data=message.body, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == expected["text"]


def test_openai_client_vad_filter_and_batches(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=300)
    with open(SPEECH / "long_5min.wav", "rb") as f:
        batched = client.audio.transcriptions.create(model="whisper-1", file=f, language="en", temperature=0,
                                                     response_format="verbose_json", extra_body={"batch_size": 8})
    expected = reference("batched", "speech/long_5min.wav")
    assert batched.text == expected["text"]
    assert [s.tokens for s in batched.segments] == [s["tokens"] for s in expected["segments"]]
    with open(SPEECH / "s16.wav", "rb") as f:
        filtered = client.audio.transcriptions.create(model="whisper-1", file=f, temperature=0, response_format="verbose_json",
                                                      extra_body={"vad_filter": "true"})
    expected = reference("vad_filter", "speech/s16.wav")
    assert filtered.text == expected["text"]
    assert [(s.start, s.end) for s in filtered.segments] == [(s["start"], s["end"]) for s in expected["segments"]]


def test_silence_with_the_vad_is_an_empty_transcript(server):
    for params in ({"vad_filter": "true"}, {"batch_size": 8}):
        r = requests.post(server.url + "/transcribe", params={**params, "response_format": "verbose_json"},
                          data=wav("silence_10s.wav"), headers={"content-type": "audio/wav"}, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == "" and r.json()["segments"] == [] and r.json()["duration_after_vad"] == 0


@pytest.mark.parametrize("bad", ['{"treshold": 0.5}', '{"threshold": 7}', "[1, 2]", "not json"])
def test_bad_vad_parameters_are_a_400_naming_them_on_every_entry_point(server, bad):
    body = wav("s01.wav")
    inline = {"audio": base64.b64encode(body).decode(), "vad_filter": True, "vad_parameters": bad}
    message = request_event(inline)
    answers = {
        "query": requests.post(server.url + "/transcribe", params={"vad_filter": "true", "vad_parameters": bad},
                               data=body, headers={"content-type": "audio/wav"}, timeout=60),
        "json": requests.post(server.url + "/transcribe", json=inline, timeout=60),
        "cloudevent": requests.post(server.url + "/", headers=message.headers, data=message.body, timeout=60),
        "form": requests.post(server.url + "/v1/audio/transcriptions", data={"model": "whisper-1", "vad_parameters": bad},
                              files={"file": ("s01.wav", body, "audio/wav")}, timeout=60),
    }
    for entry, r in answers.items():
        assert r.status_code == 400, (entry, r.status_code, r.text)
        assert "vad_parameters" in r.text, (entry, r.text)


def test_vad_filter_must_be_a_boolean(server):
    r = requests.post(server.url + "/transcribe", params={"vad_filter": "maybe"}, data=wav("s01.wav"),
                      headers={"content-type": "audio/wav"}, timeout=60)
    assert r.status_code == 400 and "vad_filter" in r.text, r.text
    r = requests.post(server.url + "/transcribe", json={"audio": base64.b64encode(wav("s01.wav")).decode(), "vad_filter": "yes"}, timeout=60)
    assert r.status_code == 400 and "vad_filter" in r.text, r.text
