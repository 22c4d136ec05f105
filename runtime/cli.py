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
) -> None:
    """Download the official release archives (resumable), unpack them and verify every
    checkpoint against the shipped manifests. Needs the [export] extra (torch)."""
    from .export.fetch import fetch_weights  # torch-side tool, imported on use

    code = fetch_weights(cache_dir=cache_dir, global_url=global_url, face_url=face_url,
                         include_faces=not no_faces)
    raise typer.Exit(code)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
