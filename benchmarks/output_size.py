"""How far the networks' side multiple moves a photo from its own size, and what resizing
the restoration back costs: the round trip input -> multiple (the original's resize) -> back
to the input's size, PSNR against the input, for each way back.

    python benchmarks/output_size.py      # writes benchmarks/results/output_size.md
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from trt_restore.modes import SPECS
from trt_restore.io import read_image
from trt_restore.preprocess import resize_to_multiple

ROOT = Path(__file__).resolve().parents[1]
BACK = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
SIZES = [(256, 336), (450, 298), (300, 400), (401, 299), (1000, 750)]  # (height, width)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def photo(height: int, width: int) -> np.ndarray:
    base = read_image(ROOT / "tests/data/old_a.png")
    return np.asarray(Image.fromarray(base).resize((width, height), Image.LANCZOS))


def main() -> None:
    rows = ["| mode (multiple) | input HxW | network HxW | aspect change | " + " | ".join(
        f"back, {name} (dB)" for name in BACK) + " |", "|---|---|---|---|" + "---|" * len(BACK)]
    seen = set()
    for mode, spec in SPECS.items():
        multiple, method = spec.side_multiple, spec.resize_method
        if (multiple, method) in seen:  # HR rounds like scratch mode
            continue
        seen.add((multiple, method))
        same = [m for m, s in SPECS.items() if (s.side_multiple, s.resize_method) == (multiple, method)]
        mode = ", ".join(same)
        for height, width in SIZES:
            image = photo(height, width)
            net = resize_to_multiple(image, multiple, method)
            nh, nw = net.shape[:2]
            aspect = (nw / nh) / (width / height) - 1
            back = [psnr(image, np.asarray(Image.fromarray(net).resize((width, height), f))) for f in BACK.values()]
            rows.append(f"| {mode} ({multiple}) | {height}x{width} | {nh}x{nw} | {aspect:+.2%} | "
                        + " | ".join("identical" if np.isinf(v) else f"{v:.1f}" for v in back) + " |")
    out = ROOT / "benchmarks/results/output_size.md"
    out.write_text("# Output size: the networks' multiple vs the photo's own size\n\n"
                   "Round trip of `tests/data/old_a.png` resized to each input size: the original's resize to "
                   "the mode's side multiple, then back to the input size. PSNR against the input bounds what "
                   "`restore` (default: output at the input's size) loses to resizing back; aspect change is "
                   "what `--network-size` (the original's behaviour) leaves in the output.\n\n"
                   + "\n".join(rows) + "\n")
    print(out.read_text())


if __name__ == "__main__":
    main()
