"""HR patch match in Triton: hole patches (queries) against non-hole patches (keys).

A patch of x (C, H, W) at patch index p = (pr, pc) has features (c, i, j) -> x[c, pr*S+i,
pc*S+j], read in place (no patch matrix). The winner is the key of highest cosine similarity,
the first in row-major order on ties (strict > across key tiles, lowest index inside a tile);
the query's own norm does not change the arg-max and is left out.

Sides need not be multiples of SIZE: as the original's F.unfold/F.fold, only whole patches
take part, and the bottom/right margins they leave are zeroed after compose when the scale has
a hole patch (patch_margin_kernel); without one, x passes unchanged.
"""
from __future__ import annotations

import triton
import triton.language as tl

from .attention_triton import split_hi_lo


@triton.jit
def patch_flags_kernel(hole, flags, height, width, SIZE: tl.constexpr, BLOCK: tl.constexpr):
    """flags[p] = 1.0 where the mean of hole (H, W) over patch p is > 0.6, else 0.0."""
    per_row = width // SIZE
    total = (height // SIZE) * per_row
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = p < total
    base = (p // per_row) * SIZE * width + (p % per_row) * SIZE
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in tl.static_range(SIZE):
        for j in tl.static_range(SIZE):
            acc += tl.load(hole + base + i * width + j, mask=ok, other=0.0)
    tl.store(flags + p, (acc * (1.0 / (SIZE * SIZE)) > 0.6).to(tl.float32), mask=ok)


@triton.jit
def patch_offsets(idx, height, width, SIZE: tl.constexpr):
    per_row = width // SIZE
    return (idx // per_row) * SIZE * width + (idx % per_row) * SIZE


@triton.jit
def feature_offsets(f, height, width, SIZE: tl.constexpr):
    return (f // (SIZE * SIZE)) * height * width + ((f // SIZE) % SIZE) * width + f % SIZE


@triton.jit
def patch_best_kernel(x, idx_hole, idx_key, counts, best, height, width, features,
                      SIZE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                      PRECISION: tl.constexpr):
    """best[h] = position (in idx_key) of the best key of hole h; features = C * SIZE^2."""
    n_hole = tl.load(counts)
    n_key = tl.load(counts + 1)
    hh = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    hole_ok = hh < n_hole
    q_base = patch_offsets(tl.load(idx_hole + hh, mask=hole_ok, other=0), height, width, SIZE)
    best_val = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    best_pos = tl.zeros((BLOCK_M,), dtype=tl.int32)
    for j0 in range(0, n_key, BLOCK_N):
        jj = j0 + tl.arange(0, BLOCK_N)
        key_ok = jj < n_key
        k_base = patch_offsets(tl.load(idx_key + jj, mask=key_ok, other=0), height, width, SIZE)
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        low = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        k_sq = tl.zeros((BLOCK_N,), dtype=tl.float32)
        for f0 in range(0, features, BLOCK_K):
            f = f0 + tl.arange(0, BLOCK_K)
            f_ok = f < features
            f_off = feature_offsets(f, height, width, SIZE)
            q = tl.load(x + q_base[:, None] + f_off[None, :], mask=hole_ok[:, None] & f_ok[None, :], other=0.0)
            k = tl.load(x + f_off[:, None] + k_base[None, :], mask=f_ok[:, None] & key_ok[None, :], other=0.0)
            k_sq += tl.sum(k * k, 0)
            if PRECISION == 1:
                q_hi, q_lo = split_hi_lo(q)
                k_hi, k_lo = split_hi_lo(k)
                acc = tl.dot(q_hi, k_hi, acc)
                low = tl.dot(q_hi, k_lo, low)
                low = tl.dot(q_lo, k_hi, low)
            elif PRECISION == 2:
                acc = tl.dot(q, k, acc, input_precision="tf32x3")
            else:
                acc = tl.dot(q, k, acc, input_precision="ieee")
        sim = (acc + low * (1.0 / 2048.0)) / tl.maximum(tl.sqrt(k_sq), 1e-12)[None, :]
        sim = tl.where(key_ok[None, :], sim, float("-inf"))
        tile_best = tl.max(sim, 1)
        tile_pos = tl.min(tl.where(sim == tile_best[:, None], jj[None, :], 2147483647), 1)
        better = tile_best > best_val
        best_pos = tl.where(better, tile_pos, best_pos)
        best_val = tl.where(better, tile_best, best_val)
    tl.store(best + hh, best_pos, mask=hole_ok)


@triton.jit
def patch_compose_kernel(x, out, idx_hole, idx_key, counts, best, height, width, features,
                         SIZE: tl.constexpr, BLOCK_K: tl.constexpr):
    """out (already a copy of x): hole patch h <- key patch best[h]; one program per hole and
    feature chunk. Nothing to do without holes or without keys."""
    h = tl.program_id(0)
    if (h < tl.load(counts)) & (tl.load(counts + 1) > 0):
        f = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
        ok = f < features
        key = tl.load(idx_key + tl.load(best + h))
        f_off = feature_offsets(f, height, width, SIZE)
        value = tl.load(x + patch_offsets(key, height, width, SIZE) + f_off, mask=ok, other=0.0)
        tl.store(out + patch_offsets(tl.load(idx_hole + h), height, width, SIZE) + f_off, value, mask=ok)


@triton.jit
def patch_margin_kernel(out, counts, channels, height, width, size, BLOCK: tl.constexpr):
    """Zero the bottom/right margins of out (C, H, W) that no whole patch covers, where the
    device-side hole count counts[0] > 0: the original folds whole patches back (margins 0) only
    when there are holes, so the launchers, which cannot see the count, launch this always
    (grid: ceil(channels * margin elements / BLOCK), none without a margin)."""
    if tl.load(counts) > 0:
        inner_h = (height // size) * size
        inner_w = (width // size) * size
        right = tl.maximum(width - inner_w, 1)
        beside = inner_h * (width - inner_w)  # right margin beside the patch rows, then the bottom rows
        margin = tl.maximum(height * width - inner_h * inner_w, 1)
        e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        k = e % margin
        kb = k - beside
        row = tl.where(k < beside, k // right, inner_h + kb // width)
        col = tl.where(k < beside, inner_w + k % right, kb % width)
        offsets = ((e // margin) * height + row) * width + col
        tl.store(out + offsets, tl.zeros((BLOCK,), dtype=tl.float32), mask=e < channels * margin)
