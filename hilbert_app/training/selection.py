"""Honest model selection (`train.py --select`): epochs, dropout and weight decay chosen inside each training split.

For one outer training split (the documents a run may learn from):

1. one grouped, stratified **inner split** of those documents (`linear_baseline.inner_splits` with `INNER_FOLDS`
   folds, shuffled with the run's seed; its first fold is the inner validation set, ~1/`INNER_FOLDS` of them), no
   group on both sides;
2. every point of `SEARCH_SPACE` (dropout x weight decay) is trained on the inner training part for up to
   `num_train_epochs` epochs, evaluated on the inner validation part after every epoch. Its score is its best
   epoch's inner macro ROC-AUC (mean over tasks); ties go to the lower inner classification loss, then to fewer
   epochs. That epoch is its early-stopping point;
3. the best point's dropout and weight decay and its early-stopping epoch count are used to **retrain on the whole
   outer training split**, and only that model predicts the outer held-out fold, once.

Nothing here sees the outer held-out documents: they are not passed to any selection run (tests/test_selection.py
checks it with a spy on the training calls). The retrain's learning-rate schedule spans its own (chosen) number of
epochs. The same protocol runs for every neural variant, baselines and ablations alike; the chosen settings are
stored with each run (`run_result.json` -> `selection`) and listed in the report.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hilbert_app.training import experiment
from hilbert_app.training.linear_baseline import inner_splits

# The documented search space: 2 x 2 points, epochs by early stopping on the inner validation split.
SEARCH_SPACE: dict[str, tuple[float, ...]] = {"dropout": (0.1, 0.3), "weight_decay": (0.01, 0.1)}
INNER_FOLDS = 4


def candidates(space: dict[str, tuple[float, ...]] | None = None) -> list[dict[str, float]]:
    """Every point of the grid, in a fixed order (dropout-major)."""
    space = SEARCH_SPACE if space is None else space
    return [{"dropout": d, "weight_decay": w} for d in space["dropout"] for w in space["weight_decay"]]


def epoch_scores(log_history: list[dict], task_names: list[str]) -> list[dict]:
    """Per evaluated epoch of a `log_history`: `{"epoch", "macro_auc" (mean over tasks), "classification_loss"}`."""
    out = []
    for entry in log_history:
        keys = [f"eval_{name}/macro_auc" for name in task_names]
        if not all(k in entry for k in keys):
            continue
        values = [entry[k] for k in keys if entry[k] is not None and not math.isnan(entry[k])]
        loss = entry.get("eval_classification_loss", float("nan"))
        out.append(
            {
                "epoch": int(round(entry["epoch"])),
                "macro_auc": float(np.mean(values)) if values else float("nan"),
                "classification_loss": float(loss) if loss is not None else float("nan"),
            }
        )
    return out


def best_epoch(scores: list[dict]) -> dict:
    """The epoch with the highest inner macro-AUC; ties: lower classification loss, then the earlier epoch."""

    def key(s):
        auc = -math.inf if math.isnan(s["macro_auc"]) else s["macro_auc"]
        loss = math.inf if math.isnan(s["classification_loss"]) else s["classification_loss"]
        return (-auc, loss, s["epoch"])

    return min(scores, key=key)


def select_settings(
    data,
    head: dict,
    switches: dict,
    train_indices: np.ndarray,
    seed: int,
    run_dir: Path,
    settings,
    is_main_process: Callable[[], bool] = lambda: True,
) -> dict:
    """Choose dropout, weight decay and epochs for one training split (see the module docstring).

    Returns `{"chosen": {"dropout", "weight_decay", "num_train_epochs"}, "candidates": [...], "inner_train": n,
    "inner_validation": n}`. Each candidate's run lives in `run_dir/select/<name>` (a finished one is reused on
    restart).
    """
    train_indices = np.asarray(train_indices)
    primary = data.labels(data.tasks[0]["name"])[train_indices]
    groups = np.asarray(data.dataset["group"])[train_indices]
    inner_train, inner_val = inner_splits(primary, groups, INNER_FOLDS, seed)[0]
    inner_train, inner_val = train_indices[inner_train], train_indices[inner_val]
    task_names = [t["name"] for t in data.tasks]
    records = []
    for point in candidates():
        name = f"dropout{point['dropout']:g}-wd{point['weight_decay']:g}"
        folder = run_dir / "select" / name
        finished = folder / "run_result.json"
        if finished.exists():
            result = json.loads(finished.read_text())
        else:
            trial = dataclasses.replace(settings, weight_decay=point["weight_decay"])
            _, result = experiment.train_run(
                data,
                {**head, "dropout": point["dropout"]},
                switches,
                inner_train,
                inner_val,
                seed,
                folder,
                trial,
                is_main_process,
            )
        scores = epoch_scores(result["log_history"], task_names)
        # In a two-stage schedule the classifier is untrained during the alignment stage: stop only after it.
        warmup = float({**head, **switches}.get("alignment_warmup_epochs", 0.0) or 0.0)
        best = best_epoch([s for s in scores if s["epoch"] > warmup] or scores)
        records.append(
            {
                **point,
                "best_epoch": best["epoch"],
                "inner_macro_auc": best["macro_auc"],
                "inner_classification_loss": best["classification_loss"],
            }
        )
    winner = best_epoch(
        [
            {"epoch": i, "macro_auc": r["inner_macro_auc"], "classification_loss": r["inner_classification_loss"]}
            for i, r in enumerate(records)
        ]
    )
    chosen = records[winner["epoch"]]
    return {
        "chosen": {
            "dropout": chosen["dropout"],
            "weight_decay": chosen["weight_decay"],
            "num_train_epochs": chosen["best_epoch"],
        },
        "candidates": records,
        "inner_train": len(inner_train),
        "inner_validation": len(inner_val),
    }


def train_selected_run(
    data,
    head: dict,
    switches: dict,
    train_indices: np.ndarray,
    test_indices: np.ndarray | None,
    seed: int,
    run_dir: Path,
    settings,
    is_main_process: Callable[[], bool] = lambda: True,
    callbacks: list | None = None,
    provenance: dict | None = None,
):
    """`experiment.train_run` with the settings chosen by `select_settings` on `train_indices` alone.

    Returns `(trainer, result)` as `train_run` does; `result["selection"]` holds the choice and every candidate.
    """
    record = select_settings(data, head, switches, train_indices, seed, run_dir, settings, is_main_process)
    chosen = record["chosen"]
    final = dataclasses.replace(
        settings, weight_decay=chosen["weight_decay"], num_train_epochs=chosen["num_train_epochs"]
    )
    trainer, result = experiment.train_run(
        data,
        {**head, "dropout": chosen["dropout"]},
        switches,
        train_indices,
        test_indices,
        seed,
        run_dir,
        final,
        is_main_process,
        callbacks,
        provenance=provenance,
    )
    if result is not None:
        result["selection"] = record
        if is_main_process():
            experiment.atomic_write_json(run_dir / "run_result.json", result)
    return trainer, result
