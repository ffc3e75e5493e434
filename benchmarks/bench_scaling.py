"""Benchmark: time and peak memory of one training step of the HILBERT head vs segments per document and batch size.

    .venv/bin/python benchmarks/bench_scaling.py [--quick] [--segments 10,30,100,300,1000,3000,5000]
        [--batch-sizes 1,4,8] [--repeats 3] [--threads 2] [--memory-budget-gb 6] [--config configs/demo.yaml]
        [--output benchmarks/results/scaling.json] [--plot benchmarks/results/scaling.png]

What is measured: `HilbertForSequenceClassification` head only (with_encoders=False; configs/demo.yaml's head
settings; feature widths 384 audio / 384 text like the demo's Whisper tiny.en and all-MiniLM-L6-v2), one training
step = forward with labels (every loss term) + backward + AdamW step, on random precomputed segment features of B
documents padded to S segments (document 0 has S real segments, the others a seeded random number between S/2
and S, as a collated batch of real documents would), with masks and segment times as `FeaturesCollator` gives them.

Each point (S, B) runs in a fresh Python subprocess, so that one point's allocations cannot inflate another's
peak. Inside it: build the model, the optimizer and the inputs; read the resident set size (VmRSS); reset the
kernel's high-water mark (`/proc/self/clear_refs` = 5; if that is refused, the unreset VmHWM is used and the JSON
says so); run `--warmup` steps then `--repeats` timed steps; peak memory = VmHWM - that RSS, i.e. what the
training step itself needs on top of the model and its inputs (activations, gradients, optimizer state, kernel
workspaces). The process's absolute peak (VmHWM) is reported too: that is the number the "trains in under 4 GB"
target is judged on. For comparison the analytic size of one cross-attention score matrix, B x heads x S x S x 4
bytes, is listed: an attention that materialises its scores (or a (B, S, S) mask) needs at least that.

Points whose predicted memory exceeds `--memory-budget-gb` are skipped and listed as skipped. The prediction is
deliberately pessimistic: the RSS before the step plus the step peak of the previous point with the same B scaled
by (S / S_prev)^2, or, for a B's first point, 1 GB plus 4 score matrices (what an attention that materialises its
scores keeps for backward in both directions, plus a transient one).

The log-log slopes of time and memory vs S are least-squares fits over S >= `--fit-min-segments` (default 300:
below it fixed costs dominate; with fewer than 2 such points, the 2 largest). Target: memory slope <= 2.
Timings are wall-clock on a shared machine: compare slopes and ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hilbert_app.training.settings import head_settings

ROOT = Path(__file__).resolve().parents[1]

FULL_SEGMENTS = (10, 30, 100, 300, 1000, 3000, 5000)
FULL_BATCHES = (1, 4, 8)
QUICK_SEGMENTS = (10, 100, 1000)
QUICK_BATCHES = (1, 4)
FEATURE_WIDTH = 384  # Whisper tiny.en d_model and all-MiniLM-L6-v2 hidden_size, the demo's encoders
NUM_LABELS = 4
TARGET_BYTES = 4 * 2**30  # "a 5,000-segment document trains in under 4 GB"
MiB = 2**20


# ------------------------------------------------------------------------------------------ one point (subprocess)
def _status_bytes(key: str) -> int:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key} line: this benchmark measures memory on Linux only.")


def _reset_peak() -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0). False if the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def head_config(settings: dict):
    """The head-only `HilbertConfig` training builds from cached features (hilbert_app/training/experiment.py), with
    configs
    of encoders as wide as the demo's (only their widths matter to the head)."""
    from transformers import BertConfig, WhisperConfig

    from modeling_hilbert import HilbertConfig

    head = head_settings(settings)
    tasks = [{"name": "label", "type": "multiclass", "labels": [f"class_{i}" for i in range(NUM_LABELS)]}]
    return HilbertConfig(
        audio_config=WhisperConfig(d_model=FEATURE_WIDTH),
        text_config=BertConfig(hidden_size=FEATURE_WIDTH),
        with_encoders=False,
        tasks=tasks,
        **head,
    )


