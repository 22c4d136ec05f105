"""The Python API: `Restorer(models=..., backend=..., mode=...).restore(image)`.

One Restorer holds one backend and serves every mode and face setting: `restore(image,
mode=..., faces=...)` (default: the constructor's). The mode's graphs are checked on first use
of a mode, the backend loads each session on first use, and the face stage of a (mode, faces)
pair is built once, when first asked for.

Thread safety: one Restorer may be shared by threads; `restore` keeps no per-call state
on the object and onnxruntime sessions accept concurrent runs.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .backends import OrtOptions, create_backend
from .global_restoration import GlobalRestorer, GlobalResult
from .memory_model import check_budget
from .modes import mode_spec
from .preprocess import check_aspect
from .run_options import TilePolicy, parse_memory
from .tiling.plan import plan_tiling

OUTPUT_SIZES = ("input", "network")
DEFAULT_MODELS = Path("~/.cache/trt-restore/models").expanduser()  # $TRT_RESTORE_MODELS: read by the CLI
DEFAULT = object()  # restore(faces=...) not given: the constructor's face setting


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
    tile: a run_options.TilePolicy or its text: "auto" (exact strip-by-strip execution when
    the photo would not fit `max_memory`), "on", "off", or a strip height in image rows; the
    tiled result equals the untiled one. max_memory: bytes or a size such as "4G".
    faces: None (enhance faces when the face graph of the mode and a detector are available),
    True (required: a missing piece raises FileNotFoundError) or False; `face_detector`
    ("auto", "dlib", "scrfd", "yunet") and `face_detector_model` (a model file) choose the
    detector. `face_note` says whether the face stage is on and why.
    precision: "fp32", "fp16" or "int8" (None: fp16 on TensorRT, fp32 on onnxruntime; int8 on
    onnxruntime runs the Q/DQ models of `trt-restore quantize`).
    output_size: "input" (default: the output, and every stage image, gets the photo's exact
    size back; Lanczos, masks nearest) or "network" (the original's behaviour: sides rounded to
    the mode's multiple, which changes the aspect by up to ~2.5%; benchmarks/results/output_size.md).
    keep_sessions: on onnxruntime, keep every graph's session loaded between photos (faster for a
    service; default False: a graph's session is dropped after its run, so only the running
    stage's weights are resident: benchmarks/results/memory_vs_original.md).
    """

    def __init__(self, models: str | Path = DEFAULT_MODELS, backend: str = "auto", mode: str = "quality",
                 threads: int | None = None, stretch: bool = False, tile: TilePolicy | str | int = "auto",
                 max_memory: str | int = "4G", faces: bool | None = None, face_detector: str | None = None,
                 face_detector_model: str | Path | None = None, precision: str | None = None,
                 output_size: str = "input", keep_sessions: bool = False):
        mode_spec(mode)  # a ValueError naming the modes
        if output_size not in OUTPUT_SIZES:
            raise ValueError(f"output_size must be one of {OUTPUT_SIZES}, got {output_size!r}")
        self.models, self.output_size, self.stretch, self.threads = models, output_size, stretch, threads
        self.mode, self.faces = mode, faces
        self.face_detector, self.face_detector_model = face_detector, face_detector_model
        self.tile, self.max_memory = TilePolicy.parse(tile), parse_memory(max_memory)  # typed once, here
        # onnxruntime: drop each once-per-photo graph's session after its run (least memory), or
        # keep every session warm (a service answering many photos: no reload per photo)
        ort = OrtOptions(threads=threads, precision=precision or "fp32", release_sessions=not keep_sessions)
        self.backend = create_backend(backend, models, threads=threads, precision=precision, ort=ort)
        self._lock = threading.Lock()
        self._globals: dict[str, GlobalRestorer] = {}  # per mode, made on first use
        self._face_stages: dict[tuple[str, bool | None], tuple[object, str]] = {}  # per (mode, faces setting)
        _, self.face_note = self.face_stage(mode, faces)  # the default mode's models, checked now

    def restore(self, image: np.ndarray, mask: np.ndarray | None = None, *, mode: str | None = None,
                faces: bool | None | object = DEFAULT) -> np.ndarray:
        """HxWx3 uint8 in, restored HxWx3 uint8 out (the input's size unless output_size="network")."""
        return self.restore_with_stages(image, mask, mode=mode, faces=faces).restored

    def restore_with_stages(self, image: np.ndarray, mask: np.ndarray | None = None, on_stage=None, *,
                            mode: str | None = None, faces: bool | None | object = DEFAULT) -> RestoreResult:
        """Like `restore`, also returning the scratch mask, the hole-painted input, the face
        stage's crops and timings. `on_stage(name)` is called as each global stage ends, then
        with "faces" before the face stage. `mode` and `faces` default to the constructor's."""
        mode = self.mode if mode is None else mode
        image = as_rgb_u8(image)
        smallest = mode_spec(mode).min_side
        if min(image.shape[:2]) < smallest:
            raise ValueError(f"image {image.shape[1]}x{image.shape[0]} is too small for {mode} mode "
                             f"(sides must be at least {smallest} px)")
        check_aspect(*image.shape[:2])  # extreme strips: refused before any stage allocates
        face_stage, _ = self.face_stage(mode, self.faces if faces is DEFAULT else faces)
        tiling = plan_tiling(mode, image.shape[0], image.shape[1], self.tile, self.max_memory)
        # no stage may outgrow --max-memory (with --tile off, the untiled networks must fit too)
        check_budget(mode, *image.shape[:2], self.max_memory, tiled=tiling is not None, faces=face_stage is not None)
        result = self._global_for(mode, tiling).restore(image, stretch=self.stretch, mask=mask, on_stage=on_stage)
        if on_stage is not None and face_stage is not None:
            on_stage("faces")
        staged = _enhance_faces(face_stage, result, image)
        if self.output_size == "input":
            _resize_back(staged, image.shape[:2])
        return staged

    def face_stage(self, mode: str, faces: bool | None = None) -> tuple[object | None, str]:
        """(FaceEnhancer or None, one-line note) for `mode` and a face setting, built on first use.
        Raises FileNotFoundError when the mode's models are missing or damaged, or when `faces`
        is True and the face stage cannot run."""
        key = (mode, faces)
        with self._lock:
            if key not in self._face_stages:
                self._global_restorer(mode)
                from .faces.stage import build_face_stage

                self._face_stages[key] = build_face_stage(self.backend, mode, faces, self.face_detector,
                                                          self.face_detector_model, self.threads)
            return self._face_stages[key]

    def _global_restorer(self, mode: str) -> GlobalRestorer:
        """The untiled restorer of `mode`; its models are checked (present, sha256) on first use."""
        if mode not in self._globals:
            mode_spec(mode)
            problem = mode_models_problem(self.backend.store, mode) if self.backend.store is not None else None
            if problem:
                raise FileNotFoundError(problem)
            self._globals[mode] = GlobalRestorer(self.backend, mode)
        return self._globals[mode]

    def _global_for(self, mode: str, config) -> GlobalRestorer:
        """Untiled when the plan says it fits the memory budget, else exact strip-by-strip execution."""
        if config is None:
            return self._globals[mode]
        from .tiling.runner import TiledGlobalRestorer

        return TiledGlobalRestorer(self.backend, mode, config)


def mode_models_problem(store, mode: str) -> str | None:
    """Why `store` cannot run `mode`: graphs missing, or files whose sha256 differs from models.json."""
    missing = store.missing_for(mode)
    if missing:
        return f"{store.root}: models for {mode} mode missing: {', '.join(missing)} (run `trt-restore export`)"
    return "; ".join(store.damaged_for(mode)) or None


def _enhance_faces(face_stage, result: GlobalResult, image: np.ndarray) -> RestoreResult:
    """Stages 2-4 on the restored photo; gray photos keep gray faces."""
    stage1 = {f.name: getattr(result, f.name) for f in fields(GlobalResult)}
    staged = RestoreResult(**stage1, global_restored=result.restored)
    if face_stage is not None:
        from .faces.enhancer import is_grayscale

        staged.faces = face_stage.enhance(result.restored, grayscale=is_grayscale(image))
        staged.restored = staged.faces.image
        staged.timings = {**result.timings, **{f"faces_{k}": v for k, v in staged.faces.timings.items()}}
    return staged


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
