"""An exponential moving average (EMA) of a model's trainable weights, for evaluating and saving the average.

Why: on a few dozen documents the weights at the last step depend on the last few batches, so the same model trained
with another seed scores very differently (docs/results.md, round 4: HILBERT's final models varied 2.5x as much with
the seed as concat + MLP's). Averaging the weights over the last steps smooths that out at no training cost.

After optimiser step t (1-based) every trainable parameter's average moves towards it:

    d_t = min(decay, (1 + t) / (10 + t))
    avg_t = d_t * avg_{t-1} + (1 - d_t) * theta_t,        avg_0 = theta_0 (the initial weights)

The warm-up `(1 + t) / (10 + t)` (TensorFlow's `num_updates` rule) keeps the first steps from being dominated by the
random initial weights: d_1 = 2/11, d_10 = 11/20, d_90 = 0.91. Frozen parameters (the pretrained encoders) and
buffers (feature statistics) are not averaged: they do not change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

STATE_NAME = "weight_average.safetensors"


class WeightAverage:
    """EMA of `model`'s parameters with `requires_grad`.

    Args:
        model: the model whose parameters are averaged (unwrapped: names as in its state dict).
        decay: the EMA decay in (0, 1); the effective decay also follows the warm-up above.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.average = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        """d_t of the next update (t = steps + 1)."""
        t = self.steps + 1
        return min(self.decay, (1 + t) / (10 + t))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """After an optimiser step: avg <- d * avg + (1 - d) * theta."""
        d = self.current_decay()
        for name, parameter in model.named_parameters():
            if name in self.average:
                self.average[name].lerp_(parameter.detach(), 1.0 - d)  # avg + (1 - d)(theta - avg)
        self.steps += 1

    @torch.no_grad()
    def copy_to(self, model: torch.nn.Module) -> None:
        """Replace the model's trainable weights by their average (the model to predict with and to save)."""
        for name, parameter in model.named_parameters():
            if name in self.average:
                parameter.copy_(self.average[name])

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """Within the block the model has the averaged weights; afterwards the trained ones again, exactly."""
        trained = {n: p.detach().clone() for n, p in model.named_parameters() if n in self.average}
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name in trained:
                        parameter.copy_(trained[name])

    def save(self, folder: str | Path) -> None:
        """Write the average and the step count to `folder/weight_average.safetensors` (for resuming)."""
        from safetensors.torch import save_file

        tensors = {f"average.{n}": t.contiguous() for n, t in self.average.items()}
        tensors["steps"] = torch.tensor(self.steps, dtype=torch.int64)
        save_file(tensors, str(Path(folder) / STATE_NAME), metadata={"decay": repr(self.decay)})

    def load(self, folder: str | Path) -> None:
        """Restore what `save` wrote; a missing file or other parameters are an error (the run cannot resume)."""
        from safetensors import safe_open

        path = Path(folder) / STATE_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: the checkpoint was saved without the weight average (--ema-decay). Remove "
                f"{Path(folder)} to restart that run from its previous checkpoint or from scratch."
            )
        with safe_open(str(path), framework="pt") as f:
            names = {k[len("average.") :] for k in f.keys() if k.startswith("average.")}
            if names != set(self.average):
                raise ValueError(f"{path} averages other parameters than the model has: it belongs to another run")
            for name in names:
                self.average[name].copy_(f.get_tensor(f"average.{name}"))
            self.steps = int(f.get_tensor("steps"))
