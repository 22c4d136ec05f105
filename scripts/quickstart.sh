#!/usr/bin/env bash
# Fresh machine -> exported ONNX models and restored sample photos (quality, scratch, HR)
# in ./out/quickstart, all through the slim onnxruntime runtime.
# Uses SYNTHETIC weights unless WEIGHTS points at an official release (see README): the
# pictures it writes then only prove that the pipeline runs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WEIGHTS="${WEIGHTS:-}"
MODELS="${MODELS:-models/quickstart}"
if [ -z "$WEIGHTS" ]; then
    WEIGHTS=weights/synthetic
    .venv/bin/trt-restore synthetic-weights "$WEIGHTS"
fi
.venv/bin/trt-restore export --weights "$WEIGHTS" -o "$MODELS" --no-faces
.venv/bin/trt-restore doctor --models "$MODELS"
.venv/bin/trt-restore restore tests/data -o out/quickstart/quality -m "$MODELS" --overwrite
.venv/bin/trt-restore restore tests/data -o out/quickstart/scratch -m "$MODELS" --scratch --save-stages --overwrite
.venv/bin/trt-restore restore tests/data -o out/quickstart/hr -m "$MODELS" --hr --overwrite
echo "restored photos written under out/quickstart/{quality,scratch,hr}"
