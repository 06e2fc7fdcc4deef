"""Multilingual Whisper through the service (issue 22): the multilingual base model served on its
own, the official `openai` client's translations and `language=zh`, Mandarin subtitles that a
subtitle library parses, `task` and `zh_script` on every entry point, and clear 400s for what a
model cannot do (on the English-only server of the other tests)."""

import base64
import json
import os
import uuid
from pathlib import Path

import openai
import pytest
import requests
import srt
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import FIXTURES, REPO, Server

BASE = Path(os.environ.get("TINGXIE_TEST_BASE_MODEL_DIR", REPO / "models" / "whisper-base"))
REFERENCES = BASE / "faster-whisper"
REAL = FIXTURES / "real"
ZH = "zh_aishell_BAC009S0002W0122.wav"
REQUEST_TYPE = "dev.tingxie.transcription.requested"


def reference(mode: str, name: str) -> dict:
    return json.loads((REFERENCES / f"{mode}.json").read_text())["files"][name]


@pytest.fixture(scope="module")
def base_server(tmp_path_factory, moto):
    tmp = tmp_path_factory.mktemp("base")
    (tmp / "local").mkdir()
    srv = Server(tmp, moto, TINGXIE_MODEL=BASE).wait_ready(300)
    srv.tmp = tmp
    yield srv
    assert srv.terminate() == 0, srv.logs()[-3000:]


@pytest.fixture(scope="module")
def client(base_server):
    return openai.OpenAI(base_url=base_server.url + "/v1", api_key="not-needed", max_retries=0, timeout=300)


def form(client, create, name, **kwargs):
    # Temperature 0 alone, as the references decode. (This client marks
    # `audio.translations.create` deprecated; it is still OpenAI's documented endpoint.)
    with open(REAL / name, "rb") as f:
        return create(model="whisper-base", file=f, extra_body={"temperature": 0}, **kwargs)


def test_openai_translation_of_mandarin_is_faster_whispers(client):
    result = form(client, client.audio.translations.create, ZH)
    assert result.text == reference("translate", f"real/{ZH}#beam1")["text"]


def test_openai_transcription_with_language_zh(client):
    result = form(client, client.audio.transcriptions.create, ZH, language="zh", response_format="verbose_json")
    expected = reference("greedy", f"real/{ZH}")
    assert result.text == expected["text"]
    assert result.language == "zh"
    assert [s.tokens for s in result.segments] == [s["tokens"] for s in expected["segments"]]


def test_detected_language_comes_with_its_probability(base_server):
    body = (REAL / "zh_aishell_BAC009S0724W0121.wav").read_bytes()
    r = requests.post(base_server.url + "/transcribe?response_format=verbose_json&temperature=0", data=body, headers={"content-type": "audio/wav"}, timeout=300)
    assert r.status_code == 200, r.text
    expected = reference("detect", "real/zh_aishell_BAC009S0724W0121.wav")
    assert r.json()["language"] == expected["language"] == "zh"
    assert abs(r.json()["language_probability"] - expected["language_probability"]) < 1e-3
    assert r.json()["task"] == "transcribe"


def test_mandarin_subtitles_parse_and_keep_every_character(client):
    for name in ("zh_aishell_BAC009S0002W0123.wav", "zh_aishell_BAC009S0002W0124.wav"):
        text = form(client, client.audio.transcriptions.create, name, language="zh", response_format="srt")
        cues = list(srt.parse(text))
        expected = reference("greedy", f"real/{name}")
        assert cues and all(c.content.strip() for c in cues), text
        assert "\ufffd" not in text
        assert "".join(c.content.strip() for c in cues) == "".join(s["text"].strip() for s in expected["segments"]).replace("\ufffd", "")
        assert cues[-1].end.total_seconds() <= 30