def random_batch(batch: int, segments: int, seed: int) -> dict:
    """A collated batch of B random documents padded to S segments, as `FeaturesCollator` returns it."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    lengths = [segments] + [
        int(torch.randint(max(segments // 2, 1), segments + 1, (), generator=generator)) for _ in range(batch - 1)
    ]
    mask = torch.arange(segments)[None, :] < torch.tensor(lengths)[:, None]  # (B, S)
    start = torch.arange(segments, dtype=torch.float32) * 5.0  # 5-s segments back to back
    times = torch.stack([start, start + 4.5], dim=-1).expand(batch, segments, 2).clone()
    features = {
        name: torch.randn(batch, segments, FEATURE_WIDTH, generator=generator) * mask[..., None]
        for name in ("audio_segment_embeds", "text_segment_embeds")
    }
    return {
        **features,
        "audio_segment_mask": mask,
        "text_segment_mask": mask.clone(),
        "segment_times": times * mask[..., None],
        "labels": torch.randint(0, NUM_LABELS, (batch,), generator=generator),
    }


def measure_point(
    segments: int, batch: int, settings: dict, repeats: int, warmup: int, threads: int, seed: int
) -> dict:
    """One training step at (S, B), measured in this process (call it in a fresh one)."""
    import torch

    from modeling_hilbert.modeling_hilbert import HilbertForSequenceClassification

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    config = head_config(settings)
    model = HilbertForSequenceClassification(config).train()
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=float(settings.get("learning_rate", 1e-3)),
        weight_decay=float(settings.get("weight_decay", 0.01)),
    )
    inputs = random_batch(batch, segments, seed)

    def step() -> float:
        t0 = time.perf_counter()
        loss = model(**inputs).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        elapsed = time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise RuntimeError(f"S={segments}, B={batch}: the loss is {float(loss)}; the timing would be meaningless.")
        return elapsed

    baseline = _status_bytes("VmRSS")  # model + optimizer (no state yet) + inputs + the libraries
    reset = _reset_peak()
    for _ in range(warmup):
        step()
    times = [step() for _ in range(repeats)]
    peak = _status_bytes("VmHWM")
    heads = config.num_attention_heads
    return {
        "segments": segments,
        "batch_size": batch,
        "times_s": times,
        "median_s": statistics.median(times),
        "baseline_rss_bytes": baseline,
        "peak_rss_bytes": peak,
        "step_peak_bytes": max(peak - baseline, 0),
        "peak_reset": reset,
        "score_matrix_bytes": batch * heads * segments * segments * 4,
        "real_segments": int(inputs["audio_segment_mask"].sum()),
        "torch_threads": torch.get_num_threads(),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }


# --------------------------------------------------------------------------------------------------- the sweep
def loglog_slope(xs: list[float], ys: list[float]) -> float | None:
    """Least-squares slope of log(y) against log(x); None with fewer than 2 distinct points."""
    points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x > 0 and y > 0]
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def fit_points(points: list[dict], fit_min: int) -> list[dict]:
    """The points the slope is fitted on: S >= fit_min, or the 2 largest S when fewer qualify."""
    chosen = [p for p in points if p["segments"] >= fit_min]
    return chosen if len(chosen) >= 2 else sorted(points, key=lambda p: p["segments"])[-2:]


def predict_bytes(segments: int, batch: int, heads: int, measured: list[dict]) -> int:
    """Pessimistic memory prediction (see the module docstring): the previous point of this B scaled by S^2."""
    same_b = [p for p in measured if p["batch_size"] == batch and p["segments"] < segments]
    if same_b:
        last = max(same_b, key=lambda p: p["segments"])
        return int(last["baseline_rss_bytes"] + last["step_peak_bytes"] * (segments / last["segments"]) ** 2)
    return 2**30 + 4 * batch * heads * segments * segments * 4


def run_point(args, segments: int, batch: int) -> dict:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        f"{segments},{batch}",
        "--config",
        args.config,
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--seed",
        str(args.seed),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"The point S={segments}, B={batch} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(report: dict, path: str) -> None:
    """Time and memory vs S, log-log, one line per B, with an S^2 reference line and the 4 GB target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = report["points"]
    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.8))
    for batch in report["batch_sizes"]:
        mine = sorted((p for p in points if p["batch_size"] == batch), key=lambda p: p["segments"])
        if not mine:
            continue
        s = [p["segments"] for p in mine]
        line = ax_time.plot(s, [p["median_s"] for p in mine], "o-", label=f"B={batch}")[0]
        ax_mem.plot(
            s, [p["step_peak_bytes"] / MiB for p in mine], "o-", color=line.get_color(), label=f"B={batch}: step peak"
        )
        ax_mem.plot(
            s,
            [p["score_matrix_bytes"] / MiB for p in mine],
            ":",
            color=line.get_color(),
            label=f"B={batch}: one score matrix (B*h*S*S*4)",
        )
    # S^2 reference through the largest measured point of each panel (slope 2 on log-log axes).
    for axis, key, scale in ((ax_time, "median_s", 1.0), (ax_mem, "step_peak_bytes", 1.0 / MiB)):
        anchor = max(points, key=lambda p: (p["segments"], p["batch_size"]))
        s = sorted({p["segments"] for p in points})
        axis.plot(
            s, [anchor[key] * scale * (x / anchor["segments"]) ** 2 for x in s], "k--", lw=1, label="∝ S² (reference)"
        )
    ax_mem.axhline(TARGET_BYTES / MiB, color="red", lw=1, label="4 GB target")
    # Axes span the measurements (and the target); the reference lines are clipped rather than squashing the data.
    times = [p["median_s"] for p in points]
    memory = [p["step_peak_bytes"] / MiB for p in points if p["step_peak_bytes"] > 0]
    ax_time.set_ylim(min(times) / 2, max(times) * 2)
    ax_mem.set_ylim(min(memory) / 2, max(memory + [TARGET_BYTES / MiB]) * 2)
    ax_time.set(
        xscale="log",
        yscale="log",
        xlabel="segments per document S",
        ylabel="median step time (s)",
        title="forward + backward + AdamW step",
    )
    ax_mem.set(
        xscale="log",
        yscale="log",
        xlabel="segments per document S",
        ylabel="peak memory of the step (MiB)",
        title="peak RSS - RSS before the step (CPU)",
    )
    for axis in (ax_time, ax_mem):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(f"HILBERT head scaling ({report['machine']['torch_threads']} threads, {report['date'][:10]})")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_ints(text: str) -> tuple[int, ...]:
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"fewer points (S {QUICK_SEGMENTS}, B {QUICK_BATCHES}, 2 repeats) for development",
    )
    parser.add_argument("--segments", type=parse_ints, help=f"segments per document (default {FULL_SEGMENTS})")
    parser.add_argument("--batch-sizes", type=parse_ints, help=f"documents per batch (default {FULL_BATCHES})")
    parser.add_argument("--repeats", type=int, default=None, help="timed steps per point (median; default 3, quick 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first (allocator, kernels, AdamW state)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (the CI machine has 2 cores)")
    parser.add_argument("--memory-budget-gb", type=float, default=6.0, help="skip points predicted to need more")
    parser.add_argument("--fit-min-segments", type=int, default=300, help="fit the slopes on S >= this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    parser.add_argument("--output", default=str(ROOT / "benchmarks/results/scaling.json"))
    parser.add_argument("--plot", default=str(ROOT / "benchmarks/results/scaling.png"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # "S,B": measure one point, print its JSON
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 3

    import yaml

    settings = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    if args.worker:
        segments, batch = parse_ints(args.worker)
        print(json.dumps(measure_point(segments, batch, settings, args.repeats, args.warmup, args.threads, args.seed)))
        return 0

    segment_counts = args.segments or (QUICK_SEGMENTS if args.quick else FULL_SEGMENTS)
    batch_sizes = args.batch_sizes or (QUICK_BATCHES if args.quick else FULL_BATCHES)
    budget = int(args.memory_budget_gb * 2**30)
    heads = int(head_config(settings).num_attention_heads)
    points, skipped = [], []
    print(
        f"HILBERT head, one training step; S {list(segment_counts)}, B {list(batch_sizes)}; {args.repeats} repeats "
        f"after {args.warmup} warm-up; {args.threads} threads; memory budget {args.memory_budget_gb:g} GB",
        flush=True,
    )
    for batch in sorted(batch_sizes):
        for segments in sorted(segment_counts):
            predicted = predict_bytes(segments, batch, heads, points)
            if predicted > budget:
                skipped.append({"segments": segments, "batch_size": batch, "predicted_bytes": predicted})
                print(
                    f"  S={segments:5d} B={batch}: skipped, predicted {predicted / 2**30:.1f} GB > budget", flush=True
                )
                continue
            point = run_point(args, segments, batch)
            points.append(point)
            print(
                f"  S={segments:5d} B={batch}: {point['median_s']:8.3f} s  step peak "
                f"{point['step_peak_bytes'] / MiB:8.1f} MiB"
                f"  (process {point['peak_rss_bytes'] / MiB:7.1f} MiB; one score matrix "
                f"{point['score_matrix_bytes'] / MiB:8.1f} MiB)",
                flush=True,
            )

    slopes = {}
    for batch in sorted(batch_sizes):
        fitted = fit_points([p for p in points if p["batch_size"] == batch], args.fit_min_segments)
        s = [p["segments"] for p in fitted]
        slopes[str(batch)] = {
            "fit_segments": s,
            "time": loglog_slope(s, [p["median_s"] for p in fitted]),
            "memory": loglog_slope(s, [p["step_peak_bytes"] for p in fitted]),
        }
    largest = max(segment_counts)
    single = next((p for p in points if p["batch_size"] == 1 and p["segments"] == largest), None)
    target = None
    if single is not None:
        target = {
            "segments": largest,
            "batch_size": 1,
            "process_peak_bytes": single["peak_rss_bytes"],
            "step_peak_bytes": single["step_peak_bytes"],
            "under_4gb": single["peak_rss_bytes"] < TARGET_BYTES,
        }
    memory_slopes = [v["memory"] for v in slopes.values() if v["memory"] is not None]

    import torch

    report = {
        "benchmark": "HILBERT head scaling: one training step vs segments per document and batch size",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "torch_threads": args.threads,
            "cuda": torch.cuda.is_available(),
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
        "head": head_settings(settings),
        "feature_width": FEATURE_WIDTH,
        "num_attention_heads": heads,
        "segments": list(segment_counts),
        "batch_sizes": list(batch_sizes),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "memory_budget_bytes": budget,
        "quick": args.quick,
        "memory_method": "peak VmHWM (reset via /proc/self/clear_refs) minus VmRSS after building model, optimizer and "
        "inputs; each point in a fresh subprocess",
        "points": points,
        "skipped": skipped,
        "loglog_slopes": slopes,
        "fit_min_segments": args.fit_min_segments,
        "memory_slope_at_most_2": bool(memory_slopes) and max(memory_slopes) <= 2.0,
        "target_4gb": target,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(report, args.plot)

    print(
        "\n| B | S | median step s | step peak MiB | process peak MiB | one score matrix MiB "
        "|\n|---|---|---|---|---|---|"
    )
    for p in points:
        print(
            f"| {p['batch_size']} | {p['segments']} | {p['median_s']:.3f} | {p['step_peak_bytes'] / MiB:.1f} | "
            f"{p['peak_rss_bytes'] / MiB:.1f} | {p['score_matrix_bytes'] / MiB:.1f} |"
        )
    for p in skipped:
        print(
            f"| {p['batch_size']} | {p['segments']} | skipped: predicted {p['predicted_bytes'] / 2**30:.1f} GB > "
            f"{args.memory_budget_gb:g} GB budget | | | |"
        )
    print()
    for batch, fit in slopes.items():
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        print(
            f"B={batch}: log-log slope vs S over S in {fit['fit_segments']}: time {fmt(fit['time'])}, memory "
            f"{fmt(fit['memory'])}"
        )
    print(f"memory slope <= 2 at large S: {report['memory_slope_at_most_2']}")
    if target is not None:
        print(
            f"B=1, S={largest}: process peak {target['process_peak_bytes'] / 2**30:.2f} GB -> "
            f"{'under' if target['under_4gb'] else 'NOT under'} 4 GB"
        )
    print(f"wrote {args.output} and {args.plot}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
