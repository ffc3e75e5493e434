"""The unimodal classification losses (`HilbertConfig.unimodal_loss_weight`): a linear classifier on z_a and on z_t
trained beside the fused one. Checked against an independent computation with torch's cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertForSequenceClassification


def weighted_cross_entropy(logits, labels, weights):
    """Mean cross-entropy over the labelled rows, weighted by class (torch's definition: sum w_y l / sum w_y)."""
    keep = labels >= 0
    if not keep.any():
        return torch.zeros(())
    return F.cross_entropy(logits[keep].double(), labels[keep], weight=weights.double(), reduction="mean")


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 1000), weight=st.floats(0.1, 3.0), no_audio=st.integers(0, 3))
def test_the_unimodal_loss_is_the_mean_of_each_streams_weighted_cross_entropy(seed, weight, no_audio):
    torch.manual_seed(seed)
    class_weights = [0.5, 1.0, 2.0]
    config = hilbert_config(unimodal_loss_weight=weight)
    config.tasks[0]["class_weights"] = class_weights
    model = HilbertForSequenceClassification(config).eval()
    inputs = feature_inputs(model.config, batch=4, segments=5, seed=seed)
    inputs["audio_segment_mask"][no_audio] = False  # a document without audio: out of the audio term only
    labels = torch.tensor([0, 1, 2, -100])[torch.randperm(4, generator=torch.Generator().manual_seed(seed))]
    out = model(**inputs, labels=labels)

    w = torch.tensor(class_weights)
    with torch.no_grad():
        audio_labels = labels.clone()
        audio_labels[no_audio] = -100
        expected_audio = weighted_cross_entropy(
            model.unimodal_classifiers["audio"]["label"](out.audio_embeds), audio_labels, w
        )
        expected_text = weighted_cross_entropy(model.unimodal_classifiers["text"]["label"](out.text_embeds), labels, w)
    expected = (expected_audio + expected_text) / 2
    assert float(out.unimodal_loss.detach()) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)
    # the total is the same model's loss without the term, plus lambda_uni times it
    others = out.classification_loss + out.contrastive_loss + 0.5 * out.cka_loss + 0.1 * out.mi_loss
    others = others + 0.01 * out.moe_balance_loss
    assert float(out.loss.detach()) == pytest.approx(float((others + weight * out.unimodal_loss).detach()), rel=1e-5)


def test_the_unimodal_classifiers_train_the_streams_but_never_change_a_prediction():
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(unimodal_loss_weight=1.0))
    plain = HilbertForSequenceClassification(hilbert_config())
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith("unimodal_classifiers.") for k in unexpected)
    inputs = feature_inputs(model.config, batch=4, seed=3)
    model.eval(), plain.eval()
    torch.testing.assert_close(model(**inputs).logits, plain(**inputs).logits)

    # the term's gradient reaches the audio stream's pooling (it is what makes that stream carry the label)
    model.train()
    model.zero_grad()
    out = model(**inputs, labels=torch.tensor([0, 1, 2, 0]))
    out.unimodal_loss.backward()
    pooling = [p.grad for n, p in model.named_parameters() if n.startswith("hilbert.audio_pooling")]
    assert pooling and any(g is not None and g.abs().sum() > 0 for g in pooling)
    assert all(p.grad is None or not p.grad.any() for p in model.classifier.parameters())  # the fused head: untouched


def test_off_by_default_and_for_unimodal_models():
    assert not hasattr(HilbertForSequenceClassification(hilbert_config()), "unimodal_classifiers")
    audio_only = HilbertForSequenceClassification(hilbert_config(modalities="audio", unimodal_loss_weight=1.0))
    assert not hasattr(audio_only, "unimodal_classifiers")
    out = audio_only(**feature_inputs(audio_only.config, batch=2), labels=torch.tensor([0, 1]))
    assert out.unimodal_loss is None


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1"])
def test_a_bad_weight_is_refused(bad):
    with pytest.raises(ValueError, match="unimodal_loss_weight must be a finite number"):
        hilbert_config(unimodal_loss_weight=bad)


def test_the_saved_model_reloads_with_its_unimodal_classifiers(tmp_path):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(unimodal_loss_weight=0.5)).eval()
    model.save_pretrained(tmp_path / "m")
    again = HilbertForSequenceClassification.from_pretrained(tmp_path / "m").eval()
    inputs = feature_inputs(model.config, batch=3, seed=1)
    labels = torch.tensor([0, 2, 1])
    a, b = model(**inputs, labels=labels), again(**inputs, labels=labels)
    np.testing.assert_allclose(float(a.unimodal_loss), float(b.unimodal_loss), rtol=1e-6)
