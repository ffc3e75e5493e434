"""Report plots for HILBERT runs (matplotlib, Agg backend). Every function writes one PNG and returns its path.

Labels and probabilities follow `training.metrics` (unlabelled items are dropped the same way, probabilities as
returned by `training.metrics.probabilities`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless; a no-op when pyplot already runs on Agg

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from hilbert_app.safe_write import atomic_path  # noqa: E402

from .metrics import labelled_items, task_metrics, task_spec  # noqa: E402

__all__ = ["plot_roc_curves", "plot_confusion_matrix", "plot_loss_curves", "plot_results_table", "LOSS_TERMS"]

# Loss terms logged by HILBERT's Trainer (train keys; the eval ones carry an `eval_` prefix), in plotting order.
LOSS_TERMS = (
    "loss",
    "classification_loss",
    "contrastive_loss",
    "cka_loss",
    "mi_loss",
    "moe_balance_loss",
    "temperature",
)
# Trainer's end-of-training summary keys: single numbers, not curves.
_NOT_CURVES = {"train_loss", "total_flos", "train_runtime", "train_samples_per_second", "train_steps_per_second"}


def _save(fig: plt.Figure, path: str | Path) -> Path:
    """Write the PNG under a temporary name and rename it: a kill never leaves a truncated image behind."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=130, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def _short(name: str, width: int = 18) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


# ------------------------------------------------------------------------------------------------ ROC
def plot_roc_curves(labels: Any, probs: Any, task: Mapping[str, Any], path: str | Path) -> Path:
    """One-vs-rest ROC curve per class (binary: the positive class) with its AUC in the legend, and chance."""
    name, task_type, names = task_spec(task)
    y, p, _ = labelled_items(labels, probs, task)
    onehot = y if task_type == "multilabel" else (y[:, None] == np.arange(len(names))[None, :]).astype(int)
    classes = [1] if task_type == "binary" else list(range(len(names)))
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance (AUC = 0.50)")
    colors = plt.get_cmap("tab10" if len(classes) <= 10 else "tab20")
    aucs = []
    for i, k in enumerate(classes):
        yk = onehot[:, k]
        npos = int(yk.sum())
        if npos == 0 or npos == len(yk):
            reason = "no positives" if npos == 0 else "no negatives"
            ax.plot([], [], color=colors(i % colors.N), label=f"{_short(names[k])}: undefined ({reason})")
            continue
        fpr, tpr, _ = roc_curve(yk, p[:, k])
        auc = roc_auc_score(yk, p[:, k])
        aucs.append(auc)
        ax.plot(
            fpr,
            tpr,
            color=colors(i % colors.N),
            linewidth=2,
            drawstyle="default",
            label=f"{_short(names[k])}: AUC = {auc:.3f} (n+ = {npos})",
        )
    macro = f"macro AUC = {np.mean(aucs):.3f}" if aucs else "macro AUC undefined"
    kind = "ROC" if task_type == "binary" else "one-vs-rest ROC"
    ax.set_title(f"{name}: {kind} ({macro}, N = {len(y)})")
    ax.set_xlabel("False positive rate")
    ax.set_ylabel("True positive rate")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ confusion
def _draw_matrix(ax, counts: np.ndarray, row_names, col_names, normalize: bool, title: str, fontsize: float):
    counts = np.asarray(counts, dtype=np.int64)
    rows = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(rows > 0, counts / np.maximum(rows, 1), np.nan)
    shown = frac if normalize else counts.astype(float)
    vmax = 1.0 if normalize else max(1.0, float(counts.max()))
    im = ax.imshow(np.ma.masked_invalid(shown), cmap="Blues", vmin=0.0, vmax=vmax)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            if rows[i, 0] == 0:
                text, dark = f"{counts[i, j]}", False
            else:
                text = f"{counts[i, j]}\n{frac[i, j]:.0%}" if normalize else f"{counts[i, j]}"
                dark = shown[i, j] > 0.55 * vmax
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")
    ax.set_xticks(
        range(len(col_names)),
        [_short(c) for c in col_names],
        rotation=35 if len(col_names) > 3 else 0,
        ha="right" if len(col_names) > 3 else "center",
    )
    ax.set_yticks(range(len(row_names)), [f"{_short(r)} ({int(rows[i, 0])})" for i, r in enumerate(row_names)])
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True (support)")
    ax.set_title(title, fontsize=10)
    return im


