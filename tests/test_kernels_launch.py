"""The cuda-python launcher of the AOT cubins, against a recording stand-in of the driver API
(no GPU here): which cubin a GPU gets, the one-line error for a GPU without one, and that
every launch passes the manifest's parameters, grid, warps and shared memory."""
from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest
from trt_restore.engines.kernels import configs, launch


class FakeDriver:
    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    def __init__(self):
        self.loaded, self.launches = [], []

    def cuModuleLoadData(self, data):
        assert data[:4] == b"\x7fELF"
        self.loaded.append(len(data))
        return 0, f"module{len(self.loaded)}"

    def cuModuleGetFunction(self, module, symbol):
        return 0, (module, symbol.decode())

    def cuFuncSetAttribute(self, fn, attr, value):
        return (0,)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        values, types = params
        assert len(values) == len(types) and all(t in (ctypes.c_void_p, ctypes.c_int32) for t in types)
        self.launches.append((fn[1], (gx, gy, gz), bx, shared, stream, values))
        return (0,)


MANIFEST = json.loads((launch.CUBIN_DIR / "manifest.json").read_text())


@pytest.mark.parametrize("cc,arch", [((8, 0), 80), ((8, 6), 86), ((8, 7), 87), ((8, 9), 89), ((9, 0), 90)])
def test_each_target_gets_its_cubin(cc, arch):
    assert launch.pick_arch(MANIFEST, *cc) == arch


@pytest.mark.parametrize("cc", [(7, 5), (10, 0), (12, 0)])
def test_a_gpu_without_cubin_gets_a_one_line_error_naming_it(cc):
    with pytest.raises(launch.KernelUnavailable) as err:
        launch.pick_arch(MANIFEST, *cc)
    assert f"compute capability {cc[0]}.{cc[1]}" in str(err.value) and "\n" not in str(err.value)


def test_attention_and_patch_match_launch_sequences():
    cu = FakeDriver()
    kernels = launch.AotKernels(8, 7, driver=cu)
    n = 1000
    kernels.masked_attention(1, 2, 3, 4, 5, n, workspace=1 << 20, stream=77)
    (compact, attention) = cu.launches
    assert compact[0] == "compact_kernel" and compact[1] == (1, 1, 1)
    cfg = configs.ATTENTION_CONFIGS[configs.MAIN_ATTENTION]
    assert attention[0] == "masked_attention_kernel" and attention[1] == (-(-n // cfg.block_m), 512 // cfg.block_d, 1)
    entry = MANIFEST["kernels"][f"attention_{cfg.name}_{configs.DEFAULT_PRECISION}"]
    assert attention[2] == 32 * entry["num_warps"] and attention[3] == entry["arches"]["87"]["shared"]
    assert attention[4] == 77 and attention[5][-2:] == (0, 0) and attention[5][-3] == n
    cu.launches.clear()
    kernels.patch_match(1, 2, 3, 512, 32, 48, 4, workspace=1 << 20)
    assert [name for name, *_ in cu.launches] == ["patch_flags_kernel", "compact_kernel", "patch_best_kernel",
                                                 "patch_compose_kernel"]
    assert cu.launches[-1][1] == (8 * 12, -(-512 * 16 // configs.COMPOSE_BLOCK_K), 1)


def test_patch_match_off_the_patch_multiple_launches_the_margin_kernel():
    """The margins are zeroed on the device (the kernel reads the hole count); no whole patch:
    nothing is launched (out stays the caller's copy of x)."""
    cu = FakeDriver()
    kernels = launch.AotKernels(8, 7, driver=cu)
    kernels.patch_match(1, 2, 3, 512, 21, 13, 4, workspace=1 << 20)
    assert [name for name, *_ in cu.launches][-2:] == ["patch_compose_kernel", "patch_margin_kernel"]
    margin = cu.launches[-1]
    assert margin[1] == (-(-512 * (21 * 13 - 20 * 12) // configs.MARGIN_BLOCK), 1, 1)
    assert margin[5] == (3, 1 << 20, 512, 21, 13, 4, 0, 0)  # out, counts (workspace start), C, H, W, size
    cu.launches.clear()
    kernels.patch_match(1, 2, 3, 512, 6, 5, 8, workspace=1 << 20)
    assert cu.launches == []


def test_launcher_imports_neither_triton_nor_torch():
    code = ("import sys\nimport trt_restore.engines.kernels.launch, trt_restore.backends.tensorrt_backend\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'triton'))\nassert not bad, bad\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_tensorrt_backend_runs_the_attention_steps_on_the_cubins(tmp_path, monkeypatch):
    """The backend (stand-ins for TensorRT, cudart and the driver) launches compact + attention
    on its device buffers, and copies x before the four patch-match kernels."""
    from types import SimpleNamespace

    import numpy as np
    from engines_support import H100, FakeCudart, FakeTrt, models_dir
    from trt_restore.backends.tensorrt_backend import TrtBackend
    from trt_restore.engines.builder import BuildOptions, build_engines

    models = models_dir(tmp_path / "models")
    trt, cudart, cu = FakeTrt("10.3.0"), FakeCudart(), FakeDriver()
    cudart.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2,
                                            cudaMemcpyDeviceToDevice=3)
    build_engines(BuildOptions(models_dir=models, max_size=(512, 512), opt_size=(256, 256)), trt=trt, gpu=H100,
                  on_event=lambda m: None)
    monkeypatch.setattr(launch, "_driver", lambda: cu)
    backend = TrtBackend(models, trt=trt, cudart=cudart, gpu=H100)
    assert "sm_90" in backend.describe()
    rng = np.random.default_rng(0)
    theta, phi, g = (rng.standard_normal((512, 300)).astype(np.float32) for _ in range(3))
    backend.masked_attention(theta, phi, g, rng.random(300) > 0.5)
    (compact, attention) = cu.launches
    assert compact[5][0] in cudart.buffers and compact[5][1] == 300
    assert attention[5][:3] == tuple(p for p in attention[5][:3] if p in cudart.buffers)  # theta, phi, g on device
    assert attention[5][3] == compact[5][2] and attention[5][5] == compact[5][4]  # the compaction's outputs
    cu.launches.clear()
    backend.patch_match(rng.standard_normal((16, 8, 12)).astype(np.float32), np.zeros((8, 12), np.float32), 4)
    assert [name for name, *_ in cu.launches][-1] == "patch_compose_kernel"
    assert 3 in [kind for kind, _ in cudart.copies]  # out <- x on the device first
    cu.launches.clear()
    backend.patch_match(rng.standard_normal((16, 9, 13)).astype(np.float32), np.ones((9, 13), np.float32), 4)
    assert [name for name, *_ in cu.launches][-1] == "patch_margin_kernel"  # sides off the patch multiple
    assert cu.launches[-1][5][0] == cu.launches[-2][5][1]  # on compose's output
    backend.close()
