"""The `evaluate` front door of HILBERT's metrics gives train.py's numbers (one implementation, two doors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from hilbert_app.training.metrics import EVALUATE_MODULE, task_metrics


@pytest.fixture(scope="module")
def metric():
    import evaluate

    return evaluate.load(str(EVALUATE_MODULE))  # a local folder: works offline, as from a Hub repository


def test_evaluate_load_gives_task_metrics_numbers(metric):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=40)
    logits = rng.standard_normal((40, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    names = ["calm", "tense", "crisis"]
    got = metric.compute(predictions=probs.tolist(), references=labels.tolist(), labels=names)
    expected = task_metrics(labels, probs, {"name": "label", "type": "multiclass", "labels": names})
    for name in ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc", "accuracy"):
        assert got[name] == pytest.approx(expected[name], abs=1e-12), name
    # and those are scikit-learn's own numbers
    assert got["macro_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))
    assert got["macro_f1"] == pytest.approx(f1_score(labels, probs.argmax(1), average="macro"))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, probs.argmax(1)))
    assert set(got["per_class"]["recall"]) == set(names)


def test_unlabelled_items_are_dropped_and_undefined_is_nan(metric):
    got = metric.compute(predictions=[[0.9, 0.1], [0.8, 0.2], [0.5, 0.5]], references=[0, 0, -100], labels=["a", "b"])
    assert math.isnan(got["macro_auc"])  # one class present: undefined, never 0.5
    assert got["accuracy"] == 1.0
