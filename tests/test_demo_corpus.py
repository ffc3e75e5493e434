"""Tests for dataset_scripts/build_demo_corpus.py: format, exact timestamps, determinism,
resuming, and that the label really is era (in the words) x register (in the sound)."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from hilbert_app.cli import build_demo_corpus as demo_cli
from hilbert_app.corpus import demo as bdc

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")

# Tiny documents: an opening, one passage, a closing (about 20 s each).
TINY = dict(num_documents=6, duration_range=(1.0, 2.0), seed=3, progress=False)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def median_f0(wave: np.ndarray, sr: int = bdc.SAMPLE_RATE) -> float:
    """Median autocorrelation pitch (50-300 Hz) over loud 40 ms frames: an independent check
    that the register is audible, not just written in factors.csv."""
    frame, estimates = int(0.04 * sr), []
    for i in range(0, len(wave) - frame, frame):
        x = wave[i : i + frame] - wave[i : i + frame].mean()
        if np.sqrt(np.mean(x**2)) < 0.02:
            continue
        ac = np.correlate(x, x, "full")[frame - 1 :]
        lo, hi = sr // 300, sr // 50
        estimates.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(estimates))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    # Two workers here, one in the determinism test: the bytes must not depend on it.
    return bdc.build_demo_corpus(tmp_path_factory.mktemp("corpus"), workers=2, **TINY)


def test_metadata_columns_and_labels(corpus):
    rows = read_csv(corpus / "metadata.csv")
    assert list(rows[0]) == ["file_name", "transcript", "label", "group"]
    assert len(rows) == 6
    assert {r["label"] for r in rows} <= set(bdc.CLASS_NAMES)
    assert Counter(r["label"] for r in rows) == bdc.class_counts(6)
    for row in rows:
        assert (corpus / row["file_name"]).is_file() and (corpus / row["transcript"]).is_file()
    card = (corpus / "README.md").read_text()
    assert "factors.csv" in card and "public domain" in card and "espeak-ng" in card


def test_class_counts_are_imbalanced_and_exact():
    for n in (6, 56, 200, 600):
        counts = bdc.class_counts(n)
        assert sum(counts.values()) == n
    counts = bdc.class_counts(bdc.SIZES["small"].num_documents)
    assert max(counts.values()) >= 3 * min(counts.values()) > 0


def test_audio_matches_transcript(corpus):
    for row in read_csv(corpus / "metadata.csv"):
        info = sf.info(str(corpus / row["file_name"]))
        assert (info.samplerate, info.channels, info.subtype) == (bdc.SAMPLE_RATE, 1, "PCM_16")
        duration = info.frames / info.samplerate
        segments = json.loads((corpus / row["transcript"]).read_text())
        assert segments[-1]["end"] <= duration and duration - segments[-1]["end"] < 0.5
        previous_end = 0.0
        for seg in segments:
            assert set(seg) == {"start", "end", "text", "speaker"}
            assert previous_end <= seg["start"] < seg["end"]
            assert seg["text"].strip()
            previous_end = seg["end"]
        speakers = [seg["speaker"] for seg in segments]
        assert speakers[0] == "interviewer" and "participant" in speakers
        assert all(a != b for a, b in zip(speakers, speakers[1:])), "turns alternate"


def test_label_is_text_factor_times_audio_factor(corpus):
    meta = {r["file_name"]: r for r in read_csv(corpus / "metadata.csv")}
    factors = read_csv(corpus / "factors.csv")
    f0 = {"low": [], "high": []}
    for row in factors:
        assert row["label"] == bdc.combine_factors(row["era"], row["register"])
        assert row["label"] == meta[row["file_name"]]["label"]
        assert row["group"] == meta[row["file_name"]]["group"]
        # The text factor is the era of the address the participant reads...
        assert row["era"] == bdc.era_of_year(int(row["year"]))
        sentences = bdc.address_sentences(row["source_fileid"])
        source = " ".join(sentences + sentences)  # passages may wrap around
        segments = json.loads((corpus / meta[row["file_name"]]["transcript"]).read_text())
        wave, sr = sf.read(str(corpus / row["file_name"]), dtype="float32")
        spoken = []
        for seg in segments:
            if seg["speaker"] == "participant":
                assert seg["text"] in source
                spoken.append(wave[round(seg["start"] * sr) : round(seg["end"] * sr)])
            else:  # ...and the interviewer's words carry nothing about the label.
                assert seg["text"] in {bdc.OPENING, bdc.CLOSING, *bdc.PROMPTS}
        # The audio factor is the participant's pitch register, and it is audible.
        assert row["register"] == bdc.register_of_pitch(float(row["participant_pitch"]))
        f0[row["register"]].append(median_f0(np.concatenate(spoken)))
    assert f0["low"] and f0["high"], "the tiny build should hold both registers"
    assert max(f0["low"]) < 100 < min(f0["high"])


def test_deterministic_across_builds_and_workers(corpus, tmp_path):
    again = bdc.build_demo_corpus(tmp_path / "again", workers=1, **TINY)
    for name in ("metadata.csv", "factors.csv", "README.md"):
        assert (again / name).read_bytes() == (corpus / name).read_bytes(), name
    for row in read_csv(corpus / "metadata.csv"):
        for column in ("file_name", "transcript"):
            assert (again / row[column]).read_bytes() == (corpus / row[column]).read_bytes()


def test_bytes_do_not_depend_on_the_convolution_kernel(corpus, tmp_path):
    """The flaky determinism failure: a float32 resampler gave results 1 ulp apart with and without oneDNN (the kernel
    a process ends up running), enough to flip int16 roundings and trim boundaries. The build is integer-only now."""
    import torch

    with torch.backends.mkldnn.flags(enabled=False):
        again = bdc.build_demo_corpus(tmp_path / "no-onednn", workers=1, **TINY)
    for row in read_csv(corpus / "metadata.csv"):
        for column in ("file_name", "transcript"):
            assert (again / row[column]).read_bytes() == (corpus / row[column]).read_bytes(), row[column]


def test_participant_turns_are_time_reversed_and_the_interviewer_is_not(monkeypatch):
    """The words of the participant are only in the transcript: their speech is played backwards."""

    def ramp(text, voice, rate, pitch):
        return np.arange(1, 200 + len(text), dtype=np.int16)

    monkeypatch.setattr(bdc, "synthesize", ramp)
    plan = bdc.plan_corpus(2, 3, (1.0, 2.0))[0]
    wave, segments = bdc.render_document(plan)
    assert {seg["speaker"] for seg in segments} == {"interviewer", "participant"}
    for seg in segments:
        piece = wave[round(seg["start"] * bdc.SAMPLE_RATE) : round(seg["end"] * bdc.SAMPLE_RATE)]
        expected = ramp(seg["text"], None, None, None)
        np.testing.assert_array_equal(piece, expected[::-1] if seg["speaker"] == "participant" else expected)


def test_resume_rebuilds_only_missing_documents(corpus, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(corpus, partial)
    (partial / "metadata.csv").unlink()
    (partial / "audio" / "doc_002.wav").unlink()
    (partial / "transcripts" / "doc_002.json").unlink()
    (partial / "audio" / ".tmp-doc_004.wav-x1y2.wav").write_bytes(b"half-written")  # a crash leftover
    kept = (partial / "audio" / "doc_000.wav").stat().st_mtime_ns
    assert (
        demo_cli.main(
            [
                "--output-dir",
                str(partial),
                "--seed",
                "3",
                "--num-documents",
                "6",
                "--duration",
                "1",
                "2",
                "--num-workers",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (partial / "audio" / "doc_000.wav").stat().st_mtime_ns == kept, "finished docs skipped"
    assert not list((partial / "audio").glob(".tmp-*"))
    for path in ("metadata.csv", "audio/doc_002.wav", "transcripts/doc_002.json"):
        assert (partial / path).read_bytes() == (corpus / path).read_bytes()


def test_resume_refuses_another_configuration(corpus, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(corpus, other)
    assert (
        demo_cli.main(
            ["--output-dir", str(other), "--seed", "4", "--num-documents", "6", "--duration", "1", "2", "--no-progress"]
        )
        == 1
    )
    assert "was built with" in capsys.readouterr().err


def test_missing_espeak_gives_install_hint(monkeypatch, tmp_path):
    monkeypatch.setattr(bdc.shutil, "which", lambda name: None)
    with pytest.raises(bdc.EspeakNotFoundError, match="apt-get install espeak-ng"):
        bdc.build_demo_corpus(tmp_path, **TINY)


# --- difficulty "hard": closer registers, background noise -------------------------------------------------------
HARD = dict(TINY, difficulty="hard")


@pytest.fixture(scope="module")
def hard_corpus(tmp_path_factory) -> Path:
    return bdc.build_demo_corpus(tmp_path_factory.mktemp("hard"), workers=1, **HARD)


def test_add_noise_gives_the_asked_snr_over_the_speech():
    """Independent check: the SNR is speech power / added-noise power, speech taken over the turns only."""
    sr = bdc.SAMPLE_RATE
    t = np.arange(2 * sr) / sr
    wave = np.zeros(3 * sr, dtype=np.int16)
    wave[sr // 2 : sr // 2 + 2 * sr] = np.rint(8000 * np.sin(2 * np.pi * 110 * t)).astype(np.int16)
    segments = [{"start": 0.5, "end": 2.5, "text": "x", "speaker": "participant"}]
    for snr_db in (0.0, 6.0, 12.0):
        noisy = bdc.add_noise(wave, snr_db, segments, seed=7)
        noise = noisy.astype(np.float64) - wave
        speech = wave[sr // 2 : sr // 2 + 2 * sr].astype(np.float64)
        measured = 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))
        assert abs(measured - snr_db) < 0.1, (snr_db, measured)
        assert np.std(noise[: sr // 2]) > 0, "the pauses are noisy too"
    assert np.array_equal(bdc.add_noise(wave, 6.0, segments, 7), bdc.add_noise(wave, 6.0, segments, 7))


def test_hard_corpus_is_noisy_closer_and_deterministic(hard_corpus, corpus, tmp_path):
    factors = read_csv(hard_corpus / "factors.csv")
    setting = bdc.DIFFICULTIES["hard"]
    f0 = {"low": [], "high": []}
    for row in factors:
        snr = float(row["snr_db"])
        assert setting.snr_db_range[0] <= snr <= setting.snr_db_range[1]
        assert row["register"] == bdc.register_of_pitch(float(row["participant_pitch"]), setting.registers)
        segments = json.loads((hard_corpus / "transcripts" / f"{row['doc_id']}.json").read_text())
        wave, sr = sf.read(str(hard_corpus / row["file_name"]), dtype="float32")
        pause = wave[: round(segments[0]["start"] * sr)]
        assert np.std(pause) > 1e-4, "the lead silence carries the noise"
        turns = [s for s in segments if s["speaker"] == "participant"]
        spoken = [wave[round(s["start"] * sr) : round(s["end"] * sr)] for s in turns]
        f0[row["register"]].append(median_f0(np.concatenate(spoken)))
    assert f0["low"] and f0["high"]
    # Audible, but closer than the standard corpus's 100 Hz split with its 70-95 / 105-150 Hz ranges.
    assert max(f0["low"]) < min(f0["high"]) < max(f0["low"]) + 25, f0
    # Same texts and labels as the standard corpus of the same seed; only the sound differs.
    assert [r["label"] for r in read_csv(hard_corpus / "metadata.csv")] == [
        r["label"] for r in read_csv(corpus / "metadata.csv")
    ]
    again = bdc.build_demo_corpus(tmp_path / "again", workers=2, **HARD)
    for row in read_csv(hard_corpus / "metadata.csv"):
        assert (again / row["file_name"]).read_bytes() == (hard_corpus / row["file_name"]).read_bytes()
    assert "--difficulty hard" in (hard_corpus / "README.md").read_text()


def test_standard_build_config_has_no_difficulty_key(corpus):
    """Standard folders built before difficulties existed must still resume: their config is unchanged."""
    config = json.loads((corpus / ".build_config.json").read_text())
    assert "difficulty" not in config
    assert "snr_db" not in read_csv(corpus / "factors.csv")[0]


def test_unknown_difficulty_is_refused(tmp_path):
    """As users run it: a subprocess, exit 2 with argparse's list of choices, nothing built."""
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "dataset_scripts" / "build_demo_corpus.py"
    argv = [sys.executable, str(script), "--output-dir", str(tmp_path / "x"), "--difficulty", "extreme"]
    child = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert child.returncode == 2, child.stderr
    assert "invalid choice: 'extreme'" in child.stderr and "'hard'" in child.stderr
    assert "Traceback" not in child.stderr and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="difficulty must be one of"):
        bdc.build_demo_corpus(tmp_path / "y", difficulty="extreme", **TINY)
