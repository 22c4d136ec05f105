"""The original's partial nonlocal attention written densely, as the reference other code is
checked against (kernels, benchmarks). Quadratic in N: for small test sizes only."""
from __future__ import annotations

import numpy as np


def original_attention(theta: np.ndarray, phi: np.ndarray, g: np.ndarray, valid: np.ndarray,
                       dtype=np.float64) -> np.ndarray:
    """softmax over ALL keys of theta^T phi, times the valid-key mask, each row divided by
    max(row sum, 1e-12) (F.normalize(p=1, eps=1e-12)), times g. (C, N) arrays in and out."""
    f = theta.T.astype(dtype) @ phi.astype(dtype)
    f -= f.max(axis=1, keepdims=True)
    p = np.exp(f)
    p /= p.sum(axis=1, keepdims=True)
    p *= valid[None, :]
    return (p @ g.T.astype(dtype) / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)).T
