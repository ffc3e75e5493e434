"""Frozen encoders: build them from their configs and turn each segment into one vector.

A segment's vector is the masked mean of the encoder's last hidden state over its real frames (audio) or real
tokens (text). Whisper needs care: it is trained on inputs padded to 30 s and its `forward` refuses anything else.

* exact mode — the input is the full 3000 mel frames (30 s); the encoder runs as trained and only the output
  frames that cover real audio are pooled.
* fast mode — only the real mel frames are encoded (each batch is cropped to its longest real segment, so the
  processor's exact-mode output works too). The encoder's own modules are run on them (conv1 -> GELU -> conv2 -> GELU ->
  + positions[:T] -> layers -> layer_norm), which is what whisper.cpp
  calls a reduced audio context. Segments of different lengths share a batch: padded mel frames are zeroed before
  each convolution (exactly what the convolution's own zero padding does at a segment's end) and masked out of
  self-attention, so a segment's features do not depend on what it is batched with.

Waveform encoders (wav2vec2, HuBERT) take an attention mask and zero padded frames before their positional
convolution, so padding does not reach a segment's real frames -- except in the group-norm checkpoints
(`feat_extract_norm="group"`: wav2vec2-base, HuBERT-base), whose first GroupNorm averages each channel over the
whole padded input. Their GroupNorm is restricted to each segment's real frames (`group_norm_over_real_samples`),
so batching stays as it is and a segment's features equal its features encoded alone, unpadded.

Which encoder a checkpoint becomes (`load_pretrained_encoder`, `build_encoder`): Whisper -> `WhisperEncoder`;
BERT, RoBERTa, T5, mT5, UMT5 -> their `AutoModelForTextEncoding` class (`T5EncoderModel` for T5); other
encoder-decoder models -> their encoder; anything else -> `AutoModel`. docs/backbones.md lists the tested pairings.

Ships to the Hub with the model: imports only `torch`, `transformers` and sibling files.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F
from transformers import AutoConfig, AutoModel, AutoModelForTextEncoding, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES

from .pooling_hilbert import masked_mean


def is_whisper(config: PreTrainedConfig) -> bool:
    return config.model_type == "whisper"


def whisper_full_length(config: PreTrainedConfig) -> int:
    """Mel frames Whisper's encoder is trained on (3000 = 30 s at 10 ms hops): 2 * max_source_positions."""
    return 2 * config.max_source_positions


# Arguments of `from_pretrained` that say where a checkpoint is; used to read its config before choosing the class.
_HUB_KWARGS = (
    "revision",
    "token",
    "cache_dir",
    "local_files_only",
    "subfolder",
    "force_download",
    "proxies",
    "trust_remote_code",
)


def _is_text_encoding_family(config: PreTrainedConfig) -> bool:
    """Families transformers lists for `AutoModelForTextEncoding`: BERT -> BertModel, RoBERTa -> RobertaModel,
    T5 / mT5 / UMT5 (ByT5 is "t5") -> T5EncoderModel / MT5EncoderModel / UMT5EncoderModel."""
    return config.model_type in MODEL_FOR_TEXT_ENCODING_MAPPING_NAMES


def build_encoder(config: PreTrainedConfig) -> PreTrainedModel:
    """Build the encoder HILBERT keeps from a config (random weights; `from_pretrained` fills them).

    * Whisper: `WhisperEncoder` (the decoder is never used).
    * Text families of `AutoModelForTextEncoding` (BERT, RoBERTa, T5, mT5, UMT5): that class. For T5 it is
      `T5EncoderModel`, whose encoder stack gets a config with `use_cache=False`; a T5 stack given the full
      encoder-decoder config refuses to run ("use_cache can only be set to True if T5Stack is used as a decoder").
      The config is copied: `T5EncoderModel` edits the config it is given, which is `HilbertConfig.text_config`.
    * Other encoder-decoder models: the encoder of `AutoModel`. Everything else: `AutoModel`.
    """
    if is_whisper(config):
        from transformers.models.whisper.modeling_whisper import WhisperEncoder

        return WhisperEncoder(config)
    if _is_text_encoding_family(config):
        return AutoModelForTextEncoding.from_config(copy.deepcopy(config), **_without_pooler(config))
    if getattr(config, "is_encoder_decoder", False):
        return AutoModel.from_config(config).get_encoder()
    return AutoModel.from_config(config)


