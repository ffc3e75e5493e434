"""The corpus builder: dataset_scripts/build_dataset.py (the Hub push is tested elsewhere)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import soundfile as sf

from hilbert_app.cli.build_dataset import main
from hilbert_app.corpus.build import (
    DatasetBuildError,
    FoldError,
    assign_folds,
    build_dataset,
    render_dataset_card,
)

REPO = Path(__file__).resolve().parents[1]

SRT = "1\n00:00:00,100 --> 00:00:00,900\nALICE: good <i>morning</i>\n\n2\n00:00:01,000 --> 00:00:01,800\nhow are you\n"
VTT = "WEBVTT\n\n00:00.000 --> 00:00.700\n<v Bob>fine thanks\n\n00:00.800 --> 00:01.400\nand you\n"
JSON = json.dumps(
    {
        "segments": [
            {"start": 0.0, "end": 0.5, "text": "hello", "speaker": "C"},
            {"start": 0.6, "end": 1.2, "text": "world"},
        ]
    }
)
TRANSCRIPTS = {"srt": SRT, "vtt": VTT, "json": JSON}

# id, sampling rate, seconds, transcript format, label, label_topic, group ("" = its own group)
RECORDINGS = [
    ("rec1", 16000, 2.0, "srt", "calm", "news", "spk1"),
    ("rec2", 8000, 1.5, "vtt", "calm", "sport", "spk1"),
    ("rec3", 16000, 1.6, "json", "calm", "news", "spk2"),
    ("rec4", 8000, 2.0, "srt", "calm", "sport", ""),
    ("rec5", 16000, 1.5, "vtt", "angry", "news", "spk3"),
    ("rec6", 8000, 1.6, "json", "angry", "sport", "spk3"),
    ("rec7", 16000, 2.0, "srt", "angry", "news", ""),
    ("rec8", 8000, 1.5, "vtt", "angry", "sport", ""),
]
COLUMNS = ["file_name", "transcript", "label", "label_topic", "group", "notes"]


def write_wav(path, seconds, rate):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, 0.1 * np.sin(2 * np.pi * 220 * t), rate)


def write_transcript(root, name, text):
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_metadata(root, rows):
    with (root / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def make_corpus(root):
    """A valid corpus; returns its metadata rows (metadata line of rows[i] = i + 2)."""
    rows = []
    for rid, rate, seconds, fmt, label, topic, group in RECORDINGS:
        write_wav(root / "audio" / f"{rid}.wav", seconds, rate)
        write_transcript(root, f"transcripts/{rid}.{fmt}", TRANSCRIPTS[fmt])
        rows.append([f"audio/{rid}.wav", f"transcripts/{rid}.{fmt}", label, topic, group, "free text"])
    write_metadata(root, rows)
    return rows


def add_bad_rows(root, rows):
    """Append one invalid row per kind of problem; returns {kind: (metadata line, location fragment)}."""
    (root / "audio" / "text.wav").write_text("not audio")
    (root / "audio" / "zero.wav").write_bytes(b"")
    sf.write(root / "audio" / "noframes.wav", np.zeros(0), 16000)
    write_wav(root.parent / "outside.wav", 1.0, 16000)
    write_wav(root / "audio" / "short.wav", 1.0, 16000)
    write_wav(root / "audio" / "latin.wav", 1.0, 16000)
    write_wav(root / "audio" / "badsrt.wav", 2.0, 16000)
    write_transcript(root, "transcripts/bad.srt", SRT.replace("00:00:01,800", "00:00:01,8x0"))  # line 6
    write_transcript(root, "transcripts/long.srt", SRT)  # segment 2 ends at 1.8 s > 1.0 s + 0.5 s, line 6
    (root / "transcripts" / "latin1.srt").write_bytes(SRT.replace("good", "caf\u00e9").encode("latin-1"))
    bad = [
        (["audio/text.wav", "transcripts/rec1.srt", "calm", "news", "", ""], "audio_unreadable", "metadata.csv"),
        (["audio/zero.wav", "transcripts/rec1.srt", "calm", "news", "", ""], "audio_empty", "metadata.csv"),
        (["audio/noframes.wav", "transcripts/rec1.srt", "calm", "news", "", ""], "audio_empty", "metadata.csv"),
        (["audio/missing.wav", "transcripts/rec1.srt", "calm", "news", "", ""], "file_missing", "metadata.csv"),
        (["../outside.wav", "transcripts/rec1.srt", "calm", "news", "", ""], "path_escapes", "metadata.csv"),
        (
            [str(root.parent / "outside.wav"), "transcripts/rec1.srt", "calm", "news", "", ""],
            "path_escapes",
            "metadata.csv",
        ),
        (
            ["audio/badsrt.wav", "transcripts/bad.srt", "calm", "news", "", ""],
            "transcript_syntax",
            "transcripts/bad.srt:6",
        ),
        (["audio/short.wav", "transcripts/long.srt", "calm", "news", "", ""], "beyond_audio", "transcripts/long.srt:6"),
        (
            ["audio/latin.wav", "transcripts/latin1.srt", "angry", "news", "", ""],
            "transcript_syntax",
            "transcripts/latin1.srt:3",
        ),
        (["audio/rec1.wav", "transcripts/rec1.srt", "", "news", "", ""], "label_empty", "metadata.csv"),
    ]
    expected = {}
    for row, kind, where in bad:
        line = len(rows) + 2  # header on line 1
        expected[line] = (kind, f"{where}:{line}" if where == "metadata.csv" else where)
        rows.append(row)
    write_metadata(root, rows)
    return expected


@pytest.fixture
def corpus(tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    return root


def test_builds_columns_labels_segments_and_folds(corpus, tmp_path):
    out = tmp_path / "out"
    dd, report = build_dataset(corpus, out, folds=3, seed=1, progress=False)
    assert list(dd) == ["train"]
    train = dd["train"]
    assert train.column_names == [
        "id",
        "audio",
        "sampling_rate",
        "duration",
        "segments",
        "label",
        "label_topic",
        "group",
        "fold",
    ]
    assert train.features["audio"] == datasets.Audio(decode=False)
    assert train.features["label"].names == ["angry", "calm"]
    assert train.features["label_topic"].names == ["news", "sport"]
    rows = {row["id"]: row for row in train}
    assert sorted(rows) == [r[0] for r in RECORDINGS]

    rec1, rec2, rec3 = rows["rec1"], rows["rec2"], rows["rec3"]
    assert rec1["segments"] == [
        {"start": 0.1, "end": 0.9, "text": "good morning", "speaker": "ALICE"},
        {"start": 1.0, "end": 1.8, "text": "how are you", "speaker": None},
    ]
    assert rec2["segments"] == [
        {"start": 0.0, "end": 0.7, "text": "fine thanks", "speaker": "Bob"},
        {"start": 0.8, "end": 1.4, "text": "and you", "speaker": None},
    ]
    assert rec3["segments"] == [
        {"start": 0.0, "end": 0.5, "text": "hello", "speaker": "C"},
        {"start": 0.6, "end": 1.2, "text": "world", "speaker": None},
    ]
    assert (rec1["sampling_rate"], rec1["duration"], rec2["sampling_rate"], rec2["duration"]) == (16000, 2.0, 8000, 1.5)
    assert rec1["audio"] == {
        "bytes": (corpus / "audio" / "rec1.wav").read_bytes(),
        "path": "rec1.wav",
    }  # datasets keeps the base name
    assert (rec1["label"], rec1["label_topic"], rows["rec5"]["label"]) == (1, 0, 0)
    assert (rec1["group"], rows["rec4"]["group"]) == ("spk1", "rec4")  # empty group = the recording itself

    folds_of_group = {}
    for row in train:
        folds_of_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in folds_of_group.values()), folds_of_group
    assert sorted(set(train["fold"])) == [0, 1, 2]

    saved = json.loads((out / "build_report.json").read_text())
    assert (saved["rows_read"], saved["rows_built"], saved["skipped"]) == (8, 8, [])
    assert saved["ignored_columns"] == ["notes"]
    assert saved["sampling_rates"] == {"8000": 4, "16000": 4}
    assert saved["label_distribution"]["label"]["total"] == {"angry": 4, "calm": 4}
    assert sum(saved["rows_per_fold"].values()) == 8
    assert saved == report.to_dict()
    assert datasets.load_from_disk(str(out))["train"].num_rows == 8


def test_same_seed_same_folds_and_rebuild_replaces_previous_build(corpus, tmp_path):
    first, _ = build_dataset(corpus, tmp_path / "out", folds=3, seed=7, progress=False)
    folds = dict(zip(first["train"]["id"], first["train"]["fold"]))
    again, _ = build_dataset(corpus, tmp_path / "out", folds=3, seed=7, progress=False)  # same folder: replaced
    assert dict(zip(again["train"]["id"], again["train"]["fold"])) == folds


def test_jsonl_metadata_with_ids(tmp_path):
    root = tmp_path / "corpus"
    make_corpus(root)
    (root / "metadata.csv").unlink()
    lines = [
        json.dumps(
            {
                "id": f"doc-{rid}",
                "file_name": f"audio/{rid}.wav",
                "transcript": f"transcripts/{rid}.{fmt}",
                "label": label,
                "group": group or None,
            }
        )
        for rid, _, _, fmt, label, _, group in RECORDINGS
    ]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    dd, report = build_dataset(root, tmp_path / "out", folds=2, progress=False)
    assert sorted(dd["train"]["id"]) == [f"doc-{r[0]}" for r in RECORDINGS]
    assert list(report.label_names) == ["label"]


def test_every_problem_is_reported_with_file_and_line(corpus, tmp_path):
    rows = make_corpus(corpus)
    expected = add_bad_rows(corpus, rows)
    out = tmp_path / "out"
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(corpus, out, folds=2, progress=False)
    err = info.value
    message = str(err)
    assert not out.exists(), "nothing may be written when the build fails"
    # the duplicate 'rec1' (last bad row) also flags the original rec1 row on line 2
    skipped = {row.line: row for row in err.skipped}
    assert sorted(skipped) == sorted([2, *expected])
    for line, (kind, where) in expected.items():
        kinds = [p.kind for p in skipped[line].problems]
        assert kind in kinds, (line, kinds)
        assert any(str(p).startswith(where) for p in skipped[line].problems), (where, skipped[line].problems)
        assert where in message
    assert [p.kind for p in skipped[2].problems] == ["duplicate_id"]
    assert "id 'rec1' is also used on line(s) 19" in message
    assert "  1. metadata.csv:2: " in message and f"  {len(err.problems)}. " in message  # numbered, all of them
    assert "(row metadata.csv:16, id 'badsrt')" in message  # transcript problems name their row
    assert "--skip-invalid" in message


def test_skip_invalid_builds_the_rest_and_reports_what_was_skipped(corpus, tmp_path):
    rows = make_corpus(corpus)
    expected = add_bad_rows(corpus, rows)
    dd, report = build_dataset(corpus, tmp_path / "out", folds=2, skip_invalid=True, progress=False)
    assert sorted(dd["train"]["id"]) == [r[0] for r in RECORDINGS[1:]]  # rec1 has a duplicate id
    assert report.rows_read == len(RECORDINGS) + len(expected) and report.rows_built == len(RECORDINGS) - 1
    saved = json.loads((tmp_path / "out" / "build_report.json").read_text())
    by_line = {row["metadata_line"]: row for row in saved["skipped"]}
    assert sorted(by_line) == sorted([2, *expected])
    for line, (kind, where) in expected.items():
        assert kind in by_line[line]["kinds"] and any(p.startswith(where) for p in by_line[line]["problems"])
    assert "Skipped 11 invalid rows" in report.summary()


def test_cli_exit_code_2_on_bad_input(corpus, tmp_path):
    rows = make_corpus(corpus)
    add_bad_rows(corpus, rows)
    out, report = tmp_path / "out", tmp_path / "failure.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "dataset_scripts" / "build_dataset.py"),
            "--input",
            str(corpus),
            "--output-dir",
            str(out),
            "--folds",
            "2",
            "--report",
            str(report),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "error: " in proc.stderr and "transcripts/bad.srt:6: bad timestamp" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()
    failure = json.loads(report.read_text())
    assert failure["status"] == "failed" and len(failure["problems"]) >= 11


def test_cli_main_skip_invalid_prints_summary(corpus, tmp_path, capsys):
    rows = make_corpus(corpus)
    rows.append(["audio/missing.wav", "transcripts/rec1.srt", "calm", "news", "", ""])
    write_metadata(corpus, rows)
    argv = [
        "--input",
        str(corpus),
        "--output-dir",
        str(tmp_path / "out"),
        "--folds",
        "2",
        "--skip-invalid",
        "--report",
        str(tmp_path / "r.json"),
        "--no-progress",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Built 8 of 9 rows" in printed and "metadata.csv:10: id 'missing'" in printed
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["command"].startswith("python dataset_scripts/build_dataset.py --input")
    assert [row["kinds"] for row in saved["skipped"]] == [["file_missing"]]


def test_metadata_level_errors(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    with pytest.raises(DatasetBuildError, match="no metadata.csv or metadata.jsonl"):
        build_dataset(root, tmp_path / "o", progress=False)
    (root / "metadata.csv").write_text("file_name,label\na.wav,x\n")
    with pytest.raises(DatasetBuildError, match=r"metadata.csv:1: missing column\(s\) transcript"):
        build_dataset(root, tmp_path / "o", progress=False)
    (root / "metadata.csv").unlink()
    (root / "metadata.jsonl").write_text('{"file_name": "a.wav", "transcript": "a.srt", "label": "x"}\n{oops\n')
    with pytest.raises(DatasetBuildError) as info:
        build_dataset(root, tmp_path / "o", progress=False)
    assert "metadata.jsonl:2: invalid JSON" in str(info.value) and "metadata.jsonl:1: id 'a'" in str(info.value)


def test_output_folder_that_is_not_a_build_is_refused(corpus, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetBuildError, match="not empty and holds no previous build"):
        build_dataset(corpus, tmp_path / "out", progress=False)
    assert (tmp_path / "out" / "precious.txt").exists()


def test_fold_errors_say_what_to_do(corpus, tmp_path):
    with pytest.raises(FoldError) as info:  # each class has 3 groups
        build_dataset(corpus, tmp_path / "out", folds=4, progress=False)
    assert "class 'angry' has only 3 group(s), fewer than the 4 folds" in str(info.value)
    assert "class 'calm'" in str(info.value) and "use fewer folds" in str(info.value)
    with pytest.raises(FoldError, match="5 folds need at least 5 groups, but the documents have 2"):
        assign_folds(["a", "b", "a"], ["g1", "g2", "g1"], 5, 0)
    with pytest.raises(FoldError, match="at least 2"):
        assign_folds(["a", "b"], ["g1", "g2"], 1, 0)
    labels = ["a"] * 6 + ["b"] * 6
    groups = [f"g{i // 2}" for i in range(12)]  # 6 groups of two rows, 3 per class
    folds = assign_folds(labels, groups, 3, seed=0)
    assert sorted(set(folds)) == [0, 1, 2]
    assert all(len({f for f, g in zip(folds, groups) if g == group}) == 1 for group in set(groups))


def test_dataset_card_renders(corpus, tmp_path):
    from huggingface_hub import DatasetCard

    rows = make_corpus(corpus)
    rows.append(["audio/missing.wav", "transcripts/rec1.srt", "calm", "news", "", ""])
    write_metadata(corpus, rows)
    _, report = build_dataset(corpus, tmp_path / "out", folds=2, skip_invalid=True, progress=False)
    card = DatasetCard(render_dataset_card(report, "org/my-corpus", license="cc-by-4.0"))
    assert card.data.license == "cc-by-4.0" and card.data.task_categories == ["audio-classification"]
    assert card.data.tags == ["audio-text", "hilbert"]
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert "| `label` | fold 0 | fold 1 | total |" in card.text and "| calm |" in card.text
    assert "`missing` (metadata line 10)" in card.text and "build_dataset(" in card.text
    assert "## Privacy" in card.text


@pytest.mark.slow
def test_push_to_hub_is_private_with_a_card_and_loads_back(corpus, tmp_path, hub_env):
    """`--push-to-hub` against the local Hub API: private repo, the rendered card (what was skipped, the label
    distribution), and `datasets.load_dataset(repo)` gives the same rows back."""
    import json
    import subprocess
    import sys
    import textwrap

    rows = make_corpus(corpus)
    add_bad_rows(corpus, rows)
    script = textwrap.dedent(f"""
        import json, sys
        from hilbert_app.cli.build_dataset import main
        from huggingface_hub import HfApi, hf_hub_download
        import datasets
        code = main(["--input", {str(corpus)!r}, "--output-dir", {str(tmp_path / "out")!r}, "--skip-invalid",
            "--folds", "2",
                     "--no-progress", "--push-to-hub", "tester/interviews"])
        info = HfApi().dataset_info("tester/interviews")
        card = open(hf_hub_download("tester/interviews", "README.md", repo_type="dataset")).read()
        loaded = datasets.load_dataset("tester/interviews")
        print(json.dumps({{"code": code, "private": info.private, "card": card, "ids": sorted(loaded["train"]["id"]),
                          "labels": loaded["train"].features["label"].names}}))
    """)
    child = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(hub_env, HF_HOME=str(tmp_path / "hf")),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and result["private"] is True
    # the invalid rows were left out (rec1 too: a bad row reuses its id, and both rows with a duplicate id are
    # flagged)...
    assert result["ids"] == sorted(r[0] for r in RECORDINGS if r[0] != "rec1")
    assert "skipped" in result["card"].lower() and "audio/text.wav" in result["card"]  # ...and the card says which
    assert result["labels"] == ["angry", "calm"]


def test_allow_unlabelled_keeps_empty_label_cells_as_minus_one_counted_in_report_and_card(corpus, tmp_path):
    """Without the flag an empty label is a problem that names the flag; with it, the row is built with -1 (the
    `datasets` convention for a missing ClassLabel), spread over the folds, and counted where users look."""
    rows = make_corpus(corpus)
    for rid in ("extra0", "extra1"):
        write_wav(corpus / "audio" / f"{rid}.wav", 1.5, 16000)
    rows += [
        ["audio/extra0.wav", "transcripts/rec1.srt", "", "news", "spk9", ""],
        ["audio/extra1.wav", "transcripts/rec2.vtt", "", "", "spk8", ""],
    ]
    write_metadata(corpus, rows)
    with pytest.raises(DatasetBuildError) as refused:
        build_dataset(corpus, tmp_path / "refused", folds=2, progress=False)
    assert "--allow-unlabelled" in str(refused.value)
    assert {p.kind for p in refused.value.problems} == {"label_empty"}
    dd, report = build_dataset(corpus, tmp_path / "out", folds=2, progress=False, allow_unlabelled=True)
    train = dd["train"]
    by_id = {row["id"]: row for row in train}
    assert by_id["extra0"]["label"] == -1 and by_id["extra1"]["label"] == -1
    assert by_id["extra0"]["label_topic"] == train.features["label_topic"].names.index("news")
    assert by_id["extra1"]["label_topic"] == -1
    assert train.features["label"].names == ["angry", "calm"]  # no class for the empty cell
    assert by_id["extra0"]["fold"] != by_id["extra1"]["fold"]  # spread over the folds like a class
    assert report.unlabelled_rows == {"label": 2, "label_topic": 1}
    assert report.label_distribution["label"]["total"]["(unlabelled)"] == 2
    assert "2 rows have no 'label'" in report.summary()
    card = render_dataset_card(report, "org/c")
    assert "2 rows unlabelled" in card and "| (unlabelled) |" in card
    from hilbert_app.training.data import labelled_documents

    assert int((~labelled_documents(train)).sum()) == 1  # extra0 still has a topic label


def test_a_label_column_without_any_value_is_refused_even_with_allow_unlabelled(corpus, tmp_path):
    rows = [r[:3] + [""] + r[4:] for r in make_corpus(corpus)]
    write_metadata(corpus, rows)
    with pytest.raises(DatasetBuildError, match="no row has a value in 'label_topic'"):
        build_dataset(corpus, tmp_path / "out", folds=2, progress=False, allow_unlabelled=True)


def test_allow_unlabelled_through_the_command_line(corpus, tmp_path, capsys):
    """The flag as users pass it: refused without it (exit 2, one message naming the row and the flag, no traceback,
    no output folder), built with it (exit 0, the summary counts the unlabelled rows)."""
    rows = make_corpus(corpus)
    write_wav(corpus / "audio" / "extra0.wav", 1.5, 16000)
    rows.append(["audio/extra0.wav", "transcripts/rec1.srt", "", "news", "spk9", ""])
    write_metadata(corpus, rows)
    argv = ["--input", str(corpus), "--output-dir", str(tmp_path / "out"), "--folds", "2", "--no-progress"]
    assert main(argv) == 2
    said = capsys.readouterr()
    assert "--allow-unlabelled" in said.err and "Traceback" not in said.err + said.out, said.err
    assert not (tmp_path / "out").exists()
    assert main([*argv, "--allow-unlabelled"]) == 0
    printed = capsys.readouterr().out
    assert "1 rows have no 'label'" in printed, printed
    from datasets import load_from_disk

    assert sorted(load_from_disk(str(tmp_path / "out"))["train"]["label"])[0] == -1
