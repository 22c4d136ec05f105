"""trt-restore: deploy the 'Bringing Old Photos Back to Life' networks.

This package is the slim runtime: it needs numpy, opencv and onnxruntime only and never
imports torch (the export toolchain lives in `trt_restore.export`).
"""
__version__ = "0.1.0"
