"""Turns a real image of a handwritten digit into an MNIST-style 28x28 uint8 array.

The steps, as MNIST was made, and why: docs/serve.md, "Preprocessing". numpy, scipy.ndimage
and Pillow; every rejected input raises :class:`PreprocessError`, which carries an HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import os
import re
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps
from scipy import ndimage

# Upload limits (a phone JPEG; decompression bombs) and shapes worth recognising.
MAX_BYTES = 5 * 1024 * 1024
MAX_PIXELS = 40_000_000
MIN_SIDE = 8
MAX_ASPECT = 10.0
WORK_SIDE = 1024  # longer side analysed: a digit ends up 20 px tall
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
# Larger decodes run one at a time per process; memory and block size: docs/serve.md.
LARGE_DECODE_PIXELS = 16_000_000
_LARGE_DECODES = threading.BoundedSemaphore(1)
PILLOW_BLOCK_SIZE = 64 * 2**20

# MNIST's geometry and stroke widths, as measured on its test set: docs/serve.md.
FIELD = 28
BOX = 20
COM_TARGET = 14.0
STROKE_LOW, STROKE_HIGH = 1.4, 3.2
THICKEN_TO, THIN_TO = 2.0, 2.6
_FINE = 4 * BOX  # stroke width is corrected at 4x: a 1-px dilation becomes 1/4 px
MIN_CONTRAST = 0.12  # of full scale (31 grey levels): below it the image is blank
MIN_INK_PIXELS = 4


class PreprocessError(ValueError):
    """An input image that cannot be turned into a digit: a 4xx ``status_code`` and a ``code``.

    400 bad request, 413 too large, 415 not a supported image, 422 unusable (corrupt, odd
    dimensions, no ink); ``code`` is a short machine-readable reason (``"no_ink"``).
    """

    def __init__(self, message: str, *, status_code: int = 400, code: str = "bad_input"):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code

    def to_dict(self) -> dict:
        """JSON body for an error response."""
        return {"error": self.code, "detail": self.message}


_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?),", re.ASCII)


def decode_data_url(url: str) -> bytes:
    """Bytes of a ``data:image/...;base64,`` URL (``canvas.toDataURL()``) or of bare base64."""
    if not isinstance(url, str):
        raise PreprocessError("'image' must be a string: a data URL or base64 text",
                              code="bad_json")
    payload = url.strip()
    if payload.startswith("data:"):
        m = _DATA_URL.match(payload)
        if m is None:
            raise PreprocessError("malformed data URL: expected 'data:image/png;base64,...'",
                                  code="bad_data_url")
        mime = (m.group("mime") or "").lower()
        if mime and not mime.startswith("image/"):
            raise PreprocessError(f"data URL has MIME type {mime!r}, expected image/*",
                                  status_code=415, code="unsupported_media_type")
        if ";base64" not in m.group("params").lower():
            raise PreprocessError("data URL must be base64-encoded", code="bad_data_url")
        payload = payload[m.end():]
    # Check the size before decoding: 4 base64 characters carry 3 bytes.
    if len(payload) * 3 // 4 > MAX_BYTES + 3:
        raise PreprocessError(f"image larger than {MAX_BYTES // (1024 * 1024)} MiB",
                              status_code=413, code="too_large")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as err:
        raise PreprocessError(f"invalid base64 in image data: {err}", code="bad_base64") from err


def decode_image(data: bytes) -> np.ndarray:
    """Image file bytes -> grayscale float32 [H, W] in [0, 1] (0 = black).

    EXIF orientation applied, transparency composited on white, reduced to :data:`WORK_SIDE`
    (JPEGs while decoding); :data:`MAX_PIXELS` is checked on the header, before decoding.
    """
    if not data:
        raise PreprocessError("empty file: no image data received", code="empty")
    if len(data) > MAX_BYTES:
        raise PreprocessError(
            f"file is {len(data) / 2**20:.1f} MiB; the limit is {MAX_BYTES / 2**20:.0f} MiB",
            status_code=413, code="too_large")
    try:
        with warnings.catch_warnings():
            # Pillow warns above ~89 MP and raises above ~179 MP; our own limit is lower.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as err:
        raise PreprocessError("image has too many pixels", status_code=413,
                              code="too_many_pixels") from err
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for foreign bytes
        raise PreprocessError(
            "not a supported image: send a PNG or JPEG (WebP, GIF and BMP also work)",
            status_code=415, code="not_an_image") from err

    w, h = img.size
    if w * h > MAX_PIXELS:
        raise PreprocessError(
            f"image is {w}x{h} = {w * h / 1e6:.0f} MP; the limit is {MAX_PIXELS / 1e6:.0f} MP",
            status_code=413, code="too_many_pixels")
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_ASPECT * min(w, h):
        raise PreprocessError(
            f"odd image dimensions {w}x{h}: each side must be at least {MIN_SIDE} px and the "
            f"aspect ratio at most {MAX_ASPECT:.0f}:1", status_code=422, code="bad_dimensions")

    try:
        # Phones often write MPO (a JPEG with extra frames); Pillow opens it as JPEG.
        if img.format in ("JPEG", "MPO") and max(w, h) > 2 * WORK_SIDE:
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, keeping the longer side >= WORK_SIDE.
            k = WORK_SIDE / max(w, h)
            img.draft(img.mode, (max(1, int(w * k)), max(1, int(h * k))))
        w, h = img.size  # after draft: the size decoded
        with _LARGE_DECODES if w * h > LARGE_DECODE_PIXELS else contextlib.nullcontext():
            try:
                img.load()
                ImageOps.exif_transpose(img, in_place=True)  # no full-size copy when not rotated
                return _to_gray(img)
            finally:
                img.close()  # frees the full-size image before the next large decode starts
    except Exception as err:  # noqa: BLE001 - truncated/corrupt data surfaces as many types
        raise PreprocessError(f"corrupt or truncated image file ({err})", status_code=422,
                              code="corrupt") from err


# Modes that Image.reduce averages (not palettes, not 1-bit).
_REDUCIBLE = ("L", "LA", "RGB", "RGBA", "I", "F")
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _shrink(img: Image.Image) -> Image.Image:
    """Box-reduces ``img`` by an integer factor, keeping its longer side >= :data:`WORK_SIDE`.

    A no-op below twice that and for modes that cannot be averaged.
    """
    factor = max(img.size) // WORK_SIDE
    if factor < 2:
        return img
    if img.mode in _SIXTEEN_BIT:
        img = img.convert("I")  # the same values, in a mode that reduce() averages
    return img.reduce(factor) if img.mode in _REDUCIBLE else img


def return_image_memory() -> None:
    """Makes Pillow allocate large images in :data:`PILLOW_BLOCK_SIZE` blocks (process-wide).

    So that large uploads' memory returns to the system; ``$PILLOW_BLOCK_SIZE``, when set, wins.
    """
    if "PILLOW_BLOCK_SIZE" not in os.environ:
        Image.core.set_block_size(PILLOW_BLOCK_SIZE)


def _to_gray(img: Image.Image) -> np.ndarray:
    """Grayscale float32 [H, W] in [0, 1], transparency composited on white, reduced in size."""
    if img.mode in (*_SIXTEEN_BIT, "I", "F"):
        # 16-bit/float PNGs: PIL's convert("L") would clip at 255 instead of rescaling.
        img = _shrink(img)
        a = np.asarray(img, dtype=np.float32)
        top = 65535.0 if a.max(initial=0) > 255 else (1.0 if img.mode == "F" else 255.0)
        img = Image.fromarray(np.clip(a / top, 0, 1).astype(np.float32))
    else:
        transparent = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
        if transparent and (img.mode not in ("RGBA", "LA") or "transparency" in img.info):
            # A palette's or a colour key's transparency: applied now, as reduce() drops it.
            img = img.convert("RGBA")
        img = _shrink(img)
        if transparent:
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        img = img.convert("L")
    if max(img.size) > WORK_SIDE:
        # BOX = area averaging: the right filter for a large reduction, and fast.
        img.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX)
    a = np.asarray(img, dtype=np.float32)
    return a if img.mode == "F" else a / 255.0


def border_pixels(gray: np.ndarray) -> np.ndarray:
    """Pixels of the outer ring (4% of the shorter side, at least 1 px) of a 2-D image."""
    h, w = gray.shape
    r = max(1, round(0.04 * min(h, w)))
    return np.concatenate([gray[:r].ravel(), gray[-r:].ravel(),
                           gray[r:-r, :r].ravel(), gray[r:-r, -r:].ravel()])


def otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: maximises the between-class variance."""
    # bincount of quantised values: the same histogram as np.histogram, several times faster.
    idx = np.clip((np.asarray(x, np.float32) * bins).astype(np.int64), 0, bins - 1)
    hist = np.bincount(idx.ravel(), minlength=bins)
    edges = np.linspace(0.0, 1.0, bins + 1)
    p = hist.astype(np.float64) / max(1, hist.sum())
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    mt = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mt * w0 - m0) ** 2 / (w0 * (1 - w0))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return float(edges[int(np.argmax(between)) + 1])


