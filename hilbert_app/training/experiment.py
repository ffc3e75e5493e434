"""Cross-validated experiments: variants x folds x seeds, each one `HilbertTrainer` run, summarised honestly.

One *run* trains a model on the training folds and predicts the held-out fold once, at the end: no early
stopping and no checkpoint selection on the held-out fold (its per-epoch loss is logged for the curves only).
Class weights come from the run's training folds only. Every run writes `run_result.json` in its folder, so an
interrupted experiment restarted with the same command skips finished runs and resumes the interrupted one from
its last checkpoint -- but only for the same data, splits and settings: each run records its provenance (a sha256
of all of them, `run_provenance`) in `provenance.json` before it trains and in `run_result.json`, and a folder
holding another experiment's run is refused (`check_reusable`).
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
from transformers import PrinterCallback, set_seed

from hilbert_app.errors import UserError
from hilbert_app.safe_write import atomic_write_text
from hilbert_app.training.data import FeaturesCollator, class_weights, label_columns, labelled_documents
from hilbert_app.training.metrics import (
    compute_metrics_fn,
    probabilities,
    stored_probabilities,
    summarize_runs,
    task_metrics,
)
from hilbert_app.training.run_settings import (  # noqa: F401  (LR_SCHEDULERS: re-exported)
    LR_SCHEDULERS,
    SELECTION_ONLY,
    TRAINER_LEGACY_DEFAULTS,
    RunSettings,
)
from hilbert_app.training.trainer import HilbertTrainer, last_complete_checkpoint
from modeling_hilbert import HilbertConfig, HilbertForSequenceClassification
from modeling_hilbert.configuration_hilbert import LEGACY_DEFAULTS

# Variant switches that are not HilbertConfig fields but tell `--select` what to search (selection.py).
SELECTION_ONLY_SWITCHES = ("alignment_search",)
# The baseline and ablation table: each variant is a set of HilbertConfig switches over the user's head settings.
VARIANTS: dict[str, dict] = {
    "audio-only": {"modalities": "audio"},
    "text-only": {"modalities": "text"},
    "concat + MLP": {
        "fusion": "concat",
        "classifier": "mlp",
        "dual_contrastive_weight": 0.0,
        "cka_weight": 0.0,
        "mi_weight": 0.0,
    },
    # Ablations of the alignment terms keep them on (selection could otherwise turn them all off).
    "direct audio-text contrast": {"contrastive_target": "audio_text", "alignment_search": False},
    "HILBERT w/o CKA": {"cka_weight": 0.0, "alignment_search": False},
    "HILBERT w/o MI": {"mi_weight": 0.0, "alignment_search": False},
    "HILBERT w/o MoE": {"classifier": "mlp"},
    # Small-data methods (issue 16), each its own row; a default changes only where its row helps.
    "HILBERT + mean-init pooling": {"pooling_mean_init": True},
    "HILBERT + segment dropout": {"segment_dropout": 0.2},
    "HILBERT + mean-init + segment dropout": {"pooling_mean_init": True, "segment_dropout": 0.2},
    "HILBERT + two-stage (3 alignment epochs)": {"alignment_warmup_epochs": 3.0, "alignment_search": False},
    # More negatives than a batch of 8: every other training document held (memory_hilbert.py); alignment kept on.
    "HILBERT + contrastive memory": {"contrastive_memory_size": 1024, "alignment_search": False},
    # The logistic-regression baseline inside the model: linear logits on the standardised mean-pooled features.
    "HILBERT + linear shortcut": {"linear_shortcut": True},
    # Three remedies for a fused head that leaves one modality underused (docs/results.md, round 5), off by default.
    # A linear classifier on each stream's embedding, trained beside the fused one (gradient blending's unimodal
    # heads): each stream must carry its own modality's evidence.
    "HILBERT + unimodal losses": {"unimodal_loss_weight": 1.0},
    # z_a and z_t pooled from each modality's own stream, the cross-attended streams forming only the joint.
    "HILBERT + own-stream embeddings": {"modality_embeddings": "own_stream"},
    # An always-on expert beside the routed ones: what every document needs is learnt from all, not per expert.
    "HILBERT + shared expert": {"moe_shared_expert": True},
    # The cost of the alignment terms, which --select may otherwise turn off, and of the gate on cross-attention.
    "HILBERT (alignment always on)": {"alignment_search": False},
    "HILBERT w/o cross-attention gate": {"cross_attention_gate": False},
    "HILBERT": {},
}
MAIN_VARIANT = "HILBERT"


@dataclass
class ExperimentData:
    """The features split, its tasks and the encoder configs the heads are built for."""

    dataset: object  # datasets.Dataset
    tasks: list[dict]
    audio_config: object
    text_config: object
    encoder_sources: dict | None = None
    audio_mode: str = "exact"
    # End-to-end training only: the frozen encoders (shared by every run: they never change) and the collator
    # that turns raw rows into encoder inputs. None: a head-only model on cached features.
    encoders: dict | None = None
    collator: object = None

    @property
    def label_columns(self) -> dict[str, str]:
        return label_columns(self.dataset)

    @cached_property
    def labelled(self) -> np.ndarray:
        """`(N,)` bool, the documents with a label in some column (`data.labelled_documents`). Computed once: every
        run of an experiment asks, and it reads every label column of the dataset."""
        return labelled_documents(self.dataset)

    def labels(self, task: str) -> np.ndarray:
        column = next(c for c, t in self.label_columns.items() if t == task)
        return np.asarray(self.dataset[column])


ALIGNMENT_TERMS = ("dual_contrastive_weight", "cka_weight", "mi_weight")


def has_alignment_terms(settings: HilbertConfig | Mapping) -> bool:
    """Whether a head's loss has a label-free term (contrastive, CKA, MI): multimodal, and one of their weights > 0.

    Such a head is the only one that unlabelled documents can feed, and the only one whose terms selection can turn
    off. `settings`: a HilbertConfig, or a dict of its fields (a head's settings merged with a variant's switches),
    where what is not set takes HilbertConfig's default.
    """

    def value(name: str):
        if isinstance(settings, Mapping):
            return settings.get(name, getattr(HilbertConfig, name))
        return getattr(settings, name)

    return value("modalities") == "both" and any(float(value(k) or 0) > 0 for k in ALIGNMENT_TERMS)


def build_head_config(
    data: ExperimentData, head: dict, switches: dict, train_indices: np.ndarray, settings: RunSettings
) -> HilbertConfig:
    """A head-only HilbertConfig for one run, with class weights from the run's training documents."""
    tasks = []
    for task in data.tasks:
        task = dict(task)
        if settings.class_weighting and task["type"] in ("multiclass", "binary"):
            task["class_weights"] = class_weights(
                data.labels(task["name"])[train_indices], len(task["labels"]), task["type"]
            )
        tasks.append(task)
    return HilbertConfig(
        audio_config=data.audio_config,
        text_config=data.text_config,
        encoder_sources=data.encoder_sources,
        with_encoders=data.encoders is not None,
        audio_mode=data.audio_mode,
        tasks=tasks,
        **{**head, **{k: v for k, v in switches.items() if k not in SELECTION_ONLY_SWITCHES}},
    )


