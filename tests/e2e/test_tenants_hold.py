"""Tenants that hold (issue 28): the event door as authenticated as the API (a key, or the
platform's Knative OIDC token), each tenant confined to the sources and outputs its line names,
event replays kept per sender and bounded, records recognised only when the service signed
them, object keys written as users name them, and inline events computed once however many
deliveries race."""

import base64
import concurrent.futures
import hashlib
import json
import time
import uuid

import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent

from conftest import BUCKET, SPEECH, Server, reference_text, s3_record
from oidc import Issuer
from test_hostile import samples

KEYS = {name: f"sk-{name}-{uuid.uuid4().hex}" for name in ("alice", "bob")}
S12 = base64.b64encode((SPEECH / "s12.wav").read_bytes()).decode()
S13 = base64.b64encode((SPEECH / "s13.wav").read_bytes()).decode()


def key_line(name: str) -> str:
    return f"key=sha256:{hashlib.sha256(KEYS[name].encode()).hexdigest()}"


TENANTS = f"""\
alice   standard  {key_line('alice')} source=s3://{BUCKET}/alice/ output=s3://{BUCKET}/results/alice/
bob     standard  {key_line('bob')} source=s3://{BUCKET}/bob/
clinic  priority  source=s3://{BUCKET}/clinic/
"""


def bearer(tenant: str) -> dict:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def computed(srv) -> float:
    return sum(v for _, v in samples(srv, "tingxie_model_requests_total"))


def records(srv, tenant: str) -> list:
    folder = srv.tmp / "history" / "records" / tenant
    return sorted(p.name for p in folder.glob("*.json")) if folder.exists() else []


def inline(event_id: str, audio: str = S12, source: str = "/tests/hold", **extensions) -> CloudEvent:
    attributes = {"type": "dev.tingxie.transcription.requested", "source": source, "id": event_id, **extensions}
    return CloudEvent(attributes, {"audio": audio, "language": "en"})


def send(srv, event, headers=None, mode="binary"):
    message = (to_binary_event if mode == "binary" else to_structured_event)(event)
    return requests.post(srv.url + "/", headers={**message.headers, **(headers or {})}, data=message.body, timeout=300)


def put(s3, key: str, name: str = "s05.wav") -> tuple:
    body = (SPEECH / name).read_bytes()
    etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
    return etag, len(body)


@pytest.fixture(scope="module")
def closed(tmp_path_factory, moto, s3):
    """Keyed tenants confined to their prefixes, and the platform's OIDC issuer."""
    tmp = tmp_path_factory.mktemp("hold")
    (tmp / "local").mkdir()
    (tmp / "tenants.txt").write_text(TENANTS)
    # The issuer publishes an RSA key (RS256, Kubernetes' default) and a P-256 one (ES256).
    issuer, curve = Issuer(), Issuer(curve=True)
    jwks = issuer.write_jwks(tmp / "jwks.json", curve)
    srv = Server(tmp, moto, TINGXIE_TENANTS=tmp / "tenants.txt", **issuer.env(jwks)).wait_ready()
    srv.tmp, srv.issuer, srv.curve = tmp, issuer, curve
    yield srv
    assert srv.terminate() == 0, srv.logs()[-3000:]


def test_a_platform_token_opens_the_event_door_and_names_the_tenant(closed):
    before = records(closed, "clinic")
    r = send(closed, inline(str(uuid.uuid4()), tenant="clinic"), closed.issuer.bearer())
    assert r.status_code == 200 and r.json()["text"] == reference_text("s12.wav"), r.text
    assert len(records(closed, "clinic")) == len(before) + 1
    # The issuer's elliptic-curve key (ES256) serves as well.
    r = send(closed, inline(str(uuid.uuid4())), closed.curve.bearer())
    assert r.status_code == 200 and r.json()["text"] == reference_text("s12.wav"), r.text


