"""SPADE face-enhancement generator of the original release (``Face_Enhancement/models/networks``).

Configured as the pipeline runs it (``test_face.py`` via ``run.py``): ``--no_parsing_map``,
netG spade, norm_G ``spectralspadesyncbatch3x3``, ngf 64, ``num_upsampling_layers normal``, no
VAE, SPADE in every block (``injection_layer all``), eval mode. In the no-parsing-map mode
the label map is never used: the first convolution sees the degraded face resized (bilinear) to
S/32, and every SPADE layer is conditioned on the degraded face resized (bilinear) to its
activation size. So the module takes the face only.

Submodule and tensor names reproduce the official state-dict keys (``fc``, ``head_0``,
``G_middle_{0,1}``, ``up_{0..3}``, ``conv_img``; spectral-normalised convolutions store
``weight_orig``/``weight_u``/``weight_v``), so ``latest_net_G.pth`` loads unchanged.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

NGF = 64
SPADE_HIDDEN = 128  # hard-coded in the original SPADE
SPADE_KERNEL = 3  # the "3x3" of spectralspadesyncbatch3x3
LEAKY_SLOPE = 0.2
NUM_UPSAMPLINGS = 5  # "normal": the latent is S / 2**5
BATCHNORM_EPS = 1e-5  # SynchronizedBatchNorm2d default, identical to BatchNorm2d in eval mode


class SpectralNormConv2d(nn.Module):
    """Conv2d whose weight is ``weight_orig / sigma`` with ``sigma = weight_uᵀ (W weight_v)``.

    This is what ``torch.nn.utils.spectral_norm`` computes in eval mode: no power iteration,
    sigma from the stored vectors on every call. Written out (instead of the hook) so that the
    behaviour does not depend on ``module.training``, nothing is updated in place, and the graph
    exports to ONNX. State-dict keys: ``bias`` (if any), ``weight_orig``, ``weight_u``, ``weight_v``
    in this order, as the official checkpoints store them; u and v are buffers as in PyTorch.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0, bias: bool = True):
        super().__init__()
        self.padding = padding
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_channels))
        else:
            self.register_parameter("bias", None)
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight_orig, a=5 ** 0.5)
        fan_in = in_channels * kernel_size * kernel_size
        self.register_buffer("weight_u", F.normalize(torch.randn(out_channels), dim=0))
        self.register_buffer("weight_v", F.normalize(torch.randn(fan_in), dim=0))

    def normalized_weight(self) -> torch.Tensor:
        weight_matrix = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, torch.mv(weight_matrix, self.weight_v))
        return self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)


class FaceSPADE(nn.Module):
    """SPADE without parsing map: ``BN(x) * (1 + gamma(face)) + beta(face)``.

    BatchNorm without affine parameters uses the stored running statistics (eval mode). gamma and
    beta come from the degraded face, already resized to the size of ``x`` by the caller (the
    original resizes it bilinearly, align_corners=False, inside every SPADE layer).
    """

    def __init__(self, channels: int):
        super().__init__()
        padding = SPADE_KERNEL // 2
        self.param_free_norm = nn.BatchNorm2d(channels, eps=BATCHNORM_EPS, affine=False)
        self.mlp_shared = nn.Sequential(
            nn.Conv2d(3, SPADE_HIDDEN, kernel_size=SPADE_KERNEL, padding=padding),
            nn.ReLU(),
        )
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size=SPADE_KERNEL, padding=padding)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, channels, kernel_size=SPADE_KERNEL, padding=padding)

    def forward(self, x: torch.Tensor, face_at_x: torch.Tensor) -> torch.Tensor:
        features = self.mlp_shared(face_at_x)
        return self.param_free_norm(x) * (1 + self.mlp_gamma(features)) + self.mlp_beta(features)


