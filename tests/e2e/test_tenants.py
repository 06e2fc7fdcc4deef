"""Tenants (issue 21): API keys looked up by their SHA-256 in `TINGXIE_TENANTS` (401 with
`WWW-Authenticate: Bearer` without a valid one), a trusted header a mesh sets
(`TINGXIE_TENANT_HEADER`), service classes (priority work computed first, places of the queue
held for it: `TINGXIE_PRIORITY_PLACES`) and per-tenant limits (`queued=N`, `rpm=N`: 429
`tenant_limit` with Retry-After while other tenants are served), and their metrics."""

import concurrent.futures
import hashlib
import threading
import time

import openai
import pytest
import requests

from conftest import SPEECH, Server, reference_text, wait_until
from test_hostile import read_answer, samples, start_request

S01 = (SPEECH / "s01.wav").read_bytes()
KEYS = {name: f"sk-{name}-{hashlib.sha256(name.encode()).hexdigest()[:16]}" for name in ("alice", "bob", "bulk", "vip", "small", "other", "limited")}
TENANTS = f"""\
# name    class     keys and limits
alice     standard  key=sha256:{hashlib.sha256(KEYS['alice'].encode()).hexdigest()}
bob       standard  key=sha256:{hashlib.sha256(KEYS['bob'].encode()).hexdigest()}
bulk      batch     key=sha256:{hashlib.sha256(KEYS['bulk'].encode()).hexdigest()}
vip       priority  key=sha256:{hashlib.sha256(KEYS['vip'].encode()).hexdigest()}
small     standard  key=sha256:{hashlib.sha256(KEYS['small'].encode()).hexdigest()} queued=1
other     standard  key=sha256:{hashlib.sha256(KEYS['other'].encode()).hexdigest()}
limited   standard  key=sha256:{hashlib.sha256(KEYS['limited'].encode()).hexdigest()} rpm=2
"""


def bearer(tenant: str) -> dict:
    return {"authorization": f"Bearer {KEYS[tenant]}"}


def post_wav(srv, body=S01, headers=None, query="?response_format=json", timeout=300):
    headers = {"content-type": "audio/wav", **(headers or {})}
    return requests.post(f"{srv.url}/transcribe{query}", data=body, headers=headers, timeout=timeout)


