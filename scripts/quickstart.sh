#!/usr/bin/env bash
# Fresh machine -> restored sample photos in ./out/quickstart.
# Uses SYNTHETIC weights unless WEIGHTS points at an official release (see README):
# the pictures it writes then only prove that the pipeline runs end to end.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
WEIGHTS="${WEIGHTS:-}"
if [ -z "$WEIGHTS" ]; then
    WEIGHTS=weights/synthetic
    .venv/bin/trt-restore synthetic-weights "$WEIGHTS" \
        --tag VAE_A_quality --tag VAE_B_quality --tag VAE_B_scratch \
        --tag mapping_quality --tag mapping_scratch --tag detection
fi
.venv/bin/trt-restore reference-restore tests/data/old_a.png -w "$WEIGHTS" -o out/quickstart/quality
.venv/bin/trt-restore reference-restore tests/data/old_w_scratch_b.png tests/data/old_w_scratch_c.png \
    --scratch -w "$WEIGHTS" -o out/quickstart/scratch
echo "restored photos written under out/quickstart/"
