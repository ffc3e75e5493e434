"""Pooling: frames -> segment vectors (masked mean) and segments -> document vectors (self-attentive pooling).

Ships to the Hub with the model: imports only `torch`.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_mean(hidden_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of `hidden_states` over the positions where `mask` is true.

    Args:
        hidden_states: `(N, T, D)` frames or tokens.
        mask: `(N, T)`, 1/True for real positions; None means every position is real.

    Returns:
        `(N, D)`. A row without any real position gives zeros (never NaN), so that an empty segment cannot poison a
        batch; callers mark such segments as missing.
    """
    if mask is None:
        return hidden_states.mean(dim=1)
    weights = mask.to(hidden_states.dtype).unsqueeze(-1)  # (N, T, 1)
    total = (hidden_states * weights).sum(dim=1)  # (N, D)
    count = weights.sum(dim=1).clamp(min=1.0)  # (N, 1)
    return total / count


class SelfAttentivePooling(nn.Module):
    r"""Multi-head structured self-attentive pooling (Lin et al. 2017, "A Structured Self-attentive Sentence
    Embedding").

    For a document of S segment states H (S, d):

        A = softmax_S( W_2 tanh(W_1 H^T) )          (r, S)   one distribution over real segments per head
        M = A H                                      (r, d)
        z = W_o vec(M)                               (d_out,)

    Padded segments get exactly zero weight (their scores are set to the dtype's minimum before the softmax), so
    their contents never change z. A document with no real segment gets A = 0 and z = W_o 0 + b (finite).

    Args:
        hidden_size: d, width of the segment states.
        attention_hidden_size: d_a, hidden width of the scorer.
        num_heads: r, number of attention distributions.
        output_size: width of z (defaults to `hidden_size`).
        mean_init: start as the masked mean: W_2 = 0, so every score is 0 and A is uniform over the real segments
            (M = r copies of the mean of H). W_2 then gets gradients at once (W_1 once W_2 is non-zero). W_2 is marked
            `zero_init`, so that a model's `_init_weights` (which re-initialises every Linear) keeps it at zero.
    """

    def __init__(
        self,
        hidden_size: int,
        attention_hidden_size: int,
        num_heads: int,
        output_size: int | None = None,
        mean_init: bool = False,
    ):
        super().__init__()
        self.num_heads = num_heads
        self.score_hidden = nn.Linear(hidden_size, attention_hidden_size, bias=False)  # W_1
        self.score_heads = nn.Linear(attention_hidden_size, num_heads, bias=False)  # W_2
        self.score_heads.zero_init = mean_init
        if mean_init:
            with torch.no_grad():
                self.score_heads.weight.zero_()
        self.output = nn.Linear(num_heads * hidden_size, output_size or hidden_size)  # W_o

    def forward(
        self, hidden_states: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            hidden_states: `(B, S, d)`.
            mask: `(B, S)` bool, True for real segments; None means all real.

        Returns:
            pooled `(B, d_out)` and attention weights `(B, r, S)` (each head sums to 1 over real segments).
        """
        scores = self.score_heads(torch.tanh(self.score_hidden(hidden_states)))  # (B, S, r)
        scores = scores.transpose(1, 2)  # (B, r, S)
        if mask is not None:
            mask = mask.bool().unsqueeze(1)  # (B, 1, S)
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        if mask is not None:
            weights = weights * mask  # documents without any real segment: uniform -> 0
            # 0 * NaN = NaN: padded states must be zeroed, a zero weight alone does not keep them out.
            hidden_states = hidden_states.masked_fill(~mask.transpose(1, 2), 0.0)
        pooled = torch.bmm(weights, hidden_states)  # (B, r, d)
        return self.output(pooled.flatten(1)), weights
