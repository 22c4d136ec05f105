"""Exact tiling under TensorRT (issue 14): per-layer engines with strip profiles, the backend's
run_layer, and the tiled and untiled pipelines end to end on stand-ins of TensorRT and
cuda-python whose engines compute the real exported graphs (engines_support.OnnxEngine)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines_support import H100, FakeCudart, FakeKernels, FakeTrt, add_layers, models_dir
from trt_restore.engines.builder import BuildOptions, build_engines
from trt_restore.engines.cache import EngineCache
from trt_restore.engines.profiles import layer_profile

LAYERS = ("VAE_A_quality/encoder.1", "mapping_quality/model.0")


@pytest.fixture
def models(tmp_path):
    return add_layers(models_dir(tmp_path / "models"))


@pytest.fixture
def gpu_kernels(monkeypatch):
    from trt_restore.engines.kernels import launch

    kernels = FakeKernels()
    monkeypatch.setattr(launch, "AotKernels", lambda major, minor: kernels)
    return kernels


@pytest.fixture(scope="module")
def stand_in_engines(exported_models, tmp_path_factory):
    """(FakeTrt whose engines run their ONNX with onnxruntime, engine cache) for every exported
    graph, per-layer strip graph and op graph: built once for this module."""
    trt = FakeTrt("10.3.0", run_onnx=True)
    engines = tmp_path_factory.mktemp("engines")
    report = build_engines(BuildOptions(models_dir=exported_models, engines_dir=engines, max_size=(128, 128),
                                        opt_size=(64, 64), strip_rows=8, tiled_max_side=256),
                           trt=trt, gpu=H100, on_event=lambda line: None)
    assert not report.failed, report.failed
    return trt, engines


def _build(models, trt, **kw):
    events = []
    options = dict(max_size=(256, 256), opt_size=(128, 128), **kw)
    return build_engines(BuildOptions(models_dir=models, **options), trt=trt, gpu=H100, on_event=events.append), events


def test_build_engines_builds_the_per_layer_graphs_with_strip_profiles(models):
    trt = FakeTrt("10.3.0")
    report, _ = _build(models, trt, strip_rows=16, tiled_max_side=1024)
    assert set(LAYERS) <= set(report.built) and not report.failed
    by_source = {Path(b["source"]).name.split(".")[0] + "." + Path(b["source"]).name.split(".")[1]: b
                 for b in trt.builds}
    build = by_source["VAE_A_quality__encoder.1"]  # its wrapped strip graph (engines/strip_graphs.py)
    assert Path(build["source"]).parent == models / "engines" / "strip_graphs"
    want = layer_profile("VAE_A_quality/encoder.1", 1024, 16, 128).to_json()["x"]
    assert build["profile"]["x"] == [[want["min"], want["opt"], want["max"]]]
    assert want["max"] == [1, 3, 16 + 6, 1024] and want["min"] == [1, 3, 7, 8]  # 7x7: 3 halo rows each side
    assert layer_profile("mapping_quality/model.0", 1024, 16).to_json()["x"]["max"] == [1, 64, 18, 256]
    records = {r["graph"]: r for _, r in EngineCache(models / "engines").entries()}
    encoder = records["VAE_A_quality/encoder.1"]
    assert encoder["kind"] == "layer" and encoder["strip_rows"] == 16
    assert all("/" not in path.name for path in report.engines.values())
    again, _ = _build(models, trt, strip_rows=16, tiled_max_side=1024)
    assert set(LAYERS) <= set(again.reused) and not again.built  # cached like the graphs
    assert set(LAYERS).isdisjoint(_build(models, FakeTrt("10.3.0"), layers=False)[0].built)
    assert set(LAYERS).isdisjoint(_build(models, FakeTrt("10.3.0"), graphs=("mapping_quality",))[0].built)


def test_layers_under_int8_are_built_fp16_and_keyed_int8(models):
    manifest = json.loads((models / "models.json").read_text())
    for entry in manifest["graphs"].values():
        entry["qdq_file"] = entry["file"]
    (models / "models.json").write_text(json.dumps(manifest))
    trt = FakeTrt("10.3.0")
    report, _ = _build(models, trt, precision="int8")
    assert set(LAYERS) <= set(report.built)
    records = {r["graph"]: r for _, r in EngineCache(models / "engines").entries()}
    assert records["mapping_quality/model.0"]["precision"] == "int8"
    assert records["mapping_quality/model.0"]["built_precision"] == "fp16"
    layer_build = next(b for b in trt.builds if Path(b["source"]).name.startswith("mapping_quality__model.0."))
    assert layer_build["flags"] == ["FP16"]


@pytest.mark.parametrize("program", ["vae_a_quality_encoder", "vae_b_quality_decoder", "mapping_hr_step1"])
@pytest.mark.parametrize("size", [(40, 56), (112, 24)])
def test_every_strip_the_executor_feeds_fits_the_layer_profile(program, size):
    """The profiles and the executor share strip_window: whatever the width, the strips are
    capped at the engines' strip rows and lie inside [min, max] of every layer's profile."""
    from trt_restore.tiling.executor import ExecutorConfig, TiledExecutor
    from trt_restore.tiling.programs import PROGRAMS, Conv

    height, width = size
    ops = PROGRAMS[program]()
    convs = {op.layer: op for op in ops if isinstance(op, Conv)}
    fed = []

    def run_layer(layer, x):
        profile = layer_profile(layer, max(size), 8)
        assert profile.covers({"x": x.shape}), (layer, x.shape, profile.to_json())
        fed.append(x.shape[2])
        return _conv_output(convs[layer], x)

    executor = TiledExecutor(run_layer, ExecutorConfig(strip_bytes=1 << 40, max_strip_rows=8))
    defined = {t for op in ops for t in [getattr(op, "target", None)] if t}
    inputs = {name for op in ops if isinstance(op, Conv) for name in op.sources} - defined
    frames = {}
    for name in inputs | ({"latent"} if program == "vae_b_quality_decoder" else set()):
        channels = 3 if name == "image" else 1 if name == "hole" else 512 if program.startswith("mapping") else 64
        scale = 1 if name == "image" else 4
        frames[name] = executor.frame_from_array(np.ones((1, channels, height // scale, width // scale), np.float32))
    executor.run(ops, frames)
    assert fed and max(fed) <= 8 + 6 * 2  # capped: at most 8 output rows (+ halo) per call


def _conv_output(conv, x):
    rows, width = x.shape[2], x.shape[3]
    if conv.transposed:
        return np.zeros((1, conv.out_channels, 2 * rows, 2 * width), np.float32)
    if conv.stride == 2:
        return np.zeros((1, conv.out_channels, (rows - 2) // 2, width // 2), np.float32)
    return np.zeros((1, conv.out_channels, rows - 2 * conv.padding, width), np.float32)


class _NoOnnxruntime:
    """Stands in for OrtBackend inside the TensorRT backend's reach: opening a session fails."""

    def __init__(self, *args, **kwargs):
        raise AssertionError("the TensorRT backend opened an onnxruntime session")


