"""The practitioner's baseline: mean-pooled frozen segment features -> logistic regression.

What a user does by hand before trying HILBERT, and what any claim of HILBERT's must be made against. For each
document, the masked mean of its real segments' cached features (audio `(D_a,)`, text `(D_t,)`, or their
concatenation `(D_a + D_t,)`; a document without any real segment of a modality gets zeros for it), then

    StandardScaler -> LogisticRegression(C, class_weight="balanced", L2, lbfgs)

one model per task (multiclass: one multinomial model; binary: one model; multilabel: one binary model per label).
The regularisation C is chosen **inside each outer training split only**: grouped, stratified inner folds
(`StratifiedGroupKFold` on the training documents' groups, shuffled with the run's seed) score every C of `C_GRID`
by macro ROC-AUC on the inner held-out documents, the best C (the smallest on ties) is refitted on the whole outer
training split, and only then are the outer held-out documents predicted, once. They are never seen by the
selection (tests/test_linear_baseline.py checks it with a spy).

Results have the neural runs' form (`experiment.train_run`): the same metrics code (`metrics.task_metrics`), the
same outer folds and seeds, `run_result.json` per run, so the report puts them in the same table.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from hilbert_app.training.metrics import stored_probabilities, task_metrics

# Rows of the baseline table: name -> which mean-pooled features the logistic regression sees.
LINEAR_VARIANTS: dict[str, tuple[str, ...]] = {
    "mean-pooled audio + LR": ("audio",),
    "mean-pooled text + LR": ("text",),
    "mean-pooled audio+text + LR": ("audio", "text"),
}
# Inverse L2 strengths searched (after standardisation). Wide on purpose: with ~50 documents and ~800 features the
# right amount of shrinkage is far from sklearn's default C=1.
C_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
INNER_FOLDS = 3
MAX_ITER = 5000


def mean_pooled_features(dataset, modalities: tuple[str, ...]) -> np.ndarray:
    """`(N, sum of widths)` float64: per document, the mean of each modality's features over its real segments.

    `dataset`: a features dataset (rows with `{audio,text}_features` `[S, D]` and `{audio,text}_segment_mask` `[S]`).
    """
    blocks = []
    for modality in modalities:
        rows = []
        masks = dataset[f"{modality}_segment_mask"]
        for features, mask in zip(dataset[f"{modality}_features"], masks):
            features = np.asarray(features, dtype=np.float64)
            mask = np.asarray(mask, dtype=bool)
            rows.append(features[mask].mean(axis=0) if mask.any() else None)
        width = next((r.shape[0] for r in rows if r is not None), 0)
        blocks.append(np.stack([r if r is not None else np.zeros(width) for r in rows]))
    return np.concatenate(blocks, axis=1)


def stratification_labels(labels: np.ndarray) -> np.ndarray:
    """One string per document to stratify on: the class id (multiclass/binary) or the label set (multilabel);
    unlabelled documents (-100 / a negative entry) form their own stratum."""
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return np.array(["unlabelled" if (row < 0).any() else "".join(str(int(v)) for v in row) for row in labels])
    return np.array(["unlabelled" if v < 0 else str(int(v)) for v in labels])


def inner_splits(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Grouped, stratified inner folds of a training split: `[(train, validation)]` positions into `labels`.

    `StratifiedGroupKFold(folds, shuffle=True, random_state=seed)`, with fewer folds when the split has fewer
    groups; no group is on both sides. Raises ValueError for fewer than 2 groups (nothing to validate on).
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups = np.asarray([str(g) for g in groups])
    folds = min(folds, len(set(groups.tolist())))
    if folds < 2:
        raise ValueError("inner validation needs at least 2 groups in the training split")
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has fewer members than n_splits": expected on small data
        warnings.simplefilter("ignore", UserWarning)
        return [
            (train, val) for train, val in splitter.split(np.zeros(len(groups)), stratification_labels(labels), groups)
        ]


def _estimator(c: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(C=c, class_weight="balanced", max_iter=MAX_ITER, random_state=seed)
    )


def _binary_columns(task: dict) -> list[int]:
    """The label columns a multilabel task's binary models are fitted for (all of them)."""
    return list(range(len(task["labels"])))


def fit_predict_proba(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, num_classes: int, c: float, seed: int
) -> np.ndarray:
    """Fit one balanced LR on labelled training rows (y >= 0) and return `(N_test, num_classes)` probabilities.

    Classes absent from the training rows get probability 0 (the model cannot predict them). A training set with a
    single class predicts it with probability 1.
    """
    keep = y_train >= 0
    x_train, y_train = x_train[keep], y_train[keep].astype(int)
    probs = np.zeros((len(x_test), num_classes))
    classes = np.unique(y_train)
    if len(classes) == 1:
        probs[:, classes[0]] = 1.0
        return probs
    model = _estimator(c, seed).fit(x_train, y_train)
    probs[:, model.classes_] = model.predict_proba(x_test)
    return probs


