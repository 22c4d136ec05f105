"""Build a reproducible calibration set: clean crops -> degraded photos + scratch masks + manifest.

Layout of the output folder::

    manifest.json        seed, size, generator version, degradation config, one entry per item
    clean/0000.png       the clean crop (or procedural scene)
    degraded/0000.png    the old-photo version (what the networks are calibrated on)
    masks/0000.png       255 where scratches/creases/dust were drawn (scratch/HR calibration)

Item i draws from `SeedSequence([seed, i])` only, so any item can be regenerated alone and
the set does not depend on the order or number of items built before it.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .degrade import VERSION, DegradationConfig, config_dict, degrade
from .procedural import procedural_image

MANIFEST = "manifest.json"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}


class CalibrationSetError(ValueError):
    pass


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _png(image: np.ndarray) -> bytes:
    array = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, data = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise RuntimeError("OpenCV could not PNG-encode an image")
    return data.tobytes()


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def list_sources(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise CalibrationSetError(f"{folder}: not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CalibrationSetError(f"{folder}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _crop(image: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Scale so the short side is between size and 2*size, then a random size x size crop."""
    h, w = image.shape[:2]
    short = min(h, w)
    target = rng.uniform(size, max(size, min(2 * size, short)))
    scale = target / short
    nh, nw = max(size, int(round(h * scale))), max(size, int(round(w * scale)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = int(rng.integers(0, nh - size + 1)), int(rng.integers(0, nw - size + 1))
    return np.ascontiguousarray(resized[top:top + size, left:left + size]), {
        "scale": round(scale, 5), "top": top, "left": left}


@dataclass
class CalibrationSet:
    root: Path
    manifest: dict

    @classmethod
    def open(cls, root: str | Path) -> "CalibrationSet":
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise CalibrationSetError(f"{path}: no calibration manifest (create it with `trt-restore calibrate-data`)")
        return cls(root, json.loads(path.read_text()))

    @property
    def items(self) -> list[dict]:
        return self.manifest["items"]

    def fingerprint(self) -> str:
        """Hash of the content (seed, config and every degraded image + mask hash)."""
        digest = hashlib.sha256()
        for item in self.items:
            digest.update(item["degraded_sha256"].encode())
            digest.update(item["mask_sha256"].encode())
        return digest.hexdigest()

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(degraded HxWx3 uint8 RGB, mask HxW uint8) of item `index`."""
        item = self.items[index]
        image = cv2.imread(str(self.root / item["degraded"]), cv2.IMREAD_COLOR)
        mask = cv2.imread(str(self.root / item["mask"]), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise CalibrationSetError(f"{self.root}: item {index} unreadable")
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB), mask


def build_calibration_set(output: str | Path, source: str | Path | None = None, count: int = 32,
                          size: int = 256, seed: int = 0, config: DegradationConfig | None = None,
                          on_progress=lambda done, total: None) -> CalibrationSet:
    """Write `count` degraded size x size photos (plus clean crops and masks) under `output`.

    source: a folder of clean photos (walked recursively, sorted; reused with new crops when it
    has fewer than `count`), or None for procedural scenes."""
    if count < 1:
        raise CalibrationSetError("count must be at least 1")
    if size < 32 or size % 16:
        raise CalibrationSetError(f"size must be a multiple of 16 and at least 32, got {size}")
    cfg = config or DegradationConfig()
    output = Path(output)
    sources = list_sources(Path(source)) if source is not None else []
    from PIL import Image

    items = []
    for index in range(count):
        rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
        entry: dict = {"index": index}
        if sources:
            path = sources[index % len(sources)]
            with Image.open(path) as opened:
                clean = np.asarray(opened.convert("RGB"))
            clean, crop = _crop(clean, size, rng)
            entry["source"] = {"file": str(path.relative_to(source)), "crop": crop}
        else:
            clean = procedural_image(rng, size, size)
            entry["source"] = {"procedural": True}
        result = degrade(clean, rng, cfg)
        name = f"{index:04d}.png"
        for folder, picture in (("clean", clean), ("degraded", result.image), ("masks", result.mask)):
            data = _png(picture)
            _write(output / folder / name, data)
            entry[{"clean": "clean", "degraded": "degraded", "masks": "mask"}[folder]] = f"{folder}/{name}"
            entry[{"clean": "clean_sha256", "degraded": "degraded_sha256", "masks": "mask_sha256"}[folder]] = \
                _sha256(data)
        entry["mask_fraction"] = round(float((result.mask > 0).mean()), 5)
        entry["degradations"] = result.params
        items.append(entry)
        on_progress(index + 1, count)
    manifest = {
        "kind": "trt-restore calibration set",
        "generator_version": VERSION,
        "seed": seed,
        "count": count,
        "size": size,
        "source": str(Path(source).resolve()) if source is not None else "procedural",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": {"numpy": np.__version__, "opencv": cv2.__version__},
        "config": config_dict(cfg),
        "items": items,
    }
    calibration = CalibrationSet(output, manifest)
    manifest["fingerprint"] = calibration.fingerprint()
    _write(output / MANIFEST, json.dumps(manifest, indent=1).encode())
    return calibration
