"""The report's paired differences, against a direct computation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hilbert_app.training.report import paired_differences


def runs(values, seeds=(0, 1)):
    out, i = [], 0
    for seed in seeds:
        for fold in range(len(values) // len(seeds)):
            out.append({"fold": fold, "seed": seed, "tasks": {"label": {"macro_auc": values[i]}}})
            i += 1
    return {"runs": out}


def test_paired_differences_match_fold_and_seed_and_skip_undefined_pairs():
    main = [0.9, 0.8, 0.7, 0.6]
    other = [0.8, 0.85, float("nan"), 0.5]
    results = {"HILBERT": runs(main), "LR": runs(other)}
    results["LR"]["runs"].reverse()  # order must not matter: pairs are matched by (fold, seed)
    got = paired_differences(results, "HILBERT", "label")["LR"]
    diffs = np.array([0.9 - 0.8, 0.8 - 0.85, 0.6 - 0.5])
    assert got["n"] == 3 and got["wins"] == 2 and got["ties"] == 0
    level = paired_differences({"HILBERT": runs([1.0, 1.0, 0.9, 1.0]), "MLP": runs([1.0] * 4)}, "HILBERT", "label")
    assert (level["MLP"]["wins"], level["MLP"]["ties"], level["MLP"]["n"]) == (0, 3, 4)
    assert got["mean"] == pytest.approx(diffs.mean()) and got["std"] == pytest.approx(diffs.std())
    assert math.isnan(
        paired_differences({"HILBERT": runs(main), "X": runs([math.nan] * 4)}, "HILBERT", "label")["X"]["mean"]
    )
