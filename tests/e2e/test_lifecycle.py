"""Backpressure and shutdown: a full queue answers 429 at once; SIGTERM finishes what it took."""

import concurrent.futures
import socket
import time

import requests

from conftest import SPEECH, Server, proc_memory, wait_until


def rss_bytes(pid: int) -> int:
    return proc_memory(pid, "VmRSS")


def post_audio(url, body):
    return requests.post(url + "/transcribe", data=body, headers={"content-type": "audio/wav"}, timeout=600)


def test_queue_overflow_answers_429_without_growing(tmp_path, moto, s3):
    srv = Server(tmp_path, moto, TINGXIE_QUEUE_DEPTH=1).wait_ready()
    try:
        body = (SPEECH / "long_90s.wav").read_bytes()  # 2.9 MB
        before = rss_bytes(srv.proc.pid)
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(lambda _: post_audio(srv.url, body), range(12)))
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) == {200, 429}, statuses
        assert statuses.count(200) >= 2  # one computing + one queued at least
        refused = [r for r in responses if r.status_code == 429]
        assert all(r.headers["Retry-After"].isdigit() for r in refused)
        assert all(r.json()["error"]["code"] == "queue_full" for r in refused)
        assert srv.metric("tingxie_rejected_total", 'reason="queue_full"') == len(refused)
        # At most QUEUE_DEPTH + 1 = 2 requests were held: memory grows by about two requests'
        # audio and activations, not by twelve.
        growth = rss_bytes(srv.proc.pid) - before
        assert growth < 300 * 1024 * 1024, f"RSS grew by {growth / 2**20:.0f} MiB"
    finally:
        assert srv.terminate() == 0


def test_sigterm_finishes_in_flight_work_and_exits_0(tmp_path, moto, s3):
    srv = Server(tmp_path, moto, TINGXIE_QUEUE_DEPTH=4).wait_ready()
    body = (SPEECH / "long_90s.wav").read_bytes()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        inflight = [pool.submit(post_audio, srv.url, body) for _ in range(2)]
        wait_until(lambda: srv.metric("tingxie_inflight_requests") >= 3, 30, "two requests in flight")  # + this scrape
        srv.proc.send_signal(15)
        time.sleep(0.5)
        try:
            late = requests.get(srv.url + "/health/readiness", timeout=5)
            assert late.status_code == 503
            refused = post_audio(srv.url, (SPEECH / "s01.wav").read_bytes())
            assert refused.status_code == 503 and refused.headers["Retry-After"]
        except requests.ConnectionError:
            pass  # the listener is already closed: new work cannot come in either way
        results = [f.result() for f in inflight]
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert all(r.json()["text"] for r in results)
    assert srv.terminate() == 0
    assert '"stopped"' in srv.logs()


def test_cold_start_phases_are_logged_and_add_up(tmp_path, moto, s3):
    srv = Server(tmp_path, moto)
    # Liveness comes first; readiness only once the model is loaded. A request before that is
    # answered 503 with Retry-After, never failed.
    wait_until(lambda: requests.get(srv.url + "/health/liveness", timeout=1).status_code == 200, 30, "liveness")
    early = post_audio(srv.url, (SPEECH / "s01.wav").read_bytes())
    assert early.status_code in (200, 503), early.text
    if early.status_code == 503:
        assert early.headers["Retry-After"]
    srv.wait_ready()
    try:
        ready = requests.get(srv.url + "/health/readiness", timeout=5).json()
        phases = ready["cold_start"]
        assert {"exec", "config", "cache", "load"} <= set(phases)
        assert abs(sum(v for k, v in phases.items() if k != "total") - phases["total"]) < 1e-6
        assert srv.metric("tingxie_cold_start_phase_seconds", 'phase="ready"') == phases["total"]
        assert '"cold start"' in srv.logs()
    finally:
        assert srv.terminate() == 0


def test_a_request_whose_client_left_is_dropped_before_compute(tmp_path, moto, s3):
    srv = Server(tmp_path, moto).wait_ready()
    try:
        # Five minutes of audio keep the engine busy long enough (tens of seconds) that the
        # second job is certainly still queued when its client hangs up.
        long_body = (SPEECH / "long_5min.wav").read_bytes()
        cpu_at_start = srv.metric("process_cpu_seconds_total")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            busy = pool.submit(post_audio, srv.url, long_body)
            wait_until(lambda: srv.metric("tingxie_inflight_requests") >= 2, 30, "the long request in flight")
            # In flight is not yet computing: the long body is still arriving and being decoded,
            # and a short job sent now could reach the engine first. Two CPU-seconds are more
            # than receiving and decoding the WAV take, so by then the engine is on it.
            wait_until(lambda: srv.metric("process_cpu_seconds_total") >= cpu_at_start + 2.0, 30, "the long job computing")
            assert srv.metric("tingxie_queue_depth") == 0 and not busy.done()
            # A client that sends its audio, then hangs up while its job waits in the queue.
            body = (SPEECH / "s01.wav").read_bytes()
            with socket.create_connection(("127.0.0.1", srv.port)) as client:
                client.sendall(f"POST /transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
                wait_until(lambda: srv.metric("tingxie_queue_depth") == 1, 10, "the job queued")
            assert not busy.done(), "the engine finished before the client hung up: nothing was tested"
            assert busy.result().status_code == 200
        wait_until(lambda: srv.metric("tingxie_cancelled_total") == 1, 10, "the abandoned job dropped")
        assert srv.metric("tingxie_compute_seconds_count") == 1
    finally:
        assert srv.terminate() == 0
