"""Honest model selection (`train.py --select`): epochs, dropout and weight decay chosen inside each training split.

For one outer training split (the documents a run may learn from):

1. grouped, stratified **inner folds** of those documents (`linear_baseline.inner_splits` with `INNER_FOLDS` folds,
   shuffled with the run's seed), no group on both sides of any of them;
2. every point of `SEARCH_SPACE` (dropout x weight decay x alignment terms on/off) is trained on the training part of
   **every** inner fold for up to `num_train_epochs` epochs and evaluated on that fold's validation part after every
   epoch. Its curve is the per-epoch inner macro ROC-AUC (mean over tasks) averaged over the inner folds; its score
   is the curve's best epoch (ties go to the lower mean inner classification loss, then to fewer epochs), which is
   its early-stopping point. Why every fold and not one split: with ~45 training documents one inner validation set
   holds ~11 documents, whose macro-AUC moves by +-0.1 from one epoch to the next; early stopping on it stopped the
   alignment-heavy heads at epoch 1 in 3 of 5 folds. The mean over 4 folds sees every training document once as
   validation (the linear baseline's C is chosen by inner folds too);
3. the best point's dropout, weight decay and alignment choice and its early-stopping epoch count are used to
   **retrain on the whole outer training split**, and only that model predicts the outer held-out fold, once.

Nothing here sees the outer held-out documents: they are not passed to any selection run (tests/test_selection.py
checks it with a spy on the training calls). The retrain follows the inner runs' learning-rate schedule (laid out
over `num_train_epochs`) and stops at the chosen epoch, so it is trained as the point the curves scored was
(`--refit-schedule`, `train_selected_run`). The same protocol runs for every neural variant, baselines and
ablations alike; the chosen settings are stored with each run (`run_result.json` -> `selection`) and listed in
the report. Cost: points x inner folds trainings + 1 per run (2 x 2 x 4 + 1 = 17 with the defaults for a head with
alignment terms; 2 x 4 + 1 = 9 for one without any: a unimodal head, concat + MLP).

Why the alignment terms (contrastive, CKA, MI) are a choice and not a given: they need no labels and shape the
document embeddings, but whether they help a classifier trained on a few dozen labelled documents depends on the
corpus. On the demo's inner folds (docs/results.md) they cost 2-4 points of macro-AUC at every weight tried (x1,
x0.1), so the data decide per training split, on inner folds, like the other settings; "off" sets their three
weights (and a two-stage warm-up) to 0 for that run and is recorded with the choice. A variant pins them on with the
switch `alignment_search: False` (the "alignment always on" ablation).
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

# The documented search space: 2 points, epochs by early stopping on the mean inner-fold curve. Weight decay is not
# searched: 0.01 vs 0.1 changed no inner score by more than noise on the demo (docs/results.md), and each point
# costs INNER_FOLDS trainings. None = the run's own weight decay (`--weight-decay`).
SEARCH_SPACE: dict[str, tuple] = {"dropout": (0.1, 0.3), "weight_decay": (None,), "alignment": ("on", "off")}
INNER_FOLDS = 4
ALIGNMENT_TERMS = experiment.ALIGNMENT_TERMS
ALIGNMENT_SEARCH = "alignment_search"  # a variant switch (not a HilbertConfig field): False pins the terms on


def config_switches(switches: dict) -> dict:
    """A variant's switches without the selection-only keys (what HilbertConfig receives)."""
    return {k: v for k, v in switches.items() if k not in experiment.SELECTION_ONLY_SWITCHES}


def alignment_off(switches: dict) -> dict:
    """`switches` with every alignment term (and a two-stage warm-up, which would train nothing) set to 0."""
    return {**switches, **dict.fromkeys(ALIGNMENT_TERMS, 0.0), "alignment_warmup_epochs": 0.0}


def candidates(
    space: dict[str, tuple] | None = None, weight_decay: float | None = None, alignment_choice: bool = True
) -> list[dict]:
    """Every point of the grid, in a fixed order (dropout-major); a weight decay of None is `weight_decay`. Without
    `alignment_choice` (a head without alignment terms, or a variant that pins them on) only "on" is tried: "off"
    would train the same model again."""
    space = SEARCH_SPACE if space is None else space
    alignments = space.get("alignment", ("on",)) if alignment_choice else ("on",)
    return [
        {"dropout": d, "weight_decay": weight_decay if w is None else w, "alignment": a}
        for d in space["dropout"]
        for w in space["weight_decay"]
        for a in alignments
    ]


def point_name(point: dict) -> str:
    """The folder of a search point's inner runs (alignment "on" keeps the name of the earlier two-axis grid)."""
    name = f"dropout{point['dropout']:g}-wd{point['weight_decay']:g}"
    return name if point.get("alignment", "on") == "on" else f"{name}-noalign"


def point_switches(switches: dict, point: dict) -> dict:
    """The HilbertConfig switches of a run at `point`."""
    own = config_switches(switches)
    return alignment_off(own) if point.get("alignment", "on") == "off" else own


