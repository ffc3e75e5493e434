"""`train.py --select`: settings chosen on inner folds of the training documents only, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import make_features_dataset, save_tiny_encoders
from test_training import HEAD, experiment_data, settings

from hilbert_app.training import experiment, selection
from hilbert_app.training.data import fold_splits


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    encoders = save_tiny_encoders(tmp_path_factory.mktemp("encoders"))
    return experiment_data(make_features_dataset(tmp_path_factory.mktemp("features") / "features", *encoders))


def test_best_epoch_takes_the_highest_inner_auc_then_the_lower_loss_then_the_earlier_epoch():
    history = [
        {"loss": 1.0, "epoch": 0.5},  # a training log: ignored
        {"eval_label/macro_auc": 0.7, "eval_classification_loss": 0.9, "epoch": 1.0},
        {"eval_label/macro_auc": 0.8, "eval_classification_loss": 0.8, "epoch": 2.0},
        {"eval_label/macro_auc": 0.8, "eval_classification_loss": 0.6, "epoch": 3.0},
        {"eval_label/macro_auc": 0.8, "eval_classification_loss": 0.6, "epoch": 4.0},
        {"eval_label/macro_auc": float("nan"), "eval_classification_loss": 0.1, "epoch": 5.0},
    ]
    scores = selection.epoch_scores(history, ["label"])
    assert [s["epoch"] for s in scores] == [1, 2, 3, 4, 5]
    assert selection.best_epoch(scores)["epoch"] == 3
    two_tasks = [
        {"eval_a/macro_auc": 0.6, "eval_b/macro_auc": 1.0, "epoch": 1.0},
        {"eval_a/macro_auc": 0.9, "eval_b/macro_auc": 0.6, "epoch": 2.0},
    ]
    assert selection.epoch_scores(two_tasks, ["a", "b"])[0]["macro_auc"] == pytest.approx(0.8)
    assert selection.best_epoch(selection.epoch_scores(two_tasks, ["a", "b"]))["epoch"] == 1


def test_mean_curve_averages_the_inner_folds_per_epoch_where_defined():
    nan = float("nan")
    a = [
        {"epoch": 1, "macro_auc": 0.6, "classification_loss": 1.0},
        {"epoch": 2, "macro_auc": 0.8, "classification_loss": 0.5},
    ]
    b = [
        {"epoch": 1, "macro_auc": nan, "classification_loss": 0.8},
        {"epoch": 2, "macro_auc": 0.6, "classification_loss": nan},
    ]
    c = a[:1]  # a fold that stopped after epoch 1: only common epochs count
    curve = selection.mean_curve([a, b])
    assert [s["epoch"] for s in curve] == [1, 2]
    assert curve[0]["macro_auc"] == pytest.approx(0.6) and curve[0]["classification_loss"] == pytest.approx(0.9)
    assert curve[1]["macro_auc"] == pytest.approx(0.7) and curve[1]["classification_loss"] == pytest.approx(0.5)
    assert [s["epoch"] for s in selection.mean_curve([a, b, c])] == [1]


def test_selection_never_touches_the_outer_held_out_fold_and_is_deterministic(data, tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "SEARCH_SPACE", {"dropout": (0.0, 0.3), "weight_decay": (None,)})
    calls = []
    original = experiment.train_run

    def spy(data_, head, switches, train_indices, test_indices, *args, **kwargs):
        calls.append(
            (
                np.asarray(train_indices).copy(),
                None if test_indices is None else np.asarray(test_indices).copy(),
                head["dropout"],
            )
        )
        return original(data_, head, switches, train_indices, test_indices, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_run", spy)
    train, test = fold_splits(data.dataset, 3)[0]
    groups = np.asarray(data.dataset["group"])
    run = settings(num_train_epochs=2)
    _, first = selection.train_selected_run(data, HEAD, {}, train, test, 0, tmp_path / "a", run)

    *inner, final = calls
    record = first["selection"]
    folds = record["inner_folds"]
    assert folds >= 2 and len(inner) == 2 * folds  # every point on every inner fold
    for p in range(2):
        validated = []
        for inner_train, inner_val, _ in inner[p * folds : (p + 1) * folds]:
            seen = set(inner_train) | set(inner_val)
            assert seen <= set(train) and not seen & set(test), "selection saw an outer held-out document"
            assert not set(groups[inner_train]) & set(groups[inner_val]), "inner split is not grouped"
            assert len(inner_val) and len(inner_train) + len(inner_val) == len(train)
            validated += list(inner_val)
        assert sorted(validated) == sorted(train)  # every training document is validated on exactly once
    np.testing.assert_array_equal(final[0], train)
    np.testing.assert_array_equal(final[1], test)

    # recompute the choice from the candidates' own inner-validation logs: per epoch, the mean over the inner folds
    best = []
    for point in selection.candidates(weight_decay=run.weight_decay):
        per_epoch = {}
        for k in range(folds):
            folder = (
                tmp_path / "a" / "select" / f"dropout{point['dropout']:g}-wd{point['weight_decay']:g}" / f"inner{k}"
            )
            for e in json.loads((folder / "run_result.json").read_text())["log_history"]:
                if "eval_label/macro_auc" in e:
                    per_epoch.setdefault(round(e["epoch"]), []).append(
                        (e["eval_label/macro_auc"], e["eval_classification_loss"])
                    )
        epochs = [
            (np.nanmean([v[0] for v in values]), -np.mean([v[1] for v in values]), -epoch)
            for epoch, values in per_epoch.items()
        ]
        best.append((*max(epochs), point))
    auc, neg_loss, neg_epoch, point = max(best, key=lambda b: b[:3])
    assert record["chosen"] == {
        "dropout": point["dropout"],
        "weight_decay": run.weight_decay,
        "num_train_epochs": -neg_epoch,
    }
    assert final[2] == point["dropout"]
    saved = json.loads((tmp_path / "a" / "run_result.json").read_text())
    assert saved["selection"] == json.loads(json.dumps(record))

    _, second = selection.train_selected_run(data, HEAD, {}, train, test, 0, tmp_path / "b", run)
    assert second["selection"] == record
    np.testing.assert_allclose(
        second["predictions"]["label"]["probabilities"], first["predictions"]["label"]["probabilities"]
    )