def _expected_sources(models, mode: str, tiled: bool, detection: bool = True, engines=None) -> set[str]:
    """The ONNX files whose engines a `mode` run must execute: its graphs, or, tiled, the
    wrapped strip graphs of every layer the strip executor runs and the op graphs of its
    pointwise steps (in the engine cache `engines`), plus the graphs it does not tile
    (detection, unless a user mask replaces it)."""
    from trt_restore.model_store import GRAPHS_FOR_MODE
    from trt_restore.tiling.programs import PROGRAMS, AddInto, Blend, Conv, Copy

    manifest = json.loads((models / "models.json").read_text())
    built = {record["graph"]: record["onnx"] for _, record in EngineCache(engines).entries()} if engines else {}
    sources = set()
    kinds = {AddInto: "add", Blend: "blend", Copy: "copy"}
    for graph in GRAPHS_FOR_MODE[mode]:
        if graph == "detection" and not detection:
            continue
        if tiled and graph in PROGRAMS:
            for op in PROGRAMS[graph]():
                name = op.layer if isinstance(op, Conv) else f"strip/{kinds[type(op)]}" if type(op) in kinds else None
                if name:
                    sources.add(built[name])
        else:
            sources.add(str(models / manifest["graphs"][graph]["file"]))
    return sources


def _executed(trt) -> set[str]:
    """Sources executed; strip graphs by file name (they live in the engine cache's folder)."""
    return {Path(source).name if "strip_graphs" in source else source for source in trt.executions}


