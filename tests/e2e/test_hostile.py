"""Hostile and unlucky clients: requests that try to write or read where they should not,
decompression bombs, bodies that stall or never come, floods of large bodies, owners that die
holding a claim, batches larger than the queue, truncated audio, clients that hang up, huge
fields, and a server that is told to stop. Each test drives the real binary, with the real
model, moto as S3 and real sockets."""

import base64
import concurrent.futures
import contextlib
import json
import os
import re
import select
import shutil
import signal
import socket
import threading
import time
import uuid
from functools import lru_cache

import pytest
import requests

from conftest import BUCKET, MODEL, SPEECH, Server, proc_memory, reference_text, s3_record, wait_until

MiB = 1024 * 1024
REQUESTED = "dev.tingxie.transcription.requested"
S01 = (SPEECH / "s01.wav").read_bytes()


# --- Helpers -------------------------------------------------------------------------------

@contextlib.contextmanager
def serving(tmp_path, moto, **env):
    """A server of its own with `env` over the defaults; it must exit 0 unless the test failed."""
    srv = Server(tmp_path, moto, **env)
    srv.tmp = tmp_path
    passed = False
    try:
        srv.wait_ready()
        yield srv
        passed = True
    finally:
        code = srv.terminate()
        if passed:
            assert code == 0, srv.logs()[-3000:]


def error_of(r: requests.Response) -> dict:
    return r.json()["error"]


def post_audio(srv, body=S01, query="", timeout=300, **headers):
    headers.setdefault("content-type", "audio/wav")
    return requests.post(f"{srv.url}/transcribe{query}", data=body, headers=headers, timeout=timeout)


def post_multipart(srv, fields: dict, audio=S01, timeout=300):
    files = {"file": ("s01.wav", audio, "audio/wav")}
    return requests.post(srv.url + "/v1/audio/transcriptions", files=files, data={"model": "whisper-1", **fields}, timeout=timeout)


def ce_binary_headers(ty=REQUESTED, event_id=None, source="/tests/hostile", **extra) -> dict:
    headers = {"ce-specversion": "1.0", "ce-id": event_id or str(uuid.uuid4()), "ce-source": source, "ce-type": ty, "content-type": "application/json"}
    headers.update(extra)
    return headers


def structured_event(data: dict, ty=REQUESTED, event_id=None, source="/tests/hostile") -> dict:
    return {"specversion": "1.0", "id": event_id or str(uuid.uuid4()), "source": source, "type": ty, "datacontenttype": "application/json", "data": data}


def post_structured(srv, data: dict, timeout=300):
    body = json.dumps(structured_event(data))
    return requests.post(srv.url + "/", data=body, headers={"content-type": "application/cloudevents+json"}, timeout=timeout)


def post_inline_event(srv, audio=S01, timeout=300, **options):
    """A binary-mode `dev.tingxie.transcription.requested` event carrying its audio."""
    data = {"audio": base64.b64encode(audio).decode(), **options}
    return requests.post(srv.url + "/", data=json.dumps(data), headers=ce_binary_headers(), timeout=timeout)


def send_s3_event(srv, key, etag, size, event_id=None, timeout=300):
    """An S3 ObjectCreated notification as a binary-mode CloudEvent (what Knative delivers)."""
    headers = ce_binary_headers("com.amazon.s3.objectcreated", event_id=event_id, source=f"arn:aws:s3:::{BUCKET}", **{"ce-subject": key})
    body = json.dumps({"Records": [s3_record(key, etag, size)]})
    return requests.post(srv.url + "/", data=body, headers=headers, timeout=timeout)


def transcripts_of(s3, key, bucket=BUCKET):
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"transcripts/{key}")
    return sorted(o["Key"] for o in listed.get("Contents", []))


def four_transcripts(key):
    return sorted(f"transcripts/{key}.{ext}" for ext in ("json", "txt", "srt", "vtt"))


def files_under(folder):
    return sorted(str(p) for p in folder.rglob("*") if not p.is_dir()) if folder.exists() else []


