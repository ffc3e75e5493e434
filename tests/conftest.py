"""Test-session set-up: offline by default, quiet transformers logs, tests/ importable for shared helpers."""

import os
import sys
from pathlib import Path

# No test may reach a real model hub. (Hub tests start a local server and point HF_ENDPOINT at it.)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


import subprocess
import time

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run by default, so the gate a fresh clone runs is deterministic
# (a random draw once failed CI on a case no earlier run had met; that case is now an explicit @example).
# `HYPOTHESIS_PROFILE=explore` draws new examples each run, with more of them: use it to hunt for new boundaries.
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=200, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def hub_env(tmp_path_factory):
    """A local, in-memory server of the Hub's HTTP API (tests/hub_server.py) for the whole session.

    Returns the environment a child process needs to talk to it with the real huggingface_hub, transformers and
    datasets clients (they read HF_ENDPOINT at import time, hence children rather than this process).
    """
    root = tmp_path_factory.mktemp("hub")
    port_file = root / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("hub_server.py")),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(root / "server.log", "wb"),
    )
    deadline = time.monotonic() + 15
    while not port_file.exists() or not port_file.read_text().strip():
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"hub_server did not start: {(root / 'server.log').read_text()}")
        time.sleep(0.05)
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=f"http://127.0.0.1:{port_file.read_text().strip()}",
        HF_TOKEN="hf_hub_server_dummy_token",
        HF_HUB_DISABLE_XET="1",
        HF_HOME=str(root / "hf_home"),
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    yield env
    server.terminate()
    try:
        server.wait(timeout=5)
    except subprocess.TimeoutExpired:
        server.kill()
