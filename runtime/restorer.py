"""The Python API: `Restorer(models=..., backend=..., mode=...).restore(image)`.

Thread safety: one Restorer may be shared by threads; `restore` keeps no per-call state
on the object and onnxruntime sessions accept concurrent runs.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .backends import create_backend
from .global_restoration import MODES, GlobalRestorer, GlobalResult

DEFAULT_MODELS = Path(os.environ.get("TRT_RESTORE_MODELS", "~/.cache/trt-restore/models")).expanduser()
MIN_SIDE = {"quality": 16, "scratch": 16, "hr": 32}


def as_rgb_u8(image: np.ndarray) -> np.ndarray:
    """Accept HxWx3 uint8 (also HxW gray, HxWx4 with alpha); refuse anything else clearly."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an HxWx3 image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


class Restorer:
    """Old-photo restoration (global stage) with models exported by `trt-restore export`.

    mode: "quality" (no scratches), "scratch" (detect and inpaint scratches) or "hr"
    (scratch mode with patch attention, for large photos). backend: "auto", "ort" or "trt".
    """

    def __init__(self, models: str | Path = DEFAULT_MODELS, backend: str = "auto", mode: str = "quality",
                 threads: int | None = None, stretch: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.stretch = stretch
        self.backend = create_backend(backend, models, threads=threads)
        missing = self.backend.store.missing_for(mode) if hasattr(self.backend, "store") else []
        if missing:
            raise FileNotFoundError(f"{models}: models for {mode} mode missing: {', '.join(missing)} "
                                    f"(run `trt-restore export`)")
        self._global = GlobalRestorer(self.backend, mode)

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 in, restored HxWx3 uint8 out (sides rounded as the original does)."""
        return self.restore_with_stages(image, mask).restored

    def restore_with_stages(self, image: np.ndarray, mask: np.ndarray | None = None) -> GlobalResult:
        """Like `restore`, also returning the scratch mask, the hole-painted input and timings."""
        image = as_rgb_u8(image)
        smallest = MIN_SIDE[self.mode]
        if min(image.shape[:2]) < smallest:
            raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is too small for {self.mode} mode "
                             f"(sides must be at least {smallest} px)")
        return self._global.restore(image, stretch=self.stretch, mask=mask)
