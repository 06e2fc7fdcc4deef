"""Storage events in, transcripts out: CloudEvents (binary, structured, batch) and webhooks."""

import base64
import json
import threading
import uuid

import requests
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from conftest import BUCKET, SPEECH, reference_text, s3_record

S3_TYPE = "com.amazon.s3.objectcreated"


def s3_event(key, etag, size, ty=S3_TYPE, event_id=None):
    attributes = {"type": ty, "source": f"arn:aws:s3:::{BUCKET}", "id": event_id or str(uuid.uuid4()), "subject": key}
    return CloudEvent(attributes, {"Records": [s3_record(key, etag, size)]})


def send(server, event, mode="binary"):
    message = (to_binary_event if mode == "binary" else to_structured_event)(event)
    return requests.post(server.url + "/", headers=message.headers, data=message.body, timeout=300)


def transcripts_of(s3, key):
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"transcripts/{key}")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def check_completed(s3, key, etag, reply_data, name):
    assert reply_data["text"] == reference_text(name)
    assert reply_data["source"] == {"uri": f"s3://{BUCKET}/{key}", "etag": etag, "version": None, "size": reply_data["source"]["size"]}
    assert transcripts_of(s3, key) == sorted(f"transcripts/{key}.{ext}" for ext in ("json", "txt", "srt", "vtt"))
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.json")["Body"].read())
    assert record["text"] == reference_text(name) and record["source"]["etag"] == etag
    assert record["segments"] and record["model"]
    text = s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.txt")["Body"].read().decode()
    assert text.strip() == reference_text(name)
    vtt = s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.vtt")["Body"].read().decode()
    assert vtt.startswith("WEBVTT")


def test_binary_mode_s3_event(server, s3, upload):
    key, etag, size = upload("s01.wav")
    r = send(server, s3_event(key, etag, size))
    assert r.status_code == 200, r.text
    assert r.headers["ce-type"] == "dev.tingxie.transcription.completed"
    assert r.headers["ce-subject"] == f"s3://{BUCKET}/{key}"
    data = r.json()
    check_completed(s3, key, etag, data, "s01.wav")
    assert data["duplicate"] is False and data["real_time_factor"] > 0 and data["outputs"][-1].endswith(".json")


def test_structured_mode_with_a_key_that_needs_encoding(server, s3, upload):
    key, etag, size = upload("s02.wav", prefix="in/with space+plus")
    r = send(server, s3_event(key, etag, size), mode="structured")
    assert r.status_code == 200, r.text
    check_completed(s3, key, etag, r.json(), "s02.wav")


def test_batched_mode(server, s3, upload):
    events = [s3_event(*upload(name)) for name in ("s03.wav", "s04.wav")]
    body = "[" + ",".join(JSONFormat().write(e).decode() for e in events) + "]"
    r = requests.post(server.url + "/", data=body, headers={"content-type": "application/cloudevents-batch+json"}, timeout=300)
    assert r.status_code == 200, r.text
    replies = r.json()
    assert [reply["type"] for reply in replies] == ["dev.tingxie.transcription.completed"] * 2
    assert [reply["data"]["text"] for reply in replies] == [reference_text("s03.wav"), reference_text("s04.wav")]


def test_minio_webhook(server, s3, upload):
    key, etag, size = upload("s05.wav")
    body = {"EventName": "s3:ObjectCreated:Put", "Key": f"{BUCKET}/{key}", "Records": [s3_record(key, etag, size)]}
    r = requests.post(server.url + "/", json=body, timeout=300)
    assert r.status_code == 200, r.text
    check_completed(s3, key, etag, r.json(), "s05.wav")


def test_eventbridge_webhook(server, s3, upload):
    key, etag, size = upload("s06.wav")
    body = {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-28T12:00:00Z", "region": "us-east-1", "resources": [f"arn:aws:s3:::{BUCKET}"],
        "detail": {"version": "0", "bucket": {"name": BUCKET}, "object": {"key": key, "size": size, "etag": etag}, "reason": "PutObject"},
    }
    r = requests.post(server.url + "/", json=body, timeout=300)
    assert r.status_code == 200, r.text
    check_completed(s3, key, etag, r.json(), "s06.wav")


def test_redelivery_runs_the_model_once(server, s3, upload):
    key, etag, size = upload("s07.wav")
    event = s3_event(key, etag, size)
    computed = server.metric("tingxie_compute_seconds_count")
    first = send(server, event)
    assert first.status_code == 200 and first.json()["duplicate"] is False
    second = send(server, event)
    assert second.status_code == 200, second.text
    assert second.json()["duplicate"] is True and second.json()["text"] == first.json()["text"]
    assert server.metric("tingxie_compute_seconds_count") == computed + 1
    assert len(transcripts_of(s3, key)) == 4


def test_concurrent_deliveries_run_the_model_once(server, s3, upload):
    key, etag, size = upload("s08.wav")
    event = s3_event(key, etag, size)
    computed = server.metric("tingxie_compute_seconds_count")
    replies = [None] * 3
    threads = [threading.Thread(target=lambda i=i: replies.__setitem__(i, send(server, event))) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in replies] == [200] * 3, [r.text for r in replies]
    assert len({r.json()["text"] for r in replies}) == 1
    assert server.metric("tingxie_compute_seconds_count") == computed + 1
    assert len(transcripts_of(s3, key)) == 4


