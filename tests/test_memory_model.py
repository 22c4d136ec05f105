"""The memory model against measurements, and the stages that span the whole photo kept to a
few bytes a pixel (numpy's own allocations, traced)."""
from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from trt_restore.memory_model import MemoryBudgetError, check_budget, stage_peaks
from trt_restore.preprocess import paint_holes, to_gray, to_network_input
from trt_restore.resize import resize_bilinear, resize_nearest
from trt_restore.scratch_detection import THRESHOLD, detect_scratches
from trt_restore.tiling.plan import plan_tiling, untiled_peak_estimate

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "stage_memory.json"


def _traced_peak(run) -> tuple[int, object]:
    tracemalloc.start()
    try:
        value = run()
        return tracemalloc.get_traced_memory()[1], value
    finally:
        tracemalloc.stop()


def test_untiled_estimate_covers_every_measured_global_run():
    """--tile auto must tile before the budget is crossed, in every mode (HR was estimated
    with scratch mode's base and ran 0.4 GB over)."""
    rows = [r for r in json.loads(RESULTS.read_text())["rows"] if r["stage"].startswith("global-") and "error" not in r]
    assert {r["stage"] for r in rows} == {"global-quality", "global-scratch", "global-hr"}
    for r in rows:
        estimate = untiled_peak_estimate(r["stage"].split("-", 1)[1], *r["size"])
        assert r["peak_rss_bytes"] <= estimate <= 1.6 * r["peak_rss_bytes"], r


def test_the_issues_hr_photo_tiles_under_the_default_budget():
    """1204x645 in HR peaked at 4.21 GiB under 4G while estimated at 3.58 GB: it must tile."""
    assert plan_tiling("hr", 645, 1204, "auto", "4G") is not None
    assert plan_tiling("scratch", 512, 512, "auto", "4G") is None


def test_bounded_path_fits_what_tiling_ran_and_refuses_what_it_cannot_hold():
    """tiling.md restored 12 MP in HR tiled at 2.08 GiB under 4G: accepted. 40 MP keeps
    ~5 GB of full-photo arrays even tiled: refused under 4G (one line, with the budget that
    fits), accepted under that budget."""
    check_budget("hr", 3000, 4000, "4G")
    peaks = stage_peaks("hr", 5477, 7303, tiled=True)
    assert set(peaks) == {"decode", "detection", "hole painting", "global networks (tiled)", "encode"}
    with pytest.raises(MemoryBudgetError) as refused:
        check_budget("hr", 5477, 7303, "4G")
    message = str(refused.value)
    assert "\n" not in message and "7303x5477" in message and "global networks (tiled)" in message
    suggested = message.split("use --max-memory ")[1].split()[0]
    check_budget("hr", 5477, 7303, suggested)


def test_hole_painting_keeps_no_float64_frame():
    """The output (3 bytes a pixel) and row blocks; the whole-frame float64 form took ~50."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
    mask = (rng.random((2000, 2000)) < 0.1).astype(np.uint8) * 255
    peak, painted = _traced_peak(lambda: paint_holes(image, mask))
    assert peak < 5 * image.shape[0] * image.shape[1], f"{peak / 4e6:.1f} bytes per pixel"
    m = mask[:, :, None].astype(np.float64) / 255.0
    assert np.array_equal(painted, (image * (1.0 - m) + m * 255.0).astype(np.uint8))


class _SigmoidOfGray:
    def run(self, graph, inputs):
        return {"prob": 1.0 / (1.0 + np.exp(-4.0 * inputs["gray"]))}


def test_detection_keeps_only_a_gray_input_and_a_mask_at_photo_size():
    """Gray float input (4 bytes a pixel) + gray + mask; thresholding before the nearest
    upsampling gives the same mask as upsampling the probability (~20 bytes a pixel)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (1504, 2000, 3), dtype=np.uint8)
    peak, (mask, prob) = _traced_peak(lambda: detect_scratches(_SigmoidOfGray(), image))
    assert peak < 8 * image.shape[0] * image.shape[1], f"{peak / image.shape[0] / image.shape[1]:.1f} bytes per pixel"
    small = resize_bilinear(to_network_input(to_gray(image)), *prob.shape[2:])
    assert np.array_equal(prob, _SigmoidOfGray().run("detection", {"gray": small})["prob"])
    expected = (resize_nearest(prob, *image.shape[:2])[0, 0] >= THRESHOLD).astype(np.uint8) * 255
    assert np.array_equal(mask, expected)


def test_stage_memory_benchmark_writes_json_and_markdown(tmp_path):
    """Smoke run of the measurement script on the stages that need no models, at quarter size."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "trt_restore.benchmarks.stage_memory", "--models", str(tmp_path), "--quick",
               "--only", "paint,encode", "--out", str(tmp_path)]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    report = json.loads((tmp_path / "stage_memory.json").read_text())
    assert [r["stage"] for r in report["rows"]] == ["paint", "paint", "encode", "encode"]
    assert all(r["peak_rss_bytes"] >= r["rss_before_bytes"] > 0 for r in report["rows"])
    assert set(report["fits"]) == {"paint", "encode"}
    assert "| paint |" in (tmp_path / "stage_memory.md").read_text()


def test_faces_run_one_at_a_time_and_count_in_the_budget():
    """Four 512 px faces in one generator run peaked at 4.1 GB (one: 1.5 GB)."""
    from trt_restore.faces.generator import FaceGenerator

    class Recording:
        batches: list[int] = []

        def run(self, graph, inputs):
            self.batches.append(len(inputs["face"]))
            return {"output": np.zeros_like(inputs["face"])}

    backend = Recording()
    FaceGenerator(backend, 256)(np.zeros((3, 256, 256, 3), np.uint8))
    assert backend.batches == [1, 1, 1]
    check_budget("hr", 1000, 1500, "2G")
    with pytest.raises(MemoryBudgetError, match="faces"):
        check_budget("hr", 1000, 1500, "2G", faces=True)
