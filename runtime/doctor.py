"""`trt-restore doctor`: versions, providers, GPU and model availability, without importing torch."""
from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import platform
import shutil
import subprocess
from pathlib import Path

PACKAGES = ("trt-restore", "numpy", "opencv-python-headless", "pillow", "onnxruntime", "onnx", "onnxslim",
            "polygraphy", "torch", "tensorrt", "cuda-python", "dlib-bin")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def tensorrt_location() -> str:
    """Where `import tensorrt` would come from: this venv, or the system (JetPack's apt package,
    seen through --system-site-packages); a PyPI placeholder in the venv would shadow JetPack's."""
    import sysconfig

    spec = importlib.util.find_spec("tensorrt")
    if spec is None or not spec.origin:
        return "not found (JetPack: sudo apt install python3-libnvinfer; venv with --system-site-packages)"
    origin = Path(spec.origin).resolve()
    venv = Path(sysconfig.get_paths()["purelib"]).resolve()
    if venv in origin.parents:
        where = "venv (on a Jetson this shadows JetPack's TensorRT)" if platform.machine() == "aarch64" else "venv"
    else:
        where = "system (JetPack / apt)" if "dist-packages" in origin.parts else "system"
    return f"{where}: {origin.parent}"


def _gpu() -> str:
    if not shutil.which("nvidia-smi"):
        return "none (nvidia-smi not found)"
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,compute_cap,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or out.stderr.strip() or "unknown"
    except (OSError, subprocess.SubprocessError) as err:
        return f"nvidia-smi failed: {err}"


def _models(root: Path) -> list[str]:
    from .model_store import GRAPHS_FOR_MODE, ModelStore, ModelStoreError

    try:
        store = ModelStore.open(root)
    except ModelStoreError as err:
        return [f"  {err}"]
    lines = [f"  {root}: {len(store.manifest.get('graphs', {}))} graph(s), exported with "
             f"{store.manifest.get('versions', {})}"]
    for mode in GRAPHS_FOR_MODE:
        missing = store.missing_for(mode)
        damaged = store.damaged_for(mode) if not missing else []
        state = ("missing " + ", ".join(missing) if missing else
                 "DAMAGED: " + "; ".join(damaged) if damaged else "ready (files match models.json)")
        lines.append(f"  {mode:8s} {state}")
    return lines


def report(models: Path) -> str:
    lines = [f"python      {platform.python_version()} ({platform.machine()}, {platform.system()})"]
    lines += [f"{name:24s}{_version(name)}" for name in PACKAGES]
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime

        lines.append(f"onnxruntime providers   {', '.join(onnxruntime.get_available_providers())}")
    lines.append(f"{'tensorrt location':24s}{tensorrt_location()}")
    lines.append(f"GPU                     {_gpu()}")
    from .engines.diagnose import tensorrt_lines  # TensorRT version, free GPU memory, engines per graph

    lines += tensorrt_lines(Path(models).expanduser() / "engines")
    from .engines.cache import describe_cache  # engine cache summary (engines/cache.py)

    lines += describe_cache(Path(models).expanduser() / "engines")
    lines.append("models")
    lines += _models(Path(models).expanduser())
    from .licences import describe

    lines.append("model licences (a kiosk is a commercial use)")
    lines += describe()
    return "\n".join(lines)