def test_tensorrt_backend_drives_the_tiled_and_untiled_pipelines(exported_models, stand_in_engines, monkeypatch,
                                                                 gpu_kernels):
    """Issue 14, "Done when": every graph and every per-layer graph runs through the engine
    interface (stand-in engines computing the real exported graphs), no onnxruntime session is
    opened by the backend, and the outputs equal the onnxruntime backend's."""
    from trt_restore.backends import onnxruntime_backend
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.global_restoration import GlobalRestorer
    from trt_restore.tiling.executor import ExecutorConfig
    from trt_restore.tiling.runner import TiledGlobalRestorer

    trt, engines = stand_in_engines
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    # synthetic weights: the detector marks every pixel, which paints a constant photo (whose
    # InstanceNorms then amplify rounding noise); a user mask keeps the comparison meaningful
    mask = np.zeros(image.shape[:2], np.uint8)
    mask[:, 20:30] = 255
    masks = {"quality": None, "scratch": mask}
    reference = OrtBackend(exported_models, threads=1)
    want = {mode: GlobalRestorer(reference, mode).restore(image, mask=masks[mode]) for mode in masks}
    detected = GlobalRestorer(reference, "scratch").restore(image)
    monkeypatch.setattr(onnxruntime_backend, "OrtBackend", _NoOnnxruntime)
    backend = TrtBackend(exported_models, engines_dir=engines, trt=trt, cudart=FakeCudart(), gpu=H100)
    assert backend.runs_layers and backend.max_strip_rows == 8
    for mode in ("quality", "scratch"):
        for tiled in (False, True):
            trt.executions.clear()
            restorer = (TiledGlobalRestorer(backend, mode, ExecutorConfig(strip_rows=4)) if tiled
                        else GlobalRestorer(backend, mode))
            got = restorer.restore(image, mask=masks[mode])
            expected = _expected_sources(exported_models, mode, tiled, detection=False, engines=engines)
            assert _executed(trt) == expected, (mode, tiled)
            if tiled:  # several strips per layer
                assert len(trt.executions) > 2 * len(set(trt.executions))
            tolerance = 1e-3 if tiled else 1e-5
            for name in ("latent", "mapped", "output"):
                np.testing.assert_allclose(got.tensors[name], want[mode].tensors[name], atol=tolerance,
                                           err_msg=f"{mode} {'tiled' if tiled else 'untiled'} {name}")
            assert np.abs(got.restored.astype(int) - want[mode].restored.astype(int)).max() <= 1
    trt.executions.clear()  # the scratch detector's engine, tiled (the detector never tiles)
    got = TiledGlobalRestorer(backend, "scratch", ExecutorConfig(strip_rows=4)).restore(image)
    assert _executed(trt) == _expected_sources(exported_models, "scratch", True, engines=engines)
    np.testing.assert_array_equal(got.mask, detected.mask)
    assert gpu_kernels.calls.count("masked_attention") == 3  # scratch mode: untiled, tiled, detected
    assert not backend.cpu_graphs
    backend.close()


def test_run_layer_uses_the_layer_engines_and_caps_the_strips(models, gpu_kernels):
    from trt_restore.backends.tensorrt_backend import TrtBackend

    trt = FakeTrt("10.3.0")
    _build(models, trt, strip_rows=16, tiled_max_side=1024)
    backend = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    assert backend.runs_layers and backend.max_strip_rows == 16 and "strips up to 16 rows" in backend.describe()
    x = np.random.default_rng(0).standard_normal((1, 64, 18, 40)).astype(np.float32)
    np.testing.assert_array_equal(backend.run_layer("mapping_quality/model.0", x), x * 2)  # the stand-in engine
    with pytest.raises(RuntimeError, match=r"model\.0 at .*--strip-rows"):  # taller than the profile
        backend.run_layer("mapping_quality/model.0", np.zeros((1, 64, 40, 40), np.float32))
    backend.close()


