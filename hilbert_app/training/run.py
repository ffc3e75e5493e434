"""The experiment behind `train.py`: cross-validated runs of every variant, the report, the final model, the push.

`run(data_args, head_args, args)` takes the parsed arguments of `hilbert_app.cli.train` (whose docstring lists what
is written where). One run at a time per output folder: the main process holds `OUTPUT_DIR/.hilbert-lock`
(`hilbert_app.output_lock`) while it works, so a second run into the same folder stops at once. Earlier runs in the
folder are reused only when their provenance (data, splits, settings) matches (`experiment.check_reusable`);
`--overwrite` discards them first.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from transformers import AutoConfig
from transformers.utils import logging as transformers_logging

from hilbert_app.encoders import check_encoder, encoder_provenance, resolve_encoder
from hilbert_app.features.store import check_fingerprint, load_features
from hilbert_app.hub import check_push_visibility, hub_url
from hilbert_app.output_lock import LOCK_NAME, lock_output
from hilbert_app.safe_write import TMP_PREFIX, move_into, remove_stale_temporaries
from hilbert_app.training.data import fold_splits, tasks_from_dataset
from hilbert_app.training.experiment import (
    MAIN_VARIANT,
    PROVENANCE_NAME,
    VARIANTS,
    ExperimentData,
    atomic_write_json,
    check_reusable,
    check_variant_reusable,
    run_provenance,
    run_training,
    run_variant,
)
from hilbert_app.training.linear_baseline import LINEAR_VARIANTS, run_linear_variant
from hilbert_app.training.model_card import render_model_card
from hilbert_app.training.report import write_report
from hilbert_app.training.settings import DataArguments, ExperimentArguments, HeadArguments
from modeling_hilbert import __version__
from modeling_hilbert.encoders_hilbert import load_pretrained_encoder


def features_experiment(data_args: DataArguments, task_types) -> tuple[ExperimentData, dict]:
    """Head-only training on cached features: encoder configs and provenance from the features' fingerprint."""
    features, metadata = load_features(data_args.features)
    split = features["train"] if "train" in features else next(iter(features.values()))
    sources = metadata["encoders"]
    configs = {
        key: AutoConfig.from_pretrained(check_encoder(source["name_or_path"], f"the features' {key} encoder"))
        for key, source in sources.items()
    }
    data = ExperimentData(
        dataset=split,
        tasks=tasks_from_dataset(split, task_types),
        audio_config=configs["audio"],
        text_config=configs["text"],
        encoder_sources=sources,
        audio_mode=(metadata.get("processor") or {}).get("audio_mode", "exact"),
    )
    return data, metadata


def end_to_end_experiment(data_args: DataArguments, task_types) -> tuple[ExperimentData, dict]:
    """Training from raw audio and transcripts: the frozen encoders run in every step (no cache)."""
    import datasets

    from hilbert_app.features.extract import decode_audio
    from hilbert_app.training.data import RawDocumentsCollator, label_columns
    from modeling_hilbert.processing_hilbert import HilbertProcessor

    raw = (
        datasets.load_from_disk(data_args.dataset)
        if Path(data_args.dataset).is_dir()
        else datasets.load_dataset(data_args.dataset)
    )
    split = raw["train"] if "train" in raw else next(iter(raw.values()))
    names = {"audio": data_args.audio_encoder, "text": data_args.text_encoder}
    encoders = {key: load_pretrained_encoder(check_encoder(name, f"--{key}-encoder")) for key, name in names.items()}
    sources = {key: encoder_provenance(names[key], enc) for key, enc in encoders.items()}
    options = {"audio_mode": data_args.audio_mode}
    processor = HilbertProcessor.from_encoders_pretrained(
        resolve_encoder(names["audio"]), resolve_encoder(names["text"]), **options
    )
    data = ExperimentData(
        dataset=split,
        tasks=tasks_from_dataset(split, task_types),
        audio_config=encoders["audio"].config,
        text_config=encoders["text"].config,
        encoder_sources=sources,
        audio_mode=data_args.audio_mode,
        encoders=encoders,
        collator=RawDocumentsCollator(processor, label_columns(split), decode_audio),
    )
    return data, {"encoders": sources, "processor": options}


def load_encoders(metadata: dict) -> dict:
    """Load the encoders named in the features' fingerprint; refuse them (FeatureFingerprintError) if their weights
    are not the ones the features were extracted with (e.g. a Hub id that has moved on since)."""
    encoders, actual = {}, {}
    for key, source in metadata["encoders"].items():
        name = source["name_or_path"]
        encoders[key] = load_pretrained_encoder(check_encoder(name, f"the features' {key} encoder"))
        actual[key] = encoder_provenance(name, encoders[key], revision=source.get("revision"))
    check_fingerprint(metadata, actual)
    return encoders


