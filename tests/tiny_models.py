"""Tiny encoders and HILBERT configs built from configs (no downloads), shared by the tests."""

from __future__ import annotations

import torch
from transformers import BertConfig, HubertConfig, RobertaConfig, T5Config, Wav2Vec2Config, WhisperConfig

from modeling_hilbert import HilbertConfig

N_MELS = 16
WHISPER_FULL = 100  # 2 * max_source_positions: the tiny Whisper's "30 s"
VOCAB = 100


def whisper_config() -> WhisperConfig:
    return WhisperConfig(
        d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=N_MELS,
        max_source_positions=WHISPER_FULL // 2, decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=32,
        vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        max_target_positions=16,
    )


def _wav2vec_like(cls):
    return cls(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
        vocab_size=VOCAB, mask_time_prob=0.0,
    )


def hubert_config() -> HubertConfig:
    return _wav2vec_like(HubertConfig)


def wav2vec2_config() -> Wav2Vec2Config:
    return _wav2vec_like(Wav2Vec2Config)


def bert_config() -> BertConfig:
    return BertConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48, vocab_size=VOCAB, max_position_embeddings=64)


def roberta_config() -> RobertaConfig:
    return RobertaConfig(hidden_size=24, num_hidden_layers=1, num_attention_heads=2, intermediate_size=48, vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=1)


def t5_config() -> T5Config:
    return T5Config(d_model=24, d_kv=12, d_ff=48, num_layers=1, num_decoder_layers=1, num_heads=2, vocab_size=VOCAB)


AUDIO_CONFIGS = {"whisper": whisper_config, "hubert": hubert_config, "wav2vec2": wav2vec2_config}
TEXT_CONFIGS = {"bert": bert_config, "roberta": roberta_config, "t5": t5_config}


def hilbert_config(audio="whisper", text="bert", **overrides) -> HilbertConfig:
    """A small HILBERT config (dropout off so that outputs are deterministic)."""
    kwargs = dict(
        audio_config=AUDIO_CONFIGS[audio](), text_config=TEXT_CONFIGS[text](), hidden_size=16, num_attention_heads=2,
        num_cross_attention_layers=2, intermediate_size=32, pooling_heads=2, pooling_hidden_size=8, projection_dim=8,
        num_experts=3, expert_hidden_size=16, num_labels=3, dropout=0.0, encoder_batch_size=4,
    )
    kwargs.update(overrides)
    return HilbertConfig(**kwargs)


def raw_inputs(config: HilbertConfig, batch=3, segments=4, frames=WHISPER_FULL, samples=800, tokens=7, seed=0) -> dict:
    """Random raw encoder inputs with some padded frames/tokens and one padded segment per modality."""
    g = torch.Generator().manual_seed(seed)
    inputs = {}
    if config.audio_config.model_type == "whisper":
        inputs["input_features"] = torch.randn(batch, segments, N_MELS, frames, generator=g)
        mask = torch.ones(batch, segments, frames, dtype=torch.long)
        mask[0, 1, frames // 2 :] = 0  # a short segment
    else:
        inputs["input_values"] = torch.randn(batch, segments, samples, generator=g)
        mask = torch.ones(batch, segments, samples, dtype=torch.long)
        mask[0, 1, samples // 2 :] = 0
    if batch > 1:
        mask[1, segments - 1] = 0  # document 1 has one segment fewer
    inputs["audio_attention_mask"] = mask
    inputs["input_ids"] = torch.randint(3, VOCAB, (batch, segments, tokens), generator=g)
    tmask = torch.ones(batch, segments, tokens, dtype=torch.long)
    if batch > 2:
        tmask[2, 0, 4:] = 0  # a short text segment
    if batch > 1:
        tmask[1, segments - 1] = 0
    inputs["attention_mask"] = tmask
    inputs["segment_times"] = torch.cumsum(torch.rand(batch, segments, 2, generator=g) * 3, dim=1)
    return inputs


def feature_inputs(config: HilbertConfig, batch=4, segments=5, seed=0, dtype=torch.float32) -> dict:
    """Random precomputed segment features with masks."""
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    g = torch.Generator().manual_seed(seed)
    audio_mask = torch.ones(batch, segments, dtype=torch.bool)
    audio_mask[0, -2:] = False
    text_mask = audio_mask.clone()
    if batch > 1:
        text_mask[1, 0] = False  # a segment without text
    return {
        "audio_segment_embeds": torch.randn(batch, segments, encoder_hidden_size(config.audio_config), generator=g, dtype=dtype),
        "text_segment_embeds": torch.randn(batch, segments, encoder_hidden_size(config.text_config), generator=g, dtype=dtype),
        "audio_segment_mask": audio_mask,
        "text_segment_mask": text_mask,
        "segment_times": torch.cumsum(torch.rand(batch, segments, 2, generator=g, dtype=dtype) * 3, dim=1),
    }
