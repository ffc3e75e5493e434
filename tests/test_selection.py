"""`train.py --select`: settings chosen on inner folds of the training documents only, deterministically."""

from __future__ import annotations

import json

import numpy as np
import pytest
from synthetic import make_features_dataset, save_tiny_encoders
from test_training import HEAD, experiment_data, settings

from hilbert_app.training import experiment, selection
from hilbert_app.training.data import fold_splits
from modeling_hilbert import HilbertConfig


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
    space = {"dropout": (0.0, 0.3), "weight_decay": (None,), "alignment": ("on", "off")}
    monkeypatch.setattr(selection, "SEARCH_SPACE", space)
    calls = []
    original = experiment.train_run

    def spy(data_, head, switches, train_indices, test_indices, *args, **kwargs):
        calls.append(
            (
                np.asarray(train_indices).copy(),
                None if test_indices is None else np.asarray(test_indices).copy(),
                head["dropout"],
                {k: {**head, **switches}.get(k, getattr(HilbertConfig, k)) for k in selection.ALIGNMENT_TERMS},
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
    points = selection.candidates(space, weight_decay=0.01)
    assert [(p["dropout"], p["alignment"]) for p in points] == [(0.0, "on"), (0.0, "off"), (0.3, "on"), (0.3, "off")]
    assert folds >= 2 and len(inner) == 4 * folds  # every point on every inner fold
    for p, point in enumerate(points):
        validated = []
        for inner_train, inner_val, dropout, weights in inner[p * folds : (p + 1) * folds]:
            assert dropout == point["dropout"]
            if point["alignment"] == "off":  # every alignment term off for that run, the head's weights otherwise
                assert weights == dict.fromkeys(selection.ALIGNMENT_TERMS, 0.0)
            else:
                assert weights == {k: getattr(HilbertConfig, k) for k in weights} and any(weights.values())
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
    for point in selection.candidates(space, weight_decay=run.weight_decay):
        per_epoch = {}
        for k in range(folds):
            folder = tmp_path / "a" / "select" / selection.point_name(point) / f"inner{k}"
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
        "alignment": point["alignment"],
        "num_train_epochs": -neg_epoch,
    }
    assert final[2] == point["dropout"]
    assert (final[3] == dict.fromkeys(selection.ALIGNMENT_TERMS, 0.0)) == (point["alignment"] == "off")
    saved = json.loads((tmp_path / "a" / "run_result.json").read_text())
    assert saved["selection"] == json.loads(json.dumps(record))

    _, second = selection.train_selected_run(data, HEAD, {}, train, test, 0, tmp_path / "b", run)
    assert second["selection"] == record
    np.testing.assert_allclose(
        second["predictions"]["label"]["probabilities"], first["predictions"]["label"]["probabilities"]
    )


def test_the_alignment_choice_is_offered_only_where_there_are_terms_to_turn_off():
    """A unimodal head, concat + MLP (every weight 0) and a variant that pins the terms on train the "on" points
    only; turning them off zeroes the three weights and a two-stage warm-up, and strips the selection-only key."""
    head = {"dual_contrastive_weight": 1.0, "cka_weight": 0.5, "mi_weight": 0.1}
    assert experiment.has_alignment_terms(head) and experiment.has_alignment_terms({})  # config defaults
    assert not experiment.has_alignment_terms({**head, "modalities": "audio"})
    assert not experiment.has_alignment_terms({**head, **experiment.VARIANTS["concat + MLP"]})
    assert experiment.has_alignment_terms({**head, "cka_weight": 0.0})
    # A config and the dict of its fields give the same answer (one function for selection and training).
    for switches in ({}, {"modalities": "text"}, experiment.VARIANTS["concat + MLP"], {"mi_weight": 0.0}):
        merged = {**head, **switches}
        config = HilbertConfig(**{k: v for k, v in merged.items() if k not in experiment.SELECTION_ONLY_SWITCHES})
        assert experiment.has_alignment_terms(config) == experiment.has_alignment_terms(merged), switches
    assert [p["alignment"] for p in selection.candidates(alignment_choice=False)] == ["on", "on"]
    assert [p["alignment"] for p in selection.candidates()] == ["on", "off", "on", "off"]
    pinned = experiment.VARIANTS["HILBERT (alignment always on)"]
    assert pinned == {selection.ALIGNMENT_SEARCH: False}
    assert selection.point_switches(pinned, {"alignment": "on"}) == {}
    off = selection.point_switches({"alignment_warmup_epochs": 3.0, "cka_weight": 0.2}, {"alignment": "off"})
    assert off == {**dict.fromkeys(selection.ALIGNMENT_TERMS, 0.0), "alignment_warmup_epochs": 0.0}
    assert selection.point_name({"dropout": 0.1, "weight_decay": 0.05, "alignment": "on"}) == "dropout0.1-wd0.05"
    off_point = {"dropout": 0.1, "weight_decay": 0.05, "alignment": "off"}
    assert selection.point_name(off_point) == "dropout0.1-wd0.05-noalign"
