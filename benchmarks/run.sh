#!/usr/bin/env bash
# Run both benchmarks on the demo outputs (build them first with `bash scripts/demo.sh`).
# Results: benchmarks/results/{extraction,training}.json; tables on stdout. Options for each script come from the
# environment: EXTRACTION_ARGS="--segments 24" TRAINING_ARGS="--reencode-documents 4".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
for path in outputs/demo/dataset outputs/demo/features; do
    [ -d "$path" ] || { echo "missing $path: run 'bash scripts/demo.sh' first" >&2; exit 2; }
done
mkdir -p benchmarks/results
# Run one after the other, never in parallel: they share the 2 CPU cores.
$PY benchmarks/bench_extraction.py --output benchmarks/results/extraction.json ${EXTRACTION_ARGS:-}
echo
$PY benchmarks/bench_training.py --output benchmarks/results/training.json ${TRAINING_ARGS:-}
