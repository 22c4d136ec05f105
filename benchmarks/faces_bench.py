"""Face stage evidence on the real old photos of the original release: detections per photo
for each detector installed here, and the CPU time per face of each step.

    .venv/bin/python benchmarks/faces_bench.py --models MODELS [--photos DIR] [--yunet-model F]

MODELS must hold the face_256 / face_512 graphs (`trt-restore export`; synthetic weights
time the same as the official ones). Photos default to the 12 test photos of the original
repository, read from a local clone (--original-repo). Writes benchmarks/faces.json and
benchmarks/faces.md.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from trt_restore.faces.align import aligned_crops
from trt_restore.faces.detectors import DETECTORS, DetectorUnavailable, create_detector
from trt_restore.faces.generator import FaceGenerator
from trt_restore.faces.geometry import crop_to_photo
from trt_restore.faces.paste import paste_faces

HERE = Path(__file__).resolve().parent
ORIGINAL = Path("/work/.mirror/microsoft+Bringing-Old-Photos-Back-to-Life/repo")
# Faces counted by eye on the 12 photos (11 in all).
BY_EYE = {"old/a.png": 1, "old/b.png": 1, "old/c.png": 1, "old/d.png": 0, "old/e.png": 1, "old/f.png": 0,
          "old/g.png": 1, "old/h.png": 1, "old_w_scratch/a.png": 1, "old_w_scratch/b.png": 1,
          "old_w_scratch/c.png": 1, "old_w_scratch/d.png": 2}


def load_photos(photos_dir: Path | None, repo: Path) -> dict[str, np.ndarray]:
    from PIL import Image

    from trt_restore.io import read_image

    if photos_dir is not None:
        return {p.name: read_image(p) for p in sorted(photos_dir.iterdir()) if p.suffix.lower() in (".png", ".jpg")}
    photos = {}
    for name in BY_EYE:
        data = subprocess.run(["git", "-C", str(repo), "show", f"HEAD:test_images/{name}"], check=True,
                              capture_output=True).stdout
        photos[name] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return photos


def best_of(fn, repeat: int = 2):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_detectors(photos, yunet_model):
    table = {}
    for name in DETECTORS:
        try:
            detector = create_detector(name, model_path=yunet_model if name == "yunet" else None)
        except DetectorUnavailable as err:
            table[name] = {"available": False, "why": str(err)}
            continue
        rows = {}
        for photo_name, photo in photos.items():
            seconds, faces = best_of(lambda: detector.detect(photo))
            rows[photo_name] = {"faces": len(faces), "seconds": seconds,
                                "eye_distance_px": [round(f.eye_distance, 1) for f in faces]}
        found = sum(min(r["faces"], BY_EYE.get(p, r["faces"])) for p, r in rows.items())
        extra = sum(max(0, r["faces"] - BY_EYE.get(p, r["faces"])) for p, r in rows.items())
        table[name] = {"available": True, "model": detector.describe(), "photos": rows, "found": found,
                       "extra": extra, "seconds_per_photo": float(np.mean([r["seconds"] for r in rows.values()]))}
    return table


def bench_steps(photos, detector_name, models, sizes, threads, max_faces_512):
    from trt_restore.backends import create_backend

    detector = create_detector(detector_name)
    faces = [(name, photo, f) for name, photo in photos.items() for f in detector.detect(photo)]
    backend = create_backend("ort", models, threads=threads)
    steps = {}
    for size in sizes:
        chosen = faces if size == 256 else faces[:max_faces_512]
        align, enhance, paste = [], [], []
        generator = FaceGenerator(backend, size, batch_size=1)
        generator(np.zeros((1, size, size, 3), np.uint8))  # session creation is not per-face work
        for _, photo, face in chosen:
            affine = crop_to_photo(face.points5, size)[None]
            t, crops = best_of(lambda: aligned_crops(photo, affine, size))
            align.append(t)
            t, enhanced = best_of(lambda: generator(crops), repeat=1)
            enhance.append(t)
            t, _ = best_of(lambda: paste_faces(photo, enhanced, affine))
            paste.append(t)
        batch = min(4, len(chosen))
        crops = np.stack([aligned_crops(p, crop_to_photo(f.points5, size)[None], size)[0] for _, p, f in chosen[:batch]])
        t_batch, _ = best_of(lambda: FaceGenerator(backend, size, batch_size=batch)(crops), repeat=1)
        steps[size] = {"faces": len(chosen), "align_s": float(np.median(align)), "enhance_s": float(np.median(enhance)),
                       "enhance_batch4_s_per_face": t_batch / batch, "paste_s": float(np.median(paste)),
                       "total_s": float(np.median(align) + np.median(enhance) + np.median(paste))}
    return steps


def markdown(report) -> str:
    lines = ["# Face stage: detectors and timings", "",
             f"Machine: {report['machine']}; onnxruntime CPU, {report['threads']} thread(s). "
             "Produced by `benchmarks/faces_bench.py` (numbers in `faces.json`). 1-minute load average "
             f"{report['load_average_before']} before, {report['load_average_after']} after (other jobs shared "
             "the cores: times are upper bounds; best of 2 runs per photo).", "",
             "## Detections on the 12 test photos of the original (11 faces by eye)", ""]
    available = {k: v for k, v in report["detectors"].items() if v["available"]}
    header = "| photo | by eye | " + " | ".join(available) + " |"
    lines += [header, "|" + "---|" * (2 + len(available))]
    for photo, truth in BY_EYE.items():
        cells = [f"{v['photos'][photo]['faces']} ({v['photos'][photo]['seconds'] * 1000:.0f} ms)" for v in available.values()]
        lines.append(f"| {photo} | {truth} | " + " | ".join(cells) + " |")
    lines.append("| **found / extra** | 11 | " + " | ".join(f"**{v['found']}/11**, {v['extra']} extra"
                                                         for v in available.values()) + " |")
    lines.append("| mean time per photo | | " + " | ".join(f"{v['seconds_per_photo'] * 1000:.0f} ms"
                                                          for v in available.values()) + " |")
    for name, v in report["detectors"].items():
        lines.append("")
        lines.append(f"- **{name}**: " + (v["model"] if v["available"] else f"not run: {v['why']}"))
    lines += ["", f"## Time per face of each step (faces found by {report['steps_detector']})", "",
              "| crop | faces | align | enhance (batch 1) | enhance (batch 4, per face) | paste back | total |",
              "|---|---|---|---|---|---|---|"]
    for size, s in report["steps"].items():
        lines.append(f"| {size} | {s['faces']} | {s['align_s'] * 1000:.0f} ms | {s['enhance_s']:.2f} s | "
                     f"{s['enhance_batch4_s_per_face']:.2f} s | {s['paste_s'] * 1000:.0f} ms | {s['total_s']:.2f} s |")
    lines += ["", "Align = five points -> similarity -> bilinear crop (numpy, float64); enhance = the SPADE "
              "generator graph on onnxruntime; paste back = colour reference, histogram matching, Keys cubic "
              "warp, masks, erosion, blur and blend on the face's window (numpy, float64). Detection time is "
              "per photo (table above)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, required=True, help="model dir with face_256 (and face_512)")
    parser.add_argument("--photos", type=Path, default=None)
    parser.add_argument("--original-repo", type=Path, default=ORIGINAL)
    parser.add_argument("--yunet-model", default=None)
    parser.add_argument("--steps-detector", default="scrfd")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--max-faces-512", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    photos = load_photos(args.photos, args.original_repo)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    report = {"machine": f"{cpu}, {len(os.sched_getaffinity(0))} cores available", "threads": args.threads,
              "load_average_before": round(os.getloadavg()[0], 2),
              "detectors": bench_detectors(photos, args.yunet_model), "steps_detector": args.steps_detector}
    sizes = [s for s in (256, 512) if (args.models / f"face_{s}.onnx").is_file()]
    report["steps"] = bench_steps(photos, args.steps_detector, args.models, sizes, args.threads, args.max_faces_512)
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faces.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "faces.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
