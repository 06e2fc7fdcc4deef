"""The transcription history (issue 21): a record per transcription kept in object storage
(`TINGXIE_HISTORY`, shared by every replica), listed newest first and fetched by id per tenant
(`GET /v1/transcriptions[/{id}]`), records of stored objects and platform events, leases that
report a killed process's work `interrupted`, and asynchronous jobs (`async=true`, 202 +
Location) whose results are fetched by id or POSTed, signed with HMAC-SHA256, to an
allow-listed `callback_url`, retried with doubling waits, every attempt recorded."""

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import BUCKET, SPEECH, Server, free_port, reference_text, s3_record, wait_until
from oidc import Issuer
from test_hostile import samples

HISTORY_BUCKET = "history"
SECRET = "callback-secret-for-tests"
S01 = (SPEECH / "s01.wav").read_bytes()
KEYS = {name: f"sk-{name}-{uuid.uuid4().hex}" for name in ("alpha", "beta", "radiology", "scans")}


def key_line(name: str) -> str:
    return f"key=sha256:{hashlib.sha256(KEYS[name].encode()).hexdigest()}"


TENANTS = f"""\
alpha      standard  {key_line('alpha')}
beta       standard  {key_line('beta')}
radiology  standard  {key_line('radiology')} source=s3://{BUCKET}/in/
scans      batch     {key_line('scans')} bucket={BUCKET}
"""


def bearer(tenant: str) -> dict:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def metric(srv, name: str, **labels) -> float:
    return sum(v for found, v in samples(srv, name) if all(found.get(k) == w for k, w in labels.items()))


