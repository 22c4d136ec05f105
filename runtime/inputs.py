"""Turn the command line's INPUT... (files, folders, globs) into a list of photo paths."""
from __future__ import annotations

import glob
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}


def expand_inputs(items: list[str]) -> tuple[list[Path], list[str]]:
    """Returns (photos in order, without duplicates; problems: items that matched nothing)."""
    photos: list[Path] = []
    problems: list[str] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            photos.extend(found)
        elif path.exists():
            photos.append(path)
        elif any(ch in item for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{item}: pattern matched no files")
            photos.extend(found)
        else:
            problems.append(f"{path}: no such file or folder")
    unique: dict[Path, None] = {}
    for photo in photos:
        unique.setdefault(photo.resolve(), None)
    return list(unique), problems


def output_path(photo: Path, output_dir: Path, suffix: str = "", ext: str = ".png") -> Path:
    return output_dir / f"{photo.stem}{suffix}{ext}"
