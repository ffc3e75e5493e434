"""The settings of a training run, as `train.py` takes them (command line or YAML): data, head and experiment.

`HeadArguments` is generated from `HilbertConfig.head_settings()`: the config is the one source of the head's
settings and defaults. `ExperimentArguments` extends the trainer settings (`RunSettings`) with what the whole
experiment needs (output folder, baselines, final model, push).
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass

from hilbert_app.errors import UserError, check_positive, parse_int_list
from hilbert_app.training.run_settings import RunSettings
from modeling_hilbert import HilbertConfig
from modeling_hilbert.configuration_hilbert import TASK_TYPES


@dataclass
class DataArguments:
    features: str = field(
        default=None,
        metadata={"help": "Features dataset (folder or Hub dataset id) from dataset_scripts/extract_features.py."},
    )
    dataset: str = field(
        default=None,
        metadata={
            "help": "With --end-to-end: the raw dataset (folder or Hub id) from dataset_scripts/build_dataset.py."
        },
    )
    audio_encoder: str = field(
        default=None, metadata={"help": "With --end-to-end: audio encoder (Hub id, folder or offline: name)."}
    )
    text_encoder: str = field(
        default=None, metadata={"help": "With --end-to-end: text encoder (Hub id, folder or offline: name)."}
    )
    audio_mode: str = field(
        default="exact",
        metadata={
            "help": "With --end-to-end: Whisper 'exact' or 'fast' (with features: taken from their fingerprint).",
            "choices": ["exact", "fast"],
        },
    )
    folds: int = field(
        default=5,
        metadata={
            "help": "K of grouped, stratified K-fold cross-validation (the dataset's fold column when it has K folds)."
        },
    )
    seeds: str = field(default="0", metadata={"help": "Comma-separated seeds; every fold is trained once per seed."})
    task_types: str = field(default=None, metadata={"help": "Task types other than multiclass, e.g. 'risk=binary'."})

    def seed_list(self) -> list[int]:
        """`--seeds 0,1,2` -> [0, 1, 2] (a UserError for anything else)."""
        return parse_int_list(self.seeds, "--seeds")

    def task_type_map(self) -> dict[str, str] | None:
        """`--task-types risk=binary,symptoms=multilabel` -> {"risk": "binary", ...}; None when not given."""
        if not self.task_types:
            return None
        out = {}
        for item in str(self.task_types).split(","):
            name, sep, kind = (part.strip() for part in item.partition("="))
            if not sep or not name or kind not in TASK_TYPES:
                raise UserError(
                    f"--task-types takes task=type pairs separated by commas, with type one of "
                    f"{', '.join(TASK_TYPES)} (e.g. risk=binary); got {item.strip()!r}."
                )
            out[name] = kind
        return out


def _head_arguments() -> type:
    """The head's options, one per `HilbertConfig.head_settings()` field, with its default, help and choices: the
    config is the one source of the head's settings, so `python train.py` trains the head `HilbertConfig()` is."""
    specs = []
    for name, spec in HilbertConfig.head_settings().items():
        kind = {"int": int, "float": float, "str": str, "bool": bool, "int | None": int | None}[spec["type"]]
        metadata = {"help": spec["help"]}
        if spec["choices"]:
            metadata["choices"] = list(spec["choices"])
        specs.append((name, kind, field(default=spec["default"], metadata=metadata)))
    return make_dataclass("HeadArguments", specs)


HeadArguments = _head_arguments()


