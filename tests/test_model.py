"""HilbertModel / HilbertForSequenceClassification: paths, masks, frozen encoders, ablations, composite loss."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_models import AUDIO_CONFIGS, N_MELS, TEXT_CONFIGS, WHISPER_FULL, feature_inputs, hilbert_config, raw_inputs
from torch.nn import functional as F

from modeling_hilbert import HilbertForSequenceClassification, HilbertModel
from modeling_hilbert.losses_hilbert import cka_loss, symmetric_info_nce


def build(config, cls=HilbertForSequenceClassification, seed=0):
    torch.manual_seed(seed)
    return cls(config).eval()


def assert_close(a, b, atol=1e-5):
    assert torch.allclose(a, b, atol=atol, rtol=0), (a - b).abs().max()


# ------------------------------------------------------------------------------------ raw vs precomputed
@pytest.mark.parametrize("audio", list(AUDIO_CONFIGS))
@pytest.mark.parametrize("text", list(TEXT_CONFIGS))
def test_raw_path_equals_precomputed_features_path(audio, text):
    config = hilbert_config(audio, text)
    model = build(config)
    inputs = raw_inputs(config)
    with torch.no_grad():
        raw_out = model(**inputs)
        audio_feats, audio_mask = model.hilbert.get_audio_segment_features(
            inputs.get("input_features"), inputs.get("input_values"), inputs["audio_attention_mask"]
        )
        text_feats, text_mask = model.hilbert.get_text_segment_features(inputs["input_ids"], inputs["attention_mask"])
        feat_out = model(
            audio_segment_embeds=audio_feats,
            audio_segment_mask=audio_mask,
            text_segment_embeds=text_feats,
            text_segment_mask=text_mask,
            segment_times=inputs["segment_times"],
        )
    # the padded segment (document 1, last) is detected from its all-zero frame/token mask
    assert not audio_mask[1, -1] and not text_mask[1, -1] and audio_mask.sum() == audio_mask.numel() - 1
    assert_close(raw_out.task_logits["label"], feat_out.task_logits["label"], atol=0)
    for key in ("audio_embeds", "text_embeds", "joint_embeds"):
        assert_close(raw_out[key], feat_out[key], atol=0)


def test_segment_features_are_masked_means_of_the_encoder_output():
    """Independent check of the pooling of frames/tokens: run the encoders by hand, average the real positions."""
    config = hilbert_config("hubert", "bert")
    model = build(config, HilbertModel)
    inputs = raw_inputs(config, batch=2, segments=2)
    feats, _ = model.get_audio_segment_features(None, inputs["input_values"], inputs["audio_attention_mask"])
    text_feats, _ = model.get_text_segment_features(inputs["input_ids"], inputs["attention_mask"])
    with torch.no_grad():
        # segment 1 has 400 real samples of 800: run it alone, unpadded
        alone = model.audio_encoder(input_values=inputs["input_values"][0, 1:2, :400]).last_hidden_state
        ids, mask = inputs["input_ids"][0, 0], inputs["attention_mask"][0, 0]
        hidden = model.text_encoder(input_ids=ids[None], attention_mask=mask[None]).last_hidden_state[0]
    assert_close(feats[0, 1], alone[0].mean(0), atol=1e-5)
    assert_close(text_feats[0, 0], hidden[mask.bool()].mean(0), atol=1e-6)


# ---------------------------------------------------------------------------------------------- masks
def test_padded_segments_never_change_the_output_raw_path():
    config = hilbert_config()
    model = build(config)
    inputs = raw_inputs(config, batch=2, segments=3)
    inputs["audio_attention_mask"][1, -1] = 1  # make every segment real
    inputs["attention_mask"][1, -1] = 1
    with torch.no_grad():
        reference = model(**inputs)
        padded = {k: v.clone() for k, v in inputs.items()}
        # append two padded segments full of garbage: their frame/token masks are zero
        for key, extra in (
            ("input_features", torch.randn(2, 2, N_MELS, WHISPER_FULL) * 1e3),
            ("input_ids", torch.randint(3, 100, (2, 2, 7))),
            ("segment_times", torch.rand(2, 2, 2) * 1e4),
        ):
            padded[key] = torch.cat([inputs[key], extra], dim=1)
        for key, shape in (("audio_attention_mask", (2, 2, WHISPER_FULL)), ("attention_mask", (2, 2, 7))):
            padded[key] = torch.cat([inputs[key], torch.zeros(shape, dtype=torch.long)], dim=1)
        out = model(**padded)
    assert_close(out.task_logits["label"], reference.task_logits["label"])
    assert_close(out.joint_embeds, reference.joint_embeds)
    assert torch.all(out.joint_pooling_weights[:, :, -2:] == 0)


def test_padded_segments_never_change_the_output_feature_path_even_nan():
    config = hilbert_config()
    model = build(config)
    feats = feature_inputs(config, batch=3, segments=4)
    for key in ("audio_segment_mask", "text_segment_mask"):
        feats[key] = torch.ones(3, 4, dtype=torch.bool)
    with torch.no_grad():
        reference = model(**feats)
        padded = dict(feats)
        padded["audio_segment_embeds"] = torch.cat(
            [feats["audio_segment_embeds"], torch.full((3, 3, 32), float("nan"))], 1
        )
        padded["text_segment_embeds"] = torch.cat([feats["text_segment_embeds"], torch.full((3, 3, 24), 1e30)], 1)
        padded["segment_times"] = torch.cat([feats["segment_times"], torch.full((3, 3, 2), float("inf"))], 1)
        for key in ("audio_segment_mask", "text_segment_mask"):
            padded[key] = torch.cat([feats[key], torch.zeros(3, 3, dtype=torch.bool)], 1)
        out = model(**padded)
    assert torch.isfinite(out.task_logits["label"]).all()
    assert_close(out.task_logits["label"], reference.task_logits["label"])


def test_omitted_masks_mean_every_segment_is_real():
    config = hilbert_config()
    model = build(config)
    feats = feature_inputs(config)
    with torch.no_grad():
        implicit = model(
            audio_segment_embeds=feats["audio_segment_embeds"], text_segment_embeds=feats["text_segment_embeds"]
        )
        explicit = model(
            audio_segment_embeds=feats["audio_segment_embeds"],
            text_segment_embeds=feats["text_segment_embeds"],
            audio_segment_mask=torch.ones(4, 5, dtype=torch.bool),
            text_segment_mask=torch.ones(4, 5, dtype=torch.bool),
            segment_times=torch.stack([torch.arange(5.0), torch.arange(5.0) + 1], -1).expand(4, 5, 2),
        )
    assert_close(implicit.task_logits["label"], explicit.task_logits["label"], atol=0)


def test_whisper_fast_mode_features_do_not_depend_on_batch_companions():
    """Fast mode crops to real frames; a short segment batched with a long one equals the short one alone."""
    config = hilbert_config(audio_mode="fast")
    model = build(config, HilbertModel)
    g = torch.Generator().manual_seed(1)
    short, long = torch.randn(N_MELS, 37, generator=g), torch.randn(N_MELS, 80, generator=g)
    batch = torch.zeros(1, 2, N_MELS, 80)
    batch[0, 0, :, :37], batch[0, 1] = short, long
    mask = torch.zeros(1, 2, 80, dtype=torch.long)
    mask[0, 0, :37], mask[0, 1] = 1, 1
    batch[0, 0, :, 37:] = 5.0  # padding content must not matter
    together, _ = model.get_audio_segment_features(batch, None, mask)
    alone, _ = model.get_audio_segment_features(short[None, None], None, torch.ones(1, 1, 37, dtype=torch.long))
    assert_close(together[0, 0], alone[0, 0], atol=1e-5)


def test_whisper_fast_mode_is_explicit_even_when_a_segment_fills_the_window():
    """Regression: the mode used to be guessed from T == 3000, so a fast batch whose longest segment filled the
    window ran exact mode and its short segments' features changed with their batch mates."""
    model = build(hilbert_config(audio_mode="fast"), HilbertModel)
    g = torch.Generator().manual_seed(2)
    short, full = torch.randn(N_MELS, 30, generator=g), torch.randn(N_MELS, WHISPER_FULL, generator=g)
    batch = torch.zeros(1, 2, N_MELS, WHISPER_FULL)
    batch[0, 0, :, :30], batch[0, 1] = short, full
    mask = torch.zeros(1, 2, WHISPER_FULL, dtype=torch.long)
    mask[0, 0, :30], mask[0, 1] = 1, 1
    together, _ = model.get_audio_segment_features(batch, None, mask)
    alone, _ = model.get_audio_segment_features(short[None, None], None, torch.ones(1, 1, 30, dtype=torch.long))
    assert_close(together[0, 0], alone[0, 0], atol=1e-5)
    # the exact mode refuses cropped inputs instead of guessing
    with pytest.raises(ValueError, match="exact mode takes segments padded to 100"):
        build(hilbert_config(), HilbertModel).get_audio_segment_features(short[None, None], None, torch.ones(1, 1, 30))


