"""One spec per global restoration mode: everything that differs between quality, scratch and HR.

The original's three paths differ in a handful of facts (how the photo is resized, which
graphs run, whether a scratch mask is detected and dilated, which decoder, which face crop
size, how much memory an untiled run takes). They live here, looked up once, instead of in
mode-string tables and if/elif chains across the runtime.
"""
from __future__ import annotations

from dataclasses import dataclass

ENCODER = "vae_a_quality_encoder"
DETECTOR = "detection"


@dataclass(frozen=True)
class ModeSpec:
    name: str
    side_multiple: int  # the photo is resized so both sides are multiples of this
    resize_method: str  # PIL resampling of that resize ("bilinear" | "bicubic"), as the original
    mapping: tuple[str, ...]  # the mapping's graph segments, in order
    decoder: str
    detects_scratches: bool  # a scratch mask is detected (or given) and painted into the photo
    dilates_mask: bool  # HR widens the mask (3x3, 3 iterations) before painting
    attention: str | None  # what runs between the mapping segments: "nonlocal" | "patch" | None
    face_crop: int  # face enhancement crop size (the original uses 512 px faces in HR mode)
    min_side: int  # smallest photo side the graphs accept
    untiled_bytes_per_pixel: int  # peak RSS per pixel of an untiled run (benchmarks/results/tiling.md)
    base_bytes: int = 600 << 20  # the process with this mode's sessions loaded, before any photo pixel

    @property
    def graphs(self) -> tuple[str, ...]:
        """Every exported graph this mode needs, in the order the pipeline runs them."""
        head = (DETECTOR,) if self.detects_scratches else ()
        return (*head, ENCODER, *self.mapping, self.decoder)


# Peak RSS of an untiled run grows linearly with the photo (benchmarks/results/tiling.md,
# untiled rows): quality 3.12 GiB at 1 MP and 10.94 GiB at 4 MP = 2800 bytes per pixel (the
# 64-channel full-resolution maps of the VAEs, onnxruntime's arena and im2col buffers); scratch
# 1.48 GiB at 0.25 MP and 3.99 GiB at 1 MP = 3600 bytes per pixel, plus the attention's logits
# chunk. ~5% margin on top. HR (benchmarks/results/stage_memory.md, measured side by side with
# quality): 3760 bytes per pixel like scratch, but on a larger base: the patch-attention mapping
# (74 M parameters) and the detector are loaded, 1.08 GB before the first pixel, and the CLI
# around it peaked 0.4 GB higher (decode, resize back, encode); with scratch's 600 MiB base a
# 1204x645 HR photo was estimated at 3.58 GB and peaked at 4.0 GB (4.4 GB by the CLI).
SPECS = {
    "quality": ModeSpec("quality", 4, "bilinear", ("mapping_quality",), "vae_b_quality_decoder",
                        detects_scratches=False, dilates_mask=False, attention=None, face_crop=256, min_side=16,
                        untiled_bytes_per_pixel=2950),
    "scratch": ModeSpec("scratch", 16, "bicubic", ("mapping_scratch_head", "mapping_scratch_tail"),
                        "vae_b_scratch_decoder", detects_scratches=True, dilates_mask=False, attention="nonlocal",
                        face_crop=256, min_side=16, untiled_bytes_per_pixel=3800),
    # HR runs at the detection stage's multiples of 16, as the original does (not 32)
    "hr": ModeSpec("hr", 16, "bicubic", ("mapping_hr_head", "mapping_hr_step1", "mapping_hr_step2", "mapping_hr_tail"),
                   "vae_b_scratch_decoder", detects_scratches=True, dilates_mask=True, attention="patch",
                   face_crop=512, min_side=32, untiled_bytes_per_pixel=3950,
                   base_bytes=1400 << 20),
}
MODES = tuple(SPECS)


def mode_spec(mode: str) -> ModeSpec:
    """The spec of `mode`, or a ValueError naming the valid modes."""
    try:
        return SPECS[mode]
    except KeyError:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}") from None


def mode_of_flags(scratch: bool = False, hr: bool = False) -> str:
    """The command line's --scratch / --hr switches as a mode name (--hr implies scratches)."""
    return "hr" if hr else "scratch" if scratch else "quality"