def test_without_layer_engines_trt_refuses_to_tile_and_auto_tiles_on_onnxruntime(models, gpu_kernels):
    from trt_restore.backends import BackendUnsupported
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.tiling.runner import TiledGlobalRestorer

    trt = FakeTrt("10.3.0")
    _build(models, trt, layers=False)
    strict = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    assert not strict.runs_layers and strict.fallback_reason is None
    assert "no fp16 engines for 5 of 5 per-layer and op graphs" in strict.layers_reason
    assert "build-engines" in strict.layers_reason and "\n" not in strict.layers_reason
    with pytest.raises(BackendUnsupported, match="cannot tile: no fp16 engines for 5 of 5 per-layer and op graphs"):
        strict.run_layer("mapping_quality/model.0", np.zeros((1, 64, 4, 8), np.float32))
    with pytest.raises(BackendUnsupported, match="per-layer graphs.*build-engines"):
        TiledGlobalRestorer(strict, "quality")
    lenient = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100, layer_fallback=True)  # `auto`
    assert lenient.runs_layers and lenient.max_strip_rows is None
    assert lenient.fallback_reason.startswith("tiling runs its per-layer graphs on onnxruntime (CPU): no fp16")
    x = np.random.default_rng(0).standard_normal((1, 64, 4, 8)).astype(np.float32)
    assert lenient.run_layer("mapping_quality/model.0", x).shape == x.shape  # onnxruntime, said at start
    strict.close()
    lenient.close()


@pytest.mark.skipif(__import__("importlib").util.find_spec("tensorrt_rtx_bindings") is None,
                    reason="TensorRT-RTX is not installed")
def test_rtx_builds_layer_engines_on_the_strip_profiles(exported_models, tmp_path):
    """TensorRT's real parser and builder accept the strip graphs and profiles `build-engines`
    computes (the smallest strip of a 7x7 reflect conv, a stride-2 and a transposed conv, each
    wrapped with the normalisation prologue and statistics outputs; the add and blend op graphs)."""
    import tensorrt_rtx_bindings as rtx
    from trt_restore.benchmarks.rtx_check import RTX_GPU
    from trt_restore.engines.builder import build_plan, plan_layer_builds, prepare_source, read_manifest
    from trt_restore.engines.environment import tensorrt_version

    options = BuildOptions(models_dir=exported_models, precision="fp32", engines_dir=tmp_path, strip_rows=8,
                           tiled_max_side=256, opt_size=(128, 128), workspace_bytes=1 << 30)
    version = tensorrt_version(rtx)
    chosen = ("VAE_A_quality/encoder.1", "VAE_A_quality/encoder.4", "VAE_B_quality/decoder.4", "strip/add",
              "strip/blend")
    plans = [p for p in plan_layer_builds(options, read_manifest(exported_models), RTX_GPU, version,
                                          EngineCache(tmp_path)) if p.graph in chosen]
    assert [p.graph for p in plans] == list(chosen)
    for plan in plans:
        prepare_source(plan)
        assert build_plan(rtx, plan, options, plan.strategy, version, tmp_path / "timing.cache"), plan.graph


