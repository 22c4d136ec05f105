"""The web page in a real headless Chromium (Playwright driving Debian's /usr/bin/chromium):
drop a photo, choose scratch mode, restore with the real exported models, move the
before/after slider, download; screenshots are checked pixel by pixel."""
from __future__ import annotations

import base64
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra (fastapi, uvicorn) is not installed")
pytest.importorskip("playwright", reason="playwright (PyPI) is not installed")
from PIL import Image  # noqa: E402

CHROMIUM = os.environ.get("TRT_RESTORE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).is_file():
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)

from serve_support import running_service, serve_models  # noqa: E402,F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def service(serve_models):
    """The real app (scratch mode only, real models) under uvicorn on loopback."""
    from trt_restore.serve.app import ServeConfig
    from trt_restore.serve.engine import EngineConfig

    config = ServeConfig(engine=EngineConfig(models=serve_models, backend="ort", modes=("scratch",),
                                             threads=2), grace=5)
    with running_service(config) as (url, _):
        yield url


def screenshot(target) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(target.screenshot())).convert("RGB")).astype(np.float32)


def test_page_restores_compares_and_downloads(service, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    source = Image.open(REPO / "tests" / "data" / "old_w_scratch_b.png").convert("RGB")
    source = source.resize((160, 128))
    photo = tmp_path / "grandma.png"
    source.save(photo)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 800}, accept_downloads=True)
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.goto(service)
            expect(page.locator("#service-status")).to_have_text("ready", timeout=30_000)
            empty = screenshot(page)
            page.screenshot(path=str(tmp_path / "1-empty.png"))
            expect(page.locator("#restore-button")).to_be_disabled()
            expect(page.locator("#opt-faces")).to_be_disabled()  # no face models in this service
            expect(page.locator("#opt-hr")).to_be_disabled()  # hr mode not loaded

            # drag and drop the photo onto the drop zone (a real DataTransfer with a File)
            payload = base64.b64encode(photo.read_bytes()).decode()
            page.evaluate("""([data, name]) => {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], name, { type: "image/png" }));
                const zone = document.getElementById("drop-zone");
                zone.dispatchEvent(new DragEvent("dragenter", { dataTransfer: transfer, bubbles: true }));
                zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
            }""", [payload, photo.name])
            expect(page.locator("#file-name")).to_have_text("grandma.png")
            page.check("#opt-scratch")
            page.click("#restore-button")
            expect(page.locator("#result-panel")).to_be_visible(timeout=90_000)
            expect(page.locator("#result-panel")).to_have_attribute("data-loaded", "true", timeout=10_000)
            expect(page.locator("#progress-text")).to_contain_text("Done")
            assert page.evaluate("document.getElementById('after-image').naturalWidth") == 160
            timings = page.locator("#timings").text_content()
            assert "detection" in timings and "queue wait" in timings
            page.screenshot(path=str(tmp_path / "2-result.png"))
            done = screenshot(page)

            compare = page.locator("#compare")
            page.locator("#compare-slider").fill("0")  # all "after"
            expect(page.locator("#after-image")).to_have_css("clip-path", "inset(0px 0px 0px 0%)")
            after = screenshot(compare)
            compare.screenshot(path=str(tmp_path / "3-after.png"))
            page.locator("#compare-slider").fill("100")  # all "before"
            before = screenshot(compare)
            compare.screenshot(path=str(tmp_path / "4-before.png"))
            page.locator("#compare-slider").fill("50")
            half = screenshot(compare)
            compare.screenshot(path=str(tmp_path / "5-half.png"))

            with page.expect_download() as download_info:
                page.click("#download-link")
            download = download_info.value
            assert download.suggested_filename == "grandma_restored.png"
            saved = tmp_path / "downloaded.png"
            download.save_as(saved)
            assert Image.open(saved).size == (160, 128)
            assert errors == [], errors
        finally:
            browser.close()

    # the page changed where the result appeared, and the result region is a picture
    assert np.abs(done - empty).mean() > 5
    assert after.std() > 3 and before.std() > 3
    # the slider moves the split: full "after" differs from full "before" ...
    assert np.abs(after - before).mean() > 5
    # ... and at 50 % the left part is the original, the right part the restoration
    # (the divider line in the middle and the corner labels are left out)
    h, w = half.shape[:2]
    band = slice(int(0.25 * h), int(0.9 * h))
    left, right = slice(int(0.05 * w), int(0.45 * w)), slice(int(0.55 * w), int(0.95 * w))
    assert np.abs(half[band, left] - before[band, left]).mean() < 1.0
    assert np.abs(half[band, right] - after[band, right]).mean() < 1.0
    assert np.abs(half[band, left] - after[band, left]).mean() > 5