def test_deliveries_without_proof_are_refused_before_any_work(closed, s3):
    put(s3, "clinic/refused.wav")
    stranger = Issuer()  # the same issuer's name, a key it never published
    elsewhere = Issuer(issuer="https://other-cluster.example")
    good = closed.issuer.token()
    forged = good.rsplit(".", 1)[0] + "." + base64.urlsafe_b64encode(b"\0" * 256).rstrip(b"=").decode()
    refused = {
        "no token": {},
        "wrong audience": closed.issuer.bearer(audience="another-sink"),
        "expired": closed.issuer.bearer(expires_in=-300),
        "another issuer's key": stranger.bearer(),
        "another issuer": elsewhere.bearer(),
        "another issuer's name on the right key": closed.issuer.bearer(iss="https://other-cluster.example"),
        "a forged signature": {"authorization": f"Bearer {forged}"},
        "a key nobody has": {"authorization": "Bearer sk-made-up"},
    }
    work_before = computed(closed)
    made_up = f"made-up-{uuid.uuid4().hex[:8]}"
    for what, headers in refused.items():
        for event in (inline(str(uuid.uuid4()), tenant=made_up), inline(str(uuid.uuid4()), tenant="clinic")):
            r = send(closed, event, headers)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (what, r.text)
            assert r.headers["www-authenticate"] == "Bearer"
        notification = CloudEvent(
            {"type": "com.amazon.s3.objectcreated", "source": f"arn:aws:s3:::{BUCKET}", "id": str(uuid.uuid4()), "subject": "clinic/refused.wav"},
            {"Records": [s3_record("clinic/refused.wav", *put(s3, "clinic/refused.wav"))]},
        )
        assert send(closed, notification, headers, mode="structured").status_code == 401, what
    assert computed(closed) == work_before, "nothing was computed"
    assert records(closed, made_up) == [] and not (closed.tmp / "history" / "records" / made_up).exists()
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix="transcripts/clinic/refused.wav")


def test_a_key_makes_the_delivery_its_tenants_whatever_the_event_says(closed):
    alice_before, clinic_before = records(closed, "alice"), records(closed, "clinic")
    r = send(closed, inline(str(uuid.uuid4()), tenant="clinic"), bearer("alice"))
    assert r.status_code == 200 and r.json()["text"] == reference_text("s12.wav"), r.text
    assert len(records(closed, "alice")) == len(alice_before) + 1 and records(closed, "clinic") == clinic_before


def test_tenants_read_and_write_only_what_their_line_names(closed, s3):
    run = uuid.uuid4().hex[:8]
    alice_key, bob_key, clinic_key = f"alice/{run}/a.wav", f"bob/{run}/b.wav", f"clinic/{run}/c.wav"
    for key in (alice_key, bob_key, clinic_key):
        put(s3, key)

    def transcribe(tenant, key, **fields):
        return requests.post(closed.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}", **fields}, headers=bearer(tenant), timeout=300)

    work_before = computed(closed)
    theirs = transcribe("alice", bob_key)
    assert theirs.status_code == 403 and theirs.json()["error"]["code"] == "source_not_allowed", theirs.text
    assert "alice" in theirs.json()["error"]["message"]
    assert transcribe("bob", alice_key).status_code == 403
    # With another model or task the answer would be new transcripts in the other's bucket.
    assert transcribe("alice", bob_key, task="translate").status_code == 403
    r = send(closed, CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/t", "id": str(uuid.uuid4())}, {"source": f"s3://{BUCKET}/{clinic_key}"}), bearer("bob"))
    assert r.status_code == 403, r.text
    # The platform naming a tenant for an object outside that tenant's data: refused too.
    r = send(closed, CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/t", "id": str(uuid.uuid4()), "tenant": "clinic"}, {"source": f"s3://{BUCKET}/{alice_key}"}), closed.issuer.bearer())
    assert r.status_code == 403 and "clinic" in r.json()["error"]["message"], r.text
    assert computed(closed) == work_before
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"transcripts/bob/{run}")

    mine = transcribe("alice", alice_key)
    assert mine.status_code == 200 and mine.json()["text"] == reference_text("s05.wav"), mine.text
    # Outputs a request names: only under the tenant's output=.
    refused = transcribe("alice", alice_key, output=f"s3://{BUCKET}/results/bob/")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "output_not_allowed", refused.text
    assert transcribe("bob", bob_key, output=f"s3://{BUCKET}/results/bob/").status_code == 403, "bob's line names no output"
    ok = transcribe("alice", alice_key, output=f"s3://{BUCKET}/results/alice/")
    assert ok.status_code == 200 and ok.json()["outputs"][-1] == f"s3://{BUCKET}/results/alice/{BUCKET}/{alice_key}.json", ok.text
    platform = send(closed, CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/t", "id": str(uuid.uuid4()), "tenant": "clinic"}, {"source": f"s3://{BUCKET}/{clinic_key}"}), closed.issuer.bearer())
    assert platform.status_code == 200 and platform.json()["text"] == reference_text("s05.wav"), platform.text


def test_replays_are_kept_per_sender_and_bounded(closed):
    shared_id = f"shared-{uuid.uuid4()}"
    first = send(closed, inline(shared_id, S12), bearer("alice"))
    assert first.status_code == 200 and first.json()["text"] == reference_text("s12.wav"), first.text
    # Another tenant reusing the (source, id): its own audio, its own answer.
    second = send(closed, inline(shared_id, S13), bearer("bob"))
    assert second.status_code == 200 and second.json()["text"] == reference_text("s13.wav"), second.text
    assert second.json().get("duplicate") is not True
    again = send(closed, inline(shared_id, S12), bearer("alice"))
    assert again.status_code == 200 and again.json()["duplicate"] is True and again.json()["text"] == reference_text("s12.wav")

    work_before = computed(closed)
    started = time.monotonic()
    for event in (inline("i" * 257), inline("i" * (2 << 20)), inline(str(uuid.uuid4()), source="/" + "s" * 1024)):
        r = send(closed, event, bearer("alice"), mode="structured")
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request", r.text[:300]
        assert "limit is" in r.json()["error"]["message"] and len(r.text) < 2048
        assert sum(len(k) + len(v) for k, v in r.headers.items()) < 2048, "nothing of the id is echoed whole"
    # A batch with one such event runs none of them.
    batch = [json.loads(to_structured_event(e).body) for e in (inline(str(uuid.uuid4())), inline("x" * 300))]
    r = requests.post(closed.url + "/", data=json.dumps(batch), headers={"content-type": "application/cloudevents-batch+json", **bearer("alice")}, timeout=60)
    assert r.status_code == 400, r.text
    assert computed(closed) == work_before and time.monotonic() - started < 30


def test_concurrent_redeliveries_of_an_inline_event_are_computed_once(closed):
    event_id = f"race-{uuid.uuid4()}"
    work_before, records_before = computed(closed), records(closed, "alice")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: send(closed, inline(event_id, S13), bearer("alice")), range(4)))
    assert all(a.status_code == 200 and a.json()["text"] == reference_text("s13.wav") for a in answers), [a.text[:200] for a in answers]
    assert sorted(a.json().get("duplicate") is True for a in answers) == [False, True, True, True]
    assert len({a.json()["transcription_id"] for a in answers}) == 1
    assert computed(closed) == work_before + 1 and len(records(closed, "alice")) == len(records_before) + 1


