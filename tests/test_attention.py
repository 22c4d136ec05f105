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


def dense_original(theta, phi, g, valid):
    """The original's formulation: full softmax, times the valid-key mask, rows L1-renormalised."""
    t, p, gg, v = (torch.from_numpy(a).double() for a in (theta, phi, g, valid.astype(np.float64)))
    f = torch.softmax(t.T @ p, dim=1) * v[None, :]
    f = F.normalize(f, p=1, dim=1)
    return (f @ gg.T).T.numpy()


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


def test_patch_match_without_holes_or_keys_is_identity():
    x = np.random.default_rng(0).standard_normal((4, 8, 8)).astype(np.float32)
    assert attention.patch_match(x, np.zeros((8, 8), np.float32), 2) is x
    assert attention.patch_match(x, np.ones((8, 8), np.float32), 2) is x
