"""Train and evaluate HILBERT with cross-validation, baselines and a saved (and optionally pushed) model.

    accelerate launch train.py --config configs/demo.yaml [--any-field value ...]
    python train.py --features DIR_OR_REPO --output-dir DIR [--cv 5] [--seeds 0,1,2] [--baselines] [--push-to-hub REPO]

Every field of the three argument groups below can be set in the YAML file (flat `field: value` pairs) and
overridden on the command line (`--field value` or `--field-name value`).

Outputs in OUTPUT_DIR:
    metrics.json        {task: {metric: {"mean", "std", "folds", "n"}}} of the main model (HILBERT)
    baselines.json      {variant: <the same>} with --baselines (audio-only, text-only, concat + MLP, direct
                        audio-text contrast, without CKA / MI / MoE, full HILBERT), all on the same folds and seeds
    report.md, plots/   a Markdown summary, ROC curves, confusion matrices, loss curves of every term
    runs/               one folder per variant, fold and seed: TensorBoard logs, checkpoints while running, results
    config.json, model.safetensors, processor files, README.md (model card)
                        the full model (encoders + head trained on every document) that
                        `AutoModelForSequenceClassification.from_pretrained(OUTPUT_DIR, trust_remote_code=True)` loads

Faults: every output is written under a temporary name and renamed (the final model: a staging folder, config.json
moved last), so a kill never leaves a file that looks complete but is not; re-running the same command skips the
finished runs and resumes an interrupted one from its last complete checkpoint, with identical results. A read-only
or full output folder stops with one paragraph and exit code 2, earlier outputs intact.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accelerate import PartialState  # noqa: E402
from transformers import AutoConfig, HfArgumentParser  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from dataset_scripts.features import check_fingerprint, load_features  # noqa: E402
from dataset_scripts.hub_visibility import PublicRepositoryError, check_push_visibility  # noqa: E402
from dataset_scripts.offline_encoders import encoder_revision, resolve_encoder  # noqa: E402
from dataset_scripts.safe_write import TMP_PREFIX, describe_write_error, move_into, remove_stale_temporaries  # noqa: E402
from modeling_hilbert import __version__  # noqa: E402
from modeling_hilbert.encoders_hilbert import load_pretrained_encoder  # noqa: E402
from modeling_hilbert.modeling_hilbert import weights_sha256  # noqa: E402
from training.data import fold_splits, tasks_from_dataset  # noqa: E402
from training.experiment import MAIN_VARIANT, VARIANTS, ExperimentData, RunSettings, run_variant, train_run  # noqa: E402
from training.model_card import render_model_card  # noqa: E402
from training.report import write_report  # noqa: E402


@dataclass
class DataArguments:
    features: str = field(default=None, metadata={"help": "Features dataset (folder or Hub dataset id) from dataset_scripts/extract_features.py."})
    dataset: str = field(default=None, metadata={"help": "With --end-to-end: the raw dataset (folder or Hub id) from dataset_scripts/build_dataset.py."})
    audio_encoder: str = field(default=None, metadata={"help": "With --end-to-end: audio encoder (Hub id, folder or offline: name)."})
    text_encoder: str = field(default=None, metadata={"help": "With --end-to-end: text encoder (Hub id, folder or offline: name)."})
    audio_mode: str = field(default="exact", metadata={"help": "With --end-to-end: Whisper 'exact' or 'fast' (with features: taken from their fingerprint)."})
    cv: int = field(default=5, metadata={"help": "K of grouped, stratified K-fold cross-validation (the dataset's fold column when it has K folds)."})
    seeds: str = field(default="0", metadata={"help": "Comma-separated seeds; every fold is trained once per seed."})
    task_types: str = field(default=None, metadata={"help": "Task types other than multiclass, e.g. 'risk=binary'."})


@dataclass
class HeadArguments:
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_cross_attention_layers: int = 1
    intermediate_size: int = 256
    pooling_heads: int = 2
    pooling_hidden_size: int = 64
    projection_dim: int = 64
    num_experts: int = 4
    expert_hidden_size: int = 128
    moe_top_k: int = field(default=None, metadata={"help": "Route each document to its k best experts (default: dense gate)."})
    dropout: float = 0.1
    dual_contrastive_weight: float = 1.0
    cka_weight: float = 0.5
    mi_weight: float = 0.1
    moe_balance_weight: float = 0.01
    focal_gamma: float = 0.0
    temperature_init: float = 0.07
    contrastive_target: str = "joint"
    modalities: str = "both"
    fusion: str = "cross_attention"
    classifier: str = "moe"


@dataclass
class ExperimentArguments(RunSettings):
    output_dir: str = field(default=None, metadata={"help": "Where results, reports and the final model go."})
    baselines: bool = field(default=False, metadata={"help": "Also run every baseline and ablation on the same folds and seeds."})
    variants: str = field(default=None, metadata={"help": "Comma-separated subset of the variants to run (implies --baselines)."})
    final_model: bool = field(default=True, metadata={"help": "Train the final model on every document and save it with encoders and processor."})
    push_to_hub: str = field(default=None, metadata={"help": "Push the final model, processor and model card to this Hub repository."})
    public: bool = field(default=False, metadata={"help": "Make the pushed repository public (private by default)."})
    end_to_end: bool = field(default=False, metadata={"help": "Train from raw audio and transcripts through the frozen encoders (slow)."})
    num_threads: int = field(default=None, metadata={"help": "CPU threads for torch. Default: 1 when training a head on cached features on the CPU "
                                                             "(its matrices are small: one thread was 10x faster than two on a loaded 2-core machine), else torch's default."})


def parse_arguments(argv=None) -> tuple[DataArguments, HeadArguments, ExperimentArguments]:
    """`--config FILE.yaml` gives defaults; every field can still be overridden on the command line."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    known, rest = pre.parse_known_args(argv)
    parser = HfArgumentParser((DataArguments, HeadArguments, ExperimentArguments), description=__doc__.split("\n\n")[0])
    if known.config:
        values = yaml.safe_load(Path(known.config).read_text()) or {}
        valid = {f.name for cls in (DataArguments, HeadArguments, ExperimentArguments) for f in fields(cls)}
        unknown = sorted(set(values) - valid)
        if unknown:
            raise SystemExit(f"{known.config}: unknown keys {unknown}. Valid keys are the options of `python train.py --help`.")
        parser.set_defaults(**values)
    data, head, experiment = parser.parse_args_into_dataclasses(args=rest)
    if experiment.end_to_end:
        required = (("--dataset", data.dataset), ("--audio-encoder", data.audio_encoder), ("--text-encoder", data.text_encoder))
    else:
        required = (("--features", data.features),)
    missing = [name for name, value in (*required, ("--output-dir", experiment.output_dir)) if not value]
    if missing:
        parser.error(f"missing {', '.join(missing)} (on the command line or in --config)")
    return data, head, experiment


