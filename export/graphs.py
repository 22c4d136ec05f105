"""What gets exported: one ONNX graph per network *segment* the runtime executes.

The two attention kinds are left out of the graphs on purpose (see docs/onnx-graphs.md):
the partial nonlocal attention and the HR patch match run in the runtime (numpy with
memory linear in N on the CPU, a CUDA plugin under TensorRT). Each mapping network is
therefore split into the segments around them; everything else is one graph per network.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

LATENT = 64
WIDTH = 512


@dataclass(frozen=True)
class GraphSpec:
    name: str  # file stem in the model directory
    tag: str  # checkpoint it comes from
    inputs: dict[str, tuple]  # name -> (channels, spatial scale relative to the image) ; batch/h/w dynamic
    outputs: tuple[str, ...]
    wrap: Callable[[nn.Module], nn.Module]
    multiple: int  # image sides must be multiples of this


class _Encoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, image):
        return self.vae.encode(image)


class _Decoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent):
        return self.vae.decode(latent)


class _ScratchHead(nn.Module):
    """latent -> nonlocal input x and its 1x1 projections theta, phi, g."""

    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping

    def forward(self, latent):
        x = self.mapping.before_NL(latent)
        block = self.mapping.NL
        return x, block.theta(x), block.phi(x), block.g(x)


class _ScratchTail(nn.Module):
    """(x, attended y, valid) -> mapped latent: W, residual blocks, hole-only combine, exit."""

    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping

    def forward(self, x, attended, valid):
        block = self.mapping.NL
        z = valid * x + (1.0 - valid) * block.res_block(block.W(attended))
        return self.mapping.after_NL(z)


class _HrHead(nn.Module):
    """latent -> z (input of the first patch-attention block) and x = its residual block."""

    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping

    def forward(self, latent):
        z = self.mapping.before_NL(latent)
        return z, self.mapping.NL_scale_1.res_block(z)


class _HrStep(nn.Module):
    """(z, composed, hole) of scale k -> z, x of scale k+1."""

    def __init__(self, mapping, scale: int):
        super().__init__()
        self.combine = getattr(mapping, f"NL_scale_{scale}").F_Combine
        self.between = getattr(mapping, f"res_block_{scale}")
        self.next_res = getattr(mapping, f"NL_scale_{scale + 1}").res_block

    def forward(self, z, composed, hole):
        z = self.between(self.combine(torch.cat((z, composed, hole), dim=1)))
        return z, self.next_res(z)


class _HrTail(nn.Module):
    def __init__(self, mapping):
        super().__init__()
        self.mapping = mapping

    def forward(self, z, composed, hole):
        fused = self.mapping.NL_scale_3.F_Combine(torch.cat((z, composed, hole), dim=1))
        return self.mapping.after_NL(fused)


class _Detection(nn.Module):
    def __init__(self, unet):
        super().__init__()
        self.unet = unet

    def forward(self, gray):
        return torch.sigmoid(self.unet(gray))


def _identity(module):
    return module


L = 0.25  # latent scale
GRAPHS: tuple[GraphSpec, ...] = (
    GraphSpec("vae_a_quality_encoder", "VAE_A_quality", {"image": (3, 1)}, ("latent",), _Encoder, 4),
    GraphSpec("vae_b_quality_decoder", "VAE_B_quality", {"latent": (LATENT, L)}, ("output",), _Decoder, 4),
    GraphSpec("vae_b_scratch_decoder", "VAE_B_scratch", {"latent": (LATENT, L)}, ("output",), _Decoder, 4),
    GraphSpec("mapping_quality", "mapping_quality", {"latent": (LATENT, L)}, ("mapped",), _identity, 4),
    GraphSpec("mapping_scratch_head", "mapping_scratch", {"latent": (LATENT, L)},
              ("x", "theta", "phi", "g"), _ScratchHead, 4),
    GraphSpec("mapping_scratch_tail", "mapping_scratch",
              {"x": (WIDTH, L), "attended": (WIDTH, L), "valid": (1, L)}, ("mapped",), _ScratchTail, 4),
    GraphSpec("mapping_hr_head", "mapping_Patch_Attention", {"latent": (LATENT, L)}, ("z", "x"), _HrHead, 16),
    GraphSpec("mapping_hr_step1", "mapping_Patch_Attention",
              {"z": (WIDTH, L), "composed": (WIDTH, L), "hole": (1, L)}, ("z_next", "x_next"),
              lambda m: _HrStep(m, 1), 16),
    GraphSpec("mapping_hr_step2", "mapping_Patch_Attention",
              {"z": (WIDTH, L), "composed": (WIDTH, L), "hole": (1, L)}, ("z_next", "x_next"),
              lambda m: _HrStep(m, 2), 16),
    GraphSpec("mapping_hr_tail", "mapping_Patch_Attention",
              {"z": (WIDTH, L), "composed": (WIDTH, L), "hole": (1, L)}, ("mapped",), _HrTail, 16),
    GraphSpec("detection", "detection", {"gray": (1, 1)}, ("prob",), _Detection, 16),
    GraphSpec("face_256", "Setting_9_epoch_100", {"face": (3, 1)}, ("output",), _identity, 256),
    GraphSpec("face_512", "FaceSR_512", {"face": (3, 1)}, ("output",), _identity, 512),
)
GRAPH_BY_NAME = {g.name: g for g in GRAPHS}


def example_inputs(spec: GraphSpec, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs at image size (height, width); binary maps for mask-like inputs."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, (channels, scale) in spec.inputs.items():
        h, w = int(height * scale), int(width * scale)
        if name in ("valid", "hole"):
            tensors[name] = (torch.rand(1, channels, h, w, generator=generator) > 0.7).float()
        elif name == "gray" or name == "image" or name == "face":
            tensors[name] = torch.rand(1, channels, h, w, generator=generator) * 2 - 1
        else:
            tensors[name] = torch.randn(1, channels, h, w, generator=generator)
    return tensors
