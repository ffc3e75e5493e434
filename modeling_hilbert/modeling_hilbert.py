"""HILBERT: cross-attentive audio-text document representations and a Mixture-of-Experts classifier.

Data flow for a batch of B documents of S segments (shapes in comments use these letters; d = hidden_size):

    segments --frozen encoders, masked mean--> audio (B, S, D_a), text (B, S, D_t)
             --projection + time embedding--> (B, S, d) each
             --L x bidirectional cross-modal attention--> audio', text' (B, S, d)
             --joint fusion--> joint (B, S, d)             [or (B, 2S, d) with joint_sequence="concat_sequence"]
             --self-attentive pooling--> z_a, z_t, z_j (B, d), plus the pooling weights (B, r, S)
               [z_a, z_t from the streams before the cross-modal attention with modality_embeddings="own_stream"]
             --MoE over [z_a; z_t; z_j]--> logits per task

Losses (see losses_hilbert.py): L = L_cls + l_dual L_dual + l_cka L_cka + l_mi L_mi + l_moe L_moe
(+ l_uni L_uni, the unimodal heads' losses, when on), the batch-level terms on the global batch gathered across
processes.

Ships to the Hub with the model: imports only `torch`, `transformers` and sibling files.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput
from transformers.utils import logging as hf_logging

from .attention_hilbert import CrossAttentionBlock, CrossModalAttentionLayer
from .configuration_hilbert import HilbertConfig
from .dropout_hilbert import DocumentDropout, document_dropout
from .encoders_hilbert import (
    auto_encoder_batch_size,
    build_encoder,
    encode_audio_batch,
    encode_text_batch,
    encoder_hidden_size,
    is_whisper,
    length_bucketed_batches,
    load_pretrained_encoder,
    real_lengths,
)
from .losses_hilbert import (
    all_reduce_sum,
    cka_loss,
    classification_loss_terms,
    direct_contrastive_loss,
    distributed_world_size,
    gather_with_grad,
    gather_without_grad,
    mi_balance_loss,
    moe_load_balance_loss,
    reciprocal_dual_contrastive_loss,
)
from .memory_hilbert import ContrastiveMemory
from .moe_hilbert import MixtureOfExpertsClassifier, MLPClassifier
from .pipeline_hilbert import HilbertDocumentClassificationPipeline  # noqa: F401  (ships the pipeline with the model)
from .pooling_hilbert import SelfAttentivePooling
from .shortcut_hilbert import FeatureStandardizer, LinearShortcut, masked_mean

logger = hf_logging.get_logger(__name__)


# ---------------------------------------------------------------------------------------------- outputs
@dataclass
class HilbertModelOutput(ModelOutput):
    """Output of `HilbertModel`.

    Args:
        loss: `()` representation loss l_dual L_dual + l_cka L_cka + l_mi L_mi (when `return_loss=True`).
        audio_embeds, text_embeds, joint_embeds: `(B, d)` document embeddings z_a, z_t, z_j (None for a modality
            the config does not use; joint is None in unimodal configs).
        contrastive_loss: `()` L_dual (or the direct audio<->text InfoNCE when contrastive_target="audio_text").
        cka_loss: `()` L_cka.  mi_loss: `()` L_mi.
        mi_audio_joint, mi_text_joint: `()` InfoNCE estimates of I(z_a; z_j) and I(z_t; z_j), each on the documents
            that have the modality (log B_m - InfoNCE_m; 0 with fewer than 2 such documents).
        temperature: `()` current tau.
        audio_documents, text_documents: `()` int, number of documents of the (global) batch with at least one real
            segment of each modality: the documents that enter that modality's contrastive, CKA and MI terms.
        audio_pooling_weights, text_pooling_weights: `(B, r, S)` self-attentive pooling weights over segments.
        joint_pooling_weights: `(B, r, S)` (or `(B, r, 2S)`, audio segments first, with "concat_sequence").
        audio_segment_mask, text_segment_mask: `(B, S)` bool, which segments were real for each modality.
        audio_hidden_states, text_hidden_states (`output_hidden_states=True`): tuples of `(B, S, d)` segment states,
            the projection's output (time embedding added) and the output of each cross-attention layer (L + 1).
        audio_cross_attentions, text_cross_attentions (`output_attentions=True`): tuples of L `(B, h, S, S)`:
            audio segments (queries) over text segments, and text over audio, per layer. The pooling weights (above)
            are the other attention maps.
        memory_documents (`contrastive_memory_size` > 0, in training): `()` int, the documents held in the
            contrastive memory that served as extra negatives in this step.
        mean_pooled_features (`linear_shortcut`): `(B, D_a + D_t)` u, each document's mean-pooled frozen features,
            standardised over the training documents (shortcut_hilbert.py), the linear shortcut's input.
    """

    loss: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    joint_embeds: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    cka_loss: torch.FloatTensor | None = None
    mi_loss: torch.FloatTensor | None = None
    mi_audio_joint: torch.FloatTensor | None = None
    mi_text_joint: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None
    audio_pooling_weights: torch.FloatTensor | None = None
    text_pooling_weights: torch.FloatTensor | None = None
    joint_pooling_weights: torch.FloatTensor | None = None
    audio_segment_mask: torch.BoolTensor | None = None
    text_segment_mask: torch.BoolTensor | None = None
    audio_documents: torch.LongTensor | None = None
    text_documents: torch.LongTensor | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    memory_documents: torch.LongTensor | None = None
    mean_pooled_features: torch.FloatTensor | None = None


@dataclass
class HilbertSequenceClassifierOutput(ModelOutput):
    """Output of `HilbertForSequenceClassification`.

    Args:
        loss: `()` total L = L_cls + l_dual L_dual + l_cka L_cka + l_mi L_mi + l_moe L_moe (when labels are given).
        logits: one task: a tensor `(B, C)` (binary tasks: `(B, 1)`, a sigmoid logit), so that `logits.argmax(-1)`,
            plain `Trainer` metrics and `Trainer.predict` work as for any transformers classifier; several tasks:
            the dict `{task: (B, C_t)}` (a tensor cannot hold tasks with different class counts).
        task_logits: always the dict `{task: (B, C_t)}`, for code that handles one and several tasks alike.
        classification_loss: `()` L_cls, summed over tasks.  task_losses: `{task: ()}`.
        contrastive_loss, cka_loss, mi_loss, mi_audio_joint, mi_text_joint, temperature, audio_documents,
            text_documents: see `HilbertModelOutput`.
        moe_balance_loss: `()` L_moe, averaged over the task gates.
        unimodal_loss: `()` L_uni (`config.unimodal_loss_weight` > 0 only; `unimodal_losses`).
        audio_embeds, text_embeds, joint_embeds: `(B, d)`.
        gate_weights: `{task: (B, E)}` routing weights of the experts (MoE classifier only).
        audio_pooling_weights, text_pooling_weights, joint_pooling_weights, audio_hidden_states, text_hidden_states,
            audio_cross_attentions, text_cross_attentions, memory_documents: see `HilbertModelOutput`.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | dict[str, torch.FloatTensor] | None = None
    classification_loss: torch.FloatTensor | None = None
    task_losses: dict[str, torch.FloatTensor] | None = None
    contrastive_loss: torch.FloatTensor | None = None
    cka_loss: torch.FloatTensor | None = None
    mi_loss: torch.FloatTensor | None = None
    moe_balance_loss: torch.FloatTensor | None = None
    unimodal_loss: torch.FloatTensor | None = None
    mi_audio_joint: torch.FloatTensor | None = None
    mi_text_joint: torch.FloatTensor | None = None
    temperature: torch.FloatTensor | None = None
    audio_embeds: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    joint_embeds: torch.FloatTensor | None = None
    gate_weights: dict[str, torch.FloatTensor] | None = None
    audio_pooling_weights: torch.FloatTensor | None = None
    text_pooling_weights: torch.FloatTensor | None = None
    joint_pooling_weights: torch.FloatTensor | None = None
    audio_documents: torch.LongTensor | None = None
    text_documents: torch.LongTensor | None = None
    task_logits: dict[str, torch.FloatTensor] | None = None
    audio_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    text_hidden_states: tuple[torch.FloatTensor, ...] | None = None
    audio_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    text_cross_attentions: tuple[torch.FloatTensor, ...] | None = None
    memory_documents: torch.LongTensor | None = None


