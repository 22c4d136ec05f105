"""One photo of a `restore` or `batch` run, start to end: read it, find its hand-made mask,
restore it, write the stage files and the output (atomically), and say what happened in one
manifest record. The same code runs in the CLI, the batch's worker threads and its Ray actors,
so the two commands cannot drift apart again."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .inputs import Item, output_path
from .run_options import TilePolicy


@dataclass
class RestoreOptions:
    """Everything a run needs to build its Restorer and to restore and write each photo
    (picklable: Ray actors get a copy)."""

    models: str
    mode: str = "quality"
    backend: str = "ort"
    precision: str | None = None
    faces: bool | None = None
    face_detector: str = "auto"
    face_detector_model: str | None = None
    threads: int | None = None
    tile: TilePolicy | str = "auto"
    max_memory: int | str = "4G"
    minmax: bool = False
    masks: str | None = None  # folder of hand-made scratch masks (same stem as the photo)
    save_stages: bool = False
    format: str = "png"  # output file: see io.WriteOptions
    quality: int | None = None
    output_profile: str = "srgb"
    keep_depth: bool = False
    depth_threshold: int = 2
    output_size: str = "input"  # or "network" (the original's side multiples)

    def write_options(self):
        from .io import WriteOptions

        return WriteOptions(format=self.format, quality=self.quality, profile=self.output_profile,
                            keep_depth=self.keep_depth, depth_threshold=self.depth_threshold).validate()

    def make_restorer(self):
        from .restorer import Restorer

        return Restorer(self.models, backend=self.backend, mode=self.mode, threads=self.threads,
                        stretch=self.minmax, precision=self.precision, tile=self.tile, max_memory=self.max_memory,
                        faces=self.faces, face_detector=self.face_detector,
                        face_detector_model=self.face_detector_model, output_size=self.output_size)


def find_mask(masks: str | Path | None, photo: Path, mode: str):
    """The hand-made mask of `photo` (first file named like the photo's stem, any image type;
    white = scratch) as HxW uint8, or None: the detector's mask is used then."""
    from .modes import mode_spec

    if masks is None or not mode_spec(mode).detects_scratches:
        return None
    from .inputs import IMAGE_SUFFIXES
    from .io import read_image

    candidates = sorted(p for p in Path(masks).iterdir()
                        if p.stem == photo.stem and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return read_image(candidates[0])[:, :, 0] if candidates else None


def write_stages(result, output: Path) -> None:
    """--save-stages: <stem>_mask/_painted (scratch modes), _global and the face crops next to the output."""
    from .io import write_image

    folder, name = output.parent, Path(output.name)
    if result.mask is not None:
        write_image(output_path(folder, name, "_mask"), result.mask)
        write_image(output_path(folder, name, "_painted"), result.painted)
    if result.faces is not None:
        write_image(output_path(folder, name, "_global"), result.global_restored)
        for k, face in enumerate(result.faces.enhanced_faces, start=1):
            write_image(output_path(folder, name, f"_face{k}_crop"), face.crop)
            write_image(output_path(folder, name, f"_face{k}_enhanced"), face.enhanced)


def restore_photo(restorer, item: Item, options: RestoreOptions, worker: str, on_stage=None) -> dict:
    """Restore one file; never raises: the record carries status and error (naming the file),
    the output's width and height, the faces found and enhanced, and the seconds taken."""
    from .io import read_photo, write_image

    started = time.perf_counter()
    record = {"input": item.input, "output": item.output, "status": "ok", "error": None, "mode": options.mode,
              "worker": worker}
    try:
        photo = read_photo(item.input, keep_high=options.keep_depth)
        mask = find_mask(options.masks, Path(item.input), options.mode)
        result = restorer.restore_with_stages(photo.pixels, mask=mask, on_stage=on_stage)
        if options.save_stages:
            write_stages(result, Path(item.output))
        write_image(item.output, result.restored, photo.info, options.write_options())
        record["height"], record["width"] = (int(v) for v in result.restored.shape[:2])
        if result.faces is not None:
            record["faces_found"] = len(result.faces.faces)
            record["faces_enhanced"] = len(result.faces.enhanced_faces)
    except Exception as err:  # noqa: BLE001 - one bad photo must not stop the run
        message = str(err)
        record["status"] = "failed"
        record["error"] = message if item.input in message else f"{item.input}: {message}"
    record["seconds"] = round(time.perf_counter() - started, 4)
    return record
