"""The onnxruntime pipeline equals the PyTorch pipeline (the original's computation).

Synthetic weights make the detector flag every pixel (README of the reference, section 3),
so scratch/HR equivalence runs with drawn masks; the detector stage is compared on its own.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from trt_restore.backends import create_backend
from trt_restore.export.checkpoints import load_network
from trt_restore.export.reference_pipeline import TorchGlobalRestorer
from trt_restore.export.reference_pipeline import detect_scratches as torch_detect
from trt_restore.global_restoration import GlobalRestorer
from trt_restore.io import read_image
from trt_restore.preprocess import resize_to_multiple
from trt_restore.scratch_detection import detect_scratches

DATA = Path(__file__).parent / "data"
PSNR_BAR = 50.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def synthetic_photo(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((max(2, height // 16), max(2, width // 16), 3)).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint((np.tanh(0.9 * smooth) + 1) * 127.5), 0, 255).astype(np.uint8)


def scratch_mask(image: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    for _ in range(3):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(mask, p0, p1, 255, int(rng.integers(2, 5)))
    return mask


CASES = [
    ("quality", "old_a.png"),
    ("quality", (75, 130)),
    ("scratch", "old_w_scratch_b.png"),
    ("scratch", (112, 90)),
    ("hr", "old_w_scratch_c.png"),
    ("hr", (128, 100)),
    ("hr", (112, 176)),  # multiples of 16, not 32: latent 28x44, margins at patch sizes 8 and 4
]


@pytest.fixture(scope="module")
def ort_backend(exported_models):
    return create_backend("ort", exported_models, threads=2)


@pytest.fixture(scope="module")
def torch_restorers(synthetic_release):
    return {}


@pytest.mark.parametrize("mode, source", CASES, ids=[f"{m}-{s if isinstance(s, str) else 'x'.join(map(str, s))}"
                                                      for m, s in CASES])
def test_ort_equals_torch(mode, source, ort_backend, torch_restorers, synthetic_release):
    image = read_image(DATA / source) if isinstance(source, str) else synthetic_photo(*source, seed=sum(source))
    mask = None if mode == "quality" else scratch_mask(image, seed=image.shape[0])
    if mode not in torch_restorers:
        torch_restorers[mode] = TorchGlobalRestorer(synthetic_release.root, mode)
    expected = torch_restorers[mode].restore(image, mask=mask)
    got = GlobalRestorer(ort_backend, mode).restore(image, mask=mask)
    value = psnr(got.restored, expected.restored)
    latent_err = float(np.abs(got.tensors["mapped"] - expected.tensors["mapped"]).max())
    print(f"{mode} {source}: {image.shape[1]}x{image.shape[0]} -> PSNR {value:.1f} dB, mapped max|diff| {latent_err:.2g}")
    assert got.restored.shape == expected.restored.shape
    if mode == "hr" and not isinstance(source, str) and source[0] % 16 == 0 and source[1] % 16 == 0:
        assert got.restored.shape[:2] == source  # HR keeps a multiple-of-16 photo's size, as the original
    if mask is not None:
        assert np.array_equal(got.mask, expected.mask) and np.array_equal(got.painted, expected.painted)
    assert value >= PSNR_BAR


@pytest.mark.parametrize("source", ["old_w_scratch_b.png", "old_w_scratch_c.png", (90, 140)])
def test_detection_stage_matches(source, ort_backend, synthetic_release):
    """Same probabilities (resize to short side 256 included) and the same mask; since every
    synthetic probability is above 0.4, masks are also compared at the median probability
    so that the threshold really splits the picture."""
    import torch.nn.functional as F

    from trt_restore.preprocess import detection_size, to_gray, to_network_input
    from trt_restore.resize import resize_nearest

    image = read_image(DATA / source) if isinstance(source, str) else synthetic_photo(*source, seed=5)
    image = resize_to_multiple(image, 16, "bicubic")
    mask, prob = detect_scratches(ort_backend, image)
    detector = load_network(synthetic_release.root, "detection")
    with torch.inference_mode():
        expected_mask = torch_detect(detector, image)
        gray = torch.from_numpy(to_network_input(to_gray(image)))
        small = F.interpolate(gray, size=detection_size(*image.shape[:2]), mode="bilinear", align_corners=False)
        expected_prob = torch.sigmoid(detector(small)).numpy()
    assert prob.shape == expected_prob.shape
    assert np.abs(prob - expected_prob).max() <= 1e-4
    assert np.array_equal(mask, expected_mask)
    split = float(np.median(expected_prob))
    ties = np.abs(expected_prob - split) <= 1e-5
    ours, theirs = prob >= split, expected_prob >= split
    assert 0.2 < theirs.mean() < 0.8
    assert np.array_equal(ours[~ties], theirs[~ties])
    full = resize_nearest(prob, *image.shape[:2])
    assert full.shape[-2:] == image.shape[:2]
