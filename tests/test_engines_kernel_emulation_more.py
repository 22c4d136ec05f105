"""Emulation of the other kernels' index arithmetic (see test_engines_kernel_emulation.py):
the compaction scan, the fp32 SIMT attention and the patch-match GEMM + arg-max, transcribed
from engines/plugins/trt_restore_kernels.cu with threads as numpy axes."""
from __future__ import annotations

import numpy as np
import pytest

C = 512


# ---- compaction --------------------------------------------------------------------------
def block_exclusive_scan(values: np.ndarray) -> tuple[np.ndarray, int]:
    """blockExclusiveScan for 256 threads: warp shfl_up scans, warp sums scanned by warp 0."""
    values = values.astype(np.int64)
    lane = np.arange(256) & 31
    warp = np.arange(256) >> 5
    inclusive = values.copy()
    for offset in (1, 2, 4, 8, 16):
        shifted = np.array([inclusive[i - offset] if lane[i] >= offset else 0 for i in range(256)])
        inclusive = inclusive + np.where(lane >= offset, shifted, 0)
    warp_sums = inclusive[lane == 31]
    running = warp_sums.copy()
    for offset in (1, 2, 4):
        running = running + np.array([running[i - offset] if i >= offset else 0 for i in range(8)])
    exclusive_warp = running - warp_sums
    return exclusive_warp[warp] + inclusive - values, int(running[-1])