# ----------------------------------------------------------------------------------------- small blocks
class SegmentProjection(FeatureStandardizer):
    r"""Per-modality projection of segment features to the head width: standardise -> Linear -> LayerNorm -> Dropout.

        x' = (x - shift) / scale        per feature dimension (`shift`, `scale`: `(D_in,)` buffers)
        h  = Dropout(LayerNorm(W x' + b))

    `shift` and `scale` are the per-dimension mean and standard deviation of the frozen encoder's features over the
    training documents' real segments (`set_statistics`, called by `HilbertModel.fit_feature_statistics`); until
    set they are 0 and 1 (identity). Why: frozen speech encoders' features have a few massive dimensions (Whisper
    tiny.en on the demo corpus: 5 of 384 dimensions hold 63% of the variance and 78% of the squared mean), which
    dominate a linear map and the LayerNorm after it and drown the dimensions that tell documents apart. The
    logistic-regression baseline standardises its inputs for the same reason. The buffers are saved with the model.
    """

    def __init__(self, input_size: int, hidden_size: int, dropout: float):
        super().__init__(input_size)  # the `shift` / `scale` buffers and `set_statistics`
        self.linear = nn.Linear(input_size, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)
        self.dropout = DocumentDropout(dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`(B, S, D_in)` -> `(B, S, d)`."""
        return self.dropout(self.norm(self.linear(super().forward(features))))


class SegmentTimeEmbedding(nn.Module):
    r"""Embedding of each segment's start time and duration (seconds).

    Sinusoids at geometric frequencies w_k = max_period^(-k/n), k < n = d/4 (as in Transformer position encodings,
    but on seconds instead of positions, so that a pause between turns is visible), then a linear map to d:

        e(t0, dt) = W [sin(w t0); cos(w t0); sin(w dt); cos(w dt)]
    """

    def __init__(self, hidden_size: int, max_period: float):
        super().__init__()
        self.num_frequencies = max(hidden_size // 4, 1)
        self.max_period = max_period
        self.linear = nn.Linear(4 * self.num_frequencies, hidden_size)

    def forward(self, times: torch.Tensor) -> torch.Tensor:
        """times `(B, S, 2)` = (start, end) in seconds -> `(B, S, d)`."""
        # Angles in at least float32: an hour is 3600 s, where half precision cannot resolve a second.
        dtype = torch.promote_types(self.linear.weight.dtype, torch.float32)
        times = times.to(dtype)
        steps = torch.arange(self.num_frequencies, device=times.device, dtype=dtype)
        frequencies = torch.exp(-math.log(self.max_period) * steps / self.num_frequencies)  # (n,)
        start = times[..., 0].unsqueeze(-1) * frequencies
        duration = (times[..., 1] - times[..., 0]).clamp(min=0).unsqueeze(-1) * frequencies
        features = torch.cat([start.sin(), start.cos(), duration.sin(), duration.cos()], dim=-1)
        return self.linear(features.to(self.linear.weight.dtype))


def weights_sha256(module: nn.Module) -> str:
    """Content hash of a module's parameters and buffers (names, shapes, dtypes and bytes), for provenance."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class CheckpointError(ValueError):
    """A saved HILBERT model that cannot be loaded as it was saved: a damaged weights file, or tensors missing from
    it (they would be left random) or unexpected in it. The message names the file and the tensors."""


def _weights_file(args: tuple, kwargs: dict) -> str:
    """Where `from_pretrained` read the weights, for messages: the folder's model.safetensors, or the repository's."""
    source = args[0] if args else kwargs.get("pretrained_model_name_or_path")
    folder = os.path.join(os.fspath(source), kwargs.get("subfolder") or "") if source is not None else None
    if folder is not None and os.path.isdir(folder):
        index = os.path.join(folder, "model.safetensors.index.json")
        return index if os.path.isfile(index) else os.path.join(folder, "model.safetensors")
    return f"model.safetensors of the Hub repository {source}"


def _check_loading_info(model, info: dict, weights: str, allow_mismatched: bool = False) -> None:
    """Raise `CheckpointError` unless every tensor of `model` came from the checkpoint and nothing else was in it
    (see `HilbertPreTrainedModel.from_pretrained` for the two allowed cases)."""

    def is_encoder(key: str) -> bool:
        return any(f"{name}." in key for name in HilbertPreTrainedModel.ENCODER_NAMES)

    def shown(keys: list[str]) -> str:
        return ", ".join(keys[:8]) + (f" and {len(keys) - 8} more" if len(keys) > 8 else "")

    missing = sorted(info.get("missing_keys") or ())
    unexpected = sorted(
        key
        for key in info.get("unexpected_keys") or ()
        if not (is_encoder(key) and not model.config.with_encoders)  # a full checkpoint loaded head-only
        and not (isinstance(model, HilbertModel) and key.startswith("classifier."))  # the base of a classifier
    )
    mismatched = [] if allow_mismatched else sorted(str(item[0]) for item in info.get("mismatched_keys") or ())
    if not (missing or unexpected or mismatched):
        return
    parts = []
    head_missing = [key for key in missing if not is_encoder(key)]
    if head_missing:
        parts.append(f"{len(head_missing)} head tensor(s) are missing ({shown(head_missing)}) and would be left random")
    if len(head_missing) < len(missing):
        encoders = [key for key in missing if is_encoder(key)]
        parts.append(
            f"{len(encoders)} encoder tensor(s) are missing ({shown(encoders)}); a head-only checkpoint "
            "loads with with_encoders=False"
        )
    if unexpected:
        parts.append(
            f"{len(unexpected)} tensor(s) in the file belong to no part of {type(model).__name__} ({shown(unexpected)})"
        )
    if mismatched:
        parts.append(f"{len(mismatched)} tensor(s) have another shape than the config gives ({shown(mismatched)})")
    raise CheckpointError(
        f"{weights} does not fit {type(model).__name__} as configured: " + "; ".join(parts) + ". Load it with the "
        "class and config it was saved with, or save the model again (save_pretrained writes every tensor)."
    )


def segment_dropout_mask(audio_mask: torch.Tensor | None, text_mask: torch.Tensor | None, p: float) -> torch.Tensor:
    """Which segments to keep `(B, S)` bool: each real segment is dropped with probability p (one draw per segment,
    shared by both modalities, from torch's global generator), and a document that would lose every real segment
    keeps its first one. A segment is real if either modality's mask says so."""
    real = audio_mask if text_mask is None else text_mask if audio_mask is None else audio_mask | text_mask
    keep = torch.rand(real.shape, device=real.device) >= p
    emptied = real.any(dim=-1) & ~(keep & real).any(dim=-1)  # (B,)
    first_real = real & (real.long().cumsum(dim=-1) == 1)
    return keep | (emptied.unsqueeze(-1) & first_real)


# --------------------------------------------------------------------------------------------- base class
class HilbertPreTrainedModel(PreTrainedModel):
    config_class = HilbertConfig
    config: HilbertConfig
    base_model_prefix = "hilbert"
    main_input_name = "input_ids"
    input_modalities = ("audio", "text")
    supports_gradient_checkpointing = False
    _supports_sdpa = True
    # `forward` takes **kwargs-free explicit arguments, but Trainer must still divide the loss by the
    # gradient-accumulation steps itself: the model never sees `num_items_in_batch`.
    accepts_loss_kwargs = False

    ENCODER_NAMES = ("audio_encoder", "text_encoder")

    def _init_weights(self, module: nn.Module) -> None:
        """Initialise the head (the frozen encoders are sub-models with their own init and are skipped here)."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            if getattr(module, "zero_init", False):  # e.g. a mean-initialised pooling's scorer (pooling_mean_init)
                init.zeros_(module.weight)
            else:
                init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, CrossAttentionBlock) and module.gated:  # starts as the identity (see its docstring)
            init.zeros_(module.attention_gate)
            init.zeros_(module.ffn_gate)
        elif isinstance(module, HilbertModel) and hasattr(module, "logit_scale"):
            init.constant_(module.logit_scale, math.log(1.0 / self.config.temperature_init))
        elif isinstance(module, ContrastiveMemory):  # not saved (persistent=False): a loaded model starts empty
            init.constant_(module.ids, -1)
            for name in ("filled", "last_update", "step", "audio", "text", "joint", "has_audio", "has_text"):
                init.zeros_(getattr(module, name))

    # -- learnable temperature -------------------------------------------------------------------------
    @torch.no_grad()
    def clamp_logit_scale_(self) -> None:
        """Clamp the learnable logit scale log s = log(1/tau) in place to its bound log(1/temperature_min).

        Call after every optimiser step (`HilbertTrainer` does, with `LogitScaleClampCallback`), as open_clip does.
        The forward pass clamps too, but a clamp in forward has zero gradient beyond its bound: a parameter that an
        optimiser step pushed past it would never come back. Clamped in place, the parameter sits at the bound,
        where the forward clamp passes the gradient, so the loss can move it back. There is no lower bound (tau
        may grow: nothing sticks there). A no-op for models without a logit scale (unimodal configs).
        """
        bound = math.log(1.0 / self.config.temperature_min)
        for module in self.modules():
            if isinstance(module, HilbertModel) and hasattr(module, "logit_scale"):
                module.logit_scale.clamp_(max=bound)

    # -- frozen encoders -------------------------------------------------------------------------------
    def frozen_encoders(self) -> list[nn.Module]:
        """The frozen audio and text encoders held anywhere in this model."""
        return [m for name, m in self.named_modules() if name.rsplit(".", 1)[-1] in self.ENCODER_NAMES]

    def freeze_encoders(self) -> None:
        """Stop gradients into the encoders and keep them in eval mode (no dropout, no LayerDrop)."""
        for encoder in self.frozen_encoders():
            encoder.requires_grad_(False)
            encoder.eval()

    def train(self, mode: bool = True):
        """Like `nn.Module.train`, but the frozen encoders stay in eval mode (Trainer calls `model.train()`)."""
        super().train(mode)
        for encoder in self.frozen_encoders():
            encoder.eval()
        return self

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """`PreTrainedModel.from_pretrained`, strictly: every tensor the model has must come from the checkpoint.

        transformers fills a missing tensor with random values and only logs a generic report; a HILBERT head with
        a random classifier would then predict noise that looks like a prediction. So a missing tensor (head, or
        encoder when the model holds encoders), an unexpected one, or a damaged/truncated weights file raises
        `CheckpointError` (a `ValueError`) naming the file and the tensors. Allowed: the encoders' tensors of a
        full checkpoint loaded with `with_encoders=False`, and the classifier's when `HilbertModel` loads a
        `HilbertForSequenceClassification` checkpoint. Then the encoders are re-frozen (loading re-creates
        trainable parameters). `output_loading_info=True` returns `(model, info)` as in transformers.
        """
        kwargs.setdefault("use_safetensors", True)  # HILBERT saves safetensors only: never fall back to a pickled .bin
        want_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        except Exception as error:  # only a damaged weights file is translated; anything else is re-raised as is
            if type(error).__name__ != "SafetensorError":  # safetensors' own type, not imported: Hub code stays lean
                raise
            raise CheckpointError(
                f"{_weights_file(args, kwargs)} is damaged or incomplete ({error}): the download or the save was cut "
                "short. Download the model again (for a Hub repository: delete it from the Hugging Face cache or use "
                "`force_download=True`), or save it again with save_pretrained."
            ) from None
        weights = _weights_file(args, kwargs)
        _check_loading_info(model, info, weights, allow_mismatched=bool(kwargs.get("ignore_mismatched_sizes")))
        model.freeze_encoders()
        return (model, info) if want_info else model

    @classmethod
    def from_encoders_pretrained(
        cls,
        audio_name_or_path: str | None,
        text_name_or_path: str | None,
        *,
        audio_kwargs: dict | None = None,
        text_kwargs: dict | None = None,
        **head_kwargs,
    ):
        """Build a HILBERT model around two pretrained encoders; the head is newly initialised.

        Args:
            audio_name_or_path: Hub id or folder of a speech model (Whisper, HuBERT, wav2vec2, ...). May be None
                when `head_kwargs` set `modalities="text"`.
            text_name_or_path: Hub id or folder of a text model (BERT, RoBERTa, T5, ...). May be None with
                `modalities="audio"`. Either may be saved as its family's full class (`WhisperForConditionalGeneration`,
                `T5ForConditionalGeneration`, ...): only the encoder is kept (`load_pretrained_encoder`; the tested
                pairings are listed in docs/backbones.md).
            audio_kwargs, text_kwargs: extra arguments of each encoder's `from_pretrained` (e.g. `revision`).
            head_kwargs: `HilbertConfig` fields: `num_labels` / `id2label` for one task, or `tasks=[...]`, sizes,
                loss weights, ablation switches.

        The config records where each encoder came from and a sha256 of its weights (`config.encoder_sources`), so
        cached features and checkpoints can be matched to the exact encoders.
        """
        modalities = head_kwargs.get("modalities", "both")
        encoders, sources, configs = {}, {}, {}
        for key, path, kwargs, needed in (
            ("audio", audio_name_or_path, audio_kwargs or {}, modalities in ("both", "audio")),
            ("text", text_name_or_path, text_kwargs or {}, modalities in ("both", "text")),
        ):
            if path is None:
                if needed:
                    raise ValueError(f"modalities={modalities!r} needs a {key} encoder: pass {key}_name_or_path.")
                continue
            encoder = load_pretrained_encoder(path, **kwargs)
            encoders[key], configs[f"{key}_config"] = encoder, encoder.config
            sources[key] = {
                "name_or_path": str(path),
                "model_type": encoder.config.model_type,
                "revision": kwargs.get("revision"),
                "sha256": weights_sha256(encoder),
            }
        config = HilbertConfig(**configs, encoder_sources=sources, **head_kwargs)
        model = cls(config, audio_encoder=encoders.get("audio"), text_encoder=encoders.get("text"))
        logger.info(
            "Loaded frozen encoders %s; every other weight of %s is newly initialised: train the head before use.",
            {k: v["name_or_path"] for k, v in sources.items()},
            cls.__name__,
        )
        return model

    def attach_encoders(
        self, audio_encoder: PreTrainedModel | None = None, text_encoder: PreTrainedModel | None = None
    ):
        """A full model (encoders + this head) from a head-only one (`with_encoders=False`), e.g. after training
        on cached features. The encoders must match the configs the head was built for; the head's weights are
        copied unchanged.

        Returns:
            a new model of the same class with `config.with_encoders=True`.
        """
        config = self.config.__class__.from_dict(self.config.to_dict())
        config.with_encoders = True
        for key, encoder in (("audio", audio_encoder), ("text", text_encoder)):
            needed = config.uses_audio if key == "audio" else config.uses_text
            if needed and encoder is None:
                raise ValueError(f"This model uses the {key} modality: pass {key}_encoder.")
            if encoder is not None:
                expected = getattr(config, f"{key}_config")
                got = (encoder.config.model_type, encoder_hidden_size(encoder.config))
                if got != (expected.model_type, encoder_hidden_size(expected)):
                    raise ValueError(
                        f"The {key} encoder ({got[0]}, width {got[1]}) does not match the {key}_config this head was "
                        f"trained for ({expected.model_type}, width {encoder_hidden_size(expected)})."
                    )
                setattr(config, f"{key}_config", encoder.config)
        full = self.__class__(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
        missing, unexpected = full.load_state_dict(self.state_dict(), strict=False)
        not_encoder = [k for k in missing if not any(f"{name}." in k for name in self.ENCODER_NAMES)]
        if not_encoder or unexpected:
            raise RuntimeError(f"Head weights do not fit: missing {not_encoder}, unexpected {unexpected}.")
        full.freeze_encoders()
        return full.to(next(self.parameters()).device)

    # -- embeddings, as CLIP and sentence-transformers give them ---------------------------------------
    def _embeddings(self, inputs: dict) -> HilbertModelOutput:
        """The base model's output on `inputs`, a missing modality filled in as absent (every segment masked)."""
        base = self.base_model
        inputs = {k: v for k, v in inputs.items() if k not in ("labels", "return_loss", "return_dict")}
        return base(**_with_missing_modality(self.config, inputs), return_loss=False)

    def _document_embedding(self, out: HilbertModelOutput, modality: str, projected: bool) -> torch.Tensor:
        """z_m `(B, d)` from a base output, or its contrastive-space vector normalize(p_m(z_m)) `(B,
        projection_dim)`."""
        if modality not in ("audio", "text", "joint"):
            raise ValueError(f"modality={modality!r} must be 'audio', 'text' or 'joint'.")
        embeds = getattr(out, f"{modality}_embeds")
        if embeds is None:
            have = "no joint embedding" if modality == "joint" else f"no {modality} stream"
            raise ValueError(
                f"This model is unimodal (modalities={self.config.modalities!r}): it has {have}; use "
                f"modality={'audio' if self.config.uses_audio else 'text'!r}."
            )
        if not projected:
            return embeds
        if not self.config.is_multimodal:
            raise ValueError("projected=True needs a multimodal model: the contrastive projections exist only there.")
        base = self.base_model
        return F.normalize(getattr(base, f"{modality}_contrastive_projection")(embeds), dim=-1)

    def get_audio_features(self, projected: bool = False, **inputs) -> torch.Tensor:
        """Audio document embeddings z_a `(B, d)` from raw inputs or segment features (see `HilbertModel.forward`).

        Inputs of one modality are enough: with only audio given, the text is treated as absent (every text
        segment masked, as for a recording without a transcript); the audio stream then attends to nothing.
        `projected=True`: the L2-normalised contrastive-space vector normalize(p_a(z_a)) `(B, projection_dim)`, in
        which the audio, text and joint embeddings of one document were trained to be close (multimodal only).
        """
        return self._document_embedding(self._embeddings(inputs), "audio", projected)

    def get_text_features(self, projected: bool = False, **inputs) -> torch.Tensor:
        """Text document embeddings z_t `(B, d)` (or normalize(p_t(z_t)) with `projected=True`); audio may be absent,
        as in `get_audio_features`."""
        return self._document_embedding(self._embeddings(inputs), "text", projected)

    def get_joint_features(self, projected: bool = False, **inputs) -> torch.Tensor:
        """Joint document embeddings z_j `(B, d)` (or normalize(p_j(z_j)) with `projected=True`); multimodal
        configs only. A missing modality is treated as absent, as in `get_audio_features`."""
        return self._document_embedding(self._embeddings(inputs), "joint", projected)

    @torch.no_grad()
    def encode(
        self,
        documents,
        batch_size: int = 8,
        normalize_embeddings: bool = False,
        modality: str = "joint",
        projected: bool = False,
        show_progress_bar: bool | None = None,
        convert_to_numpy: bool = True,
        processor=None,
    ):
        """Document embeddings for retrieval and clustering, as sentence-transformers' `encode` gives them.

        Args:
            documents: a list (or one) of
                - recordings, as the pipeline takes them: `{"audio": path | waveform | {"array", "sampling_rate"},
                  "sampling_rate"?: int, "transcript": .srt/.vtt/.json path | [{"start", "end", "text", "speaker"?}]}`
                  (`"segments"` is accepted for `"transcript"`); these need `processor` and a model with its
                  encoders. The audio is encoded a chunk of segments at a time (`encode_document_in_chunks`).
                  One modality is enough: audio alone (cut into windows without text, see `HilbertProcessor`) or
                  a transcript alone (no audio); the other is treated as absent.
                - precomputed features, as a features dataset row or `collate_features` gives them per document:
                  `audio_features` / `audio_segment_embeds` `(S, D_audio)`, `text_features` /
                  `text_segment_embeds` `(S, D_text)`, optional `audio_segment_mask`, `text_segment_mask` `(S,)`,
                  `segment_times` `(S, 2)`. A modality left out is treated as absent.
            batch_size: documents per head call (each batch is padded to its longest document).
            normalize_embeddings: L2-normalise each embedding (cosine similarity is then a dot product).
            modality: "joint" (z_j, multimodal models), "audio" (z_a) or "text" (z_t).
            projected: the contrastive-space vectors normalize(p_m(z_m)) instead of z_m (multimodal models).
            show_progress_bar: None: when transformers' logging is at INFO or more verbose.
            convert_to_numpy: a float32 numpy array; False: a torch tensor on the model's device.
            processor: the model's `HilbertProcessor`, needed for recordings. A model does not carry its processor:
                load it from the same folder or repository, `AutoProcessor.from_pretrained(folder)`.

        Returns:
            `(N, d)` embeddings (`(N, projection_dim)` with `projected=True`), in the order of `documents`.
        """
        from transformers.utils.logging import tqdm

        if isinstance(documents, Mapping):
            documents = [documents]
        documents = list(documents)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer.")
        if show_progress_bar is None:
            show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
        device = next(self.parameters()).device
        was_training = self.training
        self.eval()
        embeddings = []
        try:
            for lo in tqdm(range(0, len(documents), batch_size), desc="Encoding", disable=not show_progress_bar):
                rows = [
                    self._document_features(doc, processor, lo + i)
                    for i, doc in enumerate(documents[lo : lo + batch_size])
                ]
                out = self._embeddings(_pad_feature_rows(rows, device))
                embeds = self._document_embedding(out, modality, projected).float()
                embeddings.append(F.normalize(embeds, dim=-1) if normalize_embeddings else embeds)
        finally:
            self.train(was_training)
        width = self.config.projection_dim if projected else self.config.hidden_size
        result = torch.cat(embeddings) if embeddings else torch.zeros(0, width, device=device)
        return result.cpu().numpy() if convert_to_numpy else result

    def _document_features(self, document, processor, index: int) -> dict[str, torch.Tensor]:
        """One document -> its segment features `{name: (S, ...)}` (forward's names), from features or a recording."""
        if not isinstance(document, Mapping):
            raise ValueError(
                f"document {index} is a {type(document).__name__}: give a dict (a recording with its "
                "transcript, or precomputed segment features)."
            )
        recording_keys = {"audio", "transcript", "segments"}
        if not recording_keys & set(document):  # precomputed features
            known = set(FEATURE_ALIASES) | set(_FEATURE_KEYS)
            if not known & set(document):
                raise ValueError(
                    f"document {index} has neither 'audio' (a recording) nor segment features "
                    f"({sorted(FEATURE_ALIASES)}); its keys are {sorted(document)}."
                )
            return {FEATURE_ALIASES.get(k, k): torch.as_tensor(v) for k, v in document.items() if k in known}
        if processor is None:
            raise ValueError(
                "Recordings need the model's processor: encode(documents, processor=processor), with "
                "processor = AutoProcessor.from_pretrained(<the model's folder or repo>)."
            )
        unknown = set(document) - {"audio", "sampling_rate", "transcript", "segments"}
        if unknown:
            raise ValueError(
                f"document {index}: unknown keys {sorted(unknown)}; a recording has audio, sampling_rate?, "
                "transcript (or segments)."
            )
        if "transcript" in document and "segments" in document:
            raise ValueError(f"document {index} has 'transcript' and 'segments' (the same thing): give one.")
        segments = document.get("transcript", document.get("segments"))
        if isinstance(segments, (str, os.PathLike)):
            # The reader the processor ships with (no import of it here: the model's files stay the model's own).
            segments = importlib.import_module(type(processor).__module__).load_transcript(segments)
        # One modality is a document too: audio alone is cut into windows by the processor (no text), a transcript
        # alone has every audio segment masked; the embeddings are those of what the document has.
        recording = {"audio": document.get("audio"), "sampling_rate": document.get("sampling_rate")}
        if segments is not None:
            recording["segments"] = [dict(s) for s in segments]
        plan = processor.plan_document(recording, index=index)
        chunks = processor.iter_audio_chunks(plan, self.encoder_batch_size()) if self.config.uses_audio else ()
        features = self.encode_document_in_chunks(plan.inputs, chunks)
        return {k: v[0] for k, v in features.items()}

    # -- streaming a long recording --------------------------------------------------------------------
    @torch.no_grad()
    def encoder_batch_size(self) -> int:
        """Segments per frozen-encoder call: `config.encoder_batch_size`, or when it is None the device's default
        (4 on CPU, 64 on CUDA: `auto_encoder_batch_size`)."""
        if self.config.encoder_batch_size is not None:
            return self.config.encoder_batch_size
        encoders = self.frozen_encoders()
        device = next(encoders[0].parameters()).device if encoders else torch.device("cpu")
        return auto_encoder_batch_size(device)

    def encode_document_in_chunks(self, inputs, audio_chunks) -> dict[str, torch.Tensor]:
        """Segment features of ONE document whose audio inputs arrive a chunk of segments at a time.

        A one-hour interview is ~1000 segments; holding all their padded Whisper windows takes ~1 GB. Here only one
        chunk's encoder inputs exist at a time and only the pooled `(n, D_audio)` features are kept. The text inputs
        are small and are encoded as in `forward`.

        Args:
            inputs: the document's small inputs, batch of 1: `input_ids`, `attention_mask`, `text_segment_mask`,
                `audio_segment_mask`, `segment_times` (`HilbertProcessor.plan_document(...).inputs`).
            audio_chunks: iterable of `(segment_indices (n,), chunk_inputs)`, `chunk_inputs` holding
                `input_features` `(1, n, n_mels, T)` or `input_values` `(1, n, L)` and `audio_attention_mask`
                (`HilbertProcessor.iter_audio_chunks(plan, config.encoder_batch_size)`). With chunks of
                `encoder_batch_size` segments sorted longest first, the encoder runs exactly the batches of the
                all-at-once path, so the features are the same.

        Returns:
            keyword arguments for `forward` on precomputed features: `audio_segment_embeds` `(1, S, D_audio)` /
            `text_segment_embeds` `(1, S, D_text)` (for the modalities the config uses), `audio_segment_mask`,
            `text_segment_mask`, `segment_times`.
        """
        base = self.base_model  # transformers resolves base_model_prefix: HilbertModel itself, or .hilbert
        config = self.config
        device = next(self.parameters()).device
        times = inputs["segment_times"]
        if times.dim() != 3 or times.shape[0] != 1:
            raise ValueError(
                f"encode_document_in_chunks takes one document (segment_times (1, S, 2)), got {tuple(times.shape)}."
            )
        segments = times.shape[1]
        out = {"segment_times": times.to(device)}
        if config.uses_audio:
            audio_mask = inputs["audio_segment_mask"].to(device).bool()
            features = None
            for indices, chunk in audio_chunks:
                chunk = {k: v.to(device) for k, v in chunk.items()}
                encoded, _ = base.get_audio_segment_features(
                    chunk.get("input_features"),
                    chunk.get("input_values"),
                    chunk["audio_attention_mask"],
                    chunk.get("audio_segment_mask"),
                )  # (1, n, D)
                if features is None:  # allocated on the first chunk: the encoder's output dtype decides
                    features = encoded.new_zeros(1, segments, encoded.shape[-1])
                features[0, indices.to(device)] = encoded[0]
            if features is None:  # no segment with audio
                features = torch.zeros(1, segments, encoder_hidden_size(config.audio_config), device=device)
            out["audio_segment_embeds"], out["audio_segment_mask"] = features, audio_mask
        if config.uses_text:
            out["text_segment_embeds"], out["text_segment_mask"] = base.get_text_segment_features(
                inputs["input_ids"].to(device),
                inputs["attention_mask"].to(device),
                inputs["text_segment_mask"].to(device),
            )
        return out


