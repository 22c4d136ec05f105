"""The shipped Triton kernels, executed on the CPU by Triton's interpreter.

These are the sources the cubins are compiled from (test_kernels_aot.py), run here against a
float64 evaluation of the original formula and the runtime's numpy patch match. Sizes are
small (N of a few hundred) so the interpreter stays fast.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["TRITON_INTERPRET"] = "1"
pytest.importorskip("torch")
triton = pytest.importorskip("triton")

from trt_restore import attention
from trt_restore.conformance.formulas import original_attention as original
from trt_restore.engines.kernels import configs, interpret

C = configs.CHANNELS


def inputs(n, valid_fraction, seed, scale=0.08):
    rng = np.random.default_rng(seed)
    theta, phi = (rng.standard_normal((C, n)).astype(np.float32) * scale for _ in range(2))
    g = rng.standard_normal((C, n)).astype(np.float32)
    return theta, phi, g, rng.random(n) < valid_fraction


def error(got, want):
    """max-abs error; NaN (never written) counts as infinite."""
    return float(np.nan_to_num(np.abs(got - want), nan=np.inf).max())


# fp16: one fp16 product per GEMM; fp16x3: ~22 bits; ieee/tf32x3 are plain fp32 under the interpreter
TOLERANCE = {"fp16": 0.05, "fp16x3": 1e-4, "tf32x3": 1e-4, "ieee": 1e-4}  # fp32 alone: 2e-5 at |logits| 126


def test_compaction_is_stable_and_counts():
    flags = np.random.default_rng(1).random(2500) < 0.3
    idx_true, idx_false, counts = interpret.compact(flags)
    nt = int(flags.sum())
    assert counts.tolist() == [nt, flags.size - nt]
    assert np.array_equal(idx_true.numpy()[:nt], np.flatnonzero(flags))
    assert np.array_equal(idx_false.numpy()[:flags.size - nt], np.flatnonzero(~flags))


@pytest.mark.parametrize("config", sorted(configs.ATTENTION_CONFIGS))
def test_every_tile_configuration(config):
    cfg = configs.ATTENTION_CONFIGS[config]
    n = 3 * cfg.block_m + 7  # not a multiple of any tile
    theta, phi, g, valid = inputs(n, 0.8, seed=n)
    got = interpret.masked_attention(theta, phi, g, valid, config=config)
    assert error(got, original(theta, phi, g, valid)) < TOLERANCE[configs.DEFAULT_PRECISION]


def test_every_shipped_attention_variant_is_executed_here():
    from trt_restore.engines.kernels import aot

    tested = {f"attention_{c}_{configs.DEFAULT_PRECISION}" for c in configs.ATTENTION_CONFIGS}
    tested |= {f"attention_{configs.MAIN_ATTENTION}_{p}" for p in configs.PRECISIONS}
    shipped = {s.name for s in aot.kernel_specs() if s.name.startswith("attention_")}
    assert shipped <= tested


@pytest.mark.parametrize("precision", sorted(configs.PRECISIONS))
def test_precision_modes_at_logits_of_130(precision):
    theta, phi, g, valid = inputs(150, 0.85, seed=7, scale=1.1)  # |logits| up to 126
    want = original(theta, phi, g, valid)
    assert 100 < np.abs(theta.T.astype(np.float64) @ phi).max() < 200
    got = interpret.masked_attention(theta, phi, g, valid, precision=precision)
    assert error(got, want) < TOLERANCE[precision]


def test_no_valid_key_gives_zero_rows_and_all_valid_is_a_plain_softmax():
    theta, phi, g, _ = inputs(200, 0.0, seed=3)
    assert np.array_equal(interpret.masked_attention(theta, phi, g, np.zeros(200, bool)), np.zeros((C, 200)))
    everything = np.ones(200, bool)
    got = interpret.masked_attention(theta, phi, g, everything)
    assert error(got, original(theta, phi, g, everything)) < 2e-3


def valid_share(theta, phi, valid):
    """S_i: the valid keys' share of the full softmax (float64)."""
    f = theta.T.astype(np.float64) @ phi.astype(np.float64)
    f -= f.max(axis=1, keepdims=True)
    p = np.exp(f)
    return (p * valid[None, :]).sum(axis=1) / p.sum(axis=1)


