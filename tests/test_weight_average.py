"""hilbert_app/training/weight_average.py: the EMA of the trainable weights, against a numpy recurrence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hilbert_app.training.weight_average import STATE_NAME, WeightAverage


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 2))
    model[1].weight.requires_grad_(False)  # a frozen parameter, like the pretrained encoders
    model.register_buffer("statistic", torch.arange(4.0))  # a buffer, like the feature statistics
    return model


def perturb(model: torch.nn.Module, generator: torch.Generator) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator))


@settings(max_examples=25, deadline=None)
@given(decay=st.floats(0.05, 0.999), steps=st.integers(1, 40))
def test_the_average_follows_the_warmed_up_recurrence(decay, steps):
    model = tiny_model()
    average = WeightAverage(model, decay)
    frozen, buffer = model[1].weight.detach().clone(), model.statistic.clone()
    expected = {n: p.detach().double().numpy().copy() for n, p in model.named_parameters() if p.requires_grad}
    generator = torch.Generator().manual_seed(steps)
    for t in range(1, steps + 1):
        perturb(model, generator)
        average.update(model)
        d = min(decay, (1 + t) / (10 + t))
        for name, p in model.named_parameters():
            if name in expected:
                expected[name] = d * expected[name] + (1 - d) * p.detach().double().numpy()
    assert set(average.average) == set(expected) and "1.weight" not in average.average
    for name, value in expected.items():
        np.testing.assert_allclose(average.average[name].double().numpy(), value, atol=1e-5)
    assert average.steps == steps
    torch.testing.assert_close(model[1].weight, frozen, rtol=0, atol=0)
    torch.testing.assert_close(model.statistic, buffer, rtol=0, atol=0)


def test_applied_swaps_in_the_average_and_restores_the_trained_weights_exactly():
    model = tiny_model()
    average = WeightAverage(model, 0.5)
    perturb(model, torch.Generator().manual_seed(1))
    average.update(model)
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randn(5, 3)
    with average.applied(model):
        inside = model(x)
        assert all(torch.equal(dict(model.named_parameters())[n], a) for n, a in average.average.items())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, trained[name], rtol=0, atol=0)
    average.copy_to(model)
    torch.testing.assert_close(model(x), inside)


def test_save_and_load_continue_the_average(tmp_path):
    model = tiny_model()
    average = WeightAverage(model, 0.9)
    generator = torch.Generator().manual_seed(2)
    for _ in range(3):
        perturb(model, generator)
        average.update(model)
    average.save(tmp_path)
    restored = WeightAverage(tiny_model(), 0.9)
    restored.load(tmp_path)
    assert restored.steps == 3 and restored.current_decay() == average.current_decay()
    for name, value in average.average.items():
        torch.testing.assert_close(restored.average[name], value, rtol=0, atol=0)


def test_bad_decays_and_foreign_or_missing_states_are_clear_errors(tmp_path):
    for decay in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="must be in"):
            WeightAverage(tiny_model(), decay)
    with pytest.raises(FileNotFoundError, match="saved without the weight average"):
        WeightAverage(tiny_model(), 0.9).load(tmp_path)
    WeightAverage(torch.nn.Linear(2, 2), 0.9).save(tmp_path)
    assert (tmp_path / STATE_NAME).is_file()
    with pytest.raises(ValueError, match="another run"):
        WeightAverage(tiny_model(), 0.9).load(tmp_path)