def test_an_open_service_lets_anonymous_events_name_only_listed_tenants(tmp_path, moto, s3):
    (tmp_path / "local").mkdir()
    (tmp_path / "tenants.txt").write_text("listed standard\n")
    srv = Server(tmp_path, moto, TINGXIE_TENANTS=tmp_path / "tenants.txt").wait_ready()
    srv.tmp = tmp_path
    try:
        r = send(srv, inline(str(uuid.uuid4()), tenant="listed"))
        assert r.status_code == 200 and len(records(srv, "listed")) == 1, r.text
        before = computed(srv)
        for name in ("made-up-1", "made-up-2"):
            r = send(srv, inline(str(uuid.uuid4()), tenant=name))
            assert r.status_code == 400 and r.json()["error"]["param"] == "tenant" and "OIDC" in r.json()["error"]["message"], r.text
            assert not (tmp_path / "history" / "records" / name).exists()
        assert computed(srv) == before
    finally:
        assert srv.terminate() == 0, srv.logs()[-3000:]


def test_a_record_the_service_did_not_sign_is_recomputed(server, s3):
    run = uuid.uuid4().hex[:8]
    key, other = f"in/{run}/planted.wav", f"in/{run}/copied.wav"
    etag, size = put(s3, key, "s05.wav")
    source = {"uri": f"s3://{BUCKET}/{key}", "etag": etag, "version": None, "size": size}
    planted = {"source": source, "model": "whisper-tiny-en", "text": "PLANTED", "language": "en", "duration": 1.0, "task": "transcribe",
               "outputs": [f"s3://{BUCKET}/transcripts/{key}.json"], "segments": []}
    s3.put_object(Bucket=BUCKET, Key=f"transcripts/{key}.json", Body=json.dumps(planted).encode())

    def notify(k, e, n):
        event = CloudEvent({"type": "com.amazon.s3.objectcreated", "source": f"arn:aws:s3:::{BUCKET}", "id": str(uuid.uuid4()), "subject": k}, {"Records": [s3_record(k, e, n)]})
        return send(server, event)

    r = notify(key, etag, size)
    assert r.status_code == 200 and r.json()["text"] == reference_text("s05.wav") and r.json()["duplicate"] is False, r.text
    stored = json.loads(s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.json")["Body"].read())
    assert stored["text"] == reference_text("s05.wav") and stored["signature"].startswith("hmac-sha256:")
    # The service's own record is recognised on a later delivery...
    again = notify(key, etag, size)
    assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
    # ...but not once copied beside another source, however its fields are changed to match.
    other_etag, other_size = put(s3, other, "s06.wav")
    copied = {**stored, "source": {**source, "uri": f"s3://{BUCKET}/{other}", "etag": other_etag, "size": other_size}}
    s3.put_object(Bucket=BUCKET, Key=f"transcripts/{other}.json", Body=json.dumps(copied).encode())
    r = notify(other, other_etag, other_size)
    assert r.status_code == 200 and r.json()["text"] == reference_text("s06.wav") and r.json()["duplicate"] is False, r.text


@pytest.mark.parametrize("key", ["会议/录音 1.wav", "in/~[x]#1 %41/naïve.wav"])
def test_transcripts_are_written_under_the_key_they_are_reported_by(server, s3, key):
    key = f"{uuid.uuid4().hex[:8]}/{key}"
    etag, size = put(s3, key, "s12.wav")
    event = CloudEvent({"type": "com.amazon.s3.objectcreated", "source": f"arn:aws:s3:::{BUCKET}", "id": str(uuid.uuid4()), "subject": key}, {"Records": [s3_record(key, etag, size)]})
    r = send(server, event, mode="structured")
    assert r.status_code == 200 and r.json()["text"] == reference_text("s12.wav"), r.text
    outputs = r.json()["outputs"]
    assert outputs == [f"s3://{BUCKET}/transcripts/{key}.{ext}" for ext in ("txt", "srt", "vtt", "json")]
    for uri in outputs:
        s3.head_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))
    listed = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"transcripts/{key.split('/')[0]}/")["Contents"])
    assert listed == sorted(f"transcripts/{key}.{ext}" for ext in ("json", "txt", "srt", "vtt"))
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=f"transcripts/{key}.json")["Body"].read())["source"]["uri"] == f"s3://{BUCKET}/{key}"


