"""The small-data switches of HilbertConfig: mean-initialised attentive pooling, segment dropout and gated
cross-attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertConfig, HilbertForSequenceClassification, HilbertModel
from modeling_hilbert.attention_hilbert import CrossAttentionBlock
from modeling_hilbert.modeling_hilbert import segment_dropout_mask


def numpy_masked_mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    out = np.zeros((hidden.shape[0], hidden.shape[2]))
    for b in range(hidden.shape[0]):
        if mask[b].any():
            out[b] = hidden[b][mask[b]].mean(0)
    return out


def test_mean_init_makes_every_pooling_the_masked_mean_at_the_start(tmp_path):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(with_encoders=False, pooling_mean_init=True)).eval()
    inputs = feature_inputs(model.config)
    out = model(**inputs)
    for name, mask in (("audio", inputs["audio_segment_mask"]), ("text", inputs["text_segment_mask"])):
        weights = getattr(out, f"{name}_pooling_weights").detach().numpy()  # (B, r, S)
        expected = mask.numpy()[:, None, :] / mask.numpy().sum(-1)[:, None, None]
        np.testing.assert_allclose(weights, np.broadcast_to(expected, weights.shape), atol=1e-7)
    # the pooled vector is W_o applied to r copies of the masked mean of the pooling's input states
    pooling = model.hilbert.audio_pooling
    states = torch.randn(3, 6, model.config.hidden_size)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 0]], dtype=torch.bool)
    pooled, _ = pooling(states, mask)
    mean = numpy_masked_mean(states.numpy(), mask.numpy())
    w, b = pooling.output.weight.detach().numpy(), pooling.output.bias.detach().numpy()
    np.testing.assert_allclose(pooled.detach().numpy(), np.tile(mean, (1, pooling.num_heads)) @ w.T + b, atol=1e-5)
    # the default keeps the random scorer (non-uniform weights), and a saved model loads its trained scorer back
    default = HilbertModel(hilbert_config(with_encoders=False)).eval()
    assert default.audio_pooling.score_heads.weight.abs().sum() > 0
    with torch.no_grad():
        model.hilbert.audio_pooling.score_heads.weight.fill_(0.5)
    model.save_pretrained(tmp_path / "m")
    loaded = HilbertForSequenceClassification.from_pretrained(tmp_path / "m")
    torch.testing.assert_close(
        loaded.hilbert.audio_pooling.score_heads.weight,
        torch.full_like(loaded.hilbert.audio_pooling.score_heads.weight, 0.5),
    )


@settings(max_examples=40, deadline=None)
@given(p=st.floats(0.0, 0.99), seed=st.integers(0, 2**16), batch=st.integers(1, 4), segments=st.integers(1, 7))
def test_segment_dropout_mask_keeps_a_real_segment_and_only_real_ones(p, seed, batch, segments):
    g = torch.Generator().manual_seed(seed)
    audio = torch.rand(batch, segments, generator=g) < 0.7
    text = torch.rand(batch, segments, generator=g) < 0.7
    torch.manual_seed(seed)
    keep = segment_dropout_mask(audio, text, p)
    torch.manual_seed(seed)
    draws = torch.rand(batch, segments) >= p  # the same draw, to check the rule independently
    real = (audio | text).numpy()
    for b in range(batch):
        kept = real[b] & keep[b].numpy()
        if real[b].any():
            assert kept.any(), "a document lost every segment"
            if not (real[b] & draws[b].numpy()).any():  # all dropped by the draw: its first real segment stays
                first = int(np.flatnonzero(real[b])[0])
                assert np.flatnonzero(kept).tolist() == [first]
            else:
                np.testing.assert_array_equal(kept, real[b] & draws[b].numpy())


def test_segment_dropout_acts_in_training_only_and_equals_dropping_those_segments():
    torch.manual_seed(0)
    config = hilbert_config(with_encoders=False, segment_dropout=0.5)
    model = HilbertModel(config)
    inputs = feature_inputs(config, batch=4, segments=6)
    model.eval()
    first, second = model(**inputs), model(**inputs)
    torch.testing.assert_close(first.joint_embeds, second.joint_embeds)  # eval: no dropping
    model.train()  # every other dropout is 0 in this config: only the segments are random
    torch.manual_seed(7)
    trained = model(**inputs)
    torch.manual_seed(7)
    keep = segment_dropout_mask(inputs["audio_segment_mask"], inputs["text_segment_mask"], 0.5)
    assert not keep.all()
    model.eval()
    dropped = dict(
        inputs,
        audio_segment_mask=inputs["audio_segment_mask"] & keep,
        text_segment_mask=inputs["text_segment_mask"] & keep,
    )
    reference = model(**dropped)
    for name in ("audio_embeds", "text_embeds", "joint_embeds"):
        torch.testing.assert_close(getattr(trained, name), getattr(reference, name))


def test_segment_dropout_must_be_a_probability():
    with pytest.raises(ValueError, match="segment_dropout"):
        hilbert_config(segment_dropout=1.0)


@pytest.fixture(scope="module")
def features_data(tmp_path_factory):
    from synthetic import make_features_dataset, save_tiny_encoders
    from test_training import experiment_data

    encoders = save_tiny_encoders(tmp_path_factory.mktemp("encoders"))
    return experiment_data(make_features_dataset(tmp_path_factory.mktemp("features") / "features", *encoders))


def test_two_stage_schedule_trains_only_the_alignment_terms_first(features_data, tmp_path):
    """Stage 1 keeps labels out of the loss: after it the classifier is exactly its initialisation (AdamW skips
    parameters without gradient), the alignment layers have moved; in stage 2 the classifier learns."""
    from test_training import HEAD, settings
    from transformers import set_seed

    from hilbert_app.training.experiment import build_head_config, train_run

    switches = {"alignment_warmup_epochs": 1.0, "moe_balance_weight": 0.0}
    train = np.arange(len(features_data.dataset))
    run = settings(num_train_epochs=1, warmup_steps=0)
    set_seed(0)
    initial = HilbertForSequenceClassification(build_head_config(features_data, HEAD, switches, train, run))
    after = {}
    for epochs in (1, 2):
        trainer, _ = train_run(
            features_data,
            HEAD,
            switches,
            train,
            None,
            0,
            tmp_path / f"e{epochs}",
            settings(num_train_epochs=epochs, warmup_steps=0),
        )
        after[epochs] = trainer.model
    for name, value in initial.classifier.state_dict().items():
        torch.testing.assert_close(after[1].classifier.state_dict()[name], value, msg=name)
    moved = [n for n, v in initial.hilbert.state_dict().items() if not torch.equal(after[1].hilbert.state_dict()[n], v)]
    assert "joint_contrastive_projection.weight" in moved
    changed = [
        n for n, v in initial.classifier.state_dict().items() if not torch.equal(after[2].classifier.state_dict()[n], v)
    ]
    assert changed, "the classifier never trained in stage 2"
    logs = trainer.state.log_history
    assert not any("classification_loss" in e for e in logs if e.get("epoch", 0) <= 1.0 and "loss" in e)
    assert any("classification_loss" in e for e in logs if e.get("epoch", 0) > 1.0 and "loss" in e)


# ------------------------------------------------------------------------------ gated cross-attention
def numpy_gated_block(block: CrossAttentionBlock, x: np.ndarray, context: np.ndarray) -> np.ndarray:
    """x + tanh(g_attn) Attn(LN(x), LN(c)), then + tanh(g_ffn) FFN(LN(.)), in numpy (one document, real keys)."""
    from test_modules import lin, np_gelu, np_layer_norm, np_mha

    attended = np_mha(block.attention, np_layer_norm(x, block.query_norm), np_layer_norm(context, block.context_norm))
    x = x + np.tanh(float(block.attention_gate.detach())) * attended
    hidden = np_gelu(lin(np_layer_norm(x, block.ffn_norm), block.ffn[0]))
    return x + np.tanh(float(block.ffn_gate.detach())) * lin(hidden, block.ffn[3])


def test_gated_cross_attention_block_is_the_identity_at_init_then_the_gated_formula():
    torch.manual_seed(3)
    block = CrossAttentionBlock(8, 2, 12, dropout=0.0, attention_dropout=0.0, gated=True).double().eval()
    x, context = torch.randn(2, 3, 8, dtype=torch.float64), torch.randn(2, 5, 8, dtype=torch.float64)
    mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    torch.testing.assert_close(block(x, context, mask), x, rtol=0, atol=0)  # gates 0: the unimodal stream
    with torch.no_grad():
        block.attention_gate.fill_(0.7)
        block.ffn_gate.fill_(-0.4)
    out = block(x, context, mask).detach().numpy()
    np.testing.assert_allclose(out[0], numpy_gated_block(block, x[0].numpy(), context[0].numpy()), atol=1e-12)
    np.testing.assert_allclose(out[1], numpy_gated_block(block, x[1].numpy(), context[1, :2].numpy()), atol=1e-12)


def test_gated_model_starts_from_the_unimodal_streams_and_its_gates_learn(tmp_path):
    """With cross_attention_gate, HILBERT's pooled audio/text embeddings at init are those of the same weights
    without any cross-attention layer (the late-fusion head); the gates get a gradient from the task loss at the
    first step (the attention weights do not yet: they are multiplied by tanh(0) = 0); a saved model reloads its
    learnt gates, and a new one starts them at 0."""
    torch.manual_seed(0)
    config = hilbert_config(with_encoders=False, cross_attention_gate=True)
    model = HilbertForSequenceClassification(config).eval()
    gates = [p for n, p in model.named_parameters() if n.endswith("_gate")]
    assert len(gates) == 2 * 2 * config.num_cross_attention_layers and all(float(g) == 0.0 for g in gates)
    inputs = feature_inputs(config)
    out = model(**inputs)
    without = HilbertForSequenceClassification(hilbert_config(with_encoders=False, num_cross_attention_layers=0))
    without.load_state_dict(model.state_dict(), strict=False)  # the same projections, poolings and classifier
    reference = without.eval()(**inputs)
    for name in ("audio_embeds", "text_embeds", "joint_embeds"):
        torch.testing.assert_close(getattr(out, name), getattr(reference, name), rtol=0, atol=0, msg=name)
    model.train()
    model(**inputs, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    assert all(g.grad is not None and float(g.grad.abs()) > 0 for g in gates)
    block = model.hilbert.cross_attention[0].audio_from_text
    assert float(block.attention.query.weight.grad.abs().max()) == 0.0
    with torch.no_grad():
        for i, gate in enumerate(gates):
            gate.fill_(0.1 * (i + 1))
    model.save_pretrained(tmp_path / "m")
    loaded = HilbertForSequenceClassification.from_pretrained(tmp_path / "m")
    loaded_gates = [p for n, p in loaded.named_parameters() if n.endswith("_gate")]
    assert [round(float(g), 6) for g in loaded_gates] == [round(0.1 * (i + 1), 6) for i in range(len(gates))]
    # ungated: no gate parameters, the block adds its branches in full
    ungated = HilbertModel(hilbert_config(with_encoders=False, cross_attention_gate=False))
    assert not [n for n, _ in ungated.named_parameters() if "gate" in n]


def test_a_checkpoint_saved_before_the_gate_loads_ungated_with_its_outputs(tmp_path):
    """Regression: `cross_attention_gate` defaults to True now; a config.json saved without the key (an earlier
    version's checkpoint, plain residual blocks) must load ungated, with every weight used and the same outputs,
    instead of gaining zero gates that would switch its cross-attention off."""
    import json

    torch.manual_seed(1)
    old = HilbertForSequenceClassification(hilbert_config(with_encoders=False, cross_attention_gate=False)).eval()
    old.save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    saved = json.loads(path.read_text())
    del saved["cross_attention_gate"]
    path.write_text(json.dumps(saved))
    loaded, info = HilbertForSequenceClassification.from_pretrained(tmp_path / "old", output_loading_info=True)
    assert loaded.config.cross_attention_gate is False
    assert not info["missing_keys"] and not info["unexpected_keys"]
    inputs = feature_inputs(old.config)
    torch.testing.assert_close(loaded.eval()(**inputs).logits, old(**inputs).logits, rtol=0, atol=0)
    # a new config (not a saved one) gets today's default (the tiny-model helper pins False, so build one directly)
    assert HilbertConfig().cross_attention_gate is True
    assert HilbertConfig.from_dict(HilbertConfig().to_dict()).cross_attention_gate is True