class SPADEResBlock(nn.Module):
    """Pre-activation residual block: SPADE, LeakyReLU(0.2), spectral-norm 3x3 conv, twice.

    The shortcut is learned (SPADE + spectral-norm 1x1 conv without bias) when the channel count
    changes; the middle width is ``min(fin, fout)``.
    """

    def __init__(self, fin: int, fout: int):
        super().__init__()
        self.learned_shortcut = fin != fout
        fmiddle = min(fin, fout)
        self.conv_0 = SpectralNormConv2d(fin, fmiddle, kernel_size=3, padding=1)
        self.conv_1 = SpectralNormConv2d(fmiddle, fout, kernel_size=3, padding=1)
        if self.learned_shortcut:
            self.conv_s = SpectralNormConv2d(fin, fout, kernel_size=1, bias=False)
        self.norm_0 = FaceSPADE(fin)
        self.norm_1 = FaceSPADE(fmiddle)
        if self.learned_shortcut:
            self.norm_s = FaceSPADE(fin)

    def forward(self, x: torch.Tensor, face_at_x: torch.Tensor) -> torch.Tensor:
        shortcut = self.conv_s(self.norm_s(x, face_at_x)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, face_at_x), LEAKY_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, face_at_x), LEAKY_SLOPE))
        return shortcut + dx


def _resize_bilinear(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The original's ``F.interpolate(..., mode="bilinear")``: align_corners False, no antialias."""
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False)


class FaceEnhancementGenerator(nn.Module):
    """Degraded aligned face (B,3,S,S) in [-1,1] -> enhanced face (B,3,S,S), tanh range.

    ``crop_size`` S is 256 (``Setting_9_epoch_100``) or 512 (``FaceSR_512``); it fixes the latent
    size S/32 as the original's ``load_size`` does. Resolutions: fc and head_0 at S/32,
    G_middle_0/1 at S/16, then up_0..up_3 at S/8 ... S, each after a nearest x2 up-sampling.
    """

    def __init__(self, crop_size: int = 256):
        super().__init__()
        if crop_size % 2 ** NUM_UPSAMPLINGS:
            raise ValueError(f"crop_size must be a multiple of {2 ** NUM_UPSAMPLINGS}, got {crop_size}")
        self.crop_size = crop_size
        self.latent_size = crop_size // 2 ** NUM_UPSAMPLINGS
        nf = NGF
        self.fc = nn.Conv2d(3, 16 * nf, kernel_size=3, padding=1)
        self.head_0 = SPADEResBlock(16 * nf, 16 * nf)
        self.G_middle_0 = SPADEResBlock(16 * nf, 16 * nf)
        self.G_middle_1 = SPADEResBlock(16 * nf, 16 * nf)
        self.up_0 = SPADEResBlock(16 * nf, 8 * nf)
        self.up_1 = SPADEResBlock(8 * nf, 4 * nf)
        self.up_2 = SPADEResBlock(4 * nf, 2 * nf)
        self.up_3 = SPADEResBlock(2 * nf, 1 * nf)
        self.conv_img = nn.Conv2d(nf, 3, kernel_size=3, padding=1)

    def first_conv(self, face: torch.Tensor) -> torch.Tensor:
        """Output of ``fc`` on the face resized (bilinear) to the latent size (1024 channels)."""
        return self.fc(_resize_bilinear(face, (self.latent_size, self.latent_size)))

    @staticmethod
    def _upsample(x: torch.Tensor) -> torch.Tensor:
        """``nn.Upsample(scale_factor=2)``: nearest neighbour x2."""
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, face: torch.Tensor) -> torch.Tensor:
        def block(module: SPADEResBlock, x: torch.Tensor) -> torch.Tensor:
            # Every SPADE layer of a block sees the face resized to the block's (constant) size.
            return module(x, _resize_bilinear(face, (x.shape[-2], x.shape[-1])))

        x = self.first_conv(face)
        x = block(self.head_0, x)
        x = self._upsample(x)
        x = block(self.G_middle_0, x)
        x = block(self.G_middle_1, x)
        for up_block in (self.up_0, self.up_1, self.up_2, self.up_3):
            x = block(up_block, self._upsample(x))
        return torch.tanh(self.conv_img(F.leaky_relu(x, LEAKY_SLOPE)))
