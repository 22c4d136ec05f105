"""Odd shapes through every mode under an address-space limit: each photo ends restored or
refused with one line naming the file, in seconds, and the process is never killed.

The limit: onnxruntime's arenas, its thread pools and the libraries reserve far more address
space than they touch (a 64x64 HR run reserves ~2.5 GB to hold ~1.2 GB), so RLIMIT_AS alone
cannot be the budget. Each child first restores a plain 64x64 photo of its mode (that loads
every session the mode uses), then sets RLIMIT_AS to the address space that run reached plus
`--max-memory`. A stage that outgrows the budget then fails an allocation (MemoryError or
onnxruntime's error: a row saying so) instead of growing until the kernel kills the process.
"""
from __future__ import annotations

import pytest

from trt_restore.benchmarks.odd_shapes import FAST_SHAPES, FULL_SHAPES, walk

BUDGET = "2G"
SECONDS = 60  # a small photo, or a refusal, takes seconds; the kill of the issue took minutes


def _check(rows: list[dict], expected: dict) -> None:
    for row in rows:
        where = (row["mode"], tuple(row["size"]))
        assert not row["outcome"].startswith(("crashed", "out of memory")), row
        if row["outcome"] == "refused":
            message = row["message"]
            assert "\n" not in message and message.startswith(row["file"]), row
        elif row["outcome"] == "restored":
            assert row["shape"] == row["size"], row  # the photo's own size back
        if not row["outcome"].startswith("ran to"):
            assert row["seconds"] < SECONDS, row
        if where in expected:
            assert row["outcome"] == expected[where], row


def _expected(shapes, min_side: dict) -> dict:
    """Refused: a side under the mode's minimum, or longer than 64:1; else restored."""
    outcome = {}
    for mode, smallest in min_side.items():
        for h, w in shapes:
            refused = min(h, w) < smallest or max(h, w) / min(h, w) > 64
            outcome[(mode, (h, w))] = "refused" if refused else "restored"
    return outcome


def test_small_odd_shapes_restore_or_refuse_in_every_mode(exported_models, tmp_path):
    rows = walk(exported_models, FAST_SHAPES, budget=BUDGET, one_process_each=False, folder=tmp_path)
    assert len(rows) == 3 * len(FAST_SHAPES)
    _check(rows, _expected(FAST_SHAPES, {"quality": 16, "scratch": 16, "hr": 32}))


@pytest.mark.slow
def test_full_odd_shape_walk(exported_models, tmp_path):
    """1xN, Nx1, 16x4000, 4000x16, prime sides and 40 MP, a process each (own peak RSS).
    Even tiled, 40 MP keeps more full-size arrays than 2G holds: refused up front, naming the
    budget that fits, in seconds."""
    big = [s for s in FULL_SHAPES if s[0] * s[1] > 20e6]
    rows = walk(exported_models, FULL_SHAPES, budget=BUDGET, folder=tmp_path)
    assert len(rows) == 3 * len(FULL_SHAPES) and big
    _check(rows, _expected(FULL_SHAPES, {"quality": 16, "scratch": 16, "hr": 32}) | {
        (mode, shape): "refused" for mode in ("quality", "scratch", "hr") for shape in big})
    for row in rows:
        if tuple(row["size"]) in big:
            assert "--max-memory" in row["message"], row
