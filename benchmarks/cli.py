"""`trt-restore bench` (registered in runtime/cli.py); the suite itself is benchmarks/suite.py."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def bench_command(
    models: Optional[Path] = typer.Option(None, "--models", "-m", help="Exported model directory (with INT8 "
                                          "models from `trt-restore quantize` for the ort-int8 column)."),
    weights: Optional[Path] = typer.Option(None, "--weights", "-w", help="Checkpoint root for the PyTorch "
                                           "reference columns (needs the \\[export] extra); without it they are "
                                           "skipped."),
    output: Path = typer.Option(Path("benchmarks/results"), "--output", "-o", help="Folder for NAME.json, "
                                "NAME.md and NAME.png."),
    name: str = typer.Option("bench", "--name", help="File stem of the outputs."),
    sizes: str = typer.Option("256,512,1024,4mp", "--sizes", help="Comma-separated: 256 (square side), WxH, "
                              "or 4mp (2304x1728)."),
    configs: str = typer.Option("torch-fp32,ort-fp32,ort-int8", "--configs", help="Comma-separated among "
                                "torch-fp32, ort-fp32, ort-int8."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per configuration (after warm-up)."),
    warmup: int = typer.Option(1, "--warmup", min=0, help="Untimed runs first."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Threads for every engine "
                                          "(default: all cores available)."),
    torch_max_mp: float = typer.Option(1.1, "--torch-max-mp", help="Skip PyTorch eager above this many "
                                       "megapixels (minutes per run)."),
    scratch: Optional[str] = typer.Option("768x512", "--scratch", help="Scratch-mode comparison size "
                                          "(WxH, ~0.4 MP: dense N x N PyTorch vs chunked); 'off' skips."),
    folder: Optional[Path] = typer.Option(None, "--folder", help="Photos for the end-to-end folder comparison "
                                          "(original's stage processes vs one warm process); default skips."),
    folder_max_side: int = typer.Option(512, "--folder-max-side", help="Photos are scaled to at most this side "
                                        "(the dense attention of the original needs N^2 memory)."),
    gemm_size: int = typer.Option(2048, "--gemm-size", help="Side of the GEMM microbenchmark."),
) -> None:
    """Latency (median/p90, warm-up excluded) and peak RSS per stage and end to end for PyTorch eager
    fp32, onnxruntime fp32 and INT8 (each configuration in its own process), the GEMM peak of this
    CPU and the achieved conv throughput, scratch mode vs the dense formulation, and a folder end to
    end vs the original's stage processes. Writes JSON + markdown + PNG."""
    from ..restorer import DEFAULT_MODELS
    from .suite import BenchOptions, parse_size, run_suite

    options = BenchOptions(
        models=(models or DEFAULT_MODELS).expanduser(), weights=weights, output=output, name=name,
        sizes=tuple(s.strip() for s in sizes.split(",") if s.strip()),
        configs=tuple(c.strip() for c in configs.split(",") if c.strip()), repeats=repeats, warmup=warmup,
        threads=threads, torch_max_pixels=int(torch_max_mp * 1e6),
        scratch_size=None if scratch in (None, "off", "") else parse_size(scratch), folder=folder,
        folder_max_side=folder_max_side, gemm_size=gemm_size)
    try:
        for size in options.sizes:
            parse_size(size)
    except ValueError:
        typer.echo(f"error: --sizes: cannot read {sizes!r}", err=True)
        raise typer.Exit(2)
    unknown = [c for c in options.configs if c not in ("torch-fp32", "ort-fp32", "ort-int8")]
    if unknown:
        typer.echo(f"error: unknown config(s) {', '.join(unknown)}", err=True)
        raise typer.Exit(2)
    if not (options.models / "models.json").is_file():
        typer.echo(f"error: {options.models}: no models.json (run `trt-restore export`)", err=True)
        raise typer.Exit(2)
    report = run_suite(options, log=lambda message: typer.echo(message, err=True))
    typer.echo(f"wrote {output}/{name}.json, .md, .png ({report['elapsed_s']} s)")
