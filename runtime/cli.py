"""The `trt-restore` command line.

Heavy imports happen inside the commands so that `--help` is instant and the runtime
commands never pull in torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import __version__, cli_options
from .modes import mode_of_flags

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

    mode = mode_of_flags(scratch=scratch, hr=hr)
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


@app.command("restore")
@cli_options.with_restore_options
def restore_command(args=None) -> None:
    """Restore photos (global stage: quality, scratch or HR mode; then faces) with the exported models.

    Every photo is processed on its own: a bad file is reported on one line on stderr and the
    run goes on. Outputs are written atomically and an input is never overwritten; photos whose
    output exists are skipped (--overwrite redoes them), so an interrupted run resumes.
    OUT/manifest.jsonl and OUT/manifest.csv record every file (as `batch` does). Progress, the
    faces found per photo and the summary go to stderr. Exit code 0 when all photos were
    restored, 1 when some failed, 2 on usage errors (found before the first photo)."""
    from .serve.batch import run_local  # the batch's in-process worker; no serving packages needed
    from .folder_progress import Reporter

    options, run = cli_options.prepare_run(args)
    restorer = cli_options.load_restorer(options)
    reporter = Reporter(len(run.items), f"restoring ({options.mode})", rich=True, detail=True)
    try:
        summary = run.run(lambda todo: run_local(todo, options, 1, restorer, on_stage=reporter.stage),
                          args.overwrite, reporter)
    finally:
        reporter.close()
    typer.echo(summary.line(args.output_dir), err=True)
    raise typer.Exit(summary.exit_code)


@app.command("export")
def export_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="Root of the official checkpoint layout "
                                 "(what fetch-weights writes)."),
    output_dir: Optional[Path] = typer.Option(None, "--output", "-o", envvar="TRT_RESTORE_MODELS", help=cli_options.MODELS_HELP),
    graphs: Optional[list[str]] = typer.Option(None, "--graph", help="Only these graphs (repeatable)."),
    faces: bool = typer.Option(True, "--faces/--no-faces", help="Also export the face generators (2 x 370 MB)."),
) -> None:
    """Export every network to ONNX (opset 17, dynamic batch/height/width), check, simplify
    with onnxslim, validate against PyTorch on two shapes and write models.json. Needs \\[export]."""
    from .export.checkpoints import CheckpointError
    from .export.graphs import GRAPH_BY_NAME, GRAPHS
    from .export.onnx_export import ExportError, ExportPlan, export_all
    from .restorer import DEFAULT_MODELS

    chosen = [GRAPH_BY_NAME[g] for g in graphs] if graphs else [g for g in GRAPHS if faces or g.multiple < 256]
    target = output_dir or DEFAULT_MODELS
    with _progress() as progress:
        task = progress.add_task("exporting", total=len(chosen))

        def advance(name: str) -> None:
            names = [g.name for g in chosen]
            done = names.index(name) if name in names else None
            progress.update(task, description=f"exporting {name}", completed=done)

        try:
            export_all(ExportPlan(weights, target, tuple(chosen)), on_progress=advance)
        except (CheckpointError, ExportError) as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(1)
        progress.update(task, completed=len(chosen), description="exported")
    typer.echo(f"{len(chosen)} graph(s) written to {target}")


@app.command("doctor")
def doctor_command(
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help=cli_options.MODELS_HELP),
) -> None:
    """Show what is installed, which execution providers and GPU exist, and which models are ready."""
    from .doctor import report

    from .restorer import DEFAULT_MODELS

    typer.echo(report(models or DEFAULT_MODELS))


from .engines.cli import build_engines_command  # noqa: E402 - implementation lives in engines/

app.command("build-engines")(build_engines_command)

from .engines.kernels.cli import build_kernels_command  # noqa: E402 - lives in engines/kernels/

app.command("build-kernels")(build_kernels_command)

from .calibration.cli import calibrate_data_command, quantize_command  # noqa: E402 - lives in calibration/

app.command("calibrate-data")(calibrate_data_command)
app.command("quantize")(quantize_command)

from .benchmarks.cli import bench_command  # noqa: E402 - lives in benchmarks/

app.command("bench")(bench_command)

from .conformance.cli import conformance_command  # noqa: E402 - lives in runtime/conformance/

app.command("conformance")(conformance_command)


def _register_serving() -> None:
    """`serve` and `batch` live in trt_restore.serve (FastAPI/Ray imported only when run)."""
    from .serve.commands import batch_command, serve_command

    app.command("serve")(serve_command)
    app.command("batch")(batch_command)


_register_serving()

from .kiosk.commands import kiosk_app  # noqa: E402 - systemd units for an unattended kiosk

app.add_typer(kiosk_app, name="kiosk")


def _progress():
    """Progress bar and per-file errors on stderr (diagnostics never mix with results on stdout)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
