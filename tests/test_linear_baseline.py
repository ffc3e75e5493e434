"""The mean-pooled features + logistic regression baseline, against an independent scikit-learn computation."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from synthetic import make_features_dataset, save_tiny_encoders

from hilbert_app.training import linear_baseline as lb
from hilbert_app.training.data import fold_splits, tasks_from_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from hilbert_app.features.store import load_features

    encoders = save_tiny_encoders(tmp_path_factory.mktemp("encoders"))
    path = make_features_dataset(
        tmp_path_factory.mktemp("features") / "features", *encoders, documents=36, groups=18, extra_task=True
    )
    return load_features(path)[0]["train"]


def numpy_means(dataset, modality):
    out = []
    for row in dataset:
        x, mask = np.asarray(row[f"{modality}_features"], dtype=np.float64), np.asarray(row[f"{modality}_segment_mask"])
        out.append(x[mask].mean(0) if mask.any() else np.zeros(x.shape[1]))
    return np.stack(out)


def reference_macro_auc(y, probs):
    """Mean one-vs-rest AUC over the classes with positives and negatives (sklearn's roc_auc_score per class)."""
    values = [roc_auc_score(y == k, probs[:, k]) for k in range(probs.shape[1]) if 0 < (y == k).sum() < len(y)]
    return float(np.mean(values)) if values else float("nan")


def reference_run(x, y, groups, train, test, num_classes, seed):
    """The baseline written out directly: inner StratifiedGroupKFold on the training documents, best C by mean
    macro-AUC (smallest on ties), refit, predict."""

    def fit(xs, ys, c):
        return Pipeline(
            [("scale", StandardScaler()), ("lr", LogisticRegression(C=c, class_weight="balanced", max_iter=5000))]
        ).fit(xs, ys)

    def proba(model, xs):
        p = np.zeros((len(xs), num_classes))
        p[:, model.classes_] = model.predict_proba(xs)
        return p

    inner = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=seed)
    splits = list(inner.split(x[train], y[train].astype(str), groups[train]))
    means = {}
    for c in lb.C_GRID:
        scores = [
            reference_macro_auc(y[train][v], proba(fit(x[train][t], y[train][t], c), x[train][v])) for t, v in splits
        ]
        means[c] = np.nanmean(scores)
    best = sorted(lb.C_GRID, key=lambda c: (-means[c], c))[0]
    return best, proba(fit(x[train], y[train], best), x[test])


def test_mean_pooled_features_equal_numpy_masked_means(dataset):
    both = lb.mean_pooled_features(dataset, ("audio", "text"))
    np.testing.assert_allclose(both, np.concatenate([numpy_means(dataset, "audio"), numpy_means(dataset, "text")], 1))
    # the synthetic rows drop some last text segments: the mean must leave them out
    assert any(not all(m) for m in dataset["text_segment_mask"])


def test_linear_run_equals_an_independent_sklearn_computation(dataset):
    modalities = ("audio", "text")
    tasks = tasks_from_dataset(dataset, {"flag": "binary"})
    splits = fold_splits(dataset, 3)
    x = np.concatenate([numpy_means(dataset, m) for m in modalities], 1)
    y = np.asarray(dataset["label"])
    groups = np.asarray(dataset["group"])
    labels = {"label": y, "flag": np.asarray(dataset["label_flag"])}
    for seed in (1,):
        train, test = splits[seed]
        result = lb.linear_run(lb.mean_pooled_features(dataset, modalities), labels, groups, tasks, train, test, seed)
        best, probs = reference_run(x, y, groups, train, test, 3, seed)
        assert result["selection"]["label"]["C"] == best
        np.testing.assert_allclose(result["predictions"]["label"]["probabilities"], probs, atol=2e-6)
        assert result["tasks"]["label"]["macro_auc"] == pytest.approx(reference_macro_auc(y[test], probs), abs=1e-4)
        # the stored probabilities are the ones the metric was computed from: recomputing gives the same number
        stored = np.asarray(result["predictions"]["label"]["probabilities"])
        assert reference_macro_auc(y[test], stored) == pytest.approx(result["tasks"]["label"]["macro_auc"], abs=1e-12)
        # binary task: [1 - p, p] with p from its own balanced LR
        flag = np.asarray(result["predictions"]["flag"]["probabilities"])
        best_flag, probs_flag = reference_run(x, labels["flag"], groups, train, test, 2, seed)
        assert result["selection"]["flag"]["C"] == best_flag
        np.testing.assert_allclose(flag, probs_flag, atol=2e-6)
        np.testing.assert_allclose(flag.sum(1), 1.0, atol=1e-5)


