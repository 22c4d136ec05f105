"""The runtime's attention and resize code equals the dense formulas of the original."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trt_restore import attention
from trt_restore.export.networks.partial_nonlocal import valid_positions as torch_valid_positions
from trt_restore.export.networks.patch_attention import copy_best_patches, from_patches, to_patches
from trt_restore.resize import resize_bilinear, resize_nearest


def dense_original(theta, phi, g, valid, dtype=torch.float64):
    """The original's formulation: full softmax, times the valid-key mask, rows L1-renormalised
    with F.normalize(p=1, eps=1e-12). float64 by default; float32 is the original's own precision."""
    t, p, gg, v = (torch.from_numpy(a).to(dtype) for a in (theta, phi, g, valid.astype(np.float64)))
    f = torch.softmax(t.T @ p, dim=1) * v[None, :]
    f = F.normalize(f, p=1, dim=1, eps=1e-12)
    return (f @ gg.T).T.numpy()


def original_fp32(theta, phi, g, valid):
    return dense_original(theta, phi, g, valid, torch.float32)


def _inputs(rng, channels, positions, scale=0.3):
    return [(scale * rng.standard_normal((channels, positions))).astype(np.float32) for _ in range(3)]


@pytest.mark.parametrize("case", ["random", "no_scratch", "one_valid", "border", "none_valid"])
def test_masked_attention_matches_dense(case):
    rng = np.random.default_rng(len(case))
    h, w = 12, 17  # non-square latent
    theta, phi, g = _inputs(rng, 32, h * w)
    valid = np.ones((h, w), bool)
    if case == "random":
        valid = rng.random((h, w)) > 0.3
    elif case == "one_valid":
        valid[:] = False
        valid[5, 9] = True
    elif case == "border":
        valid[0, :] = valid[:, -1] = valid[-1, :3] = False
    elif case == "none_valid":
        valid[:] = False
    valid = valid.reshape(-1)
    expected = dense_original(theta, phi, g, valid)
    scale = max(1e-30, np.abs(expected).max())
    for key_block in (7, 64, attention.DEFAULT_KEY_BLOCK):  # many key blocks, a few, one
        got = attention.masked_attention(theta, phi, g, valid, chunk_bytes=4 * 40 * 32, key_block=key_block)
        assert np.abs(got - expected).max() / scale <= 1e-5 if case != "none_valid" else np.all(got == 0)


def test_online_softmax_survives_a_growing_maximum():
    """Large logits whose row maximum sits in the last key block: the running rescale must
    neither overflow nor lose the earlier blocks."""
    rng = np.random.default_rng(11)
    channels, positions = 16, 300
    theta, phi, g = _inputs(rng, channels, positions, scale=2.0)
    phi[:, -5:] *= 4  # the largest logits come last
    valid = rng.random(positions) > 0.2
    got = attention.masked_attention(theta, phi, g, valid, chunk_bytes=4 * 50 * 16, key_block=32)
    expected = dense_original(theta, phi, g, valid)
    assert np.isfinite(got).all()
    assert np.abs(got - expected).max() / np.abs(expected).max() <= 1e-5


# ---- the full-softmax attenuation: rows whose valid keys hold < 1e-12 of the softmax ------------
LN_EPS = float(np.log(1e-12))  # -27.63: where F.normalize's eps starts to bite