def mean_curve(curves: list[list[dict]]) -> list[dict]:
    """The per-epoch mean of several inner folds' `epoch_scores` (epochs all of them reached): macro-AUC and
    classification loss averaged over the folds where they are defined (NaN where none is)."""
    epochs = sorted(set.intersection(*(set(s["epoch"] for s in curve) for curve in curves))) if curves else []
    out = []
    for epoch in epochs:
        rows = [next(s for s in curve if s["epoch"] == epoch) for curve in curves]
        aucs = [r["macro_auc"] for r in rows if not math.isnan(r["macro_auc"])]
        losses = [r["classification_loss"] for r in rows if not math.isnan(r["classification_loss"])]
        out.append(
            {
                "epoch": epoch,
                "macro_auc": float(np.mean(aucs)) if aucs else float("nan"),
                "classification_loss": float(np.mean(losses)) if losses else float("nan"),
            }
        )
    return out


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
    """Choose dropout, weight decay, alignment terms and epochs for one training split (see the module docstring).

    Returns `{"chosen": {"dropout", "weight_decay", "alignment", "num_train_epochs"}, "candidates": [...] (each
    with its mean
    inner curve), "inner_folds": k, "inner_validation": [documents per fold]}`. Each candidate's run on inner fold k
    lives in `run_dir/select/<name>/inner<k>` (a finished one is reused on restart).
    """
    train_indices = np.asarray(train_indices)
    # Without an alignment term, unlabelled documents serve no term: select exactly as without them.
    if not experiment.has_alignment_terms({**head, **switches}):
        train_indices = train_indices[data.labelled[train_indices]]
    primary = data.labels(data.tasks[0]["name"])[train_indices]
    groups = np.asarray(data.dataset["group"])[train_indices]
    # Unlabelled documents cannot be scored: an inner validation part keeps only its labelled ones (the others sit
    # that inner fold out, as the outer held-out fold's do, so that no group is on both sides).
    labelled = data.labelled[train_indices]
    folds = [
        (train_indices[a], train_indices[b][labelled[b]]) for a, b in inner_splits(primary, groups, INNER_FOLDS, seed)
    ]
    task_names = [t["name"] for t in data.tasks]
    # In a two-stage schedule the classifier is untrained during the alignment stage: stop only after it.
    choice = experiment.has_alignment_terms({**head, **switches}) and switches.get(ALIGNMENT_SEARCH, True)
    records = []
    for point in candidates(weight_decay=settings.weight_decay, alignment_choice=choice):
        name = point_name(point)
        run_switches = point_switches(switches, point)
        warmup = float({**head, **run_switches}.get("alignment_warmup_epochs", 0.0) or 0.0)
        curves = []
        for k, (inner_train, inner_val) in enumerate(folds):
            folder = run_dir / "select" / name / f"inner{k}"
            finished = folder / "run_result.json"
            if finished.exists():
                result = json.loads(finished.read_text())
            else:
                trial = dataclasses.replace(settings, weight_decay=point["weight_decay"])
                _, result = experiment.train_run(
                    data,
                    {**head, "dropout": point["dropout"]},
                    run_switches,
                    inner_train,
                    inner_val,
                    seed,
                    folder,
                    trial,
                    is_main_process,
                )
            curves.append(epoch_scores(result["log_history"], task_names))
        curve = mean_curve(curves)
        best = best_epoch([s for s in curve if s["epoch"] > warmup] or curve)
        records.append(
            {
                **point,
                "best_epoch": best["epoch"],
                "inner_macro_auc": best["macro_auc"],
                "inner_classification_loss": best["classification_loss"],
                "inner_curve": [round(s["macro_auc"], 6) for s in curve],
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
            "alignment": chosen["alignment"],
            "num_train_epochs": chosen["best_epoch"],
        },
        "candidates": records,
        "inner_folds": len(folds),
        "inner_validation": [len(val) for _, val in folds],
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

    The retrained model trains for the chosen number of epochs. With `settings.refit_schedule` "selection" (the
    default) its learning rate follows the schedule of the inner runs, laid out over `settings.num_train_epochs`,
    and stops at the chosen epoch: the inner curves scored the model at that epoch *of that schedule*, so that is
    the procedure the selection validated. "rescaled" lays a schedule of its own over the chosen epochs (its
    learning rate decays to 0 by their end, where the inner runs' was still at (1 - E/N) of its peak; the warm-up
    shrinks with it).

    Returns `(trainer, result)` as `train_run` does; `result["selection"]` holds the choice and every candidate.
    """
    record = select_settings(data, head, switches, train_indices, seed, run_dir, settings, is_main_process)
    chosen = record["chosen"]
    final = dataclasses.replace(
        settings, weight_decay=chosen["weight_decay"], num_train_epochs=chosen["num_train_epochs"]
    )
    schedule_epochs = settings.num_train_epochs if settings.refit_schedule == "selection" else None
    trainer, result = experiment.train_run(
        data,
        {**head, "dropout": chosen["dropout"]},
        point_switches(switches, chosen),
        train_indices,
        test_indices,
        seed,
        run_dir,
        final,
        is_main_process,
        callbacks,
        provenance=provenance,
        schedule_epochs=schedule_epochs,
    )
    if result is not None:
        result["selection"] = record
        if is_main_process():
            experiment.atomic_write_json(run_dir / "run_result.json", result)
    return trainer, result
