"""`trt-restore build-kernels`: AOT-compile the Triton kernels into cubins (registered in
runtime/cli.py). Cheap to import: Triton is imported when the command runs."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from . import configs


def build_kernels_command(
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Output folder (default: the package's "
                                       "cubins/, which the runtime and the plugins load)."),
    arch: Optional[List[int]] = typer.Option(None, "--arch", help="Compute capability, repeatable (default: "
                                             + ", ".join(map(str, configs.ARCHES)) + ")."),
    kernel: Optional[List[str]] = typer.Option(None, "--kernel", help="Only these kernels (default: all)."),
) -> None:
    """Compile the Triton kernels into SASS cubins + manifest.json for every target GPU (no GPU
    needed; needs Triton: the kernels extra of trt-restore)."""
    from . import aot

    try:
        path = aot.build(tuple(arch or configs.ARCHES), out or aot.CUBIN_DIR, list(kernel or []) or None,
                         log=typer.echo)
    except ImportError as err:
        typer.echo(f"build-kernels needs Triton: {err} (pip install 'trt-restore[kernels]')", err=True)
        raise typer.Exit(2)
    except RuntimeError as err:
        typer.echo(f"build-kernels: {err}", err=True)
        raise typer.Exit(2)
    typer.echo(f"wrote {path}")
