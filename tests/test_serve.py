"""Web demo tests: the JSON API in-process, digit PNGs end to end, and a real browser (the
browser tests are the end-to-end tier, ``pytest -m e2e``).

A briefly trained MLP (784-256-10, 2 epochs, batch 64, Adam 1e-3) is trained once per test
session into a fresh temporary folder: on all of MNIST when ``$JAXMNIST_DATA_DIR`` is set, else
on 10,000 synthetic digits (tests/datasource.py). Nothing is reused from an earlier session. The
demo serves any member; the MLP reaches the accuracy the PNG test needs (synthetic: 99/100
upscaled digits right, 2026-12-02) for about a sixth of the S0 CNN's training FLOPs (2 epochs at
~1.2 MFLOP per image against 1 epoch at 15.8), and this fixture went from 16 s to 6 s.
"""

from __future__ import annotations

import base64
import io
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import datasource
import numpy as np
import pytest
from PIL import Image

from jaxmnist.runs import rundir
from jaxmnist.serve import app as serve

RECIPE = {
    "model": {"name": "mlp", "hidden": [256]},
    "optim": {"name": "adam", "learning_rate": 1e-3},
    "reg": {"l1": 0.0, "l2": 0.0},
    "loss": "xent",
    "train": {"epochs": 2, "batch_size": 64},
    "seed": 0,
}
# Synthetic digits: 10,000 training images reach ~98% (measured 98.2%) in a sixth of the time.
SYNTHETIC_TRAIN, SYNTHETIC_TEST = 10_000, 2_000


# --------------------------------------------------------------------------------------------
# Data and the trained model
# --------------------------------------------------------------------------------------------


def _digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    if datasource.SOURCE == "synthetic":
        return datasource.load(split, SYNTHETIC_TRAIN if split == "train" else SYNTHETIC_TEST)
    return datasource.load(split)


def _train_run(run_dir: Path) -> None:
    from jaxmnist.data import Splits
    from jaxmnist.engine.fit import train_grid
    from jaxmnist.runs import results as results_json

    train_x, train_y = _digits("train")
    test_x, test_y = _digits("test")
    splits = Splits(train_x, train_y, None, None, test_x, test_y)
    (trained,) = train_grid([RECIPE], splits, None)
    result = results_json.member_record(trained, splits.test_y)
    writer = rundir.RunWriter(run_dir)
    writer.export_member(0, RECIPE["model"], trained.params)
    writer.write_results({"study": "test-s0", "reduced": True,
                          "members": [{"member": 0, "group": 0, **result}]})


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory) -> Path:
    """A run directory with one briefly trained S0 member, private to this test session."""
    run = tmp_path_factory.mktemp("serve-s0")
    _train_run(run)
    return run


@pytest.fixture(scope="session")
def predictor(run_dir: Path) -> serve.Predictor:
    return serve.Predictor(run_dir)


@pytest.fixture(scope="session")
def client(predictor: serve.Predictor):
    from fastapi.testclient import TestClient

    with TestClient(serve.create_app(predictor)) as c:
        yield c


# --------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------


def _encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _as_photo_variant(digit: np.ndarray, variant: int) -> tuple[bytes, str]:
    """An MNIST digit upscaled 4x with padding, in one of four encodings.

    0: white on black PNG; 1: black on white PNG (inversion path); 2: black on white RGB JPEG;
    3: dark ink on a transparent RGBA PNG (alpha composited on white).
    """
    big = Image.fromarray(digit).resize((112, 112), Image.Resampling.BILINEAR)
    a = np.pad(np.asarray(big), ((20, 12), (14, 18)))  # off-centre on purpose
    if variant == 0:
        return _encode(Image.fromarray(a)), "image/png"
    if variant == 1:
        return _encode(Image.fromarray(255 - a)), "image/png"
    if variant == 2:
        return _encode(Image.fromarray(255 - a).convert("RGB"), "JPEG", quality=90), "image/jpeg"
    rgba = np.zeros(a.shape + (4,), np.uint8)
    rgba[..., :3] = 30
    rgba[..., 3] = a
    return _encode(Image.fromarray(rgba, "RGBA")), "image/png"


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _canvas_one() -> bytes:
    """What the page sends for a vertical stroke: 280x280 white canvas, 18 px black line."""
    from PIL import ImageDraw

    img = Image.new("RGBA", (280, 280), (255, 255, 255, 255))
    ImageDraw.Draw(img).line([(150, 50), (135, 230)], fill=(17, 17, 17, 255), width=18)
    return _encode(img)