def _quadratic_basis(n_rows: int, n_cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1] (rows, columns) for an n_rows x n_cols image."""
    return ((np.arange(n_rows) + 0.5) / n_rows * 2 - 1, (np.arange(n_cols) + 0.5) / n_cols * 2 - 1)


def _background(ink: np.ndarray) -> np.ndarray | float:
    """Background level of an ink-bright image: a quadratic surface from 64 px, else a scalar.

    The surface is fitted to a <= 96 px copy, refitted without the ink (pixels far above the
    fit); smaller images get their border median.
    """
    h, w = ink.shape
    if min(h, w) < 64:
        return float(np.median(border_pixels(ink)))
    small = _fit(ink, 96, min_side=8)
    sh, sw = small.shape
    u, v = _quadratic_basis(sh, sw)
    uu, vv = np.meshgrid(u, v, indexing="ij")
    basis = np.stack([np.ones_like(uu), vv, uu, vv * vv, uu * vv, uu * uu], -1).reshape(-1, 6)
    vals = small.reshape(-1).astype(np.float64)
    keep = np.ones(vals.shape, bool)
    coef = np.zeros(6)
    for _ in range(4):
        # Normal equations (well conditioned in [-1, 1]): ~50x faster than lstsq's SVD.
        a = basis[keep]
        coef = np.linalg.solve(a.T @ a + 1e-9 * np.eye(6), a.T @ vals[keep])
        r = vals - basis @ coef
        med = float(np.median(r[keep]))
        mad = float(np.median(np.abs(r[keep] - med)))
        new = r < med + 2.5 * 1.4826 * mad + 1e-3
        if new.sum() < 0.25 * vals.size or (new == keep).all():
            break
        keep = new
    u, v = _quadratic_basis(h, w)
    uu, vv = u[:, None], v[None, :]
    c = coef.astype(np.float32)
    return (c[0] + c[1] * vv + c[2] * uu + c[3] * vv * vv + c[4] * uu * vv
            + c[5] * uu * uu).astype(np.float32)


_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.int8)


def _despeckle(y: np.ndarray, passes: int = 2) -> np.ndarray:
    """Zeroes ink pixels with fewer than two inked 8-neighbours (a 1-px line survives)."""
    y = y.copy()
    for _ in range(passes):
        m = y > 0
        n = ndimage.correlate(m.astype(np.int8), _NEIGHBOURS, mode="constant")
        y[m & (n < 2)] = 0.0
    return y


def _mass_bbox(y: np.ndarray, tail: float = 0.001) -> tuple[int, int, int, int]:
    """Bounding box (top, bottom, left, right; inclusive) of the ink, ignoring stray mass.

    Each side drops rows/columns holding under ``tail`` of the mass (a far speck).
    """

    def span(profile: np.ndarray) -> tuple[int, int]:
        c = np.cumsum(profile)
        total = c[-1]
        lo = int(np.searchsorted(c, tail * total, side="right"))
        hi = int(np.searchsorted(c, (1 - tail) * total, side="left"))
        nz = np.nonzero(profile)[0]
        # searchsorted can land on an empty row; snap to the nearest inked one inside [lo, hi].
        lo = int(nz[nz >= lo][0]) if (nz >= lo).any() else int(nz[0])
        hi = int(nz[nz <= hi][-1]) if (nz <= hi).any() else int(nz[-1])
        return lo, max(lo, hi)

    return (*span(y.sum(axis=1)), *span(y.sum(axis=0)))


def stroke_width(y: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 x ink area / perimeter (total variation) of a soft image."""
    area = float(y.sum())
    tv = float(np.abs(np.diff(y, axis=0)).sum() + np.abs(np.diff(y, axis=1)).sum())
    return 2.0 * area / tv if tv > 0 else 0.0


