"""Conformance to the reference vectors of the original code, on every backend.

`vectors` reads the reference files and compares tensors; `faces` checks the face alignment and
paste-back files; `segments` runs network vectors through a runtime backend at the graph-segment
boundaries they store (untiled or tiled); `command` is `trt-restore conformance`. Nothing here
imports torch: the PyTorch side lives in trt_restore.export.conformance.
"""
from .vectors import Comparison, UnknownKind, discover, load_vector

__all__ = ["Comparison", "UnknownKind", "discover", "load_vector"]
