"""The two attention kinds of the scratch/HR mappings, in numpy with bounded memory.

They are not inside the ONNX graphs (docs/onnx-graphs.md): here they never materialise the
N x N matrix of the original. Masked nonlocal attention processes query chunks against blocks
of the compacted valid keys with an online softmax, so its scratch memory is O(chunk x block);
the patch match processes hole patches in chunks against the non-hole patches.
"""
from __future__ import annotations

import numpy as np

from .resize import resize_bilinear, resize_nearest

DEFAULT_CHUNK_BYTES = 256 << 20  # logits buffer per (query chunk x key block)
DEFAULT_KEY_BLOCK = 16384  # keys per block of the online softmax
# exp() of logits this far below the row maximum is < 1.8e-35 of the maximum's weight: flooring
# them here changes no sum in float32, and keeps exp() out of the subnormal range, where every
# later multiply (the GEMM with the values) takes a microcode assist: measured 50x slower.
LOGIT_FLOOR = np.float32(-80.0)
HOLE_FRACTION = 0.6


def valid_positions(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1,1,H,W) 0/1 mask -> (1,1,h,w) float32, 1 where the latent position is untouched."""
    untouched = resize_bilinear(mask, height, width) <= 0
    return (untouched * resize_nearest(1.0 - mask, height, width)).astype(np.float32)


def binarised_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """(1,1,H,W) -> (1,1,h,w): bilinear resize, any positive value becomes 1 (HR mapping)."""
    return (resize_bilinear(mask, height, width) > 0).astype(np.float32)


def _chunk_rows(keys: int, channels: int, chunk_bytes: int) -> int:
    return max(1, chunk_bytes // (4 * max(keys, channels)))


def masked_attention(theta: np.ndarray, phi: np.ndarray, g: np.ndarray, key_valid: np.ndarray,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES, key_block: int = DEFAULT_KEY_BLOCK) -> np.ndarray:
    """y[:, i] = sum_j softmax_{valid j}(theta_i . phi_j) g_j for every position i.

    theta, phi, g: (C, N) float32; key_valid: (N,) bool. Returns (C, N); rows with no valid
    key are 0 (the original's renormalisation gives 0/eps there). Invalid keys are compacted
    away first; queries go in chunks, keys in blocks of `key_block` with an online softmax
    (running max and running sum, fp32), so the scratch memory is one chunk x block of logits
    whatever N is."""
    keys = np.ascontiguousarray(phi[:, key_valid])
    values = np.ascontiguousarray(g[:, key_valid].T)
    channels, positions = theta.shape
    out = np.zeros((positions, channels), dtype=np.float32)
    valid_count = values.shape[0]
    if valid_count == 0:
        return out.T
    queries = np.ascontiguousarray(theta.T)
    block = max(1, min(key_block, valid_count))
    rows = _chunk_rows(block, channels, chunk_bytes)
    for start in range(0, positions, rows):
        chunk = queries[start:start + rows]
        running_max = np.full((chunk.shape[0], 1), -np.inf, dtype=np.float32)
        running_sum = np.zeros((chunk.shape[0], 1), dtype=np.float32)
        acc = out[start:start + rows]  # a view: accumulates in place
        for first in range(0, valid_count, block):
            logits = chunk @ keys[:, first:first + block]
            block_max = np.maximum(running_max, logits.max(axis=1, keepdims=True))
            logits -= block_max
            np.maximum(logits, LOGIT_FLOOR, out=logits)
            np.exp(logits, out=logits)
            if first:  # rescale what was accumulated under the old maximum
                rescale = np.exp(np.maximum(running_max - block_max, LOGIT_FLOOR))
                running_sum *= rescale
                acc *= rescale
            running_sum += logits.sum(axis=1, keepdims=True)
            acc += logits @ values[first:first + block]
            running_max = block_max
        acc /= running_sum
    return out.T


def to_patches(x: np.ndarray, size: int) -> np.ndarray:
    """(C,H,W) -> (L, C*size*size): row-major patches, features ordered (c, i, j)."""
    c, h, w = x.shape
    x = x.reshape(c, h // size, size, w // size, size)
    return x.transpose(1, 3, 0, 2, 4).reshape((h // size) * (w // size), c * size * size)


def from_patches(patches: np.ndarray, channels: int, height: int, width: int, size: int) -> np.ndarray:
    x = patches.reshape(height // size, width // size, channels, size, size)
    return x.transpose(2, 0, 3, 1, 4).reshape(channels, height, width)


def hole_patches(hole: np.ndarray, size: int) -> np.ndarray:
    """(h,w) binary -> (L,) bool: patches whose hole fraction exceeds 0.6."""
    h, w = hole.shape
    fraction = hole.reshape(h // size, size, w // size, size).mean(axis=(1, 3))
    return fraction.reshape(-1) > HOLE_FRACTION


def _normalise_rows(m: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float32))
    return m / np.maximum(norms, np.float32(1e-12))[:, None]


def patch_match(x: np.ndarray, hole: np.ndarray, size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Replace each hole patch of x (C,H,W) by its most cosine-similar non-hole patch.

    The arg-max is taken on the softmax (as the original), so ties resolve alike."""
    c, h, w = x.shape
    patches = to_patches(x, size)
    is_hole = hole_patches(hole, size)
    hole_idx = np.flatnonzero(is_hole)
    key_idx = np.flatnonzero(~is_hole)
    if hole_idx.size == 0 or key_idx.size == 0:
        return x
    keys = np.ascontiguousarray(_normalise_rows(patches[key_idx]).T)
    result = patches.copy()
    rows = _chunk_rows(key_idx.size, keys.shape[0], chunk_bytes)
    for start in range(0, hole_idx.size, rows):
        chosen = hole_idx[start:start + rows]
        sim = _normalise_rows(patches[chosen]) @ keys
        sim -= sim.max(axis=1, keepdims=True)
        np.exp(sim, out=sim)
        sim /= sim.sum(axis=1, keepdims=True)
        result[chosen] = patches[key_idx[sim.argmax(axis=1)]]
    return from_patches(result, c, h, w, size)