def features_experiment(data_args: DataArguments, task_types) -> tuple[ExperimentData, dict]:
    """Head-only training on cached features: encoder configs and provenance from the features' fingerprint."""
    features, metadata = load_features(data_args.features)
    split = features["train"] if "train" in features else next(iter(features.values()))
    sources = metadata["encoders"]
    configs = {key: AutoConfig.from_pretrained(resolve_encoder(source["name_or_path"])) for key, source in sources.items()}
    data = ExperimentData(
        dataset=split, tasks=tasks_from_dataset(split, task_types), audio_config=configs["audio"], text_config=configs["text"],
        encoder_sources=sources, audio_mode=(metadata.get("processor") or {}).get("audio_mode", "exact"),
    )
    return data, metadata


def end_to_end_experiment(data_args: DataArguments, task_types) -> tuple[ExperimentData, dict]:
    """Training from raw audio and transcripts: the frozen encoders run in every step (no cache)."""
    import datasets

    from dataset_scripts.extract_features import decode_audio
    from modeling_hilbert.processing_hilbert import HilbertProcessor
    from training.data import RawDocumentsCollator, label_columns

    raw = datasets.load_from_disk(data_args.dataset) if Path(data_args.dataset).is_dir() else datasets.load_dataset(data_args.dataset)
    split = raw["train"] if "train" in raw else next(iter(raw.values()))
    names = {"audio": data_args.audio_encoder, "text": data_args.text_encoder}
    encoders = {key: load_pretrained_encoder(resolve_encoder(name)) for key, name in names.items()}
    sources = {
        key: {"name_or_path": names[key], "model_type": enc.config.model_type, "revision": encoder_revision(names[key]), "sha256": weights_sha256(enc)}
        for key, enc in encoders.items()
    }
    options = {"audio_mode": data_args.audio_mode}
    processor = HilbertProcessor.from_encoders_pretrained(resolve_encoder(names["audio"]), resolve_encoder(names["text"]), **options)
    data = ExperimentData(
        dataset=split, tasks=tasks_from_dataset(split, task_types), audio_config=encoders["audio"].config,
        text_config=encoders["text"].config, encoder_sources=sources, audio_mode=data_args.audio_mode, encoders=encoders,
        collator=RawDocumentsCollator(processor, label_columns(split), decode_audio),
    )
    return data, {"encoders": sources, "processor": options}


def load_encoders(metadata: dict) -> dict:
    """Load the encoders named in the features' fingerprint; refuse them (FeatureFingerprintError) if their weights
    are not the ones the features were extracted with (e.g. a Hub id that has moved on since)."""
    encoders, actual = {}, {}
    for key, source in metadata["encoders"].items():
        name = source["name_or_path"]
        encoders[key] = load_pretrained_encoder(resolve_encoder(name))
        actual[key] = {"name_or_path": name, "revision": source.get("revision"), "sha256": weights_sha256(encoders[key])}
    check_fingerprint(metadata, actual)
    return encoders


EXIT_WRITE_ERROR = 2


