"""Tile configurations and precision modes of the Triton kernels, shared by the interpreter
wrappers, the AOT build and the launchers. Plain Python: imports neither Triton nor torch.

Precision of the logits (theta . phi): unscaled logits reach +-130 on the scratch vectors,
so fp16 inputs lose ~0.02 in the output. FP16X3 splits each fp32 operand into an fp16 high
part and an fp16 low part scaled by 2^11 and sums three fp16 tensor-core products
(hi.hi + (hi.lo + lo.hi) / 2^11): about 22 mantissa bits, on every sm_80+ GPU, and exact
under the interpreter (so CI measures what the GPU computes). Numbers: docs/tensorrt.md.
"""
from __future__ import annotations

from dataclasses import dataclass

FP16, FP16X3, TF32X3, IEEE = 0, 1, 2, 3
PRECISIONS = {"fp16": FP16, "fp16x3": FP16X3, "tf32x3": TF32X3, "ieee": IEEE}
DEFAULT_PRECISION = "fp16x3"
CHANNELS = 512  # head dimension of the partial nonlocal block
LO_SCALE = 2048.0  # 2^11: the fp16 low part of a split operand, brought back into the normal range
ARCHES = (80, 86, 87, 89, 90)
# opt-in shared memory per block (bytes), CUDA programming guide, per compute capability
SHARED_OPTIN = {80: 166912, 86: 101376, 87: 166912, 89: 101376, 90: 232448}


@dataclass(frozen=True)
class AttentionConfig:
    """One compiled variant of the attention kernel. The grid is (ceil(N / block_m),
    CHANNELS / block_d): each program owns block_m queries and block_d output channels and
    recomputes the logits over all 512 channels (block_d < 512 trades FLOPs for registers)."""

    name: str
    block_m: int
    block_n: int
    block_k: int
    block_d: int
    num_warps: int
    num_stages: int

    def constexprs(self, precision: int) -> dict:
        return {"C": CHANNELS, "BLOCK_M": self.block_m, "BLOCK_N": self.block_n, "BLOCK_K": self.block_k,
                "BLOCK_D": self.block_d, "PRECISION": precision}


@dataclass(frozen=True)
class PatchConfig:
    """The patch-match kernels: block_m hole patches x block_n key patches per step."""

    name: str
    block_m: int
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int


# num_stages=1: software pipelining of the gathered key/value loads made every variant spill
# (255 registers + 100-600 bytes of stack on sm_87/sm_90). "main" recomputes the logits for 2
# slices of 256 output channels (254-255 registers, no stack); "narrow" for 4 slices of 128
# (215-238 registers: more room, twice the logit work); a 512-channel slice spills (264-1640
# bytes). cuobjdump -res-usage; tests/test_kernels_aot.py checks every cubin. Which is faster
# is for the GPU check to say.
ATTENTION_CONFIGS = {
    "main": AttentionConfig("main", 64, 32, 32, 256, 8, 1),
    "narrow": AttentionConfig("narrow", 64, 32, 64, 128, 8, 1),
    "small": AttentionConfig("small", 32, 32, 32, 128, 4, 1),
}
CONFIG_IDS = {"main": 1, "small": 2, "narrow": 3}  # trtr_attention_config of the C API (0 = auto = main)
MAIN_ATTENTION = "main"
# 64 x 64 tiles or two stages spill (255 registers + 0.1-1.3 KB of stack); 64 x 32 x 32 does not
PATCH_CONFIG = PatchConfig("main", 64, 32, 32, 4, 1)
COMPACT_BLOCK = 1024
FLAGS_BLOCK = 256
COMPOSE_BLOCK_K = 256
MARGIN_BLOCK = 256
HOLE_FRACTION = 0.6


def margin_elements(channels: int, height: int, width: int, size: int) -> int:
    """Elements of x (C, H, W) in the bottom/right margins no whole size x size patch covers:
    the launchers size patch_margin_kernel's grid with it and skip the launch at 0."""
    return channels * (height * width - (height // size) * size * ((width // size) * size))
