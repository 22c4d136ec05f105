"""Lane-level emulation of the fp16 tensor-core attention kernel (attentionTcKernel).

No GPU here, so the kernel's index arithmetic is replayed in numpy: the shared-memory layouts,
the per-lane addresses given to ldmatrix, the warp roles, the masking, the quad shuffles, the
cross-warp reductions and the online-softmax bookkeeping are transcribed from
engines/plugins/trt_restore_kernels.cu, while ldmatrix and mma.sync.m16n8k16 are modelled from
the fragment layouts of the PTX ISA (independently of the kernel's formulas). A slip in an
address or a fragment index makes the result differ from the float64 reference. What this
cannot see: races, cp.async ordering, bank conflicts, performance.
"""
from __future__ import annotations

import numpy as np
import pytest

C = 512  # kChannels


# ---- PTX fragment semantics ------------------------------------------------------------------
def ldmatrix(smem: np.ndarray, addresses: np.ndarray, count: int) -> np.ndarray:
    """ldmatrix.sync.aligned.m8n8.x{count}.b16: lanes 8i..8i+7 give the row addresses of matrix i;
    lane t receives row t // 4, columns 2 (t % 4) and +1 of each matrix. -> (32, count, 2)."""
    regs = np.empty((32, count, 2), dtype=smem.dtype)
    for i in range(count):
        rows = addresses[8 * i:8 * i + 8]
        for t in range(32):
            base = rows[t // 4] + 2 * (t % 4)
            regs[t, i] = smem[base:base + 2]
    return regs


def mma16816(d: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """mma.sync.m16n8k16.row.col f32 += f16 x f16 with the PTX register layouts.
    a: (32, 4, 2), b: (32, 2, 2), d: (32, 4) -> (32, 4)."""
    A = np.zeros((16, 16), np.float64)
    B = np.zeros((16, 8), np.float64)
    D = np.zeros((16, 8), np.float64)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        for reg, (row, col) in enumerate(((g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8))):
            A[row, col:col + 2] = a[lane, reg]
        for reg, k in enumerate((2 * t, 2 * t + 8)):
            B[k:k + 2, g] = b[lane, reg]
        D[g, 2 * t:2 * t + 2] = d[lane, 0:2]
        D[g + 8, 2 * t:2 * t + 2] = d[lane, 2:4]
    D = (A @ B + D).astype(np.float32)
    out = np.empty((32, 4), np.float32)
    for lane in range(32):
        g, t = lane >> 2, lane & 3
        out[lane, 0:2] = D[g, 2 * t:2 * t + 2]
        out[lane, 2:4] = D[g + 8, 2 * t:2 * t + 2]
    return out


def quad_reduce(values: np.ndarray, op) -> np.ndarray:
    """__shfl_xor_sync with 1 then 2 over the lane axis (axis 0)."""
    lanes = np.arange(32)
    for offset in (1, 2):
        values = op(values, values[lanes ^ offset])
    return values


# ---- the kernel, transcribed ----------------------------------------------------------------
def emulate_attention_tc(theta, K, Vt, ldv, nv, n, BQ, BK, NW):
    """theta (C, n) float32; K (nPad, C) fp16; Vt (C, ldv) fp16 -> out (C, n) float32."""
    kQld, kVld = C + 8, BK + 8
    kSW = BQ * BK // (16 * NW)
    kNT, kWPR, kCW = kSW // 8, BK // kSW, C // NW
    kNTO, kMT = kCW // 8, BQ // 16
    lane = np.arange(32)
    g, t = lane >> 2, lane & 3
    out = np.zeros((C, n), np.float32)
    for block in range((n + BQ - 1) // BQ):
        q0 = block * BQ
        Qs = np.zeros(BQ * kQld, np.float16)
        Ks = np.zeros(BK * kQld, np.float16)
        Vs = np.zeros(C * kVld, np.float16)
        Ps = np.zeros(BQ * kVld, np.float16)
        redMax = np.zeros(BQ * kWPR, np.float32)
        redSum = np.zeros(BQ * kWPR, np.float32)
        rowM = np.full(BQ, -np.inf, np.float32)
        rowL = np.zeros(BQ, np.float32)
        rowAlpha = np.zeros(BQ, np.float32)
        for idx in range(BQ * C):
            c, r = idx // BQ, idx % BQ
            Qs[r * kQld + c] = theta[c, q0 + r] if q0 + r < n else 0.0
        acc = np.zeros((NW, kMT, kNTO, 32, 4), np.float32)
        for j in range((nv + BK - 1) // BK):
            k0 = j * BK
            for idx in range(BK * (C // 8)):  # loadK
                r, chunk = idx // (C // 8), idx % (C // 8)
                Ks[r * kQld + chunk * 8:r * kQld + chunk * 8 + 8] = K[k0 + r, chunk * 8:chunk * 8 + 8]
            s_all = {}
            for warp in range(NW):  # S phase
                sRowBlock, sWarpCol = warp // kWPR, warp % kWPR
                sCol0 = sWarpCol * kSW
                s = np.zeros((kNT, 32, 4), np.float32)
                for kk in range(0, C, 16):
                    a = ldmatrix(Qs, (sRowBlock * 16 + (lane & 15)) * kQld + kk + (lane >> 4) * 8, 4)
                    if kNT == 1:
                        b = ldmatrix(Ks, (sCol0 + (lane & 7)) * kQld + kk + ((lane >> 3) & 1) * 8, 2)
                        s[0] = mma16816(s[0], a, b)
                    else:
                        for pair in range(kNT // 2):
                            b = ldmatrix(Ks, (sCol0 + pair * 16 + (lane & 7) + ((lane >> 4) << 3)) * kQld + kk
                                         + ((lane >> 3) & 1) * 8, 4)
                            s[2 * pair] = mma16816(s[2 * pair], a, b[:, 0:2])
                            s[2 * pair + 1] = mma16816(s[2 * pair + 1], a, b[:, 2:4])
                rLo = sRowBlock * 16 + g
                for nt in range(kNT):
                    col = k0 + sCol0 + nt * 8 + 2 * t
                    s[nt, col >= nv, 0] = -np.inf
                    s[nt, col >= nv, 2] = -np.inf
                    s[nt, col + 1 >= nv, 1] = -np.inf
                    s[nt, col + 1 >= nv, 3] = -np.inf
                mxLo = quad_reduce(np.max(s[:, :, 0:2], axis=(0, 2)), np.maximum)
                mxHi = quad_reduce(np.max(s[:, :, 2:4], axis=(0, 2)), np.maximum)
                for ln in range(32):
                    if t[ln] == 0:
                        redMax[rLo[ln] * kWPR + sWarpCol] = mxLo[ln]
                        redMax[(rLo[ln] + 8) * kWPR + sWarpCol] = mxHi[ln]
                s_all[warp] = s
            for warp in range(NW):  # after the first __syncthreads
                sRowBlock, sWarpCol = warp // kWPR, warp % kWPR
                sCol0 = sWarpCol * kSW
                rLo = sRowBlock * 16 + g
                rHi = rLo + 8
                s = s_all[warp]
                mLo, mHi = rowM[rLo].copy(), rowM[rHi].copy()
                for w in range(kWPR):
                    mLo = np.maximum(mLo, redMax[rLo * kWPR + w])
                    mHi = np.maximum(mHi, redMax[rHi * kWPR + w])
                sumLo, sumHi = np.zeros(32, np.float32), np.zeros(32, np.float32)
                for nt in range(kNT):
                    pLo = np.exp(s[nt, :, 0:2] - mLo[:, None]).astype(np.float16)
                    pHi = np.exp(s[nt, :, 2:4] - mHi[:, None]).astype(np.float16)
                    col = sCol0 + nt * 8 + 2 * t
                    for ln in range(32):
                        Ps[rLo[ln] * kVld + col[ln]:rLo[ln] * kVld + col[ln] + 2] = pLo[ln]
                        Ps[rHi[ln] * kVld + col[ln]:rHi[ln] * kVld + col[ln] + 2] = pHi[ln]
                    sumLo += pLo.astype(np.float32).sum(axis=1)
                    sumHi += pHi.astype(np.float32).sum(axis=1)
                sumLo = quad_reduce(sumLo, np.add)
                sumHi = quad_reduce(sumHi, np.add)
                for ln in range(32):
                    if t[ln] == 0:
                        redSum[rLo[ln] * kWPR + sWarpCol] = sumLo[ln]
                        redSum[rHi[ln] * kWPR + sWarpCol] = sumHi[ln]
            for tid in range(BQ):  # row statistics
                mOld = rowM[tid]
                mNew, tileSum = mOld, np.float32(0)
                for w in range(kWPR):
                    mNew = max(mNew, redMax[tid * kWPR + w])
                    tileSum += redSum[tid * kWPR + w]
                alpha = 0.0 if mOld == -np.inf else np.exp(mOld - mNew)
                rowL[tid] = rowL[tid] * alpha + tileSum
                rowM[tid] = mNew
                rowAlpha[tid] = alpha
            for idx in range(C * (BK // 8)):  # loadV
                c, chunk = idx // (BK // 8), idx % (BK // 8)
                Vs[c * kVld + chunk * 8:c * kVld + chunk * 8 + 8] = Vt[c, k0 + chunk * 8:k0 + chunk * 8 + 8]
            for warp in range(NW):  # PV phase
                oCh0 = warp * kCW
                for mt in range(kMT):
                    acc[warp, mt, :, :, 0:2] *= rowAlpha[mt * 16 + g][None, :, None]
                    acc[warp, mt, :, :, 2:4] *= rowAlpha[mt * 16 + g + 8][None, :, None]
                for kk in range(0, BK, 16):
                    a = [ldmatrix(Ps, (mt * 16 + (lane & 15)) * kVld + kk + (lane >> 4) * 8, 4) for mt in range(kMT)]
                    for pair in range(kNTO // 2):
                        b = ldmatrix(Vs, (oCh0 + pair * 16 + (lane & 7) + ((lane >> 4) << 3)) * kVld + kk
                                     + ((lane >> 3) & 1) * 8, 4)
                        for mt in range(kMT):
                            acc[warp, mt, 2 * pair] = mma16816(acc[warp, mt, 2 * pair], a[mt], b[:, 0:2])
                            acc[warp, mt, 2 * pair + 1] = mma16816(acc[warp, mt, 2 * pair + 1], a[mt], b[:, 2:4])
        for warp in range(NW):  # store
            oCh0 = warp * kCW
            for mt in range(kMT):
                rowLo, rowHi = mt * 16 + g, mt * 16 + g + 8
                for nt in range(kNTO):
                    c = oCh0 + nt * 8 + 2 * t
                    for ln in range(32):
                        for row, e in ((rowLo[ln], 0), (rowHi[ln], 2)):
                            if q0 + row < n:
                                out[c[ln], q0 + row] = acc[warp, mt, nt, ln, e] / rowL[row]
                                out[c[ln] + 1, q0 + row] = acc[warp, mt, nt, ln, e + 1] / rowL[row]
    return out


def _pack(phi, g, valid):
    """The compaction + packKeysKernel<.., __half, true> + zeroKeyTailKernel result."""
    n = phi.shape[1]
    keys = np.flatnonzero(valid > 0.5)
    n_pad = -(-n // 64) * 64
    K = np.zeros((n_pad, C), np.float16)
    Vt = np.zeros((C, n_pad), np.float16)
    K[:keys.size] = phi[:, keys].T
    Vt[:, :keys.size] = g[:, keys]
    return K, Vt, n_pad, keys.size


@pytest.mark.parametrize("BQ,BK,NW", [(64, 64, 16), (64, 32, 16), (32, 32, 8)], ids=["large", "medium", "small"])
def test_tensor_core_attention_index_math(BQ, BK, NW):
    rng = np.random.default_rng(BQ + BK)
    n = 150  # several query tiles, several key tiles (online-softmax rescaling), a partial last tile
    theta, phi, g = (rng.standard_normal((C, n)).astype(np.float32) * s for s in (0.08, 0.08, 1.0))
    valid = (rng.random(n) < 0.75).astype(np.float32)
    K, Vt, n_pad, nv = _pack(phi, g, valid)
    got = emulate_attention_tc(theta, K, Vt, n_pad, nv, n, BQ, BK, NW)
    keys = valid > 0.5
    logits = theta.T.astype(np.float64) @ phi[:, keys].astype(np.float64)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    want = ((p / p.sum(axis=1, keepdims=True)) @ g[:, keys].T.astype(np.float64)).T
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-2, err
