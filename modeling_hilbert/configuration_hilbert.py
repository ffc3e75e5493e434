"""HILBERT configuration.

`HilbertConfig` is a composite config in the transformers 5.x dataclass style: two sub-configs for the frozen
encoders (`audio_config`: any audio `AutoConfig` such as whisper, hubert or wav2vec2; `text_config`: any text
`AutoConfig` such as bert, roberta or t5), the head's sizes, the loss weights, the Mixture-of-Experts settings,
the label spaces of one or more tasks, and the ablation switches used as baselines.

This file ships to the Hub with the model (`trust_remote_code`): it imports only `transformers` and the standard
library.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

TASK_TYPES = ("multiclass", "binary", "multilabel")
CONTRASTIVE_TARGETS = ("joint", "audio_text")
MODALITIES = ("both", "audio", "text")
FUSIONS = ("cross_attention", "concat")
CLASSIFIERS = ("moe", "mlp")
JOINT_SEQUENCES = ("per_segment", "concat_sequence")
MODALITY_EMBEDDINGS = ("cross_attended", "own_stream")
AUDIO_MODES = ("exact", "fast")
# The fields whose value is one of a fixed set (checked in `_validate`, offered as choices by the command line).
FIELD_CHOICES = {
    "contrastive_target": CONTRASTIVE_TARGETS,
    "modalities": MODALITIES,
    "fusion": FUSIONS,
    "classifier": CLASSIFIERS,
    "joint_sequence": JOINT_SEQUENCES,
    "modality_embeddings": MODALITY_EMBEDDINGS,
    "audio_mode": AUDIO_MODES,
}
# Fields that describe the data and the encoders rather than the head a user trains: the data path sets them (from
# the features' fingerprint or the encoders), so they are not training settings (`HilbertConfig.head_settings`).
NON_HEAD_FIELDS = ("audio_config", "text_config", "tasks", "encoder_sources", "with_encoders", "audio_mode")
# Largest width/count accepted for the head's sizes. The head's largest matrices are (hidden x intermediate):
# 65,536 x 65,536 float32 is already 16 GiB, so anything above is a typo (e.g. a sample count), not a head.
MAX_SIZE = 65_536
MAX_LAYERS = 64

# Keyword arguments that `PreTrainedConfig.__post_init__` itself consumes or that transformers writes into every
# config.json. Anything else that is not a field of `HilbertConfig` is a typo or a stale key: we reject it rather
# than silently storing it as an attribute (the base class's default behaviour).
_BASE_KWARGS = {
    "num_labels",
    "torch_dtype",
    "name_or_path",
    "_name_or_path",
    "_commit_hash",
    "output_attentions",
    "attn_implementation",
    "experts_implementation",
    "_attn_implementation_internal",
    "_experts_implementation_internal",
    "per_layer_config",
    "auto_map",
    "custom_pipelines",
    "model_type",
    "use_cache",
    "tie_word_embeddings",
}


# Set by this package's `__init__` to its `register_auto_classes`: the model, processor and pipeline modules (costly
# to import: transformers.modeling_utils) are registered with the Auto classes when the first config is made, which
# every Auto class and `pipeline` do before looking the model up. None for a config loaded as remote code.
_on_first_config = None


_AUTO_MAP = {
    "AutoConfig": "configuration_hilbert.HilbertConfig",
    "AutoModel": "modeling_hilbert.HilbertModel",
    "AutoModelForSequenceClassification": "modeling_hilbert.HilbertForSequenceClassification",
}

# The pipeline shipped with every checkpoint (pipeline_hilbert.py): `pipeline(task, model=repo, trust_remote_code=True)`
# reads it from config.json, as `Pipeline.save_pretrained` would write it.
_CUSTOM_PIPELINES = {
    "hilbert-document-classification": {
        "impl": "pipeline_hilbert.HilbertDocumentClassificationPipeline",
        "pt": ["AutoModelForSequenceClassification"],
        "type": "multimodal",
    },
}


def normalize_task(task: dict[str, Any], index: int) -> dict[str, Any]:
    """Validate one task definition and return it in canonical form.

    Accepted input: `{"name": str, "type": "multiclass"|"binary"|"multilabel", "id2label": {id: name}}` (or
    `"labels": [name, ...]` instead of `id2label`), with optional `"class_weights": [float] * num_labels` (multiclass:
    cross-entropy weights; binary/multilabel: BCE `pos_weight`, one value per output) and `"focal_gamma": float`.
    Canonical form: `id2label` with int keys 0..C-1, every optional key present (None when unset).
    """
    if not isinstance(task, dict):
        raise ValueError(f"HilbertConfig.tasks[{index}] must be a dict, got {type(task).__name__}.")
    unknown = set(task) - {"name", "type", "id2label", "labels", "class_weights", "focal_gamma"}
    if unknown:
        raise ValueError(
            f"HilbertConfig.tasks[{index}] has unknown keys {sorted(unknown)}; allowed: name, type, id2label "
            "(or labels), class_weights, focal_gamma."
        )
    name = task.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_\-]+", name):
        raise ValueError(
            f"HilbertConfig.tasks[{index}] needs a 'name' of letters, digits, '_' or '-' (it names a module), got "
            f"{name!r}."
        )
    task_type = task.get("type", "multiclass")
    if task_type not in TASK_TYPES:
        raise ValueError(f"Task {name!r}: type must be one of {TASK_TYPES}, got {task_type!r}.")
    if "labels" in task and "id2label" in task:
        raise ValueError(f"Task {name!r}: give either 'labels' or 'id2label', not both.")
    if "labels" in task:
        id2label = dict(enumerate(task["labels"]))
    else:
        id2label = {int(k): v for k, v in (task.get("id2label") or {}).items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"Task {name!r}: id2label keys must be 0..C-1, got {sorted(id2label)}.")
    min_labels = 2 if task_type != "multilabel" else 1
    if len(id2label) < min_labels:
        raise ValueError(f"Task {name!r} ({task_type}) needs at least {min_labels} labels, got {len(id2label)}.")
    if task_type == "binary" and len(id2label) != 2:
        raise ValueError(f"Task {name!r} is binary and needs exactly 2 labels, got {len(id2label)}.")
    num_outputs = 1 if task_type == "binary" else len(id2label)
    weights = task.get("class_weights")
    if weights is not None:
        weights = [float(w) for w in weights]
        if len(weights) != num_outputs or any(not math.isfinite(w) or w < 0 for w in weights):
            raise ValueError(
                f"Task {name!r}: class_weights must be {num_outputs} finite non-negative numbers "
                f"({'one pos_weight' if task_type == 'binary' else 'one per label'}), got {task['class_weights']!r}."
            )
    gamma = task.get("focal_gamma")
    if gamma is not None and (not isinstance(gamma, (int, float)) or gamma < 0):
        raise ValueError(f"Task {name!r}: focal_gamma must be a number >= 0, got {gamma!r}.")
    return {
        "name": name,
        "type": task_type,
        "id2label": {i: str(id2label[i]) for i in range(len(id2label))},
        "class_weights": weights,
        "focal_gamma": None if gamma is None else float(gamma),
    }


def _field_docs(docstring: str) -> dict[str, str]:
    """`name (`type`): text` entries of a docstring's Args section -> {name: text} (one text for `a, b (...)`)."""
    docs: dict[str, str] = {}
    names: list[str] = []
    for line in docstring.splitlines():
        entry = re.match(r"^ {8}([a-z_][a-z0-9_, ]*) \(`[^`]*`(?:, \*optional\*)?\): (.*)$", line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                docs[name] = entry.group(2).strip()
        elif names and line.startswith(" " * 12):
            for name in names:
                docs[name] += " " + line.strip()
        else:
            names = []
    return docs


# Head fields whose default changed after checkpoints were saved without them: the value such a checkpoint was
# trained with. A config.json that lacks the key loads with it (`HilbertConfig.from_dict`).
LEGACY_DEFAULTS: dict[str, Any] = {"cross_attention_gate": False}


class HilbertConfig(PreTrainedConfig):
    r"""Configuration of a HILBERT model.

    The head's defaults are sized for the data HILBERT is for (tens to a few hundred labelled documents): a 128-wide
    head with one cross-attention layer. `HilbertConfig.head_settings()` lists every field a user sets when training;
    `train.py`'s options and YAML keys are built from it, with these defaults and the help text below.

    Args:
        audio_config (`PreTrainedConfig` or `dict`): config of the frozen speech encoder (whisper, hubert, wav2vec2,
        ...).
        text_config (`PreTrainedConfig` or `dict`): config of the frozen text encoder (bert, roberta, t5, ...).
        hidden_size (`int`): width d of the head (segment projections, cross-attention, pooled embeddings).
        num_attention_heads (`int`): heads of the cross-modal attention.
        num_cross_attention_layers (`int`): L, layers of bidirectional cross-modal attention.
        cross_attention_gate (`bool`): scale each cross-attention block's residual branches by a learnt gate
            tanh(g), g = 0 at initialisation (Flamingo's gated cross-attention): the head starts from the two
            unimodal streams and mixes them only as far as that helps the loss (on the demo's inner folds, without
            alignment terms: macro-AUC 0.963 ungated, 0.982 gated; docs/results.md). False: the plain residual.
        intermediate_size (`int`): width of the feed-forward block after each cross-attention.
        dropout (`float`): dropout of projections, feed-forward blocks and classifier.
        attention_dropout (`float`): dropout on attention probabilities.
        max_time_period (`float`): longest period (seconds) of the sinusoidal segment-time embedding.
        use_time_embedding (`bool`): add an embedding of each segment's start time and duration.
        standardize_features (`bool`): standardise each dimension of the frozen segment features by its mean and
            standard deviation over the training documents before the head's projections (HilbertTrainer sets them
            once, before training, from the training set; saved with the model). Frozen speech encoders have a few
            massive feature dimensions that otherwise dominate the head; the logistic-regression baseline
            standardises too.
        pooling_heads (`int`): r, heads of the self-attentive pooling (Lin et al. 2017).
        pooling_hidden_size (`int`): d_a, hidden width of the pooling scorer.
        pooling_mean_init (`bool`): initialise every attentive pooling as the masked mean: its scorer's output layer
            W_2 starts at zero, so the softmax is uniform over the real segments and the head starts from the
            mean-pooled document vector (the linear baseline's input) and learns to move away from it.
        segment_dropout (`float`): in training only, drop each real segment of a document (both modalities) with
            this probability, resampled every step (at least one segment is kept): an augmentation for small data.
        projection_dim (`int`): width of the contrastive space p(.).
        temperature_init (`float`): initial InfoNCE temperature tau (learnable, stored as a log logit-scale).
        temperature_min (`float`): lower clamp of tau (an upper clamp of the logit scale).
        contrastive_memory_size (`int`): in training only, keep the latest contrastive-space vectors of up to this
            many documents (keyed by document id, detached) as extra negatives of the contrastive terms: more
            negatives than a small batch holds (memory_hilbert.py). 0 = in-batch negatives only. The MI estimates
            stay in-batch (their bound log B - InfoNCE holds for B live candidates). Needs `document_ids` in the
            batch (HILBERT's collators give them); evaluation always uses in-batch negatives.
        dual_contrastive_weight, cka_weight, mi_weight, moe_balance_weight (`float`): lambda of each loss term.
        unimodal_loss_weight (`float`): lambda_uni of the unimodal classification losses (0 = off, the default): a
            linear classifier on z_a and one on z_t, trained on the labels beside the fused classifier, L += lambda_uni
            * (L_cls(W_a z_a) + L_cls(W_t z_t)) / 2 (gradient blending's unimodal heads, Wang et al. 2020). They make
            each stream's embedding carry the label information of its own modality, where the fused classifier
            would learn the faster modality first and leave the other underused. They never change a prediction:
            only the fused classifier's logits are returned.
        alignment_warmup_epochs (`float`): a two-stage schedule: for this many training epochs only the alignment
            terms (contrastive, CKA, MI) and the MoE balance are trained, the labels are kept out of the loss; then
            classification joins them (HilbertTrainer applies it; 0 = one stage). Only for multimodal heads with an
            alignment weight > 0; ignored otherwise.
        num_experts (`int`): E, experts of the MoE classifier.
        expert_hidden_size (`int`): width of each expert MLP's output.
        moe_shared_expert (`bool`): add an always-on expert outside the gates (DeepSeekMoE's shared expert): what
            every document needs is learnt from all of them, not again inside each routed expert from the documents
            routed to it. Off by default.
        moe_top_k (`int`, *optional*): experts each document is routed to; None = dense gate (every expert, weighted
            by the gate's softmax). 1: the selected expert weighted by its raw gate probability, not renormalised
            (Switch Transformer), so that the gate learns from the task loss. 1 < k < num_experts: the k largest gate
            probabilities renormalised to sum to 1 (Shazeer et al. 2017, GShard). num_experts: the same as None.
        tasks (`list[dict]`, *optional*): label spaces, each `{"name", "type", "id2label", "class_weights"?,
            "focal_gamma"?}` with type `multiclass`, `binary` or `multilabel`. When omitted, one multiclass task
            named `"label"` is made from `id2label` / `num_labels` (as in any transformers classifier).
        focal_gamma (`float`): default focal-loss gamma for tasks that do not set one (0 = plain cross-entropy).
        contrastive_target (`str`): `"joint"` (HILBERT: audio->joint and text->joint) or `"audio_text"` (baseline:
            direct audio<->text contrast).
        modalities (`str`): `"both"`, `"audio"` or `"text"` (unimodal baselines).
        fusion (`str`): `"cross_attention"` (HILBERT) or `"concat"` (no cross-modal attention: the joint sequence is
            fused from the projected segments directly).
        joint_sequence (`str`): how the joint sequence is formed: `"per_segment"` (joint_s = W[a_s; t_s], needs
            aligned segments) or `"concat_sequence"` (the two streams concatenated along the segment axis).
        classifier (`str`): `"moe"` (HILBERT) or `"mlp"` (one MLP per task, baseline).
        modality_embeddings (`str`): what z_a and z_t pool (multimodal models with cross-attention):
            `"cross_attended"` (default: each stream after the cross-modal attention, so z_a holds text read
            through the audio's queries) or `"own_stream"` (each modality's projected segments before it: z_a and
            z_t hold one modality each, the cross-attended streams form only the joint sequence and z_j). With
            "own_stream" the CKA term compares each modality's own structure with the joint space and the MI term
            weighs two single-modality embeddings, as their purposes say; the classifier sees each modality's own
            evidence beside the fused one, as concat + MLP does. With `fusion="concat"` both are the same.
        linear_shortcut (`bool`): add to every task's logits a linear function of the document's mean-pooled frozen
            features, standardised over the training documents (shortcut_hilbert.py): the logistic-regression
            baseline kept inside the model, its weights zero at initialisation, so that the head cannot end below a
            linear model on the same features for lack of the information.
        audio_mode (`str`): how a Whisper encoder sees a segment: `"exact"` (padded to its 30 s window as trained,
            pooling only the frames of real audio) or `"fast"` (only the real frames, Whisper's reduced audio
            context). It must match the processor's `audio_mode` and the features' fingerprint. Ignored by other
            audio encoders.
        encoder_batch_size (`int`, *optional*): segments per call of a frozen encoder in the raw-input path (bounds
            memory). None (default): by device, 4 on CPU (small calls were fastest there: benchmarks/README.md), 64
            on CUDA (`encoders_hilbert.auto_encoder_batch_size`).
        initializer_range (`float`): std of the normal init of the head's linear layers.
        with_encoders (`bool`): build the frozen encoders. False gives a head-only model that takes precomputed
            segment features (training on cached features: small, fast checkpoints); the full model is assembled
            afterwards with `attach_encoders`.
        encoder_sources (`dict`, *optional*): provenance of the encoders (`{"audio": {...}, "text": {...}}` with
            name_or_path, revision, sha256 of the weights), filled by `from_encoders_pretrained`.
    """

    model_type = "hilbert"
    # Output fields a plain `Trainer` leaves out of its predictions (everything but the logits), so that
    # `Trainer.predict(...).predictions` is the logits: a `(N, C)` array for one task, `{task: (N, C_t)}` for several.
    keys_to_ignore_at_inference = [
        "classification_loss",
        "task_losses",
        "contrastive_loss",
        "cka_loss",
        "mi_loss",
        "moe_balance_loss",
        "mi_audio_joint",
        "mi_text_joint",
        "temperature",
        "audio_embeds",
        "text_embeds",
        "joint_embeds",
        "gate_weights",
        "audio_pooling_weights",
        "text_pooling_weights",
        "joint_pooling_weights",
        "audio_documents",
        "text_documents",
        "task_logits",
        "audio_hidden_states",
        "text_hidden_states",
        "audio_cross_attentions",
        "text_cross_attentions",
        "audio_segment_mask",
        "text_segment_mask",
        "mean_pooled_features",
    ]
    sub_configs_defaults = {
        "audio_config": SubConfigSpec(config_class=AutoConfig, model_type="whisper"),
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="bert"),
    }

    audio_config: PreTrainedConfig | dict | None = None
    text_config: PreTrainedConfig | dict | None = None
    hidden_size: int = 128
    num_attention_heads: int = 4
    num_cross_attention_layers: int = 1
    cross_attention_gate: bool = True
    intermediate_size: int = 256
    dropout: float = 0.1
    attention_dropout: float = 0.0
    max_time_period: float = 10000.0
    use_time_embedding: bool = True
    standardize_features: bool = True
    pooling_heads: int = 2
    pooling_hidden_size: int = 64
    pooling_mean_init: bool = False
    segment_dropout: float = 0.0
    projection_dim: int = 64
    temperature_init: float = 0.07
    temperature_min: float = 0.01
    contrastive_memory_size: int = 0
    dual_contrastive_weight: float = 1.0
    cka_weight: float = 0.5
    mi_weight: float = 0.1
    moe_balance_weight: float = 0.01
    unimodal_loss_weight: float = 0.0
    alignment_warmup_epochs: float = 0.0
    num_experts: int = 4
    expert_hidden_size: int = 128
    moe_top_k: int | None = None
    moe_shared_expert: bool = False
    tasks: list | None = None
    focal_gamma: float = 0.0
    contrastive_target: str = "joint"
    modalities: str = "both"
    fusion: str = "cross_attention"
    joint_sequence: str = "per_segment"
    modality_embeddings: str = "cross_attended"
    classifier: str = "moe"
    linear_shortcut: bool = False
    audio_mode: str = "exact"
    encoder_batch_size: int | None = None
    initializer_range: float = 0.02
    with_encoders: bool = True
    encoder_sources: dict | None = None

    def __post_init__(self, **kwargs):
        global _on_first_config
        if _on_first_config is not None:
            hook, _on_first_config = _on_first_config, None
            hook()
        unknown = sorted(k for k in kwargs if k not in _BASE_KWARGS)
        if unknown:
            known = sorted(HilbertConfig.__annotations__)
            raise ValueError(
                f"HilbertConfig got unknown keys {unknown}. Check their spelling; known keys: {', '.join(known)}."
            )
        super().__post_init__(**kwargs)
        # Every checkpoint can be loaded by all three Auto classes, whichever class saved it.
        auto_map = dict(getattr(self, "auto_map", None) or {})
        for auto_class, target in _AUTO_MAP.items():
            auto_map.setdefault(auto_class, target)
        self.auto_map = auto_map
        custom_pipelines = dict(getattr(self, "custom_pipelines", None) or {})
        for task, info in _CUSTOM_PIPELINES.items():
            custom_pipelines.setdefault(task, dict(info, pt=list(info["pt"])))
        self.custom_pipelines = custom_pipelines
        self._normalize_tasks()
        self._validate()

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        """A saved config; head fields added after it was saved take the value that reproduces its model
        (`LEGACY_DEFAULTS`), not today's default (e.g. a checkpoint from before the cross-attention gate)."""
        legacy = {key: value for key, value in LEGACY_DEFAULTS.items() if key not in config_dict}
        return super().from_dict({**legacy, **config_dict}, **kwargs)

    # -------------------------------------------------------- training settings
    @classmethod
    def head_settings(cls) -> dict[str, dict[str, Any]]:
        """Every field a user chooses when training a head, with its type, default, help and choices.

        The one source of the head's settings and their defaults: `train.py`'s command line and YAML keys are built
        from it, and the benchmarks read it. Returns `{name: {"type": str, "default": value, "help": str,
        "choices": tuple | None}}` in field order; `type` is the annotation as written (e.g. `"int | None"`).
        """
        docs = _field_docs(cls.__doc__ or "")
        own = [f for f in dataclasses.fields(cls) if f.name in cls.__annotations__ and f.name not in NON_HEAD_FIELDS]
        return {
            f.name: {
                "type": f.type if isinstance(f.type, str) else f.type.__name__,
                "default": f.default,
                "help": docs.get(f.name, ""),
                "choices": FIELD_CHOICES.get(f.name),
            }
            for f in own
        }

    # ------------------------------------------------------------------ tasks
    def _normalize_tasks(self) -> None:
        if self.tasks is None:
            # Single-task convenience: the usual `num_labels` / `id2label` of a transformers classifier.
            multilabel = self.problem_type == "multi_label_classification"
            self.tasks = [
                {"name": "label", "type": "multilabel" if multilabel else "multiclass", "id2label": self.id2label}
            ]
        self.tasks = [normalize_task(task, i) for i, task in enumerate(self.tasks)]
        names = [t["name"] for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"HilbertConfig.tasks has duplicate names: {names}.")
        if not self.tasks:
            raise ValueError("HilbertConfig.tasks is empty: give at least one task (or num_labels / id2label).")
        # Keep the standard `id2label` / `label2id` in sync with the first task, which pipelines and the Hub use.
        self.id2label = dict(self.tasks[0]["id2label"])
        self.label2id = {v: k for k, v in self.id2label.items()}

    @property
    def task_names(self) -> list[str]:
        return [t["name"] for t in self.tasks]

    def task(self, name: str) -> dict[str, Any]:
        for t in self.tasks:
            if t["name"] == name:
                return t
        raise KeyError(f"No task named {name!r}; tasks are {self.task_names}.")

    @staticmethod
    def task_num_outputs(task: dict[str, Any]) -> int:
        """Logits per document for a task: 1 for binary (sigmoid), C for multiclass (softmax) and multilabel."""
        return 1 if task["type"] == "binary" else len(task["id2label"])

    # ------------------------------------------------------------- validation
    def _validate(self) -> None:
        for key, allowed in FIELD_CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"HilbertConfig.{key} must be one of {allowed}, got {getattr(self, key)!r}.")
        positive = (
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "pooling_heads",
            "pooling_hidden_size",
            "projection_dim",
            "num_experts",
            "expert_hidden_size",
            "encoder_batch_size",
        )
        for key in positive:
            value = getattr(self, key)
            if key == "encoder_batch_size" and value is None:  # chosen by device at run time
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"HilbertConfig.{key} must be a positive integer, got {value!r}.")
            if value > MAX_SIZE:
                raise ValueError(
                    f"HilbertConfig.{key}={value} is beyond any usable head (at most {MAX_SIZE}; a {value} x {value} "
                    f"float32 matrix alone needs {value * value * 4 / 2**30:,.0f} GiB). Check the value."
                )
        layers = self.num_cross_attention_layers
        if not isinstance(layers, int) or isinstance(layers, bool) or not 0 <= layers <= MAX_LAYERS:
            raise ValueError(
                f"HilbertConfig.num_cross_attention_layers must be an integer >= 0 and at most {MAX_LAYERS}, got "
                f"{layers!r}."
            )
        numbers = (
            "dropout",
            "attention_dropout",
            "max_time_period",
            "temperature_init",
            "temperature_min",
            "dual_contrastive_weight",
            "cka_weight",
            "mi_weight",
            "moe_balance_weight",
            "unimodal_loss_weight",
            "focal_gamma",
            "initializer_range",
            "alignment_warmup_epochs",
        )
        for key in numbers:  # before the range checks below, which would fail on a str with a TypeError
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ValueError(f"HilbertConfig.{key} must be a finite number, got {value!r}.")
        memory = self.contrastive_memory_size
        if not isinstance(memory, int) or isinstance(memory, bool) or not 0 <= memory <= MAX_SIZE:
            raise ValueError(
                f"HilbertConfig.contrastive_memory_size must be an integer in [0, {MAX_SIZE}] (0 = off), "
                f"got {memory!r}."
            )
        if self.moe_top_k is not None and (not isinstance(self.moe_top_k, int) or isinstance(self.moe_top_k, bool)):
            raise ValueError(f"HilbertConfig.moe_top_k must be None or an integer, got {self.moe_top_k!r}.")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if not isinstance(self.segment_dropout, (int, float)) or isinstance(self.segment_dropout, bool):
            raise ValueError(f"HilbertConfig.segment_dropout must be a number in [0, 1), got {self.segment_dropout!r}.")
        for key in ("dropout", "attention_dropout", "segment_dropout"):
            if not 0.0 <= getattr(self, key) < 1.0:
                raise ValueError(f"HilbertConfig.{key} must be in [0, 1), got {getattr(self, key)}.")
        for key in (
            "dual_contrastive_weight",
            "cka_weight",
            "mi_weight",
            "moe_balance_weight",
            "unimodal_loss_weight",
            "focal_gamma",
            "alignment_warmup_epochs",
        ):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"HilbertConfig.{key} must be a finite number >= 0, got {value!r}.")
        if not 0 < self.temperature_min <= self.temperature_init:
            raise ValueError(
                f"Need 0 < temperature_min <= temperature_init, got {self.temperature_min} and {self.temperature_init}."
            )
        if self.moe_top_k is not None and not 1 <= self.moe_top_k <= self.num_experts:
            raise ValueError(f"moe_top_k must be None or in [1, num_experts={self.num_experts}], got {self.moe_top_k}.")
        if self.max_time_period <= 1:
            raise ValueError(f"max_time_period must be > 1 second, got {self.max_time_period}.")

    @property
    def uses_audio(self) -> bool:
        return self.modalities in ("both", "audio")

    @property
    def uses_text(self) -> bool:
        return self.modalities in ("both", "text")

    @property
    def is_multimodal(self) -> bool:
        return self.modalities == "both"


__all__ = ["HilbertConfig"]
