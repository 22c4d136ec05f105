"""Exact tiling: strip-by-strip execution equals the untiled computation."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from trt_restore import attention
from trt_restore.backends import create_backend
from trt_restore.global_restoration import GlobalRestorer
from trt_restore.io import read_image
from trt_restore.tiling.executor import ExecutorConfig, Frame, HostStrips
from trt_restore.tiling.patch_match import patch_match_frames
from trt_restore.tiling.plan import parse_size, plan_tiling
from trt_restore.tiling.runner import TiledGlobalRestorer
from trt_restore.tiling.store import FrameStore

DATA = Path(__file__).parent / "data"


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


@pytest.fixture(scope="module")
def backend(exported_models):
    return create_backend("ort", exported_models, threads=2)


# sizes deliberately not multiples of the strip height; HR also not multiples of 32
CASES = [("quality", "old_a.png", (443, 293)), ("scratch", "old_w_scratch_b.png", (249, 251)),
         ("hr", "old_w_scratch_c.png", (329, 251))]


RUNS = [(*CASES[0], False), (*CASES[1], True), (*CASES[2], True), (*CASES[2], False)]


@pytest.mark.parametrize("mode, name, size, spill", RUNS, ids=["quality-ram", "scratch-disk", "hr-disk", "hr-ram"])
def test_tiled_equals_untiled(mode, name, size, spill, backend):
    image = read_image(DATA / name)[: size[0], : size[1]]
    mask = None
    if mode != "quality":
        mask = np.zeros(image.shape[:2], np.uint8)
        cv2.line(mask, (10, 20), (200, 180), 255, 3)
        cv2.line(mask, (0, 100), (250, 90), 255, 2)
    untiled = GlobalRestorer(backend, mode).restore(image, mask=mask)
    config = ExecutorConfig(strip_rows=6, ram_map_bytes=0 if spill else 1 << 40)
    tiled = TiledGlobalRestorer(backend, mode, config).restore(image, mask=mask)
    errors = {k: float(np.abs(tiled.tensors[k] - untiled.tensors[k]).max()) for k in ("latent", "mapped")}
    value = psnr(tiled.restored, untiled.restored)
    print(f"{mode} {image.shape[1]}x{image.shape[0]} spill={spill}: PSNR {value:.1f} dB, {errors}")
    assert value >= 45.0
    assert all(e <= 1e-3 for e in errors.values()), errors


def test_statistics_merge_matches_numpy():
    rng = np.random.default_rng(0)
    full = (3 + 5 * rng.standard_normal((4, 37, 11))).astype(np.float32)
    frame = Frame(FrameStore(4, 37, 11))
    for start in range(0, 37, 6):
        frame.accumulate(full[:, start:start + 6])
    values = full.astype(np.float64)
    assert np.allclose(frame.stat_mean, values.mean(axis=(1, 2)), rtol=1e-12)
    assert np.allclose(frame.stat_m2 / frame.count, values.var(axis=(1, 2)), rtol=1e-7)


@pytest.mark.parametrize("on_disk", [False, True])
def test_store_round_trip(on_disk):
    rng = np.random.default_rng(1)
    data = rng.standard_normal((5, 13, 7)).astype(np.float32)
    store = FrameStore(5, 13, 7, on_disk=on_disk)
    store.write(0, data[:, :4])
    store.write(4, data[:, 4:])
    assert np.array_equal(store.read(3, 11), data[:, 3:11])
    store.close()


@pytest.mark.parametrize("pad", ["reflect", "zero"])
def test_padded_strip_reads(pad):
    rng = np.random.default_rng(2)
    data = rng.standard_normal((2, 9, 5)).astype(np.float32)
    frame = Frame(FrameStore(2, 9, 5))
    frame.store.write(0, data)
    frame.mean, frame.inv_std, frame.relu = np.float32([0.5, -1]), np.float32([2, 0.5]), True
    effective = np.maximum((data - frame.mean[:, None, None]) * frame.inv_std[:, None, None], 0)
    mode = "reflect" if pad == "reflect" else "constant"
    padded = np.pad(effective, ((0, 0), (3, 3), (0, 0)), mode=mode)
    for start, stop in [(-3, 4), (5, 12), (-3, 12), (2, 6)]:
        got = HostStrips.read_padded(frame, start, stop, pad)
        assert np.allclose(got, padded[:, start + 3:stop + 3]), (start, stop)


@pytest.mark.parametrize("shape", [(16, 24), (28, 44), (21, 13)])
@pytest.mark.parametrize("size", [8, 4, 2])
def test_streamed_patch_match_equals_in_memory(size, shape):
    """Also at sides that are not multiples of the patch (margins 0 when there are holes)."""
    h, w = shape
    rng = np.random.default_rng(size + h)
    x = rng.standard_normal((6, h, w)).astype(np.float32)
    for hole in ((rng.random((h, w)) > 0.5).astype(np.float32), np.zeros((h, w), np.float32),
                 np.ones((h, w), np.float32)):
        source = Frame(FrameStore(6, h, w, on_disk=True))
        source.store.write(0, x)
        target = Frame(FrameStore(6, h, w))
        target.store.write(0, np.full((6, h, w), np.nan, np.float32))  # every value must be written
        patch_match_frames(source, target, hole, size, query_chunk=3)
        got = target.store.read(0, h)
        assert np.array_equal(got, attention.patch_match(x, hole, size))


def test_plan_policy():
    assert parse_size("4G") == 4 << 30 and parse_size("1.5G") == int(1.5 * (1 << 30)) and parse_size("512M") == 512 << 20
    with pytest.raises(ValueError):
        parse_size("lots")
    assert plan_tiling("quality", 512, 512, "auto", "4G") is None
    assert plan_tiling("quality", 3000, 4000, "auto", "4G") is not None
    assert plan_tiling("quality", 3000, 4000, "off", "4G") is None
    assert plan_tiling("quality", 256, 256, "64", "4G").strip_rows == 16
    with pytest.raises(ValueError):
        plan_tiling("quality", 256, 256, "4", "4G")


def test_untiled_estimate_covers_every_measured_untiled_run():
    """--tile auto must tile before the budget is crossed: the estimate may not be below any
    untiled peak RSS the tiling benchmark recorded (nor absurdly above it)."""
    import json

    from trt_restore.tiling.plan import untiled_peak_estimate

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "tiling.json"
    runs = [r for r in json.loads(results.read_text())["runs"] if not r["tiled"] and "error" not in r]
    assert runs
    for r in runs:
        height, width = r["size"] if "size" in r else (int((r["megapixels"] * 1e6 * 3 / 4) ** 0.5),) * 2
        estimate = untiled_peak_estimate(r["mode"], height, width)
        assert r["peak_rss_bytes"] <= estimate <= 1.6 * r["peak_rss_bytes"], (r["mode"], r["megapixels"])