# --------------------------------------------------------------------------------------------
# API
# --------------------------------------------------------------------------------------------


def test_healthz_and_members(client, predictor):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["members"] == [0]
    m = client.get("/api/members").json()
    assert m["default"] == 0 and len(m["members"]) == 1
    (info,) = m["members"]
    assert info["available"] and info["status"] == "ok"
    # the member's recorded test accuracy (the model's quality is test_mnist_pngs_through_api's)
    recorded = rundir.read_results(predictor.run_dir)["members"][0]["test"]["acc"]
    assert info["test_acc"] == pytest.approx(recorded) and info["test_acc"] > 0.9
    assert info["summary"].startswith("mlp") and "adam lr 0.001" in info["summary"]
    assert predictor.warmup_s is not None  # compiled before the first request


def test_index_and_static(client):
    r = client.get("/")
    assert r.status_code == 200 and "<canvas" in r.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    # No third-party origins: the page must work offline.
    assert "http://" not in r.text and "https://" not in r.text


def test_mnist_pngs_through_api(client):
    """100 test digits (MNIST's, or synthetic) as upscaled PNG/JPEG files: at least 98 right."""
    x, y = _digits("test")
    n, correct, wrong = 100, 0, []
    for i in range(n):
        blob, ctype = _as_photo_variant(x[i, ..., 0], i % 4)
        r = client.post("/predict", files={"file": (f"d{i}.png", blob, ctype)})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["probabilities"]) == 10
        assert abs(sum(body["probabilities"]) - 1) < 1e-4
        assert body["digit"] == int(np.argmax(body["probabilities"]))
        if body["digit"] == y[i]:
            correct += 1
        else:
            wrong.append((i, int(y[i]), body["digit"], i % 4))
    print(f"MNIST PNGs through the API: {correct}/{n} correct; wrong (i, label, pred, variant): "
          f"{wrong}")
    assert correct >= 98, wrong


def test_predict_json_data_url(client):
    r = client.post("/predict", json={"image": _data_url(_canvas_one())})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"digit", "probabilities", "member", "latency_ms", "input_28x28"}
    assert body["digit"] == 1 and body["member"] == 0
    assert body["latency_ms"] > 0
    assert body["input_28x28"].startswith("data:image/png;base64,")


def test_non_finite_probabilities_are_a_4xx_naming_the_member(run_dir, tmp_path):
    """A member whose output is NaN for an image: 422 ``model_error`` (never a 5xx)."""
    from fastapi.testclient import TestClient

    p = serve.Predictor(run_dir, warm=False)
    arch, _ = p._params[0]
    p._fns[arch] = lambda variables, x: np.full((1, 10), np.nan, np.float32)
    with TestClient(serve.create_app(p)) as c:
        r = c.post("/predict", json={"image": _data_url(_canvas_one())})
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "model_error" and "member 0" in r.json()["detail"]


def test_predict_raw_body_and_member_param(client):
    r = client.post("/predict?member=0", content=_canvas_one(),
                    headers={"content-type": "image/png"})
    assert r.status_code == 200 and r.json()["digit"] == 1


