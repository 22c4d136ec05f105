"""Exported ONNX graphs: checker-clean, dynamic shapes, manifest, attention left out."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort

from trt_restore.export.graphs import GRAPHS
from trt_restore.export.onnx_export import OPSET


def test_manifest_describes_every_graph(exported_models, synthetic_release):
    manifest = json.loads((exported_models / "models.json").read_text())
    assert manifest["opset"] == OPSET >= 17
    assert {"torch", "onnx", "onnxruntime"} <= set(manifest["versions"])
    for spec in (g for g in GRAPHS if g.multiple < 256):
        entry = manifest["graphs"][spec.name]
        assert entry["tag"] == spec.tag and len(entry["checkpoint_sha256"]) == 64
        assert [i["name"] for i in entry["inputs"]] == list(spec.inputs)
        assert [o["name"] for o in entry["outputs"]] == list(spec.outputs)
        assert len(entry["validation"]) == 2, "validated on two shapes"
        sizes = {tuple(v["image_size"]) for v in entry["validation"]}
        assert len(sizes) == 2 and all(v["max_rel_error"] <= 1e-3 for v in entry["validation"])


def test_graphs_are_checker_clean_with_dynamic_axes(exported_models):
    for spec in (g for g in GRAPHS if g.multiple < 256):
        model = onnx.load(str(exported_models / f"{spec.name}.onnx"))
        onnx.checker.check_model(model)
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            assert [d.dim_param for d in dims][0] == "batch" and dims[2].dim_param and dims[3].dim_param


def test_attention_is_not_inside_the_graphs(exported_models):
    """The N x N attention must stay out of the graphs (runtime numpy / TensorRT plugin)."""
    for name in ("mapping_scratch_head", "mapping_scratch_tail", "mapping_hr_head", "mapping_hr_step1",
                 "mapping_hr_step2", "mapping_hr_tail"):
        ops = {node.op_type for node in onnx.load(str(exported_models / f"{name}.onnx")).graph.node}
        assert not ops & {"MatMul", "Softmax", "Gemm", "ArgMax", "Einsum"}, (name, ops)


def test_batch_and_odd_sizes_run(exported_models):
    session = ort.InferenceSession(str(exported_models / "vae_a_quality_encoder.onnx"),
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 52, 76)).astype(np.float32)
    (latent,) = session.run(None, {"image": x})
    assert latent.shape == (2, 64, 13, 19)


def test_export_command(synthetic_release, tmp_path):
    """The CLI exports the requested graphs (and their per-layer graphs) and reports a bad checkpoint."""
    from typer.testing import CliRunner

    from trt_restore.cli import app
    from trt_restore.export.manifests import checkpoint_path

    root = synthetic_release.ensure("VAE_A_quality")
    out = tmp_path / "models"
    result = CliRunner().invoke(app, ["export", "-w", str(root), "-o", str(out), "--graph", "vae_a_quality_encoder"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "models.json").read_text())
    assert list(manifest["graphs"]) == ["vae_a_quality_encoder"]
    assert all(layer.startswith("VAE_A_quality/") for layer in manifest["layers"])
    assert all((out / entry["file"]).is_file() for entry in manifest["layers"].values())

    broken = tmp_path / "broken"
    path = checkpoint_path(broken, "VAE_A_quality")
    path.parent.mkdir(parents=True)
    path.write_bytes(checkpoint_path(root, "VAE_A_quality").read_bytes()[:1000])
    result = CliRunner().invoke(app, ["export", "-w", str(broken), "-o", str(tmp_path / "m2"),
                                      "--graph", "vae_a_quality_encoder"])
    assert result.exit_code == 1 and str(path) in result.output
