"""The global networks written as layer programs the tiled executor interprets.

A program is a list of ops on named full-frame maps. It mirrors the modules in
export/networks (same state-dict prefixes), and the exporter writes one small ONNX graph
per `Conv` from it, so the two cannot drift apart silently: tests compare tiled and untiled
outputs.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Conv:
    layer: str  # "<tag>/<state-dict prefix>", also the per-layer graph name
    sources: tuple[str, ...]  # maps concatenated along channels
    target: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    pad: str = "zero"  # "zero" | "reflect"
    transposed: bool = False

    @property
    def padding(self) -> int:
        if self.transposed or self.stride == 2:
            return 1
        return (self.kernel - 1) // 2


@dataclass(frozen=True)
class Norm:
    """InstanceNorm (eps 1e-5, no affine) of `target`, optionally followed by ReLU."""

    target: str
    relu: bool = True


@dataclass(frozen=True)
class AddInto:
    """target := target + source (residual connection), materialised."""

    target: str
    source: str


@dataclass(frozen=True)
class Copy:
    target: str
    source: str


@dataclass(frozen=True)
class Blend:
    """target := valid * keep + (1 - valid) * other (partial nonlocal combine)."""

    target: str
    valid: str
    keep: str
    other: str


EPS = 1e-5


def _residual(tag: str, prefix: str, x: str, channels: int, scratch: str) -> list:
    t1, t2 = f"{scratch}_1", f"{scratch}_2"
    return [
        Conv(f"{tag}/{prefix}.conv_block.1", (x,), t1, channels, channels, 3, pad="reflect"), Norm(t1, True),
        Conv(f"{tag}/{prefix}.conv_block.5", (t1,), t2, channels, channels, 3, pad="reflect"), Norm(t2, False),
        AddInto(x, t2),
    ]


def _conv_norm_relu(tag, prefix, source, target, cin, cout, **kw) -> list:
    return [Conv(f"{tag}/{prefix}", (source,), target, cin, cout, **kw), Norm(target, True)]


def vae_encoder(tag: str) -> list:
    """image -> latent."""
    ops = _conv_norm_relu(tag, "encoder.1", "image", "e1", 3, 64, kernel=7, pad="reflect")
    ops += _conv_norm_relu(tag, "encoder.4", "e1", "e2", 64, 64, kernel=4, stride=2)
    ops += _conv_norm_relu(tag, "encoder.7", "e2", "latent", 64, 64, kernel=4, stride=2)
    for index in (10, 11, 12, 13):
        ops += _residual(tag, f"encoder.{index}", "latent", 64, "enc_res")
    return ops


def vae_decoder(tag: str) -> list:
    """latent -> output (before tanh; the executor applies tanh when reading `output`)."""
    ops = [Copy("d0", "latent")]
    for index in (0, 1, 2, 3):
        ops += _residual(tag, f"decoder.{index}", "d0", 64, "dec_res")
    ops += _conv_norm_relu(tag, "decoder.4", "d0", "d1", 64, 64, kernel=4, transposed=True)
    ops += _conv_norm_relu(tag, "decoder.7", "d1", "d2", 64, 64, kernel=4, transposed=True)
    ops += [Conv(f"{tag}/decoder.11", ("d2",), "output", 64, 3, 7, pad="reflect")]
    return ops


def _mapping_entry(tag: str, prefix: str, source: str, target: str) -> list:
    ops = _conv_norm_relu(tag, f"{prefix}.0", source, "m1", 64, 128, kernel=3)
    ops += _conv_norm_relu(tag, f"{prefix}.3", "m1", "m2", 128, 256, kernel=3)
    ops += _conv_norm_relu(tag, f"{prefix}.6", "m2", "m3", 256, 512, kernel=3)
    ops += _conv_norm_relu(tag, f"{prefix}.9", "m3", target, 512, 512, kernel=3)
    return ops


def _mapping_exit(tag: str, prefix: str, first: int, source: str) -> list:
    ops = _conv_norm_relu(tag, f"{prefix}.{first}", source, "x1", 512, 512, kernel=3)
    ops += _conv_norm_relu(tag, f"{prefix}.{first + 3}", "x1", "x2", 512, 256, kernel=3)
    ops += _conv_norm_relu(tag, f"{prefix}.{first + 6}", "x2", "x3", 256, 128, kernel=3)
    ops += [Conv(f"{tag}/{prefix}.{first + 9}", ("x3",), "mapped", 128, 64, 3)]
    return ops


def mapping_quality() -> list:
    tag = "mapping_quality"
    ops = _mapping_entry(tag, "model", "latent", "q")
    for index in range(12, 18):
        ops += _residual(tag, f"model.{index}", "q", 512, "map_res")
    return ops + _mapping_exit(tag, "model", 18, "q")


def mapping_scratch_head() -> list:
    """latent -> x (nonlocal input) and its projections theta, phi, g."""
    tag = "mapping_scratch"
    ops = _mapping_entry(tag, "before_NL", "latent", "x")
    for name in ("theta", "phi", "g"):
        ops.append(Conv(f"{tag}/NL.{name}", ("x",), name, 512, 512, 1))
    return ops


def mapping_scratch_tail() -> list:
    """(x, attended, valid) -> mapped."""
    tag = "mapping_scratch"
    ops = [Conv(f"{tag}/NL.W", ("attended",), "w", 512, 512, 1)]
    for index in range(3):
        ops += _residual(tag, f"NL.res_block.{index}", "w", 512, "nl_res")
    ops.append(Blend("z", "valid", "x", "w"))
    for index in range(6):
        ops += _residual(tag, f"after_NL.{index}", "z", 512, "map_res")
    return ops + _mapping_exit(tag, "after_NL", 6, "z")


def mapping_hr_head() -> list:
    """latent -> z, x (x = residual block of the first patch-attention block)."""
    tag = "mapping_Patch_Attention"
    ops = _mapping_entry(tag, "before_NL", "latent", "z")
    ops += _residual(tag, "before_NL.12", "z", 512, "map_res") + _residual(tag, "before_NL.13", "z", 512, "map_res")
    ops.append(Copy("x", "z"))
    return ops + _residual(tag, "NL_scale_1.res_block.0", "x", 512, "pa_res")


def mapping_hr_step(scale: int) -> list:
    """(z, composed, hole) of scale k -> z, x of scale k+1."""
    tag = "mapping_Patch_Attention"
    ops = [Conv(f"{tag}/NL_scale_{scale}.F_Combine", ("z", "composed", "hole"), "z_next", 1025, 512, 3)]
    for index in range(2):
        ops += _residual(tag, f"res_block_{scale}.{index}", "z_next", 512, "map_res")
    ops.append(Copy("x_next", "z_next"))
    return ops + _residual(tag, f"NL_scale_{scale + 1}.res_block.0", "x_next", 512, "pa_res")


def mapping_hr_tail() -> list:
    tag = "mapping_Patch_Attention"
    ops = [Conv(f"{tag}/NL_scale_3.F_Combine", ("z", "composed", "hole"), "f", 1025, 512, 3)]
    for index in range(2):
        ops += _residual(tag, f"after_NL.{index}", "f", 512, "map_res")
    return ops + _mapping_exit(tag, "after_NL", 2, "f")


PROGRAMS = {
    "vae_a_quality_encoder": lambda: vae_encoder("VAE_A_quality"),
    "vae_b_quality_decoder": lambda: vae_decoder("VAE_B_quality"),
    "vae_b_scratch_decoder": lambda: vae_decoder("VAE_B_scratch"),
    "mapping_quality": mapping_quality,
    "mapping_scratch_head": mapping_scratch_head,
    "mapping_scratch_tail": mapping_scratch_tail,
    "mapping_hr_head": mapping_hr_head,
    "mapping_hr_step1": lambda: mapping_hr_step(1),
    "mapping_hr_step2": lambda: mapping_hr_step(2),
    "mapping_hr_tail": mapping_hr_tail,
}


def all_convs() -> dict[str, Conv]:
    return {op.layer: op for build in PROGRAMS.values() for op in build() if isinstance(op, Conv)}
