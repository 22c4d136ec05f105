"""The TensorRT backend: why `auto` falls back, and its buffer/stream handling with stand-ins."""
from __future__ import annotations

import numpy as np
import pytest

from engines_support import H100, FakeCudart, FakeTrt, models_dir
from trt_restore import attention
from trt_restore.backends import create_backend
from trt_restore.backends.tensorrt_backend import TrtBackend, TrtBackendUnavailable, availability
from trt_restore.engines.builder import BuildOptions, build_engines
from trt_restore.engines.environment import GpuUnavailable, gpu_info


@pytest.fixture
def models(tmp_path):
    return models_dir(tmp_path / "models")


def _tensorrt_installed() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_tensorrt_installed(), reason="TensorRT is installed here")
def test_auto_falls_back_to_onnxruntime_and_says_why(models):
    backend = create_backend("auto", models)
    assert backend.name == "ort"
    assert backend.fallback_reason.startswith("TensorRT not used: no TensorRT:")
    assert "onnxruntime (CPU)" in backend.fallback_reason
    with pytest.raises(RuntimeError, match="TensorRT backend unavailable: no TensorRT"):
        create_backend("trt", models)
    assert create_backend("ort", models).name == "ort"
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("cuda", models)


def test_fallback_reasons_in_order(models, tmp_path):
    trt = FakeTrt("10.3.0")
    # no GPU: the CUDA bindings report an error (or are missing)
    with pytest.raises(GpuUnavailable, match="cudaGetDeviceCount"):
        gpu_info(cudart=FakeCudart(error=35))
    with pytest.raises(GpuUnavailable, match="no CUDA GPU"):
        gpu_info(cudart=FakeCudart(device_count=0))
    assert gpu_info(cudart=FakeCudart()).name == "NVIDIA H100 80GB HBM3"
    ok, why = availability(models, trt=trt)  # real probe: no cuda-python / no driver on this machine
    if not ok:
        assert why.startswith("no CUDA GPU:")
    ok, why = availability(tmp_path / "nothing", trt=trt, gpu=H100)
    assert not ok and why.startswith("no models:")
    ok, why = availability(models, trt=trt, gpu=H100)
    assert not ok and "no fp16 engines for NVIDIA H100" in why and "build-engines" in why
    build_engines(BuildOptions(models_dir=models, graphs=("mapping_quality",)), trt=trt, gpu=H100,
                  on_event=lambda m: None)
    assert availability(models, trt=trt, gpu=H100) == (True, "")
    ok, why = availability(models, precision="fp32", trt=trt, gpu=H100)
    assert not ok and "no fp32 engines" in why
    ok, why = availability(models, trt=FakeTrt("10.4.0"), gpu=H100)
    assert not ok and "TensorRT 10.3.0" in why


