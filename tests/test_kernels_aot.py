"""The shipped cubins: present, matching the manifest, resource-checked, reproducible.

No GPU: cuobjdump/nvdisasm (PyPI wheels) read registers, stack (spills) and the SASS. What
only a GPU can prove (that they run, and how fast) is benchmarks/gpu_check.sh.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from trt_restore.engines.kernels import aot, configs, cubin_info

MANIFEST = json.loads((aot.CUBIN_DIR / aot.MANIFEST).read_text())
ENTRIES = [(name, int(arch)) for name, k in sorted(MANIFEST["kernels"].items()) for arch in sorted(k["arches"])]
MAIN = f"attention_{configs.MAIN_ATTENTION}_{configs.DEFAULT_PRECISION}"
KNOWN_SPILLS: dict = {}  # (kernel, arch) -> allowed bytes of stack; none at present
needs_tools = pytest.mark.skipif(cubin_info.find_tool("cuobjdump") is None, reason="no cuobjdump (kernels extra)")


def test_manifest_covers_every_kernel_and_arch():
    assert sorted(MANIFEST["kernels"]) == sorted(s.name for s in aot.kernel_specs())
    for entry in MANIFEST["kernels"].values():
        assert sorted(map(int, entry["arches"])) == sorted(configs.ARCHES)
        for info in entry["arches"].values():
            data = (aot.CUBIN_DIR / info["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == info["sha256"]
            assert data[:4] == b"\x7fELF"


@needs_tools
@pytest.mark.parametrize("name,arch", ENTRIES)
def test_resources_within_limits(name, arch):
    info = MANIFEST["kernels"][name]["arches"][str(arch)]
    usage = cubin_info.resource_usage(aot.CUBIN_DIR / info["file"])
    assert info["shared"] <= configs.SHARED_OPTIN[arch]
    assert usage["registers"] <= 255
    if (name, arch) not in KNOWN_SPILLS:
        assert usage["stack"] == 0 and usage["local"] == 0, f"{name} sm_{arch} spills: {usage}"
    else:
        assert usage["stack"] <= KNOWN_SPILLS[name, arch], usage


@needs_tools
@pytest.mark.parametrize("arch", configs.ARCHES)
def test_attention_uses_tensor_cores(arch):
    ops = cubin_info.sass_opcodes(aot.CUBIN_DIR / MANIFEST["kernels"][MAIN]["arches"][str(arch)]["file"])
    wanted = ("HGMMA", "HMMA") if arch >= 90 else ("HMMA",)
    assert any(ops.get(op, 0) for op in wanted), f"sm_{arch}: no {wanted} in the SASS"


def _regenerate(tmp_path, arches, kernels):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")  # compile for real, not from the cache
    args = [sys.executable, "-m", "trt_restore.engines.kernels.aot", "--out", str(tmp_path / "out")]
    args += [f"--arch={a}" for a in arches] + [f"--kernel={k}" for k in kernels or []]
    subprocess.run(args, check=True, env=env, capture_output=True, timeout=900)
    for name in kernels or [s.name for s in aot.kernel_specs()]:
        for arch in arches:
            rel = f"sm_{arch}/{name}.cubin"
            assert (tmp_path / "out" / rel).read_bytes() == (aot.CUBIN_DIR / rel).read_bytes(), f"{rel} differs"


def test_regenerating_the_main_kernel_gives_identical_bytes(tmp_path):
    pytest.importorskip("triton")
    _regenerate(tmp_path, [87], ["compact", MAIN])


@pytest.mark.slow
def test_regenerating_everything_gives_identical_bytes(tmp_path):
    pytest.importorskip("triton")
    _regenerate(tmp_path, list(configs.ARCHES), None)  # everything, with the C kernel table
    shipped = json.loads((aot.CUBIN_DIR / aot.MANIFEST).read_text())
    assert json.loads((tmp_path / "out" / aot.MANIFEST).read_text())["kernels"] == shipped["kernels"]
    assert (tmp_path / "out" / aot.TABLE).read_bytes() == (aot.CUBIN_DIR / aot.TABLE).read_bytes()
