"""TensorRT's real ONNX parser and builder on the CPU, through TensorRT-RTX (the `rtx` extra).

The project's own build path (engines/builder.py, `trt` and `gpu` injected) over the session's
export: a representative subset by default, every graph, fp16 copy, TensorRT Q/DQ model and
per-layer graph under -m slow (benchmarks/rtx_check.py; table in benchmarks/results/rtx_check.md).
What this cannot prove: docs/tensorrt.md.
"""
from __future__ import annotations

import importlib.util
import json
import logging

import pytest

from engines_support import models_dir
from trt_restore.engines.builder import BuildError, BuildOptions, GraphPlan, build_engines, build_plan
from trt_restore.engines.cache import EngineCache
from trt_restore.engines.environment import build_strategy, tensorrt_version

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorrt_rtx_bindings") is None,
                                reason="TensorRT-RTX is not installed (pip install 'trt-restore[rtx]'; "
                                       "bash scripts/setup.sh installs it with the dev extra)")


@pytest.fixture(scope="module")
def rtx():
    import tensorrt_rtx_bindings

    return tensorrt_rtx_bindings


def test_rtx_is_recognised_as_strongly_typed_tensorrt(rtx):
    version = tensorrt_version(rtx)
    assert version.rtx and str(version).startswith("rtx-1.") and version.label.startswith("TensorRT-RTX 1.")
    assert version.strongly_typed_only and not version.has_precision_flags  # 1.x is not TensorRT 1.x
    assert not hasattr(rtx.BuilderFlag, "FP16") and not hasattr(rtx.BuilderFlag, "INT8")
    assert build_strategy(version, "fp16").onnx_variant == "fp16"
    assert build_strategy(version, "int8").builder_flags == ()


def test_rtx_builds_the_subset_of_the_export(exported_models, tmp_path, rtx):
    from trt_restore.benchmarks.rtx_check import SUBSET_GRAPHS, run_check

    rows = run_check(exported_models, tmp_path / "engines", subset=True, trt=rtx)
    failed = [(r.graph, r.precision, r.error) for r in rows if not r.built]
    assert not failed, failed
    graphs = {(r.graph, r.precision) for r in rows if r.kind == "graph"}
    assert graphs == {(g, p) for g in SUBSET_GRAPHS for p in ("fp32", "fp16")}
    assert sum(r.kind == "layer" for r in rows) >= 3
    assert all(r.plan_bytes > 0 for r in rows)
    records = [r for _, r in EngineCache(tmp_path / "engines").entries()]
    assert records and all(r["tensorrt_version"].startswith("rtx-") and "strongly typed" in r["strategy"]
                           for r in records)
    assert {r["onnx"].endswith(".fp16.onnx") for r in records if r["precision"] == "fp16"} == {True}


def test_rtx_refuses_a_broken_graph_and_names_the_file(tmp_path, rtx, caplog):
    models = models_dir(tmp_path / "models", graphs=(("mapping_quality", "latent", "mapped", 64),))
    phases = []
    good = build_engines(BuildOptions(models, precision="fp32", max_size=(256, 256), opt_size=(128, 128)),
                         trt=rtx, gpu=_gpu(), on_event=lambda line: None, progress=lambda *a: phases.append(a))
    assert good.built == ["mapping_quality"], good.failed
    assert any(graph == "mapping_quality" and steps for graph, _, _, steps in phases)  # IProgressMonitor ran
    onnx_file = models / "mapping_quality.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[: onnx_file.stat().st_size // 2])  # truncated copy
    report = build_engines(BuildOptions(models, precision="fp32", max_size=(256, 256), opt_size=(128, 128),
                                        force=True), trt=rtx, gpu=_gpu(), on_event=lambda line: None)
    assert "mapping_quality.onnx" in report.failed["mapping_quality"]
    assert "parser failed" in report.failed["mapping_quality"]
    plan = GraphPlan("mapping_quality", onnx_file, _key(rtx), None, onnx_file)
    version = tensorrt_version(rtx)
    with caplog.at_level(logging.ERROR, logger="trt_restore.tensorrt"):
        with pytest.raises(BuildError, match=r"mapping_quality\.onnx: TensorRT's ONNX parser failed"):
            build_plan(rtx, plan, BuildOptions(models), build_strategy(version, "fp32"), version,
                       tmp_path / "timing.cache")
    assert any(r.name == "trt_restore.tensorrt" for r in caplog.records)  # TensorRT's log reached logging


def test_rtx_builds_the_calibrated_qdq_models_at_their_models_json_precision(exported_models, tmp_path,
                                                                             tmp_path_factory, rtx):
    """The `.trt.qdq.onnx` models parse and build; the graph models.json keeps in fp32 under
    int8 (the encoder) is built from its fp32 export, not its Q/DQ model (issue 14)."""
    from int8_support import int8_models
    from trt_restore.benchmarks.rtx_check import check_graphs

    root, section = int8_models(exported_models, tmp_path_factory)
    rows = {r.graph: r for r in check_graphs(rtx, root, tmp_path / "engines", list(section["graphs"]), ["int8"])}
    assert set(rows) == set(section["graphs"]) and all(r.built for r in rows.values()), rows
    kept = {g for g, e in section["graphs"].items() if e["precision"] != "int8"}
    assert kept, "the quantizer no longer keeps any graph in fp32; pick another per-graph precision case"
    for graph, row in rows.items():
        assert row.onnx.endswith(".trt.qdq.onnx") != (graph in kept), (graph, row.onnx)


@pytest.mark.slow
def test_rtx_builds_every_graph_fp16_copy_and_layer(exported_models, tmp_path, rtx):
    from trt_restore.benchmarks.rtx_check import run_check

    rows = run_check(exported_models, tmp_path / "engines", trt=rtx, layer_precisions=("fp32", "fp16"))
    manifest = json.loads((exported_models / "models.json").read_text())
    failed = [(r.graph, r.precision, r.error) for r in rows if not r.built]
    assert not failed, failed
    assert sum(r.kind == "layer" for r in rows) == 2 * len(manifest["layers"])
    assert sum(r.kind == "graph" for r in rows) >= 2 * len(manifest["graphs"])


def _gpu():
    from trt_restore.benchmarks.rtx_check import RTX_GPU

    return RTX_GPU


def _key(rtx):
    from trt_restore.engines.cache import EngineKey
    from trt_restore.engines.profiles import graph_profile

    return EngineKey("mapping_quality", "", "fp32", graph_profile("mapping_quality", (256, 256), (128, 128)),
                     "rtx-cpu-check", "8.9", str(tensorrt_version(rtx)))