def test_backend_runs_engines_with_reused_pinned_buffers(tmp_path, monkeypatch, gpu_kernels):
    models = models_dir(tmp_path / "models", graphs=(("mapping_quality", "latent", "mapped", 64),
                                                     ("vae_b_quality_decoder", "latent", "output", 64),
                                                     ("face_256", "face", "restored", 3)))
    trt, cudart = FakeTrt("10.3.0"), FakeCudart()
    build_engines(BuildOptions(models_dir=models, max_size=(512, 512), opt_size=(256, 256),
                               graphs=("mapping_quality", "vae_b_quality_decoder")), trt=trt, gpu=H100,
                  on_event=lambda m: None)
    monkeypatch.setenv("TRT_RESTORE_PLUGIN_LIB", "/nonexistent/lib.so")
    from trt_restore.engines import kernels

    monkeypatch.setattr(kernels, "find_library", lambda explicit=None: None)
    backend = TrtBackend(models, trt=trt, cudart=cudart, gpu=H100)
    assert "TensorRT 10.3.0 on NVIDIA H100" in backend.describe() and "stand-in kernels" in backend.describe()
    x = np.random.default_rng(0).standard_normal((1, 64, 32, 48)).astype(np.float32)
    out = backend.run("mapping_quality", {"latent": x})
    np.testing.assert_array_equal(out["out"], x * 2)
    allocations = cudart.allocations
    smaller = x[:, :, :16, :40].copy()
    np.testing.assert_array_equal(backend.run("mapping_quality", {"latent": smaller})["out"], smaller * 2)
    assert cudart.allocations == allocations  # buffers only grow
    kinds = [kind for kind, _ in cudart.copies]
    assert kinds.count(1) == 2 and kinds.count(2) == 2
    with pytest.raises(RuntimeError, match="no TensorRT engine for mapping_quality"):
        backend.run("mapping_quality", {"latent": np.zeros((1, 64, 200, 200), np.float32)})
    # a global graph without any engine is an error naming the graph and the remedy, never a
    # silent onnxruntime session (issue 14)
    for plan in (models / "engines").glob("vae_b_quality_decoder-*"):
        plan.unlink()
    with pytest.raises(RuntimeError, match=r"no fp16 TensorRT engine for vae_b_quality_decoder .*build-engines"):
        backend.run("vae_b_quality_decoder", {"latent": x})
    assert not backend.cpu_graphs
    # the face generators (no engine under int8: no Q/DQ model) fall back to onnxruntime, logged
    import onnxruntime as ort

    face = np.random.default_rng(2).standard_normal((1, 3, 16, 16)).astype(np.float32)
    want = ort.InferenceSession(str(models / "face_256.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"face": face})[0]
    np.testing.assert_allclose(backend.run("face_256", {"face": face})["restored"], want, rtol=1e-5, atol=1e-5)
    assert backend.cpu_graphs == {"face_256"} and "on onnxruntime: face_256" in backend.describe()
    # the attention steps go to the GPU kernels
    rng = np.random.default_rng(1)
    theta, phi, g = (rng.standard_normal((512, 40)).astype(np.float32) * 0.05 for _ in range(3))
    valid = rng.random(40) > 0.3
    np.testing.assert_allclose(backend.masked_attention(theta, phi, g, valid),
                               attention.masked_attention(theta, phi, g, valid), rtol=1e-6)
    assert gpu_kernels.calls == ["masked_attention"]
    backend.close()
    assert not cudart.buffers


def test_backend_refuses_to_start_without_engines(models):
    with pytest.raises(TrtBackendUnavailable, match="no fp16 engines"):
        TrtBackend(models, trt=FakeTrt("10.3.0"), cudart=FakeCudart(), gpu=H100)


def test_engine_modules_never_import_torch():
    import subprocess
    import sys

    code = ("import sys\n"
            "import trt_restore.backends.tensorrt_backend, trt_restore.engines.builder, trt_restore.engines.cli\n"
            "import trt_restore.engines.kernels\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx', 'tensorrt'))\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def gpu_kernels(monkeypatch):
    """AotKernels loads (stand-in kernels computing in numpy on the stand-in device memory)."""
    from engines_support import FakeKernels
    from trt_restore.engines.kernels import launch

    kernels = FakeKernels()
    monkeypatch.setattr(launch, "AotKernels", lambda major, minor: kernels)
    return kernels


def test_version_compatible_plans_are_loaded_with_host_code_allowed(models, gpu_kernels):
    """Issue 14: a version-compatible plan embeds the lean runtime (host code); TensorRT >= 10
    refuses to deserialise it unless runtime.engine_host_code_allowed is set."""
    trt = FakeTrt("10.3.0")
    build_engines(BuildOptions(models_dir=models, version_compatible=True, max_size=(256, 256), opt_size=(128, 128)),
                  trt=trt, gpu=H100, on_event=lambda m: None)
    backend = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    x = np.ones((1, 64, 8, 8), np.float32)
    np.testing.assert_array_equal(backend.run("mapping_quality", {"latent": x})["out"], x * 2)
    assert trt.deserialized == [{"version_compatible": True, "host_code_allowed": True}]
    backend.close()


def test_plain_plans_leave_host_code_disallowed(models, gpu_kernels):
    trt = FakeTrt("10.3.0")
    build_engines(BuildOptions(models_dir=models, max_size=(256, 256), opt_size=(128, 128)), trt=trt, gpu=H100,
                  on_event=lambda m: None)
    backend = TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    backend.run("mapping_quality", {"latent": np.ones((1, 64, 8, 8), np.float32)})
    assert trt.deserialized == [{"version_compatible": False, "host_code_allowed": False}]
    backend.close()


def test_missing_gpu_kernels_make_the_backend_unavailable(models, monkeypatch):
    """Issue 14: no cubin for the GPU's compute capability was a warning and a silent numpy
    attention on the host; now `trt` fails and `auto` falls back with the one-line reason."""
    from trt_restore.backends import options as backend_options
    from trt_restore.engines.kernels import launch

    def no_cubin(major, minor):
        raise launch.KernelUnavailable(f"no kernel cubins for sm_{major}{minor}")

    monkeypatch.setattr(launch, "AotKernels", no_cubin)
    trt = FakeTrt("10.3.0")
    build_engines(BuildOptions(models_dir=models, max_size=(256, 256), opt_size=(128, 128)), trt=trt, gpu=H100,
                  on_event=lambda m: None)
    with pytest.raises(TrtBackendUnavailable, match=r"GPU kernels .*no kernel cubins for sm_90"):
        TrtBackend(models, trt=trt, cudart=FakeCudart(), gpu=H100)
    factory = lambda models_dir, options: TrtBackend(models_dir, trt=trt, cudart=FakeCudart(), gpu=H100)
    monkeypatch.setitem(backend_options.REGISTRY, "trt", (backend_options.TrtOptions, factory))
    monkeypatch.setattr("trt_restore.backends.REGISTRY", backend_options.REGISTRY)
    backend = create_backend("auto", models)
    assert backend.name == "ort" and "no kernel cubins for sm_90" in backend.fallback_reason
    with pytest.raises(RuntimeError, match="TensorRT backend unavailable: GPU kernels"):
        create_backend("trt", models)
