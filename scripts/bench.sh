#!/usr/bin/env bash
# One command for benchmarks/results/: synthetic weights -> ONNX export -> calibration set ->
# INT8 Q/DQ models -> accuracy table -> benchmark suite (JSON + markdown + PNG).
#   PHOTOS=dir   real old photos for the accuracy table and the folder benchmark (default tests/data;
#                the published tables used the 12 photos of the original's test_images/old{,_w_scratch})
#   WEIGHTS=dir  checkpoint root (default: synthetic weights); MODELS=dir  model directory
#   BENCH_ARGS   extra arguments for `trt-restore bench` (e.g. "--sizes 256,512 --repeats 2")
set -euo pipefail
cd "$(dirname "$0")/.."
WEIGHTS="${WEIGHTS:-weights/synthetic}"
MODELS="${MODELS:-models/bench}"
PHOTOS="${PHOTOS:-tests/data}"
OUT="${OUT:-benchmarks/results}"
TRT=.venv/bin/trt-restore
if [ ! -d "$WEIGHTS/Global" ]; then
    for tag in VAE_A_quality VAE_B_quality VAE_B_scratch mapping_quality mapping_scratch mapping_Patch_Attention detection; do
        set -- "$@" --tag "$tag"
    done
    $TRT synthetic-weights "$WEIGHTS" "$@"
fi
[ -f "$MODELS/models.json" ] || $TRT export -w "$WEIGHTS" -o "$MODELS" --no-faces
$TRT calibrate-data out/calibration --count 16 --size 256 --seed 0      # calibration: seed 0
$TRT quantize -c out/calibration -m "$MODELS"                            # instant when unchanged
$TRT calibrate-data out/degraded_eval --count 8 --size 256 --seed 1     # evaluation: another seed
.venv/bin/python -m trt_restore.benchmarks.accuracy --models "$MODELS" --photos "$PHOTOS" \
    --degraded out/degraded_eval -o "$OUT"
$TRT bench -m "$MODELS" -w "$WEIGHTS" --folder "$PHOTOS" -o "$OUT" ${BENCH_ARGS:-}
