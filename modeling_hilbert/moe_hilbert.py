"""Classifier heads over h = [z_audio; z_text; z_joint]: a multi-gate Mixture of Experts, and a plain MLP baseline.

Ships to the Hub with the model: imports only `torch`.
"""

from __future__ import annotations

import torch
from torch import nn

from .dropout_hilbert import DocumentDropout


def expert_mlp(input_size: int, hidden_size: int, dropout: float) -> nn.Sequential:
    """One expert (or the MLP baseline's trunk): Linear -> GELU -> Dropout -> Linear -> GELU."""
    return nn.Sequential(
        nn.Linear(input_size, hidden_size),
        nn.GELU(),
        DocumentDropout(dropout),
        nn.Linear(hidden_size, hidden_size),
        nn.GELU(),
    )


def top_k_gate(gate_probs: torch.Tensor, top_k: int | None) -> torch.Tensor:
    r"""Routing weights from the gate's softmax probabilities p `(B, E)`.

    * top_k None or >= E (dense): g = p, unchanged.
    * top_k = 1 (Switch Transformer, Fedus et al. 2021, eq. 2): g_e = p_e for the selected expert e = argmax p,
      0 elsewhere, *not* renormalised. Renormalising a single kept weight makes it identically 1: the mixture would
      then not depend on the gate's parameters at all, and the gate would learn only from the balance loss, never
      from the task loss. With the raw probability, the task loss's gradient reaches the gate through p_e.
    * 1 < top_k < E: the k largest probabilities renormalised to sum to 1, g_e = p_e / sum_{e' in top-k} p_e'
      (= a softmax over the k largest gate logits: Shazeer et al. 2017; GShard's top-2, Lepikhin et al. 2021). The
      task loss reaches the gate through the ratios of the kept experts' probabilities.

    Args:
        gate_probs: `(B, E)` softmax probabilities.
        top_k: k, or None for the dense gate.

    Returns:
        `(B, E)` routing weights with at most k non-zeros per row.
    """
    if top_k is None or top_k >= gate_probs.shape[-1]:
        return gate_probs
    values, indices = gate_probs.topk(top_k, dim=-1)
    if top_k > 1:
        values = values / values.sum(dim=-1, keepdim=True)
    return torch.zeros_like(gate_probs).scatter(-1, indices, values)


class MixtureOfExpertsClassifier(nn.Module):
    r"""Multi-gate Mixture of Experts (Ma et al. 2018, MMoE): shared experts, one gate and one tower per task.

    For input h and task t:

        p_t = softmax(W_t h)                          (E,)
        g_t = top_k_gate(p_t, k)                      (E,)   see `top_k_gate`: raw p for k = 1, renormalised for k > 1
        y_t = Tower_t( sum_e g_t[e] * Expert_e(h) )   (C_t,)
        with `shared_expert`: y_t = Tower_t( Shared(h) + sum_e g_t[e] * Expert_e(h) )

    One gate per task lets tasks with different label regimes (multiclass, binary, multilabel) weight the shared
    experts differently. The shared expert (DeepSeekMoE's shared-expert isolation, Dai et al. 2024) is always on
    with weight 1: what every document needs is learnt from all of them in one place, where routed experts would
    each learn it again from the documents routed to them (on ~50 documents, from a fraction of an already small
    set).

    Args:
        input_size: width of h.
        expert_hidden_size: width of each expert's output.
        num_experts: E.
        task_output_sizes: `{task_name: number of logits}`.
        top_k: experts per item (None = dense): k = 1 keeps the selected expert's raw gate probability
            (Switch Transformer), k > 1 renormalises the k largest to sum to 1 (see `top_k_gate`).
        dropout: dropout inside experts and before each tower's output layer.
        shared_expert: add one always-on expert, outside the gates (see above).
    """

    def __init__(
        self,
        input_size: int,
        expert_hidden_size: int,
        num_experts: int,
        task_output_sizes: dict[str, int],
        top_k: int | None = None,
        dropout: float = 0.0,
        shared_expert: bool = False,
    ):
        super().__init__()
        self.top_k = top_k
        self.experts = nn.ModuleList(expert_mlp(input_size, expert_hidden_size, dropout) for _ in range(num_experts))
        self.shared_expert = expert_mlp(input_size, expert_hidden_size, dropout) if shared_expert else None
        self.gates = nn.ModuleDict({task: nn.Linear(input_size, num_experts) for task in task_output_sizes})
        self.towers = nn.ModuleDict(
            {
                task: nn.Sequential(DocumentDropout(dropout), nn.Linear(expert_hidden_size, size))
                for task, size in task_output_sizes.items()
            }
        )

    def forward(
        self, features: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """
        Args:
            features: h `(B, input_size)`.

        Returns:
            logits `{task: (B, C_t)}`, gate probabilities before top-k `{task: (B, E)}` (for the load-balancing
            loss) and routing weights after top-k `{task: (B, E)}` (what the experts were mixed with).
        """
        expert_outputs = torch.stack([expert(features) for expert in self.experts], dim=1)  # (B, E, H)
        shared = self.shared_expert(features) if self.shared_expert is not None else None  # (B, H)
        logits, gate_probs, gate_weights = {}, {}, {}
        for task, gate in self.gates.items():
            probs = torch.softmax(gate(features), dim=-1)  # (B, E)
            weights = top_k_gate(probs, self.top_k)
            mixed = torch.einsum("be,beh->bh", weights, expert_outputs)  # (B, H)
            if shared is not None:
                mixed = mixed + shared
            logits[task] = self.towers[task](mixed)
            gate_probs[task], gate_weights[task] = probs, weights
        return logits, gate_probs, gate_weights


class MLPClassifier(nn.Module):
    """Baseline head: one independent MLP per task over h (no experts, no gates)."""

    def __init__(self, input_size: int, hidden_size: int, task_output_sizes: dict[str, int], dropout: float = 0.0):
        super().__init__()
        self.heads = nn.ModuleDict(
            {
                task: nn.Sequential(
                    expert_mlp(input_size, hidden_size, dropout), DocumentDropout(dropout), nn.Linear(hidden_size, size)
                )
                for task, size in task_output_sizes.items()
            }
        )

    def forward(self, features: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict, dict]:
        """features `(B, input_size)` -> logits `{task: (B, C_t)}` and empty gate dictionaries."""
        return {task: head(features) for task, head in self.heads.items()}, {}, {}
