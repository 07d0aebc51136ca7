"""Memory of the web demo under bursts of concurrent 40 MP uploads (docs/serve.md reports it).

Command::

    python benchmarks/upload_memory.py            # JPEG, RGB PNG, RGBA PNG, each in a fresh process
    python benchmarks/upload_memory.py --format rgba --bursts 3 --threads 4

Each format runs in a fresh process: an app over a one-member MLP run (random weights: the
numbers are about memory, not accuracy) behind fastapi's TestClient, then ``--bursts`` bursts of
``--threads`` threads posting the same 8000 x 5000 (40 MP, the upload limit) canvas-like "7".
Prints one JSON line per format: the idle RSS, the peak RSS while posting (sampled every 2 ms)
and the RSS once the bursts are over, in MiB, and the seconds per upload.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

FORMATS = {"jpeg": ("RGB", "JPEG"), "png": ("RGB", "PNG"), "rgba": ("RGBA", "PNG")}
SIZE = (8000, 5000)


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20


def _upload(fmt: str) -> bytes:
    from PIL import Image, ImageDraw

    mode, kind = FORMATS[fmt]
    w, h = SIZE
    img = Image.new(mode, SIZE, (0, 0, 0, 0) if mode == "RGBA" else (255, 255, 255))
    ImageDraw.Draw(img).line([(0.3 * w, 0.25 * h), (0.7 * w, 0.25 * h), (0.45 * w, 0.8 * h)],
                             fill=(20, 20, 20, 255)[:len(mode)], width=300, joint="curve")
    buf = io.BytesIO()
    img.save(buf, format=kind, **({"quality": 85} if kind == "JPEG" else {}))
    return buf.getvalue()


def measure(fmt: str, bursts: int, threads: int) -> dict:
    """Posts ``bursts`` x ``threads`` uploads of one format; returns the RSS figures."""
    import gc

    import jax
    import numpy as np
    from fastapi.testclient import TestClient

    from jaxmnist import models
    from jaxmnist.runs import rundir
    from jaxmnist.serve import app as serve

    data = _upload(fmt)
    run = Path(tempfile.mkdtemp()) / "run"
    cfg = {"name": "mlp", "hidden": [32]}
    params = models.build(cfg).init(jax.random.key(0))
    params = jax.tree.map(np.asarray, params[0] if isinstance(params, tuple) else params)
    writer = rundir.RunWriter(run)
    writer.export_member(0, cfg, params)
    writer.write_results({"study": "memory", "members": [
        {"member": 0, "group": 0, "config": {"model": cfg}, "status": "ok"}]})
    with TestClient(serve.create_app(serve.Predictor(run))) as client:
        def post(_: int) -> int:
            return client.post("/predict", files={"file": ("upload", data)}).status_code

        post(0)
        gc.collect()
        idle = peak = _rss_mib()
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _rss_mib())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        codes = []
        for _ in range(bursts):
            with ThreadPoolExecutor(threads) as pool:
                codes += list(pool.map(post, range(threads)))
        seconds = (time.perf_counter() - t0) / (bursts * threads)
        done.set()
        sampler.join()
        gc.collect()
        time.sleep(0.5)
    return {"format": fmt, "upload_bytes": len(data), "status": sorted(set(codes)),
            "idle_mib": round(idle, 1), "peak_mib": round(peak, 1),
            "after_mib": round(_rss_mib(), 1), "seconds_per_upload": round(seconds, 2)}


def main(argv: list[str] | None = None) -> int:
    """Runs every format (or one, with --format) and prints a JSON line per format."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--format", choices=sorted(FORMATS), help="one format, in this process")
    parser.add_argument("--bursts", type=int, default=3)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args(argv)
    if args.format:
        print(json.dumps(measure(args.format, args.bursts, args.threads)), flush=True)
        return 0
    for fmt in FORMATS:  # a fresh process each: memory kept by one format must not count twice
        subprocess.run([sys.executable, __file__, "--format", fmt, "--bursts", str(args.bursts),
                        "--threads", str(args.threads)], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
