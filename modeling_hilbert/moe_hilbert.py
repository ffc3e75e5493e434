"""Classifier heads over h = [z_audio; z_text; z_joint]: a multi-gate Mixture of Experts, and a plain MLP baseline.

Ships to the Hub with the model: imports only `torch`.
"""

from __future__ import annotations

import torch
from torch import nn


def expert_mlp(input_size: int, hidden_size: int, dropout: float) -> nn.Sequential:
    """One expert (or the MLP baseline's trunk): Linear -> GELU -> Dropout -> Linear -> GELU."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden_size, hidden_size),
        nn.GELU(),
    )


def top_k_gate(gate_probs: torch.Tensor, top_k: int | None) -> torch.Tensor:
    """Keep the k largest gate probabilities per row and renormalise them to sum to 1.

    Args:
        gate_probs: `(B, E)` softmax probabilities.
        top_k: k, or None for the dense gate (returned unchanged).

    Returns:
        `(B, E)` routing weights with at most k non-zeros per row.
    """
    if top_k is None or top_k >= gate_probs.shape[-1]:
        return gate_probs
    values, indices = gate_probs.topk(top_k, dim=-1)
    sparse = torch.zeros_like(gate_probs).scatter(-1, indices, values)
    return sparse / sparse.sum(dim=-1, keepdim=True)


class MixtureOfExpertsClassifier(nn.Module):
    r"""Multi-gate Mixture of Experts (Ma et al. 2018, MMoE): shared experts, one gate and one tower per task.

    For input h and task t:

        g_t = topk( softmax(W_t h) )                 (E,)
        y_t = Tower_t( sum_e g_t[e] * Expert_e(h) )   (C_t,)

    One gate per task lets tasks with different label regimes (multiclass, binary, multilabel) weight the shared
    experts differently.

    Args:
        input_size: width of h.
        expert_hidden_size: width of each expert's output.
        num_experts: E.
        task_output_sizes: `{task_name: number of logits}`.
        top_k: keep the k largest gate weights (None = dense).
        dropout: dropout inside experts and before each tower's output layer.
    """

    def __init__(
        self,
        input_size: int,
        expert_hidden_size: int,
        num_experts: int,
        task_output_sizes: dict[str, int],
        top_k: int | None = None,
        dropout: float = 0.0,
    ):
        super().__init__()
        self.top_k = top_k
        self.experts = nn.ModuleList(expert_mlp(input_size, expert_hidden_size, dropout) for _ in range(num_experts))
        self.gates = nn.ModuleDict({task: nn.Linear(input_size, num_experts) for task in task_output_sizes})
        self.towers = nn.ModuleDict(
            {task: nn.Sequential(nn.Dropout(dropout), nn.Linear(expert_hidden_size, size)) for task, size in task_output_sizes.items()}
        )

    def forward(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """
        Args:
            features: h `(B, input_size)`.

        Returns:
            logits `{task: (B, C_t)}`, gate probabilities before top-k `{task: (B, E)}` (for the load-balancing
            loss) and routing weights after top-k `{task: (B, E)}` (what the experts were mixed with).
        """
        expert_outputs = torch.stack([expert(features) for expert in self.experts], dim=1)  # (B, E, H)
        logits, gate_probs, gate_weights = {}, {}, {}
        for task, gate in self.gates.items():
            probs = torch.softmax(gate(features), dim=-1)  # (B, E)
            weights = top_k_gate(probs, self.top_k)
            mixed = torch.einsum("be,beh->bh", weights, expert_outputs)  # (B, H)
            logits[task] = self.towers[task](mixed)
            gate_probs[task], gate_weights[task] = probs, weights
        return logits, gate_probs, gate_weights


class MLPClassifier(nn.Module):
    """Baseline head: one independent MLP per task over h (no experts, no gates)."""

    def __init__(self, input_size: int, hidden_size: int, task_output_sizes: dict[str, int], dropout: float = 0.0):
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                task: nn.Sequential(expert_mlp(input_size, hidden_size, dropout), nn.Dropout(dropout), nn.Linear(hidden_size, size))
                for task, size in task_output_sizes.items()
            }
        )

    def forward(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict, dict]:
        """features `(B, input_size)` -> logits `{task: (B, C_t)}` and empty gate dictionaries."""
        return {task: head(features) for task, head in self.heads.items()}, {}, {}