def samples(srv, name: str) -> list:
    """Every sample of metric `name` on /metrics, as (labels, value)."""
    found = []
    for line in requests.get(srv.url + "/metrics", timeout=5).text.splitlines():
        m = re.fullmatch(rf"{re.escape(name)}(?:\{{(.*)\}})?\s+(\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or ""))
            found.append((labels, float(m.group(2))))
    return found


def http_requests(srv, route: str, status: str) -> float:
    return sum(v for labels, v in samples(srv, "tingxie_http_requests_total") if labels.get("route") == route and labels.get("status") == status)


def log_lines(srv, offset=0) -> list:
    """The server's JSON log lines from byte `offset` on."""
    with open(srv.log_path, "rb") as f:
        f.seek(offset)
        return [line for line in f.read().decode("utf-8", "replace").splitlines() if line.strip()]


def log_offset(srv) -> int:
    return srv.log_path.stat().st_size


def vm_hwm(pid: int) -> int:
    """Peak resident memory of a process, in bytes."""
    return proc_memory(pid, "VmHWM")


class MemoryCap:
    """Watches a server's peak RSS while a block runs. Past `limit` it kills the server (an
    unfixed service would otherwise take the test machine with it) and the block fails."""

    def __init__(self, srv, limit: int):
        self.srv, self.limit, self.killed_at = srv, limit, None
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.is_set():
            try:
                peak = vm_hwm(self.srv.proc.pid)
            except (OSError, RuntimeError):
                return
            if peak > self.limit:
                self.killed_at = peak
                self.srv.proc.kill()
                return
            time.sleep(0.02)

    def __enter__(self):
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self._stop.set()
        self._thread.join()
        if self.killed_at:
            raise AssertionError(f"the server's peak RSS reached {self.killed_at / MiB:.0f} MiB (limit {self.limit / MiB:.0f} MiB); killed") from exc
        return False


# Raw HTTP/1.1, for clients that `requests` cannot play: ones that stall, hang up or never send.

class Answer:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body
        self.at = time.monotonic()

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<{self.status} {self.body[:200]!r}>"


def request_head(port, path, headers: dict, content_length: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {content_length}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def start_request(port, path, headers: dict, content_length: int, first: bytes = b"") -> socket.socket:
    """Sends a request's head and the first bytes of its body, then nothing more."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(request_head(port, path, headers, content_length) + first)
    return sock


def read_answer(sock: socket.socket, timeout: float):
    """The HTTP response on `sock`, or None if none comes within `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""

    def more() -> bool:
        nonlocal data
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError, BrokenPipeError):
            return False
        data += chunk
        return bool(chunk)

    while b"\r\n\r\n" not in data:
        if not more():
            return None
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    data = body
    if "content-length" in headers:
        while len(data) < int(headers["content-length"]) and more():
            pass
        body = data[: int(headers["content-length"])]
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while not data.endswith(b"0\r\n\r\n") and more():
            pass
        body, rest = b"", data
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                break
            body, rest = body + rest[:size], rest[size + 2:]
    else:
        while more():
            pass
        body = data
    return Answer(int(lines[0].split()[1]), headers, body)


def send_and_read(port, path, headers: dict, body: bytes, timeout: float):
    """Sends a large body in steps, stopping as soon as the server answers (it may refuse a
    body before reading it, and close): the server's answer, or None."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(request_head(port, path, headers, len(body)))
        view, sent = memoryview(body), 0
        sock.setblocking(False)
        deadline = time.monotonic() + timeout
        while sent < len(body) and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 1.0)
            if readable:
                break
            if writable:
                try:
                    sent += sock.send(view[sent:sent + MiB])
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        return read_answer(sock, max(1.0, deadline - time.monotonic()))
    finally:
        sock.close()


# Stalled uploads, one kind per entry point: the head says 100 000 bytes, 10 come.
STALLED = {
    "/transcribe": ({"Content-Type": "audio/wav"}, S01[:10]),
    "/v1/audio/transcriptions": ({"Content-Type": "multipart/form-data; boundary=hostile"}, b"--hostile\r"),
    "/": ({"ce-specversion": "1.0", "ce-id": "stalled", "ce-source": "/tests/hostile", "ce-type": REQUESTED, "Content-Type": "application/json"}, b'{"audio": '),
}


def stall(srv, path="/transcribe") -> socket.socket:
    headers, first = STALLED[path]
    return start_request(srv.port, path, headers, 100_000, first)


def wait_for_places_held(srv, n):
    """Gives the server time to admit the stalled uploads just opened; where it has the gauge,
    until it shows `n` places held."""
    time.sleep(0.5)
    if samples(srv, "tingxie_queue_places_held"):
        wait_until(lambda: samples(srv, "tingxie_queue_places_held")[0][1] == n, 5, f"{n} queue places held")


# A tiny FLAC encoder: silence as CONSTANT subframes, a few bytes per 4096 samples, so that
# hours of audio fit in a few megabytes (what a decompression bomb looks like).

def crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


def _crc16_table():
    table = []
    for i in range(256):
        c = i << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x8005) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
        table.append(c)
    return table


CRC16 = _crc16_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ CRC16[(crc >> 8) ^ byte]
    return crc


def flac_utf8(n: int) -> bytes:
    """FLAC's UTF-8-like coding of a frame number."""
    if n < 0x80:
        return bytes([n])
    tail = []
    while n >= 1 << (6 - len(tail)):
        tail.append(0x80 | (n & 0x3F))
        n >>= 6
    lead = (0xFF << (7 - len(tail))) & 0xFF
    return bytes([lead | n] + tail[::-1])


@lru_cache(maxsize=None)
def silent_flac(seconds: float, declare_length: bool) -> bytes:
    """16 kHz 16-bit mono FLAC of silence; STREAMINFO gives the total samples, or 0 (unknown)."""
    rate, block = 16000, 4096
    total = int(seconds * rate)
    streaminfo = block.to_bytes(2, "big") * 2 + b"\0" * 6  # min/max block size; frame sizes unknown
    fields = (rate << 44) | (0 << 41) | (15 << 36) | (total if declare_length else 0)  # 1 channel, 16 bits
    streaminfo += fields.to_bytes(8, "big") + b"\0" * 16  # MD5 unknown
    out = [b"fLaC", bytes([0x80, 0, 0, len(streaminfo)]), streaminfo]  # last metadata block
    for i in range(-(-total // block)):
        n = min(block, total - i * block)
        if n == block:  # block size 4096 (code 12), 16 kHz (code 5), mono, 16 bits
            head = bytes([0xFF, 0xF8, 0xC5, 0x08]) + flac_utf8(i)
        else:  # block size in 16 bits at the end of the header (code 7)
            head = bytes([0xFF, 0xF8, 0x75, 0x08]) + flac_utf8(i) + (n - 1).to_bytes(2, "big")
        head += bytes([crc8(head)])
        frame = head + b"\x00" + b"\x00\x00"  # a CONSTANT subframe of value 0
        out.append(frame + crc16(frame).to_bytes(2, "big"))
    return b"".join(out)


# --- 1. Outputs only where allowed ---------------------------------------------------------

def check_output_refused(r, output):
    assert r.status_code == 403, r.text
    error = error_of(r)
    assert error["code"] == "output_not_allowed", error
    assert output.rstrip("/") in error["message"] and "TINGXIE_ALLOWED_OUTPUTS" in error["message"], error


def test_output_to_another_bucket_is_refused(server, s3, upload):
    key, _, _ = upload("s01.wav")
    r = requests.post(server.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}", "output": "s3://elsewhere/x/"}, timeout=300)
    check_output_refused(r, "s3://elsewhere/x/")
    assert not s3.list_objects_v2(Bucket="elsewhere").get("Contents")
    assert not transcripts_of(s3, key)


def test_output_to_another_bucket_is_refused_in_an_event(server, s3, upload):
    key, _, _ = upload("s01.wav")
    r = post_structured(server, {"source": f"s3://{BUCKET}/{key}", "output": "s3://elsewhere/y/"})
    check_output_refused(r, "s3://elsewhere/y/")
    assert not s3.list_objects_v2(Bucket="elsewhere").get("Contents")


def test_output_to_a_local_folder_is_refused(server, s3, upload, tmp_path):
    key, _, _ = upload("s01.wav")
    target = tmp_path / "stolen"
    r = requests.post(server.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}", "output": f"file://{target}/"}, timeout=300)
    check_output_refused(r, f"file://{target}/")
    assert files_under(target) == []


def test_transcripts_folder_linked_outside_is_refused(tmp_path, moto, s3):
    """Default outputs of a local source go to `transcripts/` beside it; a link there must not
    carry the write out of the allowed folder."""
    local, outside = tmp_path / "local", tmp_path / "outside"
    local.mkdir()
    outside.mkdir()
    (local / "transcripts").symlink_to(outside, target_is_directory=True)
    shutil.copy(SPEECH / "s01.wav", local / "talk.wav")
    with serving(tmp_path, moto) as srv:
        r = requests.post(srv.url + "/transcribe", json={"source": f"file://{local}/talk.wav"}, timeout=300)
        assert r.status_code == 403, r.text
        assert error_of(r)["code"] == "output_not_allowed", r.text
    assert files_under(outside) == []


# --- 2. Sources through links ----------------------------------------------------------------

def test_a_linked_source_pointing_outside_is_refused(server, tmp_path):
    local = server.tmp / "local"
    secret = tmp_path / "outside" / "secret.wav"
    secret.parent.mkdir()
    shutil.copy(SPEECH / "s01.wav", secret)
    tag = uuid.uuid4().hex[:8]
    (local / f"link-{tag}.wav").symlink_to(secret)
    (local / f"dir-{tag}").symlink_to(secret.parent, target_is_directory=True)
    for uri in (f"file://{local}/link-{tag}.wav", f"file://{local}/dir-{tag}/secret.wav"):
        r = requests.post(server.url + "/transcribe", json={"source": uri}, timeout=300)
        assert r.status_code == 403, (uri, r.text)
        assert error_of(r)["code"] == "source_not_allowed", (uri, r.text)
    assert not [p for p in files_under(local / "transcripts") if tag in p]


def test_a_linked_source_pointing_inside_works(server):
    local = server.tmp / "local"
    tag = uuid.uuid4().hex[:8]
    shutil.copy(SPEECH / "s01.wav", local / f"real-{tag}.wav")
    (local / f"alias-{tag}.wav").symlink_to(local / f"real-{tag}.wav")
    r = requests.post(server.url + "/transcribe", json={"source": f"file://{local}/alias-{tag}.wav"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == reference_text("s01.wav")


# --- 3. Decompression bombs ------------------------------------------------------------------

@pytest.mark.parametrize(
    "declared,env",
    [(True, {}), (False, {"TINGXIE_MAX_AUDIO_SECONDS": 600})],
    ids=["length declared", "length not declared"],
)
def test_twelve_hours_of_flac_silence_is_refused_quickly_and_small(tmp_path, moto, s3, declared, env):
    bomb = silent_flac(12 * 3600, declared)
    assert len(bomb) < 4 * MiB  # 12 h of audio in a small upload
    with serving(tmp_path, moto, **env) as srv:
        with MemoryCap(srv, 600 * MiB):
            started = time.monotonic()
            r = post_audio(srv, bomb, timeout=120, **{"content-type": "audio/flac"})
            elapsed = time.monotonic() - started
        assert r.status_code == 413, r.text
        assert "TINGXIE_MAX_AUDIO_SECONDS" in error_of(r)["message"], r.text
        assert elapsed < 20, f"answered after {elapsed:.1f} s"
        peak = vm_hwm(srv.proc.pid)
        assert peak < 600 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
        assert post_audio(srv).status_code == 200  # and the server is fine


# --- 4. Stalled bodies -------------------------------------------------------------------------

def real_request(srv, path):
    """A well-behaved request on entry point `path`: its transcript text."""
    if path == "/transcribe":
        r = post_audio(srv)
    elif path == "/v1/audio/transcriptions":
        r = post_multipart(srv, {})
    else:
        r = post_inline_event(srv)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()["text"]


@pytest.mark.parametrize("path", list(STALLED))
def test_stalled_bodies_time_out_and_free_their_places(tmp_path, moto, s3, path):
    with serving(tmp_path, moto, TINGXIE_QUEUE_DEPTH=1, TINGXIE_BODY_TIMEOUT_SECONDS=2) as srv:
        started = time.monotonic()
        stalled = [stall(srv, path) for _ in range(5)]
        try:
            wait_for_places_held(srv, 2)
            # Both places (QUEUE_DEPTH + 1) are held by stalled uploads.
            assert post_audio(srv).status_code == 429
            answers = [read_answer(sock, max(0.1, started + 12 - time.monotonic())) for sock in stalled]
        finally:
            for sock in stalled:
                sock.close()
        assert all(answers), f"stalled uploads left unanswered: {answers}"
        statuses = sorted(a.status for a in answers)
        assert statuses == [408, 408, 429, 429, 429], answers
        for a in answers:
            if a.status == 408:
                assert a.json()["error"]["code"] == "body_timeout", a
                assert a.at - started > 1.5, "timed out before TINGXIE_BODY_TIMEOUT_SECONDS"
        # The places are free again: a real request is served.
        assert real_request(srv, path) == reference_text("s01.wav")


# --- 5. Admission before the body, and a memory budget for bodies ----------------------------

def test_an_event_body_is_refused_before_it_is_read_when_the_queue_is_full(tmp_path, moto, s3):
    with serving(tmp_path, moto, TINGXIE_QUEUE_DEPTH=1) as srv:
        holders = [stall(srv) for _ in range(2)]
        try:
            wait_for_places_held(srv, 2)
            assert post_audio(srv).status_code == 429  # the queue is full
            started = time.monotonic()
            sock = start_request(srv.port, "/", ce_binary_headers(), 130_000_000)  # the body never comes
            try:
                answer = read_answer(sock, 10)
            finally:
                sock.close()
            assert answer is not None, "no answer: the server waits for a body it would refuse"
            assert answer.status == 429 and answer.json()["error"]["code"] == "queue_full", answer
            assert answer.at - started < 2
        finally:
            for sock in holders:
                sock.close()


def test_twelve_huge_event_bodies_at_once_stay_within_memory(tmp_path, moto, s3):
    # 130 MB each (under the event limit of ~140 MB), 1.5 GB together: not valid JSON (the
    # string never ends), so nothing but buffering them could cost memory.
    body = b'{"audio": "' + b"A" * 130_000_000
    with serving(tmp_path, moto) as srv:
        with MemoryCap(srv, 600 * MiB):
            with concurrent.futures.ThreadPoolExecutor(12) as pool:
                answers = list(pool.map(lambda _: send_and_read(srv.port, "/", ce_binary_headers(), body, 120), range(12)))
        assert all(answers), f"requests left without an answer: {answers}"
        statuses = sorted(a.status for a in answers)
        assert all(s in (400, 413, 429) for s in statuses), statuses
        peak = vm_hwm(srv.proc.pid)
        assert peak < 600 * MiB, f"peak RSS {peak / MiB:.0f} MiB"
        assert post_audio(srv).status_code == 200


# --- 6. Claims a dead owner cannot hold ----------------------------------------------------------

def claim_key(key):
    return f"transcripts/{key}.claim"


def put_claim(s3, key, etag, size, owner, claimed_at):
    record = {"owner": owner, "source": {"uri": f"s3://{BUCKET}/{key}", "etag": etag, "version": None, "size": size}, "claimed_at_unix": claimed_at}
    s3.put_object(Bucket=BUCKET, Key=claim_key(key), Body=json.dumps(record).encode())


def read_claim(s3, key):
    try:
        return json.loads(s3.get_object(Bucket=BUCKET, Key=claim_key(key))["Body"].read())
    except s3.exceptions.NoSuchKey:
        return None


def test_a_live_claim_of_another_instance_is_honoured(server, s3, upload):
    """(Control for the tests below: a fresh claim held elsewhere means 503, try later.)"""
    key, etag, size = upload("s01.wav")
    put_claim(s3, key, etag, size, "otherhost/1/x", time.time())
    r = send_s3_event(server, key, etag, size)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"].isdigit()
    assert transcripts_of(s3, key) == [claim_key(key)]


def test_a_claim_not_renewed_within_the_default_lease_is_taken_over(server, s3, upload):
    """The default lease is 30 s: a claim a minute old has a dead owner."""
    key, etag, size = upload("s02.wav")
    put_claim(s3, key, etag, size, "otherhost/1/x", time.time() - 60)
    r = send_s3_event(server, key, etag, size)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == reference_text("s02.wav") and r.json()["duplicate"] is False
    assert transcripts_of(s3, key) == four_transcripts(key)


def test_a_claim_left_by_an_earlier_process_of_this_pod_is_taken_over_at_once(tmp_path, moto, s3, upload):
    """A container restarted in the same pod: same HOSTNAME, another process."""
    key, etag, size = upload("s03.wav")
    put_claim(s3, key, etag, size, "pod-a/999999/old", time.time())
    with serving(tmp_path, moto, HOSTNAME="pod-a") as srv:
        r = send_s3_event(srv, key, etag, size)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == reference_text("s03.wav")
    assert transcripts_of(s3, key) == four_transcripts(key)


def test_a_working_owner_renews_its_claim_and_a_killed_ones_claim_expires(tmp_path, moto, s3, upload):
    lease = 3
    # pod-a decodes with beam 5: five minutes of audio keep it busy well past the lease.
    a = Server(tmp_path, moto, HOSTNAME="pod-a", TINGXIE_CLAIM_SECONDS=lease, TINGXIE_BEAM_SIZE=5)
    b = Server(tmp_path, moto, HOSTNAME="pod-b", TINGXIE_CLAIM_SECONDS=lease)
    passed = False
    try:
        a.wait_ready()
        b.wait_ready()
        key, etag, size = upload("long_5min.wav")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            first = pool.submit(send_s3_event, a, key, etag, size)
            wait_until(lambda: read_claim(s3, key) is not None, 60, "pod-a's claim")
            claimed = read_claim(s3, key)
            assert claimed["owner"].startswith("pod-a/"), claimed
            time.sleep(lease + 1.5)
            renewed = read_claim(s3, key)
            assert not first.done(), "pod-a finished within the lease: nothing was tested"
            assert renewed and renewed["owner"] == claimed["owner"], renewed
            assert renewed["claimed_at_unix"] > claimed["claimed_at_unix"], "the claim was not renewed while its owner worked"
            assert time.time() - renewed["claimed_at_unix"] < lease
            # pod-b honours the live claim...
            r = send_s3_event(b, key, etag, size)
            assert r.status_code == 503 and r.headers["Retry-After"], r.text
            assert not first.done()
            # ...until pod-a dies holding it.
            a.proc.kill()
            a.proc.wait(10)
            with contextlib.suppress(requests.RequestException):
                first.result()
        time.sleep(lease + 1)
        r = send_s3_event(b, key, etag, size)
        assert r.status_code == 200, r.text
        assert r.json()["duplicate"] is False and "product planning" in r.json()["text"]
        assert transcripts_of(s3, key) == four_transcripts(key)
        passed = True
    finally:
        a.terminate()
        code = b.terminate()
    assert not passed or code == 0, b.logs()[-3000:]


# --- 7. Batches that finish ------------------------------------------------------------------------

def test_a_batch_larger_than_the_queue_is_served_and_its_redelivery_is_remembered(tmp_path, moto, s3):
    audio = base64.b64encode(S01).decode()
    batch_id = uuid.uuid4().hex[:8]
    events = [structured_event({"audio": audio}, event_id=f"{batch_id}-{i}", source="/tests/batch") for i in range(5)]
    body = json.dumps(events)
    headers = {"content-type": "application/cloudevents-batch+json"}
    with serving(tmp_path, moto, TINGXIE_QUEUE_DEPTH=1) as srv:  # 2 places for 5 items
        r = requests.post(srv.url + "/", data=body, headers=headers, timeout=300)
        assert r.status_code == 200, r.text
        replies = r.json()
        assert len(replies) == 5, replies
        assert all(reply["type"] == "dev.tingxie.transcription.completed" for reply in replies)
        assert [reply["data"]["text"] for reply in replies] == [reference_text("s01.wav")] * 5
        computed = srv.metric("tingxie_compute_seconds_count")
        again = requests.post(srv.url + "/", data=body, headers=headers, timeout=300)
        assert again.status_code == 200, again.text
        assert [reply["data"]["text"] for reply in again.json()] == [reference_text("s01.wav")] * 5
        assert srv.metric("tingxie_compute_seconds_count") == computed, "a redelivered batch ran the model again"


# --- 8. Truncated audio ------------------------------------------------------------------------------

TRUNCATED = {
    "wav": (S01[: 44 + 2000], "audio/wav"),  # the header declares 113 872 bytes of samples
    "mp3": ((SPEECH / "s05.mp3").read_bytes()[: len((SPEECH / "s05.mp3").read_bytes()) // 2], "audio/mpeg"),
    "flac": ((SPEECH / "s03.flac").read_bytes()[: len((SPEECH / "s03.flac").read_bytes()) // 2], "audio/flac"),
}


@pytest.mark.parametrize("kind", list(TRUNCATED))
def test_truncated_audio_is_refused(server, kind):
    body, media = TRUNCATED[kind]
    r = post_audio(server, body, **{"content-type": media})
    assert r.status_code == 400, r.text
    error = error_of(r)
    assert error["code"] == "invalid_audio" and "truncated" in error["message"], error


# --- 9. Errors classified by cause ----------------------------------------------------------------------

def test_a_source_name_too_long_for_the_filesystem_is_bad_input(server):
    name = "a" * 296 + ".wav"  # 300 characters: over NAME_MAX
    r = requests.post(server.url + "/transcribe", json={"source": f"file://{server.tmp}/local/{name}"}, timeout=60)
    assert r.status_code == 400, r.text
    assert error_of(r)["type"] == "invalid_request_error"


def engine_computing(srv, cpu_at_start):
    """The engine is on a job: its gauge says so, or (servers without it) the queue is empty
    while the process has burnt two CPU-seconds."""
    busy = samples(srv, "tingxie_engine_busy")
    if busy:
        return busy[0][1] == 1
    return srv.metric("tingxie_queue_depth") == 0 and srv.metric("process_cpu_seconds_total") >= cpu_at_start + 2.0


def test_clients_that_hang_up_are_counted_as_499_not_as_errors(tmp_path, moto, s3):
    with serving(tmp_path, moto) as srv:
        # Hangs up while uploading.
        sock = start_request(srv.port, "/transcribe", {"Content-Type": "audio/wav"}, len(S01), S01[:1000])
        time.sleep(0.3)
        sock.close()
        wait_until(lambda: http_requests(srv, "/transcribe", "499") == 1, 10, "the upload counted as 499")
        # Hangs up while its job waits in the queue behind a long one.
        cpu_at_start = srv.metric("process_cpu_seconds_total")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(post_audio, srv, (SPEECH / "long_90s.wav").read_bytes(), "?beam_size=5")
            wait_until(lambda: engine_computing(srv, cpu_at_start), 60, "the long job computing")
            with start_request(srv.port, "/transcribe", {"Content-Type": "audio/wav"}, len(S01), S01):
                wait_until(lambda: srv.metric("tingxie_queue_depth") == 1, 10, "the job queued")
            assert not busy.done(), "the engine finished before the client hung up: nothing was tested"
            assert busy.result().status_code == 200
        wait_until(lambda: http_requests(srv, "/transcribe", "499") == 2, 10, "the queued job counted as 499")
        assert http_requests(srv, "/transcribe", "500") == 0
        errors = [line for line in log_lines(srv) if '"level":"ERROR"' in line]
        assert not errors, errors


def test_concurrent_deliveries_say_which_one_did_the_work(server, s3, upload):
    key, etag, size = upload("s16.wav")
    event_id = str(uuid.uuid4())
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        replies = list(pool.map(lambda _: send_s3_event(server, key, etag, size, event_id=event_id), range(4)))
    assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
    assert sorted(r.json()["duplicate"] for r in replies) == [False, True, True, True]
    assert {r.json()["text"] for r in replies} == {reference_text("s16.wav")}


# --- 10. Echo bounds -------------------------------------------------------------------------------------

HUGE = 30_000_000


@pytest.mark.parametrize(
    "body",
    [
        lambda: {"source": f"s3://{BUCKET}/x.wav", "language": "x" * HUGE},
        lambda: {"source": f"s3://{BUCKET}/x.wav", "y" * HUGE: 1},
    ],
    ids=["huge value", "huge field name"],
)
def test_a_huge_field_is_not_echoed_back_or_logged(server, body):
    offset = log_offset(server)
    r = requests.post(server.url + "/transcribe", data=json.dumps(body()), headers={"content-type": "application/json"}, timeout=120)
    assert r.status_code == 400, r.text[:500]
    assert len(r.content) < 4096, f"error body of {len(r.content)} bytes"
    assert error_of(r)["code"]
    long_lines = [len(line) for line in log_lines(server, offset) if len(line) > 8192]
    assert not long_lines, f"log lines of {long_lines} bytes"


# --- 11. Observability -----------------------------------------------------------------------------------

def access_line(srv, offset, trace_id):
    """The access-log line (message "request") of the request with `trace_id`."""
    for line in log_lines(srv, offset):
        record = json.loads(line)
        fields = record.get("fields", {})
        if fields.get("message") == "request" and fields.get("trace_id") == trace_id:
            return fields
    return None


def test_access_log_lines_and_responses_carry_the_trace_id(server):
    offset = log_offset(server)
    generated = post_audio(server)
    assert generated.status_code == 200
    trace = generated.headers.get("x-trace-id", "")
    assert re.fullmatch(r"[0-9a-f]{32}", trace), generated.headers
    given = uuid.uuid4().hex
    refused = post_audio(server, query="?colour=red", traceparent=f"00-{given}-{'2' * 16}-01")
    assert refused.status_code == 400
    assert refused.headers.get("x-trace-id") == given
    for trace_id, status in ((trace, 200), (given, 400)):
        wait_until(lambda: access_line(server, offset, trace_id), 5, "the access line")
        fields = access_line(server, offset, trace_id)
        assert fields["method"] == "POST" and fields["route"] == "/transcribe" and fields["status"] == status, fields


def test_metrics_show_places_held_engine_busy_and_build_info(server):
    (places,) = samples(server, "tingxie_queue_places_held")
    (busy,) = samples(server, "tingxie_engine_busy")
    assert places[1] == 0 and busy[1] == 0  # idle between tests
    (build,) = samples(server, "tingxie_build_info")
    labels, value = build
    assert value == 1
    assert labels["version"] and labels["device"] and labels["model"] == MODEL.name, labels


# --- 12. Drain ----------------------------------------------------------------------------------------------

def test_after_sigterm_new_work_gets_503_until_in_flight_work_is_done(tmp_path, moto, s3):
    srv = Server(tmp_path, moto, TINGXIE_QUEUE_DEPTH=4, TINGXIE_SHUTDOWN_GRACE_SECONDS=120)
    try:
        srv.wait_ready()
        drain_while_two_long_requests_run(srv)
    finally:
        srv.proc.kill()  # (a no-op when it exited as it should)
        srv.terminate()


def drain_while_two_long_requests_run(srv):
    body = (SPEECH / "long_90s.wav").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        inflight = [pool.submit(post_audio, srv, body, "?beam_size=5") for _ in range(2)]
        wait_until(lambda: srv.metric("tingxie_inflight_requests") >= 3, 30, "two requests in flight")  # + this scrape
        srv.proc.send_signal(signal.SIGTERM)
        probes = 0
        for _ in range(3):
            time.sleep(0.5)
            try:
                ready = requests.get(srv.url + "/health/readiness", timeout=5)
                refused = post_audio(srv, timeout=30)
            except requests.ConnectionError as e:
                pytest.fail(f"connection refused while draining: {e}")
            assert ready.status_code == 503
            assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit(), refused.text
            probes += not all(f.done() for f in inflight)
        assert probes == 3, "in-flight work finished before the probes: nothing was tested"
        results = [f.result() for f in inflight]
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert all("bicycle" in r.json()["text"].lower() for r in results)
    assert srv.proc.wait(120) == 0, srv.logs()[-3000:]


# --- 13. One option parser -------------------------------------------------------------------------------

TEMPERATURE_TOO_HIGH = {
    "query string": lambda srv: post_audio(srv, query="?temperature=1.5"),
    "multipart form": lambda srv: post_multipart(srv, {"temperature": "1.5"}),
    "JSON body": lambda srv: requests.post(srv.url + "/transcribe", json={"audio": base64.b64encode(S01).decode(), "temperature": 1.5}, timeout=300),
    "CloudEvent": lambda srv: post_inline_event(srv, temperature=1.5),
}


@pytest.mark.parametrize("entry", list(TEMPERATURE_TOO_HIGH))
def test_temperature_over_1_is_refused_on_every_entry_point(server, entry):
    r = TEMPERATURE_TOO_HIGH[entry](server)
    assert r.status_code == 400, r.text
    assert "temperature" in error_of(r)["message"], r.text


def test_beam_size_in_the_form_is_read(server):
    r = post_multipart(server, {"beam_size": "0"})
    assert r.status_code == 400, r.text
    assert "beam_size" in error_of(r)["message"], r.text


def test_response_format_is_refused_for_a_stored_source(server, s3, upload):
    key, _, _ = upload("s01.wav")
    r = requests.post(server.url + "/transcribe", json={"source": f"s3://{BUCKET}/{key}", "response_format": "srt"}, timeout=300)
    assert r.status_code == 400, r.text
    assert "response_format" in error_of(r)["message"], r.text
    assert not transcripts_of(s3, key)


def test_response_format_applies_to_inline_audio_in_json(server):
    r = requests.post(server.url + "/transcribe", json={"audio": base64.b64encode(S01).decode(), "response_format": "text"}, timeout=300)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain"), r.headers
    assert r.text.strip() == reference_text("s01.wav")


def test_a_form_field_over_64_kib_names_the_field_limit(server):
    r = post_multipart(server, {"prompt": "x" * 70_000})
    assert r.status_code == 413, r.text
    message = error_of(r)["message"]
    assert "TINGXIE_MAX_BODY_BYTES" not in message and ("64 KiB" in message or "65536" in message), message


def test_a_multipart_body_ending_in_a_lone_cr_is_a_400_at_once(server):
    """actix-multipart waits forever on a whole body whose last part ends in a lone CR (found by
    fuzzing, FUZZING.md); the server answers 400 a second after the body arrived, not 408 after
    the body deadline, and frees the queue place."""
    body = b'--abcd\r\nContent-Disposition: form-data; name="language"\r\n\r\n\r'
    head = {"Content-Type": "multipart/form-data; boundary=abcd"}
    started = time.monotonic()
    sock = start_request(server.port, "/v1/audio/transcriptions", head, len(body), body)
    try:
        answer = read_answer(sock, 20)
    finally:
        sock.close()
    assert answer is not None and answer.status == 400, answer
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and "closing boundary" in error["message"], error
    assert time.monotonic() - started < 10, "answered only at the body deadline"
    wait_until(lambda: server.metric("tingxie_queue_places_held") == 0, 10, "the place freed")