# ------------------------------------------------------------------------------------------- base model
class HilbertModel(HilbertPreTrainedModel):
    """Frozen encoders + cross-modal head -> audio, text and joint document embeddings (no classifier)."""

    def __init__(
        self,
        config: HilbertConfig,
        audio_encoder: PreTrainedModel | None = None,
        text_encoder: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        d = config.hidden_size
        if config.uses_audio:
            if config.with_encoders:
                self.audio_encoder = audio_encoder if audio_encoder is not None else build_encoder(config.audio_config)
            self.audio_projection = SegmentProjection(encoder_hidden_size(config.audio_config), d, config.dropout)
            self.audio_pooling = SelfAttentivePooling(
                d, config.pooling_hidden_size, config.pooling_heads, mean_init=config.pooling_mean_init
            )
        if config.uses_text:
            if config.with_encoders:
                self.text_encoder = text_encoder if text_encoder is not None else build_encoder(config.text_config)
            self.text_projection = SegmentProjection(encoder_hidden_size(config.text_config), d, config.dropout)
            self.text_pooling = SelfAttentivePooling(
                d, config.pooling_hidden_size, config.pooling_heads, mean_init=config.pooling_mean_init
            )
        self.time_embedding = SegmentTimeEmbedding(d, config.max_time_period) if config.use_time_embedding else None
        if config.linear_shortcut:  # the standardisation of the shortcut's mean-pooled features (shortcut_hilbert.py)
            self.mean_feature_standardizer = FeatureStandardizer(self.mean_pooled_width)
        if config.is_multimodal:
            num_layers = config.num_cross_attention_layers if config.fusion == "cross_attention" else 0
            self.cross_attention = nn.ModuleList(
                CrossModalAttentionLayer(
                    d,
                    config.num_attention_heads,
                    config.intermediate_size,
                    config.dropout,
                    config.attention_dropout,
                    gated=config.cross_attention_gate,
                )
                for _ in range(num_layers)
            )
            if config.joint_sequence == "per_segment":
                self.joint_fusion = nn.Sequential(nn.Linear(2 * d, d), nn.LayerNorm(d))
            else:
                self.modality_embedding = nn.Embedding(2, d)  # tells the pooling which stream a position came from
            self.joint_pooling = SelfAttentivePooling(
                d, config.pooling_hidden_size, config.pooling_heads, mean_init=config.pooling_mean_init
            )
            # p(.): projections to the contrastive space, one per embedding (as CLIP's visual/text projections).
            self.audio_contrastive_projection = nn.Linear(d, config.projection_dim, bias=False)
            self.text_contrastive_projection = nn.Linear(d, config.projection_dim, bias=False)
            self.joint_contrastive_projection = nn.Linear(d, config.projection_dim, bias=False)
            self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / config.temperature_init)))
            # Extra negatives from earlier batches (training only); not saved with the model.
            memory = config.contrastive_memory_size
            self.contrastive_memory = ContrastiveMemory(memory, config.projection_dim) if memory > 0 else None
        self.post_init()
        self.freeze_encoders()
        self._restore_encoder_attention()

    @property
    def mean_pooled_width(self) -> int:
        """D of `mean_pooled_features`: the frozen feature widths of the modalities the model uses, audio first."""
        config = self.config
        widths = [encoder_hidden_size(config.audio_config)] if config.uses_audio else []
        return sum(widths + ([encoder_hidden_size(config.text_config)] if config.uses_text else []))

    def _restore_encoder_attention(self) -> None:
        """Give pretrained encoders back an attention implementation.

        transformers 5 propagates a composite config's `_attn_implementation` into its sub-configs: building
        `HilbertConfig(audio_config=encoder.config, ...)` sets the loaded encoders' to None, and BERT then ignores
        the padding mask (a segment's features changed with the segments it was padded with: 8e-3 on a tiny BERT).
        """
        for name in self.ENCODER_NAMES:
            encoder = getattr(self, name, None)
            if encoder is not None and getattr(encoder.config, "_attn_implementation", "set") is None:
                try:
                    encoder.set_attn_implementation("sdpa")
                except (ValueError, ImportError):
                    encoder.set_attn_implementation("eager")

    # -- segment features from raw inputs --------------------------------------------------------------
    @torch.no_grad()
    def get_audio_segment_features(
        self,
        input_features: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the frozen audio encoder over every real segment of a batch of documents.

        Args:
            input_features: `(B, S, n_mels, T)` Whisper log-mel (T = 3000 for `config.audio_mode="exact"`; any
                T <= 3000 in "fast" mode, which encodes only each batch's real frames), or
            input_values: `(B, S, L)` waveforms (wav2vec2, HuBERT).
            audio_attention_mask: `(B, S, T)` or `(B, S, L)`, 1 for real mel frames / samples.
            audio_segment_mask: `(B, S)`; default: a segment is real when it has at least one real frame.

        Returns:
            segment features `(B, S, D_audio)` float32 (zeros for padded segments; float32 also when the encoder
            runs in float16/bfloat16, its inputs being cast to its dtype) and the segment mask `(B, S)` bool.
        """
        self._require_encoder("audio")
        raw = input_features if input_features is not None else input_values
        if raw is None:
            raise ValueError("Audio inputs missing: give input_features (Whisper) or input_values (wav2vec2/HuBERT).")
        batch, segments = raw.shape[:2]
        flat = raw.flatten(0, 1)
        flat_mask = None if audio_attention_mask is None else audio_attention_mask.flatten(0, 1)
        exact = is_whisper(self.config.audio_config) and self.config.audio_mode == "exact"

        def run(rows, mask_rows):
            # Crop each batch to its longest real input: models that honour the mask give the same result, and
            # Whisper's fast mode needs the real frames only. Whisper's exact mode always sees all 3000 frames.
            if mask_rows is not None and not exact:
                longest = max(int(mask_rows.long().sum(-1).max()), 1)
                rows, mask_rows = rows[..., :longest], mask_rows[..., :longest]
            if input_features is not None:
                return encode_audio_batch(self.audio_encoder, rows, None, mask_rows, self.config.audio_mode)
            return encode_audio_batch(self.audio_encoder, None, rows, mask_rows, self.config.audio_mode)

        return self._encode_segments(
            flat, flat_mask, audio_segment_mask, batch, segments, self.config.audio_config, run
        )

    @torch.no_grad()
    def get_text_segment_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        text_segment_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the frozen text encoder over every real segment.

        Args:
            input_ids: `(B, S, L)` token ids per segment.
            attention_mask: `(B, S, L)`, 1 for real tokens.
            text_segment_mask: `(B, S)`; default: a segment is real when it has at least one real token.

        Returns:
            segment features `(B, S, D_text)` float32 (whatever the encoder's dtype) and the segment mask `(B, S)` bool.
        """
        self._require_encoder("text")
        batch, segments = input_ids.shape[:2]
        flat_ids = input_ids.flatten(0, 1)
        flat_mask = None if attention_mask is None else attention_mask.flatten(0, 1)

        def run(rows, mask_rows):
            if mask_rows is not None:
                longest = max(int(mask_rows.long().sum(-1).max()), 1)
                rows, mask_rows = rows[:, :longest], mask_rows[:, :longest]
            return encode_text_batch(self.text_encoder, rows, mask_rows)

        return self._encode_segments(
            flat_ids, flat_mask, text_segment_mask, batch, segments, self.config.text_config, run
        )

    def _require_encoder(self, modality: str) -> None:
        if not hasattr(self, f"{modality}_encoder"):
            raise ValueError(
                f"This model has no {modality} encoder (with_encoders=False: a head trained on cached features). Pass "
                f"precomputed {modality}_segment_embeds, or load the full checkpoint saved after training."
            )

    def _encode_segments(self, flat, flat_mask, segment_mask, batch, segments, encoder_config, run):
        """Encode the real rows of `flat` `(B*S, ...)` in length-bucketed batches; scatter back to `(B, S, D)`.

        The features come back in float32 whatever dtype the frozen encoders run in (float16/bfloat16 encoders on a
        GPU): `encode_*_batch` cast the inputs to the encoder's dtype and pool its output in float32, and the head
        (float32) reads them. A padded segment keeps exact zeros.
        """
        if segment_mask is None:
            segment_mask = (
                flat_mask.bool().any(-1).view(batch, segments)
                if flat_mask is not None
                else torch.ones(batch, segments, dtype=torch.bool, device=flat.device)
            )
        segment_mask = segment_mask.bool()
        real = segment_mask.flatten().nonzero().squeeze(-1)  # indices of real segments
        out = torch.zeros(
            batch * segments, encoder_hidden_size(encoder_config), dtype=torch.float32, device=flat.device
        )
        if real.numel():
            mask_real = None if flat_mask is None else flat_mask[real]
            lengths = real_lengths(mask_real, flat.shape[-1], real.numel(), flat.device)
            for chunk in length_bucketed_batches(lengths, self.encoder_batch_size()):
                rows = real[chunk]
                out[rows] = run(flat[rows], None if flat_mask is None else flat_mask[rows]).to(out.dtype)
        return out.view(batch, segments, -1), segment_mask

    # -- feature standardisation ---------------------------------------------------------------------
    @torch.no_grad()
    def fit_feature_statistics(self, batches) -> dict[str, int]:
        """Fit the head's feature standardisations on `batches`, the training documents.

        * `config.standardize_features`: each modality's segment standardisation (`SegmentProjection`), from the
          real segments;
        * `config.linear_shortcut`: the document-level standardisation of the shortcut's mean-pooled features
          (`shortcut_hilbert.FeatureStandardizer`), from every document's masked mean (zeros for a document
          without a real segment of a modality, as the logistic-regression baseline's input).

        Args:
            batches: an iterable of model input dicts, as the collators give them (cached features
                `audio_segment_embeds` / `audio_features` with `audio_segment_mask`, or raw inputs, which run
                through the frozen encoders once), e.g. a DataLoader over the training documents. Call it on the
                training documents only, before training (`HilbertTrainer` does).

        Returns:
            `{modality: number of real segments counted}`. Means and variances are accumulated in float64, so the
            result does not depend on how the documents are batched.
        """

        def moments(totals, modality, x):  # x (n, D) float64
            count, total, squares = totals.get(modality, (0, 0.0, 0.0))
            totals[modality] = (count + x.shape[0], total + x.sum(0), squares + (x * x).sum(0))

        def mean_std(count, total, squares):
            mean = total / count
            return mean.float(), (squares / count - mean * mean).clamp(min=0.0).sqrt().float()

        segments, documents = {}, {}
        for batch in batches:
            for modality, embeds, mask in self._segment_features_of(batch):
                x = embeds.detach().to(torch.float64)
                keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
                moments(segments, modality, x[keep])  # real segments only
                moments(documents, modality, masked_mean(x, keep))
        if self.config.standardize_features:
            for modality, (count, total, squares) in segments.items():
                if count:
                    getattr(self, f"{modality}_projection").set_statistics(*mean_std(count, total, squares))
        if self.config.linear_shortcut and documents:
            # A modality no batch held (e.g. a corpus without transcripts, whose collator gives no text inputs): its
            # mean-pooled features are zeros for every document, which standardise to zeros (shift 0, scale 1).
            widths = {"audio": self.config.audio_config, "text": self.config.text_config}
            stats = [
                mean_std(*documents[m])
                if m in documents
                else (torch.zeros(encoder_hidden_size(widths[m])), torch.zeros(encoder_hidden_size(widths[m])))
                for m in ("audio", "text")
                if getattr(self.config, f"uses_{m}")
            ]
            self.mean_feature_standardizer.set_statistics(
                torch.cat([mean for mean, _ in stats]), torch.cat([std for _, std in stats])
            )
        return {modality: count for modality, (count, _, _) in segments.items()}

    def _segment_features_of(self, batch: dict):
        """`(modality, (B, S, D) segment features, (B, S) mask or None)` for each modality the model uses and the
        batch holds (cached features as given; raw inputs through the frozen encoders)."""
        config = self.config
        if config.uses_audio:
            embeds = batch.get("audio_segment_embeds", batch.get("audio_features"))
            mask = batch.get("audio_segment_mask")
            if embeds is None and (batch.get("input_features") is not None or batch.get("input_values") is not None):
                embeds, mask = self.get_audio_segment_features(
                    batch.get("input_features"), batch.get("input_values"), batch.get("audio_attention_mask"), mask
                )
            if embeds is not None:
                yield "audio", embeds, mask
        if config.uses_text:
            embeds = batch.get("text_segment_embeds", batch.get("text_features"))
            mask = batch.get("text_segment_mask")
            if embeds is None and batch.get("input_ids") is not None:
                embeds, mask = self.get_text_segment_features(batch["input_ids"], batch.get("attention_mask"), mask)
            if embeds is not None:
                yield "text", embeds, mask

    # -- head ------------------------------------------------------------------------------------------
    def _project(self, features, mask, times, projection) -> torch.Tensor:
        """Segment features `(B, S, D)` -> `(B, S, d)`, exactly zero at padded segments.

        Padded segments may hold anything (garbage, NaN, infinite times): zeroing them before and after keeps it
        out of the attention, where a NaN key or value would poison every query even with zero weight.
        """
        mask = mask.unsqueeze(-1)
        features = features.to(projection.linear.weight.dtype).masked_fill(~mask, 0.0)
        hidden = projection(features)
        if self.time_embedding is not None:
            hidden = hidden + self.time_embedding(times.masked_fill(~mask, 0.0))
        return hidden.masked_fill(~mask, 0.0)

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        audio_segment_embeds: torch.Tensor | None = None,
        text_segment_embeds: torch.Tensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
        text_segment_mask: torch.Tensor | None = None,
        segment_times: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
        document_mask: torch.Tensor | None = None,
        return_loss: bool = False,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        audio_features: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> HilbertModelOutput | tuple:
        """Document embeddings from raw segment inputs or from precomputed segment features.

        Audio, one of:
            input_features `(B, S, n_mels, T)` (Whisper) or input_values `(B, S, L)` (wav2vec2/HuBERT), with
            audio_attention_mask `(B, S, T | L)`;
            audio_segment_embeds `(B, S, D_audio)` (precomputed, e.g. by `get_audio_segment_features` or the
            features dataset).
        Text, one of:
            input_ids `(B, S, L)` with attention_mask `(B, S, L)`;
            text_segment_embeds `(B, S, D_text)`.
        audio_segment_mask, text_segment_mask: `(B, S)`, True for real segments. With precomputed features,
            omitted means every segment is real; with raw inputs, a segment is real if it has a real frame/token.
        segment_times: `(B, S, 2)` (start, end) seconds; omitted: segment i spans [i, i+1).
        return_loss: also compute the representation losses (contrastive, CKA, MI) on the global batch.
        document_ids: `(B,)` int64, a stable id per document (HILBERT's collators give them): dropout masks are then
            drawn per document (`dropout_hilbert.DocumentDropout`), so a document's masks do not depend on its batch
            mates or on how many processes share the batch.
        document_mask: `(B,)` bool, False for rows that must not count (a document that accelerate repeated to fill
            the last batch of an epoch): they are left out of every loss term.
        output_attentions: also return the cross-attention weights of every layer (`audio_cross_attentions`,
            `text_cross_attentions`); the pooling weights are always returned. Default: `config.output_attentions`.
        output_hidden_states: also return the per-layer segment states (`audio_hidden_states`,
            `text_hidden_states`). Default: `config.output_hidden_states`.
        audio_features, text_features: the features dataset's column names for `audio_segment_embeds` /
            `text_segment_embeds` (aliases), so that a plain `Trainer`, which keeps only the dataset columns the
            forward names, hands them to the collator.
        """
        audio_segment_embeds = _alias("audio_segment_embeds", audio_segment_embeds, "audio_features", audio_features)
        text_segment_embeds = _alias("text_segment_embeds", text_segment_embeds, "text_features", text_features)
        if output_attentions is None:
            output_attentions = bool(getattr(self.config, "output_attentions", False))
        if output_hidden_states is None:
            output_hidden_states = bool(getattr(self.config, "output_hidden_states", False))
        with document_dropout(document_ids, enabled=self.training):
            config = self.config
            audio = text = None
            if config.uses_audio:
                if audio_segment_embeds is None:
                    if input_features is None and input_values is None:
                        raise ValueError("No audio given: pass input_features / input_values or audio_segment_embeds.")
                    audio_segment_embeds, audio_segment_mask = self.get_audio_segment_features(
                        input_features, input_values, audio_attention_mask, audio_segment_mask
                    )
                audio = self._check_features(
                    "audio", audio_segment_embeds, encoder_hidden_size(config.audio_config), audio_segment_mask
                )
            if config.uses_text:
                if text_segment_embeds is None:
                    if input_ids is None:
                        raise ValueError("No text given: pass input_ids (with attention_mask) or text_segment_embeds.")
                    text_segment_embeds, text_segment_mask = self.get_text_segment_features(
                        input_ids, attention_mask, text_segment_mask
                    )
                text = self._check_features(
                    "text", text_segment_embeds, encoder_hidden_size(config.text_config), text_segment_mask
                )
            reference = audio if audio is not None else text
            batch, segments = reference.shape[:2]
            device = reference.device

            def full_mask(mask):
                return torch.ones(batch, segments, dtype=torch.bool, device=device) if mask is None else mask.bool()

            if segment_times is None:
                start = torch.arange(segments, device=device, dtype=torch.float32).expand(batch, segments)
                segment_times = torch.stack([start, start + 1.0], dim=-1)
            audio_mask = full_mask(audio_segment_mask) if audio is not None else None
            text_mask = full_mask(text_segment_mask) if text is not None else None
            if self.training and config.segment_dropout > 0:
                keep = segment_dropout_mask(audio_mask, text_mask, config.segment_dropout)  # (B, S)
                audio_mask = audio_mask & keep if audio_mask is not None else None
                text_mask = text_mask & keep if text_mask is not None else None

            out = HilbertModelOutput(audio_segment_mask=audio_mask, text_segment_mask=text_mask)
            if config.linear_shortcut:
                out.mean_pooled_features = self.mean_feature_standardizer(
                    self._mean_pooled(audio, audio_mask, text, text_mask)
                )
            if audio is not None:
                audio = self._project(audio, audio_mask, segment_times, self.audio_projection)  # (B, S, d)
            if text is not None:
                text = self._project(text, text_mask, segment_times, self.text_projection)  # (B, S, d)

            audio_states = [audio] if output_hidden_states and audio is not None else None
            text_states = [text] if output_hidden_states and text is not None else None
            own_audio, own_text = audio, text  # each modality alone (`config.modality_embeddings="own_stream"`)
            if config.is_multimodal:
                audio_attentions, text_attentions = [], []
                for layer in self.cross_attention:
                    if output_attentions:
                        audio, text, audio_weights, text_weights = layer(
                            audio, text, audio_mask, text_mask, return_weights=True
                        )
                        audio_attentions.append(audio_weights)
                        text_attentions.append(text_weights)
                    else:
                        audio, text = layer(audio, text, audio_mask, text_mask)
                    if output_hidden_states:
                        audio_states.append(audio)
                        text_states.append(text)
                if output_attentions:
                    out.audio_cross_attentions, out.text_cross_attentions = (
                        tuple(audio_attentions),
                        tuple(text_attentions),
                    )
                joint, joint_mask = self._fuse(audio, text, audio_mask, text_mask)
                out.joint_embeds, out.joint_pooling_weights = self.joint_pooling(joint, joint_mask)
            if config.modality_embeddings == "own_stream":
                audio, text = own_audio, own_text
            if audio is not None:
                out.audio_embeds, out.audio_pooling_weights = self.audio_pooling(audio, audio_mask)
            if text is not None:
                out.text_embeds, out.text_pooling_weights = self.text_pooling(text, text_mask)
            if audio_states is not None:
                out.audio_hidden_states = tuple(audio_states)
            if text_states is not None:
                out.text_hidden_states = tuple(text_states)

            if return_loss and config.is_multimodal:
                self._representation_losses(out, document_mask, document_ids)
            if return_dict is False:
                return out.to_tuple()
            return out

    @staticmethod
    def _check_features(
        name: str, features: torch.Tensor, width: int, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Refuse segment features of the wrong shape, and NaN/inf in real segments (`mask` True; None = all real).

        Padded segments may hold anything (they are masked out everywhere). A NaN in a real segment would make the
        document's embeddings, the batch's losses and, after one step, every weight NaN: say which document instead.
        """
        if features.dim() != 3 or features.shape[-1] != width:
            raise ValueError(
                f"{name}_segment_embeds must be (batch, segments, {width}) for this model's {name} encoder, got "
                f"{tuple(features.shape)}. Were the features extracted with a different encoder?"
            )
        if mask is not None and tuple(mask.shape) != tuple(features.shape[:2]):
            raise ValueError(
                f"{name}_segment_mask has shape {tuple(mask.shape)} but {name}_segment_embeds has "
                f"{tuple(features.shape[:2])} (batch, segments): give one mask entry per segment."
            )
        if torch.compiler.is_compiling():
            # The NaN check reads the data (a graph break, an error with fullgraph=True): a compiled head skips it.
            # Untrusted inputs: run them once through the eager model, which checks them, or check them beforehand.
            return features
        bad = ~torch.isfinite(features).all(-1)  # (B, S)
        if mask is not None:
            bad &= mask.bool()
        if bool(bad.any()):
            b, s = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"{name}_segment_embeds holds NaN/inf in {int(bad.sum())} real segment(s), first in document {b} of "
                f"the "
                f"batch, segment {s}. Check that document's recording/features (re-extract them), or mark padded "
                f"segments False in {name}_segment_mask."
            )
        return features

    def _mean_pooled(self, audio, audio_mask, text, text_mask) -> torch.Tensor:
        """x_bar `(B, D_a + D_t)`: the masked mean of each used modality's raw segment features (zeros for a document
        without a real segment of it), in the head's dtype (shortcut_hilbert.py)."""
        dtype = next(iter(self.mean_feature_standardizer.buffers())).dtype
        parts = [masked_mean(x.to(dtype), m) for x, m in ((audio, audio_mask), (text, text_mask)) if x is not None]
        return torch.cat(parts, dim=-1)

    def _fuse(self, audio, text, audio_mask, text_mask) -> tuple[torch.Tensor, torch.Tensor]:
        """The joint sequence and its mask from the two (cross-attended) streams."""
        if self.config.joint_sequence == "per_segment":
            # A segment missing one modality contributes zeros for it; it is real if either modality is.
            both = torch.cat([audio * audio_mask.unsqueeze(-1), text * text_mask.unsqueeze(-1)], dim=-1)  # (B, S, 2d)
            return self.joint_fusion(both), audio_mask | text_mask
        joint = torch.cat([audio + self.modality_embedding.weight[0], text + self.modality_embedding.weight[1]], dim=1)
        return joint, torch.cat([audio_mask, text_mask], dim=1)  # (B, 2S, d), (B, 2S)

    def _representation_losses(
        self,
        out: HilbertModelOutput,
        document_mask: torch.Tensor | None = None,
        document_ids: torch.Tensor | None = None,
    ) -> None:
        """Fill the contrastive, CKA and MI terms of `out` (and their weighted sum in `out.loss`).

        Every term is computed on the global batch: embeddings are gathered from all processes with gradients,
        and each process computes the same loss (see `gather_with_grad` for why this gives exact gradients).
        A document enters the terms of a modality only if it has at least one real segment of it (its segment
        mask): without any, its embedding of that modality is the pooling's bias, the same for every such
        document. Those flags are gathered with the embeddings, so every process selects the same documents.
        """
        config = self.config
        audio, text, joint = (gather_with_grad(x) for x in (out.audio_embeds, out.text_embeds, out.joint_embeds))
        # (B,) flags, gathered as floats (collectives on bool tensors are not supported by every backend)
        has_audio, has_text = (
            gather_with_grad(mask.any(dim=-1).to(audio.dtype)) > 0.5
            for mask in (out.audio_segment_mask, out.text_segment_mask)
        )
        if document_mask is not None:  # repeats that only fill a batch count nowhere
            counts = gather_with_grad(document_mask.to(device=audio.device, dtype=audio.dtype)) > 0.5
            has_audio, has_text = has_audio & counts, has_text & counts
        audio_documents, text_documents = int(has_audio.sum()), int(has_text.sum())
        # The parameter itself is clamped after each optimiser step (`clamp_logit_scale_`); this clamp only guards
        # a value set beyond the bound by hand or loaded from an older checkpoint. At the bound it passes the gradient.
        scale = self.logit_scale.clamp(max=math.log(1.0 / config.temperature_min)).exp()
        p_audio = F.normalize(self.audio_contrastive_projection(audio), dim=-1)
        p_text = F.normalize(self.text_contrastive_projection(text), dim=-1)
        p_joint = F.normalize(self.joint_contrastive_projection(joint), dim=-1)
        dual, audio_joint_nce, text_joint_nce = reciprocal_dual_contrastive_loss(
            p_audio, p_text, p_joint, scale, has_audio, has_text
        )
        if config.contrastive_target == "joint":
            out.contrastive_loss = dual
            memory = self.contrastive_memory
            if memory is not None and self.training and document_ids is not None:
                # More negatives: every other document held in the memory (its latest vectors, detached). The
                # in-batch terms above still feed the MI estimates, whose bound needs live candidates.
                ids = gather_without_grad(document_ids.to(audio.device))
                held = memory.negatives(ids)
                out.contrastive_loss = reciprocal_dual_contrastive_loss(
                    p_audio,
                    p_text,
                    p_joint,
                    scale,
                    has_audio,
                    has_text,
                    audio_extra=(held.audio[held.has_audio], held.joint[held.has_audio]),
                    text_extra=(held.text[held.has_text], held.joint[held.has_text]),
                )[0]
                out.memory_documents = torch.tensor(len(held.joint), device=audio.device)
                counts = has_audio | has_text
                memory.update(ids, p_audio, p_text, p_joint, has_audio, has_text, counts)
        else:
            out.contrastive_loss = direct_contrastive_loss(p_audio, p_text, scale, has_audio & has_text)
        out.cka_loss = cka_loss(audio, text, joint, has_audio, has_text)
        out.mi_loss, out.mi_audio_joint, out.mi_text_joint = mi_balance_loss(
            audio_joint_nce, text_joint_nce, audio_documents, text_documents
        )
        out.temperature = (1.0 / scale).detach()
        out.audio_documents = torch.tensor(audio_documents, device=audio.device)
        out.text_documents = torch.tensor(text_documents, device=audio.device)
        # Terms with weight 0 are still reported (to compare ablations) but add nothing and get no gradient.
        total = out.contrastive_loss.new_zeros(())
        for weight, term in (
            (config.dual_contrastive_weight, out.contrastive_loss),
            (config.cka_weight, out.cka_loss),
            (config.mi_weight, out.mi_loss),
        ):
            if weight > 0:
                total = total + weight * term
        out.loss = total


# --------------------------------------------------------------------------------------------- classifier
class HilbertForSequenceClassification(HilbertPreTrainedModel):
    """HILBERT with a (multi-gate) Mixture-of-Experts classifier over [z_a; z_t; z_j] and the composite loss; with
    `config.linear_shortcut`, plus a linear model on the standardised mean-pooled frozen features."""

    def __init__(
        self,
        config: HilbertConfig,
        audio_encoder: PreTrainedModel | None = None,
        text_encoder: PreTrainedModel | None = None,
    ):
        super().__init__(config)
        self.hilbert = HilbertModel(config, audio_encoder=audio_encoder, text_encoder=text_encoder)
        input_size = config.hidden_size * (3 if config.is_multimodal else 1)
        outputs = {task["name"]: config.task_num_outputs(task) for task in config.tasks}
        if config.classifier == "moe":
            self.classifier = MixtureOfExpertsClassifier(
                input_size,
                config.expert_hidden_size,
                config.num_experts,
                outputs,
                config.moe_top_k,
                config.dropout,
                shared_expert=config.moe_shared_expert,
            )
        else:
            self.classifier = MLPClassifier(input_size, config.expert_hidden_size, outputs, config.dropout)
        if config.linear_shortcut:
            self.linear_shortcut = LinearShortcut(self.hilbert.mean_pooled_width, outputs, config.dropout)
        if config.unimodal_loss_weight > 0 and config.is_multimodal:
            # one linear classifier per stream and task, for the unimodal losses only (`unimodal_losses`)
            self.unimodal_classifiers = nn.ModuleDict(
                {
                    modality: nn.ModuleDict({task: nn.Linear(config.hidden_size, n) for task, n in outputs.items()})
                    for modality in ("audio", "text")
                }
            )
        self.post_init()
        self.freeze_encoders()

    def forward(
        self,
        input_features: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        audio_attention_mask: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        audio_segment_embeds: torch.Tensor | None = None,
        text_segment_embeds: torch.Tensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
        text_segment_mask: torch.Tensor | None = None,
        segment_times: torch.Tensor | None = None,
        labels: torch.Tensor | dict[str, torch.Tensor] | None = None,
        document_ids: torch.Tensor | None = None,
        document_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        audio_features: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> HilbertSequenceClassifierOutput | tuple:
        """Classify documents. Inputs as in `HilbertModel.forward`, plus:

        labels: for a single task, a tensor: `(B,)` class ids (multiclass, binary; -100 = unlabelled) or `(B, C)`
            0/1 (multilabel; a row with a negative entry is unlabelled); for several tasks, `{task_name: tensor}`
            (tasks may be left out).
        return_loss: compute the loss terms (default: when labels are given).
        document_ids, document_mask: see `HilbertModel.forward`; rows with `document_mask` False count in no loss.
        output_attentions, output_hidden_states, audio_features, text_features: see `HilbertModel.forward`.

        Returns `logits` as a `(B, C)` tensor for a one-task model and as `{task: (B, C_t)}` for several tasks;
        `task_logits` is the dict in both cases.
        """
        with document_dropout(document_ids, enabled=self.training):
            config = self.config
            if return_loss is None:
                return_loss = labels is not None
            base = self.hilbert(
                input_features=input_features,
                input_values=input_values,
                audio_attention_mask=audio_attention_mask,
                input_ids=input_ids,
                attention_mask=attention_mask,
                audio_segment_embeds=audio_segment_embeds,
                text_segment_embeds=text_segment_embeds,
                audio_segment_mask=audio_segment_mask,
                text_segment_mask=text_segment_mask,
                segment_times=segment_times,
                document_ids=document_ids,
                document_mask=document_mask,
                return_loss=return_loss,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                audio_features=audio_features,
                text_features=text_features,
            )
            embeddings = [e for e in (base.audio_embeds, base.text_embeds, base.joint_embeds) if e is not None]
            logits, gate_probs, gate_weights = self.classifier(torch.cat(embeddings, dim=-1))
            if config.linear_shortcut:  # the linear model on the mean-pooled features (shortcut_hilbert.py)
                shortcut = self.linear_shortcut(base.mean_pooled_features)
                logits = {task: value + shortcut[task].to(value.dtype) for task, value in logits.items()}
            out = HilbertSequenceClassifierOutput(
                logits=logits[config.tasks[0]["name"]] if len(config.tasks) == 1 else logits,
                task_logits=logits,
                contrastive_loss=base.contrastive_loss,
                cka_loss=base.cka_loss,
                mi_loss=base.mi_loss,
                mi_audio_joint=base.mi_audio_joint,
                mi_text_joint=base.mi_text_joint,
                temperature=base.temperature,
                audio_embeds=base.audio_embeds,
                text_embeds=base.text_embeds,
                joint_embeds=base.joint_embeds,
                gate_weights=gate_weights or None,
                audio_pooling_weights=base.audio_pooling_weights,
                text_pooling_weights=base.text_pooling_weights,
                joint_pooling_weights=base.joint_pooling_weights,
                audio_documents=base.audio_documents,
                text_documents=base.text_documents,
                audio_hidden_states=base.audio_hidden_states,
                text_hidden_states=base.text_hidden_states,
                audio_cross_attentions=base.audio_cross_attentions,
                text_cross_attentions=base.text_cross_attentions,
                memory_documents=base.memory_documents,
            )
            if return_loss:
                total = base.loss if base.loss is not None else logits[config.tasks[0]["name"]].new_zeros(())
                if gate_probs:
                    counts = (
                        None
                        if document_mask is None
                        else gather_with_grad(document_mask.to(logits_dtype(logits))) > 0.5
                    )
                    balance = []
                    for p in gate_probs.values():
                        p = gather_with_grad(p) if counts is None else gather_with_grad(p)[counts]
                        balance.append(moe_load_balance_loss(p, config.moe_top_k) if p.shape[0] else p.sum() * 0.0)
                    out.moe_balance_loss = torch.stack(balance).mean()
                    if config.moe_balance_weight > 0:
                        total = total + config.moe_balance_weight * out.moe_balance_loss
                if labels is not None:
                    if document_mask is not None:
                        labels = _without_documents(labels, ~document_mask.bool())
                    out.task_losses = self._classification_losses(logits, labels)
                    out.classification_loss = torch.stack(list(out.task_losses.values())).sum()
                    total = total + out.classification_loss
                    if hasattr(self, "unimodal_classifiers"):
                        out.unimodal_loss = self.unimodal_losses(base, labels)
                        total = total + config.unimodal_loss_weight * out.unimodal_loss
                out.loss = total
            if return_dict is False:
                return out.to_tuple()
            return out

    def unimodal_losses(self, base: HilbertModelOutput, labels) -> torch.Tensor:
        """L_uni = (L_cls(W_a z_a) + L_cls(W_t z_t)) / 2, each summed over tasks like the fused loss, with the same
        class weights and normalisation (`_classification_losses`). A document without a real segment of a modality
        has no embedding of it (only the pooling's bias) and counts as unlabelled in that modality's loss."""
        losses = []
        for modality, classifiers in self.unimodal_classifiers.items():
            embeds = getattr(base, f"{modality}_embeds")
            present = getattr(base, f"{modality}_segment_mask").any(dim=-1)
            logits = {task: head(embeds) for task, head in classifiers.items()}
            per_task = self._classification_losses(logits, _without_documents(labels, ~present))
            losses.append(torch.stack(list(per_task.values())).sum())
        return torch.stack(losses).mean()

    def _classification_losses(self, logits: dict[str, torch.Tensor], labels) -> dict[str, torch.Tensor]:
        """Per-task classification losses, normalised by the global number (or weight) of labelled items.

        With P processes each rank returns sum_local / normaliser_global * P; DDP averages gradients over ranks
        (and Trainer averages the logged loss), which gives sum_global / normaliser_global: the loss of one
        process on the whole batch, even when ranks hold different numbers of labelled items.
        """
        config = self.config
        if not isinstance(labels, dict):
            if len(config.tasks) > 1:
                raise ValueError(
                    f"This model has {len(config.tasks)} tasks {config.task_names}: pass labels as a dict."
                )
            labels = {config.tasks[0]["name"]: labels}
        unknown = set(labels) - set(config.task_names)
        if unknown:
            raise ValueError(f"labels for unknown tasks {sorted(unknown)}; this model's tasks are {config.task_names}.")
        world = distributed_world_size()
        losses = {}
        for task in config.tasks:
            name = task["name"]
            if name not in labels or labels[name] is None:
                continue
            _check_labels(name, task["type"], labels[name], logits[name].shape[-1])
            weights = task["class_weights"]
            weights = (
                None
                if weights is None
                else torch.tensor(
                    weights, dtype=torch.promote_types(logits[name].dtype, torch.float32), device=logits[name].device
                )
            )
            gamma = task["focal_gamma"] if task["focal_gamma"] is not None else config.focal_gamma
            total, normaliser = classification_loss_terms(
                logits[name], labels[name].to(logits[name].device), task["type"], weights, gamma
            )
            normaliser = all_reduce_sum(normaliser)
            losses[name] = total * world / normaliser.clamp(min=torch.finfo(total.dtype).tiny)
        return losses


# features-dataset column -> forward argument
FEATURE_ALIASES = {"audio_features": "audio_segment_embeds", "text_features": "text_segment_embeds"}
_FEATURE_KEYS = (
    "audio_segment_embeds",
    "text_segment_embeds",
    "audio_segment_mask",
    "text_segment_mask",
    "segment_times",
)


def _pad_feature_rows(rows: list[dict[str, torch.Tensor]], device) -> dict[str, torch.Tensor]:
    """Per-document features `{name: (S_b, ...)}` -> a batch `{name: (B, S, ...)}` padded to the longest S.

    Padded segments get mask False (and zeros); a document without a given mask has every segment real, and one
    without times gets [i, i+1) as in `forward`. A modality missing from every row is left out (absent)."""
    lengths = []
    for row in rows:
        present = [row[k].shape[0] for k in _FEATURE_KEYS if k in row]
        lengths.append(max(present) if present else 0)
    slots = max(lengths + [1])
    batch = {}
    for modality in ("audio", "text"):
        name = f"{modality}_segment_embeds"
        if not any(name in row for row in rows):
            continue
        width = next(row[name].shape[-1] for row in rows if name in row)
        embeds = torch.zeros(len(rows), slots, width, device=device)
        mask = torch.zeros(len(rows), slots, dtype=torch.bool, device=device)
        for b, row in enumerate(rows):
            if name in row:
                n = row[name].shape[0]
                embeds[b, :n] = row[name].to(device=device, dtype=torch.float32)
                given = row.get(f"{modality}_segment_mask")
                mask[b, :n] = True if given is None else given.to(device=device, dtype=torch.bool)[:n]
        batch[name], batch[f"{modality}_segment_mask"] = embeds, mask
    times = torch.arange(slots, device=device, dtype=torch.float32)
    times = torch.stack([times, times + 1.0], -1).repeat(len(rows), 1, 1)
    for b, row in enumerate(rows):
        if "segment_times" in row:
            given = row["segment_times"].to(device=device, dtype=torch.float32)
            times[b, : given.shape[0]] = given
    batch["segment_times"] = times
    return batch


def _with_missing_modality(config: HilbertConfig, inputs: dict) -> dict:
    """`inputs` with the modality the caller left out filled in as absent: zero features, every segment masked.

    A document without a transcript (or without audio) is legitimate input to HILBERT (the cross-attention then
    attends to nothing and the pooling skips the masked segments), so this gives the embeddings of the documents
    as if they had only the given modality."""
    given = {
        "audio": any(
            inputs.get(k) is not None
            for k in ("input_features", "input_values", "audio_segment_embeds", "audio_features")
        ),
        "text": any(inputs.get(k) is not None for k in ("input_ids", "text_segment_embeds", "text_features")),
    }
    needed = {"audio": config.uses_audio, "text": config.uses_text}
    if not any(given[m] for m in given if needed[m]):
        raise ValueError(
            "No inputs: pass audio (input_features / input_values / audio_segment_embeds) or text "
            "(input_ids / text_segment_embeds) of the modalities this model uses."
        )
    for modality in ("audio", "text"):
        if not needed[modality] or given[modality]:
            continue
        reference = next(
            inputs[k]
            for k in (
                "input_features",
                "input_values",
                "input_ids",
                "audio_segment_embeds",
                "audio_features",
                "text_segment_embeds",
                "text_features",
            )
            if inputs.get(k) is not None
        )
        batch, slots = reference.shape[:2]
        width = encoder_hidden_size(getattr(config, f"{modality}_config"))
        inputs = dict(inputs)
        inputs[f"{modality}_segment_embeds"] = torch.zeros(batch, slots, width, device=reference.device)
        inputs[f"{modality}_segment_mask"] = torch.zeros(batch, slots, dtype=torch.bool, device=reference.device)
    return inputs


def _alias(name: str, value, alias: str, alias_value):
    """One input given under its name or its features-dataset alias (not both)."""
    if alias_value is None:
        return value
    if value is not None:
        raise ValueError(f"Give {name} or its alias {alias} (the features dataset's column), not both.")
    return alias_value


def logits_dtype(logits: dict[str, torch.Tensor]) -> torch.dtype:
    return next(iter(logits.values())).dtype


def _without_documents(labels, drop: torch.Tensor):
    """Labels with the rows `drop` `(B,)` marked unlabelled (-100: every task type reads a negative as unlabelled)."""
    if labels is None:
        return None
    if isinstance(labels, dict):
        return {task: _without_documents(value, drop) for task, value in labels.items()}
    labels = labels.clone()
    labels[drop.to(labels.device)] = -100
    return labels


def _check_labels(name: str, task_type: str, labels: torch.Tensor, num_classes: int) -> None:
    """Labels outside the task's range -> a ValueError naming the task (rather than an index error deep in torch).

    multiclass: 0..C-1 or -100 (unlabelled); binary and multilabel: 0 or 1, negative = unlabelled."""
    labels = torch.as_tensor(labels)
    if task_type == "multiclass":
        bad = ((labels >= num_classes) | (labels < 0)) & (labels != -100)
        allowed = f"0..{num_classes - 1} or -100 (unlabelled)"
    else:
        bad = labels > 1
        allowed = "0 or 1 (negative: unlabelled)"
    if bad.any():
        values = sorted({float(v) if v.is_floating_point() else int(v) for v in labels[bad].flatten()[:10]})
        raise ValueError(
            f"labels for task {name!r} must be {allowed}; got {values}. Check the label column (or the "
            "task's id2label in the config) matches the model's classes."
        )


__all__ = [
    "HilbertPreTrainedModel",
    "HilbertModel",
    "HilbertForSequenceClassification",
    "HilbertModelOutput",
    "HilbertSequenceClassifierOutput",
]
