#!/usr/bin/env python3
"""Cold pull of a model folder from moto into an empty cache dir, timed.

    python3 model-cache/bench/pull.py --reps 15 NAME=BINARY [NAME=BINARY ...]

Each BINARY is a build of `model-cache/examples/prefetch.rs`. Starts moto (`.venv/bin/moto_server`
unless --moto), uploads --model (default `models/whisper-tiny-en/`) to s3://models/<folder name>/,
then per repetition runs every binary once, in turn (interleaved), each with a fresh empty
TINGXIE_CACHE_DIR, and times the whole process and reads its `elapsed_s` (the pull itself).
Two floors: the same objects fetched alone by one curl process, one plain GET after another;
and the same ranged GETs the cache makes (--chunk bytes, --concurrency at once; one curl process
per range, into /dev/null). Prints the median (min–max) of each, in seconds.
"""

import argparse
import concurrent.futures
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(method, url, data=None):
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/octet-stream",
                                          "x-amz-acl": "public-read"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.read()


def spread(xs):
    return f"{statistics.median(xs):.3f} ({min(xs):.3f}–{max(xs):.3f})"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--moto", default=".venv/bin/moto_server")
    ap.add_argument("--model", default="models/whisper-tiny-en")
    ap.add_argument("--chunk", type=int, default=16 * 1024 * 1024, help="range size (as the cache's default)")
    ap.add_argument("--concurrency", type=int, default=8, help="ranges at once (as the cache's default)")
    ap.add_argument("--sha256sums", action="store_true", help="also upload a sha256sums file")
    ap.add_argument("bins", nargs="+", help="NAME=PATH of a prefetch binary")
    a = ap.parse_args()
    bins = [b.split("=", 1) for b in a.bins]

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto = subprocess.Popen([a.moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="pull-bench-")
    try:
        for _ in range(600):
            try:
                request("GET", endpoint + "/")
                break
            except OSError:
                time.sleep(0.1)
        folder = os.path.basename(os.path.normpath(a.model))
        request("PUT", f"{endpoint}/models")
        names = sorted(n for n in os.listdir(a.model) if os.path.isfile(os.path.join(a.model, n)))
        sums = []
        for n in names:
            with open(os.path.join(a.model, n), "rb") as f:
                data = f.read()
            request("PUT", f"{endpoint}/models/{folder}/{n}", data)
            if a.sha256sums:
                import hashlib
                sums.append(f"{hashlib.sha256(data).hexdigest()}  {n}\n")
        if a.sha256sums:
            request("PUT", f"{endpoint}/models/{folder}/sha256sums", "".join(sums).encode())
        uri = f"s3://models/{folder}/"
        env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ALLOW_HTTP="true",
                   AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x", AWS_REGION="us-east-1")
        curl = ["curl", "-sf"]
        for n in names:
            curl += [f"{endpoint}/models/{folder}/{n}", "-o", "/dev/null"]

        ranges = []
        for n in names:
            size = os.path.getsize(os.path.join(a.model, n))
            ranges += [f"{endpoint}/models/{folder}/{n}|{s}-{min(s + a.chunk, size) - 1}"
                       for s in range(0, size, a.chunk)]

        def ranged_get(spec):
            url, r = spec.split("|")
            subprocess.run(["curl", "-sf", "-r", r, url, "-o", "/dev/null"], check=True)

        pool = concurrent.futures.ThreadPoolExecutor(a.concurrency)
        wall = {name: [] for name, _ in bins}
        pull = {name: [] for name, _ in bins}
        alone = []
        ranged = []
        for rep in range(a.reps + 1):  # rep 0 warms moto and the page cache, not counted
            for name, path in bins:
                cache = os.path.join(work, f"cache-{name}-{rep}")
                t = time.perf_counter()
                out = subprocess.run([path, "prefetch", uri], env=dict(env, TINGXIE_CACHE_DIR=cache),
                                     capture_output=True, text=True, check=True)
                dt = time.perf_counter() - t
                line = json.loads(out.stdout.strip().splitlines()[-1])
                assert line["outcome"] == "miss", line
                if rep:
                    wall[name].append(dt)
                    pull[name].append(line["elapsed_s"])
                shutil.rmtree(cache)
            t = time.perf_counter()
            subprocess.run(curl, check=True)
            if rep:
                alone.append(time.perf_counter() - t)
            t = time.perf_counter()
            list(pool.map(ranged_get, ranges))
            if rep:
                ranged.append(time.perf_counter() - t)
        print(f"{a.reps} reps, {uri} ({sum(os.path.getsize(os.path.join(a.model, n)) for n in names)} bytes)")
        print("| binary | pull (elapsed_s), median (min–max) s | process wall, median (min–max) s |")
        print("|---|---|---|")
        for name, _ in bins:
            print(f"| {name} | {spread(pull[name])} | {spread(wall[name])} |")
        print(f"| bytes alone: plain GETs one after another (curl) | — | {spread(alone)} |")
        print(f"| bytes alone: the same {len(ranges)} ranged GETs, {a.concurrency} at once (curl) | — | {spread(ranged)} |")
        print(json.dumps({"pull": pull, "wall": wall, "alone": alone, "ranged": ranged}))
    finally:
        moto.kill()
        moto.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
