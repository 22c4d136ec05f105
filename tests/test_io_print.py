"""What a print shop needs survives a restoration: DPI, ICC profile (converted to sRGB for
the networks), EXIF, 16-bit depth; only whitelisted formats are opened."""
from __future__ import annotations

import io

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms

from icc_support import adobe_rgb_like, gray_gamma_22
from trt_restore import colour
from trt_restore.io import ImageError, PhotoInfo, WriteOptions, _encode_png16, read_photo, write_image

RNG = np.random.default_rng(1)
RGB = RNG.integers(40, 200, (24, 36, 3), dtype=np.uint8)  # mostly inside both gamuts
ADOBE = adobe_rgb_like()
GRAY = gray_gamma_22()
DATE = "1961:07:14 10:00:00"


def _exif(orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Acme Scanners"
    exif[0x0112] = orientation
    exif.get_ifd(0x8769)[0x9003] = DATE
    return exif.tobytes()


def _scan(tmp_path, fmt: str, orientation: int = 6):
    path = tmp_path / f"scan.{fmt.lower()}"
    Image.fromarray(RGB).save(path, format=fmt, dpi=(600, 600), icc_profile=ADOBE, exif=_exif(orientation),
                              **({"quality": 100, "subsampling": 0} if fmt == "JPEG" else {"lossless": True} if fmt == "WEBP" else {}))
    return path


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "WEBP"])
def test_input_metadata_is_read_and_colour_converted(tmp_path, fmt):
    photo = read_photo(_scan(tmp_path, fmt))
    info = photo.info
    assert photo.pixels.shape == (36, 24, 3)  # orientation 6 applied
    assert info.format == fmt and info.converted and info.profile_name.startswith("Adobe RGB")
    assert info.dpi == (None if fmt == "WEBP" else (600.0, 600.0))
    exif = Image.Exif()
    exif.load(info.exif)
    assert exif[0x010F] == "Acme Scanners" and exif[0x0112] == 1 and exif.get_ifd(0x8769)[0x9003] == DATE
    upright = np.rot90(RGB, -1)
    assert np.abs(photo.pixels.astype(int) - upright).max() > 3  # Adobe RGB values differ from sRGB ones
    expected = np.asarray(colour.to_srgb(Image.fromarray(np.ascontiguousarray(upright)), ADOBE))
    tolerance = 0 if fmt != "JPEG" else 24  # lossy inputs (noise pixels)
    assert np.abs(photo.pixels.astype(int) - expected).max() <= tolerance