def train_run(
    data: ExperimentData,
    head: dict,
    switches: dict,
    train_indices: np.ndarray,
    test_indices: np.ndarray | None,
    seed: int,
    run_dir: Path,
    settings: RunSettings,
    is_main_process: Callable[[], bool] = lambda: True,
    callbacks: list | None = None,
    provenance: dict | None = None,
    schedule_epochs: float | None = None,
) -> tuple[HilbertTrainer, dict | None]:
    """Train one model; predict the held-out documents once at the end. Returns the trainer and the result.

    `provenance` (from `run_provenance`) is stored in `run_result.json`, so that the result is reused only for the
    same features, splits and settings. `schedule_epochs`: lay the learning-rate schedule out over that many epochs
    and stop after `settings.num_train_epochs` (`HilbertTrainer`; --select's retraining)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config = build_head_config(data, head, switches, train_indices, settings)
    if not has_alignment_terms(config):  # they would only dilute its batches: nothing in its loss uses them
        train_indices = np.asarray(train_indices)[data.labelled[np.asarray(train_indices)]]
    set_seed(seed)
    encoders = data.encoders or {}
    model = HilbertForSequenceClassification(
        config, audio_encoder=encoders.get("audio"), text_encoder=encoders.get("text")
    )
    train_set = data.dataset.select(train_indices)
    test_set = data.dataset.select(test_indices) if test_indices is not None else None
    primary = data.labels(data.tasks[0]["name"])[train_indices]
    trainer = HilbertTrainer(
        model=model,
        args=settings.training_arguments(run_dir, seed, evaluate=test_set is not None),
        train_dataset=train_set,
        eval_dataset=test_set,
        ema_decay=settings.ema_decay,
        schedule_epochs=schedule_epochs,
        data_collator=data.collator or FeaturesCollator(data.label_columns),
        compute_metrics=compute_metrics_fn(config.tasks),
        balanced_sampling_labels=primary if settings.balanced_sampling else None,
        callbacks=callbacks,
    )
    # The experiment prints one line per run; Trainer's printer would add a dict per logging step.
    trainer.remove_callback(PrinterCallback)
    # Only a checkpoint saved whole (a kill may have cut the last one short); half-written ones are removed.
    checkpoint = last_complete_checkpoint(run_dir, remove_incomplete=is_main_process())
    trainer.train(resume_from_checkpoint=checkpoint)
    if test_set is None:
        return trainer, None
    prediction = trainer.predict(test_set, metric_key_prefix="test")
    logits = prediction.predictions
    labels = prediction.label_ids
    if not isinstance(labels, dict):
        labels = {config.tasks[0]["name"]: labels}
    result = {"tasks": {}, "predictions": {}, "log_history": trainer.state.log_history, "seed": seed}
    if provenance is not None:
        result["provenance"] = provenance
    for task in config.tasks:
        probs = probabilities(logits[task["name"]], task["type"])
        result["tasks"][task["name"]] = task_metrics(
            labels[task["name"]], probs, task, train_labels=data.labels(task["name"])[train_indices]
        )
        result["predictions"][task["name"]] = {
            "index": [int(i) for i in test_indices],
            "labels": np.asarray(labels[task["name"]]).tolist(),
            "probabilities": stored_probabilities(probs),
        }
    if is_main_process():
        atomic_write_json(run_dir / "run_result.json", result)
        # The run is complete: its checkpoints are no longer needed for resuming.
        for checkpoint_dir in run_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return trainer, result


def run_variant(
    data: ExperimentData,
    head: dict,
    switches: dict,
    splits: list[tuple[np.ndarray, np.ndarray]],
    seeds: list[int],
    variant_dir: Path,
    settings: RunSettings,
    is_main_process: Callable[[], bool] = lambda: True,
    wait_for_everyone: Callable[[], None] = lambda: None,
    progress: Callable[[str], None] = print,
    data_key: str | None = None,
) -> dict:
    """Every fold x seed of one variant. Returns `{"summary": {task: {metric: {mean, std, folds, n}}}, "runs": [...]}`.

    A run whose folder already holds a finished result (or an interrupted run's checkpoints) is reused only when it
    was made from the same data, splits and settings (`run_provenance`; `data_key` identifies the data, e.g. the
    features' fingerprint); anything else raises `UserError` naming what differs (`check_reusable`).
    """
    runs = []
    for seed in seeds:
        for fold, (train_indices, test_indices) in enumerate(splits):
            run_dir = variant_dir / f"fold{fold}-seed{seed}"
            provenance = run_provenance(data, head, switches, train_indices, test_indices, seed, settings, data_key)
            check_reusable(run_dir, provenance, variant_dir.parent.parent)
            finished = run_dir / "run_result.json"
            if finished.exists():
                result = json.loads(finished.read_text())
                progress(f"  fold {fold} seed {seed}: done earlier (skipped)")
            else:
                if is_main_process():
                    atomic_write_json(run_dir / PROVENANCE_NAME, provenance)  # before any checkpoint
                _, result = run_training(settings)(
                    data,
                    head,
                    switches,
                    train_indices,
                    test_indices,
                    seed,
                    run_dir,
                    settings,
                    is_main_process,
                    provenance=provenance,
                )
                wait_for_everyone()
                scores = "  ".join(f"{t}/macro_auc {m['macro_auc']:.3f}" for t, m in result["tasks"].items())
                progress(f"  fold {fold} seed {seed}: {scores}")
            result.update(fold=fold, seed=seed)
            runs.append(result)
    summary = summarize_runs([{task: metrics for task, metrics in run["tasks"].items()} for run in runs])
    return {"summary": summary, "runs": runs}


def check_variant_reusable(
    data: ExperimentData,
    head: dict,
    switches: dict,
    splits,
    seeds: list[int],
    variant_dir: Path,
    settings: RunSettings,
    data_key: str | None,
) -> None:
    """`check_reusable` for every fold x seed of a variant, as `run_variant` names their folders: called for every
    variant before any training, so that a mismatch stops the experiment before it costs anything."""
    for seed in seeds:
        for fold, (train_indices, test_indices) in enumerate(splits):
            provenance = run_provenance(data, head, switches, train_indices, test_indices, seed, settings, data_key)
            check_reusable(variant_dir / f"fold{fold}-seed{seed}", provenance, variant_dir.parent.parent)


# -------------------------------------------------------------------------------------- provenance of a run
PROVENANCE_NAME = "provenance.json"  # written before a run trains: its checkpoints are then checked too
PROVENANCE_VERSION = 3  # 2: selection on every inner fold; feature standardisation. 3: alignment on/off searched, gate
# Trainer settings that cannot change a result (where logs go, progress bars): left out of the provenance.
NOT_PROVENANCE = ("report_to", "no_progress")


def _sha256(value) -> str:
    """sha256 of a canonical JSON (sorted keys, no spaces): equal values, equal keys, on any machine."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _documents_key(data: ExperimentData, indices) -> str | None:
    """sha256 of the ids and labels of these documents, in order: the same split of the same corpus, or not."""
    if indices is None:
        return None
    columns = ["id", *data.label_columns] if "id" in data.dataset.column_names else list(data.label_columns)
    rows = data.dataset.select_columns(columns).select([int(i) for i in indices]).to_dict()
    return _sha256([rows[c] for c in columns])


def run_provenance(
    data: ExperimentData,
    head: dict,
    switches: dict,
    train_indices,
    test_indices,
    seed: int,
    settings: RunSettings,
    data_key: str | None,
) -> dict:
    """What a run's result depends on, and its `key`: the sha256 of a canonical JSON of all of it.

    Parts: `data` (`data_key`: the features' fingerprint or the raw dataset's identity), the documents (ids and
    labels) of the training and the held-out split, the tasks, the head settings with the variant's switches, the
    trainer settings (all of `RunSettings` but logging destinations) and the seed.
    """
    parts = {
        "version": PROVENANCE_VERSION,
        "data": data_key,
        "train_documents": _documents_key(data, train_indices),
        "test_documents": _documents_key(data, test_indices),
        "tasks": data.tasks,
        "head": {**head, **switches},
        "trainer": {
            f.name: getattr(settings, f.name)
            for f in fields(RunSettings)
            if f.name not in NOT_PROVENANCE and (settings.select or f.name not in SELECTION_ONLY)
        },
        "seed": int(seed),
    }
    parts = json.loads(json.dumps(parts, default=_json_default))  # numpy values and tuples as plain JSON
    return {"key": _sha256(parts), **parts}


_PART_NAMES = {
    "data": "the data (another features dataset, other encoders or another raw dataset)",
    "train_documents": "the documents of the training split (another corpus, or other folds)",
    "test_documents": "the documents of the held-out split (another corpus, or other folds)",
    "version": "the provenance format (a run made by another version of HILBERT)",
}


def _differences(saved: dict, now: dict) -> list[str]:
    out = []
    for part in ("version", "data", "train_documents", "test_documents", "tasks", "head", "trainer", "seed"):
        if saved.get(part) == now.get(part):
            continue
        if part in _PART_NAMES:
            out.append(_PART_NAMES[part])
        elif isinstance(now.get(part), dict) and isinstance(saved.get(part), dict):
            keys = sorted(k for k in set(saved[part]) | set(now[part]) if saved[part].get(k) != now[part].get(k))
            reproducing = _reproducing_values().get(part, {})
            out.append(
                f"{part} settings "
                + ", ".join(
                    f"{k} {_recorded(saved[part], k, reproducing)} then, {json.dumps(now[part].get(k))} now"
                    for k in keys[:6]
                )
            )
        else:
            out.append(f"{part}: {json.dumps(saved.get(part))[:80]} then, {json.dumps(now.get(part))[:80]} now")
    return out


def _recorded(saved: dict, key: str, reproducing: dict) -> str:
    """How a difference's recorded side reads: its value, or for a setting the run predates, what it ran as."""
    if key in saved or key not in reproducing:
        return json.dumps(saved.get(key))
    return f"not recorded (the run predates the setting: as {json.dumps(reproducing[key])})"


def _reproducing_values() -> dict[str, dict]:
    """Per provenance part, the value of each setting that reproduces a run recorded before the setting existed."""
    return {
        "head": {n: LEGACY_DEFAULTS.get(n, spec["default"]) for n, spec in HilbertConfig.head_settings().items()},
        "trainer": {
            f.name: TRAINER_LEGACY_DEFAULTS.get(f.name, f.default)
            for f in fields(RunSettings)
            if f.default is not MISSING
        },
    }


def _same_run(saved: dict, provenance: dict) -> bool:
    """Whether a recorded provenance is this run's: the same key, or the same once the settings that HILBERT added
    after the run was recorded are left out -- but only those set to the value that reproduces the model the run
    trained. Head settings: `LEGACY_DEFAULTS`, else the default (e.g. `linear_shortcut` False); trainer settings:
    `TRAINER_LEGACY_DEFAULTS` (a selected run retrained before `refit_schedule` existed: "rescaled"), else the
    `RunSettings` default (e.g. `ema_decay` 0, off). A newer release must not make every finished run unusable;
    a setting whose value changes the model (the gate, once its default changed) still makes it another run."""
    if saved.get("key") == provenance["key"]:
        return True
    if saved.get("version") != provenance.get("version"):
        return False
    reproducing = _reproducing_values()
    parts = {k: v for k, v in provenance.items() if k != "key"}
    left_out = False
    for part, values in reproducing.items():
        recorded, now = saved.get(part), provenance.get(part) or {}
        if not isinstance(recorded, dict):
            return False
        added = [n for n, v in now.items() if n not in recorded and n in values and v == values[n]]
        if added:
            parts[part] = {k: v for k, v in now.items() if k not in added}
            left_out = True
    return left_out and _sha256(parts) == saved.get("key")


def check_reusable(run_dir: Path, provenance: dict, output_dir: Path | None = None) -> None:
    """Refuse (`UserError`) a run folder whose finished result or checkpoints were made for another run.

    A folder with neither is new. A result or checkpoints with no provenance (made before HILBERT recorded it)
    cannot be matched and are refused too: reusing them could mix two experiments silently.
    """
    finished = run_dir / "run_result.json"
    if finished.is_file():
        saved, what = json.loads(finished.read_text()).get("provenance"), "the finished run"
    elif (run_dir / PROVENANCE_NAME).is_file():
        saved, what = json.loads((run_dir / PROVENANCE_NAME).read_text()), "the interrupted run"
    elif any(run_dir.glob("checkpoint-*")):
        saved, what = None, "the interrupted run"
    else:
        return
    if saved is not None and _same_run(saved, provenance):
        return
    if saved is None:
        why = "it records no provenance (made by an earlier version of HILBERT), so it cannot be matched to this run"
    else:
        why = "it differs in " + "; ".join(_differences(saved, provenance))
    raise UserError(
        f"{run_dir} holds {what} of another experiment: {why}. Reusing it would mix two experiments. Pass "
        f"--overwrite to discard the earlier runs of {output_dir or run_dir} and train them again, or choose another "
        "--output-dir."
    )


def run_training(settings: RunSettings) -> Callable:
    """`train_run`, or with `settings.select` its inner-split selection wrapper (`selection.train_selected_run`)."""
    if getattr(settings, "select", False):
        from hilbert_app.training.selection import train_selected_run

        return train_selected_run
    return train_run


def atomic_write_json(path: Path, value) -> None:
    """Write JSON to a temporary file and rename it: a crash never leaves a truncated file behind."""
    atomic_write_text(path, json.dumps(value, indent=2, default=_json_default, allow_nan=True))


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, float) and math.isnan(value):
        return None
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
