"""The report of an experiment: metrics.json, baselines.json, a Markdown summary and PNG plots.

Numbers are means and standard deviations over every fold x seed run; the per-class tables and the ROC /
confusion plots use the out-of-fold predictions of the first seed (every document predicted exactly once, by a
model that never saw it).
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from hilbert_app.safe_write import atomic_write_text
from hilbert_app.training.experiment import MAIN_VARIANT, atomic_write_json
from hilbert_app.training.metrics import task_metrics
from hilbert_app.training.plots import plot_confusion_matrix, plot_loss_curves, plot_results_table, plot_roc_curves

SCALARS = ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc", "accuracy")


def out_of_fold(runs: list[dict], task: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels `(N,)` and probabilities `(N, C)` of every document, from the runs of one seed, in document order."""
    parts = [run["predictions"][task] for run in runs if run["seed"] == seed]
    index = np.concatenate([p["index"] for p in parts])
    labels = np.concatenate([np.asarray(p["labels"]) for p in parts])
    probs = np.concatenate([np.asarray(p["probabilities"]) for p in parts])
    order = np.argsort(index, kind="stable")
    return labels[order], probs[order]


def fmt(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None or (isinstance(stat["mean"], float) and math.isnan(stat["mean"])):
        return "n/a"
    return f"{stat['mean']:.3f} ± {stat['std']:.3f}"


def _counts(values) -> str:
    """`[0.1, 0.3, 0.1]` -> `0.1 (2), 0.3 (1)`: every value chosen and how often (strings as they are)."""
    counts = Counter(values)
    return ", ".join(
        f"{value:g} ({count})" if isinstance(value, (int, float)) else f"{value} ({count})"
        for value, count in sorted(counts.items(), key=lambda item: str(item[0]))
    )


def selection_lines(results: dict[str, dict]) -> list[str]:
    """The settings each run chose on its own training split (`--select`; the linear baselines' C always)."""
    rows = []
    for variant, result in results.items():
        picks = [run.get("selection") for run in result["runs"] if run.get("selection")]
        if not picks:
            continue
        if "chosen" in picks[0]:  # a neural variant with --select
            epochs = [p["chosen"]["num_train_epochs"] for p in picks]
            # the alignment terms were a choice only where some candidate turned them off
            offered = any(c.get("alignment") == "off" for p in picks for c in p.get("candidates", []))
            alignment = (
                f"; alignment terms {_counts([p['chosen'].get('alignment', 'on') for p in picks])}" if offered else ""
            )
            rows.append(
                f"| {variant} | dropout {_counts([p['chosen']['dropout'] for p in picks])}; weight decay "
                f"{_counts([p['chosen']['weight_decay'] for p in picks])}{alignment}; epochs median "
                f"{np.median(epochs):g} (range {min(epochs)}-{max(epochs)}) |"
            )
        else:  # a linear baseline: C per task
            tasks = picks[0].keys()
            rows.append(
                f"| {variant} | " + "; ".join(f"{t}: C {_counts([p[t]['C'] for p in picks])}" for t in tasks) + " |"
            )
    if not rows:
        return []
    return [
        "## Selection",
        "",
        "What each fold x seed run chose on its own training split (value (number of runs)); "
        "the held-out fold never took part:",
        "",
        "| variant | chosen |",
        "|---|---|",
        *rows,
        "",
    ]


def paired_differences(results: dict[str, dict], main: str, task: str, metric: str = "macro_auc") -> dict[str, dict]:
    """`main` minus every other row on the same (fold, seed) runs: `{variant: {"mean", "std", "n", "wins", "ties"}}`.

    Pairs are matched by `(fold, seed)`; runs where either value is undefined (NaN) are left out. `std` is the
    population std over the pairs (as in `summarize_runs`); `wins` counts pairs where `main` is strictly ahead,
    `ties` those where both are equal (at a ceiling of 1.0, ties are most pairs: a 0/5 without them would read as
    five losses).
    """

    def values(variant):
        return {
            (run["fold"], run["seed"]): run["tasks"].get(task, {}).get(metric, float("nan"))
            for run in results[variant]["runs"]
        }

    ours = values(main)
    out = {}
    for variant in results:
        if variant == main:
            continue
        theirs = values(variant)
        diffs = [
            ours[k] - theirs[k] for k in ours if k in theirs and not (math.isnan(ours[k]) or math.isnan(theirs[k]))
        ]
        out[variant] = {
            "mean": float(np.mean(diffs)) if diffs else float("nan"),
            "std": float(np.std(diffs)) if diffs else float("nan"),
            "n": len(diffs),
            "wins": int(sum(d > 0 for d in diffs)),
            "ties": int(sum(d == 0 for d in diffs)),
        }
    return out


def write_report(output_dir: Path, results: dict[str, dict], tasks: list[dict], context: dict) -> dict[str, Path]:
    """Write metrics.json (main variant), baselines.json (all variants, when more than one), report.md and plots.

    Args:
        results: `{variant: {"summary": ..., "runs": [...]}}` from `run_variant`.
        tasks: the task definitions (names, types, labels).
        context: what the Markdown states about the data and the protocol (free-form `{str: str}`).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    plots_dir = output_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    main = MAIN_VARIANT if MAIN_VARIANT in results else next(iter(results))
    written = {"metrics": output_dir / "metrics.json"}
    atomic_write_json(written["metrics"], results[main]["summary"])
    table = {variant: result["summary"] for variant, result in results.items()}
    if len(results) > 1:
        written["baselines"] = output_dir / "baselines.json"
        atomic_write_json(written["baselines"], table)
        for task in tasks:
            path = plots_dir / f"variants_{task['name']}_macro_auc.png"
            plot_results_table({v: {task["name"]: s[task["name"]]} for v, s in table.items()}, "macro_auc", path)
            written[f"variants_{task['name']}"] = path

    runs = results[main]["runs"]
    first_seed = runs[0]["seed"]
    chosen = selection_lines(results)
    lines = ["# HILBERT training report", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += [
        "",
        "## Results",
        "",
        f"Mean ± standard deviation over {len(runs)} runs (folds × seeds) per variant; never the best run.",
        "",
    ]
    for task in tasks:
        name = task["name"]
        lines += [f"### Task `{name}` ({task['type']}, {len(task['labels'])} classes)", ""]
        lines += ["| variant | " + " | ".join(SCALARS) + " |", "|---" * (len(SCALARS) + 1) + "|"]
        for variant, summary in table.items():
            row = summary.get(name, {})
            marker = "**" if variant == main else ""
            lines.append(f"| {marker}{variant}{marker} | " + " | ".join(fmt(row.get(m)) for m in SCALARS) + " |")
        if len(table) > 1:
            paired = paired_differences(results, main, name)
            best = max(
                (v for v in table if v != main),
                key=lambda v: table[v].get(name, {}).get("macro_auc", {}).get("mean", -1),
            )
            lines += [
                "",
                f"Paired difference of {main} to every other row (macro ROC-AUC, same fold and seed; mean ± std "
                f"over the pairs; wins / ties = pairs where {main} is ahead / level). Best other row by mean: "
                f"**{best}**.",
                "",
                "| row | difference | wins / ties |",
                "|---|---|---|",
            ]
            lines += [
                f"| {v} | {d['mean']:+.3f} ± {d['std']:.3f} | {d['wins']} / {d['ties']} of {d['n']} |"
                for v, d in paired.items()
            ]
        labels, probs = out_of_fold(runs, name, first_seed)
        oof = task_metrics(labels, probs, task)
        lines += [
            "",
            f"Per class ({main}, out-of-fold predictions of seed {first_seed}):",
            "",
            "| class | precision | recall | f1 | support |",
            "|---|---|---|---|---|",
        ]
        for cls in oof["precision"]:
            lines.append(
                f"| {cls} | {oof['precision'][cls]:.3f} | {oof['recall'][cls]:.3f} | {oof['f1'][cls]:.3f} | "
                f"{oof['support'][cls]} |"
            )
        for warning in oof.get("warnings", []):
            lines.append(f"\n> note: {warning}")
        roc = plot_roc_curves(labels, probs, task, plots_dir / f"roc_{name}.png")
        confusion = plot_confusion_matrix(labels, probs, task, plots_dir / f"confusion_{name}.png")
        lines += [
            "",
            f"![ROC curves]({roc.relative_to(output_dir)}) ![Confusion matrix]({confusion.relative_to(output_dir)})",
            "",
        ]
        written[f"roc_{name}"], written[f"confusion_{name}"] = roc, confusion
    lines += chosen
    if runs[0].get("log_history"):  # a linear baseline has no training curve
        losses = plot_loss_curves(runs[0]["log_history"], plots_dir / "loss_curves.png")
        written["loss_curves"] = losses
        lines += [
            "## Training curves",
            "",
            f"Every loss term of {main}, fold {runs[0]['fold']} seed {first_seed}, train and held-out:",
            "",
            f"![Loss curves]({losses.relative_to(output_dir)})",
            "",
            "TensorBoard logs of every run: `tensorboard --logdir " + str(output_dir / "runs") + "`.",
            "",
        ]
    written["report"] = output_dir / "report.md"
    atomic_write_text(written["report"], "\n".join(lines))
    return written
