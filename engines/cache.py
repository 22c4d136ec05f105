"""The engine cache: one TensorRT plan per (graph, model hash, precision, profile, GPU, TensorRT).

Layout under the cache root (default `<models>/engines`):
    <graph>-<precision>-<key16>.engine     serialized plan
    <graph>-<precision>-<key16>.json       sidecar: every key field, the plan's sha256 and size,
                                           build time and options
    timing-<gpu slug>-trt<version>.cache   persistent timing cache (shared by all builds)

An entry is used only if its sidecar names exactly the expected key fields and the plan file
still has the recorded sha256: a stale (model re-exported, other precision/profile) or foreign
(other GPU, other TensorRT) plan is never loaded; the builder rebuilds it. Version-compatible
plans (built with --version-compatible) are accepted by a newer TensorRT of the same major.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .environment import TrtVersion
from .profiles import Profile, ProfileError

FORMAT = "trt-restore-engine/1"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(models_dir: str | Path, entry: dict, precision: str) -> str:
    """The model hash of an engine key: the exported ONNX's sha256 (models.json), combined with
    the Q/DQ model's for int8 so that a re-calibration invalidates int8 plans."""
    base = str(entry.get("sha256", ""))
    qdq = entry.get("qdq_file")
    if precision != "int8" or not qdq or not (Path(models_dir) / qdq).is_file():
        return base
    return sha256_bytes(f"{base}:{sha256_file(Path(models_dir) / qdq)}".encode())


@dataclass(frozen=True)
class EngineKey:
    graph: str
    model_sha256: str
    precision: str
    profile: Profile
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    version_compatible: bool = False
    strategy: str = ""  # how the precision was obtained (environment.BuildStrategy.describe())

    def fields(self) -> dict:
        return {"format": FORMAT, "graph": self.graph, "model_sha256": self.model_sha256,
                "precision": self.precision, "profile": self.profile.to_json(), "gpu_name": self.gpu_name,
                "compute_capability": self.compute_capability, "tensorrt_version": self.tensorrt_version,
                "version_compatible": self.version_compatible, "strategy": self.strategy}

    @classmethod
    def from_fields(cls, data: dict) -> "EngineKey":
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown sidecar format {data.get('format')!r}")
        return cls(graph=str(data["graph"]), model_sha256=str(data["model_sha256"]), precision=str(data["precision"]),
                   profile=Profile.from_json(data["profile"]), gpu_name=str(data["gpu_name"]),
                   compute_capability=str(data["compute_capability"]),
                   tensorrt_version=str(data["tensorrt_version"]),
                   version_compatible=bool(data.get("version_compatible", False)),
                   strategy=str(data.get("strategy", "")))

    def digest(self) -> str:
        return sha256_bytes(json.dumps(self.fields(), sort_keys=True, separators=(",", ":")).encode())

    @property
    def stem(self) -> str:
        # per-layer graphs are named "<tag>/<prefix>": no "/" in a file name
        return f"{self.graph.replace('/', '__')}-{self.precision}-{self.digest()[:16]}"


@dataclass(frozen=True)
class CacheStatus:
    state: str  # "valid" | "missing" | "stale" | "corrupt"
    reason: str
    engine: Path
    sidecar: Path

    @property
    def valid(self) -> bool:
        return self.state == "valid"


def runtime_accepts(built: str, running: str, version_compatible: bool) -> bool:
    """Can a plan built with TensorRT `built` be deserialised by TensorRT `running`?"""
    try:
        b, r = TrtVersion.parse(built), TrtVersion.parse(running)
    except ValueError:
        return False
    if b.rtx != r.rtx:  # TensorRT-RTX and TensorRT plans are different formats
        return False
    if b.tuple() == r.tuple():
        return True
    return version_compatible and b.major == r.major and r.tuple() >= b.tuple()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