def test_whisper_exact_mode_pools_only_frames_covering_real_audio():
    config = hilbert_config()
    model = build(config, HilbertModel)
    features = torch.randn(1, 1, N_MELS, WHISPER_FULL)
    mask = torch.zeros(1, 1, WHISPER_FULL, dtype=torch.long)
    mask[..., :41] = 1  # 41 mel frames -> ceil(41 / 2) = 21 output frames
    pooled, _ = model.get_audio_segment_features(features, None, mask)
    with torch.no_grad():
        hidden = model.audio_encoder(input_features=features[0]).last_hidden_state[0]
    assert_close(pooled[0, 0], hidden[:21].mean(0), atol=1e-6)


def test_text_token_padding_does_not_change_segment_features():
    config = hilbert_config("whisper", "roberta")
    model = build(config, HilbertModel)
    ids = torch.randint(3, 100, (1, 1, 5))
    padded_ids = torch.cat([ids, torch.ones(1, 1, 6, dtype=torch.long)], -1)
    mask = torch.cat([torch.ones(1, 1, 5), torch.zeros(1, 1, 6)], -1).long()
    a, _ = model.get_text_segment_features(ids, torch.ones(1, 1, 5, dtype=torch.long))
    b, _ = model.get_text_segment_features(padded_ids, mask)
    assert_close(a, b, atol=1e-6)


