"""The linear shortcut (modeling_hilbert/shortcut_hilbert.py, `HilbertConfig.linear_shortcut`): logistic-regression
logits on the standardised mean-pooled frozen features, added to the head's. Checked against numpy and sklearn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertConfig, HilbertForSequenceClassification
from modeling_hilbert.shortcut_hilbert import LinearShortcut, masked_mean


def batches_of(inputs: dict, size: int) -> list[dict]:
    n = inputs["audio_segment_embeds"].shape[0]
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, n, size)]


def numpy_mean_pooled(inputs: dict, modalities=("audio", "text")) -> np.ndarray:
    """Per document, the mean of each modality's real segments (zeros without any), concatenated: the logistic
    regression baseline's input, computed with numpy alone."""
    blocks = []
    for m in modalities:
        x = inputs[f"{m}_segment_embeds"].double().numpy()
        mask = inputs[f"{m}_segment_mask"].numpy().astype(bool)
        blocks.append(
            np.stack([x[b][mask[b]].mean(0) if mask[b].any() else np.zeros(x.shape[-1]) for b in range(len(x))])
        )
    return np.concatenate(blocks, axis=1)


def test_masked_mean_ignores_padded_segments_even_nan_and_gives_zeros_without_any():
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [float("nan"), 1e9]], [[5.0, 6.0], [7.0, 8.0], [9.0, 9.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    torch.testing.assert_close(masked_mean(x, mask), torch.tensor([[2.0, 3.0], [0.0, 0.0]]))


@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 6), seed=st.integers(0, 50))
def test_mean_pooled_features_are_sklearns_standard_scaler_over_document_means(batch_size, seed):
    from sklearn.preprocessing import StandardScaler

    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).eval()
    inputs = feature_inputs(model.config, batch=6, segments=5, seed=seed)
    inputs["audio_segment_embeds"] = inputs["audio_segment_embeds"] * 7 + 3  # not already standard
    inputs["audio_segment_mask"][2] = False  # a document without audio: zeros, as the baseline's input
    inputs["text_segment_embeds"][~inputs["text_segment_mask"]] = float("nan")  # padded: must not count
    model.hilbert.fit_feature_statistics(batches_of(inputs, batch_size))
    expected = StandardScaler().fit_transform(numpy_mean_pooled(inputs))
    got = model.hilbert(**inputs).mean_pooled_features
    # sklearn leaves a zero-variance column unscaled, as FeatureStandardizer does; float32 inside the model
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_a_model_with_the_shortcut_starts_as_the_same_model_without_it():
    torch.manual_seed(0)
    with_shortcut = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).eval()
    plain = HilbertForSequenceClassification(hilbert_config()).eval()
    missing, unexpected = plain.load_state_dict(with_shortcut.state_dict(), strict=False)
    assert not missing and all("shortcut" in k or "mean_feature_standardizer" in k for k in unexpected)
    assert not with_shortcut.linear_shortcut.linears["label"].weight.any()  # zero after post_init's re-init
    inputs = feature_inputs(with_shortcut.config, batch=4, seed=1)
    for model in (with_shortcut, plain):  # the same segment standardisation in both
        model.hilbert.fit_feature_statistics([inputs])
    torch.testing.assert_close(with_shortcut(**inputs).logits, plain(**inputs).logits)


def test_logits_are_the_heads_plus_a_linear_map_of_the_standardised_means():
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).eval()
    inputs = feature_inputs(model.config, batch=5, seed=2)
    model.hilbert.fit_feature_statistics([inputs])
    head = model(**inputs).logits.detach().double().numpy()
    linear = model.linear_shortcut.linears["label"]
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g))
        linear.bias.copy_(torch.randn(linear.bias.shape, generator=g))
    x = numpy_mean_pooled(inputs)
    u = (x - x.mean(0)) / np.where(x.std(0) > 1e-6, x.std(0), 1.0)
    weight, bias = linear.weight.detach().double().numpy(), linear.bias.detach().double().numpy()
    expected = head + (u / np.sqrt(u.shape[1])) @ weight.T + bias
    np.testing.assert_allclose(model(**inputs).logits.detach().double().numpy(), expected, rtol=1e-4, atol=1e-4)


def test_the_task_loss_trains_the_shortcut_from_its_zero_start():
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).train()
    inputs = feature_inputs(model.config, batch=4, seed=4)
    model.hilbert.fit_feature_statistics([inputs])
    model(**inputs, labels=torch.tensor([0, 1, 2, 1])).loss.backward()
    linear = model.linear_shortcut.linears["label"]
    assert linear.weight.grad is not None and linear.weight.grad.abs().sum() > 0
    assert linear.bias.grad.abs().sum() > 0


@pytest.mark.parametrize("modalities", ["audio", "text"])
def test_a_unimodal_head_gets_the_shortcut_of_its_own_modality(modalities):
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    config = hilbert_config(linear_shortcut=True, modalities=modalities)
    model = HilbertForSequenceClassification(config).eval()
    width = encoder_hidden_size(getattr(config, f"{modalities}_config"))
    assert model.linear_shortcut.linears["label"].in_features == width
    inputs = {
        k: v for k, v in feature_inputs(config, batch=3).items() if k.startswith(modalities) or k == "segment_times"
    }
    model.hilbert.fit_feature_statistics([inputs])
    assert model(**inputs).logits.shape == (3, 3)


