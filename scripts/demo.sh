#!/usr/bin/env bash
# The README's main command: set-up, then HILBERT end to end on an offline demo corpus.
#   corpus (espeak-ng interviews) -> validated dataset with grouped folds -> cached features from real frozen
#   encoders (Whisper tiny.en, all-MiniLM-L6-v2) -> cross-validated HILBERT + baselines/ablations -> a saved
#   full model -> reloaded through AutoModel/AutoProcessor (trust_remote_code) to classify raw recordings.
# Every step resumes: re-running after an interruption continues where it stopped.
# Environment: HILBERT_DEMO_DIR (default outputs/demo), HILBERT_DEMO_SIZE (small|medium|large, default small),
#              HILBERT_DEMO_DIFFICULTY (standard|hard, default standard: see docs/results.md),
#              extra arguments are passed to train.py (e.g. `bash scripts/demo.sh --seeds 0`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
OUT="${HILBERT_DEMO_DIR:-outputs/demo}"
SIZE="${HILBERT_DEMO_SIZE:-small}"
DIFFICULTY="${HILBERT_DEMO_DIFFICULTY:-standard}"
PY=.venv/bin/python
AUDIO=offline:whisper-tiny.en
TEXT=offline:all-MiniLM-L6-v2
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/5 demo corpus ($SIZE, $DIFFICULTY) -> $OUT/corpus"
$PY dataset_scripts/build_demo_corpus.py --output-dir "$OUT/corpus" --size "$SIZE" --difficulty "$DIFFICULTY"

echo "== 2/5 dataset with grouped, stratified folds -> $OUT/dataset"
if [ ! -f "$OUT/dataset/build_report.json" ]; then
    $PY dataset_scripts/build_dataset.py --input "$OUT/corpus" --output-dir "$OUT/dataset" --folds 5
else
    echo "   (already built)"
fi

echo "== 3/5 segment features with the frozen encoders -> $OUT/features"
if [ ! -f "$OUT/features/hilbert_features.json" ]; then
    $PY dataset_scripts/extract_features.py --dataset "$OUT/dataset" --audio-encoder "$AUDIO" --text-encoder "$TEXT" --output-dir "$OUT/features"
else
    echo "   (already extracted)"
fi

echo "== 4/5 cross-validated HILBERT and baselines, final model -> $OUT/model"
$PY train.py --config configs/demo.yaml --features "$OUT/features" --output-dir "$OUT/model" "$@"

echo "== 5/5 the saved model, loaded with AutoModel/AutoProcessor (trust_remote_code), on raw recordings"
$PY scripts/demo_predict.py --model "$OUT/model" --corpus "$OUT/corpus" --documents 3

echo "== done in $(( $(date +%s) - start )) s: results in $OUT/model/report.md, metrics.json, baselines.json, plots/"
