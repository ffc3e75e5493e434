#!/usr/bin/env bash
# Every benchmark, one after the other, then one table (stdout + results/summary.md) and one PNG (results/summary.png).
# Needs the demo outputs: `bash scripts/demo.sh` first. About 40 min on 2 CPU cores (the one-hour recording ~18 min; the feature-quality benchmark
# alone runs the naive loop over the whole demo corpus and trains HILBERT three times; its steps are cached in
# outputs/bench/, so a re-run or an interrupted run is much faster).
# Options per script from the environment, e.g. EXTRACTION_ARGS="--segments 24" LONG_ARGS="--minutes 10 --modes fast"
# SCALING_ARGS="--quick"; ONLY="extraction training" runs a subset.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TRANSFORMERS_VERBOSITY=error PYTHONWARNINGS=ignore
for path in outputs/demo/dataset outputs/demo/features outputs/demo/model; do
    [ -d "$path" ] || { echo "missing $path: run 'bash scripts/demo.sh' first" >&2; exit 2; }
done
mkdir -p benchmarks/results
ONLY="${ONLY:-extraction feature_quality training scaling long_recording}"
# Never in parallel: they share the CPU cores, and each one's ratios assume a quiet machine.
for name in $ONLY; do
    echo "== $name"
    case "$name" in
        extraction)      $PY benchmarks/bench_extraction.py --output benchmarks/results/extraction.json ${EXTRACTION_ARGS:-} ;;
        feature_quality) $PY benchmarks/bench_feature_quality.py --output benchmarks/results/feature_quality.json ${QUALITY_ARGS:-} ;;
        training)        $PY benchmarks/bench_training.py --output benchmarks/results/training.json ${TRAINING_ARGS:-} ;;
        scaling)         $PY benchmarks/bench_scaling.py ${SCALING_ARGS:-} ;;
        import)          $PY benchmarks/bench_import.py --output benchmarks/results/import.json ${IMPORT_ARGS:-} ;;
        long_recording)  $PY benchmarks/bench_long_recording.py --output benchmarks/results/long_recording.json ${LONG_ARGS:-} ;;
        *) echo "unknown benchmark $name" >&2; exit 2 ;;
    esac
    echo
done
$PY benchmarks/summarize.py
