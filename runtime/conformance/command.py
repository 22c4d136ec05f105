"""`trt-restore conformance`: one command that checks an install against a reference root.

It writes the synthetic weights of the reference's weight rule (the vectors were made with
them: this checks the implementation and the backend, not the weights), exports the graphs the
vectors need (cached in the work folder), runs every `vectors/*.npz` on each chosen backend and
every `faces/*.npz` once, and prints max-abs error against tolerance per tensor.
Exit 0: all within tolerance; 1: something is not (or a kind is unknown); 2: usage error.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.base import BackendUnavailable
from .faces import FACE_KINDS, check_face_file
from .segments import NETWORK_KINDS, TILED_KINDS, graphs_for, run_vector
from .vectors import Comparison, discover, load_vector, tags_for

BACKENDS = ("pytorch", "ort", "ort-tiled", "trt")
DEFAULT_TILE_ROWS = 6  # strips smaller than any reference latent (16-32 rows): several per map


class UsageError(Exception):
    """A wrong argument or an environment that cannot run what was asked: exit 2."""


@dataclass
class Row:
    file: str
    kind: str
    backend: str
    comparison: Comparison


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it did not run
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def failed(self) -> list[Row]:
        return [r for r in self.rows if not r.comparison.ok]

    def to_json(self) -> dict:
        def number(x):
            return None if x is None or x != x or x in (float("inf"), float("-inf")) else x

        return {"rows": [{"file": r.file, "kind": r.kind, "backend": r.backend, "tensor": r.comparison.name,
                          "max_abs": number(r.comparison.max_abs), "tolerance": r.comparison.tolerance,
                          "differ_fraction": r.comparison.fraction, "psnr_db": number(r.comparison.psnr_db),
                          "status": r.comparison.status, "note": r.comparison.note} for r in self.rows],
                "skipped": self.skipped, "seconds": self.seconds, "failed": len(self.failed)}


def resolve_backends(names: list[str]) -> list[str]:
    chosen: list[str] = []
    for name in names:
        for one in (BACKENDS if name == "all" else (name,)):
            if one not in BACKENDS:
                raise UsageError(f"--backend: unknown backend {one!r} (choose from {', '.join(BACKENDS)} or all)")
            if one not in chosen:
                chosen.append(one)
    return chosen


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Workspace:
    """Synthetic weights and exported graphs under one folder, reused between runs."""

    def __init__(self, work_dir: Path, models: Path | None):
        self.weights = work_dir / "weights"
        self.models = models or work_dir / "models"
        self.user_models = models is not None

    def ensure_weights(self, tags: set[str]) -> None:
        try:
            from ..export.synthetic_weights import write_synthetic_release
        except ImportError as err:
            raise UsageError(f"writing the synthetic weights needs the export extra (torch): {err}") from None
        write_synthetic_release(self.weights, sorted(tags))

    def ensure_graphs(self, graphs: set[str]) -> None:
        """Export what is missing (with the per-layer graphs the tiled run needs), or check that
        user-given models were exported from these synthetic weights."""
        manifest_path = self.models / "models.json"
        manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
        if self.user_models:
            self._check_user_models(manifest, graphs)
            return
        missing = sorted(g for g in graphs if g not in manifest.get("graphs", {})
                         or not (self.models / manifest["graphs"][g]["file"]).is_file())
        if not missing:
            return
        try:
            from ..export.graphs import GRAPH_BY_NAME
            from ..export.onnx_export import ExportPlan, export_all
        except ImportError as err:
            raise UsageError(f"exporting the graphs needs the export extra (torch, onnx); or pass --models: {err}") from None
        _log(f"exporting {len(missing)} graph(s) to {self.models}: {', '.join(missing)}")
        start = time.perf_counter()
        export_all(ExportPlan(self.weights, self.models, tuple(GRAPH_BY_NAME[g] for g in missing)),
                   on_progress=lambda name: _log(f"  export {name} ({time.perf_counter() - start:.0f} s)"))

    def _check_user_models(self, manifest: dict, graphs: set[str]) -> None:
        from ..export.onnx_export import sha256_of
        from ..export.manifests import checkpoint_path

        entries = manifest.get("graphs", {})
        absent = sorted(g for g in graphs if g not in entries)
        if absent:
            raise UsageError(f"--models {self.models}: no {', '.join(absent)} in models.json")
        for graph in sorted(graphs):
            tag = entries[graph].get("tag")
            expected = sha256_of(checkpoint_path(self.weights, tag))
            if entries[graph].get("checkpoint_sha256") != expected:
                raise UsageError(f"--models {self.models}: {graph} was not exported from the reference's synthetic "
                                 f"weights ({tag}); conformance needs graphs of those weights")


def _network_backend(name: str, models: Path, precision: str, threads: int | None, metas: dict):
    from ..backends import create_backend

    if name == "trt":
        _ensure_engines(models, precision, metas)
        return create_backend("trt", models, precision=precision)
    return create_backend("ort", models, threads=threads, precision=precision)


def _ensure_engines(models: Path, precision: str, metas: dict) -> None:
    """Build (or reuse from the engine cache) the engines the vectors need, sized to cover them."""
    try:
        from ..engines.builder import BuildOptions, build_engines, describe_unavailable
    except ImportError as err:
        raise UsageError(f"the TensorRT engine builder is unavailable: {err}") from None
    reason = describe_unavailable()
    if reason:
        raise BackendUnavailable(f"TensorRT backend unavailable: {reason}")
    graphs = sorted(set().union(*(graphs_for(m["kind"]) for m in metas.values())))
    height = max(int(m["H"]) for m in metas.values() if "H" in m)
    width = max(int(m["W"]) for m in metas.values() if "W" in m)
    side = max(height, width, 512)
    report = build_engines(BuildOptions(models, precision=precision, max_size=(side, side), opt_size=(width, height),
                                        graphs=tuple(graphs)), on_event=_log)
    if report.failed:
        raise UsageError("engines could not be built: " + "; ".join(f"{g}: {e}" for g, e in report.failed.items()))


def run_conformance(reference: Path, backends: list[str], precision: str = "fp32", work_dir: Path | None = None,
                    models: Path | None = None, tile_rows: int = DEFAULT_TILE_ROWS, threads: int | None = None,
                    explicit: bool = False) -> Report:
    """Check every reference file under `reference` on each backend. `explicit`: the backends were
    named one by one, so one that cannot run here is a usage error instead of a skip."""
    vectors, faces = discover(reference, "vectors"), discover(reference, "faces")
    if not vectors and not faces:
        raise UsageError(f"--reference {reference}: no vectors/*.npz or faces/*.npz under it")
    work_dir = Path(work_dir or Path.home() / ".cache" / "trt-restore" / "conformance")
    report = Report()
    metas = {}
    for path in vectors:
        meta, _ = load_vector(path)
        kind = meta.get("kind")
        if kind not in NETWORK_KINDS:
            report.rows.append(Row(path.name, str(kind), "-", Comparison(f"unknown kind {kind!r}", float("inf"), 0.0)))
            continue
        metas[path] = meta
    start = time.perf_counter()
    for path in faces:
        meta, _ = load_vector(path)
        if meta.get("kind") not in FACE_KINDS:
            report.rows.append(Row(path.name, str(meta.get("kind")), "-",
                                   Comparison(f"unknown kind {meta.get('kind')!r}", float("inf"), 0.0)))
            continue
        _, comparisons = check_face_file(path)
        report.rows += [Row(path.name, meta["kind"], "numpy", c) for c in comparisons]
    report.seconds["faces"] = time.perf_counter() - start
    if not metas:
        return report

    workspace = Workspace(work_dir, models)
    tags = set().union(*(tags_for(m) for m in metas.values()))
    start = time.perf_counter()
    workspace.ensure_weights(tags)
    runtime_backends = [b for b in backends if b != "pytorch"]
    if runtime_backends:
        workspace.ensure_graphs(set().union(*(graphs_for(m["kind"]) for m in metas.values())))
    report.seconds["weights and export"] = time.perf_counter() - start

    for name in backends:
        start = time.perf_counter()
        try:
            if name == "pytorch":
                if precision != "fp32":
                    raise UsageError("the PyTorch reference runs fp32 only")
                _run_pytorch(workspace, metas, report)
            else:
                backend = _network_backend("trt" if name == "trt" else "ort", workspace.models, precision, threads, metas)
                tile = tile_rows if name == "ort-tiled" else None
                for path, meta in metas.items():
                    if tile is not None and meta["kind"] not in TILED_KINDS:
                        continue
                    _log(f"{name}: {path.name}")
                    _, comparisons = run_vector(path, backend, precision, tile)
                    report.rows += [Row(path.name, meta["kind"], name, c) for c in comparisons]
        except (ImportError, RuntimeError, UsageError) as err:
            if explicit or not _unavailable(err):
                raise UsageError(f"--backend {name}: {err}") from None
            report.skipped[name] = str(err).splitlines()[0]
            _log(f"{name}: skipped ({report.skipped[name]})")
        report.seconds[name] = time.perf_counter() - start
    return report


def _unavailable(err: Exception) -> bool:
    """Errors that mean 'this backend cannot run on this machine', not 'it ran and broke'."""
    return isinstance(err, (ImportError, UsageError, BackendUnavailable))


def _run_pytorch(workspace: Workspace, metas: dict, report: Report) -> None:
    try:
        from ..export.conformance import NetworkCache, run_vector as run_pytorch_vector
    except ImportError as err:
        raise UsageError(f"the PyTorch reference needs the export extra (torch): {err}") from None
    nets = NetworkCache(workspace.weights)
    for path, meta in metas.items():
        _log(f"pytorch: {path.name}")
        _, comparisons = run_pytorch_vector(path, nets)
        report.rows += [Row(path.name, meta["kind"], "pytorch", c) for c in comparisons]
