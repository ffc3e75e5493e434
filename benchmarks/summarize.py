"""Collect every benchmark's JSON into one table (stdout + benchmarks/results/summary.md) and one PNG.

    .venv/bin/python benchmarks/summarize.py [--results benchmarks/results]

Reads whichever of extraction.json, feature_quality.json, training.json, scaling.json and long_recording.json
exist (a missing one is listed, not an error). Every number is a ratio measured within one run of its script, or
comes with the run's date and machine; see benchmarks/README.md for the methods.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _machine(report: dict) -> str:
    m = report.get("machine", {})
    threads = m.get("torch_threads", report.get("threads"))
    return f"{report.get('date', '?')[:10]}, {m.get('cpu_count', '?')} CPU cores" + (
        f", torch threads {threads}" if threads else ""
    )


def rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(measure, value, target, met?) for the README's table."""
    out = []
    ex = results.get("extraction")
    if ex:
        r = ex["results"]
        fast, exact = r["fast"], r["exact"]
        out.append(
            (
                "fast mode vs naive loop, segments/s",
                f"{fast['speedup_vs_naive']:.2f}x ({fast['segments_per_s']:.1f} vs "
                f"{r['naive']['segments_per_s']:.1f} segments/s, encoder batch {ex['encoder_batch_size']})",
                ">= 5x",
                "yes" if fast["speedup_vs_naive"] >= 5 else "no",
            )
        )
        out.append(
            (
                "exact mode vs naive loop",
                f"{exact['speedup_vs_naive']:.2f}x, features identical "
                f"(max abs diff {exact['audio_cosine_vs_naive']['max_abs_diff']:.3g})",
                "-",
                "-",
            )
        )
        cos = fast["audio_cosine_vs_naive"]
        out.append(
            (
                "fast vs exact audio cosine (48 benchmark segments)",
                f"{cos['mean']:.4f} mean / {cos['min']:.4f} min",
                ">= 0.95 mean",
                "yes" if cos["mean"] >= 0.95 else "no",
            )
        )
    q = results.get("feature_quality")
    if q:
        r = q["results"]
        fast = r["fast"]
        out.append(
            (
                "fast vs exact audio cosine (whole demo corpus)",
                f"{fast['audio_vs_exact']['cosine_mean']:.4f} mean / "
                f"{fast['audio_vs_exact']['cosine_min']:.4f} min ({fast['audio_vs_exact']['segments']} segments)",
                ">= 0.95 mean",
                "yes" if fast["audio_vs_exact"]["cosine_mean"] >= 0.95 else "no",
            )
        )
        out.append(
            (
                "HILBERT macro-AUC: naive / exact / fast features",
                f"{r['naive']['macro_auc_mean']:.3f} / {r['exact']['macro_auc_mean']:.3f} / "
                f"{r['fast']['macro_auc_mean']:.3f} "
                f"(fast - exact, paired: {100 * fast['paired_diff_vs_exact_mean']:+.1f} ± "
                f"{100 * fast['paired_diff_vs_exact_std']:.1f} points over {fast['runs']} runs)",
                "fast within 1 point of exact",
                "yes" if abs(fast["paired_diff_vs_exact_mean"]) <= 0.01 else "no",
            )
        )
    t = results.get("training")
    if t:
        ratio = t["ratio_reencode_over_cached"]
        out.append(
            (
                "training epoch: re-encoding / cached features",
                f"{ratio:.0f}x ({t['cached']['epoch_s']:.2f} s vs "
                f"~{t['reencode']['epoch_s_scaled_per_document']:.0f} s per {t['documents']}-document epoch)",
                ">= 100x",
                "yes" if ratio >= 100 else "no",
            )
        )
    s = results.get("scaling")
    if s:
        point = next((p for p in s["points"] if p["segments"] == max(s["segments"]) and p["batch_size"] == 1), None)
        slopes = s.get("loglog_slopes", {})
        slope = max((v["memory"] for v in slopes.values()), default=float("nan"))
        if point:
            gb = point["peak_rss_bytes"] / 2**30
            out.append(
                (
                    f"head training step, {point['segments']}-segment document (B=1)",
                    f"{point['median_s']:.2f} s, peak {gb:.2f} GB for the whole process",
                    "< 4 GB",
                    "yes" if gb < 4 else "no",
                )
            )
        out.append(
            (
                "head memory growth vs segments (log-log slope, largest over B)",
                f"{slope:.2f}",
                "<= 2 (S x S)",
                "yes" if slope <= 2 else "no",
            )
        )
    lr = results.get("long_recording")
    if lr:
        for r in lr["results"]:
            if r["minutes"] == 60:
                out.append(
                    (
                        f"one hour end to end, {r['mode']} mode, {r['path']}",
                        f"{r['wall_s']:.0f} s wall, bound {r['lower_bound_s']:.0f} s: "
                        f"{r['wall_over_lower_bound']:.2f}x; "
                        f"peak +{r['peak_over_baseline_mb']:.0f} MB",
                        "<= 2x the bound",
                        "yes" if r["wall_over_lower_bound"] <= 2 else "no",
                    )
                )
    return out


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9))
    ax = axes[0, 0]
    ex = results.get("extraction")
    if ex:
        names = list(ex["results"])
        ax.bar(
            names,
            [ex["results"][n]["segments_per_s"] for n in names],
            color=["#999", "#4477aa", "#ee6677"][: len(names)],
        )
        ax.set_ylabel("segments / s")
        ax.set_title(f"segment features ({ex['segments']} segments, 2 CPU threads)")
    ax = axes[0, 1]
    q = results.get("feature_quality")
    if q:
        names = list(q["results"])
        means = [q["results"][n]["macro_auc_mean"] for n in names]
        stds = [q["results"][n]["macro_auc_std"] for n in names]
        ax.bar(names, means, yerr=stds, capsize=4, color=["#999", "#4477aa", "#ee6677"][: len(names)])
        ax.set_ylim(0.5, 1.0)
        ax.set_ylabel("HILBERT macro-AUC (mean ± std over folds x seeds)")
        ax.set_title("what each feature path teaches HILBERT (demo corpus)")
    ax = axes[1, 0]
    s = results.get("scaling")
    if s:
        for b in s["batch_sizes"]:
            pts = sorted(
                (p for p in s["points"] if p["batch_size"] == b and "step_peak_bytes" in p), key=lambda p: p["segments"]
            )
            ax.loglog(
                [p["segments"] for p in pts], [p["step_peak_bytes"] / 2**20 for p in pts], "o-", label=f"memory, B={b}"
            )
        ax.axhline(4096, color="k", ls=":", label="4 GB")
        ax.set_xlabel("segments per document")
        ax.set_ylabel("training-step peak (MiB)")
        ax.set_title("head scaling (see scaling.png for time)")
        ax.legend(fontsize=8)
    ax = axes[1, 1]
    lr = results.get("long_recording")
    if lr:
        runs = [r for r in lr["results"] if r["minutes"] == 60]
        labels = [f"{r['mode']}\n{r['path']}" for r in runs]
        ax.bar(labels, [r["wall_s"] for r in runs], color="#4477aa", label="wall")
        ax.bar(labels, [r["lower_bound_s"] for r in runs], color="#ccbb44", width=0.4, label="lower bound")
        ax.set_ylabel("seconds for one hour of audio")
        ax.set_title("one hour, file on disk to prediction")
        ax.legend(fontsize=8)
    for ax in axes.flat:
        if not ax.has_data():
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / "benchmarks/results"))
    args = parser.parse_args(argv)
    folder = Path(args.results)
    names = ("extraction", "feature_quality", "training", "scaling", "long_recording")
    results = {name: _load(folder, name) for name in names}
    missing = [name for name, value in results.items() if value is None]
    lines = ["| measure | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows(results)]
    runs = sorted({_machine(r) for r in results.values() if r})
    text = (
        "\n".join(lines)
        + "\n\nRuns: "
        + "; ".join(runs)
        + (f"\nNot measured: {', '.join(missing)}" if missing else "")
        + "\n"
    )
    print(text)
    (folder / "summary.md").write_text(text, encoding="utf-8")
    plot(results, folder / "summary.png")
    print(f"wrote {folder / 'summary.md'} and {folder / 'summary.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