def test_document_without_any_text_gives_finite_output():
    config = hilbert_config()
    model = build(config)
    feats = feature_inputs(config, batch=2, segments=3)
    feats["text_segment_mask"] = torch.tensor([[True, True, True], [False, False, False]])
    with torch.no_grad():
        out = model(**feats)
    assert torch.isfinite(out.task_logits["label"]).all() and torch.isfinite(out.joint_embeds).all()
    assert torch.all(out.text_pooling_weights[1] == 0)


# ------------------------------------------------------------------------------------ frozen encoders
def test_gradients_reach_only_the_head():
    config = hilbert_config()
    model = build(config).train()
    out = model(**raw_inputs(config), labels=torch.tensor([0, 1, 2]))
    out.loss.backward()
    for name, param in model.named_parameters():
        if "_encoder." in name:
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None, name
    head = [p for n, p in model.named_parameters() if "_encoder." not in n]
    assert sum(bool(p.grad.abs().sum() > 0) for p in head) >= 0.9 * len(head)


def test_encoders_stay_in_eval_mode_when_trained_and_frozen_after_reload(tmp_path):
    config = hilbert_config()
    model = build(config)
    model.train()
    assert model.classifier.training and model.hilbert.audio_projection.training
    assert not model.hilbert.audio_encoder.training and not model.hilbert.text_encoder.training
    model.save_pretrained(tmp_path)
    reloaded = HilbertForSequenceClassification.from_pretrained(tmp_path)
    assert all(not p.requires_grad for p in reloaded.hilbert.audio_encoder.parameters())
    assert all(not p.requires_grad for p in reloaded.hilbert.text_encoder.parameters())
    assert all(p.requires_grad for n, p in reloaded.named_parameters() if "_encoder." not in n)
    reloaded.train()
    assert not reloaded.hilbert.audio_encoder.training


def test_weights_are_saved_as_safetensors_only(tmp_path):
    build(hilbert_config()).save_pretrained(tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert "model.safetensors" in names
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)


# ---------------------------------------------------------------------------------------- composite loss
def test_total_loss_is_the_weighted_sum_of_its_terms_and_terms_match_formulas():
    config = hilbert_config(dual_contrastive_weight=0.7, cka_weight=0.3, mi_weight=0.2, moe_balance_weight=0.05)
    model = build(config)
    feats = feature_inputs(config)
    labels = torch.tensor([0, 1, 2, 1])
    out = model(**feats, labels=labels)
    expected = (
        out.classification_loss
        + 0.7 * out.contrastive_loss
        + 0.3 * out.cka_loss
        + 0.2 * out.mi_loss
        + 0.05 * out.moe_balance_loss
    )
    assert_close(out.loss, expected, atol=1e-6)
    # classification: plain cross-entropy (no class weights in this config)
    assert_close(out.classification_loss, F.cross_entropy(out.task_logits["label"], labels), atol=1e-6)
    # contrastive terms recomputed from the returned embeddings and the model's projection heads
    base = model.hilbert
    scale = base.logit_scale.exp()
    pa, pt, pj = (
        F.normalize(proj(z), dim=-1)
        for proj, z in (
            (base.audio_contrastive_projection, out.audio_embeds),
            (base.text_contrastive_projection, out.text_embeds),
            (base.joint_contrastive_projection, out.joint_embeds),
        )
    )
    aj, tj = symmetric_info_nce(pa, pj, scale), symmetric_info_nce(pt, pj, scale)
    assert_close(out.contrastive_loss, 0.5 * (aj + tj), atol=1e-6)
    assert_close(out.mi_loss, ((math.log(4) - aj) - (math.log(4) - tj)) ** 2, atol=1e-6)
    assert_close(out.cka_loss, cka_loss(out.audio_embeds, out.text_embeds, out.joint_embeds), atol=1e-6)
    assert_close(out.temperature, torch.tensor(config.temperature_init), atol=1e-6)


