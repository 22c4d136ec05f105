"""`trt-restore calibrate-data` and `trt-restore quantize` (registered in runtime/cli.py).

Importing this module is cheap: numpy/OpenCV/onnxruntime are imported when a command runs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def calibrate_data_command(
    output: Path = typer.Argument(..., help="Folder to write the calibration set into (manifest.json, "
                                  "clean/, degraded/, masks/)."),
    source: Optional[Path] = typer.Option(None, "--source", "-s", help="Folder of clean photos (walked "
                                          "recursively); default: procedurally generated scenes."),
    count: int = typer.Option(32, "--count", "-n", min=1, help="Number of calibration photos."),
    size: int = typer.Option(256, "--size", min=32, help="Side of the square crops in pixels (multiple of 16)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed, source and options give the same files."),
) -> None:
    """Make a reproducible INT8 calibration set of synthetic old photos: clean crops (or
    procedural scenes) degraded with scratches, creases, dust, film grain, noise, blur, JPEG
    artefacts, fading, colour cast, halftone and paper texture; scratch masks included."""
    from .dataset import CalibrationSetError, build_calibration_set

    try:
        with _progress() as progress:
            task = progress.add_task("degrading", total=count)
            calibration = build_calibration_set(output, source, count=count, size=size, seed=seed,
                                                on_progress=lambda done, total: progress.update(task, completed=done))
    except CalibrationSetError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{count} calibration photo(s) ({size}x{size}, seed {seed}) written to {output}; "
               f"fingerprint {calibration.manifest['fingerprint'][:16]}")


def quantize_command(
    calibration: Path = typer.Option(..., "--calibration", "-c", help="Calibration set made by "
                                     "`trt-restore calibrate-data`."),
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help="Exported model directory (default: "
                                          "$TRT_RESTORE_MODELS or ~/.cache/trt-restore/models)."),
    graphs: Optional[list[str]] = typer.Option(None, "--graph", help="Only these graphs (repeatable; default: "
                                               "every exported global graph)."),
    method: str = typer.Option("percentile", "--method", help="Activation range calibration: percentile "
                               "(default, measured best), minmax or entropy."),
    percentile: float = typer.Option(99.99, "--percentile", help="Percentile for --method percentile."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Use only the first N calibration photos."),
    force: bool = typer.Option(False, "--force", help="Rebuild even when models.json says the Q/DQ model is "
                               "current (calibration caches are still reused)."),
    int8_encoder: bool = typer.Option(False, "--int8-encoder", help="Also run the encoder (VAE A) in INT8 "
                                      "(its Q/DQ model is always built; by default the runtime keeps it fp32: "
                                      "~5 dB less end to end for a few percent of the time)."),
) -> None:
    """Write INT8 Q/DQ ONNX models (onnxruntime static quantization, QDQ format: int8 per-channel
    weights, uint8 activations; InstanceNorm, attention and the image/latent boundary convs
    stay fp32) into <models>/int8/ and record them in models.json (`int8` section; the encoder's
    model is built but the runtime keeps that graph fp32 unless --int8-encoder).
    Calibration ranges are cached, so a repeated build is instant."""
    from .quantize import QuantizeError, QuantizeOptions, quantize_models

    from ..restorer import DEFAULT_MODELS

    target = models or DEFAULT_MODELS
    options = QuantizeOptions(method=method, percentile=percentile, limit=limit, force=force,
                              graphs=tuple(graphs) if graphs else None,
                              fp32_graphs=() if int8_encoder else QuantizeOptions.fp32_graphs)
    try:
        with _progress() as progress:
            task = progress.add_task("quantizing", total=None)

            def report(name: str, done: int, total: int) -> None:
                progress.update(task, description=name, completed=done, total=total)

            summary = quantize_models(target, calibration, options, on_progress=report)
    except QuantizeError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1)
    for name, entry in summary["graphs"].items():
        state = "reused" if entry.get("reused") else "built"
        use = "INT8" if entry["precision"] == "int8" else "runtime keeps fp32, Q/DQ model built"
        typer.echo(f"{name}: {use} ({state}; {entry['conv_int8']}/{entry['conv_total']} convs int8, "
                   f"{100 * entry['int8_mac_fraction']:.0f}% of MACs; held-out rel. error "
                   f"{entry['validation']['rel_error']:.3g})")
    typer.echo(f"INT8 models recorded in {target}/models.json (restore with --precision int8)")
