"""`HilbertTrainer`: a thin `transformers.Trainer` for HILBERT's composite loss.

The model computes the loss (`HilbertForSequenceClassification.forward` with labels); the trainer only

* logs every loss term next to the total, in training (averaged over the micro-batches since the last log and
  over processes) and in evaluation (weighted by batch size, like `eval_loss`);
* returns the per-task logits dictionary from `prediction_step`, so that `compute_metrics` sees the whole
  evaluation set (`{task: (N, C)}`) gathered across processes;
* draws class-balanced batches when asked;
* keeps an exponential moving average of the weights when asked (`ema_decay`; `weight_average.py`);
* lays the learning-rate schedule out over a longer run than it trains when asked (`schedule_epochs`);
* marks each checkpoint complete (`CHECKPOINT_DONE`, written last) and deletes older checkpoints only after that,
  so that resuming after a kill never starts from a half-written checkpoint (`last_complete_checkpoint`).

Gradient accumulation: the model sets `accepts_loss_kwargs = False`, so `Trainer.training_step` divides each
micro-batch's mean loss by the accumulation steps (tested: accumulating 2 x 4 documents gives the gradients of one
batch of 8 when only batch-independent terms are on). With several processes, the batch-level terms are computed on
the gathered global batch inside the model.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import torch
from torch.utils.data import DataLoader, WeightedRandomSampler
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import find_batch_size
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints

from hilbert_app.safe_write import atomic_write_text
from hilbert_app.training.weight_average import WeightAverage

# Output fields of HilbertSequenceClassifierOutput that are logged as loss terms (audio_documents / text_documents:
# how many documents of a batch entered each modality's representation terms, memory_documents: how many held
# documents were extra negatives; logged as means per batch).
LOSS_TERMS = (
    "classification_loss",
    "contrastive_loss",
    "cka_loss",
    "mi_loss",
    "moe_balance_loss",
    "unimodal_loss",
    "temperature",
    "mi_audio_joint",
    "mi_text_joint",
    "audio_documents",
    "text_documents",
    "memory_documents",
)

# Written last into a checkpoint folder: the checkpoint is whole. transformers writes checkpoint-N file by file and
# `get_last_checkpoint` takes the highest N whatever it holds, so a kill while saving could make resuming start
# from a checkpoint without its optimizer or RNG state (silently different results) or fail on a truncated file.
CHECKPOINT_DONE = "hilbert_checkpoint_complete.json"
_CHECKPOINT_NAME = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")


def last_complete_checkpoint(run_dir: str | Path, remove_incomplete: bool = False) -> str | None:
    """The highest-step checkpoint of `run_dir` that was saved whole (has `CHECKPOINT_DONE`), or None.

    `remove_incomplete`: delete the checkpoints a killed run left half-written (main process only), so that they
    are neither resumed from nor kept instead of a complete one when older checkpoints are rotated out.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    complete = []
    for folder in run_dir.iterdir():
        match = _CHECKPOINT_NAME.match(folder.name)
        if not match or not folder.is_dir():
            continue
        if (folder / CHECKPOINT_DONE).is_file():
            complete.append((int(match.group(1)), folder))
        elif remove_incomplete:
            shutil.rmtree(folder, ignore_errors=True)
    return str(max(complete)[1]) if complete else None


