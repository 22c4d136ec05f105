"""The typer command of `trt-restore conformance` and its result table."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from .command import DEFAULT_TILE_ROWS, Report, UsageError, resolve_backends, run_conformance

def print_report(report: Report) -> None:
    """One row per tensor, worst first within a file; then a summary line."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="conformance to the reference vectors", show_lines=False)
    for column in ("file", "kind", "backend", "tensor", "max |diff|", "tolerance", "status"):
        table.add_column(column, justify="right" if column in ("max |diff|", "tolerance") else "left")
    for row in report.rows:
        c = row.comparison
        if not c.compared:
            value, tolerance = "—", f"{c.tolerance:g}"
        else:
            value = f"{c.max_abs:.3g}"
            if c.fraction is not None:
                value += f" ({c.fraction:.3%} differ)"
            if c.psnr_db is not None:
                value += f" / {c.psnr_db:.1f} dB"
            tolerance = f"{c.tolerance:g}" + (f" ({c.tolerance_fraction:.2%})" if c.tolerance_fraction is not None else "")
            if c.psnr_budget_db is not None:
                tolerance = f"≥ {c.psnr_budget_db:g} dB"
        status = {"ok": "[green]ok[/]", "FAIL": "[bold red]FAIL[/]", "n/a": f"[dim]n/a: {c.note}[/]",
                  "info": "[dim]reported[/]"}[c.status]
        table.add_row(row.file, row.kind, row.backend, c.name, value, tolerance, status)
    console = Console(width=max(140, Console().width))
    console.print(table)
    for backend, reason in report.skipped.items():
        console.print(f"[yellow]{backend}: not run here: {reason}[/]")
    judged = [r for r in report.rows if r.comparison.compared and not r.comparison.informational]
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
    verdict = "[bold red]FAILED[/]" if report.failed else "[bold green]PASSED[/]"
    console.print(f"{verdict}: {len(judged) - len(report.failed)} of {len(judged)} tensors within tolerance, "
                  f"{len(report.failed)} failed ({seconds})")


def conformance_command(
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", envvar="TRT_RESTORE_REFERENCE",
                                             help="Reference root with vectors/*.npz and faces/*.npz "
                                             "(default: $TRT_RESTORE_REFERENCE)."),
    backend: list[str] = typer.Option(["all"], "--backend", "-b",
                                      help="pytorch | ort | ort-tiled | trt | all (repeatable). all runs "
                                      "every backend this machine has and says why it skipped the others."),
    precision: str = typer.Option("fp32", "--precision", help="fp32 (each file's own tolerances) | fp16 | int8 "
                                  "(TensorRT engines / ORT Q/DQ models: the final output is judged on PSNR, "
                                  "40 dB for fp16, 30 dB for int8; the rest is reported)."),
    work_dir: Optional[Path] = typer.Option(None, "--work-dir", help="Where the synthetic weights and the exported "
                                            "graphs are kept between runs (default ~/.cache/trt-restore/conformance)."),
    models: Optional[Path] = typer.Option(None, "--models", "-m", help="Use graphs (and engines) already exported "
                                          "from the synthetic weights instead of exporting (a Jetson without torch)."),
    tile_rows: int = typer.Option(DEFAULT_TILE_ROWS, "--tile", min=1, help="Strip height (rows) of the ort-tiled "
                                  "run; smaller than the latent, so every map is cut into several strips."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="onnxruntime threads (default: all cores)."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write every row as JSON to this file."),
) -> None:
    """Check this install against the reference vectors of the original code: every network vector
    on each backend at the graph-segment boundaries it stores (latent, nl_in, mapped, output,
    detection prob, face output), and every face alignment/paste-back file. Synthetic weights of the
    reference's rule are written and exported first (cached). Exit 0 when every tensor is within
    tolerance, 1 when one is not, 2 on usage errors."""
    if reference is None:
        typer.echo("error: --reference DIR is required (or set TRT_RESTORE_REFERENCE)", err=True)
        raise typer.Exit(2)
    if not reference.is_dir():
        typer.echo(f"error: --reference {reference}: not a folder", err=True)
        raise typer.Exit(2)
    if precision not in ("fp32", "fp16", "int8"):
        typer.echo(f"error: --precision must be fp32, fp16 or int8, not {precision!r}", err=True)
        raise typer.Exit(2)
    start = time.perf_counter()
    try:
        backends = resolve_backends(backend)
        report = run_conformance(reference.resolve(), backends, precision, work_dir, models, tile_rows, threads,
                                 explicit="all" not in backend)
    except UsageError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    report.seconds["total"] = time.perf_counter() - start
    print_report(report)
    if json_path:
        json_path.write_text(json.dumps(report.to_json(), indent=2))
    raise typer.Exit(1 if report.failed else 0)
