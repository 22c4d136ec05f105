"""A folder of photos, end to end: the original's stage processes vs one warm process.

The original runs stage 1 as separate Python processes that reload their networks and pass
PNG files: `detection.py` (writes the scratch masks of the whole folder), then `test.py`
(global restoration, dense N x N attention). `original-detect` and `original-global` emulate
those two processes with the PyTorch re-implementation; `warm` is this project's runtime
(models loaded once, masks and pictures kept in memory).

Synthetic weights make the detector flag every pixel, which would leave the attention with no
valid key; so both sides *run* the detector (its cost is real) but continue with the drawn
mask of each photo (`<stem>_drawn.png` in the input folder), the same mask for both.

    python -m trt_restore.benchmarks.stages original-detect IN MASKS --weights W
    python -m trt_restore.benchmarks.stages original-global IN MASKS OUT --weights W
    python -m trt_restore.benchmarks.stages warm IN OUT --models M --config ort-fp32
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.png") if not p.stem.endswith("_drawn"))


def drawn_mask(photo: Path):
    from trt_restore.io import read_image

    return read_image(photo.with_name(photo.stem + "_drawn.png"))[:, :, 0]


def original_detect(folder: Path, masks: Path, weights: str) -> dict:
    import torch

    from trt_restore.export.checkpoints import load_network
    from trt_restore.export.reference_pipeline import detect_scratches
    from trt_restore.io import read_image, write_image
    from trt_restore.preprocess import resize_to_multiple

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    detector = load_network(weights, "detection")
    masks.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode():
        for photo in photos(folder):
            image = resize_to_multiple(read_image(photo), 16, "bicubic")
            detect_scratches(detector, image)  # computed as the original does, then the drawn mask is passed on
            mask = drawn_mask(photo)
            write_image(masks / f"{photo.stem}.png", mask[:, :, None].repeat(3, 2))
            write_image(masks / f"{photo.stem}_input.png", image)
    return {}


def original_global(folder: Path, masks: Path, out: Path, weights: str) -> dict:
    import torch

    from trt_restore.benchmarks.worker import TorchStages
    from trt_restore.io import read_image, write_image

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    runner = TorchStages(weights, "scratch", dense=True)
    out.mkdir(parents=True, exist_ok=True)
    for photo in photos(folder):
        image = read_image(masks / f"{photo.stem}_input.png")
        mask = read_image(masks / f"{photo.stem}.png")[:, :, 0]
        result = runner.restorer.restore(image, mask=mask)
        write_image(out / f"{photo.stem}.png", result.restored)
    return {}


def warm(folder: Path, out: Path, models: str, config: str, weights: str | None) -> dict:
    from trt_restore.io import read_image, write_image
    from trt_restore.preprocess import resize_to_multiple

    started = time.perf_counter()
    if config.startswith("ort"):
        from trt_restore.backends.onnxruntime_backend import OrtBackend
        from trt_restore.global_restoration import GlobalRestorer
        from trt_restore.scratch_detection import detect_scratches

        backend = OrtBackend(models, precision=config.split("-")[1])
        restorer = GlobalRestorer(backend, "scratch")

        def one(image, mask):
            detect_scratches(backend, resize_to_multiple(image, 16, "bicubic"))  # computed, then the drawn mask
            return restorer.restore(image, mask=mask).restored
    else:
        import torch

        from trt_restore.benchmarks.worker import TorchStages
        from trt_restore.export.reference_pipeline import detect_scratches

        torch.set_num_threads(len(os.sched_getaffinity(0)))
        runner = TorchStages(weights, "scratch", dense=False)

        def one(image, mask):
            with torch.inference_mode():
                detect_scratches(runner.restorer.nets["detection"], resize_to_multiple(image, 16, "bicubic"))
            return runner.restorer.restore(image, mask=mask).restored
    # both sides pay for loading; sessions/weights are created on first use here too
    loaded = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    per_photo = []
    for photo in photos(folder):
        tick = time.perf_counter()
        write_image(out / f"{photo.stem}.png", one(read_image(photo), drawn_mask(photo)))
        per_photo.append(time.perf_counter() - tick)
    return {"load_s": loaded, "per_photo_s": per_photo}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("original-detect", "original-global", "warm"))
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--weights")
    parser.add_argument("--models")
    parser.add_argument("--config", default="ort-fp32")
    args = parser.parse_args()
    if args.step == "original-detect":
        info = original_detect(args.paths[0], args.paths[1], args.weights)
    elif args.step == "original-global":
        info = original_global(args.paths[0], args.paths[1], args.paths[2], args.weights)
    else:
        info = warm(args.paths[0], args.paths[1], args.models, args.config, args.weights)
    from trt_restore.benchmarks.worker import peak_rss_mb

    info["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(info))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
