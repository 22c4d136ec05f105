"""Peak memory of every stage of a restore, from measured figures, and a refusal before any
large allocation when even the bounded path cannot stay inside `--max-memory`.

Each stage's estimate is a peak RSS of the whole process: the mode's base (interpreter and
the mode's sessions, runtime/modes.py), the photo arrays every stage holds, and what the
stage itself adds. The figures are measured by `python -m trt_restore.benchmarks.stage_memory`
(benchmarks/results/stage_memory.md): slopes of peak RSS between two photo sizes in one run,
rounded up. The untiled global networks use the mode's own per-pixel figure (modes.py).

What bounds each stage:
- decode: row blocks for 16-bit and float data (runtime/io.py), no float64 frame;
- detection: the UNet runs at most 256 x 2048 (preprocess.detection_size); only its 4-byte
  gray input and the 0/255 mask span the photo (scratch_detection.py);
- hole painting: row blocks (preprocess.paint_holes);
- global networks: tiled when the untiled estimate exceeds the budget (tiling/plan.py); the
  tiled path still keeps full-photo input, output and latent arrays (TILED_BYTES_PER_PIXEL);
- faces: one face per generator run (faces/generator.py), each pasted within its window
  (faces/paste.py);
- encode: PIL's encoder on the uint8 result.
"""
from __future__ import annotations

import math

from .modes import mode_spec
from .preprocess import detection_size
from .tiling.plan import parse_size, untiled_peak_estimate

# What the process holds outside the global networks: every session of the mode loaded, no
# photo (a 64x64 restore, untiled then tiled, peaks at 0.50 / 0.63 / 0.51 GiB in quality /
# scratch / HR: benchmarks/results/odd_shapes.md, probe column). The untiled figures' base
# (modes.py) is larger in HR because it also holds the mapping's arenas at full size.
RESIDENT_BYTES = 700 << 20
HELD_BYTES_PER_PIXEL = 9  # the decoded photo, its side-multiple copy and the restored result (uint8 RGB)
DECODE_BYTES_PER_PIXEL = 11  # 16-bit gray PNG (9.7 measured); 8-bit photos take less
DETECTION_BYTES_PER_PIXEL = 2700  # per pixel of the detection size (2590 measured: 256x1024 -> 256x2048)
DETECTION_PHOTO_BYTES_PER_PIXEL = 6  # gray float32 input + gray + mask (by construction; below the noise)
PAINT_BYTES_PER_PIXEL = 8  # dilated mask + painted copy + row blocks (6.5 measured)
ENCODE_BYTES_PER_PIXEL = 7  # PNG (5.2-5.7 measured)
# The tiled path still keeps full-photo arrays: float input and output, latent and mapped
# (64 channels at quarter size), the uint8 conversions. Measured under --max-memory 1G, where
# strips and in-RAM maps are smallest: 125 bytes a pixel (1 -> 2 MP); tiling.md's 12 MP tiled
# quality run (1.81 GiB under 4G) agrees. So 40 MP needs ~5.8 GB in quality mode even tiled.
TILED_BYTES_PER_PIXEL = 130
# The face generator, one face per run, with its weights: 1.44 GB over the bare process for a
# 512 px face (1.50 GB peak, 1.62 GB for four faces in turn). 256 px faces take less; the 512
# figure stands for both.
FACE_STAGE_BYTES = 1550 << 20


class MemoryBudgetError(ValueError):
    """The photo cannot be restored inside --max-memory by any path; says which stage and what to do."""


def stage_peaks(mode: str, height: int, width: int, tiled: bool, faces: bool = False) -> dict[str, int]:
    """Estimated peak RSS (bytes) of the process during each stage of `mode` on a photo."""
    spec = mode_spec(mode)
    pixels = height * width
    resident = min(spec.base_bytes, RESIDENT_BYTES)
    held = resident + HELD_BYTES_PER_PIXEL * pixels
    peaks = {"decode": resident + DECODE_BYTES_PER_PIXEL * pixels}
    if spec.detects_scratches:
        detected = detection_size(height, width)
        peaks["detection"] = (held + DETECTION_BYTES_PER_PIXEL * detected[0] * detected[1]
                              + DETECTION_PHOTO_BYTES_PER_PIXEL * pixels)
        peaks["hole painting"] = held + PAINT_BYTES_PER_PIXEL * pixels
    if tiled:
        peaks["global networks (tiled)"] = spec.base_bytes + TILED_BYTES_PER_PIXEL * pixels  # holds the photo too
    else:
        peaks["global networks"] = untiled_peak_estimate(mode, height, width)
    if faces:
        peaks["faces"] = held + FACE_STAGE_BYTES
    peaks["encode"] = held + ENCODE_BYTES_PER_PIXEL * pixels
    return peaks


def check_budget(mode: str, height: int, width: int, max_memory: str | int, tiled: bool = True,
                 faces: bool = False) -> None:
    """Raise MemoryBudgetError (one line, with the remedy) when a stage of the bounded path
    would exceed `max_memory`; called before any photo-sized allocation."""
    budget = parse_size(max_memory)
    stage, peak = max(stage_peaks(mode, height, width, tiled, faces).items(), key=lambda item: item[1])
    if peak > budget:
        raise MemoryBudgetError(
            f"image {width}x{height} needs about {peak / (1 << 30):.2f} GiB in {mode} mode ({stage}), over "
            f"--max-memory {budget / (1 << 30):.2f}G; use --max-memory {math.ceil(peak / (1 << 30))}G or "
            f"downscale the photo")
