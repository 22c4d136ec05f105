"""HR patch match over maps kept in a FrameStore, in bands of patch rows.

Hole patches (the queries, few) are gathered and normalised once; non-hole patches (the
keys) are streamed band by band with a running best match, so memory is O(queries + band)
instead of the whole 512-channel map. The winner is the key of highest cosine similarity,
first in row-major order on exact ties; the original takes the arg-max after a softmax,
which can only differ where the softmax rounds two different similarities to one value.
Only whole patches take part; when there is a hole patch, the bottom/right margins that no
whole patch covers are written as 0 (the original's F.fold), else the map is copied whole.
"""
from __future__ import annotations

import numpy as np

from ..attention import _normalise_rows, hole_patches


def _band_patches(rows: np.ndarray, size: int) -> np.ndarray:
    """(C, size, W) rows -> (W//size, C*size*size) whole patches with (c, i, j) feature order."""
    c, _, w = rows.shape
    cols = w // size
    x = rows[:, :, :cols * size].reshape(c, size, cols, size)
    return x.transpose(2, 0, 1, 3).reshape(cols, c * size * size)


def _copy_frame(source, target, band_rows: int) -> None:
    height = source.shape[1]
    for start in range(0, height, band_rows):
        target.store.write(start, source.read(start, min(height, start + band_rows)))


def _best_keys(source, is_hole: np.ndarray, size: int, query_chunk: int) -> np.ndarray:
    """Flat index of the best non-hole patch for every hole patch (row-major order)."""
    per_row = is_hole.shape[1]
    queries = []
    for band in np.unique(np.flatnonzero(is_hole) // per_row):
        patches = _band_patches(source.read(band * size, (band + 1) * size), size)
        queries.append(_normalise_rows(patches[is_hole[band]]))
    queries = np.concatenate(queries)
    best_sim = np.full(queries.shape[0], -np.inf, dtype=np.float32)
    best_key = np.zeros(queries.shape[0], dtype=np.int64)
    for band in range(is_hole.shape[0]):
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
    return best_key


def patch_match_frames(source, target, hole: np.ndarray, size: int, query_chunk: int = 2048) -> None:
    """Write `source` with hole patches replaced by their best non-hole patch into `target`.

    source/target: objects with .read(start, stop) -> (C, rows, W) effective values and
    .store.write(start, rows); hole: (h, w) binary latent mask."""
    channels, height, width = source.shape
    rows_of_patches, per_row = height // size, width // size
    is_hole = hole_patches(hole, size).reshape(rows_of_patches, per_row)
    hole_idx = np.flatnonzero(is_hole)
    if hole_idx.size == 0:
        _copy_frame(source, target, size)
        return
    winner: dict[int, int] = {}
    fetched: dict[int, np.ndarray] = {}
    if hole_idx.size < is_hole.size:  # else no key: hole patches stay (the original fails there)
        best_key = _best_keys(source, is_hole, size, query_chunk)
        winner = dict(zip(hole_idx.tolist(), best_key.tolist()))
        for key_band in np.unique(best_key // per_row):
            rows = source.read(int(key_band) * size, (int(key_band) + 1) * size)
            for key in set(k for k in best_key.tolist() if k // per_row == key_band):
                column = key % per_row
                fetched[key] = rows[:, :, column * size:(column + 1) * size].copy()  # (C, size, size)
    for band in range(rows_of_patches):
        rows = source.read(band * size, (band + 1) * size)
        rows[:, :, per_row * size:] = 0.0  # right margin: no whole patch covers it
        for column in np.flatnonzero(is_hole[band]):
            key = winner.get(band * per_row + int(column))
            if key is not None:
                rows[:, :, column * size:(column + 1) * size] = fetched[key]
        target.store.write(band * size, rows)
    if rows_of_patches * size < height:  # bottom margin
        target.store.write(rows_of_patches * size,
                           np.zeros((channels, height - rows_of_patches * size, width), dtype=np.float32))
