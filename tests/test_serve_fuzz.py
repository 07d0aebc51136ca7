"""The web demo's API under random client input: never a 5xx, always a JSON error for a 4xx.

Hypothesis draws query values, headers and bodies (JSON documents, data URLs, raw bytes,
multipart forms) against a run with one tiny random MLP (no training, no MNIST), so the test
runs anywhere in a few seconds. The number of examples is bounded for CI.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from fastapi.testclient import TestClient  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from jaxmnist.runs import rundir  # noqa: E402
from jaxmnist.serve import app as serve  # noqa: E402

EXAMPLES = 60  # per test; ~4 tests -> a few seconds on 2 CPU cores
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
MODEL = {"name": "mlp", "hidden": [4]}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "run"
    rng = np.random.default_rng(0)
    params = {"dense1": {"w": rng.normal(0, 0.1, (784, 4)).astype("f4"),
                         "b": np.zeros(4, "f4")},
              "output": {"w": rng.normal(0, 0.1, (4, 10)).astype("f4"),
                         "b": np.zeros(10, "f4")}}
    writer = rundir.RunWriter(run)
    writer.export_member(0, MODEL, params, extra={"test_acc": 0.5})
    writer.write_results({"study": "fuzz", "members": [
        {"member": 0, "config": {"model": MODEL}, "status": "ok", "test": {"acc": 0.5}}]})
    predictor = serve.Predictor(run)
    with TestClient(serve.create_app(predictor), raise_server_exceptions=False) as c:
        yield c


def _png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.tri(28, dtype=np.uint8) * 255).save(buf, "PNG")
    return buf.getvalue()


PNG = _png()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
member_values = (st.text(max_size=12) | st.integers().map(str)
                 | st.sampled_from(["0", " 0 ", "²", "٣", "9" * 5000, "-1", "1e3", "0x1", ""]))
images = st.one_of(
    st.just("data:image/png;base64," + base64.b64encode(PNG).decode()),
    st.binary(max_size=64).map(lambda b: "data:image/png;base64," + base64.b64encode(b).decode()),
    st.text(max_size=40),
    json_values,
)


def _check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.status_code >= 400 and response.content:
        body = response.json()
        assert isinstance(body.get("error"), str) and body.get("detail"), body


@FUZZ
@given(member=member_values)
def test_member_query_values(client, member):
    _check(client.post("/predict", params={"member": member}, content=PNG,
                       headers={"content-type": "image/png"}))


@FUZZ
@given(body=st.one_of(
    st.fixed_dictionaries({"image": images}, optional={"member": json_values | member_values}),
    json_values))
def test_json_bodies(client, body):
    _check(client.post("/predict", content=json.dumps(body).encode(),
                       headers={"content-type": "application/json"}))


@FUZZ
@given(raw=st.binary(max_size=256) | st.just(b"[" * 100_000) | st.just(PNG),
       ctype=st.sampled_from(["application/json", "image/png", "image/jpeg", "text/plain",
                              "multipart/form-data", "multipart/form-data; boundary=x", ""])
       | st.text(max_size=30))
def test_raw_bodies_and_content_types(client, raw, ctype):
    try:
        headers = {"content-type": ctype}
        response = client.post("/predict", content=raw, headers=headers)
    except (UnicodeEncodeError, ValueError):
        return  # httpx refuses to send this header at all: no request reached the server
    _check(response)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from(["member", "x", "file", "image"]),
                              st.text(max_size=10), max_size=3),
       filename=st.text(max_size=10), part_type=st.sampled_from(
           ["image/png", "text/plain", "application/octet-stream", "image/gif"]),
       payload=st.just(PNG) | st.binary(max_size=64))
def test_multipart_forms(client, fields, filename, part_type, payload):
    _check(client.post("/predict", data=fields,
                       files={"file": (filename or "x.png", payload, part_type)}))


@FUZZ
@given(path=st.sampled_from(["/healthz", "/api/members", "/predict", "/nope", "/static/x"]),
       method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
       query=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3))
def test_routes_and_methods(client, path, method, query):
    _check(client.request(method, path, params=query))


def test_disconnect_mid_upload_is_one_log_line(client, caplog):
    app = client.app
    messages = [{"type": "http.request", "body": b"\x89PNG" + b"\0" * 100, "more_body": True},
                {"type": "http.disconnect"}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/predict", "raw_path": b"/predict",
             "query_string": b"", "root_path": "", "client": ("10.0.0.1", 5555),
             "server": ("test", 80),
             "headers": [(b"content-type", b"image/png"), (b"content-length", b"100000")]}
    with caplog.at_level(logging.INFO, "jaxmnist.serve.app"):
        asyncio.run(app(scope, receive, send))
    lines = [r for r in caplog.records if r.name == "jaxmnist.serve.app"]
    assert len(lines) == 1 and "disconnected during POST /predict" in lines[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
