"""ICC v2 profiles built byte by byte for the tests: an Adobe RGB (1998)-like matrix/TRC
profile and a gray gamma-2.2 profile (ImageCms.createProfile only makes sRGB, LAB and XYZ)."""
from __future__ import annotations

import struct

D50 = (0.9642, 1.0, 0.8249)
# Adobe RGB (1998) primaries adapted to D50 (the PCS), columns of its RGB -> XYZ matrix
ADOBE_RGB = {"rXYZ": (0.60974, 0.31111, 0.01947), "gXYZ": (0.20528, 0.62567, 0.06087),
             "bXYZ": (0.14919, 0.06322, 0.74457)}
GAMMA_563 = 563  # u8Fixed8: 2.19921875, Adobe RGB's gamma


def _s15(value: float) -> bytes:
    return struct.pack(">i", int(round(value * 65536)))


def _xyz(values) -> bytes:
    return b"XYZ " + b"\0" * 4 + b"".join(_s15(v) for v in values)


def _curve(gamma_u8f8: int) -> bytes:
    return b"curv" + b"\0" * 4 + struct.pack(">IH", 1, gamma_u8f8) + b"\0\0"


def _desc(text: str) -> bytes:
    ascii_ = text.encode("ascii") + b"\0"
    return (b"desc" + b"\0" * 4 + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">II", 0, 0)
            + struct.pack(">HB", 0, 0) + b"\0" * 67)


def _text(text: str) -> bytes:
    return b"text" + b"\0" * 4 + text.encode("ascii") + b"\0"


def build_profile(space: bytes, description: str, tags: dict[str, bytes]) -> bytes:
    tags = {"desc": _desc(description), "cprt": _text("No copyright, test profile"), "wtpt": _xyz(D50), **tags}
    table, blobs, offset = [], [], 128 + 4 + 12 * len(tags)
    for sig, blob in tags.items():
        blob += b"\0" * (-len(blob) % 4)
        table.append(sig.encode("ascii") + struct.pack(">II", offset, len(blob)))
        blobs.append(blob)
        offset += len(blob)
    body = struct.pack(">I", len(tags)) + b"".join(table) + b"".join(blobs)
    header = (struct.pack(">I", 128 + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntr" + space
              + b"XYZ " + struct.pack(">6H", 2026, 1, 1, 0, 0, 0) + b"acsp" + b"\0" * 4 + b"\0" * 4 + b"\0" * 8
              + b"\0" * 8 + struct.pack(">I", 0) + b"".join(_s15(v) for v in D50) + b"\0" * 4 + b"\0" * 16
              + b"\0" * 28)
    assert len(header) == 128
    return header + body


def adobe_rgb_like() -> bytes:
    curve = _curve(GAMMA_563)
    return build_profile(b"RGB ", "Adobe RGB (1998)-like test profile",
                         {**{k: _xyz(v) for k, v in ADOBE_RGB.items()}, "rTRC": curve, "gTRC": curve, "bTRC": curve})


def gray_gamma_22() -> bytes:
    return build_profile(b"GRAY", "Gray gamma 2.2 test profile", {"kTRC": _curve(GAMMA_563)})
