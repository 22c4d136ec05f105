"""Reference files: discovery, loading, and the comparison record every backend reports.

A reference root holds `vectors/*.npz` (networks) and `faces/*.npz` (alignment and paste-back),
each with a JSON `meta` naming its kind, outputs and per-output tolerances. Sizes are read from
the arrays, never from file names.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# error budgets for reduced precisions (fp32 uses each file's own tolerances): PSNR of the final
# tensor over the tanh range [-1, 1] (peak-to-peak 2) or the probability range [0, 1]
PSNR_BUDGET_DB = {"fp16": 40.0, "int8": 30.0}
FINAL_OUTPUTS = ("output", "prob")


class UnknownKind(KeyError):
    """A reference file whose kind this project does not know: a failure, never a skip."""


@dataclass
class Comparison:
    """One stored tensor of one reference file checked on one backend."""

    name: str
    max_abs: float
    tolerance: float
    fraction: float | None = None  # share of values that differ (uint8 face arrays)
    tolerance_fraction: float | None = None
    psnr_db: float | None = None  # reduced precision: judged on PSNR against its budget
    psnr_budget_db: float | None = None
    note: str = ""  # why a tensor was not compared ("not exposed by ...")
    informational: bool = False  # measured and shown, not judged (intermediates under fp16/int8)

    @property
    def compared(self) -> bool:
        return not self.note

    @property
    def ok(self) -> bool:
        if not self.compared or self.informational:
            return True
        if self.psnr_budget_db is not None:
            return self.psnr_db is not None and self.psnr_db >= self.psnr_budget_db
        if not (np.isfinite(self.max_abs) and self.max_abs <= self.tolerance):
            return False
        return self.tolerance_fraction is None or (self.fraction or 0.0) <= self.tolerance_fraction

    @property
    def status(self) -> str:
        if not self.compared:
            return "n/a"
        return "info" if self.informational else ("ok" if self.ok else "FAIL")

    def __str__(self) -> str:
        if not self.compared:
            return f"{self.name}: n/a ({self.note})"
        text = f"{self.name}: max|diff| {self.max_abs:.3g} (tolerance {self.tolerance:g})"
        if self.fraction is not None:
            text += f", differ {self.fraction:.4%}" + (f" (tol {self.tolerance_fraction:.2%})"
                                                        if self.tolerance_fraction is not None else "")
        if self.psnr_db is not None:
            text += f", PSNR {self.psnr_db:.1f} dB" + (f" (budget {self.psnr_budget_db:g} dB)"
                                                        if self.psnr_budget_db is not None else "")
        return f"{text} {self.status}"


def load_vector(path: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        arrays = {k: z[k] for k in z.files if k != "meta"}
    return meta, arrays


def discover(root: str | Path, folder: str = "vectors") -> list[Path]:
    """Every `<folder>/*.npz` under root (searched recursively, as the reference layout allows)."""
    root = Path(root)
    direct = sorted((root / folder).rglob("*.npz"))
    return direct or sorted(p for p in root.rglob(f"{folder}/*.npz"))


def tags_for(meta: dict) -> set[str]:
    """Checkpoints a vector needs (from its meta, so the synthetic release can be minimal)."""
    tags = set(meta.get("tags", []))
    if "vae_tag" in meta:
        tags.add(meta["vae_tag"])
    return tags


def psnr(got: np.ndarray, expected: np.ndarray, peak_to_peak: float) -> float:
    mse = float(np.mean((got.astype(np.float64) - expected.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak_to_peak ** 2 / mse)


def compare_tensor(name: str, got: np.ndarray | None, expected: np.ndarray, tolerance: float,
                   precision: str = "fp32") -> Comparison:
    """max-abs against the stored tolerance; under fp16/int8 the final tensor is judged on PSNR."""
    if got is None:  # a tensor the backend should have produced: a failure
        return Comparison(name, float("inf"), tolerance)
    got = np.asarray(got, dtype=np.float32)
    if got.shape != expected.shape:
        return Comparison(name, float("inf"), tolerance)
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    comparison = Comparison(name, diff, tolerance)
    if precision != "fp32":
        comparison.psnr_db = psnr(got, expected, 1.0 if name == "prob" else 2.0)
        if name in FINAL_OUTPUTS:
            comparison.psnr_budget_db = PSNR_BUDGET_DB[precision]
        else:
            comparison.informational = True  # judged on the final output only
    return comparison
