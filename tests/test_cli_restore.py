"""`trt-restore restore` and the Python API on the exported models (onnxruntime, CPU)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from trt_restore.cli import app
from trt_restore.io import read_image

DATA = Path(__file__).parent / "data"


@pytest.fixture()
def photo_folder(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(DATA / "old_w_scratch_b.png", folder / "b.png")
    shutil.copy(DATA / "old_w_scratch_c.png", folder / "c.png")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _restore(*args):
    return CliRunner().invoke(app, ["restore", *map(str, args)])


def test_batch_goes_on_past_bad_files(photo_folder, exported_models, tmp_path):
    out = tmp_path / "out"
    result = _restore(photo_folder, "-o", out, "-m", exported_models, "--threads", "2")
    assert result.exit_code == 1, result.output
    assert sorted(p.name for p in out.iterdir()) == ["b.png", "c.png"]
    assert "broken.png: not an image" in result.output and "empty.jpg: empty file" in result.output
    restored = read_image(out / "c.png")
    assert restored.shape == (336, 256, 3)  # quality mode keeps multiples of 4


@pytest.mark.parametrize("flag", ["--scratch", "--hr"])
def test_scratch_modes_with_stages(flag, exported_models, tmp_path):
    out = tmp_path / "out"
    result = _restore(DATA / "old_w_scratch_b.png", flag, "--save-stages", "-o", out, "-m", exported_models)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.iterdir()} == {"old_w_scratch_b.png", "old_w_scratch_b_mask.png",
                                               "old_w_scratch_b_painted.png"}


def test_existing_outputs_are_skipped_and_inputs_never_overwritten(exported_models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "old_w_scratch_b.png", folder / "b.png")
    before = (folder / "b.png").read_bytes()
    result = _restore(folder / "b.png", "-o", folder, "-m", exported_models)
    assert result.exit_code == 1 and "would overwrite an input" in result.output
    assert (folder / "b.png").read_bytes() == before
    out = tmp_path / "out"
    assert _restore(folder / "b.png", "-o", out, "-m", exported_models).exit_code == 0
    stamp = (out / "b.png").stat().st_mtime_ns
    result = _restore(folder / "b.png", "-o", out, "-m", exported_models)
    assert result.exit_code == 0 and "1 skipped" in result.output
    assert (out / "b.png").stat().st_mtime_ns == stamp


def test_usage_errors_exit_2(tmp_path, exported_models):
    assert _restore(tmp_path / "nothing.png", "-o", tmp_path / "o", "-m", exported_models).exit_code == 2
    assert _restore(DATA / "old_a.png", "-o", tmp_path / "o", "-m", tmp_path / "no_models").exit_code == 2
    assert _restore(DATA / "old_a.png", "-o", tmp_path / "o", "--backend", "bogus", "-m", exported_models).exit_code == 2


def test_cpu_restore_never_imports_torch(exported_models, tmp_path):
    code = (
        "import sys\n"
        "from trt_restore import Restorer\n"
        "from trt_restore.io import read_image\n"
        f"r = Restorer(models={str(exported_models)!r}, backend='ort', mode='scratch', threads=2)\n"
        f"out = r.restore(read_image({str(DATA / 'old_w_scratch_b.png')!r}))\n"
        "assert out.shape == (256, 256, 3) and out.dtype.name == 'uint8'\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'torch'], 'torch imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_python_api_is_thread_safe_and_deterministic(exported_models):
    from trt_restore import Restorer

    restorer = Restorer(models=exported_models, backend="ort", mode="quality", threads=1)
    image = read_image(DATA / "old_w_scratch_b.png")[:96, :128]
    gray = image[:, :, 0]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(restorer.restore, [image, gray, image]))
    assert np.array_equal(results[0], results[2])
    assert results[1].shape == (96, 128, 3)
    with pytest.raises(ValueError, match="too small"):
        restorer.restore(image[:8, :8])
    with pytest.raises(TypeError, match="uint8"):
        restorer.restore(image.astype(np.float32))
