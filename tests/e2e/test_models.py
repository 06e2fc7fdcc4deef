"""Several models from one service (issue 20): a catalog (`TINGXIE_MODELS`) pulled from an S3
server through the node cache, `model` on every entry point, `GET /v1/models`, loading on first
use and unloading the least recently used idle model under `TINGXIE_MODEL_MEMORY`."""

import base64
import concurrent.futures
import json
import time
import uuid

import openai
import pytest
import requests
from cloudevents.core.bindings.http import to_binary_event
from cloudevents.core.v1.event import CloudEvent

from conftest import MODEL, SPEECH, Server, reference_text
from test_multilingual import BASE, REAL, ZH, reference

MODELS_BUCKET = "models"
# tiny.en holds 151 MB of f32 weights, base 290 MB: a budget of 300 MB fits one of them.
BUDGET = 300_000_000


def upload_model(s3, folder, prefix):
    for path in folder.iterdir():
        if path.is_file():
            s3.upload_file(str(path), MODELS_BUCKET, f"{prefix}/{path.name}")


@pytest.fixture(scope="module")
def catalog_server(tmp_path_factory, moto, s3):
    s3.create_bucket(Bucket=MODELS_BUCKET)
    upload_model(s3, MODEL, "tiny")
    upload_model(s3, BASE, "base")
    tmp = tmp_path_factory.mktemp("catalog")
    (tmp / "local").mkdir()
    srv = Server(
        tmp,
        moto,
        TINGXIE_MODELS=f"tiny=s3://{MODELS_BUCKET}/tiny/,base=s3://{MODELS_BUCKET}/base/",
        TINGXIE_MODEL="tiny",
        TINGXIE_MODEL_MEMORY=BUDGET,
    ).wait_ready(300)
    yield srv
    assert srv.terminate() == 0, srv.logs()[-3000:]


def loads(server, model):
    return server.metric("tingxie_model_loads_total", f'model="{model}"')


