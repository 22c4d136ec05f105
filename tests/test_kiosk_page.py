"""The kiosk page on a 1080p touch screen, in Debian's headless Chromium: an Adobe-RGB scan
(16-bit TIFF, and a tagged PNG) goes through the page, and the before/after view shows the
same colours on both sides — the colours Chromium itself shows for the tagged original —
with touch targets large enough for a finger.

The restorer is an identity (what comes back is what the service made of the upload), so any
colour difference between the two sides is the pipeline's. TRT_RESTORE_SCREENSHOTS=DIR keeps
the screenshots."""
from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn) is not installed")
pytest.importorskip("playwright", reason="playwright (PyPI) is not installed")
from PIL import Image  # noqa: E402

CHROMIUM = os.environ.get("TRT_RESTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)

from icc_support import adobe_rgb_like  # noqa: E402
from serve_support import IdentityRestorer, running_service  # noqa: E402
from trt_restore import colour  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
         "--force-color-profile=srgb"]
PATCHES = [(200, 60, 50), (60, 150, 70), (50, 80, 170), (190, 170, 120)]  # Adobe RGB values
MIN_TARGET = 44  # px: the usual minimum for a fingertip




def _scan() -> np.ndarray:
    """Four uniform quadrants, 240x320."""
    image = np.zeros((240, 320, 3), np.uint8)
    for k, value in enumerate(PATCHES):
        image[(k // 2) * 120:(k // 2 + 1) * 120, (k % 2) * 160:(k % 2 + 1) * 160] = value
    return image


@pytest.fixture(scope="module")
def service():
    from trt_restore.serve.app import ServeConfig
    from trt_restore.serve.engine import EngineConfig

    config = ServeConfig(engine=EngineConfig(models="unused", restorer_factory=IdentityRestorer, modes=("quality",)), grace=2)
    with running_service(config) as (url, _):
        yield url


def _quadrant_colours(shot: np.ndarray) -> np.ndarray:
    """Median colour of the middle of each quadrant of a screenshot of the picture."""
    h, w = shot.shape[:2]
    out = []
    for k in range(4):
        y, x = (k // 2) * h // 2 + h // 4, (k % 2) * w // 2 + w // 4
        out.append(np.median(shot[y - h // 10:y + h // 10, x - w // 10:x + w // 10].reshape(-1, 3), axis=0))
    return np.array(out)


def _write(tmp_path: Path, kind: str) -> Path:
    scan = _scan()
    if kind == "tiff16":
        path = tmp_path / "scan.tif"
        tifffile.imwrite(path, scan.astype(np.uint16) * 257, photometric="rgb", resolution=(600, 600),
                         resolutionunit="INCH", iccprofile=adobe_rgb_like(), metadata=None)
    else:
        path = tmp_path / "scan.png"
        Image.fromarray(scan).save(path, icc_profile=adobe_rgb_like(), dpi=(600, 600))
    return path


@pytest.mark.parametrize("kind", ["tiff16", "png"])
def test_before_after_colours_on_a_1080p_touch_screen(service, tmp_path, kind):
    from playwright.sync_api import expect, sync_playwright

    keep = os.environ.get("TRT_RESTORE_SCREENSHOTS")
    path = _write(tmp_path, kind)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1920, "height": 1080}, has_touch=True, device_scale_factor=1)
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(service)
            expect(page.locator("#service-status")).to_have_text("ready", timeout=30_000)
            sizes = {name: page.locator(name).bounding_box() for name in
                     ("#drop-zone", "#restore-button", "label:has(#opt-scratch)", "label:has(#opt-hr)")}
            if keep:
                page.screenshot(path=f"{keep}/kiosk-1080p-empty.png")
            page.set_input_files("#file-input", str(path))
            page.tap("#restore-button")
            expect(page.locator("#result-panel")).to_have_attribute("data-loaded", "true", timeout=60_000)
            sizes["#download-link"] = page.locator("#download-link").bounding_box()
            sizes["#again-button"] = page.locator("#again-button").bounding_box()
            if keep:
                page.screenshot(path=f"{keep}/kiosk-1080p-result-{kind}.png")
            slider = page.locator("#compare-slider")
            slider.fill("100")  # all "before"
            before = np.asarray(Image.open(io.BytesIO(page.locator("#before-image").screenshot())).convert("RGB"))
            slider.fill("0")  # all "after"
            after = np.asarray(Image.open(io.BytesIO(page.locator("#after-image").screenshot())).convert("RGB"))
            assert errors == [], errors
        finally:
            browser.close()
    expected = np.asarray(colour.to_srgb(Image.fromarray(_scan()), adobe_rgb_like())).reshape(-1, 3)
    expected = _quadrant_colours(np.asarray(expected.reshape(240, 320, 3)))
    shown_before, shown_after = _quadrant_colours(before), _quadrant_colours(after)
    print(f"{kind}: Adobe {PATCHES} -> expected sRGB {expected.tolist()}, before {shown_before.tolist()}, "
          f"download link at y={sizes['#download-link']['y']:.0f}, "
          f"after {shown_after.tolist()}; targets {({k: round(v['height']) for k, v in sizes.items()})}")
    assert np.abs(shown_after - expected).max() <= 2  # the answer is the converted scan, shown as sRGB
    assert np.abs(shown_before - shown_after).max() <= 3  # both sides look the same
    assert np.abs(shown_after - np.array(PATCHES)).max() > 10  # and not the raw Adobe numbers
    SIZES.update({name: box["height"] for name, box in sizes.items()})
    for name in ("#download-link", "#again-button"):  # the result's actions are on the screen, no scrolling
        assert sizes[name]["y"] + sizes[name]["height"] <= 1080, (name, sizes[name])


SIZES: dict[str, float] = {}  # heights of the touch targets, measured by the test above


def test_touch_targets_are_finger_sized():
    if not SIZES:
        pytest.skip("needs the 1080p page test to have run")
    small = {name: round(height) for name, height in SIZES.items() if height < MIN_TARGET}
    assert not small, small
