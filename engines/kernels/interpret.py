"""Host wrappers that run the Triton kernels with torch CPU tensors under TRITON_INTERPRET=1:
what CI executes. The launch sequence (compact, then the main kernels, same grids) is the one
`launch.py` and the C++ plugins replay with the AOT cubins. Dev/test only (needs torch, triton).
"""
from __future__ import annotations

import os

import numpy as np

from . import configs

if os.environ.get("TRITON_INTERPRET") != "1":  # pragma: no cover - a usage error
    raise ImportError("trt_restore.engines.kernels.interpret needs TRITON_INTERPRET=1 set before importing triton")

import torch
import triton

from .attention_triton import compact_kernel, masked_attention_kernel
from .patch_match_triton import (
    patch_best_kernel,
    patch_compose_kernel,
    patch_flags_kernel,
    patch_margin_kernel,
)


def compact(flags: np.ndarray):
    """(n,) bool -> idx_true, idx_false, counts as int32 tensors (compact_kernel)."""
    n = flags.size
    f = torch.from_numpy(np.ascontiguousarray(flags, dtype=np.float32))
    idx_true, idx_false = torch.zeros(n, dtype=torch.int32), torch.zeros(n, dtype=torch.int32)
    counts = torch.zeros(2, dtype=torch.int32)
    compact_kernel[(1,)](f, n, idx_true, idx_false, counts, BLOCK=configs.COMPACT_BLOCK)
    return idx_true, idx_false, counts


def masked_attention(theta, phi, g, key_valid, config: str = configs.MAIN_ATTENTION,
                     precision: str = configs.DEFAULT_PRECISION, kernel=None) -> np.ndarray:
    """Same contract as trt_restore.attention.masked_attention; `kernel` swaps the kernel (tests)."""
    channels, n = theta.shape
    if channels != configs.CHANNELS:
        raise ValueError(f"the kernel's head dimension is {configs.CHANNELS}, got {channels}")
    cfg = configs.ATTENTION_CONFIGS[config]
    t, p, v = (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (theta, phi, g))
    idx_valid, idx_invalid, counts = compact(np.asarray(key_valid, dtype=bool))
    out = torch.full((channels, n), float("nan"), dtype=torch.float32)
    grid = (triton.cdiv(n, cfg.block_m), channels // cfg.block_d)
    (kernel or masked_attention_kernel)[grid](t, p, v, idx_valid, idx_invalid, counts, out, n,
                                              **cfg.constexprs(configs.PRECISIONS[precision]))
    return out.numpy()


def patch_match(x: np.ndarray, hole: np.ndarray, size: int, precision: str = configs.DEFAULT_PRECISION) -> np.ndarray:
    """Same contract as trt_restore.attention.patch_match: x (C, H, W), hole (H, W)."""
    channels, height, width = x.shape
    cfg = configs.PATCH_CONFIG
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    ht = torch.from_numpy(np.ascontiguousarray(hole, dtype=np.float32))
    total = (height // size) * (width // size)
    if total == 0:  # no whole patch, hence no hole patch: x unchanged (no kernel takes an empty grid)
        return xt.clone().numpy()
    flags = torch.zeros(total, dtype=torch.float32)
    patch_flags_kernel[(triton.cdiv(total, configs.FLAGS_BLOCK),)](ht, flags, height, width, SIZE=size,
                                                                    BLOCK=configs.FLAGS_BLOCK)
    idx_hole, idx_key, counts = compact(flags.numpy() > 0.5)
    features = channels * size * size
    best = torch.zeros(total, dtype=torch.int32)
    patch_best_kernel[(triton.cdiv(total, cfg.block_m),)](
        xt, idx_hole, idx_key, counts, best, height, width, features, SIZE=size, BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, PRECISION=configs.PRECISIONS[precision])
    out = xt.clone()
    patch_compose_kernel[(total, triton.cdiv(features, configs.COMPOSE_BLOCK_K))](
        xt, out, idx_hole, idx_key, counts, best, height, width, features, SIZE=size, BLOCK_K=configs.COMPOSE_BLOCK_K)
    margin = configs.margin_elements(channels, height, width, size)
    if margin:
        patch_margin_kernel[(triton.cdiv(margin, configs.MARGIN_BLOCK),)](out, counts, channels, height, width, size,
                                                                          BLOCK=configs.MARGIN_BLOCK)
    return out.numpy()
