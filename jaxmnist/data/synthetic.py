"""A synthetic, MNIST-shaped digit set: deterministic, learnable, any size, no download.

Each digit is a jittered stroke template of its class drawn with a random pen, fitted and
centred as MNIST's (docs/data.md). Image ``i`` depends only on ``(seed, split, i)``, so subsets
draw alone; "train" has 60,000 indices, "test" 10,000. numpy only.
"""

from __future__ import annotations

import functools

import numpy as np

FIELD = 28  # image side (pixels)
BOX = 20.0  # the digit's longer side after fitting (pixels), as in MNIST
COM = 14.0  # centre of mass target (pixel index), as measured on MNIST's test set
SIZES = {"train": 60_000, "test": 10_000}
# Each split's offset in one index space: train and test never draw the same image.
_OFFSET = {"train": 0, "test": 1 << 40}

# One polyline per class, (x, y) in a unit box, y downwards; a closed shape repeats its start.
_TEMPLATES: tuple[tuple[tuple[float, float], ...], ...] = (
    tuple((0.5 + 0.38 * np.sin(t), 0.5 - 0.5 * np.cos(t))
          for t in np.linspace(0, 2 * np.pi, 13)),  # 0
    ((0.25, 0.22), (0.55, 0.0), (0.55, 1.0)),  # 1
    ((0.12, 0.25), (0.3, 0.04), (0.6, 0.0), (0.85, 0.2), (0.8, 0.45), (0.12, 1.0), (0.92, 1.0)),
    ((0.15, 0.1), (0.5, 0.0), (0.85, 0.2), (0.45, 0.48), (0.88, 0.75), (0.5, 1.0), (0.1, 0.88)),
    ((0.72, 1.0), (0.72, 0.0), (0.08, 0.66), (0.92, 0.66)),  # 4
    ((0.85, 0.0), (0.22, 0.0), (0.16, 0.45), (0.55, 0.38), (0.86, 0.62), (0.78, 0.92),
     (0.45, 1.0), (0.12, 0.88)),  # 5
    ((0.75, 0.0), (0.32, 0.32), (0.15, 0.7), (0.3, 0.98), (0.65, 0.98), (0.82, 0.72),
     (0.6, 0.5), (0.3, 0.55), (0.16, 0.72)),  # 6
    ((0.08, 0.0), (0.92, 0.0), (0.42, 1.0)),  # 7
    ((0.5, 0.5), (0.8, 0.25), (0.5, 0.0), (0.2, 0.25), (0.5, 0.5), (0.85, 0.76), (0.5, 1.0),
     (0.15, 0.76), (0.5, 0.5)),  # 8
    ((0.82, 0.38), (0.5, 0.52), (0.18, 0.36), (0.24, 0.05), (0.6, 0.0), (0.82, 0.22),
     (0.82, 0.38), (0.7, 1.0)),  # 9
)
_POINTS = max(len(t) for t in _TEMPLATES)
# [10, P, 2]: shorter polylines repeat their last point (zero-length segments draw nothing new).
_TABLE = np.array([t + (t[-1],) * (_POINTS - len(t)) for t in _TEMPLATES], np.float64)
_LENGTHS = np.array([len(t) for t in _TEMPLATES])

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-mixed uint64 hash of each element (vectorised)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def _uniforms(keys: np.ndarray, stream: int, count: int) -> np.ndarray:
    """``count`` uniforms in [0, 1) per key: float64 [len(keys), count], one hash each."""
    streams = np.uint64(stream * 1000) + np.arange(count, dtype=np.uint64)
    h = _mix(_mix(keys[:, None] ^ _mix(streams)[None, :]))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _keys(split: str, index: np.ndarray, seed: int) -> np.ndarray:
    if split not in SIZES:
        raise ValueError(f"split must be one of {', '.join(map(repr, SIZES))}, got {split!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    index = np.asarray(index, np.int64)
    if index.size and index.min() < 0:
        raise ValueError("image indices must be non-negative")
    base = _mix(np.array([seed], np.uint64))[0]
    return _mix((index.astype(np.uint64) + np.uint64(_OFFSET[split])) ^ base)


def labels(split: str, index: np.ndarray, seed: int = 0) -> np.ndarray:
    """The int32 labels (uniform over 0..9) of images ``index`` of ``split``."""
    u = _uniforms(_keys(split, np.ravel(index), seed), 0, 1)[:, 0]
    return np.minimum((u * 10).astype(np.int32), 9).reshape(np.shape(index))


def _strokes(keys: np.ndarray, digit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jittered polylines float64 [N, P, 2] (x, y pixels) fitted into 20x20, and pen radii [N]."""
    n = len(keys)
    u = _uniforms(keys, 1, 2 * _POINTS + 4)
    jitter = (u[:, : 2 * _POINTS].reshape(n, _POINTS, 2) - 0.5) * 0.24  # +-12% of the box
    slant, stretch, width, rotate = (c[:, None] for c in u[:, 2 * _POINTS:].T)
    p = _TABLE[digit] + jitter
    # Padding points follow their polyline's jittered last point: zero-length segments.
    last = np.minimum(np.arange(_POINTS)[None, :], _LENGTHS[digit][:, None] - 1)
    p = np.take_along_axis(p, last[..., None], axis=1)
    p[..., 0] += (slant - 0.5) * 0.5 * (0.5 - p[..., 1])  # shear: up to +-0.25 of the height
    p[..., 0] = 0.5 + (p[..., 0] - 0.5) * (0.7 + 0.6 * stretch)  # narrow or wide
    angle = (rotate - 0.5) * 0.5  # +-14 degrees
    c, s = np.cos(angle), np.sin(angle)
    x, y = p[..., 0] - 0.5, p[..., 1] - 0.5
    p = np.stack([c * x - s * y, s * x + c * y], axis=-1)
    # Stroke widths ~1.7..2.6 px: MNIST's usual range, which the web demo leaves alone.
    radius = (1.0 + 0.6 * width)[:, 0]
    # The ink (pen and soft edge included) spans 20 px, mid-field; images() centres it by mass.
    lo, hi = p.min(axis=1), p.max(axis=1)
    scale = (BOX - 2 * radius - 1) / np.maximum((hi - lo).max(axis=1), 1e-6)
    p = (p - lo[:, None, :]) * scale[:, None, None]
    p += ((FIELD - 1) / 2 - (p.min(axis=1) + p.max(axis=1)) / 2)[:, None, :]
    return p, radius


def _center_by_mass(img: np.ndarray) -> np.ndarray:
    """Shifts each image by whole pixels so its centre of mass is nearest to (14, 14), in field."""
    n = len(img)
    mass = img.reshape(n, -1).sum(1).astype(np.float64)
    grid = np.arange(FIELD)
    rows, cols = img.sum(2).astype(np.float64), img.sum(1).astype(np.float64)
    shifts = []
    for profile in (rows, cols):
        com = (profile * grid).sum(1) / np.maximum(mass, 1)
        inked = profile > 0
        first, last = inked.argmax(1), FIELD - 1 - inked[:, ::-1].argmax(1)
        shifts.append(np.clip(np.round(COM - com).astype(np.int64), -first, FIELD - 1 - last))
    # out[i] = img[i - shift], from a zero border wide enough for any shift
    src_r, src_c = (FIELD + grid[None, :] - shift[:, None] for shift in shifts)
    padded = np.pad(img, ((0, 0), (FIELD, FIELD), (FIELD, FIELD)))
    return padded[np.arange(n)[:, None, None], src_r[:, :, None], src_c[:, None, :]]


def _render(points: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Draws polylines with a round pen and a one-pixel soft edge: uint8 [N, 28, 28].

    In-place float32 arithmetic on [N, 784] buffers: this loop is where the time goes.
    """
    points = points.astype(np.float32)
    grid = np.arange(FIELD, dtype=np.float32)
    px, py = (g.reshape(1, -1) for g in np.meshgrid(grid, grid, indexing="xy"))  # centres
    best = np.full((len(points), FIELD * FIELD), np.inf, np.float32)  # squared distance
    qx, qy, t, tmp = (np.empty_like(best) for _ in range(4))
    for i in range(points.shape[1] - 1):
        ax, ay = points[:, i, 0:1], points[:, i, 1:2]
        dx, dy = points[:, i + 1, 0:1] - ax, points[:, i + 1, 1:2] - ay
        inv = 1.0 / np.maximum(dx * dx + dy * dy, 1e-12)
        np.subtract(px, ax, out=qx)
        np.subtract(py, ay, out=qy)
        np.multiply(qx, dx * inv, out=t)  # t: position of the nearest point along the segment
        np.multiply(qy, dy * inv, out=tmp)
        t += tmp
        np.clip(t, 0.0, 1.0, out=t)
        np.multiply(t, dx, out=tmp)
        qx -= tmp
        np.multiply(t, dy, out=tmp)
        qy -= tmp
        np.multiply(qx, qx, out=qx)
        np.multiply(qy, qy, out=qy)
        qx += qy
        np.minimum(best, qx, out=best)
    np.sqrt(best, out=best)
    np.subtract(radius[:, None].astype(np.float32) + 0.5, best, out=best)
    np.clip(best, 0.0, 1.0, out=best)
    best *= 255
    return np.round(best).astype(np.uint8).reshape(-1, FIELD, FIELD)


def images(split: str, index: np.ndarray, seed: int = 0, *, chunk: int = 256) -> np.ndarray:
    """Images ``index`` (1-D) of ``split``: uint8 [len(index), 28, 28, 1], ink up to 255 on 0.

    ``chunk`` images are drawn per vectorised pass (256: the buffers stay in the CPU's cache).
    """
    index = np.asarray(index, np.int64).reshape(-1)
    keys = _keys(split, index, seed)
    digit = labels(split, index, seed)
    out = np.empty((len(index), FIELD, FIELD, 1), np.uint8)
    for d in range(10):  # one class at a time: its polyline's own number of segments
        where = np.flatnonzero(digit == d)
        for i in range(0, len(where), chunk):
            sel = where[i : i + chunk]
            points, radius = _strokes(keys[sel], digit[sel])
            out[sel, ..., 0] = _center_by_mass(_render(points[:, : _LENGTHS[d]], radius))
    return out


def make(n: int, split: str = "train", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` images of a split (any n >= 1): ``(uint8 [n, 28, 28, 1], int32 [n])``."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    index = np.arange(n)
    return images(split, index, seed), labels(split, index, seed)


@functools.lru_cache(maxsize=4)
def full_split(split: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """All of a split, drawn once per process and kept read-only: ``(images, labels)``."""
    x, y = make(SIZES[split], split, seed)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y
