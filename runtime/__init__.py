"""trt-restore: deploy the 'Bringing Old Photos Back to Life' networks.

This package is the slim runtime: it needs numpy, opencv and onnxruntime only and never
imports torch (the export toolchain lives in `trt_restore.export`).
"""
__version__ = "0.1.0"


def __getattr__(name):
    """Lazy `Restorer` so that `import trt_restore` stays instant."""
    if name == "Restorer":
        from .restorer import Restorer

        return Restorer
    raise AttributeError(name)


__all__ = ["Restorer", "__version__"]