def listing(srv, headers=None, **params) -> dict:
    r = requests.get(srv.url + "/v1/transcriptions", params=params, headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["object"] == "list"
    return page


def record(srv, transcription, headers=None) -> dict:
    r = requests.get(f"{srv.url}/v1/transcriptions/{transcription}", headers=headers or {}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for_status(srv, transcription, status, timeout=120, headers=None) -> dict:
    found = {}

    def reached():
        found.clear()
        found.update(record(srv, transcription, headers))
        return found["status"] == status

    wait_until(reached, timeout, f"{transcription} {status} (last: {found.get('status')})")
    return found


def post_multipart(srv, name="s01.wav", headers=None, **fields):
    files = {"file": (name, (SPEECH / name).read_bytes(), "audio/wav")}
    return requests.post(srv.url + "/v1/audio/transcriptions", files=files, data={"model": "whisper-1", **fields}, headers=headers or {}, timeout=300)


def post_wav(srv, body=S01, headers=None, **params):
    return requests.post(srv.url + "/transcribe", params=params, data=body, headers={"content-type": "audio/wav", **(headers or {})}, timeout=300)


class Receiver:
    """A callback receiver on 127.0.0.1:`port`: answers the n-th POST with `statuses[n]`
    (200 after the list), recording each POST's headers and raw body."""

    def __init__(self, port: int, statuses=()):
        self.posts = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                n = len(receiver.posts)
                receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = statuses[n] if n < len(statuses) else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def signature(secret: str, headers: dict, body: bytes) -> str:
    message = headers["x-tingxie-timestamp"].encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def history_uri(s3):
    try:
        s3.create_bucket(Bucket=HISTORY_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    return f"s3://{HISTORY_BUCKET}/{uuid.uuid4().hex}/history"


@pytest.fixture(scope="module")
def callback_ports():
    return free_port(), free_port()


@pytest.fixture(scope="module")
def pair(tmp_path_factory, moto, s3, history_uri, callback_ports):
    """Two open replicas sharing one history in the S3 server; callbacks allowed to two ports."""
    servers = []
    for name in ("replica-a", "replica-b"):
        tmp = tmp_path_factory.mktemp(name)
        (tmp / "local").mkdir()
        servers.append(Server(tmp, moto, TINGXIE_HISTORY=history_uri,
                              TINGXIE_CALLBACK_HOSTS=",".join(f"127.0.0.1:{p}" for p in callback_ports),
                              TINGXIE_CALLBACK_SECRET=SECRET, TINGXIE_CALLBACK_BACKOFF_SECONDS="0.2"))
    for srv in servers:
        srv.wait_ready()
    yield servers
    for srv in servers:
        assert srv.terminate() == 0, srv.logs()[-3000:]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, moto, s3):
    """Keyed tenants, the platform's OIDC issuer, a history in a local folder, no callbacks."""
    tmp = tmp_path_factory.mktemp("keyed-history")
    (tmp / "local").mkdir()
    (tmp / "tenants.txt").write_text(TENANTS)
    issuer = Issuer()
    env = issuer.env(issuer.write_jwks(tmp / "jwks.json"))
    srv = Server(tmp, moto, TINGXIE_TENANTS=tmp / "tenants.txt", **env).wait_ready()
    srv.issuer = issuer
    yield srv
    assert srv.terminate() == 0, srv.logs()[-3000:]


def test_replicas_share_one_history_listed_newest_first(pair):
    a, b = pair
    on_a = post_multipart(a, "s01.wav")
    assert on_a.status_code == 200 and on_a.json()["text"] == reference_text("s01.wav"), on_a.text
    on_b = post_wav(b, (SPEECH / "s04.wav").read_bytes(), response_format="json")
    assert on_b.status_code == 200 and on_b.json()["text"] == reference_text("s04.wav"), on_b.text
    first, second = on_a.headers["x-tingxie-transcription-id"], on_b.headers["x-tingxie-transcription-id"]
    assert first.startswith("tr_") and second.startswith("tr_") and first != second

    for srv in pair:
        page = listing(srv)
        assert [r["id"] for r in page["data"]] == [second, first]
        assert (page["first_id"], page["last_id"], page["has_more"]) == (second, first, False)
        one = listing(srv, limit=1)
        assert [r["id"] for r in one["data"]] == [second] and one["has_more"] is True
        assert one["first_id"] == one["last_id"] == second
        rest = listing(srv, limit=1, after=one["last_id"])
        assert [r["id"] for r in rest["data"]] == [first] and rest["has_more"] is False
        assert listing(srv, limit=1, after=first)["data"] == []
        assert [r["id"] for r in listing(srv, status="completed")["data"]] == [second, first]
        assert listing(srv, status="failed")["data"] == [] and listing(srv, status="running")["data"] == []

    # Each record, fetched from the other replica.
    from_b, from_a = record(b, first), record(a, second)
    for got, name in ((from_b, "s01.wav"), (from_a, "s04.wav")):
        assert got["object"] == "transcription" and got["tenant"] == "default" and got["status"] == "completed", got
        assert got["language"] == "en" and got["task"] == "transcribe" and got["model"] and got["async"] is False
        seconds = float(next(line.split("\t")[1] for line in (SPEECH / "manifest.tsv").read_text().splitlines() if line.startswith(name + "\t")))
        assert abs(got["audio_seconds"] - seconds) < 0.05, (got["audio_seconds"], seconds)
        assert got["created_at"] <= got["started_at"] <= got["finished_at"] <= time.time()
        assert "error" not in got and "lease_until" not in got and "text" not in got
    assert from_b["filename"] == "s01.wav" and "filename" not in from_a
    assert from_b["owner"] != from_a["owner"], "each replica names itself"
    assert str(a.proc.pid) in from_b["owner"] and str(b.proc.pid) in from_a["owner"]

    # `since`: records created at or after a time.
    assert [r["id"] for r in listing(a, since=from_a["created_at"])["data"]] == [second]
    assert [r["id"] for r in listing(a, since=from_b["created_at"])["data"]] == [second, first]
    assert listing(a, since=time.time() + 60)["data"] == []

    for bad in ({"limit": "0"}, {"limit": "101"}, {"status": "done"}, {"since": "yesterday"}, {"colour": "red"}):
        r = requests.get(a.url + "/v1/transcriptions", params=bad, timeout=30)
        assert r.status_code == 400, (bad, r.text)
    assert requests.get(a.url + "/v1/transcriptions", params={"limit": "0"}, timeout=30).json()["error"]["param"] == "limit"
    unknown = requests.get(a.url + "/v1/transcriptions/tr_000000000000ffffffff", timeout=30)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "transcription_not_found"


def test_tenants_see_only_their_own_history(keyed):
    done = post_wav(keyed, headers=bearer("alpha"), response_format="json")
    assert done.status_code == 200, done.text
    transcription = done.headers["x-tingxie-transcription-id"]
    assert record(keyed, transcription, bearer("alpha"))["tenant"] == "alpha"
    assert transcription in [r["id"] for r in listing(keyed, bearer("alpha"), tenant="alpha")["data"]]

    theirs = requests.get(f"{keyed.url}/v1/transcriptions/{transcription}", headers=bearer("beta"), timeout=30)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "transcription_not_found", theirs.text
    forbidden = requests.get(keyed.url + "/v1/transcriptions", params={"tenant": "alpha"}, headers=bearer("beta"), timeout=30)
    assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "tenant_not_allowed", forbidden.text
    assert transcription not in [r["id"] for r in listing(keyed, bearer("beta"))["data"]]
    nobody = requests.get(f"{keyed.url}/v1/transcriptions/{transcription}", timeout=30)
    assert nobody.status_code == 401 and nobody.json()["error"]["code"] == "invalid_api_key"

    # A service without TINGXIE_CALLBACK_HOSTS and a secret takes no callback_url.
    r = post_multipart(keyed, headers=bearer("alpha"), **{"async": "true", "callback_url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "callback_url", r.text
    assert "TINGXIE_CALLBACK_HOSTS" in r.json()["error"]["message"]


def test_an_async_job_is_fetched_by_id_and_called_back_signed_with_retries(pair, callback_ports):
    a, b = pair
    port = callback_ports[0]
    url = f"http://127.0.0.1:{port}/hooks/tingxie"
    delivered_before = metric(a, "tingxie_callbacks_total", outcome="delivered")
    receiver = Receiver(port, statuses=(500, 500))
    try:
        r = post_multipart(a, "s01.wav", **{"async": "true", "callback_url": url})
        assert r.status_code == 202, r.text
        queued = r.json()
        transcription = queued["id"]
        assert r.headers["location"] == f"/v1/transcriptions/{transcription}"
        assert queued["status"] == "queued" and queued["async"] is True and queued["filename"] == "s01.wav"
        assert queued["callback"] == {"url": url, "delivered": False, "attempts": []}

        done = wait_for_status(b, transcription, "completed")
        assert done["text"] == reference_text("s01.wav") and done["result"]["text"] == done["text"]
        assert done["result"]["segments"] and done["language"] == "en"
        wait_until(lambda: len(receiver.posts) >= 3, 30, "three callback attempts")
        wait_until(lambda: record(a, transcription)["callback"]["delivered"], 10, "the delivery recorded")
        time.sleep(2)  # No attempt after the one that was answered 2xx.
        assert len(receiver.posts) == 3
    finally:
        receiver.close()

    for n, (headers, body) in enumerate(receiver.posts, start=1):
        assert headers["x-tingxie-attempt"] == str(n) and headers["x-tingxie-transcription-id"] == transcription
        assert headers["content-type"] == "application/json"
        assert hmac.compare_digest(headers["x-tingxie-signature"], signature(SECRET, headers, body)), n
        assert abs(int(headers["x-tingxie-timestamp"]) - time.time()) < 60
    headers, body = receiver.posts[-1]
    assert headers["x-tingxie-signature"] != signature("not-the-secret", headers, body)
    assert headers["x-tingxie-signature"] != signature(SECRET, headers, body + b" ")
    delivered = json.loads(body)
    assert delivered["id"] == transcription and delivered["status"] == "completed" and delivered["tenant"] == "default"
    assert delivered["result"]["text"] == reference_text("s01.wav") and delivered["result"]["segments"]

    final = record(b, transcription)
    callback = final["callback"]
    assert callback["url"] == url and callback["delivered"] is True
    assert [attempt.get("status") for attempt in callback["attempts"]] == [500, 500, 200], callback
    times = [attempt["at"] for attempt in callback["attempts"]]
    # Doubling waits from TINGXIE_CALLBACK_BACKOFF_SECONDS=0.2: 0.2 s, then 0.4 s.
    assert times[1] - times[0] >= 0.18 and times[2] - times[1] >= 0.38, times
    assert metric(a, "tingxie_callbacks_total", outcome="delivered") == delivered_before + 1

    # callback_url to a host not allowed, or without async.
    for fields in ({"async": "true", "callback_url": f"http://127.0.0.1:{free_port()}/x"},
                   {"async": "true", "callback_url": "http://hooks.example.com/x"},
                   {"callback_url": url}):
        r = post_multipart(a, **fields)
        assert r.status_code == 400 and r.json()["error"]["param"] == "callback_url", (fields, r.text)
    r = post_wav(a, callback_url=url)
    assert r.status_code == 400 and r.json()["error"]["param"] == "callback_url", r.text


def test_a_callback_to_a_receiver_that_is_down_is_retried_until_it_is_up(pair, callback_ports):
    a, _ = pair
    port = callback_ports[1]
    url = f"http://127.0.0.1:{port}/cb"
    r = post_wav(a, (SPEECH / "s04.wav").read_bytes(), **{"async": "true", "callback_url": url})
    assert r.status_code == 202, r.text
    transcription = r.json()["id"]
    assert r.headers["location"] == f"/v1/transcriptions/{transcription}"
    wait_until(lambda: len(record(a, transcription).get("callback", {}).get("attempts", [])) >= 2, 60, "two failed attempts")
    receiver = Receiver(port)
    try:
        wait_until(lambda: record(a, transcription)["callback"]["delivered"], 30, "delivery once the receiver is up")
        attempts = record(a, transcription)["callback"]["attempts"]
        assert len(receiver.posts) == 1
    finally:
        receiver.close()
    assert attempts[-1].get("status") == 200 and "error" not in attempts[-1], attempts
    assert len(attempts) >= 3 and all("status" not in x and x["error"] for x in attempts[:-1]), attempts
    headers, body = receiver.posts[0]
    assert headers["x-tingxie-attempt"] == str(len(attempts))
    assert headers["x-tingxie-signature"] == signature(SECRET, headers, body)
    assert json.loads(body)["result"]["text"] == reference_text("s04.wav")


def test_a_killed_process_leaves_its_record_interrupted(tmp_path, moto, s3, pair, history_uri):
    _, observer = pair
    victim = Server(tmp_path, moto, TINGXIE_HISTORY=history_uri, TINGXIE_CLAIM_SECONDS=3).wait_ready()
    killed = False
    try:
        r = post_wav(victim, (SPEECH / "long_5min.wav").read_bytes(), **{"async": "true"})
        assert r.status_code == 202, r.text
        transcription, owner = r.json()["id"], r.json()["owner"]
        assert f"/{victim.proc.pid}/" in owner
        # Observed when the engine takes the job (the unlabelled histogram only once it is done).
        wait_until(lambda: metric(victim, "tingxie_class_queue_wait_seconds_count", **{"class": "standard"}) == 1, 60, "the job computing")
        assert record(observer, transcription)["status"] == "running"
        time.sleep(1.5)  # A renewal or two of the 3 s lease.
        victim.proc.kill()
        victim.proc.wait(10)
        killed = True
        killed_at = time.time()
        # Its lease outlives the process by up to 3 s: until then the record is running.
        seen = record(observer, transcription)
        assert seen["status"] == "running" and seen["lease_until"] > killed_at, seen
        done = wait_for_status(observer, transcription, "interrupted", timeout=15)
    finally:
        if not killed:
            victim.terminate()
        victim.log.close()
    assert time.time() - killed_at < 10
    assert done["error"]["code"] == "interrupted" and owner in done["error"]["message"], done
    assert "lease_until" not in done and "finished_at" not in done
    assert transcription in [x["id"] for x in listing(observer, status="interrupted")["data"]]
    assert transcription not in [x["id"] for x in listing(observer, status="running")["data"]]
    # The record itself was rewritten, not only reported.
    bucket, prefix = history_uri.removeprefix("s3://").split("/", 1)
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/records/default/{transcription}.json")["Body"].read())
    assert stored["status"] == "interrupted" and stored["error"]["code"] == "interrupted"


def test_json_requests_can_be_asynchronous(pair, upload):
    a, b = pair
    r = requests.post(a.url + "/transcribe", json={"audio": base64.b64encode((SPEECH / "s02.wav").read_bytes()).decode(), "async": True}, timeout=60)
    assert r.status_code == 202, r.text
    transcription = r.json()["id"]
    assert r.headers["location"] == f"/v1/transcriptions/{transcription}"
    assert r.json()["status"] == "queued" and r.json()["async"] is True and "callback" not in r.json()
    done = wait_for_status(b, transcription, "completed")
    assert done["text"] == reference_text("s02.wav") and done["result"]["text"] == done["text"]
    assert done["result"]["segments"] and done["result"]["model"] == done["model"]
    assert done["audio_seconds"] > 7

    key, _, _ = upload("s01.wav")
    r = requests.post(a.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}", "async": True}, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["param"] == "async", r.text


def binary_event(data: dict, ty: str, event_id: str, **extensions):
    return to_binary_event(CloudEvent({"type": ty, "source": "/tests/history", "id": event_id, **extensions}, data))


def test_platform_events_are_recorded_for_the_tenant_they_name(keyed, s3, upload):
    key, etag, size = upload("s05.wav")
    source = f"s3://{BUCKET}/{key}"
    event_id = str(uuid.uuid4())
    message = binary_event({"source": source}, "dev.tingxie.transcription.requested", event_id, tenant="radiology")
    assert message.headers["ce-tenant"] == "radiology"
    # From the platform: no key, the broker's OIDC token.
    message.headers.update(keyed.issuer.bearer())
    r = requests.post(keyed.url + "/", headers=message.headers, data=message.body, timeout=300)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["text"] == reference_text("s05.wav") and answer["duplicate"] is False
    transcription = answer["transcription_id"]

    got = record(keyed, transcription, bearer("radiology"))
    assert got["tenant"] == "radiology" and got["status"] == "completed" and got["source"] == source, got
    assert sorted(got["outputs"]) == sorted(answer["outputs"]) and len(got["outputs"]) == 4, got
    stored = s3.list_objects_v2(Bucket=BUCKET, Prefix=f"transcripts/{key}")["Contents"]
    assert sorted(f"s3://{BUCKET}/{o['Key']}" for o in stored) == sorted(got["outputs"])
    assert requests.get(f"{keyed.url}/v1/transcriptions/{transcription}", headers=bearer("alpha"), timeout=30).status_code == 404

    # A redelivery of the same event, and another event for the same object: no new record.
    again = requests.post(keyed.url + "/", headers=message.headers, data=message.body, timeout=300)
    assert again.status_code == 200 and again.json().get("transcription_id") == transcription, again.text
    other = binary_event({"source": source}, "dev.tingxie.transcription.requested", str(uuid.uuid4()), tenant="radiology")
    other.headers.update(keyed.issuer.bearer())
    duplicate = requests.post(keyed.url + "/", headers=other.headers, data=other.body, timeout=300)
    assert duplicate.status_code == 200 and duplicate.json()["duplicate"] is True, duplicate.text
    assert [x["id"] for x in listing(keyed, bearer("radiology"))["data"]] == [transcription]

    # An S3 notification naming no tenant is recorded for the tenant its bucket is mapped to.
    key, etag, size = upload("s06.wav")
    s3_event = binary_event({"Records": [s3_record(key, etag, size)]}, "com.amazon.s3.objectcreated", str(uuid.uuid4()), subject=key)
    s3_event.headers.update(keyed.issuer.bearer())
    r = requests.post(keyed.url + "/", headers=s3_event.headers, data=s3_event.body, timeout=300)
    assert r.status_code == 200 and r.json()["text"] == reference_text("s06.wav"), r.text
    scans = listing(keyed, bearer("scans"))["data"]
    assert [(x["id"], x["source"], x["tenant"]) for x in scans] == [(r.json()["transcription_id"], f"s3://{BUCKET}/{key}", "scans")]


def test_a_callback_left_undelivered_at_shutdown_is_delivered_by_another_replica(tmp_path, moto, s3, history_uri):
    """Issue 28: a callback still being retried when its process stops (the shutdown's grace
    ran out) is taken over by a replica sharing the history, which makes the attempts left."""
    uri = f"{history_uri.rsplit('/', 2)[0]}/{uuid.uuid4().hex}/history"
    port = free_port()
    settings = dict(TINGXIE_HISTORY=uri, TINGXIE_CALLBACK_HOSTS=f"127.0.0.1:{port}", TINGXIE_CALLBACK_SECRET=SECRET,
                    TINGXIE_CALLBACK_BACKOFF_SECONDS="4", TINGXIE_CLAIM_SECONDS="3", TINGXIE_SHUTDOWN_GRACE_SECONDS="1")
    receiver = Receiver(port, statuses=(500, 500))
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = Server(tmp_path / "a", moto, HOSTNAME="pod-a", **settings).wait_ready()
    second = None
    try:
        r = post_multipart(first, "s04.wav", **{"async": "true", "callback_url": f"http://127.0.0.1:{port}/cb"})
        assert r.status_code == 202, r.text
        transcription = r.json()["id"]
        wait_until(lambda: len(receiver.posts) >= 1, 120, "the first attempt")
        # The next attempt is 4 s away; the process is told to stop and has 1 s.
        assert first.terminate() == 0, first.logs()[-3000:]
        assert len(receiver.posts) == 1
        second = Server(tmp_path / "b", moto, HOSTNAME="pod-b", **settings).wait_ready()
        wait_until(lambda: record(second, transcription)["callback"]["delivered"], 60, "the delivery taken over")
    finally:
        receiver.close()
        if second is not None:
            assert second.terminate() == 0, second.logs()[-3000:]
    assert [h["x-tingxie-attempt"] for h, _ in receiver.posts] == ["1", "2", "3"]
    for headers, body in receiver.posts:
        assert hmac.compare_digest(headers["x-tingxie-signature"], signature(SECRET, headers, body))
    delivered = json.loads(receiver.posts[-1][1])
    assert delivered["id"] == transcription and delivered["status"] == "completed"
    assert delivered["result"]["text"] == reference_text("s04.wav")
    # The body is the record as the taking-over delivery began: the first process's attempt.
    assert [a.get("status") for a in delivered["callback"]["attempts"]] == [500]
    bucket, prefix = uri.removeprefix("s3://").split("/", 1)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/callbacks/"), "the marker is gone"
    stored = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix}/records/default/{transcription}.json")["Body"].read())
    assert [a.get("status") for a in stored["callback"]["attempts"]] == [500, 500, 200] and stored["callback"]["delivered"] is True
    assert stored["owner"].startswith("pod-b/") and "lease_until" not in stored, stored
