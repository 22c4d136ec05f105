"""Checks the command line makes before the first photo, with messages that name the option.

Typer callbacks (`tile_option`, `memory_option`) turn a bad value into click's usage error
(exit code 2, "Invalid value for '--tile': ..."), instead of a Python message such as
"invalid literal for int()" on the first photo, or a budget silently raised to the minimum.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import typer

MIN_TILE_ROWS = 8


def min_memory() -> int:
    """The smallest --max-memory the runtime can keep: its own overhead plus one working set."""
    from .tiling.plan import BASE_OVERHEAD

    return BASE_OVERHEAD + (64 << 20)


def tile_option(value: str) -> str:
    text = str(value).strip().lower()
    if text in ("auto", "on", "off"):
        return text
    if not text.isdigit():
        raise typer.BadParameter(f"{value!r}: use auto, on, off or a strip height in image rows (e.g. 512)")
    if int(text) < MIN_TILE_ROWS:
        raise typer.BadParameter(f"{value!r}: a strip must be at least {MIN_TILE_ROWS} image rows")
    return text


def memory_option(value: str) -> str:
    from .tiling.plan import parse_size

    try:
        size = parse_size(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r}: use a size such as 4G, 1500M or 2.5G") from None
    floor = min_memory()
    if size < floor:
        raise typer.BadParameter(f"{value!r} is below the minimum of {floor >> 20}M (the runtime itself "
                                 f"takes ~{(floor >> 20) - 64}M)")
    return value


def output_collisions(photos: Iterable[Path], target: Callable[[Path], Path]) -> list[str]:
    """One line per input whose output another input of the same run already claims
    (x.jpg and x.jpeg both -> x.png): refused before anything runs, never silently skipped
    or overwritten."""
    owner: dict[Path, Path] = {}
    problems = []
    for photo in photos:
        out = target(photo).resolve()
        if out in owner:
            problems.append(f"{photo}: its output {target(photo)} is also the output of {owner[out]}; "
                            f"rename one of them or restore them into different folders")
        else:
            owner[out] = photo
    return problems


def output_dir_problem(output_dir: Path) -> str | None:
    """Why -o cannot be the output folder, found before the first photo (not after it)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        return f"-o {path}: exists and is not a folder"
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        return f"-o {path}: {parent} is not writable"
    return None
