"""Unlabelled documents (a label column's -1): they feed the label-free alignment terms of training splits and
nothing else -- no held-out fold, class weight, metric, inner validation part or logistic regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from synthetic import make_features_dataset, save_tiny_encoders
from test_training import HEAD, TRAIN_ARGS, experiment_data, run_train, settings

from hilbert_app.folds import FoldError, assign_folds
from hilbert_app.training import experiment, linear_baseline, selection
from hilbert_app.training.data import (
    FeaturesCollator,
    balanced_sample_weights,
    class_weights,
    fold_splits,
    labelled_documents,
)

UNLABELLED = 8  # of 32 documents


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    encoders = save_tiny_encoders(tmp_path_factory.mktemp("encoders"))
    path = tmp_path_factory.mktemp("features") / "features"
    return make_features_dataset(path, *encoders, documents=32, groups=16, unlabelled=UNLABELLED)


@pytest.fixture(scope="module")
def data(features):
    return experiment_data(features)


def test_unlabelled_documents_train_in_every_split_but_their_own_and_are_never_held_out(data):
    labelled = labelled_documents(data.dataset)
    assert int((~labelled).sum()) == UNLABELLED
    folds = np.asarray(data.dataset["fold"])
    for k, (train, test) in enumerate(fold_splits(data.dataset, 3)):
        assert labelled[test].all(), "an unlabelled document in a held-out fold"
        assert set(np.where(~labelled & (folds != k))[0]) <= set(train)
        assert not set(np.where(folds == k)[0]) & set(train)  # their own fold's unlabelled ones sit it out


def test_new_folds_spread_unlabelled_documents_without_the_per_class_minimum():
    labels = ["a"] * 6 + ["b"] * 6 + [None] * 2  # 2 unlabelled groups, fewer than the 3 folds: fine
    groups = [f"g{i}" for i in range(14)]
    folds = assign_folds(labels, groups, 3, seed=0)
    assert sorted(set(folds)) == [0, 1, 2]
    assert len({folds[12], folds[13]}) == 2  # stratified: the two unlabelled documents in two folds
    with pytest.raises(FoldError, match="'b' has only 2"):  # a real class still needs a group per fold
        assign_folds(["a"] * 6 + ["b"] * 2 + [None] * 6, groups, 3, seed=0)


def test_collator_gives_the_losses_minus_100_for_a_missing_label(data):
    rows = [data.dataset[i] for i in range(len(data.dataset) - 3, len(data.dataset))] + [data.dataset[0]]
    batch = FeaturesCollator(data.label_columns)(rows)
    assert batch["labels"][:3].tolist() == [-100] * 3 and batch["labels"][3] >= 0


def test_class_weights_and_balanced_sampling_count_labelled_documents_only():
    labels = np.array([0, 0, 0, 1, -1, -1])
    assert class_weights(labels, 2) == pytest.approx(class_weights(labels[:4], 2))
    w = balanced_sample_weights(labels)
    # the two classes draw equal mass, together the labelled share 4/6; each unlabelled item 1/6
    assert w[:3].sum() == pytest.approx(w[3]) and w[:4].sum() == pytest.approx(4 / 6)
    assert w[4] == pytest.approx(1 / 6) and w[5] == pytest.approx(1 / 6)
    assert balanced_sample_weights(np.array([-1, -1])) == pytest.approx([0.5, 0.5])


def test_heads_with_alignment_terms_train_on_unlabelled_documents_and_the_others_do_not(data, tmp_path):
    train, test = fold_splits(data.dataset, 3)[0]
    labelled = labelled_documents(data.dataset)
    assert (~labelled[train]).sum() > 0
    run = settings(num_train_epochs=1)
    hilbert, result = experiment.train_run(data, HEAD, {}, train, test, 0, tmp_path / "h", run)
    assert len(hilbert.train_dataset) == len(train)
    assert result["tasks"]["label"]["num_unlabelled"] == 0  # the held-out fold is labelled
    assert np.isfinite(result["tasks"]["label"]["macro_auc"])
    concat = experiment.VARIANTS["concat + MLP"]
    mlp, _ = experiment.train_run(data, HEAD, concat, train, test, 0, tmp_path / "c", run)
    assert len(mlp.train_dataset) == int(labelled[train].sum())


def test_an_all_unlabelled_batch_trains_the_alignment_terms_alone(data):
    from modeling_hilbert import HilbertForSequenceClassification

    rows = [data.dataset[i] for i in range(len(data.dataset) - 4, len(data.dataset))]
    batch = FeaturesCollator(data.label_columns)(rows)
    config = experiment.build_head_config(data, HEAD, {}, np.arange(len(data.dataset)), settings())
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).train()
    out = model(**batch)
    assert out.classification_loss.item() == 0.0
    expected = config.dual_contrastive_weight * out.contrastive_loss + config.cka_weight * out.cka_loss
    expected = expected + config.mi_weight * out.mi_loss + config.moe_balance_weight * out.moe_balance_loss
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    out.loss.backward()
    assert model.hilbert.joint_contrastive_projection.weight.grad.abs().sum() > 0


def test_selection_validates_on_labelled_documents_only(data, tmp_path, monkeypatch):
    monkeypatch.setattr(selection, "SEARCH_SPACE", {"dropout": (0.0,), "weight_decay": (None,), "alignment": ("on",)})
    calls = []
    original = experiment.train_run

    def spy(data_, head, switches, train_indices, test_indices, *args, **kwargs):
        calls.append((np.asarray(train_indices).copy(), None if test_indices is None else np.asarray(test_indices)))
        return original(data_, head, switches, train_indices, test_indices, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_run", spy)
    labelled = labelled_documents(data.dataset)
    groups = np.asarray(data.dataset["group"])
    train, test = fold_splits(data.dataset, 3)[0]
    selection.train_selected_run(data, HEAD, {}, train, test, 0, tmp_path, settings(num_train_epochs=1))
    *inner, _ = calls
    used = set()
    for inner_train, inner_val in inner:
        assert labelled[inner_val].all() and len(inner_val)
        assert not set(groups[inner_train]) & set(groups[inner_val])
        used |= set(inner_train[~labelled[inner_train]])
    assert used == set(train[~labelled[train]])  # every unlabelled training document serves some inner fold


def test_the_logistic_regression_never_sees_unlabelled_documents(data):
    """Their features are replaced by noise twice: the predictions cannot change if they are not used."""
    labels = {"label": np.asarray(data.dataset["label"])}
    groups = np.asarray(data.dataset["group"])
    train, test = fold_splits(data.dataset, 3)[1]
    features = linear_baseline.mean_pooled_features(data.dataset, ("audio", "text"))
    unlabelled = ~labelled_documents(data.dataset)
    results = []
    for seed in (1, 2):
        noisy = features.copy()
        noisy[unlabelled] = np.random.default_rng(seed).standard_normal((int(unlabelled.sum()), features.shape[1]))
        results.append(linear_baseline.linear_run(noisy, labels, groups, data.tasks, train, test, 0))
    assert results[0]["predictions"] == results[1]["predictions"]
    assert results[0]["selection"] == results[1]["selection"]


@pytest.mark.slow
def test_train_py_with_unlabelled_documents_reports_them_and_scores_the_labelled(features, tmp_path):
    import json

    out = tmp_path / "out"
    run = run_train(
        [
            "--features",
            str(features),
            "--output-dir",
            str(out),
            *TRAIN_ARGS,
            "--variants",
            "mean-pooled audio+text + LR,HILBERT",
            "--no_final_model",
        ]
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    assert f"{UNLABELLED} of them unlabelled" in run.stdout
    metrics = json.loads((out / "baselines.json").read_text())
    labelled = 32 - UNLABELLED
    for variant in ("mean-pooled audio+text + LR", "HILBERT"):
        assert len(metrics[variant]["label"]["macro_auc"]["folds"]) == 3
    runs = sorted((out / "runs" / "HILBERT").glob("fold*-seed0/run_result.json"))
    scored = sum(len(json.loads(p.read_text())["predictions"]["label"]["index"]) for p in runs)
    assert scored == labelled


def test_rows_without_alignment_terms_give_the_results_of_a_dataset_without_the_unlabelled(data, tmp_path, monkeypatch):
    """concat + MLP and the LR use no label-free term: with --select, on the same labelled documents and folds,
    their predictions must be exactly those of the dataset with the unlabelled documents removed (their inner
    folds too), so that a comparison of HILBERT with and without unlabelled documents changes HILBERT alone."""
    import dataclasses

    monkeypatch.setattr(
        selection, "SEARCH_SPACE", {"dropout": (0.0, 0.3), "weight_decay": (None,), "alignment": ("on",)}
    )
    labelled = labelled_documents(data.dataset)
    only = dataclasses.replace(data, dataset=data.dataset.select(np.where(labelled)[0]))
    concat = experiment.VARIANTS["concat + MLP"]
    seen = []
    original = experiment.train_run

    def spy(data_, head, switches, train_indices, *args, **kwargs):
        seen.append(labelled_documents(data_.dataset)[np.asarray(train_indices)].all())
        return original(data_, head, switches, train_indices, *args, **kwargs)

    monkeypatch.setattr(experiment, "train_run", spy)
    predictions = []
    for which, d in (("all", data), ("labelled", only)):
        train, test = fold_splits(d.dataset, 3)[0]
        _, result = selection.train_selected_run(
            d, HEAD, concat, train, test, 0, tmp_path / which, settings(num_train_epochs=2)
        )
        ids = np.asarray(d.dataset["id"])
        p = result["predictions"]["label"]
        predictions.append(dict(zip(ids[p["index"]].tolist(), p["probabilities"])))
    assert predictions[0] == predictions[1]
    inner_runs = [ok for ok in seen[: len(seen) // 2 - 1]]  # the first dataset's inner runs (its final run last)
    assert inner_runs and all(inner_runs), "inner folds of a head without alignment terms held unlabelled documents"