def projected(model, out):
    """p(z_a), p(z_t), p(z_j) as float64 numpy arrays, from the returned embeddings and the model's own heads."""
    base = model.hilbert
    return [
        F.normalize(proj(z), dim=-1).detach().double().numpy()
        for proj, z in (
            (base.audio_contrastive_projection, out.audio_embeds),
            (base.text_contrastive_projection, out.text_embeds),
            (base.joint_contrastive_projection, out.joint_embeds),
        )
    ]


def test_documents_without_text_are_left_out_of_the_text_terms():
    """Regression: a document without text got the pooling's bias as its text embedding (the same for every such
    document) and entered the text<->joint InfoNCE, CKA and MI terms. Mixed with text-less documents, the complete
    documents must give exactly their own text terms; the audio terms use every document (all have audio)."""
    from test_losses import np_linear_cka, np_sym_info_nce

    config = hilbert_config()
    model = build(config).double()
    feats = feature_inputs(config, batch=6, dtype=torch.float64)
    feats["text_segment_mask"][[1, 4]] = False
    labels = torch.tensor([0, 1, 2, 1, 0, 2])
    out = model(**feats, labels=labels)
    complete = [0, 2, 3, 5]
    alone = model(**{k: v[complete] for k, v in feats.items()}, labels=labels[complete])
    assert (out.audio_documents.item(), out.text_documents.item()) == (6, 4)
    assert (alone.audio_documents.item(), alone.text_documents.item()) == (4, 4)
    # the text estimate is that of the complete documents alone
    assert abs(out.mi_text_joint.item() - alone.mi_text_joint.item()) < 1e-10
    # every term against numpy on the selected rows
    pa, pt, pj = projected(model, out)
    s = model.hilbert.logit_scale.exp().item()
    aj, tj = np_sym_info_nce(pa, pj, s), np_sym_info_nce(pt[complete], pj[complete], s)
    assert abs(out.contrastive_loss.item() - 0.5 * (aj + tj)) < 1e-10
    a, t, j = (x.detach().numpy() for x in (out.audio_embeds, out.text_embeds, out.joint_embeds))
    cka = (1 - np_linear_cka(a, j)) + (1 - np_linear_cka(t[complete], j[complete]))
    assert abs(out.cka_loss.item() - cka) < 1e-10
    mi_a, mi_t = math.log(6) - aj, math.log(4) - tj
    assert abs(out.mi_audio_joint.item() - mi_a) < 1e-10 and abs(out.mi_text_joint.item() - mi_t) < 1e-10
    assert abs(out.mi_loss.item() - (mi_a - mi_t) ** 2) < 1e-10
    # the text-less documents' text embeddings receive no gradient from the representation terms
    text_embeds = out.text_embeds
    grad = torch.autograd.grad(out.contrastive_loss + out.cka_loss + out.mi_loss, text_embeds)[0]
    assert (grad[[1, 4]] == 0).all() and grad[complete].abs().max() > 0
    # audio-less documents likewise, with the direct audio<->text baseline on documents that have both
    direct = build(hilbert_config(contrastive_target="audio_text")).double()
    feats["audio_segment_mask"][[0, 4]] = False
    out = direct(**feats, labels=labels)
    both = [2, 3, 5]
    pa, pt, _ = projected(direct, out)
    s = direct.hilbert.logit_scale.exp().item()
    assert (out.audio_documents.item(), out.text_documents.item()) == (4, 4)
    assert abs(out.contrastive_loss.item() - np_sym_info_nce(pa[both], pt[both], s)) < 1e-10