def test_strips_follow_free_device_memory_and_halve_once_on_out_of_memory(models, gpu_kernels, caplog):
    """Stretch of issue 14: the strip budget is the smaller of --max-memory's and a share of the
    device's free memory (cudaMemGetInfo); a cudaMalloc out-of-memory error (by its code) halves
    the strip once per layer, logged, and the result is unchanged."""
    import logging

    from trt_restore.backends.tensorrt_backend import DeviceOutOfMemory, TrtBackend
    from trt_restore.tiling.executor import ExecutorConfig, TiledExecutor
    from trt_restore.tiling.programs import Conv
    from trt_restore.tiling.runner import FrameRunner

    trt = FakeTrt("10.3.0")
    _build(models, trt, strip_rows=16, tiled_max_side=1024)
    cudart = FakeCudart(free=64 << 20, malloc_limit=40_000)
    backend = TrtBackend(models, trt=trt, cudart=cudart, gpu=H100)
    runner = FrameRunner(backend, ExecutorConfig(strip_bytes=1 << 30))
    assert runner.executor.config.strip_bytes == 16 << 20 and runner.executor.config.max_strip_rows == 16
    # a 1x1 stand-in op under a real layer name: the stand-in engine doubles its strip
    op = Conv("mapping_quality/model.0", ("a",), "b", 64, 64, 1)
    executor = TiledExecutor(backend.run_layer, ExecutorConfig(strip_rows=8))
    x = np.random.default_rng(0).standard_normal((1, 64, 16, 32)).astype(np.float32)
    with caplog.at_level(logging.WARNING, logger="trt_restore.tiling.executor"):
        frames = executor.run([op], {"a": executor.frame_from_array(x)})
    np.testing.assert_array_equal(executor.array_from_frame(frames["b"]), x * 2)
    assert cudart.failed_mallocs == [64 * 8 * 32 * 4]  # the 8-row strip, once
    assert "out of memory on a 8-row strip" in caplog.text and "retrying with 4-row strips" in caplog.text
    backend.close()
    tight = TrtBackend(models, trt=trt, cudart=FakeCudart(malloc_limit=1000), gpu=H100)
    executor = TiledExecutor(tight.run_layer, ExecutorConfig(strip_rows=8))
    with pytest.raises(DeviceOutOfMemory, match="out of device memory"):  # halved once, then it is an error
        executor.run([op], {"a": executor.frame_from_array(x)})
    tight.close()


def test_tensorrt_backend_drives_hr_mode_tiled_and_untiled(exported_models, stand_in_engines, monkeypatch,
                                                           gpu_kernels):
    """HR mode under the stand-ins: its graphs (or, tiled, their layers) run as engines, and the
    untiled patch match between the mapping segments goes through the backend's kernels (three
    scales). The latent (12x20) is not a multiple of the first patch size (8)."""
    from trt_restore.backends import onnxruntime_backend
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.global_restoration import GlobalRestorer
    from trt_restore.tiling.executor import ExecutorConfig
    from trt_restore.tiling.runner import TiledGlobalRestorer

    trt, engines = stand_in_engines
    image = np.random.default_rng(5).integers(0, 256, (48, 80, 3), dtype=np.uint8)
    mask = np.zeros(image.shape[:2], np.uint8)  # drawn: a stroke and a blob (dilated by HR mode)
    mask[10:14, 8:70] = 255
    mask[28:40, 50:62] = 255
    want = GlobalRestorer(OrtBackend(exported_models, threads=1), "hr").restore(image, mask=mask)
    assert want.tensors["latent"].shape[2:] == (12, 20)
    monkeypatch.setattr(onnxruntime_backend, "OrtBackend", _NoOnnxruntime)
    backend = TrtBackend(exported_models, engines_dir=engines, trt=trt, cudart=FakeCudart(), gpu=H100)
    for tiled in (False, True):
        trt.executions.clear()
        gpu_kernels.calls.clear()
        restorer = (TiledGlobalRestorer(backend, "hr", ExecutorConfig(strip_rows=4)) if tiled
                    else GlobalRestorer(backend, "hr"))
        got = restorer.restore(image, mask=mask)
        assert _executed(trt) == _expected_sources(exported_models, "hr", tiled, detection=False,
                                                   engines=engines), tiled
        # one patch match per scale (8, 4, 2) on the kernels, untiled and tiled
        assert gpu_kernels.calls == ["patch_match"] * 3, tiled  # tiled HR too: the map goes to the GPU whole
        for name in ("latent", "mapped", "output"):
            np.testing.assert_allclose(got.tensors[name], want.tensors[name], atol=1e-3 if tiled else 1e-5,
                                       err_msg=f"hr {'tiled' if tiled else 'untiled'} {name}")
        assert np.abs(got.restored.astype(int) - want.restored.astype(int)).max() <= 1
    assert not backend.cpu_graphs
    backend.close()


