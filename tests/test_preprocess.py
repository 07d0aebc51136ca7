"""Preprocessing of real images into MNIST-style 28x28 digits (numpy, scipy.ndimage and Pillow)."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from jaxmnist.serve import preprocess as P


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """60 MNIST test digits, or 60 synthetic ones (same geometry) without MNIST."""
    import datasource

    x, y = datasource.load("test", 60)
    return x[..., 0], y


def _png(a: np.ndarray | Image.Image, fmt: str = "PNG", **kw) -> bytes:
    img = a if isinstance(a, Image.Image) else Image.fromarray(a)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _upscaled(d: np.ndarray, k: int = 4, pad: tuple = ((20, 12), (14, 18))) -> np.ndarray:
    big = Image.fromarray(d).resize((28 * k, 28 * k), Image.Resampling.BILINEAR)
    return np.pad(np.asarray(big), pad)


def _bbox(a: np.ndarray) -> tuple[int, int]:
    rows = np.nonzero(a.any(axis=1))[0]
    cols = np.nonzero(a.any(axis=0))[0]
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def _corr_aligned(a: np.ndarray, b: np.ndarray) -> float:
    """Best correlation over whole-pixel shifts of up to 1 px.

    MNIST put each digit's centre of mass at (14, 14) rounded to whole pixels, so re-centring
    one of its digits may legitimately move it by a pixel.
    """
    return max(_corr(np.roll(a, (di, dj), axis=(0, 1)), b)
               for di in (-1, 0, 1) for dj in (-1, 0, 1))


def _stroke_image(points, size=(400, 400), width=30, ink=20, paper=255) -> Image.Image:
    img = Image.new("L", size, paper)
    ImageDraw.Draw(img).line(points, fill=ink, width=width, joint="curve")
    return img


# --------------------------------------------------------------------------------------------
# MNIST-likeness
# --------------------------------------------------------------------------------------------


def test_mnist_digit_round_trips(digits):
    """A 28x28 MNIST digit is already normalised: preprocessing barely changes it."""
    x, _ = digits
    for d in x:
        out = P.preprocess_bytes(_png(d))
        assert out.dtype == np.uint8 and out.shape == (28, 28)
        assert np.abs(out.astype(float) - d).mean() / 255 < 0.01


def test_upscaled_digit_comes_back_close(digits):
    """4x upscaled, padded off-centre, white or black background: close to the original."""
    x, _ = digits
    for i, d in enumerate(x[:30]):
        a = _upscaled(d)
        for img in (a, 255 - a):
            out = P.preprocess_bytes(_png(img))
            # Thin MNIST strokes (< 1.4 px) are thickened on purpose, hence not > 0.9.
            assert _corr_aligned(out, d) > 0.8, i


def test_output_is_mnist_shaped():
    img = _stroke_image([(120, 60), (260, 60), (170, 340)])  # a "7", off-centre
    out = P.preprocess_bytes(_png(img))
    assert out.max() == 255 and out[0].max() == 0 and out[:, 0].max() == 0
    h, w = _bbox(out)
    assert max(h, w) == 20  # fitted into the 20x20 box
    ci, cj = P.center_of_mass(out.astype(float))
    assert abs(ci - P.COM_TARGET) <= 0.5 and abs(cj - P.COM_TARGET) <= 0.5


@pytest.mark.parametrize("offset", [(0, 0), (-120, 80), (150, -140)])
def test_centre_of_mass_is_centred_wherever_the_digit_is(offset):
    """A lopsided shape (a "7": mass at the top) gets its centre of mass, not its box, at 14."""
    dy, dx = offset
    pts = [(300 + dx, 250 + dy), (420 + dx, 250 + dy), (340 + dx, 450 + dy)]
    out = P.preprocess_bytes(_png(_stroke_image(pts, size=(800, 700), width=20)))
    ci, cj = P.center_of_mass(out.astype(float))
    assert abs(ci - 14) <= 0.5 and abs(cj - 14) <= 0.5
    rows = np.nonzero(out.any(axis=1))[0]
    # The box is not centred: a "7" is top-heavy, so its box sits lower than 4..23.
    assert rows[-1] > 23 - 1 and rows[0] > 4


def test_inversion_light_and_dark_background_agree():
    img = _stroke_image([(100, 80), (300, 80), (180, 330)])
    dark_ink = P.preprocess_bytes(_png(img))
    light_ink = P.preprocess_bytes(_png(Image.eval(img, lambda v: 255 - v)))
    assert np.abs(dark_ink.astype(int) - light_ink.astype(int)).max() <= 2


def test_alpha_is_composited_on_white():
    opaque = _stroke_image([(200, 50), (190, 350)])
    rgba = Image.new("RGBA", opaque.size, (0, 0, 0, 0))  # transparent black
    ImageDraw.Draw(rgba).line([(200, 50), (190, 350)], fill=(20, 20, 20, 255), width=30)
    a = P.preprocess_bytes(_png(opaque))
    b = P.preprocess_bytes(_png(rgba))
    assert _corr(a, b) > 0.98


@pytest.mark.parametrize("size,expect_hw", [((60, 240), (20, 5)), ((240, 60), (5, 20))])
def test_aspect_ratio_is_kept(size, expect_hw):
    """A filled 60x240 bar becomes 5x20, not 20x20 (w x h in `size`)."""
    w, h = size
    img = Image.new("L", (w + 200, h + 200), 255)
    ImageDraw.Draw(img).rectangle([100, 100, 100 + w - 1, 100 + h - 1], fill=0)
    out = P.to_mnist(np.asarray(img))
    got = _bbox(out > 0)
    assert abs(got[0] - expect_hw[0]) <= 1 and abs(got[1] - expect_hw[1]) <= 1


def test_exif_orientation_is_applied():
    img = _stroke_image([(100, 80), (300, 80), (180, 330)]).convert("RGB")
    upright = P.preprocess_bytes(_png(img, "JPEG", quality=95))
    # Stored rotated, with EXIF orientation 6 ("rotate 90 CW to display") to undo it.
    stored = img.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    out = P.preprocess_bytes(_png(stored, "JPEG", quality=95, exif=exif))
    assert _corr(out, upright) > 0.95


def test_uneven_lighting_noise_and_jpeg(digits):
    """A photo-like image: grey paper lit from one side, sensor noise, blur, JPEG."""
    x, _ = digits
    rng = np.random.default_rng(0)
    for d in x[:10]:
        ink = np.zeros((600, 800), np.float32)
        big = Image.fromarray(d).resize((200, 200), Image.Resampling.BILINEAR)
        ink[150:350, 420:620] = np.asarray(big) / 255
        paper = 0.85 * np.linspace(0.65, 1.0, 800)[None, :] * np.linspace(0.85, 1, 600)[:, None]
        photo = paper * (1 - 0.8 * ink) + rng.normal(0, 0.03, ink.shape)
        img = Image.fromarray(np.clip(photo * 255, 0, 255).astype(np.uint8))
        img = img.filter(ImageFilter.GaussianBlur(1)).convert("RGB")
        out = P.preprocess_bytes(_png(img, "JPEG", quality=80))
        assert _corr_aligned(out, d) > 0.8
        # No haze: MNIST's background is exactly 0, and most of the field must be too.
        assert (out == 0).mean() > 0.6


def test_specks_far_away_do_not_move_the_digit():
    img = _stroke_image([(200, 100), (190, 300)])
    clean = P.preprocess_bytes(_png(img))
    d = ImageDraw.Draw(img)
    for xy in [(10, 10), (380, 20), (15, 390), (390, 385)]:
        d.point(xy, fill=0)
    d.rectangle([350, 200, 351, 201], fill=0)
    noisy = P.preprocess_bytes(_png(img))
    assert np.abs(noisy.astype(int) - clean.astype(int)).max() <= 2


def test_thin_and_fat_strokes_are_normalised():
    pts = [(120, 80), (280, 80), (170, 330)]
    for width in (2, 90):
        out = P.preprocess_bytes(_png(_stroke_image(pts, width=width)))
        w = P.stroke_width(out / 255.0)
        assert P.STROKE_LOW - 0.3 <= w <= P.STROKE_HIGH + 0.3, (width, w)


def test_sixteen_bit_png():
    a = np.zeros((100, 100), np.uint16)
    a[20:80, 45:55] = 60000
    out = P.preprocess_bytes(_png(Image.fromarray(a)))
    assert out.max() == 255 and _bbox(out > 0)[0] == 20


def test_large_photo_is_reduced_while_decoding():
    img = _stroke_image([(1500, 500), (1450, 2500)], size=(4000, 3000), width=200)
    blob = _png(img.convert("RGB"), "JPEG", quality=70)
    g = P.decode_image(blob)
    assert max(g.shape) <= P.WORK_SIDE
    out = P.to_mnist(g)
    assert _bbox(out > 0)[0] == 20


def _full_size_gray(img: Image.Image) -> np.ndarray:
    """The decode before large images were reduced first: composite, gray, then thumbnail."""
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255,) * 4), rgba)
    img = img.convert("L")
    img.thumbnail((P.WORK_SIDE, P.WORK_SIDE), Image.Resampling.BOX)
    return np.asarray(img, np.float32) / 255.0


def _canvas(size: tuple[int, int], mode: str) -> Image.Image:
    w, h = size
    img = Image.new(mode, size, (0, 0, 0, 0) if mode == "RGBA" else (255,) * len(mode))
    ImageDraw.Draw(img).line([(0.3 * w, 0.25 * h), (0.7 * w, 0.25 * h), (0.45 * w, 0.8 * h)],
                             fill=(20, 20, 20, 255)[:len(mode)], width=w // 25, joint="curve")
    return img


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_large_images_are_reduced_before_conversion_with_the_same_result(mode):
    img = _canvas((2 * P.WORK_SIDE - 1, 1200), "RGBA" if mode == "RGBA" else "RGB")
    img = img.convert("P") if mode == "P" else img
    # Below twice WORK_SIDE nothing changed: the same pixels as before, bit for bit.
    assert np.array_equal(P.decode_image(_png(img)), _full_size_gray(img))
    img = _canvas((4 * P.WORK_SIDE + 100, 2500), "RGBA" if mode == "RGBA" else "RGB")
    img = img.convert("P") if mode == "P" else img
    got, ref = P.decode_image(_png(img)), _full_size_gray(img)
    # Box averages over a grid shifted by a fraction of a pixel: stroke edges differ, not more.
    assert got.shape == ref.shape and np.abs(got - ref).mean() < 0.01
    assert _corr(P.to_mnist(got), P.to_mnist(ref)) > 0.99


def test_concurrent_large_uploads_decode_in_bounded_memory(tmp_path):
    """Four threads decode a 20 MP RGBA PNG (80 MB decoded) at once in a fresh process.

    Before: each held its full-size image plus three full-size copies (RGBA, white, composite)
    at once, ~1.2 GB in all. Now: one large decode at a time, reduced before any conversion.
    """
    import subprocess
    import sys

    path = tmp_path / "big.png"
    _canvas((6000, 3400), "RGBA").save(path)
    # VmHWM: this process's peak RSS (ru_maxrss would include the parent's, via fork + exec).
    code = f"""
