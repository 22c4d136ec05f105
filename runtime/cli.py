"""The `trt-restore` command line.

Heavy imports happen inside the commands so that `--help` is instant and the runtime
commands never pull in torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import __version__

app = typer.Typer(
    name="trt-restore",
    help="Restore old photos with the 'Bringing Old Photos Back to Life' networks "
    "(PyTorch export toolchain, ONNX Runtime and TensorRT runtime).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_CACHE = Path("~/.cache/trt-restore/weights").expanduser()


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"trt-restore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Restore old photos: scratch detection, global restoration, face enhancement."""


@app.command("fetch-weights")
def fetch_weights_command(
    cache_dir: Path = typer.Option(DEFAULT_CACHE, "--cache-dir", "-d",
                                   help="Where archives are downloaded and unpacked (official layout)."),
    global_url: Optional[str] = typer.Option(None, "--global-url", help="URL of global_checkpoints.zip "
                                             "(default: the official GitHub release)."),
    face_url: Optional[str] = typer.Option(None, "--face-url", help="URL of face_checkpoints.zip "
                                           "(default: the official GitHub release)."),
    no_faces: bool = typer.Option(False, "--no-faces", help="Skip the face-enhancement archive."),
    retries: int = typer.Option(2, "--retries", min=0, help="Automatic resumes of a dropped download "
                                "before giving up (a later run resumes too)."),
    force: bool = typer.Option(False, "--force", help="Ignore verified.json and earlier (partial) "
                               "downloads: re-verify every file, download archives afresh."),
) -> None:
    """Download the official release archives (resumable), unpack them and verify every
    checkpoint against the shipped manifests. Needs the \\[export] extra (torch).
    URLs can also be set with TRT_RESTORE_GLOBAL_URL / TRT_RESTORE_FACE_URL."""
    from .export.fetch import fetch_weights  # torch-side tool, imported on use

    code = fetch_weights(cache_dir=cache_dir, global_url=global_url, face_url=face_url,
                         include_faces=not no_faces, retries=retries, force=force)
    raise typer.Exit(code)


@app.command("synthetic-weights")
def synthetic_weights_command(
    output: Path = typer.Argument(..., help="Root to write into (official layout: Global/..., Face_Enhancement/...)."),
    tags: Optional[list[str]] = typer.Option(None, "--tag", help="Only these checkpoint tags (repeatable)."),
) -> None:
    """Write deterministic SYNTHETIC checkpoints (for tests and demos only: restorations made
    with them are meaningless; use `fetch-weights` for the official weights). Needs \\[export]."""
    from .export.manifests import ALL_TAGS
    from .export.synthetic_weights import write_synthetic_release

    chosen = tuple(tags) if tags else ALL_TAGS
    with _progress() as progress:
        task = progress.add_task("writing synthetic checkpoints", total=len(chosen))
        for tag in chosen:
            progress.update(task, description=f"writing {tag}")
            write_synthetic_release(output, (tag,))
            progress.advance(task)
    typer.echo(f"synthetic checkpoints for {len(chosen)} tag(s) under {output}")


@app.command("reference-restore")
def reference_restore_command(
    inputs: list[Path] = typer.Argument(..., help="Photos to restore."),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Folder for the restored photos (PNG)."),
    weights: Path = typer.Option(..., "--weights", "-w", help="Root of the official checkpoint layout."),
    scratch: bool = typer.Option(False, "--scratch", help="Detect and inpaint scratches."),
    hr: bool = typer.Option(False, "--hr", help="High-resolution scratch mode (patch attention)."),
    stretch: bool = typer.Option(False, "--minmax", help="Min-max stretch the output like the original's save_image."),
) -> None:
    """Global restoration with the PyTorch networks: the original's computation, in one
    process. The reference that the ONNX/TensorRT runtime is compared with. Needs \\[export]."""
    from .export.reference_pipeline import TorchGlobalRestorer
    from .io import read_image, write_image

    mode = "hr" if hr else "scratch" if scratch else "quality"
    restorer = TorchGlobalRestorer(weights, mode)
    failures = 0
    with _progress() as progress:
        task = progress.add_task(f"restoring ({mode})", total=len(inputs))
        for path in inputs:
            try:
                result = restorer.restore(read_image(path), stretch=stretch)
                write_image(output_dir / f"{path.stem}.png", result.restored)
            except Exception as err:  # one bad photo must not stop the batch
                failures += 1
                typer.echo(f"error: {path}: {err}", err=True)
            progress.advance(task)
    raise typer.Exit(1 if failures else 0)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
