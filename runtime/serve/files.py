"""What the service keeps of an upload's file for the answer (DPI, EXIF, ICC profile), the
upload's colours converted to sRGB for the networks, and the answer encoded as PNG, JPEG or
TIFF (`format=`, `quality=`). Kept apart from decode.py, which guards the decoding itself."""
from __future__ import annotations

import io

import numpy as np

MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "TIFF": "image/tiff"}


def upload_info(data: bytes):
    """io.PhotoInfo from the header of an upload that decode_image has accepted."""
    from PIL import Image

    from ..io import ORIENTATION, READ_FORMATS, PhotoInfo, _dpi, _exif

    with Image.open(io.BytesIO(data), formats=READ_FORMATS) as image:
        orientation = image.getexif().get(ORIENTATION)
        return PhotoInfo(format=image.format, dpi=_dpi(image, orientation in (5, 6, 7, 8)),
                         icc_profile=image.info.get("icc_profile") or None, exif=_exif(image, orientation is not None))


def to_srgb(image_u8: np.ndarray, info) -> np.ndarray:
    """The decoded upload in sRGB when its profile says another RGB or gray space."""
    from PIL import Image

    from .. import colour
    from ..io import ImageError, _manage_colour

    if not info.icc_profile:
        return image_u8
    gray = colour.profile_mode(info.icc_profile) == "L" and bool(
        np.array_equal(image_u8[:, :, 0], image_u8[:, :, 1]) and np.array_equal(image_u8[:, :, 1], image_u8[:, :, 2]))
    base = Image.fromarray(np.ascontiguousarray(image_u8[:, :, 0]), "L") if gray else Image.fromarray(image_u8)
    try:
        converted = _manage_colour(base, info, "upload")
    except ImageError:
        info.icc_profile, info.converted = None, False  # an unusable profile: the pixels as they are
        return image_u8
    return np.asarray(converted.convert("RGB")) if info.converted else image_u8


def prepare_upload(data: bytes, image_u8: np.ndarray):
    """(PhotoInfo, sRGB pixels) for a decoded upload."""
    info = upload_info(data)
    return info, to_srgb(image_u8, info)


def encode_result(image_u8: np.ndarray, info, fmt: str = "png", quality: int | None = None) -> tuple[bytes, str, str]:
    """(bytes, media type, file suffix) of the answer: the upload's DPI and EXIF, tagged sRGB.
    Raises ValueError for a format other than png, jpeg, tiff or a quality outside 1-100."""
    from ..io import WRITE_FORMATS, WriteOptions, encode_image

    options = WriteOptions(format=fmt, quality=quality, png_level=3).validate()
    name = WRITE_FORMATS[fmt.lower()]
    if name not in MEDIA_TYPES:
        raise ValueError(f"format must be png, jpeg or tiff, not {fmt!r}")
    return encode_image(image_u8, info, options), MEDIA_TYPES[name], options.suffix
