"""Data for training on cached segment features: tasks from label columns, batches, folds, class weights.

A features dataset (see `hilbert_app.features.extract`) holds one row per recording: `audio_features`
`[S, D_audio]`, `text_features` `[S, D_text]`, `audio_segment_mask`, `text_segment_mask` `[S]`, `segment_times`
`[S, 2]`, label columns (`label` and `label_<task>`, `ClassLabel`s), `group` and `fold`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from hilbert_app.folds import FoldError, assign_folds, check_fold_count, check_no_group_leakage, fold_label_problems
from modeling_hilbert.dropout_hilbert import document_key

logger = logging.getLogger(__name__)


def label_columns(dataset) -> dict[str, str]:
    """`{column: task name}` for the label columns of a dataset: `label` -> `label`, `label_<task>` -> `<task>`."""
    columns = {}
    for column in dataset.column_names:
        if column == "label":
            columns[column] = "label"
        elif column.startswith("label_"):
            columns[column] = column[len("label_") :]
    if not columns:
        raise ValueError(
            f"No label column in the dataset (expected 'label' or 'label_<task>'); columns: {dataset.column_names}."
        )
    return columns


def tasks_from_dataset(dataset, task_types: dict[str, str] | None = None) -> list[dict]:
    """HilbertConfig task definitions from the dataset's `ClassLabel` columns (multiclass unless told otherwise)."""
    task_types = task_types or {}
    tasks = []
    for column, name in label_columns(dataset).items():
        feature = dataset.features[column]
        names = getattr(feature, "names", None)
        if names is None:
            raise ValueError(
                f"Label column {column!r} is not a ClassLabel ({feature}); build the dataset with build_dataset.py."
            )
        tasks.append({"name": name, "type": task_types.get(name, "multiclass"), "labels": list(names)})
    unknown = set(task_types) - {t["name"] for t in tasks}
    if unknown:
        raise ValueError(f"--task-types names unknown tasks {sorted(unknown)}; tasks are {[t['name'] for t in tasks]}.")
    return tasks


def labelled_documents(dataset) -> np.ndarray:
    """`(N,)` bool: the documents with a label in at least one label column (a `ClassLabel` stores a missing label
    as -1, the `datasets` convention). The others are *unlabelled*: they take part in the label-free alignment terms
    (contrastive, CKA, MI) of training splits, never in a held-out fold, a class weight or a metric."""
    columns = list(label_columns(dataset))
    if not columns:
        return np.ones(len(dataset), dtype=bool)
    return np.any([np.asarray(dataset[column]) >= 0 for column in columns], axis=0)


def class_weights(labels: np.ndarray, num_classes: int, task_type: str = "multiclass") -> list[float]:
    """Class weights from the TRAINING split only.

    multiclass: inverse frequency w_c = N / (C * n_c), normalised to mean 1 over the classes present (a class
    absent from the training split gets weight 1: it cannot be learnt, but must not divide by zero).
    binary: one `pos_weight` = n_negative / n_positive (BCE convention).
    """
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    if task_type == "binary":
        positives, negatives = counts[1], counts[0]
        return [float(negatives / positives) if positives > 0 else 1.0]
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts[present].sum() / (present.sum() * counts[present])
    weights[present] /= weights[present].mean()
    return weights.tolist()


@dataclass
class FeaturesCollator:
    """Pads a list of feature rows to the longest document of the batch (see `collate_features`).

    Output keys are exactly `HilbertForSequenceClassification.forward`'s: `audio_segment_embeds` `(B, S, D_a)`,
    `text_segment_embeds` `(B, S, D_t)` (float32), the two segment masks `(B, S)` bool, `segment_times` `(B, S, 2)`,
    `labels`: a `(B,)` tensor for one task, `{task: (B,)}` for several, and `document_ids` `(B,)` int64.
    """

    label_columns: dict[str, str]  # {column: task}

    def __call__(self, rows: list[dict]) -> dict:
        from hilbert_app.features.store import collate_features

        if len(self.label_columns) == 1:
            batch = collate_features(rows, labels=next(iter(self.label_columns)))
        else:
            batch = collate_features(rows, labels={task: column for column, task in self.label_columns.items()})
        batch["labels"] = unlabelled_as_ignore(batch["labels"])
        if all("id" in row for row in rows):  # a plain Trainer drops the `id` column (no forward argument names it)
            batch["document_ids"] = document_ids(rows)
        return batch


def unlabelled_as_ignore(labels):
    """Missing labels (`ClassLabel`'s -1) as -100, the value every classification loss leaves out (`(B,)` tensors,
    or a `{task: (B,)}` dict)."""
    if isinstance(labels, dict):
        return {task: unlabelled_as_ignore(value) for task, value in labels.items()}
    return torch.where(labels < 0, torch.full_like(labels, -100), labels)


