"""The options `restore` and `batch` share: declared once (`with_restore_options` adds them to
both commands), parsed once into a photo_job.RestoreOptions, and every one checked before the
first photo (`prepare_run`), so the two commands say and accept the same things."""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import NoReturn, Optional

import typer

from . import cli_checks, file_options

MODELS_HELP = "Exported model directory (default: $TRT_RESTORE_MODELS or ~/.cache/trt-restore/models)."

SHARED = (  # (parameter, type, typer declaration); typer reads them as if written in each command
    ("inputs", list[str], typer.Argument(..., help="Photos, folders of photos (see --recursive), or quoted "
                                         "globs ('scans/*.tif').")),
    ("output_dir", Path, typer.Option(..., "--output", "-o", help="Output folder: the restored photos (same "
                                      "stem; --format chooses the type; a folder's tree is mirrored), "
                                      "manifest.jsonl and manifest.csv.")),
    ("scratch", bool, typer.Option(False, "--scratch", help="Detect scratches and inpaint them (scratch mode).")),
    ("hr", bool, typer.Option(False, "--hr", help="Scratch mode with patch attention, for high-resolution "
                              "photos (sides are rounded to multiples of 16, as the original does).")),
    ("recursive", bool, typer.Option(False, "--recursive", "-r", help="Descend into subfolders of folder inputs.")),
    ("backend", str, typer.Option("auto", "--backend", callback=cli_checks.one_of("auto", "ort", "trt"),
                                  help="auto | ort | trt. auto uses TensorRT when a GPU and engines are "
                                  "present, else onnxruntime on the CPU.")),
    ("precision", Optional[str], typer.Option(None, "--precision", envvar="TRT_RESTORE_PRECISION",
                                              callback=cli_checks.one_of("fp32", "fp16", "int8"),
                                              help="fp32 | fp16 | int8 (default: fp16 on TensorRT, fp32 on "
                                              "onnxruntime). int8 on onnxruntime runs the Q/DQ models of "
                                              "`trt-restore quantize`.")),
    ("models", Optional[Path], typer.Option(None, "--models", "-m", envvar="TRT_RESTORE_MODELS", help=MODELS_HELP)),
    ("threads", Optional[int], typer.Option(None, "--threads", min=1, help="CPU threads for onnxruntime, per "
                                            "worker (default: all cores available to this process).")),
    ("masks", Optional[Path], typer.Option(None, "--masks", help="Folder of hand-made scratch masks (same stem "
                                           "as the photo, white = scratch); photos without one use the "
                                           "detector.")),
    ("save_stages", bool, typer.Option(False, "--save-stages", help="Also write <stem>_mask.png and "
                                       "<stem>_painted.png (scratch modes), <stem>_global.png (before faces), "
                                       "<stem>_face<k>_crop.png and <stem>_face<k>_enhanced.png next to the "
                                       "output.")),
    ("minmax", bool, typer.Option(False, "--minmax", help="Min-max stretch each output like the original's "
                                  "save_image(normalize=True); default clips to the valid range.")),
    ("tile", str, typer.Option("auto", "--tile", callback=cli_checks.tile_option, help="auto: exact "
                               "strip-by-strip execution when a photo would not fit --max-memory; on: always; "
                               "off: never; N: strips of N image rows. Tiled output equals untiled output "
                               "(InstanceNorm statistics stay full-frame).")),
    ("max_memory", str, typer.Option("4G", "--max-memory", callback=cli_checks.memory_option,
                                     help="Memory budget for one photo, e.g. 4G, 1500M (at least 664M).")),
    ("overwrite", bool, typer.Option(False, "--overwrite", help="Redo photos whose output exists (default: skip "
                                     "them, so an interrupted run resumes).")),
    ("faces", Optional[bool], typer.Option(None, "--faces/--no-faces", help="Enhance faces (default: on when "
                                           "the face graph of the mode and a face detector are present; --faces "
                                           "makes their absence an error).")),
    ("face_detector", str, typer.Option("auto", "--face-detector",
                                        callback=cli_checks.one_of("auto", "scrfd", "dlib", "yunet"),
                                        help="auto | scrfd | dlib | yunet. auto: the best available (SCRFD, "
                                        "then dlib).")),
    ("face_detector_model", Optional[Path], typer.Option(None, "--face-detector-model", help="Model file of the "
                                                         "face detector (needed for yunet).")),
    ("fmt", str, file_options.FORMAT),
    ("quality", Optional[int], file_options.QUALITY),
    ("output_profile", str, file_options.OUTPUT_PROFILE),
    ("keep_depth", bool, file_options.KEEP_DEPTH),
    ("depth_threshold", int, file_options.DEPTH_THRESHOLD),
    ("network_size", bool, file_options.NETWORK_SIZE),
)


