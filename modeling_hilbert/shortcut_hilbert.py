r"""The linear shortcut: a logistic-regression path beside HILBERT's head (`HilbertConfig.linear_shortcut`).

The practitioner's baseline -- mean-pooled frozen features, standardised, into a linear classifier -- kept *inside*
the model, its logits added to the head's (the "wide" part of Wide & Deep, Cheng et al. 2016):

    x_bar_m = mean over the real segments s of x_{m,s}       (B, D_m)  per modality m; zeros when m has none
    x_bar   = [x_bar_audio; x_bar_text]                       (B, D)    D = D_a + D_t (the modalities the model uses)
    u       = (x_bar - mu) / sigma                            (B, D)    mu, sigma: per-dimension mean and standard
                                                                        deviation of x_bar over the training documents
    y_t     = Head_t(z) + W_t Dropout(u) / sqrt(D) + b_t      (B, C_t)  per task t; W_t = 0, b_t = 0 at initialisation

Why: on small corpora the head's projections, attention and pooling can throw away what a linear model on the same
features keeps (issue 16: on a held-out real corpus the neural text head lost 9 macro-AUC points to a logistic
regression on the mean-pooled text features). With the shortcut the model contains that linear model as a
sub-model: it starts as the plain head (W = 0) and the linear path grows only as far as it lowers the training loss.
`mu` and `sigma` are the document-level statistics the baseline's StandardScaler uses (not the segment-level ones of
`SegmentProjection`: a dimension that varies within documents but not between them would otherwise be squashed).
The 1 / sqrt(D) matches the path's speed to the head's: Adam moves every weight by about the learning rate per step,
so a logit summing D ~ 800 standardised inputs would move ~D times faster than one weight -- by ~0.6 per step at
lr 1e-3, enough to memorise ~50 training documents within a few steps, before the head has learnt anything.

Ships to the Hub with the model: imports only `torch` and sibling files.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .dropout_hilbert import DocumentDropout


def masked_mean(features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of each document's real segments.

    Args:
        features: `(B, S, D)`; padded segments may hold anything (NaN included): they are zeroed before summing.
        mask: `(B, S)` bool, True for real segments.

    Returns:
        `(B, D)` in the features' dtype; zeros for a document without any real segment.
    """
    mask = mask.bool()
    total = features.masked_fill(~mask.unsqueeze(-1), 0.0).sum(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(features.dtype)
    return total / count


class FeatureStandardizer(nn.Module):
    """u = (x - shift) / scale per (last) dimension, `shift`/`scale` `(D,)` buffers (0 and 1 until set; saved with
    the model). A dimension with (near) zero spread is only centred, so that a constant feature cannot blow up.
    Used for the shortcut's document means and, as its base class, by `SegmentProjection` for segment features."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("shift", torch.zeros(size))
        self.register_buffer("scale", torch.ones(size))

    @torch.no_grad()
    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Standardise with this per-dimension mean and standard deviation `(D,)`."""
        std = std.to(self.scale)
        self.shift.copy_(mean.to(self.shift))
        self.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(..., D)` -> `(..., D)`."""
        return (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)


class LinearShortcut(nn.Module):
    """Per-task linear logits over standardised mean-pooled features: y_t = W_t Dropout(u) / sqrt(D) + b_t, zero at
    init (see the module docstring for the 1 / sqrt(D)).

    Args:
        input_size: D, width of u.
        task_output_sizes: `{task_name: number of logits}`.
        dropout: dropout on u (input-feature dropout, per document inside `document_dropout`).
    """

    def __init__(self, input_size: int, task_output_sizes: dict[str, int], dropout: float = 0.0):
        super().__init__()
        self.dropout = DocumentDropout(dropout)
        self.input_scale = 1.0 / math.sqrt(input_size)
        self.linears = nn.ModuleDict({task: nn.Linear(input_size, size) for task, size in task_output_sizes.items()})
        for linear in self.linears.values():
            linear.zero_init = True  # `_init_weights` re-initialises every Linear: keep these at zero
            with torch.no_grad():
                linear.weight.zero_()
                linear.bias.zero_()

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """u `(B, D)` -> `{task: (B, C_t)}`."""
        features = self.dropout(features) * self.input_scale
        return {task: linear(features) for task, linear in self.linears.items()}