def test_a_new_version_is_transcribed_anew(server, s3, upload):
    key, etag, size = upload("s09.wav")
    assert send(server, s3_event(key, etag, size)).json()["text"] == reference_text("s09.wav")
    body = (SPEECH / "s10.wav").read_bytes()
    etag2 = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    r = send(server, s3_event(key, etag2, len(body)))
    assert r.status_code == 200 and r.json()["duplicate"] is False
    assert r.json()["text"] == reference_text("s10.wav")
    record = json.loads(s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.json")["Body"].read())
    assert record["source"]["etag"] == etag2 and record["text"] == reference_text("s10.wav")


def test_our_own_outputs_do_not_start_a_loop(server, s3, upload):
    key, etag, size = upload("s11.wav")
    send(server, s3_event(key, etag, size))
    out = f"transcripts/{key}.json"
    head = s3.head_object(Bucket=BUCKET, Key=out)
    r = send(server, s3_event(out, head["ETag"].strip('"'), head["ContentLength"]))
    assert r.status_code == 202 and "transcript" in r.headers["x-tingxie-ignored"]
    assert not transcripts_of(s3, out)


def test_tingxie_request_with_inline_audio(server):
    audio = base64.b64encode((SPEECH / "s12.wav").read_bytes()).decode()
    event = CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/tests", "id": "inline-1"}, {"audio": audio, "language": "en"})
    r = send(server, event)
    assert r.status_code == 200, r.text
    assert r.headers["ce-type"] == "dev.tingxie.transcription.completed"
    assert r.json()["text"] == reference_text("s12.wav") and r.json()["segments"]


def test_tingxie_request_with_a_source_and_output(server, s3, upload):
    key, etag, _ = upload("s13.wav")
    event = CloudEvent(
        {"type": "dev.tingxie.transcription.requested", "source": "/tests", "id": str(uuid.uuid4())},
        {"source": f"s3://{BUCKET}/{key}", "output": f"s3://{BUCKET}/results/"},
    )
    r = send(server, event, mode="structured")
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][-1] == f"s3://{BUCKET}/results/{BUCKET}/{key}.json"
    assert s3.get_object(Bucket=BUCKET, Key=f"results/{BUCKET}/{key}.txt")["Body"].read().decode().strip() == reference_text("s13.wav")


def test_http_json_request_names_a_source(server, s3, upload):
    key, etag, _ = upload("s14.wav")
    r = requests.post(server.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == reference_text("s14.wav")
    assert transcripts_of(s3, key)


def test_two_instances_given_the_same_upload_run_the_model_once(tmp_path, moto, server, s3, upload):
    """A redelivery racing the first attempt on another pod: the claim object arbitrates."""
    from conftest import Server

    # Replicas share the history, and with it the key that signs transcript records.
    other = Server(tmp_path, moto, TINGXIE_HISTORY=server.tmp / "history").wait_ready()
    try:
        key, etag, size = upload("s12.wav")  # 26 s of speech: the deliveries overlap
        event = s3_event(key, etag, size)
        before = server.metric("tingxie_compute_seconds_count") + other.metric("tingxie_compute_seconds_count")
        replies = [None, None]
        threads = [threading.Thread(target=lambda i=i, s=s: replies.__setitem__(i, send(s, event))) for i, s in enumerate((server, other))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in replies)
        assert statuses in ([200, 200], [200, 503]), [r.text for r in replies]
        for r in replies:
            if r.status_code == 503:
                assert r.headers["Retry-After"] and "another instance" in r.json()["error"]["message"]
        # The retry Knative would make finds the finished transcript.
        again = send(other, event)
        assert again.status_code == 200 and again.json()["duplicate"] is True
        after = server.metric("tingxie_compute_seconds_count") + other.metric("tingxie_compute_seconds_count")
        assert after == before + 1
        assert transcripts_of(s3, key) == sorted(f"transcripts/{key}.{ext}" for ext in ("json", "txt", "srt", "vtt"))
    finally:
        assert other.terminate() == 0


def test_logs_carry_the_trace_id_and_the_event_id(server, s3, upload):
    key, etag, size = upload("s17.wav")
    trace = uuid.uuid4().hex
    event = s3_event(key, etag, size, event_id=f"ev-{trace[:8]}")
    message = to_binary_event(event)
    headers = dict(message.headers, traceparent=f"00-{trace}-{'1' * 16}-01")
    assert requests.post(server.url + "/", headers=headers, data=message.body, timeout=300).status_code == 200
    lines = [json.loads(line) for line in server.logs().splitlines() if trace in line]
    assert lines, "no log line names the trace id"
    spans = [{k: v for span in line.get("spans", []) for k, v in span.items()} for line in lines]
    assert any(s.get("trace_id") == trace and s.get("ce_id") == f"ev-{trace[:8]}" for s in spans), lines
    assert "test" not in "".join(json.dumps(line) for line in lines).replace("tests", ""), "credentials must not be logged"
