"""Service classes under overload (issue 21, BENCHMARKS.md): a priority tenant's latency while a
batch tenant saturates the queue, against its latency on an idle server, and against the same
requests sent by a second batch tenant (what they would wait without classes).

One `tingxie serve` with three keyed tenants: `bulk` (batch) keeps TINGXIE_QUEUE_DEPTH + 1
requests in flight (retrying a 429 after --retry-delay), `vip` (priority) and `peer` (batch) send
one short request after another. How full the batch share of the queue was is sampled from
/metrics meanwhile. Prints p50/p99 per phase and class, and the ratio the issue sets a target
for (priority p99 loaded / unloaded <= 1.5).

    make bench-classes   (bench/classes.py --tingxie target/release/tingxie --model ... --speech ...)
"""

import argparse
import hashlib
import os
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

KEYS = {"vip": ("priority", "vip-key"), "peer": ("batch", "peer-key"), "bulk": ("batch", "bulk-key")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def post(url, tenant, audio):
    started = time.monotonic()
    response = requests.post(url + "/transcribe", data=audio, timeout=600,
                             headers={"content-type": "audio/wav", "authorization": f"Bearer {KEYS[tenant][1]}"})
    return response.status_code, time.monotonic() - started


def probe(url, tenant, audio, count):
    """`count` requests one after another; their latencies (seconds)."""
    latencies = []
    while len(latencies) < count:
        status, seconds = post(url, tenant, audio)
        if status == 200:
            latencies.append(seconds)
        elif status != 429:
            raise RuntimeError(f"{tenant}: status {status}")
        time.sleep(0.05)
    return latencies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tingxie", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--speech", required=True, help="the corpus folder (../shared/fixtures/speech)")
    parser.add_argument("--probe", default="s01.wav", help="the short file vip and peer send")
    parser.add_argument("--load", default="s13.wav", help="the file bulk sends")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--queue-depth", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--retry-delay", type=float, default=0.2, help="seconds before bulk retries a 429")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="tingxie-classes-"))
    lines = [f"{name} {cls} key=sha256:{hashlib.sha256(key.encode()).hexdigest()}" for name, (cls, key) in KEYS.items()]
    (tmp / "tenants").write_text("\n".join(lines) + "\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, PORT=str(port), TINGXIE_BIND="127.0.0.1", TINGXIE_MODEL=args.model, TINGXIE_TENANTS=str(tmp / "tenants"),
               TINGXIE_QUEUE_DEPTH=str(args.queue_depth), TINGXIE_BEAM_SIZE="1", TINGXIE_THREADS=str(args.threads),
               TINGXIE_HISTORY=str(tmp / "history"), TINGXIE_CACHE_DIR=str(tmp / "cache"), TINGXIE_LOG="warn")
    server = subprocess.Popen([args.tingxie, "serve"], env=env, stdout=open(tmp / "log", "w"), stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if requests.get(url + "/health/readiness", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        speech = Path(args.speech)
        probe_audio, load_audio = (speech / args.probe).read_bytes(), (speech / args.load).read_bytes()
        probe(url, "vip", probe_audio, 3)  # first-request effects out of the way
        results = {"priority, idle server": probe(url, "vip", probe_audio, args.requests)}

        stop = threading.Event()
        bulk = {"done": [], "refused": 0}

        def saturate():
            while not stop.is_set():
                status, seconds = post(url, "bulk", load_audio)
                if status == 200:
                    bulk["done"].append(seconds)
                elif status == 429:
                    bulk["refused"] += 1
                    time.sleep(args.retry_delay)
                else:
                    raise RuntimeError(f"bulk: status {status}")

        held = []

        def sample():
            while not stop.is_set():
                for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
                    if line.startswith("tingxie_queue_places_held "):
                        held.append(float(line.split()[1]))
                time.sleep(0.05)

        workers = [threading.Thread(target=saturate, daemon=True) for _ in range(args.queue_depth + 1)]
        workers.append(threading.Thread(target=sample, daemon=True))
        for worker in workers:
            worker.start()
        time.sleep(3)
        results["priority, batch saturating"] = probe(url, "vip", probe_audio, args.requests)
        results["batch (peer), batch saturating"] = probe(url, "peer", probe_audio, max(5, args.requests // 3))
        stop.set()
        for worker in workers:
            worker.join(600)
        results["bulk's own requests"] = bulk["done"]

        print(f"probe {args.probe}, load {args.load}, queue depth {args.queue_depth}, {args.threads} threads; "
              f"bulk refused {bulk['refused']} times (429, retried after {args.retry_delay} s); "
              f"batch share ({args.queue_depth} places) full in {sum(h >= args.queue_depth for h in held) / len(held):.0%} "
              f"of {len(held)} samples, mean places held {statistics.mean(held):.2f}")
        print("| phase | requests | p50 s | p99 s |")
        print("|---|---:|---:|---:|")
        for phase, values in results.items():
            print(f"| {phase} | {len(values)} | {statistics.median(values):.3f} | {percentile(values, 0.99):.3f} |")
        idle, loaded = results["priority, idle server"], results["priority, batch saturating"]
        print(f"priority p99 loaded / idle: {percentile(loaded, 0.99) / percentile(idle, 0.99):.2f} (target <= 1.5)")
        print(f"priority p50 loaded / idle: {statistics.median(loaded) / statistics.median(idle):.2f}")
    finally:
        server.terminate()
        server.wait(60)


if __name__ == "__main__":
    main()
