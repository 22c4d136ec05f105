"""Checks the command line makes before the first photo, with messages that name the option.

Typer callbacks (`tile_option`, `memory_option`) parse a value once into its typed form
(runtime/run_options.py) or turn it into click's usage error (exit code 2, "Invalid value for
'--tile': ..."), instead of a Python message such as "invalid literal for int()" on the first
photo, or a budget silently raised to the minimum.
"""
from __future__ import annotations

import os
from pathlib import Path

import typer


def tile_option(value):
    """--tile as a run_options.TilePolicy (click's usage error naming the option when bad)."""
    from .run_options import TilePolicy

    try:
        return TilePolicy.parse(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def memory_option(value) -> int:
    """--max-memory in bytes (click's usage error naming the option when bad or too small)."""
    from .run_options import parse_memory

    try:
        return parse_memory(value)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from None


def output_dir_problem(output_dir: Path) -> str | None:
    """Why -o cannot be the output folder, found before the first photo (not after it)."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        return f"-o {path}: exists and is not a folder"
    parent = next((p for p in (path, *path.parents) if p.exists()), None)
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):
        return f"-o {path}: {parent} is not writable"
    return None


def one_of(*choices: str):
    """A typer callback refusing anything but `choices` (None passes: the option's default)."""
    def check(value):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"{value!r}: choose {', '.join(choices)}")
        return value
    return check


def masks_problem(masks: Path | None) -> str | None:
    """Why --masks cannot be read, found before the first photo."""
    if masks is not None and not Path(masks).is_dir():
        return f"--masks {masks}: no such folder"
    return None


def models_problem(models: Path, mode: str) -> str | None:
    """Why the models folder cannot serve `mode`: no models.json, graphs missing, or a file whose
    sha256 differs from models.json. The Restorer checks the same when built; this is for runs
    that build theirs elsewhere (Ray workers)."""
    from .model_store import ModelStore, ModelStoreError
    from .restorer import mode_models_problem

    try:
        return mode_models_problem(ModelStore.open(models), mode)
    except ModelStoreError as err:
        return str(err)