@pytest.mark.parametrize("missing", ["text", "both"])
def test_batch_where_every_document_misses_a_modality(missing):
    """All documents without text: the text terms and the MI balance are 0 (it used to drag I(audio; joint) to 0
    because I(text; joint) was exactly 0); the audio terms still train. Without anything: all terms 0, finite."""
    config = hilbert_config()
    model = build(config).train()
    feats = feature_inputs(config)
    feats["text_segment_mask"][:] = False
    if missing == "both":
        feats["audio_segment_mask"][:] = False
    out = model(**feats, labels=torch.tensor([0, 1, 2, 1]))
    assert out.text_documents.item() == 0 and out.audio_documents.item() == (4 if missing == "text" else 0)
    assert out.mi_loss.item() == 0.0 and out.mi_text_joint.item() == 0.0
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.hilbert.text_contrastive_projection.weight.grad.abs().max() == 0
    if missing == "text":
        pa, _, pj = projected(model, out)
        from test_losses import np_sym_info_nce

        aj = np_sym_info_nce(pa, pj, model.hilbert.logit_scale.exp().item())
        assert abs(out.contrastive_loss.item() - 0.5 * aj) < 1e-5
        assert abs(out.mi_audio_joint.item() - (math.log(4) - aj)) < 1e-5
        assert model.hilbert.audio_contrastive_projection.weight.grad.abs().max() > 0
    else:
        assert out.contrastive_loss.item() == out.cka_loss.item() == 0.0
        assert model.hilbert.audio_contrastive_projection.weight.grad.abs().max() == 0
        base = build(config, HilbertModel)(**feats, return_loss=True)
        assert base.loss.item() == 0.0
        base.loss.backward()  # a total made only of skipped terms still backpropagates


def test_class_weights_and_focal_gamma_from_the_config_are_used():
    config = hilbert_config(
        tasks=[{"name": "label", "type": "multiclass", "labels": ["a", "b", "c"], "class_weights": [1.0, 2.0, 5.0]}]
    )
    model = build(config)
    feats, labels = feature_inputs(config), torch.tensor([0, 1, 2, 2])
    out = model(**feats, labels=labels)
    assert_close(
        out.classification_loss,
        F.cross_entropy(out.task_logits["label"], labels, weight=torch.tensor([1.0, 2.0, 5.0])),
        atol=1e-6,
    )
    focal = build(hilbert_config(focal_gamma=2.0))(**feats, labels=labels)
    logp = F.log_softmax(focal.task_logits["label"], -1)[torch.arange(4), labels]
    assert_close(focal.classification_loss, -((1 - logp.exp()) ** 2 * logp).mean(), atol=1e-6)


@pytest.mark.parametrize("gamma", [0.25, 0.5])
def test_focal_gamma_below_one_keeps_every_gradient_finite_when_predictions_saturate(gamma):
    """Regression: with focal_gamma=0.5, a saturated prediction (here forced by the tower's bias) and an unlabelled
    document made NaN gradients in every trainable parameter upstream of the classifier in one step."""
    config = hilbert_config(focal_gamma=gamma)
    model = build(config).train()
    with torch.no_grad():
        model.classifier.towers["label"][1].bias.copy_(torch.tensor([120.0, 0.0, 0.0]))
    out = model(**feature_inputs(config), labels=torch.tensor([0, -100, 0, 1]))
    out.loss.backward()
    assert torch.isfinite(out.loss)
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert bad == []
    # the misclassified document (label 1) still gives the classifier a gradient
    assert model.classifier.towers["label"][1].bias.grad.abs().max() > 1e-3


def test_temperature_is_clamped_at_its_minimum():
    config = hilbert_config(temperature_min=0.05)
    model = build(config)
    with torch.no_grad():
        model.hilbert.logit_scale.fill_(math.log(1 / 0.001))
    out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    assert_close(out.temperature, torch.tensor(0.05), atol=1e-6)


def test_logit_scale_pushed_past_its_bound_is_clamped_back_and_still_learns():
    """Regression: the bound was applied only in forward, whose clamp has zero gradient beyond it, so once an
    optimiser step pushed the parameter past log(1/temperature_min) it stayed there forever."""
    config = hilbert_config(temperature_min=0.05)
    model = build(config).train()
    bound = math.log(1 / 0.05)
    scale = model.hilbert.logit_scale
    optimizer = torch.optim.SGD([scale], lr=1.0)
    feats, labels = feature_inputs(config), torch.tensor([0, 1, 2, 1])
    with torch.no_grad():
        scale.fill_(bound - 0.1)
    scale.grad = torch.tensor(-0.5)  # a step that pushes it past the bound
    optimizer.step()
    assert scale.item() > bound
    optimizer.zero_grad()
    model(**feats, labels=labels).loss.backward()
    assert scale.grad.item() == 0.0  # stuck: what the forward clamp alone gives
    model.clamp_logit_scale_()
    assert scale.item() == torch.tensor(bound, dtype=scale.dtype).item()  # exactly the bound (in the parameter's dtype)
    optimizer.zero_grad()
    out = model(**feats, labels=labels)
    out.loss.backward()
    assert_close(out.temperature, torch.tensor(0.05), atol=1e-6)
    # at the bound the gradient passes: it is that of the unclamped loss at s = 1/temperature_min
    assert scale.grad.item() != 0.0
    reference = model.hilbert.logit_scale.detach().clone().requires_grad_(True)
    base = model.hilbert
    pa, pt, pj = (
        F.normalize(proj(z), dim=-1).detach()
        for proj, z in (
            (base.audio_contrastive_projection, out.audio_embeds),
            (base.text_contrastive_projection, out.text_embeds),
            (base.joint_contrastive_projection, out.joint_embeds),
        )
    )
    aj, tj = symmetric_info_nce(pa, pj, reference.exp()), symmetric_info_nce(pt, pj, reference.exp())
    (
        config.dual_contrastive_weight * 0.5 * (aj + tj)
        + config.mi_weight * ((math.log(4) - aj) - (math.log(4) - tj)) ** 2
    ).backward()
    assert abs(scale.grad.item() - reference.grad.item()) < 1e-5
    # and the parameter moves back below the bound (random embeddings: the loss wants a higher temperature)
    assert scale.grad.item() > 0
    optimizer.step()
    model.clamp_logit_scale_()
    assert scale.item() < bound - 1e-3


