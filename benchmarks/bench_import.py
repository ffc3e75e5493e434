"""Benchmark: start-up time of the library and of each command line, against `import torch, transformers`.

    .venv/bin/python benchmarks/bench_import.py [--repeats 5] [--output benchmarks/results/import.json]

Every measurement is a fresh `python` subprocess (nothing cached in the interpreter; the OS file cache is warm after
the first, discarded, warm-up round), timed wall-clock from start to exit, median of `--repeats`. Measured in the
same run, interleaved, so that a loaded machine slows every row alike:

    baseline           python -c "import torch, transformers"  (what any HILBERT user pays at least)
    modeling_hilbert   python -c "import modeling_hilbert"      (the Hub-shipped library, Auto classes registered)
    <cli> --help       python <script> --help, for train.py and the three dataset_scripts

Each row is reported as seconds, the difference to the baseline and the ratio to it; the modules a `--help` loaded
(torch, transformers.modeling_utils, datasets) are recorded too. Targets (issue 14): `import modeling_hilbert`
within 1.5 s of the baseline; every `--help` under 3 s on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIS = {
    "train.py --help": ["train.py", "--help"],
    "build_dataset.py --help": ["dataset_scripts/build_dataset.py", "--help"],
    "extract_features.py --help": ["dataset_scripts/extract_features.py", "--help"],
    "build_demo_corpus.py --help": ["dataset_scripts/build_demo_corpus.py", "--help"],
}
HEAVY = ("torch", "transformers.modeling_utils", "datasets")
# Prints which heavy modules a `--help` left loaded: run as `python -c PROBE script --help`.
PROBE = (
    "import runpy, sys, atexit, json\n"
    "atexit.register(lambda: sys.__stderr__.write('HEAVY=' + json.dumps([m for m in {heavy!r} if m in sys.modules])"
    " + '\\n'))\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def time_command(command: list[str]) -> float:
    """Wall-clock seconds of one fresh subprocess (stdout/stderr discarded; a failure stops the benchmark)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def heavy_modules(script: list[str]) -> list[str]:
    """The modules of HEAVY that `python script --help` imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_env(),
    )
    line = next((x for x in done.stderr.splitlines() if x.startswith("HEAVY=")), "HEAVY=null")
    return json.loads(line.removeprefix("HEAVY="))


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per command (median; default 5)")
    parser.add_argument(
        "--output", default=str(ROOT / "benchmarks/results/import.json"), help="JSON file for the results"
    )
    args = parser.parse_args(argv)
    commands = {
        "baseline: import torch, transformers": [sys.executable, "-c", "import torch, transformers"],
        "import modeling_hilbert": [sys.executable, "-c", "import modeling_hilbert"],
        **{name: [sys.executable, *script] for name, script in CLIS.items()},
    }
    for command in commands.values():  # warm-up round: the file cache, __pycache__
        time_command(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):  # interleaved: a burst of load elsewhere hits every row alike
        for name, command in commands.items():
            times[name].append(time_command(command))
    baseline = statistics.median(times["baseline: import torch, transformers"])
    rows = {}
    for name, values in times.items():
        median = statistics.median(values)
        rows[name] = {
            "median_s": round(median, 3),
            "runs_s": [round(v, 3) for v in values],
            "minus_baseline_s": round(median - baseline, 3),
            "ratio_to_baseline": round(median / baseline, 3),
        }
    for name, script in CLIS.items():
        rows[name]["heavy_modules_loaded"] = heavy_modules(script)
    report = {
        "benchmark": "import",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "repeats": args.repeats,
        "rows": rows,
    }
    print(f"{'command':<40} {'median':>8} {'- base':>8} {'x base':>7}  heavy modules loaded")
    for name, row in rows.items():
        heavy = ", ".join(row.get("heavy_modules_loaded", [])) if name in CLIS else ""
        print(
            f"{name:<40} {row['median_s']:>7.2f}s {row['minus_baseline_s']:>+7.2f}s "
            f"{row['ratio_to_baseline']:>6.2f}x  {heavy}"
        )
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
