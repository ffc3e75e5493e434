"""One modality is a normal case (issue 13 item 2), and the pipeline's `batch_size` (issue 14).

Audio-only and transcript-only documents, and models with `modalities="audio"` / `"text"`, through the processor,
the model, `get_*_features`, `encode` and the pipeline; a two-modality model given one modality classifies from it
and says so (`missing_modalities`, a warning naming the document). The pipeline runs `batch_size` documents per model
forward with the results of `batch_size=1`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_hub_workflow import HEAD, SEGMENTS, TASKS, randomise_head, waveform
from tiny_models import feature_inputs, hilbert_config

from modeling_hilbert import HilbertDocumentClassificationPipeline, HilbertForSequenceClassification, HilbertProcessor

RATE = 16000


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from synthetic import save_tiny_encoders

    return save_tiny_encoders(tmp_path_factory.mktemp("one_modality_encoders"))


@pytest.fixture(scope="module")
def processor(encoders):
    return HilbertProcessor.from_encoders_pretrained(*map(str, encoders), max_text_tokens=32)


def make_pipeline(encoders, processor, seed=1, tasks=TASKS, **head):
    torch.manual_seed(0)
    model = HilbertForSequenceClassification.from_encoders_pretrained(
        *map(str, encoders), tasks=tasks, **{**HEAD, **head}
    )
    randomise_head(model, seed)
    return HilbertDocumentClassificationPipeline(model=model, processor=processor, device=-1), model.eval()


def scores(result: dict) -> dict:
    """{(task, label): score} of a pipeline result (flat, for pytest.approx)."""
    return {(task, e["label"]): e["score"] for task, entries in result["predictions"].items() for e in entries}


def expected_scores(model, batch) -> dict:
    """The pipeline's scores computed by hand from the model's forward on the processor's output."""
    with torch.no_grad():
        logits = model(**batch).task_logits
    label = torch.softmax(logits["label"][0], -1).tolist()
    p_yes = float(torch.sigmoid(logits["flag"][0, 0]))
    return {
        **{("label", name): p for name, p in zip(TASKS[0]["labels"], label)},
        ("flag", "no"): 1 - p_yes,
        ("flag", "yes"): p_yes,
    }


def assert_same_results(got: list[dict], expected: list[dict], tol: float = 1e-6) -> None:
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g["missing_modalities"] == e["missing_modalities"]
        for task, entries in e["predictions"].items():
            assert [x["label"] for x in g["predictions"][task]] == [x["label"] for x in entries]
            assert [x["score"] for x in g["predictions"][task]] == pytest.approx([x["score"] for x in entries], abs=tol)
        assert [t["segment_index"] for t in g["top_segments"]] == [t["segment_index"] for t in e["top_segments"]]
        weights = [t["weight"] for t in e["top_segments"]]
        assert [t["weight"] for t in g["top_segments"]] == pytest.approx(weights, abs=tol)


def documents() -> list[dict]:
    """Five documents of different lengths and forms, one modality missing in two of them."""
    return [
        {"audio": waveform(4.0), "sampling_rate": RATE, "transcript": SEGMENTS},
        {"audio": waveform(1.5), "sampling_rate": RATE, "transcript": SEGMENTS[:1]},
        {"audio": waveform(2.5), "sampling_rate": RATE},  # audio alone
        {"transcript": SEGMENTS[1:]},  # transcript alone
        {"audio": waveform(4.0), "sampling_rate": RATE, "transcript": SEGMENTS[::-1]},
    ]


def count_forward_batches(model) -> list[int]:
    """Replace `model.forward` by a wrapper that records the batch size of every call."""
    sizes, forward = [], model.forward

    def counted(*args, **kwargs):
        sizes.append(int(kwargs["segment_times"].shape[0]))
        return forward(*args, **kwargs)

    model.forward = counted
    return sizes


