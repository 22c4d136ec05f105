"""Synthetic old-photo degradations (the recipe of Wan et al. 2020, in spirit).

Unstructured defects (blur, film grain / Gaussian noise, JPEG artefacts, fading and colour
cast, halftone dots, paper texture) and structured ones (scratches, creases, dust) are
applied to a clean RGB uint8 image. Everything is drawn from one `numpy.random.Generator`,
so a seed reproduces the same picture bit for bit; `degrade` also returns the scratch mask
(what a user would paint, 255 = defect) and the drawn parameters for the manifest.

Only numpy and OpenCV: the calibration set can be built where torch is not installed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

VERSION = 1  # bump when the same seed would draw a different picture


@dataclass(frozen=True)
class DegradationConfig:
    """Probabilities and ranges of every defect (u8 units for noise)."""

    grayscale_prob: float = 0.35
    sepia_prob: float = 0.35
    fade_prob: float = 0.8
    fade_strength: tuple[float, float] = (0.1, 0.45)
    cast_prob: float = 0.6
    cast_strength: tuple[float, float] = (0.03, 0.15)
    blur_prob: float = 0.75
    blur_sigma: tuple[float, float] = (0.4, 2.2)
    halftone_prob: float = 0.2
    halftone_period: tuple[int, int] = (3, 6)
    paper_prob: float = 0.5
    paper_strength: tuple[float, float] = (0.03, 0.12)
    grain_prob: float = 0.5
    grain_sigma: tuple[float, float] = (3.0, 14.0)
    noise_prob: float = 0.6
    noise_sigma: tuple[float, float] = (2.0, 18.0)
    scratch_prob: float = 0.75
    scratch_count: tuple[int, int] = (1, 8)
    scratch_width: tuple[int, int] = (1, 4)
    crease_prob: float = 0.35
    dust_prob: float = 0.5
    dust_count: tuple[int, int] = (5, 60)
    jpeg_prob: float = 0.6
    jpeg_quality: tuple[int, int] = (25, 85)


@dataclass
class Degraded:
    image: np.ndarray  # HxWx3 uint8
    mask: np.ndarray  # HxW uint8, 255 where a scratch/crease/dust was drawn
    params: dict = field(default_factory=dict)  # what was applied, JSON-ready


def _uniform(rng: np.random.Generator, bounds) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _integer(rng: np.random.Generator, bounds) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale: float, octaves: int = 3) -> np.ndarray:
    """Fractal value noise in [-1, 1] (sum of upsampled random grids), float32 HxW."""
    total = np.zeros((height, width), np.float32)
    weight = 0.0
    for octave in range(octaves):
        cells = max(2, int(round(max(height, width) / scale * 2 ** octave)))
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        total += cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC) * 0.5 ** octave
        weight += 0.5 ** octave
    total /= weight
    peak = float(np.abs(total).max()) or 1.0
    return total / peak


# ---- colour / tone -------------------------------------------------------------------------

def _tone(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    luma = x @ np.array([0.299, 0.587, 0.114], np.float32)
    choice = rng.random()
    if choice < cfg.grayscale_prob:
        x = np.repeat(luma[:, :, None], 3, axis=2)
        params["colour"] = "grayscale"
    elif choice < cfg.grayscale_prob + cfg.sepia_prob:
        tint = np.array([1.07, 0.94, 0.74], np.float32) * _uniform(rng, (0.9, 1.05))
        x = np.clip(luma[:, :, None] * tint, 0, 1)
        params["colour"] = "sepia"
    else:
        params["colour"] = "colour"
    if rng.random() < cfg.fade_prob:
        strength = _uniform(rng, cfg.fade_strength)
        lift = strength * _uniform(rng, (0.3, 0.8))
        x = x * (1 - strength) + lift
        params["fade"] = {"strength": round(strength, 4), "lift": round(lift, 4)}
    if rng.random() < cfg.cast_prob:
        gains = 1 + rng.uniform(-1, 1, 3).astype(np.float32) * _uniform(rng, cfg.cast_strength)
        x = x * gains
        params["cast"] = [round(float(g), 4) for g in gains]
    return np.clip(x, 0, 1)


# ---- unstructured --------------------------------------------------------------------------

def _blur(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    if rng.random() >= cfg.blur_prob:
        return x
    sigma = _uniform(rng, cfg.blur_sigma)
    if rng.random() < 0.3:  # soft focus through a lossy rescale
        h, w = x.shape[:2]
        factor = _uniform(rng, (1.5, 3.0))
        small = cv2.resize(x, (max(1, int(w / factor)), max(1, int(h / factor))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        params["rescale"] = round(factor, 4)
    params["blur_sigma"] = round(sigma, 4)
    return cv2.GaussianBlur(x, (0, 0), sigma)


def _halftone(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    if rng.random() >= cfg.halftone_prob:
        return x
    period = _integer(rng, cfg.halftone_period)
    angle = np.deg2rad(_uniform(rng, (0, 90)))
    h, w = x.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * (2 * np.pi / period)
    screen = (np.cos(u) * np.cos(v) + 1) / 2  # 0..1 dot pattern
    mix = _uniform(rng, (0.25, 0.6))
    dots = (x > screen[:, :, None]).astype(np.float32)
    params["halftone"] = {"period": period, "angle_deg": round(float(np.rad2deg(angle)), 2), "mix": round(mix, 4)}
    return x * (1 - mix) + cv2.GaussianBlur(dots, (0, 0), 0.6) * mix


def _paper(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    if rng.random() >= cfg.paper_prob:
        return x
    h, w = x.shape[:2]
    strength = _uniform(rng, cfg.paper_strength)
    blotches = smooth_noise(rng, h, w, scale=_uniform(rng, (8, 30)), octaves=4)
    fibres = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 0.7)
    fibres = cv2.blur(fibres, (9, 1)) if rng.random() < 0.5 else cv2.blur(fibres, (1, 9))
    texture = 1 + strength * (blotches + 0.5 * fibres / (np.abs(fibres).max() or 1.0))
    stain = np.array([1.0, 0.97, 0.88], np.float32) if rng.random() < 0.5 else np.ones(3, np.float32)
    params["paper"] = {"strength": round(strength, 4), "stained": bool(stain[2] < 1)}
    return x * texture[:, :, None] * stain


def _noise(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    h, w = x.shape[:2]
    if rng.random() < cfg.grain_prob:  # film grain: clumped, stronger in the mid-tones
        sigma = _uniform(rng, cfg.grain_sigma) / 255
        grain = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), _uniform(rng, (0.5, 1.2)))
        grain /= grain.std() or 1.0
        luma = x.mean(axis=2, keepdims=True)
        x = x + sigma * grain[:, :, None] * (0.4 + 2.4 * luma * (1 - luma))
        params["grain_sigma"] = round(sigma * 255, 3)
    if rng.random() < cfg.noise_prob:
        sigma = _uniform(rng, cfg.noise_sigma) / 255
        mono = rng.random() < 0.5
        shape = (h, w, 1) if mono else (h, w, 3)
        x = x + sigma * rng.standard_normal(shape).astype(np.float32)
        params["noise"] = {"sigma": round(sigma * 255, 3), "monochrome": bool(mono)}
    return np.clip(x, 0, 1)


def _jpeg(u8: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict) -> np.ndarray:
    if rng.random() >= cfg.jpeg_prob:
        return u8
    quality = _integer(rng, cfg.jpeg_quality)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    params["jpeg_quality"] = quality
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


# ---- structured ----------------------------------------------------------------------------

def _curve(rng: np.random.Generator, h: int, w: int, long: bool) -> np.ndarray:
    """Points of a gently bent line (quadratic Bezier) across (long) or inside the picture."""
    if long:  # edge to edge, mostly vertical like film scratches, or any direction
        if rng.random() < 0.6:
            p0 = np.array([rng.uniform(0, w), -5.0])
            p2 = np.array([p0[0] + rng.uniform(-0.3, 0.3) * w, h + 5.0])
        else:
            p0 = np.array([-5.0, rng.uniform(0, h)])
            p2 = np.array([w + 5.0, rng.uniform(0, h)])
    else:
        p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        length = rng.uniform(0.1, 0.5) * max(h, w)
        angle = rng.uniform(0, 2 * np.pi)
        p2 = p0 + length * np.array([np.cos(angle), np.sin(angle)])
    bend = rng.uniform(-0.15, 0.15) * np.linalg.norm(p2 - p0)
    normal = np.array([-(p2 - p0)[1], (p2 - p0)[0]]) / (np.linalg.norm(p2 - p0) or 1.0)
    p1 = (p0 + p2) / 2 + bend * normal
    t = np.linspace(0, 1, 64)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    points += rng.normal(0, 0.6, points.shape)  # a hand-made wobble
    return np.round(points).astype(np.int32)


def _structured(x: np.ndarray, rng: np.random.Generator, cfg: DegradationConfig, params: dict):
    h, w = x.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    overlay = np.zeros((h, w), np.float32)  # +1 bright (emulsion gone), -1 dark
    alpha = np.zeros((h, w), np.float32)
    drawn = []
    if rng.random() < cfg.scratch_prob:
        for _ in range(_integer(rng, cfg.scratch_count)):
            width = _integer(rng, cfg.scratch_width)
            bright = rng.random() < 0.8
            strength = _uniform(rng, (0.5, 1.0))
            line = np.zeros((h, w), np.uint8)
            cv2.polylines(line, [_curve(rng, h, w, long=rng.random() < 0.5)], False, 255, width, cv2.LINE_AA)
            soft = line.astype(np.float32) / 255 * strength
            overlay = np.where(soft > alpha, 1.0 if bright else -1.0, overlay)
            alpha = np.maximum(alpha, soft)
            mask = np.maximum(mask, (line > 96).astype(np.uint8) * 255)
            drawn.append({"kind": "scratch", "width": width, "bright": bool(bright), "strength": round(strength, 3)})
    if rng.random() < cfg.crease_prob:  # a fold: bright ridge with a dark shadow beside it
        points = _curve(rng, h, w, long=True)
        width = _integer(rng, (2, 6))
        ridge = np.zeros((h, w), np.uint8)
        cv2.polylines(ridge, [points], False, 255, width, cv2.LINE_AA)
        shadow = np.zeros((h, w), np.uint8)
        cv2.polylines(shadow, [points + np.array([width, width // 2 + 1])], False, 255, width + 2, cv2.LINE_AA)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 1.5).astype(np.float32) / 255 * 0.5
        x = x * (1 - shadow[:, :, None])
        soft = cv2.GaussianBlur(ridge, (0, 0), 0.8).astype(np.float32) / 255 * 0.9
        overlay = np.where(soft > alpha, 1.0, overlay)
        alpha = np.maximum(alpha, soft)
        mask = np.maximum(mask, (ridge > 96).astype(np.uint8) * 255)
        drawn.append({"kind": "crease", "width": width})
    if rng.random() < cfg.dust_prob:
        count = _integer(rng, cfg.dust_count)
        for _ in range(count):
            centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            radius = int(rng.integers(1, 4))
            spot = np.zeros((h, w), np.uint8)
            cv2.circle(spot, centre, radius, 255, -1, cv2.LINE_AA)
            soft = spot.astype(np.float32) / 255 * _uniform(rng, (0.5, 1.0))
            overlay = np.where(soft > alpha, 1.0 if rng.random() < 0.7 else -1.0, overlay)
            alpha = np.maximum(alpha, soft)
            mask = np.maximum(mask, (spot > 96).astype(np.uint8) * 255)
        drawn.append({"kind": "dust", "count": count})
    if drawn:
        tone = np.where(overlay > 0, _uniform(rng, (0.85, 1.0)), _uniform(rng, (0.0, 0.15))).astype(np.float32)
        x = x * (1 - alpha[:, :, None]) + tone[:, :, None] * alpha[:, :, None]
    params["defects"] = drawn
    return np.clip(x, 0, 1), mask


def degrade(image: np.ndarray, rng: np.random.Generator, config: DegradationConfig | None = None) -> Degraded:
    """Old-photo look for one clean HxWx3 uint8 image; deterministic given the generator state."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 image, got {image.dtype} {image.shape}")
    cfg = config or DegradationConfig()
    params: dict = {}
    x = image.astype(np.float32) / 255
    x = _tone(x, rng, cfg, params)
    x = _blur(x, rng, cfg, params)
    x = _halftone(x, rng, cfg, params)
    x = _paper(x, rng, cfg, params)
    x, mask = _structured(x, rng, cfg, params)
    x = _noise(x, rng, cfg, params)
    u8 = np.clip(np.floor(x * 255 + 0.5), 0, 255).astype(np.uint8)
    u8 = _jpeg(u8, rng, cfg, params)
    return Degraded(u8, mask, params)


def config_dict(config: DegradationConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
