"""Test-session set-up: offline by default, quiet transformers logs, tests/ importable for shared helpers."""

import os
import sys
from pathlib import Path

# No test may reach a real model hub. (Hub tests start a local server and point HF_ENDPOINT at it.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

sys.path.insert(0, str(Path(__file__).parent))
