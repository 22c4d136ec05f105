"""`trt-restore restore` and the Python API on the exported models (onnxruntime, CPU)."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
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
    assert sorted(p.name for p in out.iterdir()) == [".trt-restore-batch.lock", "b.png", "c.png", "manifest.csv",
                                                     "manifest.jsonl"]
    assert "broken.png: not an image" in result.output and "empty.jpg: empty file" in result.output
    restored = read_image(out / "c.png")
    assert restored.shape == (336, 256, 3)  # quality mode keeps multiples of 4


@pytest.mark.parametrize("flag", ["--scratch", "--hr"])
def test_scratch_modes_with_stages(flag, exported_models, tmp_path):
    out = tmp_path / "out"
    result = _restore(DATA / "old_w_scratch_b.png", flag, "--save-stages", "-o", out, "-m", exported_models)
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("*.png")} == {"old_w_scratch_b.png", "old_w_scratch_b_mask.png",
                                                   "old_w_scratch_b_painted.png"}


def test_existing_outputs_are_skipped_and_inputs_never_overwritten(exported_models, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "old_w_scratch_b.png", folder / "b.png")
    before = (folder / "b.png").read_bytes()
    result = _restore(folder / "b.png", "-o", folder, "-m", exported_models)
    assert result.exit_code == 2 and "would overwrite the input" in result.output  # refused up front
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


def _records(out: Path) -> dict[str, dict]:
    """Latest manifest record per input file name, without what differs between runs."""
    from trt_restore.output_folder import read_manifest

    keep = ("status", "width", "height", "faces_found", "faces_enhanced", "mode")
    return {Path(k).name: {f: r.get(f) for f in keep} | {"error": (r.get("error") or "").split(":")[-1]}
            for k, r in read_manifest(out / "manifest.jsonl").items()}


def test_restore_and_batch_share_one_pipeline(exported_models, tmp_path):
    """Same inputs and options (scratch, a hand-made mask, --save-stages, a bad file in the middle):
    `restore` and `batch` write the same files with the same pixels and record the same facts;
    a rerun of `restore` skips what is done and keeps the first run's facts."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(DATA / "old_w_scratch_b.png", folder / "b.png")
    (folder / "broken.png").write_bytes(b"not a png")
    shutil.copy(DATA / "old_w_scratch_c.png", folder / "c.png")
    masks = tmp_path / "masks"
    masks.mkdir()
    hand_made = np.zeros(read_image(folder / "c.png").shape[:2], np.uint8)
    hand_made[100:104, :] = 255  # one horizontal scratch
    Image.fromarray(hand_made).save(masks / "c.png")
    common = ["--scratch", "--masks", masks, "--save-stages", "--no-faces", "-m", exported_models,
              "--threads", "2", "--precision", "fp32", "--face-detector", "auto"]
    results = {}
    for command in ("restore", "batch"):
        results[command] = CliRunner().invoke(app, [command, str(folder), "-o", str(tmp_path / command),
                                                    *map(str, common)])
        assert results[command].exit_code == 1, results[command].output  # broken.png failed, the rest ran
        assert "broken.png: not an image" in results[command].output
    names = {command: sorted(p.name for p in (tmp_path / command).iterdir()) for command in results}
    assert names["restore"] == names["batch"]
    assert {"b.png", "b_mask.png", "b_painted.png", "c.png", "c_mask.png", "manifest.csv"} <= set(names["batch"])
    for name in names["batch"]:
        if name.endswith(".png"):
            assert np.array_equal(read_image(tmp_path / "restore" / name), read_image(tmp_path / "batch" / name)), name
    np.testing.assert_array_equal(read_image(tmp_path / "batch" / "c_mask.png")[:, :, 0], hand_made)  # mask used
    facts = _records(tmp_path / "restore")
    assert facts == _records(tmp_path / "batch")
    assert facts["c.png"]["status"] == "ok" and (facts["c.png"]["width"], facts["c.png"]["height"]) == (256, 336)
    assert facts["broken.png"]["status"] == "failed"

    rerun = CliRunner().invoke(app, ["restore", str(folder), "-o", str(tmp_path / "restore"), *map(str, common)])
    assert rerun.exit_code == 1 and "0 restored, 2 skipped" in rerun.output, rerun.output
    assert _records(tmp_path / "restore") == facts  # the first run's facts, not "skipped" without a size
    with open(tmp_path / "restore" / "manifest.csv", newline="") as handle:
        rows = {Path(r["input"]).name: r for r in csv.DictReader(handle)}
    assert (rows["b.png"]["status"], rows["c.png"]["width"]) == ("ok", "256")


@pytest.mark.parametrize("command", ["restore", "batch"])
def test_every_argument_is_checked_before_the_first_photo(command, tmp_path):
    """Both commands take the same options and refuse the same bad ones, naming them, before
    any photo or model is loaded (exit code 2)."""
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32)).save(photo)
    (tmp_path / "file").write_text("not a folder")
    cases = {("--masks", str(tmp_path / "no_masks")): "no_masks: no such folder",
             ("--precision", "fp64"): "--precision",
             ("--face-detector", "opencv"): "--face-detector",
             ("--max-memory", "1K"): "--max-memory",
             ("--tile", "foo"): "--tile",
             ("-o", str(tmp_path / "file")): "exists and is not a folder"}
    for args, expected in cases.items():
        output = ["-o", str(tmp_path / "out")] if args[0] != "-o" else []
        result = CliRunner().invoke(app, [command, str(photo), *output, "-m", str(tmp_path / "no_models"), *args])
        assert result.exit_code == 2 and expected in result.output, (args, result.output)
        assert not (tmp_path / "out").exists()


def test_one_restorer_serves_every_mode(exported_models):
    """A quality-mode Restorer restores scratch and HR photos per call, as a Restorer made for
    those modes does, on one backend; options are parsed into typed values when it is made."""
    from trt_restore import Restorer
    from trt_restore.run_options import TilePolicy

    image = read_image(DATA / "old_w_scratch_b.png")[:64, :96]
    shared = Restorer(models=exported_models, backend="ort", mode="quality", threads=2, faces=False)
    assert shared.tile == TilePolicy("auto") and shared.max_memory == 4 << 30
    for mode in ("scratch", "hr"):
        alone = Restorer(models=exported_models, backend="ort", mode=mode, threads=2, faces=False)
        np.testing.assert_array_equal(shared.restore(image, mode=mode), alone.restore(image))
    assert {"mapping_scratch_head", "mapping_hr_head"} <= shared.backend.loaded
    assert "mapping_quality" not in shared.backend.loaded  # sessions load when a photo needs them
    shared.restore(image)
    assert "mapping_quality" in shared.backend.loaded
    for bad in ({"tile": "foo"}, {"max_memory": "1K"}, {"tile": 4}):
        with pytest.raises(ValueError):
            Restorer(models=exported_models, backend="ort", faces=False, **bad)