def predict_task(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, task: dict, c: float, seed: int
) -> np.ndarray:
    """Probabilities `(N_test, C)` for one task in `metrics.probabilities` form (binary: `[1 - p, p]`; multilabel:
    one independent binary LR per label, its P(label))."""
    if task["type"] == "multilabel":
        columns = []
        for k in _binary_columns(task):
            y = np.where((y_train < 0).any(axis=1), -100, y_train[:, k])
            columns.append(fit_predict_proba(x_train, y, x_test, 2, c, seed)[:, 1])
        return np.stack(columns, axis=1)
    return fit_predict_proba(x_train, y_train, x_test, len(task["labels"]), c, seed)


def _score(y: np.ndarray, probs: np.ndarray, task: dict) -> float:
    """Macro ROC-AUC (metrics.task_metrics) of one inner validation fold; NaN when undefined."""
    return float(task_metrics(y, probs, task)["macro_auc"])


def select_c(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, task: dict, seed: int, grid=C_GRID, folds: int = INNER_FOLDS
) -> dict:
    """Choose C for one task by grouped inner cross-validation on these (training) documents only.

    Returns `{"C": best, "scores": {C: mean inner macro-AUC}}`: each C's macro-AUC averaged over the inner folds
    where it is defined; the best mean wins, the smallest C on ties (the stronger shrinkage).
    """
    splits = inner_splits(y, groups, folds, seed)
    scores = {}
    for c in grid:
        values = [
            _score(y[val], predict_task(x[train], y[train], x[val], task, c, seed), task) for train, val in splits
        ]
        values = [v for v in values if not np.isnan(v)]
        scores[c] = float(np.mean(values)) if values else float("nan")
    defined = [c for c in grid if not np.isnan(scores[c])]
    best = max(defined, key=lambda c: (scores[c], -c)) if defined else float(np.median(grid))
    return {"C": best, "scores": {str(c): s for c, s in scores.items()}}


def linear_run(
    features: np.ndarray,
    labels: dict[str, np.ndarray],
    groups: np.ndarray,
    tasks: list[dict],
    train_indices: np.ndarray,
    test_indices: np.ndarray,
    seed: int,
) -> dict:
    """One outer fold x seed: select C per task on the training documents, refit, predict the held-out ones.

    Args:
        features: `(N, D)` mean-pooled features of every document (`mean_pooled_features`).
        labels: `{task: (N,) or (N, C)}` label arrays of every document.
        groups: `(N,)` group of every document.
        tasks: task dicts (`name`, `type`, `labels`).
        train_indices, test_indices: the outer split (document indices).

    Returns a run result in `experiment.train_run`'s form (`tasks`, `predictions`, `seed`), plus `selection`:
    `{task: {"C", "scores"}}`.
    """
    result = {"tasks": {}, "predictions": {}, "seed": seed, "log_history": [], "selection": {}}
    x_test = features[test_indices]
    for task in tasks:
        name = task["name"]
        y = np.asarray(labels[name])
        # a logistic regression learns from labelled documents only (unlabelled ones: -1, or a negative entry)
        known = y[train_indices] >= 0 if y.ndim == 1 else (y[train_indices] >= 0).all(axis=1)
        fit = np.asarray(train_indices)[known]
        chosen = select_c(features[fit], y[fit], groups[fit], task, seed)
        probs = predict_task(features[fit], y[fit], x_test, task, chosen["C"], seed)
        result["selection"][name] = chosen
        result["tasks"][name] = task_metrics(y[test_indices], probs, task, train_labels=y[train_indices])
        result["predictions"][name] = {
            "index": [int(i) for i in test_indices],
            "labels": y[test_indices].tolist(),
            "probabilities": stored_probabilities(probs),
        }
    return result


def run_linear_variant(
    data,
    modalities: tuple[str, ...],
    splits: list[tuple[np.ndarray, np.ndarray]],
    seeds: list[int],
    variant_dir: Path,
    progress: Callable[[str], None] = print,
    is_main_process: Callable[[], bool] = lambda: True,
) -> dict:
    """Every fold x seed of one linear baseline (`data`: an `experiment.ExperimentData` on cached features).

    Returns `{"summary", "runs"}` as `experiment.run_variant` does; each run also writes `run_result.json`.
    """
    from hilbert_app.training.experiment import atomic_write_json
    from hilbert_app.training.metrics import summarize_runs

    features = mean_pooled_features(data.dataset, modalities)
    labels = {task["name"]: data.labels(task["name"]) for task in data.tasks}
    groups = np.asarray(data.dataset["group"])
    runs = []
    for seed in seeds:
        for fold, (train_indices, test_indices) in enumerate(splits):
            result = linear_run(features, labels, groups, data.tasks, train_indices, test_indices, seed)
            result.update(fold=fold, seed=seed)
            if is_main_process():
                atomic_write_json(variant_dir / f"fold{fold}-seed{seed}" / "run_result.json", result)
            chosen = ", ".join(f"C={s['C']:g}" for s in result["selection"].values())
            scores = "  ".join(f"{t}/macro_auc {m['macro_auc']:.3f}" for t, m in result["tasks"].items())
            progress(f"  fold {fold} seed {seed}: {scores}  ({chosen})")
            runs.append(result)
    summary = summarize_runs([{task: metrics for task, metrics in run["tasks"].items()} for run in runs])
    return {"summary": summary, "runs": runs}