def run(data_args: DataArguments, head_args: HeadArguments, args: ExperimentArguments) -> int:
    """The experiment: cross-validated runs of every variant, the report, then the final model."""
    transformers_logging.disable_progress_bar()  # one "Writing model shards" bar per checkpoint is noise here
    state = PartialState(cpu=not torch.cuda.is_available())  # without a GPU, --multi_gpu then forms a gloo group
    if args.num_threads or (not args.end_to_end and not torch.cuda.is_available()):
        torch.set_num_threads(args.num_threads or 1)

    def say(message: str) -> None:
        if state.is_main_process:
            print(message, flush=True)

    started = time.time()
    output_dir = Path(args.output_dir)
    # One run at a time per folder: the main process holds the lock until the end; the other processes work under it.
    lock = lock_output(output_dir, "--output-dir") if state.is_main_process else None
    try:
        return _run(data_args, head_args, args, state, say, started, output_dir)
    finally:
        if lock is not None:
            lock.release()


def _discard_earlier_runs(output_dir: Path, say) -> None:
    """--overwrite: the earlier runs (results, checkpoints, provenance) go; the rest is rewritten by this run."""
    runs = output_dir / "runs"
    if runs.is_dir():
        trash = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}old-runs-", dir=output_dir))
        runs.rename(trash / "runs")  # one rename: a kill now leaves no half-deleted run behind
        shutil.rmtree(trash)
        say(f"--overwrite: discarded the earlier runs in {runs}")


