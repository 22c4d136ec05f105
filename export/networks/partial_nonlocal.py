"""Partial nonlocal block of the scratch mapping: holes attend to the valid positions.

Semantics (DESIGN.md): f = theta^T phi over all latent positions, softmax restricted to
valid keys (the original multiplies the full softmax by the key mask and renormalises
rows, which is the same thing), y = f g, then W and three residual blocks over *all*
positions (InstanceNorm statistics are global), and only hole positions take the result.
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
    """softmax over valid keys of q.k (no scaling), applied to values; rows with no valid
    key give 0 (as the original's renormalisation 0/eps does).

    queries (N, C), keys (C, N), values (N, C), key_valid (N,) bool -> (N, C)."""
    keys = keys[:, key_valid]
    values = values[key_valid]
    if values.shape[0] == 0:
        return torch.zeros_like(queries)
    rows = []
    for start in range(0, queries.shape[0], chunk):
        logits = queries[start:start + chunk] @ keys
        rows.append(torch.softmax(logits, dim=1) @ values)
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
        """y = softmax_valid(theta^T phi) g, per batch item, shaped like x."""
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