def transcribe_wav(server, path, **params):
    r = requests.post(server.url + "/transcribe", params=params, data=path.read_bytes(), headers={"content-type": "audio/wav"}, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_catalog_is_listed_in_openais_shape(catalog_server):
    listed = openai.OpenAI(base_url=catalog_server.url + "/v1", api_key="unused").models.list()
    assert [m.id for m in listed.data] == ["tiny", "base"]
    assert loads(catalog_server, "tiny") == 1 and loads(catalog_server, "base") == 0, "only the default loads at start"


def test_concurrent_first_requests_load_a_model_once(catalog_server):
    audio = REAL / ZH
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        texts = list(pool.map(lambda _: transcribe_wav(catalog_server, audio, model="base", language="zh", temperature=0)["text"], range(3)))
    assert texts == [reference("greedy", f"real/{ZH}")["text"]] * 3
    assert loads(catalog_server, "base") == 1
    # Both do not fit the budget: loading base unloaded the idle tiny.
    assert catalog_server.metric("tingxie_model_unloads_total", 'model="tiny"') == 1
    assert catalog_server.metric("tingxie_model_resident_bytes", 'model="tiny"') == 0
    assert catalog_server.metric("tingxie_model_resident_bytes", 'model="base"') == 72593920 * 4


def test_requests_alternate_between_models_reloading_from_the_node_cache(catalog_server):
    before_misses = catalog_server.metric("tingxie_model_cache_requests_total", 'outcome="miss"')
    before_bytes = catalog_server.metric("tingxie_model_cache_bytes_downloaded_total")
    for _ in range(2):
        assert transcribe_wav(catalog_server, SPEECH / "s01.wav", temperature=0, beam_size=1)["text"] == reference_text("s01.wav")
        assert transcribe_wav(catalog_server, REAL / ZH, model="base", language="zh", temperature=0)["text"] == reference("greedy", f"real/{ZH}")["text"]
    assert loads(catalog_server, "tiny") == 3 and loads(catalog_server, "base") == 3
    # Every reload came from the node cache: no model was downloaded again.
    assert catalog_server.metric("tingxie_model_cache_requests_total", 'outcome="miss"') == before_misses == 2
    assert catalog_server.metric("tingxie_model_cache_bytes_downloaded_total") == before_bytes > 0
    assert catalog_server.metric("tingxie_model_requests_total", 'model="base"') >= 5


def test_replies_name_the_model(catalog_server):
    body = (REAL / ZH).read_bytes()
    event = CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/tests", "id": str(uuid.uuid4())},
                       {"audio": base64.b64encode(body).decode(), "model": "base", "language": "zh", "temperature": 0.0})
    message = to_binary_event(event)
    r = requests.post(catalog_server.url + "/", headers=message.headers, data=message.body, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "base"
    files = {"file": ("s01.wav", (SPEECH / "s01.wav").read_bytes(), "audio/wav")}
    r = requests.post(catalog_server.url + "/v1/audio/transcriptions", data={"model": "whisper-1", "temperature": "0"}, files=files, timeout=300)
    assert r.status_code == 200 and r.json()["text"] == reference_text("s01.wav"), r.text
    done = [json.loads(line) for line in catalog_server.logs().splitlines() if '"transcribed"' in line]
    assert {d["fields"]["model"] for d in done} == {"tiny", "base"}, done[-2:]


def test_an_unknown_model_is_a_400_on_every_entry_point(catalog_server):
    body = (SPEECH / "s01.wav").read_bytes()
    inline = {"audio": base64.b64encode(body).decode(), "model": "large-v9"}
    message = to_binary_event(CloudEvent({"type": "dev.tingxie.transcription.requested", "source": "/tests", "id": str(uuid.uuid4())}, inline))
    answers = {
        "query": requests.post(catalog_server.url + "/transcribe?model=large-v9", data=body, headers={"content-type": "audio/wav"}, timeout=60),
        "json": requests.post(catalog_server.url + "/transcribe", json=inline, timeout=60),
        "cloudevent": requests.post(catalog_server.url + "/", headers=message.headers, data=message.body, timeout=60),
        "form": requests.post(catalog_server.url + "/v1/audio/transcriptions", data={"model": "large-v9"},
                              files={"file": ("s01.wav", body, "audio/wav")}, timeout=60),
    }
    for entry, r in answers.items():
        assert r.status_code == 400, (entry, r.status_code, r.text)
        assert "model" in r.text and "large-v9" in r.text and "tiny" in r.text, (entry, r.text)
    assert json.loads(answers["form"].text)["error"]["param"] == "model"


def test_a_model_loading_past_the_bound_is_a_503_and_its_load_goes_on(tmp_path, moto):
    # A bound far below base's load time (weights read and converted: a second or more).
    srv = Server(tmp_path, moto, TINGXIE_MODELS=f"tiny={MODEL},base={BASE}", TINGXIE_MODEL="tiny",
                 TINGXIE_MODEL_LOAD_WAIT_SECONDS="0.01", TINGXIE_RETRY_AFTER_SECONDS="1").wait_ready(120)
    try:
        body = (REAL / ZH).read_bytes()
        first = requests.post(srv.url + "/transcribe", params={"model": "base", "language": "zh", "temperature": 0},
                              data=body, headers={"content-type": "audio/wav"}, timeout=120)
        assert first.status_code == 503, first.text
        assert first.headers["retry-after"] == "1"
        assert "base" in first.json()["error"]["message"] and "loading" in first.json()["error"]["message"]
        assert srv.metric("tingxie_rejected_total", 'reason="model_loading"') == 1
        # The load went on without the client: a retry finds base loaded.
        for _ in range(100):
            if srv.metric("tingxie_model_resident_bytes", 'model="base"') > 0:
                break
            time.sleep(0.2)
        again = requests.post(srv.url + "/transcribe", params={"model": "base", "language": "zh", "temperature": 0},
                              data=body, headers={"content-type": "audio/wav"}, timeout=120)
        assert again.status_code == 200, again.text
        assert again.json()["text"] == reference("greedy", f"real/{ZH}")["text"]
        assert loads(srv, "base") == 1
        # The abandoned job was never computed.
        assert srv.metric("tingxie_model_requests_total", 'model="base"') == 1
    finally:
        assert srv.terminate() == 0, srv.logs()[-3000:]
