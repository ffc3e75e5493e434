"""Per-dimension standardisation of the frozen segment features (SegmentProjection, fit_feature_statistics,
HilbertTrainer), checked against numpy on the real segments only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertForSequenceClassification
from modeling_hilbert.modeling_hilbert import SegmentProjection


def numpy_statistics(embeds: torch.Tensor, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) std per dimension over the real segments, in float64."""
    x = embeds.double().numpy()[mask.numpy().astype(bool)]
    return x.mean(0), x.std(0)


def batches_of(inputs: dict, size: int) -> list[dict]:
    n = inputs["audio_segment_embeds"].shape[0]
    return [{k: v[i : i + size] for k, v in inputs.items()} for i in range(0, n, size)]


def test_projection_standardises_each_dimension_before_its_linear_map():
    torch.manual_seed(0)
    projection = SegmentProjection(5, 4, dropout=0.0).eval()
    mean, std = torch.randn(5), torch.rand(5) + 0.5
    projection.set_statistics(mean, std)
    x = torch.randn(2, 3, 5) * 4 + 2
    expected = projection.norm(projection.linear((x - mean) / std))
    torch.testing.assert_close(projection(x), expected)


def test_a_constant_dimension_is_centred_not_divided_by_zero():
    projection = SegmentProjection(3, 4, dropout=0.0)
    projection.set_statistics(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.0, 1e-9]))
    torch.testing.assert_close(projection.scale, torch.tensor([2.0, 1.0, 1.0]))
    assert torch.isfinite(projection(torch.full((1, 1, 3), 2.0))).all()


def test_until_fitted_the_projection_is_the_identity_standardisation():
    model = HilbertForSequenceClassification(hilbert_config())
    for projection in (model.hilbert.audio_projection, model.hilbert.text_projection):
        assert torch.equal(projection.shift, torch.zeros_like(projection.shift))
        assert torch.equal(projection.scale, torch.ones_like(projection.scale))


@settings(max_examples=10, deadline=None)
@given(batch_size=st.integers(1, 6), seed=st.integers(0, 50))
def test_fitted_statistics_are_numpy_over_real_segments_in_any_batching(batch_size, seed):
    model = HilbertForSequenceClassification(hilbert_config())
    inputs = feature_inputs(model.config, batch=6, segments=5, seed=seed)
    # padded segments hold huge values: counted, they would move every statistic
    inputs["audio_segment_embeds"][~inputs["audio_segment_mask"]] = 1e4
    inputs["text_segment_embeds"][~inputs["text_segment_mask"]] = -1e4
    width = inputs["audio_segment_embeds"].shape[-1]
    inputs["audio_segment_embeds"] = inputs["audio_segment_embeds"] * torch.linspace(0.1, 30, width) + 5.0
    counts = model.hilbert.fit_feature_statistics(batches_of(inputs, batch_size))
    assert counts == {"audio": int(inputs["audio_segment_mask"].sum()), "text": int(inputs["text_segment_mask"].sum())}
    for modality in ("audio", "text"):
        mean, std = numpy_statistics(inputs[f"{modality}_segment_embeds"], inputs[f"{modality}_segment_mask"])
        projection = getattr(model.hilbert, f"{modality}_projection")
        np.testing.assert_allclose(projection.shift.numpy(), mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(projection.scale.numpy(), std, rtol=1e-4, atol=1e-5)


def test_standardised_head_is_invariant_to_an_affine_rescaling_of_each_feature_dimension():
    """What standardisation buys: features x * a + b (a few massive dimensions, offsets) give the same head outputs
    as x once the statistics are fitted on each, up to float error."""
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(hilbert_config()).eval()
    inputs = feature_inputs(model.config, batch=4, segments=5, seed=3)
    model.hilbert.fit_feature_statistics([inputs])
    reference = model(**inputs).logits
    width = inputs["audio_segment_embeds"].shape[-1]
    a = torch.ones(width)
    a[:3] = torch.tensor([40.0, 0.05, 300.0])
    scaled = {**inputs, "audio_segment_embeds": inputs["audio_segment_embeds"] * a + torch.linspace(-50, 50, width)}
    model.hilbert.fit_feature_statistics([scaled])
    torch.testing.assert_close(model(**scaled).logits, reference, rtol=1e-4, atol=1e-4)


def test_statistics_are_saved_and_loaded_with_the_model(tmp_path):
    model = HilbertForSequenceClassification(hilbert_config())
    inputs = feature_inputs(model.config, batch=4, seed=1)
    inputs["audio_segment_embeds"] = inputs["audio_segment_embeds"] * 7 + 3
    model.hilbert.fit_feature_statistics([inputs])
    model.save_pretrained(tmp_path)
    loaded = HilbertForSequenceClassification.from_pretrained(tmp_path)
    for name in ("audio_projection", "text_projection"):
        for buffer in ("shift", "scale"):
            saved = getattr(getattr(model.hilbert, name), buffer)
            assert torch.equal(getattr(getattr(loaded.hilbert, name), buffer), saved)
    torch.testing.assert_close(loaded.eval()(**inputs).logits, model.eval()(**inputs).logits)


@pytest.mark.parametrize("standardize", [True, False])
def test_hilbert_trainer_fits_the_statistics_on_the_training_documents_only(tmp_path, standardize):
    import datasets
    from transformers import TrainingArguments

    from hilbert_app.training.data import FeaturesCollator
    from hilbert_app.training.trainer import HilbertTrainer
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    config = hilbert_config(standardize_features=standardize)
    model = HilbertForSequenceClassification(config)
    width_a, width_t = encoder_hidden_size(config.audio_config), encoder_hidden_size(config.text_config)
    g = np.random.default_rng(0)
    rows = []
    for i in range(10):
        segments = 2 + i % 3
        rows.append(
            {
                "id": f"d{i}",
                "audio_features": (g.standard_normal((segments, width_a)) * 9 + 4).astype(np.float32),
                "text_features": (g.standard_normal((segments, width_t)) * 0.1 - 2).astype(np.float32),
                "audio_segment_mask": [True] * segments,
                "text_segment_mask": [True] * segments,
                "segment_times": [[float(s), float(s) + 1] for s in range(segments)],
                "label": i % 3,
            }
        )
    train, held_out = datasets.Dataset.from_list(rows[:7]), datasets.Dataset.from_list(rows[7:])
    args = TrainingArguments(
        output_dir=str(tmp_path), num_train_epochs=1, per_device_train_batch_size=4, report_to=[], use_cpu=True,
        remove_unused_columns=False, save_strategy="no", disable_tqdm=True,
    )  # fmt: skip
    collator = FeaturesCollator({"label": "label"})
    trainer = HilbertTrainer(model=model, args=args, train_dataset=train, eval_dataset=held_out, data_collator=collator)
    trainer.train()
    shift = model.hilbert.audio_projection.shift.numpy()
    if standardize:
        expected = np.concatenate([r["audio_features"] for r in rows[:7]]).mean(0)
        np.testing.assert_allclose(shift, expected, rtol=1e-5, atol=1e-5)
        everything = np.concatenate([r["audio_features"] for r in rows]).mean(0)
        assert not np.allclose(shift, everything, atol=1e-3)  # the held-out documents were not counted
    else:
        assert not shift.any()