def plot_confusion_matrix(
    labels: Any, probs: Any, task: Mapping[str, Any], path: str | Path, normalize: bool = True
) -> Path:
    """Confusion matrix (rows = true classes), colour = row-normalised rate, cells annotated with counts.

    Multilabel: one 2x2 (negative/positive) matrix per label. Rows without items are left blank.
    """
    name, task_type, names = task_spec(task)
    result = task_metrics(labels, probs, task)
    what = "row-normalised" if normalize else "counts"
    if task_type == "multilabel":
        k = len(names)
        cols = min(4, k)
        nrows = math.ceil(k / cols)
        fig, axes = plt.subplots(
            nrows, cols, figsize=(3.4 * cols + 1.0, 3.0 * nrows + 0.6), squeeze=False, layout="constrained"
        )
        for idx, ax in enumerate(axes.flat):
            if idx >= k:
                ax.axis("off")
                continue
            im = _draw_matrix(
                ax,
                result["confusion_matrix"][idx],
                ["neg", "pos"],
                ["neg", "pos"],
                normalize,
                _short(names[idx], 24),
                9,
            )
            if idx % cols:
                ax.set_ylabel("")
        fig.suptitle(f"{name}: per-label confusion matrices ({what}, N = {result['num_examples']})")
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="fraction of true row" if normalize else "count")
    else:
        c = len(names)
        size = max(4.5, 0.75 * c + 2.5)
        fig, ax = plt.subplots(figsize=(size + 1.0, size))
        fontsize = 10 if c <= 6 else (8 if c <= 12 else 6)
        im = _draw_matrix(
            ax,
            result["confusion_matrix"],
            names,
            names,
            normalize,
            f"{name}: confusion matrix ({what}, N = {result['num_examples']})\n"
            f"accuracy {result['accuracy']:.3f}, balanced accuracy {result['balanced_accuracy']:.3f}, "
            f"macro F1 {result['macro_f1']:.3f}",
            fontsize,
        )
        fig.colorbar(im, ax=ax, shrink=0.8, label="fraction of true row" if normalize else "count")
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ losses
def _loss_terms(history: Sequence[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for entry in history:
        for key, value in entry.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            base = key[len("eval_") :] if key.startswith("eval_") else key
            if key in _NOT_CURVES or base in keys:
                continue
            if base in LOSS_TERMS or base.endswith("_loss"):
                keys.append(base)
    order = {t: i for i, t in enumerate(LOSS_TERMS)}
    return sorted(keys, key=lambda t: (order.get(t, len(order)), t))


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Every loss term in a Trainer `state.log_history`-like list, against `step`: one subplot per term, train
    (`term`) and eval (`eval_term`) on the same axes. Entries without `step` are skipped."""
    terms = _loss_terms(history)
    if not terms:
        warnings.warn("plot_loss_curves: no loss terms in the history; writing an empty figure", stacklevel=2)
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no loss terms logged", ha="center", va="center")
        return _save(fig, path)
    cols = min(3, len(terms))
    rows = math.ceil(len(terms) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    for ax, term in zip(axes.flat, terms):
        for key, label, style in (
            (term, "train", dict(color="tab:blue", linewidth=1.5)),
            (f"eval_{term}", "eval", dict(color="tab:orange", linewidth=1.5, marker="o", markersize=4)),
        ):
            pts = [
                (e["step"], e[key])
                for e in history
                if "step" in e and isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool)
            ]
            if pts:
                steps, values = zip(*sorted(pts))
                ax.plot(steps, values, label=label, **style)
        ax.set_title(term)
        ax.set_xlabel("step")
        ax.set_ylabel("value" if term == "temperature" else "loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(terms) :]:
        ax.axis("off")
    fig.suptitle("Training curves (train and eval)")
    fig.tight_layout()
    return _save(fig, path)


# ------------------------------------------------------------------------------------------------ results table
def plot_results_table(results: Mapping[str, Mapping[str, Mapping[str, Any]]], metric: str, path: str | Path) -> Path:
    """Bar chart of `{variant: {task: {metric: {"mean", "std", ("folds")}}}}` (e.g. one `summarize_runs` per
    variant): variants on the x-axis, one bar per task, error bars = std over runs, each run's value as a dot."""
    variants = list(results)
    tasks: list[str] = []
    for per_task in results.values():
        tasks.extend(t for t in per_task if t not in tasks)
    if not variants or not tasks:
        raise ValueError("plot_results_table: empty results")
    width = 0.8 / len(tasks)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.3 * len(variants) * max(1, len(tasks) ** 0.5) + 2), 4.6))
    colors = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    top = 0.0
    runs_labelled = False
    for j, task in enumerate(tasks):
        xs, means, stds = [], [], []
        for i, variant in enumerate(variants):
            entry = results[variant].get(task, {}).get(metric)
            x = i + (j - (len(tasks) - 1) / 2) * width
            if not isinstance(entry, Mapping) or entry.get("mean") is None or math.isnan(float(entry["mean"])):
                ax.text(x, 0.01, "n/a", ha="center", va="bottom", fontsize=8, color="grey")
                continue
            mean = float(entry["mean"])
            std = float(entry.get("std", 0.0) or 0.0)
            std = 0.0 if math.isnan(std) else std
            xs.append(x)
            means.append(mean)
            stds.append(std)
            folds = [float(v) for v in entry.get("folds", []) if v is not None and not math.isnan(float(v))]
            label_y = mean + std
            if folds:
                jitter = rng.uniform(-width * 0.2, width * 0.2, size=len(folds))
                ax.scatter(
                    x + jitter,
                    folds,
                    s=10,
                    color="black",
                    alpha=0.55,
                    zorder=3,
                    label="individual runs" if not runs_labelled else None,
                )
                runs_labelled = True
                label_y = max(label_y, max(folds))
            ax.text(x, label_y + 0.01, f"{mean:.3f}", ha="center", va="bottom", fontsize=7)
            top = max(top, label_y)
        ax.bar(
            xs,
            means,
            width=width * 0.92,
            yerr=stds,
            capsize=3,
            color=colors(j % 10),
            alpha=0.85,
            label=task,
            error_kw=dict(elinewidth=1, ecolor="black"),
        )
    ax.set_xticks(
        range(len(variants)),
        variants,
        rotation=20 if len(variants) > 4 else 0,
        ha="right" if len(variants) > 4 else "center",
    )
    ax.set_xlabel("variant")
    ax.set_ylabel(f"{metric} (mean ± std over runs)")
    if top <= 1.0:
        ax.set_ylim(0, 1.1)
    ax.set_title(f"{metric} by variant")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="task")
    fig.tight_layout()
    return _save(fig, path)
