"""Per-layer ONNX graphs for the tiled executor (runtime/tiling).

Each convolution of the layer programs becomes a tiny graph that pads horizontally the way
the network does (reflect or zero) and convolves with no vertical padding: the executor feeds
full-width strips whose halo rows it assembles itself (reflected or zero rows at the frame
edge), so strip outputs are exactly the rows of the full-frame result.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..tiling.programs import Conv, all_convs

LAYER_DIR = "tiled"


def layer_file(layer: str) -> str:
    return layer.replace("/", "__") + ".onnx"


class _StripConv(nn.Module):
    def __init__(self, conv: nn.Conv2d, spec: Conv):
        super().__init__()
        self.conv = conv
        self.spec = spec

    def forward(self, x):
        p = self.spec.padding
        if self.spec.transposed:
            return self.conv(x)  # full-strip transposed conv; the executor crops rows
        if p:
            x = F.pad(x, (p, p, 0, 0), mode="reflect" if self.spec.pad == "reflect" else "constant")
        return F.conv2d(x, self.conv.weight, self.conv.bias, stride=self.spec.stride)


def _module_for(network: nn.Module, prefix: str) -> nn.Module:
    return network.get_submodule(prefix)


def export_layers(networks: dict[str, nn.Module], out_dir: Path) -> dict[str, dict]:
    """Export every program conv whose checkpoint tag is in `networks`; returns manifest entries."""
    from .onnx_export import OPSET

    target = out_dir / LAYER_DIR
    target.mkdir(parents=True, exist_ok=True)
    entries = {}
    for layer, spec in all_convs().items():
        tag, prefix = layer.split("/", 1)
        if tag not in networks:
            continue
        conv = _module_for(networks[tag], prefix)
        expected = (spec.in_channels, spec.out_channels) if spec.transposed else (spec.out_channels, spec.in_channels)
        if tuple(conv.weight.shape[:2]) != expected or conv.weight.shape[-1] != spec.kernel:
            raise ValueError(f"layer program disagrees with {layer}: weight {tuple(conv.weight.shape)}")
        module = _StripConv(conv, spec).eval()
        rows = 6 if spec.stride == 1 and not spec.transposed else 10
        example = torch.zeros(1, spec.in_channels, rows + 2 * spec.padding, 12)
        path = target / layer_file(layer)
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {2: "rows", 3: "width"}, "y": {2: "rows_out", 3: "width_out"}},
                              opset_version=OPSET, do_constant_folding=True, dynamo=False)
        entries[layer] = {"file": f"{LAYER_DIR}/{path.name}"}
    return entries
