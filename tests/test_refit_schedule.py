"""`--refit-schedule`: --select's retrained model follows the learning-rate schedule of the inner runs.

The inner runs of selection train `num_train_epochs` (N) epochs under one warm-up + decay schedule, and their mean
curve picks the epoch E. The retrained model stops at E; with the default "selection" its learning rate at every
step is the one an N-epoch run would have had there, not a schedule squeezed into E epochs.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from synthetic import make_features_dataset, save_tiny_encoders
from test_bad_input import _provenance_data
from test_training import HEAD, StopAfter, experiment_data, settings
from transformers import TrainerCallback

from hilbert_app.errors import UserError
from hilbert_app.training import experiment, selection
from hilbert_app.training.data import fold_splits
from hilbert_app.training.experiment import RunSettings, check_reusable, run_provenance
from hilbert_app.training.trainer import HilbertTrainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    encoders = save_tiny_encoders(tmp_path_factory.mktemp("encoders"))
    return experiment_data(make_features_dataset(tmp_path_factory.mktemp("features") / "features", *encoders))


class RecordLearningRates(TrainerCallback):
    """The learning rate each optimiser step used (read before the step)."""

    def __init__(self):
        self.rates: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append(optimizer.param_groups[0]["lr"])


def linear_schedule(peak: float, total_steps: int, warmup_fraction: float) -> list[float]:
    """Linear warm-up then linear decay to 0 at `total_steps`, written out independently of transformers:
    lr(t) = peak * t / w for t < w, peak * (T - t) / (T - w) after, with w = ceil(fraction * T)."""
    w = math.ceil(warmup_fraction * total_steps)
    return [peak * t / w if t < w else peak * max(0.0, total_steps - t) / (total_steps - w) for t in range(total_steps)]


def _train(data, tmp_path, name, epochs, schedule_epochs=None, **overrides):
    train, test = fold_splits(data.dataset, 3)[0]
    spy = RecordLearningRates()
    trainer, _ = experiment.train_run(
        data,
        HEAD,
        {},
        train,
        test,
        0,
        tmp_path / name,
        settings(num_train_epochs=epochs, warmup_steps=0.1, **overrides),
        callbacks=[spy],
        schedule_epochs=schedule_epochs,
    )
    return trainer, spy.rates


def test_schedule_epochs_trains_the_given_epochs_with_the_longer_runs_learning_rates(data, tmp_path):
    trainer, short = _train(data, tmp_path, "short", epochs=2, schedule_epochs=5)
    _, full = _train(data, tmp_path, "full", epochs=5)
    per_epoch = len(full) // 5
    assert per_epoch >= 2 and len(short) == trainer.state.global_step == 2 * per_epoch  # stopped after 2 epochs
    peak = settings().learning_rate
    np.testing.assert_allclose(full, linear_schedule(peak, 5 * per_epoch, 0.1), rtol=1e-6)
    np.testing.assert_allclose(short, full[: len(short)], rtol=1e-6)  # the first 2 epochs of the 5-epoch run
    assert short[-1] > 0.5 * peak  # not decayed towards 0 at its own end, as a 2-epoch schedule would be
    _, rescaled = _train(data, tmp_path, "rescaled", epochs=2)
    np.testing.assert_allclose(rescaled, linear_schedule(peak, 2 * per_epoch, 0.1), rtol=1e-6)


def test_a_schedule_shorter_than_the_run_is_refused(data, tmp_path):
    with pytest.raises(ValueError, match="schedule_epochs=2 is shorter than the run \\(3 epochs\\)"):
        HilbertTrainer(
            model=torch.nn.Linear(1, 1),
            args=settings().training_arguments(tmp_path, 0, evaluate=False),
            schedule_epochs=2,
        )


@pytest.mark.parametrize("refit_schedule", ["selection", "rescaled"])
def test_the_retrained_model_gets_the_inner_runs_schedule_unless_rescaled(data, tmp_path, monkeypatch, refit_schedule):
    monkeypatch.setattr(selection, "SEARCH_SPACE", {"dropout": (0.0,), "weight_decay": (None,), "alignment": ("on",)})
    calls = []
    original = experiment.train_run

    def spy(*args, **kwargs):
        calls.append((args[7].num_train_epochs, kwargs.get("schedule_epochs")))
        return original(*args, **kwargs)

    monkeypatch.setattr(experiment, "train_run", spy)
    train, test = fold_splits(data.dataset, 3)[0]
    run = settings(num_train_epochs=3, refit_schedule=refit_schedule)
    _, result = selection.train_selected_run(data, HEAD, {}, train, test, 0, tmp_path, run)
    *inner, final = calls
    assert inner and all(call == (3, None) for call in inner)  # the inner runs: N epochs, their own schedule
    chosen = result["selection"]["chosen"]["num_train_epochs"]
    assert final == (chosen, 3 if refit_schedule == "selection" else None)


def _provenance(run: RunSettings) -> dict:
    return run_provenance(_provenance_data(), {"hidden_size": 16}, {}, np.arange(6), np.arange(6, 8), 0, run, "x")


def _recorded_before_the_setting(provenance: dict) -> dict:
    """What a run of the earlier release recorded: the same provenance without the setting, and its key."""
    old = json.loads(json.dumps(provenance))
    old["trainer"].pop("refit_schedule")
    old["key"] = experiment._sha256({k: v for k, v in old.items() if k != "key"})
    return old


def test_a_selected_run_retrained_before_the_setting_existed_is_the_rescaled_one(tmp_path):
    """Such a run was retrained with a rescaled schedule: reused at `--refit-schedule rescaled`, another experiment
    at today's default."""
    run_dir = tmp_path / "fold0-seed0"
    run_dir.mkdir()
    old = _recorded_before_the_setting(_provenance(RunSettings(select=True)))
    (run_dir / "run_result.json").write_text(json.dumps({"provenance": old}))
    check_reusable(run_dir, _provenance(RunSettings(select=True, refit_schedule="rescaled")))
    with pytest.raises(
        UserError,
        match=r'trainer settings refit_schedule not recorded \(the run predates the setting: as "rescaled"\) then, '
        r'"selection" now',
    ):
        check_reusable(run_dir, _provenance(RunSettings(select=True)))