def logit_case(name: str, positions: int = 96, seed: int = 5):
    """theta, phi, g, valid whose logits theta^T phi are chosen exactly (theta = identity, C = N)
    so each case puts rows where it wants them relative to the 1e-12 threshold."""
    rng = np.random.default_rng(seed)
    n = positions
    valid = rng.random(n) > 0.25
    valid[:3] = True
    logits = rng.standard_normal((n, n))  # logits[i, j] = theta_i . phi_j
    invalid = ~valid
    count = valid.sum()
    if name == "partly":  # invalid keys dominate by 1..12 nats past the threshold
        excess = np.linspace(1.0, 12.0, n)
        logits[:, invalid] += (-LN_EPS + np.log(count) + excess)[:, None]
    elif name == "to_zero":  # valid terms underflow in float32: the original's row is exactly 0
        logits[:, invalid] = 130.0
        logits[:, valid] = rng.uniform(-130.0, -20.0, (n, count))
    elif name == "mixed_130":  # logits over the whole +-130 range, as the unscaled vectors reach
        logits = rng.uniform(-130.0, 130.0, (n, n))
    elif name == "by_scale":  # modest logits, invalid keys a little ahead: harmless at scale 1 ...
        logits[:, invalid] += 0.5
        logits *= 60.0  # ... but scaled up the valid share falls below 1e-12
    elif name == "all_valid":
        valid[:] = True
        logits *= 40.0
    elif name == "none_valid":
        valid[:] = False
    elif name == "threshold":  # rows on both sides of S = 1e-12, within a nat
        offset = np.linspace(-1.0, 1.0, n)
        logits[:, valid] = 0.0
        logits[:, invalid] = (-LN_EPS + np.log(count) - np.log(invalid.sum()) + offset)[:, None]
    theta = np.eye(n, dtype=np.float32)
    phi = logits.astype(np.float32)  # theta^T phi = phi
    g = rng.standard_normal((n, n)).astype(np.float32)
    return theta, phi, g, valid


def attenuation(theta, phi, valid):
    """min(1, S*1e12) per row, in float64 (for reporting which rows a case attenuates)."""
    f = torch.from_numpy(theta).double().T @ torch.from_numpy(phi).double()
    share = torch.softmax(f, dim=1)[:, torch.from_numpy(valid)].sum(dim=1)
    return torch.clamp(share * 1e12, max=1.0).numpy()


ATTENUATION_CASES = ["partly", "to_zero", "mixed_130", "by_scale", "all_valid", "none_valid", "threshold"]


@pytest.mark.parametrize("case", ATTENUATION_CASES)
def test_masked_attention_equals_the_originals_fp32_formula(case):
    theta, phi, g, valid = logit_case(case)
    factor = attenuation(theta, phi, valid)
    if case in ("partly", "by_scale"):
        assert ((factor > 1e-3) & (factor < 0.5)).any() and (factor < 1e-3).any(), "partly and strongly attenuated rows"
    if case == "threshold":
        assert (factor == 1).any() and (factor < 1).any(), "rows on both sides of the threshold"
    if case == "by_scale":  # the same keys at scale 1 attenuate nothing
        assert attenuation(theta, phi / np.float32(60.0), valid).min() == 1.0
    if case == "to_zero":
        assert np.all(original_fp32(theta, phi, g, valid) == 0)
    if case == "all_valid":
        assert factor.min() == 1.0
    expected = original_fp32(theta, phi, g, valid)
    budget = 1e-5 * np.abs(g).max()
    for key_block in (5, 32, attention.DEFAULT_KEY_BLOCK):
        got = attention.masked_attention(theta, phi, g, valid, chunk_bytes=4 * 17 * 96, key_block=key_block)
        assert np.abs(got - expected).max() <= budget, (case, key_block)
    assert np.abs(dense_original(theta, phi, g, valid) - expected).max() <= budget  # fp64 agrees too


def test_attention_tests_fail_without_the_attenuation(monkeypatch):
    """The cases above are not vacuous: a restricted softmax (attenuation removed) fails them."""
    monkeypatch.setattr(attention, "renormalisation_scale", lambda valid_lse, invalid_lse: np.ones_like(valid_lse))
    failing = []
    for case in ATTENUATION_CASES:
        theta, phi, g, valid = logit_case(case)
        got = attention.masked_attention(theta, phi, g, valid)
        if np.abs(got - original_fp32(theta, phi, g, valid)).max() > 1e-5 * np.abs(g).max():
            failing.append(case)
    assert set(failing) >= {"partly", "to_zero", "by_scale", "threshold"}, failing


@pytest.mark.parametrize("case", ATTENUATION_CASES)
def test_logit_floor_changes_nothing(case):
    """The -80 floor (a speed measure against subnormals) gives the same floats as no floor."""
    theta, phi, g, valid = logit_case(case, seed=9)
    floored = attention.masked_attention(theta, phi, g, valid, key_block=16)
    exact = attention.masked_attention(theta, phi, g, valid, key_block=16, logit_floor=-np.inf)
    assert np.abs(floored - exact).max() <= 1e-7 * max(1.0, np.abs(exact).max())


