"""hilbert_app/training/metrics.py and plots.py: every metric against scikit-learn (computed independently here) and
against values worked out by hand on small cases, the edge cases of imbalanced evaluation sets, the Trainer hook,
the summary over runs, and the plots' files."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from transformers import EvalPrediction

from hilbert_app.training.metrics import (
    compute_metrics_fn,
    probabilities,
    stored_probabilities,
    summarize_runs,
    task_metrics,
)
from hilbert_app.training.plots import (
    plot_confusion_matrix,
    plot_loss_curves,
    plot_results_table,
    plot_roc_curves,
)

MC = {"name": "emotion", "type": "multiclass", "id2label": {0: "calm", 1: "angry", 2: "sad"}}
BIN = {"name": "deceptive", "type": "binary", "id2label": {"0": "truthful", "1": "deceptive"}}  # JSON-style keys
ML = {"name": "topics", "type": "multilabel", "labels": ["politics", "sport", "music"]}

# 3-class case, rows sum to 1. Argmax predictions: [0, 1, 1, 0, 2, 2]; last row is unlabelled (-100).
MC_PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.5, 0.1],
        [0.3, 0.6, 0.1],
        [0.5, 0.3, 0.2],
        [0.2, 0.2, 0.6],
        [0.1, 0.3, 0.6],
        [0.0, 0.0, 1.0],  # ignored
    ]
)
MC_LABELS = np.array([0, 0, 1, 1, 2, 2, -100])


def plain(obj) -> bool:
    """Only Python builtins (no numpy scalars/arrays) all the way down."""
    if isinstance(obj, dict):
        return all(isinstance(k, str) and plain(v) for k, v in obj.items())
    if isinstance(obj, list):
        return all(plain(v) for v in obj)
    return type(obj) in (int, float, str, bool) or obj is None


def nan_equal(a, b) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, abs=1e-12)


# ------------------------------------------------------------------------------------------- probabilities
def test_probabilities_softmax_sigmoid_and_binary_two_columns():
    logits = torch.tensor([[1.0, 2.0, -1.0], [0.0, 0.0, 0.0]])
    p = probabilities(logits, "multiclass")
    ref = torch.softmax(logits.double(), dim=-1).numpy()
    np.testing.assert_allclose(p, ref, rtol=1e-12)
    b = probabilities(np.array([[0.0], [2.0], [-40.0]]), "binary")
    s = 1 / (1 + np.exp(-np.array([0.0, 2.0, -40.0])))
    np.testing.assert_allclose(b, np.stack([1 - s, s], 1), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(probabilities(torch.tensor([0.0, 2.0, -40.0]).bfloat16(), "binary")[:, 1], s, rtol=1e-2)
    m = probabilities(torch.tensor([[0.0, 3.0]]), "multilabel")
    np.testing.assert_allclose(m, 1 / (1 + np.exp(-np.array([[0.0, 3.0]]))), rtol=1e-7)
    with pytest.raises(ValueError, match="one sigmoid logit"):
        probabilities(np.zeros((4, 2)), "binary")


# ------------------------------------------------------------------------------------------------ multiclass
def test_multiclass_against_hand_values_and_sklearn():
    r = task_metrics(MC_LABELS, MC_PROBS, MC)
    y, p = MC_LABELS[:6], MC_PROBS[:6]
    pred = p.argmax(1)
    assert r["num_examples"] == 6 and r["num_unlabelled"] == 1
    # By hand, one-vs-rest, counting positive-over-negative pairs (ties 1/2), 2 x 4 = 8 pairs per class:
    # calm: 0.7 beats all 4, 0.4 beats 3 of {0.3, 0.5, 0.2, 0.1} -> 7/8
    # angry: 0.6 beats all of {0.2, 0.5, 0.2, 0.3}; 0.3 beats 0.2, 0.2, ties 0.3 -> 6.5/8
    # sad: {0.6, 0.6} above {0.1, 0.1, 0.1, 0.2} -> 1
    assert r["auc"] == pytest.approx({"calm": 7 / 8, "angry": 6.5 / 8, "sad": 1.0})
    assert r["macro_auc"] == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)
    assert r["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    # AP by hand: calm ranks P, N, P -> 1*(1/2) + 2/3*(1/2); angry ranks P, N, {P, N tie} -> 1/2 + 1/2*1/2
    assert r["average_precision"] == pytest.approx({"calm": 5 / 6, "angry": 0.75, "sad": 1.0})
    onehot = np.eye(3)[y]
    assert r["macro_auprc"] == pytest.approx(average_precision_score(onehot, p, average="macro"))
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert r["balanced_accuracy"] == pytest.approx(2 / 3)
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["macro_f1"] == pytest.approx(2 / 3)
    prec, rec, f1, sup = precision_recall_fscore_support(y, pred, labels=[0, 1, 2], zero_division=0)
    names = ["calm", "angry", "sad"]
    assert r["precision"] == pytest.approx(dict(zip(names, prec)))
    assert r["precision"] == pytest.approx({"calm": 0.5, "angry": 0.5, "sad": 1.0})
    assert r["recall"] == pytest.approx(dict(zip(names, rec)))
    assert r["f1"] == pytest.approx(dict(zip(names, f1)))
    assert r["support"] == dict(zip(names, sup.tolist())) == {"calm": 2, "angry": 2, "sad": 2}
    assert (
        r["confusion_matrix"]
        == confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
        == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    )
    assert r["classes_without_positives"] == [] and r["warnings"] == []
    assert plain(r)
    json.dumps(r)


def test_multiclass_imbalanced_random_against_sklearn():
    rng = np.random.default_rng(0)
    y = rng.choice(4, size=60, p=[0.7, 0.2, 0.07, 0.03])
    y[:4] = [0, 1, 2, 3]  # every class present
    logits = rng.standard_normal((60, 4)) + 1.5 * np.eye(4)[y]
    p = probabilities(logits, "multiclass")
    task = {"name": "t", "type": "multiclass", "labels": list("abcd")}
    r = task_metrics(y, p, task)
    pred = p.argmax(1)
    assert r["macro_auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"), abs=1e-12)
    assert r["macro_auprc"] == pytest.approx(average_precision_score(np.eye(4)[y], p, average="macro"), abs=1e-12)
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0), abs=1e-12)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    assert r["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert r["confusion_matrix"] == confusion_matrix(y, pred, labels=range(4)).tolist()


def test_class_absent_from_evaluation_set_is_recorded_and_excluded_from_macro_auc():
    task = {"name": "t", "type": "multiclass", "labels": ["a", "b", "c", "d"]}
    rng = np.random.default_rng(1)
    y = np.array([0, 0, 0, 1, 1, 3, 0, 1, -100])  # "c" never occurs
    p = probabilities(rng.standard_normal((9, 4)), "multiclass")
    r = task_metrics(y, p, task)
    keep = y != -100
    yk, pk = y[keep], p[keep]
    per_class = {c: roc_auc_score(yk == k, pk[:, k]) for k, c in enumerate("abcd") if c != "c"}
    assert r["classes_without_positives"] == ["c"]
    assert math.isnan(r["auc"]["c"]) and math.isnan(r["average_precision"]["c"])
    assert r["macro_auc"] == pytest.approx(np.mean(list(per_class.values())), abs=1e-12)
    ap = [average_precision_score(yk == k, pk[:, k]) for k in (0, 1, 3)]
    assert r["macro_auprc"] == pytest.approx(np.mean(ap), abs=1e-12)
    assert any("'c'" in w and "macro_auc" in w for w in r["warnings"])
    # threshold metrics still follow scikit-learn (balanced accuracy over the classes present)
    pred = pk.argmax(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yk, pred), abs=1e-12)
        assert r["macro_f1"] == pytest.approx(f1_score(yk, pred, average="macro", zero_division=0), abs=1e-12)
    assert r["support"]["c"] == 0
    json.dumps(r)


def test_class_absent_from_labels_and_predictions_has_nan_f1_excluded_from_macro():
    task = {"name": "t", "type": "multiclass", "labels": ["a", "b", "c"]}
    y = np.array([0, 0, 1, 1])
    p = np.array([[0.9, 0.05, 0.05], [0.3, 0.6, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])  # "c" never predicted
    r = task_metrics(y, p, task)
    pred = p.argmax(1)
    assert math.isnan(r["f1"]["c"]) and math.isnan(r["precision"]["c"]) and math.isnan(r["recall"]["c"])
    assert r["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert r["macro_f1"] == pytest.approx(0.5)
    assert any("neither" in w for w in r["warnings"])


def test_single_class_evaluation_set_gives_nan_auc_and_a_warning():
    y = np.array([1, 1, 1, -100])
    p = MC_PROBS[:4]
    r = task_metrics(y, p, MC)
    assert math.isnan(r["macro_auc"]) and math.isnan(r["macro_auprc"])
    assert r["classes_without_negatives"] == ["angry"]
    assert r["classes_without_positives"] == ["calm", "sad"]
    assert any("only class 'angry'" in w for w in r["warnings"])
    # predictions [calm, angry, angry]: 2 of 3 right; balanced accuracy = recall of the one class present
    assert r["accuracy"] == pytest.approx(2 / 3) and r["balanced_accuracy"] == pytest.approx(2 / 3)
    s = json.dumps(r)  # NaN is allowed in the output
    assert "NaN" in s
    # binary, one class only: same, never 0.5
    rb = task_metrics(np.array([0, 0, 0]), np.array([0.1, 0.7, 0.2]), BIN)
    assert math.isnan(rb["macro_auc"]) and rb["warnings"]


def test_no_labelled_items_is_all_nan_not_a_crash():
    r = task_metrics(np.array([-100, -100]), MC_PROBS[:2], MC)
    assert r["num_examples"] == 0 and all(math.isnan(r[m]) for m in ("macro_auc", "macro_f1", "accuracy"))
    assert r["confusion_matrix"] == [[0, 0, 0]] * 3 and r["warnings"]
    json.dumps(r)


def test_invalid_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="class ids"):
        task_metrics(np.array([0, 3]), MC_PROBS[:2], MC)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        task_metrics(np.array([0, 1]), MC_PROBS[:2, :2], MC)
    with pytest.raises(ValueError, match="non-finite"):
        task_metrics(np.array([0, 1]), np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.5]]), MC)


# ------------------------------------------------------------------------------------------------ binary
def test_binary_from_single_logit_against_hand_values_and_sklearn():
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0], [1.0], [7.0]])
    y = np.array([1, 1, 0, 0, 0, -100])
    p = probabilities(logits, "binary")
    assert p.shape == (6, 2)
    r = task_metrics(y, p, BIN)
    yk, s, lk = y[:5], p[:5, 1], logits[:5, 0].numpy()
    # positives {2, -1} vs negatives {0.5, -3, 1}: 2 beats 3, -1 beats 1 -> 4/6
    assert r["macro_auc"] == pytest.approx(4 / 6)
    assert r["macro_auc"] == pytest.approx(roc_auc_score(yk, lk))
    assert list(r["auc"]) == ["deceptive"]
    assert r["macro_auprc"] == pytest.approx(average_precision_score(yk, s))
    pred = (s > 0.5).astype(int)  # logit > 0: [1, 0, 1, 0, 1]
    assert r["confusion_matrix"] == confusion_matrix(yk, pred).tolist() == [[1, 2], [1, 1]]
    assert r["accuracy"] == pytest.approx(accuracy_score(yk, pred))
    assert r["accuracy"] == pytest.approx(2 / 5)
    assert r["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(yk, pred))
    assert r["balanced_accuracy"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert r["macro_f1"] == pytest.approx(f1_score(yk, pred, average="macro"))
    prec, rec, f1, sup = precision_recall_fscore_support(yk, pred, labels=[0, 1], zero_division=0)
    assert r["precision"] == pytest.approx({"truthful": prec[0], "deceptive": prec[1]})
    assert r["recall"] == pytest.approx({"truthful": rec[0], "deceptive": rec[1]})
    assert r["f1"] == pytest.approx({"truthful": f1[0], "deceptive": f1[1]})
    assert r["support"] == {"truthful": 3, "deceptive": 2}
    # p alone, (N,) or (N, 1), gives the same result
    r1 = task_metrics(y, p[:, 1], BIN)
    assert r1["macro_auc"] == r["macro_auc"] and r1["confusion_matrix"] == r["confusion_matrix"]


# ------------------------------------------------------------------------------------------------ multilabel
def test_multilabel_against_sklearn_with_ignored_row():
    y = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 1], [-100, -100, -100], [1, -1, 0]])
    logits = np.array(
        [
            [2.0, -1.0, -2.0],
            [-0.5, 1.0, 0.3],
            [0.4, -0.2, -1.0],
            [-1.0, -2.0, 0.8],
            [0.1, 0.9, -0.4],
            [1.2, 0.5, 1.5],
            [9.0, 9.0, 9.0],
            [9.0, 9.0, 9.0],
        ]
    )
    p = probabilities(logits, "multilabel")
    r = task_metrics(y, p, ML)
    yk, pk = y[:6], p[:6]
    pred = (pk > 0.5).astype(int)
    assert r["num_examples"] == 6 and r["num_unlabelled"] == 2
    assert r["macro_auc"] == pytest.approx(roc_auc_score(yk, pk, average="macro"))
    assert r["macro_auprc"] == pytest.approx(average_precision_score(yk, pk, average="macro"))
    assert r["macro_f1"] == pytest.approx(f1_score(yk, pred, average="macro", zero_division=0))
    assert r["accuracy"] == pytest.approx(accuracy_score(yk, pred))  # subset accuracy
    assert r["balanced_accuracy"] == pytest.approx(
        np.mean([balanced_accuracy_score(yk[:, k], pred[:, k]) for k in range(3)])
    )
    assert r["confusion_matrix"] == multilabel_confusion_matrix(yk, pred).tolist()
    prec, rec, f1, sup = precision_recall_fscore_support(yk, pred, zero_division=0)
    assert r["precision"] == pytest.approx(dict(zip(ML["labels"], prec)))
    assert r["recall"] == pytest.approx(dict(zip(ML["labels"], rec)))
    assert r["f1"] == pytest.approx(dict(zip(ML["labels"], f1)))
    assert r["support"] == dict(zip(ML["labels"], sup.tolist())) == {"politics": 3, "sport": 3, "music": 3}
    json.dumps(r)


def test_multilabel_label_without_positives_or_negatives():
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1]])  # "sport" never positive, "music" always positive
    p = np.array([[0.8, 0.1, 0.6], [0.3, 0.2, 0.4], [0.6, 0.7, 0.9]])
    r = task_metrics(y, p, ML)
    assert r["classes_without_positives"] == ["sport"] and r["classes_without_negatives"] == ["music"]
    assert r["macro_auc"] == pytest.approx(roc_auc_score(y[:, 0], p[:, 0]))
    assert math.isnan(r["auc"]["sport"]) and math.isnan(r["auc"]["music"])
    assert r["warnings"]
    pred = (p > 0.5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert r["balanced_accuracy"] == pytest.approx(
            np.mean([balanced_accuracy_score(y[:, k], pred[:, k]) for k in range(3)])
        )


# ------------------------------------------------------------------------------------------------ Trainer hook
def test_compute_metrics_fn_with_dict_predictions_and_labels():
    bin_logits = np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0], [0.0], [3.0]])
    bin_labels = np.array([1, 1, 0, 0, 0, -100, 1])
    fn = compute_metrics_fn([MC, BIN, ML])
    # Trainer's predictions: (logits dict, other outputs...); the multilabel task is not labelled here
    pred = EvalPrediction(
        predictions=(
            {"emotion": np.log(MC_PROBS + 1e-9), "deceptive": bin_logits, "topics": np.zeros((7, 3))},
            np.ones(7),
        ),
        label_ids={"emotion": MC_LABELS, "deceptive": bin_labels},
    )
    flat = fn(pred)
    assert set(flat) == {
        f"{t}/{m}"
        for t in ("emotion", "deceptive")
        for m in ("macro_auc", "macro_f1", "balanced_accuracy", "macro_auprc", "accuracy")
    }
    assert all(type(v) is float for v in flat.values())
    ref = task_metrics(bin_labels, probabilities(bin_logits, "binary"), BIN)
    assert flat["deceptive/macro_auc"] == ref["macro_auc"]
    assert flat["emotion/macro_auc"] == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)
    assert set(fn.last_full) == {"emotion", "deceptive"}
    assert fn.last_full["emotion"]["confusion_matrix"] == [[1, 1, 0], [1, 1, 0], [0, 0, 2]]
    json.dumps(fn.last_full)


def test_compute_metrics_fn_single_task_arrays():
    fn = compute_metrics_fn([MC])
    flat = fn(EvalPrediction(predictions=np.log(MC_PROBS + 1e-9), label_ids=MC_LABELS))
    assert flat["emotion/accuracy"] == pytest.approx(4 / 6)
    assert flat["emotion/macro_auc"] == pytest.approx((7 / 8 + 6.5 / 8 + 1) / 3)
    with pytest.raises(ValueError, match="dict"):
        compute_metrics_fn([MC, BIN])(EvalPrediction(predictions=MC_PROBS, label_ids=MC_LABELS))


# ------------------------------------------------------------------------------------------------ runs
def test_summarize_runs_mean_std_nan_and_order():
    runs = [
        {"emotion": {"macro_auc": 0.8, "macro_f1": 0.5, "f1": {"calm": 0.1}}, "deceptive": {"macro_auc": 0.6}},
        {"emotion": {"macro_auc": 0.9, "macro_f1": float("nan")}, "deceptive": {"macro_auc": 0.7}},
        {"emotion/macro_auc": 0.7, "emotion/macro_f1": 0.3},  # flat form; "deceptive" missing in this run
    ]
    s = summarize_runs(runs)
    auc = s["emotion"]["macro_auc"]
    assert auc["folds"] == [0.8, 0.9, 0.7] and auc["n"] == 3
    assert auc["mean"] == pytest.approx(np.mean([0.8, 0.9, 0.7])) and auc["std"] == pytest.approx(
        np.std([0.8, 0.9, 0.7])
    )
    f1 = s["emotion"]["macro_f1"]
    assert f1["n"] == 2 and math.isnan(f1["folds"][1]) and f1["folds"][::2] == [0.5, 0.3]
    assert f1["mean"] == pytest.approx(0.4) and f1["std"] == pytest.approx(np.std([0.5, 0.3]))
    dec = s["deceptive"]["macro_auc"]
    assert dec["n"] == 2 and math.isnan(dec["folds"][2]) and dec["std"] == pytest.approx(0.05)
    assert "f1" not in s["emotion"]
    # straight from task_metrics results
    s2 = summarize_runs([{"emotion": task_metrics(MC_LABELS, MC_PROBS, MC)}] * 2)
    assert s2["emotion"]["accuracy"]["std"] == 0.0 and s2["emotion"]["num_examples"]["mean"] == 6.0


# ------------------------------------------------------------------------------------------------ plots
def is_png(path) -> bool:
    path = Path(path)
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    assert is_png(plot_roc_curves(MC_LABELS, MC_PROBS, MC, tmp_path / "roc.png"))
    bin_p = probabilities(np.array([[2.0], [-1.0], [0.5], [-3.0], [1.0]]), "binary")
    assert is_png(plot_roc_curves(np.array([1, 1, 0, 0, 0]), bin_p, BIN, tmp_path / "roc_bin.png"))
    ml_y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 0]])
    ml_p = np.array([[0.8, 0.1, 0.6], [0.3, 0.2, 0.4], [0.6, 0.7, 0.9]])
    assert is_png(plot_roc_curves(ml_y, ml_p, ML, tmp_path / "roc_ml.png"))
    assert is_png(plot_confusion_matrix(MC_LABELS, MC_PROBS, MC, tmp_path / "cm.png"))
    assert is_png(plot_confusion_matrix(MC_LABELS, MC_PROBS, MC, tmp_path / "cm_counts.png", normalize=False))
    assert is_png(plot_confusion_matrix(ml_y, ml_p, ML, tmp_path / "cm_ml.png"))
    history = []
    for step in range(10, 110, 10):
        history.append(
            {
                "step": step,
                "epoch": step / 50,
                "loss": 2.0 / step**0.3,
                "classification_loss": 1.5 / step**0.3,
                "contrastive_loss": 0.5,
                "cka_loss": 0.1,
                "temperature": 0.07,
                "learning_rate": 1e-4,
            }
        )
        if step % 50 == 0:
            history.append(
                {
                    "step": step,
                    "eval_loss": 2.2 / step**0.3,
                    "eval_classification_loss": 1.6 / step**0.3,
                    "eval_emotion/macro_auc": 0.7,
                }
            )
    history.append({"step": 100, "train_loss": 0.9, "train_runtime": 12.0})
    assert is_png(plot_loss_curves(history, tmp_path / "loss.png"))
    results = {
        "HILBERT": summarize_runs(
            [{"emotion": {"macro_auc": v}, "deceptive": {"macro_auc": v - 0.1}} for v in (0.8, 0.85, 0.9)]
        ),
        "audio only": summarize_runs(
            [{"emotion": {"macro_auc": v}, "deceptive": {"macro_auc": v}} for v in (0.6, 0.7, 0.65)]
        ),
        "no CKA": {"emotion": {"macro_auc": {"mean": 0.75, "std": 0.02}}},  # a task missing: "n/a"
    }
    assert is_png(plot_results_table(results, "macro_auc", tmp_path / "table.png"))


def test_stored_probabilities_reproduce_the_run_metrics():
    """A confident model's small probabilities keep their order when stored: rounding them to 6 decimals (what
    run_result.json held before) made 1e-7 and 3e-7 both 0.0, and the macro-AUC recomputed from the file differed
    from the reported one (a hard-demo run: 0.900 reported, 0.856 from its file)."""
    task = {"name": "label", "type": "multiclass", "id2label": {0: "a", 1: "b", 2: "c"}}
    labels = np.array([0, 0, 1, 1, 2, 2, 1, 0])
    # class 2's column: the positives' scores are tiny but above every negative's, so its AUC is 1.0
    logits = np.array(
        [[9, 0, -12], [8, 1, -13], [0, 9, -14], [1, 8, -15], [0, 12, -2], [12, 0, -3], [0, 9, -18], [9, 0, -19]],
        dtype=np.float64,
    )
    probs = probabilities(logits, "multiclass")
    stored = np.asarray(json.loads(json.dumps(stored_probabilities(probs))))
    np.testing.assert_array_equal(stored, probs)  # float64 round-trips through JSON exactly
    reported = task_metrics(labels, probs, task)["macro_auc"]
    assert task_metrics(labels, stored, task)["macro_auc"] == reported
    expected = np.mean([roc_auc_score(labels == c, probs[:, c]) for c in range(3)])
    assert reported == pytest.approx(expected, abs=1e-12)
    # the old storage loses it: the rounded file gives a different macro-AUC
    assert task_metrics(labels, probs.round(6), task)["macro_auc"] != pytest.approx(reported, abs=1e-3)
