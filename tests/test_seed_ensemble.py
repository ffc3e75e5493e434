"""benchmarks/seed_ensemble.py: the seed-ensemble diagnostic of a train.py output folder, against sklearn."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
SPEC = importlib.util.spec_from_file_location("seed_ensemble", REPO / "benchmarks" / "seed_ensemble.py")
seed_ensemble = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(seed_ensemble)

CLASSES = ["calm", "angry", "sad"]


def macro_auc(y, p):
    return float(np.mean([roc_auc_score(y == k, p[:, k]) for k in range(p.shape[1]) if 0 < (y == k).sum() < len(y)]))


def write_run(folder: Path, index, labels, probs):
    folder.mkdir(parents=True)
    result = {
        "tasks": {"label": {"type": "multiclass", "class_names": CLASSES, "macro_auc": macro_auc(labels, probs)}},
        "predictions": {"label": {"index": index, "labels": labels.tolist(), "probabilities": probs.tolist()}},
    }
    (folder / "run_result.json").write_text(json.dumps(result), encoding="utf-8")


@pytest.fixture
def output_dir(tmp_path):
    """Two variants ("HILBERT w/o MoE" makes a subfolder, as train.py's does), 2 folds x 3 seeds, random scores;
    the documents of a run are stored out of order (the diagnostic must align them by index)."""
    rng = np.random.default_rng(0)
    truth = {}
    for variant in ("HILBERT", "HILBERT_w/o_MoE"):
        for fold in range(2):
            index = np.arange(fold * 9, fold * 9 + 9)
            labels = np.array([0, 1, 2] * 3)
            runs = []
            for seed in range(3):
                probs = rng.dirichlet(np.ones(3), size=9)
                runs.append(probs)
                order = rng.permutation(9)
                write_run(
                    tmp_path / "runs" / variant / f"fold{fold}-seed{seed}",
                    index[order].tolist(),
                    labels[order],
                    probs[order],
                )
            truth[(variant, fold)] = (labels, runs)
    # a selection run inside a fold is not an outer run
    write_run(tmp_path / "runs" / "HILBERT" / "fold0-seed0" / "select" / "c" / "inner0", [0, 1, 2], *truth_row())
    return tmp_path, truth


def truth_row():
    return np.array([0, 1, 2]), np.eye(3)


def test_single_and_ensemble_equal_sklearn_on_aligned_documents(output_dir, capsys):
    root, truth = output_dir
    out = root / "summary.json"
    assert seed_ensemble.main(["--output-dir", str(root), "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {"HILBERT", "HILBERT w/o MoE"}
    for variant, folder in (("HILBERT", "HILBERT"), ("HILBERT w/o MoE", "HILBERT_w/o_MoE")):
        singles, ensembles = [], []
        for fold in range(2):
            labels, runs = truth[(folder, fold)]
            singles.append(np.mean([macro_auc(labels, p) for p in runs]))
            ensembles.append(macro_auc(labels, np.mean(runs, axis=0)))
        got = results[variant]
        assert got["single"] == pytest.approx(np.mean(singles), abs=1e-12)
        assert got["ensemble"] == pytest.approx(np.mean(ensembles), abs=1e-12)
        assert got["gain_mean"] == pytest.approx(np.mean(np.subtract(ensembles, singles)), abs=1e-12)
        assert [f["seeds"] for f in got["folds"]] == [3, 3]
    assert "| HILBERT w/o MoE | 2 |" in capsys.readouterr().out


def test_a_fold_with_one_seed_is_left_out_and_a_missing_folder_is_one_line(tmp_path):
    labels, probs = np.array([0, 1, 2]), np.eye(3)
    write_run(tmp_path / "runs" / "HILBERT" / "fold0-seed0", [0, 1, 2], labels, probs)
    assert seed_ensemble.seed_ensemble(seed_ensemble.load_runs(tmp_path / "runs" / "HILBERT", "label")) == {"folds": []}
    with pytest.raises(SystemExit):
        seed_ensemble.main(["--output-dir", str(tmp_path / "nowhere")])