def test_clamp_logit_scale_leaves_values_inside_the_bound_and_unimodal_models_alone():
    model = build(hilbert_config(temperature_min=0.01))
    before = model.hilbert.logit_scale.item()
    model.clamp_logit_scale_()
    assert model.hilbert.logit_scale.item() == before
    build(hilbert_config(modalities="text")).clamp_logit_scale_()  # no logit scale: nothing to do


def test_multi_task_heterogeneous_label_regimes():
    tasks = [
        {"name": "diagnosis", "type": "multiclass", "labels": ["none", "mild", "severe"]},
        {"name": "risk", "type": "binary", "labels": ["low", "high"], "class_weights": [3.0]},
        {"name": "symptoms", "type": "multilabel", "labels": ["sleep", "mood"]},
    ]
    config = hilbert_config(tasks=tasks)
    model = build(config)
    labels = {
        "diagnosis": torch.tensor([0, 2, 1, -100]),
        "risk": torch.tensor([1, 0, 0, 1]),
        "symptoms": torch.tensor([[1, 0], [0, 0], [1, 1], [0, 1]]),
    }
    out = model(**feature_inputs(config), labels=labels)
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {
        "diagnosis": (4, 3),
        "risk": (4, 1),
        "symptoms": (4, 2),
    }
    assert set(out.gate_weights) == set(labels)
    expected = (
        F.cross_entropy(out.task_logits["diagnosis"][:3], labels["diagnosis"][:3])
        + F.binary_cross_entropy_with_logits(
            out.task_logits["risk"][:, 0], labels["risk"].float(), pos_weight=torch.tensor(3.0)
        )
        + F.binary_cross_entropy_with_logits(out.task_logits["symptoms"], labels["symptoms"].float())
    )
    assert_close(out.classification_loss, expected, atol=1e-6)
    # tasks may be left out of the labels
    partial = model(**feature_inputs(config), labels={"risk": labels["risk"]})
    assert set(partial.task_losses) == {"risk"}
    with pytest.raises(ValueError, match="unknown tasks"):
        model(**feature_inputs(config), labels={"typo": labels["risk"]})
    with pytest.raises(ValueError, match="pass labels as a dict"):
        model(**feature_inputs(config), labels=labels["risk"])


# ---------------------------------------------------------------------------------------------- ablations
def test_contrastive_target_audio_text_aligns_modalities_directly():
    config = hilbert_config(contrastive_target="audio_text")
    model = build(config)
    out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    base = model.hilbert
    pa = F.normalize(base.audio_contrastive_projection(out.audio_embeds), dim=-1)
    pt = F.normalize(base.text_contrastive_projection(out.text_embeds), dim=-1)
    assert_close(out.contrastive_loss, symmetric_info_nce(pa, pt, base.logit_scale.exp()), atol=1e-6)


@pytest.mark.parametrize("weight", ["dual_contrastive_weight", "cka_weight", "mi_weight", "moe_balance_weight"])
def test_zero_loss_weight_removes_the_term_and_its_gradient(weight):
    config = hilbert_config(**{weight: 0.0})
    model = build(config)
    out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    terms = {
        "dual_contrastive_weight": out.contrastive_loss,
        "cka_weight": out.cka_loss,
        "mi_weight": out.mi_loss,
        "moe_balance_weight": out.moe_balance_loss,
    }
    expected = out.classification_loss + sum(getattr(config, k) * v for k, v in terms.items() if k != weight)
    assert_close(out.loss, expected, atol=1e-6)
    assert terms[weight] is not None  # still reported, for ablation tables


