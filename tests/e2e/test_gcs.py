"""Google Cloud Storage: a `google.cloud.storage.object.v1.finalized` CloudEvent (as Eventarc
sends it) for an object in gcp-storage-emulator → transcripts written back to the bucket.

gcp-storage-emulator (PyPI) speaks GCS's JSON API; object_store reads and writes objects
through GCS's XML API (HEAD/GET/PUT on /BUCKET/OBJECT). `XmlApi` below forwards those calls
to the emulator's JSON endpoints and answers with the headers GCS sends (ETag,
Last-Modified, x-goog-generation; DELETE and create-if-absent PUT too). Everything else — event parsing, the gs:// store, the
service-account configuration — is the real path."""

import json
import os
import subprocess
import threading
import uuid
from email.utils import formatdate
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote

import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import REPO, SPEECH, Server, free_port, reference_text, wait_until

BUCKET = "recordings"


class XmlApi(BaseHTTPRequestHandler):
    emulator = ""

    def log_message(self, *args):
        pass

    def _split(self):
        path = self.path.split("?", 1)[0]
        bucket, _, name = path.lstrip("/").partition("/")
        return bucket, unquote(name)

    def _meta(self, bucket, name):
        return requests.get(f"{self.emulator}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", timeout=10)

    def _headers(self, meta, length):
        updated = datetime.fromisoformat(meta["updated"].replace("Z", "+00:00"))
        self.send_header("Content-Length", str(length))
        self.send_header("ETag", f'"{meta["md5Hash"]}"')
        self.send_header("Last-Modified", formatdate(updated.timestamp(), usegmt=True))
        self.send_header("x-goog-generation", meta["generation"])

    def do_HEAD(self):
        r = self._meta(*self._split())
        if r.status_code != 200:
            self.send_response(r.status_code)
            self.end_headers()
            return
        self.send_response(200)
        self._headers(r.json(), r.json()["size"])
        self.end_headers()

    def do_GET(self):
        bucket, name = self._split()
        r = self._meta(bucket, name)
        if r.status_code != 200:
            self.send_response(r.status_code)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = requests.get(f"{self.emulator}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media", timeout=10).content
        self.send_response(200)
        self._headers(r.json(), len(body))
        self.end_headers()
        self.wfile.write(body)

    def _empty(self, status):
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_DELETE(self):
        bucket, name = self._split()
        r = requests.delete(f"{self.emulator}/storage/v1/b/{bucket}/o/{quote(name, safe='')}", timeout=10)
        self._empty(204 if r.status_code in (200, 204) else r.status_code)

    def do_PUT(self):
        bucket, name = self._split()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        # Create-if-absent (object_store's PutMode::Create) is a generation-match on 0.
        if self.headers.get("x-goog-if-generation-match") == "0" and self._meta(bucket, name).status_code == 200:
            return self._empty(412)
        r = requests.post(f"{self.emulator}/upload/storage/v1/b/{bucket}/o", params={"uploadType": "media", "name": name}, data=body, timeout=10)
        meta = r.json()
        self.send_response(200)
        self.send_header("ETag", f'"{meta["md5Hash"]}"')
        self.send_header("x-goog-generation", meta["generation"])
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    port = free_port()
    exe = str(REPO / ".venv" / "bin" / "gcp-storage-emulator")
    proc = subprocess.Popen([exe, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    emulator = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(emulator + "/storage/v1/b", timeout=1).status_code < 500, 30, "gcp-storage-emulator answers")
    requests.post(emulator + "/storage/v1/b", params={"project": "test"}, json={"name": BUCKET}, timeout=10).raise_for_status()
    XmlApi.emulator = emulator
    front = ThreadingHTTPServer(("127.0.0.1", 0), XmlApi)
    threading.Thread(target=front.serve_forever, daemon=True).start()
    key = tmp_path_factory.mktemp("gcs") / "service-account.json"
    key.write_text(json.dumps({"gcs_base_url": f"http://127.0.0.1:{front.server_port}", "disable_oauth": True,
                               "client_email": "", "private_key": "", "private_key_id": ""}))
    yield emulator, key
    front.shutdown()
    proc.kill()
    proc.wait(10)


def test_object_finalized_event(tmp_path, moto, gcs):
    emulator, key = gcs
    name = f"calls/{uuid.uuid4()}/s16.wav"
    body = (SPEECH / "s16.wav").read_bytes()
    meta = requests.post(f"{emulator}/upload/storage/v1/b/{BUCKET}/o", params={"uploadType": "media", "name": name}, data=body, timeout=10).json()
    srv = Server(tmp_path, moto, TINGXIE_ALLOWED_SOURCES=f"gs://{BUCKET}/calls/", GOOGLE_SERVICE_ACCOUNT=str(key)).wait_ready()
    try:
        event = CloudEvent(
            {"type": "google.cloud.storage.object.v1.finalized", "id": str(uuid.uuid4()),
             "source": f"//storage.googleapis.com/projects/_/buckets/{BUCKET}", "subject": f"objects/{name}"},
            {"kind": "storage#object", "id": f"{BUCKET}/{name}/{meta['generation']}", "name": name, "bucket": BUCKET,
             "generation": meta["generation"], "metageneration": "1", "contentType": "audio/wav", "size": str(len(body)),
             "md5Hash": meta["md5Hash"], "etag": "CAE=", "timeCreated": meta["timeCreated"], "updated": meta["updated"]},
        )
        message = to_binary_event(event)
        r = requests.post(srv.url + "/", headers=message.headers, data=message.body, timeout=300)
        assert r.status_code == 200, r.text + srv.logs()[-2000:]
        assert r.json()["text"] == reference_text("s16.wav")
        assert r.json()["source"]["uri"] == f"gs://{BUCKET}/{name}" and r.json()["source"]["version"] == meta["generation"]
        listed = requests.get(f"{emulator}/storage/v1/b/{BUCKET}/o", params={"prefix": f"transcripts/{name}"}, timeout=10).json()
        assert sorted(o["name"] for o in listed.get("items", [])) == sorted(f"transcripts/{name}.{ext}" for ext in ("json", "txt", "srt", "vtt"))
        text = requests.get(f"{emulator}/download/storage/v1/b/{BUCKET}/o/{quote(f'transcripts/{name}.txt', safe='')}?alt=media", timeout=10).text
        assert text.strip() == reference_text("s16.wav")
        again = requests.post(srv.url + "/", headers=message.headers, data=message.body, timeout=300)
        assert again.status_code == 200 and again.json()["duplicate"] is True
    finally:
        assert srv.terminate() == 0
