"""End-to-end tests of `tingxie serve`: the real binary, the real model, a real S3-protocol
server (moto), real clients (openai, cloudevents). Run by `make test` (see the Makefile)."""

import csv
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import boto3
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(os.environ.get("TINGXIE_FIXTURES", REPO.parent / "shared" / "fixtures"))
SPEECH = FIXTURES / "speech"
MODEL = Path(os.environ.get("TINGXIE_TEST_MODEL_DIR", REPO / "models" / "whisper-tiny-en"))
VAD = REPO / "models" / "silero-vad"
BUCKET = "uploads"


def tingxie_bin() -> str:
    if os.environ.get("TINGXIE_BIN"):
        return os.environ["TINGXIE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "release" / "tingxie")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def reference_text(name: str) -> str:
    """faster-whisper's greedy transcript of a fixture file."""
    with open(SPEECH / "faster-whisper.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            if row["file"] == name and row["mode"] == "greedy":
                return row["text"]
    raise KeyError(name)


def proc_memory(pid: int, field: str) -> int:
    """A memory figure of a process from /proc/PID/status, in bytes: `VmRSS` (now), `VmHWM` (peak)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} within {timeout} s")


@pytest.fixture(scope="session")
def moto():
    exe = os.environ.get("TINGXIE_MOTO_SERVER", str(REPO / ".venv" / "bin" / "moto_server"))
    port = free_port()
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(endpoint, timeout=1).status_code < 500, 30, "moto answers")
    yield endpoint
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def s3(moto):
    client = boto3.client("s3", endpoint_url=moto, aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
    for bucket in (BUCKET, "elsewhere"):
        client.create_bucket(Bucket=bucket)
    return client


class Server:
    """A `tingxie serve` process with its log captured."""

    def __init__(self, tmp: Path, moto: str, **env):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"tingxie-{self.port}.log"
        full_env = dict(os.environ)
        full_env.update(
            PORT=str(self.port),
            TINGXIE_BIND="127.0.0.1",
            TINGXIE_MODEL=str(MODEL),
            TINGXIE_VAD_MODEL=str(VAD),
            TINGXIE_CACHE_DIR=str(tmp / "cache"),
            TINGXIE_HISTORY=str(tmp / "history"),
            TINGXIE_BEAM_SIZE="1",
            TINGXIE_THREADS="2",
            TINGXIE_ALLOWED_SOURCES=f"s3://{BUCKET}/,file://{tmp}/local/",
            TINGXIE_ALLOWED_OUTPUTS=f"s3://{BUCKET}/results/",
            TINGXIE_LOG="info",
            AWS_ENDPOINT_URL=moto,
            AWS_ALLOW_HTTP="true",
            AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test",
            AWS_REGION="us-east-1",
        )
        full_env.update({k: str(v) for k, v in env.items()})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([tingxie_bin(), "serve"], env=full_env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120):
        wait_until(lambda: requests.get(self.url + "/health/readiness", timeout=1).status_code == 200, timeout, "tingxie ready")
        return self

    def metric(self, name: str, labels: str = "") -> float:
        """The value of one sample on /metrics (0 when absent)."""
        wanted = name + ("{" + labels + "}" if labels else "")
        for line in requests.get(self.url + "/metrics", timeout=5).text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return 0.0

    def terminate(self, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.log.close()
        return code

    def logs(self) -> str:
        return self.log_path.read_text()


@pytest.fixture(scope="session")
def server(tmp_path_factory, moto, s3):
    tmp = tmp_path_factory.mktemp("srv")
    (tmp / "local").mkdir()
    srv = Server(tmp, moto).wait_ready()
    srv.tmp = tmp
    yield srv
    # The metrics page after every route and event kind was exercised: `make check-deploy`
    # compares the names the alerts and dashboard use with it (METRICS_FILE).
    if os.environ.get("TINGXIE_METRICS_DUMP"):
        Path(os.environ["TINGXIE_METRICS_DUMP"]).write_text(requests.get(srv.url + "/metrics", timeout=5).text)
    assert srv.terminate() == 0, srv.logs()[-3000:]


@pytest.fixture
def upload(s3):
    """Puts a fixture file into the uploads bucket under a unique key; returns (key, etag)."""
    counter = iter(range(1_000_000))

    def put(name: str, prefix: str = "in") -> tuple:
        key = f"{prefix}/{time.time_ns()}-{next(counter)}/{name}"
        body = (SPEECH / name).read_bytes()
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')
        return key, etag, len(body)

    return put


def s3_record(key: str, etag: str, size: int, bucket: str = BUCKET) -> dict:
    """An S3 event notification record, as S3 (and MinIO) send it; keys are form-encoded."""
    from urllib.parse import quote_plus

    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-28T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "tingxie",
            "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
            "object": {"key": quote_plus(key, safe="/"), "size": size, "eTag": etag, "sequencer": "0055AED6DCD90281E5"},
        },
    }