SMALL_COPY = 8 << 10  # per-strip parameters: normalisation (3 x C <= 1025 floats), row masks, statistics


def _restore_counting(backend, cudart, restorer):
    """Restore the module's photo; returns (result, [bytes of each host<->device copy])."""
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    kinds = (cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost)
    cudart.copies.clear()
    result = restorer.restore(image)
    return result, [nbytes for kind, nbytes in cudart.copies if kind in kinds]


def _quality_reference(exported_models):
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.global_restoration import GlobalRestorer

    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return GlobalRestorer(OrtBackend(exported_models, threads=1), "quality").restore(image)


def _assert_same(got, want, tolerance, what):
    for name in ("latent", "mapped", "output"):
        np.testing.assert_allclose(got.tensors[name], want.tensors[name], atol=tolerance, err_msg=f"{what} {name}")


def test_tiled_tensorrt_run_keeps_maps_and_statistics_on_the_device(exported_models, stand_in_engines, monkeypatch,
                                                                    gpu_kernels, caplog):
    """Issue 14: between layers, strips and InstanceNorm statistics stay on the device. The only
    large host<->device copies of a tiled run are the photo in and the results out (output,
    latent, mapped); everything else is per-strip parameters (normalisation, row masks, the
    strip's 2 x C moments). The host-strip path of the old code moves every strip of every
    layer both ways. With a device budget too small for the 512-channel maps they spill to the
    host, their strips cross the bus, and the result is unchanged."""
    import logging

    from trt_restore.backends import onnxruntime_backend
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.tiling.executor import ExecutorConfig
    from trt_restore.tiling.runner import TiledGlobalRestorer

    want = _quality_reference(exported_models)
    monkeypatch.setattr(onnxruntime_backend, "OrtBackend", _NoOnnxruntime)
    trt, engines = stand_in_engines
    cudart = FakeCudart()
    backend = TrtBackend(exported_models, engines_dir=engines, trt=trt, cudart=cudart, gpu=H100)
    trt.executions.clear()
    held = backend.memory.live_bytes
    got, copies = _restore_counting(backend, cudart, TiledGlobalRestorer(backend, "quality",
                                                                         ExecutorConfig(strip_rows=4)))
    _assert_same(got, want, 1e-3, "tiled on the device")
    assert backend.memory.live_bytes == held  # maps and strip buffers freed with the runner
    h, w = 48, 64
    results = [3 * h * w * 4, 3 * h * w * 4, 64 * (h // 4) * (w // 4) * 4, 64 * (h // 4) * (w // 4) * 4]
    assert sorted(n for n in copies if n > SMALL_COPY) == sorted(results)  # photo in; output, latent, mapped out
    small = [n for n in copies if n <= SMALL_COPY]
    assert sum(small) <= len(trt.executions) * 6 * 1025 * 4  # at most 6 parameter copies per engine call
    device_bytes = sum(copies)

    # the same run with host strips (what run_layer did before): every strip of every layer crosses
    from trt_restore.tiling.executor import HostStrips

    monkeypatch.setattr(backend, "strip_ops", lambda config: HostStrips(backend.run_layer, config))
    host, host_copies = _restore_counting(backend, cudart, TiledGlobalRestorer(backend, "quality",
                                                                               ExecutorConfig(strip_rows=4)))
    _assert_same(host, got, 1e-4, "host strips")
    assert sum(host_copies) > 10 * device_bytes, (sum(host_copies), device_bytes)
    monkeypatch.undo()
    monkeypatch.setattr(onnxruntime_backend, "OrtBackend", _NoOnnxruntime)

    # 512-channel maps (12 x 16 x 512 floats = 384 KiB) over the device budget: spilled to the host
    with caplog.at_level(logging.INFO, logger="trt_restore.tiling.device"):
        spilled, spill_copies = _restore_counting(backend, cudart, TiledGlobalRestorer(
            backend, "quality", ExecutorConfig(strip_rows=4, device_map_bytes=300_000)))
    _assert_same(spilled, want, 1e-3, "tiled with spill")
    assert "tiled maps beyond the device go to host memory" in caplog.text
    assert sum(spill_copies) > 2 * device_bytes  # the spilled maps' strips, both ways
    backend.close()


def test_untiled_tensorrt_segments_chain_on_the_device(exported_models, stand_in_engines, monkeypatch, gpu_kernels):
    """Issue 14: untiled, a graph's outputs feed the next graph (and the attention kernels) on
    the device: quality mode copies the photo in and the output, latent and mapped out, and
    nothing else; scratch mode adds only the mask-derived inputs (valid map, key flags), never
    a 512-channel map."""
    from trt_restore.backends import onnxruntime_backend
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.global_restoration import GlobalRestorer

    want = _quality_reference(exported_models)
    monkeypatch.setattr(onnxruntime_backend, "OrtBackend", _NoOnnxruntime)
    trt, engines = stand_in_engines
    cudart = FakeCudart()
    backend = TrtBackend(exported_models, engines_dir=engines, trt=trt, cudart=cudart, gpu=H100)
    got, copies = _restore_counting(backend, cudart, GlobalRestorer(backend, "quality"))
    _assert_same(got, want, 1e-5, "untiled")
    assert backend.memory.live_bytes == 0  # every graph output freed with the runner
    h, w = 48, 64
    assert sorted(copies) == sorted([3 * h * w * 4, 3 * h * w * 4, 64 * (h // 4) * (w // 4) * 4,
                                     64 * (h // 4) * (w // 4) * 4])
    mask = np.zeros((h, w), np.uint8)
    mask[:, 20:30] = 255
    image = np.random.default_rng(3).integers(0, 256, (h, w, 3), dtype=np.uint8)
    cudart.copies.clear()
    gpu_kernels.calls.clear()
    GlobalRestorer(backend, "scratch").restore(image, mask=mask)
    assert gpu_kernels.calls == ["masked_attention"]
    assert max(n for _, n in cudart.copies if _ != cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice) \
        < 512 * (h // 4) * (w // 4) * 4
    backend.close()


def test_out_of_memory_inside_execute_halves_the_strip_once(models, gpu_kernels, caplog):
    """Issue 14: an allocation failure inside execute_async_v3 (TensorRT reports kFAILED_ALLOCATION
    to the context's error recorder and returns False) is an out-of-memory error by its code:
    the tiled executor halves that layer's strip once, logged, and the result is unchanged;
    a strip that still fails is an error."""
    import logging

    from trt_restore.backends.tensorrt_backend import DeviceOutOfMemory, TrtBackend
    from trt_restore.tiling.executor import ExecutorConfig
    from trt_restore.tiling.programs import Conv
    from trt_restore.tiling.runner import FrameRunner

    trt = FakeTrt("10.3.0", execute_oom_rows=6)
    _build(models, trt, strip_rows=16, tiled_max_side=1024)
    backend = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    op = Conv("mapping_quality/model.0", ("a",), "b", 64, 64, 1)  # 1x1 stand-in op: the engine doubles x
    x = np.random.default_rng(0).standard_normal((1, 64, 16, 32)).astype(np.float32)
    runner = FrameRunner(backend, ExecutorConfig(strip_rows=8))
    executor = runner.executor
    with caplog.at_level(logging.WARNING, logger="trt_restore.tiling.executor"):
        frames = executor.run([op], {"a": executor.frame_from_array(x)})
    assert frames["b"].store.on_device
    np.testing.assert_array_equal(executor.array_from_frame(frames["b"]), x * 2)
    assert trt.execute_failures == [(1, 64, 8, 32)]  # the 8-row strip, once; then 4-row strips
    assert "out of memory on a 8-row strip" in caplog.text and "retrying with 4-row strips" in caplog.text
    runner.close()
    trt.execute_oom_rows = 2
    runner = FrameRunner(backend, ExecutorConfig(strip_rows=8))
    with pytest.raises(DeviceOutOfMemory, match="out of device memory in execute_async_v3"):
        runner.executor.run([op], {"a": runner.executor.frame_from_array(x)})
    runner.close()
    backend.close()