@dataclass
class ExperimentArguments(RunSettings):
    output_dir: str = field(default=None, metadata={"help": "Where results, reports and the final model go."})
    baselines: bool = field(
        default=False,
        metadata={
            "help": "Also run every baseline and ablation on the same folds and seeds (the "
            "mean-pooled features + logistic regression rows included)."
        },
    )
    variants: str = field(
        default=None, metadata={"help": "Comma-separated subset of the variants to run (implies --baselines)."}
    )
    final_model: bool = field(
        default=True,
        metadata={"help": "Train the final model on every document and save it with encoders and processor."},
    )
    push_to_hub: str = field(
        default=None, metadata={"help": "Push the final model, processor and model card to this Hub repository."}
    )
    public: bool = field(default=False, metadata={"help": "Make the pushed repository public (private by default)."})
    end_to_end: bool = field(
        default=False, metadata={"help": "Train from raw audio and transcripts through the frozen encoders (slow)."}
    )
    overwrite: bool = field(
        default=False,
        metadata={
            "help": "Discard the earlier runs in --output-dir (results, checkpoints) and train them again; without it, "
            "earlier runs are reused only if made from the same data, splits and settings."
        },
    )
    verbose: bool = field(
        default=False,
        metadata={"help": "INFO logs of every library too (default: their warnings only, and our own progress lines)."},
    )
    num_threads: int = field(
        default=None,
        metadata={
            "help": "CPU threads for torch. Default: 1 when training a head on cached features on the CPU "
            "(its matrices are small: one thread was 10x faster than two on a loaded 2-core machine), else torch's "
            "default."
        },
    )

    def variant_names(self) -> list[str]:
        """The variants to run, in table order: `--variants a,b`, every one with `--baselines` (the linear baselines
        of `linear_baseline.LINEAR_VARIANTS` first), else HILBERT alone."""
        # Imported here, not at the top: these modules need torch, datasets and scikit-learn, `--help` does not.
        from hilbert_app.training.experiment import MAIN_VARIANT, VARIANTS
        from hilbert_app.training.linear_baseline import LINEAR_VARIANTS

        known = [*LINEAR_VARIANTS, *VARIANTS]
        if self.variants:
            chosen = [v.strip() for v in str(self.variants).split(",") if v.strip()]
            unknown = [v for v in chosen if v not in known]
            if unknown or not chosen:
                raise UserError(
                    f"--variants: unknown variant(s) {unknown or [self.variants]}; choose from "
                    f"{', '.join(known)} (comma-separated)."
                )
            return chosen
        return known if self.baselines else [MAIN_VARIANT]


def head_settings(settings) -> dict:
    """The `HilbertConfig` head keywords among a training YAML's settings (the rest are trainer options)."""
    names = HilbertConfig.head_settings()
    return {key: value for key, value in settings.items() if key in names}


def check_settings(data: DataArguments, head, experiment: ExperimentArguments) -> None:
    """Every setting checked before any work starts: a typo costs seconds, not a cross-validation.

    Raises `UserError` naming the option. The head's settings are checked by building `HilbertConfig` from them,
    so the config's own validation (sizes, ranges, choices) is the one that applies.
    """
    data.seed_list()
    data.task_type_map()
    check_positive(data.folds, "--folds")
    if data.folds < 2:
        raise UserError(f"--folds must be at least 2 (grouped K-fold cross-validation), got {data.folds}.")
    check_positive(experiment.learning_rate, "--learning-rate", integer=False)
    check_positive(experiment.num_train_epochs, "--num-train-epochs", integer=False)
    check_positive(experiment.weight_decay, "--weight-decay", integer=False, allow_zero=True)
    check_positive(experiment.warmup_steps, "--warmup-steps", integer=False, allow_zero=True)
    if not 0.0 <= experiment.ema_decay < 1.0:
        raise UserError(
            f"--ema-decay must be at least 0 (off) and below 1 (an average that never moves), got "
            f"{experiment.ema_decay:g}. Try 0.9 or 0.98."
        )
    for option in (
        "per_device_train_batch_size",
        "per_device_eval_batch_size",
        "gradient_accumulation_steps",
        "logging_steps",
    ):
        check_positive(getattr(experiment, option), "--" + option.replace("_", "-"))
    if experiment.num_threads is not None:
        check_positive(experiment.num_threads, "--num-threads")
    experiment.variant_names()
    try:
        HilbertConfig(**{name: getattr(head, name) for name in HilbertConfig.head_settings()})
    except ValueError as error:
        raise UserError(f"head settings: {error}") from None