import threading
from jaxmnist.serve import preprocess as P
data = open({str(path)!r}, "rb").read()
def status(key):
    line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
    return int(line.split()[1]) / 1024
before = status("VmRSS")
threads = [threading.Thread(target=P.decode_image, args=(data,)) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(status("VmHWM") - before)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    peak = float(out.stdout)
    assert peak < 400, f"4 concurrent 20 MP decodes peaked at +{peak:.0f} MiB"


def test_large_image_memory_is_returned_to_the_system():
    P.return_image_memory()
    assert Image.core.get_block_size() == P.PILLOW_BLOCK_SIZE > 32 * 2**20  # glibc's mmap max


def test_phone_mpo_jpeg_is_accepted():
    """Phones often save MPO (JPEG + extra frames): it must decode like a JPEG."""
    img = _stroke_image([(1500, 500), (1450, 2000)], size=(3000, 2500), width=150).convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="MPO", save_all=True, append_images=[img.copy()])
    g = P.decode_image(buf.getvalue())
    assert max(g.shape) <= P.WORK_SIDE
    assert _bbox(P.to_mnist(g) > 0)[0] == 20


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("blob,status,code", [
    (b"", 400, "empty"),
    (b"GIF89a but not really", 415, "not_an_image"),
    (b"%PDF-1.4\n%%EOF", 415, "not_an_image"),
    (b"x" * (P.MAX_BYTES + 1), 413, "too_large"),
    (_png_header_only(20000, 20000), 413, "too_many_pixels"),
    (_png_header_only(100000, 100000), 413, "too_many_pixels"),  # above Pillow's own limit
    (_png(Image.new("L", (1, 500), 255)), 422, "bad_dimensions"),
    (_png(Image.new("L", (5, 5), 255)), 422, "bad_dimensions"),
    (_png(Image.new("L", (1100, 100), 255)), 422, "bad_dimensions"),
    (_png(Image.new("L", (300, 200), 0)), 422, "no_ink"),
    (_png(Image.new("L", (300, 200), 255)), 422, "no_ink"),
    (_png(Image.new("L", (300, 200), 128)), 422, "no_ink"),
])
def test_bad_images_raise_clear_errors(blob, status, code):
    with pytest.raises(P.PreprocessError) as info:
        P.preprocess_bytes(blob)
    assert info.value.status_code == status and info.value.code == code
    assert info.value.to_dict() == {"error": code, "detail": info.value.message}


