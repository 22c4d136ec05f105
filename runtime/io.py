"""Reading photos into HxWx3 uint8 sRGB and writing results atomically, with what a print
shop relies on: DPI, ICC profile, EXIF and (on request) 16 bits per channel.

Every failure raises `ImageError` whose message names the file and says what is wrong,
so a batch can report it on one line and go on. Only PNG, JPEG, TIFF, BMP and WebP are
opened: PIL would otherwise hand an EPS file to Ghostscript.
"""
from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import colour

MAX_PIXELS = 200_000_000  # ~200 MP: bigger than any scan we expect, small enough to refuse bombs
READ_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
WRITE_FORMATS = {"png": "PNG", "jpeg": "JPEG", "jpg": "JPEG", "tiff": "TIFF", "tif": "TIFF", "webp": "WEBP"}
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "WEBP": ".webp"}
DEFAULT_QUALITY = 95
DEFAULT_DEPTH_THRESHOLD = 2  # 8-bit levels: see keep_depth below
ORIENTATION = 0x0112
# TIFF layout tags that PIL lists among a TIFF's EXIF; copying them into another file is wrong.
# Resolution is written from `dpi` instead, the ICC profile from `icc_profile`.
LAYOUT_TAGS = {254, 255, 256, 257, 258, 259, 262, 266, 273, 277, 278, 279, 280, 281, 282, 283, 284, 296, 317, 320,
               322, 323, 324, 325, 338, 339, 340, 341, 530, 531, 532, 34675}


class ImageError(ValueError):
    """An input image cannot be used."""


@dataclass
class PhotoInfo:
    """What a file carries besides its pixels, to be written back with the restoration."""

    format: str = "PNG"
    dpi: tuple[float, float] | None = None
    icc_profile: bytes | None = None  # as embedded in the input
    profile_name: str | None = None
    converted: bool = False  # pixels were converted from icc_profile to sRGB
    exif: bytes | None = None  # orientation reset to 1 (it has been applied to the pixels)
    bits: int = 8  # bits per channel of the input
    high: np.ndarray | None = None  # HxWx3 uint16, input colour space, orientation applied (keep_depth)
    network: np.ndarray | None = None  # the 8-bit sRGB pixels the networks got, when `high` is kept
    notes: list[str] = field(default_factory=list)


@dataclass
class Photo:
    path: Path
    pixels: np.ndarray  # HxWx3 uint8 sRGB: what the networks get
    info: PhotoInfo


# ---------------------------------------------------------------------------------- reading


def _alpha_mask(image):
    """Bool HxW of fully transparent pixels, or None."""
    if "A" in image.getbands():
        alpha = np.asarray(image.getchannel("A"))
    elif "transparency" in image.info:
        alpha = np.asarray(image.convert("RGBA").getchannel("A"))
    else:
        return None
    clear = alpha == 0
    return clear if clear.any() else None


ROW_BLOCK = 256  # rows scaled at a time: wide temporaries stay a few MB even for 100 MP scans


def gray_to_u8(image) -> np.ndarray | None:
    """HxW uint8 of an integer (I;16*, I) or float (F) gray PIL image, else None.

    16-bit values become rint(v * 255 / 65535) == (v + 128) // 257 (v / 257 is never a tie),
    computed in integers by row blocks: no float64 full-frame copy (a 6300x6300 16-bit scan
    took 1.1 GB that way). "I" images holding only 0..255 are 8-bit data; "F" images in 0..1
    are scaled by 255, others taken as 0..255."""
    mode = image.mode
    if mode not in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return None
    data = np.asarray(image)
    gray = np.empty(data.shape, np.uint8)
    if mode == "F":
        scale = 255.0 if float(data.max(initial=0.0)) <= 1.0 else 1.0
        for top in range(0, data.shape[0], ROW_BLOCK):
            block = data[top:top + ROW_BLOCK].astype(np.float64) * scale
            gray[top:top + ROW_BLOCK] = np.clip(np.rint(block), 0, 255)
        return gray
    eight_bit = mode == "I" and int(data.max(initial=0)) <= 255
    for top in range(0, data.shape[0], ROW_BLOCK):
        gray[top:top + ROW_BLOCK] = _block_to_u8(data[top:top + ROW_BLOCK], eight_bit)
    return gray


