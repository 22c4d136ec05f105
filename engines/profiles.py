"""Optimisation profiles: which input shapes each graph's engine accepts.

Shapes follow from the photo sizes the engines must serve (`--max-size`, `--opt-size`, image
pixels WxH) and from how the runtime feeds each graph (runtime/global_restoration.py):
  - full-resolution graphs see the photo resized to the mode's multiple (4 or 16);
  - latent graphs see 1/4 of that (64 or 512 channels);
  - the detection UNet sees the photo scaled to short side 256 (sides multiples of 16), its long
    side capped at 2048 (runtime/preprocess.py; past 8:1 the short side shrinks instead); the
    profile covers every aspect up to `max_aspect`, by default all that `restore` accepts (64:1);
  - the face generators see batches of 256 or 512 px crops.
Photos come in both orientations, so the max profile uses the long side on both axes; the opt
shape is the given orientation. Engines are bounded by the max shape (a larger photo needs a
new build with a larger --max-size, or tiling). The table mirrors export/graphs.py (which
needs torch); a test keeps the two equal.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

LATENT_SCALE = 0.25
# graph -> (inputs {name: (channels, scale relative to the image)}, side multiple of the image)
GRAPH_IO: dict[str, tuple[dict[str, tuple[int, float]], int]] = {
    "vae_a_quality_encoder": ({"image": (3, 1.0)}, 4),
    "vae_b_quality_decoder": ({"latent": (64, LATENT_SCALE)}, 4),
    "vae_b_scratch_decoder": ({"latent": (64, LATENT_SCALE)}, 4),
    "mapping_quality": ({"latent": (64, LATENT_SCALE)}, 4),
    "mapping_scratch_head": ({"latent": (64, LATENT_SCALE)}, 4),
    "mapping_scratch_tail": ({"x": (512, LATENT_SCALE), "attended": (512, LATENT_SCALE), "valid": (1, LATENT_SCALE)}, 4),
    "mapping_hr_head": ({"latent": (64, LATENT_SCALE)}, 16),
    "mapping_hr_step1": ({"z": (512, LATENT_SCALE), "composed": (512, LATENT_SCALE), "hole": (1, LATENT_SCALE)}, 16),
    "mapping_hr_step2": ({"z": (512, LATENT_SCALE), "composed": (512, LATENT_SCALE), "hole": (1, LATENT_SCALE)}, 16),
    "mapping_hr_tail": ({"z": (512, LATENT_SCALE), "composed": (512, LATENT_SCALE), "hole": (1, LATENT_SCALE)}, 16),
    "detection": ({"gray": (1, 1.0)}, 16),
    "face_256": ({"face": (3, 1.0)}, 256),
    "face_512": ({"face": (3, 1.0)}, 512),
}
FACE_SIZES = {"face_256": 256, "face_512": 512}
DETECTION_SHORT_SIDE = 256
DEFAULT_MAX_SIZE = (2048, 2048)
DEFAULT_OPT_SIZE = (1024, 768)
# mirrors of runtime/preprocess.py (DETECTION_MAX_LONG_SIDE, MAX_ASPECT; a test keeps them equal):
# importing it here would pull OpenCV into every engine-cache lookup
DETECTION_MAX_LONG_SIDE = 2048
RESTORE_MAX_ASPECT = 64.0
DEFAULT_MAX_ASPECT = RESTORE_MAX_ASPECT  # detection engines serve every photo `restore` accepts
DEFAULT_FACE_BATCH = 4

Shape = tuple[int, ...]


class ProfileError(ValueError):
    pass


def parse_size(text: str) -> tuple[int, int]:
    """'2048x1536' (width x height, pixels) -> (2048, 1536)."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX*]\s*(\d+)\s*", str(text))
    if not match:
        raise ProfileError(f"cannot read size {text!r}: expected WIDTHxHEIGHT in pixels, e.g. 2048x1536")
    width, height = int(match.group(1)), int(match.group(2))
    if width < 16 or height < 16:
        raise ProfileError(f"size {text!r} is too small (at least 16x16)")
    return width, height