def data_identity(data: ExperimentData, metadata: dict, end_to_end: bool) -> str:
    """What a run's result depends on in the data, as a sha256: the features' fingerprint (encoders with their
    weights' sha256, processor, source dataset, extraction report), or for end-to-end training the raw dataset's
    own fingerprint with the encoders and processor options."""
    identity = (
        {"features": metadata}
        if not end_to_end
        else {"raw": metadata, "dataset_fingerprint": getattr(data.dataset, "_fingerprint", None)}
    )
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _run(
    data_args: DataArguments,
    head_args: HeadArguments,
    args: ExperimentArguments,
    state,
    say,
    started: float,
    output_dir: Path,
) -> int:
    """`run`'s work, under the output folder's lock (held by the main process)."""
    if state.is_main_process:
        remove_stale_temporaries(output_dir)  # what a killed run was writing (e.g. a half-saved final model)
        if args.overwrite:
            _discard_earlier_runs(output_dir, say)
    state.wait_for_everyone()
    data, metadata = (end_to_end_experiment if args.end_to_end else features_experiment)(
        data_args, data_args.task_type_map()
    )
    data_key = data_identity(data, metadata, args.end_to_end)
    split, sources = data.dataset, data.encoder_sources
    seeds = data_args.seed_list()
    splits = fold_splits(split, data_args.folds, seed=seeds[0])
    head = {f.name: getattr(head_args, f.name) for f in fields(head_args)}
    names = args.variant_names()
    if args.end_to_end and any(name in LINEAR_VARIANTS for name in names):
        say("(the mean-pooled + LR baselines need cached features: skipped with --end-to-end)")
        names = [name for name in names if name not in LINEAR_VARIANTS]
    linear = {name: LINEAR_VARIANTS[name] for name in names if name in LINEAR_VARIANTS}
    variants = {name: VARIANTS.get(name, {}) for name in names if name not in LINEAR_VARIANTS}
    say(
        f"{len(split)} documents, tasks {[t['name'] for t in data.tasks]}, {len(splits)} folds x {len(seeds)} seeds, "
        f"{len(linear) + len(variants)} variant(s); output in {output_dir}"
    )
    unlabelled = int((~data.labelled).sum())
    if unlabelled:
        say(
            f"{unlabelled} of them unlabelled: they join the training splits of the heads with alignment terms "
            "(contrastive, CKA, MI need no labels), never a held-out fold, a class weight, a metric or a "
            "logistic regression"
        )

    # Earlier runs in the folder must be this experiment's (the final model's checkpoints too): checked before any work.
    for variant, switches in variants.items():
        check_variant_reusable(
            data, head, switches, splits, seeds, output_dir / "runs" / variant.replace(" ", "_"), args, data_key
        )
    final_dir, everything = output_dir / "runs" / "final", np.arange(len(split))
    final_provenance = run_provenance(
        data, head, variants.get(MAIN_VARIANT, {}), everything, None, seeds[0], args, data_key
    )
    if args.final_model:
        check_reusable(final_dir, final_provenance, output_dir)
    results = {}
    for variant, modalities in linear.items():
        say(f"[{variant}]")
        results[variant] = run_linear_variant(
            data,
            modalities,
            splits,
            seeds,
            output_dir / "runs" / variant.replace(" ", "_"),
            progress=say,
            is_main_process=lambda: state.is_main_process,
        )
    for variant, switches in variants.items():
        say(f"[{variant}]")
        results[variant] = run_variant(
            data,
            head,
            switches,
            splits,
            seeds,
            output_dir / "runs" / variant.replace(" ", "_"),
            args,
            is_main_process=lambda: state.is_main_process,
            wait_for_everyone=state.wait_for_everyone,
            progress=say,
            data_key=data_key,
        )
    protocol = f"{len(splits)}-fold grouped stratified CV x {len(seeds)} seed(s)"
    selection = (
        "dropout, alignment terms on/off and epochs chosen per training split on the mean curve of grouped inner "
        "folds (--select), then retrained on the split with "
        + (
            "the inner runs' learning-rate schedule, stopped at the chosen epoch"
            if args.refit_schedule == "selection"
            else "a learning-rate schedule rescaled to the chosen epochs"
        )
        if args.select
        else f"fixed settings ({args.num_train_epochs:g} epochs, weight decay "
        f"{args.weight_decay:g}, dropout {head['dropout']:g})"
    )
    if state.is_main_process:
        context = {
            "data": str(data_args.dataset) + " (end to end)" if args.end_to_end else str(data_args.features),
            "documents": str(len(split)),
            "encoders": ", ".join(f"{k}: {s['name_or_path']}" for k, s in sources.items()),
            "protocol": f"{protocol}; class weights from each training split; no selection on held-out folds",
            "selection": selection + "; linear baselines: C by grouped inner CV on each training split",
            "training": f"{args.num_train_epochs:g} epochs, lr {args.learning_rate:g}, batch "
            f"{args.per_device_train_batch_size} x {state.num_processes} process(es)"
            + (f", EMA of the weights (decay {args.ema_decay:g})" if args.ema_decay else ""),
            "package": f"hilbert {__version__}",
        }
        written = write_report(output_dir, results, data.tasks, context)
        say(f"report: {written['report']}")
        for variant, result in results.items():
            say(
                f"  {variant:>28}: "
                + "  ".join(
                    f"{task}/macro_auc {m['macro_auc']['mean']:.3f} ± {m['macro_auc']['std']:.3f}"
                    for task, m in result["summary"].items()
                )
            )

    if args.final_model and not variants:
        say("[final model] skipped: only linear baselines were run")
    elif args.final_model:
        say("[final model] training on every document")
        if state.is_main_process:  # before its first checkpoint: a later resume checks it
            atomic_write_json(final_dir / PROVENANCE_NAME, final_provenance)
        trainer, _ = run_training(args)(
            data,
            head,
            variants.get(MAIN_VARIANT, {}),
            everything,
            None,
            seeds[0],
            final_dir,
            args,
            is_main_process=lambda: state.is_main_process,
        )
        if state.is_main_process:
            model = trainer.accelerator.unwrap_model(trainer.model)
            if not model.config.with_encoders:  # a head trained on cached features: add the encoders it was made for
                encoders = load_encoders(metadata)
                model = model.attach_encoders(encoders.get("audio"), encoders.get("text"))
            # Saved whole into a staging folder first: a kill or a full disk leaves the previous final model as it was.
            output_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}final-model-", dir=output_dir))
            summary = results[MAIN_VARIANT if MAIN_VARIANT in results else next(iter(variants))]["summary"]
            card = render_model_card(
                repo_id=args.push_to_hub or output_dir.name,
                config=model.config,
                summary=summary,
                num_runs=len(splits) * len(seeds),
                protocol=protocol,
                num_documents=len(split),
                dataset=metadata.get("source_dataset_repo"),
                data_description=f"{len(split)} recordings ({context['data']}).",
                training_description=context["training"] + "; " + context["protocol"] + ".",
            )
            try:
                model.save_pretrained(staging)
                save_processor(metadata, sources, staging)
                (staging / "README.md").write_text(card, encoding="utf-8")
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            # config.json last (the old one is removed first): from_pretrained needs it, so a kill while the files
            # move never leaves a loadable mix of two models; the next run saves the final model again.
            move_into(staging, output_dir, last=["config.json"])
            say(f"saved the full model (encoders + head + processor) to {output_dir}")
            if args.push_to_hub:
                push(output_dir, args.push_to_hub, private=not args.public)
                say(f"pushed to {hub_url(args.push_to_hub)} ({'public' if args.public else 'private'})")
        state.wait_for_everyone()
    say(f"done in {time.time() - started:.0f} s")
    return 0


def save_processor(metadata: dict, sources: dict, output_dir: Path) -> None:
    from modeling_hilbert.processing_hilbert import HilbertProcessor

    # The fingerprint also describes the feature extractor and tokenizer; keep the processor's own options.
    options = {k: v for k, v in (metadata.get("processor") or {}).items() if k in HilbertProcessor.option_names()}
    processor = HilbertProcessor.from_encoders_pretrained(
        resolve_encoder(sources["audio"]["name_or_path"]), resolve_encoder(sources["text"]["name_or_path"]), **options
    )
    processor.save_pretrained(output_dir)


def push(output_dir: Path, repo_id: str, private: bool) -> None:
    """Upload the final model, processor, card and summary files (never the per-run folders)."""
    from huggingface_hub import HfApi

    check_push_visibility(repo_id, "model", public=not private)
    api = HfApi()
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        commit_message="Upload HILBERT model",
        ignore_patterns=["runs/*", "runs/**", "*.tmp", f"{TMP_PREFIX}*", "checkpoint-*", LOCK_NAME],
    )