def _block_to_u8(block: np.ndarray, eight_bit: bool) -> np.ndarray:
    block = np.clip(block, 0, 255 if eight_bit else 65535).astype(np.uint32)
    if not eight_bit:
        block += 128
        block //= 257
    return block


def high_to_u8(high: np.ndarray) -> np.ndarray:
    """uint8 rint(v / 257) of a uint16 array, by row blocks (what the networks see of 16 bits)."""
    out = np.empty(high.shape, np.uint8)
    for top in range(0, high.shape[0], ROW_BLOCK):
        out[top:top + ROW_BLOCK] = _block_to_u8(high[top:top + ROW_BLOCK], False)
    return out


def rgb_array(base) -> np.ndarray:
    """HxWx3 uint8 (writable) of an L or RGB PIL image; gray is replicated as PIL's convert
    does, without PIL's intermediate RGB image."""
    if base.mode == "L":
        return np.repeat(np.asarray(base)[:, :, None], 3, axis=2)
    return np.array(base if base.mode == "RGB" else base.convert("RGB"), dtype=np.uint8)


def _base_u8(image):
    """8-bit PIL image in L, RGB or CMYK (the spaces an ICC profile can describe).

    Fully transparent pixels become white (their stored colour is arbitrary, often black);
    partly transparent ones keep their colour. 16-bit values are scaled by 255/65535 and
    rounded (gray_to_u8)."""
    from PIL import Image

    mode = image.mode
    gray = gray_to_u8(image)
    if gray is not None:
        return Image.fromarray(gray, "L")
    clear = _alpha_mask(image)
    target = "CMYK" if mode == "CMYK" else "L" if mode in ("1", "L", "LA", "La") else "RGB"
    base = image if mode == target else image.convert(target)
    if clear is not None:
        array = np.array(base)
        array[clear] = 255
        base = Image.fromarray(array, target)
    return base


def _to_rgb_u8(image, path=None) -> np.ndarray:
    """Flatten a PIL image to HxWx3 uint8 RGB without colour management (kept for callers
    that decode uploads themselves)."""
    return rgb_array(_base_u8(image))


def _dpi(image, swap: bool) -> tuple[float, float] | None:
    dpi = image.info.get("dpi")
    try:
        x, y = (round(float(v), 2) for v in dpi)
    except (TypeError, ValueError):
        return None
    if x <= 1 or y <= 1:  # "no unit" or nonsense: do not pretend a resolution
        return None
    return (y, x) if swap else (x, y)


def _exif(image, oriented: bool) -> bytes | None:
    """EXIF without TIFF layout tags, orientation 1 when the file had one (it is applied)."""
    exif = image.getexif()
    for tag in LAYOUT_TAGS & set(exif):
        del exif[tag]
    if oriented:
        exif[ORIENTATION] = 1
    return exif.tobytes() if len(exif) or exif.get_ifd(0x8769) else None


def _sixteen_bit(image, fmt: str) -> bool:
    if image.mode.startswith("I;16"):
        return True
    if fmt == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        return max(bits if isinstance(bits, tuple) else (bits,)) == 16
    return False


def _head(source: bytes | Path, size: int = 32) -> bytes:
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return handle.read(size)
    return source[:size]


def _png_depth(source: bytes | Path) -> int:
    head = _head(source)
    return head[24] if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 24 else 8


