"""INT8 Q/DQ models: valid graphs, choices recorded in models.json, cached builds, runtime path,
and accuracy on a small image."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from int8_support import QUALITY_GRAPHS, fp32_copy, int8_models
from trt_restore.backends.onnxruntime_backend import OrtBackend
from trt_restore.calibration.quantize import QuantizeOptions, quantize_models
from trt_restore.cli import app
from trt_restore.global_restoration import GlobalRestorer
from trt_restore.io import read_image
from trt_restore.model_store import ModelStoreError

DATA = Path(__file__).parent / "data"
PSNR_FLOOR = 15.0  # synthetic weights: measured ~19-21 dB end to end (benchmarks/README.md); garbage is < 10


@pytest.fixture(scope="module")
def int8(exported_models, tmp_path_factory):
    return int8_models(exported_models, tmp_path_factory)


def small_photo() -> np.ndarray:
    return np.ascontiguousarray(cv2.resize(read_image(DATA / "old_a.png"), (96, 64), interpolation=cv2.INTER_AREA))


def test_qdq_models_are_valid_and_fused_into_integer_kernels(int8):
    root, section = int8
    for graph in QUALITY_GRAPHS:
        entry = section["graphs"][graph]
        path = root / entry["file"]
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path))
        ops = [n.op_type for n in model.graph.node]
        assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
        fp32 = onnx.load(str(root / f"{graph}.onnx"), load_external_data=False)
        assert ops.count("InstanceNormalization") == [n.op_type for n in fp32.graph.node].count("InstanceNormalization")
        assert entry["cpu_kernels_after_fusion"].get("QLinearConv", 0) == entry["conv_int8"] > 0


def test_tensorrt_flavour_is_symmetric_int8_with_the_same_ranges(int8):
    """TensorRT takes int8 Q/DQ with zero point 0 only; the onnxruntime file (uint8 with zero
    points) would be refused, which the check must see. Same calibrated ranges: the symmetric
    file is about as close to fp32 as the onnxruntime one."""
    from trt_restore.calibration.quantize import tensorrt_qdq_problems

    root, section = int8
    for graph in QUALITY_GRAPHS:
        entry = section["graphs"][graph]
        trt_path = root / entry["tensorrt_file"]
        onnx.checker.check_model(str(trt_path))
        assert tensorrt_qdq_problems(trt_path) == []
        assert tensorrt_qdq_problems(root / entry["file"]), "uint8 zero points must be reported"
        model = onnx.load(str(trt_path))
        assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) > 0
        ort_error, trt_error = entry["validation"]["rel_error"], entry["tensorrt_validation"]["rel_error"]
        assert trt_error < max(3 * ort_error, 0.05)


def test_manifest_records_per_graph_choices(int8):
    root, section = int8
    manifest = json.loads((root / "models.json").read_text())
    assert manifest["int8"]["calibration"]["method"] == "percentile"
    for graph in QUALITY_GRAPHS:
        entry = manifest["int8"]["graphs"][graph]
        assert manifest["graphs"][graph]["qdq_file"] == entry["tensorrt_file"]  # what the TensorRT builder reads
        assert {"file", "sha256", "tag"} <= set(manifest["graphs"][graph])  # existing keys intact
        assert "InstanceNormalization" in entry["kept_fp32"]["op_types"]
        assert entry["kept_fp32"]["nodes"], "boundary convs stay fp32"
        assert entry["conv_int8"] < entry["conv_total"]
        assert 0 < entry["int8_mac_fraction"] < 1
        assert entry["validation"]["items"] == 2 and np.isfinite(entry["validation"]["rel_error"])
    assert section["graphs"]["vae_a_quality_encoder"]["precision"] == "fp32"  # Q/DQ built, runtime keeps fp32
    assert section["graphs"]["mapping_quality"]["precision"] == "int8"
    first = section["graphs"]["vae_a_quality_encoder"]["kept_fp32"]["nodes"]
    assert any("image" in reason for reason in first.values())
    last = section["graphs"]["vae_b_quality_decoder"]["kept_fp32"]["nodes"]
    assert any("output" in reason for reason in last.values())


def test_repeated_build_is_reused_and_ranges_are_cached(int8, tmp_path):
    root, section = int8
    again = quantize_models(root, root / "calibration", QuantizeOptions(graphs=QUALITY_GRAPHS))
    assert all(again["graphs"][g].get("reused") for g in QUALITY_GRAPHS)
    assert all(again["graphs"][g]["sha256"] == section["graphs"][g]["sha256"] for g in QUALITY_GRAPHS)
    # other fp32 choices, same calibration: ranges come from the cache, no calibration run
    copy = fp32_copy(root, tmp_path / "copy")
    shutil.copytree(root / "int8", copy / "int8")
    forced = quantize_models(copy, root / "calibration", QuantizeOptions(graphs=("vae_b_quality_decoder",),
                                                                          keep_boundary_fp32=False))
    entry = forced["graphs"]["vae_b_quality_decoder"]
    assert entry["calibration_cache_hit"] and not entry.get("reused")
    assert entry["conv_int8"] > section["graphs"]["vae_b_quality_decoder"]["conv_int8"]


def test_int8_restore_is_close_to_fp32_on_a_small_image(int8):
    root, _ = int8
    image = small_photo()
    fp32 = GlobalRestorer(OrtBackend(root, threads=2), "quality").restore(image)
    backend = OrtBackend(root, threads=2, precision="int8")
    assert backend.graph_file("mapping_quality").name == "mapping_quality.qdq.onnx"
    assert backend.graph_file("vae_a_quality_encoder").name == "vae_a_quality_encoder.onnx"  # kept fp32
    assert "INT8" in backend.describe()
    got = GlobalRestorer(backend, "quality").restore(image)
    assert got.restored.shape == fp32.restored.shape
    mse = np.mean((got.restored.astype(float) - fp32.restored) ** 2)
    value = 10 * np.log10(255 ** 2 / mse)
    mapped = np.linalg.norm(got.tensors["mapped"] - fp32.tensors["mapped"]) / np.linalg.norm(fp32.tensors["mapped"])
    print(f"INT8 vs fp32 at 96x64: {value:.1f} dB, mapped rel. error {mapped:.3f}")
    assert value >= PSNR_FLOOR and mapped < 0.5


def test_accuracy_evaluation_runs(int8):
    from trt_restore.benchmarks.accuracy import QdqBackend, evaluate_set

    root, _ = int8
    image = small_photo()
    result = evaluate_set(OrtBackend(root), QdqBackend(root),
                          [("small", image, np.zeros(image.shape[:2], np.uint8))], modes=("quality",), log=lambda m: None)
    rows = result["quality"]
    default = "runtime --precision int8 (vae_a_quality_encoder fp32)"
    assert set(rows) == set(QUALITY_GRAPHS) | {"all INT8", "photos", default}
    assert rows[default]["latent_rel_error"]["mean"] == 0
    assert rows["all INT8"]["psnr"]["mean"] >= PSNR_FLOOR
    assert rows["vae_a_quality_encoder"]["mapped_rel_error"]["mean"] > 0
    assert rows["mapping_quality"]["latent_rel_error"]["mean"] == 0  # the encoder stayed fp32


def test_stale_or_missing_int8_models_are_refused(int8, tmp_path):
    root, _ = int8
    with pytest.raises(ModelStoreError, match="no INT8 models"):
        OrtBackend(fp32_copy(root, tmp_path / "plain"), precision="int8")
    stale = fp32_copy(root, tmp_path / "stale")
    manifest = json.loads((root / "models.json").read_text())
    manifest["graphs"]["mapping_quality"]["sha256"] = "0" * 64  # as if re-exported since
    (stale / "models.json").write_text(json.dumps(manifest))
    (stale / "int8").symlink_to(root / "int8")
    with pytest.raises(ModelStoreError, match="re-run `trt-restore quantize`"):
        OrtBackend(stale, precision="int8").graph_file("mapping_quality")
    with pytest.raises(ValueError, match="precision"):
        OrtBackend(root, precision="fp8")


def test_restore_command_with_int8(int8, tmp_path):
    root, _ = int8
    from trt_restore.io import write_image

    write_image(tmp_path / "in" / "small.png", small_photo())
    result = CliRunner().invoke(app, ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", str(root),
                                      "--backend", "ort", "--precision", "int8", "--no-faces"])
    assert result.exit_code == 0, result.output
    assert "INT8" in result.output and (tmp_path / "out" / "small.png").is_file()
    bad = CliRunner().invoke(app, ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o2"), "-m", str(root),
                                   "--precision", "int4"])
    assert bad.exit_code == 2


def test_quantize_command_reports_and_reuses(int8):
    root, _ = int8
    result = CliRunner().invoke(app, ["quantize", "-c", str(root / "calibration"), "-m", str(root),
                                      "--graph", "mapping_quality"])
    assert result.exit_code == 0, result.output
    assert "mapping_quality: INT8 (reused" in result.output and "held-out rel. error" in result.output
    bad = CliRunner().invoke(app, ["quantize", "-c", str(root / "nowhere"), "-m", str(root)])
    assert bad.exit_code == 1 and "no calibration manifest" in bad.output


def test_per_layer_diagnosis_separates_local_and_accumulated_noise(int8):
    """benchmarks/int8_layers.py: every Conv of the mapping is found in both models; an 8-bit
    round trip costs 25-50 dB locally, and the Q/DQ model drifts away from fp32 layer by layer."""
    from trt_restore.benchmarks.int8_layers import conv_outputs, layer_errors, record_feeds

    root, _ = int8
    photos = Path(__file__).parent / "data"
    feeds = record_feeds(root, photos, count=1, max_side=96)["mapping_quality"]
    store_graph = root / "mapping_quality.onnx"
    entry = json.loads((root / "models.json").read_text())["int8"]["graphs"]["mapping_quality"]
    rows = layer_errors(store_graph, root / entry["file"], feeds)
    assert len(rows) == len(conv_outputs(store_graph))
    local = [r["local_sqnr_db"] for r in rows if r["local_sqnr_db"] is not None]
    assert local and all(25 < v < 50 for v in local)
    assert rows[-1]["accumulated_sqnr_db"] < rows[0]["accumulated_sqnr_db"]
