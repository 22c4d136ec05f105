"""Masked partial-nonlocal attention in Triton: the one kernel source of the GPU path.

Exact semantics of the original: p = softmax over ALL keys, times the valid mask, each row
L1-renormalised with eps 1e-12. That equals softmax over the valid keys scaled by
min(1, S_i * 1e12), log S_i = lse_valid_i - lse_all_i, so each program runs an online
softmax (running max and sum, fp32) with the value product over the compacted valid keys,
and a log-sum-exp only (no values) over the compacted invalid keys. Memory O(N): the
compaction indices; N x N never exists.
"""
from __future__ import annotations

import triton
import triton.language as tl

LN_1E12 = 27.631021115928547  # ln(1e12): the eps of F.normalize


@triton.jit
def compact_kernel(flags, n, idx_true, idx_false, counts, BLOCK: tl.constexpr):
    """One program: stable compaction of the positions whose fp32 flag is > 0.5 / not.
    counts[0] = #true, counts[1] = #false. Deterministic (a scan, no atomics)."""
    seen = 0
    for start in range(0, n, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        inside = offs < n
        flag = (tl.load(flags + offs, mask=inside, other=0.0) > 0.5) & inside
        ones = flag.to(tl.int32)
        before = seen + tl.cumsum(ones, 0) - ones  # true flags before each position
        tl.store(idx_true + before, offs, mask=flag)
        tl.store(idx_false + (offs - before), offs, mask=inside & (flag == 0))
        seen += tl.sum(ones, 0)
    tl.store(counts, seen)
    tl.store(counts + 1, n - seen)


@triton.jit
def split_hi_lo(x):
    """fp32 -> fp16 high part and fp16 low part scaled by 2^11 (x ~ hi + lo / 2^11)."""
    hi = x.to(tl.float16)
    lo = ((x - hi.to(tl.float32)) * 2048.0).to(tl.float16)
    return hi, lo


@triton.jit
def logits_tile(theta, phi, rows, row_ok, keys, key_ok, n, C: tl.constexpr, BLOCK_M: tl.constexpr,
                BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr):
    """theta_i . phi_j for a BLOCK_M x BLOCK_N tile; theta, phi are (C, n) fp32."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    low = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for c0 in range(0, C, BLOCK_K):
        ch = c0 + tl.arange(0, BLOCK_K)
        q = tl.load(theta + ch[None, :] * n + rows[:, None], mask=row_ok[:, None], other=0.0)
        k = tl.load(phi + ch[:, None] * n + keys[None, :], mask=key_ok[None, :], other=0.0)
        if PRECISION == 0:
            acc = tl.dot(q.to(tl.float16), k.to(tl.float16), acc)
        elif PRECISION == 1:
            q_hi, q_lo = split_hi_lo(q)
            k_hi, k_lo = split_hi_lo(k)
            acc = tl.dot(q_hi, k_hi, acc)
            low = tl.dot(q_hi, k_lo, low)
            low = tl.dot(q_lo, k_hi, low)
        elif PRECISION == 2:
            acc = tl.dot(q, k, acc, input_precision="tf32x3")
        else:
            acc = tl.dot(q, k, acc, input_precision="ieee")
    return acc + low * (1.0 / 2048.0)


@triton.jit
def masked_attention_kernel(theta, phi, g, idx_valid, idx_invalid, counts, out, n,
                            C: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                            BLOCK_D: tl.constexpr, PRECISION: tl.constexpr):
    """out[:, i] for BLOCK_M queries and BLOCK_D channels; theta/phi/g/out are (C, n) fp32,
    idx_valid/idx_invalid/counts come from compact_kernel on the key-valid flags."""
    pid_m = tl.program_id(0)
    d0 = tl.program_id(1) * BLOCK_D
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    row_ok = rows < n
    chans = d0 + tl.arange(0, BLOCK_D)
    n_valid = tl.load(counts)
    n_invalid = tl.load(counts + 1)

    # online softmax + values over the valid keys
    m_v = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_v = tl.zeros((BLOCK_M,), dtype=tl.float32)
    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for j0 in range(0, n_valid, BLOCK_N):
        jj = j0 + tl.arange(0, BLOCK_N)
        key_ok = jj < n_valid
        keys = tl.load(idx_valid + jj, mask=key_ok, other=0)
        s = logits_tile(theta, phi, rows, row_ok, keys, key_ok, n, C, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION)
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_v, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_v - m_new)
        l_v = l_v * alpha + tl.sum(p, 1)
        v = tl.load(g + chans[None, :] * n + keys[:, None], mask=key_ok[:, None], other=0.0)
        if PRECISION == 3:
            pv = tl.dot(p, v, input_precision="ieee")
        elif PRECISION == 2:
            pv = tl.dot(p, v, input_precision="tf32x3")
        elif PRECISION == 1:
            p_hi, p_lo = split_hi_lo(p)
            v_hi, v_lo = split_hi_lo(v)
            pv = tl.dot(p_hi, v_hi)
            pv += (tl.dot(p_hi, v_lo) + tl.dot(p_lo, v_hi)) * (1.0 / 2048.0)
        else:
            pv = tl.dot(p.to(tl.float16), v.to(tl.float16))
        acc = acc * alpha[:, None] + pv
        m_v = m_new

    # log-sum-exp over the invalid keys: their share of the full softmax
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)
    for j0 in range(0, n_invalid, BLOCK_N):
        jj = j0 + tl.arange(0, BLOCK_N)
        key_ok = jj < n_invalid
        keys = tl.load(idx_invalid + jj, mask=key_ok, other=0)
        s = logits_tile(theta, phi, rows, row_ok, keys, key_ok, n, C, BLOCK_M, BLOCK_N, BLOCK_K, PRECISION)
        s = tl.where(key_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        l_i = l_i * tl.exp(m_i - m_new) + tl.sum(tl.exp(s - m_new[:, None]), 1)
        m_i = m_new

    # y = min(1, S * 1e12) * softmax_valid . g, log S = -softplus(lse_invalid - lse_valid)
    has_valid = l_v > 0.0
    lse_v = m_v + tl.log(tl.where(has_valid, l_v, 1.0))
    lse_i = tl.where(l_i > 0.0, m_i + tl.log(tl.where(l_i > 0.0, l_i, 1.0)), float("-inf"))  # none: -inf
    x = lse_i - lse_v
    log_s = -(tl.maximum(x, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(x))))
    scale = tl.minimum(tl.exp(log_s + 27.631021115928547), 1.0) / tl.where(has_valid, l_v, 1.0)
    scale = tl.where(has_valid, scale, 0.0)
    y = acc * scale[:, None]
    tl.store(out + chans[None, :] * n + rows[:, None], y, mask=row_ok[:, None])
