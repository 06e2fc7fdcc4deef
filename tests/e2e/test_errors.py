"""Bad input gets the documented status and a JSON error naming the problem; the server stays
healthy."""

import os
import uuid

import pytest
import requests

from conftest import BUCKET, SPEECH, Server, s3_record


def ce_headers(ty="com.amazon.s3.objectcreated", **extra):
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-source": "/tests", "ce-type": ty, "content-type": "application/json"}
    headers.update(extra)
    return headers


def record_body(key, bucket=BUCKET):
    return {"Records": [s3_record(key, "0" * 32, 1000, bucket=bucket)]}


CASES = [
    # (name, request kwargs builder, status, words the message must contain)
    ("malformed structured event", lambda: dict(path="/", data=b"{not json", headers={"content-type": "application/cloudevents+json"}), 400, ["CloudEvent"]),
    ("binary event without ce-id", lambda: dict(path="/", json=record_body("x.wav"), headers={k: v for k, v in ce_headers().items() if k != "ce-id"}), 400, ["CloudEvent"]),
    ("unknown event type", lambda: dict(path="/", json={"a": 1}, headers=ce_headers("com.example.unknown")), 400, ["com.example.unknown"]),
    ("event for a missing object", lambda: dict(path="/", json=record_body("in/missing.wav"), headers=ce_headers()), 404, ["in/missing.wav"]),
    ("source outside the allow-list", lambda: dict(path="/", json=record_body("x.wav", bucket="elsewhere"), headers=ce_headers()), 403, ["s3://elsewhere/x.wav", "TINGXIE_ALLOWED_SOURCES"]),
    ("unrecognised webhook", lambda: dict(path="/", json={"hello": "world"}), 400, ["Records"]),
    ("event body of the wrong type", lambda: dict(path="/", data=b"hello", headers={"content-type": "text/plain"}), 415, ["text/plain"]),
    ("corrupt audio", lambda: dict(path="/transcribe", data=os.urandom(5000), headers={"content-type": "audio/wav"}), 400, ["audio"]),
    ("empty body", lambda: dict(path="/transcribe", data=b"", headers={"content-type": "audio/wav"}), 400, ["empty"]),
    ("wrong content type", lambda: dict(path="/transcribe", data=b"hello", headers={"content-type": "text/plain"}), 415, ["text/plain"]),
    ("unknown query parameter", lambda: dict(path="/transcribe?colour=red", data=b"x", headers={"content-type": "audio/wav"}), 400, ["colour"]),
    ("request with both audio and source", lambda: dict(path="/transcribe", json={"audio": "AAAA", "source": f"s3://{BUCKET}/a.wav"}), 400, ["source", "audio"]),
    ("request with a typo", lambda: dict(path="/transcribe", json={"sourec": f"s3://{BUCKET}/a.wav"}), 400, ["sourec"]),
    ("bad beam size", lambda: dict(path="/transcribe?beam_size=0", data=(SPEECH / "s01.wav").read_bytes(), headers={"content-type": "audio/wav"}), 400, ["beam_size"]),
    ("unknown route", lambda: dict(path="/nope", data=b""), 404, ["/nope"]),
]


@pytest.mark.parametrize("name,build,status,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input(server, s3, name, build, status, words):
    kwargs = build()
    path = kwargs.pop("path")
    r = requests.post(server.url + path, timeout=60, **kwargs)
    assert r.status_code == status, (name, r.status_code, r.text)
    error = r.json()["error"]
    for word in words:
        assert word in error["message"], (name, error)
    assert error["type"] == "invalid_request_error" and error["code"]
    assert requests.get(server.url + "/health/liveness", timeout=5).status_code == 200


def test_corrupt_object_named_by_an_event(server, s3):
    key = f"in/{uuid.uuid4()}/corrupt.wav"
    s3.put_object(Bucket=BUCKET, Key=key, Body=(SPEECH / "s01.wav").read_bytes()[:44])  # a WAV header, then nothing
    r = requests.post(server.url + "/", json=record_body(key), headers=ce_headers(), timeout=60)
    assert r.status_code == 400 and "audio" in r.json()["error"]["message"], r.text


def test_limits(tmp_path, moto, s3):
    srv = Server(tmp_path, moto, TINGXIE_MAX_BODY_BYTES=150_000, TINGXIE_MAX_AUDIO_SECONDS=5).wait_ready()
    try:
        big = (SPEECH / "s02.wav").read_bytes()  # 230 kB, 7.2 s
        r = requests.post(srv.url + "/transcribe", data=big, headers={"content-type": "audio/wav"}, timeout=60)
        assert r.status_code == 413 and "TINGXIE_MAX_BODY_BYTES" in r.json()["error"]["message"]
        # Chunked upload (no Content-Length): refused when the limit is crossed.
        r = requests.post(srv.url + "/transcribe", data=iter([big[i:i + 16384] for i in range(0, len(big), 16384)]), headers={"content-type": "audio/wav"}, timeout=60)
        assert r.status_code == 413
        mp3 = (SPEECH / "s05.mp3").read_bytes()  # 88 kB, longer than 5 s
        r = requests.post(srv.url + "/transcribe", data=mp3, headers={"content-type": "audio/mpeg"}, timeout=60)
        assert r.status_code == 413 and "TINGXIE_MAX_AUDIO_SECONDS" in r.json()["error"]["message"]
        assert requests.post(srv.url + "/transcribe", data=(SPEECH / "s01.wav").read_bytes(), timeout=60).status_code == 200
    finally:
        assert srv.terminate() == 0
