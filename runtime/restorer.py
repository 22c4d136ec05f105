"""The Python API: `Restorer(models=..., backend=..., mode=...).restore(image)`.

Thread safety: one Restorer may be shared by threads; `restore` keeps no per-call state
on the object and onnxruntime sessions accept concurrent runs.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .backends import create_backend
from .global_restoration import GlobalRestorer, GlobalResult
from .modes import mode_spec
from .preprocess import check_aspect
from .tiling.plan import plan_tiling

OUTPUT_SIZES = ("input", "network")
DEFAULT_MODELS = Path("~/.cache/trt-restore/models").expanduser()  # $TRT_RESTORE_MODELS: read by the CLI


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


@dataclass
class RestoreResult(GlobalResult):
    """GlobalResult plus the face stage: `restored` has the enhanced faces pasted in,
    `global_restored` is the stage-1 output, `faces` the face stage's details
    (trt_restore.faces.enhancer.FaceStageResult; None when the face stage is off)."""

    global_restored: np.ndarray | None = None
    faces: object | None = None


class Restorer:
    """Old-photo restoration (global stage) with models exported by `trt-restore export`.

    mode: "quality" (no scratches), "scratch" (detect and inpaint scratches) or "hr"
    (scratch mode with patch attention, for large photos). backend: "auto", "ort" or "trt".
    tile: "auto" (exact strip-by-strip execution when the photo would not fit `max_memory`),
    "off", or a strip height in image rows; the tiled result equals the untiled one.
    faces: None (enhance faces when the face graph of the mode and a detector are available),
    True (required: a missing piece raises FileNotFoundError) or False; `face_detector`
    ("auto", "dlib", "scrfd", "yunet") and `face_detector_model` (a model file) choose the
    detector. `face_note` says whether the face stage is on and why.
    precision: "fp32", "fp16" or "int8" (None: fp16 on TensorRT, fp32 on onnxruntime; int8 on
    onnxruntime runs the Q/DQ models of `trt-restore quantize`).
    output_size: "input" (default: the output, and every stage image, gets the photo's exact
    size back; Lanczos, masks nearest) or "network" (the original's behaviour: sides rounded to
    the mode's multiple, which changes the aspect by up to ~2.5%; benchmarks/results/output_size.md).
    """

    def __init__(self, models: str | Path = DEFAULT_MODELS, backend: str = "auto", mode: str = "quality",
                 threads: int | None = None, stretch: bool = False, tile: str | int = "auto",
                 max_memory: str | int = "4G", faces: bool | None = None, face_detector: str | None = None,
                 face_detector_model: str | Path | None = None, precision: str | None = None,
                 output_size: str = "input"):
        mode_spec(mode)  # a ValueError naming the modes
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")
        self.output_size = output_size
        self.mode = mode
        self.stretch = stretch
        self.backend = create_backend(backend, models, threads=threads, precision=precision)
        missing = self.backend.store.missing_for(mode) if self.backend.store is not None else []
        if missing:
            raise FileNotFoundError(f"{models}: models for {mode} mode missing: {', '.join(missing)} "
                                    f"(run `trt-restore export`)")
        damaged = self.backend.store.damaged_for(mode) if self.backend.store is not None else []
        if damaged:
            raise FileNotFoundError("; ".join(damaged))
        self.tile, self.max_memory = tile, max_memory
        plan_tiling(mode, 64, 64, tile, max_memory)  # validate the options now, not on the first photo
        self._global = GlobalRestorer(self.backend, mode)
        from .faces.stage import build_face_stage

        self._faces, self.face_note = build_face_stage(self.backend, mode, faces, face_detector,
                                                       face_detector_model, threads)

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """HxWx3 uint8 in, restored HxWx3 uint8 out (the input's size unless output_size="network")."""
        return self.restore_with_stages(image, mask).restored

    def restore_with_stages(self, image: np.ndarray, mask: np.ndarray | None = None,
                            on_stage=None) -> RestoreResult:
        """Like `restore`, also returning the scratch mask, the hole-painted input, the face
        stage's crops and timings. `on_stage(name)` is called as each global stage ends, then
        with "faces" before the face stage."""
        image = as_rgb_u8(image)
        smallest = mode_spec(self.mode).min_side
        if min(image.shape[:2]) < smallest:
            raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is too small for {self.mode} mode "
                             f"(sides must be at least {smallest} px)")
        check_aspect(*image.shape[:2])  # extreme strips: refused before any stage allocates
        result = self._global_for(image).restore(image, stretch=self.stretch, mask=mask, on_stage=on_stage)
        if on_stage is not None and self._faces is not None:
            on_stage("faces")
        staged = self._enhance_faces(result, image)
        if self.output_size == "input":
            _resize_back(staged, image.shape[:2])
        return staged

    def _enhance_faces(self, result: GlobalResult, image: np.ndarray) -> RestoreResult:
        """Stages 2-4 on the restored photo; gray photos keep gray faces."""
        stage1 = {f.name: getattr(result, f.name) for f in fields(GlobalResult)}
        staged = RestoreResult(**stage1, global_restored=result.restored)
        if self._faces is not None:
            from .faces.enhancer import is_grayscale

            staged.faces = self._faces.enhance(result.restored, grayscale=is_grayscale(image))
            staged.restored = staged.faces.image
            staged.timings = {**result.timings, **{f"faces_{k}": v for k, v in staged.faces.timings.items()}}
        return staged

    def _global_for(self, image: np.ndarray) -> GlobalRestorer:
        """Untiled when it fits the memory budget, else exact strip-by-strip execution."""
        config = plan_tiling(self.mode, image.shape[0], image.shape[1], self.tile, self.max_memory)
        if config is None:
            return self._global
        from .tiling.runner import TiledGlobalRestorer

        return TiledGlobalRestorer(self.backend, self.mode, config)


def _resize_back(result: RestoreResult, size: tuple[int, int]) -> None:
    """Give every stage image the photo's own size (the networks ran at a side multiple)."""
    from PIL import Image

    height, width = size
    for name in ("restored", "global_restored", "painted", "mask"):
        array = getattr(result, name)
        if array is None or array.shape[:2] == (height, width):
            continue
        method = Image.NEAREST if name == "mask" else Image.LANCZOS
        setattr(result, name, np.asarray(Image.fromarray(array).resize((width, height), method)))
