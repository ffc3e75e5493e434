"""What every run of an experiment shares: the Trainer's settings that matter here (`RunSettings`).

Free of torch and transformers at import (they are imported when a run's `TrainingArguments` are made), so that
`train.py --help`, whose options are built from these fields, does not wait for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hilbert_app.console import show_progress

# `--lr-scheduler-type`: the transformers schedulers that take no extra arguments (cosine_with_min_lr needs a minimum,
# reduce_lr_on_plateau an evaluation metric; neither is passed). tests/test_cli_options.py checks they exist.
LR_SCHEDULERS = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)

# `--refit-schedule` (used with --select only; hilbert_app/training/selection.py).
REFIT_SCHEDULES = ("selection", "rescaled")
# The value of a trainer setting that reproduces a run recorded before the setting existed, where that is not its
# default (experiment._same_run): runs retrained before `refit_schedule` existed used a rescaled schedule.
TRAINER_LEGACY_DEFAULTS = {"refit_schedule": "rescaled"}
# Trainer settings that matter only with --select: left out of a run's provenance without it, where they change
# nothing (a finished run without selection stays reusable whatever their value).
SELECTION_ONLY = ("refit_schedule",)


@dataclass
class RunSettings:
    """What every run of an experiment shares (the Trainer's knobs that matter here)."""

    num_train_epochs: float = field(
        default=30.0, metadata={"help": "Epochs of every run (a fraction trains part of the last one)."}
    )
    learning_rate: float = field(default=1e-3, metadata={"help": "Peak learning rate of AdamW."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay (decoupled; 0 = none)."})
    warmup_steps: float = field(
        default=0.05,
        metadata={
            "help": "Learning-rate warm-up: a number of optimizer steps, or below 1 a fraction of the run's steps "
            "(transformers' convention). E.g. 0.05: 5%% of the steps."
        },
    )
    lr_scheduler_type: str = field(
        default="linear",
        metadata={
            "help": "Learning-rate schedule after the warm-up (transformers' schedulers that need no extra "
            "arguments). linear: decay to 0.",
            "choices": LR_SCHEDULERS,
        },
    )
    per_device_train_batch_size: int = field(
        default=8, metadata={"help": "Documents per training batch on each process."}
    )
    per_device_eval_batch_size: int = field(
        default=16, metadata={"help": "Documents per prediction batch on each process."}
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata={"help": "Batches whose gradients are summed before each optimizer step (larger effective batch)."},
    )
    logging_steps: int = field(
        default=5,
        metadata={"help": "Log the loss terms every N optimizer steps (TensorBoard, loss curves)."},
    )
    class_weighting: bool = field(
        default=True,
        metadata={
            "help": "Weight each class's loss by its inverse frequency in the run's training split (pos_weight for "
            "binary and multilabel tasks). Default on; --class-weighting false for plain losses."
        },
    )
    balanced_sampling: bool = field(
        default=False,
        metadata={"help": "Draw training batches with probabilities that balance the classes of the first task."},
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "Keep an exponential moving average of the head's weights with this decay (0 = off; e.g. 0.9 "
            "over ~10 steps, 0.98 over ~50). Every evaluation, the inner-fold curves --select reads and the saved "
            "model use the average (hilbert_app/training/weight_average.py)."
        },
    )
    refit_schedule: str = field(
        default="selection",
        metadata={
            "help": "With --select, the learning-rate schedule of the model retrained on the whole training split. "
            "selection (default): that of the inner runs whose curves chose its epochs (warm-up and decay over "
            "--num_train_epochs), stopped at the chosen epoch, so the retrained model is trained as the selected "
            "point was. rescaled: a schedule of its own over the chosen epochs (decaying to 0 there), as before "
            "round 5 of docs/results.md.",
            "choices": REFIT_SCHEDULES,
        },
    )
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"],
        metadata={
            "help": "Where training logs go, as in transformers: tensorboard (default, under runs/), none, or any "
            "integration transformers supports (wandb, mlflow, ...); several separated by spaces."
        },
    )
    no_progress: bool = field(
        default=False,
        metadata={"help": "No progress bars (default: shown when stderr is a terminal, never in pipes or CI logs)."},
    )
    select: bool = field(
        default=False,
        metadata={
            "help": "Choose the dropout and the number of epochs (early stopping on the mean curve of 4 grouped "
            "inner folds of each training split; hilbert_app/training/selection.py), then retrain on the split."
        },
    )

    def training_arguments(self, output_dir: Path, seed: int, evaluate: bool):
        """The `transformers.TrainingArguments` of one run (imported here: this module stays free of torch)."""
        import torch
        from transformers import TrainingArguments

        return TrainingArguments(
            output_dir=str(output_dir),
            num_train_epochs=self.num_train_epochs,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            warmup_steps=self.warmup_steps,
            lr_scheduler_type=self.lr_scheduler_type,
            per_device_train_batch_size=self.per_device_train_batch_size,
            per_device_eval_batch_size=self.per_device_eval_batch_size,
            gradient_accumulation_steps=self.gradient_accumulation_steps,
            logging_steps=self.logging_steps,
            eval_strategy="epoch" if evaluate else "no",
            save_strategy="epoch",
            save_total_limit=1,
            save_only_model=False,  # optimizer, scheduler and RNG states too: resuming continues exactly
            seed=seed,
            data_seed=seed,
            report_to=self.report_to,
            remove_unused_columns=False,  # custom inputs: the collator picks the columns
            average_tokens_across_devices=False,  # no token counts here; with it the logged loss doubled on 2 processes
            use_cpu=not torch.cuda.is_available(),  # also what makes `--multi_gpu` form a gloo group without a GPU
            dataloader_num_workers=0,
            disable_tqdm=not show_progress(self.no_progress),
        )