def _tiny_bomb() -> bytes:
    """A valid PNG header declaring 20000x20000 pixels (a decompression bomb) in ~100 bytes."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))


BAD_UPLOADS = {
    # name: (bytes, declared part content type, expected status, expected error code)
    "not_an_image": (b"hello, I am text, not a picture\n" * 10, "image/png", 415, "not_an_image"),
    "text_content_type": (b"plain text", "text/plain", 415, "unsupported_media_type"),
    "empty": (b"", "image/png", 400, "empty"),
    "too_large": (b"\x89PNG" + b"\x00" * (5 * 1024 * 1024 + 10), "image/png", 413, "too_large"),
    "too_many_pixels": (_tiny_bomb(), "image/png", 413, "too_many_pixels"),
    "one_by_n": (_encode(Image.new("L", (1, 300), 255)), "image/png", 422, "bad_dimensions"),
    "extreme_aspect": (_encode(Image.new("L", (1200, 40), 255)), "image/png", 422,
                       "bad_dimensions"),
    "truncated": (_encode(Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)))[:900],
        "image/png", 422, "corrupt"),
    "blank_white": (_encode(Image.new("L", (280, 280), 255)), "image/png", 422, "no_ink"),
    "blank_transparent": (_encode(Image.new("RGBA", (280, 280), (0, 0, 0, 0))), "image/png",
                          422, "no_ink"),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_get_4xx_json(client, name):
    blob, ctype, status, code = BAD_UPLOADS[name]
    r = client.post("/predict", files={"file": ("x.png", blob, ctype)})
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == code and r.json()["detail"]


@pytest.mark.parametrize("kwargs,status,code", [
    ({"content": b"a=1", "headers": {"content-type": "application/x-www-form-urlencoded"}},
     415, "unsupported_media_type"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "bad_json"),
    ({"json": {"picture": "x"}}, 400, "bad_json"),
    ({"json": {"image": "data:image/png;base64,@@@@"}}, 400, "bad_base64"),
    ({"json": {"image": "data:text/plain;base64,aGk="}}, 415, "unsupported_media_type"),
    ({"json": {"image": 42}}, 400, "bad_json"),
    ({"files": {"other": ("x.png", b"123", "image/png")}}, 400, "missing_file"),
    ({"json": {"image": "data:image/png;base64,", "member": 0}}, 400, "empty"),
    ({"json": {"image": "", "member": 7}}, 404, "unknown_member"),
    ({"json": {"image": "", "member": "abc"}}, 400, "bad_member"),
    ({"json": {"image": "", "member": True}}, 400, "bad_member"),
    ({"json": {"image": "", "member": 0.5}}, 400, "bad_member"),
])
def test_bad_requests_get_4xx_json(client, kwargs, status, code):
    r = client.post("/predict", **kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"] == code


def test_body_limit_before_parsing(client):
    # A declared length over the limit is refused without reading the body.
    big = b"x" * (serve.MAX_BODY_BYTES + 1)
    r = client.post("/predict", content=big, headers={"content-type": "image/png"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    # A chunked body (no Content-Length) is counted while streaming.
    def chunks():
        for _ in range(8):
            yield b"\x00" * (1024 * 1024)

    r = client.post("/predict", content=chunks(), headers={"content-type": "image/png"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"


def test_server_keeps_serving_after_bad_requests(client):
    for blob, ctype, _, _ in BAD_UPLOADS.values():
        client.post("/predict", files={"file": ("x", blob, ctype)})
    r = client.post("/predict", json={"image": _data_url(_canvas_one())})
    assert r.status_code == 200 and r.json()["digit"] == 1


def test_unknown_routes_are_json_4xx(client):
    assert client.get("/nope").status_code == 404
    r = client.get("/predict")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"


# --------------------------------------------------------------------------------------------
# Loading: members, defaults, paths
# --------------------------------------------------------------------------------------------


def _two_member_run(src: Path, dst: Path) -> Path:
    """A copy of the trained run with a second, "better", and a third, diverged, member."""
    shutil.copytree(src, dst)
    model_cfg, params, _ = rundir.load_member(src, 0)
    res = rundir.read_results(src)
    m0 = res["members"][0]
    m1 = {**m0, "member": 1, "config": {**m0["config"], "seed": 1},
          "test": {**m0["test"], "acc": m0["test"]["acc"] + 0.001}}
    m2 = {**m0, "member": 2, "status": "diverged", "test": {"acc": 0.0980}}
    rundir.export_member(dst, 1, model_cfg, params)
    bad = {k: v for k, v in params.items()}
    first = next(iter(bad))
    bad[first] = {kk: np.full_like(vv, np.nan) for kk, vv in bad[first].items()}
    rundir.export_member(dst, 2, model_cfg, bad)
    res["members"] = [m0, m1, m2, {**m0, "member": 3}]  # member 3 has no params
    rundir.RunWriter(dst).write_results(res)
    return dst


def test_members_default_best_and_unavailable(run_dir, tmp_path):
    run = _two_member_run(run_dir, tmp_path / "run")
    p = serve.Predictor(run, warm=False)
    # No validation split: nothing is chosen (member 1's better test accuracy does not count);
    # the first ok member serves and the member list says why.
    assert p.default == 0 and p.available == [0, 1]
    assert p.members_json()["default_rule"].startswith("no validation split: nothing chosen")
    info = {m["member"]: m for m in p.members_json()["members"]}
    assert not info[2]["available"] and "NaN" in info[2]["reason"]
    assert not info[3]["available"] and info[3]["reason"] == "no exported params"
    assert "seed 1" in info[1]["summary"]
    assert serve.Predictor(run, member=0, warm=False).default == 0
    with pytest.raises(ValueError, match="member 2 cannot serve"):
        serve.Predictor(run, member=2, warm=False)
    # A params file selects that member only.
    one = serve.Predictor(run / "params" / "member_0.npz", warm=False)
    assert one.available == [0] and one.default == 0
    assert serve.resolve_run(run / "params") == (run, None)
    with pytest.raises(FileNotFoundError):
        serve.resolve_run(tmp_path)


def test_the_default_member_is_chosen_on_validation_not_test(run_dir, tmp_path):
    """Member 0 is the better on test, member 1 on validation: member 1 serves (results.json
    alone, no config.json: the members are ranked by jaxmnist.ranking one by one)."""
    run = _two_member_run(run_dir, tmp_path / "run")
    res = rundir.read_results(run)
    for m, val_acc in zip(res["members"], (0.90, 0.95, 0.99, 0.99), strict=True):
        m["history"] = [{**m["history"][-1], "val_acc": val_acc, "val_loss": 0.3}]
    res["members"][1]["test"]["acc"] = res["members"][0]["test"]["acc"] - 0.01
    rundir.RunWriter(run).write_results(res)
    p = serve.Predictor(run, warm=False)  # 2 (diverged) and 3 (no params) cannot serve
    assert p.default == 1 and p.members_json()["default_rule"].startswith("the best member by")
    assert [m["val_acc"] for m in p.members_json()["members"]] == [0.90, 0.95, 0.99, 0.99]


def test_broken_members_are_listed_not_fatal(run_dir, tmp_path):
    """An unknown model name or params that do not fit: that member is off, the rest serve."""
    run = _two_member_run(run_dir, tmp_path / "run")
    model_cfg, params, _ = rundir.load_member(run, 0)
    rundir.export_member(run, 1, {"name": "no-such-model"}, params)
    small = {k: {kk: vv[..., :1] for kk, vv in v.items()} for k, v in params.items()}
    rundir.export_member(run, 3, model_cfg, small)
    p = serve.Predictor(run)
    assert p.available == [0] and p.default == 0
    info = {m["member"]: m for m in p.members_json()["members"]}
    assert "cannot be built" in info[1]["reason"]
    assert "do not fit" in info[3]["reason"]
    with pytest.raises(ValueError, match="member 1 cannot serve"):
        serve.Predictor(run, member=1)


def test_member_summary():
    s = serve.member_summary({"model": {"name": "cnn_depth", "depth": 3, "dropout": 0.25,
                                        "conv_impl": "auto"},
                              "optim": {"name": "sgd", "learning_rate": 0.01},
                              "reg": {"l1": 0.0, "l2": 0.01},
                              "train": {"epochs": 40, "batch_size": 64}, "seed": 2})
    assert s == ("cnn_depth (depth 3, dropout 0.25) · sgd lr 0.01 · l2 0.01 · 40 ep, bs 64 "
                 "· seed 2")
    s = serve.member_summary({"model": {"name": "mlp"},
                              "optim": {"name": "momentum", "learning_rate": 0.1,
                                        "momentum": 0.9}})
    assert s == "mlp · momentum lr 0.1 m 0.9"
    # Any optimizer that takes momentum shows it (Flax's example config: SGD, momentum 0.9).
    s = serve.member_summary({"model": {"name": "mlp"},
                              "optim": {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9}})
    assert s == "mlp · sgd lr 0.1 m 0.9"


def test_the_latency_benchmark_runs(predictor):
    from benchmarks import serve_latency

    res = serve_latency.bench(predictor, n=3, warmup=1)
    assert len(res) == 3 and all(r["p95"] >= r["p50"] > 0 for r in res.values())


# --------------------------------------------------------------------------------------------
# A real browser
# --------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_server(predictor):
    import uvicorn

    port = _free_port()
    config = uvicorn.Config(serve.create_app(predictor), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start within 20 s")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                    "(apt-get install -y chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager go online
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1100,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chrome-profile')}"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(executable_path=driver_path), options=opts)
    drv.set_page_load_timeout(30)
    yield drv
    drv.quit()


def _draw(driver, canvas, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw polylines given in canvas fractions (0..1) with the mouse (pointer events)."""
    from selenium.webdriver.common.action_chains import ActionChains

    w, h = canvas.size["width"], canvas.size["height"]
    for stroke in strokes:
        chain = ActionChains(driver, duration=20)
        x0, y0 = stroke[0]
        # Offsets are from the element's centre.
        chain.move_to_element_with_offset(canvas, int((x0 - 0.5) * w), int((y0 - 0.5) * h))
        chain.click_and_hold()
        prev = (x0, y0)
        for x, y in stroke[1:]:
            chain.move_by_offset(int((x - prev[0]) * w), int((y - prev[1]) * h))
            prev = (x, y)
        chain.release()
        chain.perform()


