"""Turn the command line's INPUT... (files, folders, quoted globs) into photos and their outputs.

Shared by `restore` and `batch`: every input maps to exactly one output path (`output_path`),
a folder argument's tree is mirrored under -o with --recursive, and an output claimed twice
(x.jpg and x.jpeg) or landing on an input is a `Collision`, refused before anything runs.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
OUTPUT_MARKERS = (".trt-restore-batch.lock", "manifest.jsonl")  # = output_folder.LOCK_NAME, MANIFEST_JSONL


@dataclass(frozen=True)
class Item:
    input: str
    output: str


class Collision(str):
    """A problem that stops the whole run (exit 2): two inputs share an output, or an output
    would replace an input."""


def output_path(folder: Path, relative: Path, suffix: str = "", ext: str = ".png") -> Path:
    """The one naming rule: `folder/relative` with its stem + suffix and extension
    (outputs: suffix ""; stage files: "_mask", "_global", ...)."""
    relative = Path(relative)
    return Path(folder) / relative.parent / f"{relative.stem}{suffix}{ext}"


def is_output_folder(folder: Path) -> bool:
    """A folder a run has written to (its lock or manifest is there): never an input."""
    return any((folder / name).exists() for name in OUTPUT_MARKERS)


def _walk(folder: Path, recursive: bool, top: bool = True) -> Iterator[Path]:
    """Image files under `folder` in sorted order, streamed folder by folder; subfolders that
    hold an earlier run's outputs are left out (an -o inside the input tree)."""
    if not top and is_output_folder(folder):
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
            yield Path(entry.path)
        elif recursive and entry.is_dir(follow_symlinks=False):
            subfolders.append(Path(entry.path))
    for sub in subfolders:
        yield from _walk(sub, recursive, top=False)


def plan(inputs: Iterable[str], output_dir: Path, recursive: bool = False,
         suffix: str = ".png") -> tuple[list[Item], list[str]]:
    """(items, problems). A folder's files keep their path relative to the folder under
    `output_dir` (stem + suffix); a file or glob match goes to `output_dir/stem + suffix`.
    Problems are one line each; `Collision` ones must stop the run."""
    items: list[Item] = []
    problems: list[str] = []
    seen_inputs: set[str] = set()
    owner: dict[str, str] = {}
    output_dir = Path(output_dir)
    out_resolved = output_dir.resolve()

    def add(photo: Path, relative: Path) -> None:
        key = str(photo.resolve())
        if key in seen_inputs:
            return
        seen_inputs.add(key)
        target = output_path(output_dir, relative, ext=suffix)
        tkey = str(target.resolve())
        if tkey == key:
            problems.append(Collision(f"{photo}: output {target} would overwrite the input; choose another -o"))
        elif tkey in owner:
            problems.append(Collision(f"{photo}: output {target} is already the output of {owner[tkey]}; "
                                      f"rename one of them or restore them into different folders"))
        else:
            owner[tkey] = str(photo)
            items.append(Item(str(photo), str(target)))

    for raw in inputs:
        path = Path(raw).expanduser()
        if path.is_dir():
            count = 0
            for photo in _walk(path, recursive):
                if out_resolved in photo.resolve().parents:
                    continue  # never feed our own outputs back in
                add(photo, photo.relative_to(path))
                count += 1
            if count == 0:
                problems.append(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        elif path.is_file():
            add(path, Path(path.name))
        elif any(ch in raw for ch in "*?["):
            found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
            if not found:
                problems.append(f"{raw}: pattern matched no files")
            for photo in found:
                add(photo, Path(photo.name))
        else:
            problems.append(f"{path}: no such file or folder")
    return items, problems
