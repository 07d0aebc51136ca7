"""The web demo's latency, in-process: p50 / p95 / mean milliseconds per request.

Usage (from the repository root)::

    python -m benchmarks.serve_latency RUN_DIR [--member K] [-n 200]

Three cases, each ``n`` timed calls after 10 untimed ones: the model alone on a 28x28 digit;
``POST /predict`` of a 280x280 canvas PNG as a JSON data URL (what the page sends while
drawing); ``POST /predict`` of a 2000x1500 JPEG photo as a multipart upload. Requests go through
the full ASGI app (``jaxmnist.serve.app.create_app``) with an in-process client, no network.
Prints a Markdown table headed by the date, machine, device, jax version and load average.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxmnist.runs import rundir
from jaxmnist.serve import app as serve
from jaxmnist.serve import preprocess


def _draw_seven(size: tuple[int, int], *, line: int, photo: bool) -> bytes:
    """A synthetic '7': a canvas drawing (PNG) or a photo-like JPEG (grey paper, shading, noise)."""
    from PIL import Image, ImageDraw

    w, h = size
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    pts = [(0.3 * w, 0.25 * h), (0.7 * w, 0.25 * h), (0.45 * w, 0.8 * h)]
    d.line(pts, fill=20, width=line, joint="curve")
    buf = io.BytesIO()
    if photo:
        rng = np.random.default_rng(0)
        a = np.asarray(img, np.float32)
        shade = np.linspace(0.75, 1.0, w)[None, :] * np.linspace(0.9, 1.0, h)[:, None]
        a = np.clip(a * shade * 0.9 + rng.normal(0, 6, a.shape), 0, 255).astype(np.uint8)
        Image.fromarray(a).convert("RGB").save(buf, format="JPEG", quality=85)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


def _pct(xs: Sequence[float]) -> dict[str, float]:
    a = np.asarray(xs, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "mean": float(a.mean())}


def bench(predictor: serve.Predictor, n: int = 200,
          warmup: int = 10) -> dict[str, dict[str, float]]:
    """Latency percentiles (ms) of the demo, in-process, on this machine.

    Three cases, each ``n`` timed calls after ``warmup`` untimed ones: the model alone on a
    28x28 digit; ``POST /predict`` of a 280x280 canvas PNG as a JSON data URL (what the page
    sends while drawing); and ``POST /predict`` of a 2000x1500 JPEG photo as a multipart upload.
    Requests go through the full ASGI app with an in-process client (no network).

    Args:
        predictor: a loaded, warmed predictor.
        n: timed requests per case.
        warmup: untimed requests per case first.

    Returns:
        ``{case: {"p50", "p95", "mean"}}`` in milliseconds.
    """
    from fastapi.testclient import TestClient

    app = serve.create_app(predictor)
    canvas = _draw_seven((280, 280), line=18, photo=False)
    photo = _draw_seven((2000, 1500), line=60, photo=True)
    canvas_json = {"image": "data:image/png;base64," + base64.b64encode(canvas).decode()}
    digit = preprocess.preprocess_bytes(canvas)
    out: dict[str, dict[str, float]] = {}
    with TestClient(app) as client:
        cases: dict[str, Callable[[], Any]] = {
            "model only (28x28, batch 1)": lambda: predictor.predict(digit),
            "POST /predict canvas 280x280 PNG (JSON)": lambda: client.post(
                "/predict", json=canvas_json),
            "POST /predict photo 2000x1500 JPEG (multipart)": lambda: client.post(
                "/predict", files={"file": ("seven.jpg", photo, "image/jpeg")}),
        }
        for name, call in cases.items():
            times = []
            for i in range(warmup + n):
                t0 = time.perf_counter()
                r = call()
                dt = 1000 * (time.perf_counter() - t0)
                if hasattr(r, "status_code") and r.status_code != 200:
                    raise RuntimeError(f"{name}: HTTP {r.status_code} {r.text}")
                if i >= warmup:
                    times.append(dt)
            out[name] = _pct(times)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Command line; returns the exit code."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.serve_latency",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="run directory, its params/ directory, or a member_<k>.npz")
    ap.add_argument("--member", type=int, default=None,
                    help="member to time (default: the best by test accuracy)")
    ap.add_argument("-n", type=int, default=200, help="timed requests per case")
    args = ap.parse_args(argv)
    try:
        predictor = serve.Predictor(args.run, args.member)
    except (OSError, ValueError, rundir.RunDirError) as err:
        print(f"benchmarks.serve_latency: {err}", file=sys.stderr)
        return 2
    import datetime
    import platform

    import jax

    res = bench(predictor, n=args.n)
    dev = jax.devices()[0]
    # The load average says whether other processes shared the CPU during the measurement.
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{datetime.date.today()} · {platform.machine()} · {os.cpu_count()} CPUs · "
          f"{dev.platform} · jax {jax.__version__} · n={args.n} · load average {load}\n")
    print("| case | p50 ms | p95 ms | mean ms |\n| --- | --- | --- | --- |")
    for name, r in res.items():
        print(f"| {name} | {r['p50']:.2f} | {r['p95']:.2f} | {r['mean']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