def test_selection_never_sees_the_outer_held_out_documents(dataset, monkeypatch):
    features = lb.mean_pooled_features(dataset, ("audio", "text"))
    train, test = fold_splits(dataset, 3)[0]
    fitted, predicted = [], []
    original_fit, original_proba = Pipeline.fit, Pipeline.predict_proba

    def spy_fit(self, x, y=None, **kw):
        fitted.append(np.asarray(x).copy())
        return original_fit(self, x, y, **kw)

    def spy_proba(self, x, **kw):
        predicted.append(np.asarray(x).copy())
        return original_proba(self, x, **kw)

    monkeypatch.setattr(Pipeline, "fit", spy_fit)
    monkeypatch.setattr(Pipeline, "predict_proba", spy_proba)
    tasks = tasks_from_dataset(dataset, {"flag": "binary"})
    labels = {"label": np.asarray(dataset["label"]), "flag": np.asarray(dataset["label_flag"])}
    lb.linear_run(features, labels, np.asarray(dataset["group"]), tasks, train, test, seed=0)

    def rows_of(x, indices):
        return {tuple(features[i].round(8)) for i in indices} & {tuple(r) for r in x.round(8)}

    assert fitted and all(not rows_of(x, test) for x in fitted), "a held-out document was fitted on"
    # held-out documents are predicted exactly once per task (after the refit), never during selection
    with_test = [i for i, x in enumerate(predicted) if rows_of(x, test)]
    assert len(with_test) == len(tasks)
    assert all(len(rows_of(predicted[i], test)) == len(test) == len(predicted[i]) for i in with_test)
    assert with_test == sorted(with_test) and with_test[-1] == len(predicted) - 1
    # and inner folds are grouped: no group on both sides
    groups = np.asarray(dataset["group"])[train]
    for inner_train, inner_val in lb.inner_splits(labels["label"][train], groups, 3, seed=0):
        assert not set(groups[inner_train]) & set(groups[inner_val])


def test_multilabel_task_fits_one_balanced_lr_per_label():
    rng = np.random.default_rng(0)
    n, d = 40, 6
    y = (rng.random((n, 3)) < [0.5, 0.3, 0.2]).astype(int)
    y[:3] = [[1, 1, 1], [0, 0, 0], [1, 0, 1]]
    y[5] = -1  # an unlabelled row: left out of training
    x = rng.standard_normal((n, d)) + y.clip(0) @ rng.standard_normal((3, d))
    groups = np.arange(n) // 2
    task = {"name": "tags", "type": "multilabel", "labels": ["a", "b", "c"]}
    train, test = np.arange(0, 30), np.arange(30, 40)
    result = lb.linear_run(x, {"tags": y}, groups, [task], train, test, seed=0)
    probs = np.asarray(result["predictions"]["tags"]["probabilities"])
    c = result["selection"]["tags"]["C"]
    keep = train[(y[train] >= 0).all(1)]
    for k in range(3):
        model = Pipeline(
            [("s", StandardScaler()), ("lr", LogisticRegression(C=c, class_weight="balanced", max_iter=5000))]
        )
        model.fit(x[keep], y[keep, k])
        np.testing.assert_allclose(probs[:, k], model.predict_proba(x[test])[:, 1], atol=2e-6)
    assert 0.0 <= result["tasks"]["tags"]["macro_auc"] <= 1.0
