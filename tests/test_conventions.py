"""The conventions transformers users know (issue 14): tensor logits for one task, plain `Trainer`,
`output_attentions` / `output_hidden_states`, `torch.compile(fullgraph=True)` of the head."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from tiny_models import feature_inputs, hilbert_config
from torch.nn import functional as F

from modeling_hilbert import HilbertForSequenceClassification, HilbertModel
from modeling_hilbert.attention_hilbert import MaskedMultiHeadAttention


def _model(**overrides):
    torch.manual_seed(0)
    return HilbertForSequenceClassification(hilbert_config(with_encoders=False, **overrides)).eval()


# ------------------------------------------------------------------------------------------------ logits
def test_single_task_logits_are_a_tensor_that_argmax_takes():
    model = _model()
    inputs = feature_inputs(model.config)
    with torch.no_grad():
        out = model(**inputs)
    assert isinstance(out.logits, torch.Tensor) and out.logits.shape == (4, 3)
    assert torch.equal(out.logits, out.task_logits["label"])
    # the same numbers as the classifier run by hand on [z_a; z_t; z_j]
    logits, _, _ = model.classifier(torch.cat([out.audio_embeds, out.text_embeds, out.joint_embeds], -1))
    torch.testing.assert_close(out.logits, logits["label"], rtol=0, atol=0)
    assert out.logits.argmax(-1).shape == (4,)
    labels = torch.tensor([0, 2, 1, 0])
    with torch.no_grad():
        loss = model(**inputs, labels=labels).classification_loss
    torch.testing.assert_close(loss, F.cross_entropy(out.logits, labels), rtol=1e-6, atol=1e-6)


def test_multi_task_logits_stay_a_dict():
    tasks = [
        {"name": "a", "type": "multiclass", "labels": ["x", "y", "z"]},
        {"name": "b", "type": "binary", "labels": ["no", "yes"]},
    ]
    model = _model(tasks=tasks)
    with torch.no_grad():
        out = model(**feature_inputs(model.config))
    assert isinstance(out.logits, dict) and out.logits is out.task_logits
    assert {k: tuple(v.shape) for k, v in out.logits.items()} == {"a": (4, 3), "b": (4, 1)}


def test_features_dataset_column_names_are_accepted():
    model = _model()
    inputs = feature_inputs(model.config)
    aliased = dict(
        inputs, audio_features=inputs.pop("audio_segment_embeds"), text_features=inputs.pop("text_segment_embeds")
    )
    with torch.no_grad():
        a = model(**aliased).logits
        b = model(**feature_inputs(model.config)).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="not both"):
        model(**feature_inputs(model.config), audio_features=aliased["audio_features"])


# ------------------------------------------------------------------------------------------------ attentions, states
def test_attention_weights_match_sdpa_and_a_hand_computation():
    torch.manual_seed(1)
    attention = MaskedMultiHeadAttention(8, 2).eval()
    q, k = torch.randn(3, 4, 8), torch.randn(3, 5, 8)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    mask[2] = False  # a document without any key
    out, weights = attention(q, k, mask, return_weights=True)
    torch.testing.assert_close(out, attention(q, k, mask), rtol=1e-5, atol=1e-6)
    # by hand, head by head
    qh = attention.query(q).view(3, 4, 2, 4).transpose(1, 2)
    kh = attention.key(k.masked_fill(~mask[..., None], 0)).view(3, 5, 2, 4).transpose(1, 2)
    scores = (qh @ kh.transpose(-1, -2)) / math.sqrt(4)
    expected = torch.softmax(scores.masked_fill(~mask[:, None, None, :], -1e9), -1)
    torch.testing.assert_close(weights[:2], expected[:2], rtol=1e-5, atol=1e-6)
    assert weights[0, :, :, 3:].abs().max() == 0 and weights[2].abs().max() == 0
    torch.testing.assert_close(weights[:2].sum(-1), torch.ones(2, 2, 4))


def test_output_attentions_and_hidden_states():
    model = _model()
    inputs = feature_inputs(model.config)
    with torch.no_grad():
        plain = model(**inputs)
        out = model(**inputs, output_attentions=True, output_hidden_states=True)
    layers = model.config.num_cross_attention_layers
    torch.testing.assert_close(out.logits, plain.logits, rtol=1e-5, atol=1e-6)
    assert plain.audio_cross_attentions is None and plain.audio_hidden_states is None
    assert len(out.audio_cross_attentions) == len(out.text_cross_attentions) == layers
    assert out.audio_cross_attentions[0].shape == (4, 2, 5, 5)
    # text queries never attend to segments without audio
    audio_mask = inputs["audio_segment_mask"]
    assert out.text_cross_attentions[-1][0][..., ~audio_mask[0]].abs().max() == 0
    assert len(out.audio_hidden_states) == len(out.text_hidden_states) == layers + 1
    base = model.hilbert
    first = base._project(inputs["audio_segment_embeds"], audio_mask, inputs["segment_times"], base.audio_projection)
    torch.testing.assert_close(out.audio_hidden_states[0], first, rtol=0, atol=0)
    # the last states are what the pooling read
    pooled, _ = base.audio_pooling(out.audio_hidden_states[-1], audio_mask)
    torch.testing.assert_close(pooled, out.audio_embeds, rtol=1e-5, atol=1e-6)
    pooled, _ = base.text_pooling(out.text_hidden_states[-1], inputs["text_segment_mask"])
    torch.testing.assert_close(pooled, out.text_embeds, rtol=1e-5, atol=1e-6)
    # config default, as in transformers
    model.config.output_hidden_states = True
    with torch.no_grad():
        assert model(**inputs).audio_hidden_states is not None


# ------------------------------------------------------------------------------------------------ plain Trainer
def test_plain_trainer_with_default_arguments_trains_and_predicts(tmp_path):
    import datasets
    from synthetic import make_features_dataset, save_tiny_encoders
    from transformers import Trainer, TrainingArguments

    from hilbert_app.training.data import FeaturesCollator
    from hilbert_app.training.metrics import compute_metrics_fn

    audio_dir, text_dir = save_tiny_encoders(tmp_path)
    features = datasets.load_from_disk(
        str(make_features_dataset(tmp_path / "features", audio_dir, text_dir, documents=12))
    )["train"]
    config = hilbert_config(
        with_encoders=False, tasks=[{"name": "label", "type": "multiclass", "labels": ["calm", "tense", "crisis"]}]
    )
    config.audio_config.d_model, config.text_config.hidden_size = 32, 24
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config)
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        per_device_train_batch_size=4,
        num_train_epochs=2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model,
        args,
        train_dataset=features,
        eval_dataset=features,
        data_collator=FeaturesCollator({"label": "label"}),
        compute_metrics=compute_metrics_fn(config),
    )
    before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in model.classifier.state_dict().items())
    prediction = trainer.predict(features)
    assert isinstance(prediction.predictions, np.ndarray) and prediction.predictions.shape == (12, 3)
    assert prediction.label_ids.tolist() == features["label"]
    # the predictions are the model's logits on the whole dataset
    batch = FeaturesCollator({"label": "label"})([features[i] for i in range(12)])
    with torch.no_grad():
        expected = model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits
    np.testing.assert_allclose(prediction.predictions, expected.numpy(), rtol=1e-5, atol=1e-5)
    assert "test_label/macro_auc" in prediction.metrics or any("auc" in k for k in prediction.metrics)


# ------------------------------------------------------------------------------------------------ torch.compile
def test_head_compiles_with_fullgraph():
    torch._dynamo.reset()
    model = HilbertModel(hilbert_config(with_encoders=False, num_cross_attention_layers=1)).eval()
    inputs = feature_inputs(model.config)
    with torch.no_grad():
        expected = model(**inputs).joint_embeds
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        got = compiled(**inputs).joint_embeds
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the eager model still refuses NaN in a real segment
    bad = dict(inputs)
    bad["audio_segment_embeds"] = inputs["audio_segment_embeds"].clone()
    bad["audio_segment_embeds"][1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        model(**bad)


# ------------------------------------------------------------------------------------------------ embeddings
def _rows(model, lengths, seed=0):
    from modeling_hilbert.encoders_hilbert import encoder_hidden_size

    g = torch.Generator().manual_seed(seed)
    da, dt = encoder_hidden_size(model.config.audio_config), encoder_hidden_size(model.config.text_config)
    rows = []
    for n in lengths:
        starts = torch.cumsum(torch.rand(n, generator=g) * 3, 0)
        rows.append(
            {
                "audio_features": torch.randn(n, da, generator=g),
                "text_features": torch.randn(n, dt, generator=g),
                "audio_segment_mask": torch.ones(n, dtype=torch.bool),
                "text_segment_mask": torch.rand(n, generator=g) > 0.2,
                "segment_times": torch.stack([starts, starts + 1], -1),
            }
        )
    return rows


def test_get_text_features_with_text_only_is_the_document_without_audio():
    model = _model()
    inputs = feature_inputs(model.config)
    text_only = {k: inputs[k] for k in ("text_segment_embeds", "text_segment_mask", "segment_times")}
    got = model.get_text_features(**text_only)
    # independent: the same documents with audio present but every audio segment masked (whatever its values)
    silent = dict(inputs, audio_segment_mask=torch.zeros(4, 5, dtype=torch.bool))
    torch.testing.assert_close(got, model(**silent).text_embeds, rtol=1e-6, atol=1e-6)
    audio_only = {k: inputs[k] for k in ("audio_segment_embeds", "audio_segment_mask", "segment_times")}
    no_text = dict(inputs, text_segment_mask=torch.zeros(4, 5, dtype=torch.bool))
    torch.testing.assert_close(
        model.get_audio_features(**audio_only), model(**no_text).audio_embeds, rtol=1e-6, atol=1e-6
    )
    # projected: normalize(W z) with the contrastive projection's matrix
    projected = model.get_joint_features(projected=True, **inputs)
    z = model(**inputs).joint_embeds
    expected = z @ model.hilbert.joint_contrastive_projection.weight.T
    torch.testing.assert_close(projected, expected / expected.norm(dim=-1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_encode_features_matches_one_document_at_a_time():
    model = _model()
    rows = _rows(model, [3, 7, 1, 5, 4])
    got = model.encode(rows, batch_size=2)
    assert isinstance(got, np.ndarray) and got.shape == (5, model.config.hidden_size)
    for i, row in enumerate(rows):  # batch of one: no padding at all
        one = {
            (
                "audio_segment_embeds"
                if k == "audio_features"
                else "text_segment_embeds"
                if k == "text_features"
                else k
            ): v[None]
            for k, v in row.items()
        }
        with torch.no_grad():
            np.testing.assert_allclose(got[i], model(**one).joint_embeds[0].numpy(), rtol=1e-5, atol=1e-5)
    normed = model.encode(rows, normalize_embeddings=True, modality="text", convert_to_numpy=False)
    torch.testing.assert_close(normed.norm(dim=-1), torch.ones(5))
    with pytest.raises(ValueError, match="processor"):
        model.encode([{"audio": np.zeros(16000, np.float32), "sampling_rate": 16000, "transcript": []}])


# ------------------------------------------------------------------------------------------------ processor call
@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from synthetic import save_tiny_encoders

    return save_tiny_encoders(tmp_path_factory.mktemp("encoders"))


@pytest.fixture(scope="module")
def processor(encoders):
    from modeling_hilbert import HilbertProcessor

    return HilbertProcessor.from_encoders_pretrained(*encoders, max_text_tokens=16)


def _wave(seconds, seed=0):
    return (torch.randn(int(16000 * seconds), generator=torch.Generator().manual_seed(seed)) * 0.1).numpy()


SEGMENTS = [{"start": 0.0, "end": 0.6, "text": "hello there"}, {"start": 0.7, "end": 1.5, "text": "how are you"}]


def _same(a, b):
    assert set(a) == set(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]))


def test_processor_takes_the_transformers_keyword_form(processor, tmp_path, caplog):
    wave = _wave(2.0)
    reference = processor({"audio": wave, "sampling_rate": 16000, "segments": SEGMENTS})
    _same(processor(audio=wave, sampling_rate=16000, text=SEGMENTS, return_tensors="pt"), reference)
    as_numpy = processor(audio=wave, sampling_rate=16000, segments=SEGMENTS, return_tensors="np")
    assert all(isinstance(v, np.ndarray) for v in as_numpy.values())
    _same(as_numpy, {k: v.numpy() for k, v in reference.items()})
    # a transcript file
    srt = tmp_path / "a.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,600\nhello there\n\n2\n00:00:00,700 --> 00:00:01,500\nhow are you\n")
    _same(processor(audio=wave, sampling_rate=16000, text=str(srt)), reference)
    # a bare string: one segment over the whole recording, with a warning
    with caplog.at_level("WARNING"):
        bare = processor(audio=wave, sampling_rate=16000, text="hello there how are you")
    assert "no timestamps" in caplog.text
    _same(
        bare,
        processor(
            {
                "audio": wave,
                "sampling_rate": 16000,
                "segments": [{"start": 0.0, "end": 2.0, "text": "hello there how are you"}],
            }
        ),
    )
    # a batch in the keyword form
    other = _wave(1.0, seed=1)
    batch = processor(audio=[wave, other], sampling_rate=16000, text=[SEGMENTS, SEGMENTS[:1]])
    _same(
        batch,
        processor(
            [
                {"audio": wave, "sampling_rate": 16000, "segments": SEGMENTS},
                {"audio": other, "sampling_rate": 16000, "segments": SEGMENTS[:1]},
            ]
        ),
    )


def test_encode_recordings_equals_the_model_on_processor_output(processor, encoders):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        *encoders,
        num_labels=2,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        pooling_heads=2,
        pooling_hidden_size=8,
        projection_dim=8,
        num_experts=2,
        expert_hidden_size=16,
        dropout=0.0,
    ).eval()
    documents = [
        {"audio": _wave(2.0), "sampling_rate": 16000, "transcript": SEGMENTS},
        {"audio": _wave(1.0, seed=1), "sampling_rate": 16000, "segments": SEGMENTS[:1]},
    ]
    got = model.encode(documents, processor=processor, projected=True)
    with torch.no_grad():
        expected = model.get_joint_features(
            projected=True,
            **processor(
                [
                    {"audio": d["audio"], "sampling_rate": 16000, "segments": d.get("transcript", d.get("segments"))}
                    for d in documents
                ]
            ),
        )
    np.testing.assert_allclose(got, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_pipeline_top_k_keeps_the_best_labels(processor, encoders):
    from modeling_hilbert import HilbertDocumentClassificationPipeline

    torch.manual_seed(0)
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        *encoders,
        id2label={0: "a", 1: "b", 2: "c"},
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=32,
        pooling_heads=2,
        pooling_hidden_size=8,
        projection_dim=8,
        num_experts=2,
        expert_hidden_size=16,
        dropout=0.0,
    )
    pipe = HilbertDocumentClassificationPipeline(model=model, processor=processor)
    document = {"audio": _wave(2.0), "sampling_rate": 16000, "transcript": SEGMENTS}
    every = pipe(document)["predictions"]["label"]
    best = pipe(document, top_k=2)["predictions"]["label"]
    assert len(every) == 3 and best == every[:2]
    with torch.no_grad():
        probs = torch.softmax(
            model(**processor([{**{k: document[k] for k in ("audio", "sampling_rate")}, "segments": SEGMENTS}])).logits[
                0
            ],
            -1,
        )
    assert best[0]["score"] == pytest.approx(float(probs.max()), abs=1e-5)
    with pytest.raises(ValueError, match="top_k"):
        pipe(document, top_k=0)


def _readme_example(name: str) -> str:
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    return next(b for b in blocks if b.startswith(f"# example: {name}"))


def test_readme_python_usage_runs(encoders, tmp_path, monkeypatch):
    audio_dir, text_dir = encoders
    code = _readme_example("python-usage")
    code = code.replace('"openai/whisper-tiny.en"', repr(str(audio_dir))).replace(
        '"sentence-transformers/all-MiniLM-L6-v2"', repr(str(text_dir))
    )
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    model, embeddings = scope["model"], scope["embeddings"]
    assert scope["predicted"].shape == (1,) and embeddings.shape == (4, model.config.hidden_size)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)
    assert 0 not in scope["nearest"] and len(scope["nearest"]) == 2
    torch.testing.assert_close(scope["text_only"].norm(dim=-1), torch.ones(1))
    # the pipeline from the saved folder, batched, and one-modality documents
    results = scope["results"]
    assert len(results) == 4 and all(r["missing_modalities"] == [] for r in results)
    assert scope["audio_alone"]["missing_modalities"] == ["text"]
    assert scope["transcript_alone"]["missing_modalities"] == ["audio"]
    assert scope["audio_embedding"].shape == (1, model.config.hidden_size)
    one_at_a_time = [scope["pipe"](d) for d in scope["documents"]]
    for got, expected in zip(results, one_at_a_time):
        got, expected = got["predictions"]["label"], expected["predictions"]["label"]
        assert [e["label"] for e in got] == [e["label"] for e in expected]
        assert [e["score"] for e in got] == pytest.approx([e["score"] for e in expected], abs=1e-6)
