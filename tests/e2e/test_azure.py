"""Azure Blob Storage: an Event Grid `Microsoft.Storage.BlobCreated` CloudEvent for a blob in
Azurite (the Azure Storage emulator) → transcripts written back to the container."""

import os
import subprocess
import uuid

import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import SPEECH, Server, free_port, reference_text, wait_until

ACCOUNT = "devstoreaccount1"
# Azurite's documented development account key (public, not a secret).
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
CONTAINER = "audio"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    exe = os.environ.get("TINGXIE_AZURITE")
    if not exe or not os.path.exists(exe):
        pytest.fail("TINGXIE_AZURITE must name the azurite-blob executable (make venv installs it)")
    port = free_port()
    data = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen([exe, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", str(data), "--silent", "--skipApiVersionCheck"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url, timeout=1).status_code > 0, 30, "azurite answers")
    yield url
    proc.kill()
    proc.wait(10)


@pytest.fixture(scope="module")
def container(azurite):
    from azure.storage.blob import BlobServiceClient

    conn = f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={azurite}/{ACCOUNT};"
    client = BlobServiceClient.from_connection_string(conn).get_container_client(CONTAINER)
    client.create_container()
    return client


def test_blob_created_event(tmp_path, moto, azurite, container):
    name = f"in/{uuid.uuid4()}/s15.wav"
    body = (SPEECH / "s15.wav").read_bytes()
    etag = container.upload_blob(name, body).get_blob_properties().etag.strip('"')
    srv = Server(tmp_path, moto, TINGXIE_ALLOWED_SOURCES=f"az://{CONTAINER}/in/", AZURE_STORAGE_USE_EMULATOR="true",
                 AZURITE_BLOB_STORAGE_URL=azurite, AZURE_STORAGE_ACCOUNT_NAME=ACCOUNT).wait_ready()
    try:
        event = CloudEvent(
            {"type": "Microsoft.Storage.BlobCreated", "id": str(uuid.uuid4()),
             "source": f"/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/{ACCOUNT}",
             "subject": f"/blobServices/default/containers/{CONTAINER}/blobs/{name}"},
            {"api": "PutBlob", "clientRequestId": str(uuid.uuid4()), "requestId": str(uuid.uuid4()), "eTag": etag,
             "contentType": "audio/wav", "contentLength": len(body), "blobType": "BlockBlob",
             "url": f"{azurite}/{ACCOUNT}/{CONTAINER}/{name}", "sequencer": "00000000000000000000000000000001"},
        )
        message = to_binary_event(event)
        r = requests.post(srv.url + "/", headers=message.headers, data=message.body, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["text"] == reference_text("s15.wav")
        assert r.json()["source"]["uri"] == f"az://{CONTAINER}/{name}"
        written = sorted(b.name for b in container.list_blobs(name_starts_with=f"transcripts/{name}"))
        assert written == sorted(f"transcripts/{name}.{ext}" for ext in ("json", "txt", "srt", "vtt"))
        text = container.download_blob(f"transcripts/{name}.txt").readall().decode()
        assert text.strip() == reference_text("s15.wav")
        again = requests.post(srv.url + "/", headers=message.headers, data=message.body, timeout=300)
        assert again.status_code == 200 and again.json()["duplicate"] is True
    finally:
        assert srv.terminate() == 0
