"""When to tile and with which strips: from `--tile` and `--max-memory`.

The untiled peak is estimated from the largest activations the graphs hold at once
(64 channels at full resolution in the VAEs, 512 at quarter resolution in the mappings,
θ/φ/g for scratch attention); benchmarks/tiling.md shows how it compares with measured RSS.
"""
from __future__ import annotations

import re

from ..attention import DEFAULT_CHUNK_BYTES
from ..modes import mode_spec
from .executor import ExecutorConfig

DEFAULT_MAX_MEMORY = 4 << 30
BASE_OVERHEAD = 600 << 20  # interpreter, onnxruntime, session arenas for the weights (HR: more, modes.py)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str | int) -> int:
    """'4G', '512M', '1.5G' or a byte count -> bytes."""
    if isinstance(text, int):
        return text
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", str(text).upper())
    if not match:
        raise ValueError(f"cannot read memory size {text!r} (use e.g. 4G, 512M)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def untiled_peak_estimate(mode: str, height: int, width: int) -> int:
    """Expected peak RSS in bytes of the untiled run (what --tile auto compares with the budget)."""
    spec = mode_spec(mode)  # base and per-pixel figures: runtime/modes.py
    attention_chunk = DEFAULT_CHUNK_BYTES if spec.attention else 0
    return spec.base_bytes + attention_chunk + spec.untiled_bytes_per_pixel * height * width


def plan_tiling(mode: str, height: int, width: int, tile="auto",
                max_memory: str | int = DEFAULT_MAX_MEMORY) -> ExecutorConfig | None:
    """None = run untiled; else the executor configuration.

    tile: a run_options.TilePolicy, or what TilePolicy.parse reads: "auto" (tile only if the
    untiled estimate exceeds max_memory), "on" (always), "off", or a strip height in image rows."""
    from ..run_options import TilePolicy  # run_options builds on this module's sizes

    policy = TilePolicy.parse(tile)
    budget = parse_size(max_memory)
    if policy.kind == "off":
        return None
    working = max(64 << 20, budget - mode_spec(mode).base_bytes)
    # up to ~6 maps are alive at once (residual stream, two block temporaries, entry maps):
    # those above working/12 go to disk; a strip's buffers (input, im2col, output, copies)
    # take about twice strip_bytes
    config = ExecutorConfig(strip_bytes=max(16 << 20, working // 10), ram_map_bytes=max(8 << 20, working // 12))
    if policy.kind == "on":
        return config
    if policy.kind == "auto":
        return config if untiled_peak_estimate(mode, height, width) > budget else None
    config.strip_rows = max(2, policy.rows // 4)  # most layers run at quarter resolution
    return config
