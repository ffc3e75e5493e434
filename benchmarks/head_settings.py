"""The head settings a benchmark takes from a training YAML (configs/demo.yaml): one list for every benchmark."""

from __future__ import annotations

from collections.abc import Mapping

HEAD_KEYS = ("hidden_size", "num_attention_heads", "num_cross_attention_layers", "intermediate_size", "pooling_heads",
             "pooling_hidden_size", "projection_dim", "num_experts", "expert_hidden_size", "dropout",
             "dual_contrastive_weight", "cka_weight", "mi_weight", "moe_balance_weight")


def head_settings(settings: Mapping) -> dict:
    """The `HilbertConfig` head keywords among a training YAML's settings (the rest are trainer options)."""
    return {key: settings[key] for key in HEAD_KEYS if key in settings}
