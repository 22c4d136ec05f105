"""`--tile` and `--max-memory` as typed values, parsed once where they enter (command line,
service configuration, Python API) and handed on as such: a bad value is refused before the
first photo with a message about the option, never an int() failure inside a photo or a
budget silently raised to the minimum."""
from __future__ import annotations

from dataclasses import dataclass

from .tiling.plan import BASE_OVERHEAD, parse_size

MIN_TILE_ROWS = 8
MIN_WORKING_SET = 64 << 20  # the smallest working set one strip needs next to the runtime itself
TILE_KINDS = ("auto", "on", "off")


@dataclass(frozen=True)
class TilePolicy:
    """When to run strip by strip: "auto" (when the photo would not fit the budget), "on",
    "off", or "rows" (strips of `rows` image rows)."""

    kind: str
    rows: int | None = None

    @classmethod
    def parse(cls, value: "TilePolicy | str | int | None") -> "TilePolicy":
        """auto | on | off | a strip height in image rows (None and 0 mean off)."""
        if isinstance(value, TilePolicy):
            return value
        text = "off" if value is None else str(value).strip().lower()
        if text in ("none", "0"):
            text = "off"
        if text in TILE_KINDS:
            return cls(text)
        if not text.isdigit():
            raise ValueError(f"{value!r}: use auto, on, off or a strip height in image rows (e.g. 512)")
        if int(text) < MIN_TILE_ROWS:
            raise ValueError(f"{value!r}: a strip must be at least {MIN_TILE_ROWS} image rows")
        return cls("rows", int(text))

    def __str__(self) -> str:
        return str(self.rows) if self.kind == "rows" else self.kind


def min_memory() -> int:
    """The smallest budget the runtime can keep: its own overhead plus one working set."""
    return BASE_OVERHEAD + MIN_WORKING_SET


def parse_memory(value: str | int) -> int:
    """A memory budget ('4G', '1500M', '2.5G' or bytes) in bytes; ValueError below the minimum."""
    try:
        size = parse_size(value)
    except ValueError:
        raise ValueError(f"{value!r}: use a size such as 4G, 1500M or 2.5G") from None
    floor = min_memory()
    if size < floor:
        raise ValueError(f"{value!r} is below the minimum of {floor >> 20}M (the runtime itself "
                         f"takes ~{BASE_OVERHEAD >> 20}M)")
    return size