def _without_pooler(config: PreTrainedConfig) -> dict:
    """`{"add_pooling_layer": False}` for text encoders that have the option (BERT, RoBERTa, ...), else `{}`.

    HILBERT mean-pools the last hidden states; the [CLS] pooler is never used. Kept, it would also break the weights'
    fingerprint: a checkpoint saved without one (roberta-base is saved as `RobertaForMaskedLM`) gets a randomly
    initialised pooler at every load, so `weights_sha256` would differ between two loads of the same checkpoint.
    """
    model_class = AutoModelForTextEncoding._model_mapping.get(type(config), None)
    if model_class is not None and "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return {"add_pooling_layer": False}
    return {}


def load_pretrained_encoder(name_or_path: str, **kwargs) -> PreTrainedModel:
    """Load a pretrained checkpoint as the encoder `build_encoder` makes for its config.

    Accepts a checkpoint saved as the family's full class: `WhisperForConditionalGeneration` or `WhisperModel`
    (the encoder is taken out; its config is the full Whisper config, which the encoder needs),
    `T5ForConditionalGeneration`,
    `T5Model` or `T5EncoderModel` (loaded as `T5EncoderModel`: decoder weights are skipped, the encoder's config
    is the encoder-only one), `BertModel`, `RobertaModel`, `HubertModel`, `Wav2Vec2Model` (and their task
    classes such as `Wav2Vec2ForCTC`, whose base-model prefix transformers strips). A local folder is read, never
    downloaded; a Hub id goes through the usual cache (`kwargs` such as `revision` are passed on).
    """
    config = AutoConfig.from_pretrained(name_or_path, **{k: v for k, v in kwargs.items() if k in _HUB_KWARGS})
    if is_whisper(config):
        return AutoModel.from_pretrained(name_or_path, **kwargs).get_encoder()  # WhisperModel -> WhisperEncoder
    if _is_text_encoding_family(config):
        return AutoModelForTextEncoding.from_pretrained(name_or_path, **_without_pooler(config), **kwargs)
    model = AutoModel.from_pretrained(name_or_path, **kwargs)
    if getattr(model.config, "is_encoder_decoder", False):
        return model.get_encoder()
    return model


# Half precision for the frozen encoders (the trainable head stays float32): what `resolve_encoder_dtype` accepts.
ENCODER_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Segments per encoder call when none is given. On CPU, small batches are fastest: benchmarks/README.md measured
# Whisper tiny.en's exact mode ~25% slower at 32 segments per call than at 4 (its 1500-frame attention matrices),
# and fast mode 5.47x the naive loop at 4 against 4.53x at 32. A GPU needs large batches to be kept busy.
AUTO_ENCODER_BATCH_SIZE = {"cpu": 4, "cuda": 64}


def resolve_encoder_dtype(dtype: torch.dtype | str | None, device: torch.device | str) -> torch.dtype:
    """The dtype to run the frozen encoders in: `None` or `"auto"` -> float16 on CUDA, float32 elsewhere.

    On CPU half precision is slower, not faster (no fast half kernels on most CPUs: bfloat16 Whisper tiny.en ran
    5-9x slower than float32 here), so auto keeps float32 there. Segment features are pooled in float32 whatever
    the encoders run in (`encode_audio_batch`, `encode_text_batch`).
    """
    device = torch.device(device)
    if dtype is None or dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in ENCODER_DTYPES.values():
            raise ValueError(f"Encoder dtype {dtype} is not supported; use one of auto, {', '.join(ENCODER_DTYPES)}.")
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in ENCODER_DTYPES:
        raise ValueError(f"Unknown encoder dtype {dtype!r}; use one of auto, {', '.join(ENCODER_DTYPES)}.")
    return ENCODER_DTYPES[name]


