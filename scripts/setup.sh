#!/usr/bin/env bash
# Create .venv and install trt-restore with the export toolchain and test tools.
# torch is pinned below 2.14 so pip takes the CPU build (2.13.0+cpu) where one is on disk;
# set TRT_RESTORE_EXTRAS to change the extras (e.g. "dev" for a runtime-only install).
# The face extra brings dlib and its 68-point model (the original's face detector).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
EXTRAS="${TRT_RESTORE_EXTRAS:-export,face,dev}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[${EXTRAS}]"
# the default face detector's model file (SCRFD, from its PyPI sdist); optional
.venv/bin/python -m trt_restore.faces.fetch_models scrfd >/dev/null 2>&1 \
    || echo "setup: SCRFD face model not fetched (faces fall back to dlib)" >&2
.venv/bin/python -c "import trt_restore, sys; print(f'trt-restore {trt_restore.__version__} ready in .venv ({sys.version.split()[0]})')"
