"""Partial nonlocal block of the scratch mapping: holes attend to the valid positions.

Semantics (DESIGN.md): f = theta^T phi over all latent positions, softmax over ALL keys,
multiplied by the valid-key mask, rows L1-renormalised with eps 1e-12 (F.normalize), y = f g,
then W and three residual blocks over *all* positions (InstanceNorm statistics are global),
and only hole positions take the result. The renormalisation is not a restricted softmax: a
row whose valid keys hold less than 1e-12 of the full softmax is attenuated (to 0 on
underflow), so it is computed here exactly as the original does, a chunk of rows at a time.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResidualBlock

QUERY_CHUNK = 4096  # bounds the logits buffer to QUERY_CHUNK x N floats


def valid_positions(mask: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """1 where a latent position is untouched by the scratch mask, else 0; (B,1,h,w).

    A position is valid when the bilinear-resized mask is exactly 0 there *and* the
    legacy-nearest-resized complement is 1 (both terms of the original)."""
    blurred = F.interpolate(mask, size=(height, width), mode="bilinear", align_corners=False)
    untouched = (blurred <= 0).to(mask.dtype)
    nearest = F.interpolate(1.0 - mask, size=(height, width), mode="nearest")
    return untouched * nearest


def masked_attention(queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                     key_valid: torch.Tensor, chunk: int = QUERY_CHUNK) -> torch.Tensor:
    """normalize_L1(softmax(q.k over all keys) * valid, eps=1e-12) @ values, as the original
    (no scaling); rows with no valid key give 0. Rows go in chunks of `chunk` queries, so the
    logits buffer is chunk x N instead of the original's N x N.

    queries (N, C), keys (C, N), values (N, C), key_valid (N,) bool -> (N, C)."""
    weight = key_valid.to(queries.dtype)[None, :]
    rows = []
    for start in range(0, queries.shape[0], chunk):
        p = torch.softmax(queries[start:start + chunk] @ keys, dim=1) * weight
        rows.append(F.normalize(p, p=1.0, dim=1, eps=1e-12) @ values)
    return torch.cat(rows, dim=0)


class PartialNonLocalBlock(nn.Module):
    """Keys `theta`, `phi`, `g`, `W` (1x1 convs) and `res_block.{0,1,2}` as in the checkpoint."""

    def __init__(self, channels: int = 512):
        super().__init__()
        self.g = nn.Conv2d(channels, channels, kernel_size=1)
        self.W = nn.Conv2d(channels, channels, kernel_size=1)
        self.theta = nn.Conv2d(channels, channels, kernel_size=1)
        self.phi = nn.Conv2d(channels, channels, kernel_size=1)
        self.res_block = nn.Sequential(*(ResidualBlock(channels) for _ in range(3)))

    def attend(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """y = normalize_L1(softmax(theta^T phi) * valid) g, per batch item, shaped like x."""
        batch, channels, height, width = x.shape
        theta = self.theta(x).flatten(2)
        phi = self.phi(x).flatten(2)
        g = self.g(x).flatten(2)
        key_valid = valid.flatten(1) > 0.5
        out = [masked_attention(theta[b].T, phi[b], g[b].T, key_valid[b]).T for b in range(batch)]
        return torch.stack(out).reshape(batch, channels, height, width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        valid = valid_positions(mask, x.shape[2], x.shape[3])
        attended = self.res_block(self.W(self.attend(x, valid)))
        return valid * x + (1.0 - valid) * attended
