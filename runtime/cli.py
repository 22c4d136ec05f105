"""The `trt-restore` command line.

Heavy imports happen inside the commands so that `--help` is instant and the runtime
commands never pull in torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import __version__, cli_checks, file_options
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


DEFAULT_MODELS_HELP = "Exported model directory (default: $TRT_RESTORE_MODELS or ~/.cache/trt-restore/models)."


@app.command("restore")
def restore_command(
    inputs: list[str] = typer.Argument(..., help="Photos, folders of photos, or quoted globs ('scans/*.tif')."),
    output_dir: Path = typer.Option(..., "--output", "-o", help="Folder for the restored photos (same stem; --format chooses the type)."),
    scratch: bool = typer.Option(False, "--scratch", help="Detect scratches and inpaint them (scratch mode)."),
    hr: bool = typer.Option(False, "--hr", help="Scratch mode with patch attention, for high-resolution photos "
                            "(sides are rounded to multiples of 16, as the original does)."),
    backend: str = typer.Option("auto", "--backend", help="auto | ort | trt. auto uses TensorRT when a GPU and "
                                "engines are present, else onnxruntime on the CPU."),
    precision: Optional[str] = typer.Option(None, "--precision", envvar="TRT_RESTORE_PRECISION", help="fp32 | fp16 | int8 (default: fp16 on "
                                            "TensorRT, fp32 on onnxruntime). int8 on onnxruntime runs the Q/DQ "
                                            "models of `trt-restore quantize`."),
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help=DEFAULT_MODELS_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads for onnxruntime "
                                          "(default: all cores available to this process)."),
    masks: Optional[Path] = typer.Option(None, "--masks", help="Folder of hand-made scratch masks (same stem as "
                                         "the photo, white = scratch); photos without one use the detector."),
    save_stages: bool = typer.Option(False, "--save-stages", help="Also write <stem>_mask.png and "
                                     "<stem>_painted.png (scratch modes), <stem>_global.png (before faces), "
                                     "<stem>_face<k>_crop.png and <stem>_face<k>_enhanced.png."),
    minmax: bool = typer.Option(False, "--minmax", help="Min-max stretch each output like the original's "
                                "save_image(normalize=True); default clips to the valid range."),
    tile: str = typer.Option("auto", "--tile", callback=cli_checks.tile_option, help="auto: exact strip-by-strip "
                             "execution when a photo would not fit --max-memory; on: always; off: never; N: strips of "
                             "N image rows. Tiled output equals untiled output (InstanceNorm statistics stay full-frame)."),
    max_memory: str = typer.Option("4G", "--max-memory", callback=cli_checks.memory_option,
                                   help="Memory budget for one photo, e.g. 4G, 1500M (at least 664M)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs (default: skip photos "
                                   "whose output exists, so an interrupted batch resumes)."),
    faces: Optional[bool] = typer.Option(None, "--faces/--no-faces", help="Enhance faces (default: on when the "
                                         "face graph of the mode and a face detector are present; --faces makes "
                                         "their absence an error)."),
    face_detector: str = typer.Option("auto", "--face-detector", help="auto | scrfd | dlib | yunet. auto: the "
                                      "best available (SCRFD, then dlib)."),
    face_detector_model: Optional[Path] = typer.Option(None, "--face-detector-model", help="Model file of the "
                                                       "face detector (needed for yunet)."),
    fmt: str = file_options.FORMAT,
    quality: Optional[int] = file_options.QUALITY,
    output_profile: str = file_options.OUTPUT_PROFILE,
    keep_depth: bool = file_options.KEEP_DEPTH,
    depth_threshold: int = file_options.DEPTH_THRESHOLD,
    network_size: bool = file_options.NETWORK_SIZE,
) -> None:
    """Restore photos (global stage: quality, scratch or HR mode; then faces) with the exported models.

    Every photo is processed on its own: a bad file is reported on one line and the batch
    goes on. Exit code 0 when all photos were restored, 1 when some failed, 2 on usage errors.
    Outputs are written atomically; an input is never overwritten."""
    from .inputs import expand_inputs, output_path
    from .io import read_image, read_photo, write_image
    from .restorer import DEFAULT_MODELS, Restorer

    out_options = file_options.build(fmt, quality, output_profile, keep_depth, depth_threshold, network_size)

    photos, problems = expand_inputs(inputs)
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if not photos:
        typer.echo("error: no input photos", err=True)
        raise typer.Exit(2)
    bad_output = cli_checks.output_dir_problem(output_dir)
    if bad_output:
        typer.echo(f"error: {bad_output}", err=True)
        raise typer.Exit(2)
    collisions = cli_checks.output_collisions(photos, lambda p: output_path(p, output_dir, ext=out_options.suffix))
    for problem in collisions:  # x.jpg and x.jpeg -> x.png: refused before anything runs
        typer.echo(f"error: {problem}", err=True)
    if collisions:
        raise typer.Exit(2)
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # io's own pixel limit reports it
    mode = mode_of_flags(scratch=scratch, hr=hr)
    if precision not in (None, "fp32", "fp16", "int8"):
        typer.echo(f"error: --precision must be fp32, fp16 or int8, not {precision!r}", err=True)
        raise typer.Exit(2)
    try:
        restorer = Restorer(models or DEFAULT_MODELS, backend=backend, mode=mode, threads=threads, stretch=minmax,
                            precision=precision,
                            tile=tile, max_memory=max_memory, faces=faces, face_detector=face_detector,
                            face_detector_model=face_detector_model,
                            output_size="network" if network_size else "input")
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    reason = restorer.backend.fallback_reason
    typer.echo(f"{mode} mode on {restorer.backend.describe()}" + (f" ({reason})" if reason else ""), err=True)
    typer.echo(restorer.face_note, err=True)
    inputs_resolved = {p.resolve() for p in photos}
    failures = len(problems)
    skipped = 0
    with _progress() as progress:
        batch = progress.add_task(f"restoring ({mode})", total=len(photos))
        for photo in photos:
            target = output_path(photo, output_dir, ext=out_options.suffix)
            progress.update(batch, description=f"{photo.name}")
            if target.resolve() in inputs_resolved:
                typer.echo(f"error: {photo}: output {target} would overwrite an input; choose another -o", err=True)
                failures += 1
                progress.advance(batch)
                continue
            if target.exists() and not overwrite:
                skipped += 1
                progress.advance(batch)
                continue
            try:
                photo_in = read_photo(photo, keep_high=keep_depth)
                image = photo_in.pixels
                user_mask = None
                if masks is not None and mode != "quality":
                    candidates = sorted(masks.glob(f"{photo.stem}.*"))
                    user_mask = read_image(candidates[0])[:, :, 0] if candidates else None
                def stage_done(name: str, photo=photo) -> None:
                    progress.update(batch, description=f"{photo.name}: {name} done")

                result = restorer.restore_with_stages(image, mask=user_mask, on_stage=stage_done)
                if result.faces is not None:  # the face stage's summary: found and enhanced
                    found, enhanced = len(result.faces.faces), len(result.faces.enhanced_faces)
                    progress.console.print(f"{photo.name}: {found} face(s) found, {enhanced} enhanced",
                                           highlight=False, markup=False)
                if save_stages and result.mask is not None:
                    write_image(output_path(photo, output_dir, "_mask"), result.mask)
                    write_image(output_path(photo, output_dir, "_painted"), result.painted)
                if save_stages and result.faces is not None:
                    write_image(output_path(photo, output_dir, "_global"), result.global_restored)
                    for k, face in enumerate(result.faces.enhanced_faces, start=1):
                        write_image(output_path(photo, output_dir, f"_face{k}_crop"), face.crop)
                        write_image(output_path(photo, output_dir, f"_face{k}_enhanced"), face.enhanced)
                write_image(target, result.restored, photo_in.info, out_options)
            except Exception as err:  # noqa: BLE001 - one bad photo must not stop the batch
                failures += 1
                message = str(err) if str(photo) in str(err) else f"{photo}: {err}"
                progress.console.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)
            progress.advance(batch)
    restored = len(photos) + len(problems) - failures - skipped
    note = f", {skipped} skipped (output exists; --overwrite to redo)" if skipped else ""
    typer.echo(f"{restored} restored, {failures} failed{note} -> {output_dir}", err=True)
    raise typer.Exit(1 if failures else 0)


@app.command("export")
def export_command(
    weights: Path = typer.Option(..., "--weights", "-w", help="Root of the official checkpoint layout "
                                 "(what fetch-weights writes)."),
    output_dir: Optional[Path] = typer.Option(None, "--output", "-o", envvar="TRT_RESTORE_MODELS", help=DEFAULT_MODELS_HELP),
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
    models: Optional[Path] = typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help=DEFAULT_MODELS_HELP),
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
