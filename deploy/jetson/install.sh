#!/usr/bin/env bash
# Install trt-restore on a Jetson with JetPack 6 (L4T r36: Ubuntu 22.04, Python 3.10, CUDA 12.6,
# TensorRT 10.3 from apt). The venv sees the system site-packages, so JetPack's `tensorrt`
# module is used; the [trt] extra does not pull PyPI's tensorrt placeholder on aarch64.
#
#   sudo bash deploy/jetson/install.sh              # into /opt/trt-restore/.venv
#   PREFIX=$HOME/trt-restore bash deploy/jetson/install.sh
#   DRY_RUN=1 bash deploy/jetson/install.sh         # print the steps only
set -euo pipefail
SRC="$(cd "$(dirname "$0")/../.." && pwd)"
PREFIX="${PREFIX:-/opt/trt-restore}"
EXTRAS="${EXTRAS:-serve,trt}"
PYTHON="${PYTHON:-/usr/bin/python3}"
VENV="$PREFIX/.venv"

run() { echo "+ $*"; [ -n "${DRY_RUN:-}" ] || "$@"; }
warn() { echo "install: $*" >&2; }

arch="$(uname -m)"
[ "$arch" = aarch64 ] || warn "this is $arch, not a Jetson (aarch64); going on anyway"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = 3.10 ] || warn "system Python is $pyver; JetPack 6's TensorRT bindings are built for 3.10"
if ! "$PYTHON" -c 'import tensorrt' 2>/dev/null; then
    warn "JetPack's TensorRT Python module is missing: sudo apt install python3-libnvinfer python3-libnvinfer-dev"
    warn "(without it the service runs on onnxruntime on the CPU)"
fi

run mkdir -p "$PREFIX"
[ -x "$VENV/bin/python" ] || run "$PYTHON" -m venv --system-site-packages "$VENV"
run "$VENV/bin/python" -m pip install --upgrade pip
run "$VENV/bin/python" -m pip install "$SRC[$EXTRAS]"

if [ -z "${DRY_RUN:-}" ]; then
    # a tensorrt installed into the venv (by hand, or an old release of this package) would shadow JetPack's
    where="$("$VENV/bin/python" -c 'import tensorrt, sys; print(tensorrt.__file__)' 2>/dev/null || true)"
    case "$where" in
        "$VENV"/*) warn "tensorrt in the venv shadows JetPack's: $VENV/bin/python -m pip uninstall tensorrt" ;;
        "") warn "tensorrt is not importable from the venv" ;;
        *) echo "TensorRT from the system: $where" ;;
    esac
    "$VENV/bin/trt-restore" doctor || true
fi

cat <<NEXT

Installed in $VENV. Next:
  1. Export the models on a workstation (needs PyTorch):
       trt-restore fetch-weights --cache-dir weights && trt-restore export --weights weights -o models
     and copy models/ to the board (sudo install -d /var/lib/trt-restore; sudo cp -r models /var/lib/trt-restore/).
  2. Build the TensorRT engines on the board (engines are specific to the GPU and TensorRT version):
       sudo $VENV/bin/trt-restore build-engines --models /var/lib/trt-restore/models
  3. Check:   $VENV/bin/trt-restore doctor --models /var/lib/trt-restore/models
  4. Kiosk:   sudo $VENV/bin/trt-restore kiosk install --models /var/lib/trt-restore/models         (dry run)
              sudo $VENV/bin/trt-restore kiosk install --models /var/lib/trt-restore/models --apply
NEXT