def test_zero_contrastive_weight_leaves_the_temperature_untrained():
    config = hilbert_config(dual_contrastive_weight=0.0, mi_weight=0.0)
    model = build(config)
    model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    assert model.hilbert.logit_scale.grad is None or model.hilbert.logit_scale.grad == 0


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_unimodal_baselines(modality):
    config = hilbert_config(modalities=modality)
    model = build(config)
    other = "text" if modality == "audio" else "audio"
    assert not hasattr(model.hilbert, f"{other}_encoder") and not hasattr(model.hilbert, "joint_pooling")
    out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    assert getattr(out, f"{modality}_embeds") is not None and getattr(out, f"{other}_embeds") is None
    assert out.joint_embeds is None
    assert out.contrastive_loss is None and out.cka_loss is None
    assert_close(out.loss, out.classification_loss + config.moe_balance_weight * out.moe_balance_loss, atol=1e-6)
    with pytest.raises(ValueError, match="unimodal"):
        model.get_joint_features(**feature_inputs(config))
    # a unimodal model ignores the other modality's inputs entirely
    feats = feature_inputs(config)
    feats[f"{other}_segment_embeds"] = torch.full_like(feats[f"{other}_segment_embeds"], float("nan"))
    assert torch.isfinite(model(**feats).task_logits["label"]).all()


def test_concat_fusion_has_no_cross_attention_and_differs():
    concat = build(hilbert_config(fusion="concat"))
    assert len(concat.hilbert.cross_attention) == 0
    full = build(hilbert_config())
    assert len(full.hilbert.cross_attention) == 2
    feats = feature_inputs(concat.config)
    with torch.no_grad():
        # the audio stream of the concat model is the projection alone: its pooled embedding ignores the text
        a = concat(**feats).audio_embeds
        feats2 = dict(feats, text_segment_embeds=torch.randn_like(feats["text_segment_embeds"]))
        assert_close(concat(**feats2).audio_embeds, a, atol=0)
        assert not torch.allclose(full(**feats2).audio_embeds, full(**feats).audio_embeds)