def _resize(y: np.ndarray, w: int, h: int) -> np.ndarray:
    """Resize a float image: area averaging when shrinking (anti-aliasing), bilinear when not."""
    if (h, w) == y.shape:
        return y
    shrink = w < y.shape[1] or h < y.shape[0]
    f = Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR
    out = np.asarray(Image.fromarray(y.astype(np.float32)).resize((w, h), f))
    return np.clip(out, 0.0, 1.0)


def _fit(y: np.ndarray, side: float, min_side: int = 1) -> np.ndarray:
    """Scale so the longer side is ``side`` px, keeping the aspect ratio (>= ``min_side`` px)."""
    h, w = y.shape
    s = side / max(h, w)
    return _resize(y, max(min_side, round(w * s)), max(min_side, round(h * s)))


def normalize_stroke(y: np.ndarray, scale: float) -> np.ndarray:
    """Thickens (max filter) or thins (min filter) strokes to MNIST's width after ``scale``.

    ``y`` is fitted to :data:`_FINE` px, ``scale`` takes it to the 20x20 box; cropped to its ink.
    """
    w = stroke_width(y) * scale
    if w <= 0 or STROKE_LOW <= w <= STROKE_HIGH:
        return y
    # A k x k max filter adds k-1 px of width (in y's pixels); the min filter removes as much.
    grow = ((THICKEN_TO if w < STROKE_LOW else THIN_TO) - w) / scale
    k = int(min(9, 1 + 2 * round(abs(grow) / 2)))
    if k < 3:
        return y
    if grow > 0:
        out = ndimage.maximum_filter(np.pad(y, k // 2), size=k, mode="constant")
    else:
        out = ndimage.minimum_filter(y, size=k, mode="constant")
        # Never erase the digit: a fat blob with no "inside" keeps its original strokes.
        if out.sum() < 0.25 * y.sum():
            return y
    # Dilation grows the box and erosion shrinks it: crop again so the digit still fills 20x20.
    return _crop_to_ink(out)


def _crop_to_ink(y: np.ndarray) -> np.ndarray:
    return y[ndimage.find_objects((y != 0).astype(np.int8))[0]]


def center_of_mass(y: np.ndarray) -> tuple[float, float]:
    """Centre of mass (row, column) in pixel-index coordinates of a non-negative image."""
    if y.sum() <= 0:
        return (y.shape[0] - 1) / 2, (y.shape[1] - 1) / 2
    ci, cj = ndimage.center_of_mass(y)
    return float(ci), float(cj)


def _place(d: np.ndarray) -> np.ndarray:
    """Place a <=20x20 digit in a 28x28 field, centre of mass at (14, 14) (whole pixels)."""
    h, w = d.shape
    ci, cj = center_of_mass(d)
    # Shift by whole pixels like the original (no resampling blur), but never push ink out.
    top = int(np.clip(round(COM_TARGET - ci), 0, FIELD - h))
    left = int(np.clip(round(COM_TARGET - cj), 0, FIELD - w))
    out = np.zeros((FIELD, FIELD), np.float32)
    out[top:top + h, left:left + w] = d
    return out


def to_mnist(gray: np.ndarray) -> np.ndarray:
    """A grayscale image (float [H, W] in [0, 1] or uint8, any polarity and size) as a digit.

    Returns uint8 [28, 28], white ink on black, fitted into 20x20 and centred by mass.
    """
    g = np.asarray(gray)
    if g.dtype == np.uint8:
        g = g.astype(np.float32) / 255.0
    g = np.asarray(g, dtype=np.float32)
    if g.ndim == 3 and g.shape[-1] == 1:
        g = g[..., 0]
    if g.ndim != 2 or min(g.shape) < 1:
        raise PreprocessError(f"expected a 2-D grayscale image, got shape {g.shape}",
                              status_code=422, code="bad_dimensions")
    if not np.isfinite(g).all():
        raise PreprocessError("image has non-finite values", status_code=422, code="corrupt")

    # 1. Polarity: the border is background; a light one means dark ink on paper.
    ink = 1.0 - g if np.median(border_pixels(g)) > 0.5 else g
    # 2. Flatten the background, then stretch so that solid ink is 1.
    r = ink - _background(ink)
    x = np.clip(r, 0.0, 1.0)
    t = otsu_threshold(x)
    fg = x > t
    if fg.sum() < MIN_INK_PIXELS:
        raise _no_ink()
    full = float(np.percentile(x[fg], 90))
    if full < MIN_CONTRAST:
        raise _no_ink()
    y = np.clip(x / full, 0.0, 1.0)
    # 3. Noise floor: median + 4 robust sigmas of the background's residual before clipping
    #    (0 for a clean image); ~64k pixels estimate a median as well, 10x faster.
    bgr = r[~fg]
    bgr = bgr[::max(1, bgr.size // 65536)]
    floor = 0.0
    if bgr.size:
        med = float(np.median(bgr))
        mad = float(np.median(np.abs(bgr - med)))
        floor = min(max(0.0, med + 4 * 1.4826 * mad) / full, 0.5 * t / full)
    if floor > 0:
        y = np.clip((y - floor) / (1.0 - floor), 0.0, 1.0)
    y = _despeckle(y)
    strong = _despeckle(np.where(fg, y, 0.0))
    if np.count_nonzero(strong) < MIN_INK_PIXELS:
        raise _no_ink()
    # 4. Crop: the box of the strong ink plus a margin for faint edges, shrunk to the ink.
    top, bottom, left, right = _mass_bbox(strong)
    m = max(2, round(0.02 * max(y.shape)))
    crop = _crop_to_ink(y[max(0, top - m):bottom + m + 1, max(0, left - m):right + m + 1])
    # 5. Normalise the stroke width, fit into 20x20, centre by centre of mass.
    if max(crop.shape) >= 2 * BOX:
        fine = _fit(crop, _FINE)
        crop = normalize_stroke(fine, BOX / max(fine.shape))
    digit = _fit(crop, BOX)
    out = _place(digit)
    peak = float(out.max())
    if peak <= 0:
        raise _no_ink()
    # MNIST strokes saturate at 255; a faint reduced stroke is brought up to full ink.
    return np.round(255.0 * np.clip(out / peak, 0.0, 1.0)).astype(np.uint8)


def _no_ink() -> PreprocessError:
    return PreprocessError("no digit found: the image is blank or has too little contrast",
                           status_code=422, code="no_ink")


def preprocess_bytes(data: bytes) -> np.ndarray:
    """Image file bytes -> the MNIST-style uint8 [28, 28] digit."""
    return to_mnist(decode_image(data))


def to_png_bytes(digit: np.ndarray) -> bytes:
    """Encode a uint8 [28, 28] digit as PNG bytes (to show what the model sees)."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(digit, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