def _read_high(source: bytes | Path, orientation: int) -> np.ndarray | None:
    """HxWx3 uint16 straight from the file (OpenCV keeps 16 bits, PIL does not for RGB)."""
    import cv2
    from PIL import Image

    if isinstance(source, Path):
        array = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    else:
        array = cv2.imdecode(np.frombuffer(source, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.dtype != np.uint16:
        return None
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    elif array.shape[2] == 4:
        clear = array[:, :, 3] == 0
        array = array[:, :, 2::-1].copy()
        array[clear] = 65535
    elif array.shape[2] == 3:
        for top in range(0, array.shape[0], ROW_BLOCK):  # BGR -> RGB in place: no second full frame
            rows = array[top:top + ROW_BLOCK]
            rows[:] = rows[:, :, ::-1].copy()
    else:
        return None
    method = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
              5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
              8: Image.Transpose.ROTATE_90}.get(orientation)
    if method is not None:  # PIL's own transposes, on each channel as an I;16 image
        array = np.dstack([np.asarray(Image.fromarray(np.ascontiguousarray(array[:, :, c])).transpose(method))
                           for c in range(3)])
    return np.ascontiguousarray(array, dtype=np.uint16)


def decode_photo(data: bytes | Path, name: str | Path, keep_high: bool = False,
                 max_pixels: int | None = None) -> Photo:
    """Decode file bytes (or a file) to a Photo: EXIF orientation applied, converted to sRGB,
    metadata kept. `keep_high` also keeps the 16-bit values of 16-bit PNG/TIFF inputs."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    limit = MAX_PIXELS if max_pixels is None else max_pixels
    Image.MAX_IMAGE_PIXELS = max(limit, MAX_PIXELS)
    try:
        with Image.open(data if isinstance(data, Path) else io.BytesIO(data), formats=READ_FORMATS) as image:
            width, height = image.size
            if width * height > limit:
                raise ImageError(f"{name}: {width}x{height} exceeds the {limit // 1_000_000} MP limit")
            if width == 0 or height == 0:
                raise ImageError(f"{name}: zero-size image")
            fmt = image.format
            orientation = image.getexif().get(ORIENTATION)  # before load(): PIL's TIFF loader may apply it
            image.load()
            high16 = (_png_depth(data) == 16) if fmt == "PNG" else _sixteen_bit(image, fmt)
            upright = ImageOps.exif_transpose(image)
            info = PhotoInfo(format=fmt, dpi=_dpi(image, orientation in (5, 6, 7, 8)), bits=16 if high16 else 8,
                             icc_profile=image.info.get("icc_profile") or None,
                             exif=_exif(image, orientation is not None))
            base = _base_u8(upright)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file this tool reads ({', '.join(READ_FORMATS)})") from None
    except Image.DecompressionBombError as err:
        raise ImageError(f"{name}: refused, too many pixels ({err})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise ImageError(f"{name}: corrupt or truncated image ({err})") from None
    base = _manage_colour(base, info, name)
    pixels = rgb_array(base)
    del base
    if keep_high and info.bits == 16:
        info.high = _read_high(data, orientation)
        if info.high is not None and info.high.shape != pixels.shape:
            info.notes.append("16-bit data not used: its shape differs from the image")
            info.high = None
        if info.high is not None and not info.converted:  # the networks see the rounded 16-bit values
            pixels = high_to_u8(info.high)
        info.network = pixels if info.high is not None else None
    return Photo(Path(str(name)), pixels, info)


def _manage_colour(base, info: PhotoInfo, name):
    """Convert to sRGB when the embedded profile says another space."""
    icc = info.icc_profile
    if not icc:
        return base
    info.profile_name = colour.profile_name(icc)
    if colour.is_srgb(icc):
        return base
    if colour.profile_mode(icc) != base.mode:
        info.notes.append(f"ICC profile '{info.profile_name}' does not match the {base.mode} pixels; ignored")
        info.icc_profile, info.profile_name = None, None
        return base
    try:
        converted = colour.to_srgb(base, icc)
    except colour.ProfileError as err:
        raise ImageError(f"{name}: {err}") from None
    info.converted = True
    return converted


def read_photo(path: str | Path, keep_high: bool = False) -> Photo:
    """A Photo (sRGB pixels + DPI, ICC, EXIF, depth). Raises ImageError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file")
    photo = decode_photo(path, path, keep_high=keep_high)
    photo.path = path
    return photo


def read_image(path: str | Path) -> np.ndarray:
    """HxWx3 uint8 sRGB, EXIF orientation applied. Raises ImageError naming the file."""
    return read_photo(path).pixels


# ---------------------------------------------------------------------------------- writing


@dataclass(frozen=True)
class WriteOptions:
    """format: png | jpeg | tiff | webp (None: from the suffix). quality: JPEG/WebP 1-100.
    profile: "srgb" (tag sRGB) or "input" (convert back to the input's profile).
    keep_depth: 16-bit output keeping the input's 16-bit values where the networks did not
    change the pixel: every channel of the restored 8-bit pixel within `depth_threshold`
    levels of the 8-bit pixel the networks got (round(v16 / 257) without colour conversion)."""

    format: str | None = None
    quality: int | None = None
    profile: str = "srgb"
    keep_depth: bool = False
    depth_threshold: int = DEFAULT_DEPTH_THRESHOLD
    png_level: int = 6  # zlib level; the service uses 3 (~4x faster, a little larger)

    def validate(self) -> "WriteOptions":
        if self.format is not None and self.format.lower() not in WRITE_FORMATS:
            raise ValueError(f"format must be png, jpeg or tiff, not {self.format!r}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1-100, not {self.quality}")
        if self.profile not in ("srgb", "input"):
            raise ValueError(f"profile must be srgb or input, not {self.profile!r}")
        if self.keep_depth and self.format is not None and WRITE_FORMATS[self.format.lower()] not in ("PNG", "TIFF"):
            raise ValueError("16-bit output (keep-depth) needs png or tiff")
        if not 0 <= self.depth_threshold <= 255:
            raise ValueError("depth threshold must be 0-255")
        return self

    @property
    def suffix(self) -> str:
        return SUFFIX[WRITE_FORMATS[(self.format or "png").lower()]]


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _atomic(path: Path, write) -> Path:
    """Temp file in the same folder, then rename: a crash never leaves a half-written file
    where a finished one is expected."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _format_for(path: Path, options: WriteOptions) -> str:
    if options.format:
        return WRITE_FORMATS[options.format.lower()]
    return WRITE_FORMATS.get(path.suffix.lower().lstrip("."), "PNG")


def render(image_u8: np.ndarray, info: PhotoInfo | None, options: WriteOptions):
    """(pixels for the file: uint8 or uint16, ICC bytes to embed, fraction of 16-bit pixels kept)."""
    from PIL import Image

    icc = colour.srgb_profile_bytes()
    pixels = image_u8
    back = options.profile == "input" or options.keep_depth  # 16-bit values live in the input's space
    if info is not None and back and info.converted:
        try:
            pixels = np.asarray(colour.from_srgb(Image.fromarray(image_u8), info.icc_profile))
        except colour.ProfileError as err:
            raise ValueError(f"{err}") from None
        icc = info.icc_profile
    if not options.keep_depth:
        return pixels, icc, None
    if info is None or info.high is None:
        return pixels.astype(np.uint16) * 257, icc, 0.0
    from .depth import merge_depth

    high = info.high[:, :, 0] if pixels.ndim == 2 else info.high  # converted back to a gray profile
    merged, kept = merge_depth(image_u8, info.network, pixels, high, options.depth_threshold)
    return merged, icc, kept


def _encode_u8(handle, pixels, fmt, info, icc, options):
    from PIL import Image

    extra = {}
    if fmt == "JPEG":
        quality = options.quality or DEFAULT_QUALITY
        extra = {"quality": quality, "subsampling": 0 if quality >= 90 else 2, "optimize": True}
    elif fmt == "WEBP":
        extra = {"quality": options.quality or DEFAULT_QUALITY}
    elif fmt == "PNG":
        extra = {"compress_level": options.png_level}
    elif fmt == "TIFF":  # uncompressed: PIL's own writer, the only one that keeps the EXIF sub-IFD
        extra = {"compression": None}
    if info is not None:
        if info.dpi and fmt != "WEBP":
            extra["dpi"] = info.dpi
        if info.exif:
            extra["exif"] = info.exif
        extra["icc_profile"] = icc
    Image.fromarray(pixels).save(handle, format=fmt, **extra)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _encode_png16(handle, pixels, info, icc):
    """OpenCV writes the 16-bit PNG; pHYs, iCCP and eXIf are added after IHDR."""
    import struct
    import zlib

    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels if pixels.ndim == 2 else pixels[:, :, ::-1]))
    if not ok:
        raise ValueError("16-bit PNG encoding failed")
    data = encoded.tobytes()
    chunks = [_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc))]
    if info is not None and info.dpi:
        per_metre = [int(round(v / 0.0254)) for v in info.dpi]
        chunks.append(_png_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if info is not None and info.exif:
        body = info.exif[6:] if info.exif.startswith(b"Exif\x00\x00") else info.exif
        chunks.append(_png_chunk(b"eXIf", body))
    handle.write(data[:33] + b"".join(chunks) + data[33:])  # signature (8) + IHDR (25)


def _encode_tiff16(handle, pixels, info, icc):
    """tifffile writes 16-bit RGB TIFF (PIL cannot); EXIF's ASCII IFD0 tags are carried."""
    import tifffile
    from PIL import Image

    extratags = []
    if info is not None and info.exif:
        exif = Image.Exif()
        exif.load(info.exif)
        for tag in (270, 271, 272, 305, 306, 315, 33432):
            if isinstance(exif.get(tag), str):
                extratags.append((tag, "s", 0, exif[tag], True))
    dpi = info.dpi if info is not None and info.dpi else None
    buffer = io.BytesIO()  # tifffile wants a named file or a buffer, not a bare descriptor
    tifffile.imwrite(buffer, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack", compression="zlib",
                     iccprofile=icc, resolution=dpi, resolutionunit="INCH" if dpi else None, extratags=extratags,
                     metadata=None)
    handle.write(buffer.getvalue())


def encode_image(image_u8: np.ndarray, info: PhotoInfo | None = None, options: WriteOptions | None = None,
                 handle=None) -> bytes | None:
    """Encode in memory (bytes) or into `handle`. With `info` (from read_photo / decode_photo)
    the file gets the input's DPI and EXIF and an ICC tag; `options` chooses format (png
    when unset), quality, profile and depth."""
    options = (options or WriteOptions()).validate()
    fmt = WRITE_FORMATS[(options.format or "png").lower()]
    target = handle if handle is not None else io.BytesIO()
    if info is None and not options.keep_depth and options.profile == "srgb":
        _encode_u8(target, image_u8, fmt, None, None, options)
    else:
        pixels, icc, _ = render(image_u8, info, options)
        if pixels.dtype == np.uint16:
            (_encode_png16 if fmt == "PNG" else _encode_tiff16)(target, pixels, info, icc)
        else:
            _encode_u8(target, pixels, fmt, info, icc, options)
    return target.getvalue() if handle is None else None


def write_image(path: str | Path, image_u8: np.ndarray, info: PhotoInfo | None = None,
                options: WriteOptions | None = None) -> Path:
    """Write atomically (see encode_image); the format is options.format, else the suffix's."""
    from dataclasses import replace

    path = Path(path)
    options = replace((options or WriteOptions()).validate(), format=_format_for(path, options or WriteOptions()))
    if options.keep_depth and options.format not in ("PNG", "TIFF"):
        raise ValueError(f"{path}: 16-bit output (keep-depth) needs png or tiff")
    return _atomic(path, lambda handle: encode_image(image_u8, info, options, handle))
