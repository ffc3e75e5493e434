"""Evaluation metrics for HILBERT tasks, computed over the WHOLE evaluation set with scikit-learn.

Small, imbalanced data sets are the norm here, so the headline numbers are class-balanced: macro ROC-AUC, macro F1,
balanced accuracy and macro AUPRC (plus plain accuracy for reference), and every per-class value is reported so a
minority class cannot hide behind an average. Undefined values are explicit: they are NaN, the classes concerned are
listed (`classes_without_positives`, `classes_without_negatives`) and a sentence says why in `warnings`.

Conventions (one task `{"name", "type", "id2label" | "labels", ...}` as in `HilbertConfig.tasks`):

* labels: multiclass/binary `(N,)` class ids, -100 = unlabelled; multilabel `(N, C)` 0/1, a row with a negative entry
  is unlabelled. Unlabelled items are dropped before anything is computed.
* probs: `(N, C)` class probabilities (see `probabilities`); binary `(N, 2)` = [1-p, p] (a `(N,)` or `(N, 1)` array
  is read as p).
* predictions: multiclass/binary the argmax class (binary: p > 0.5); multilabel p > 0.5 per label.
* ranking metrics (ROC-AUC, average precision) are one-vs-rest per class (binary: the positive class only, i.e. the
  plain AUC / AP of class 1). A class's value is undefined (NaN) when it has no positive or no negative item in the
  evaluation set; the macro averages are over the classes where it is defined, and NaN when there is none (e.g. a
  single class present) -- never a silent 0.5.
* per-class precision/recall/F1 equal `sklearn.metrics.precision_recall_fscore_support(zero_division=0)` for
  every class that occurs in the labels or in the predictions, and NaN for a class that occurs in neither;
  `macro_f1` averages the classes that occur (scikit-learn's default label set). Binary F1 is macro over both classes.
* balanced accuracy: multiclass/binary the mean recall over the classes present in the labels
  (`sklearn.metrics.balanced_accuracy_score`); multilabel the mean over labels of each label's balanced accuracy.
* multilabel accuracy is subset (exact-match) accuracy, as `sklearn.metrics.accuracy_score`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.metrics import average_precision_score, roc_auc_score

# The same metrics as an `evaluate` module: `evaluate.load(str(EVALUATE_MODULE))` (hilbert_document_metrics/).
EVALUATE_MODULE = Path(__file__).with_name("hilbert_document_metrics")
IGNORE_INDEX = -100
TASK_TYPES = ("multiclass", "binary", "multilabel")
SCALAR_METRICS = ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc", "accuracy")
THRESHOLD = 0.5

__all__ = [
    "EVALUATE_MODULE",
    "IGNORE_INDEX",
    "SCALAR_METRICS",
    "task_spec",
    "probabilities",
    "labelled_items",
    "task_metrics",
    "TaskMetricsComputer",
    "compute_metrics_fn",
    "summarize_runs",
]


# ------------------------------------------------------------------------------------------------ helpers
def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of a torch tensor (any device, bf16 included), a list or an array."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        try:
            return x.numpy()
        except TypeError:  # bfloat16 and other dtypes numpy lacks
            return x.float().numpy()
    return np.asarray(x)


def task_spec(task: Mapping[str, Any]) -> tuple[str, str, list[str]]:
    """`(name, type, class_names)` of a task dict in `HilbertConfig.tasks` form (`id2label` or `labels`)."""
    if not isinstance(task, Mapping):
        raise TypeError(f"a task must be a dict like {{'name', 'type', 'id2label'}}, got {type(task).__name__}")
    name = str(task.get("name", "label"))
    task_type = task.get("type", "multiclass")
    if task_type not in TASK_TYPES:
        raise ValueError(f"task {name!r}: type must be one of {TASK_TYPES}, got {task_type!r}")
    if task.get("id2label") is not None:
        id2label = {int(k): str(v) for k, v in task["id2label"].items()}
        if sorted(id2label) != list(range(len(id2label))):
            raise ValueError(f"task {name!r}: id2label keys must be 0..C-1, got {sorted(id2label)}")
        names = [id2label[i] for i in range(len(id2label))]
    elif task.get("labels") is not None:
        names = [str(v) for v in task["labels"]]
    else:
        raise ValueError(f"task {name!r} needs 'id2label' or 'labels'")
    if task_type == "binary" and len(names) != 2:
        raise ValueError(f"task {name!r} is binary and needs exactly 2 class names, got {names}")
    if len(names) < (1 if task_type == "multilabel" else 2):
        raise ValueError(f"task {name!r} ({task_type}) has too few classes: {names}")
    return name, task_type, names


def probabilities(logits: Any, task_type: str) -> np.ndarray:
    """Class probabilities (float64 numpy) from a task's logits (torch tensor or array).

    multiclass `(N, C)` -> softmax `(N, C)`; binary one logit `(N, 1)` (or `(N,)`) -> `(N, 2)` = [1-p, p] with
    p = sigmoid(logit); multilabel `(N, C)` -> sigmoid `(N, C)`.
    """
    x = _to_numpy(logits).astype(np.float64)
    if task_type == "multiclass":
        if x.ndim != 2:
            raise ValueError(f"multiclass logits must be (N, C), got shape {x.shape}")
        z = np.exp(x - x.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)
    if task_type == "binary":
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        elif x.ndim != 1:
            raise ValueError(f"binary logits must be one sigmoid logit per item, (N, 1) or (N,), got shape {x.shape}")
        return np.stack([expit(-x), expit(x)], axis=1)  # 1 - sigmoid(x) == sigmoid(-x), without cancellation
    if task_type == "multilabel":
        if x.ndim != 2:
            raise ValueError(f"multilabel logits must be (N, C), got shape {x.shape}")
        return expit(x)
    raise ValueError(f"task_type must be one of {TASK_TYPES}, got {task_type!r}")


def stored_probabilities(probs: Any) -> list:
    """Probabilities `(N, C)` as JSON-ready lists, at full float64 precision.

    Not rounded: rounding to a few decimals turns a confident model's small probabilities into ties (1e-7 and
    3e-7 both become 0.0), and ties change ROC-AUC. The run's metrics, the pooled out-of-fold report and any
    recomputation a user makes from `run_result.json` must all see the probabilities the metrics were computed from.
    JSON's float repr round-trips float64 exactly.
    """
    return np.asarray(probs, dtype=np.float64).tolist()


def labelled_items(labels: Any, probs: Any, task: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Validate `labels`/`probs` for `task` and drop unlabelled items: `(labels, probs (N, C), num_unlabelled)`."""
    name, task_type, names = task_spec(task)
    num_classes = len(names)
    y = _to_numpy(labels)
    p = _to_numpy(probs).astype(np.float64)
    if task_type == "binary" and (p.ndim == 1 or (p.ndim == 2 and p.shape[1] == 1)):
        p1 = p.reshape(-1)
        p = np.stack([1.0 - p1, p1], axis=1)
    if p.ndim != 2 or p.shape[1] != num_classes:
        raise ValueError(f"task {name!r}: probs must be (N, {num_classes}), got shape {p.shape}")
    if task_type == "multilabel":
        if y.shape != p.shape:
            raise ValueError(
                f"task {name!r}: multilabel labels must be (N, {num_classes}) like probs {p.shape}, got {y.shape}"
            )
        keep = ~(y < 0).any(axis=1)
        y = y[keep]
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"task {name!r}: multilabel labels must be 0/1 (negative = unlabelled row)")
    else:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or len(y) != len(p):
            raise ValueError(f"task {name!r}: labels must be ({len(p)},) class ids, got shape {y.shape}")
        keep = y != IGNORE_INDEX
        y = y[keep]
        if len(y) and (y.min() < 0 or y.max() >= num_classes or not np.all(y == np.round(y))):
            raise ValueError(
                f"task {name!r}: labels must be class ids 0..{num_classes - 1} or {IGNORE_INDEX} (unlabelled), "
                f"got values {sorted(set(np.unique(y).tolist()))}"
            )
    p = p[keep]
    if not np.isfinite(p).all():
        bad = int((~np.isfinite(p)).any(axis=1).sum())
        raise ValueError(f"task {name!r}: {bad} labelled item(s) have non-finite probabilities (diverged model?)")
    return y.astype(np.int64), p, int((~keep).sum())