def compact(flags: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray, int]:
    n = flags.size
    blocks = -(-n // 1024)
    counts = []
    for b in range(blocks):  # countFlagsKernel
        base = b * 1024 + np.arange(256) * 4
        c = sum(((base + k < n) & (flags[np.minimum(base + k, n - 1)] == want)).astype(int) for k in range(4))
        counts.append(block_exclusive_scan(c)[1])
    offsets, carry = np.zeros(blocks, int), 0  # scanCountsKernel
    for start in range(0, blocks, 256):
        chunk = np.zeros(256, int)
        take = counts[start:start + 256]
        chunk[:len(take)] = take
        ex, total = block_exclusive_scan(chunk)
        offsets[start:start + len(take)] = carry + ex[:len(take)]
        carry += total
    slot, listing = np.full(n, -1), np.full(n, -1)
    for b in range(blocks):  # assignSlotsKernel
        base = b * 1024 + np.arange(256) * 4
        mine = np.stack([(base + k < n) & (flags[np.minimum(base + k, n - 1)] == want) for k in range(4)], 1)
        nxt = offsets[b] + block_exclusive_scan(mine.sum(1))[0]
        for tid in range(256):
            for k in range(4):
                i = base[tid] + k
                if i < n and mine[tid, k]:
                    slot[i] = nxt[tid]
                    listing[nxt[tid]] = i
                    nxt[tid] += 1
    return slot, listing, carry


@pytest.mark.parametrize("n", [1, 1000, 1024, 5000])
def test_compaction(n):
    flags = (np.random.default_rng(n).random(n) < 0.6).astype(np.uint8)
    for want in (1, 0):
        slot, listing, count = compact(flags, want)
        idx = np.flatnonzero(flags == want)
        assert count == idx.size
        assert np.array_equal(listing[:count], idx)
        assert np.array_equal(slot[idx], np.arange(idx.size)) and np.all(slot[flags != want] == -1)


# ---- fp32 SIMT attention -----------------------------------------------------------------
def emulate_attention_f32(theta, K, V, nv, n):
    kFQ, kFK, kFChunk = 32, 32, 128
    out = np.zeros((C, n), np.float32)
    lane = np.arange(32)
    for block in range(-(-n // kFQ)):
        q0 = block * kFQ
        Qs = np.zeros((kFQ, C), np.float32)
        for idx in range(kFQ * C):
            c, r = idx // kFQ, idx % kFQ
            Qs[r, c] = theta[c, q0 + r] if q0 + r < n else 0
        m = np.full((8, 4), -np.inf, np.float32)
        l = np.zeros((8, 4), np.float32)
        acc = np.zeros((8, 32, 4, 4, 4), np.float32)  # warp, lane, chunk, row, e
        for j in range(-(-nv // kFK)):
            k0 = j * kFK
            s = np.zeros((8, 32, 4), np.float32)
            for c in range(4):
                KVs = K[k0:k0 + kFK, c * kFChunk:(c + 1) * kFChunk]  # loadChunk: KVs[r][c4*4..]
                for warp in range(8):
                    r0 = warp * 4
                    for i in range(4):
                        s[warp, :, i] += (KVs[lane] * Qs[r0 + i, c * kFChunk:(c + 1) * kFChunk]).sum(1)
            Pt = np.zeros((kFK, kFQ), np.float32)
            for warp in range(8):
                r0 = warp * 4
                key_valid = k0 + lane < nv
                for i in range(4):
                    si = np.where(key_valid, s[warp, :, i], -np.inf)
                    m_new = max(m[warp, i], si.max())
                    p = np.where(key_valid, np.exp(si - m_new), 0)
                    alpha = 0 if m[warp, i] == -np.inf else np.exp(m[warp, i] - m_new)
                    l[warp, i] = l[warp, i] * alpha + p.sum()
                    m[warp, i] = m_new
                    Pt[lane, r0 + i] = p
                    acc[warp, :, :, i, :] *= alpha
            for c in range(4):
                KVs = V[k0:k0 + kFK, c * kFChunk:(c + 1) * kFChunk]
                for warp in range(8):
                    r0 = warp * 4
                    for kk in range(kFK):
                        pv = Pt[kk, r0:r0 + 4]
                        vv = KVs[kk, (lane * 4)[:, None] + np.arange(4)]  # (32 lanes, 4 channels)
                        acc[warp, :, c] += pv[None, :, None] * vv[:, None, :]
        for warp in range(8):
            for i in range(4):
                q = q0 + warp * 4 + i
                if q < n:
                    for c in range(4):
                        for e in range(4):
                            out[c * kFChunk + lane * 4 + e, q] = acc[warp, :, c, i, e] / l[warp, i]
    return out


def test_fp32_attention_index_math():
    rng = np.random.default_rng(3)
    n = 100
    theta, phi, g = (rng.standard_normal((C, n)).astype(np.float32) * s for s in (0.08, 0.08, 1.0))
    keys = rng.random(n) < 0.7
    nv, n_pad = int(keys.sum()), 128
    K = np.zeros((n_pad, C), np.float32)
    V = np.zeros((n_pad, C), np.float32)
    K[:nv], V[:nv] = phi[:, keys].T, g[:, keys].T
    got = emulate_attention_f32(theta, K, V, nv, n)
    logits = theta.T.astype(np.float64) @ phi[:, keys]
    p = np.exp(logits - logits.max(1, keepdims=True))
    want = ((p / p.sum(1, keepdims=True)) @ g[:, keys].T).T
    assert np.abs(got - want).max() / np.abs(want).max() < 1e-5


# ---- patch match GEMM + arg-max ---------------------------------------------------------------
def emulate_patch_similarity(P, holes, keys, dim, inv, L, kPSplit=64, tile=64, step=16):
    part_val = np.full((kPSplit, L), np.nan, np.float32)
    part_idx = np.full((kPSplit, L), -7, np.int64)
    tid = np.arange(256)
    tx, ty = tid & 15, tid >> 4
    load_row, load_col = tid >> 2, (tid & 3) * 4
    A, B = P[:holes], P[holes:holes + keys]
    for qt in range(-(-L // tile)):
        for split in range(kPSplit):
            if qt * tile >= holes or keys == 0:
                continue
            key_tiles = -(-keys // tile)
            per = -(-key_tiles // kPSplit)
            begin, end = split * per, min(key_tiles, split * per + per)
            best_v = np.full((256, 4), -np.inf, np.float32)
            best_i = np.full((256, 4), 2**31 - 1, np.int64)
            for kt in range(begin, end):
                acc = np.zeros((256, 4, 4), np.float32)
                a_row, b_row = qt * tile + load_row, kt * tile + load_row
                for e0 in range(0, dim, step):
                    As = np.zeros((step, tile + 4), np.float32)
                    Bs = np.zeros((step, tile + 4), np.float32)
                    for th in range(256):
                        av = A[a_row[th], e0 + load_col[th]:e0 + load_col[th] + 4] if a_row[th] < holes else np.zeros(4)
                        bv = B[b_row[th], e0 + load_col[th]:e0 + load_col[th] + 4] if b_row[th] < keys else np.zeros(4)
                        As[load_col[th]:load_col[th] + 4, load_row[th]] = av
                        Bs[load_col[th]:load_col[th] + 4, load_row[th]] = bv
                    for k in range(step):
                        a = np.stack([As[k, ty * 4 + i] for i in range(4)], 1)
                        b = np.stack([Bs[k, tx * 4 + j] for j in range(4)], 1)
                        acc += a[:, :, None] * b[:, None, :]
                for j in range(4):
                    col = kt * tile + tx * 4 + j
                    ok = col < keys
                    v = acc[:, :, j] * np.where(ok, inv[np.minimum(col, keys - 1)], 0)[:, None]
                    take = ok[:, None] & (v > best_v)
                    best_v = np.where(take, v, best_v)
                    best_i = np.where(take, col[:, None], best_i)
            for i in range(4):  # 16-lane xor-shuffle reduction (lanes = tid within the row group)
                v, idx = best_v[:, i].copy(), best_i[:, i].copy()
                for o in (8, 4, 2, 1):
                    ov, oi = v[tid ^ o], idx[tid ^ o]
                    better = (ov > v) | ((ov == v) & (oi < idx))
                    v, idx = np.where(better, ov, v), np.where(better, oi, idx)
                for th in np.flatnonzero(tx == 0):
                    q = qt * tile + ty[th] * 4 + i
                    if q < holes:
                        part_val[split, q], part_idx[split, q] = v[th], idx[th]
    best = []
    for h in range(holes):  # patchMergeKernel
        v, idx = -np.inf, 2**31 - 1
        for s in range(kPSplit):
            ov, oi = part_val[s, h], part_idx[s, h]
            assert not np.isnan(ov), "a split left its partial result unwritten"
            if ov > v or (ov == v and oi < idx):
                v, idx = ov, oi
        best.append(idx)
    return np.array(best)


@pytest.mark.parametrize("holes,keys,dim,splits", [(70, 150, 32, 64), (5, 300, 16, 2)])
def test_patch_similarity_index_math(holes, keys, dim, splits):
    """(70, 150): several hole tiles, a partial key tile, empty splits; (5, 300) with 2 splits:
    several key tiles per split (the 64-split kernel needs > 4096 keys for that)."""
    rng = np.random.default_rng(holes + keys)
    P = rng.standard_normal((holes + keys, dim)).astype(np.float32)
    P[holes + keys - 1] = P[holes + 3]  # a duplicate key: ties resolve to the first index
    inv = (1 / np.maximum(np.linalg.norm(P[holes:], axis=1), 1e-12)).astype(np.float32)
    got = emulate_patch_similarity(P, holes, keys, dim, inv, holes + keys, kPSplit=splits)
    sims = P[:holes].astype(np.float64) @ P[holes:].T.astype(np.float64) * inv
    want = sims.argmax(1)
    assert np.array_equal(got, want)
