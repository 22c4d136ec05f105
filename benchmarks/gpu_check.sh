#!/usr/bin/env bash
# One prepared GPU check of the trt-restore kernels (a few minutes on an H100/H200, no network,
# no TensorRT, no nvcc, no Triton): build the small C launcher (engines/plugins/
# trt_restore_kernels.cpp, g++ against the CUDA headers; it loads the shipped Triton AOT cubins
# of engines/kernels/cubins through the CUDA driver API), then run benchmarks/gpu_harness.py
# (PyTorch for device memory and the float64 references, ctypes for the C entry points):
# correctness of the masked attention (up to N = 62.5k) and the patch match, the reference
# vectors, and timings (TFLOP/s at N = 16k, 62.5k, 125k; the 1 MP scratch attention time).
#
#   bash benchmarks/gpu_check.sh [REFERENCE_DIR] [OUT_DIR] [extra harness options...]
#
# REFERENCE_DIR defaults to $TRT_RESTORE_REFERENCE, else ../shared/reference or shared/reference
# beside the repository; OUT_DIR to $OUT, else benchmarks/out. Results: OUT_DIR/gpu_check.json
# (written only when the harness ran on a GPU), gpu_check.log. Exit code: 0 all checks passed,
# 1 a check failed, 2 the build or the environment failed.
# Environment: PYTHON (default python3), CXX (default g++), CUDA_INCLUDE (dir with cuda.h),
# HARNESS_TIMEOUT (seconds, default 280), KERNEL_LIB (use this prebuilt library),
# TRT_E2E_TIMEOUT (seconds, default 1500, the TensorRT end-to-end part below).
set -uo pipefail
cd "$(dirname "$0")/.."

REFERENCE="${1:-${TRT_RESTORE_REFERENCE:-}}"
if [ -z "$REFERENCE" ]; then
    REFERENCE=../shared/reference
    [ -d "$REFERENCE/vectors" ] || REFERENCE=shared/reference
fi
OUTDIR="${2:-${OUT:-benchmarks/out}}"
shift $(( $# > 2 ? 2 : $# ))
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUTDIR"
OUTDIR="$(cd "$OUTDIR" && pwd)"
rm -f "$OUTDIR/gpu_check.json"  # a JSON in OUTDIR always comes from this run
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
export TRT_RESTORE_CUBIN_DIR="${TRT_RESTORE_CUBIN_DIR:-$(pwd)/engines/kernels/cubins}"
echo "cubins:    $TRT_RESTORE_CUBIN_DIR ($(ls "$TRT_RESTORE_CUBIN_DIR" | tr '\n' ' '))"

# TensorRT end to end (benchmarks/trt_end_to_end.py), only where `import tensorrt` works:
# export (synthetic weights) -> build-engines --precision fp16 -> one 12 MP photo, quality mode,
# --backend trt --tile on, then the same restore counting host<->device bytes ("transfers");
# times, peak RSS and bytes go into the JSON. A failure turns exit 0 into 1.
trt_end_to_end() {
    local why
    if ! why="$("$PYTHON" -c "import tensorrt" 2>&1)"; then
        echo "TensorRT end to end: skipped, $PYTHON cannot import tensorrt ($(printf '%s\n' "$why" | tail -n 1))"
        return
    fi
    echo "== TensorRT end to end (export -> build-engines fp16 -> restore 12 MP, --backend trt --tile on, bytes moved)"
    timeout "${TRT_E2E_TIMEOUT:-1500}" "$PYTHON" benchmarks/trt_end_to_end.py --out "$OUTDIR"
    local code=$?
    [ $code -eq 124 ] && echo "error: TensorRT end to end timed out (TRT_E2E_TIMEOUT=${TRT_E2E_TIMEOUT:-1500} s)"
    [ $code -ne 0 ] && [ $status -eq 0 ] && status=1
}

LIB="${KERNEL_LIB:-}"
if [ -z "$LIB" ]; then
    INC="${CUDA_INCLUDE:-}"
    for candidate in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include \
        $("$PYTHON" -c "import sys, glob; print(' '.join(sorted({p.rsplit('/', 1)[0] for s in sys.path for p in glob.glob(s + '/nvidia/*/include/cuda.h')})))" 2>/dev/null); do
        if [ -z "$INC" ] && [ -f "$candidate/cuda.h" ] && [ -f "$candidate/cuda_runtime_api.h" ]; then
            INC="$candidate"
        fi
    done
    if [ -z "$INC" ]; then
        echo "error: CUDA headers (cuda.h, cuda_runtime_api.h) not found: set CUDA_INCLUDE or KERNEL_LIB"
        exit 2
    fi
    BUILD="$(mktemp -d)"
    LIB="$BUILD/libtrt_restore_kernels.so"
    echo "== ${CXX:-g++} launcher (CUDA headers: $INC)"
    if ! "${CXX:-g++}" -std=c++17 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -shared -Wl,--no-undefined \
        -I engines/plugins -I engines/kernels/cubins -DTRTR_CUBIN_DIR="\"$TRT_RESTORE_CUBIN_DIR\"" \
        -isystem "$INC" engines/plugins/trt_restore_kernels.cpp -o "$LIB" -ldl; then
        echo "error: building the launcher failed"
        exit 2
    fi
fi

echo "== harness"
if ! "$PYTHON" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"; then
    echo "error: $PYTHON cannot import torch and numpy (set PYTHON to an interpreter with a CUDA PyTorch)"
    exit 2
fi
timeout "${HARNESS_TIMEOUT:-280}" "$PYTHON" benchmarks/gpu_harness.py --lib "$LIB" --reference "$REFERENCE" \
    --out "$OUTDIR" "$@"
status=$?
if [ $status -eq 124 ]; then
    echo "error: harness timed out (HARNESS_TIMEOUT=${HARNESS_TIMEOUT:-280} s)"
fi
trt_end_to_end
if [ -f "$OUTDIR/gpu_check.json" ]; then
    echo "== done: exit $status; results in $OUTDIR/gpu_check.json"
else
    echo "== done: exit $status; no results (the harness did not run on a GPU)"
    [ $status -eq 1 ] && status=2
fi
exit $status