def test_truncated_and_corrupt_files():
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 255, (300, 300), dtype=np.uint8))
    for fmt in ("PNG", "JPEG"):
        blob = _png(noise, fmt)
        for cut in (len(blob) // 3, len(blob) // 2):
            with pytest.raises(P.PreprocessError) as info:
                P.preprocess_bytes(blob[:cut])
            assert info.value.status_code == 422 and info.value.code == "corrupt", fmt
    blob = bytearray(_png(noise))
    blob[200:260] = b"\xff" * 60  # damage the compressed stream
    with pytest.raises(P.PreprocessError) as info:
        P.preprocess_bytes(bytes(blob))
    assert info.value.status_code == 422


def test_faint_noise_alone_is_blank():
    rng = np.random.default_rng(0)
    a = np.clip(200 + rng.normal(0, 3, (300, 300)), 0, 255).astype(np.uint8)
    with pytest.raises(P.PreprocessError, match="no digit"):
        P.preprocess_bytes(_png(a, "JPEG", quality=75))


def test_decode_data_url():
    blob = _png(Image.new("L", (10, 10), 0))
    b64 = base64.b64encode(blob).decode()
    assert P.decode_data_url("data:image/png;base64," + b64) == blob
    assert P.decode_data_url(b64) == blob  # bare base64
    for bad, code in [("data:image/png;base64,@@@", "bad_base64"),
                      ("data:image/png," + b64, "bad_data_url"),
                      ("data:text/html;base64," + b64, "unsupported_media_type"),
                      ("data:image/png;base64," + "A" * (P.MAX_BYTES * 2), "too_large"),
                      (None, "bad_json")]:
        with pytest.raises(P.PreprocessError) as info:
            P.decode_data_url(bad)
        assert info.value.code == code


def test_to_mnist_accepts_arrays_and_rejects_bad_shapes():
    a = np.zeros((50, 50), np.uint8)
    a[10:40, 20:26] = 255
    assert P.to_mnist(a).shape == (28, 28)
    assert P.to_mnist(a[..., None] / 255.0).shape == (28, 28)
    with pytest.raises(P.PreprocessError):
        P.to_mnist(np.zeros((4, 4, 3)))
    with pytest.raises(P.PreprocessError):
        P.to_mnist(np.full((30, 30), np.nan))


def test_otsu_splits_two_levels():
    x = np.concatenate([np.full(500, 0.1), np.full(500, 0.8)])
    assert 0.1 < P.otsu_threshold(x) <= 0.8