def document_ids(rows: list[dict]) -> torch.Tensor:
    """`(B,)` int64 stable keys of the rows' `id`s: per-document dropout masks and the repeats filter use them."""
    return torch.tensor([document_key(row["id"]) for row in rows], dtype=torch.long)


@dataclass
class RawDocumentsCollator:
    """For `--end-to-end` training: rows of a raw dataset (build_dataset.py) -> the processor's model inputs.

    Audio is decoded and processed on the fly every time a batch is drawn, and the frozen encoders run inside
    the model's forward: slow, but nothing is cached (use it to check that cached features lose nothing).

    Args:
        processor: a `HilbertProcessor`.
        label_columns: `{column: task}` as for `FeaturesCollator`.
        decode_audio: `(audio_struct, document_id) -> (waveform, sampling_rate)`.
    """

    processor: object
    label_columns: dict[str, str]
    decode_audio: Callable

    def __call__(self, rows: list[dict]) -> dict:
        documents = []
        for row in rows:
            waveform, rate = self.decode_audio(row["audio"], row["id"])
            documents.append({"audio": waveform, "sampling_rate": rate, "segments": row["segments"]})
        batch = dict(self.processor(documents, return_tensors="pt"))
        labels = {task: torch.tensor([int(row[column]) for row in rows]) for column, task in self.label_columns.items()}
        batch["labels"] = unlabelled_as_ignore(next(iter(labels.values())) if len(labels) == 1 else labels)
        batch["document_ids"] = document_ids(rows)
        return batch


def fold_splits(
    dataset, num_folds: int, seed: int = 0, fold_column: str = "fold"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """`[(train_indices, test_indices)]` for grouped, stratified K-fold cross-validation.

    Unlabelled documents (no label in any column, `labelled_documents`) are in the training indices of every split
    whose held-out fold is not theirs, and in no test indices (nothing to score); their folds keep groups apart.

    Uses the dataset's own `fold` column when it has exactly `num_folds` folds (so every tool sees the same
    splits); otherwise assigns folds with `StratifiedGroupKFold` on the `label` column and the `group` column.
    Either way it checks that no group appears in two folds and raises if one does (leakage).

    Label checks, for every label column (see `fold_label_problems`): a training split with a single class
    raises `FoldError` (nothing to learn to tell apart); a class present in a held-out fold but absent from its
    training split, or a held-out fold with a single class, is logged as a warning and handled downstream (the
    absent class gets class weight 1; metrics leave classes without positives/negatives out of the macro averages
    and list them).
    """
    check_fold_count(num_folds, "--folds")
    groups = np.asarray(dataset["group"])
    if fold_column in dataset.column_names and len(set(dataset[fold_column])) == num_folds:
        folds = np.asarray(dataset[fold_column])
    else:
        primary = next(iter(label_columns(dataset)))
        labels = [None if value < 0 else value for value in dataset[primary]]
        folds = np.asarray(assign_folds(labels, groups.tolist(), num_folds, seed, option="--folds"))
    check_no_group_leakage(groups, folds)
    labelled = labelled_documents(dataset)
    splits = [(np.where(folds != k)[0], np.where((folds == k) & labelled)[0]) for k in sorted(set(folds.tolist()))]
    for column in label_columns(dataset):
        names = getattr(dataset.features[column], "names", None)
        fatal, warnings = fold_label_problems(np.asarray(dataset[column]), splits, names, column)
        if fatal:
            raise FoldError("Cannot train on these folds:\n  - " + "\n  - ".join(fatal))
        for warning in warnings:
            logger.warning(warning)
    return splits


def balanced_sample_weights(labels: np.ndarray) -> np.ndarray:
    """Per-item sampling weights: every class is drawn equally often in expectation (weight ∝ 1 / n_class), and the
    unlabelled items (< 0) as often as without balancing, so that they keep their share of the batches (they
    serve the alignment terms): labelled items share the mass n_labelled / N, each unlabelled item weighs 1 / N."""
    labels = np.asarray(labels)
    labelled = labels >= 0
    if not labelled.any():
        return np.full(len(labels), 1.0 / len(labels))
    counts = np.bincount(labels[labelled])
    per_class = np.where(labelled, 1.0 / counts[np.clip(labels, 0, None)], 0.0)
    weights = per_class / per_class.sum() * (labelled.sum() / len(labels))
    weights[~labelled] = 1.0 / len(labels)
    return weights / weights.sum()
