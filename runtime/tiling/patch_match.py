"""HR patch match over maps kept in a FrameStore, in bands of patch rows.

Hole patches (the queries, few) are gathered and normalised once; non-hole patches (the
keys) are streamed band by band with a running best match, so memory is O(queries + band)
instead of the whole 512-channel map. The winner is the key of highest cosine similarity,
first in row-major order on exact ties; the original takes the arg-max after a softmax,
which can only differ where the softmax rounds two different similarities to one value.
"""
from __future__ import annotations

import numpy as np

from ..attention import _normalise_rows, hole_patches


def _band_patches(rows: np.ndarray, size: int) -> np.ndarray:
    """(C, size, W) rows -> (W/size, C*size*size) patches with (c, i, j) feature order."""
    c, _, w = rows.shape
    x = rows.reshape(c, size, w // size, size)
    return x.transpose(2, 0, 1, 3).reshape(w // size, c * size * size)


def patch_match_frames(source, target, hole: np.ndarray, size: int, query_chunk: int = 2048) -> None:
    """Write `source` with hole patches replaced by their best non-hole patch into `target`.

    source/target: objects with .read(start, stop) -> (C, rows, W) effective values and
    .store.write(start, rows); hole: (h, w) binary latent mask."""
    channels, height, width = source.shape
    per_row = width // size
    is_hole = hole_patches(hole, size).reshape(height // size, per_row)
    hole_idx = np.flatnonzero(is_hole)
    if hole_idx.size == 0 or hole_idx.size == is_hole.size:
        for band in range(height // size):
            target.store.write(band * size, source.read(band * size, (band + 1) * size))
        return
    queries = []
    for band in np.unique(hole_idx // per_row):
        patches = _band_patches(source.read(band * size, (band + 1) * size), size)
        queries.append(_normalise_rows(patches[is_hole[band]]))
    queries = np.concatenate(queries)
    best_sim = np.full(queries.shape[0], -np.inf, dtype=np.float32)
    best_key = np.zeros(queries.shape[0], dtype=np.int64)
    for band in range(height // size):
        keep = ~is_hole[band]
        if not keep.any():
            continue
        keys = _normalise_rows(_band_patches(source.read(band * size, (band + 1) * size), size)[keep])
        key_ids = band * per_row + np.flatnonzero(keep)
        for start in range(0, queries.shape[0], query_chunk):
            sim = queries[start:start + query_chunk] @ keys.T
            local = sim.argmax(axis=1)
            value = sim[np.arange(sim.shape[0]), local]
            better = value > best_sim[start:start + query_chunk]  # strict: earlier keys win ties
            best_sim[start:start + query_chunk][better] = value[better]
            best_key[start:start + query_chunk][better] = key_ids[local[better]]
    del queries
    winner = dict(zip(hole_idx.tolist(), best_key.tolist()))
    fetched: dict[int, np.ndarray] = {}
    for key_band in np.unique(best_key // per_row):
        rows = source.read(int(key_band) * size, (int(key_band) + 1) * size)
        for key in set(k for k in best_key.tolist() if k // per_row == key_band):
            column = key % per_row
            fetched[key] = rows[:, :, column * size:(column + 1) * size].copy()  # (C, size, size)
    for band in range(height // size):
        rows = source.read(band * size, (band + 1) * size)
        for column in np.flatnonzero(is_hole[band]):
            rows[:, :, column * size:(column + 1) * size] = fetched[winner[band * per_row + int(column)]]
        target.store.write(band * size, rows)
