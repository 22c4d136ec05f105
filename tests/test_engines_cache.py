"""Engine cache keys, sidecars, invalidation, and optimisation profiles (no TensorRT needed)."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from trt_restore.engines import profiles
from trt_restore.engines.cache import EngineCache, EngineKey, runtime_accepts
from trt_restore.engines.environment import TrtVersion, build_strategy
from trt_restore.engines.profiles import Profile, ProfileError, graph_profile, parse_size


def _key(**changes) -> EngineKey:
    base = EngineKey(graph="mapping_quality", model_sha256="a" * 64, precision="fp16",
                     profile=graph_profile("mapping_quality", (2048, 1536), (1024, 768)),
                     gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0", tensorrt_version="10.3.0",
                     strategy=build_strategy(TrtVersion.parse("10.3.0"), "fp16").describe())
    return replace(base, **changes)


def test_key_digest_is_stable_and_covers_every_field():
    key = _key()
    assert key.digest() == _key().digest()
    assert key.stem.startswith("mapping_quality-fp16-") and len(key.stem.split("-")[-1]) == 16
    variants = [_key(model_sha256="b" * 64), _key(precision="fp32"), _key(gpu_name="Orin"),
                _key(compute_capability="8.7"), _key(tensorrt_version="11.1.0"), _key(version_compatible=True),
                _key(profile=graph_profile("mapping_quality", (4096, 4096), (1024, 768))), _key(graph="detection")]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and key.digest() not in digests


def test_sidecar_round_trip_and_states(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    assert cache.status(key).state == "missing"
    status = cache.store(key, b"PLAN-BYTES", {"build_seconds": 1.5})
    assert status.valid, status.reason
    engine, sidecar = cache.paths(key)
    record = json.loads(sidecar.read_text())
    assert EngineKey.from_fields(record) == key
    assert record["engine_sha256"] and record["engine_bytes"] == 10 and record["build_seconds"] == 1.5
    assert Profile.from_json(record["profile"]) == key.profile

    engine.write_bytes(b"PLAN-BYTEZ")  # same size, other content
    assert cache.status(key).state == "corrupt"
    engine.write_bytes(b"short")
    assert cache.status(key).state == "corrupt"
    cache.store(key, b"PLAN-BYTES")
    record["model_sha256"] = "c" * 64  # a sidecar that names other settings under this name
    sidecar.write_text(json.dumps(record))
    stale = cache.status(key)
    assert stale.state == "stale" and "model_sha256" in stale.reason
    sidecar.write_text("{not json")
    assert cache.status(key).state == "corrupt"
    sidecar.unlink()
    assert cache.status(key).state == "missing"


def test_find_refuses_stale_and_foreign_plans(tmp_path):
    cache = EngineCache(tmp_path)
    key = _key()
    cache.store(key, b"plan")
    args = dict(graph="mapping_quality", model_sha256="a" * 64, precision="fp16", gpu_name=key.gpu_name,
                compute_capability="9.0", tensorrt_version="10.3.0")
    path, _ = cache.find(**args)
    assert path == cache.paths(key)[0]
    assert cache.find(**args, input_shapes={"latent": (1, 64, 192, 256)})[0] is not None
    path, why = cache.find(**args, input_shapes={"latent": (1, 64, 1024, 1024)})
    assert path is None and "does not cover" in why
    path, why = cache.find(**dict(args, model_sha256="b" * 64))
    assert path is None and "another export" in why
    path, why = cache.find(**dict(args, gpu_name="Orin", compute_capability="8.7"))
    assert path is None and "built for NVIDIA H100" in why
    path, why = cache.find(**dict(args, tensorrt_version="10.4.0"))
    assert path is None and "TensorRT 10.3.0" in why
    path, why = cache.find(**dict(args, precision="int8"))
    assert path is None
    cache.paths(key)[0].write_bytes(b"tampered")
    path, why = cache.find(**args)
    assert path is None and "sha256" in why


def test_version_compatible_plans_run_on_newer_tensorrt_of_the_same_major(tmp_path):
    assert runtime_accepts("10.3.0", "10.3.0", False)
    assert not runtime_accepts("10.3.0", "10.4.0", False)
    assert runtime_accepts("10.3.0", "10.4.0", True)
    assert not runtime_accepts("10.4.0", "10.3.0", True)
    assert not runtime_accepts("10.3.0", "11.1.0", True)
    cache = EngineCache(tmp_path)
    key = _key(version_compatible=True)
    cache.store(key, b"plan")
    path, _ = cache.find("mapping_quality", "a" * 64, "fp16", key.gpu_name, "9.0", "10.8.1")
    assert path is not None


def test_tensorrt_version_logic():
    v10, v11 = TrtVersion.parse("10.3.0.26"), TrtVersion.parse("11.1.0")
    assert (v10.major, v10.minor) == (10, 3) and not v10.strongly_typed_only and v10.has_precision_flags
    assert v11.strongly_typed_only and not v11.has_precision_flags
    assert build_strategy(v10, "fp16").builder_flags == ("FP16",)
    assert build_strategy(v10, "fp16").onnx_variant == "fp32" and not build_strategy(v10, "fp16").strongly_typed
    assert build_strategy(v10, "int8").builder_flags == ("INT8", "FP16")
    assert build_strategy(v10, "int8").onnx_variant == "qdq"
    s11 = build_strategy(v11, "fp16")
    assert s11.builder_flags == () and s11.strongly_typed and s11.onnx_variant == "fp16"
    assert build_strategy(v11, "int8").onnx_variant == "qdq"
    assert build_strategy(v10, "fp32").clear_flags == ("TF32",)
    with pytest.raises(ValueError):
        build_strategy(v10, "bf16")
    with pytest.raises(ValueError):
        TrtVersion.parse("unknown")


def test_profile_table_matches_the_exported_graphs():
    from trt_restore.export.graphs import GRAPHS

    assert set(profiles.GRAPH_IO) == {g.name for g in GRAPHS}
    for spec in GRAPHS:
        inputs, multiple = profiles.GRAPH_IO[spec.name]
        assert multiple == spec.multiple
        assert {k: (c, float(s)) for k, (c, s) in spec.inputs.items()} == inputs


def test_profiles_from_sizes():
    p = graph_profile("mapping_scratch_tail", (2000, 1000), (1000, 800))
    shapes = {name: (lo, opt, hi) for name, lo, opt, hi in p.shapes}
    assert set(shapes) == {"attended", "valid", "x"}
    lo, opt, hi = shapes["x"]
    assert lo == (1, 512, 1, 1) and opt == (1, 512, 200, 250) and hi == (1, 512, 500, 500)  # long side both axes
    assert shapes["valid"][2] == (1, 1, 500, 500)
    enc = {n: (lo, opt, hi) for n, lo, opt, hi in graph_profile("vae_a_quality_encoder", (1023, 767), (640, 480)).shapes}
    assert enc["image"] == ((1, 3, 4, 4), (1, 3, 480, 640), (1, 3, 1024, 1024))
    hr = {n: hi for n, _, _, hi in graph_profile("mapping_hr_step1", (1000, 1000), (512, 512)).shapes}
    assert hr["z"] == (1, 512, 252, 252)  # sides rounded up to multiples of 16 (as the original), then / 4
    det = {n: (lo, opt, hi) for n, lo, opt, hi in graph_profile("detection", (4000, 3000), (1600, 1200)).shapes}
    # 341.3 -> 336 (nearest); by default every aspect `restore` accepts (64:1 -> 32x2048)
    assert det["gray"] == ((1, 1, 32, 32), (1, 1, 256, 336), (1, 1, 2048, 2048))
    det3 = {n: (lo, hi) for n, lo, _, hi in graph_profile("detection", (4000, 3000), (1600, 1200), 3).shapes}
    assert det3["gray"] == ((1, 1, 256, 256), (1, 1, 768, 768))
    face = {n: (lo, opt, hi) for n, lo, opt, hi in graph_profile("face_512", (4000, 3000), (1600, 1200)).shapes}
    assert face["face"] == ((1, 3, 512, 512), (1, 3, 512, 512), (4, 3, 512, 512))
    assert p.covers({"x": (1, 512, 300, 200), "valid": (1, 1, 300, 200)})
    assert not p.covers({"x": (1, 512, 501, 20)})
    assert not p.covers({"unknown": (1, 1, 1, 1)})
    assert Profile.from_json(p.to_json()) == p


def test_profile_errors():
    assert parse_size("2048x1536") == (2048, 1536)
    assert parse_size(" 640 X 480 ") == (640, 480)
    for bad in ("2048", "x", "10x10", "-5x20"):
        with pytest.raises(ProfileError):
            parse_size(bad)
    with pytest.raises(ProfileError, match="larger than --max-size"):
        graph_profile("mapping_quality", (640, 480), (1024, 768))
    with pytest.raises(ProfileError, match="no profile rule"):
        graph_profile("vae_a_quality_encoder.layer3", (640, 480), (320, 240))
    with pytest.raises(ProfileError):
        Profile.from_json({"x": {"min": [1]}})


def test_detection_profile_agrees_with_the_runtime_rule():
    from trt_restore import preprocess
    from trt_restore.preprocess import detection_size

    for w, h in ((1000, 700), (700, 1000), (512, 512), (3000, 1000), (333, 517), (1600, 1200), (1201, 1600),
                 (4000, 1000), (9000, 1000), (16000, 250), (250, 16000)):
        assert profiles.detection_shape(w, h) == detection_size(h, w)
    assert profiles.DETECTION_MAX_LONG_SIDE == preprocess.DETECTION_MAX_LONG_SIDE
    assert profiles.RESTORE_MAX_ASPECT == preprocess.MAX_ASPECT


def test_detection_profile_covers_every_photo_restore_accepts():
    """Issue 14: the profile stopped at 3:1 (768 px), so wider photos failed in scratch/HR mode
    under TensorRT with advice (--max-size) that could not help."""
    from trt_restore.preprocess import MAX_ASPECT, check_aspect, detection_size

    profile = graph_profile("detection")
    for w, h in ((1000, 250), (4000, 1000), (3200, 400), (8000, 1000), (16000, 1000), (640, 10), (10, 640),
                 (6400, 100), (1000, 999), (16, 16)):
        check_aspect(h, w)  # restore accepts it
        assert profile.covers({"gray": (1, 1, *detection_size(h, w))}), (w, h)
    narrow = graph_profile("detection", max_aspect=3)
    assert not narrow.covers({"gray": (1, 1, *detection_size(1000, 4000))})
    assert "--max-aspect" in profiles.shape_remedy("detection") and "--max-size" in profiles.shape_remedy("encoder")
    with pytest.raises(ProfileError, match="max-aspect"):
        graph_profile("detection", (4000, 1000), (4000, 1000), max_aspect=2)
    assert MAX_ASPECT == profiles.DEFAULT_MAX_ASPECT


def test_doctor_lists_cached_engines(tmp_path):
    from trt_restore.doctor import report
    from trt_restore.engines.cache import describe_cache

    assert "none in" in describe_cache(tmp_path / "engines")[0]
    cache = EngineCache(tmp_path / "engines")
    cache.store(_key(), b"plan")
    lines = describe_cache(tmp_path / "engines")
    assert lines[0].endswith(f"1 in {cache.root}") and "mapping_quality fp16: NVIDIA H100" in lines[1]
    assert "TensorRT engines        1 in" in report(tmp_path)


def test_tensorrt_rtx_versions_are_their_own_flavour():
    """TensorRT-RTX reports 1.x: not a TensorRT 1.x with precision flags, never mixed with TensorRT."""
    from types import SimpleNamespace

    from trt_restore.engines.environment import tensorrt_version

    rtx = tensorrt_version(SimpleNamespace(__name__="tensorrt_rtx_bindings", __version__="1.7.1.116"))
    assert rtx.rtx and str(rtx) == "rtx-1.7.1.116" and rtx.label == "TensorRT-RTX 1.7.1.116"
    assert rtx.strongly_typed_only and not rtx.has_precision_flags
    assert build_strategy(rtx, "fp16").onnx_variant == "fp16" and build_strategy(rtx, "int8").builder_flags == ()
    assert TrtVersion.parse(str(rtx)) == rtx
    plain = tensorrt_version(SimpleNamespace(__name__="tensorrt", __version__="10.3.0"))
    assert not plain.rtx and plain.label == "TensorRT 10.3.0"
    assert not runtime_accepts("rtx-1.7.1", "1.7.1", True) and not runtime_accepts("10.3.0", "rtx-10.3.0", False)
    assert runtime_accepts("rtx-1.7.1.116", "rtx-1.7.1.116", False)