def auto_encoder_batch_size(device: torch.device | str) -> int:
    """Segments per encoder call for a device when none is given: small on CPU, large on GPUs (see above)."""
    return AUTO_ENCODER_BATCH_SIZE.get(torch.device(device).type, AUTO_ENCODER_BATCH_SIZE["cuda"])


def encoder_hidden_size(config: PreTrainedConfig) -> int:
    """Width of an encoder's last hidden state (d_model for Whisper and T5, hidden_size elsewhere)."""
    for key in ("hidden_size", "d_model"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise ValueError(f"Cannot tell the hidden size of a {config.model_type!r} encoder: no hidden_size or d_model.")


# ------------------------------------------------------------------------------------------------ audio
def whisper_reduced_context(encoder: nn.Module, input_features: torch.Tensor, mel_mask: torch.Tensor) -> torch.Tensor:
    """Run Whisper's encoder on fewer than 3000 mel frames (fast mode).

    Args:
        encoder: a `WhisperEncoder`.
        input_features: `(N, n_mels, T)` log-mel features, T <= 3000.
        mel_mask: `(N, T)`, 1 for real mel frames.

    Returns:
        last hidden state `(N, ceil(T / 2), d_model)`.
    """
    mel_mask = mel_mask.to(input_features.dtype).unsqueeze(1)  # (N, 1, T)
    hidden = F.gelu(encoder.conv1(input_features * mel_mask)) * mel_mask  # (N, d, T)
    hidden = F.gelu(encoder.conv2(hidden))  # (N, d, ceil(T/2))
    hidden = hidden.transpose(1, 2)  # (N, T', d)
    length = hidden.shape[1]
    hidden = hidden + encoder.embed_positions.weight[:length]
    frame_mask = mel_mask[:, 0, ::2].bool()  # (N, T')
    # Additive key mask (N, 1, 1, T'): padded frames are never attended to.
    attention_mask = torch.zeros(frame_mask.shape, dtype=hidden.dtype, device=hidden.device)
    attention_mask = attention_mask.masked_fill(~frame_mask, torch.finfo(hidden.dtype).min)[:, None, None, :]
    for layer in encoder.layers:
        hidden = layer(hidden, attention_mask)
        if isinstance(hidden, tuple):  # older layer signatures return (hidden, attn)
            hidden = hidden[0]
    return encoder.layer_norm(hidden)


def audio_frame_mask(encoder: nn.Module, sample_or_mel_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
    """Map an input-level mask (mel frames for Whisper, samples for wav2vec2/HuBERT) to output frames `(N, T_out)`."""
    if is_whisper(encoder.config):
        return sample_or_mel_mask[:, ::2][:, :num_frames].bool()
    if hasattr(encoder, "_get_feature_vector_attention_mask"):
        return encoder._get_feature_vector_attention_mask(num_frames, sample_or_mel_mask.long()).bool()
    lengths = encoder._get_feat_extract_output_lengths(sample_or_mel_mask.sum(-1))
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


def normalizes_over_time(config: PreTrainedConfig) -> bool:
    """True for waveform encoders whose first convolution is followed by a GroupNorm over time
    (`feat_extract_norm="group"`: wav2vec2-base, HuBERT-base, WavLM-base). That GroupNorm has one group per channel,
    so it normalises each channel by its mean and variance over the whole input: over the padding too when segments
    of different lengths share a batch (a segment's features then changed with its batch mates: up to 23% for
    HuBERT-base)."""
    return getattr(config, "feat_extract_norm", None) == "group"


def _time_group_norm(encoder: nn.Module) -> nn.GroupNorm | None:
    """The GroupNorm of a group-norm feature encoder's first conv layer (wav2vec2's layout, shared by HuBERT, WavLM,
    UniSpeech, SEW); None if this encoder is laid out otherwise."""
    layers = getattr(getattr(encoder, "feature_extractor", None), "conv_layers", None)
    norm = getattr(layers[0], "layer_norm", None) if layers is not None and len(layers) else None
    return norm if isinstance(norm, nn.GroupNorm) else None


def masked_group_norm(norm: nn.GroupNorm, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`norm(hidden)` with each row's statistics taken over its first `lengths[n]` frames only.

    Args:
        norm: the GroupNorm (its groups, eps, affine weight and bias are used).
        hidden: `(N, C, T)` conv output of a batch padded to T frames.
        lengths: `(N,)` real frames per row.

    Returns:
        `(N, C, T)`: each row's real frames normalised as `norm` does that row alone, unpadded (the same kernel on the
        same values: y = (x - mu) / sqrt(var + eps) * w + b, mu and var over a group's channels and the real frames);
        zeros on padded frames, which no real output frame depends on; a row whose groups hold one value each (one
        frame, one channel per group) gets the bias, the formula's value where torch's kernel refuses. One call per
        row on its real frames only: cheaper than masked reductions over the padded batch (~7x slower on CPU for 4
        rows of 8 s).
    """
    out = torch.empty_like(hidden)
    values_per_group_frame = hidden.shape[1] // norm.num_groups
    for row, length in enumerate(lengths.tolist()):
        length = min(max(length, 0), hidden.shape[-1])
        if length * values_per_group_frame == 1:
            # One value per group (one channel per group, one real frame): torch refuses it ("Expected more than 1
            # value per channel"), but the formula is defined: x - mu = 0, so the output is the affine bias.
            bias = norm.bias if norm.affine else torch.zeros(hidden.shape[1], dtype=hidden.dtype, device=hidden.device)
            out[row, :, :1] = bias.to(hidden.dtype)[:, None]
        elif length > 0:
            out[row, :, :length] = F.group_norm(
                hidden[row : row + 1, :, :length], norm.num_groups, norm.weight, norm.bias, norm.eps
            )[0]
        out[row, :, length:] = 0
    return out


@contextmanager
def group_norm_over_real_samples(encoder: nn.Module, sample_lengths: torch.Tensor):
    """While active, the encoder's time GroupNorm (`_time_group_norm`) normalises each row over its real frames only.

    The first conv layer's output has floor((L - k) / s) + 1 real frames for L real samples (k, s: that layer's
    kernel and stride), the frames whose windows hold real samples only. Every later layer is per frame or masked
    (the conv stack's real frames only see real frames, the transformer masks padded keys), so with this a segment
    gives the same features in any batch as alone, while segments of any lengths still share one encoder call.
    The GroupNorm's `forward` is replaced on the instance for the duration (a forward hook would still run the
    full-batch GroupNorm first), so this is not safe to share with another thread running the same encoder.
    """
    norm = _time_group_norm(encoder)
    kernel, stride = encoder.config.conv_kernel[0], encoder.config.conv_stride[0]
    frames = (torch.div(sample_lengths - kernel, stride, rounding_mode="floor") + 1).clamp(min=0)
    norm.forward = lambda hidden: masked_group_norm(norm, hidden, frames)
    try:
        yield
    finally:
        del norm.forward  # back to GroupNorm.forward


def _encode_waveforms(encoder: nn.Module, key: str, inputs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Last hidden state of a waveform encoder (wav2vec2 / HuBERT / ...) on a padded batch `(N, L)` -> `(N, T', D)`.

    Group-norm encoders (`normalizes_over_time`) get their GroupNorm restricted to each row's real samples; one laid
    out differently from wav2vec2 instead runs each set of equal-length rows on its own, unpadded (exact, slower).
    """
    if mask is None or not normalizes_over_time(encoder.config) or bool(mask.all()):
        return encoder(**{key: inputs}, attention_mask=mask).last_hidden_state
    lengths = mask.long().sum(-1)
    if _time_group_norm(encoder) is not None:
        with group_norm_over_real_samples(encoder, lengths):
            return encoder(**{key: inputs}, attention_mask=mask).last_hidden_state
    parts, hidden = {}, None
    for length in lengths.unique().tolist():
        if length == 0:  # no real sample: left at zero (masked out of the pooling)
            continue
        rows = (lengths == length).nonzero().squeeze(-1)
        parts[length] = (rows, encoder(**{key: inputs[rows, :length]}).last_hidden_state)
    if not parts:  # every row empty: nothing to normalise
        return encoder(**{key: inputs}, attention_mask=mask).last_hidden_state
    frames = max(part.shape[1] for _, part in parts.values())  # that of the longest row: its batch's length
    for rows, part in parts.values():
        if hidden is None:
            hidden = part.new_zeros(inputs.shape[0], frames, part.shape[-1])
        hidden[rows, : part.shape[1]] = part
    return hidden


def encode_audio_batch(
    encoder: nn.Module,
    input_features: torch.Tensor | None,
    input_values: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    whisper_mode: str = "exact",
) -> torch.Tensor:
    """One encoder call on a batch of segments -> pooled features `(N, D_audio)` (float32).

    Whisper (`input_features` `(N, n_mels, T)`): `whisper_mode="exact"` needs T == 3000 (the 30 s window);
    `"fast"` takes any T <= 3000 and encodes the first T frames with the reduced context. The mode is explicit
    because the tensor alone cannot tell a fast batch whose longest segment fills the window from an exact one.
    wav2vec2 / HuBERT / others (`input_values` `(N, L)` waveforms): the mask is passed to the encoder and mapped
    to output frames for pooling.
    """
    dtype = next(encoder.parameters()).dtype
    if is_whisper(encoder.config):
        if input_features is None:
            raise ValueError("A Whisper audio encoder takes log-mel `input_features`, not `input_values`.")
        features = input_features.to(dtype)
        full = whisper_full_length(encoder.config)
        if features.shape[-1] > full:
            raise ValueError(f"Whisper segments hold at most {full} mel frames (30 s), got {features.shape[-1]}.")
        if attention_mask is None:
            attention_mask = torch.ones(features.shape[0], features.shape[-1], dtype=torch.long, device=features.device)
        if whisper_mode == "exact":
            if features.shape[-1] != full:
                raise ValueError(
                    f"Whisper's exact mode takes segments padded to {full} mel frames (30 s), got "
                    f"{features.shape[-1]}. "
                    "Use the processor with audio_mode='exact', or set the model's config.audio_mode='fast'."
                )
            hidden = encoder(input_features=features).last_hidden_state
        else:
            hidden = whisper_reduced_context(encoder, features, attention_mask)
    else:
        inputs = input_values if input_values is not None else input_features
        if inputs is None:
            raise ValueError("The audio encoder needs `input_values` (waveforms) or `input_features`.")
        key = "input_values" if input_values is not None else "input_features"
        hidden = _encode_waveforms(encoder, key, inputs.to(dtype), attention_mask)
    frame_mask = None if attention_mask is None else audio_frame_mask(encoder, attention_mask, hidden.shape[1])
    return masked_mean(hidden.float(), frame_mask)


def encode_text_batch(encoder: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """One encoder call on a batch of segments' tokens `(N, L)` -> masked mean of the last hidden state `(N, D_text)`.

    The mean is taken in float32 even when the encoder runs in float16/bfloat16: summing hundreds of half-precision
    vectors would lose their low bits (bfloat16 keeps 8 bits of mantissa).
    """
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return masked_mean(hidden.float(), attention_mask)


def real_lengths(mask: torch.Tensor | None, full_length: int, count: int, device) -> torch.Tensor:
    """Real length of each segment `(N,)` from its mask (all of `full_length` when there is no mask)."""
    if mask is None:
        return torch.full((count,), full_length, device=device, dtype=torch.long)
    return mask.long().sum(-1)


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split segment indices into batches of similar real length (sorted, then chunked), longest first.

    Batching segments of similar length means little padding per batch, which is what lets the fast mode crop
    each batch to its own longest segment.
    """
    order = torch.argsort(lengths, descending=True, stable=True)
    return list(order.split(batch_size))
