"""Compile checks of the kernel launcher, the TensorRT plugins and the C++ example.

Nothing here runs on a GPU, and no CUDA code is compiled: the kernels are the Triton AOT cubins
(test_kernels_aot.py checks them); trt_restore_kernels.cpp launches them through the driver API.
The launcher, the plugins and the example are compiled against both TensorRT header versions in
../shared/third_party (10.3 = JetPack 6, 11.1 = current) with -Wall -Wextra -Wpedantic -Werror,
and the plugin library is linked with --no-undefined (it needs neither libnvinfer nor libcuda).
The full CMake build of both header versions is `-m slow`.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from trt_restore.engines import kernels

REPO = Path(__file__).resolve().parents[1]
HEADERS = REPO.parent / "shared" / "third_party" / "tensorrt-headers"
VERSIONS = ("10.3", "11.1")
NVCC = kernels.find_nvcc()
GXX = shutil.which("g++")
CUDA_INCLUDE = kernels.cuda_include_dir(NVCC)
EXPORTED = {"getCreators", "setLoggerFinder", "trtr_api_version", "trtr_status_string", "trtr_set_attention_config",
            "trtr_describe_attention", "trtr_masked_attention_workspace_size", "trtr_masked_attention",
            "trtr_patch_match_workspace_size", "trtr_patch_match"}

pytestmark = pytest.mark.skipif(CUDA_INCLUDE is None or GXX is None,
                                reason="g++ and the CUDA headers are needed for the C++ compile checks")


def _headers(version: str) -> Path:
    include = HEADERS / version / "include"
    if not (include / "NvInferRuntime.h").is_file():
        pytest.skip(f"TensorRT {version} headers not found under {HEADERS}")
    return include


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout}{proc.stderr}"
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def plugin_libraries(tmp_path_factory) -> dict[str, Path]:
    """libtrt_restore_plugins.so built by BuildSpec (-Werror) against each header version."""
    libs = {}
    for version in VERSIONS:
        include = HEADERS / version / "include"
        if not include.is_dir():
            continue
        lib = tmp_path_factory.mktemp(f"plugins-{version}") / "libtrt_restore_plugins.so"
        spec = kernels.BuildSpec("plugins", lib, trt_include=include, werror=True, cxx=GXX, cuda_include=CUDA_INCLUDE)
        proc = subprocess.run(spec.command(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0 and "warning" not in (proc.stdout + proc.stderr).lower(), proc.stderr
        libs[version] = lib
    return libs


def test_launcher_compiles_warning_free_and_holds_no_cuda_code(tmp_path):
    obj = kernels.build(kernels.BuildSpec("object", tmp_path / "k.o", werror=True, cxx=GXX,
                                          cuda_include=CUDA_INCLUDE))
    sections = subprocess.run(["objdump", "-h", str(obj)], capture_output=True, text=True).stdout
    assert ".nv_fatbin" not in sections and "__nv_module_id" not in sections
    assert not (kernels.PLUGIN_DIR / "trt_restore_kernels.cu").exists()  # one kernel source: Triton


@pytest.mark.parametrize("version", VERSIONS)
def test_plugins_compile_and_link_without_libnvinfer(version, plugin_libraries):
    _headers(version)
    lib = plugin_libraries[version]
    exported = subprocess.run(["nm", "-D", "--defined-only", str(lib)], capture_output=True, text=True).stdout
    names = {line.split()[-1] for line in exported.splitlines() if line.strip()}
    assert EXPORTED <= names
    public = {n for n in names if not n.startswith("_")}
    assert public == EXPORTED, f"unexpected exports: {public - EXPORTED}"
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
    assert "nvinfer" not in undefined.lower()


@pytest.mark.parametrize("version", VERSIONS)
def test_cpp_example_compiles(version):
    include = _headers(version)
    _run([GXX, "-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only", "-isystem", include,
          "-isystem", kernels.cuda_include_dir(NVCC), kernels.EXAMPLE_SOURCE])


def test_kernel_library_through_ctypes_without_a_gpu(plugin_libraries):
    if not plugin_libraries:
        pytest.skip("no TensorRT headers: plugin library not built")
    lib = kernels.KernelLibrary(next(iter(plugin_libraries.values())))
    assert lib.has_plugins
    small = lib.attention_workspace_size(1, 512, 1000, kernels.FLOAT32)
    large = lib.attention_workspace_size(1, 512, 62_500, kernels.FLOAT32)
    assert 0 < small < large <= 8 * 62_500 + 256  # two int32 index arrays: O(N), never N^2
    assert lib.patch_match_workspace_size(1, 512, 64, 64, 2) > 0
    with pytest.raises(kernels.KernelError, match="invalid argument"):
        lib.masked_attention(0, 0, 0, 0, 0, 1, 512, 10, kernels.FLOAT32, kernels.COMPUTE_AUTO, 0, 0)
    with pytest.raises(kernels.KernelError, match="unsupported"):
        lib.masked_attention(16, 16, 16, 16, 32, 1, 64, 10, kernels.FLOAT32, kernels.COMPUTE_AUTO, 256, 1 << 20)
    with pytest.raises(kernels.KernelError, match="unsupported"):  # the cubins take fp32 tensors
        lib.masked_attention(16, 16, 16, 16, 32, 1, 512, 10, kernels.FLOAT16, kernels.COMPUTE_AUTO, 256, 1 << 20)
    with pytest.raises(kernels.KernelError, match="workspace too small"):
        lib.masked_attention(16, 16, 16, 16, 32, 1, 512, 10, kernels.FLOAT32, kernels.COMPUTE_AUTO, 256, 16)
    with pytest.raises(kernels.KernelError, match="invalid argument"):  # no cubin for patch size 3
        lib.patch_match(16, 16, 32, 1, 512, 12, 12, 3, kernels.FLOAT32, 256, 1 << 30)
    assert lib.set_attention_config(kernels.CONFIG_SMALL) == kernels.CONFIG_AUTO
    assert lib.set_attention_config(kernels.CONFIG_AUTO) == kernels.CONFIG_SMALL
    with pytest.raises(kernels.KernelError):
        lib.set_attention_config(9)
    status, text = lib.describe_attention(kernels.FLOAT32)
    if shutil.which("nvidia-smi") is None:
        assert status != 0 and "no usable CUDA device" in text
        with pytest.raises(kernels.KernelError, match="no usable CUDA device"):
            lib.masked_attention(16, 16, 16, 16, 32, 1, 512, 10, kernels.FLOAT32, kernels.COMPUTE_AUTO, 256, 1 << 20)


def test_build_spec_commands():
    spec = kernels.BuildSpec("plugins", Path("/tmp/x.so"), trt_include=Path("/inc"), werror=True,
                             cuda_include=Path("/cuda/include"))
    cmd = spec.command()
    assert "-Werror" in cmd and "-gencode" not in cmd and "-ldl" in cmd and "/inc" in cmd
    assert str(kernels.PLUGIN_SOURCE) in cmd and str(kernels.KERNEL_SOURCE) in cmd
    with pytest.raises(kernels.BuildError, match="TensorRT headers"):
        kernels.BuildSpec("plugins", Path("/tmp/x.so"), cuda_include=Path("/c")).command()


@pytest.mark.slow
@pytest.mark.parametrize("version", VERSIONS)
def test_cmake_build(version, tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not found")
    include = _headers(version)
    build = tmp_path / "build"
    _run(["cmake", "-S", kernels.PLUGIN_DIR, "-B", build, f"-DTENSORRT_INCLUDE_DIR={include}",
          "-DTRT_RESTORE_WERROR=ON", f"-DCUDAToolkit_ROOT={CUDA_INCLUDE.parent}"])
    subprocess.run(["cmake", "--build", str(build), "-j", "4"], check=True, capture_output=True, timeout=900)
    assert (build / "libtrt_restore_plugins.so").is_file() and (build / "libtrt_restore_kernels.so").is_file()
    assert (build / "cubins" / "manifest.json").is_file()