def with_restore_options(command):
    """Give a typer command the shared options; it receives their values as `args` (a namespace)."""
    own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
           for p in inspect.signature(command).parameters.values() if p.name != "args"]
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=declaration, annotation=kind)
              for name, kind, declaration in SHARED]

    @functools.wraps(command)
    def wrapper(**values):
        args = SimpleNamespace(**{name: values.pop(name) for name, _, _ in SHARED})
        return command(**values, args=args)

    wrapper.__signature__ = inspect.Signature([*shared, *own])
    wrapper.__annotations__ = {k: v for k, v in command.__annotations__.items() if k != "args"}
    wrapper.__annotations__.update({name: kind for name, kind, _ in SHARED})
    return wrapper


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def prepare_run(args, manifest: Path | None = None, verify_models: bool = False):
    """(RestoreOptions, FolderRun) once every argument is checked: file options, -o, --masks,
    the inputs, outputs claimed twice and, with `verify_models` (runs whose Restorers are built
    elsewhere), the models folder, its graphs and their sha256. Exits 2, after saying every
    problem found, before any photo is read; `load_restorer` checks the models of local runs."""
    from .folder_pipeline import FolderRun
    from .modes import mode_of_flags
    from .photo_job import RestoreOptions
    from .restorer import DEFAULT_MODELS

    file_options.build(args.fmt, args.quality, args.output_profile, args.keep_depth, args.depth_threshold,
                       args.network_size)  # exits 2 if bad
    mode = mode_of_flags(scratch=args.scratch, hr=args.hr)
    models = Path(args.models or DEFAULT_MODELS).expanduser()
    problems = [p for p in (cli_checks.output_dir_problem(args.output_dir), cli_checks.masks_problem(args.masks),
                            verify_models and cli_checks.models_problem(models, mode)) if p]
    options = RestoreOptions(
        models=str(models.resolve()), mode=mode, backend=args.backend, precision=args.precision, faces=args.faces,
        face_detector=args.face_detector, face_detector_model=args.face_detector_model, threads=args.threads,
        tile=args.tile, max_memory=args.max_memory, minmax=args.minmax,
        masks=str(args.masks) if args.masks else None, save_stages=args.save_stages, format=args.fmt,
        quality=args.quality, output_profile=args.output_profile, keep_depth=args.keep_depth,
        depth_threshold=args.depth_threshold, output_size="network" if args.network_size else "input")
    run = FolderRun.plan(args.inputs, args.output_dir, options, args.recursive, manifest)
    for problem in [*problems, *run.problems]:
        typer.echo(f"error: {problem}", err=True)
    if problems or run.collisions:  # x.jpg and x.jpeg -> x.png: refused before anything runs
        raise typer.Exit(2)
    if not run.items:
        fail("no input photos")
    _quiet_pillow_bomb_warning()
    return options, run


def _quiet_pillow_bomb_warning() -> None:
    """io's own pixel limit reports large photos in one line; Pillow's raw warning text would leak."""
    import warnings

    from PIL import Image

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


def load_restorer(options):
    """The run's Restorer, built before the first photo (models checked, face stage decided);
    says on stderr which backend runs and whether faces are on."""
    try:
        restorer = options.make_restorer()
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        fail(str(err))
    reason = restorer.backend.fallback_reason
    typer.echo(f"{options.mode} mode on {restorer.backend.describe()}" + (f" ({reason})" if reason else ""),
               err=True)
    typer.echo(restorer.face_note, err=True)
    return restorer
