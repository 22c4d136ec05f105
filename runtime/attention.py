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
# exp() of logits this far below the running maximum *of the same key set* is < 1.8e-35 of the
# maximum's weight, so flooring them changes no float32 sum (each sum holds a term of weight 1),
# and keeps exp() out of the subnormal range, where every later multiply (the GEMM with the
# values) takes a microcode assist: measured 50x slower. The floor never reaches across key
# sets: the valid/invalid balance is taken in log space (tests/test_attention.py proves it).
LOGIT_FLOOR = np.float32(-80.0)
# F.normalize(p=1, eps=1e-12) divides each masked softmax row by max(S, 1e-12), S being the valid
# keys' share of the full softmax: below that share the row is attenuated by S / 1e-12.
RENORM_EPS_LOG = float(np.log(1e-12))
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


def _online_softmax(queries: np.ndarray, keys: np.ndarray, block: int, floor: np.float32,
                    values: np.ndarray | None = None, acc: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stream `keys` (C, M) in blocks against `queries` (R, C): running max and running sum of
    exp(logit - max) per query, fp32. With `values` (M, C'), also accumulate the unnormalised
    softmax-weighted values into `acc` (R, C'), rescaled whenever the maximum grows."""
    rows = queries.shape[0]
    running_max = np.full((rows, 1), -np.inf, dtype=np.float32)
    running_sum = np.zeros((rows, 1), dtype=np.float32)
    for first in range(0, keys.shape[1], block):
        logits = queries @ keys[:, first:first + block]
        block_max = np.maximum(running_max, logits.max(axis=1, keepdims=True))
        logits -= block_max
        np.maximum(logits, floor, out=logits)
        np.exp(logits, out=logits)
        if first:  # rescale what was accumulated under the old maximum
            rescale = np.exp(np.maximum(running_max - block_max, floor))
            running_sum *= rescale
            if acc is not None:
                acc *= rescale
        running_sum += logits.sum(axis=1, keepdims=True)
        if values is not None:
            acc += logits @ values[first:first + block]
        running_max = block_max
    return running_max, running_sum


def renormalisation_scale(valid_lse: np.ndarray, invalid_lse: np.ndarray) -> np.ndarray:
    """min(1, S * 1e12) with log S = lse_valid - lse_all, per row, in float64.

    This is what F.normalize(p=1, eps=1e-12) of the original's masked full softmax leaves of a
    row whose valid keys hold less than 1e-12 of the softmax mass; rows without any valid key
    (lse_valid = -inf) get 0."""
    valid_lse = valid_lse.astype(np.float64)
    all_lse = np.logaddexp(valid_lse, invalid_lse.astype(np.float64))
    with np.errstate(invalid="ignore"):
        log_share = np.where(np.isneginf(valid_lse), -np.inf, valid_lse - all_lse)
    return np.exp(np.minimum(0.0, log_share - RENORM_EPS_LOG))


def masked_attention(theta: np.ndarray, phi: np.ndarray, g: np.ndarray, key_valid: np.ndarray,
                     chunk_bytes: int = DEFAULT_CHUNK_BYTES, key_block: int = DEFAULT_KEY_BLOCK,
                     logit_floor: float = LOGIT_FLOOR) -> np.ndarray:
    """The original's partial nonlocal attention, y = normalize_L1(softmax(theta^T phi) * valid) g.

    theta, phi, g: (C, N) float32; key_valid: (N,) bool. Returns (C, N):
    y_i = min(1, S_i * 1e12) * sum_{valid j} softmax_valid(theta_i . phi_j) g_j, where
    log S_i = lse_valid(theta_i . phi) - lse_all(theta_i . phi) (0 for rows with no valid key).
    Valid keys are compacted and streamed in blocks of `key_block` with an online softmax (running
    max and sum, fp32) that also accumulates the values; the invalid keys (few: scratches) are
    streamed the same way for their log-sum-exp only. Queries go in chunks, so the scratch memory
    is one chunk x block of logits whatever N is."""
    floor = np.float32(logit_floor)
    keys = np.ascontiguousarray(phi[:, key_valid])
    values = np.ascontiguousarray(g[:, key_valid].T)
    invalid_keys = np.ascontiguousarray(phi[:, ~key_valid])
    channels, positions = theta.shape
    out = np.zeros((positions, channels), dtype=np.float32)
    valid_count = values.shape[0]
    if valid_count == 0:
        return out.T
    queries = np.ascontiguousarray(theta.T)
    block = max(1, min(key_block, max(valid_count, invalid_keys.shape[1])))
    rows = _chunk_rows(block, channels, chunk_bytes)
    for start in range(0, positions, rows):
        chunk = queries[start:start + rows]
        acc = out[start:start + rows]  # a view: accumulates in place
        valid_max, valid_sum = _online_softmax(chunk, keys, block, floor, values, acc)
        acc /= valid_sum
        if invalid_keys.shape[1]:
            invalid_max, invalid_sum = _online_softmax(chunk, invalid_keys, block, floor)
            scale = renormalisation_scale(valid_max + np.log(valid_sum), invalid_max + np.log(invalid_sum))
            attenuated = scale[:, 0] < 1.0
            if attenuated.any():
                acc[attenuated] *= scale[attenuated].astype(np.float32)
    return out.T


def to_patches(x: np.ndarray, size: int) -> np.ndarray:
    """(C,H,W) -> (L, C*size*size): the whole patches in row-major order, features (c, i, j).

    Like F.unfold: a bottom/right margin narrower than a patch belongs to no patch."""
    c, h, w = x.shape
    rows, cols = h // size, w // size
    x = x[:, :rows * size, :cols * size].reshape(c, rows, size, cols, size)
    return x.transpose(1, 3, 0, 2, 4).reshape(rows * cols, c * size * size)


def from_patches(patches: np.ndarray, channels: int, height: int, width: int, size: int) -> np.ndarray:
    """Inverse of to_patches, like F.fold(output_size=(height, width)): uncovered margins are 0."""
    rows, cols = height // size, width // size
    x = np.zeros((channels, height, width), dtype=patches.dtype)
    x[:, :rows * size, :cols * size] = (patches.reshape(rows, cols, channels, size, size)
                                        .transpose(2, 0, 3, 1, 4).reshape(channels, rows * size, cols * size))
    return x


def hole_patches(hole: np.ndarray, size: int) -> np.ndarray:
    """(h,w) binary -> (L,) bool over the whole patches: hole fraction above 0.6."""
    h, w = hole.shape
    rows, cols = h // size, w // size
    fraction = hole[:rows * size, :cols * size].reshape(rows, size, cols, size).mean(axis=(1, 3))
    return fraction.reshape(-1) > HOLE_FRACTION


def _normalise_rows(m: np.ndarray) -> np.ndarray:
    norms = np.sqrt(np.einsum("ij,ij->i", m, m, dtype=np.float32))
    return m / np.maximum(norms, np.float32(1e-12))[:, None]


def patch_match(x: np.ndarray, hole: np.ndarray, size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> np.ndarray:
    """Replace each hole patch of x (C,H,W) by its most cosine-similar non-hole patch.

    The arg-max is taken on the softmax (as the original), so ties resolve alike. As the
    original's fold, a bottom/right margin that no whole patch covers comes back as 0 when
    there is at least one hole patch, and x is returned as it is when there is none."""
    c, h, w = x.shape
    patches = to_patches(x, size)
    is_hole = hole_patches(hole, size)
    hole_idx = np.flatnonzero(is_hole)
    key_idx = np.flatnonzero(~is_hole)
    if hole_idx.size == 0:
        return x  # the original skips the fold: margins keep their values
    if key_idx.size == 0:  # (the original fails here: softmax over no key)
        return from_patches(patches, c, h, w, size)
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