def _nan_dict(names: Sequence[str]) -> dict[str, float]:
    return {n: float("nan") for n in names}


def _mean_defined(values: Sequence[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _prf_from_counts(tp: int, n_pred: int, n_true: int) -> tuple[float, float, float]:
    """precision, recall, F1 of one class; zero_division=0 as scikit-learn, NaN when the class never occurs."""
    if n_pred == 0 and n_true == 0:
        nan = float("nan")
        return nan, nan, nan
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    f1 = 2.0 * tp / (n_pred + n_true)  # == 2PR/(P+R) when defined, 0 when tp == 0
    return float(precision), float(recall), float(f1)


# ------------------------------------------------------------------------------------------------ one task
def task_metrics(labels: Any, probs: Any, task: Mapping[str, Any], train_labels: Any = None) -> dict[str, Any]:
    """All metrics of one task over the whole evaluation set (plain Python values, JSON-serialisable).

    Returns `task`, `type`, `class_names`, `num_examples` (labelled items used), `num_unlabelled`, the scalars
    `macro_auc`, `macro_f1`, `balanced_accuracy`, `macro_auprc`, `accuracy`; per class `{class_name: value}`
    dicts `auc`, `average_precision` (binary: positive class only), `precision`, `recall`, `f1`, `support`
    (multilabel: number of positive items); `confusion_matrix` (rows = true, columns = predicted, class order;
    multilabel: one `[[tn, fp], [fn, tp]]` per label); `classes_without_positives`, `classes_without_negatives`
    and `warnings` (sentences). See the module docstring for the definitions.

    `train_labels` (optional, same form as `labels`): the labels the model was trained on. Classes that occur in the
    evaluation labels but not there are listed in `classes_absent_from_training` with a warning: they are scored
    like any other class (the model simply never saw them), which is the honest number, but the reader must know.
    """
    name, task_type, names = task_spec(task)
    y, p, num_unlabelled = labelled_items(labels, probs, task)
    n, num_classes = len(y), len(names)
    nan = float("nan")
    warnings: list[str] = []
    absent_from_training: list[str] = []
    if train_labels is not None:
        seen = _to_numpy(train_labels)
        if task_type == "multilabel":
            seen = seen[~(seen < 0).any(axis=1)] if seen.ndim == 2 else seen.reshape(0, num_classes)
            trained = {k for k in range(num_classes) if seen.shape[0] and (seen[:, k] == 1).any()}
            present = {k for k in range(num_classes) if n and (y[:, k] == 1).any()}
        else:
            trained = set(seen.reshape(-1)[seen.reshape(-1) >= 0].astype(int).tolist())
            present = set(y.tolist())
        absent_from_training = [names[k] for k in sorted(present - trained)]
        if absent_from_training:
            warnings.append(
                f"task {name!r}: classes {absent_from_training} occur in the evaluation set but not in the training "
                "labels; the model cannot have learnt them, and they are scored like the other classes"
            )
    out: dict[str, Any] = {
        "task": name,
        "type": task_type,
        "class_names": list(names),
        "num_examples": n,
        "num_unlabelled": num_unlabelled,
    }

    # one-vs-rest indicator matrix (N, C): multilabel as given, else one-hot of the class ids
    onehot = y if task_type == "multilabel" else (y[:, None] == np.arange(num_classes)[None, :])
    onehot = onehot.astype(np.int64)
    positives = onehot.sum(axis=0)
    without_pos = [names[k] for k in range(num_classes) if positives[k] == 0]
    without_neg = [names[k] for k in range(num_classes) if n > 0 and positives[k] == n]
    out["classes_without_positives"] = without_pos
    out["classes_without_negatives"] = without_neg
    if train_labels is not None:
        out["classes_absent_from_training"] = absent_from_training

    if n == 0:
        warnings.append(f"task {name!r}: no labelled items in the evaluation set; every metric is NaN")
        out.update({m: nan for m in SCALAR_METRICS})
        ranked = names[1:] if task_type == "binary" else names
        out.update(auc=_nan_dict(ranked), average_precision=_nan_dict(ranked))
        out.update(precision=_nan_dict(names), recall=_nan_dict(names), f1=_nan_dict(names))
        out["support"] = {c: 0 for c in names}
        size = 2 if task_type == "multilabel" else num_classes
        zero = [[0] * size for _ in range(size)]
        out["confusion_matrix"] = [[row[:] for row in zero] for _ in names] if task_type == "multilabel" else zero
        out["warnings"] = warnings
        return out

    # ---- ranking metrics (threshold-free), one-vs-rest
    ranked = [1] if task_type == "binary" else list(range(num_classes))
    auc, ap = {}, {}
    for k in ranked:
        yk = onehot[:, k]
        if 0 < yk.sum() < n:
            auc[names[k]] = float(roc_auc_score(yk, p[:, k]))
            ap[names[k]] = float(average_precision_score(yk, p[:, k]))
        else:
            auc[names[k]] = ap[names[k]] = nan
    out["macro_auc"] = _mean_defined(list(auc.values()))
    out["macro_auprc"] = _mean_defined(list(ap.values()))
    undefined = [c for c, v in auc.items() if math.isnan(v)]
    if task_type != "multilabel" and len(without_neg) == 1:
        warnings.append(
            f"task {name!r}: only class {without_neg[0]!r} occurs among the {n} labelled items; ROC-AUC and AUPRC "
            "are undefined (macro_auc = macro_auprc = NaN)"
        )
    elif math.isnan(out["macro_auc"]):
        warnings.append(
            f"task {name!r}: no class has both positive and negative items; macro_auc and macro_auprc are NaN"
        )
    elif undefined:
        defined = [c for c in auc if c not in undefined]
        reasons = []
        if set(without_pos) & set(undefined):
            reasons.append(f"without positive items: {[c for c in undefined if c in without_pos]}")
        if set(without_neg) & set(undefined):
            reasons.append(f"without negative items: {[c for c in undefined if c in without_neg]}")
        warnings.append(
            f"task {name!r}: ROC-AUC/AUPRC undefined for classes {'; '.join(reasons)}; macro_auc and macro_auprc "
            f"average the {len(defined)} other class(es) {defined}"
        )

    # ---- threshold metrics
    precision, recall, f1, support = {}, {}, {}, {}
    if task_type == "multilabel":
        pred = (p > THRESHOLD).astype(np.int64)
        matrices, balanced = [], []
        for k in range(num_classes):
            t, q = onehot[:, k], pred[:, k]
            tp = int(((t == 1) & (q == 1)).sum())
            fp = int(((t == 0) & (q == 1)).sum())
            fn = int(((t == 1) & (q == 0)).sum())
            tn = int(((t == 0) & (q == 0)).sum())
            matrices.append([[tn, fp], [fn, tp]])
            precision[names[k]], recall[names[k]], f1[names[k]] = _prf_from_counts(tp, tp + fp, tp + fn)
            support[names[k]] = tp + fn
            rates = []  # recall of each value (1, 0) that occurs in the labels, as balanced_accuracy_score
            if tp + fn:
                rates.append(tp / (tp + fn))
            if tn + fp:
                rates.append(tn / (tn + fp))
            balanced.append(float(np.mean(rates)))
        out["accuracy"] = float((pred == onehot).all(axis=1).mean())
        out["balanced_accuracy"] = float(np.mean(balanced))
        out["confusion_matrix"] = matrices
    else:
        pred = p.argmax(axis=1)
        cm = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(cm, (y, pred), 1)
        for k in range(num_classes):
            precision[names[k]], recall[names[k]], f1[names[k]] = _prf_from_counts(
                int(cm[k, k]), int(cm[:, k].sum()), int(cm[k].sum())
            )
            support[names[k]] = int(cm[k].sum())
        present = [k for k in range(num_classes) if cm[k].sum() > 0]
        out["accuracy"] = float(np.trace(cm) / n)
        out["balanced_accuracy"] = float(np.mean([cm[k, k] / cm[k].sum() for k in present]))
        out["confusion_matrix"] = cm.tolist()
    out["macro_f1"] = _mean_defined(list(f1.values()))
    not_in_f1 = [c for c, v in f1.items() if math.isnan(v)]
    if not_in_f1:
        warnings.append(
            f"task {name!r}: classes {not_in_f1} occur neither in the labels nor in the predictions; their "
            "precision/recall/F1 are NaN and macro_f1 averages the other classes"
        )
    out.update(auc=auc, average_precision=ap, precision=precision, recall=recall, f1=f1, support=support)
    out["warnings"] = warnings
    # fixed key order: scalars first, for readable JSON reports
    first = ["task", "type", "class_names", "num_examples", "num_unlabelled", *SCALAR_METRICS]
    return {k: out[k] for k in first} | {k: v for k, v in out.items() if k not in first}


# ------------------------------------------------------------------------------------------------ Trainer hook
def _unwrap_predictions(predictions: Any, task_names: list[str]) -> Mapping[str, Any]:
    if isinstance(predictions, (tuple, list)):
        if not predictions:
            raise ValueError("empty predictions")
        predictions = predictions[0]  # Trainer: (logits dict, other outputs...)
    if isinstance(predictions, Mapping):
        if "logits" in predictions and "logits" not in task_names:  # a whole ModelOutput
            predictions = predictions["logits"]
            if not isinstance(predictions, Mapping):
                predictions = {task_names[0]: predictions}
        return predictions
    if len(task_names) == 1:
        return {task_names[0]: predictions}
    raise ValueError(f"predictions must be a dict {{task: logits}} for the {len(task_names)} tasks {task_names}")


def _unwrap_labels(label_ids: Any, task_names: list[str]) -> Mapping[str, Any]:
    if isinstance(label_ids, (tuple, list)) and len(label_ids) == 1:
        label_ids = label_ids[0]
    if isinstance(label_ids, Mapping):
        return label_ids
    if label_ids is None:
        return {}
    if len(task_names) == 1:
        return {task_names[0]: label_ids}
    raise ValueError(f"label_ids must be a dict {{task: labels}} for the {len(task_names)} tasks {task_names}")


class TaskMetricsComputer:
    """`compute_metrics` callable for `transformers.Trainer` (see `compute_metrics_fn`).

    Returns the flat scalar dict `{"{task}/{metric}": float}` for logging; the full nested per-task result of the
    latest call is kept in `.last_full` (`{task: task_metrics(...)}`) for reports and plots.
    """

    def __init__(self, tasks: Any):
        if hasattr(tasks, "tasks"):  # a HilbertConfig
            tasks = tasks.tasks
        if isinstance(tasks, Mapping):
            tasks = [tasks]
        self.tasks = [dict(t) for t in tasks]
        if not self.tasks:
            raise ValueError("compute_metrics_fn needs at least one task")
        self.task_names = [task_spec(t)[0] for t in self.tasks]
        if len(set(self.task_names)) != len(self.task_names):
            raise ValueError(f"duplicate task names {self.task_names}")
        self.last_full: dict[str, dict[str, Any]] = {}

    def __call__(self, eval_pred: Any) -> dict[str, float]:
        if hasattr(eval_pred, "predictions"):
            predictions, label_ids = eval_pred.predictions, eval_pred.label_ids
        else:
            predictions, label_ids = eval_pred
        logits = _unwrap_predictions(predictions, self.task_names)
        labels = _unwrap_labels(label_ids, self.task_names)
        unknown = set(labels) - set(self.task_names)
        if unknown:
            raise ValueError(f"labels for unknown tasks {sorted(unknown)}; tasks are {self.task_names}")
        full, flat = {}, {}
        for task, name in zip(self.tasks, self.task_names):
            if labels.get(name) is None:  # tasks may be left out of the labels
                continue
            if name not in logits:
                raise ValueError(f"labels given for task {name!r} but no logits in predictions (keys {list(logits)})")
            result = task_metrics(labels[name], probabilities(logits[name], task_spec(task)[1]), task)
            full[name] = result
            flat.update({f"{name}/{m}": result[m] for m in SCALAR_METRICS})
        self.last_full = full
        return flat


def compute_metrics_fn(tasks: Any) -> TaskMetricsComputer:
    """`compute_metrics` for `transformers.Trainer`: `fn(EvalPrediction) -> {"{task}/{metric}": float}`.

    `tasks`: the task dicts (`config.tasks`) or a config with `.tasks`. `EvalPrediction.predictions` is the logits
    dict `{task: (N, C)}` (or a tuple whose first element is that dict; a bare array for a single task);
    `label_ids` a dict `{task: labels}` (tasks may be missing) or an array for a single task. The full per-task
    result of the latest call is `fn.last_full`.
    """
    return TaskMetricsComputer(tasks)


# ------------------------------------------------------------------------------------------------ across runs
def _is_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _nested(run: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`{task: {metric: value}}` from a nested result or a flat `{"task/metric": value}` dict (or a mix)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in run.items():
        if isinstance(value, Mapping):
            out.setdefault(key, {}).update(value)
        elif "/" in key:
            task, metric = key.split("/", 1)
            out.setdefault(task, {})[metric] = value
    return out


def summarize_runs(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """Mean and spread of every scalar metric over runs (folds x seeds), never the best run.

    `runs`: one `{task: {metric: value}}` per run (e.g. `TaskMetricsComputer.last_full`, or the flat
    `{"task/metric": value}` logs). Returns `{task: {metric: {"mean", "std", "n", "folds"}}}`: `folds` holds
    every run's value in run order (NaN where undefined or missing), `mean`/`std` (population std, `np.std`) use
    the `n` runs whose value is not NaN (both NaN when n = 0). Non-scalar entries (per-class dicts, lists) are skipped.
    """
    nested = [_nested(r) for r in runs]
    keys: dict[str, list[str]] = {}
    for run in nested:
        for task, metrics in run.items():
            seen = keys.setdefault(task, [])
            seen.extend(m for m, v in metrics.items() if _is_scalar(v) and m not in seen)
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for task, metrics in keys.items():
        summary[task] = {}
        for metric in metrics:
            values = []
            for run in nested:
                v = run.get(task, {}).get(metric, float("nan"))
                values.append(float(v) if _is_scalar(v) else float("nan"))
            used = [v for v in values if not math.isnan(v)]
            summary[task][metric] = {
                "mean": float(np.mean(used)) if used else float("nan"),
                "std": float(np.std(used)) if used else float("nan"),
                "n": len(used),
                "folds": values,
            }
    return summary
