"""Grouped, stratified cross-validation folds: one assignment and one set of checks for the builder and training.

`assign_folds` gives each row its held-out fold with no group (participant, session) in two folds;
`check_no_group_leakage` refuses a fold column that splits a group; `fold_label_problems` finds splits a classifier
cannot learn from. Every refusal is a `FoldError` that says what to do.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from hilbert_app.errors import UserError


class FoldError(UserError):
    """The documents cannot be split into the requested grouped, stratified folds (the message says what to do)."""


def _advice(option: str) -> str:
    return f"use fewer folds ({option}), add recordings from more groups, or merge rare classes."


def check_fold_count(k, option: str = "--folds") -> None:
    """Refuse a fold count that is not an integer >= 2."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise FoldError(f"Cross-validation needs at least 2 folds, got {k!r} ({option}).")


def assign_folds(labels: Sequence, groups: Sequence, k: int, seed: int, *, option: str = "--folds") -> list[int]:
    """Grouped, stratified K-fold: each row's held-out fold (0..k-1); no group spans two folds.

    Uses `StratifiedGroupKFold(k, shuffle=True, random_state=seed)` on `labels` (the stratification target). A label
    None is an unlabelled document: the unlabelled ones are spread over the folds as one more stratum, which is not
    held to the per-class minimum below (they are never scored).
    Raises `FoldError` when the split cannot give every fold every class: k < 2, fewer groups than folds, or a class
    with fewer groups than folds (with imbalanced classes, the usual failure: the message names the classes).
    `option` names the command-line option that sets k, for the message.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_fold_count(k, option)
    unlabelled = "\x00unlabelled"  # cannot clash with a class name read from a file
    labels, groups = [unlabelled if x is None else str(x) for x in labels], [str(g) for g in groups]
    distinct = sorted(set(groups))
    if len(distinct) < k:
        sample = f"{distinct[:5]}{' ...' if len(distinct) > 5 else ''}"
        raise FoldError(
            f"{k} folds need at least {k} groups, but the documents have {len(distinct)} ({sample}): a "
            f"group (participant) is never split across folds, so a held-out fold would be empty; "
            f"{_advice(option)} If each recording is in fact independent, give each its own group."
        )
    groups_per_class: dict[str, set[str]] = defaultdict(set)
    for label, group in zip(labels, groups):
        groups_per_class[label].add(group)
    rare = sorted((len(g), c) for c, g in groups_per_class.items() if len(g) < k and c != unlabelled)
    if rare:
        classes = "; ".join(f"class {c!r} has only {n} group(s), fewer than the {k} folds" for n, c in rare)
        raise FoldError(
            f"Cannot assign {k} stratified folds: {classes}, so some fold would have none of it; {_advice(option)}"
        )
    splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    fold_of = np.full(len(labels), -1)
    for fold, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), np.asarray(labels), np.asarray(groups))):
        fold_of[test] = fold
    empty = sorted(set(range(k)) - set(fold_of.tolist()))
    if empty:  # not expected once the checks above pass, but never write an empty fold silently
        raise FoldError(f"Cannot assign folds: fold(s) {empty} received no documents; {_advice(option)}")
    return fold_of.tolist()


def check_no_group_leakage(groups: np.ndarray, folds: np.ndarray) -> None:
    """Raise `FoldError` if any group (participant) has recordings in more than one fold."""
    groups, folds = np.asarray(groups), np.asarray(folds)
    leaked = {}
    for group in np.unique(groups):
        in_folds = sorted(set(folds[groups == group].tolist()))
        if len(in_folds) > 1:
            leaked[str(group)] = in_folds
    if leaked:
        sample = dict(list(leaked.items())[:5])
        raise FoldError(
            f"{len(leaked)} group(s) appear in several folds (e.g. {sample}): test folds would leak participants. "
            "Rebuild the folds with build_dataset.py (grouped) or pass --folds with a fold count that the dataset does "
            "not have."
        )


def fold_label_problems(
    labels: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    names: list[str] | None = None,
    column: str = "label",
) -> tuple[list[str], list[str]]:
    """Label problems of cross-validation splits -> `(fatal, warnings)`, each a list of sentences.

    fatal: a training split whose labelled items are all one class (a classifier cannot learn from it).
    warnings: a class that occurs in a held-out fold but not in its training split (the model cannot have learnt
    it; it gets class weight 1, and its recall there will likely be 0), and a held-out fold with a single class
    (its ROC-AUC/AUPRC are undefined: NaN, left out of the mean, never 0.5). Unlabelled items (< 0) are ignored.
    """
    labels = np.asarray(labels)

    def name(c: int) -> str:
        return repr(names[c]) if names is not None and 0 <= c < len(names) else str(c)

    fatal, warnings = [], []
    for k, (train, test) in enumerate(splits):
        train_classes = set(labels[train][labels[train] >= 0].tolist())
        test_classes = set(labels[test][labels[test] >= 0].tolist())
        if len(train_classes) == 1:
            fatal.append(
                f"{column!r}, fold {k}: every training document has class {name(next(iter(train_classes)))}. Use fewer "
                "folds (--folds), add documents of the other classes, or rebuild the folds with build_dataset.py "
                "(stratified)."
            )
        unseen = sorted(test_classes - train_classes)
        if unseen and train_classes:
            warnings.append(
                f"{column!r}, fold {k}: class(es) {', '.join(name(c) for c in unseen)} occur in the held-out fold but "
                "not in its training split; the model cannot have learnt them (their recall will likely be 0). Use "
                "fewer folds or add documents of those classes from more groups."
            )
        if len(test_classes) == 1:
            warnings.append(
                f"{column!r}, fold {k}: the held-out fold holds only class {name(next(iter(test_classes)))}; its "
                f"ROC-AUC "
                "and AUPRC are undefined (NaN, left out of the mean over runs)."
            )
    return fatal, warnings