def test_attenuated_rows_partly_and_to_zero():
    """One invalid key leads the valid ones by 0..150 nats across the queries, so some rows are
    untouched (S > 1e-12), some scaled by S * 1e12 in (1e-4, 1), some attenuated to zero."""
    n = 130
    rng = np.random.default_rng(5)
    theta = np.zeros((C, n), np.float32)
    phi = np.zeros((C, n), np.float32)
    theta[0] = np.linspace(0.0, 5.0, n, dtype=np.float32)
    phi[0] = rng.uniform(0, 4, n).astype(np.float32)
    phi[0, 0] = 34.0
    valid = np.ones(n, bool)
    valid[[0, 64, 100]] = False
    g = rng.standard_normal((C, n)).astype(np.float32)
    share = valid_share(theta, phi, valid)
    assert (share > 1e-12).any() and ((share < 1e-12) & (share > 1e-16)).any() and (share < 1e-45).any()
    want = original(theta, phi, g, valid)
    for precision in ("ieee", configs.DEFAULT_PRECISION):
        got = interpret.masked_attention(theta, phi, g, valid, precision=precision)
        scale = np.abs(want).max(axis=0) + 1e-30  # per row (query): relative error
        assert (np.abs(got - want).max(axis=0) / scale).max() < (1e-5 if precision == "ieee" else 2e-3)
        assert np.abs(got[:, share < 1e-45]).max() < 1e-30


def test_equals_the_runtime_numpy_attention():
    """The runtime's numpy attention (what the CPU backend runs, checked against the original by
    the conformance suite), on attenuated and ordinary rows."""
    theta, phi, g, valid = inputs(150, 0.7, seed=21, scale=1.1)
    theta[:, :20] *= 3  # rows with logits far beyond +-130: some attenuated
    want = attention.masked_attention(theta, phi, g, valid)
    assert error(interpret.masked_attention(theta, phi, g, valid), want) < 1e-3 * max(1.0, np.abs(want).max())


def test_a_kernel_that_does_nothing_fails():
    """The output starts as NaN, so a no-op kernel body cannot pass the comparisons above."""

    @triton.jit
    def nothing(theta, phi, g, idx_valid, idx_invalid, counts, out, n, C: triton.language.constexpr,
                BLOCK_M: triton.language.constexpr, BLOCK_N: triton.language.constexpr,
                BLOCK_K: triton.language.constexpr, BLOCK_D: triton.language.constexpr,
                PRECISION: triton.language.constexpr):
        pass

    theta, phi, g, valid = inputs(100, 0.5, seed=11)
    got = interpret.masked_attention(theta, phi, g, valid, kernel=nothing)
    assert error(got, original(theta, phi, g, valid)) == np.inf


# ---- patch match ----------------------------------------------------------------------------
def patch_inputs(channels, height, width, size, seed, ties=False):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((channels, height, width)).astype(np.float32)
    hole = np.zeros((height, width), np.float32)
    hole[height // 4: height // 2 + size, width // 3: width // 3 + 2 * size + 1] = 1
    if ties:  # the last two patch columns repeat the first two: equal cosine, the first must win
        x[:, :, width - 2 * size:] = x[:, :, :2 * size]
    return x, hole


@pytest.mark.parametrize("channels,height,width,size,ties", [(32, 40, 48, 2, False), (16, 32, 48, 4, True),
                                                             (8, 48, 64, 8, False), (512, 16, 24, 2, True)])
def test_patch_match_equals_numpy(channels, height, width, size, ties):
    x, hole = patch_inputs(channels, height, width, size, seed=size + channels, ties=ties)
    want = attention.patch_match(x, hole, size)
    got = interpret.patch_match(x, hole, size)
    assert not np.array_equal(want, x)  # holes were filled
    assert np.array_equal(got, want)


@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_patch_match_without_holes_or_keys_returns_the_input(fill):
    x, _ = patch_inputs(8, 16, 16, 2, seed=2)
    assert np.array_equal(interpret.patch_match(x, np.full((16, 16), fill, np.float32), 2), x)


HOLES = {"random": lambda rng, shape: (rng.random(shape) > 0.4).astype(np.float32),
         "none": lambda rng, shape: np.zeros(shape, np.float32),
         "all": lambda rng, shape: np.ones(shape, np.float32)}  # no key: hole patches keep x


@pytest.mark.parametrize("height,width", [(28, 44), (21, 13), (10, 9), (6, 5)])
@pytest.mark.parametrize("size", [8, 4, 2])
def test_patch_match_off_the_patch_multiple_follows_the_fold(height, width, size):
    """Sides off the patch multiple: margins 0 after compose when there is a hole patch (the
    original's F.fold), x unchanged without one; (6, 5) at size 8 has no whole patch at all."""
    rng = np.random.default_rng(height * width + size)
    x = rng.standard_normal((8, height, width)).astype(np.float32)
    for kind, make in HOLES.items():
        hole = make(rng, (height, width))
        want = attention.patch_match(x, hole, size)
        assert np.array_equal(interpret.patch_match(x, hole, size), want), kind
        if kind != "none" and attention.hole_patches(hole, size).any():
            assert not want[:, height // size * size:].any() and not want[:, :, width // size * size:].any()