@pytest.mark.e2e
def test_browser_draw_and_predict(live_server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(live_server + "/")
    canvas = browser.find_element(By.ID, "pad")
    WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.ID, "model-info").text.strip() != "")
    # The page says why member 0 serves (this run has no validation split: nothing chosen).
    assert browser.find_element(By.ID, "default-rule").text.startswith(
        "Default member #0: no validation split: nothing chosen")
    # A "7": top bar, then the diagonal, drawn in several small moves each.
    seven = [[(0.25 + 0.05 * i, 0.22) for i in range(11)]
             + [(0.75 - 0.035 * i, 0.22 + 0.06 * i) for i in range(1, 11)]]
    _draw(browser, canvas, seven)
    WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.ID, "digit").text.strip().isdigit())
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert len(bars) == 10
    widths = [float(b.get_attribute("data-p")) for b in bars]
    assert abs(sum(widths) - 1) < 1e-3
    assert browser.find_element(By.ID, "digit").text == "7"

    # Clear resets the result; an upload predicts again.
    browser.find_element(By.ID, "clear").click()
    WebDriverWait(browser, 5).until(lambda d: d.find_element(By.ID, "digit").text in ("", "–"))
    x, y = _digits("test")
    f = tmp_path / "upload_digit.png"
    f.write_bytes(_as_photo_variant(x[0, ..., 0], 1)[0])
    browser.find_element(By.ID, "file").send_keys(str(f))
    WebDriverWait(browser, 15).until(
        lambda d: d.find_element(By.ID, "digit").text.strip() == str(int(y[0])))
    # A bad upload shows the server's message, and the page still works afterwards.
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"not an image at all")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, 15).until(
        lambda d: "not a supported image" in d.find_element(By.ID, "status").text)


