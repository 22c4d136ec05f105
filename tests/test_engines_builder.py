"""The engine builder against stand-ins of TensorRT 10.3 and 11.1 (no TensorRT, no GPU here)."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from engines_support import H100, ORIN, FakeTrt, models_dir
from trt_restore.cli import app
from trt_restore.engines.builder import BuildError, BuildOptions, build_engines, plan_builds
from trt_restore.engines.cache import EngineCache
from trt_restore.engines.environment import TensorRTUnavailable, TrtVersion, import_tensorrt


@pytest.fixture
def models(tmp_path):
    return models_dir(tmp_path / "models")


def _build(models, trt, gpu=H100, **kw):
    events = []
    report = build_engines(BuildOptions(models_dir=models, **kw), trt=trt, gpu=gpu, on_event=events.append,
                           progress=lambda *a: events.append(a))
    return report, events


def test_fp16_on_tensorrt_10_uses_the_fp16_flag_and_caches(models):
    trt = FakeTrt("10.3.0")
    report, events = _build(models, trt, max_size=(1024, 1024), opt_size=(512, 384))
    assert sorted(report.built) == ["mapping_quality", "vae_b_quality_decoder"] and not report.failed
    build = trt.builds[0]
    assert build["flags"] == ["FP16"] and build["network_flags"] == 0
    assert build["source"] == str(models / "mapping_quality.onnx")  # the export itself
    assert build["profile"]["latent"] == [[[1, 64, 1, 1], [1, 64, 96, 128], [1, 64, 256, 256]]]
    assert ("mapping_quality", "Building", 2, 2) in events  # progress reached the callback
    cache = EngineCache(models / "engines")
    sidecars = cache.entries()
    assert len(sidecars) == 2 and all(r["tensorrt_version"] == "10.3.0" for _, r in sidecars)
    timing = cache.timing_cache_path(H100.slug, "10.3.0")
    assert timing.is_file()
    # second run: nothing rebuilt
    report2, events2 = _build(models, trt, max_size=(1024, 1024), opt_size=(512, 384))
    assert report2.reused == report.built and not report2.built and len(trt.builds) == 2
    # a new profile builds again, seeded with the persistent timing cache
    report3, _ = _build(models, trt, graphs=("mapping_quality",), max_size=(2048, 2048), opt_size=(512, 384))
    assert report3.built == ["mapping_quality"]
    assert trt.builds[-1]["timing_cache_in"] == timing.read_bytes().decode()[:-1]


def test_stale_and_foreign_plans_are_rebuilt(models):
    trt = FakeTrt("10.3.0")
    _build(models, trt)
    manifest = json.loads((models / "models.json").read_text())
    manifest["graphs"]["mapping_quality"]["sha256"] = "f" * 64  # model re-exported
    (models / "models.json").write_text(json.dumps(manifest))
    report, _ = _build(models, trt)
    assert report.built == ["mapping_quality"] and report.reused == ["vae_b_quality_decoder"]
    # a plan whose bytes changed on disk is rebuilt, not loaded
    plan = report.engines["vae_b_quality_decoder"]
    plan.write_bytes(plan.read_bytes()[::-1])
    report, events = _build(models, trt)
    assert report.built == ["vae_b_quality_decoder"]
    assert any("corrupt" in e for e in events if isinstance(e, str))
    # another GPU (or TensorRT version) never reuses these plans
    report, _ = _build(models, trt, gpu=ORIN)
    assert sorted(report.built) == ["mapping_quality", "vae_b_quality_decoder"]
    report, _ = _build(models, FakeTrt("10.4.0"))
    assert len(report.built) == 2


def test_fp16_on_tensorrt_11_builds_a_strongly_typed_network_from_fp16_onnx(models):
    import onnx

    trt = FakeTrt("11.1.0")
    report, _ = _build(models, trt, graphs=("mapping_quality",))
    assert report.built == ["mapping_quality"], report.failed
    build = trt.builds[0]
    assert build["flags"] == [] and build["network_flags"] == 0
    assert build["source"].endswith(".fp16.onnx")
    converted = onnx.load(build["source"])
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in converted.graph.initializer)
    assert converted.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp32 I/O kept
    record = EngineCache(models / "engines").entries()[0][1]
    assert "strongly typed" in record["strategy"] and record["tensorrt_version"] == "11.1.0"


def test_fp32_clears_tf32_and_version_compatible_sets_its_flag(models):
    trt = FakeTrt("10.3.0")
    report, _ = _build(models, trt, precision="fp32", version_compatible=True, graphs=("mapping_quality",))
    assert report.built == ["mapping_quality"]
    assert trt.builds[0]["cleared"] == ["TF32"] and trt.builds[0]["flags"] == ["VERSION_COMPATIBLE"]
    record = EngineCache(models / "engines").entries()[0][1]
    assert record["version_compatible"] is True and record["precision"] == "fp32"


def test_int8_needs_calibrated_qdq_models(models):
    with pytest.raises(BuildError, match="calibrated Q/DQ"):
        plan_builds(BuildOptions(models_dir=models, precision="int8"), H100, TrtVersion.parse("10.3.0"))
    manifest = json.loads((models / "models.json").read_text())
    for entry in manifest["graphs"].values():
        entry["qdq_file"] = entry["file"]  # stand-in Q/DQ model
    (models / "models.json").write_text(json.dumps(manifest))
    trt = FakeTrt("10.3.0")
    report, _ = _build(models, trt, precision="int8")
    assert len(report.built) == 2 and trt.builds[0]["flags"] == ["FP16", "INT8"]
    # a re-calibrated Q/DQ model invalidates the int8 plan even though the fp32 export is unchanged
    qdq = models / manifest["graphs"]["mapping_quality"]["qdq_file"]
    qdq.write_bytes(qdq.read_bytes() + b" ")
    report, _ = _build(models, trt, precision="int8")
    assert report.built == ["mapping_quality"] and report.reused == ["vae_b_quality_decoder"]


def test_plan_errors_are_clear(tmp_path, models):
    with pytest.raises(BuildError, match="no model manifest"):
        plan_builds(BuildOptions(models_dir=tmp_path / "none"), H100, TrtVersion.parse("10.3.0"))
    with pytest.raises(BuildError, match="not in"):
        plan_builds(BuildOptions(models_dir=models, graphs=("face_256",)), H100, TrtVersion.parse("10.3.0"))
    (models / "mapping_quality.onnx").unlink()
    with pytest.raises(BuildError, match="missing"):
        plan_builds(BuildOptions(models_dir=models), H100, TrtVersion.parse("10.3.0"))


def test_a_failing_graph_does_not_stop_the_others(models):
    trt = FakeTrt("10.3.0")
    original = trt.Builder

    def builder(logger):
        b = original(logger)
        real = b.build_serialized_network
        b.build_serialized_network = lambda n, c: None if "mapping" in n.source else real(n, c)
        return b

    trt.Builder = builder
    report, _ = _build(models, trt)
    assert "mapping_quality" in report.failed and "could not build" in report.failed["mapping_quality"]
    assert report.built == ["vae_b_quality_decoder"]


def test_import_tensorrt_explains_what_is_missing():
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(TensorRTUnavailable, match="not installed"):
            import_tensorrt()
    else:  # pragma: no cover - machines with TensorRT
        pytest.skip("TensorRT is installed here")


def test_cli_reports_missing_tensorrt_and_bad_options(models):
    runner = CliRunner()
    result = runner.invoke(app, ["build-engines", "--models", str(models), "--max-size", "big"])
    assert result.exit_code == 2 and "WIDTHxHEIGHT" in result.output
    result = runner.invoke(app, ["build-engines", "--models", str(models), "--precision", "bf16"])
    assert result.exit_code == 2 and "precision" in result.output
    result = runner.invoke(app, ["build-engines", "--models", str(models), "--opt-size", "4000x4000"])
    assert result.exit_code == 2 and "larger than --max-size" in result.output
    result = runner.invoke(app, ["build-engines", "--models", str(models)])
    assert result.exit_code == 2 and "cannot build engines here" in result.output


def test_cli_builds_with_injected_tensorrt(models, monkeypatch):
    from trt_restore.engines import environment

    trt = FakeTrt("11.1.0")
    monkeypatch.setattr(environment, "import_tensorrt", lambda require_builder=True: trt)
    monkeypatch.setattr(environment, "gpu_info", lambda device=0: H100)
    result = CliRunner().invoke(app, ["build-engines", "--models", str(models), "--graph", "mapping_quality",
                                      "--max-size", "1024x768", "--opt-size", "640x480"])
    assert result.exit_code == 0, result.output
    assert "1 built, 0 cached, 0 failed" in result.output and "TensorRT 11.1.0" in result.output
