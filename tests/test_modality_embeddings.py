"""`HilbertConfig.modality_embeddings`: whether z_a and z_t pool the cross-attended streams (default) or each
modality's own stream before the cross-modal attention ("own_stream"), the joint being cross-attended in both."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertForSequenceClassification


def _pair(seed: int):
    """The same weights under both settings (tiny configs are ungated, so the cross-attention is active)."""
    torch.manual_seed(seed)
    crossed = HilbertForSequenceClassification(hilbert_config()).eval()
    own = HilbertForSequenceClassification(hilbert_config(modality_embeddings="own_stream")).eval()
    own.load_state_dict(crossed.state_dict())
    return crossed, own


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000))
def test_own_stream_embeddings_pool_the_streams_before_the_cross_attention(seed):
    crossed, own = _pair(seed)
    inputs = feature_inputs(own.config, batch=3, segments=5, seed=seed)
    a = crossed.hilbert(**inputs, output_hidden_states=True)
    b = own.hilbert(**inputs, output_hidden_states=True)
    for modality in ("audio", "text"):
        states = getattr(b, f"{modality}_hidden_states")  # (projected stream, after layer 1, after layer 2)
        mask = getattr(b, f"{modality}_segment_mask")
        pooling = getattr(own.hilbert, f"{modality}_pooling")
        torch.testing.assert_close(getattr(b, f"{modality}_embeds"), pooling(states[0], mask)[0])
        torch.testing.assert_close(getattr(a, f"{modality}_embeds"), pooling(states[-1], mask)[0])
        assert not torch.allclose(getattr(a, f"{modality}_embeds"), getattr(b, f"{modality}_embeds"), atol=1e-4)
    torch.testing.assert_close(a.joint_embeds, b.joint_embeds)  # the joint is the cross-attended one in both


def test_own_stream_audio_embedding_does_not_depend_on_the_transcript():
    crossed, own = _pair(0)
    inputs = feature_inputs(own.config, batch=2, seed=4)
    other = {**inputs, "text_segment_embeds": torch.randn_like(inputs["text_segment_embeds"])}
    torch.testing.assert_close(own.hilbert(**inputs).audio_embeds, own.hilbert(**other).audio_embeds)
    assert not torch.allclose(own.hilbert(**inputs).joint_embeds, own.hilbert(**other).joint_embeds)
    assert not torch.allclose(crossed.hilbert(**inputs).audio_embeds, crossed.hilbert(**other).audio_embeds)


def test_the_setting_is_validated_and_saved(tmp_path):
    with pytest.raises(ValueError, match="modality_embeddings must be one of"):
        hilbert_config(modality_embeddings="both")
    _, own = _pair(1)
    own.save_pretrained(tmp_path / "m")
    again = HilbertForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    assert again.config.modality_embeddings == "own_stream"
    inputs = feature_inputs(own.config, batch=2, seed=2)
    torch.testing.assert_close(again(**inputs).logits, own(**inputs).logits)
