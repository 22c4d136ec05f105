"""One backend contract: every member the pipeline uses is on the base class, with CPU defaults,
and the pipeline calls the backend's own attention steps (a GPU backend's kernels)."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from trt_restore.backends import Backend, BackendUnsupported, create_backend
from trt_restore.backends.onnxruntime_backend import OrtBackend
from trt_restore.global_restoration import GlobalRestorer
from trt_restore.tiling.runner import TiledGlobalRestorer

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
MEMBERS = ("run", "run_layer", "masked_attention", "patch_match", "patch_match_frames", "store", "describe",
           "fallback_reason", "close")


def test_the_contract_names_every_member_the_pipeline_uses():
    for member in MEMBERS:
        assert hasattr(Backend, member), member
    assert issubclass(OrtBackend, Backend)


def test_the_tensorrt_backend_is_a_backend():
    from trt_restore.backends.tensorrt_backend import TrtBackend  # imports without TensorRT

    assert issubclass(TrtBackend, Backend)


def test_no_pipeline_module_probes_a_backend():
    """The contract replaces hasattr/getattr probing of backends in the pipeline code."""
    probe = re.compile(r"(hasattr|getattr)\(\s*(self\.)?(restorer\.)?backend\b")
    offenders = []
    for path in RUNTIME.rglob("*.py"):
        if "serve" in path.parts:  # the service wraps backends generically (job guards), see serve/engine.py
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if probe.search(line):
                offenders.append(f"{path.relative_to(RUNTIME)}:{number}: {line.strip()}")
    assert not offenders, offenders


def test_a_backend_without_layers_cannot_tile():
    class Segments(Backend):
        name = "segments-only"

    with pytest.raises(BackendUnsupported, match="segments-only"):
        TiledGlobalRestorer(Segments(), "quality")
    with pytest.raises(BackendUnsupported):
        Segments().run_layer("x", np.zeros((1, 1, 1, 1), np.float32))


class CountingBackend(OrtBackend):
    """onnxruntime with the attention steps counted (as a GPU backend would replace them)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = {"masked_attention": 0, "patch_match": 0}

    def masked_attention(self, *args, **kwargs):
        self.calls["masked_attention"] += 1
        return super().masked_attention(*args, **kwargs)

    def patch_match(self, *args, **kwargs):
        self.calls["patch_match"] += 1
        return super().patch_match(*args, **kwargs)


@pytest.mark.parametrize("mode, calls", [("scratch", {"masked_attention": 1, "patch_match": 0}),
                                         ("hr", {"masked_attention": 0, "patch_match": 3})])
def test_the_pipeline_uses_the_backends_attention(mode, calls, exported_models):
    backend = CountingBackend(exported_models, threads=2)
    image = np.full((64, 96, 3), 128, np.uint8)
    image[:, :, 0] = np.arange(96, dtype=np.uint8)[None, :] * 2
    mask = np.zeros((64, 96), np.uint8)
    cv2.line(mask, (0, 20), (95, 40), 255, 5)
    GlobalRestorer(backend, mode).restore(image, mask=mask)
    assert backend.calls == calls


def test_auto_backend_says_why_tensorrt_was_not_used(exported_models):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the fallback is not taken")
    backend = create_backend("auto", exported_models, threads=1)
    assert isinstance(backend, OrtBackend)
    assert backend.fallback_reason.startswith("TensorRT not used")
    assert OrtBackend(exported_models, threads=1).fallback_reason is None


def test_options_are_frozen_and_chosen_through_the_registry(exported_models, monkeypatch):
    import dataclasses

    from trt_restore.backends import REGISTRY, OrtOptions, TrtOptions

    assert set(REGISTRY) == {"ort", "trt"} and REGISTRY["ort"][0] is OrtOptions and REGISTRY["trt"][0] is TrtOptions
    options = OrtOptions(threads=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.threads = 2
    with pytest.raises(ValueError, match="precision"):
        TrtOptions(precision="fp64")
    monkeypatch.setenv("TRT_RESTORE_PRECISION", "int8")  # the library never reads the environment
    backend = create_backend("ort", exported_models, ort=dataclasses.replace(options, spinning=True))
    assert backend.precision == "fp32" and backend.spinning and backend.threads == 1


def test_stages_are_reported_as_they_end(exported_models):
    """Long photos show progress inside the photo: every stage reports when it ends."""
    backend = OrtBackend(exported_models, threads=2)
    image = np.full((64, 96, 3), 120, np.uint8)
    mask = np.zeros((64, 96), np.uint8)
    mask[30:34] = 255
    seen = []
    GlobalRestorer(backend, "scratch").restore(image, mask=mask, on_stage=seen.append)
    assert seen[0] == "detection" and seen[-1] == "decode" and "attention" in seen and "encode" in seen
