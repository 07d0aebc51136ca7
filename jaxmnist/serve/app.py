"""Web demo: draw or upload a digit, get the prediction of a trained member of a run.

``python -m jaxmnist.serve RUN_DIR [--member K] [--port P]``; the page and the JSON API:
docs/serve.md. Bad input gets a 4xx ``{"error": code, "detail": message}``, never a 500.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from jaxmnist import ranking
from jaxmnist.runs import rundir, runview
from jaxmnist.serve import preprocess
from jaxmnist.serve.preprocess import MAX_BYTES, PreprocessError

log = logging.getLogger("jaxmnist.serve.app")

STATIC_DIR = Path(__file__).parent / "static"
# Request bodies: the image limit, grown by base64's 4/3 and a margin for the framing.
MAX_BODY_BYTES = MAX_BYTES * 4 // 3 + 64 * 1024
IMAGE_CONTENT_TYPES = ("image/", "application/octet-stream")
# Images decoded at once: preprocessing is CPU-bound, more than the cores gains nothing.
MAX_CONCURRENT_DECODES = max(1, min(4, os.cpu_count() or 1))
# ASCII digits only (isdigit() accepts "²"), short enough for int()'s 4300-digit limit.
_MEMBER_TEXT = re.compile(r"[0-9]{1,9}")


class ServeError(PreprocessError):
    """A request that cannot be served as asked (unknown member, bad JSON, ...); a 4xx."""


@dataclass
class MemberInfo:
    """One member of a run as the demo shows it."""

    member: int
    summary: str = ""
    test_acc: float | None = None
    val_acc: float | None = None  # the last epoch's; None without a validation split
    status: str = "unknown"  # or ok, diverged, collapsed
    available: bool = False  # its params loaded
    reason: str | None = None  # why not
    config: dict[str, Any] = field(default_factory=dict)  # {"model": ...} without results.json
    model_cfg: dict[str, Any] | None = field(default=None, repr=False)
    params: Any = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON view for ``GET /api/members``: the fields shown in its repr (not the params)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}


def _fmt_num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def member_summary(config: dict[str, Any]) -> str:
    """One line for a member config, e.g. ``cnn · adam lr 0.001 · 10 ep, bs 32 · seed 0``."""
    model = dict(config.get("model") or {})
    name = model.pop("name", "?")
    model.pop("conv_impl", None)  # how, not what, it computes
    extras = ", ".join(f"{k} {_fmt_num(v)}" for k, v in sorted(model.items())
                       if v not in (None, 0, 0.0, [0.0, 0.0], []))
    parts = [f"{name} ({extras})" if extras else str(name)]
    if opt := config.get("optim"):
        o = f"{opt.get('name', '?')} lr {_fmt_num(opt.get('learning_rate', '?'))}"
        # A member's config holds only what its optimizer takes (jaxmnist.engine.optim).
        if opt.get("momentum"):
            o += f" m {_fmt_num(opt['momentum'])}"
        parts.append(o)
    reg = config.get("reg") or {}
    if regs := [f"{k} {_fmt_num(v)}" for k, v in sorted(reg.items()) if v]:
        parts.append(", ".join(regs))
    if tr := config.get("train"):
        parts.append(f"{tr.get('epochs', '?')} ep, bs {tr.get('batch_size', '?')}")
    if "seed" in config:
        parts.append(f"seed {config['seed']}")
    return " · ".join(parts)


def resolve_run(path: str | Path) -> tuple[Path, int | None]:
    """``(run_dir, member)`` for a run dir, a ``params/`` dir or one ``member_<k>`` file."""
    p = Path(path).expanduser()
    if p.is_file():
        m = rundir.MEMBER_FILE.match(p.name)
        if m is None or p.parent.name != "params":
            raise FileNotFoundError(f"{p}: expected RUN_DIR/params/member_<k>.npz")
        return p.parent.parent, int(m.group(1))
    if p.is_dir() and p.name == "params" and not (p / "params").is_dir():
        return p.parent, None
    if rundir.is_run_dir(p):
        return p, None
    raise FileNotFoundError(
        f"{p}: not a run directory (expected results.json and params/member_<k>.npz; "
        "train one with `python -m jaxmnist.sweep s0`)")


def load_members(run_dir: Path,
                 only: int | None = None) -> tuple[list[MemberInfo], dict[str, Any]]:
    """Every member of ``results.json`` and every exported one (or ``only``), sorted; the results.

    Members without params, or with non-finite ones, are listed unavailable, with why.
    """
    try:
        results = rundir.read_results(run_dir, required=False)
    except rundir.RunDirError as err:
        log.warning("ignoring %s", err)
        results = {}
    infos: dict[int, MemberInfo] = {}
    for i, m in enumerate(results.get("members") or []):
        k = int(m.get("member", i))
        acc = (m.get("test") or {}).get("acc")
        infos[k] = MemberInfo(member=k, config=dict(m.get("config") or {}),
                              test_acc=float(acc) if isinstance(acc, int | float) else None,
                              val_acc=runview.final(m, "val_acc"),
                              status=str(m.get("status", "unknown")))
    for k in rundir.exported_members(run_dir):
        infos.setdefault(k, MemberInfo(member=k))
    if only is not None:
        infos = {only: infos.get(only, MemberInfo(member=only))}
    for k, info in sorted(infos.items()):
        try:
            model_cfg, params, state = rundir.load_member(run_dir, k)
        except rundir.RunDirError as err:
            info.reason = str(err) if only is not None else "no exported params"
            continue
        if not info.config:
            info.config = {"model": model_cfg}
        if info.test_acc is None:
            meta = rundir.member_meta(run_dir, k)
            acc = meta.get("test_acc", (meta.get("test") or {}).get("acc"))
            info.test_acc = float(acc) if isinstance(acc, int | float) else None
        if not all(np.isfinite(a).all() for a in rundir.flatten_params(params).values()
                   if np.issubdtype(a.dtype, np.floating)):
            info.reason = "params contain NaN/inf (the member diverged)"
            continue
        # The member's variables: params and non-parameter state (BatchNorm statistics).
        info.model_cfg, info.params, info.available = model_cfg, (params, state), True
    for info in infos.values():
        info.summary = member_summary(info.config)
    return [infos[k] for k in sorted(infos)], results


def default_member(members: Sequence[MemberInfo], run_dir: Path,
                   results: dict[str, Any]) -> tuple[int, str]:
    """``(member, why)``: the member served by default, chosen on validation as the report does.

    The best available member of the best point (``RunView.ranked``, then ``rank_members``);
    where points do not apply (no ``config.json``), the best member by its own validation
    metrics (same rule). Nothing to choose on (no validation split): the first available member
    whose status is ok, and ``why`` says so. ValueError when no member can serve.
    """
    avail = {m.member: m for m in members if m.available}
    if not avail:
        raise ValueError("no member of this run has usable exported params")
    try:
        view = runview.load(run_dir)
        why = view.no_choice()
        order = [m for p in view.ranked() for m in runview.rank_members(p.members)]
        rule = "the best member of the best point by validation accuracy"
    except runview.ReportError:  # results.json alone: members, no points
        order = runview.rank_members(results.get("members") or [])
        rule = "the best member by validation accuracy (no config.json: no points)"
        why = None if any(runview.final(m, "val_acc") is not None for m in order) \
            else runview.NO_VALIDATION
    valid = [m.get("member") for m in order if m.get("member") in avail
             and math.isfinite(ranking.seed_mean(runview.final(m, "val_acc")))]
    if valid and why is None:
        return valid[0], rule
    first = min(avail.values(), key=lambda m: (m.status not in ("ok", "unknown"), m.member))
    return first.member, (f"{why or 'no available member has a validation accuracy'}; "
                          "serving the first available ok member")


class Predictor:
    """The loaded members of a run and one jitted softmax(apply) per distinct architecture.

    ``member``: the default (None: :func:`default_member`, chosen on validation); ``warm``:
    compile every architecture before the first request.
    """

    def __init__(self, run: str | Path, member: int | None = None, *, warm: bool = True):
        import jax

        from jaxmnist import models

        self.run_dir, only = resolve_run(run)
        self.members, results = load_members(self.run_dir, only)
        self._by_id = {m.member: m for m in self.members}
        self.study = results.get("study")
        self.reduced = bool(results.get("reduced", False))
        self._fns: dict[str, Callable[..., Any]] = {}
        self._params: dict[int, Any] = {}
        for m in self.members:
            if not m.available:
                continue
            arch = json.dumps(m.model_cfg, sort_keys=True)
            if arch not in self._fns:
                try:
                    model = models.build(m.model_cfg)
                except (ValueError, KeyError, TypeError) as err:
                    self._disable(m, f"model config cannot be built: {err}")
                    continue

                def probs(variables, x, _predict=model.predict):
                    return jax.nn.softmax(_predict(*variables, x), axis=-1)

                self._fns[arch] = jax.jit(probs)
            # Params go to the device once; requests then only transfer 784 bytes.
            self._params[m.member] = (arch, jax.device_put(m.params))
            m.params = None
        self._decode_slots = threading.BoundedSemaphore(MAX_CONCURRENT_DECODES)
        self.warmup_s = self.warmup() if warm else None
        self.default_rule = "asked for (--member)"
        if only is not None:
            member, self.default_rule = only, "the one member file given"
        elif member is None:
            member, self.default_rule = default_member(self.members, self.run_dir, results)
        log.info("default member %s: %s", member, self.default_rule)
        self.default = self.resolve_member(member)  # a ServeError (ValueError) when it cannot

    def _disable(self, m: MemberInfo, reason: str) -> None:
        log.warning("member %d cannot serve: %s", m.member, reason)
        m.available, m.reason, m.params = False, reason, None
        self._params.pop(m.member, None)

    @property
    def available(self) -> list[int]:
        """Indices of members that can serve."""
        return sorted(self._params)

    def warmup(self) -> float:
        """Compile and run each architecture once on a blank input; returns seconds taken."""
        t0 = time.perf_counter()
        blank = np.zeros((28, 28), np.uint8)
        # Params that do not fit their architecture (a stale export) disable that member.
        for k in list(self._params):
            try:
                self.predict(blank, k)
            except Exception as err:  # noqa: BLE001 - any failure disables just this member
                self._disable(self._by_id[k], f"params do not fit the model: {err}")
        return time.perf_counter() - t0

    def resolve_member(self, member: Any) -> int:
        """The requested member (None: the default); ServeError 400 or 404."""
        if member is None or member == "":
            return self.default
        if isinstance(member, int) and not isinstance(member, bool):
            k = member
        elif isinstance(member, str) and _MEMBER_TEXT.fullmatch(member.strip()):
            k = int(member)
        else:
            raise ServeError(f"member must be a non-negative integer, got {member!r}",
                             code="bad_member")
        if k not in self._params:
            info = self._by_id.get(k)
            why = info.reason if info else "not in this run"
            raise ServeError(f"member {k} cannot serve ({why}); available: {self.available}",
                             status_code=404, code="unknown_member")
        return k

    def predict(self, digit: np.ndarray, member: int | None = None) -> np.ndarray:
        """float64 [10] probabilities of a uint8 [28, 28] digit; ServeError 422 if not finite."""
        k = self.default if member is None else member
        arch, params = self._params[k]
        x = np.asarray(digit, np.uint8).reshape(1, 28, 28, 1)
        p = np.asarray(self._fns[arch](params, x), dtype=np.float64)[0]
        if not np.isfinite(p).all():
            # A 4xx, as every answer the demo gives: the client can ask another member.
            raise ServeError(f"member {k} produced non-finite probabilities for this image; "
                             "try another member (GET /api/members)",
                             status_code=422, code="model_error")
        return p

    def members_json(self) -> dict[str, Any]:
        """The body of ``GET /api/members``."""
        return {"run_dir": str(self.run_dir), "study": self.study, "reduced": self.reduced,
                "default": self.default, "default_rule": self.default_rule,
                "members": [m.to_json() for m in self.members]}

    def handle_image(self, data: bytes, member: Any = None) -> dict[str, Any]:
        """Preprocesses image bytes and predicts: a ``POST /predict`` body (or a 4xx error)."""
        t0 = time.perf_counter()
        k = self.resolve_member(member)
        try:
            with self._decode_slots:
                digit = preprocess.preprocess_bytes(data)
        except PreprocessError:
            raise
        except Exception as err:  # noqa: BLE001 - a hostile image must not become a 500
            log.exception("unexpected preprocessing failure")
            raise PreprocessError(f"could not process this image ({type(err).__name__})",
                                  status_code=422, code="unprocessable_image") from err
        t1 = time.perf_counter()
        p = self.predict(digit, k)
        t2 = time.perf_counter()
        png = base64.b64encode(preprocess.to_png_bytes(digit)).decode("ascii")
        # 7 significant digits: float32's precision, without float64's long decimal tails.
        return {"digit": int(np.argmax(p)), "probabilities": [float(f"{v:.7g}") for v in p],
                "member": k, "latency_ms": round(1000 * (t2 - t0), 3),
                "preprocess_ms": round(1000 * (t1 - t0), 3),
                "model_ms": round(1000 * (t2 - t1), 3),
                "input_28x28": f"data:image/png;base64,{png}"}


class _BodyLimit:
    """ASGI middleware: refuses bodies over ``limit`` bytes (413), by header and as streamed."""

    def __init__(self, app: Callable[..., Awaitable[None]], limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PreprocessError(
            f"request body larger than {self.limit / 2**20:.1f} MiB "
            f"(images up to {MAX_BYTES / 2**20:.0f} MiB)", status_code=413, code="too_large")
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.strip().isdigit() and int(value) > self.limit:
                await JSONResponse(too_large.to_dict(), too_large.status_code,
                                   headers={"connection": "close"})(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise too_large
            return message

        await self.app(scope, limited_receive, send)


def create_app(predictor: Predictor) -> FastAPI:
    """The FastAPI app over a loaded :class:`Predictor`."""
    preprocess.return_image_memory()  # large uploads' memory goes back to the system after
    app = FastAPI(title="jaxmnist digit demo", version="1",
                  description="Draw or upload a digit; see docs/serve.md.")
    app.state.predictor = predictor
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(PreprocessError)  # and ServeError
    async def _bad_input(_: Request, err: PreprocessError) -> JSONResponse:
        return JSONResponse(err.to_dict(), status_code=err.status_code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(err.status_code, "bad_request")
        return JSONResponse({"error": code, "detail": str(err.detail)},
                            status_code=err.status_code, headers=getattr(err, "headers", None))

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, _: ClientDisconnect) -> Response:
        # The client left mid-upload: nobody will read an answer. One line, no traceback.
        client = f"{request.client.host}:{request.client.port}" if request.client else "unknown"
        log.info("client %s disconnected during %s %s", client, request.method, request.url.path)
        return Response(status_code=400)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """Liveness: the members are loaded and compiled."""
        return {"status": "ok", "default_member": predictor.default,
                "members": predictor.available, "warmup_s": predictor.warmup_s}

    @app.get("/api/members")
    async def api_members() -> dict[str, Any]:
        """Every member of the run: config summary, test accuracy, status, availability."""
        return predictor.members_json()

    @app.post("/predict")
    async def predict(request: Request, member: str | None = None) -> dict[str, Any]:
        """Predict a digit from an upload, a raw image body or a canvas data URL (JSON)."""
        mtype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if mtype == "application/json":
            try:
                body = json.loads(await request.body())
            except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
                why = "nested too deeply" if isinstance(err, RecursionError) else err
                raise ServeError(f"invalid JSON body: {why}", code="bad_json") from None
            if not isinstance(body, dict) or "image" not in body:
                raise ServeError('JSON body must be {"image": "data:image/png;base64,...", '
                                 '"member": k (optional)}', code="bad_json")
            data = preprocess.decode_data_url(body["image"])
            member = body.get("member", member)
        elif mtype == "multipart/form-data":
            form = await request.form(max_files=2, max_fields=8)
            upload = form.get("file") or form.get("image")
            if not isinstance(upload, UploadFile):  # None or a text field
                raise ServeError("multipart body needs a file field named 'file'",
                                 code="missing_file")
            part_type = (upload.content_type or "").split(";", 1)[0].strip().lower()
            if part_type and not part_type.startswith(IMAGE_CONTENT_TYPES):
                raise PreprocessError(
                    f"uploaded file has content type {part_type!r}; send an image "
                    "(image/png or image/jpeg)", status_code=415, code="unsupported_media_type")
            if upload.size is not None and upload.size > MAX_BYTES:
                raise PreprocessError(
                    f"file is {upload.size / 2**20:.1f} MiB; the limit is "
                    f"{MAX_BYTES / 2**20:.0f} MiB", status_code=413, code="too_large")
            data = await upload.read(MAX_BYTES + 1)
            member = form.get("member", member) if member is None else member
        elif mtype.startswith(IMAGE_CONTENT_TYPES):
            data = await request.body()
        else:
            raise PreprocessError(
                f"unsupported content type {mtype or '(none)'!r}: use multipart/form-data "
                "(field 'file'), application/json ({\"image\": data URL}) or image/*",
                status_code=415, code="unsupported_media_type")
        # Decoding a photo takes tens of ms: keep it off the event loop.
        return await run_in_threadpool(predictor.handle_image, data, member)

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: serve a run (its latency: ``python -m benchmarks.serve_latency``)."""
    ap = argparse.ArgumentParser(prog="python -m jaxmnist.serve", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", help="run directory, its params/ directory, or a member_<k>.npz")
    ap.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--member", type=int, default=None,
                    help="default member (default: the best by validation accuracy, as the "
                         "report's best point; without validation the first ok member)")
    args = ap.parse_args(argv)
    # Our own messages at INFO; libraries (jax's backend probing, httpx per request) at WARNING.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    t0 = time.perf_counter()
    try:
        predictor = Predictor(args.run, args.member)
    except (OSError, ValueError, rundir.RunDirError) as err:
        print(f"jaxmnist.serve: {err}", file=sys.stderr)
        return 2
    print(f"loaded {len(predictor.available)} member(s) from {predictor.run_dir} in "
          f"{time.perf_counter() - t0:.1f} s (compile/warm-up {predictor.warmup_s:.1f} s); "
          f"default member {predictor.default} ({predictor.default_rule}): "
          f"{predictor._by_id[predictor.default].summary}", flush=True)

    import uvicorn

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: the demo has no authentication; anyone who can reach this "
                    "address can use it", args.host)
    app = create_app(predictor)
    print(f"serving on http://{args.host}:{args.port}/  (Ctrl-C to stop)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0

