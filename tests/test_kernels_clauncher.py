"""The C launcher (trt_restore_kernels.cpp) run against a fake libcuda.so.1 (no GPU here).

The fake driver reports a compute capability, accepts the cubins and logs every launch, so the
C path's launches (kernel, grid, block, shared memory, scalar arguments) can be compared with
the Python launcher's (launch.py), which test_kernels_launch.py checks against the manifest.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from trt_restore.engines import kernels
from trt_restore.engines.kernels import launch

GCC = shutil.which("gcc")
CUDA_INCLUDE = kernels.cuda_include_dir()
pytestmark = pytest.mark.skipif(GCC is None or CUDA_INCLUDE is None or shutil.which("g++") is None,
                                reason="gcc/g++ and the CUDA headers are needed")

FAKE_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult; typedef int CUdevice; typedef unsigned long long CUdeviceptr;
static FILE* out(void) { static FILE* f; if (!f) f = fopen(getenv("FAKE_CUDA_LOG"), "w"); return f; }
CUresult cuInit(unsigned flags) { (void)flags; return 0; }
CUresult cuCtxGetDevice(CUdevice* d) { *d = 0; return 0; }
CUresult cuDeviceGetAttribute(int* v, int attr, CUdevice d) {
    (void)d; *v = attr == 75 ? atoi(getenv("FAKE_CC_MAJOR")) : atoi(getenv("FAKE_CC_MINOR")); return 0; }
CUresult cuModuleLoadData(void** m, const void* image) {
    if (memcmp(image, "\x7f" "ELF", 4) != 0) return 200; *m = (void*)1; return 0; }
CUresult cuModuleGetFunction(void** f, void* m, const char* name) { (void)m; *f = strdup(name); return 0; }
CUresult cuFuncSetAttribute(void* f, int a, int v) { (void)f; (void)a; (void)v; return 0; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void* st) {
    (void)st; fprintf(out(), "{\"copy\": [%llu, %llu, %zu]}\n", d, s, n); fflush(out()); return 0; }
CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                        unsigned shared, void* stream, void** params, void** extra) {
    (void)by; (void)bz; (void)stream; (void)extra;
    fprintf(out(), "{\"kernel\": \"%s\", \"grid\": [%u, %u, %u], \"block\": %u, \"shared\": %u, \"first\": %llu}\n",
            (const char*)f, gx, gy, gz, bx, shared, *(unsigned long long*)params[0]);
    fflush(out()); return 0; }
"""

CALLER = textwrap.dedent("""
    import ctypes, sys
    lib = ctypes.CDLL(sys.argv[1])
    vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    lib.trtr_masked_attention.argtypes = [vp] * 5 + [i] * 5 + [vp, sz, vp]
    lib.trtr_patch_match.argtypes = [vp] * 3 + [i] * 6 + [vp, sz, vp]
    lib.trtr_status_string.restype = ctypes.c_char_p
    ws = 1 << 30
    status = lib.trtr_masked_attention(0x1000, 0x2000, 0x3000, 0x4000, 0x5000, 2, 512, 1000, 0, -1, ws, 1 << 20, None)
    print("attention", status, lib.trtr_status_string(status).decode())
    status = lib.trtr_patch_match(0x1000, 0x2000, 0x3000, 1, 512, 32, 48, 4, 0, ws, 1 << 20, None)
    print("patch", status, lib.trtr_status_string(status).decode())
    status = lib.trtr_patch_match(0x1000, 0x2000, 0x3000, 1, 512, 21, 13, 4, 0, ws, 1 << 20, None)
    print("patch off the multiple", status, lib.trtr_status_string(status).decode())
    status = lib.trtr_patch_match(0x1000, 0x2000, 0x3000, 1, 512, 6, 5, 8, 0, ws, 1 << 20, None)
    print("patch without a whole patch", status, lib.trtr_status_string(status).decode())
""")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fake-cuda")
    (folder / "fake.c").write_text(FAKE_DRIVER)
    subprocess.run([GCC, "-shared", "-fPIC", "-o", str(folder / "libcuda.so.1"), str(folder / "fake.c")], check=True)
    lib = folder / "libtrt_restore_kernels.so"
    kernels.build(kernels.BuildSpec("kernels", lib, werror=True, cuda_include=CUDA_INCLUDE))
    return folder, lib


def _run(built, major, minor):
    folder, lib = built
    log = folder / f"launches-{major}{minor}.jsonl"
    env = {"LD_LIBRARY_PATH": str(folder), "FAKE_CUDA_LOG": str(log), "FAKE_CC_MAJOR": str(major),
           "FAKE_CC_MINOR": str(minor), "TRT_RESTORE_CUBIN_DIR": str(launch.CUBIN_DIR)}
    proc = subprocess.run([sys.executable, "-c", CALLER, str(lib)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return proc.stdout, records


class RecordingDriver:
    """The Python launcher's view of the same calls (cuda-python stand-in)."""

    class CUfunction_attribute:
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8

    def __init__(self):
        self.launches = []

    def cuModuleLoadData(self, data):
        return 0, "module"

    def cuModuleGetFunction(self, module, symbol):
        return 0, symbol.decode()

    def cuFuncSetAttribute(self, fn, attr, value):
        return (0,)

    def cuLaunchKernel(self, fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        self.launches.append({"kernel": fn, "grid": [gx, gy, gz], "block": bx, "shared": shared,
                              "first": params[0][0]})
        return (0,)


def test_c_launches_equal_the_python_launches(built):
    stdout, records = _run(built, 8, 7)
    assert "attention 0 success" in stdout and "patch 0 success" in stdout
    assert "patch off the multiple 0 success" in stdout and "patch without a whole patch 0 success" in stdout
    cu = RecordingDriver()
    py = launch.AotKernels(8, 7, driver=cu)
    plane = 512 * 1000 * 4
    for b in range(2):  # the C API loops over the batch: item b at offset b * plane
        py.masked_attention(0x1000 + b * plane, 0x2000 + b * plane, 0x3000 + b * plane, 0x4000 + b * 4000,
                            0x5000 + b * plane, 1000, 1 << 30)
    py.patch_match(0x1000, 0x2000, 0x3000, 512, 32, 48, 4, 1 << 30)
    py.patch_match(0x1000, 0x2000, 0x3000, 512, 21, 13, 4, 1 << 30)  # margins: + patch_margin_kernel
    py.patch_match(0x1000, 0x2000, 0x3000, 512, 6, 5, 8, 1 << 30)  # no whole patch: the copy only
    launches = [r for r in records if "kernel" in r]
    assert launches == cu.launches and launches[-1]["kernel"] == "patch_margin_kernel"
    assert [r["copy"] for r in records if "copy" in r] == [[0x3000, 0x1000, 512 * h * w * 4]
                                                          for h, w in ((32, 48), (21, 13), (6, 5))]


def test_a_gpu_without_cubin_gets_an_error_naming_it(built):
    stdout, records = _run(built, 7, 5)
    assert "compute capability 7.5" in stdout and not records
