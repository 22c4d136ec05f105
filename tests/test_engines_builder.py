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


def _with_qdq(models, graphs, int8_section=None):
    manifest = json.loads((models / "models.json").read_text())
    for name in graphs:
        manifest["graphs"][name]["qdq_file"] = manifest["graphs"][name]["file"]  # stand-in Q/DQ model
    if int8_section is not None:
        manifest["int8"] = {"graphs": int8_section}
    (models / "models.json").write_text(json.dumps(manifest))
    return manifest


def test_int8_skips_graphs_without_a_qdq_model_and_says_why(models, monkeypatch):
    """Issue 14: `--precision int8` on a default export (no Q/DQ model for the face graphs)
    aborted in plan_builds, outside the per-graph try."""
    _with_qdq(models, ["mapping_quality"])
    trt = FakeTrt("10.3.0")
    report, events = _build(models, trt, precision="int8")
    assert report.built == ["mapping_quality"] and not report.failed
    assert list(report.skipped) == ["vae_b_quality_decoder"]
    assert "no calibrated Q/DQ model" in report.skipped["vae_b_quality_decoder"]
    assert any("vae_b_quality_decoder: skipped" in e for e in events if isinstance(e, str))
    # the command: exit 0 (skipping is not failing), the reason in the summary
    from trt_restore.engines import environment

    monkeypatch.setattr(environment, "import_tensorrt", lambda require_builder=True: trt)
    monkeypatch.setattr(environment, "gpu_info", lambda device=0: H100)
    result = CliRunner().invoke(app, ["build-engines", "--models", str(models), "--precision", "int8"])
    assert result.exit_code == 0, result.output
    assert "0 built, 1 cached, 1 skipped, 0 failed" in result.output
    assert "skipped vae_b_quality_decoder: no calibrated Q/DQ model" in result.output


@pytest.mark.parametrize("version", ["10.3.0", "11.1.0"])
def test_int8_builds_each_graph_at_its_models_json_precision(models, version):
    """Issue 14: models.json keeps a graph in fp32 under int8 (the encoder: 'built but not used by
    the runtime'); onnxruntime honoured it, the TensorRT builder built it in int8 anyway."""
    from trt_restore.engines.cache import model_digest

    manifest = _with_qdq(models, ["mapping_quality", "vae_b_quality_decoder"], {
        "mapping_quality": {"precision": "fp32", "precision_reason": "its error is amplified downstream"},
        "vae_b_quality_decoder": {"precision": "int8"}})
    trt = FakeTrt(version)
    report, events = _build(models, trt, precision="int8")
    assert sorted(report.built) == ["mapping_quality", "vae_b_quality_decoder"], report.failed
    by_graph = {("mapping" if "mapping" in b["source"] else "decoder"): b for b in trt.builds}
    fp32, int8 = by_graph["mapping"], by_graph["decoder"]
    assert fp32["source"] == str(models / "mapping_quality.onnx") and fp32["cleared"] == ["TF32"]
    assert "INT8" not in fp32["flags"]
    if version.startswith("10"):
        assert int8["flags"] == ["FP16", "INT8"]
    assert any("mapping_quality: fp32, not int8: models.json keeps" in e for e in events if isinstance(e, str))
    # keyed under int8, as the backend looks it up, and it says what was built
    cache = EngineCache(models / "engines")
    entry = manifest["graphs"]["mapping_quality"]
    path, why = cache.find("mapping_quality", model_digest(models, entry, "int8"), "int8", H100.name,
                           H100.compute_capability, version)
    assert path is not None, why
    record = json.loads(path.with_suffix(".json").read_text())
    assert record["built_precision"] == "fp32" and "amplified" in record["precision_reason"]


def test_both_backends_read_one_per_graph_precision_rule(models):
    """onnxruntime's int8 graph choice and the shared rule (runtime/graph_precision.py) agree."""
    from trt_restore.backends.onnxruntime_backend import OrtBackend
    from trt_restore.graph_precision import graph_precision

    manifest = _with_qdq(models, ["vae_b_quality_decoder"], {
        "mapping_quality": {"precision": "fp32", "file": "mapping_quality.onnx"},
        "vae_b_quality_decoder": {"precision": "int8", "file": "vae_b_quality_decoder.onnx"}})
    backend = OrtBackend(models, precision="int8")
    for graph in manifest["graphs"]:
        rule = graph_precision(manifest, graph, "int8", "onnxruntime")
        assert (graph in backend._int8) == (rule.precision == "int8"), graph
        assert graph_precision(manifest, graph, "int8", "tensorrt") == rule
    assert graph_precision(manifest, "face_256", "int8", "onnxruntime").precision is None
    assert graph_precision(manifest, "mapping_quality", "fp16").precision == "fp16"


def test_a_rebuild_for_other_settings_removes_the_plan_it_replaces(models):
    """After models.json changes a graph's int8 precision, only the new plan remains, so the
    backend's lookup cannot pick the old one by name."""
    _with_qdq(models, ["mapping_quality", "vae_b_quality_decoder"])
    trt = FakeTrt("10.3.0")
    first, _ = _build(models, trt, precision="int8", graphs=("mapping_quality",))
    old = first.engines["mapping_quality"]
    _with_qdq(models, [], {"mapping_quality": {"precision": "fp32"}})
    report, events = _build(models, trt, precision="int8", graphs=("mapping_quality",))
    assert report.built == ["mapping_quality"] and not old.exists()
    assert [r["graph"] for _, r in EngineCache(models / "engines").entries()] == ["mapping_quality"]
    assert any(f"removed {old.name}" in e for e in events if isinstance(e, str))


def test_a_failed_build_names_tensorrts_error(models):
    from trt_restore.engines.trt_logging import LOG

    trt = FakeTrt("10.3.0")
    original = trt.Builder

    def builder(logger):
        b = original(logger)

        def fail(network, config):
            LOG.error("Error Code 2: OutOfMemory (Requested size was 4445452804 bytes.)")
            return None

        b.build_serialized_network = fail
        return b

    trt.Builder = builder
    report, _ = _build(models, trt, graphs=("mapping_quality",))
    assert report.failed["mapping_quality"].endswith("could not build an engine: Error Code 2: OutOfMemory "
                                                     "(Requested size was 4445452804 bytes.)")


def test_cli_max_aspect(models, monkeypatch):
    from trt_restore.engines import environment

    result = CliRunner().invoke(app, ["build-engines", "--models", str(models), "--max-aspect", "0.5"])
    assert result.exit_code == 2 and "--max-aspect 0.5 must be at least 1" in result.output
    trt = FakeTrt("11.1.0")
    monkeypatch.setattr(environment, "import_tensorrt", lambda require_builder=True: trt)
    monkeypatch.setattr(environment, "gpu_info", lambda device=0: H100)
    result = CliRunner().invoke(app, ["build-engines", "--models", str(models), "--max-aspect", "3",
                                      "--graph", "mapping_quality"])
    assert result.exit_code == 0, result.output