def test_without_selection_the_refit_schedule_is_not_part_of_a_runs_provenance():
    """It changes nothing without --select: a finished run stays reusable whatever its value."""
    plain = _provenance(RunSettings())
    assert "refit_schedule" not in plain["trainer"]
    assert plain["key"] == _provenance(RunSettings(refit_schedule="rescaled"))["key"]
    assert "refit_schedule" in _provenance(RunSettings(select=True))["trainer"]


def test_a_killed_retrain_resumes_on_the_same_schedule(data, tmp_path):
    """The resumed run rebuilds the longer schedule (then loads its state): same learning rates, same predictions."""
    train, test = fold_splits(data.dataset, 3)[0]
    run = dict(
        data=data,
        head=HEAD,
        switches={},
        train_indices=train,
        test_indices=test,
        seed=1,
        settings=settings(num_train_epochs=3),
        schedule_epochs=6,
    )
    straight_rates, resumed_rates = RecordLearningRates(), RecordLearningRates()
    _, straight = experiment.train_run(run_dir=tmp_path / "straight", callbacks=[straight_rates], **run)
    per_epoch = len(straight_rates.rates) // 3
    with pytest.raises(KeyboardInterrupt):
        experiment.train_run(run_dir=tmp_path / "killed", callbacks=[StopAfter(per_epoch + 1)], **run)
    _, resumed = experiment.train_run(run_dir=tmp_path / "killed", callbacks=[resumed_rates], **run)
    np.testing.assert_allclose(resumed_rates.rates, straight_rates.rates[per_epoch:], rtol=1e-6)
    np.testing.assert_allclose(
        resumed["predictions"]["label"]["probabilities"], straight["predictions"]["label"]["probabilities"], atol=1e-6
    )
