#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite. Extra arguments go to pytest, e.g. `bash scripts/test.sh -k losses`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
if [ $# -eq 0 ]; then  # the whole suite: lint and format checks first (seconds), then the tests
    .venv/bin/python -m ruff check .
    .venv/bin/python -m ruff format --check .
fi
exec .venv/bin/python -m pytest -q "$@"