def test_simplified_script_steers_the_output(base_server):
    body = (REAL / ZH).read_bytes()
    r = requests.post(base_server.url + "/transcribe?language=zh&zh_script=simplified&temperature=0", data=body, headers={"content-type": "audio/wav"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == reference("zh_simplified", f"real/{ZH}")["text"]


def test_translate_task_on_every_entry_point(base_server):
    body = (REAL / ZH).read_bytes()
    expected = reference("translate", f"real/{ZH}#beam1")["text"]
    r = requests.post(base_server.url + "/transcribe?task=translate&temperature=0", data=body, headers={"content-type": "audio/wav"}, timeout=300)
    assert r.status_code == 200 and r.json()["text"] == expected, r.text
    event = CloudEvent(
        {"type": REQUEST_TYPE, "source": "/tests", "id": str(uuid.uuid4())},
        {"audio": base64.b64encode(body).decode(), "task": "translate", "language": "zh", "temperature": 0.0},
    )
    message = to_binary_event(event)
    r = requests.post(base_server.url + "/", headers=message.headers, data=message.body, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == expected and r.json()["task"] == "translate" and r.json()["language"] == "zh"
    assert base_server.metric("tingxie_transcriptions_total", 'language="zh",task="translate"') >= 2


def test_a_stored_source_keeps_its_translation_beside_its_transcript(base_server):
    local = base_server.tmp / "local" / f"{uuid.uuid4()}"
    local.mkdir()
    (local / ZH).write_bytes((REAL / ZH).read_bytes())
    source = f"file://{local}/{ZH}"
    translated = requests.post(base_server.url + "/transcribe", json={"source": source, "task": "translate", "temperature": 0.0}, timeout=300)
    assert translated.status_code == 200, translated.text
    assert translated.json()["outputs"][-1].endswith(f"/{ZH}.translation.json") and translated.json()["task"] == "translate"
    transcribed = requests.post(base_server.url + "/transcribe", json={"source": source, "language": "zh", "temperature": 0.0}, timeout=300)
    assert transcribed.status_code == 200, transcribed.text
    assert transcribed.json()["duplicate"] is False and transcribed.json()["outputs"][-1].endswith(f"/{ZH}.json")
    assert transcribed.json()["text"] == reference("greedy", f"real/{ZH}")["text"]
    again = requests.post(base_server.url + "/transcribe", json={"source": source, "task": "translate"}, timeout=300)
    assert again.json()["duplicate"] is True and again.json()["text"] == translated.json()["text"]


# What a model cannot do: 400 naming the parameter, on every entry point (the English-only server).

def entry_points(server, options: dict):
    """The same options through the query, a JSON body, a CloudEvent and the OpenAI form."""
    body = (REAL / "en_sr_english.16k.wav").read_bytes()
    yield "query", requests.post(server.url + "/transcribe", params=options, data=body, headers={"content-type": "audio/wav"}, timeout=60)
    inline = dict(options, audio=base64.b64encode(body).decode())
    yield "json", requests.post(server.url + "/transcribe", json=inline, timeout=60)
    message = to_binary_event(CloudEvent({"type": REQUEST_TYPE, "source": "/tests", "id": str(uuid.uuid4())}, inline))
    yield "cloudevent", requests.post(server.url + "/", headers=message.headers, data=message.body, timeout=60)
    files = {"file": ("english.wav", body, "audio/wav")}
    yield "form", requests.post(server.url + "/v1/audio/transcriptions", data=dict(options, model="whisper-1"), files=files, timeout=60)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"language": "xx"}, "language"),
        ({"language": "zh"}, "language"),
        ({"task": "translate"}, "task"),
        ({"task": "summarise"}, "task"),
        ({"zh_script": "cyrillic"}, "zh_script"),
    ],
)
def test_what_a_model_cannot_do_is_a_400_naming_the_parameter(server, options, field):
    for entry, r in entry_points(server, options):
        assert r.status_code == 400, (entry, r.status_code, r.text)
        assert field in r.text, (entry, r.text)


def test_translations_on_an_english_only_model_name_the_task(server):
    files = {"file": ("english.wav", (REAL / "en_sr_english.16k.wav").read_bytes(), "audio/wav")}
    r = requests.post(server.url + "/v1/audio/translations", data={"model": "whisper-1"}, files=files, timeout=60)
    assert r.status_code == 400 and "task" in r.text and "English-only" in r.text, r.text


def test_unknown_language_on_the_multilingual_model(base_server):
    r = requests.post(base_server.url + "/transcribe?language=klingon", data=(REAL / ZH).read_bytes(), headers={"content-type": "audio/wav"}, timeout=60)
    assert r.status_code == 400 and "language" in r.text and "klingon" in r.text, r.text
