"""`trt-restore build-engines`: the command's implementation (registered in runtime/cli.py).

Importing this module is cheap: TensorRT, cuda-python and onnx are imported when the command runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .profiles import (DEFAULT_MAX_ASPECT, DEFAULT_MAX_SIZE, DEFAULT_OPT_SIZE, DEFAULT_STRIP_ROWS,
                       DEFAULT_TILED_MAX_SIDE, ProfileError, parse_size)


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def build_engines_command(
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help="Exported model directory (default: "
                                          "$TRT_RESTORE_MODELS or ~/.cache/trt-restore/models)."),
    precision: str = typer.Option("fp16", "--precision", help="fp16 (default), fp32 or int8 (int8 needs the "
                                  "calibrated Q/DQ models)."),
    max_size: str = typer.Option(_size_text(DEFAULT_MAX_SIZE), "--max-size", help="Largest photo the engines "
                                 "accept, WIDTHxHEIGHT pixels (either orientation; larger photos are tiled "
                                 "or need a rebuild)."),
    opt_size: str = typer.Option(_size_text(DEFAULT_OPT_SIZE), "--opt-size", help="Photo size TensorRT tunes "
                                 "for, WIDTHxHEIGHT pixels."),
    max_aspect: float = typer.Option(DEFAULT_MAX_ASPECT, "--max-aspect", help="Widest photo (long side / "
                                     "short side) the scratch detector's engine accepts; the default covers "
                                     "every photo `restore` accepts (detection input up to 2048 px on both "
                                     "axes); e.g. 3 gives a 768x768 profile and needs less GPU memory."),
    version_compatible: bool = typer.Option(False, "--version-compatible", help="Build version-compatible "
                                            "plans (run on a newer TensorRT of the same major, e.g. the lean "
                                            "runtime)."),
    engines_dir: Optional[Path] = typer.Option(None, "--engines", help="Engine cache (default: MODELS/engines)."),
    graphs: Optional[list[str]] = typer.Option(None, "--graph", help="Only these graphs (repeatable)."),
    workspace: str = typer.Option("4G", "--workspace", help="Builder workspace memory limit, e.g. 2G."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when a valid cached plan exists."),
    layers: Optional[bool] = typer.Option(None, "--layers/--no-layers", help="Also build the per-layer graphs "
                                          "of exact tiling (`--tile`; default: when the export has them and no "
                                          "--graph is given)."),
    strip_rows: int = typer.Option(DEFAULT_STRIP_ROWS, "--strip-rows", help="Largest strip (output rows) the "
                                   "per-layer engines take; tiled runs under TensorRT never use taller strips."),
    tiled_max_side: int = typer.Option(DEFAULT_TILED_MAX_SIDE, "--tiled-max-side", help="Longest photo side "
                                       "(pixels) the per-layer engines take, i.e. the largest photo that tiles "
                                       "under TensorRT."),
) -> None:
    """Build TensorRT engines for the exported graphs (one optimisation profile per graph,
    persistent timing cache). Plans are cached by model hash, precision, profile, GPU and
    TensorRT version; a stale or foreign plan is rebuilt, never loaded. Needs TensorRT and a
    CUDA GPU (the \\[trt] extra). Exit code 0 when every graph has an engine, 1 when some
    failed, 2 on usage errors or when TensorRT / a GPU is missing."""
    from ..restorer import DEFAULT_MODELS
    from ..tiling.plan import parse_size as parse_bytes
    from .builder import BuildError, BuildOptions, build_engines
    from . import environment
    from .profiles import graph_profile, layer_profile

    if precision not in ("fp32", "fp16", "int8"):
        typer.echo(f"error: --precision must be fp32, fp16 or int8, not {precision!r}", err=True)
        raise typer.Exit(2)
    try:
        options = BuildOptions(models_dir=Path(models or DEFAULT_MODELS).expanduser(), precision=precision,
                               max_size=parse_size(max_size), opt_size=parse_size(opt_size),
                               max_aspect=max_aspect, version_compatible=version_compatible, engines_dir=engines_dir,
                               graphs=tuple(graphs) if graphs else None, workspace_bytes=parse_bytes(workspace),
                               force=force, layers=layers, strip_rows=strip_rows, tiled_max_side=tiled_max_side)
        graph_profile("mapping_quality", options.max_size, options.opt_size)  # size errors before TensorRT
        layer_profile("VAE_A_quality/encoder.1", tiled_max_side, strip_rows)
        graph_profile("detection", options.max_size, options.opt_size, options.max_aspect)
    except (ProfileError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    try:
        trt = environment.import_tensorrt(require_builder=True)
        gpu = environment.gpu_info()
    except (environment.TensorRTUnavailable, environment.GpuUnavailable) as err:
        typer.echo(f"error: cannot build engines here: {err}", err=True)
        raise typer.Exit(2)

    last: dict[str, str] = {}

    def progress(graph: str, phase: str, step: int, steps: int) -> None:
        line = f"  {graph}: {phase} {step}/{steps}" if steps else f"  {graph}: {phase}"
        if last.get(graph) != line:
            last[graph] = line
            typer.echo(line, err=True)

    try:
        report = build_engines(options, trt=trt, gpu=gpu, on_event=lambda m: typer.echo(m, err=True),
                               progress=progress)
    except (BuildError, ProfileError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    typer.echo(f"{len(report.built)} built, {len(report.reused)} cached{skipped}, {len(report.failed)} failed "
               f"-> {options.cache_root}")
    for graph, reason in report.skipped.items():
        typer.echo(f"  skipped {graph}: {reason}")
    raise typer.Exit(1 if report.failed else 0)