def test_torch_network_attention_is_the_originals_formula():
    """export's chunked PyTorch attention equals the dense original on attenuated rows."""
    from trt_restore.export.networks.partial_nonlocal import masked_attention as torch_attention

    for case in ATTENUATION_CASES:
        theta, phi, g, valid = logit_case(case, seed=3)
        got = torch_attention(torch.from_numpy(theta).T, torch.from_numpy(phi), torch.from_numpy(g).T,
                              torch.from_numpy(valid), chunk=7).T.numpy()
        assert np.abs(got - original_fp32(theta, phi, g, valid)).max() <= 1e-6 * np.abs(g).max(), case


def test_valid_positions_match_torch():
    rng = np.random.default_rng(3)
    for (H, W), (h, w) in [((96, 128), (24, 32)), ((100, 76), (25, 19)), ((64, 64), (16, 16))]:
        mask = (rng.random((1, 1, H, W)) > 0.97).astype(np.float32)
        mask[..., :3, :] = 1
        expected = torch_valid_positions(torch.from_numpy(mask), h, w).numpy()
        assert np.array_equal(attention.valid_positions(mask, h, w), expected)


@pytest.mark.parametrize("size", [(37, 53), (256, 384), (17, 9)])
def test_resizes_match_torch(size):
    rng = np.random.default_rng(size[0])
    x = rng.standard_normal((1, 1, 61, 47)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(x), size=size, mode="bilinear", align_corners=False).numpy()
    assert np.abs(resize_bilinear(x, *size) - want).max() < 1e-5
    want = F.interpolate(torch.from_numpy(x), size=size, mode="nearest").numpy()
    assert np.array_equal(resize_nearest(x, *size), want)


@pytest.mark.parametrize("patch", [8, 4, 2])
def test_patch_match_matches_torch(patch):
    rng = np.random.default_rng(patch)
    x = rng.standard_normal((16, 16, 24)).astype(np.float32)
    hole = (rng.random((16, 24)) > 0.45).astype(np.float32)
    got = attention.patch_match(x, hole, patch, chunk_bytes=4 * 3 * 16 * patch * patch)
    is_hole = F.avg_pool2d(torch.from_numpy(hole)[None, None], patch).flatten() > 0.6
    assert 0 < int(is_hole.sum()) < is_hole.numel()
    expected = from_patches(copy_best_patches(to_patches(torch.from_numpy(x)[None], patch)[0], is_hole)[None],
                            16, 16, 24, patch)[0].numpy()
    assert np.array_equal(got, expected)


def test_patch_match_without_holes_is_identity_and_without_keys_keeps_patches():
    x = np.random.default_rng(0).standard_normal((4, 8, 8)).astype(np.float32)
    assert attention.patch_match(x, np.zeros((8, 8), np.float32), 2) is x
    assert np.array_equal(attention.patch_match(x, np.ones((8, 8), np.float32), 2), x)


@pytest.mark.parametrize("shape", [(28, 44), (20, 12), (10, 9)])
@pytest.mark.parametrize("patch", [8, 4, 2])
def test_patch_match_off_multiple_matches_the_originals_fold(shape, patch):
    """Sides that are not multiples of the patch: whole patches only, margins 0 after the fold
    when the scale has hole patches (F.unfold/F.fold of the original), x itself when it has none."""
    h, w = shape
    rng = np.random.default_rng(h * w + patch)
    x = rng.standard_normal((6, h, w)).astype(np.float32)
    hole = (rng.random((h, w)) > 0.5).astype(np.float32)
    xt = torch.from_numpy(x)[None]
    unfolded = F.unfold(xt, patch, stride=patch)[0].T  # (L, C*p*p), the original's patch order
    is_hole = F.unfold(torch.from_numpy(hole)[None, None], patch, stride=patch)[0].mean(dim=0) > 0.6
    if is_hole.any():
        composed = copy_best_patches(unfolded, is_hole)
        expected = F.fold(composed.T[None], (h, w), patch, stride=patch)[0].numpy()
    else:
        expected = x
    got = attention.patch_match(x, hole, patch, chunk_bytes=4 * 3 * 6 * patch * patch)
    assert np.array_equal(got, expected)
    ours = from_patches(to_patches(xt, patch), 6, h, w, patch)[0].numpy()  # torch network's own fold
    assert np.array_equal(ours, F.fold(unfolded.T[None], (h, w), patch, stride=patch)[0].numpy())
