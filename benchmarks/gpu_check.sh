#!/usr/bin/env bash
# One prepared GPU check of the trt-restore CUDA kernels (about 2-4 minutes on an H100, no
# network, no TensorRT): compile engines/plugins/trt_restore_kernels.cu with nvcc for the GPU
# that is present, then run benchmarks/gpu_harness.py (PyTorch for device memory and the
# references, ctypes for the C entry points): correctness of the masked attention and the
# patch match, the reference vectors, and timings (TFLOP/s at N = 16k, 62.5k, 125k).
#
#   bash benchmarks/gpu_check.sh [REFERENCE_DIR] [OUT_DIR] [extra harness options...]
#
# REFERENCE_DIR defaults to $TRT_RESTORE_REFERENCE, else ../shared/reference (relative to the
# repository root); OUT_DIR to $OUT, else benchmarks/out. Results: OUT_DIR/gpu_check.json,
# gpu_check.log, nvcc.log (with ptxas register/spill report). Exit code: 0 all checks passed,
# 1 a check failed, 2 the build or the environment failed.
# Environment: PYTHON (default python3), NVCC, CUDA_ARCH (e.g. 90; default: nvidia-smi),
# HARNESS_TIMEOUT (seconds, default 420), KERNEL_LIB (use this prebuilt library, skip nvcc).
set -uo pipefail
cd "$(dirname "$0")/.."

REFERENCE="${1:-${TRT_RESTORE_REFERENCE:-../shared/reference}}"
OUTDIR="${2:-${OUT:-benchmarks/out}}"
shift $(( $# > 2 ? 2 : $# ))
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
LOG="$OUTDIR/gpu_check.log"
exec > >(tee "$LOG") 2>&1

echo "== trt-restore GPU check $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(pwd)"
echo "reference: $REFERENCE"
echo "output:    $OUTDIR"
if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv || true
else
    echo "warning: nvidia-smi not found"
fi

LIB="${KERNEL_LIB:-}"
if [ -z "$LIB" ]; then
    NVCC="${NVCC:-$(command -v nvcc || true)}"
    [ -z "$NVCC" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC=/usr/local/cuda/bin/nvcc
    if [ -z "$NVCC" ]; then
        echo "error: nvcc not found (set NVCC, or KERNEL_LIB to a prebuilt libtrt_restore_kernels.so)"
        exit 2
    fi
    ARCH="${CUDA_ARCH:-}"
    if [ -z "$ARCH" ] && command -v nvidia-smi >/dev/null 2>&1; then
        ARCH="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .')"
    fi
    ARCH="${ARCH:-90}"
    BUILD="$(mktemp -d)"
    LIB="$BUILD/libtrt_restore_kernels.so"
    "$NVCC" --version | tail -n 2
    echo "== nvcc for sm_$ARCH"
    start=$(date +%s)
    if ! "$NVCC" -std=c++17 -O3 -lineinfo -Xptxas -v \
        -Xcompiler=-fPIC,-fvisibility=hidden,-Wall,-Wextra \
        -gencode "arch=compute_$ARCH,code=sm_$ARCH" \
        -shared -Xlinker=--no-undefined -I engines/plugins \
        engines/plugins/trt_restore_kernels.cu -o "$LIB" > "$OUTDIR/nvcc.log" 2>&1; then
        cat "$OUTDIR/nvcc.log"
        echo "error: nvcc failed"
        exit 2
    fi
    grep -E "warning|error" "$OUTDIR/nvcc.log" | grep -v "ptxas info" || true
    "$PYTHON" - "$OUTDIR/nvcc.log" <<'PYEOF' || true
import re, sys
stats, name = {}, None
for line in open(sys.argv[1]):
    m = re.search(r"(?:Compiling entry function|Function properties for) '?(\S+?)'?(?: for|$)", line.strip())
    if m:
        k = re.search(r"\d([a-z][A-Za-z0-9]*?Kernel)(?:I(.*?)E)?Ev", m.group(1))
        name = (k.group(1) + ("<" + re.sub(r"Li(\d+)E", r"\1,", k.group(2) or "").rstrip(",") + ">"
                if k.group(2) else "")) if k else m.group(1)[-40:]
        continue
    for key, pattern in (("regs", r"Used (\d+) registers"), ("spill", r"(\d+) bytes spill stores")):
        m = re.search(pattern, line)
        if m and name:
            stats.setdefault(name, {})[key] = int(m.group(1))
for name, s in sorted(stats.items()):
    print(f"  {name}: {s.get('regs', '?')} registers, {s.get('spill', 0)} bytes spilled")
PYEOF
    echo "compiled in $(( $(date +%s) - start )) s: $LIB"
fi

echo "== harness"
"$PYTHON" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
timeout "${HARNESS_TIMEOUT:-420}" "$PYTHON" benchmarks/gpu_harness.py --lib "$LIB" --reference "$REFERENCE" \
    --out "$OUTDIR" "$@"
status=$?
if [ $status -eq 124 ]; then
    echo "error: harness timed out (HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-420} s)"
fi
echo "== done: exit $status; results in $OUTDIR/gpu_check.json"
exit $status
