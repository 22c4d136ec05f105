"""A round trip through the service keeps what a print shop needs: the upload's DPI and EXIF,
its colours converted to sRGB and tagged, in the format asked for (format=png|jpeg|tiff)."""
from __future__ import annotations

import io
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
pytest.importorskip("httpx", reason="the dev extra (httpx) is not installed")
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from icc_support import adobe_rgb_like  # noqa: E402
from serve_support import IdentityRestorer  # noqa: E402
from trt_restore import colour  # noqa: E402
from trt_restore.serve.app import ServeConfig, create_app  # noqa: E402
from trt_restore.serve.engine import EngineConfig  # noqa: E402

RGB = np.random.default_rng(3).integers(60, 190, (40, 56, 3), dtype=np.uint8)




def _client():
    engine = EngineConfig(models="unused", restorer_factory=IdentityRestorer, modes=("quality",))
    return TestClient(create_app(ServeConfig(engine=engine, grace=2)))


def _upload() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "Acme Scanners"
    buffer = io.BytesIO()
    Image.fromarray(RGB).save(buffer, format="TIFF", dpi=(600, 600), icc_profile=adobe_rgb_like(), exif=exif)
    return buffer.getvalue()


def _ready(client):
    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.02)


@pytest.mark.parametrize("fmt, media", [("tiff", "image/tiff"), ("jpeg", "image/jpeg"), ("png", "image/png")])
def test_round_trip_keeps_dpi_exif_and_colours(fmt, media):
    with _client() as client:
        _ready(client)
        answer = client.post(f"/v1/restore?format={fmt}&quality=97&filename=scan.tif", content=_upload(),
                             headers={"Content-Type": "image/tiff"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == media
        suffix = {"tiff": ".tif", "jpeg": ".jpg", "png": ".png"}[fmt]
        assert f'filename="scan_restored{suffix}"' in answer.headers["content-disposition"]
    with Image.open(io.BytesIO(answer.content)) as image:
        assert tuple(round(v) for v in image.info["dpi"]) == (600, 600)
        assert "sRGB" in colour.profile_name(image.info["icc_profile"])
        assert image.getexif()[0x010F] == "Acme Scanners"
        expected = np.asarray(colour.to_srgb(Image.fromarray(RGB), adobe_rgb_like())).astype(int)
        error = np.abs(np.asarray(image.convert("RGB")).astype(int) - expected)
        assert error.max() == 0 if fmt != "jpeg" else error.mean() < 3


def test_bad_format_or_quality_is_422():
    with _client() as client:
        _ready(client)
        for query in ("format=gif", "format=jpeg&quality=0", "quality=abc"):
            answer = client.post(f"/v1/restore?{query}", content=_upload(), headers={"Content-Type": "image/tiff"})
            assert answer.status_code == 422, (query, answer.text)


def test_gray_profile_upload_is_converted():
    from icc_support import gray_gamma_22

    gray = RGB[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(gray, "L").save(buffer, format="PNG", icc_profile=gray_gamma_22())
    with _client() as client:
        _ready(client)
        answer = client.post("/v1/restore", content=buffer.getvalue(), headers={"Content-Type": "image/png"})
        assert answer.status_code == 200, answer.text
    expected = np.asarray(colour.to_srgb(Image.fromarray(gray, "L"), gray_gamma_22()))
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")), expected)