@pytest.mark.e2e
@pytest.mark.skipif(not os.environ.get("JAXMNIST_SCREENSHOT"),
                    reason="set JAXMNIST_SCREENSHOT=figures/serve_screenshot.png to regenerate")
def test_regenerate_screenshot(browser, request):
    """Regenerates the README/docs screenshot (see docs/serve.md for the command)."""
    import uvicorn
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    run = os.environ.get("JAXMNIST_SCREENSHOT_RUN")
    pred = serve.Predictor(run or request.getfixturevalue("run_dir"))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(serve.create_app(pred), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        browser.set_window_size(1000, 1000)
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 15).until(
            lambda d: d.find_element(By.ID, "model-info").text.strip() != "")
        canvas = browser.find_element(By.ID, "pad")
        # A "3": two bowls.
        three = [[(0.32, 0.22), (0.42, 0.15), (0.56, 0.14), (0.66, 0.2), (0.68, 0.3),
                  (0.62, 0.4), (0.5, 0.46), (0.44, 0.47), (0.52, 0.48), (0.64, 0.53),
                  (0.71, 0.63), (0.7, 0.74), (0.62, 0.82), (0.5, 0.86), (0.38, 0.84),
                  (0.3, 0.78)]]
        _draw(browser, canvas, three)
        WebDriverWait(browser, 15).until(
            lambda d: d.find_element(By.ID, "digit").text.strip().isdigit())
        time.sleep(0.6)  # let the bar transition finish
        browser.save_screenshot(os.environ["JAXMNIST_SCREENSHOT"])
    finally:
        server.should_exit = True
        thread.join(timeout=10)