def metric(srv, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels` (any label order)."""
    return sum(v for found, v in samples(srv, name) if all(found.get(k) == w for k, w in labels.items()))


def tenant_requests(srv, tenant: str, outcome: str) -> float:
    return metric(srv, "tingxie_tenant_requests_total", tenant=tenant, outcome=outcome)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory, moto, s3):
    """Keyed tenants of every class; three queue places, one of them held for priority work."""
    tmp = tmp_path_factory.mktemp("tenants")
    (tmp / "local").mkdir()
    (tmp / "tenants.txt").write_text(TENANTS)
    srv = Server(tmp, moto, TINGXIE_TENANTS=tmp / "tenants.txt", TINGXIE_QUEUE_DEPTH=2).wait_ready()
    yield srv
    assert srv.terminate() == 0, srv.logs()[-3000:]


def test_api_keys_name_the_tenant_and_wrong_or_missing_keys_get_401(keyed):
    unauthorized = metric(keyed, "tingxie_rejected_total", reason="unauthorized")
    missing = post_wav(keyed)
    wrong = post_wav(keyed, headers={"authorization": "Bearer sk-not-a-key"})
    basic = post_wav(keyed, headers={"authorization": "Basic YWxpY2U6eA=="})
    for r in (missing, wrong, basic):
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["code"] == "invalid_api_key" and r.json()["error"]["message"], r.text
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    # Every API route is closed, not only /transcribe.
    for method, path in (("GET", "/v1/models"), ("GET", "/v1/transcriptions"), ("GET", "/v1/transcriptions/tr_000000000000ffffffff"),
                         ("POST", "/v1/audio/transcriptions"), ("POST", "/v1/audio/translations")):
        r = requests.request(method, keyed.url + path, timeout=30)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", (path, r.status_code, r.text)
    assert metric(keyed, "tingxie_rejected_total", reason="unauthorized") == unauthorized + 8

    right = post_wav(keyed, headers=bearer("alice"))
    assert right.status_code == 200, right.text
    assert right.json()["text"] == reference_text("s01.wav")
    transcription = right.headers["x-tingxie-transcription-id"]
    assert transcription.startswith("tr_")
    # The record is alice's, and only alice's.
    mine = requests.get(f"{keyed.url}/v1/transcriptions/{transcription}", headers=bearer("alice"), timeout=30)
    assert mine.status_code == 200 and mine.json()["tenant"] == "alice" and mine.json()["status"] == "completed", mine.text
    theirs = requests.get(f"{keyed.url}/v1/transcriptions/{transcription}", headers=bearer("bob"), timeout=30)
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "transcription_not_found", theirs.text

    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key=KEYS["bob"], max_retries=0)
    assert [m.id for m in client.models.list().data]
    with open(SPEECH / "s04.wav", "rb") as f:
        assert client.audio.transcriptions.create(model="whisper-1", file=f).text == reference_text("s04.wav")
    impostor = openai.OpenAI(base_url=keyed.url + "/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        with open(SPEECH / "s04.wav", "rb") as f:
            impostor.audio.transcriptions.create(model="whisper-1", file=f)
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        impostor.models.list()

    # Probes and the metrics page need no key.
    assert requests.get(keyed.url + "/health/readiness", timeout=5).status_code == 200
    page = requests.get(keyed.url + "/metrics", timeout=5)
    assert page.status_code == 200 and "tingxie_tenant_requests_total" in page.text
    assert tenant_requests(keyed, "alice", "admitted") == 1 and tenant_requests(keyed, "bob", "admitted") == 1
    assert metric(keyed, "tingxie_tenant_requests_total", tenant="alice", outcome="admitted", **{"class": "standard"}) == 1


def alone_text(server, body):
    """The transcript of `body` with nothing else on the engine."""
    answer = post_wav(server, body, headers=bearer("vip"))
    assert answer.status_code == 200, answer.text
    return answer.json()["text"]


def test_priority_work_is_computed_first_and_has_a_place_held_for_it(keyed):
    long_5min = (SPEECH / "long_5min.wav").read_bytes()
    long_90s = (SPEECH / "long_90s.wav").read_bytes()
    finished = {}

    def timed(name, body, tenant):
        r = post_wav(keyed, body, headers=bearer(tenant))
        finished[name] = time.monotonic()
        return r

    batch_waits = metric(keyed, "tingxie_class_queue_wait_seconds_count", **{"class": "batch"})
    priority_waits = metric(keyed, "tingxie_class_queue_wait_seconds_count", **{"class": "priority"})
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(timed, "bulk1", long_5min, "bulk")
        # The first batch job is computing (it left the queue) before the second is sent.
        wait_until(lambda: metric(keyed, "tingxie_class_queue_wait_seconds_count", **{"class": "batch"}) == batch_waits + 1, 60, "bulk #1 computing")
        second = pool.submit(timed, "bulk2", long_90s, "bulk")

        def one_computing_one_waiting():
            page = requests.get(keyed.url + "/metrics", timeout=5).text
            gauges = {line.split()[0]: float(line.split()[1]) for line in page.splitlines() if line.startswith(("tingxie_queue_depth ", "tingxie_queue_places_held "))}
            return gauges == {"tingxie_queue_depth": 1, "tingxie_queue_places_held": 2}

        wait_until(one_computing_one_waiting, 60, "bulk #2 waiting behind bulk #1")
        assert not first.done(), "bulk #1 finished before the test could queue behind it"

        # Two of the three places are taken: the last is held for the priority class.
        third = post_wav(keyed, headers=bearer("bulk"))
        assert third.status_code == 429, third.text
        assert third.json()["error"]["code"] == "queue_full" and "priority" in third.json()["error"]["message"], third.text
        assert "retry-after" in third.headers
        also_standard = post_wav(keyed, headers=bearer("other"))
        assert also_standard.status_code == 429 and also_standard.json()["error"]["code"] == "queue_full", also_standard.text

        preempted = keyed.metric("tingxie_preemptions_total")
        waiting = pool.submit(timed, "vip", S01, "vip")
        vip, bulk1, bulk2 = waiting.result(), first.result(), second.result()

    assert vip.status_code == 200 and vip.json()["text"] == reference_text("s01.wav"), vip.text
    assert bulk1.status_code == 200 and "product planning meeting" in bulk1.json()["text"], bulk1.text[:300]
    assert bulk2.status_code == 200 and "bicycle" in bulk2.json()["text"], bulk2.text[:300]
    # The priority job went ahead of both batch jobs: computed between two decoding steps of
    # the running one (which it did not wait for), before the one that had waited longer.
    assert finished["vip"] < finished["bulk1"] < finished["bulk2"], finished
    assert keyed.metric("tingxie_preemptions_total") == preempted + 1
    vip_wait = float(vip.headers["x-tingxie-queue-seconds"])
    bulk1_compute = float(bulk1.headers["x-tingxie-compute-seconds"])
    assert vip_wait < min(2.0, bulk1_compute / 3), (vip_wait, bulk1_compute)
    assert metric(keyed, "tingxie_class_queue_wait_seconds_count", **{"class": "batch"}) == batch_waits + 2
    assert metric(keyed, "tingxie_class_queue_wait_seconds_count", **{"class": "priority"}) == priority_waits + 1
    assert metric(keyed, "tingxie_tenant_requests_total", tenant="vip", outcome="admitted", **{"class": "priority"}) == 1
    assert metric(keyed, "tingxie_tenant_requests_total", tenant="bulk", outcome="admitted", **{"class": "batch"}) == 2
    # bulk #1's answer is whole and its own: the same text as when nothing cut in.
    assert bulk1.json()["text"] == alone_text(keyed, long_5min)


def test_tenant_limits_refuse_that_tenant_and_serve_others(keyed):
    limited_before = metric(keyed, "tingxie_rejected_total", reason="tenant_limit")
    # `small` (queued=1) holds its one place with an upload that has not finished arriving.
    head = {"Content-Type": "audio/wav", "Authorization": f"Bearer {KEYS['small']}"}
    holder = start_request(keyed.port, "/transcribe", head, len(S01), S01[:4096])
    try:
        wait_until(lambda: tenant_requests(keyed, "small", "admitted") == 1, 10, "small's upload admitted")
        refused = post_wav(keyed, headers=bearer("small"))
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "tenant_limit" and "queued=1" in error["message"] and "small" in error["message"], error
        assert int(refused.headers["retry-after"]) >= 1
        # Another tenant is served meanwhile.
        served = post_wav(keyed, headers=bearer("other"))
        assert served.status_code == 200 and served.json()["text"] == reference_text("s01.wav"), served.text
        # The held upload completes, and gives its place back.
        holder.sendall(S01[4096:])
        answer = read_answer(holder, 60)
    finally:
        holder.close()
    assert answer is not None and answer.status == 200 and answer.json()["text"] == reference_text("s01.wav"), answer
    again = post_wav(keyed, headers=bearer("small"))
    assert again.status_code == 200, again.text

    # `limited` (rpm=2): a third request within the minute is refused until a slot frees.
    for _ in range(2):
        ok = post_wav(keyed, headers=bearer("limited"))
        assert ok.status_code == 200 and ok.json()["text"] == reference_text("s01.wav"), ok.text
    third = post_wav(keyed, headers=bearer("limited"))
    assert third.status_code == 429, third.text
    assert third.json()["error"]["code"] == "tenant_limit" and "rpm=2" in third.json()["error"]["message"], third.text
    assert 1 < int(third.headers["retry-after"]) <= 60, third.headers
    assert post_wav(keyed, headers=bearer("other")).status_code == 200

    assert tenant_requests(keyed, "small", "limited") == 1 and tenant_requests(keyed, "small", "admitted") == 2
    assert tenant_requests(keyed, "limited", "limited") == 1 and tenant_requests(keyed, "limited", "admitted") == 2
    assert tenant_requests(keyed, "other", "limited") == 0
    assert metric(keyed, "tingxie_rejected_total", reason="tenant_limit") == limited_before + 2


def test_a_trusted_header_names_the_tenant(tmp_path, moto, s3):
    srv = Server(tmp_path, moto, TINGXIE_TENANT_HEADER="x-tingxie-tenant").wait_ready()
    try:
        clinic_a, clinic_b = {"x-tingxie-tenant": "clinic-a"}, {"x-tingxie-tenant": "clinic-b"}
        # The header wins over any key a client sends.
        done = post_wav(srv, headers={**clinic_a, "authorization": "Bearer anything"})
        assert done.status_code == 200 and done.json()["text"] == reference_text("s01.wav"), done.text
        transcription = done.headers["x-tingxie-transcription-id"]

        listed = requests.get(srv.url + "/v1/transcriptions", headers=clinic_a, timeout=30)
        assert listed.status_code == 200, listed.text
        assert [(r["id"], r["tenant"], r["status"]) for r in listed.json()["data"]] == [(transcription, "clinic-a", "completed")]
        got = requests.get(f"{srv.url}/v1/transcriptions/{transcription}", headers=clinic_a, timeout=30)
        assert got.status_code == 200 and got.json()["tenant"] == "clinic-a", got.text

        other = requests.get(f"{srv.url}/v1/transcriptions/{transcription}", headers=clinic_b, timeout=30)
        assert other.status_code == 404 and other.json()["error"]["code"] == "transcription_not_found", other.text
        assert requests.get(srv.url + "/v1/transcriptions", headers=clinic_b, timeout=30).json()["data"] == []

        # Without the header the service is closed; a name that is not a plain name is refused.
        for headers in ({}, {"authorization": "Bearer anything"}, {"x-tingxie-tenant": "../etc"}):
            r = post_wav(srv, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (headers, r.text)
            assert r.json()["error"]["code"] == "invalid_api_key"
        assert requests.get(srv.url + "/v1/transcriptions", timeout=30).status_code == 401
        # Names a header brings are not metric labels of their own.
        assert tenant_requests(srv, "unlisted", "admitted") == 1 and tenant_requests(srv, "clinic-a", "admitted") == 0
    finally:
        assert srv.terminate() == 0, srv.logs()[-3000:]