# ------------------------------------------------------------------------------------------------ batch_size
@pytest.mark.parametrize(
    "head", [{}, {"joint_sequence": "concat_sequence"}, {"modalities": "text"}], ids=["joint", "concat", "text"]
)
def test_pipeline_batch_size_runs_batches_with_the_results_of_one_at_a_time(encoders, processor, head):
    pipe, model = make_pipeline(encoders, processor, **head)
    docs = documents() if head.get("modalities") != "text" else [d for d in documents() if "transcript" in d]
    sizes = count_forward_batches(model)
    one = pipe(docs, top_k_segments=10)
    assert sizes == [1] * len(docs)
    sizes.clear()
    three = pipe(docs, batch_size=3, top_k_segments=10)
    assert sizes == [3, len(docs) - 3]  # batch_size documents per model forward, the rest in the last one
    assert_same_results(three, one)
    if head:
        return  # the other paths below are the same for every head: checked once (the tests stay fast)
    sizes.clear()
    # the all-at-once path batches the same way, with the same results
    assert_same_results(pipe(docs, batch_size=3, streaming=False, top_k_segments=10), one)
    assert sizes == [3, len(docs) - 3]
    # batch_size at construction, and a generator (the results come as an iterator, in order)
    batched = HilbertDocumentClassificationPipeline(model=model, processor=processor, device=-1, batch_size=2)
    sizes.clear()
    assert_same_results(list(batched((d for d in docs), top_k_segments=10)), one)
    assert sizes == [2] * (len(docs) // 2) + [1] * (len(docs) % 2)


def test_pipeline_batch_size_is_checked(encoders, processor):
    pipe, _ = make_pipeline(encoders, processor)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            pipe(documents()[:2], batch_size=bad)
    with pytest.raises(ValueError, match="batch_size"):
        HilbertDocumentClassificationPipeline(model=pipe.model, processor=processor, device=-1, batch_size=0)


# ------------------------------------------------------------------------------------------------ the processor
def test_processor_takes_a_transcript_alone(processor):
    wave = waveform(4.0)
    batch, (report,) = processor({"segments": SEGMENTS}, return_report=True)
    assert report["no_audio"] and not report["no_transcript"] and report["audio_seconds"] == 0.0
    assert not batch["audio_segment_mask"].any() and batch["text_segment_mask"].all()
    # the text side is that of the document with its audio
    with_audio = processor({"audio": wave, "sampling_rate": RATE, "segments": SEGMENTS})
    for key in ("input_ids", "attention_mask", "text_segment_mask", "segment_times"):
        assert torch.equal(batch[key], with_audio[key]), key
    # keyword forms: one transcript, a batch of transcripts (files or lists)
    for key, value in processor(text=SEGMENTS).items():
        assert torch.equal(value, batch[key]), key
    two = processor(segments=[SEGMENTS, SEGMENTS[:2]])
    assert two["text_segment_mask"].sum(-1).tolist() == [5, 3]  # segment 1 is split by the tiny Whisper's 1-s window
    # the audio policies do not apply to a document without audio: nothing to check its times against
    strict = HilbertProcessor(processor.feature_extractor, processor.tokenizer, missing_audio="error")
    assert not strict({"segments": SEGMENTS})["audio_segment_mask"].any()
    with pytest.raises(ValueError, match="sampling_rate is given but there is no 'audio'"):
        processor({"segments": SEGMENTS, "sampling_rate": RATE})
    with pytest.raises(ValueError, match="text without timestamps .* no 'audio'"):
        processor(text="hello there")
    with pytest.raises(ValueError, match="neither 'audio' nor 'segments'"):
        processor([{"audio": None}])


def test_processor_cuts_audio_alone_into_equal_windows(processor):
    wave = waveform(2.5)  # the tiny Whisper's window is 1 s: ceil(2.5 / 1) = 3 windows of 2.5 / 3 s
    batch, (report,) = processor({"audio": wave, "sampling_rate": RATE}, return_report=True)
    assert report["no_transcript"] and not report["no_audio"]
    np.testing.assert_allclose(report["windows"], [[0.0, 2.5 / 3], [2.5 / 3, 5.0 / 3], [5.0 / 3, 2.5]])
    assert report["segment_sources"] == [0, 1, 2]
    assert batch["audio_segment_mask"].tolist() == [[True] * 3] and not batch["text_segment_mask"].any()
    # the same inputs as the windows given as segments without text
    windows = [{"start": a, "end": b, "text": ""} for a, b in report["windows"]]
    for key, value in processor({"audio": wave, "sampling_rate": RATE, "segments": windows}).items():
        assert torch.equal(value, batch[key]), key
    # neither the speaker nor the missing-text policy drops windows: there is no speaker and no text to select on
    for options in ({"speakers": ["Participant"]}, {"missing_text": "drop"}):
        other = HilbertProcessor(processor.feature_extractor, processor.tokenizer, **options)
        assert other({"audio": wave, "sampling_rate": RATE})["audio_segment_mask"].sum() == 3, options
    # a batch of recordings alone, in the keyword form
    two = processor(audio=[wave, waveform(0.5)], sampling_rate=RATE)
    assert two["audio_segment_mask"].tolist() == [[True, True, True], [True, False, False]]
    # streaming plans the same windows
    plan = processor.plan_document({"audio": wave, "sampling_rate": RATE})
    assert torch.equal(plan.inputs["segment_times"], batch["segment_times"]) and plan.report["windows"]
    assert math.isclose(report["audio_seconds_covered"], 2.5, abs_tol=1e-4)


# ------------------------------------------------------------------------------------------------ two modalities
def test_transcript_alone_through_a_two_modality_pipeline(encoders, processor, caplog):
    pipe, model = make_pipeline(encoders, processor)
    with caplog.at_level("WARNING"):
        result = pipe({"transcript": SEGMENTS}, top_k_segments=10)
    assert result["missing_modalities"] == ["audio"]
    assert "the document: no audio (no audio was given)" in caplog.text and "give its recording" in caplog.text
    batch = processor({"segments": SEGMENTS})
    assert scores(result) == pytest.approx(expected_scores(model, batch), abs=1e-6)
    # independent: the document with its audio, every audio segment masked, gives the same numbers
    masked = processor({"audio": waveform(), "sampling_rate": RATE, "segments": SEGMENTS})
    masked["audio_segment_mask"][:] = False
    assert scores(result) == pytest.approx(expected_scores(model, masked), abs=1e-6)
    with torch.no_grad():
        joint = model(**batch).joint_embeds
        torch.testing.assert_close(model(**masked).joint_embeds, joint, rtol=1e-5, atol=1e-6)
    # encode and get_joint_features on the same document
    np.testing.assert_allclose(model.encode([{"transcript": SEGMENTS}], processor=processor), joint, atol=1e-5)
    text_only = {k: batch[k] for k in ("input_ids", "attention_mask", "text_segment_mask", "segment_times")}
    with torch.no_grad():
        torch.testing.assert_close(model.get_joint_features(**text_only), joint, rtol=1e-5, atol=1e-6)
    # top segments are the transcript's, weights from the text side
    assert sorted(t["segment_index"] for t in result["top_segments"]) == [0, 1, 2, 3]
    # the keyword form and a file
    assert pipe(transcript=SEGMENTS, top_k_segments=10) == result
    assert pipe({"sampling_rate": RATE, "transcript": SEGMENTS}, top_k_segments=10) == result


def test_audio_alone_through_a_two_modality_pipeline(encoders, processor, caplog):
    pipe, model = make_pipeline(encoders, processor)
    wave = waveform(2.5)
    with caplog.at_level("WARNING"):
        result = pipe({"audio": wave, "sampling_rate": RATE}, top_k_segments=10)
    assert result["missing_modalities"] == ["text"]
    assert "no text (no transcript was given)" in caplog.text and "asr_model=" in caplog.text
    batch = processor({"audio": wave, "sampling_rate": RATE})
    assert scores(result) == pytest.approx(expected_scores(model, batch), abs=1e-6)
    # the top segments are the windows
    assert sorted((t["segment_index"], t["start"], t["end"], t["speaker"]) for t in result["top_segments"]) == [
        (k, pytest.approx(2.5 * k / 3), pytest.approx(2.5 * (k + 1) / 3), None) for k in range(3)
    ]
    assert sum(t["weight"] for t in result["top_segments"]) == pytest.approx(1.0, abs=1e-5)
    assert_same_results([pipe({"audio": wave, "sampling_rate": RATE}, streaming=False, top_k_segments=10)], [result])
    with torch.no_grad():
        audio = model(**batch).audio_embeds
    embeds = model.encode([{"audio": wave, "sampling_rate": RATE}], processor=processor, modality="audio")
    np.testing.assert_allclose(embeds, audio, atol=1e-5)
    # a transcript whose every text is empty lacks text too, and says why
    caplog.clear()
    silent = [dict(s, text=" ") for s in SEGMENTS]
    with caplog.at_level("WARNING"):
        assert pipe({"audio": waveform(), "sampling_rate": RATE, "transcript": silent})["missing_modalities"] == [
            "text"
        ]
    assert "none of its segments has text" in caplog.text
    # both modalities: nothing missing, no warning
    caplog.clear()
    with caplog.at_level("WARNING"):
        full = pipe({"audio": waveform(), "sampling_rate": RATE, "transcript": SEGMENTS})
    assert full["missing_modalities"] == [] and "no text" not in caplog.text


# ------------------------------------------------------------------------------------------------ unimodal models
def test_audio_only_model(encoders, processor, caplog):
    pipe, model = make_pipeline(encoders, processor, modalities="audio")
    wave = waveform()
    alone = pipe({"audio": wave, "sampling_rate": RATE}, top_k_segments=10)
    assert alone["missing_modalities"] == []  # an audio-only model lacks nothing without a transcript
    assert scores(alone) == pytest.approx(expected_scores(model, processor({"audio": wave, "sampling_rate": RATE})))
    # a transcript: its times cut the segments, its text is not used (a warning says so, once)
    with caplog.at_level("WARNING"):
        given = pipe({"audio": wave, "sampling_rate": RATE, "transcript": SEGMENTS}, top_k_segments=10)
        other_words = [dict(s, text="entirely different words") for s in SEGMENTS]
        assert pipe({"audio": wave, "sampling_rate": RATE, "transcript": other_words}, top_k_segments=10) == given
    assert caplog.text.count("reads audio only") == 1 and "its text is not used" in caplog.text
    batch = processor({"audio": wave, "sampling_rate": RATE, "segments": SEGMENTS})
    assert scores(given) == pytest.approx(expected_scores(model, batch), abs=1e-6)
    assert given["missing_modalities"] == [] and scores(given) != pytest.approx(scores(alone), abs=1e-6)
    # get_audio_features and encode give forward's audio embedding; there is no text or joint one
    with torch.no_grad():
        out = model(**batch)
        torch.testing.assert_close(model.get_audio_features(**batch), out.audio_embeds, rtol=0, atol=0)
    docs = [{"audio": wave, "sampling_rate": RATE, "transcript": SEGMENTS}]
    np.testing.assert_allclose(model.encode(docs, processor=processor, modality="audio"), out.audio_embeds, atol=1e-5)
    for modality in ("text", "joint"):
        with pytest.raises(ValueError, match="unimodal"):
            model.encode(docs, processor=processor, modality=modality)
    with pytest.raises(ValueError, match="reads audio only"):
        pipe({"transcript": SEGMENTS})


def test_text_only_model(encoders, processor):
    pipe, model = make_pipeline(encoders, processor, modalities="text")
    result = pipe({"transcript": SEGMENTS}, top_k_segments=10)
    assert result["missing_modalities"] == []
    batch = processor({"segments": SEGMENTS})
    assert scores(result) == pytest.approx(expected_scores(model, batch), abs=1e-6)
    # the audio, when given, changes nothing
    assert pipe({"audio": waveform(), "sampling_rate": RATE, "transcript": SEGMENTS}, top_k_segments=10) == result
    with torch.no_grad():
        out = model(**batch)
        torch.testing.assert_close(model.get_text_features(**batch), out.text_embeds, rtol=0, atol=0)
    np.testing.assert_allclose(
        model.encode([{"transcript": SEGMENTS}], processor=processor, modality="text"), out.text_embeds, atol=1e-5
    )
    with pytest.raises(ValueError, match="reads text only.*asr_model="):
        pipe({"audio": waveform(), "sampling_rate": RATE})


@pytest.mark.parametrize("modality", ["audio", "text"])
def test_get_features_of_a_unimodal_head_equal_forward(modality):
    torch.manual_seed(0)
    config = hilbert_config(modalities=modality, with_encoders=False)
    model = HilbertForSequenceClassification(config).eval()
    inputs = feature_inputs(config)
    other = "text" if modality == "audio" else "audio"
    mine = {k: v for k, v in inputs.items() if not k.startswith(other)}  # only the modality the model reads
    with torch.no_grad():
        out = model(**inputs)
        got = getattr(model, f"get_{modality}_features")(**mine)
    torch.testing.assert_close(got, getattr(out, f"{modality}_embeds"), rtol=0, atol=0)
    with pytest.raises(ValueError, match=f"no {other} stream"):
        getattr(model, f"get_{other}_features")(**mine)
    with pytest.raises(ValueError, match="No inputs"):  # the other modality alone is nothing this model reads
        getattr(model, f"get_{modality}_features")(**{k: v for k, v in inputs.items() if k.startswith(other)})
