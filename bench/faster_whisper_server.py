#!/usr/bin/env python3
"""A minimal faster-whisper HTTP server: the peer of `tingxie-loadtest coldstart --peer faster-whisper`.

usage: faster_whisper_server.py --model DIR [--threads N] [--port PORT] [--beam-size N]

Standard library http.server (threaded), nothing else but faster-whisper 1.2.1. The model is loaded
at start (`WhisperModel(DIR, device="cpu", compute_type="float32", cpu_threads=N)`), as a minimal
service would; there is no warm-up pass, so readiness means "model loaded".

  GET  /health/liveness    200 once the port is bound (the model may still be loading)
  GET  /health/readiness   200 when the model is loaded, else 503 with Retry-After
  GET  /metrics            tingxie_cold_start_phase_seconds{phase="import"|"model_load"}, and
                           process_resident_memory_bytes (Prometheus text, as tingxie names them)
  POST /transcribe         raw audio body -> {"text", "segments", "language", "duration"}

Phase timings are also printed once on stderr as one JSON line. Decoding options are
faster-whisper's defaults (beam 5), like tingxie's, with vad_filter off.
"""
import argparse
import io
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

T0 = time.perf_counter()

parser = argparse.ArgumentParser()
parser.add_argument("--model", required=True)
parser.add_argument("--threads", type=int, default=int(os.environ.get("TINGXIE_THREADS", "0") or 0))
parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
parser.add_argument("--beam-size", type=int, default=5)
args = parser.parse_args()

state = {"model": None, "phases": []}
lock = threading.Lock()  # one transcription at a time, like one engine


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load():
    t = time.perf_counter()
    from faster_whisper import WhisperModel  # the import is part of the cold start

    t_import = time.perf_counter()
    model = WhisperModel(args.model, device="cpu", compute_type="float32", cpu_threads=args.threads)
    t_loaded = time.perf_counter()
    state["phases"] = [
        ("interpreter", t - T0),
        ("import", t_import - t),
        ("model_load", t_loaded - t_import),
    ]
    state["model"] = model
    print(json.dumps({"phases": dict(state["phases"]), "ready_s": t_loaded - T0}), file=sys.stderr, flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body, content_type="application/json", headers=()):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health/liveness":
            self.reply(200, '{"status":"live"}')
        elif self.path == "/health/readiness":
            if state["model"] is not None:
                self.reply(200, '{"status":"ready"}')
            else:
                self.reply(503, '{"status":"loading"}', headers=[("Retry-After", "1")])
        elif self.path == "/metrics":
            lines = [
                f'tingxie_cold_start_phase_seconds{{phase="{p}"}} {v:.6f}' for p, v in state["phases"]
            ]
            lines.append(f"process_resident_memory_bytes {rss_bytes()}")
            self.reply(200, "\n".join(lines) + "\n", "text/plain; version=0.0.4")
        else:
            self.reply(404, '{"error":{"message":"not found"}}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if not self.path.startswith("/transcribe"):
            return self.reply(404, '{"error":{"message":"not found"}}')
        if state["model"] is None:
            return self.reply(503, '{"error":{"message":"model loading"}}', headers=[("Retry-After", "1")])
        t = time.perf_counter()
        try:
            with lock:
                started = time.perf_counter()
                segments, info = state["model"].transcribe(io.BytesIO(body), beam_size=args.beam_size, vad_filter=False)
                segments = list(segments)
        except Exception as e:  # bad audio
            return self.reply(400, json.dumps({"error": {"message": str(e), "type": "invalid_request_error"}}))
        done = time.perf_counter()
        out = {
            "text": "".join(s.text for s in segments).strip(),
            "segments": [{"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(segments)],
            "language": info.language,
            "duration": info.duration,
        }
        self.reply(
            200,
            json.dumps(out),
            headers=[
                ("x-tingxie-queue-seconds", f"{started - t:.6f}"),
                ("x-tingxie-compute-seconds", f"{done - started:.6f}"),
                ("x-tingxie-audio-seconds", f"{info.duration:.6f}"),
            ],
        )


server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
threading.Thread(target=load, daemon=True).start()
server.serve_forever()
