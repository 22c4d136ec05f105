"""Colour management with LittleCMS (Pillow's ImageCms).

The networks were trained on sRGB photos, so a scan tagged Adobe RGB (or with a scanner's
own profile) is converted to sRGB before restoration; otherwise its colours would be
reinterpreted. The output is tagged sRGB, or converted back to the input's profile on request.
"""
from __future__ import annotations

import functools
import io

# colour space signature in an ICC header (bytes 16-20) -> the PIL mode it describes
SPACE_MODE = {b"RGB ": "RGB", b"GRAY": "L", b"CMYK": "CMYK"}


class ProfileError(ValueError):
    """An embedded ICC profile cannot be used."""


@functools.lru_cache(maxsize=1)
def srgb_profile_bytes() -> bytes:
    """LittleCMS's built-in sRGB profile, embedded in outputs so print software need not guess."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _profile(icc: bytes):
    from PIL import ImageCms

    try:
        return ImageCms.ImageCmsProfile(io.BytesIO(icc))
    except (OSError, ImageCms.PyCMSError, TypeError, ValueError) as err:
        raise ProfileError(f"unreadable ICC profile ({err})") from None


def profile_name(icc: bytes | None) -> str | None:
    """The profile's description ('Adobe RGB (1998)', 'sRGB IEC61966-2.1', ...)."""
    if not icc:
        return None
    from PIL import ImageCms

    try:
        return ImageCms.getProfileDescription(_profile(icc)).strip() or "unnamed profile"
    except (ProfileError, ImageCms.PyCMSError):
        return "unreadable profile"


def profile_mode(icc: bytes) -> str | None:
    """PIL mode the profile describes ('RGB', 'L', 'CMYK'), None for other spaces."""
    return SPACE_MODE.get(icc[16:20]) if len(icc) >= 128 else None


def is_srgb(icc: bytes | None) -> bool:
    """No profile or an sRGB one (by its description): nothing to convert.

    Converting sRGB to sRGB through LittleCMS is not bit-exact (±1 from rounding), so
    sRGB-tagged photos are passed through untouched."""
    return not icc or "srgb" in (profile_name(icc) or "").lower()


def _transform(image, source: bytes, target: bytes, mode: str):
    from PIL import ImageCms

    try:
        return ImageCms.profileToProfile(image, _profile(source), _profile(target), outputMode=mode,
                                         renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
                                         flags=ImageCms.Flags.BLACKPOINTCOMPENSATION)
    except ImageCms.PyCMSError as err:
        raise ProfileError(f"colour conversion failed ({err})") from None


def to_srgb(image, icc: bytes):
    """PIL image (mode matching the profile: RGB, L or CMYK) -> RGB image in sRGB."""
    return _transform(image, icc, srgb_profile_bytes(), "RGB")


def from_srgb(image, icc: bytes):
    """RGB image in sRGB -> the profile's space (RGB, or L for a gray profile)."""
    mode = profile_mode(icc)
    if mode not in ("RGB", "L"):
        raise ProfileError(f"cannot convert back to a {mode or 'non-RGB'} profile; use the sRGB output")
    return _transform(image, srgb_profile_bytes(), icc, mode)
