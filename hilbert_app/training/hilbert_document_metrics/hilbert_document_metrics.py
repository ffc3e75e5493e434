"""HILBERT's document metrics as an `evaluate` module: `evaluate.load(PATH)` with PATH this folder (or a Hub repo
holding these two files).

The numbers are `hilbert_app.training.metrics.task_metrics`'s, the ones train.py reports: this file is a second front
door to the same implementation, not a copy (tests/test_evaluate_module.py checks that they agree). It therefore
needs the `hilbert-audio-text` package installed (`pip install hilbert-audio-text`).

    from hilbert_app.training.metrics import EVALUATE_MODULE
    metric = evaluate.load(str(EVALUATE_MODULE))
    metric.compute(predictions=probs, references=labels, labels=["calm", "tense", "crisis"])
    # {"macro_auc": ..., "macro_f1": ..., "balanced_accuracy": ..., "macro_auprc": ..., "accuracy": ..., "per_class":
    # {...}}

Inputs: `predictions` `(N, C)` class probabilities (binary: `(N, 2)` or `(N,)` = p(positive)); `references` class
ids (-100 = unlabelled, dropped). Options: `labels` (class names, in id order), `task_type` ("multiclass" default,
"binary").
"""

from __future__ import annotations

import datasets
import evaluate

from hilbert_app.training.metrics import SCALAR_METRICS, task_metrics

_CITATION = ""
_KWARGS = "predictions: (N, C) probabilities; references: (N,) class ids; labels: class names; task_type."


class HilbertDocumentMetrics(evaluate.Metric):
    """Macro ROC-AUC, macro F1, balanced accuracy, macro AUPRC, accuracy and per-class values of one task."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=__doc__,
            citation=_CITATION,
            inputs_description=_KWARGS,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float64")), "references": datasets.Value("int64")}
            ),
            reference_urls=[],
        )

    def _compute(self, predictions, references, labels=None, task_type: str = "multiclass"):
        import numpy as np

        probs = np.asarray(predictions, dtype=np.float64)
        names = list(labels) if labels is not None else [str(i) for i in range(probs.shape[1])]
        task = {"name": "label", "type": task_type, "labels": names}
        result = task_metrics(np.asarray(references), probs, task)
        out = {name: result[name] for name in SCALAR_METRICS if name in result}
        out["per_class"] = {key: result[key] for key in ("precision", "recall", "f1", "auc", "auprc") if key in result}
        return out
