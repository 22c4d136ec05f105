"""Image reading handles every common photo format variant and names the file on error."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from trt_restore.io import ImageError, read_image, write_image

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (12, 20, 3), dtype=np.uint8)


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_rgb_png_roundtrip(tmp_path):
    path = write_image(tmp_path / "x.png", RGB)
    assert np.array_equal(read_image(path), RGB)


def test_gray_is_replicated(tmp_path):
    gray = RGB[:, :, 0]
    out = read_image(_save(tmp_path, "g.png", Image.fromarray(gray)))
    assert out.shape == (12, 20, 3) and np.array_equal(out[:, :, 1], gray)


def test_alpha_is_dropped(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 7, np.uint8)])
    out = read_image(_save(tmp_path, "a.png", Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(out, RGB)


def test_16_bit_gray_is_scaled(tmp_path):
    data = (RGB[:, :, 0].astype(np.uint16) * 257)
    out = read_image(_save(tmp_path, "d.png", Image.fromarray(data)))
    assert out.dtype == np.uint8 and np.array_equal(out[:, :, 0], RGB[:, :, 0])


def test_cmyk_jpeg(tmp_path):
    path = _save(tmp_path, "c.jpg", Image.fromarray(RGB).convert("CMYK"), quality=95)
    out = read_image(path)
    assert out.shape == (12, 20, 3)


def test_exif_orientation_applied(tmp_path):
    image = Image.fromarray(RGB)
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = read_image(_save(tmp_path, "r.jpg", image, exif=exif, quality=100))
    assert out.shape == (20, 12, 3)


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"not an image at all", "not an image")])
def test_bad_files_named(tmp_path, content, reason):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_truncated_png(tmp_path):
    good = write_image(tmp_path / "t.png", RNG.integers(0, 256, (200, 200, 3), dtype=np.uint8)).read_bytes()
    path = tmp_path / "trunc.png"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageError, match="corrupt or truncated") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_pixel_bomb_refused(tmp_path, monkeypatch):
    monkeypatch.setattr("trt_restore.io.MAX_PIXELS", 100)
    path = write_image(tmp_path / "big.png", RGB)
    with pytest.raises(ImageError, match="limit"):
        read_image(path)


def test_write_is_atomic_and_leaves_no_temp(tmp_path):
    target = write_image(tmp_path / "out" / "x.png", RGB)
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]
    assert (target.stat().st_mode & 0o777) != 0o600


def test_16_bit_gray_rounds_every_value_as_the_float_formula(tmp_path):
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    out = read_image(_save(tmp_path, "all.png", Image.fromarray(values)))
    assert np.array_equal(out[:, :, 0], np.rint(values * (255.0 / 65535.0)).astype(np.uint8))


def _numpy_peak_bytes(read) -> int:
    """Peak of numpy's (traced) allocations while `read` runs: the full-frame temporaries."""
    import tracemalloc

    tracemalloc.start()
    try:
        read()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_16_bit_gray_decodes_without_float64_frames(tmp_path):
    """The PIL buffer (2 bytes a pixel), the gray and RGB results (1 + 3) and row blocks; one
    float64 copy alone is 8 bytes a pixel (the old path made three: 24)."""
    side = 1500
    ramp = (np.arange(side, dtype=np.uint32) * 65535 // (side - 1)).astype(np.uint16)
    path = _save(tmp_path, "ramp16.png", Image.fromarray(np.ascontiguousarray(np.tile(ramp, (side, 1)))))
    peak = _numpy_peak_bytes(lambda: read_image(path))
    assert peak < 8 * side * side, f"{peak / side / side:.1f} bytes per pixel"


def test_16_bit_rgb_kept_depth_without_float64_frames(tmp_path):
    """keep_high holds OpenCV's 16-bit frame (6 bytes a pixel), the 16-bit copy and the 8-bit
    results (~17 in all); one float64 RGB frame alone is 24 (the old rint(high / 257): 57)."""
    import cv2

    from trt_restore.io import read_photo

    side = 1000
    rgb = np.random.default_rng(1).integers(0, 65536, (side, side, 3), dtype=np.uint16)
    path = tmp_path / "rgb16.png"
    cv2.imwrite(str(path), rgb)
    photo = None

    def read():
        nonlocal photo
        photo = read_photo(path, keep_high=True)

    peak = _numpy_peak_bytes(read)
    assert peak < 24 * side * side, f"{peak / side / side:.1f} bytes per pixel"
    assert np.array_equal(photo.info.high, rgb[:, :, ::-1])
    assert np.array_equal(photo.pixels, np.rint(rgb[:, :, ::-1] / 257.0).astype(np.uint8))