def test_mlp_classifier_has_no_gates():
    config = hilbert_config(classifier="mlp")
    out = build(config)(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    assert out.gate_weights is None and out.moe_balance_loss is None
    assert out.task_logits["label"].shape == (4, 3)


def test_concat_sequence_joint_pools_over_both_streams():
    config = hilbert_config(joint_sequence="concat_sequence")
    out = build(config)(**feature_inputs(config, segments=5))
    assert out.joint_pooling_weights.shape == (4, 2, 10)
    # each head's weights sum to one over the real positions of both streams
    assert_close(out.joint_pooling_weights.sum(-1), torch.ones(4, 2), atol=1e-6)


def test_moe_top_k_routes_to_k_experts():
    config = hilbert_config(moe_top_k=1)
    out = build(config)(**feature_inputs(config))
    assert torch.all((out.gate_weights["label"] > 0).sum(-1) == 1)


def test_top_1_gate_learns_from_the_classification_loss():
    """Regression: top-1 routing renormalised its one weight to 1, and the gate's gradient from the task loss was
    rounding noise (2e-13 here, against 1.4e-6 with top-2). Switch-style raw gate probabilities fix it."""
    norms = {}
    for k in (1, 2):
        config = hilbert_config(moe_top_k=k)
        model = build(config)
        out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
        out.classification_loss.backward()
        norms[k] = model.classifier.gates["label"].weight.grad.norm().item()
        if k == 1:  # the routing weight is the selected expert's raw gate probability
            h = torch.cat([out.audio_embeds, out.text_embeds, out.joint_embeds], -1)
            probs = torch.softmax(model.classifier.gates["label"](h), -1)
            assert_close(out.gate_weights["label"].max(-1).values, probs.max(-1).values, atol=1e-7)
    assert norms[1] > 0.1 * norms[2] > 0


@pytest.mark.parametrize("top_k", [1, 2, 3, None])
def test_moe_balance_loss_trains_the_gate_for_every_top_k(top_k):
    """Regression: with moe_top_k = num_experts (3) the balance loss was the constant 1 with no gradient. Its value
    is E sum_e f_e P_e with P the mean gate probability, f the top-k counts (k < E) or P itself (dense)."""
    config = hilbert_config(moe_top_k=top_k)
    model = build(config)
    with torch.no_grad():  # an unbalanced gate (at init every gate is nearly uniform)
        model.classifier.gates["label"].weight.mul_(300.0)
    out = model(**feature_inputs(config), labels=torch.tensor([0, 1, 2, 1]))
    h = torch.cat([out.audio_embeds, out.text_embeds, out.joint_embeds], -1)
    probs = torch.softmax(model.classifier.gates["label"](h), -1).detach()  # (4, 3)
    mean_prob = probs.mean(0)
    if top_k in (None, 3):
        expected = 3 * (mean_prob**2).sum()
    else:
        chosen = probs.argsort(-1, descending=True)[:, :top_k]
        f = torch.stack([(chosen == e).sum() for e in range(3)]).double() / (4 * top_k)
        expected = 3 * (f * mean_prob).sum()
    assert_close(out.moe_balance_loss, expected.float(), atol=1e-6)
    assert (mean_prob - 1 / 3).abs().max() > 0.05
    out.moe_balance_loss.backward()
    assert model.classifier.gates["label"].weight.grad.abs().max() > 1e-3


# ------------------------------------------------------------------------------------- embeddings & errors
def test_embedding_helpers_match_forward():
    config = hilbert_config()
    model = build(config)
    feats = feature_inputs(config)
    with torch.no_grad():
        out = model(**feats)
        assert_close(model.get_audio_features(**feats), out.audio_embeds, atol=0)
        assert_close(model.get_text_features(**feats), out.text_embeds, atol=0)
        assert_close(model.get_joint_features(**feats), out.joint_embeds, atol=0)
        assert_close(model.hilbert.get_joint_features(**feats), out.joint_embeds, atol=0)


def test_base_model_representation_loss():
    config = hilbert_config()
    model = build(config, HilbertModel)
    out = model(**feature_inputs(config), return_loss=True)
    assert_close(out.loss, out.contrastive_loss + 0.5 * out.cka_loss + 0.1 * out.mi_loss, atol=1e-6)
    assert model(**feature_inputs(config)).loss is None


def test_clear_errors_for_wrong_inputs():
    config = hilbert_config()
    model = build(config)
    feats = feature_inputs(config)
    with pytest.raises(ValueError, match=r"audio_segment_embeds must be \(batch, segments, 32\).*different encoder"):
        model(**dict(feats, audio_segment_embeds=torch.randn(4, 5, 31)))
    with pytest.raises(ValueError, match="No audio given"):
        model(text_segment_embeds=feats["text_segment_embeds"])
    with pytest.raises(ValueError, match="No text given"):
        model(audio_segment_embeds=feats["audio_segment_embeds"])
    with pytest.raises(ValueError, match="at most 100 mel frames"):
        model.hilbert.get_audio_segment_features(torch.randn(1, 1, N_MELS, 120), None, torch.ones(1, 1, 120))


def test_batch_of_one_document_trains_without_nan():
    config = hilbert_config()
    model = build(config).train()
    out = model(**feature_inputs(config, batch=1), labels=torch.tensor([2]))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.cka_loss == 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ------------------------------------------------------------------------------------- head-only models
def test_head_only_model_trains_on_features_and_attaches_encoders(tmp_path):
    config = hilbert_config(with_encoders=False)
    head = build(config)
    assert not hasattr(head.hilbert, "audio_encoder") and not hasattr(head.hilbert, "text_encoder")
    feats = feature_inputs(config)
    with pytest.raises(ValueError, match="no audio encoder"):
        head(**raw_inputs(config, batch=4))
    full_template = build(hilbert_config(), seed=1)  # provides encoders of the right shape
    full = head.attach_encoders(full_template.hilbert.audio_encoder, full_template.hilbert.text_encoder)
    assert full.config.with_encoders and not head.config.with_encoders
    with torch.no_grad():
        assert_close(full(**feats).task_logits["label"], head(**feats).task_logits["label"], atol=0)
    assert all(not p.requires_grad for p in full.hilbert.audio_encoder.parameters())
    # a head-only checkpoint is small and loads without encoders
    head.save_pretrained(tmp_path)
    reloaded = HilbertForSequenceClassification.from_pretrained(tmp_path)
    assert not hasattr(reloaded.hilbert, "audio_encoder")
    with pytest.raises(ValueError, match="does not match"):
        head.attach_encoders(full_template.hilbert.text_encoder, full_template.hilbert.text_encoder)


def test_pretrained_encoders_keep_honouring_padding_masks(tmp_path):
    """Regression: building HilbertConfig from loaded encoders' configs reset their attention implementation to
    None, and BERT then ignored the padding mask (padded segments' features changed by ~1e-2)."""
    from synthetic import save_tiny_encoders

    audio_dir, text_dir = save_tiny_encoders(tmp_path)
    model = HilbertModel.from_encoders_pretrained(str(audio_dir), str(text_dir)).eval()
    assert model.text_encoder.config._attn_implementation is not None
    ids = torch.randint(3, 1000, (1, 2, 9))
    mask = torch.ones(1, 2, 9, dtype=torch.long)
    mask[0, 1, 4:] = 0
    padded, _ = model.get_text_segment_features(ids, mask)
    alone, _ = model.get_text_segment_features(ids[:, 1:, :4], mask[:, 1:, :4])
    assert_close(padded[0, 1], alone[0, 0], atol=1e-5)
