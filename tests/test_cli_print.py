"""`restore` on print-shop files: a 600-dpi Adobe-RGB 16-bit TIFF scan comes back at 600 dpi,
tagged, at the photo's own size (so the same print size), in the format asked for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from typer.testing import CliRunner

from icc_support import adobe_rgb_like
from trt_restore import colour
from trt_restore.cli import app
from trt_restore.io import read_image

DATA = Path(__file__).parent / "data"
ADOBE = adobe_rgb_like()


def _scan(tmp_path) -> Path:
    """101x150 (odd sides: not a multiple of 4 or 16), 16-bit, Adobe RGB, 600 dpi."""
    base = read_image(DATA / "old_a.png")[:101, :150].astype(np.uint16) * 257
    base += np.random.default_rng(0).integers(0, 200, base.shape, dtype=np.uint16)
    path = tmp_path / "scan.tif"
    tifffile.imwrite(path, base, photometric="rgb", resolution=(600, 600), resolutionunit="INCH",
                     iccprofile=ADOBE, metadata=None)
    return path


def _restore(*args):
    return CliRunner().invoke(app, ["restore", *map(str, args)])


def test_16_bit_adobe_tiff_scan_round_trip(exported_models, tmp_path):
    scan = _scan(tmp_path)
    result = _restore(scan, "-o", tmp_path / "out", "-m", exported_models, "--threads", "2", "--no-faces",
                      "--format", "tiff")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "scan.tif") as image:
        assert image.size == (150, 101) and image.mode == "RGB"  # same pixels, same dpi: same print size
        assert tuple(image.info["dpi"]) == (600.0, 600.0)
        assert "sRGB" in colour.profile_name(image.info["icc_profile"])
    result = _restore(scan, "-o", tmp_path / "deep", "-m", exported_models, "--threads", "2", "--no-faces",
                      "--format", "tiff", "--keep-depth")
    assert result.exit_code == 0, result.output
    with tifffile.TiffFile(tmp_path / "deep" / "scan.tif") as tif:
        page = tif.pages[0]
        assert page.asarray().dtype == np.uint16 and page.shape == (101, 150, 3)
        assert page.tags["InterColorProfile"].value == ADOBE and page.tags["XResolution"].value == (600, 1)


def test_network_size_keeps_the_old_behaviour(exported_models, tmp_path):
    result = _restore(_scan(tmp_path), "-o", tmp_path / "out", "-m", exported_models, "--threads", "2",
                      "--no-faces", "--scratch", "--network-size", "--format", "jpeg", "--quality", "80")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "scan.jpg") as image:
        assert image.size == (144, 96)  # sides rounded to multiples of 16, as the original does


def test_file_option_usage_errors(exported_models, tmp_path):
    scan = _scan(tmp_path)
    for args in (["--format", "gif"], ["--format", "jpeg", "--keep-depth"], ["--keep-depth", "--network-size"],
                 ["--output-profile", "cmyk"]):
        result = _restore(scan, "-o", tmp_path / "out", "-m", exported_models, *args)
        assert result.exit_code == 2, (args, result.output)


def test_batch_writes_the_chosen_format_with_metadata(exported_models, tmp_path):
    scan = _scan(tmp_path)
    result = CliRunner().invoke(app, ["batch", str(scan), "-o", str(tmp_path / "out"), "-m", str(exported_models),
                                      "--threads", "2", "--no-faces", "--format", "jpeg", "--quality", "90"])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "out" / "scan.jpg") as image:
        assert image.size == (150, 101) and tuple(image.info["dpi"]) == (600, 600)
        assert "sRGB" in colour.profile_name(image.info["icc_profile"])