@pytest.mark.parametrize("out", ["png", "jpeg", "tiff"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_metadata_survives_into_every_output_format(tmp_path, fmt, out):
    photo = read_photo(_scan(tmp_path, fmt))
    target = write_image(tmp_path / f"restored.{out}", photo.pixels, photo.info, WriteOptions(format=out))
    with Image.open(target) as image:
        assert image.format == {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF"}[out]
        assert tuple(round(v) for v in image.info["dpi"]) == (600, 600)
        assert "sRGB" in colour.profile_name(image.info["icc_profile"])
        exif = image.getexif()
        assert exif[0x010F] == "Acme Scanners" and exif.get(0x0112, 1) == 1
        assert exif.get_ifd(0x8769)[0x9003] == DATE
    again = read_photo(target)  # no second rotation, no second colour conversion
    assert again.pixels.shape == photo.pixels.shape and not again.info.converted
    error = np.abs(again.pixels.astype(int) - photo.pixels)
    assert error.max() == 0 if out != "jpeg" else error.mean() < 4  # JPEG q95 on noise


def test_convert_back_to_the_input_profile(tmp_path):
    muted = RGB // 3 + 90  # inside the sRGB gamut: the round trip is then (nearly) exact
    path = tmp_path / "muted.png"
    Image.fromarray(muted).save(path, icc_profile=ADOBE)
    photo = read_photo(path)
    target = write_image(tmp_path / "back.tif", photo.pixels, photo.info, WriteOptions(profile="input"))
    with Image.open(target) as image:
        assert image.info["icc_profile"] == ADOBE
        assert np.abs(np.asarray(image).astype(int) - muted).max() <= 2  # Adobe values again
    assert np.abs(read_photo(target).pixels.astype(int) - photo.pixels).max() <= 2


def test_gray_profile(tmp_path):
    gray = RGB[:, :, 1]
    path = tmp_path / "gray.png"
    Image.fromarray(gray, "L").save(path, icc_profile=GRAY, dpi=(300, 300))
    photo = read_photo(path)
    assert photo.info.converted and photo.info.profile_name.startswith("Gray gamma")
    assert np.array_equal(photo.pixels[:, :, 0], photo.pixels[:, :, 2])
    back = write_image(tmp_path / "gray_out.png", photo.pixels, photo.info, WriteOptions(profile="input"))
    with Image.open(back) as image:
        assert image.mode == "L" and image.info["icc_profile"] == GRAY
        assert np.abs(np.asarray(image).astype(int) - gray).max() <= 1


def test_mismatched_profile_is_ignored_with_a_note(tmp_path):
    path = tmp_path / "rgb_gray_profile.png"
    Image.fromarray(RGB).save(path, icc_profile=GRAY)
    photo = read_photo(path)
    assert np.array_equal(photo.pixels, RGB) and not photo.info.converted and "ignored" in photo.info.notes[0]


def _tiff16(path, data, icc=ADOBE, orientation=1):
    tifffile.imwrite(path, data, photometric="rgb", resolution=(600, 600), resolutionunit="INCH",
                     iccprofile=icc, extratags=[(271, "s", 0, "Acme Scanners", True), (274, "H", 1, orientation, True)],
                     metadata=None)
    return path


def test_16_bit_tiff_keep_depth_with_adobe_profile(tmp_path):
    high = RNG.integers(12000, 50000, (32, 48, 3), dtype=np.uint16)
    photo = read_photo(_tiff16(tmp_path / "scan16.tif", high), keep_high=True)
    assert photo.info.bits == 16 and photo.info.converted and np.array_equal(photo.info.high, high)
    restored = photo.pixels.copy()
    restored[:8, :8] = 255 - restored[:8, :8]  # the networks changed this corner only
    target = write_image(tmp_path / "out.tif", restored, photo.info, WriteOptions(format="tiff", keep_depth=True))
    with tifffile.TiffFile(target) as tif:
        page = tif.pages[0]
        out = page.asarray()
        assert out.dtype == np.uint16 and out.shape == high.shape
        assert page.tags["InterColorProfile"].value == ADOBE  # 16-bit values stay in the input's space
        assert page.tags["XResolution"].value == (600, 1) and page.tags["Make"].value == "Acme Scanners"
    assert np.array_equal(out[8:], high[8:]) and np.array_equal(out[:8, 8:], high[:8, 8:])
    corner = np.asarray(colour.from_srgb(Image.fromarray(np.ascontiguousarray(restored[:8, :8])), ADOBE))
    assert np.array_equal(out[:8, :8], corner.astype(np.uint16) * 257)
    print_size = [s / 600 for s in out.shape[:2]]
    assert print_size == [32 / 600, 48 / 600]


def test_16_bit_png_keep_depth_and_orientation(tmp_path):
    high = RNG.integers(0, 65536, (20, 30, 3), dtype=np.uint16)
    path = tmp_path / "scan16.png"
    with open(path, "wb") as handle:
        _encode_png16(handle, high, PhotoInfo(dpi=(600.0, 600.0), exif=_exif(orientation=6)),
                      colour.srgb_profile_bytes())
    photo = read_photo(path, keep_high=True)
    assert photo.info.bits == 16 and not photo.info.converted and photo.info.dpi == (600.0, 600.0)
    assert photo.info.high.shape == (30, 20, 3) and np.array_equal(photo.info.high, np.rot90(high, -1))
    assert np.array_equal(photo.pixels, np.rint(photo.info.high / 257.0).astype(np.uint8))
    restored = photo.pixels.copy()
    restored[0, 0] = np.clip(restored[0, 0].astype(int) + 3, 0, 255)  # beyond the threshold of 2
    restored[1, 1] = np.clip(restored[1, 1].astype(int) + 1, 0, 255)  # within it
    target = write_image(tmp_path / "out.png", restored, photo.info, WriteOptions(keep_depth=True))
    out = read_photo(target, keep_high=True)
    assert out.info.dpi == (600.0, 600.0) and out.pixels.shape == (30, 20, 3)
    expected = photo.info.high.copy()
    expected[0, 0] = restored[0, 0].astype(np.uint16) * 257
    assert np.array_equal(out.info.high, expected)


def test_keep_depth_refuses_jpeg_and_bad_options(tmp_path):
    with pytest.raises(ValueError, match="png or tiff"):
        WriteOptions(format="jpeg", keep_depth=True).validate()
    with pytest.raises(ValueError, match="quality"):
        WriteOptions(quality=0).validate()
    with pytest.raises(ValueError, match="format"):
        WriteOptions(format="gif").validate()


def test_jpeg_quality_option(tmp_path):
    big = np.asarray(Image.fromarray(RGB).resize((360, 240)))
    low = write_image(tmp_path / "q30.jpg", big, PhotoInfo(), WriteOptions(quality=30)).stat().st_size
    high = write_image(tmp_path / "q95.jpg", big, PhotoInfo(), WriteOptions(quality=95)).stat().st_size
    assert low < high


def test_fully_transparent_pixels_become_white(tmp_path):
    rgba = np.dstack([RGB, np.full(RGB.shape[:2], 255, np.uint8)])
    rgba[:4, :4] = (10, 20, 30, 0)
    rgba[4:6, :4, 3] = 128  # partly transparent: colour kept
    path = tmp_path / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(path)
    pixels = read_photo(path).pixels
    assert (pixels[:4, :4] == 255).all() and np.array_equal(pixels[4:], RGB[4:])


def test_eps_never_reaches_ghostscript(tmp_path):
    path = tmp_path / "evil.png"  # the suffix lies; PIL would identify EPS by content
    path.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")
    with pytest.raises(ImageError, match="not an image file") as info:
        read_photo(path)
    assert str(path) in str(info.value)


def test_plain_write_is_unchanged():
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="PNG")
    assert "icc_profile" not in Image.open(buffer).info