def test_a_modality_no_batch_holds_standardises_to_zeros():
    """A corpus without transcripts gives no text inputs at all: its mean-pooled text is zeros for every document,
    so the fit must not fail, and the text part of u must be exactly zero (shift 0, scale 1)."""
    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).eval()
    inputs = feature_inputs(model.config, batch=3)
    model.hilbert.fit_feature_statistics([{k: v for k, v in inputs.items() if not k.startswith("text")}])
    standardizer = model.hilbert.mean_feature_standardizer
    width_a = inputs["audio_segment_embeds"].shape[-1]
    assert not standardizer.shift[width_a:].any() and standardizer.scale[width_a:].eq(1).all()
    inputs["text_segment_mask"][:] = False  # no text in any document, as in training
    u = model.hilbert(**inputs).mean_pooled_features
    assert not u[:, width_a:].any() and u[:, :width_a].abs().sum() > 0


def test_statistics_and_weights_survive_save_and_from_pretrained(tmp_path):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True, with_encoders=False)).eval()
    inputs = feature_inputs(model.config, batch=4, seed=5)
    model.hilbert.fit_feature_statistics([inputs])
    with torch.no_grad():
        model.linear_shortcut.linears["label"].weight.normal_()
    model.save_pretrained(tmp_path)
    loaded = HilbertForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.linear_shortcut is True
    assert loaded.hilbert.mean_feature_standardizer.scale.ne(1).any()
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits)


def test_the_trainer_fits_the_document_statistics_even_without_segment_standardisation(tmp_path):
    import datasets
    from transformers import TrainingArguments

    from hilbert_app.training.data import FeaturesCollator
    from hilbert_app.training.trainer import HilbertTrainer
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    config = hilbert_config(linear_shortcut=True, standardize_features=False)
    model = HilbertForSequenceClassification(config)
    width_a, width_t = encoder_hidden_size(config.audio_config), encoder_hidden_size(config.text_config)
    g = np.random.default_rng(0)
    rows = []
    for i in range(9):
        segments = 2 + i % 3
        rows.append(
            {
                "id": f"d{i}",
                "audio_features": (g.standard_normal((segments, width_a)) * 5 + 2).astype(np.float32),
                "text_features": g.standard_normal((segments, width_t)).astype(np.float32),
                "audio_segment_mask": [True] * segments,
                "text_segment_mask": [True] * segments,
                "segment_times": [[float(s), float(s) + 1] for s in range(segments)],
                "label": i % 3,
            }
        )
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4, report_to=[], use_cpu=True,
        remove_unused_columns=False, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    train = datasets.Dataset.from_list(rows[:6])
    HilbertTrainer(
        model=model, args=args, train_dataset=train, data_collator=FeaturesCollator({"label": "label"})
    ).train()
    means = np.stack([np.concatenate([r["audio_features"].mean(0), r["text_features"].mean(0)]) for r in rows[:6]])
    np.testing.assert_allclose(
        model.hilbert.mean_feature_standardizer.shift.numpy(), means.mean(0), rtol=1e-5, atol=1e-5
    )
    assert not model.hilbert.audio_projection.shift.any()  # standardize_features=False: segment statistics untouched


def test_the_switch_is_off_by_default_and_old_configs_load_without_it():
    assert HilbertConfig().linear_shortcut is False
    saved = HilbertConfig().to_dict()
    del saved["linear_shortcut"]
    assert HilbertConfig.from_dict(saved).linear_shortcut is False
    assert not hasattr(HilbertForSequenceClassification(hilbert_config()), "linear_shortcut")


def test_the_shortcut_module_alone_is_zero_at_init_and_linear_after():
    shortcut = LinearShortcut(4, {"a": 2, "b": 1}).eval()
    u = torch.randn(3, 4)
    assert all(not v.any() for v in shortcut(u).values())
    with torch.no_grad():
        shortcut.linears["a"].weight.fill_(1.0)
    torch.testing.assert_close(shortcut(u)["a"], (u.sum(-1, keepdim=True) / 2.0).expand(3, 2))  # 1 / sqrt(4)


def test_raw_inputs_through_the_encoders_give_the_cached_features_logits():
    """The full model (encoders attached) fits and applies the shortcut on raw inputs as on cached features."""
    from tiny_models import raw_inputs

    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config(linear_shortcut=True)).eval()
    inputs = raw_inputs(model.config)
    counts = model.hilbert.fit_feature_statistics([inputs])  # the raw inputs run through the frozen encoders
    assert counts["audio"] > 0 and model.hilbert.mean_feature_standardizer.scale.ne(1).any()
    with torch.no_grad():
        model.linear_shortcut.linears["label"].weight.normal_()
        audio, audio_mask = model.hilbert.get_audio_segment_features(
            inputs.get("input_features"), inputs.get("input_values"), inputs["audio_attention_mask"]
        )
        text, text_mask = model.hilbert.get_text_segment_features(inputs["input_ids"], inputs["attention_mask"])
        cached = model(
            audio_segment_embeds=audio,
            audio_segment_mask=audio_mask,
            text_segment_embeds=text,
            text_segment_mask=text_mask,
            segment_times=inputs["segment_times"],
        )
        raw = model(**inputs)
    torch.testing.assert_close(raw.logits, cached.logits)
    assert raw.logits.abs().sum() > 0