class EngineCache:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()

    def paths(self, key: EngineKey) -> tuple[Path, Path]:
        return self.root / f"{key.stem}.engine", self.root / f"{key.stem}.json"

    def timing_cache_path(self, gpu_slug: str, tensorrt_version: str) -> Path:
        return self.root / f"timing-{gpu_slug}-trt{tensorrt_version}.cache"

    def status(self, key: EngineKey) -> CacheStatus:
        engine, sidecar = self.paths(key)
        if not engine.is_file() or not sidecar.is_file():
            return CacheStatus("missing", "not built yet", engine, sidecar)
        try:
            data = json.loads(sidecar.read_text())
            recorded = EngineKey.from_fields(data)
        except (OSError, ValueError, KeyError, TypeError, ProfileError) as err:
            return CacheStatus("corrupt", f"unreadable sidecar ({err})", engine, sidecar)
        if recorded != key:
            want, have = key.fields(), recorded.fields()
            changed = ", ".join(f"{k} {have.get(k)!r} -> {want[k]!r}" for k in want if want[k] != have.get(k))
            return CacheStatus("stale", f"built for other settings ({changed})", engine, sidecar)
        if engine.stat().st_size != data.get("engine_bytes"):
            return CacheStatus("corrupt", "plan size differs from its sidecar", engine, sidecar)
        if sha256_file(engine) != data.get("engine_sha256"):
            return CacheStatus("corrupt", "plan sha256 differs from its sidecar", engine, sidecar)
        return CacheStatus("valid", "up to date", engine, sidecar)

    def store(self, key: EngineKey, plan: bytes, extra: dict | None = None) -> CacheStatus:
        """Write plan + sidecar atomically (sidecar last: a crash leaves no valid-looking entry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        engine, sidecar = self.paths(key)
        if sidecar.exists():
            sidecar.unlink()
        _atomic_write(engine, plan)
        record = dict(key.fields(), engine_file=engine.name, engine_bytes=len(plan), engine_sha256=sha256_bytes(plan),
                      created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(extra or {}))
        _atomic_write(sidecar, json.dumps(record, indent=2, sort_keys=True).encode())
        return self.status(key)

    def remove_superseded(self, key: EngineKey) -> list[Path]:
        """Delete other plans of this graph, precision, GPU, TensorRT and profile (another model
        export or build strategy, e.g. int8 before models.json kept the graph in fp32): `find`
        would otherwise choose between them by name. Returns the removed plans."""
        removed = []
        same = ("graph", "precision", "gpu_name", "compute_capability", "tensorrt_version", "version_compatible",
                "profile")
        want = key.fields()
        for sidecar, record in self.entries():
            if sidecar == self.paths(key)[1] or any(record.get(f) != want[f] for f in same):
                continue
            engine = sidecar.with_name(record.get("engine_file", sidecar.stem + ".engine"))
            sidecar.unlink(missing_ok=True)  # sidecar first: no valid-looking entry is left behind
            engine.unlink(missing_ok=True)
            removed.append(engine)
        return removed

    def entries(self) -> list[tuple[Path, dict]]:
        """(sidecar path, record) of every readable sidecar."""
        found = []
        if not self.root.is_dir():
            return found
        for sidecar in sorted(self.root.glob("*.json")):
            try:
                record = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(record, dict) and record.get("format") == FORMAT:
                found.append((sidecar, record))
        return found

    def find(self, graph: str, model_sha256: str, precision: str, gpu_name: str, compute_capability: str,
             tensorrt_version: str, input_shapes: dict | None = None, verify: bool = True) -> tuple[Path | None, str]:
        """The plan to load for a graph on this GPU / TensorRT (covering input_shapes when given),
        or (None, why not). Among several, the one with the smallest max profile wins."""
        candidates, reasons = [], []
        for sidecar, record in self.entries():
            if record.get("graph") != graph or record.get("precision") != precision:
                continue
            name = sidecar.name
            if record.get("model_sha256") != model_sha256:
                reasons.append(f"{name}: built from another export of the model")
                continue
            if record.get("gpu_name") != gpu_name or record.get("compute_capability") != compute_capability:
                reasons.append(f"{name}: built for {record.get('gpu_name')} (sm {record.get('compute_capability')})")
                continue
            if not runtime_accepts(str(record.get("tensorrt_version")), tensorrt_version,
                                   bool(record.get("version_compatible"))):
                reasons.append(f"{name}: built with TensorRT {record.get('tensorrt_version')}")
                continue
            try:
                profile = Profile.from_json(record["profile"])
            except (KeyError, ProfileError):
                reasons.append(f"{name}: unreadable profile")
                continue
            if input_shapes is not None and not profile.covers(input_shapes):
                reasons.append(f"{name}: profile does not cover {input_shapes}")
                continue
            engine = sidecar.with_name(record.get("engine_file", sidecar.stem + ".engine"))
            if not engine.is_file():
                reasons.append(f"{name}: plan file missing")
                continue
            if verify and sha256_file(engine) != record.get("engine_sha256"):
                reasons.append(f"{name}: plan sha256 differs from its sidecar")
                continue
            candidates.append((profile.volume(), engine))
        if candidates:
            return min(candidates)[1], "ok"
        return None, "; ".join(reasons) if reasons else f"no {precision} engine for {graph} in {self.root}"


def describe_cache(root: str | Path) -> list[str]:
    """Lines for `trt-restore doctor`: the cached plans under root, one per line."""
    cache = EngineCache(root)
    entries = cache.entries()
    if not entries:
        return [f"TensorRT engines        none in {cache.root} (trt-restore build-engines)"]
    lines = [f"TensorRT engines        {len(entries)} in {cache.root}"]
    for sidecar, record in entries:
        lines.append(f"  {record.get('graph')} {record.get('precision')}: {record.get('gpu_name')} "
                     f"sm {record.get('compute_capability')}, TensorRT {record.get('tensorrt_version')}"
                     f"{', version-compatible' if record.get('version_compatible') else ''} ({sidecar.stem})")
    return lines