def main(argv=None) -> int:
    """Run the CLI; returns the exit code (0 done; 2 refused: the output folder could not be written (read-only,
    full), or --push-to-hub names a public repository without --public)."""
    data_args, head_args, args = parse_arguments(argv)
    if args.push_to_hub:  # before training: a refused push should not cost the whole experiment first
        try:
            check_push_visibility(args.push_to_hub, "model", args.public)
        except PublicRepositoryError as error:
            print(f"error: {error}", file=sys.stderr, flush=True)
            return EXIT_WRITE_ERROR
    try:
        return run(data_args, head_args, args)
    except Exception as error:  # a read-only folder or a full disk: one paragraph rather than a library's traceback
        message = describe_write_error(error, args.output_dir, "re-run the same command: finished runs are kept and "
                                       "an interrupted one resumes from its last complete checkpoint")
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr, flush=True)
        return EXIT_WRITE_ERROR


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
    if state.is_main_process:
        remove_stale_temporaries(output_dir)  # what a killed run was writing (e.g. a half-saved final model)
    task_types = dict(item.split("=", 1) for item in data_args.task_types.split(",")) if data_args.task_types else None
    data, metadata = (end_to_end_experiment if args.end_to_end else features_experiment)(data_args, task_types)
    split, sources = data.dataset, data.encoder_sources
    seeds = [int(s) for s in str(data_args.seeds).split(",") if s.strip()]
    splits = fold_splits(split, data_args.cv, seed=seeds[0])
    head = {f.name: getattr(head_args, f.name) for f in fields(HeadArguments)}
    if args.variants:
        chosen = [v.strip() for v in args.variants.split(",")]
        unknown = [v for v in chosen if v not in VARIANTS]
        if unknown:
            raise SystemExit(f"Unknown variants {unknown}; choose from {list(VARIANTS)}.")
        variants = {v: VARIANTS[v] for v in chosen}
    elif args.baselines:
        variants = VARIANTS
    else:
        variants = {MAIN_VARIANT: {}}
    say(f"{len(split)} documents, tasks {[t['name'] for t in data.tasks]}, {len(splits)} folds x {len(seeds)} seeds, "
        f"{len(variants)} variant(s); output in {output_dir}")

    results = {}
    for variant, switches in variants.items():
        say(f"[{variant}]")
        results[variant] = run_variant(
            data, head, switches, splits, seeds, output_dir / "runs" / variant.replace(" ", "_"), args,
            is_main_process=lambda: state.is_main_process, wait_for_everyone=state.wait_for_everyone, progress=say,
        )
    protocol = f"{len(splits)}-fold grouped stratified CV x {len(seeds)} seed(s)"
    if state.is_main_process:
        context = {
            "data": str(data_args.dataset) + " (end to end)" if args.end_to_end else str(data_args.features),
            "documents": str(len(split)),
            "encoders": ", ".join(f"{k}: {s['name_or_path']}" for k, s in sources.items()),
            "protocol": f"{protocol}; class weights from each training split; no selection on held-out folds",
            "training": f"{args.num_train_epochs:g} epochs, lr {args.learning_rate:g}, batch {args.per_device_train_batch_size} x {state.num_processes} process(es)",
            "package": f"hilbert {__version__}",
        }
        written = write_report(output_dir, results, data.tasks, context)
        say(f"report: {written['report']}")
        for variant, result in results.items():
            say(f"  {variant:>28}: " + "  ".join(
                f"{task}/macro_auc {m['macro_auc']['mean']:.3f} ± {m['macro_auc']['std']:.3f}" for task, m in result["summary"].items()))

    if args.final_model:
        say("[final model] training on every document")
        import numpy as np

        trainer, _ = train_run(
            data, head, variants.get(MAIN_VARIANT, {}), np.arange(len(split)), None, seeds[0], output_dir / "runs" / "final",
            args, is_main_process=lambda: state.is_main_process,
        )
        if state.is_main_process:
            model = trainer.accelerator.unwrap_model(trainer.model)
            if not model.config.with_encoders:  # a head trained on cached features: add the encoders it was made for
                encoders = load_encoders(metadata)
                model = model.attach_encoders(encoders.get("audio"), encoders.get("text"))
            # Saved whole into a staging folder first: a kill or a full disk leaves the previous final model as it was.
            output_dir.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}final-model-", dir=output_dir))
            summary = results[MAIN_VARIANT if MAIN_VARIANT in results else next(iter(results))]["summary"]
            card = render_model_card(
                repo_id=args.push_to_hub or output_dir.name, config=model.config, summary=summary,
                num_runs=len(splits) * len(seeds), protocol=protocol, num_documents=len(split),
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
                say(f"pushed to {args.push_to_hub} ({'public' if args.public else 'private'})")
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
        repo_id=repo_id, folder_path=str(output_dir), commit_message="Upload HILBERT model",
        ignore_patterns=["runs/*", "runs/**", "*.tmp", f"{TMP_PREFIX}*", "checkpoint-*"],
    )


if __name__ == "__main__":
    sys.exit(main())
