"""Output-file options shared by `restore` and `batch` (format, quality, profile, depth, size),
defined once so that both commands say the same thing."""
from __future__ import annotations

from typing import Optional

import typer

DEFAULT_DEPTH_THRESHOLD = 2  # = io.DEFAULT_DEPTH_THRESHOLD; io is not imported here (numpy, for --help)

FORMAT = typer.Option("png", "--format", help="png | jpeg | tiff. The output keeps the input's DPI and "
                      "EXIF and is tagged sRGB.")
QUALITY = typer.Option(None, "--quality", min=1, max=100, help="JPEG quality 1-100 (default 95, 4:4:4 "
                       "chroma from 90 up); PNG and TIFF are lossless.")
OUTPUT_PROFILE = typer.Option("srgb", "--output-profile", help="srgb: tag the output sRGB (the networks' "
                              "space); input: convert back to the input's ICC profile (e.g. Adobe RGB).")
KEEP_DEPTH = typer.Option(False, "--keep-depth", help="16-bit PNG/TIFF output in the input's colour space: "
                          "pixels the networks did not change (every channel within --depth-threshold "
                          "8-bit levels of what they were given) keep the input's 16-bit values.")
DEPTH_THRESHOLD = typer.Option(DEFAULT_DEPTH_THRESHOLD, "--depth-threshold", min=0, max=255,
                               help="8-bit levels within which a pixel counts as unchanged (--keep-depth).")
NETWORK_SIZE = typer.Option(False, "--network-size", help="Keep the networks' size (sides rounded to the mode's "
                            "multiple, as the original does) instead of the photo's exact size.")


def build(fmt: str, quality: Optional[int], output_profile: str, keep_depth: bool, depth_threshold: int,
          network_size: bool):
    """Validated io.WriteOptions; a usage error exits with code 2 and says why."""
    from .io import WriteOptions

    try:
        options = WriteOptions(format=fmt, quality=quality, profile=output_profile, keep_depth=keep_depth,
                               depth_threshold=depth_threshold).validate()
        if keep_depth and network_size:
            raise ValueError("--keep-depth needs the output at the input's size; drop --network-size")
    except ValueError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2)
    return options
