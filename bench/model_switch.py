"""What a model switch costs against a cold start of the same model (issue 20, BENCHMARKS.md).

Two models in one catalog (`file://` URIs, so the first use copies them into the node cache and
every later load reads the node cache, as on a node that has seen them). For each model:

- cold start: `tingxie serve` with that model as the default and a warm node cache, from exec to
  readiness, and its first request;
- switch: one server whose memory budget holds one model, asked in turn for each; a request
  that makes it unload the other and load its own, beside the same request with the model loaded.

Also the memory each loaded model holds: its weights (`tingxie_model_resident_bytes`) and the
process's resident set with it alone loaded. Prints a Markdown table.

    make bench-models        (bench/model_switch.py --tingxie target/release/tingxie ...)
"""

import argparse
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class Server:
    def __init__(self, tingxie: str, cache: Path, catalog: str, default: str, threads: int, budget: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PORT=str(self.port), TINGXIE_BIND="127.0.0.1", TINGXIE_CACHE_DIR=str(cache),
                   TINGXIE_MODELS=catalog, TINGXIE_MODEL=default, TINGXIE_MODEL_MEMORY=str(budget),
                   TINGXIE_THREADS=str(threads), TINGXIE_BEAM_SIZE="1", TINGXIE_LOG="warn")
        self.log = open(log, "a")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([tingxie, "serve"], env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self) -> float:
        while time.monotonic() - self.started < 600:
            try:
                if requests.get(self.url + "/health/readiness", timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except requests.RequestException:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"tingxie exited with {self.proc.returncode}")
            time.sleep(0.005)
        raise TimeoutError("tingxie not ready in 600 s")

    def metric(self, name: str, labels: str = "") -> float:
        wanted = name + ("{" + labels + "}" if labels else "")
        for line in requests.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def transcribe(self, audio: bytes, model: str, language: str) -> float:
        started = time.monotonic()
        r = requests.post(self.url + "/transcribe", params={"model": model, "language": language, "temperature": 0},
                          data=audio, headers={"content-type": "audio/wav"}, timeout=600)
        r.raise_for_status()
        return time.monotonic() - started

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self.log.close()


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def span(xs):
    return f"{median(xs):.3f} ({min(xs):.3f}–{max(xs):.3f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tingxie", required=True)
    ap.add_argument("--model", action="append", required=True, help="NAME=FOLDER, twice or more")
    ap.add_argument("--audio", required=True, type=Path, help="a short WAV every request sends")
    ap.add_argument("--language", default="en")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    models = dict(pair.split("=", 1) for pair in args.model)
    catalog = ",".join(f"{name}=file://{Path(folder).resolve()}/" for name, folder in models.items())
    audio = args.audio.read_bytes()
    work = Path(tempfile.mkdtemp(prefix="tingxie-model-switch-"))
    cache, log = work / "cache", work / "tingxie.log"
    names = list(models)

    # Fill the node cache with every model (one server, no budget), so that both cold starts
    # and switches read it; the memory each model holds alone is measured on the way.
    weights, alone_rss = {}, {}
    for name in names:
        srv = Server(args.tingxie, cache, catalog, name, args.threads, 0, log)
        srv.wait_ready()
        srv.transcribe(audio, name, args.language)
        weights[name] = srv.metric("tingxie_model_resident_bytes", f'model="{name}"')
        alone_rss[name] = rss(srv.proc.pid)
        srv.stop()

    cold_ready, cold_first, cold_load = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
    for _ in range(args.reps):
        for name in names:
            srv = Server(args.tingxie, cache, catalog, name, args.threads, 0, log)
            cold_ready[name].append(srv.wait_ready())
            cold_load[name].append(srv.metric("tingxie_cold_start_phase_seconds", 'phase="load"'))
            srv.transcribe(audio, name, args.language)
            cold_first[name].append(time.monotonic() - srv.started)
            srv.stop()

    # A budget that holds the largest model alone: every change of model is an unload + load.
    budget = int(max(weights.values()))
    srv = Server(args.tingxie, cache, catalog, names[0], args.threads, budget, log)
    srv.wait_ready()
    switched, loaded, load_seconds = {n: [] for n in names}, {n: [] for n in names}, {n: [] for n in names}
    srv.transcribe(audio, names[0], args.language)
    for _ in range(args.reps):
        for name in names[1:] + names[:1]:
            before = srv.metric("tingxie_model_load_seconds_sum", f'model="{name}"')
            switched[name].append(srv.transcribe(audio, name, args.language))
            load_seconds[name].append(srv.metric("tingxie_model_load_seconds_sum", f'model="{name}"') - before)
            loaded[name].append(srv.transcribe(audio, name, args.language))
    unloads = {n: srv.metric("tingxie_model_unloads_total", f'model="{n}"') for n in names}
    misses = srv.metric("tingxie_model_cache_requests_total", 'outcome="miss"')
    srv.stop()
    assert misses == 0, "a switch downloaded a model: the node cache was not warm"

    print(f"audio {args.audio.name}, {args.reps} repetitions, {args.threads} threads, budget {budget} bytes "
          f"(unloads: {', '.join(f'{n} {int(c)}' for n, c in unloads.items())})\n")
    print("| model | weights MiB | RSS alone MiB | cold start: exec → ready | cold start: its load phase | cold start: exec → first transcript "
          "| switch: load (unload + load) | switch: request | same request, model loaded | switch cost seen by the client |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        cost = [s - l for s, l in zip(switched[name], loaded[name])]
        print(f"| {name} | {weights[name] / 2**20:.0f} | {alone_rss[name] / 2**20:.0f} | {span(cold_ready[name])} | {span(cold_load[name])} "
              f"| {span(cold_first[name])} | {span(load_seconds[name])} | {span(switched[name])} | {span(loaded[name])} | {span(cost)} |")
    print("\nSeconds, median (min–max).")


if __name__ == "__main__":
    main()