def _round_up(value: float, multiple: int) -> int:
    return max(multiple, int(-(-int(round(value)) // multiple) * multiple))


@dataclass(frozen=True)
class Profile:
    """min/opt/max shape of every input of one graph (one TensorRT optimisation profile)."""

    shapes: tuple[tuple[str, Shape, Shape, Shape], ...]

    def to_json(self) -> dict:
        return {name: {"min": list(lo), "opt": list(opt), "max": list(hi)} for name, lo, opt, hi in self.shapes}

    @classmethod
    def from_json(cls, data: dict) -> "Profile":
        try:
            return cls(tuple((name, tuple(int(v) for v in d["min"]), tuple(int(v) for v in d["opt"]),
                              tuple(int(v) for v in d["max"])) for name, d in sorted(data.items())))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ProfileError(f"malformed profile {data!r}: {err}") from None

    def canonical(self) -> str:
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def covers(self, input_shapes: dict[str, Shape]) -> bool:
        """True when every given input shape lies within [min, max] of this profile."""
        by_name = {name: (lo, hi) for name, lo, _, hi in self.shapes}
        for name, shape in input_shapes.items():
            if name not in by_name:
                return False
            lo, hi = by_name[name]
            if len(shape) != len(lo) or any(not (a <= s <= b) for s, a, b in zip(shape, lo, hi)):
                return False
        return True

    def volume(self) -> int:
        total = 0
        for _, _, _, hi in self.shapes:
            v = 1
            for d in hi:
                v *= d
            total += v
        return total


def _spatial(width: int, height: int, multiple: int, scale: float) -> tuple[int, int]:
    """(h, w) that the graph sees for a photo of width x height."""
    h = _round_up(height, multiple)
    w = _round_up(width, multiple)
    return max(1, int(h * scale)), max(1, int(w * scale))


def _round_nearest(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple) * multiple))


def detection_shape(width: int, height: int) -> tuple[int, int]:
    """Same rule as runtime.preprocess.detection_size (short side 256, long side at most 2048,
    nearest multiples of 16)."""
    if height < width:
        th, tw = DETECTION_SHORT_SIDE, width / height * DETECTION_SHORT_SIDE
    else:
        th, tw = height / width * DETECTION_SHORT_SIDE, DETECTION_SHORT_SIDE
    longest = max(th, tw)
    if longest > DETECTION_MAX_LONG_SIDE:
        th, tw = th * DETECTION_MAX_LONG_SIDE / longest, tw * DETECTION_MAX_LONG_SIDE / longest
    return _round_nearest(th, 16), _round_nearest(tw, 16)


def detection_bounds(max_aspect: float) -> tuple[int, int]:
    """(shortest, longest) side of the detection input over photos up to `max_aspect`:1."""
    if max_aspect < 1:
        raise ProfileError(f"--max-aspect {max_aspect:g} must be at least 1")
    short, long_side = detection_shape(int(round(DETECTION_SHORT_SIDE * max_aspect)), DETECTION_SHORT_SIDE)
    return min(short, DETECTION_SHORT_SIDE), long_side


def shape_remedy(graph: str) -> str:
    """The `build-engines` option that widens `graph`'s profile (for out-of-profile errors)."""
    if graph == "detection":
        return "a larger --max-aspect (the detection input's shape follows the photo's aspect, not its size)"
    return "a larger --max-size"


def graph_profile(graph: str, max_size: tuple[int, int] = DEFAULT_MAX_SIZE,
                  opt_size: tuple[int, int] = DEFAULT_OPT_SIZE, max_aspect: float = DEFAULT_MAX_ASPECT,
                  face_batch: int = DEFAULT_FACE_BATCH) -> Profile:
    """The optimisation profile of `graph` for photos up to max_size (W, H, any orientation)."""
    if graph not in GRAPH_IO:
        raise ProfileError(f"no profile rule for graph {graph!r}; known: {', '.join(GRAPH_IO)}")
    inputs, multiple = GRAPH_IO[graph]
    max_w, max_h = max_size
    opt_w, opt_h = opt_size
    if opt_w * opt_h > max_w * max_h or max(opt_w, opt_h) > max(max_w, max_h):
        raise ProfileError(f"--opt-size {opt_w}x{opt_h} is larger than --max-size {max_w}x{max_h}")
    long_side = max(max_w, max_h)
    shapes = []
    for name, (channels, scale) in inputs.items():
        if graph in FACE_SIZES:
            side = FACE_SIZES[graph]
            lo, opt, hi = (1, channels, side, side), (1, channels, side, side), (face_batch, channels, side, side)
        elif graph == "detection":
            shortest, longest = detection_bounds(max_aspect)
            oh, ow = detection_shape(opt_w, opt_h)
            if max(oh, ow) > longest:
                raise ProfileError(f"--opt-size {opt_w}x{opt_h} is wider than --max-aspect {max_aspect:g} allows")
            lo, opt, hi = (1, channels, shortest, shortest), (1, channels, oh, ow), (1, channels, longest, longest)
        else:
            min_h, min_w = _spatial(multiple, multiple, multiple, scale)
            oh, ow = _spatial(opt_w, opt_h, multiple, scale)
            mh, mw = _spatial(long_side, long_side, multiple, scale)
            lo, opt, hi = (1, channels, min_h, min_w), (1, channels, oh, ow), (1, channels, mh, mw)
        shapes.append((name, lo, opt, hi))
    return Profile(tuple(sorted(shapes)))


# ---- per-layer graphs of the tiled executor (runtime/tiling) ------------------------------
DEFAULT_STRIP_ROWS = 64  # output rows of one strip under TensorRT (the layer engines' max)
DEFAULT_TILED_MAX_SIDE = 8192  # widest photo the layer engines accept (12 MP scans tile)
LAYER_MULTIPLE = 16  # sides are rounded to the largest mode multiple (HR mode)


def layer_scales() -> dict[str, tuple[object, float]]:
    """layer -> (its Conv, input scale relative to the photo), walked from the layer programs:
    a program's own inputs are the photo ("image") or the latent (1/4); stride-2 convs halve,
    transposed convs double."""
    from ..tiling.programs import PROGRAMS, Conv

    found = {}
    for build in PROGRAMS.values():
        scale = {}
        for op in build():
            sources = [s for s in (getattr(op, "sources", None) or ()) if s]
            for name in sources + [getattr(op, f) for f in ("source", "keep", "other", "valid")
                                   if isinstance(getattr(op, f, None), str)]:
                scale.setdefault(name, 1.0 if name == "image" else LATENT_SCALE)
            if isinstance(op, Conv):
                found[op.layer] = (op, scale[op.sources[0]])
                factor = 2.0 if op.transposed else 0.5 if op.stride == 2 else 1.0
                scale[op.target] = scale[op.sources[0]] * factor
            elif hasattr(op, "source"):
                scale[op.target] = scale[op.source]
            elif hasattr(op, "keep"):
                scale[op.target] = scale[op.keep]
    return found


def _window_rows(conv, out_rows: int, pick) -> int:
    """Input rows of a strip of `out_rows` output rows, min or max over where the strip starts."""
    from ..tiling.executor import strip_window

    return pick(hi - lo for lo, hi in (strip_window(conv, start, start + out_rows) for start in (0, 1, 2)))


def layer_profile(layer: str, max_side: int = DEFAULT_TILED_MAX_SIDE, strip_rows: int = DEFAULT_STRIP_ROWS,
                  opt_side: int = max(DEFAULT_OPT_SIZE)) -> Profile:
    """Strip profile of one per-layer graph: input "x" (1, C, rows, W), rows from one output
    row's window up to a `strip_rows` strip's (halo rows included, runtime/tiling/executor.py
    strip_window), W from a few pixels up to the layer's width for a photo of `max_side`."""
    specs = layer_scales()
    if layer not in specs:
        raise ProfileError(f"no layer program for per-layer graph {layer!r}")
    if strip_rows < 2 or strip_rows % 2:
        raise ProfileError(f"strip rows must be even and at least 2, got {strip_rows}")
    conv, scale = specs[layer]
    channels = conv.in_channels
    min_w = 2 * conv.padding + 2
    max_w = max(min_w, int(_round_up(max_side, LAYER_MULTIPLE) * scale))
    opt_w = min(max_w, max(min_w, int(_round_up(min(opt_side, max_side), LAYER_MULTIPLE) * scale)))
    lo = (1, channels, _window_rows(conv, 1, min), min_w)
    hi = (1, channels, _window_rows(conv, strip_rows, max), max_w)
    return Profile((("x", lo, (1, channels, hi[2], opt_w), hi),))


def layer_output_rows(conv, rows: int) -> int:
    """Output rows of a per-layer graph on a strip of `rows` input rows (it pads only the width;
    the halo rows come with the strip)."""
    if conv.transposed:
        return 2 * rows
    if conv.stride == 2:
        return (rows - 2) // 2
    return rows - 2 * conv.padding


def strip_layer_profile(layer: str, max_side: int = DEFAULT_TILED_MAX_SIDE, strip_rows: int = DEFAULT_STRIP_ROWS,
                        opt_side: int = max(DEFAULT_OPT_SIZE)) -> Profile:
    """The wrapped per-layer graph's profile (engines/strip_graphs.py): layer_profile's "x" plus
    the per-channel normalisation (1, C, 1, 1) and the row masks `rows` (1, 1, R, 1) and `keep`
    (1, 1, R_out, 1)."""
    from .strip_graphs import NORM_INPUTS

    base = layer_profile(layer, max_side, strip_rows, opt_side)
    (_, lo, opt, hi), = base.shapes
    conv, _ = layer_scales()[layer]
    channels = lo[1]
    shapes = [("x", lo, opt, hi)]
    shapes += [(name, (1, channels, 1, 1), (1, channels, 1, 1), (1, channels, 1, 1)) for name in NORM_INPUTS]
    shapes.append(("rows", (1, 1, lo[2], 1), (1, 1, opt[2], 1), (1, 1, hi[2], 1)))
    out = [(1, 1, layer_output_rows(conv, r[2]), 1) for r in (lo, opt, hi)]
    shapes.append(("keep", *out))
    return Profile(tuple(sorted(shapes)))


OP_MAX_CHANNELS = 512  # the widest map a pointwise op of the layer programs touches


def op_profile(kind: str, max_side: int = DEFAULT_TILED_MAX_SIDE, strip_rows: int = DEFAULT_STRIP_ROWS,
               opt_side: int = max(DEFAULT_OPT_SIZE)) -> Profile:
    """Profile of a pointwise op graph `strip/<kind>`: each operand (1, C, rows, W) with C up to
    512, rows up to a strip, W up to the latent width of a `max_side` photo (every pointwise op
    of the layer programs runs on latent-scale maps)."""
    from .strip_graphs import NORM_INPUTS, OPS

    max_w = max(2, int(_round_up(max_side, LAYER_MULTIPLE) * LATENT_SCALE))
    opt_w = min(max_w, max(2, int(_round_up(min(opt_side, max_side), LAYER_MULTIPLE) * LATENT_SCALE)))
    shapes = []
    for name in "abc"[:OPS[kind]]:
        shapes.append((name, (1, 1, 1, 1), (1, OP_MAX_CHANNELS, strip_rows, opt_w),
                       (1, OP_MAX_CHANNELS, strip_rows, max_w)))
        shapes += [(f"{name}_{n}", (1, 1, 1, 1), (1, OP_MAX_CHANNELS, 1, 1), (1, OP_MAX_CHANNELS, 1, 1))
                   for n in NORM_INPUTS]
    return Profile(tuple(sorted(shapes)))