class TermAccumulator:
    """Running sums of the loss terms (weighted) and of the weights, per term (a term may be absent)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}

    def add(self, outputs, weight: float) -> None:
        for name in LOSS_TERMS:
            value = getattr(outputs, name, None)
            if value is not None:
                self.sums[name] = self.sums.get(name, 0.0) + float(value.detach()) * weight
                self.weights[name] = self.weights.get(name, 0.0) + weight

    def means(self, accelerator) -> dict[str, float]:
        """Weighted means, reduced over processes (every process must call this: it is a collective)."""
        names = sorted(self.sums)
        if accelerator is not None and accelerator.num_processes > 1:
            # Processes may not have seen the same terms; reduce a fixed vector over the full list.
            names = list(LOSS_TERMS)
            values = torch.tensor(
                [[self.sums.get(n, 0.0), self.weights.get(n, 0.0)] for n in names],
                dtype=torch.float64,
                device=accelerator.device,
            )
            values = accelerator.reduce(values, reduction="sum")
            return {n: float(s / w) for n, (s, w) in zip(names, values.tolist()) if w > 0}
        return {n: self.sums[n] / self.weights[n] for n in names if self.weights[n] > 0}

    def reset(self) -> None:
        self.sums.clear()
        self.weights.clear()


class LogitScaleClampCallback(TrainerCallback):
    """After every optimiser step, clamp the model's learnable logit scale into its bound, in place
    (`HilbertPreTrainedModel.clamp_logit_scale_`): clamped only in forward, a parameter past the bound gets zero
    gradient and never comes back."""

    def on_optimizer_step(self, args, state, control, model=None, **kwargs):
        clamp = getattr(model, "clamp_logit_scale_", None)
        if clamp is not None:
            clamp()


class _EpochStart(TrainerCallback):
    """Forget which documents were trained on when an epoch starts (for `HilbertTrainer._mark_repeats`)."""

    def __init__(self, seen: set[int]):
        self.seen = seen

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.seen.clear()


class _UpdateWeightAverage(TrainerCallback):
    """After every optimiser step (and the logit-scale clamp, added before it), update the trainer's EMA."""

    def __init__(self, trainer: "HilbertTrainer"):
        self.trainer = trainer

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.weight_average is not None:
            self.trainer.weight_average.update(self.trainer.accelerator.unwrap_model(self.trainer.model))