def test_outages_and_bad_local_paths_say_what_failed_without_internals(tmp_path, moto):
    from conftest import free_port

    local = tmp_path / "local"
    local.mkdir()
    (local / "s01.wav").write_bytes((SPEECH / "s01.wav").read_bytes())
    (local / "loop-a").symlink_to(local / "loop-b")
    (local / "loop-b").symlink_to(local / "loop-a")
    import os

    os.mkfifo(local / "hung.wav")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    srv = Server(tmp_path, moto, AWS_ENDPOINT_URL=down, TINGXIE_HISTORY="s3://history-down/records").wait_ready()
    try:
        # The history is down: an upload is still transcribed (without a record id)...
        r = requests.post(srv.url + "/transcribe?response_format=json", data=(SPEECH / "s01.wav").read_bytes(), headers={"content-type": "audio/wav"}, timeout=300)
        assert r.status_code == 200 and r.json()["text"] == reference_text("s01.wav"), r.text
        assert "x-tingxie-transcription-id" not in r.headers
        # ...an asynchronous job, whose record is its state, is refused as retryable.
        r = requests.post(srv.url + "/transcribe?async=true", data=(SPEECH / "s01.wav").read_bytes(), headers={"content-type": "audio/wav"}, timeout=300)
        assert r.status_code in (502, 503) and "TINGXIE_HISTORY" in r.json()["error"]["message"], r.text
        # The store is unreachable: the client learns which object and that it may retry.
        r = requests.post(srv.url + "/transcribe", json={"source": f"s3://{BUCKET}/in/x.wav"}, timeout=300)
        assert r.status_code in (502, 503), r.text
        for answer in (r.text,):
            assert "127.0.0.1" not in answer and "history-down" not in answer and "records/" not in answer, answer
        # Local paths a client chose that cannot name a file: 400, said without the server's paths.
        base = f"file://{local}"
        for uri, needle in [
            (f"{base}/s01.wav/inside.wav", "not a folder"),
            (f"{base}/loop-a", "links"),
            (f"{base}/%252e%252e/%252e%252e/etc/passwd", "`.` or `..`"),
            (f"{base}/hung.wav", "not a regular file"),
        ]:
            started = time.monotonic()
            r = requests.post(srv.url + "/transcribe", json={"source": uri}, timeout=60)
            assert r.status_code == 400 and needle in r.json()["error"]["message"], (uri, r.text)
            assert time.monotonic() - started < 10
            assert str(tmp_path.resolve()) not in r.json()["error"]["message"].replace(str(local), ""), r.text
    finally:
        assert srv.terminate() == 0, srv.logs()[-3000:]