class HilbertTrainer(Trainer):
    """Trainer for `HilbertForSequenceClassification` on cached features or raw inputs.

    Args (beyond `Trainer`'s):
        balanced_sampling_labels: per-item labels of the training set; when given, training batches are drawn
            with replacement so that every class is equally likely (a seeded `WeightedRandomSampler`).
        ema_decay: when > 0, an exponential moving average of the trainable weights (`weight_average.py`) is kept;
            evaluation during training uses it, and the trained model is the average when `train` returns (what
            `predict` and `save_pretrained` then see). Checkpoints hold it, so a resumed run continues it.
        schedule_epochs: when given, the learning-rate schedule (warm-up and decay) is laid out over this many
            epochs although training stops after `args.num_train_epochs`: the learning rate at every epoch is then
            that of a run of `schedule_epochs` epochs, stopped early. `--select`'s retraining uses it so that the
            retrained model follows the schedule of the inner runs whose curves chose its epochs (see
            `selection.train_selected_run`). None: the schedule spans the run, as in transformers.
    """

    def __init__(
        self,
        *args,
        balanced_sampling_labels=None,
        ema_decay: float = 0.0,
        schedule_epochs: float | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        if schedule_epochs is not None and schedule_epochs < self.args.num_train_epochs:
            raise ValueError(
                f"schedule_epochs={schedule_epochs} is shorter than the run ({self.args.num_train_epochs} epochs): "
                "the learning rate would reach its end before training does."
            )
        self.schedule_epochs = schedule_epochs
        self.add_callback(LogitScaleClampCallback())
        self.ema_decay = float(ema_decay)
        self.weight_average: WeightAverage | None = None  # made in `train`, after the feature statistics
        self.add_callback(_UpdateWeightAverage(self))
        self.balanced_sampling_labels = balanced_sampling_labels
        self._train_terms = TermAccumulator()
        self._eval_terms = TermAccumulator()
        self._seen_in_epoch: set[int] = set()  # document keys trained on in this epoch (see `_mark_repeats`)
        self._seen_in_evaluation: set[int] = set()
        self.add_callback(_EpochStart(self._seen_in_epoch))

    def _mark_repeats(self, inputs: dict, seen: set[int]) -> dict:
        """Mark the documents that accelerate repeats to fill the last batch of an epoch (`even_batches`).

        With several processes, a process whose share of the last batch is short gets documents from the start of
        the epoch again. Counted, they would weigh twice and enter the contrastive batch as false negatives (and one
        process would not train like several). A document already seen in this epoch, or earlier in the same global
        batch, gets `document_mask` False, which leaves it out of every loss term. Every process sees the same
        gathered keys, so all of them pass a mask or none does.
        """
        ids = inputs.get("document_ids")
        if ids is None:
            return inputs
        local = [int(i) for i in ids.tolist()]
        if self.accelerator.num_processes > 1:
            shares = [None] * self.accelerator.num_processes
            torch.distributed.all_gather_object(shares, local)
        else:
            shares = [local]
        keep = []
        for key in (k for share in shares for k in share):
            keep.append(key not in seen)
            seen.add(key)
        if all(keep):
            return inputs
        offset = sum(len(share) for share in shares[: self.accelerator.process_index])
        mask = torch.tensor(keep[offset : offset + len(local)], dtype=torch.bool, device=ids.device)
        return {**inputs, "document_mask": mask}

    # -- training ---------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint=None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """`Trainer.train`, after fitting the feature standardisation on the training set
        (`fit_feature_statistics`)."""
        self.fit_feature_statistics()
        model = self.accelerator.unwrap_model(self.model)
        self.weight_average = WeightAverage(model, self.ema_decay) if self.ema_decay > 0 else None
        if self.weight_average is not None and resume_from_checkpoint:
            folder = resume_from_checkpoint
            if folder is True:
                folder = get_last_checkpoint(self.args.output_dir)
            if folder:
                self.weight_average.load(folder)
        output = super().train(
            resume_from_checkpoint=resume_from_checkpoint,
            trial=trial,
            ignore_keys_for_eval=ignore_keys_for_eval,
            **kwargs,
        )
        if self.weight_average is not None:
            self.weight_average.copy_to(model)  # the trained model is the average from here on
            self.weight_average = None
        return output

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers' scheduler; with `schedule_epochs`, over the steps of that many epochs (see the class).

        `num_training_steps` is `ceil(num_train_epochs x steps per epoch)`; scaled by schedule_epochs /
        num_train_epochs it is the step count of the longer run on this training set, and the warm-up (a fraction
        of the steps) scales with it. A resumed run builds the same scheduler and then loads its state."""
        if self.schedule_epochs is not None and self.lr_scheduler is None:
            # rounded first: 15 x 6 x 20 / 15 is 120.00000000000001 in floating point, and ceil would add a step
            scale = self.schedule_epochs / self.args.num_train_epochs
            num_training_steps = math.ceil(round(num_training_steps * scale, 6))
        return super().create_scheduler(num_training_steps, optimizer)

    def fit_feature_statistics(self) -> dict[str, int] | None:
        """Set the model's per-dimension feature standardisation from every training document's real segments
        (`HilbertModel.fit_feature_statistics`), when `config.standardize_features` or `config.linear_shortcut`
        (which standardises its mean-pooled features over the training documents) is on.

        Every process reads the whole training set in a fixed order (not its shard of it), so all processes set the
        same statistics. A resumed run computes them again (the same values; its checkpoint holds them too). With a
        plain `Trainer`, call `model.hilbert.fit_feature_statistics(loader)` on a loader of the training set first.
        Returns `{modality: segments counted}`, or None when off.
        """
        model = self.accelerator.unwrap_model(self.model)
        base = getattr(model, "hilbert", None)
        config = model.config
        fits = getattr(config, "standardize_features", False) or getattr(config, "linear_shortcut", False)
        if not fits or base is None or self.train_dataset is None:
            return None
        loader = DataLoader(
            self.train_dataset,
            batch_size=self.args.per_device_eval_batch_size,
            shuffle=False,
            collate_fn=self.data_collator,
        )
        device = next(base.parameters()).device

        def on_device(batch):
            return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

        return base.fit_feature_statistics(on_device(batch) for batch in loader)

    def aligning(self, model) -> bool:
        """Whether this training step is in the alignment stage of a two-stage schedule
        (`HilbertConfig.alignment_warmup_epochs`): labels are then kept out of the loss."""
        config = self.accelerator.unwrap_model(model).config
        warmup = getattr(config, "alignment_warmup_epochs", 0.0)
        alignment = config.dual_contrastive_weight > 0 or config.cka_weight > 0 or config.mi_weight > 0
        return (
            model.training and warmup > 0 and config.is_multimodal and alignment and (self.state.epoch or 0.0) < warmup
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            inputs = self._mark_repeats(inputs, self._seen_in_epoch)
        if self.aligning(model):
            # Stage 1: only the label-free terms; the classifier's output layers get no gradient (AdamW skips them).
            inputs = {key: value for key, value in inputs.items() if key != "labels"}
            inputs["return_loss"] = True
        outputs = model(**inputs)
        if outputs.loss is None:
            raise ValueError("The model returned no loss: the training batches carry no labels.")
        if model.training:
            self._train_terms.add(outputs, weight=1.0)
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and not any(key.startswith("eval_") for key in logs):
            logs.update({name: round(value, 6) for name, value in self._train_terms.means(self.accelerator).items()})
            self._train_terms.reset()
        super().log(logs, start_time)

    def _get_train_sampler(self, train_dataset=None):
        if self.balanced_sampling_labels is None:
            return super()._get_train_sampler(train_dataset)
        from hilbert_app.training.data import balanced_sample_weights

        weights = torch.as_tensor(balanced_sample_weights(self.balanced_sampling_labels), dtype=torch.float64)
        generator = torch.Generator().manual_seed(
            self.args.data_seed if self.args.data_seed is not None else self.args.seed
        )
        return WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=generator)

    def _save_checkpoint(self, model, trial) -> None:
        """Save as transformers does, then mark the checkpoint complete, and only then delete older ones."""
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # no rotation inside: it would delete the old one before the mark
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        if self.args.should_save:
            run_dir = Path(self._get_output_dir(trial=trial))
            folder = run_dir / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if self.weight_average is not None:  # before the mark: a checkpoint without it is not complete
                self.weight_average.save(folder)
            atomic_write_text(folder / CHECKPOINT_DONE, json.dumps({"global_step": self.state.global_step}) + "\n")
            rotate_checkpoints(
                output_dir=str(run_dir),
                save_total_limit=limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )

    # -- evaluation -------------------------------------------------------------------------------------
    def evaluate(self, *args, **kwargs):
        """`Trainer.evaluate`; during training with `ema_decay`, on the averaged weights (the trained ones after)."""
        if self.weight_average is None:
            return super().evaluate(*args, **kwargs)
        with self.weight_average.applied(self.accelerator.unwrap_model(self.model)):
            return super().evaluate(*args, **kwargs)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._mark_repeats(self._prepare_inputs(inputs), self._seen_in_evaluation)
        labels = inputs.get("labels")
        with torch.no_grad():
            outputs = model(**inputs)
        if outputs.loss is not None:
            self._eval_terms.add(outputs, weight=float(find_batch_size(inputs) or 1))
        loss = outputs.loss.detach() if outputs.loss is not None else None
        if prediction_loss_only:
            return loss, None, None
        logits = {task: value.detach() for task, value in outputs.task_logits.items()}  # every task, one or several
        return loss, logits, labels

    def evaluation_loop(
        self, dataloader, description, prediction_loss_only=None, ignore_keys=None, metric_key_prefix="eval"
    ):
        self._eval_terms.reset()
        self._seen_in_evaluation.clear()  # predictions are gathered without repeats by accelerate; the loss terms too
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        for name, value in self._eval_terms.means(self.accelerator).items():
            output.metrics[f"{metric_key_prefix}_{name}"] = value
        self._eval_terms.reset()
        return output
